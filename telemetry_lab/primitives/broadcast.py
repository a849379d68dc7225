"""Fan every value out to every subscriber through one fixed-size ring buffer.

`broadcast(capacity)` returns a `(BroadcastSender, BroadcastReceiver)` pair, the asyncio
counterpart of Tokio's `broadcast::channel`. The sender never waits: it writes into a ring
of exactly `capacity` slots and wakes whoever is waiting. A receiver that falls more than
`capacity` values behind does not slow anyone down; instead it loses the oldest values and
is told how many with `Lagged(skipped)`.

Compared with one `asyncio.Queue` per subscriber, a send costs the same whether 1 or 1,000
receivers are behind, and memory is bounded by `capacity` values, not by the slowest
subscriber.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from telemetry_lab.errors import ChannelClosed, ChannelEmpty, Lagged, NoReceivers
from telemetry_lab.primitives._private import (
    ClosingHandle,
    LoopBinding,
    check_name,
)
from telemetry_lab.primitives.waiting import PENDING, Pending, QueueSelectable, WaitQueue

__all__ = [
    "BroadcastReceiver",
    "BroadcastReceiverStatistics",
    "BroadcastSender",
    "BroadcastStatistics",
    "broadcast",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

_EMPTY: Any = object()  # a slot whose value every receiver has read (released)

MAX_CAPACITY = 2**24
"""The largest ring `broadcast()` allocates (16,777,216 slots, 128 MiB of references)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BroadcastStatistics:
    """A snapshot of one broadcast channel, shared by all of its handles."""

    max_buffer_size: int
    """The capacity given to `broadcast()`: how many values are retained."""
    current_buffer_used: int
    """Retained values not yet read by every receiver (`len(tx)`)."""
    current_receivers: int
    """Receivers subscribed now."""
    open_send_handles: int
    """Sender handles not yet closed."""
    tasks_waiting_receive: int
    """Tasks blocked in `recv()` waiting for the next value."""
    total_sent: int
    """Values ever sent (each counted once, however many receivers saw it)."""
    total_lagged: int
    """Values ever skipped by lagging receivers, summed over receivers."""
    name: str | None = None
    """The name given to `broadcast()`, or None."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BroadcastReceiverStatistics:
    """A snapshot of one broadcast receiver."""

    current_pending: int
    """Values sent since this receiver's cursor, overwritten ones included (`len(rx)`)."""
    total_received: int
    """Values this receiver has returned."""
    total_lagged: int
    """Values this receiver skipped because they were overwritten before it read them."""
    total_lag_events: int
    """Times this receiver raised `Lagged`."""


class _BroadcastState(Generic[T]):
    """The ring shared by every handle of one broadcast channel.

    Position `p` (the p-th value ever sent) lives in slot `p % capacity` while
    `tail - capacity <= p < tail`. `remaining[slot]` counts the receivers that were
    subscribed when it was sent and have neither read it nor unsubscribed; the value is
    released when it reaches 0, so `queued` (slots still owed to someone) is `len(tx)`.
    """

    __slots__ = (
        "binding",
        "capacity",
        "closed_queue",
        "handles",
        "name",
        "open_senders",
        "queued",
        "receivers",
        "recv_queue",
        "remaining",
        "slots",
        "tail",
        "total_lagged",
    )

    def __init__(self, capacity: int, name: str | None) -> None:
        self.capacity = capacity
        self.name = name
        self.binding = LoopBinding(
            "broadcast channel" if name is None else f"broadcast channel {name!r}"
        )
        self.slots: list[T] = [_EMPTY] * capacity
        self.remaining: list[int] = [0] * capacity
        self.tail = 0
        self.queued = 0
        self.receivers = 0
        self.open_senders = 0
        # Every waiter is woken by a send, so a wake-up is never passed on.
        self.recv_queue = WaitQueue(self.binding, self, "recv", on_abandoned=_nothing)
        self.closed_queue = WaitQueue(self.binding, self, "closed", on_abandoned=_nothing)
        self.total_lagged = 0
        self.handles: weakref.WeakSet[BroadcastSender[T] | BroadcastReceiver[T]] = weakref.WeakSet()

    @property
    def closed(self) -> bool:
        """Whether every sender is closed (for observers)."""
        return self.open_senders == 0

    def completers(self, operation: str) -> list[object] | None:
        """The live, open handles that could end a wait for `operation` (for observers).

        A receive waits for a sender; `closed()` waits for the receivers to go.
        """
        if operation == "recv":
            return [h for h in self.handles if isinstance(h, BroadcastSender) and not h._closed]
        if operation == "closed":
            return [h for h in self.handles if isinstance(h, BroadcastReceiver) and not h._closed]
        return None

    def release_range(self, start: int) -> None:
        """Forget one receiver's claim on every retained value from `start` to the tail."""
        cap = self.capacity
        for pos in range(max(start, self.tail - cap), self.tail):
            slot = pos % cap
            self.remaining[slot] -= 1
            if self.remaining[slot] == 0:
                self.slots[slot] = _EMPTY
                self.queued -= 1

    def describe(self) -> str:
        name = "broadcast" if self.name is None else f"broadcast {self.name!r}"
        closed = ", closed" if self.open_senders == 0 else ""
        return (
            f"{name} ({self.queued}/{self.capacity} retained, {self.receivers} receivers{closed})"
        )

    def statistics(self) -> BroadcastStatistics:
        return BroadcastStatistics(
            max_buffer_size=self.capacity,
            current_buffer_used=self.queued,
            current_receivers=self.receivers,
            open_send_handles=self.open_senders,
            tasks_waiting_receive=self.recv_queue.tasks_waiting,
            total_sent=self.tail,
            total_lagged=self.total_lagged,
            name=self.name,
        )


