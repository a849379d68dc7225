"""The checkers of notebook 12 accept a right answer and explain the classic wrong ones."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from telemetry_lab import Gateway
from telemetry_lab.exercises import ExerciseRejected
from telemetry_lab.exercises.nb12 import check_exercise_1, check_exercise_2


async def run_with_knob(config: Any, at: float, **knobs: Any) -> Any:
    gw = Gateway(config)
    task = asyncio.create_task(gw.run())
    await asyncio.sleep(at)
    gw.adjust(**knobs)
    return await task, gw.series


async def fire_and_forget(config: Any, at: float, **knobs: Any) -> Any:
    gw = Gateway(config)
    asyncio.create_task(gw.run())  # noqa: RUF006 (the mistake under test)
    await asyncio.sleep(at)
    gw.adjust(**knobs)
    return gw.report, gw.series


async def knob_never_turned(config: Any, at: float, **knobs: Any) -> Any:
    gw = Gateway(config)
    task = asyncio.create_task(gw.run())
    await asyncio.sleep(at)
    return await task, gw.series


@pytest.mark.async_timeout(30)
async def test_exercise_1_accepts_the_solution() -> None:
    assert (await check_exercise_1(run_with_knob)).passed


@pytest.mark.async_timeout(30)
async def test_exercise_1_explains_a_fire_and_forget_task() -> None:
    """Found: a fire-and-forget answer got "expected samples before and after the change"."""
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: the run was still going when run_with_knob returned: a "
        r"fire-and-forget task nobody owns\n   Hint: keep the task",
    ):
        await check_exercise_1(fire_and_forget)
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == {asyncio.current_task()}  # the checker cleaned up


@pytest.mark.async_timeout(30)
async def test_exercise_1_explains_a_knob_that_never_turned() -> None:
    with pytest.raises(
        ExerciseRejected, match=r"^❌ Exercise 1: the storage channel did not fill after the"
    ):
        await check_exercise_1(knob_never_turned)


async def stub(config: Any, at: float, **knobs: Any) -> Any:
    raise NotImplementedError


async def test_exercise_1_stub_is_not_attempted(capsys: pytest.CaptureFixture[str]) -> None:
    assert not (await check_exercise_1(stub)).passed
    assert capsys.readouterr().out.startswith("⏳ Exercise 1 is not attempted yet")


def telemetry_pressure(stats: Any) -> tuple[float, bool]:
    channel = stats.telemetry
    return channel.current_buffer_used / channel.max_buffer_size, channel.tasks_waiting_send > 0


def test_exercise_2_accepts_the_solution() -> None:
    assert check_exercise_2(telemetry_pressure).passed


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            lambda s: (s.telemetry.current_buffer_used, s.telemetry.tasks_waiting_send > 0),
            r"for a channel holding 50 of 50 with 3 senders waiting it gave 50 as the fraction: "
            r"that is the count\n   Hint: divide by the capacity",
        ),
        (
            lambda s: (
                100 * s.telemetry.current_buffer_used / s.telemetry.max_buffer_size,
                s.telemetry.tasks_waiting_send > 0,
            ),
            r"it gave 100.0: a percentage\n   Hint: a fraction from 0.0 to 1.0",
        ),
        (
            lambda s: (
                s.telemetry.current_buffer_used / s.telemetry.max_buffer_size,
                s.telemetry.current_buffer_used == s.telemetry.max_buffer_size,
            ),
            r"for a channel holding 7 of 10 with 1 senders waiting 'blocked' should be True, "
            r"got False\n   Hint: devices are blocked when senders wait in send\(\)",
        ),
        (
            lambda s: s.telemetry.current_buffer_used / s.telemetry.max_buffer_size,
            r"it returned 1.0, not a pair\n   Hint: return two values",
        ),
    ],
    ids=["count", "percentage", "full-is-not-blocked", "one-value"],
)
def test_exercise_2_explains_the_classic_mistakes(answer: Any, message: str) -> None:
    """Found: a bare `AssertionError: True` / `100.0`."""
    with pytest.raises(ExerciseRejected, match=message):
        check_exercise_2(answer)
