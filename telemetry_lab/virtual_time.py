"""Run asyncio code on a virtual clock: deterministic, and as fast as the CPU allows.

`VirtualTimeEventLoop` is an ordinary selector event loop whose clock (`loop.time()`) is a
number it owns. Whenever nothing is ready to run and no blocking call is running in a worker
thread, the loop *jumps* its clock to the next scheduled timer instead of sleeping. Code that
takes time only from the loop (`asyncio.sleep`, `loop.call_later`, `asyncio.timeout`,
`loop.time()`) therefore behaves exactly as in real time, event for event, but a 10-second
run finishes in milliseconds, and the same inputs give the same outputs.

Blocking work sent to threads (`asyncio.to_thread`, `loop.run_in_executor`) is counted
from submission until the thread has finished *and* its result has reached the loop (or
the job was abandoned before it started); while any is in flight the loop waits for it in
real time and the virtual clock stands still, so the clock never races ahead of a
database write, not even one whose awaiter was cancelled.

Timers due at the same instant run in the order they were scheduled (asyncio's own heap
does not promise that, and on a virtual clock equal deadlines are common).

    with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner:
        runner.run(main())

It is not a general-purpose loop: sockets and subprocesses still work, but their real
latency is invisible to the virtual clock.

What it relies on inside asyncio (each one has a test named after it in
`tests/test_virtual_time.py`, so a CPython change that breaks one fails one clear test):

1. `BaseSelectorEventLoop` asks its selector to wait with `selector.select(timeout)`, where
   `timeout` is the time until the next timer (capped at one day), `0` when callbacks are
   ready, and `None` when there is no timer at all. The selector is handed to the public
   `SelectorEventLoop(selector)` constructor; only the meaning of `timeout` is internal.
2. Timers live in the loop's heap `_scheduled`, ordered by `TimerHandle.__lt__`, and a
   scheduled handle has `_scheduled = True` (its `cancel()` counts on it). `call_at` pushes
   a tie-breaking subclass of `TimerHandle` there, built with the constructor signature
   `TimerHandle(when, callback, args, loop, context)`, after the loop's `_check_closed()`.
3. `asyncio.to_thread` goes through `loop.run_in_executor` (public, overridden here).
4. `asyncio.Runner.close()` and `asyncio.run()` call `loop.shutdown_default_executor()`,
   which (from 3.12.7 and in 3.13) waits for the joining thread *on the loop's clock*
   under a 300-second timeout. Overridden here: the join counts as a thread in flight, so
   the clock stands still and the executor is joined for real instead of abandoned.

Nothing else: no monkeypatching, no private module, no change to asyncio's own classes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import heapq
import itertools
import selectors
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, TypeVarTuple, Unpack

__all__ = ["VirtualTimeEventLoop", "on_virtual_clock"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class _SequencedTimerHandle(asyncio.TimerHandle):
    """A timer that breaks ties on its deadline by scheduling order."""

    __slots__ = ("_sequence",)

    def __init__(self, sequence: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sequence = sequence

    def __lt__(self, other: asyncio.TimerHandle) -> bool:
        if isinstance(other, _SequencedTimerHandle) and self.when() == other.when():
            return self._sequence < other._sequence
        return super().__lt__(other)


class _ThreadJob:
    """Bookkeeping of one executor job: in flight until thread and future are both done."""

    __slots__ = ("abandoned", "future_done", "lock", "started", "thread_done")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = False
        self.abandoned = False
        self.thread_done = False
        self.future_done = False


class _VirtualSelector(selectors.BaseSelector):
    """Delegate to a real selector, but turn idle waits into clock jumps."""

    def __init__(self, loop: VirtualTimeEventLoop, inner: selectors.BaseSelector) -> None:
        self._loop = loop
        self._inner = inner

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        loop = self._loop
        if loop._threads_in_flight:
            # A worker thread will wake the loop through its self-pipe; wait for it in real
            # time, with the virtual clock standing still.
            return self._inner.select(timeout)
        events = self._inner.select(0)
        if events or timeout == 0:
            return events
        if timeout is None:
            return self._inner.select(None)  # no timer at all: only I/O can wake us
        loop._now += timeout  # nothing to do until the next timer: jump to it
        return []

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.get_key(fileobj)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._inner.get_map()

    def close(self) -> None:
        self._inner.close()


class VirtualTimeEventLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose clock jumps to the next timer when the loop is idle.

    Args:
        start: the clock's initial reading (`loop.time()`), in seconds.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._threads_in_flight = 0
        self._timer_sequence = itertools.count()
        super().__init__(_VirtualSelector(self, selectors.DefaultSelector()))

    def time(self) -> float:
        """Return the virtual clock's reading."""
        return self._now

    def call_at(
        self,
        when: float,
        callback: Callable[[Unpack[Ts]], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        """Schedule `callback` at loop time `when`; equal deadlines keep their order."""
        self._check_closed()  # type: ignore[attr-defined]
        timer = _SequencedTimerHandle(
            next(self._timer_sequence), when, callback, args, self, context
        )
        heapq.heappush(self._scheduled, timer)  # type: ignore[attr-defined]
        timer._scheduled = True  # type: ignore[attr-defined]
        return timer

    def run_in_executor(
        self,
        executor: concurrent.futures.Executor | None,
        func: Callable[[Unpack[Ts]], T],
        *args: *Ts,
    ) -> asyncio.Future[T]:
        """Run `func` in a worker thread, keeping the clock still until it finishes."""
        job = _ThreadJob()

        def finish(part: str) -> None:  # on the loop thread
            setattr(job, part, True)
            if job.thread_done and job.future_done:
                self._threads_in_flight -= 1

        def in_thread() -> T:
            with job.lock:
                if job.abandoned:
                    raise asyncio.CancelledError  # cancelled before it started: skip it
                job.started = True
            try:
                return func(*args)
            finally:
                # RuntimeError: the loop is closed, and nobody is counting any more.
                with contextlib.suppress(RuntimeError):
                    self.call_soon_threadsafe(finish, "thread_done")

        def on_future_done(_: asyncio.Future[T]) -> None:
            with job.lock:
                if not job.started:
                    job.abandoned = True
                    self._threads_in_flight -= 1
                    return
            finish("future_done")

        future = super().run_in_executor(executor, in_thread)
        self._threads_in_flight += 1
        future.add_done_callback(on_future_done)
        return future

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (asyncio's signature)
        """Join the default executor's threads, in real time, with the clock standing still.

        asyncio waits for the joining thread under `timeout` on the loop's own clock
        (3.12.7+, 3.13): on a virtual clock that timeout would expire at once and the
        executor would be abandoned with its threads still running. Counting the join as a
        thread in flight makes the loop wait for it as for any other blocking job.
        """
        self._threads_in_flight += 1
        try:
            if timeout is None:
                await super().shutdown_default_executor()
            else:  # 3.12+: the parameter exists; the caller passed it
                await super().shutdown_default_executor(timeout)  # type: ignore[call-arg]
        finally:
            self._threads_in_flight -= 1

    def __repr__(self) -> str:
        return (
            f"<VirtualTimeEventLoop time={self._now:.6f} threads={self._threads_in_flight} "
            f"running={self.is_running()} closed={self.is_closed()}>"
        )


def on_virtual_clock() -> bool:
    """Return whether the running loop (if any) is a `VirtualTimeEventLoop`."""
    try:
        return isinstance(asyncio.get_running_loop(), VirtualTimeEventLoop)
    except RuntimeError:
        return False
