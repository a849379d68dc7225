"""Wake one task, or all of them, without passing a value.

`Notify` is the asyncio counterpart of Tokio's `Notify`. `notify_one()` wakes the task
that has waited longest, or, if nobody waits, stores a single *permit* that the next waiter
consumes at once, so a wake-up sent a moment too early is not lost. `notify_waiters()` wakes
every waiter that exists at the time of the call and stores nothing.

Compare `asyncio.Event`: it is a level (set or not), not a count of wake-ups. Clearing it to
wait again races with a concurrent `set()`: the classic lost wake-up.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar

from telemetry_lab.primitives._private import LoopBinding, check_name
from telemetry_lab.primitives.waiting import PENDING, Branch, Pending, QueueBranch, WaitQueue

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
    name: str | None = None
    """The name given to `Notify()`, or None."""


class Notify:
    """Wake-ups without a value: one at a time (with a stored permit) or all at once.

    A `Notify` is not an event: it stores at most one wake-up, and `notify_waiters()` does not
    stay set for tasks that start waiting afterwards.

    Args:
        name: how reprs, statistics and the console call it.
    """

    __slots__ = (
        "_binding",
        "_generation",
        "_permit",
        "_queue",
        "_total_one",
        "_total_waiters",
        "name",
    )

    select_operation: ClassVar[str] = "notified"
    """The operation `select_branch()` offers (`on_notified` accepts a `Notify`)."""

    def __init__(self, *, name: str | None = None) -> None:
        self.name = check_name(name)
        self._binding = LoopBinding("Notify" if name is None else f"Notify {name!r}")
        self._queue = WaitQueue(self._binding, self, "notified", on_abandoned=self._pass_on)
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

    def select_branch(self, *, enabled: bool = True) -> Branch[None]:
        """Return a `select` branch for a wake-up (what `on_notified` makes).

        Like `notified()`, it is created now: `notify_waiters()` called afterwards wakes it.
        """
        return _NotifiedBranch(self, enabled=enabled)

    def notify_one(self) -> None:
        """Wake the longest-waiting task, or store one permit if nobody waits."""
        if self._queue:
            self._binding.check()
        self._total_one += 1
        self._wake_one(_Wake.FIRST)

    def notify_last(self) -> None:
        """Wake the most recent waiter, or store one permit if nobody waits."""
        if self._queue:
            self._binding.check()
        self._total_one += 1
        self._wake_one(_Wake.LAST)

    def _wake_one(self, how: _Wake) -> None:
        queue = self._queue
        woken = queue.wake_one(how) if how is _Wake.FIRST else queue.wake_last(how)
        if not woken:
            self._permit = True

    def _pass_on(self, how: _Wake) -> None:
        """A single wake-up its waiter could not use goes to the next one (or the permit)."""
        if how is not _Wake.ALL:
            self._wake_one(how)

    def notify_waiters(self) -> None:
        """Wake every `notified()` created before this call; store no permit."""
        if self._queue:
            self._binding.check()
        self._total_waiters += 1
        self._generation += 1
        self._queue.wake_all(_Wake.ALL)

    def statistics(self) -> NotifyStatistics:
        """Return a snapshot of this `Notify`."""
        return NotifyStatistics(
            current_permit=self._permit,
            tasks_waiting=self._queue.tasks_waiting,
            total_notify_one=self._total_one,
            total_notify_waiters=self._total_waiters,
            name=self.name,
        )

    def _try_take(self, generation: int) -> bool:
        """Complete a waiter created at `generation` now, if it may: permit or broadcast."""
        if generation != self._generation:
            return True
        if self._permit:
            self._permit = False
            return True
        return False

    def describe(self) -> str:
        name = "Notify" if self.name is None else f"Notify {self.name!r}"
        return f"{name} (permit {'stored' if self._permit else 'none'})"

    def __repr__(self) -> str:
        named = "" if self.name is None else f" name={self.name!r}"
        return f"<Notify{named} waiting={self._queue.tasks_waiting} permit={self._permit}>"


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
        if not notify._try_take(self._generation):
            await notify._queue.park()  # a wake-up it cannot use is passed on (_pass_on)

    def __repr__(self) -> str:
        return f"<Notified of {self._notify!r} awaited={self._awaited}>"


class _NotifiedBranch(QueueBranch[None]):
    """`select`'s view of one `notified()`: a wake-up delivered while armed makes it ready.

    `QueueBranch` keeps a wake-up that reached the branch and hands an unused one back to
    the queue, which passes it on (`Notify._pass_on`).
    """

    __slots__ = ("_generation", "_notify")

    def __init__(self, notify: Notify, *, enabled: bool) -> None:
        super().__init__(self._take, notify._queue, owner=notify, enabled=enabled)
        self._notify = notify
        self._generation = notify._generation

    def _take(self) -> Pending | None:
        if self._woken or self._notify._try_take(self._generation):
            self._generation = self._notify._generation
            return None
        return PENDING
