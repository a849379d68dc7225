"""Check the exercises of notebook 02: drain a lossy receiver, predict a lag.

Exercise 1 runs the learner's `drain(rx)` on a closed channel and on a live one that lags it
twice, driving the sender in loop turns (no clock). Exercise 2 compares the learner's
`expected_lag(capacity, sends)` with what a real `broadcast` channel does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from telemetry_lab.errors import ChannelEmpty, Lagged
from telemetry_lab.exercises._check import exercise, reject, surface
from telemetry_lab.primitives import BroadcastReceiver, broadcast

__all__ = ["check_exercise_1", "check_exercise_2"]

Drain = Callable[[BroadcastReceiver[int]], Awaitable[Any]]
ExpectedLag = Callable[[int, int], Any]

DRAIN_LIMIT = 1.0
"""Seconds `drain` may take to return once its channel is closed."""
LIVE_BURSTS = ([0, 1, 2, 3, 4], [5], [6, 7, 8, 9, 10])
"""What the live case sends into a `broadcast(2)`, a burst at a time."""
CAPACITIES = range(1, 7)
SENDS = range(13)

LAGGED_ESCAPED = (
    "`Lagged` escaped from drain: a lag is not the end of the channel",
    "catch `Lagged` around each `await rx.recv()`, add `err.skipped` to the total and keep "
    "reading (`async for` stops at the first Lagged); only `ChannelClosed` ends the loop",
)


async def _settle(turns: int = 5) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)


async def _finish(task: asyncio.Future[Any]) -> None:
    """Cancel `task` if it still runs and wait until it has ended."""
    task.cancel()
    await asyncio.wait([task])


async def _outcome(task: asyncio.Future[Any], late: str, hint: str) -> Any:
    """What `task` (the learner's drain) returned within the time limit, or a rejection."""
    done, _ = await asyncio.wait([task], timeout=DRAIN_LIMIT)
    if not done:
        reject(late, hint)
    try:
        return task.result()
    except Lagged:
        reject(*LAGGED_ESCAPED)


def _pair(result: object, case: str) -> tuple[list[Any], Any]:
    """`result` as `(values, total_skipped)`, or a rejection that says what came back."""
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], list)):
        reject(
            f"{case}: drain returned {type(result).__name__}, not a pair (values, total_skipped)",
            "end with `return values, total_skipped`: a list and an int",
        )
    return result[0], result[1]


def _judge(
    result: object, rx: BroadcastReceiver[int], expected: tuple[list[int], int], case: str
) -> None:
    """Reject `result` of `drain` on `case` unless it is `expected`, naming the likely slip."""
    values, skipped = _pair(result, case)
    want_values, want_skipped = expected
    events = rx.statistics().total_lag_events
    if values == want_values and skipped == events != want_skipped:
        reject(
            f"{case}: total_skipped is {skipped}, the number of Lagged errors, not the number "
            "of values they skipped",
            "add `err.skipped` (how many values that lag cost), not 1 per Lagged",
        )
    if values == want_values and skipped != want_skipped:
        reject(
            f"{case}: the values are right, but total_skipped is {skipped} instead of the "
            f"{want_skipped} values the lags skipped",
            "add `err.skipped` for every Lagged you catch, and only then",
        )
    if len(values) < len(want_values) and values == want_values[: len(values)]:
        reject(
            f"{case}: drain stopped after {len(values)} of the {len(want_values)} values "
            "still kept for it",
            "a Lagged is not the end: after a lag the receiver goes on with the oldest value "
            "still kept, so keep calling `recv()` until it raises `ChannelClosed`",
        )
    if values != want_values:
        reject(
            f"{case}: drain collected {values}, not the {len(want_values)} values kept for "
            "this receiver, in order",
            "append each value `await rx.recv()` returns, once, in the order received; "
            "do not resubscribe or read another receiver",
        )


