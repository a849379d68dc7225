"""Run the telemetry gateway from the command line: `python -m telemetry_lab`.

With no flags it reproduces the Tokio seed's demo: 7 devices, 4 clients, 10 seconds, logs
in the seed's style, then a summary table. `--fast` runs the same events on a virtual clock
(well under a second); `--console` prints the asyncio console's table of tasks on stderr
every second; `--json` prints the report as one JSON object on stdout (logs go to
stderr). Each run is recorded in the `--db` file under a new run id; nothing is deleted.

Exit status: 0 for a clean run, 1 when anything was lost or left in flight, 2 for bad
arguments or a database file that cannot be used (it is left unchanged). SIGINT (Ctrl-C),
SIGTERM (`docker stop`, `kill`) and SIGHUP (a closed terminal) drain gracefully and still
report; a second one aborts at once (running SQLite writes finish), says so in one line on
stderr, prints the partial report and exits with 128 + the signal's number. A closed or
full stdout (`| head`) ends the output quietly.

`telemetry-lab workshop [DIR] [--open]` copies the workshop notebooks into DIR instead
(`telemetry_lab.workshop`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from telemetry_lab import workshop
from telemetry_lab.config import GatewayConfig
from telemetry_lab.console import Console
from telemetry_lab.errors import UnusableDatabase
from telemetry_lab.gateway import Gateway
from telemetry_lab.models import Report
from telemetry_lab.signals import ShutdownSignals
from telemetry_lab.virtual_time import VirtualTimeEventLoop

__all__ = ["SIGNALS", "build_parser", "main", "run_until_signalled"]

EXIT_OK, EXIT_LOSS, EXIT_USAGE = 0, 1, 2
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""The signals that end a run gracefully (the first) or abort it (the second)."""


def build_parser() -> argparse.ArgumentParser:
    """Return the CLI's argument parser (defaults come from `GatewayConfig`)."""
    defaults = GatewayConfig()
    parser = argparse.ArgumentParser(
        prog="telemetry-lab",
        description="Run the async telemetry gateway and report what happened to every reading.",
        epilog=(
            "To start the workshop: `telemetry-lab workshop [DIR]` copies its notebooks into "
            "DIR (default ./telemetry-lab-workshop); see `telemetry-lab workshop --help`."
        ),
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
        help="SQLite file; each run adds its rows under a new run id (default %(default)s)",
    )
    parser.add_argument(
        "--fast", action="store_true", help="run on a virtual clock: same events, no waiting"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the report as one JSON object on stdout"
    )
    parser.add_argument("--quiet", action="store_true", help="log only warnings and errors")
    parser.add_argument(
        "--console",
        action="store_true",
        help="print the asyncio console (every task, what it waits on, warnings) on stderr "
        "every second and at the end; combine with --quiet to see only the console",
    )
    return parser  # fmt: skip


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Log lines to stderr; if stderr is gone (a closed terminal, a closed pipe), go quiet."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter("%(message)s"))
        self.gone = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.gone:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            self.gone = True
        else:
            super().handleError(record)


def _say(line: str, stream: object = None) -> bool:
    """Write one line to stderr (or `stream`); return False if it is closed."""
    out = stream if stream is not None else sys.stderr
    try:
        print(line, file=out, flush=True)  # type: ignore[arg-type]
    except OSError:
        return False
    return True


async def _run(config: GatewayConfig, console: bool) -> tuple[Report, signal.Signals | None]:
    gateway = Gateway(config)
    if not console:
        with ShutdownSignals(gateway, SIGNALS) as signals:
            report = await gateway.run()
        return report, signals.aborted_by
    with Console() as watching, ShutdownSignals(gateway, SIGNALS) as signals:
        watching.print_every(1.0, file=_QuietStderr())
        report = await gateway.run()
    _say("asyncio console, at the end of the run:\n" + watching.snapshot().format())
    return report, signals.aborted_by


class _QuietStderr:
    """stderr for the console's thread: if it is closed, print nothing more."""

    def __init__(self) -> None:
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return sys.stderr.write(text)
            except OSError:
                self.gone = True
        return 0

    def flush(self) -> None:
        if not self.gone:
            try:
                sys.stderr.flush()
            except OSError:
                self.gone = True


def run_until_signalled(
    config: GatewayConfig, *, virtual_time: bool = False, console: bool = False
) -> tuple[Report, signal.Signals | None]:
    """Run one gateway; the first of `SIGNALS` drains it, a second aborts it.

    With `console`, the asyncio console prints its table on stderr every second and once
    at the end.

    Returns:
        The report, and the signal that aborted the run (None if it was not aborted).

    Raises:
        UnusableDatabase: the database file cannot be used (nothing was started).
    """
    with asyncio.Runner(loop_factory=VirtualTimeEventLoop if virtual_time else None) as runner:
        return runner.run(_run(config, console))


def _exit_at_once(signum: int, frame: FrameType | None) -> None:
    """After the run: a signal ends the process now, quietly, with 128 + its number."""
    raise SystemExit(128 + signum)


def _print_report(report: Report, as_json: bool) -> None:
    """Print the report on stdout; a closed or full stdout ends the output quietly."""
    text = json.dumps(report.to_dict()) if as_json else "\n" + report.summary_table()
    try:
        print(text, flush=True)
    except OSError:  # BrokenPipeError (`| head`), EIO (terminal gone), ENOSPC
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing left to flush at exit


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status. `workshop ...` runs `telemetry_lab.workshop`."""
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["workshop"]:  # the one subcommand; anything else runs the gateway
        return workshop.main(arguments[1:])
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
    handler = _StderrHandler()
    logger = logging.getLogger("telemetry_lab")
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if args.quiet else logging.INFO)
    logger.propagate = False
    try:
        extra = {"console": True} if args.console else {}  # the old signature otherwise
        report, aborted_by = run_until_signalled(config, virtual_time=args.fast, **extra)
    except (UnusableDatabase, ValueError) as exc:  # nothing was started
        _say(f"telemetry-lab: error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:  # before the signal handlers were in place
        return 128 + signal.SIGINT
    finally:
        logger.removeHandler(handler)
        logger.level, logger.propagate = saved
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, _exit_at_once) for s in SIGNALS} if in_main_thread else {}
    try:
        if aborted_by is not None:
            _say(
                f"telemetry-lab: aborted by a second {aborted_by.name}: the run was not "
                "drained; the partial report follows"
            )
        _print_report(report, args.json)
    finally:
        for signum, action in previous.items():
            signal.signal(signum, action)
    if aborted_by is not None:
        return 128 + aborted_by
    return EXIT_OK if report.ok else EXIT_LOSS


if __name__ == "__main__":
    sys.exit(main())
