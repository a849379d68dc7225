"""Check the exercises of notebook 13: tests that catch bugs, judged by mutation testing.

Both exercises ask for a *test*, not for code under test. A test is only as good as the
bugs it catches, so each checker runs the learner's test against a correct implementation
(it must pass) and against several *mutants*, copies with one classic bug each (every one
must make the test fail). A mutant the test passes is a bug it would let through: the
checker names it and hints at the assertion that would catch it.

The learner's test runs on the notebook's own loop, as the repository's `conftest.py` runs
an `async def` test, under a bound of `PATIENCE` (Exercise 2: `STAGE_PATIENCE`) real
seconds: a test that needs longer is too slow (Exercise 1: it ran on the real clock), or
hung (a mutant that never ends, and no `asyncio.timeout` in the test).
`run_in_virtual_time` runs a scenario on a `VirtualTimeEventLoop` of its own, in the
calling (worker) thread, with a safety net of `VIRTUAL_LIMIT` virtual seconds, so that no
thread it runs in is ever left behind.
Every task a test leaves behind is cancelled before the checker returns.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from telemetry_lab.exercises._check import ExerciseRejected, cancel_new_tasks, exercise, reject
from telemetry_lab.primitives import Receiver, Sender
from telemetry_lab.virtual_time import VirtualTimeEventLoop

__all__ = [
    "HIGH",
    "LOW",
    "PATIENCE",
    "RETRY_MUTANTS",
    "STAGE_MUTANTS",
    "STAGE_PATIENCE",
    "VIRTUAL_LIMIT",
    "Mutant",
    "VirtualTimeLimit",
    "check_exercise_1",
    "check_exercise_2",
    "keep_in_range",
    "retry",
    "run_in_virtual_time",
]

T = TypeVar("T")

PATIENCE = 1.0
"""Real seconds one run of Exercise 1's test may take (on the virtual clock: milliseconds)."""
STAGE_PATIENCE = 2.0
"""Real seconds one run of Exercise 2's test may take (the stage needs milliseconds)."""
VIRTUAL_LIMIT = 3_600.0
"""Virtual seconds after which `run_in_virtual_time` gives up on its scenario."""
LOW = -40.0
"""The lowest temperature (°C) `keep_in_range` keeps: the sensor's range starts here."""
HIGH = 85.0
"""The highest temperature (°C) `keep_in_range` keeps."""


class VirtualTimeLimit(TimeoutError):
    """A scenario on the virtual clock ran `VIRTUAL_LIMIT` virtual seconds without ending."""


def run_in_virtual_time(
    scenario: Callable[..., Coroutine[Any, Any, T]], *args: Any, limit: float = VIRTUAL_LIMIT
) -> T:
    """Run `scenario(*args)` on a fresh virtual-time loop and return its result.

    Blocking: in a notebook, call it in a worker thread,
    `await asyncio.to_thread(run_in_virtual_time, scenario)`. Whatever the scenario
    waits for, it ends: after `limit` virtual seconds (milliseconds of real time, when the
    scenario only waits) it is cancelled and `VirtualTimeLimit` is raised.
    """

    async def guarded() -> T:
        try:
            async with asyncio.timeout(limit) as net:
                return await scenario(*args)
        except TimeoutError:
            if net.expired():
                raise VirtualTimeLimit(
                    f"the scenario ran {limit:g} virtual seconds without ending"
                ) from None
            raise

    with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner:
        return runner.run(guarded())


@dataclass(frozen=True, slots=True, kw_only=True)
class Mutant:
    """A copy of the code under test with one classic bug."""

    name: str
    """How messages call it."""
    bug: str
    """The bug, in words."""
    hint: str
    """The assertion that catches it."""
    impl: Callable[..., Any]
    """The buggy implementation itself."""
    hangs: bool = False
    """Whether it never ends on some input (a test must bound its waits)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Outcome:
    """How one run of the learner's test ended."""

    passed: bool = False
    bounded: bool = False
    """The checker's bound (real seconds) stopped it."""
    net: bool = False
    """run_in_virtual_time's safety net stopped it."""
    error: BaseException | None = None
    seconds: float = 0.0
    """Real seconds the run took."""


