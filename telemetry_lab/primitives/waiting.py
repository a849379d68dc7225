"""Park tasks on a resource and wake them: the waiting core that every primitive shares.

A `WaitQueue` is the list of tasks waiting for one operation on one resource (the senders
waiting for room in a channel, the receivers waiting for a value, the tasks waiting on a
`Notify`). It is the only place where waiters are created, woken and removed, in the
spirit of Trio's `ParkingLot` and CPython's `asyncio.Semaphore`:

- a waiter is a future created at wait time from the running loop (so a primitive can be
  built in one notebook cell and awaited in another), bound to the resource's loop;
- a waker never resolves a future that is already done, and skips to the next waiter;
- a waiter that was woken and then cancelled before it could use its wake-up hands it
  back to the queue (`abandon`), which passes it on to the next waiter, or to whatever
  the primitive decides (a reserved channel slot is freed, a `Notify` stores its permit);
- each waiter records which task waits and for which handle (`owner`), so a handle's
  `close()` wakes only its own waiters and a console can say who waits on what; a `timed`
  queue also records since when, and sums the time waited (a channel's senders).

`select()` takes part through `Branch`: a branch polls an operation without waiting, and
between polls registers the select's waker in the operation's queue. `QueueBranch` is that
branch for any operation backed by a `WaitQueue`; a primitive offers its branches through
a public `select_branch()` method, so a new primitive joins `select` without changes to
`select.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import weakref
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar, Final, Generic, Protocol, TypeVar

from telemetry_lab.primitives._private import LoopBinding

__all__ = [
    "PENDING",
    "Branch",
    "Pending",
    "QueueBranch",
    "QueueSelectable",
    "Resource",
    "WaitQueue",
    "Waiter",
    "next_serial",
    "wait_queues",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Pending:
    """The type of `PENDING`: an operation that would have to wait."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PENDING"


PENDING: Final = Pending()
"""What a non-waiting poll returns when the operation is not ready (nothing changed)."""


class Resource(Protocol):
    """What a wait queue knows of the primitive it belongs to.

    Observers (the console) also use two optional members when a resource has them:
    `closed` (nothing more will pass: hidden unless tasks still wait) and
    `completers(operation)` (the live open handles that could end a wait for `operation`,
    or None when it cannot tell: an empty list means the wait can never end).
    """

    @property
    def name(self) -> str | None:
        """The name given at creation (`channel(50, name="telemetry")`), or None."""

    def describe(self) -> str:
        """Say in plain words what the resource is and its state: `channel 'x' (3/50 full)`."""


class Waiter:
    """One registration in a `WaitQueue`: a parked task, or a `select` listening."""

    __slots__ = ("future", "owner", "since", "task", "woken")

    def __init__(
        self,
        future: asyncio.Future[Any],
        task: asyncio.Task[Any] | None,
        since: float | None,
        owner: object,
    ) -> None:
        self.future = future
        """Resolved by the wake-up (shared by every branch of one `select`)."""
        self.task = task
        """The task that waits (None outside a task)."""
        self.since = since
        """Loop time at which it started waiting (queues that are `timed`), else None."""
        self.owner = owner
        """The handle it waits through (closing that handle wakes it), or None."""
        self.woken = False
        """Whether this queue chose it (it may since have been cancelled)."""

    @property
    def value(self) -> Any:
        """What the wake-up carried (a granted slot, the kind of notification), once woken.

        The future's result: the first wake-up that reached it, which is this queue's own
        whenever `woken` is true (a queue never wakes a future that is already done).
        """
        return self.future.result() if self.woken else None

    def wake(self, value: Any) -> bool:
        """Resolve the future with `value` unless it is done; return whether it was woken."""
        future = self.future
        if future.done():
            return False  # cancelled, or a `select` another branch already woke
        self.woken = True
        future.set_result(value)
        return True

    def __repr__(self) -> str:
        name = self.task.get_name() if self.task is not None else None
        return f"<Waiter task={name!r} since={self.since} woken={self.woken}>"


_queues: weakref.WeakSet[WaitQueue] = weakref.WeakSet()
_serials = itertools.count(1)


def next_serial() -> int:
    """A number that grows with every resource created (observers tell new from old)."""
    return next(_serials)


def wait_queues() -> list[WaitQueue]:
    """Return every live wait queue (for observers such as a console; not for control)."""
    return list(_queues)


