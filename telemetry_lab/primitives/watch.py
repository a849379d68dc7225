"""Share the latest value of something with many observers.

`watch(initial)` returns a `(WatchSender, WatchReceiver)` pair, the asyncio counterpart of
Tokio's `watch::channel`. The channel holds exactly one value and a version number. Each
receiver remembers the version it has *seen*, so `await rx.changed()` wakes once per change
that it has not looked at yet, however many changes happened in between.

`asyncio.Event` cannot do this: it has one flag for everybody, so one observer clearing it
hides the change from the others.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from telemetry_lab.errors import ChannelClosed, NoReceivers
from telemetry_lab.primitives._private import (
    ClosingHandle,
    LoopBinding,
    check_name,
)
from telemetry_lab.primitives.waiting import PENDING, Pending, QueueSelectable, WaitQueue

__all__ = ["WatchReceiver", "WatchSender", "WatchStatistics", "watch"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchStatistics:
    """A snapshot of one watch channel, shared by all of its handles."""

    current_version: int
    """How many times the value has changed (0 for the initial value)."""
    current_receivers: int
    """Receivers not yet closed."""
    open_send_handles: int
    """Sender handles not yet closed."""
    tasks_waiting_changed: int
    """Tasks blocked in `changed()` or `wait_for()`."""
    name: str | None = None
    """The name given to `watch()`, or None."""


class _WatchState(Generic[T]):
    __slots__ = (
        "binding",
        "changed_queue",
        "closed_queue",
        "handles",
        "name",
        "receivers",
        "senders",
        "value",
        "version",
    )

    def __init__(self, value: T, name: str | None) -> None:
        self.name = name
        self.binding = LoopBinding("watch channel" if name is None else f"watch channel {name!r}")
        self.value = value
        self.version = 0
        self.senders = 0
        self.receivers = 0
        # Every waiter is woken by a change, so a wake-up is never passed on.
        self.changed_queue = WaitQueue(self.binding, self, "changed", on_abandoned=_nothing)
        self.closed_queue = WaitQueue(self.binding, self, "closed", on_abandoned=_nothing)
        self.handles: weakref.WeakSet[WatchSender[T] | WatchReceiver[T]] = weakref.WeakSet()

    @property
    def closed(self) -> bool:
        """Whether every sender is closed (for observers)."""
        return self.senders == 0

    def completers(self, operation: str) -> list[object] | None:
        """The live, open handles that could end a wait for `operation` (for observers).

        `changed()` waits for a sender; `closed()` waits for the receivers to go.
        """
        if operation == "changed":
            return [h for h in self.handles if isinstance(h, WatchSender) and not h._closed]
        if operation == "closed":
            return [h for h in self.handles if isinstance(h, WatchReceiver) and not h._closed]
        return None

    def check(self) -> None:
        """Raise before a change if it would wake waiters of another loop."""
        if self.changed_queue or self.closed_queue:
            self.binding.check()

    def publish(self) -> None:
        self.version += 1
        self.changed_queue.wake_all()

    def describe(self) -> str:
        name = "watch" if self.name is None else f"watch {self.name!r}"
        closed = ", closed" if self.senders == 0 else ""
        return f"{name} (version {self.version}, {self.receivers} receivers{closed})"

    def statistics(self) -> WatchStatistics:
        return WatchStatistics(
            current_version=self.version,
            current_receivers=self.receivers,
            open_send_handles=self.senders,
            tasks_waiting_changed=self.changed_queue.tasks_waiting,
            name=self.name,
        )


def _nothing(wake: object) -> None:
    """A wake-up nobody else needs (every waiter was woken at once)."""


def _named(state: _WatchState[Any]) -> str:
    return "" if state.name is None else f" name={state.name!r}"


class WatchSender(ClosingHandle, Generic[T]):
    """The publishing half of a watch channel.

    A watch is not a queue: it keeps only the latest value, so an observer that looks twice
    after three sends sees the third value once, not all three.
    """

    __slots__ = ("_closed", "_state")

    def __init__(self, state: _WatchState[T]) -> None:
        self._state = state
        self._closed = False
        state.senders += 1
        state.handles.add(self)

    def _open_state(self, value: object = None) -> _WatchState[T]:
        if self._closed:
            raise ChannelClosed("sender handle is closed", value=value)
        return self._state

    def send(self, value: T) -> None:
        """Replace the value and wake every receiver.

        Raises:
            NoReceivers: nobody is subscribed; the value is **not** stored (`.value`).
            ChannelClosed: this handle is closed (`.value` is the unsent value).
        """
        st = self._open_state(value)
        if st.receivers == 0:
            raise NoReceivers(value=value)
        st.check()
        st.value = value
        st.publish()

    def send_replace(self, value: T) -> T:
        """Store `value` and notify, with or without receivers; return the old value."""
        st = self._open_state(value)
        st.check()
        old, st.value = st.value, value
        st.publish()
        return old

    def send_modify(self, modify: Callable[[T], object]) -> None:
        """Call `modify(value)` to change the value in place, then notify.

        If `modify` raises, the exception propagates and nobody is notified.
        """
        st = self._open_state()
        st.check()
        modify(st.value)
        st.publish()

    def send_if_modified(self, modify: Callable[[T], bool]) -> bool:
        """Call `modify(value)`; notify only if it returns True. Return what it returned."""
        st = self._open_state()
        st.check()
        modified = modify(st.value)
        if modified:
            st.publish()
        return modified

    def borrow(self) -> T:
        """Return the current value."""
        return self._open_state().value

    def subscribe(self) -> WatchReceiver[T]:
        """Return a new receiver; the current value counts as seen."""
        return WatchReceiver(self._open_state(), seen=self._state.version)

    async def closed(self) -> None:
        """Wait until no receiver is left (return at once if none is)."""
        st = self._state
        while st.receivers:
            await st.closed_queue.park()

    def clone(self) -> WatchSender[T]:
        """Return another sender handle for the same channel."""
        return WatchSender(self._open_state())

    def close(self) -> None:
        """Close this handle (idempotent); the last one closes the channel."""
        if self._closed:
            return
        st = self._state
        st.check()
        self._closed = True
        st.senders -= 1
        if st.senders == 0:
            st.changed_queue.wake_all()

    def _left_waiting(self) -> str | None:
        st = self._state
        if not self._closed and st.senders == 1 and st.changed_queue.tasks_waiting:
            return "receivers still wait for a change or the close from it"
        return None

    @property
    def receiver_count(self) -> int:
        """Receivers not yet closed."""
        return self._state.receivers

    @property
    def is_closed(self) -> bool:
        """True when no receiver is left."""
        return self._state.receivers == 0

    def statistics(self) -> WatchStatistics:
        """Return a snapshot of the channel's state."""
        return self._state.statistics()

    def __repr__(self) -> str:
        st = self._state
        return (
            f"<WatchSender{_named(st)} version={st.version} receivers={st.receivers} "
            f"senders={st.senders} closed={self._closed} value={st.value!r}>"
        )


