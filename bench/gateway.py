"""Benchmark the gateway against hand-written asyncio doing the same work (same-run ratios).

    python bench/gateway.py [--seconds S] [--rounds R] [--memory-readings N]

1. Unthrottled throughput: devices send as fast as they can (device_interval=0), 4 clients,
   batches of 10 into SQLite, real time, for S seconds then a graceful drain. Readings
   stored per wall second, compared in the same run with
   a. a minimal hand-written asyncio pipeline doing the same work: 7 device tasks, an
      `asyncio.Queue(50)` to an aggregator that keeps running averages, fans each update
      out to 4 per-client `asyncio.Queue`s and forwards the reading through an
      `asyncio.Queue(10)` to a writer that batches 10 and inserts them with
      `asyncio.to_thread` through 2 connections (target: ours / it >= 0.8);
   b. a bare 3-hop `asyncio.Queue` chain with no work at all (an upper bound).
2. The seed's 10-second default on the virtual clock: wall seconds (target <= 0.5 s).
3. Memory: RSS growth while an unthrottled gateway processes N readings (default 1 M),
   measured from the first 100 k readings on (target <= 10 MB).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from telemetry_lab import Gateway, GatewayConfig, Reading, run, run_gateway
from telemetry_lab.database import open_run
from telemetry_lab.storage import INSERT_READINGS

DEVICES, CLIENTS, BATCH = 7, 4, 10


def rss_bytes() -> int:
    """Resident set size now (Linux /proc; falls back to peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            import os

            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


async def ours(seconds: float, db: Path) -> float:
    report = await run_gateway(GatewayConfig(db_path=db, device_interval=0, duration=seconds))
    assert report.ok, report
    return report.stored / report.wall_seconds


async def handwritten(seconds: float, db: Path) -> float:
    """The same stages and the same work, written directly against asyncio."""
    start_wall = time.perf_counter()
    run_id = open_run(db, {"handwritten": True})  # the same file format, a run of its own
    connections = [sqlite3.connect(db, check_same_thread=False) for _ in range(2)]
    for conn in connections:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    telemetry: asyncio.Queue[Reading | None] = asyncio.Queue(50)
    storage: asyncio.Queue[Reading | None] = asyncio.Queue(10)
    client_queues: list[asyncio.Queue[tuple[int, int, float] | None]] = [
        asyncio.Queue() for _ in range(CLIENTS)
    ]
    bandwidth = asyncio.Semaphore(3)
    stop = asyncio.Event()
    stored = 0

    async def device(device_id: int) -> None:
        rng = random.Random(device_id)
        temperature, humidity, seq = 20.0, 55.0, 0
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            await asyncio.sleep(0)
            temperature = min(60.0, max(-30.0, temperature + rng.gauss(0.0, 0.3)))
            humidity = min(100.0, max(0.0, humidity + rng.gauss(0.0, 1.0)))
            reading = Reading(
                device_id=device_id,
                seq=seq,
                ts=loop.time(),
                temperature=round(temperature, 2),
                humidity=round(humidity, 2),
            )
            seq += 1
            async with bandwidth:
                await telemetry.put(reading)

    async def aggregator() -> None:
        means: dict[int, list[float]] = {}
        count = 0
        while (reading := await telemetry.get()) is not None:
            stats = means.setdefault(reading.device_id, [0.0, 0.0, 0.0])
            stats[0] += 1
            stats[1] += (reading.temperature - stats[1]) / stats[0]
            stats[2] += (reading.humidity - stats[2]) / stats[0]
            count += 1
            avg = sum(s[1] for s in means.values()) / len(means)
            for q in client_queues:
                q.put_nowait((count, len(means), avg))
            await storage.put(reading)
        await storage.put(None)
        for q in client_queues:
            q.put_nowait(None)

    Row = tuple[int, int, int, float, float, float]

    def insert(conn: sqlite3.Connection, rows: list[Row]) -> int:
        with conn:
            return conn.executemany(INSERT_READINGS, rows).rowcount

    async def writer() -> None:
        nonlocal stored
        pool = asyncio.Semaphore(2)
        free = list(connections)
        writes: set[asyncio.Task[None]] = set()

        async def write(rows: list[Row]) -> None:
            nonlocal stored
            conn = free.pop()
            try:
                stored += await asyncio.to_thread(insert, conn, rows)
            finally:
                free.append(conn)
                pool.release()

        batch: list[Row] = []
        while True:
            reading = await storage.get()
            if reading is not None:
                batch.append(
                    (run_id, reading.device_id, reading.seq, reading.ts, reading.temperature,
                     reading.humidity)
                )  # fmt: skip
            if batch and (len(batch) >= BATCH or reading is None):
                await pool.acquire()
                task = asyncio.create_task(write(batch))
                writes.add(task)
                task.add_done_callback(writes.discard)
                batch = []
            if reading is None:
                break
        await asyncio.gather(*writes)

    async def client(q: asyncio.Queue[tuple[int, int, float] | None]) -> None:
        while await q.get() is not None:
            pass

    async with asyncio.TaskGroup() as tg:
        devices = [tg.create_task(device(i)) for i in range(1, DEVICES + 1)]
        tg.create_task(aggregator())
        tg.create_task(writer())
        for q in client_queues:
            tg.create_task(client(q))
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*devices)
        await telemetry.put(None)
    for conn in connections:
        conn.close()
    return stored / (time.perf_counter() - start_wall)


