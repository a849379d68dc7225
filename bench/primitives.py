"""Benchmark the primitives against the asyncio baselines they replace (same-run ratios).

Each figure is the median of 5 rounds; the baseline and every contender alternate inside
every round (the order rotating from round to round), so all see the same machine noise.
Ratios, not absolute times, are the result. The peer libraries run in the same process,
on the same asyncio loops: `pip install -e '.[bench]'` (`make bench` does it); a peer that
is not installed is skipped with a note, the rest of the script still runs.

    python bench/primitives.py [--items N] [--rounds R] [--quick]

1. mpsc hop: one producer, one consumer, `channel(50)` vs `asyncio.Queue(50)`, and the
   peers `aiochannel.Channel(50)` and `anyio.create_memory_object_stream(50)` (anyio's
   asyncio backend, under plain `asyncio.run`). Ratio = its time / Queue time
   (target: channel <= 0.70, and ahead of aiochannel).
2. broadcast sender cost: `send()` with 1024 lagging (never-reading) receivers vs 1.
   Ratio = time(1024) / time(1) (target <= 1.5). For contrast, per-subscriber
   `asyncio.Queue` fan-out: its cost and memory grow with every lagging subscriber.
3. broadcast delivery: one sender, N subscribers each in its own task reading everything
   (N = 4, 64, 1024), `broadcast(100)` vs one `asyncio.Queue(100)` per subscriber, and the
   peer frequenz-channels' broadcast, receivers with `limit=100` (`BroadcastChannel` and
   `subscribe()` from 1.12, which deprecates `Broadcast`; `Broadcast.new_receiver()` before).
   The sender yields every 64 values so no subscriber lags (checked: every subscriber must
   count every value).
   Ratio = its deliveries/s / Queue deliveries/s (target >= 0.8, and ahead of frequenz at
   every N).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import statistics
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable, Coroutine
from functools import partial
from types import ModuleType
from typing import Any

from telemetry_lab import ChannelClosed, broadcast, channel

CAPACITY = 100  # broadcast delivery: ring and per-subscriber Queue size

Timed = Callable[[], Coroutine[Any, Any, float]]
INSTALL_HINT = "pip install -e '.[bench]'"


def optional(module: str, distribution: str) -> ModuleType | None:
    """The peer library `module`, or None (with one line saying so) when it is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        print(f"({distribution} is not installed: its column is skipped; {INSTALL_HINT} adds it)")
        return None


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


async def aiochannel_hop(aiochannel: ModuleType, items: int) -> float:
    ch = aiochannel.Channel(50)
    closed = aiochannel.ChannelClosed

    async def produce() -> None:
        for i in range(items):
            await ch.put(i)
        ch.close()

    start = time.perf_counter()
    producer = asyncio.create_task(produce())
    received = 0
    while True:
        try:
            await ch.get()
        except closed:
            break
        received += 1
    await producer
    elapsed = time.perf_counter() - start
    assert received == items
    return elapsed


async def anyio_hop(anyio: ModuleType, items: int) -> float:
    """anyio's memory object stream on its asyncio backend (a checkpoint in every call)."""
    send, receive = anyio.create_memory_object_stream(50)
    end = anyio.EndOfStream

    async def produce() -> None:
        async with send:
            for i in range(items):
                await send.send(i)

    start = time.perf_counter()
    producer = asyncio.create_task(produce())
    received = 0
    with receive:
        while True:
            try:
                await receive.receive()
            except end:
                break
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
    tx, rx = broadcast[int](CAPACITY)
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
    # put_nowait never finds one full: the sender yields every 64 values, each consumer drains
    queues: list[asyncio.Queue[int | None]] = [asyncio.Queue(CAPACITY) for _ in range(subscribers)]
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


async def frequenz_delivery(channels: ModuleType, items: int, subscribers: int) -> float:
    """frequenz-channels' broadcast: one receiver (limit=CAPACITY) per subscriber task."""
    if hasattr(channels, "BroadcastChannel"):  # 1.12 on; it deprecates `Broadcast`
        with warnings.catch_warnings():  # 1.12.0 builds the deprecated class itself and warns
            warnings.filterwarnings("ignore", "Please use BroadcastChannel", DeprecationWarning)
            tx, first = channels.BroadcastChannel("bench", limit=CAPACITY)
        receivers = [first] + [tx.subscribe(limit=CAPACITY) for _ in range(subscribers - 1)]
        close = tx.aclose  # the channel closes itself with its last sender
    else:  # 1.6 to 1.11: the same channel class underneath, built by hand
        chan = channels.Broadcast(name="bench")
        tx = chan.new_sender()
        receivers = [chan.new_receiver(limit=CAPACITY) for _ in range(subscribers)]
        close = getattr(chan, "aclose", None) or chan.close
    counts = [0] * subscribers

    async def consume(k: int) -> None:
        async for _ in receivers[k]:  # the idiomatic loop; receive() adds a try/except per call
            counts[k] += 1

    start = time.perf_counter()
    tasks = [asyncio.create_task(consume(k)) for k in range(subscribers)]
    await asyncio.sleep(0)
    send = tx.send
    for i in range(items):
        await send(i)  # does not suspend: an uncontended lock and notify_all
        if i % 64 == 63:
            await asyncio.sleep(0)
    await close()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    assert counts == [items] * subscribers, "a subscriber lagged; the comparison is unfair"
    return elapsed