async def _run(
    test: Callable[[Any], Any], impl: Callable[..., Any], what: str, patience: float
) -> _Outcome:
    """Run `test(impl)` on this loop under `patience` real seconds; cancel what it leaves."""
    before = asyncio.all_tasks()
    started = time.perf_counter()
    bound = asyncio.timeout(patience)
    try:
        async with bound:
            pending = test(impl)
            if not inspect.isawaitable(pending):
                reject(
                    f"your {what} returned a {type(pending).__name__}, not something to "
                    "await: write it as `async def`",
                    "the check awaits it, as the repository's conftest.py awaits an "
                    "`async def` test",
                )
            await pending
    except ExerciseRejected:
        raise
    except VirtualTimeLimit as exc:
        return _Outcome(net=True, error=exc, seconds=time.perf_counter() - started)
    except TimeoutError as exc:
        seconds = time.perf_counter() - started
        if bound.expired():
            return _Outcome(bounded=True, seconds=seconds)
        return _Outcome(error=exc, seconds=seconds)
    except Exception as exc:  # a failing test: judged by the check
        return _Outcome(error=exc, seconds=time.perf_counter() - started)
    finally:
        await cancel_new_tasks(before)
    return _Outcome(passed=True, seconds=time.perf_counter() - started)


def _described(exc: BaseException | None) -> str:
    if exc is None:
        return "nothing"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return type(exc).__name__ + (f": {text}" if text else "")


HANG_HINT = (
    "bound every wait in a test with `async with asyncio.timeout(...)`, well under the "
    "check's bound: a hung test then fails with a traceback instead of blocking CI (on the "
    "virtual clock even a generous timeout costs no real time)"
)


def _judge_correct(
    outcome: _Outcome, what: str, subject: str, patience: float, hint: str, fails_hint: str
) -> None:
    """The test must pass on the correct implementation, quickly."""
    if outcome.bounded:
        reject(
            f"your {what} did not finish within {patience:g} s of real time on the correct "
            f"{subject}",
            hint,
        )
    if outcome.net:
        reject(
            f"your {what} ran {VIRTUAL_LIMIT:g} virtual seconds on the correct {subject} "
            "without finishing: it waits for something that never happens",
            "await only the code under test and what it needs; close every channel you "
            "feed, so that whatever reads it can end",
        )
    error = outcome.error
    if isinstance(error, AssertionError | TimeoutError):
        reject(
            f"your {what} fails on the correct {subject} ({_described(error)}): a test "
            "must pass when the code is right",
            fails_hint,
        )
    if error is not None:
        error.add_note(f"(your {what} raised this on the correct {subject})")
        raise error  # a bug in the test (or a stub): shown with its traceback


def _judge_mutants(
    outcomes: list[tuple[Mutant, _Outcome]],
    what: str,
    subject: str,
    patience: float,
    slow_hint: str,
) -> None:
    """Every mutant must make the test fail, on its own, in time."""
    for mutant, outcome in outcomes:
        if (outcome.bounded or outcome.net) and mutant.hangs:
            stopped = (
                f"{patience:g} s of real time, when the check's bound stopped it"
                if outcome.bounded
                else f"{VIRTUAL_LIMIT:g} virtual seconds, when run_in_virtual_time's "
                "safety net stopped it"
            )
            reject(
                f"your {what} hung on the mutant that {mutant.bug} ({mutant.name}): it "
                f"was still waiting after {stopped}",
                HANG_HINT,
            )
        if outcome.bounded:
            reject(
                f"your {what} took more than {patience:g} s of real time on the mutant that "
                f"{mutant.bug} ({mutant.name})",
                slow_hint,
            )
    survivors = [mutant for mutant, outcome in outcomes if outcome.passed]
    if survivors:
        first = survivors[0]
        names = ", ".join(m.name for m in survivors)
        reject(
            f"{len(survivors)} of {len(outcomes)} mutants survived your {what} ({names}): "
            f"it passes on a {subject} that {first.bug}",
            first.hint,
        )


# --- Exercise 1: retry, and its mutants ---------------------------------------------------


Op = Callable[[], Awaitable[Any]]


async def retry(op: Op, *, attempts: int, delay: float) -> Any:
    """Await `op()` until it succeeds, at most `attempts` times, `delay` s between tries.

    Returns what the first successful call returns. There is no wait before the first
    call and none after the last; when every call fails, the last call's exception is
    re-raised. `attempts` must be at least 1.
    """
    for attempt in range(1, attempts + 1):
        try:
            return await op()
        except Exception:
            if attempt == attempts:
                raise
            await asyncio.sleep(delay)
    raise ValueError(f"attempts must be >= 1, got {attempts!r}")


async def retry_gives_up_early(op: Op, *, attempts: int, delay: float) -> Any:
    for attempt in range(1, max(attempts - 1, 1) + 1):  # one call too few
        try:
            return await op()
        except Exception:
            if attempt >= attempts - 1:
                raise
            await asyncio.sleep(delay)
    return None


