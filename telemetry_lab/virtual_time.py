"""Run asyncio code on a virtual clock: deterministic, and as fast as the CPU allows.

`VirtualTimeEventLoop` is an ordinary selector event loop whose clock (`loop.time()`) is a
number it owns. Whenever nothing is ready to run and no blocking call is running in a worker
thread, the loop *jumps* its clock to the next scheduled timer instead of sleeping. Code that
takes time only from the loop (`asyncio.sleep`, `loop.call_later`, `asyncio.timeout`,
`loop.time()`) therefore behaves exactly as in real time, event for event, but a 10-second
run finishes in milliseconds, and the same inputs give the same outputs.

Blocking work sent to threads (`asyncio.to_thread`, `loop.run_in_executor`) is counted;
while any is in flight the loop waits for it in real time and the virtual clock stands
still, so the clock never races ahead of a database write.

    with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner:
        runner.run(main())

It is not a general-purpose loop: sockets and subprocesses still work, but their real
latency is invisible to the virtual clock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import selectors
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, TypeVarTuple, Unpack

__all__ = ["VirtualTimeEventLoop"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


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
        super().__init__(_VirtualSelector(self, selectors.DefaultSelector()))

    def time(self) -> float:
        """Return the virtual clock's reading."""
        return self._now

    def run_in_executor(
        self,
        executor: concurrent.futures.Executor | None,
        func: Callable[[Unpack[Ts]], T],
        *args: *Ts,
    ) -> asyncio.Future[T]:
        """Run `func` in a worker thread, keeping the clock still until it finishes."""
        future = super().run_in_executor(executor, func, *args)
        self._threads_in_flight += 1
        future.add_done_callback(self._thread_finished)
        return future

    def _thread_finished(self, _: asyncio.Future[Any]) -> None:
        self._threads_in_flight -= 1

    def __repr__(self) -> str:
        return (
            f"<VirtualTimeEventLoop time={self._now:.6f} threads={self._threads_in_flight} "
            f"running={self.is_running()} closed={self.is_closed()}>"
        )