def _nothing(wake: object) -> None:
    """A wake-up nobody else needs (every waiter was woken at once)."""


def _named(state: _BroadcastState[Any]) -> str:
    return "" if state.name is None else f" name={state.name!r}"


class BroadcastSender(ClosingHandle, Generic[T]):
    """The sending half of a broadcast channel; `send` never waits.

    A broadcast is not a queue: a value reaches only the receivers subscribed when it was
    sent, and a slow receiver loses the oldest values (`Lagged`) instead of slowing the
    sender. The item type is invariant (not contravariant like an mpsc `Sender`), because
    `subscribe()` hands out receivers of the same type.
    """

    __slots__ = ("_closed", "_state")

    def __init__(self, state: _BroadcastState[Any]) -> None:
        self._state = state
        self._closed = False
        state.open_senders += 1
        state.handles.add(self)

    def send(self, value: T) -> int:
        """Store `value` for every current receiver and wake those waiting.

        Returns:
            The number of receivers that will see the value.

        Raises:
            NoReceivers: nobody is subscribed; the value is not stored (`.value`).
            ChannelClosed: this handle is closed.
        """
        st = self._state
        if self._closed:
            raise ChannelClosed("sender handle is closed", value=value)
        receivers = st.receivers
        if receivers == 0:
            raise NoReceivers(value=value)
        queue = st.recv_queue
        if queue:
            st.binding.check()  # before the value is stored: a misuse sends nothing
        slot = st.tail % st.capacity
        if st.remaining[slot] == 0:
            st.queued += 1  # otherwise an unread value is overwritten: one out, one in
        st.slots[slot] = value
        st.remaining[slot] = receivers
        st.tail += 1
        if queue:
            queue.wake_all()
        return receivers

    def subscribe(self) -> BroadcastReceiver[T]:
        """Return a new receiver that sees only values sent after this call."""
        if self._closed:
            raise ChannelClosed("sender handle is closed")
        return BroadcastReceiver(self._state)

    async def closed(self) -> None:
        """Wait until no receiver is subscribed (return at once if none is)."""
        st = self._state
        while st.receivers:
            await st.closed_queue.park()

    def clone(self) -> BroadcastSender[T]:
        """Return another sender handle for the same channel."""
        if self._closed:
            raise ChannelClosed("sender handle is closed")
        return BroadcastSender(self._state)

    def close(self) -> None:
        """Close this handle (idempotent); the last one closes the channel for receivers."""
        if self._closed:
            return
        st = self._state
        if st.open_senders == 1 and st.recv_queue:
            st.binding.check()
        self._closed = True
        st.open_senders -= 1
        if st.open_senders == 0:
            st.recv_queue.wake_all()

    def _left_waiting(self) -> str | None:
        st = self._state
        if not self._closed and st.open_senders == 1 and st.recv_queue.tasks_waiting:
            return "receivers still wait for a value or the close from it"
        return None

    @property
    def receiver_count(self) -> int:
        """Receivers subscribed now."""
        return self._state.receivers

    @property
    def is_closed(self) -> bool:
        """True once this handle is closed."""
        return self._closed

    def statistics(self) -> BroadcastStatistics:
        """Return a snapshot of the channel's state."""
        return self._state.statistics()

    def __len__(self) -> int:
        return self._state.queued

    def __bool__(self) -> bool:
        """True while this handle is open (an empty buffer does not make a sender falsy)."""
        return not self._closed

    def __repr__(self) -> str:
        st = self._state
        return (
            f"<BroadcastSender{_named(st)} capacity={st.capacity} len={st.queued} "
            f"receivers={st.receivers} senders={st.open_senders} closed={self._closed}>"
        )


