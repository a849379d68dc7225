"""The checkers of notebook 00 accept a right answer and explain the classic wrong ones."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from telemetry_lab import GatewayConfig, run, run_gateway
from telemetry_lab.exercises import ExerciseRejected
from telemetry_lab.exercises.nb00 import check_exercise_1, check_exercise_2

NOT_ATTEMPTED = (
    "⏳ Exercise {n} is not attempted yet: replace `raise NotImplementedError` in the cell "
    "above with your answer, run that cell, then this one.\n"
)


async def stub(*args: Any) -> None:
    raise NotImplementedError


async def fetch_all(fetch: Any, ids: Any) -> list[Any]:
    tasks = [asyncio.create_task(fetch(i)) for i in ids]
    try:
        return [await task for task in tasks]
    finally:
        for task in tasks:
            task.cancel()


async def fetch_all_gather(fetch: Any, ids: Any) -> list[Any]:
    return list(await asyncio.gather(*(fetch(i) for i in ids)))


async def fetch_all_task_group(fetch: Any, ids: Any) -> list[Any]:
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(fetch(i)) for i in ids]
    return [task.result() for task in tasks]


async def one_by_one(fetch: Any, ids: Any) -> list[Any]:
    return [await fetch(i) for i in ids]


async def awaits_each_task_at_once(fetch: Any, ids: Any) -> list[Any]:
    return [await asyncio.create_task(fetch(i)) for i in ids]


async def in_pairs(fetch: Any, ids: Any) -> list[Any]:
    results: list[Any] = []
    for start in range(0, len(ids), 2):
        results += await asyncio.gather(*(fetch(i) for i in ids[start : start + 2]))
    return results


async def in_completion_order(fetch: Any, ids: Any) -> list[Any]:
    results: list[Any] = []

    async def one(i: int) -> None:
        results.append(await fetch(i))

    await asyncio.gather(*(one(i) for i in ids))
    return results


async def returns_the_tasks(fetch: Any, ids: Any) -> list[Any]:
    return [asyncio.create_task(fetch(i)) for i in ids]


async def forgets_to_wait(fetch: Any, ids: Any) -> list[Any]:
    tasks = [asyncio.create_task(fetch(i)) for i in ids]
    await asyncio.sleep(0.03)  # "long enough"
    return [task.result() for task in tasks if task.done()]


async def waits_forever(fetch: Any, ids: Any) -> list[Any]:
    await asyncio.Event().wait()
    return []


async def test_exercise_1_accepts_the_solution(capsys: pytest.CaptureFixture[str]) -> None:
    for answer in (fetch_all, fetch_all_gather, fetch_all_task_group):
        assert (await check_exercise_1(answer)).passed
    assert capsys.readouterr().out == 3 * (
        "✅ Exercise 1 passed: all 5 fetches ran at the same time, results in the order of ids\n"
    )
    assert (await check_exercise_1(fetch_all, solution=True)).passed
    assert capsys.readouterr().out.startswith("✅ The solution to Exercise 1 passes its check")


async def test_exercise_1_stub_is_not_attempted(capsys: pytest.CaptureFixture[str]) -> None:
    assert not (await check_exercise_1(stub)).passed
    assert capsys.readouterr().out == NOT_ATTEMPTED.format(n=1)
    with pytest.raises(NotImplementedError):
        await check_exercise_1(stub, solution=True)


@pytest.mark.parametrize("answer", [one_by_one, awaits_each_task_at_once])
async def test_exercise_1_explains_one_after_the_other(answer: Any) -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: the fetches ran one after the other: never more than 1 at a "
        r"time\n   Hint: start them all before you wait for any: "
        r"`asyncio\.create_task\(fetch\(i\)\)` for every id, then await the tasks; or "
        r"`await asyncio\.gather\(\*\(fetch\(i\) for i in ids\)\)`; or a `TaskGroup`$",
    ):
        await check_exercise_1(answer)


async def test_exercise_1_explains_a_partial_overlap() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: at most 2 of the 5 fetches ran at the same time\n   Hint: create "
        r"every task first, then await them",
    ):
        await check_exercise_1(in_pairs)


async def test_exercise_1_explains_completion_order() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: the results are in the order the fetches finished \(device 5 "
        r"first\), not in the order of `ids`\n   Hint: keep the tasks in a list",
    ):
        await check_exercise_1(in_completion_order)


async def test_exercise_1_explains_tasks_returned_unawaited() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: fetch_all returned coroutines or tasks, not their results \(an "
        r"`await` is missing\)\n   Hint: await them before returning",
    ):
        await check_exercise_1(returns_the_tasks)
    assert asyncio.all_tasks() == {asyncio.current_task()}  # the check cancelled them


async def test_exercise_1_explains_tasks_left_running() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: fetch_all returned while 3 task\(s\) it started were still "
        r"running \(the check cancelled them\)\n   Hint: a task needs an owner",
    ):
        await check_exercise_1(forgets_to_wait)
    assert asyncio.all_tasks() == {asyncio.current_task()}


@pytest.mark.async_timeout(5)
async def test_exercise_1_turns_a_hang_into_a_rejection() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: fetch_all did not return within 2 s, although the five fetches "
        r"take 0\.05 s when they overlap\n   Hint: await each task you started",
    ):
        await check_exercise_1(waits_forever)


async def count_tasks(db_path: Path) -> int:
    config = GatewayConfig(devices=3, clients=2, duration=0.3, db_path=db_path)
    report = await run_gateway(config)
    return report.tasks_started


async def returns_the_report(db_path: Path) -> Any:
    return await run_gateway(GatewayConfig(devices=3, clients=2, duration=0.3, db_path=db_path))


async def adds_up_devices_and_clients(db_path: Path) -> int:
    config = GatewayConfig(devices=3, clients=2, duration=0.3, db_path=db_path)
    await run_gateway(config)
    return config.devices + config.clients


async def default_devices(db_path: Path) -> int:
    report = await run_gateway(GatewayConfig(duration=0.3, db_path=db_path))
    return report.tasks_started


async def guesses(db_path: Path) -> int:
    return 7


async def blocking_run(db_path: Path) -> int:
    return run(GatewayConfig(devices=3, clients=2, duration=0.3, db_path=db_path)).tasks_started


async def test_exercise_2_accepts_the_solution(capsys: pytest.CaptureFixture[str]) -> None:
    assert (await check_exercise_2(count_tasks)).passed
    assert capsys.readouterr().out == (
        "✅ Exercise 2 passed: 7 tasks: 3 devices, 2 clients, the aggregator and the storage "
        "writer\n"
    )


async def test_exercise_2_stub_is_not_attempted(capsys: pytest.CaptureFixture[str]) -> None:
    assert not (await check_exercise_2(stub)).passed
    assert capsys.readouterr().out == NOT_ATTEMPTED.format(n=2)
    with pytest.raises(NotImplementedError):
        await check_exercise_2(stub, solution=True)


async def test_exercise_2_explains_the_whole_report() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: count_tasks returned the whole Report, not the number of tasks\n"
        r"   Hint: return one field of it: `report\.tasks_started`$",
    ):
        await check_exercise_2(returns_the_report)


async def test_exercise_2_explains_a_count_of_devices_and_clients() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: 5 counts the devices and the clients only\n   Hint: the "
        r"aggregator and the storage writer are tasks too",
    ):
        await check_exercise_2(adds_up_devices_and_clients)


async def test_exercise_2_explains_the_default_config() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: the gateway ran with 7 devices and 4 clients, not 3 and 2\n",
    ):
        await check_exercise_2(default_devices)


async def test_exercise_2_explains_a_guess_that_never_ran() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: no finished run was recorded in the database at `db_path`",
    ):
        await check_exercise_2(guesses)


async def test_exercise_2_explains_the_blocking_run() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: count_tasks called the blocking `run\(\)`, which refuses to run "
        r"inside the loop that is already running\n   Hint: `report = await run_gateway",
    ):
        await check_exercise_2(blocking_run)