class WaitQueue(deque[Waiter]):
    """The tasks waiting for one operation on one resource, in arrival order.

    A wait queue is not a lock or a condition: it holds no state of the resource, it only
    parks and wakes. The resource decides when to wake whom, and what a wake-up that its
    waiter could not use becomes (`on_abandoned`; by default it goes to the next waiter).

    Args:
        binding: the loop binding of the resource (checked when a waiter is created).
        resource: the primitive's state, for descriptions (`describe()`, `name`).
        operation: what the waiters do: "send", "recv", "changed", "notified", ...
        on_abandoned: called with a wake-up's value when its waiter was woken and then
            cancelled (or a `select` that was woken chose another branch).
        timed: record when each waiter started waiting, and sum the time waited in
            `total_wait` (two clock reads per wait: for the waits a statistic reports,
            such as backpressure on a channel's senders).
    """

    __slots__ = (
        "_on_abandoned",
        "binding",
        "operation",
        "resource",
        "serial",
        "timed",
        "total_wait",
    )

    def __init__(
        self,
        binding: LoopBinding,
        resource: Resource,
        operation: str,
        *,
        on_abandoned: Callable[[Any], None] | None = None,
        timed: bool = False,
    ) -> None:
        super().__init__()
        self.timed = timed
        self.binding = binding
        self.resource = resource
        self.operation = operation
        self._on_abandoned = on_abandoned
        self.total_wait = 0.0
        """Loop seconds that parked tasks spent waiting here, summed as they resume (timed)."""
        self.serial = next_serial()
        """Creation order among resources (`next_serial()`): newer queues have larger ones."""
        _queues.add(self)

    # --- waiting -------------------------------------------------------------------------

    async def park(self, owner: object = None) -> Any:
        """Wait until a waker chooses this task; return the wake-up's value.

        Raises:
            asyncio.CancelledError: the task was cancelled; the waiter is gone, and a
                wake-up it had already received is passed on (`abandon`).
            RuntimeError: the resource belongs to another event loop.
        """
        loop = asyncio.get_running_loop()
        if loop is not self.binding.loop:
            self.binding.bind()  # binds, or raises if the resource belongs to another loop
        future: asyncio.Future[Any] = loop.create_future()
        since = loop.time() if self.timed else None
        waiter = Waiter(future, asyncio.current_task(loop), since, owner)
        self.append(waiter)
        try:
            return await future
        except asyncio.CancelledError:
            if waiter.woken:
                self.abandon(waiter.value)  # chosen, then cancelled: pass the wake-up on
            else:
                self._forget(waiter)
            raise
        finally:
            if since is not None:
                self.total_wait += loop.time() - since

    def register(self, future: asyncio.Future[Any], owner: object = None) -> Waiter:
        """Queue `future` to be resolved by a wake-up (`select`'s waker); return the waiter."""
        loop = self.binding.bind()
        waiter = Waiter(future, asyncio.current_task(loop), None, owner)
        self.append(waiter)
        return waiter

    def unregister(self, waiter: Waiter) -> bool:
        """Stop listening with `waiter`; return whether it had been woken (then it is gone)."""
        if not waiter.woken:
            self._forget(waiter)
        return waiter.woken

    def _forget(self, waiter: Waiter) -> None:
        with contextlib.suppress(ValueError):  # a waker may already have popped it
            self.remove(waiter)

    def abandon(self, value: Any = None) -> None:
        """Hand back a wake-up that its waiter could not use."""
        if self._on_abandoned is not None:
            self._on_abandoned(value)
        else:
            self.wake_one(value)

    # --- waking --------------------------------------------------------------------------

    def wake_one(self, value: Any = None) -> bool:
        """Wake the longest-waiting waiter; return False if nobody could be woken."""
        while self:
            if self.popleft().wake(value):
                return True
        return False

    def wake_last(self, value: Any = None) -> bool:
        """Wake the most recent waiter; return False if nobody could be woken."""
        while self:
            if self.pop().wake(value):
                return True
        return False

    def wake_all(self, value: Any = None) -> int:
        """Wake every waiter; return how many were woken."""
        woken = 0
        for waiter in self:
            woken += waiter.wake(value)
        self.clear()
        return woken

    def wake_owner(self, owner: object, value: Any = None) -> int:
        """Wake the waiters that wait through the handle `owner`; return how many."""
        mine = [waiter for waiter in self if waiter.owner is owner]
        for waiter in mine:
            self.remove(waiter)
            waiter.wake(value)
        return len(mine)

    def has_owner(self, owner: object) -> bool:
        """Whether a waiter waits through the handle `owner`."""
        return any(waiter.owner is owner for waiter in self)

    # --- observing -----------------------------------------------------------------------

    @property
    def tasks_waiting(self) -> int:
        """Waiters not yet woken (a `select` woken by another branch no longer counts)."""
        return sum(not waiter.future.done() for waiter in self)

    def waiters(self) -> list[Waiter]:
        """The waiters not yet woken, oldest first (a snapshot)."""
        return [waiter for waiter in self if not waiter.future.done()]

    def __repr__(self) -> str:
        return (
            f"<WaitQueue {self.operation} on {self.resource.describe()} "
            f"waiting={self.tasks_waiting}>"
        )

    # A queue is identified by itself, not by its contents (deque compares items).
    __eq__ = object.__eq__
    __hash__ = object.__hash__  # type: ignore[assignment]


