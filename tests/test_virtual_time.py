"""Tests for `telemetry_lab.virtual_time`: the event loop whose clock jumps when idle.

Every test runs a coroutine on a `VirtualTimeEventLoop` from a synchronous test, and
asserts on the loop's clock only (never on wall-clock durations).
"""

from __future__ import annotations

import asyncio
import random
import selectors
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from telemetry_lab.virtual_time import VirtualTimeEventLoop

T = TypeVar("T")

GUARD = 1_000_000.0  # virtual seconds: a hung program fails with TimeoutError instead of hanging


def vrun(
    coro: Coroutine[Any, Any, T], *, loop_factory: Callable[[], VirtualTimeEventLoop] | None = None
) -> T:
    """Run `coro` to completion on a fresh virtual-time loop."""

    async def guarded() -> T:
        async with asyncio.timeout(GUARD):
            return await coro

    with asyncio.Runner(loop_factory=loop_factory or VirtualTimeEventLoop) as runner:
        return runner.run(guarded())


# --- the clock ---------------------------------------------------------------------------


def test_clock_starts_at_zero_and_sleep_advances_it_exactly() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        before = loop.time()
        await asyncio.sleep(10)
        return before, loop.time()

    assert vrun(main()) == (0.0, 10.0)


def test_start_argument_sets_the_initial_reading() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        before = loop.time()
        await asyncio.sleep(2.5)
        return before, loop.time()

    assert vrun(main(), loop_factory=lambda: VirtualTimeEventLoop(start=100.0)) == (100.0, 102.5)


def test_successive_sleeps_add_up() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        seen = []
        for delay in (1, 2, 3, 0, 4):
            await asyncio.sleep(delay)
            seen.append(loop.time())
        return seen

    assert vrun(main()) == [1.0, 3.0, 6.0, 6.0, 10.0]


def test_sleep_longer_than_the_maximum_select_timeout() -> None:
    """asyncio caps one select at 24 h; a three-day sleep still ends at exactly 3 days."""

    async def main() -> float:
        await asyncio.sleep(3 * 86_400)
        return asyncio.get_running_loop().time()

    assert vrun(main()) == 259_200.0


def test_sleep_zero_does_not_advance_the_clock() -> None:
    async def main() -> float:
        for _ in range(100):
            await asyncio.sleep(0)
        return asyncio.get_running_loop().time()

    assert vrun(main()) == 0.0


# --- timers ------------------------------------------------------------------------------


def test_call_later_runs_callbacks_in_time_order_at_their_instants() -> None:
    async def main() -> list[tuple[float, str]]:
        loop = asyncio.get_running_loop()
        fired: list[tuple[float, str]] = []
        for delay, name in [(3.0, "a"), (1.0, "b"), (2.0, "c"), (0.5, "d")]:
            loop.call_later(delay, lambda n=name: fired.append((loop.time(), n)))
        await asyncio.sleep(5)
        return fired

    assert vrun(main()) == [(0.5, "d"), (1.0, "b"), (2.0, "c"), (3.0, "a")]


def test_call_at_and_cancelled_timers() -> None:
    async def main() -> list[tuple[float, str]]:
        loop = asyncio.get_running_loop()
        fired: list[tuple[float, str]] = []
        loop.call_at(4.0, lambda: fired.append((loop.time(), "kept")))
        dropped = loop.call_at(2.0, lambda: fired.append((loop.time(), "dropped")))
        dropped.cancel()
        await asyncio.sleep(5)
        return fired

    assert vrun(main()) == [(4.0, "kept")]


def test_timers_at_equal_times_run_in_scheduling_order() -> None:
    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        fired: list[int] = []
        for i in range(20):
            loop.call_later(1.0, fired.append, i)
        await asyncio.sleep(2)
        return fired

    assert vrun(main()) == list(range(20))


def test_tasks_sleeping_equally_long_wake_in_start_order() -> None:
    async def main() -> list[int]:
        woke: list[int] = []

        async def sleeper(i: int) -> None:
            await asyncio.sleep(1.0)
            woke.append(i)

        async with asyncio.TaskGroup() as tg:
            for i in range(12):
                tg.create_task(sleeper(i))
        return woke

    assert vrun(main()) == list(range(12))


def test_timeout_fires_at_the_right_virtual_instant() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(2.5):
                await asyncio.sleep(10)
        return loop.time()

    assert vrun(main()) == 2.5


def test_timeout_at_and_wait_for_fire_at_their_instants() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        seen = []
        await asyncio.sleep(1)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout_at(loop.time() + 4):
                await asyncio.sleep(10)
        seen.append(loop.time())
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(10), timeout=0.25)
        seen.append(loop.time())
        return seen

    assert vrun(main()) == [5.0, 5.25]


def test_timeout_that_does_not_expire_leaves_the_clock_at_the_work() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(10):
            await asyncio.sleep(3)
        await asyncio.sleep(0)
        return loop.time()

    assert vrun(main()) == 3.0


# --- threads -----------------------------------------------------------------------------


