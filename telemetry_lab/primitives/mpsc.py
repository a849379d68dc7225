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

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from telemetry_lab.errors import ChannelClosed, ChannelEmpty, ChannelFull
from telemetry_lab.primitives._private import (
    ClosingHandle,
    LoopBinding,
    remove_waiter,
    wake_all,
    wake_first,
    wake_future,
)

__all__ = ["ChannelStatistics", "Receiver", "Sender", "channel"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
T_contra = TypeVar("T_contra", contravariant=True)

# A send waiter's future resolves to one of these.
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


class _ChannelState(Generic[T]):
    """State shared by the handles of one channel (the handles are thin views)."""

    __slots__ = (
        "binding",
        "buffer",
        "capacity",
        "open_senders",
        "receiver_closed",
        "recv_waiters",
        "reserved",
        "send_waiters",
        "total_blocked_sends",
        "total_received",
        "total_send_wait",
        "total_sent",
    )

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.binding = LoopBinding("channel")
        self.buffer: deque[T] = deque()
        self.reserved = 0
        self.send_waiters: deque[asyncio.Future[bool]] = deque()
        self.recv_waiters: deque[asyncio.Future[Any]] = deque()
        self.open_senders = 0
        self.receiver_closed = False
        self.total_sent = 0
        self.total_received = 0
        self.total_blocked_sends = 0
        self.total_send_wait = 0.0

    @property
    def closed_for_receiver(self) -> bool:
        return self.receiver_closed or self.open_senders == 0

    def push(self, value: T) -> None:
        if self.recv_waiters:
            self.binding.check()  # before anything changes: a misuse enqueues nothing
            self.buffer.append(value)
            wake_first(self.recv_waiters)
        else:
            self.buffer.append(value)
        self.total_sent += 1

    def take(self) -> T:
        """Pop the oldest buffered value (there is one) and grant its slot to a sender."""
        if self.send_waiters:
            self.binding.check()
            value = self.buffer.popleft()
            self.grant_slots()
        else:
            value = self.buffer.popleft()
        self.total_received += 1
        return value

    def grant_slots(self) -> None:
        """Reserve free slots for waiting senders, first come first served."""
        waiters = self.send_waiters
        while waiters and len(self.buffer) + self.reserved < self.capacity:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(_GRANTED)
                self.reserved += 1

    def free_slots(self) -> int:
        return max(0, self.capacity - len(self.buffer) - self.reserved)

    def statistics(self) -> ChannelStatistics:
        return ChannelStatistics(
            max_buffer_size=self.capacity,
            current_buffer_used=len(self.buffer),
            current_reserved=self.reserved,
            open_send_handles=self.open_senders,
            open_receive_handles=0 if self.receiver_closed else 1,
            tasks_waiting_send=sum(not f.done() for f in self.send_waiters),
            tasks_waiting_receive=sum(not f.done() for f in self.recv_waiters),
            total_sent=self.total_sent,
            total_received=self.total_received,
            total_blocked_sends=self.total_blocked_sends,
            total_send_wait=self.total_send_wait,
        )


class Sender(ClosingHandle, Generic[T_contra]):
    """The sending half of an mpsc channel; clone it to get more producers.

    A sender is not a broadcast: each value reaches exactly one receiver. Closing the last
    sender ends the channel for the receiver once the buffer is drained.
    """

    __slots__ = ("_closed", "_pending", "_state")

    def __init__(self, state: _ChannelState[Any]) -> None:
        self._state = state
        self._closed = False
        self._pending: set[asyncio.Future[bool]] = set()
        state.open_senders += 1

    async def send(self, value: T_contra) -> None:
        """Put `value` into the channel, waiting for a free slot if the buffer is full.

        Raises:
            ChannelClosed: the receiver is closed, or this handle is (before or while
                waiting); the value was not enqueued and is on `.value`.
        """
        st = self._state
        if self._closed or st.receiver_closed:
            raise ChannelClosed(value=value)
        if not st.send_waiters and len(st.buffer) + st.reserved < st.capacity:
            st.push(value)
            return
        await self._send_when_granted(value)

    async def _send_when_granted(self, value: T_contra) -> None:
        st = self._state
        loop = st.binding.bind()
        fut: asyncio.Future[bool] = loop.create_future()
        st.send_waiters.append(fut)
        self._pending.add(fut)
        st.total_blocked_sends += 1
        started = loop.time()
        try:
            granted = await fut
        except asyncio.CancelledError:
            if fut.cancelled():
                remove_waiter(st.send_waiters, fut)
            elif fut.result() is _GRANTED:
                # Chosen, then cancelled before filling the slot: pass the slot on.
                st.reserved -= 1
                st.grant_slots()
            raise
        finally:
            self._pending.discard(fut)
            st.total_send_wait += loop.time() - started
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
        st = self._state
        if self._closed or st.receiver_closed:
            raise ChannelClosed(value=value)
        if st.send_waiters or len(st.buffer) + st.reserved >= st.capacity:
            raise ChannelFull(value=value)
        st.push(value)

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
        if self._pending or (st.open_senders == 1 and st.recv_waiters):
            st.binding.check()
        self._closed = True
        st.open_senders -= 1
        for fut in self._pending:
            wake_future(fut, _REFUSED)
            remove_waiter(st.send_waiters, fut)
        if st.open_senders == 0:
            wake_all(st.recv_waiters)

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
            f"<Sender capacity={st.capacity} len={len(st.buffer)} free={st.free_slots()} "
            f"senders={st.open_senders} waiting={len(st.send_waiters)} "
            f"closed={self.is_closed}>"
        )


