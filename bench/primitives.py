"""Benchmark the primitives against the asyncio baselines they replace (same-run ratios).

Each figure is the median of 5 rounds; baseline and candidate alternate inside every round,
so both see the same machine noise. Ratios, not absolute times, are the result.

    python bench/primitives.py [--items N] [--rounds R]

1. mpsc hop: one producer, one consumer, `channel(50)` vs `asyncio.Queue(50)`.
   Ratio = our time / Queue time (target <= 1.3).
2. broadcast sender cost: `send()` with 1024 lagging (never-reading) receivers vs 1.
   Ratio = time(1024) / time(1) (target <= 1.5). For contrast, per-subscriber
   `asyncio.Queue` fan-out: its cost and memory grow with every lagging subscriber.
3. broadcast delivery: one sender, S subscribers reading everything (S = 4, 64), vs one
   `asyncio.Queue` per subscriber. Ratio = our deliveries/s / Queue deliveries/s
   (target >= 0.8).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Coroutine
from typing import Any

from telemetry_lab import ChannelClosed, broadcast, channel

Timed = Callable[[], Coroutine[Any, Any, float]]


async def mpsc_hop(items: int) -> float:
    tx, rx = channel[int](50)

    async def produce() -> None:
        with tx:
            for i in range(items):
                await tx.send(i)

    start = time.perf_counter()
    producer = asyncio.create_task(produce())
    received = 0
    while True:
        try:
            await rx.recv()
        except ChannelClosed:
            break
        received += 1
    await producer
    elapsed = time.perf_counter() - start
    assert received == items
    return elapsed


async def queue_hop(items: int) -> float:
    q: asyncio.Queue[int | None] = asyncio.Queue(50)

    async def produce() -> None:
        for i in range(items):
            await q.put(i)
        await q.put(None)  # Queue cannot be closed before 3.13: a sentinel stands in

    start = time.perf_counter()
    producer = asyncio.create_task(produce())
    received = 0
    while await q.get() is not None:
        received += 1
    await producer
    elapsed = time.perf_counter() - start
    assert received == items
    return elapsed


async def broadcast_send_cost(items: int, receivers: int) -> float:
    tx, rx = broadcast[int](100)
    lagging = [rx] + [tx.subscribe() for _ in range(receivers - 1)]
    send = tx.send
    start = time.perf_counter()
    for i in range(items):
        send(i)
    elapsed = time.perf_counter() - start
    assert len(lagging[-1]) == items
    assert len(tx) == 100
    return elapsed


async def queue_fanout_send_cost(items: int, receivers: int) -> float:
    queues: list[asyncio.Queue[int]] = [asyncio.Queue() for _ in range(receivers)]
    start = time.perf_counter()
    for i in range(items):
        for q in queues:
            q.put_nowait(i)
    return time.perf_counter() - start


async def broadcast_delivery(items: int, subscribers: int) -> float:
    tx, rx = broadcast[int](256)
    receivers = [rx] + [tx.subscribe() for _ in range(subscribers - 1)]
    counts = [0] * subscribers

    async def consume(k: int) -> None:
        r = receivers[k]
        while True:
            try:
                await r.recv()
            except ChannelClosed:
                return
            counts[k] += 1

    start = time.perf_counter()
    tasks = [asyncio.create_task(consume(k)) for k in range(subscribers)]
    await asyncio.sleep(0)
    with tx:
        for i in range(items):
            tx.send(i)
            if i % 64 == 63:
                await asyncio.sleep(0)  # let subscribers keep up (no lag in this test)
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    assert counts == [items] * subscribers, "a subscriber lagged; the comparison is unfair"
    return elapsed


async def queue_delivery(items: int, subscribers: int) -> float:
    queues: list[asyncio.Queue[int | None]] = [asyncio.Queue() for _ in range(subscribers)]
    counts = [0] * subscribers

    async def consume(k: int) -> None:
        q = queues[k]
        while await q.get() is not None:
            counts[k] += 1

    start = time.perf_counter()
    tasks = [asyncio.create_task(consume(k)) for k in range(subscribers)]
    await asyncio.sleep(0)
    for i in range(items):
        for q in queues:
            q.put_nowait(i)
        if i % 64 == 63:
            await asyncio.sleep(0)
    for q in queues:
        q.put_nowait(None)
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    assert counts == [items] * subscribers
    return elapsed


def median_pair(rounds: int, a: Timed, b: Timed) -> tuple[float, float]:
    """Run a and b alternately `rounds` times on fresh loops; return their median times."""
    ta: list[float] = []
    tb: list[float] = []
    for _ in range(rounds):
        for fn, sink in ((a, ta), (b, tb)):
            gc.collect()
            sink.append(asyncio.run(fn()))  # type: ignore[arg-type]
    return statistics.median(ta), statistics.median(tb)


def peak_memory(fn: Timed) -> int:
    gc.collect()
    tracemalloc.start()
    asyncio.run(fn())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200_000, help="items per mpsc run")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n, rounds = args.items, args.rounds
    print(f"Python {sys.version.split()[0]}; median of {rounds} rounds; lower time is better\n")

    ours, base = median_pair(rounds, lambda: mpsc_hop(n), lambda: queue_hop(n))
    print(f"1. mpsc hop, {n:,} items, capacity 50")
    print(f"   channel(50)      {ours * 1e3:8.1f} ms  ({n / ours:,.0f} items/s)")
    print(f"   asyncio.Queue(50){base * 1e3:8.1f} ms  ({n / base:,.0f} items/s)")
    print(f"   ratio channel / Queue = {ours / base:.2f}x   (target <= 1.30)\n")

    sends, q_sends = 200_000, 20_000
    one, many = median_pair(
        rounds, lambda: broadcast_send_cost(sends, 1), lambda: broadcast_send_cost(sends, 1024)
    )
    q_one, q_many = median_pair(
        rounds,
        lambda: queue_fanout_send_cost(q_sends, 1),
        lambda: queue_fanout_send_cost(q_sends, 1024),
    )
    mem_b = peak_memory(lambda: broadcast_send_cost(q_sends, 1024))
    mem_q = peak_memory(lambda: queue_fanout_send_cost(q_sends, 1024))
    print(f"2. broadcast send cost, {sends:,} sends, capacity 100, receivers never read")
    print(f"   broadcast, 1 receiver      {one * 1e3:8.2f} ms")
    print(f"   broadcast, 1024 receivers  {many * 1e3:8.2f} ms")
    print(f"   ratio 1024 / 1 = {many / one:.2f}x   (target <= 1.50)")
    print(
        f"   per-subscriber Queue fan-out ({q_sends:,} sends): 1 -> {q_one * 1e3:.2f} ms, 1024 -> "
        f"{q_many * 1e3:.1f} ms ({q_many / q_one:.0f}x)"
    )
    print(
        f"   peak memory, {q_sends:,} sends, 1024 lagging: broadcast {mem_b / 1e6:.2f} MB, "
        f"Queue fan-out {mem_q / 1e6:.1f} MB ({mem_q / mem_b:.0f}x)\n"
    )

    items = 50_000
    print(f"3. broadcast delivery, {items:,} values to every subscriber, capacity 256")
    for subs in (4, 64):
        ours, base = median_pair(
            rounds,
            lambda s=subs: broadcast_delivery(items, s),
            lambda s=subs: queue_delivery(items, s),
        )
        rate_o, rate_b = items * subs / ours, items * subs / base
        print(
            f"   {subs:>2} subscribers: broadcast {rate_o:,.0f}/s, Queue fan-out "
            f"{rate_b:,.0f}/s, ratio = {rate_o / rate_b:.2f}x   (target >= 0.80)"
        )


if __name__ == "__main__":
    main()
