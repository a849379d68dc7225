"""Share the waiter bookkeeping that every primitive needs.

Waiters are futures created at wait time from the running loop (so primitives can be built
outside a loop, in one notebook cell, and awaited in another). A waker never resolves a
future that is already done (cancelled), and a waiter removes itself in `finally`.

A primitive is *bound* to the loop of its first waiter, as asyncio's own `Queue` and `Lock`
are (`asyncio.mixins._LoopBoundMixin`): its waiters' futures belong to that loop, and
resolving them from another loop's task or another thread would never wake them. So an
operation that would create or wake a waiter checks the running loop first and raises a
clear `RuntimeError` before it changes anything. A primitive whose loop has been closed
may be bound again (one notebook, several `asyncio.run()` calls in a script).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from types import TracebackType
from typing import Any, Self

__all__ = [
    "ClosingHandle",
    "LoopBinding",
    "remove_waiter",
    "wake_all",
    "wake_first",
    "wake_future",
]


class LoopBinding:
    """The event loop a primitive's waiters belong to, checked before every wait or wake-up.

    Args:
        what: how error messages name the primitive ("channel", "Notify", ...).
    """

    __slots__ = ("loop", "what")

    def __init__(self, what: str) -> None:
        self.what = what
        self.loop: asyncio.AbstractEventLoop | None = None

    def bind(self) -> asyncio.AbstractEventLoop:
        """Return the running loop, binding to it; raise if bound to another live loop.

        Call it where a waiter is created.
        """
        loop = asyncio.get_running_loop()
        bound = self.loop
        if bound is not loop:
            if bound is not None and not bound.is_closed():
                raise RuntimeError(self._message(bound, loop))
            self.loop = loop
        return loop

    def check(self) -> None:
        """Raise unless running in the bound loop (or unbound).

        Call it before waking waiters, so a misuse changes nothing.
        """
        bound = self.loop
        if bound is None:
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not bound and not bound.is_closed():
            raise RuntimeError(self._message(bound, running))

    def _message(
        self, bound: asyncio.AbstractEventLoop, running: asyncio.AbstractEventLoop | None
    ) -> str:
        where = "outside any event loop" if running is None else f"from another loop {running!r}"
        return (
            f"this {self.what} is bound to the event loop {bound!r} (its waiters belong to "
            f"it), but it was used {where}; use it only from tasks of that loop, and hand "
            "values over from other threads with loop.call_soon_threadsafe()"
        )


def wake_future(fut: asyncio.Future[Any], result: Any = None) -> bool:
    """Resolve `fut` unless it is already done; return whether it was woken."""
    if fut.done():
        return False
    fut.set_result(result)
    return True


def wake_first(waiters: deque[asyncio.Future[Any]], result: Any = None) -> bool:
    """Pop waiters in FIFO order until one can be woken; return whether one was."""
    while waiters:
        fut = waiters.popleft()
        if not fut.done():
            fut.set_result(result)
            return True
    return False


def wake_all(waiters: deque[asyncio.Future[Any]] | list[asyncio.Future[Any]]) -> None:
    """Wake every pending waiter and forget them all."""
    for fut in waiters:
        if not fut.done():
            fut.set_result(None)
    waiters.clear()


def remove_waiter(
    waiters: deque[asyncio.Future[Any]] | list[asyncio.Future[Any]], fut: asyncio.Future[Any]
) -> None:
    """Forget `fut` if it is still queued (a waker may already have popped it)."""
    with contextlib.suppress(ValueError):
        waiters.remove(fut)


class ClosingHandle:
    """Mixin: `with handle:` and `async with handle:` close the handle on exit.

    Closing a handle is the Python stand-in for Rust's drop; `close()` is synchronous and
    idempotent, so both context-manager forms simply call it.
    """

    __slots__ = ()

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