@exercise(1)
async def check_exercise_1(drain: Drain) -> str:
    """Check `drain(rx)`: every value kept, the skipped counts summed, waits while open."""
    # A closed channel: capacity 3, ten values sent before anyone read.
    tx, rx = broadcast[int](3)
    for i in range(10):
        tx.send(i)
    tx.close()
    task = asyncio.ensure_future(drain(rx))
    try:
        result = await _outcome(
            task,
            f"on a closed channel drain did not return within {DRAIN_LIMIT:g} s",
            "`await rx.recv()` raises `ChannelClosed` once the channel is closed and drained: "
            "catch it and return",
        )
    finally:
        await _finish(task)
        rx.close()
    _judge(result, rx, ([7, 8, 9], 7), "closed channel (capacity 3, 10 sent)")

    # A live channel: drain must wait while it is open, and survive two lags.
    tx, rx = broadcast[int](2)
    task = asyncio.ensure_future(drain(rx))
    try:
        for burst in LIVE_BURSTS:
            for v in burst:
                tx.send(v)
            await _settle()
            if task.done():
                if not task.cancelled() and isinstance(task.exception(), Lagged):
                    reject(*LAGGED_ESCAPED)
                if task.cancelled() or not isinstance(task.exception(), ChannelEmpty):
                    surface(task)
                reject(
                    "drain ended while the channel was still open (no sender had closed it)",
                    "wait for the next value with `await rx.recv()`, not `try_recv()` (which "
                    "raises ChannelEmpty instead of waiting); only `ChannelClosed` ends the loop",
                )
        tx.close()
        result = await _outcome(
            task,
            f"drain did not return within {DRAIN_LIMIT:g} s after the sender closed",
            "catch `ChannelClosed` from `await rx.recv()` and return",
        )
    finally:
        await _finish(task)
        rx.close()
    _judge(result, rx, ([3, 4, 5, 9, 10], 6), "live channel (capacity 2, 11 sent in 3 bursts)")
    return "both channels drained, 7 and 6 skipped values counted"


def _real_lag(capacity: int, sends: int) -> tuple[int, list[int]]:
    """What a receiver of `broadcast(capacity)` meets after `sends` values: (skipped, values)."""
    tx, rx = broadcast[int](capacity)
    for i in range(sends):
        tx.send(i)
    skipped, values = 0, []
    while True:
        try:
            values.append(rx.try_recv())
        except Lagged as err:
            skipped += err.skipped
        except ChannelEmpty:
            break
    rx.close()
    tx.close()
    return skipped, values


def _rounded_lag(kept: int, sends: int) -> tuple[int, list[int]]:
    """The right answer for a ring of `kept` slots."""
    skipped = max(0, sends - kept)
    return skipped, list(range(skipped, sends))


@exercise(2, sync=True)
def check_exercise_2(expected_lag: ExpectedLag) -> str:
    """Check `expected_lag(capacity, sends)` against a real channel, capacities 1-6, 0-12 sends."""
    for capacity in CAPACITIES:
        for sends in SENDS:
            real = _real_lag(capacity, sends)
            predicted = expected_lag(capacity, sends)
            if predicted == real:
                continue
            case = f"capacity={capacity}, sends={sends}"
            if not (isinstance(predicted, tuple) and len(predicted) == 2):
                reject(
                    f"{case}: expected_lag returned {type(predicted).__name__}, not a pair "
                    "(skipped, values)",
                    "return a tuple: `return skipped, values`",
                )
            skipped, values = predicted
            if isinstance(values, range):
                reject(
                    f"{case}: the values are a range, not a list",
                    "wrap it: `list(range(...))`",
                )
            if isinstance(skipped, int) and skipped < 0:
                reject(
                    f"{case}: you predicted a negative skip ({skipped})",
                    "nothing is overwritten until the ring is full: use `max(0, ...)`",
                )
            if skipped == real[0]:
                reject(
                    f"{case}: the skip count is right, but the values read after it are not "
                    "what the ring still keeps",
                    "after Lagged the receiver goes on with the oldest value still kept, so it "
                    "reads the last `capacity` values sent: from `skipped` up to `sends - 1`",
                )
            tokio = 1 << (capacity - 1).bit_length()  # Tokio's ring: a power of two
            if tokio != capacity and predicted == _rounded_lag(tokio, sends):
                reject(
                    f"{case}: you predicted a ring of {tokio} slots, as Tokio rounds "
                    f"`broadcast::channel({capacity})` up to a power of two",
                    "this package's `broadcast(capacity)` keeps exactly `capacity` values",
                )
            if isinstance(skipped, int) and abs(skipped - real[0]) == 1:
                reject(
                    f"{case}: your skip count is off by one",
                    "the ring keeps exactly `capacity` values, the last ones sent: everything "
                    "older than those was overwritten",
                )
            reject(
                f"{case}: you predicted {predicted!r}, but the channel skipped {real[0]} "
                f"and then gave {real[1]}",
                "the ring keeps the last `capacity` values; a receiver that has read nothing "
                "skips the rest, then reads what is kept, oldest first",
            )
    return f"{len(CAPACITIES) * len(SENDS)} predictions, all matching the real channel"
