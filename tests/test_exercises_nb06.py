"""The checkers of notebook 06 accept a right answer and explain the classic wrong ones."""

from __future__ import annotations

from typing import Any

import pytest

from telemetry_lab import JoinSet
from telemetry_lab.exercises import ExerciseRejected
from telemetry_lab.exercises.nb06 import check_exercise_1, check_exercise_2


async def first_n_results(coros: Any, n: int) -> list[Any]:
    results: list[Any] = []
    async with JoinSet() as js:
        for coro in coros:
            js.spawn(coro)
        while len(results) < n and (task := await js.join_next()) is not None:
            results.append(task.result())
    return results


async def waits_for_all(coros: Any, n: int) -> list[Any]:
    async with JoinSet() as js:
        for coro in coros:
            js.spawn(coro)
        return (await js.join_all())[:n]


async def never_cancels(coros: Any, n: int) -> list[Any]:
    js: JoinSet[Any] = JoinSet()
    for coro in coros:
        js.spawn(coro)
    results = []
    while len(results) < n and (task := await js.join_next()) is not None:
        results.append(task.result())
    return results  # the other tasks keep running, owned by nobody


async def aborts_without_waiting(coros: Any, n: int) -> list[Any]:
    js: JoinSet[Any] = JoinSet()
    for coro in coros:
        js.spawn(coro)
    results = []
    while len(results) < n and (task := await js.join_next()) is not None:
        results.append(task.result())
    js.abort_all()  # only asks them to stop
    return results


async def returns_tasks(coros: Any, n: int) -> list[Any]:
    tasks = []
    async with JoinSet() as js:
        for coro in coros:
            js.spawn(coro)
        while len(tasks) < n and (task := await js.join_next()) is not None:
            tasks.append(task)
    return tasks


async def stub(*args: Any) -> None:
    raise NotImplementedError


async def test_exercise_1_accepts_the_solution(capsys: pytest.CaptureFixture[str]) -> None:
    assert (await check_exercise_1(first_n_results)).passed
    assert capsys.readouterr().out == (
        "✅ Exercise 1 passed: 30, 0, 40 in completion order; jobs 1 and 2 cancelled and awaited\n"
    )


async def test_a_stub_is_not_attempted_and_raises_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert not (await check_exercise_1(stub)).passed
    assert not (await check_exercise_2(stub)).passed
    out = capsys.readouterr().out
    assert out.startswith("⏳ Exercise 1 is not attempted yet: replace `raise NotImplementedError`")
    assert "⏳ Exercise 2 is not attempted yet" in out
    with pytest.raises(NotImplementedError):
        await check_exercise_1(stub, solution=True)
    with pytest.raises(NotImplementedError):
        await check_exercise_2(stub, solution=True)


async def test_exercise_1_explains_waiting_for_every_task() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: first_n_results did not return within 1 s: only jobs 3, 0 and "
        r"4 ever finish.*\n   Hint: take exactly n tasks with `await js.join_next\(\)`",
    ):
        await check_exercise_1(waits_for_all)


async def test_exercise_1_explains_tasks_left_running() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: jobs 1 and 2 were still running after first_n_results returned "
        r"\(nobody cancelled them: they finished later\)\n   Hint: cancel the rest and wait",
    ):
        await check_exercise_1(never_cancels)


async def test_exercise_1_explains_abort_all_without_waiting() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: jobs 1 and 2 were asked to stop but were still running when "
        r"you returned\n   Hint: `abort_all\(\)` only asks",
    ):
        await check_exercise_1(aborts_without_waiting)


async def test_exercise_1_explains_returning_tasks() -> None:
    with pytest.raises(
        ExerciseRejected, match=r"^❌ Exercise 1: first_n_results returned tasks, not their results"
    ):
        await check_exercise_1(returns_tasks)


async def supervise(make_coro: Any, k: int) -> int:
    restarts = 0
    while True:
        try:
            await make_coro()
            return restarts
        except Exception:
            if restarts == k:
                raise
            restarts += 1


async def one_restart_too_few(make_coro: Any, k: int) -> int:
    last: Exception | None = None
    for restarts in range(max(k, 1)):  # k runs: the first run counted as a restart
        try:
            await make_coro()
            return restarts
        except Exception as exc:
            last = exc
    assert last is not None
    raise last


async def one_restart_too_many(make_coro: Any, k: int) -> int:
    last: Exception | None = None
    for restarts in range(k + 2):
        try:
            await make_coro()
            return restarts
        except Exception as exc:
            last = exc
    assert last is not None
    raise last


async def raises_the_first_failure(make_coro: Any, k: int) -> int:
    first: Exception | None = None
    for restarts in range(k + 1):
        try:
            await make_coro()
            return restarts
        except Exception as exc:
            first = first or exc
    assert first is not None
    raise first


async def counts_runs(make_coro: Any, k: int) -> int:
    return await supervise(make_coro, k) + 1


async def swallows_cancellation(make_coro: Any, k: int) -> int:
    restarts = 0
    while True:
        try:
            await make_coro()
            return restarts
        except BaseException:  # CancelledError too
            if restarts == k:
                raise
            restarts += 1


async def test_exercise_2_accepts_the_solution(capsys: pytest.CaptureFixture[str]) -> None:
    assert (await check_exercise_2(supervise)).passed
    assert capsys.readouterr().out == (
        "✅ Exercise 2 passed: restarts counted, k respected, the last failure re-raised, "
        "cancellation let through\n"
    )


async def test_exercise_2_names_one_restart_too_few() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: with k=2 and a coroutine that always fails, your supervisor ran "
        r"it 2 times, so 1 restarts: one restart too few\n"
        r"   Hint: the first run is not a restart: k restarts means k \+ 1 runs",
    ):
        await check_exercise_2(one_restart_too_few)


async def test_exercise_2_names_one_restart_too_many() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: with k=2 and a coroutine that always fails, your supervisor ran "
        r"it 4 times, so 3 restarts: one restart too many\n   Hint: give up when",
    ):
        await check_exercise_2(one_restart_too_many)


async def test_exercise_2_wants_the_last_failure() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: with k=2 supervise raised ConnectionError\('attempt 1 failed'\), "
        r"not the last failure \(ConnectionError\('attempt 3 failed'\)\)\n   Hint: re-raise",
    ):
        await check_exercise_2(raises_the_first_failure)


async def test_exercise_2_explains_counting_runs() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: supervise returned 3 for a coroutine that failed twice and then "
        r"succeeded: that counts runs, not restarts",
    ):
        await check_exercise_2(counts_runs)


async def test_exercise_2_explains_a_swallowed_cancellation() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: your supervisor was cancelled, yet it returned after 2 runs: it "
        r"caught the cancellation.*\n   Hint: catch `Exception`, not `BaseException`",
    ):
        await check_exercise_2(swallows_cancellation)


async def test_exercise_2_explains_restarting_forever() -> None:
    async def ignores_k(make_coro: Any, k: int) -> int:
        restarts = 0
        while True:
            try:
                await make_coro()
                return restarts
            except Exception:
                restarts += 1

    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: supervise\(make_coro, 2\) did not return within 1 s \(\d+ runs\): "
        r"it kept restarting\n   Hint: count the restarts",
    ):
        await check_exercise_2(ignores_k)