async def bare_chain(seconds: float, _: Path) -> float:
    """Three asyncio.Queue hops and nothing else: the ceiling for any pipeline."""
    start_wall = time.perf_counter()
    hops: list[asyncio.Queue[int | None]] = [asyncio.Queue(50), asyncio.Queue(10)]
    done = 0
    stop = asyncio.Event()

    async def source() -> None:
        i = 0
        while not stop.is_set():
            await hops[0].put(i)
            i += 1
            if i % 50 == 0:
                await asyncio.sleep(0)
        await hops[0].put(None)

    async def middle() -> None:
        while (v := await hops[0].get()) is not None:
            await hops[1].put(v)
        await hops[1].put(None)

    async def sink() -> None:
        nonlocal done
        while await hops[1].get() is not None:
            done += 1

    async with asyncio.TaskGroup() as tg:
        for coro in (source(), middle(), sink()):
            tg.create_task(coro)
        await asyncio.sleep(seconds)
        stop.set()
    return done / (time.perf_counter() - start_wall)


def median_rates(
    rounds: int, seconds: float, pipelines: dict[str, Callable[[float, Path], object]]
) -> dict[str, float]:
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for name, pipeline in pipelines.items():
                gc.collect()
                db = Path(tmp) / f"{name}-{r}.db"
                rates[name].append(asyncio.run(pipeline(seconds, db)))  # type: ignore[arg-type]
    return {name: statistics.median(values) for name, values in rates.items()}


def memory_growth(readings: int) -> tuple[int, int, float]:
    """Run an unthrottled gateway for `readings`; return (rss at 100k, rss at end, seconds)."""

    async def main(db: Path) -> tuple[int, int, float]:
        gateway = Gateway(GatewayConfig(db_path=db, device_interval=0, duration=86_400))
        task = asyncio.create_task(gateway.run())
        began = time.perf_counter()
        baseline = 0
        while True:
            await asyncio.sleep(0.25)
            storage = gateway.statistics().storage
            stored = storage.total_stored if storage else 0
            if not baseline and stored >= 100_000:
                gc.collect()
                baseline = rss_bytes()
            if stored >= readings:
                break
        gc.collect()
        final = rss_bytes()
        gateway.stop()  # the graceful drain; run() returns the report
        report = await task
        assert report.ok, report
        return baseline, final, time.perf_counter() - began

    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(main(Path(tmp) / "mem.db"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per throughput run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--memory-readings", type=int, default=1_000_000)
    args = parser.parse_args()
    logging.getLogger("telemetry_lab").setLevel(logging.WARNING)
    print(f"Python {sys.version.split()[0]}; median of {args.rounds} rounds\n")

    rates = median_rates(
        args.rounds,
        args.seconds,
        {"gateway": ours, "handwritten": handwritten, "bare": bare_chain},
    )
    print(f"1. Unthrottled throughput, {args.seconds:g} s runs (readings stored per wall second)")
    print(f"   telemetry_lab gateway       {rates['gateway']:>10,.0f}/s")
    print(f"   hand-written asyncio        {rates['handwritten']:>10,.0f}/s")
    print(f"   bare 3-hop Queue chain      {rates['bare']:>10,.0f}/s (no work at all)")
    print(
        f"   ratio gateway / hand-written = {rates['gateway'] / rates['handwritten']:.2f}x"
        "   (target >= 0.80)"
    )
    print(f"   ratio gateway / bare chain   = {rates['gateway'] / rates['bare']:.2f}x\n")

    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            report = run(GatewayConfig(db_path=Path(tmp) / f"v{r}.db"), virtual_time=True)
            assert report.ok
            walls.append(report.wall_seconds)
    print("2. The seed's 10-second default on the virtual clock")
    print(f"   wall {statistics.median(walls):.3f} s (median)   (target <= 0.5 s)\n")

    if args.memory_readings:
        base, final, secs = memory_growth(args.memory_readings)
        print(f"3. Memory over {args.memory_readings:,} readings (unthrottled, {secs:.0f} s)")
        print(
            f"   RSS at 100k readings {base / 1e6:.1f} MB, at the end {final / 1e6:.1f} MB: "
            f"growth {(final - base) / 1e6:+.1f} MB   (target <= 10 MB)"
        )


if __name__ == "__main__":
    main()