def test_to_thread_does_not_advance_the_clock() -> None:
    async def main() -> tuple[float, str, float]:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(1)
        before = loop.time()

        def blocking() -> str:
            time.sleep(0.05)  # real blocking work in the worker thread
            return "done"

        result = await asyncio.to_thread(blocking)
        return before, result, loop.time()

    assert vrun(main()) == (1.0, "done", 1.0)


def test_timers_do_not_fire_while_a_thread_is_in_flight() -> None:
    async def main() -> tuple[list[str], float, list[str], float]:
        loop = asyncio.get_running_loop()
        fired: list[str] = []
        loop.call_later(1.0, fired.append, "timer")

        def blocking() -> None:
            time.sleep(0.05)

        await asyncio.to_thread(blocking)
        at_result = (list(fired), loop.time())
        await asyncio.sleep(2)
        return at_result[0], at_result[1], fired, loop.time()

    assert vrun(main()) == ([], 0.0, ["timer"], 2.0)


def test_timer_shorter_than_the_threads_real_duration_waits_for_the_thread() -> None:
    """A timer due 1 ms (virtual) from now must not fire during a 50 ms (real) thread job."""

    async def main() -> tuple[list[str], float, list[str]]:
        loop = asyncio.get_running_loop()
        fired: list[str] = []
        loop.call_later(0.001, fired.append, "timer")

        def blocking() -> None:
            time.sleep(0.05)

        await loop.run_in_executor(None, blocking)
        at_result = (list(fired), loop.time())
        await asyncio.sleep(0.01)
        return at_result[0], at_result[1], fired

    assert vrun(main()) == ([], 0.0, ["timer"])


def test_concurrent_thread_jobs_keep_the_clock_still_until_all_finish() -> None:
    async def main() -> tuple[list[int], float]:
        loop = asyncio.get_running_loop()

        def blocking(i: int) -> int:
            time.sleep(0.01 * (i + 1))
            return i

        results = await asyncio.gather(*(asyncio.to_thread(blocking, i) for i in range(4)))
        return results, loop.time()

    assert vrun(main()) == ([0, 1, 2, 3], 0.0)


def test_a_thread_still_running_after_its_awaiter_was_cancelled_holds_the_clock() -> None:
    """Blocking work in flight holds the clock even when nobody awaits its result any more.

    The module promises that while any thread job is in flight the clock stands still; a
    cancelled `to_thread` does not stop its thread.
    """
    started = threading.Event()
    finished = threading.Event()

    def blocking() -> None:
        started.set()
        time.sleep(0.05)
        finished.set()

    async def main() -> tuple[bool, float]:
        loop = asyncio.get_running_loop()
        job = asyncio.create_task(asyncio.to_thread(blocking))
        await asyncio.to_thread(started.wait)  # the job is running in its thread now
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        await asyncio.sleep(1)  # the clock may reach 1 only after the thread is done
        return finished.is_set(), loop.time()

    assert vrun(main()) == (True, 1.0)


def test_thread_job_exception_propagates_without_moving_the_clock() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()

        def failing() -> None:
            raise KeyError("boom")

        with pytest.raises(KeyError, match=r"^'boom'$"):
            await asyncio.to_thread(failing)
        return loop.time()

    assert vrun(main()) == 0.0


# --- determinism -------------------------------------------------------------------------


async def timer_program() -> list[tuple[float, str]]:
    """Several tasks and callbacks with seeded random delays; return the event log."""
    loop = asyncio.get_running_loop()
    rng = random.Random(1234)
    log: list[tuple[float, str]] = []

    async def worker(name: str, delays: list[float]) -> None:
        for i, delay in enumerate(delays):
            await asyncio.sleep(delay)
            log.append((loop.time(), f"{name}{i}"))

    for i in range(5):
        loop.call_later(rng.uniform(0, 5), lambda i=i: log.append((loop.time(), f"cb{i}")))
    async with asyncio.TaskGroup() as tg:
        for name in ("a", "b", "c"):
            tg.create_task(worker(name, [rng.uniform(0, 2) for _ in range(6)]))
    await asyncio.sleep(5)
    return log


def test_two_runs_of_the_same_program_give_identical_event_orders() -> None:
    first = vrun(timer_program())
    second = vrun(timer_program())
    assert len(first) == 23
    assert first == second
    times = [t for t, _ in first]
    assert times == sorted(times)


# --- repr and Runner ---------------------------------------------------------------------


def test_repr_shows_time_threads_and_state() -> None:
    loop = VirtualTimeEventLoop()
    try:
        expected = "<VirtualTimeEventLoop time=0.000000 threads=0 running=False closed=False>"
        assert repr(loop) == expected
    finally:
        loop.close()
    assert repr(loop) == "<VirtualTimeEventLoop time=0.000000 threads=0 running=False closed=True>"


