"""Wake one task, or all of them, without passing a value.

`Notify` is the asyncio counterpart of Tokio's `Notify`. `notify_one()` wakes the task
that has waited longest, or, if nobody waits, stores a single *permit* that the next waiter
consumes at once, so a wake-up sent a moment too early is not lost. `notify_waiters()` wakes
every waiter that exists at the time of the call and stores nothing.

Compare `asyncio.Event`: it is a level (set or not), not a count of wake-ups. Clearing it to
wait again races with a concurrent `set()`: the classic lost wake-up.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass
from enum import Enum
from typing import Any

from telemetry_lab.primitives._private import LoopBinding, remove_waiter

__all__ = ["Notified", "Notify", "NotifyStatistics"]


class _Wake(Enum):
    """How a waiter was woken; a single wake-up remembers where to pass itself on."""

    FIRST = "first"  # by notify_one: pass on to the oldest waiter
    LAST = "last"  # by notify_last: pass on to the newest waiter
    ALL = "all"  # by notify_waiters: nothing to pass on


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifyStatistics:
    """A snapshot of one `Notify`."""

    current_permit: bool
    """Whether a `notify_one()` is stored for the next waiter."""
    tasks_waiting: int
    """Tasks blocked awaiting a `notified()`."""
    total_notify_one: int
    """Calls of `notify_one()` and `notify_last()`."""
    total_notify_waiters: int
    """Calls of `notify_waiters()`."""


class Notify:
    """Wake-ups without a value: one at a time (with a stored permit) or all at once.

    A `Notify` is not an event: it stores at most one wake-up, and `notify_waiters()` does not
    stay set for tasks that start waiting afterwards.
    """

    __slots__ = (
        "_binding",
        "_generation",
        "_permit",
        "_total_one",
        "_total_waiters",
        "_waiters",
    )

    def __init__(self) -> None:
        self._binding = LoopBinding("Notify")
        self._waiters: deque[asyncio.Future[_Wake]] = deque()
        self._permit = False
        self._generation = 0  # counts notify_waiters() calls
        self._total_one = 0
        self._total_waiters = 0

    def notified(self) -> Notified:
        """Return an awaitable that completes when this `Notify` wakes it.

        It is created now: `notify_waiters()` called after this line wakes it even if it is
        awaited later. Awaiting it consumes a stored permit at once, or waits in FIFO order.
        """
        return Notified(self)

    def notify_one(self) -> None:
        """Wake the longest-waiting task, or store one permit if nobody waits."""
        if self._waiters:
            self._binding.check()
        self._total_one += 1
        self._wake_one(_Wake.FIRST)

    def notify_last(self) -> None:
        """Wake the most recent waiter, or store one permit if nobody waits."""
        if self._waiters:
            self._binding.check()
        self._total_one += 1
        self._wake_one(_Wake.LAST)

    def _wake_one(self, how: _Wake) -> None:
        waiters = self._waiters
        while waiters:
            fut = waiters.popleft() if how is _Wake.FIRST else waiters.pop()
            if not fut.done():
                fut.set_result(how)
                return
        self._permit = True

    def notify_waiters(self) -> None:
        """Wake every `notified()` created before this call; store no permit."""
        if self._waiters:
            self._binding.check()
        self._total_waiters += 1
        self._generation += 1
        waiters, self._waiters = self._waiters, deque()
        for fut in waiters:
            if not fut.done():
                fut.set_result(_Wake.ALL)

    def statistics(self) -> NotifyStatistics:
        """Return a snapshot of this `Notify`."""
        return NotifyStatistics(
            current_permit=self._permit,
            tasks_waiting=sum(not f.done() for f in self._waiters),
            total_notify_one=self._total_one,
            total_notify_waiters=self._total_waiters,
        )

    # The two hooks below let `Notified` and `select` take part without owning the state.

    def _try_take(self, generation: int) -> bool:
        """Complete a waiter created at `generation` now, if it may: permit or broadcast."""
        if generation != self._generation:
            return True
        if self._permit:
            self._permit = False
            return True
        return False

    def _new_waiter(self) -> asyncio.Future[_Wake]:
        """Create a queued waiter future on the (bound) running loop."""
        fut: asyncio.Future[_Wake] = self._binding.bind().create_future()
        self._waiters.append(fut)
        return fut

    def _pass_on(self, fut: asyncio.Future[_Wake]) -> None:
        """Release a waiter that will not use its wake-up; forward a single wake-up."""
        if not fut.done() or fut.cancelled():
            remove_waiter(self._waiters, fut)
        elif fut.result() is not _Wake.ALL:
            self._wake_one(fut.result())

    def __repr__(self) -> str:
        return f"<Notify waiting={sum(not f.done() for f in self._waiters)} permit={self._permit}>"


class Notified:
    """The awaitable returned by `Notify.notified()`; await it once."""

    __slots__ = ("_awaited", "_generation", "_notify")

    def __init__(self, notify: Notify) -> None:
        self._notify = notify
        self._generation = notify._generation
        self._awaited = False

    def __await__(self) -> Generator[Any, None, None]:
        return self._wait().__await__()

    async def _wait(self) -> None:
        if self._awaited:
            raise RuntimeError("this notified() was already awaited; call notified() again")
        self._awaited = True
        notify = self._notify
        if notify._try_take(self._generation):
            return
        fut = notify._new_waiter()
        try:
            await fut
        except asyncio.CancelledError:
            # Chosen, then cancelled: the wake-up goes to the next waiter (or the permit).
            notify._pass_on(fut)
            raise

    def __repr__(self) -> str:
        return f"<Notified of {self._notify!r} awaited={self._awaited}>"
