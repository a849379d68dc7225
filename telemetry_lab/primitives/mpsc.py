"""Send values from many producers to one consumer through a bounded, closable channel.

`channel(capacity)` returns a `(Sender, Receiver)` pair, the asyncio counterpart of Tokio's
`mpsc::channel`. Unlike `asyncio.Queue` before Python 3.13, it can be *closed*: closing every
sender ends the receiver's `async for` once the buffer is drained, and closing the receiver
makes every send fail with the unsent value on the exception.

Backpressure is exact: at most `capacity` values are buffered, senders that find it full
wait in FIFO order, and a freed slot is *reserved* for the first waiting sender, so a
`try_send` can never overtake a sender that is already waiting.
"""

from __future__ import annotations

import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from telemetry_lab.errors import ChannelClosed, ChannelEmpty, ChannelFull
from telemetry_lab.primitives._private import (
    ClosingHandle,
    LoopBinding,
    check_name,
)
from telemetry_lab.primitives.waiting import PENDING, Pending, QueueSelectable, WaitQueue

__all__ = ["ChannelStatistics", "Receiver", "Sender", "channel"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
T_contra = TypeVar("T_contra", contravariant=True)

# A send waiter's wake-up carries one of these.
_GRANTED = True  # a slot is reserved for this sender
_REFUSED = False  # the channel or the handle closed while waiting


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelStatistics:
    """A snapshot of one mpsc channel, shared by all of its handles."""

    max_buffer_size: int
    """The capacity given to `channel()`."""
    current_buffer_used: int
    """Values buffered now, waiting for the receiver."""
    current_reserved: int
    """Slots promised to woken senders that have not yet filled them."""
    open_send_handles: int
    """Sender handles not yet closed."""
    open_receive_handles: int
    """1 while the receiver is open, else 0."""
    tasks_waiting_send: int
    """Tasks blocked in `send()` because the buffer is full (backpressure)."""
    tasks_waiting_receive: int
    """Tasks blocked in `recv()` because the buffer is empty."""
    total_sent: int
    """Values ever accepted into the buffer."""
    total_received: int
    """Values ever taken out by the receiver."""
    total_blocked_sends: int
    """Sends that found the buffer full and had to wait."""
    total_send_wait: float
    """Seconds of loop time that senders spent blocked, summed over all sends."""
    name: str | None = None
    """The name given to `channel()`, or None."""


class _ChannelState(Generic[T]):
    """State shared by the handles of one channel (the handles are thin views)."""

    __slots__ = (
        "binding",
        "buffer",
        "capacity",
        "handles",
        "name",
        "open_senders",
        "receiver_closed",
        "recv_queue",
        "reserved",
        "send_queue",
        "total_blocked_sends",
        "total_received",
    )

    def __init__(self, capacity: int, name: str | None) -> None:
        self.capacity = capacity
        self.name = name
        self.binding = LoopBinding("channel" if name is None else f"channel {name!r}")
        self.buffer: deque[T] = deque()
        self.reserved = 0
        self.send_queue = WaitQueue(
            self.binding, self, "send", on_abandoned=self._slot_abandoned, timed=True
        )
        self.recv_queue = WaitQueue(self.binding, self, "recv", on_abandoned=self._recv_abandoned)
        self.open_senders = 0
        self.receiver_closed = False
        self.total_received = 0
        self.total_blocked_sends = 0
        self.handles: weakref.WeakSet[Sender[T] | Receiver[T]] = weakref.WeakSet()

    @property
    def closed_for_receiver(self) -> bool:
        return self.receiver_closed or self.open_senders == 0

    def push(self, value: T) -> None:
        if self.recv_queue:
            self.binding.check()  # before anything changes: a misuse enqueues nothing
            self.buffer.append(value)
            self.recv_queue.wake_one()
        else:
            self.buffer.append(value)

    def take(self, limit: int) -> list[T]:
        """Pop up to `limit` buffered values (there is one) and grant their slots."""
        buffer = self.buffer
        if self.send_queue:
            self.binding.check()
        values = [buffer.popleft() for _ in range(min(limit, len(buffer)))]
        self.total_received += len(values)
        if self.send_queue:
            self.grant_slots()
        return values

    def grant_slots(self) -> None:
        """Reserve free slots for waiting senders, first come first served."""
        queue = self.send_queue
        while queue and len(self.buffer) + self.reserved < self.capacity:
            if queue.wake_one(_GRANTED):
                self.reserved += 1

    def _slot_abandoned(self, wake: object) -> None:
        """A sender was granted a slot, then cancelled before filling it: pass it on."""
        if wake is _GRANTED:
            self.reserved -= 1
            self.grant_slots()

    def _recv_abandoned(self, wake: object) -> None:
        """A receiving task was woken, then cancelled: another one gets the turn."""
        if self.buffer:
            self.recv_queue.wake_one()

    def free_slots(self) -> int:
        return max(0, self.capacity - len(self.buffer) - self.reserved)

    @property
    def closed(self) -> bool:
        """Whether the channel is over (for observers: nothing more will pass)."""
        return self.closed_for_receiver and not self.buffer

    def completers(self, operation: str) -> list[object] | None:
        """The live, open handles that could end a wait for `operation` (for observers).

        A receive waits for a sender; a send waits for the receiver. Handles that were
        garbage-collected without `close()` are gone from this list.
        """
        if operation == "recv":
            return [h for h in self.handles if isinstance(h, Sender) and not h._closed]
        if operation == "send":
            return [h for h in self.handles if isinstance(h, Receiver) and not self.receiver_closed]
        return None

    def describe(self) -> str:
        name = "channel" if self.name is None else f"channel {self.name!r}"
        closed = ", closed" if self.closed_for_receiver else ""
        return f"{name} ({len(self.buffer)}/{self.capacity} full{closed})"

    def statistics(self) -> ChannelStatistics:
        return ChannelStatistics(
            max_buffer_size=self.capacity,
            current_buffer_used=len(self.buffer),
            current_reserved=self.reserved,
            open_send_handles=self.open_senders,
            open_receive_handles=0 if self.receiver_closed else 1,
            tasks_waiting_send=self.send_queue.tasks_waiting,
            tasks_waiting_receive=self.recv_queue.tasks_waiting,
            total_sent=self.total_received + len(self.buffer),  # every value accepted
            total_received=self.total_received,
            total_blocked_sends=self.total_blocked_sends,
            total_send_wait=self.send_queue.total_wait,
            name=self.name,
        )


def _named(state: _ChannelState[Any]) -> str:
    return "" if state.name is None else f" name={state.name!r}"


class Sender(ClosingHandle, Generic[T_contra]):
    """The sending half of an mpsc channel; clone it to get more producers.

    A sender is not a broadcast: each value reaches exactly one receiver. Closing the last
    sender ends the channel for the receiver once the buffer is drained. A sender that is
    garbage-collected without `close()` while the receiver still waits for it is reported
    with a `ResourceWarning` (the receiver would wait forever).
    """

    __slots__ = ("_closed", "_state")

    def __init__(self, state: _ChannelState[Any]) -> None:
        self._state = state
        self._closed = False
        state.open_senders += 1
        state.handles.add(self)

    def _offer(self, value: T_contra) -> bool:
        """The logic of `try_send`: enqueue `value` now and return True, or return False."""
        st = self._state
        if self._closed or st.receiver_closed:
            raise ChannelClosed(value=value)
        if st.send_queue or len(st.buffer) + st.reserved >= st.capacity:
            return False  # full, or a slot is owed to a sender already waiting
        if st.recv_queue:
            st.push(value)  # wakes the receiver
        else:
            # `push` without its call: every uncontended send takes this line (bench/).
            st.buffer.append(value)
        return True

    async def send(self, value: T_contra) -> None:
        """Put `value` into the channel, waiting for a free slot if the buffer is full.

        Raises:
            ChannelClosed: the receiver is closed, or this handle is (before or while
                waiting); the value was not enqueued and is on `.value`.
        """
        if self._offer(value):
            return
        st = self._state
        st.total_blocked_sends += 1
        granted = await st.send_queue.park(owner=self)
        if granted is not _GRANTED:
            raise ChannelClosed(value=value)
        st.reserved -= 1
        if self._closed or st.receiver_closed:
            st.grant_slots()
            raise ChannelClosed(value=value)
        st.push(value)

    def try_send(self, value: T_contra) -> None:
        """Put `value` into the channel now, or fail without waiting.

        Raises:
            ChannelClosed: as for `send` (checked first: closed wins over full).
            ChannelFull: no free slot, or senders are already waiting for one.
        """
        if not self._offer(value):
            raise ChannelFull(value=value)

    def clone(self) -> Sender[T_contra]:
        """Return another sender handle for the same channel."""
        if self._closed:
            raise ChannelClosed("sender handle is closed")
        return Sender(self._state)

    def close(self) -> None:
        """Close this handle (idempotent); sends waiting on it fail with ChannelClosed."""
        if self._closed:
            return
        st = self._state
        if st.send_queue.has_owner(self) or (st.open_senders == 1 and st.recv_queue):
            st.binding.check()
        self._closed = True
        st.open_senders -= 1
        st.send_queue.wake_owner(self, _REFUSED)
        if st.open_senders == 0:
            st.recv_queue.wake_all()

    def _left_waiting(self) -> str | None:
        st = self._state
        if not self._closed and st.open_senders == 1 and st.recv_queue.tasks_waiting:
            return "the receiver is still waiting for a value from it"
        return None

    @property
    def capacity(self) -> int:
        """Free slots right now."""
        return self._state.free_slots()

    @property
    def max_capacity(self) -> int:
        """The capacity given to `channel()`."""
        return self._state.capacity

    @property
    def is_closed(self) -> bool:
        """True once the receiver is closed or this handle is."""
        return self._closed or self._state.receiver_closed

    def statistics(self) -> ChannelStatistics:
        """Return a snapshot of the channel's state."""
        return self._state.statistics()

    def __repr__(self) -> str:
        st = self._state
        return (
            f"<Sender{_named(st)} capacity={st.capacity} len={len(st.buffer)} "
            f"free={st.free_slots()} senders={st.open_senders} "
            f"waiting={st.send_queue.tasks_waiting} closed={self.is_closed}>"
        )


class Receiver(QueueSelectable, ClosingHandle, Generic[T_co]):
    """The receiving half of an mpsc channel: one consumer, values in FIFO order.

    A receiver is not cloneable (one consumer), and closing it does not discard what is
    buffered: values already accepted stay receivable until drained. A receiver that is
    garbage-collected without `close()` while senders wait for room is reported with a
    `ResourceWarning` (they would wait forever).
    """

    __slots__ = ("_state",)

    select_operation = "recv"
    """The operation `select_branch()` offers (`on_recv` accepts this receiver)."""

    def __init__(self, state: _ChannelState[Any]) -> None:
        self._state = state
        state.handles.add(self)

    def _poll(self) -> T_co | Pending:
        """The logic of `try_recv`: the next value, or `PENDING` while open and empty."""
        st = self._state
        if st.buffer:
            if st.send_queue:
                value: T_co = st.take(1)[0]
                return value
            st.total_received += 1
            return st.buffer.popleft()  # type: ignore[no-any-return]
        if st.receiver_closed or st.open_senders == 0:
            raise ChannelClosed()
        return PENDING

    async def recv(self) -> T_co:
        """Return the next value, waiting while the channel is open and empty.

        Raises:
            ChannelClosed: every sender is closed (or the receiver is) and the buffer is
                drained.
        """
        while (value := self._poll()) is PENDING:
            await self._state.recv_queue.park()
        return value  # type: ignore[return-value]

    def try_recv(self) -> T_co:
        """Return the next value without waiting.

        Raises:
            ChannelEmpty: nothing is buffered and the channel is open.
            ChannelClosed: the channel is closed and drained.
        """
        value = self._poll()
        if value is PENDING:
            raise ChannelEmpty()
        return value  # type: ignore[return-value]

    async def recv_many(self, limit: int) -> list[T_co]:
        """Wait for at least one value, then return every buffered value up to `limit`.

        Returns `[]` at once when `limit` is 0.

        Raises:
            ValueError: `limit` is negative.
            ChannelClosed: the channel is closed and drained.
        """
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit!r}")
        if limit == 0:
            return []
        st = self._state
        while not st.buffer:
            if st.closed_for_receiver:
                raise ChannelClosed()
            await st.recv_queue.park()
        return st.take(limit)

    def _select_queue(self) -> WaitQueue:
        return self._state.recv_queue

    def close(self) -> None:
        """Refuse new sends (idempotent); values already buffered stay receivable."""
        st = self._state
        if st.receiver_closed:
            return
        if st.send_queue or st.recv_queue:
            st.binding.check()
        st.receiver_closed = True
        st.send_queue.wake_all(_REFUSED)
        st.recv_queue.wake_all()

    def _left_waiting(self) -> str | None:
        st = self._state
        if not st.receiver_closed and st.send_queue.tasks_waiting:
            return "senders still wait for room that only it could make"
        return None

    @property
    def is_closed(self) -> bool:
        """True after `close()` or once every sender is closed, even with values buffered."""
        return self._state.closed_for_receiver

    def statistics(self) -> ChannelStatistics:
        """Return a snapshot of the channel's state."""
        return self._state.statistics()

    def __len__(self) -> int:
        return len(self._state.buffer)

    def __bool__(self) -> bool:
        """True while a value may still come: open, or closed with values still buffered.

        Without it an open but empty receiver would be falsy (it has a length), and a loop
        like `while any(receivers):` would stop at once instead of at the end.
        """
        st = self._state
        return bool(st.buffer) or not st.closed_for_receiver

    def __aiter__(self) -> Receiver[T_co]:
        return self

    async def __anext__(self) -> T_co:
        # `recv()` without its own coroutine frame (one fewer per value on the hot path).
        try:
            while (value := self._poll()) is PENDING:
                await self._state.recv_queue.park()
        except ChannelClosed:
            raise StopAsyncIteration from None
        return value  # type: ignore[return-value]

    def __repr__(self) -> str:
        st = self._state
        return (
            f"<Receiver{_named(st)} capacity={st.capacity} len={len(st.buffer)} "
            f"senders={st.open_senders} waiting={st.recv_queue.tasks_waiting} "
            f"closed={self.is_closed}>"
        )


class channel(tuple[Sender[T], Receiver[T]]):
    """Create a bounded mpsc channel and return its `(Sender, Receiver)` pair.

    Use it as a function, `tx, rx = channel(50)`, or with the item type for a type checker,
    `tx, rx = channel[Reading](50)`.

    Args:
        capacity: how many values may be buffered (>= 1).
        name: how reprs, statistics and the console call it (`name="telemetry"`).

    Raises:
        ValueError: `capacity` is less than 1 (a rendezvous channel is not offered).
    """

    __slots__ = ()

    def __new__(  # type: ignore[misc]
        cls, capacity: int, *, name: str | None = None
    ) -> tuple[Sender[T], Receiver[T]]:
        if isinstance(capacity, bool) or not isinstance(capacity, int):
            raise TypeError(f"capacity must be an int, got {capacity!r}")
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        state: _ChannelState[T] = _ChannelState(capacity, check_name(name))
        return Sender(state), Receiver(state)
