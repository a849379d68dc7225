"""Internal helpers shared by the gateway's components (not part of the public API)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["call_in_loop", "wait_to_the_end"]


async def wait_to_the_end(future: asyncio.Future[Any]) -> None:
    """Wait until `future` is done, even if cancelled meanwhile; then let the cancellation out.

    For work that cannot be interrupted, such as a SQLite call in a worker thread: the
    awaiting task must not move on (and, say, close the connection) while the work still
    runs. Cancelling the task, once or many times, is not swallowed: the first
    `CancelledError` is re-raised as soon as `future` is done. `future` itself is never
    cancelled.
    """
    cancelled: asyncio.CancelledError | None = None
    while not future.done():
        try:
            await asyncio.wait([future])
        except asyncio.CancelledError as exc:
            cancelled = cancelled or exc
    if cancelled is not None:
        raise cancelled


def call_in_loop(
    loop: asyncio.AbstractEventLoop | None, func: Callable[..., None], *args: object
) -> None:
    """Call `func(*args)` in `loop`: now if it is this thread's running loop, else soon.

    With no loop (or a closed one) nothing waits and nothing needs waking: call it now.
    Safe from any thread.
    """
    if loop is None or loop.is_closed():
        func(*args)
        return
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        func(*args)
    else:
        loop.call_soon_threadsafe(func, *args)
