"""The checkers of notebook 02 accept a right answer and explain the classic wrong ones."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from telemetry_lab import ChannelClosed, ChannelEmpty, Lagged
from telemetry_lab.exercises import ExerciseRejected
from telemetry_lab.exercises.nb02 import check_exercise_1, check_exercise_2

NOT_ATTEMPTED = (
    "⏳ Exercise {n} is not attempted yet: replace `raise NotImplementedError` in the cell "
    "above with your answer, run that cell, then this one.\n"
)


async def stub(*args: Any) -> None:
    raise NotImplementedError


def sync_stub(capacity: int, sends: int) -> Any:
    # Your answer here: replace the next line.
    raise NotImplementedError


async def drain(rx: Any) -> tuple[list[Any], int]:
    values: list[Any] = []
    total_skipped = 0
    while True:
        try:
            values.append(await rx.recv())
        except Lagged as err:
            total_skipped += err.skipped
        except ChannelClosed:
            return values, total_skipped


async def drain_while_truthy(rx: Any) -> tuple[list[Any], int]:
    values: list[Any] = []
    total_skipped = 0
    while rx:  # truthy until closed and drained
        try:
            values.append(await rx.recv())
        except Lagged as err:
            total_skipped += err.skipped
        except ChannelClosed:
            break
    return values, total_skipped


async def async_for(rx: Any) -> tuple[list[Any], int]:
    return [value async for value in rx], 0


async def stops_at_lagged(rx: Any) -> tuple[list[Any], int]:
    values: list[Any] = []
    while True:
        try:
            values.append(await rx.recv())
        except (Lagged, ChannelClosed):
            return values, 0


async def counts_lag_events(rx: Any) -> tuple[list[Any], int]:
    values: list[Any] = []
    lags = 0
    while True:
        try:
            values.append(await rx.recv())
        except Lagged:
            lags += 1
        except ChannelClosed:
            return values, lags


async def never_waits(rx: Any) -> tuple[list[Any], int]:
    values: list[Any] = []
    total_skipped = 0
    while True:
        try:
            values.append(rx.try_recv())
        except Lagged as err:
            total_skipped += err.skipped
        except (ChannelEmpty, ChannelClosed):
            return values, total_skipped


async def try_recv_unguarded(rx: Any) -> tuple[list[Any], int]:
    values: list[Any] = []
    total_skipped = 0
    while True:
        try:
            values.append(rx.try_recv())
        except Lagged as err:
            total_skipped += err.skipped
        except ChannelClosed:
            return values, total_skipped


async def forgets_to_return(rx: Any) -> tuple[list[Any], int]:
    values: list[Any] = []
    while True:
        try:
            values.append(await rx.recv())
        except Lagged:
            pass
        except ChannelClosed:
            await asyncio.Event().wait()  # "wait for more"


async def test_exercise_1_accepts_the_solution(capsys: pytest.CaptureFixture[str]) -> None:
    assert (await check_exercise_1(drain)).passed
    assert (await check_exercise_1(drain_while_truthy)).passed
    assert capsys.readouterr().out == 2 * (
        "✅ Exercise 1 passed: both channels drained, 7 and 6 skipped values counted\n"
    )
    assert (await check_exercise_1(drain, solution=True)).passed


async def test_exercise_1_stub_is_not_attempted(capsys: pytest.CaptureFixture[str]) -> None:
    assert not (await check_exercise_1(stub)).passed
    assert capsys.readouterr().out == NOT_ATTEMPTED.format(n=1)
    with pytest.raises(NotImplementedError):
        await check_exercise_1(stub, solution=True)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            async_for,
            r"`Lagged` escaped from drain: a lag is not the end of the channel\n   Hint: catch "
            r"`Lagged` around each `await rx\.recv\(\)`, add `err\.skipped` to the total and "
            r"keep reading \(`async for` stops at the first Lagged\); only `ChannelClosed` "
            r"ends the loop$",
        ),
        (
            stops_at_lagged,
            r"closed channel \(capacity 3, 10 sent\): drain stopped after 0 of the 3 values "
            r"still kept for it\n   Hint: a Lagged is not the end",
        ),
        (
            counts_lag_events,
            r"closed channel \(capacity 3, 10 sent\): total_skipped is 1, the number of Lagged "
            r"errors, not the number of values they skipped\n   Hint: add `err\.skipped`",
        ),
        (
            never_waits,
            r"drain ended while the channel was still open \(no sender had closed it\)\n"
            r"   Hint: wait for the next value with `await rx\.recv\(\)`, not `try_recv\(\)`",
        ),
        (
            try_recv_unguarded,
            r"drain ended while the channel was still open",
        ),
        (
            forgets_to_return,
            r"on a closed channel drain did not return within 1 s\n   Hint: `await "
            r"rx\.recv\(\)` raises `ChannelClosed` once the channel is closed and drained: "
            r"catch it and return$",
        ),
    ],
    ids=lambda v: getattr(v, "__name__", "message"),
)
async def test_exercise_1_explains_the_classic_mistakes(answer: Any, message: str) -> None:
    with pytest.raises(ExerciseRejected, match=r"^❌ Exercise 1: " + message):
        await check_exercise_1(answer)
    assert asyncio.all_tasks() == {asyncio.current_task()}  # the check finished its tasks


def expected_lag(capacity: int, sends: int) -> tuple[int, list[int]]:
    skipped = max(0, sends - capacity)
    return skipped, list(range(skipped, sends))


def negative(capacity: int, sends: int) -> tuple[int, list[int]]:
    skipped = sends - capacity
    return skipped, list(range(max(0, skipped), sends))


def off_by_one(capacity: int, sends: int) -> tuple[int, list[int]]:
    skipped = max(0, sends - capacity - 1)
    return skipped, list(range(skipped, sends))


def newest_lost(capacity: int, sends: int) -> tuple[int, list[int]]:
    skipped = max(0, sends - capacity)
    return skipped, list(range(min(sends, capacity)))  # keeps the oldest, as put_nowait did


def as_range(capacity: int, sends: int) -> tuple[int, range]:
    skipped = max(0, sends - capacity)
    return skipped, range(skipped, sends)


def power_of_two(capacity: int, sends: int) -> tuple[int, list[int]]:
    kept = 1 << (capacity - 1).bit_length()  # Tokio's rounding: not this package's
    skipped = max(0, sends - kept)
    return skipped, list(range(skipped, sends))


def test_exercise_2_accepts_the_solution(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_exercise_2(expected_lag).passed
    assert capsys.readouterr().out == (
        "✅ Exercise 2 passed: 78 predictions, all matching the real channel\n"
    )
    assert check_exercise_2(expected_lag, solution=True).passed


def test_exercise_2_stub_is_not_attempted(capsys: pytest.CaptureFixture[str]) -> None:
    assert not check_exercise_2(sync_stub).passed
    assert capsys.readouterr().out == NOT_ATTEMPTED.format(n=2)
    with pytest.raises(NotImplementedError):
        check_exercise_2(sync_stub, solution=True)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            negative,
            r"capacity=1, sends=0: you predicted a negative skip \(-1\)\n   Hint: nothing is "
            r"overwritten until the ring is full: use `max\(0, \.\.\.\)`$",
        ),
        (
            off_by_one,
            r"capacity=1, sends=2: your skip count is off by one\n   Hint: the ring keeps "
            r"exactly `capacity` values",
        ),
        (
            newest_lost,
            r"capacity=1, sends=2: the skip count is right, but the values read after it are "
            r"not what the ring still keeps\n   Hint: after Lagged the receiver goes on with "
            r"the oldest value still kept",
        ),
        (
            as_range,
            r"capacity=1, sends=0: the values are a range, not a list\n   Hint: wrap it",
        ),
        (
            power_of_two,
            r"capacity=3, sends=4: you predicted a ring of 4 slots, as Tokio rounds "
            r"`broadcast::channel\(3\)` up to a power of two\n   Hint: this package's "
            r"`broadcast\(capacity\)` keeps exactly `capacity` values$",
        ),
    ],
    ids=lambda v: getattr(v, "__name__", "message"),
)
def test_exercise_2_explains_the_classic_mistakes(answer: Any, message: str) -> None:
    with pytest.raises(ExerciseRejected, match=r"^❌ Exercise 2: " + message):
        check_exercise_2(answer)
