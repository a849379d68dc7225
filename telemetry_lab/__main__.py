"""Run the telemetry gateway from the command line: `python -m telemetry_lab`.

With no flags it reproduces the Tokio seed's demo: 7 devices, 4 clients, 10 seconds, logs
in the seed's style, then a summary table. `--fast` runs the same events on a virtual clock
(well under a second); `--json` prints the report as one JSON object on stdout (logs go to
stderr). Exit status: 0 for a clean run, 1 when anything was lost or left in flight, 2 for
bad arguments. Ctrl-C drains gracefully and still reports.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from telemetry_lab.config import GatewayConfig
from telemetry_lab.gateway import run

__all__ = ["build_parser", "main"]

EXIT_OK, EXIT_LOSS, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    """Return the CLI's argument parser (defaults come from `GatewayConfig`)."""
    defaults = GatewayConfig()
    parser = argparse.ArgumentParser(
        prog="telemetry-lab",
        description="Run the async telemetry gateway and report what happened to every reading.",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=defaults.duration,
        help="seconds before graceful shutdown (default %(default)s)",
    )
    parser.add_argument(
        "--devices", type=int, default=defaults.devices, help="sensor devices (default %(default)s)"
    )
    parser.add_argument(
        "--clients", type=int, default=defaults.clients, help="live clients (default %(default)s)"
    )
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="random seed (default %(default)s)"
    )
    parser.add_argument(
        "--db",
        type=Path,
        default=defaults.db_path,
        help="SQLite file, emptied at start (default %(default)s)",
    )
    parser.add_argument(
        "--fast", action="store_true", help="run on a virtual clock: same events, no waiting"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the report as one JSON object on stdout"
    )
    parser.add_argument("--quiet", action="store_true", help="log only warnings and errors")
    return parser  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = GatewayConfig(
            duration=args.duration,
            devices=args.devices,
            clients=args.clients,
            seed=args.seed,
            db_path=args.db,
        )
    except ValueError as exc:
        parser.error(str(exc))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("telemetry_lab")
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if args.quiet else logging.INFO)
    logger.propagate = False
    try:
        report = run(config, virtual_time=args.fast)
    except ValueError as exc:  # the database file cannot be used: nothing was started
        print(f"telemetry-lab: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        logger.removeHandler(handler)
        logger.level, logger.propagate = saved
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print()
        print(report.summary_table())
    return EXIT_OK if report.ok else EXIT_LOSS


if __name__ == "__main__":
    sys.exit(main())