async def retry_swallows_the_error(op: Op, *, attempts: int, delay: float) -> Any:
    for attempt in range(1, attempts + 1):
        try:
            return await op()
        except Exception:
            if attempt == attempts:
                return None  # the failure vanishes: the caller gets None
            await asyncio.sleep(delay)
    return None


async def retry_without_waiting(op: Op, *, attempts: int, delay: float) -> Any:
    for attempt in range(1, attempts + 1):
        try:
            return await op()
        except Exception:
            if attempt == attempts:
                raise  # and no sleep between tries: it hammers a struggling service
    return None


async def retry_waits_after_the_last(op: Op, *, attempts: int, delay: float) -> Any:
    for attempt in range(1, attempts + 1):
        try:
            return await op()
        except Exception:
            await asyncio.sleep(delay)  # before the check: one wait too many at the end
            if attempt == attempts:
                raise
    return None


async def retry_never_gives_up(op: Op, *, attempts: int, delay: float) -> Any:
    for attempt in range(1, attempts + 1):
        try:
            return await op()
        except Exception:
            if attempt == attempts:
                await asyncio.get_running_loop().create_future()  # waits for nothing, forever
            await asyncio.sleep(delay)
    return None


RETRY_MUTANTS = (
    Mutant(
        name="gives up early",
        bug="calls op at most attempts - 1 times",
        hint="let op fail attempts - 1 times and then succeed: the right retry returns its "
        "value; count the calls",
        impl=retry_gives_up_early,
    ),
    Mutant(
        name="swallows the error",
        bug="returns None when every call fails, instead of re-raising",
        hint="make op fail every time and assert that retry raises op's exception (catch "
        "it with try/except, and fail the test if nothing was raised)",
        impl=retry_swallows_the_error,
    ),
    Mutant(
        name="does not wait",
        bug="retries at once, without waiting `delay` between two calls",
        hint="record `loop.time()` at each call of op and assert the times: on the "
        "virtual clock they are exact, `[0, 30, 60]` for delay=30",
        impl=retry_without_waiting,
    ),
    Mutant(
        name="waits after the last call",
        bug="waits `delay` once more after the last failed call before raising",
        hint="when every call fails, assert how long retry took: (attempts - 1) * delay, "
        "not attempts * delay",
        impl=retry_waits_after_the_last,
    ),
    Mutant(
        name="never gives up",
        bug="never returns when every call fails",
        hint=HANG_HINT,
        impl=retry_never_gives_up,
        hangs=True,
    ),
)
"""The bugs Exercise 1's test must catch, in the order the check tries them."""

SLOW_RETRY = (
    "in real time every `delay` really passes: run the scenario on the virtual clock, "
    "`await asyncio.to_thread(run_in_virtual_time, scenario)`, and its waits take no "
    "real time at all"
)

WRONG_RETRY = (
    "check each expectation against retry's contract: op called up to `attempts` times, "
    "`delay` between two calls, no wait before the first or after the last, the last error "
    "re-raised; on the virtual clock, measure time with `asyncio.get_running_loop().time()` "
    "(`time.monotonic()` barely moves there)"
)


@exercise(1)
async def check_exercise_1(test_retry: Callable[[Any], Any]) -> str:
    """Check `test_retry(retry)`: passes on the correct retry, fails on every mutant."""
    what = "test_retry(retry)"
    good = await _run(test_retry, retry, what, PATIENCE)
    _judge_correct(good, what, "retry", PATIENCE, SLOW_RETRY, WRONG_RETRY)
    outcomes = [(m, await _run(test_retry, m.impl, what, PATIENCE)) for m in RETRY_MUTANTS]
    _judge_mutants(outcomes, what, "retry", PATIENCE, SLOW_RETRY)
    slowest = max([good.seconds, *(o.seconds for _, o in outcomes)])
    return (
        f"it passes on the correct retry and catches all {len(RETRY_MUTANTS)} mutants, "
        f"each run in under {math.ceil(slowest * 1000):.0f} ms of real time"
    )


# --- Exercise 2: keep_in_range, and its mutants -------------------------------------------


def _in_range(celsius: float) -> bool:
    return LOW <= celsius <= HIGH


async def keep_in_range(rx: Receiver[float], tx: Sender[float]) -> None:
    """Forward every reading within [LOW, HIGH] °C from `rx` to `tx`, in order.

    Readings out of range (NaN too) are dropped. `tx` is closed when the stage ends, on
    every path; the stage starts no task of its own.
    """
    with tx:
        async for celsius in rx:
            if _in_range(celsius):
                await tx.send(celsius)


async def stage_keeps_everything(rx: Receiver[float], tx: Sender[float]) -> None:
    with tx:
        async for celsius in rx:
            await tx.send(celsius)  # no filter at all


