"""Benchmark the console's cost: gateway throughput with it on and off (same-run ratios).

    python bench/console.py [--seconds S] [--rounds R]

An unthrottled gateway (device_interval=0, 4 clients, batches of 10 into SQLite) runs for
S seconds, R rounds, alternating:

- `never`: no console in this process's loop;
- `on`: a `Console` records every step and builds a snapshot every second for a listener
  (as the widget and `--console` do), with its watchdog thread polling every 10 ms;
- `off`: a console was started and stopped on this loop before the run (what "nothing at
  all when it is off" means: the loop is given back as it was).

Prints readings stored per wall second (median of R) and the ratios on/never (target
>= 0.85) and off/never (target: 1.0 within noise), plus the steps the console recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import statistics
import tempfile
from pathlib import Path

from telemetry_lab import GatewayConfig, run_gateway
from telemetry_lab.console import Console, ConsoleSnapshot


async def one_run(seconds: float, db: Path, mode: str) -> tuple[float, int]:
    config = GatewayConfig(db_path=db, device_interval=0, duration=seconds)
    if mode == "off":
        Console().start().stop()
    if mode != "on":
        report = await run_gateway(config)
        assert report.ok, report
        return report.stored / report.wall_seconds, 0
    snapshots: list[ConsoleSnapshot] = []
    async with Console() as console:
        console.add_listener(snapshots.append)
        report = await run_gateway(config)
        steps = sum(row.steps for row in console.snapshot().tasks)
    assert report.ok, report
    assert snapshots, "the listener never ran"
    return report.stored / report.wall_seconds, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    logging.getLogger("telemetry_lab").setLevel(logging.CRITICAL)
    rates: dict[str, list[float]] = {"never": [], "on": [], "off": []}
    steps: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for mode in ("never", "on", "off"):
                gc.collect()
                rate, n = asyncio.run(one_run(args.seconds, Path(tmp) / f"{mode}{r}.db", mode))
                rates[mode].append(rate)
                if n:
                    steps.append(n)
    never, on, off = (statistics.median(rates[m]) for m in ("never", "on", "off"))
    print(f"Unthrottled gateway, {args.seconds:g} s runs, median of {args.rounds}")
    print(f"   without a console        {never:>10,.0f} readings/s")
    print(f"   console on               {on:>10,.0f} readings/s   "
          f"({statistics.median(steps) / args.seconds:,.0f} task steps/s recorded)")  # fmt: skip
    print(f"   console started+stopped  {off:>10,.0f} readings/s")
    print(f"   on / without  = {on / never:.2f}x   (target >= 0.85)")
    print(f"   off / without = {off / never:.2f}x   (target 1.0: nothing to pay when off)")


if __name__ == "__main__":
    main()
