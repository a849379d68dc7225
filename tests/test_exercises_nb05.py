"""The checkers of notebook 05 accept a right answer and explain the classic wrong ones."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from telemetry_lab import channel
from telemetry_lab.exercises import ExerciseRejected
from telemetry_lab.exercises.nb05 import check_exercise_1, check_exercise_2


async def job_worker(notify: Any, inbox: Any, process: Any) -> None:
    while True:
        while inbox:
            await process(inbox.popleft())
        await notify.notified()


async def one_job_per_wake_up(notify: Any, inbox: Any, process: Any) -> None:
    while True:
        await notify.notified()
        await process(inbox.popleft())  # a stored permit may stand for several jobs


async def polling_worker(notify: Any, inbox: Any, process: Any) -> None:
    while True:
        while inbox:
            await process(inbox.popleft())
        await asyncio.sleep(0.0001)  # never waits on the Notify


async def stub(*args: Any) -> None:
    raise NotImplementedError


async def test_exercise_1_accepts_the_solution(capsys: pytest.CaptureFixture[str]) -> None:
    result = await check_exercise_1(job_worker)
    assert result.passed
    out = capsys.readouterr().out
    assert out.startswith("✅ Exercise 1 passed: 13 jobs handled in order")


async def test_exercise_1_with_solution_true_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert (await check_exercise_1(job_worker, solution=True)).passed
    assert capsys.readouterr().out.startswith("✅ The solution to Exercise 1 passes its check")


async def test_a_stub_is_not_attempted_and_raises_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = await check_exercise_1(stub)
    assert not result.passed
    assert capsys.readouterr().out == (
        "⏳ Exercise 1 is not attempted yet: replace `raise NotImplementedError` in the cell "
        "above with your answer, run that cell, then this one.\n"
    )
    with pytest.raises(NotImplementedError):  # the solution cell must not pass silently
        await check_exercise_1(stub, solution=True)


async def test_exercise_1_explains_one_job_per_wake_up() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"(?s)^❌ Exercise 1: jobs sent but never handled: \[.*"
        r"Hint: one notify_one\(\) can stand for several jobs",
    ):
        await check_exercise_1(one_job_per_wake_up)


async def test_exercise_1_explains_polling_instead_of_waiting() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"not waiting on the Notify\n   Hint: when the inbox is empty, "
        r"`await notify.notified\(\)`",
    ):
        await check_exercise_1(polling_worker)


async def two_stage(inbox: Any, outbox: Any) -> None:
    mid_tx, mid_rx = channel[int](3)

    async def stage_1() -> None:
        with mid_tx:
            async for x in inbox:
                await mid_tx.send(x * 2)

    async def stage_2() -> None:
        with outbox:
            async for y in mid_rx:
                await outbox.send(y + 1)

    async with asyncio.TaskGroup() as group:
        group.create_task(stage_1())
        group.create_task(stage_2())


async def never_closes(inbox: Any, outbox: Any) -> None:
    async for x in inbox:
        await outbox.send(x * 2 + 1)  # outbox is never closed


async def stops_at_closed(inbox: Any, outbox: Any) -> None:
    with outbox:
        while not inbox.is_closed:  # closed is not drained: True from the start
            await outbox.send(await inbox.recv() * 2 + 1)


async def test_exercise_2_accepts_the_solution() -> None:
    assert (await check_exercise_2(two_stage)).passed


@pytest.mark.async_timeout(15)
async def test_exercise_2_explains_an_output_never_closed() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"not finished after 2 s, 30 values came out\n   Hint: each stage must close",
    ):
        await check_exercise_2(never_closes)


@pytest.mark.async_timeout(15)
async def test_exercise_2_explains_closed_is_not_drained() -> None:
    with pytest.raises(
        ExerciseRejected, match=r"values lost or reordered: \[\]\n   Hint:|nothing came out"
    ):
        await check_exercise_2(stops_at_closed)
