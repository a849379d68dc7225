"""Check the exercises of notebook 03: an observer that never sees a stale value, a threshold.

Both checks drive a watch channel of their own in loop turns (no clock), run the learner's
coroutine as a task they own, and finish it before they return.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from telemetry_lab.errors import ChannelClosed
from telemetry_lab.exercises._check import exercise, reject, surface
from telemetry_lab.primitives import WatchReceiver, watch

__all__ = ["check_exercise_1", "check_exercise_2"]

Collect = Callable[[WatchReceiver[int]], Awaitable[Any]]
WaitUntil = Callable[[WatchReceiver[int], int], Awaitable[Any]]

LIMIT = 1.0
"""Seconds an answer may take to return once it has everything it needs."""
BURSTS = ([1], [2, 3, 4], [5], [6, 7])
"""What the first case of Exercise 1 sends, a burst at a time (loop turns in between)."""
LATEST = {0, 1, 4, 5, 7}
"""The values that were ever the latest when an observer could look."""


async def _settle(turns: int = 5) -> None:
    """Let every task that is ready run (a few turns of the event loop, no clock)."""
    for _ in range(turns):
        await asyncio.sleep(0)


async def _finish(task: asyncio.Future[Any]) -> None:
    """Cancel `task` if it still runs and wait until it has ended."""
    task.cancel()
    await asyncio.wait([task])


async def _result(task: asyncio.Future[Any], late: str, hint: str) -> Any:
    """What `task` returned within `LIMIT` seconds (its error is raised), or a rejection."""
    done, _ = await asyncio.wait([task], timeout=LIMIT)
    if not done:
        reject(late, hint)
    return task.result()


def _judge_seen(seen: object, case: str, first: int, final: int) -> list[Any]:
    """Reject what `collect` returned unless it starts at `first`, ends at `final`, only rises."""
    if not isinstance(seen, list):
        reject(
            f"{case}: collect returned {type(seen).__name__}, not a list",
            "collect the values in a list, `seen`, and `return seen` when the channel closes",
        )
    if seen[:1] != [first]:
        reject(
            f"{case}: the list does not start with the value current when collect started "
            f"({first})",
            "start with it: `seen = [rx.borrow_and_update()]`, then wait for changes",
        )
    if seen[-1:] != [final]:
        reject(
            f"{case}: the final value {final}, sent just before the close, is missing",
            "loop on `await rx.changed()`: it returns once more for an unseen final value, "
            "then raises ChannelClosed; `has_changed()` raises as soon as the sender closes",
        )
    if any(a >= b for a, b in itertools.pairwise(seen)):
        reject(
            f"{case}: a value was looked at twice, or went backwards",
            "append once per `await rx.changed()`, reading with `rx.borrow_and_update()`",
        )
    return seen


@exercise(1)
async def check_exercise_1(collect: Collect) -> str:
    """Check `collect(rx)`: the current value, then each unseen latest value, the final one."""
    # Bursts: only the last value of a burst can be current when the observer looks.
    tx, rx = watch(0)
    task = asyncio.ensure_future(collect(rx))
    try:
        await _settle()
        for burst in BURSTS:
            for v in burst:
                tx.send(v)
            await _settle()
        tx.close()
        seen = await _result(
            task,
            f"collect did not return within {LIMIT:g} s of the close",
            "`await rx.changed()` raises ChannelClosed once the sender is closed and the final "
            "value seen: catch it and `return seen`",
        )
    finally:
        await _finish(task)
        rx.close()
    seen = _judge_seen(seen, "bursts 1 | 2 3 4 | 5 | 6 7", 0, 7)
    if not set(seen) <= LATEST:
        reject(
            "bursts 1 | 2 3 4 | 5 | 6 7: a value from the middle of a burst was looked at, "
            "though it had been replaced before the observer could run",
            "read the value when you look, with `rx.borrow_and_update()` after "
            "`await rx.changed()`, not from anywhere else",
        )

    # A final value sent just before the close.
    tx, rx = watch(0)
    task = asyncio.ensure_future(collect(rx))
    try:
        await _settle()
        tx.send(98)
        tx.send(99)
        tx.close()
        last = await _result(
            task,
            f"collect did not return within {LIMIT:g} s of the close",
            "catch ChannelClosed from `await rx.changed()` and `return seen`",
        )
    finally:
        await _finish(task)
        rx.close()
    last = _judge_seen(last, "98, 99, then the close", 0, 99)
    if last != [0, 99]:
        reject(
            "98, 99, then the close: 98 was replaced before the observer could look",
            "read the value with `rx.borrow_and_update()` once `rx.changed()` returns",
        )
    return f"saw {seen}, never a stale value, and the final 99 before the close"


@exercise(2)
async def check_exercise_2(wait_until: WaitUntil) -> str:
    """Check `wait_until(rx, threshold)`: the first value >= threshold, the current included."""
    tx, rx = watch(0)
    task = asyncio.ensure_future(wait_until(rx, 5))
    fresh: WatchReceiver[int] | None = None
    try:
        for n in range(1, 9):
            tx.send(n)
            await _settle()
            if n < 5 and task.done():
                surface(task)
                reject(
                    f"wait_until(rx, 5) returned when the counter was only {n}",
                    "return only a value that is `>= threshold`: `rx.wait_for(pred)` waits "
                    "until one comes",
                )
            if n == 5 and not task.done():
                reject(
                    "the counter reached 5, but wait_until(rx, 5) was still waiting",
                    "test every new value, the moment it arrives: `>= threshold`, not `>`",
                )
        surface(task)
        value = task.result()
        if value is True:
            reject(
                "wait_until returned True, the predicate's answer, not the counter's value",
                "return what `rx.wait_for(pred)` returns: the value itself",
            )
        if value != 5:
            reject(
                f"wait_until(rx, 5) returned {value!r}, not the first value >= 5",
                "return the value that passed, `await rx.wait_for(lambda v: v >= threshold)`",
            )

        fresh = tx.subscribe()  # a new receiver: the current value 8 counts as seen
        current = asyncio.ensure_future(wait_until(fresh, 3))
        try:
            got = await _result(
                current,
                "wait_until(rx, 3) waited for a change, but the current value 8 already passes",
                "look at the current value first: `rx.wait_for(pred)` includes it, "
                "`rx.changed()` waits for the next send",
            )
        finally:
            await _finish(current)
        if got != 8:
            reject(
                f"wait_until(rx, 3) returned {got!r}, not the current value 8, which passes",
                "the current value counts: `rx.wait_for(pred)` returns it at once",
            )

        tx.close()  # closed below the threshold: ChannelClosed
        never = asyncio.ensure_future(wait_until(fresh, 100))
        try:
            try:
                got = await _result(
                    never,
                    "the sender closed below the threshold, but wait_until(rx, 100) kept waiting",
                    "let ChannelClosed propagate: `rx.wait_for` raises it when the channel "
                    "closes first",
                )
            except ChannelClosed:
                pass
            else:
                reject(
                    f"wait_until(rx, 100) returned {type(got).__name__} after the sender closed "
                    "below the threshold, instead of raising ChannelClosed",
                    "do not catch ChannelClosed: let it propagate to the caller",
                )
        finally:
            await _finish(never)
    finally:
        await _finish(task)
        rx.close()
        if fresh is not None:
            fresh.close()
    return "5 at the 5th send, the current 8 at once, and ChannelClosed below the threshold"