def test_repr_while_running_and_during_a_thread_job() -> None:
    release = threading.Event()

    async def main() -> tuple[str, str, str]:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(1.5)
        running = repr(loop)
        job = asyncio.create_task(asyncio.to_thread(release.wait))
        await asyncio.sleep(0)
        during = repr(loop)
        release.set()
        await job
        await asyncio.sleep(0)
        return running, during, repr(loop)

    assert vrun(main()) == (
        "<VirtualTimeEventLoop time=1.500000 threads=0 running=True closed=False>",
        "<VirtualTimeEventLoop time=1.500000 threads=1 running=True closed=False>",
        "<VirtualTimeEventLoop time=1.500000 threads=0 running=True closed=False>",
    )


def test_works_with_asyncio_runner_and_keeps_its_clock_across_runs() -> None:
    async def nap(seconds: float) -> float:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeEventLoop)
        await asyncio.sleep(seconds)
        return loop.time()

    with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner:
        loop = runner.get_loop()
        assert isinstance(loop, VirtualTimeEventLoop)
        assert isinstance(loop, asyncio.SelectorEventLoop)
        assert runner.run(nap(10)) == 10.0
        assert runner.run(nap(5)) == 15.0
        assert loop.time() == 15.0
    assert loop.is_closed()


def test_runner_close_joins_a_running_thread_job_without_a_warning() -> None:
    """Closing the runner waits for the executor's threads in real time, clock still.

    On 3.12.7+ and 3.13 asyncio waits for the join under a 300 s timeout on the loop's
    clock; a virtual clock used to jump it at once ("The executor did not finishing joining
    its threads", and the executor abandoned). pytest turns that warning into an error.
    """
    finished = threading.Event()

    def slow() -> None:
        time.sleep(0.1)
        finished.set()

    async def main() -> float:
        loop = asyncio.get_running_loop()
        loop.run_in_executor(None, slow)  # still running when main returns
        return loop.time()

    with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner:
        assert runner.run(main()) == 0.0
        loop = runner.get_loop()
    assert finished.is_set()
    assert loop.time() == 0.0


# --- the private asyncio details this module relies on (see its docstring) ---------------
# Each test checks asyncio itself, on a plain SelectorEventLoop, so that a CPython change
# that breaks the virtual clock fails here, by name, first.


class _RecordingSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[float | None] = []

    def select(self, timeout: float | None = None) -> Any:
        self.timeouts.append(timeout)
        return super().select(timeout)


def test_relies_on_run_once_passing_the_time_to_the_next_timer_to_select() -> None:
    selector = _RecordingSelector()
    loop = asyncio.SelectorEventLoop(selector)
    try:
        loop.call_later(0.05, loop.stop)
        del selector.timeouts[:]
        loop.run_forever()
        waits = [t for t in selector.timeouts if t]
        assert waits, selector.timeouts
        assert 0 < waits[0] <= 0.05

        del selector.timeouts[:]
        loop.call_soon(loop.stop)
        loop.run_forever()
        assert selector.timeouts[0] == 0  # callbacks ready: poll, do not wait
    finally:
        loop.close()


def test_relies_on_select_timeout_none_when_no_timer_is_scheduled() -> None:
    selector = _RecordingSelector()
    loop = asyncio.SelectorEventLoop(selector)
    try:
        threading.Timer(0.02, loop.call_soon_threadsafe, args=(loop.stop,)).start()
        del selector.timeouts[:]
        loop.run_forever()
        assert selector.timeouts[0] is None
    finally:
        loop.close()


def test_relies_on_the_scheduled_heap_timer_handles_and_check_closed() -> None:
    loop = asyncio.SelectorEventLoop()
    try:
        handle = loop.call_at(loop.time() + 10, lambda: None)
        scheduled = loop._scheduled  # type: ignore[attr-defined]
        assert isinstance(scheduled, list)
        assert handle in scheduled
        assert handle._scheduled is True  # type: ignore[attr-defined]
        assert scheduled[0] is min(scheduled)  # a heap ordered by TimerHandle.__lt__
        own = asyncio.TimerHandle(1.0, print, (), loop, None)
        assert own.when() == 1.0
        loop._check_closed()  # type: ignore[attr-defined]
    finally:
        loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop._check_closed()  # type: ignore[attr-defined]


def test_relies_on_to_thread_going_through_run_in_executor() -> None:
    calls: list[object] = []

    class Counting(asyncio.SelectorEventLoop):
        def run_in_executor(self, executor: Any, func: Any, *args: Any) -> Any:
            calls.append(func)
            return super().run_in_executor(executor, func, *args)

    with asyncio.Runner(loop_factory=Counting) as runner:
        assert runner.run(asyncio.to_thread(lambda: 7)) == 7
    assert len(calls) == 1


def test_relies_on_runner_close_calling_shutdown_default_executor() -> None:
    calls: list[tuple[Any, ...]] = []

    class Recording(asyncio.SelectorEventLoop):
        async def shutdown_default_executor(self, *args: Any) -> None:
            calls.append(args)
            await super().shutdown_default_executor(*args)

    with asyncio.Runner(loop_factory=Recording) as runner:
        runner.run(asyncio.to_thread(lambda: None))
    assert len(calls) == 1
    assert calls[0] in ((), (300,))  # 3.11: no timeout; 3.12+: THREAD_JOIN_TIMEOUT
