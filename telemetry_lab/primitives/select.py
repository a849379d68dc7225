"""Wait for the first of several operations, and let only the winner take a value.

`select()` is the asyncio counterpart of `tokio::select!`. Each argument is a *branch*
describing an operation (`on_recv(rx)`, `on_changed(rx)`, `on_notified(n)`,
`on_timeout(s)`, `on_deadline(t)`, `on_event(ev)`, `on_done(fut)`). `select` returns a
`Selected` naming the branch that won and its value::

    match await select(on_recv(readings), on_deadline(flush_at), biased=True):
        case Selected(index=0, value=reading):
            batch.append(reading)
        case Selected(index=1):
            await flush(batch)

Why not `asyncio.wait(..., return_when=FIRST_COMPLETED)` on `rx.recv()` tasks? Each task
*consumes* a value when it completes, and several can complete in the same loop iteration:
the caller keeps one and the others' values are gone. `select` never starts a consuming
operation speculatively. It waits until some branch is *ready* (a value is buffered, a
deadline has passed), then completes exactly one ready branch, synchronously, in the
calling task. Nothing else is consumed, and nothing runs in another task.

Rules:
- Branches are polled in argument order when `biased=True`; otherwise from a random start,
  so that one always-ready branch cannot starve the others.
- A branch given as `None`, or created with `enabled=False`, is switched off; indices still
  count it. If every branch is off, `select` raises `ValueError`.
- A branch whose operation fails (a closed channel's `ChannelClosed`, a broadcast
  `Lagged`) wins with that exception: `select` raises it, with the branch's position as
  `exc.branch_index` and the branch as `exc.branch`. (Tokio's `select!` instead disables a
  branch whose pattern does not match and runs its `else` arm when all are disabled; here,
  switch a finished branch off yourself on the next call: `on_recv(rx, enabled=open)`.)
- If `select` is cancelled, nothing was consumed, and a `notify_one` wake-up that had
  reached it is passed on to the next waiter.
- Create branches afresh for each `select` call, as `tokio::select!` creates its futures.
  `on_timeout` measures from the start of the `select` call; to keep one deadline across a
  loop, use `on_deadline(loop.time() + seconds)`.
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from telemetry_lab.errors import FutureCancelled
from telemetry_lab.primitives.waiting import PENDING, Branch, Pending

__all__ = [
    "Branch",
    "Selectable",
    "Selected",
    "on_changed",
    "on_deadline",
    "on_done",
    "on_event",
    "on_notified",
    "on_recv",
    "on_timeout",
    "select",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

_rng = random.Random()


@dataclass(frozen=True, slots=True)
class Selected(Generic[T_co]):
    """The winning branch of a `select`: its position among the arguments and its value."""

    index: int
    """Position of the winning branch among the arguments to `select` (disabled included)."""
    value: T_co
    """What the branch's operation produced (None for timeouts and events)."""
    branch: Branch[Any]
    """The winning branch object itself."""


class Selectable(Protocol[T_co]):
    """A primitive that `select` can wait on: it makes its own branch.

    The package's receivers and `Notify` implement it; so can a new primitive, without any
    change here: give it `select_operation` ("recv", "changed", "notified", or a name of
    its own) and `select_branch()`, and pass `x.select_branch()` to `select` directly.
    """

    select_operation: ClassVar[str]

    def select_branch(self, *, enabled: bool = True) -> Branch[T_co]:
        """Return a branch that polls the operation and registers in its wait queue."""


def wake_future(future: asyncio.Future[Any]) -> None:
    """Resolve `select`'s waker unless it is already done."""
    if not future.done():
        future.set_result(None)


def _branch_of(source: object, operation: str, helper: str, expected: str) -> Branch[Any]:
    if getattr(type(source), "select_operation", None) != operation:
        raise TypeError(f"{helper}() needs {expected}, got {source!r}")
    branch: Branch[Any] = source.select_branch()  # type: ignore[attr-defined]
    return branch