async def stage_excludes_the_limits(rx: Receiver[float], tx: Sender[float]) -> None:
    with tx:
        async for celsius in rx:
            if LOW < celsius < HIGH:  # < instead of <=
                await tx.send(celsius)


async def stage_drops_the_last(rx: Receiver[float], tx: Sender[float]) -> None:
    held: float | None = None
    with tx:
        async for celsius in rx:
            if _in_range(celsius):
                if held is not None:
                    await tx.send(held)
                held = celsius  # held back until the next one; the last is never sent


async def stage_reorders(rx: Receiver[float], tx: Sender[float]) -> None:
    pair: list[float] = []
    with tx:
        async for celsius in rx:
            if _in_range(celsius):
                pair.append(celsius)
            if len(pair) == 2:
                while pair:
                    await tx.send(pair.pop())  # a stack: each pair back to front
        for celsius in pair:
            await tx.send(celsius)


async def stage_never_closes(rx: Receiver[float], tx: Sender[float]) -> None:
    async for celsius in rx:  # no `with tx:`: whoever reads tx waits forever
        if _in_range(celsius):
            await tx.send(celsius)


async def _watchdog() -> None:
    await asyncio.sleep(3_600)  # "checks on the stage" for an hour: outlives any test


async def stage_leaks_a_task(rx: Receiver[float], tx: Sender[float]) -> None:
    asyncio.get_running_loop().create_task(_watchdog(), name="keep_in_range-watchdog")
    with tx:  # right in every other way, but the watchdog outlives the stage
        async for celsius in rx:
            if _in_range(celsius):
                await tx.send(celsius)


STAGE_MUTANTS = (
    Mutant(
        name="keeps everything",
        bug="forwards every reading, in range or not",
        hint=f"feed it readings out of range too (below {LOW:g}, above {HIGH:g}, NaN) and "
        "assert they are not in the output",
        impl=stage_keeps_everything,
    ),
    Mutant(
        name="excludes the limits",
        bug=f"drops {LOW:g} and {HIGH:g} themselves (< instead of <=)",
        hint=f"test the boundaries: {LOW:g} and {HIGH:g} are in range and must come out",
        impl=stage_excludes_the_limits,
    ),
    Mutant(
        name="drops the last",
        bug="holds each reading back until the next one comes, and never sends the last",
        hint="assert the whole output list, `assert out == [...]`: its length, its last item",
        impl=stage_drops_the_last,
    ),
    Mutant(
        name="reorders",
        bug="sends its readings out of order (each pair back to front)",
        hint="assert the output as a list, in order (not a set, not sorted), with at least "
        "two readings kept",
        impl=stage_reorders,
    ),
    Mutant(
        name="never closes",
        bug="never closes tx, so whoever reads it waits forever",
        hint="assert that the output ends: collect it with `async for` (it ends only when "
        "tx is closed) under `asyncio.timeout`, or assert `rx_out.is_closed` once the stage "
        "has returned",
        impl=stage_never_closes,
        hangs=True,
    ),
    Mutant(
        name="leaks a task",
        bug="starts a watchdog task that outlives it",
        hint="take `before = asyncio.all_tasks()` before running the stage and assert "
        "afterwards that no task created since is still running",
        impl=stage_leaks_a_task,
    ),
)
"""The bugs Exercise 2's test must catch, in the order the check tries them."""

SLOW_STAGE = (
    "the stage needs milliseconds: feed it a few readings with `try_send`, close the input, "
    "and await its end under `asyncio.timeout`"
)

WRONG_STAGE = (
    f"check each expectation against keep_in_range's contract: readings from {LOW:g} to "
    f"{HIGH:g} °C, both included, come out in the order they went in; the others (NaN too) "
    "do not; tx is closed when the input ends"
)


@exercise(2)
async def check_exercise_2(check_stage: Callable[[Any], Any]) -> str:
    """Check `check_stage(stage)`: passes on keep_in_range, fails on every mutant."""
    what = "check_stage(stage)"
    good = await _run(check_stage, keep_in_range, what, STAGE_PATIENCE)
    _judge_correct(good, what, "stage (keep_in_range)", STAGE_PATIENCE, SLOW_STAGE, WRONG_STAGE)
    outcomes = [(m, await _run(check_stage, m.impl, what, STAGE_PATIENCE)) for m in STAGE_MUTANTS]
    _judge_mutants(outcomes, what, "stage", STAGE_PATIENCE, SLOW_STAGE)
    return (
        f"it passes on keep_in_range and catches all {len(STAGE_MUTANTS)} mutants "
        f"({', '.join(m.name for m in STAGE_MUTANTS)})"
    )
