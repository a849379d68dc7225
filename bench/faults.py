"""Turn on each fault and print what the gateway did about it; measure the slow-client cost.

    python bench/faults.py [--rounds R] [--seconds S]

1. Scenarios on the virtual clock (deterministic for the seed): each fault knob on its own,
   with the report's ledger and the database row counts side by side.
2. Slow client, real time: unthrottled devices, 4 clients, one of which spends 10 ms per
   update. Aggregator throughput while the gateway runs (readings accepted per second up
   to the `duration` deadline, from the sampled series) relative to the same run without
   the slow client, median of R rounds (target: within 10 %, i.e. >= 0.90). The drain
   that follows is reported separately: a slow client needs time to read its backlog.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sqlite3
import statistics
import tempfile
from pathlib import Path
from typing import Any

from telemetry_lab import Gateway, GatewayConfig, run

SCENARIOS: dict[str, dict[str, Any]] = {
    "healthy (seed defaults)": {},
    "storage_failure_rate=0.5": {"storage_failure_rate": 0.5},
    "outage 2-9 s, budget 3 s, fast devices": {
        "storage_outage": (2.0, 9.0),
        "retry_max_elapsed": 3.0,
        "duration": 15.0,
        "device_interval": 0.2,
    },
    "storage_latency=0.5, fast devices": {"storage_latency": 0.5, "device_interval": 0.1},
    "slow client 1 (0.5 s/update)": {"client_delays": (0.5,), "broadcast_capacity": 5},
    "malformed_rate=0.2": {"malformed_rate": 0.2},
    "device_crash_rate=0.1": {"device_crash_rate": 0.1},
    "drain timeout (latency 2 s, 1 s budget)": {
        "storage_latency": 2.0,
        "shutdown_timeout": 1.0,
        "device_interval": 0.2,
    },
}


def count(db: Path, table: str) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def scenarios() -> None:
    header = (
        f"{'scenario':<40} {'prod':>5} {'stored/rows':>11} {'rej':>4} {'dead/rows':>9} "
        f"{'infl':>4} {'lost':>4} {'retry':>5} {'rest':>4} {'lag':>4} {'blocked':>7} "
        f"{'tasks':>5} ok"
    )
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, knobs) in enumerate(SCENARIOS.items()):
            db = Path(tmp) / f"s{i}.db"
            r = run(GatewayConfig(db_path=db, **knobs), virtual_time=True)
            assert r.balanced, name
            stored = f"{r.stored}/{count(db, 'readings')}"
            dead = f"{r.dead_lettered}/{count(db, 'dead_letters')}"
            print(
                f"{name:<40} {r.produced:>5} {stored:>11} "
                f"{r.rejected:>4} {dead:>9} "
                f"{r.in_flight:>4} {r.lost:>4} {r.storage_retries:>5} {r.device_restarts:>4} "
                f"{r.updates_lagged:>4} {r.device_blocked_seconds:>6.1f}s "
                f"{f'{r.tasks_stopped_cleanly}/{r.tasks_started}':>5} "
                f"{'yes' if r.ok else 'NO'}"
            )


async def aggregator_rate(
    seconds: float, db: Path, delays: tuple[float, ...]
) -> tuple[float, float]:
    """Return (readings the aggregator processed per second while running, drain seconds)."""
    gateway = Gateway(
        GatewayConfig(db_path=db, device_interval=0, duration=seconds, client_delays=delays)
    )
    report = await gateway.run()
    assert report.ok, report
    at_stop = next(s for s in gateway.series if s.t >= seconds)  # sampled at the deadline
    return at_stop.produced / at_stop.t, report.loop_seconds - at_stop.t


def slow_client(rounds: int, seconds: float) -> None:
    rates: dict[str, list[float]] = {"none": [], "slow": []}
    drains: dict[str, list[float]] = {"none": [], "slow": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for name, delays in (("none", ()), ("slow", (0.01,))):
                db = Path(tmp) / f"{name}{r}.db"
                rate, drain = asyncio.run(aggregator_rate(seconds, db, delays))
                rates[name].append(rate)
                drains[name].append(drain)
    base, slow = statistics.median(rates["none"]), statistics.median(rates["slow"])
    print(f"\n2. Slow client, real time, unthrottled, {seconds:g} s runs, median of {rounds}")
    print(f"   aggregator without a slow client  {base:>10,.0f} readings/s")
    print(f"   aggregator with client 1 at 10 ms {slow:>10,.0f} readings/s")
    print(f"   ratio = {slow / base:.2f}x   (target >= 0.90)")
    print(
        f"   drain after the deadline: {statistics.median(drains['none']):.2f} s without, "
        f"{statistics.median(drains['slow']):.2f} s with the slow client (it reads its backlog)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    logging.getLogger("telemetry_lab").setLevel(logging.CRITICAL)
    print("1. Each fault on its own, virtual clock, seed 42\n")
    scenarios()
    slow_client(args.rounds, args.seconds)


if __name__ == "__main__":
    main()