class Receiver(ClosingHandle, Generic[T_co]):
    """The receiving half of an mpsc channel: one consumer, values in FIFO order.

    A receiver is not cloneable (one consumer), and closing it does not discard what is
    buffered: values already accepted stay receivable until drained.
    """

    __slots__ = ("_state",)

    def __init__(self, state: _ChannelState[Any]) -> None:
        self._state = state

    async def recv(self) -> T_co:
        """Return the next value, waiting while the channel is open and empty.

        Raises:
            ChannelClosed: every sender is closed (or the receiver is) and the buffer is
                drained.
        """
        st = self._state
        while True:
            if st.buffer:
                value: T_co = st.take()
                return value
            if st.receiver_closed or st.open_senders == 0:
                raise ChannelClosed()
            await self._wait_readable()

    async def _wait_readable(self) -> None:
        st = self._state
        fut: asyncio.Future[Any] = st.binding.bind().create_future()
        st.recv_waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.cancelled():
                remove_waiter(st.recv_waiters, fut)
            elif st.buffer:
                # Woken, then cancelled: another task waiting on this receiver gets the turn.
                wake_first(st.recv_waiters)
            raise

    def try_recv(self) -> T_co:
        """Return the next value without waiting.

        Raises:
            ChannelEmpty: nothing is buffered and the channel is open.
            ChannelClosed: the channel is closed and drained.
        """
        st = self._state
        if st.buffer:
            value: T_co = st.take()
            return value
        if st.closed_for_receiver:
            raise ChannelClosed()
        raise ChannelEmpty()

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
            await self._wait_readable()
        if st.send_waiters:
            st.binding.check()
        buffer = st.buffer
        values: list[T_co] = [buffer.popleft() for _ in range(min(limit, len(buffer)))]
        st.total_received += len(values)
        if st.send_waiters:
            st.grant_slots()
        return values

    def close(self) -> None:
        """Refuse new sends (idempotent); values already buffered stay receivable."""
        st = self._state
        if st.receiver_closed:
            return
        if st.send_waiters or st.recv_waiters:
            st.binding.check()
        st.receiver_closed = True
        for fut in st.send_waiters:
            wake_future(fut, _REFUSED)
        st.send_waiters.clear()
        wake_all(st.recv_waiters)

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
        try:
            return await self.recv()
        except ChannelClosed:
            raise StopAsyncIteration from None

    def __repr__(self) -> str:
        st = self._state
        return (
            f"<Receiver capacity={st.capacity} len={len(st.buffer)} "
            f"senders={st.open_senders} waiting={len(st.recv_waiters)} "
            f"closed={self.is_closed}>"
        )


class channel(tuple[Sender[T], Receiver[T]]):
    """Create a bounded mpsc channel and return its `(Sender, Receiver)` pair.

    Use it as a function, `tx, rx = channel(50)`, or with the item type for a type checker,
    `tx, rx = channel[Reading](50)`.

    Raises:
        ValueError: `capacity` is less than 1 (a rendezvous channel is not offered).
    """

    __slots__ = ()

    def __new__(cls, capacity: int) -> tuple[Sender[T], Receiver[T]]:  # type: ignore[misc]
        if isinstance(capacity, bool) or not isinstance(capacity, int):
            raise TypeError(f"capacity must be an int, got {capacity!r}")
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        state: _ChannelState[T] = _ChannelState(capacity)
        return Sender(state), Receiver(state)
