"""Measure what the live dashboard costs a busy gateway (same-run ratios).

    python bench/dashboard.py [--rounds R] [--seconds S] [--hz HZ]

An unthrottled gateway (devices send as fast as they can, real time) runs for S seconds,
with and without a `Dashboard` refreshing at HZ frames per second, alternately, R rounds.
Reported, as medians:
- throughput while running (readings accepted per second up to the deadline, from the
  sampled series) with the dashboard / without (target: cost <= 10 %, ratio >= 0.90);
- event-loop lag: a probe task sleeps 5 ms in a loop and records how late it wakes;
  the 99th percentile with the dashboard (target <= 15 ms), and without for comparison;
- frames shown, full redraws, and render time per frame (in the worker thread).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
from pathlib import Path

from telemetry_lab import Gateway, GatewayConfig
from telemetry_lab.dashboard import Dashboard


async def probe_lag(stop: asyncio.Event, lags: list[float], period: float = 0.005) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        expected = loop.time() + period
        await asyncio.sleep(period)
        lags.append(max(0.0, loop.time() - expected))


async def one_run(seconds: float, db: Path, hz: float | None) -> dict[str, float]:
    config = GatewayConfig(db_path=db, device_interval=0, duration=seconds)
    stop = asyncio.Event()
    lags: list[float] = []
    probe = asyncio.create_task(probe_lag(stop, lags))
    out: dict[str, float] = {}
    if hz is None:
        gateway = Gateway(config)
        await gateway.run()
    else:
        dashboard = Dashboard(config, refresh_hz=hz)
        gateway = await dashboard.start()
        await dashboard.wait()
        await dashboard.close()
        stats = dashboard.statistics()
        out["frames"] = stats.frames
        out["full_draws"] = dashboard._plot.full_draws
        out["render_ms"] = 1000 * stats.total_render_seconds / max(1, stats.frames)
    stop.set()
    await probe
    at_deadline = next(s for s in gateway.series if s.t >= seconds)
    out["rate"] = at_deadline.produced / at_deadline.t
    out["lag_p99_ms"] = 1000 * statistics.quantiles(lags, n=100)[98]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--hz", type=float, default=4.0)
    args = parser.parse_args()
    logging.getLogger("telemetry_lab").setLevel(logging.CRITICAL)
    runs: dict[str, list[dict[str, float]]] = {"without": [], "with": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, hz in (("without", None), ("with", args.hz)):
                db = Path(tmp) / f"{name}{r}.db"
                runs[name].append(asyncio.run(one_run(args.seconds, db, hz)))

    def med(name: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[name])

    base, dash = med("without", "rate"), med("with", "rate")
    print(f"Unthrottled gateway, {args.seconds:g} s runs, dashboard at {args.hz:g} Hz, "
          f"median of {args.rounds}")  # fmt: skip
    print(f"   throughput without dashboard {base:>10,.0f} readings/s")
    print(f"   throughput with dashboard    {dash:>10,.0f} readings/s")
    print(f"   ratio = {dash / base:.2f}x (cost {100 * (1 - dash / base):.0f} %)   "
          "(target: cost <= 10 %)")  # fmt: skip
    print(
        f"   loop lag p99: {med('with', 'lag_p99_ms'):.1f} ms with the dashboard, "
        f"{med('without', 'lag_p99_ms'):.1f} ms without   (target <= 15 ms)"
    )
    print(
        f"   frames {med('with', 'frames'):.0f}, full redraws {med('with', 'full_draws'):.0f}, "
        f"{med('with', 'render_ms'):.1f} ms per frame in the render thread"
    )


if __name__ == "__main__":
    main()