class Branch(ABC, Generic[T_co]):
    """One operation that `select` can wait for.

    A branch is *polled*: `poll()` completes the operation only if it can do so without
    waiting ("take now"), and otherwise returns `PENDING` and changes nothing. Between
    polls, `arm()` registers a future to be woken when the branch may have become ready
    ("register me"), and `disarm()` unregisters it. `finish()` runs once when `select`
    ends, to hand back anything the branch holds but did not use.
    """

    __slots__ = ("enabled",)

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Prepare for one `select` call (e.g. fix a timeout's deadline)."""

    @abstractmethod
    def poll(self) -> T_co | Pending:
        """Complete the operation now and return its value, or return `PENDING`."""

    @abstractmethod
    def arm(self, waker: asyncio.Future[Any]) -> None:
        """Arrange for `waker` to be resolved when this branch may be ready."""

    @abstractmethod
    def disarm(self, waker: asyncio.Future[Any]) -> None:
        """Undo `arm`."""

    def finish(self, won: bool) -> None:
        """Release what this branch holds; `won` says whether it was selected."""

    def describe(self) -> str:
        """Say in plain words what the branch waits for (for observers such as a console)."""
        return repr(self)


class QueueSelectable:
    """Mixin for a handle whose operation parks in a `WaitQueue`: it makes its branch.

    The handle names the operation (`select_operation`), gives its non-waiting form
    (`_poll`: a value, `PENDING`, or an exception) and the queue a waiting task would park
    in (`_select_queue`); `select_branch()` does the rest.
    """

    __slots__ = ()

    select_operation: ClassVar[str]

    def _poll(self) -> Any:
        raise NotImplementedError

    def _select_queue(self) -> WaitQueue:
        raise NotImplementedError

    def select_branch(self, *, enabled: bool = True) -> QueueBranch[Any]:
        """Return a `select` branch for this handle's operation (`on_recv` makes one)."""
        return QueueBranch(self._poll, self._select_queue(), owner=self, enabled=enabled)


class QueueBranch(Branch[T]):
    """A `select` branch for an operation whose waiters live in a `WaitQueue`.

    Args:
        poll: the operation's non-waiting form: its value, `PENDING`, or an exception.
        queue: where a task waiting for the operation would park.
        owner: the handle it goes through (its `close()` wakes the branch); the branch
            shows as `on_<operation>(<owner>)`, made only when a repr is asked for.
        label: how the branch shows in reprs instead.
    """

    __slots__ = ("_label", "_owner", "_poll", "_queue", "_waiter", "_woken", "_woken_value")

    def __init__(
        self,
        poll: Callable[[], T | Pending],
        queue: WaitQueue,
        *,
        owner: object = None,
        label: str | None = None,
        enabled: bool = True,
    ) -> None:
        super().__init__(enabled=enabled)
        self._poll = poll
        self._queue = queue
        self._owner = owner
        self._label = label
        self._waiter: Waiter | None = None
        self._woken = False
        self._woken_value: Any = None

    def poll(self) -> T | Pending:
        value = self._poll()
        if value is not PENDING:
            self._woken = False  # a wake-up we received is used
        return value

    def arm(self, waker: asyncio.Future[Any]) -> None:
        self._waiter = self._queue.register(waker, self._owner)

    def disarm(self, waker: asyncio.Future[Any]) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and self._queue.unregister(waiter):
            self._woken = True
            self._woken_value = waiter.value

    def finish(self, won: bool) -> None:
        if self._woken and not won:
            self._queue.abandon(self._woken_value)  # another branch won: pass it on
        self._woken = False

    def describe(self) -> str:
        return f"{self._queue.operation} on {self._queue.resource.describe()}"

    def __repr__(self) -> str:
        if self._label is not None:
            return self._label
        return f"on_{getattr(self._owner, 'select_operation', 'wait')}({self._owner!r})"
