"""The checkers of notebook 03 accept a right answer and explain the classic wrong ones."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from telemetry_lab import ChannelClosed
from telemetry_lab.exercises import ExerciseRejected
from telemetry_lab.exercises.nb03 import check_exercise_1, check_exercise_2

NOT_ATTEMPTED = (
    "⏳ Exercise {n} is not attempted yet: replace `raise NotImplementedError` in the cell "
    "above with your answer, run that cell, then this one.\n"
)


async def stub(*args: Any) -> None:
    raise NotImplementedError


async def collect(rx: Any) -> list[Any]:
    seen = [rx.borrow_and_update()]
    while True:
        try:
            await rx.changed()
        except ChannelClosed:
            return seen
        seen.append(rx.borrow_and_update())


async def starts_empty(rx: Any) -> list[Any]:
    seen: list[Any] = []
    while True:
        try:
            await rx.changed()
        except ChannelClosed:
            return seen
        seen.append(rx.borrow_and_update())


async def polls_has_changed(rx: Any) -> list[Any]:
    seen = [rx.borrow_and_update()]
    while True:
        try:
            changed = rx.has_changed()  # raises as soon as the sender closes
        except ChannelClosed:
            return seen
        if changed:
            seen.append(rx.borrow_and_update())
        else:
            await asyncio.sleep(0)


async def never_returns(rx: Any) -> list[Any]:
    seen = [rx.borrow_and_update()]
    while True:
        try:
            await rx.changed()
        except ChannelClosed:
            await asyncio.Event().wait()  # waits for a sender that is gone
        seen.append(rx.borrow_and_update())


async def returns_a_tuple(rx: Any) -> Any:
    return tuple(await collect(rx))


async def test_exercise_1_accepts_the_solution(capsys: pytest.CaptureFixture[str]) -> None:
    assert (await check_exercise_1(collect)).passed
    assert capsys.readouterr().out == (
        "✅ Exercise 1 passed: saw [0, 1, 4, 5, 7], never a stale value, and the final 99 "
        "before the close\n"
    )
    assert (await check_exercise_1(collect, solution=True)).passed


async def test_exercise_1_stub_is_not_attempted(capsys: pytest.CaptureFixture[str]) -> None:
    assert not (await check_exercise_1(stub)).passed
    assert capsys.readouterr().out == NOT_ATTEMPTED.format(n=1)
    with pytest.raises(NotImplementedError):
        await check_exercise_1(stub, solution=True)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            starts_empty,
            r"bursts 1 \| 2 3 4 \| 5 \| 6 7: the list does not start with the value current "
            r"when collect started \(0\)\n   Hint: start with it: "
            r"`seen = \[rx\.borrow_and_update\(\)\]`, then wait for changes$",
        ),
        (
            polls_has_changed,
            r"98, 99, then the close: the final value 99, sent just before the close, is "
            r"missing\n   Hint: loop on `await rx\.changed\(\)`: it returns once more for an "
            r"unseen final value, then raises ChannelClosed; `has_changed\(\)` raises as soon "
            r"as the sender closes$",
        ),
        (
            never_returns,
            r"collect did not return within 1 s of the close\n   Hint: `await rx\.changed\(\)` "
            r"raises ChannelClosed once the sender is closed",
        ),
        (
            returns_a_tuple,
            r"bursts 1 \| 2 3 4 \| 5 \| 6 7: collect returned tuple, not a list\n",
        ),
    ],
    ids=lambda v: getattr(v, "__name__", "message"),
)
async def test_exercise_1_explains_the_classic_mistakes(answer: Any, message: str) -> None:
    with pytest.raises(ExerciseRejected, match=r"^❌ Exercise 1: " + message):
        await check_exercise_1(answer)
    assert asyncio.all_tasks() == {asyncio.current_task()}  # the check finished its tasks


async def wait_until(rx: Any, threshold: int) -> Any:
    return await rx.wait_for(lambda value: value >= threshold)


async def waits_for_a_change_first(rx: Any, threshold: int) -> Any:
    while True:
        await rx.changed()  # misses the current value
        value = rx.borrow_and_update()
        if value >= threshold:
            return value


async def strictly_above(rx: Any, threshold: int) -> Any:
    return await rx.wait_for(lambda value: value > threshold)


async def swallows_the_close(rx: Any, threshold: int) -> Any:
    try:
        return await rx.wait_for(lambda value: value >= threshold)
    except ChannelClosed:
        return None


async def returns_the_test(rx: Any, threshold: int) -> Any:
    value = await rx.wait_for(lambda value: value >= threshold)
    return value >= threshold


async def test_exercise_2_accepts_the_solution(capsys: pytest.CaptureFixture[str]) -> None:
    assert (await check_exercise_2(wait_until)).passed
    assert capsys.readouterr().out == (
        "✅ Exercise 2 passed: 5 at the 5th send, the current 8 at once, and ChannelClosed "
        "below the threshold\n"
    )
    assert (await check_exercise_2(wait_until, solution=True)).passed


async def test_exercise_2_stub_is_not_attempted(capsys: pytest.CaptureFixture[str]) -> None:
    assert not (await check_exercise_2(stub)).passed
    assert capsys.readouterr().out == NOT_ATTEMPTED.format(n=2)
    with pytest.raises(NotImplementedError):
        await check_exercise_2(stub, solution=True)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            waits_for_a_change_first,
            r"wait_until\(rx, 3\) waited for a change, but the current value 8 already passes\n"
            r"   Hint: look at the current value first: `rx\.wait_for\(pred\)` includes it, "
            r"`rx\.changed\(\)` waits for the next send$",
        ),
        (
            strictly_above,
            r"the counter reached 5, but wait_until\(rx, 5\) was still waiting\n   Hint: test "
            r"every new value, the moment it arrives: `>= threshold`, not `>`$",
        ),
        (
            swallows_the_close,
            r"wait_until\(rx, 100\) returned NoneType after the sender closed below the "
            r"threshold, instead of raising ChannelClosed\n   Hint: do not catch ChannelClosed",
        ),
        (
            returns_the_test,
            r"wait_until returned True, the predicate's answer, not the counter's value\n",
        ),
    ],
    ids=lambda v: getattr(v, "__name__", "message"),
)
async def test_exercise_2_explains_the_classic_mistakes(answer: Any, message: str) -> None:
    with pytest.raises(ExerciseRejected, match=r"^❌ Exercise 2: " + message):
        await check_exercise_2(answer)
    assert asyncio.all_tasks() == {asyncio.current_task()}
