"""Share the waiter bookkeeping that every primitive needs.

Waiters are futures created at wait time from the running loop (so primitives can be built
outside a loop, in one notebook cell, and awaited in another). A waker never resolves a
future that is already done (cancelled), and a waiter removes itself in `finally`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from types import TracebackType
from typing import Any, Self

__all__ = ["ClosingHandle", "remove_waiter", "wake_all", "wake_first", "wake_future"]


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
