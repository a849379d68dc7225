"""Check the exercises of notebook 06: the first n results of a JoinSet, a supervisor.

`check_exercise_1` gives the learner's `first_n_results` five jobs that finish only when
the check opens their gates (3, 0 and 4; never 1 and 2), so "completion order" and "cancel
the rest" are events, not guesses about timing. `check_exercise_2` feeds the learner's
`supervise` coroutines that fail a known number of times, counts the runs (so an
off-by-one in the restarts is named as such), and cancels it once, to see that a
supervisor does not swallow a cancellation.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from telemetry_lab.exercises._check import exercise, reject

__all__ = ["check_exercise_1", "check_exercise_2"]

FirstN = Callable[[list[Coroutine[Any, Any, int]], int], Awaitable[Any]]
Supervise = Callable[[Callable[[], Coroutine[Any, Any, Any]], int], Awaitable[Any]]

PATIENCE = 1.0
"""Seconds an answer may take: every job here finishes within a few loop steps."""


class _Gated:
    """Five jobs, each finishing with 10 * k when gate k opens; records what happened."""

    def __init__(self) -> None:
        self.gates = [asyncio.Event() for _ in range(5)]
        self.running = [asyncio.Event() for _ in range(5)]
        self.started: set[int] = set()
        self.finished: list[int] = []
        self.cancelled: list[int] = []

    async def job(self, k: int) -> int:
        self.started.add(k)
        self.running[k].set()
        try:
            await self.gates[k].wait()
        except asyncio.CancelledError:
            self.cancelled.append(k)
            raise
        self.finished.append(k)
        return 10 * k

    async def open(self, order: list[int]) -> None:
        """Open the gates in `order`, each once its job has started, one loop step apart."""
        for k in order:
            await self.running[k].wait()
            await asyncio.sleep(0)
            self.gates[k].set()


async def _steps(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


@exercise(1)
async def check_exercise_1(first_n_results: FirstN) -> str:
    """Check `first_n_results(coros, n)`: n results in completion order, the rest cancelled."""
    jobs = _Gated()
    coros = [jobs.job(k) for k in range(5)]
    opener = asyncio.ensure_future(jobs.open([3, 0, 4]))
    try:
        async with asyncio.timeout(PATIENCE):
            got = await first_n_results(coros, 3)
            cancelled_at_return = sorted(jobs.cancelled)  # before the loop runs again
    except TimeoutError:
        started = len(jobs.started)
        if started < 5:
            reject(
                f"first_n_results did not return: it started only {started} of the 5 "
                "coroutines, and the 3 that finish first are not all among them",
                "spawn every coroutine into the JoinSet first; the first n to *finish* win",
            )
        reject(
            f"first_n_results did not return within {PATIENCE:g} s: only jobs 3, 0 and 4 "
            "ever finish, and it waited for more (for all of them?)",
            "take exactly n tasks with `await js.join_next()`, then stop waiting: leaving "
            "`async with JoinSet() as js:` cancels the rest",
        )
    finally:
        opener.cancel()
        await asyncio.wait([opener])
        for coro in coros:  # never started by the answer: no "never awaited" warning
            if inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
                coro.close()
    await _steps()
    cancelled_later = sorted(jobs.cancelled)
    for gate in jobs.gates:
        gate.set()  # a job still running now finishes (nothing is left behind by the check)
    await _steps()
    if isinstance(got, list) and any(isinstance(x, asyncio.Future) for x in got):
        reject(
            "first_n_results returned tasks, not their results",
            "`join_next()` hands back a finished task: append `task.result()`",
        )
    if cancelled_at_return != [1, 2]:
        if cancelled_later == [1, 2]:
            reject(
                "jobs 1 and 2 were asked to stop but were still running when you returned",
                "`abort_all()` only asks: wait for them too, with `await js.shutdown()` or "
                "by leaving `async with JoinSet() as js:`",
            )
        still = sorted(k for k in jobs.finished if k in (1, 2))
        reject(
            "jobs 1 and 2 were still running after first_n_results returned (nobody "
            f"cancelled them: {'they finished later' if still else 'they were left behind'})",
            "cancel the rest and wait for them: `async with JoinSet() as js:` does both "
            "when the block ends (or call `await js.shutdown()`)",
        )
    if not isinstance(got, list | tuple) or len(got) != 3:
        reject(
            f"first_n_results(coros, 3) returned {type(got).__name__}"
            + (f" of {len(got)} values" if isinstance(got, list | tuple) else "")
            + ", not a list of 3 results",
            "collect `task.result()` of the first n tasks `join_next()` hands back",
        )
    if list(got) != [30, 0, 40]:
        if sorted(map(repr, got)) == ["0", "30", "40"]:
            reject(
                "the right three results, but not in the order they finished (3, 0, 4)",
                "append each result as `join_next()` hands its task back: that is "
                "completion order (do not sort, do not use the spawn order)",
            )
        reject(
            "those are not the results of the three jobs that finished first (3, 0 and 4 "
            "return 30, 0 and 40)",
            "keep `task.result()` of each task `join_next()` returns, until you have n",
        )
    return "30, 0, 40 in completion order; jobs 1 and 2 cancelled and awaited"


class _Flaky:
    """Make coroutines that fail their first `failures` runs, counting the runs."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> Coroutine[Any, Any, str]:
        return self._run()

    async def _run(self) -> str:
        self.calls += 1
        await asyncio.sleep(0)
        if self.calls <= self.failures:
            raise ConnectionError(f"attempt {self.calls} failed")
        return "ok"


