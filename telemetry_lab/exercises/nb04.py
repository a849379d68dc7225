"""Check the exercises of notebook 04: a gather with a concurrency limit, a time prediction.

`check_exercise_1` runs ten real (short) jobs through the learner's `limited_gather` and
counts how many are inside at once, as `MeteredSemaphore` does. `check_exercise_2` compares
the learner's formula with jobs timed under a real `asyncio.Semaphore` on a virtual clock
(in a worker thread, so the notebook's loop keeps running), exact to the nanosecond.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import numbers
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from telemetry_lab.exercises._check import exercise, reject
from telemetry_lab.virtual_time import VirtualTimeEventLoop

__all__ = ["check_exercise_1", "check_exercise_2"]

Job = Coroutine[Any, Any, int]
LimitedGather = Callable[[list[Job], int], Awaitable[Any]]
MinTotalTime = Callable[[int, int, float], Any]

JOBS = 10
PATIENCE = 1.0
"""Seconds `limited_gather` may take: the ten jobs sleep 0.11 s in all, one at a time."""


class _Meter:
    """Jobs that count how many of them are running at once (a MeteredSemaphore's view)."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.finished = 0

    async def job(self, i: int) -> int:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(0.002 * (JOBS - i))  # later jobs finish first
            return i * i
        finally:
            self.running -= 1
            self.finished += 1


def _close_unstarted(coros: Sequence[Job]) -> None:
    """Close the jobs the answer never started (no "coroutine was never awaited" warning)."""
    for coro in coros:
        if inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
            coro.close()


async def _settle(meter: _Meter) -> None:
    """Give jobs the answer left running the time to end by themselves (they only sleep)."""
    for _ in range(50):
        if not meter.running:
            return
        await asyncio.sleep(0.005)


async def _discard(result: object) -> None:
    """Cancel and wait for an awaitable the answer returned instead of its results."""
    if inspect.iscoroutine(result):
        result.close()
    elif isinstance(result, asyncio.Future):
        result.cancel()
        await asyncio.wait([result])
        if not result.cancelled():
            result.exception()  # retrieved: no "exception was never retrieved" log


async def _one_run(limited_gather: LimitedGather, limit: int) -> None:
    meter = _Meter()
    coros = [meter.job(i) for i in range(JOBS)]
    try:
        async with asyncio.timeout(PATIENCE):
            results = await limited_gather(coros, limit)
    except TimeoutError:
        reject(
            f"limited_gather(10 jobs, limit={limit}) did not return within {PATIENCE:g} s "
            f"({meter.finished} of the 10 jobs finished): a permit was never given back, "
            "or it waits for something that never comes",
            "take the permit with `async with sem:` around `return await coro`, so that it "
            "is released when each job ends, even on an error",
        )
    finally:
        _close_unstarted(coros)
    if inspect.isawaitable(results):
        await _discard(results)
        reject(
            "limited_gather returned an awaitable (a coroutine, task or future), not the results",
            "await it before you return: `return await asyncio.gather(...)`",
        )
    left_running = meter.running
    await _settle(meter)
    if left_running:
        reject(
            f"{left_running} jobs were still running when limited_gather returned",
            "wait for every job before you return: `await asyncio.gather(...)` of them all, "
            "not tasks created and left behind",
        )
    if meter.peak > limit:
        reject(
            f"with limit={limit}, {meter.peak} jobs ran at once: nothing held them back",
            "create ONE `asyncio.Semaphore(limit)` per call, shared by every job, and hold "
            "it around `await coro` (a semaphore per job limits nothing)",
        )
    try:
        got = list(results)
    except TypeError:
        reject(
            f"limited_gather returned {type(results).__name__}, not a list of results",
            "return what `await asyncio.gather(...)` gives: one result per coroutine",
        )
    want = [i * i for i in range(JOBS)]
    if got != want:
        if sorted(got, key=repr) == sorted(want, key=repr):
            reject(
                "the results came back in the order the jobs finished, not in input order",
                "asyncio.gather keeps the order of its arguments (as_completed and "
                "asyncio.wait do not): gather the gated coroutines in input order",
            )
        reject(
            f"limited_gather returned {len(got)} values that are not the 10 jobs' results "
            "(job i returns i * i)",
            "return each coroutine's own result: `return await coro` inside the gated "
            "helper, and gather one helper per coroutine",
        )
    if meter.peak < limit:
        reject(
            f"with limit={limit} at most {meter.peak} job ran at once: the jobs ran one "
            "after another",
            "start them all together with `asyncio.gather(*...)`: the semaphore alone "
            "decides how many are inside (do not await them one by one in a loop)",
        )


@exercise(1)
async def check_exercise_1(limited_gather: LimitedGather) -> str:
    """Check `limited_gather(coros, limit)`: at most `limit` at once, results in input order."""
    for limit in (1, 3, 4):
        await _one_run(limited_gather, limit)
    try:
        async with asyncio.timeout(PATIENCE):
            empty = await limited_gather([], 2)
    except TimeoutError:
        reject(
            "limited_gather([], 2) did not return",
            "with no coroutines there is nothing to wait for: return [] at once",
        )
    if inspect.isawaitable(empty) or list(empty) != []:
        await _discard(empty)
        reject("limited_gather([], 2) did not return []", "no coroutines: no results")
    return "limits 1, 3 and 4 reached and never exceeded, results in input order"


def measure(n: int, k: int, d: float) -> float:
    """Time `n` jobs that each hold one of `k` permits for `d` seconds (virtual clock).

    Blocking: it runs its own `VirtualTimeEventLoop`, so call it in a worker thread.
    """

    async def jobs() -> float:
        gate = asyncio.Semaphore(k)

        async def job() -> None:
            async with gate:
                await asyncio.sleep(d)

        clock = asyncio.get_running_loop()
        started = clock.time()
        await asyncio.gather(*(job() for _ in range(n)))
        return clock.time() - started

    with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner:
        return runner.run(jobs())


CASES = ((7, 3, 0.1), (6, 3, 0.1), (9, 4, 0.25), (1, 4, 0.5), (10, 1, 0.02), (0, 3, 1.0))
"""(n, k, d) in the order they are checked: the first tells most wrong formulas apart."""

Formula = Callable[[int, int, float], float]

CLASSIC: tuple[tuple[Formula, str, str], ...] = (
    (
        lambda n, k, d: n / k * d,
        "you divided without rounding up, as if a job could be split across rounds",
        "a job holds its permit for the whole d: count whole rounds, `math.ceil(n / k) * d`",
    ),
    (
        lambda n, k, d: n // k * d,
        "you rounded down and dropped the last, partial round (7 = 3 + 3 + 1: the 7th job "
        "runs alone, for d seconds more)",
        "round the number of rounds up: `math.ceil(n / k)`",
    ),
    (
        lambda n, k, d: n * d,
        "you ignored the permits, as if one job ran at a time",
        "k jobs hold a permit at once, so the jobs go in rounds of k: `math.ceil(n / k) * d`",
    ),
    (
        lambda n, k, d: d if n else 0.0,
        "you assumed every job runs at once",
        "only k hold a permit at a time: the others wait for a round to end",
    ),
)
"""Wrong formulas learners write: (formula, the mistake, the hint)."""


@exercise(2)
async def check_exercise_2(min_total_time: MinTotalTime) -> str:
    """Check `min_total_time(n, k, d)` against jobs timed under a real Semaphore(k)."""
    for n, k, d in CASES:
        got = min_total_time(n, k, d)
        where = f"min_total_time({n}, {k}, {d})"
        if isinstance(got, bool) or not isinstance(got, numbers.Real):
            reject(
                f"{where} returned {type(got).__name__}, not a number of seconds",
                "return a float: the number of rounds times d",
            )
        took = await asyncio.to_thread(measure, n, k, d)
        if math.isclose(got, took, abs_tol=1e-9):
            continue
        seen = f"{where} = {float(got):g} s, but {n} jobs under Semaphore({k}) took {took:g} s"
        for formula, mistake, hint in CLASSIC:
            if math.isclose(got, formula(n, k, d), abs_tol=1e-9):
                reject(f"{seen}: {mistake}", hint)
        if n == 0:
            reject(f"{seen}: no jobs take no time", "return 0 when n is 0")
        reject(
            f"{seen}: the formula does not count the rounds",
            "each round runs up to k jobs side by side for d seconds; how many rounds do n "
            "jobs need?",
        )
    return f"{len(CASES)} predictions match jobs timed under a real semaphore"