def median_times(rounds: int, contenders: dict[str, Timed]) -> dict[str, float]:
    """Run every contender once per round, each on a fresh loop, the order rotating from
    round to round; return each one's median time."""
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            gc.collect()
            times[name].append(asyncio.run(contenders[name]()))
    return {name: statistics.median(t) for name, t in times.items()}


def median_pair(rounds: int, a: Timed, b: Timed) -> tuple[float, float]:
    """Run a and b alternately `rounds` times on fresh loops; return their median times."""
    t = median_times(rounds, {"a": a, "b": b})
    return t["a"], t["b"]


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


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
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: tiny sizes, 1 round (figures meaningless)",
    )
    args = parser.parse_args()
    n, rounds = args.items, args.rounds
    sends, q_sends, deliveries = 200_000, 20_000, 3_200_000
    if args.quick:
        n, rounds, sends, q_sends, deliveries = 2_000, 1, 2_000, 200, 32_000
    print(f"Python {sys.version.split()[0]}; median of {rounds} rounds; lower time is better")
    aiochannel = optional("aiochannel", "aiochannel")
    anyio = optional("anyio", "anyio")
    frequenz = optional("frequenz.channels", "frequenz-channels")
    print()

    hops: dict[str, Timed] = {
        "channel(50)": lambda: mpsc_hop(n),
        "asyncio.Queue(50)": lambda: queue_hop(n),
    }
    if aiochannel is not None:
        hops["aiochannel.Channel(50)"] = lambda: aiochannel_hop(aiochannel, n)
    if anyio is not None:
        hops["anyio memory stream(50)"] = lambda: anyio_hop(anyio, n)
    t = median_times(rounds, hops)
    base = t["asyncio.Queue(50)"]
    print(f"1. mpsc hop, {n:,} items, capacity 50")
    for name, elapsed in t.items():
        print(f"   {name:<24}{elapsed * 1e3:8.1f} ms  ({n / elapsed:,.0f} items/s)")
    ours = t["channel(50)"] / base
    print(f"   ratio channel / Queue = {ours:.2f}x   (target <= 0.70: {verdict(ours <= 0.70)})")
    if aiochannel is not None:
        theirs = t["aiochannel.Channel(50)"] / base
        print(
            f"   ratio aiochannel / Queue = {theirs:.2f}x   "
            f"(target: channel ahead of aiochannel: {verdict(ours < theirs)})"
        )
    if anyio is not None:
        print(f"   ratio anyio / Queue = {t['anyio memory stream(50)'] / base:.2f}x")
    print()

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

    cap = CAPACITY
    peer = ", frequenz-channels broadcast (limit=100)" if frequenz is not None else ""
    print(f"3. broadcast delivery: every value to every subscriber, broadcast({cap}) vs")
    print(f"   one asyncio.Queue({cap}) per subscriber{peer}; deliveries/s")
    ahead = True
    for subs in (4, 64, 1024):
        items = min(50_000, deliveries // subs)  # about the same work at every N
        contenders: dict[str, Timed] = {
            "broadcast": partial(broadcast_delivery, items, subs),
            "Queue": partial(queue_delivery, items, subs),
        }
        if frequenz is not None:
            contenders["frequenz"] = partial(frequenz_delivery, frequenz, items, subs)
        t = median_times(rounds, contenders)
        rate = {name: items * subs / elapsed for name, elapsed in t.items()}
        ours = rate["broadcast"] / rate["Queue"]
        print(
            f"   {subs:>4} subscribers, {items:,} values: broadcast {rate['broadcast']:,.0f}/s, "
            f"Queue fan-out {rate['Queue']:,.0f}/s, ratio = {ours:.2f}x   (target >= 0.80)"
        )
        if frequenz is not None:
            theirs = rate["frequenz"] / rate["Queue"]
            ahead = ahead and ours > theirs
            print(
                f"        frequenz {rate['frequenz']:,.0f}/s, ratio = {theirs:.2f}x   "
                f"(broadcast ahead: {'yes' if ours > theirs else 'NO'})"
            )
    if frequenz is not None:
        print(f"   target: broadcast ahead of frequenz at every N: {verdict(ahead)}")


if __name__ == "__main__":
    main()