class WatchReceiver(QueueSelectable, ClosingHandle, Generic[T]):
    """An observer of a watch channel that remembers which version it has seen.

    A watch receiver is not a stream of every value: between two looks, only the latest
    value is kept.
    """

    __slots__ = ("_closed", "_seen", "_state")

    select_operation = "changed"
    """The operation `select_branch()` offers (`on_changed` accepts this receiver)."""

    def __init__(self, state: _WatchState[T], *, seen: int) -> None:
        self._state = state
        self._seen = seen
        self._closed = False
        state.receivers += 1
        state.handles.add(self)

    def _open_state(self) -> _WatchState[T]:
        if self._closed:
            raise ChannelClosed("receiver is closed")
        return self._state

    def borrow(self) -> T:
        """Return the current value without marking it seen."""
        return self._open_state().value

    def borrow_and_update(self) -> T:
        """Return the current value and mark it seen."""
        st = self._open_state()
        self._seen = st.version
        return st.value

    def has_changed(self) -> bool:
        """Return whether the current value is unseen.

        Raises:
            ChannelClosed: every sender is closed (even if the value is unseen).
        """
        st = self._open_state()
        if st.senders == 0:
            raise ChannelClosed()
        return self._seen != st.version

    async def changed(self) -> None:
        """Return once the current value is unseen, marking it seen.

        Returns at once if the value is already unseen, else waits for a send.

        Raises:
            ChannelClosed: every sender is closed and the current value was seen.
        """
        st = self._open_state()
        while self._seen == st.version:
            if st.senders == 0:
                raise ChannelClosed()
            await st.changed_queue.park(owner=self)
            st = self._open_state()
        self._seen = st.version

    def _poll(self) -> T | Pending:
        """The logic of `changed()` without waiting: the new value (marked seen), or PENDING."""
        st = self._open_state()
        if self._seen != st.version:
            self._seen = st.version
            return st.value
        if st.senders == 0:
            raise ChannelClosed()
        return PENDING

    def _select_queue(self) -> WaitQueue:
        return self._state.changed_queue

    async def wait_for(self, predicate: Callable[[T], bool]) -> T:
        """Return the first value, the current one included, for which `predicate` is true.

        The returned value is marked seen.

        Raises:
            ChannelClosed: every sender is closed and the final value fails `predicate`.
        """
        st = self._open_state()
        while True:
            self._seen = st.version
            value = st.value
            if predicate(value):
                return value
            if st.senders == 0:
                raise ChannelClosed()
            while self._seen == st.version and st.senders:
                await st.changed_queue.park(owner=self)
                st = self._open_state()

    def mark_changed(self) -> None:
        """Mark the current value unseen, so `changed()` returns at once."""
        self._seen = self._open_state().version - 1

    def mark_unchanged(self) -> None:
        """Mark the current value seen."""
        self._seen = self._open_state().version

    def clone(self) -> WatchReceiver[T]:
        """Return another receiver that has seen what this one has seen."""
        return WatchReceiver(self._open_state(), seen=self._seen)

    def close(self) -> None:
        """Unsubscribe (idempotent)."""
        if self._closed:
            return
        st = self._state
        st.check()
        self._closed = True
        st.receivers -= 1
        st.changed_queue.wake_owner(self)  # only a changed() waiting on this handle
        if st.receivers == 0:
            st.closed_queue.wake_all()

    def _left_waiting(self) -> str | None:
        st = self._state
        if not self._closed and st.receivers == 1 and st.closed_queue.tasks_waiting:
            return "a task still waits in closed() for it to unsubscribe"
        return None

    @property
    def is_closed(self) -> bool:
        """True once this receiver is closed or every sender is."""
        return self._closed or self._state.senders == 0

    def statistics(self) -> WatchStatistics:
        """Return a snapshot of the channel's state."""
        return self._state.statistics()

    def __repr__(self) -> str:
        st = self._state
        return (
            f"<WatchReceiver{_named(st)} version={st.version} seen={self._seen} "
            f"senders={st.senders} closed={self._closed}>"
        )


def watch(initial: T, *, name: str | None = None) -> tuple[WatchSender[T], WatchReceiver[T]]:
    """Create a watch channel holding `initial`; return `(sender, receiver)`.

    The initial value counts as seen by the first receiver. `name` is how reprs,
    statistics and the console call the channel.
    """
    state = _WatchState(initial, check_name(name))
    return WatchSender(state), WatchReceiver(state, seen=0)