class BroadcastReceiver(QueueSelectable, ClosingHandle, Generic[T_co]):
    """One subscriber of a broadcast channel: sees every value sent while subscribed.

    A broadcast receiver is lossy under lag: if it falls more than `capacity` values behind,
    the oldest are overwritten and its next receive raises `Lagged(skipped)`. It stays
    subscribed, and the receive after that returns the oldest value still retained.
    """

    __slots__ = ("_closed", "_cursor", "_lag_events", "_lagged", "_received", "_state")

    def __init__(self, state: _BroadcastState[Any]) -> None:
        self._state = state
        self._cursor = state.tail
        self._closed = False
        self._received = 0
        self._lagged = 0
        self._lag_events = 0
        state.receivers += 1
        state.handles.add(self)

    select_operation = "recv"
    """The operation `select_branch()` offers (`on_recv` accepts this receiver)."""

    def try_recv(self) -> T_co:
        """Return the next value without waiting.

        Raises:
            Lagged: values this receiver had not read were overwritten; `.skipped` says how
                many. The next receive returns the oldest value still retained.
            ChannelEmpty: nothing new, and a sender is still open.
            ChannelClosed: every sender is closed and nothing is left, or this receiver
                is closed.
        """
        value = self._poll()
        if value is PENDING:
            raise ChannelEmpty()
        return value  # type: ignore[return-value]

    def _poll(self) -> T_co | Pending:
        """The logic of `try_recv`: the next value, or `PENDING` while open and empty."""
        if self._closed:
            raise ChannelClosed("receiver is closed")
        st = self._state
        cursor = self._cursor
        if cursor < st.tail:
            cap = st.capacity
            oldest = st.tail - cap
            if cursor < oldest:
                skipped = oldest - cursor
                self._cursor = oldest
                self._lagged += skipped
                self._lag_events += 1
                st.total_lagged += skipped
                raise Lagged(skipped)
            slot = cursor % cap
            value: T_co = st.slots[slot]
            remaining = st.remaining[slot] - 1
            st.remaining[slot] = remaining
            if remaining == 0:
                st.slots[slot] = _EMPTY
                st.queued -= 1
            self._cursor = cursor + 1
            self._received += 1
            return value
        if st.open_senders == 0:
            raise ChannelClosed()
        return PENDING

    async def recv(self) -> T_co:
        """Return the next value, waiting for one to be sent.

        Raises:
            Lagged: as for `try_recv`.
            ChannelClosed: every sender is closed and nothing is left, or this receiver
                is closed.
        """
        while (value := self._poll()) is PENDING:
            await self._state.recv_queue.park(owner=self)
        return value  # type: ignore[return-value]

    def _select_queue(self) -> WaitQueue:
        return self._state.recv_queue

    def resubscribe(self) -> BroadcastReceiver[T_co]:
        """Return a new receiver that sees only values sent after this call."""
        if self._closed:
            raise ChannelClosed("receiver is closed")
        return BroadcastReceiver(self._state)

    def close(self) -> None:
        """Unsubscribe (idempotent): unread values are released for this receiver."""
        if self._closed:
            return
        st = self._state
        if st.recv_queue.has_owner(self) or (st.receivers == 1 and st.closed_queue):
            st.binding.check()
        self._closed = True
        st.receivers -= 1
        st.release_range(self._cursor)
        st.recv_queue.wake_owner(self)  # only a recv() waiting on this handle sees the close
        if st.receivers == 0:
            st.closed_queue.wake_all()

    def _left_waiting(self) -> str | None:
        st = self._state
        if not self._closed and st.receivers == 1 and st.closed_queue.tasks_waiting:
            return "a task still waits in closed() for it to unsubscribe"
        return None

    @property
    def is_closed(self) -> bool:
        """True once this receiver is closed, or every sender is and nothing is left."""
        st = self._state
        return self._closed or (st.open_senders == 0 and self._cursor == st.tail)

    def statistics(self) -> BroadcastReceiverStatistics:
        """Return a snapshot of this receiver's progress."""
        return BroadcastReceiverStatistics(
            current_pending=len(self),
            total_received=self._received,
            total_lagged=self._lagged,
            total_lag_events=self._lag_events,
        )

    def __len__(self) -> int:
        return 0 if self._closed else self._state.tail - self._cursor

    def __bool__(self) -> bool:
        """True while a value may still come (the opposite of `is_closed`), empty or not."""
        return not self.is_closed

    def __aiter__(self) -> BroadcastReceiver[T_co]:
        return self

    async def __anext__(self) -> T_co:
        try:
            return await self.recv()
        except ChannelClosed:
            raise StopAsyncIteration from None

    def __repr__(self) -> str:
        return (
            f"<BroadcastReceiver{_named(self._state)} capacity={self._state.capacity} "
            f"len={len(self)} "
            f"received={self._received} lagged={self._lagged} closed={self._closed}>"
        )


class broadcast(tuple[BroadcastSender[T], BroadcastReceiver[T]]):
    """Create a broadcast channel of exactly `capacity` slots; return `(sender, receiver)`.

    Use it as a function, `tx, rx = broadcast(100)`, or typed, `broadcast[Update](100)`.

    Raises:
        ValueError: `capacity` is less than 1, or more than `MAX_CAPACITY`.
    """

    __slots__ = ()

    def __new__(  # type: ignore[misc]
        cls, capacity: int, *, name: str | None = None
    ) -> tuple[BroadcastSender[T], BroadcastReceiver[T]]:
        if isinstance(capacity, bool) or not isinstance(capacity, int):
            raise TypeError(f"capacity must be an int, got {capacity!r}")
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        if capacity > MAX_CAPACITY:
            raise ValueError(
                f"capacity must be <= {MAX_CAPACITY} (the ring is allocated up front), "
                f"got {capacity!r}"
            )
        state: _BroadcastState[T] = _BroadcastState(capacity, check_name(name))
        return BroadcastSender(state), BroadcastReceiver(state)