async def _supervised(supervise: Supervise, make: _Flaky, k: int) -> tuple[str, Any]:
    """Run `supervise(make, k)`: ("returned", value) or ("raised", exception)."""
    try:
        async with asyncio.timeout(PATIENCE):
            return "returned", await supervise(make, k)
    except TimeoutError:
        reject(
            f"supervise(make_coro, {k}) did not return within {PATIENCE:g} s "
            f"({make.calls} runs): it kept restarting",
            "count the restarts, and once `restarts == k` after a failure, re-raise it "
            "instead of restarting again",
        )
    except NotImplementedError:
        raise  # a stub: "not attempted" (or, for the solution cell, an error)
    except Exception as exc:
        return "raised", exc


def _off_by_one(runs: int, k: int) -> None:
    """Reject a supervisor that ran an always-failing coroutine other than k + 1 times."""
    if runs == k + 1:
        return
    if runs < k + 1:
        too = "one restart too few" if runs == k else f"{k + 1 - runs} restarts too few"
        hint = (
            "the first run is not a restart: k restarts means k + 1 runs (`for attempt in "
            "range(k + 1)`, or give up only when a failure comes with `restarts == k`)"
        )
    else:
        too = "one restart too many" if runs == k + 2 else f"{runs - k - 1} restarts too many"
        hint = (
            "give up when a failure comes and `restarts == k`, before restarting again: "
            "k restarts means k + 1 runs in all"
        )
    reject(
        f"with k={k} and a coroutine that always fails, your supervisor ran it {runs} times, "
        f"so {runs - 1} restarts: {too}",
        hint,
    )


@exercise(2)
async def check_exercise_2(supervise: Supervise) -> str:
    """Check `supervise(make_coro, k)`: restarts up to k times, re-raises the last failure."""
    flaky = _Flaky(failures=2)
    how, value = await _supervised(supervise, flaky, 5)
    if how == "raised":
        reject(
            f"supervise(make_coro, 5) raised {value!r}, though the coroutine fails only "
            "twice and 5 restarts are allowed",
            "catch the failure (`except Exception:`) and call `make_coro()` again for a fresh "
            "coroutine (a coroutine can be awaited only once)",
        )
    if value == 3 and flaky.calls == 3:
        reject(
            "supervise returned 3 for a coroutine that failed twice and then succeeded: "
            "that counts runs, not restarts",
            "the first run is not a restart: return how many times you started it *again*",
        )
    if value != 2 or flaky.calls != 3:
        reject(
            f"supervise returned {value!r} after {flaky.calls} runs for a coroutine that "
            "fails twice: expected 2 restarts in 3 runs",
            "restart after each failure and return the number of restarts once it succeeds",
        )

    for k in (2, 0):
        always = _Flaky(failures=10**6)
        how, value = await _supervised(supervise, always, k)
        _off_by_one(always.calls, k)
        if how == "returned":
            reject(
                f"with k={k}, every run failed, yet supervise returned {value!r} instead of "
                "raising",
                "out of restarts, re-raise the last failure: a bare `raise` in the `except` block",
            )
        last = f"attempt {always.calls} failed"
        if not isinstance(value, ConnectionError) or str(value) != last:
            reject(
                f"with k={k} supervise raised {value!r}, not the last failure "
                f"(ConnectionError('{last}'))",
                "re-raise the exception you just caught, with a bare `raise` in the `except` "
                "block (not the first one you saw, not a new exception)",
            )

    once = _Flaky(failures=0)
    how, value = await _supervised(supervise, once, 0)
    if how != "returned" or value != 0 or once.calls != 1:
        reject(
            f"supervise(make_coro, 0) gave {value!r} after {once.calls} runs for a coroutine "
            "that succeeds at once: expected 0 restarts",
            "run it once; return 0 when it succeeds",
        )

    await _check_cancellation(supervise)
    return "restarts counted, k respected, the last failure re-raised, cancellation let through"


async def _check_cancellation(supervise: Supervise) -> None:
    """Cancel a supervisor whose coroutine waits forever: it must end cancelled."""
    calls = 0

    async def hangs_then_succeeds() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.Event().wait()  # until cancelled
        return "ok"  # a restart after the cancellation would end at once

    task = asyncio.ensure_future(supervise(hangs_then_succeeds, 3))
    try:
        for _ in range(100):  # until the coroutine runs (or the supervisor is done)
            if calls or task.done():
                break
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=PATIENCE)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait([task])
    if task.cancelled():
        return
    if not done:
        reject(
            "a cancelled supervisor kept running",
            "let `CancelledError` through: catch `Exception`, not `BaseException`",
        )
    outcome = f"raised {task.exception()!r}" if task.exception() else "returned"
    reject(
        f"your supervisor was cancelled, yet it {outcome} after {calls} runs: it caught "
        "the cancellation and treated it as a crash",
        "catch `Exception`, not `BaseException` or a bare `except:`: `CancelledError` is "
        "how its owner stops it, and must go through",
    )