class _DeadlineBranch(Branch[None]):
    __slots__ = ("_deadline", "_delay", "_handle", "_loop")

    def __init__(self, *, deadline: float | None, delay: float | None, enabled: bool) -> None:
        super().__init__(enabled=enabled)
        self._deadline = deadline
        self._delay = delay
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        if self._delay is not None:
            self._deadline = loop.time() + self._delay

    def poll(self) -> Pending | None:
        assert self._loop is not None
        assert self._deadline is not None
        return None if self._loop.time() >= self._deadline else PENDING

    def arm(self, waker: asyncio.Future[Any]) -> None:
        assert self._loop is not None
        assert self._deadline is not None
        self._handle = self._loop.call_at(self._deadline, wake_future, waker)

    def disarm(self, waker: asyncio.Future[Any]) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def describe(self) -> str:
        if self._loop is None or self._deadline is None:
            return repr(self)
        return f"timeout in {max(0.0, self._deadline - self._loop.time()):.2f} s"

    def __repr__(self) -> str:
        if self._delay is not None:
            return f"on_timeout({self._delay!r})"
        return f"on_deadline({self._deadline!r})"


class _EventBranch(Branch[None]):
    __slots__ = ("_event", "_task")

    def __init__(self, event: asyncio.Event, *, enabled: bool) -> None:
        super().__init__(enabled=enabled)
        self._event = event
        self._task: asyncio.Task[Any] | None = None

    def poll(self) -> Pending | None:
        return None if self._event.is_set() else PENDING

    def arm(self, waker: asyncio.Future[Any]) -> None:
        # asyncio.Event has no callback API; a helper task owned (and cancelled) by this
        # branch waits for it. Waiting for an event consumes nothing.
        self._task = asyncio.get_running_loop().create_task(self._event.wait())
        self._task.add_done_callback(lambda _: wake_future(waker))

    def disarm(self, waker: asyncio.Future[Any]) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def describe(self) -> str:
        return f"wait on asyncio.Event ({'set' if self._event.is_set() else 'not set'})"

    def __repr__(self) -> str:
        return f"on_event({self._event!r})"


class _DoneBranch(Branch[T]):
    __slots__ = ("_callback", "_future")

    def __init__(self, future: asyncio.Future[T], *, enabled: bool) -> None:
        super().__init__(enabled=enabled)
        self._future = future

    def poll(self) -> T | Pending:
        future = self._future
        if not future.done():
            return PENDING
        if future.cancelled():
            # Not `future.result()`: its CancelledError would look like a cancellation of
            # the task running `select`, which nobody asked for.
            raise FutureCancelled(future)
        return future.result()

    def arm(self, waker: asyncio.Future[Any]) -> None:
        self._callback = lambda _: wake_future(waker)
        self._future.add_done_callback(self._callback)

    def disarm(self, waker: asyncio.Future[Any]) -> None:
        self._future.remove_done_callback(self._callback)

    def describe(self) -> str:
        future = self._future
        if isinstance(future, asyncio.Task):
            return f"task {future.get_name()!r}"
        return "future"

    def __repr__(self) -> str:
        return f"on_done({self._future!r})"


def on_recv(receiver: Selectable[T], *, enabled: bool = True) -> Branch[T]:
    """Branch: receive the next value from an mpsc or broadcast receiver.

    Wins with the value; raises from `select` what `try_recv` raises (`ChannelClosed` once
    closed and drained, `Lagged` for a lagging broadcast receiver).
    """
    branch = _branch_of(receiver, "recv", "on_recv", "a Receiver or BroadcastReceiver")
    branch.enabled = enabled
    return branch


def on_changed(receiver: Selectable[T], *, enabled: bool = True) -> Branch[T]:
    """Branch: the watch value changed since this receiver last saw it.

    Wins with the new value, marked seen; raises `ChannelClosed` if every sender is closed
    and the current value was seen.
    """
    branch = _branch_of(receiver, "changed", "on_changed", "a WatchReceiver")
    branch.enabled = enabled
    return branch


def on_notified(notify: Selectable[None], *, enabled: bool = True) -> Branch[None]:
    """Branch: a wake-up from `notify` (a stored permit, `notify_one`, or `notify_waiters`).

    Like `notify.notified()`, it is created now: `notify_waiters()` called after this line
    wakes it.
    """
    branch = _branch_of(notify, "notified", "on_notified", "a Notify")
    branch.enabled = enabled
    return branch


