"""The checkers of notebook 04 accept a right answer and explain the classic wrong ones."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from telemetry_lab.exercises import ExerciseRejected
from telemetry_lab.exercises.nb04 import check_exercise_1, check_exercise_2, measure


async def limited_gather(coros: Any, limit: int) -> Any:
    gate = asyncio.Semaphore(limit)

    async def gated(coro: Any) -> Any:
        async with gate:
            return await coro

    return await asyncio.gather(*(gated(c) for c in coros))


async def one_semaphore_per_job(coros: Any, limit: int) -> Any:
    async def gated(coro: Any) -> Any:
        async with asyncio.Semaphore(limit):  # a new bag of permits for every job
            return await coro

    return await asyncio.gather(*(gated(c) for c in coros))


async def one_after_another(coros: Any, limit: int) -> Any:
    gate = asyncio.Semaphore(limit)
    results = []
    for coro in coros:
        async with gate:
            results.append(await coro)
    return results


async def completion_order(coros: Any, limit: int) -> Any:
    gate = asyncio.Semaphore(limit)

    async def gated(coro: Any) -> Any:
        async with gate:
            return await coro

    return [await f for f in asyncio.as_completed([gated(c) for c in coros])]


async def permit_never_released(coros: Any, limit: int) -> Any:
    gate = asyncio.Semaphore(limit)

    async def gated(coro: Any) -> Any:
        await gate.acquire()  # ...and never release()
        return await coro

    return await asyncio.gather(*(gated(c) for c in coros))


async def stub(*args: Any) -> None:
    raise NotImplementedError


def min_total_time(n: int, k: int, d: float) -> float:
    return math.ceil(n / k) * d


def stub_formula(n: int, k: int, d: float) -> float:
    # Your answer here: replace the next line.
    raise NotImplementedError


async def test_exercise_1_accepts_the_solution(capsys: pytest.CaptureFixture[str]) -> None:
    assert (await check_exercise_1(limited_gather)).passed
    assert capsys.readouterr().out == (
        "✅ Exercise 1 passed: limits 1, 3 and 4 reached and never exceeded, results in "
        "input order\n"
    )


async def test_a_stub_is_not_attempted_and_raises_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert not (await check_exercise_1(stub)).passed
    assert not (await check_exercise_2(stub_formula)).passed
    out = capsys.readouterr().out
    assert out.startswith("⏳ Exercise 1 is not attempted yet: replace `raise NotImplementedError`")
    assert "⏳ Exercise 2 is not attempted yet" in out
    with pytest.raises(NotImplementedError):
        await check_exercise_1(stub, solution=True)
    with pytest.raises(NotImplementedError):
        await check_exercise_2(stub_formula, solution=True)


async def test_exercise_1_explains_a_semaphore_per_job() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: with limit=1, 10 jobs ran at once: nothing held them back\n"
        r"   Hint: create ONE `asyncio.Semaphore\(limit\)` per call, shared by every job",
    ):
        await check_exercise_1(one_semaphore_per_job)


async def test_exercise_1_explains_jobs_awaited_one_by_one() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: with limit=3 at most 1 job ran at once: the jobs ran one "
        r"after another\n   Hint: start them all together with `asyncio.gather",
    ):
        await check_exercise_1(one_after_another)


async def test_exercise_1_explains_completion_order() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: the results came back in the order the jobs finished, not in "
        r"input order\n   Hint: asyncio.gather keeps the order of its arguments",
    ):
        await check_exercise_1(completion_order)


async def test_exercise_1_explains_a_permit_never_released() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: limited_gather\(10 jobs, limit=1\) did not return within 1 s "
        r"\(1 of the 10 jobs finished\): a permit was never given back",
    ):
        await check_exercise_1(permit_never_released)


def test_the_measurement_is_exact_on_the_virtual_clock() -> None:
    assert measure(7, 3, 0.1) == pytest.approx(0.3)
    assert measure(0, 3, 1.0) == 0.0


async def test_exercise_2_accepts_the_solution(capsys: pytest.CaptureFixture[str]) -> None:
    assert (await check_exercise_2(min_total_time)).passed
    assert capsys.readouterr().out == (
        "✅ Exercise 2 passed: 6 predictions match jobs timed under a real semaphore\n"
    )
    assert (await check_exercise_2(lambda n, k, d: (n + k - 1) // k * d)).passed


@pytest.mark.parametrize(
    ("formula", "mistake", "hint"),
    [
        (
            lambda n, k, d: n / k * d,
            r"min_total_time\(7, 3, 0.1\) = 0.233333 s, but 7 jobs under Semaphore\(3\) took "
            r"0.3 s: you divided without rounding up",
            r"a job holds its permit for the whole d",
        ),
        (
            lambda n, k, d: n // k * d,
            r"= 0.2 s, but 7 jobs under Semaphore\(3\) took 0.3 s: you rounded down",
            r"round the number of rounds up",
        ),
        (lambda n, k, d: n * d, r"you ignored the permits", r"k jobs hold a permit at once"),
        (lambda n, k, d: d, r"you assumed every job runs at once", r"only k hold a permit"),
        (
            lambda n, k, d: math.ceil(n / k * d),
            r"= 1 s, but 7 jobs under Semaphore\(3\) took 0.3 s: the formula does not count",
            r"each round runs up to k jobs",
        ),
    ],
)
async def test_exercise_2_names_the_wrong_formula(formula: Any, mistake: str, hint: str) -> None:
    with pytest.raises(ExerciseRejected, match=rf"^❌ Exercise 2: .*{mistake}.*\n   Hint: {hint}"):
        await check_exercise_2(formula)


async def test_exercise_2_wants_a_number() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: min_total_time\(7, 3, 0.1\) returned str, not a number of "
        r"seconds\n   Hint: return a float",
    ):
        await check_exercise_2(lambda n, k, d: "0.3 s")
