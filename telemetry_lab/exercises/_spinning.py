"""Notice an answer that polls a channel in a loop that never yields (shared by checkers).

A closed branch left on in `select`, or a `try_recv()` loop on a closed channel, is always
ready: such a loop never gives the event loop a turn, so it would freeze the kernel, and
no `asyncio.timeout` could interrupt it. `WatchedReceiver` counts failed receives between
two steps of the event loop; past `SPIN_LIMIT` in one step, the next raises `Spinning`, a
`BaseException` that no `except Exception:` catches, and the check turns it into a
rejection with a hint.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

from telemetry_lab.errors import ChannelClosed
from telemetry_lab.primitives import Receiver
from telemetry_lab.primitives.waiting import PENDING, Pending

__all__ = ["SPIN_LIMIT", "Spinning", "WatchedReceiver"]

T = TypeVar("T")

SPIN_LIMIT = 10_000
"""Failed receives in one loop step after which a receiver says the caller is spinning."""


class Spinning(BaseException):
    """Raised by a checker's receiver when it is polled in a loop that never yields."""


class WatchedReceiver(Receiver[T]):
    """A receiver that counts failed receives between two steps of the event loop."""

    __slots__ = ("_failed", "_reset_pending")

    def __init__(self, rx: Receiver[T]) -> None:
        super().__init__(rx._state)
        self._failed = 0
        self._reset_pending = False

    def _reset(self) -> None:
        self._failed = 0
        self._reset_pending = False

    def _poll(self) -> T | Pending:
        # Every non-waiting receive goes through here: try_recv(), recv() and select's branch.
        try:
            value = super()._poll()
        except ChannelClosed:
            self._failed_once()
            raise
        if value is PENDING:
            self._failed_once()
        return value

    def _failed_once(self) -> None:
        self._failed += 1
        if self._failed > SPIN_LIMIT:
            raise Spinning(f"{SPIN_LIMIT} failed receives without yielding")
        if not self._reset_pending:  # runs at the next loop step, if there is one
            self._reset_pending = True
            asyncio.get_running_loop().call_soon(self._reset)