def _finite_seconds(name: str, value: object, *, minimum: float | None) -> float:
    """Return `value` as a float, refusing wrong types, NaN, infinities and huge ints."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    try:
        seconds = float(value)
    except OverflowError:
        raise ValueError(f"{name} must be a finite number, got an integer too large") from None
    if not math.isfinite(seconds):
        hint = "; to wait without a limit, leave the branch out" if seconds == math.inf else ""
        raise ValueError(f"{name} must be a finite number, got {value!r}{hint}")
    if minimum is not None and seconds < minimum:
        raise ValueError(f"{name} must be >= {minimum:g}, got {value!r}")
    return seconds


def on_timeout(seconds: float, *, enabled: bool = True) -> Branch[None]:
    """Branch: `seconds` of loop time have passed since `select` started.

    Raises:
        ValueError: `seconds` is negative, NaN or infinite.
    """
    delay = _finite_seconds("seconds", seconds, minimum=0.0)
    return _DeadlineBranch(deadline=None, delay=delay, enabled=enabled)


def on_deadline(when: float, *, enabled: bool = True) -> Branch[None]:
    """Branch: the loop's clock (`loop.time()`) has reached `when`.

    Raises:
        ValueError: `when` is NaN or infinite.
    """
    deadline = _finite_seconds("when", when, minimum=None)
    return _DeadlineBranch(deadline=deadline, delay=None, enabled=enabled)


def on_event(event: asyncio.Event, *, enabled: bool = True) -> Branch[None]:
    """Branch: `event` is set (nothing is consumed; the event stays set)."""
    if not isinstance(event, asyncio.Event):
        raise TypeError(f"on_event() needs an asyncio.Event, got {event!r}")
    return _EventBranch(event, enabled=enabled)


def on_done(future: asyncio.Future[T], *, enabled: bool = True) -> Branch[T]:
    """Branch: a task or future you own is done; wins with its result (or raises its error).

    `select` never cancels it: the task keeps its owner. If it was cancelled, `select`
    raises `FutureCancelled` (not its `CancelledError`: nobody cancelled the selecting task).
    """
    if not isinstance(future, asyncio.Future):
        raise TypeError(f"on_done() needs an asyncio.Future or Task, got {future!r}")
    return _DoneBranch(future, enabled=enabled)


async def select(
    *branches: Branch[Any] | None, biased: bool = False, rng: random.Random | None = None
) -> Selected[Any]:
    """Wait until one branch is ready, complete only that one, and return it.

    Args:
        *branches: the operations to race; `None` switches a position off.
        biased: poll in argument order (the first ready branch wins) instead of from a
            random start.
        rng: the random source for the unbiased start (for reproducible runs).

    Returns:
        `Selected(index, value, branch)` for the winner.

    Raises:
        ValueError: every branch is switched off.
        Exception: whatever the winning branch's operation raised.
    """
    active = [(i, b) for i, b in enumerate(branches) if b is not None and b.enabled]
    if not active:
        raise ValueError(f"select() needs an enabled branch; all {len(branches)} are off")
    if not biased and len(active) > 1:
        k = (rng or _rng).randrange(len(active))
        active = active[k:] + active[:k]
    loop = asyncio.get_running_loop()
    for _, branch in active:
        branch.start(loop)
    winner: Branch[Any] | None = None
    try:
        while True:
            for index, branch in active:
                winner = branch
                try:
                    value = branch.poll()
                except Exception as exc:  # the branch wins with its error: say which one
                    exc.branch_index = index  # type: ignore[attr-defined]
                    exc.branch = branch  # type: ignore[attr-defined]
                    raise
                if value is not PENDING:
                    return Selected(index, value, branch)
            winner = None
            waker: asyncio.Future[Any] = loop.create_future()
            for _, branch in active:
                branch.arm(waker)
            try:
                await waker
            finally:
                for _, branch in active:
                    branch.disarm(waker)
    finally:
        for _, branch in active:
            branch.finish(branch is winner)
