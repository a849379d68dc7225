"""Internal helpers shared by the gateway's components (not part of the public API)."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["wait_to_the_end"]


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
