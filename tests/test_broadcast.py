"""Test `broadcast(capacity)`: the ring-buffer fan-out channel with `Lagged`.

Most tests port Tokio's `tokio/tests/sync_broadcast.rs` (named after the Tokio test, with a
docstring saying so); the rest cover the Python-only parts of the contract: cancellation,
`async for`, context managers, use after close, `statistics()` and `repr`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import random
import weakref
from typing import Any

import pytest
from support import settle

import telemetry_lab
import telemetry_lab.primitives
from telemetry_lab.errors import (
    ChannelClosed,
    ChannelEmpty,
    ChannelError,
    Lagged,
    NoReceivers,
    TelemetryLabError,
)
from telemetry_lab.primitives.broadcast import (
    BroadcastReceiver,
    BroadcastReceiverStatistics,
    BroadcastSender,
    BroadcastStatistics,
    broadcast,
)

Rx = BroadcastReceiver[Any]


class Payload:
    """A value that can be tracked with a weak reference."""

    def __init__(self, name: str) -> None:
        self.name = name


def assert_empty(rx: Rx) -> None:
    with pytest.raises(ChannelEmpty, match=r"^channel empty$"):
        rx.try_recv()


def assert_lagged(rx: Rx, skipped: int) -> None:
    with pytest.raises(
        Lagged, match=rf"^receiver lagged behind; {skipped} values were skipped$"
    ) as excinfo:
        rx.try_recv()
    assert excinfo.value.skipped == skipped


def assert_closed(rx: Rx) -> None:
    with pytest.raises(ChannelClosed, match=r"^channel closed$") as excinfo:
        rx.try_recv()
    assert excinfo.value.value is None


# --- construction and exports ----------------------------------------------------------------


def test_exported_from_package_and_primitives() -> None:
    assert telemetry_lab.broadcast is broadcast
    assert telemetry_lab.primitives.broadcast is broadcast
    assert telemetry_lab.BroadcastSender is BroadcastSender
    assert telemetry_lab.primitives.BroadcastReceiver is BroadcastReceiver


def test_error_hierarchy() -> None:
    for exc in (ChannelClosed, ChannelEmpty, Lagged, NoReceivers):
        assert issubclass(exc, ChannelError)
        assert issubclass(exc, TelemetryLabError)


def test_returns_sender_and_receiver() -> None:
    tx, rx = broadcast(4)
    assert isinstance(tx, BroadcastSender)
    assert isinstance(rx, BroadcastReceiver)
    typed_tx, typed_rx = broadcast[int](4)
    assert typed_tx.send(7) == 1
    assert typed_rx.try_recv() == 7


@pytest.mark.parametrize("capacity", [0, -1, -100])
def test_zero_capacity(capacity: int) -> None:
    """Ports Tokio's `zero_capacity`: capacity < 1 is refused with ValueError."""
    with pytest.raises(ValueError, match=rf"^capacity must be >= 1, got {capacity}$"):
        broadcast(capacity)


@pytest.mark.parametrize("capacity", [2**24 + 1, 10**20])
def test_a_capacity_too_large_to_allocate_is_a_value_error(capacity: int) -> None:
    """Huge ints gave OverflowError (or tried to allocate gigabytes); now a clear ValueError."""
    with pytest.raises(
        ValueError,
        match=rf"^capacity must be <= 16777216 \(the ring is allocated up front\), got {capacity}$",
    ):
        broadcast(capacity)


@pytest.mark.parametrize("capacity", [1, 2, 3, 5, 6, 7, 9, 100])
def test_exact_capacity_no_power_of_two_rounding(capacity: int) -> None:
    tx, rx = broadcast(capacity)
    for v in range(capacity + 2):
        assert tx.send(v) == 1
    assert len(tx) == capacity
    assert len(rx) == capacity + 2
    assert tx.statistics().max_buffer_size == capacity
    assert_lagged(rx, 2)
    assert len(rx) == capacity
    assert [rx.try_recv() for _ in range(capacity)] == list(range(2, capacity + 2))
    assert_empty(rx)
    assert len(tx) == 0


def test_capacity_3_retains_exactly_3() -> None:
    tx, rx = broadcast(3)
    for v in (10, 20, 30, 40, 50):
        tx.send(v)
    assert len(tx) == 3
    assert_lagged(rx, 2)
    assert rx.try_recv() == 30
    assert rx.try_recv() == 40
    assert rx.try_recv() == 50
    assert_empty(rx)


# --- ports of tokio/tests/sync_broadcast.rs ----------------------------------------------------


def test_send_try_recv_bounded() -> None:
    """Ports Tokio's `send_try_recv_bounded`."""
    tx, rx = broadcast(16)
    assert_empty(rx)
    assert tx.send("hello") == 1
    assert rx.try_recv() == "hello"
    assert_empty(rx)


def test_send_two_recv() -> None:
    """Ports Tokio's `send_two_recv`."""
    tx, rx1 = broadcast(16)
    rx2 = tx.subscribe()
    assert_empty(rx1)
    assert_empty(rx2)
    assert tx.send("hello") == 2
    assert rx1.try_recv() == "hello"
    assert rx2.try_recv() == "hello"
    assert_empty(rx1)
    assert_empty(rx2)


async def test_send_recv_bounded() -> None:
    """Ports Tokio's `send_recv_bounded`: a waiting recv is woken by a send."""
    tx, rx = broadcast(16)
    task = asyncio.create_task(rx.recv())
    await settle()
    assert not task.done()
    assert tx.send("hello") == 1
    assert await task == "hello"
    assert_empty(rx)


async def test_send_two_recv_bounded() -> None:
    """Ports Tokio's `send_two_recv_bounded`."""
    tx, rx1 = broadcast(16)
    rx2 = tx.subscribe()
    recv1 = asyncio.create_task(rx1.recv())
    recv2 = asyncio.create_task(rx2.recv())
    await settle()
    assert not recv1.done()
    assert not recv2.done()
    assert tx.send("hello") == 2
    assert await recv1 == "hello"
    assert await recv2 == "hello"

    recv1 = asyncio.create_task(rx1.recv())
    await settle()
    assert not recv1.done()
    assert tx.send("world") == 2
    assert await recv1 == "world"
    # rx2 started its recv only after the send: the value is already there.
    assert await rx2.recv() == "world"


async def test_change_tasks() -> None:
    """Ports Tokio's `change_tasks`: a recv abandoned by one task, then resumed by another."""
    tx, rx = broadcast(1)
    task1 = asyncio.create_task(rx.recv())
    await settle()
    task1.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task1
    task2 = asyncio.create_task(rx.recv())
    await settle()
    assert not task2.done()
    assert tx.send("hello") == 1
    assert await task2 == "hello"


async def test_send_slow_rx() -> None:
    """Ports Tokio's `send_slow_rx`."""
    tx, rx1 = broadcast(16)
    rx2 = tx.subscribe()
    recv2 = asyncio.create_task(rx2.recv())
    recv1 = asyncio.create_task(rx1.recv())
    await settle()
    assert not recv1.done()
    assert not recv2.done()

    assert tx.send("one") == 2
    assert tx.send("two") == 2
    assert await recv1 == "one"
    assert await rx1.recv() == "two"

    recv1 = asyncio.create_task(rx1.recv())
    await settle()
    assert not recv1.done()
    assert tx.send("three") == 2
    assert await recv1 == "three"

    assert await recv2 == "one"
    assert rx2.try_recv() == "two"
    assert rx2.try_recv() == "three"
    assert_empty(rx2)


def test_drop_rx_while_values_remain() -> None:
    """Ports Tokio's `drop_rx_while_values_remain`: closing receivers releases everything."""
    tx, rx1 = broadcast(16)
    rx2 = tx.subscribe()
    one, two = Payload("one"), Payload("two")
    refs = [weakref.ref(one), weakref.ref(two)]
    tx.send(one)
    tx.send(two)
    del one, two
    assert rx1.try_recv().name == "one"
    assert rx2.try_recv().name == "one"
    assert len(tx) == 1
    rx2.close()
    assert len(tx) == 1
    assert refs[1]() is not None
    rx1.close()
    assert len(tx) == 0
    assert tx.receiver_count == 0
    assert [r() for r in refs] == [None, None]


def test_lagging_rx() -> None:
    """Ports Tokio's `lagging_rx`."""
    tx, rx1 = broadcast(2)
    rx2 = tx.subscribe()
    tx.send("one")
    tx.send("two")
    assert rx1.try_recv() == "one"
    tx.send("three")

    # Lagged too far; calling again gets the next value.
    assert_lagged(rx2, 1)
    assert rx2.try_recv() == "two"

    assert rx1.try_recv() == "two"
    assert rx1.try_recv() == "three"

    tx.send("four")
    tx.send("five")
    assert_lagged(rx2, 1)

    tx.send("six")
    assert_lagged(rx2, 1)
    assert rx2.try_recv() == "five"
    assert rx2.try_recv() == "six"
    assert_empty(rx2)


def test_send_no_rx() -> None:
    """Ports Tokio's `send_no_rx`: the value is handed back and never stored."""
    tx, rx = broadcast(16)
    rx.close()
    with pytest.raises(NoReceivers, match=r"^no receivers$") as excinfo:
        tx.send("hello")
    assert excinfo.value.value == "hello"

    rx = tx.subscribe()
    assert len(rx) == 0
    assert len(tx) == 0
    assert_empty(rx)
    assert tx.send("world") == 1
    assert rx.try_recv() == "world"
    assert_empty(rx)
    assert tx.statistics().total_sent == 1


def test_send_no_rx_does_not_keep_the_value() -> None:
    tx, rx = broadcast(4)
    rx.close()
    value = Payload("lost")
    ref = weakref.ref(value)
    with pytest.raises(NoReceivers) as excinfo:
        tx.send(value)
    assert excinfo.value.value is value
    del value, excinfo
    gc.collect()
    assert ref() is None
    later = tx.subscribe()
    assert_empty(later)


def test_dropping_tx_notifies_rx_sync() -> None:
    """Ports Tokio's `dropping_tx_notifies_rx` for try_recv: only the last close closes."""
    tx, rx = broadcast(16)
    tx2 = tx.clone()
    tx.close()
    assert_empty(rx)
    tx2.close()
    assert_closed(rx)


async def test_dropping_tx_notifies_rx() -> None:
    """Ports Tokio's `dropping_tx_notifies_rx`."""
    tx, rx1 = broadcast(16)
    rx2 = tx.subscribe()
    tx2 = tx.clone()
    recv1 = asyncio.create_task(rx1.recv())
    recv2 = asyncio.create_task(rx2.recv())
    await settle()

    tx.close()
    await settle()
    assert not recv1.done()
    assert not recv2.done()

    tx2.close()
    with pytest.raises(ChannelClosed, match=r"^channel closed$"):
        await recv1
    with pytest.raises(ChannelClosed, match=r"^channel closed$"):
        await recv2


def test_unconsumed_messages_are_dropped() -> None:
    """Ports Tokio's `unconsumed_messages_are_dropped`: closing rx releases unread values."""
    tx, rx = broadcast(16)
    msg = Payload("msg")
    ref = weakref.ref(msg)
    tx.send(msg)
    del msg
    assert ref() is not None
    rx.close()
    assert ref() is None


def test_value_released_once_every_receiver_read_it() -> None:
    tx, rx1 = broadcast(4)
    rx2 = tx.subscribe()
    msg = Payload("msg")
    ref = weakref.ref(msg)
    tx.send(msg)
    del msg
    assert rx1.try_recv() is ref()
    assert ref() is not None
    assert rx2.try_recv() is ref()
    assert ref() is None


def test_value_released_when_read_by_one_and_closed_by_other() -> None:
    tx, rx1 = broadcast(4)
    rx2 = tx.subscribe()
    msg = Payload("msg")
    ref = weakref.ref(msg)
    tx.send(msg)
    del msg
    rx2.close()
    assert ref() is not None
    assert rx1.try_recv() is ref()
    assert ref() is None


def test_overwritten_value_is_released() -> None:
    tx, rx = broadcast(1)
    first = Payload("first")
    ref = weakref.ref(first)
    tx.send(first)
    del first
    tx.send(Payload("second"))
    assert ref() is None
    assert_lagged(rx, 1)
    assert rx.try_recv().name == "second"


def test_single_capacity_recvs() -> None:
    """Ports Tokio's `single_capacity_recvs`."""
    tx, rx = broadcast(1)
    assert tx.send(1) == 1
    assert rx.try_recv() == 1
    assert_empty(rx)


def test_single_capacity_recvs_after_drop_1() -> None:
    """Ports Tokio's `single_capacity_recvs_after_drop_1`."""
    tx, rx = broadcast(1)
    tx.send(1)
    tx.close()
    assert rx.try_recv() == 1
    assert_closed(rx)


def test_single_capacity_recvs_after_drop_2() -> None:
    """Ports Tokio's `single_capacity_recvs_after_drop_2`."""
    tx, rx = broadcast(1)
    tx.send(1)
    tx.send(2)
    tx.close()
    assert_lagged(rx, 1)
    assert rx.try_recv() == 2
    assert_closed(rx)


def test_dropping_sender_does_not_overwrite() -> None:
    """Ports Tokio's `dropping_sender_does_not_overwrite`."""
    tx, rx = broadcast(2)
    tx.send(1)
    tx.send(2)
    tx.close()
    assert rx.try_recv() == 1
    assert rx.try_recv() == 2
    assert_closed(rx)


def test_lagging_receiver_recovers_after_wrap_closed_1() -> None:
    """Ports Tokio's `lagging_receiver_recovers_after_wrap_closed_1`."""
    tx, rx = broadcast(2)
    for v in (1, 2, 3):
        tx.send(v)
    tx.close()
    assert_lagged(rx, 1)
    assert rx.try_recv() == 2
    assert rx.try_recv() == 3
    assert_closed(rx)


def test_lagging_receiver_recovers_after_wrap_closed_2() -> None:
    """Ports Tokio's `lagging_receiver_recovers_after_wrap_closed_2`."""
    tx, rx = broadcast(2)
    for v in (1, 2, 3, 4):
        tx.send(v)
    tx.close()
    assert_lagged(rx, 2)
    assert rx.try_recv() == 3
    assert rx.try_recv() == 4
    assert_closed(rx)


def test_lagging_receiver_recovers_after_wrap_open() -> None:
    """Ports Tokio's `lagging_receiver_recovers_after_wrap_open`."""
    tx, rx = broadcast(2)
    for v in (1, 2, 3):
        tx.send(v)
    assert_lagged(rx, 1)
    assert rx.try_recv() == 2
    assert rx.try_recv() == 3
    assert_empty(rx)


def test_receiver_len_with_lagged() -> None:
    """Ports Tokio's `receiver_len_with_lagged`: len(rx) counts overwritten values too.

    Tokio rounds capacity 3 up to 4; here capacity is exact, so the port uses 4.
    """
    tx, rx = broadcast(4)
    for v in (10, 20, 30, 40):
        tx.send(v)
    assert len(rx) == 4
    assert rx.try_recv() == 10
    tx.send(50)
    tx.send(60)
    assert len(rx) == 5
    assert_lagged(rx, 1)
    assert len(rx) == 4
    assert rx.try_recv() == 30
    assert len(rx) == 3


def test_receiver_len_with_lagged_exact_capacity_3() -> None:
    tx, rx = broadcast(3)
    for v in (10, 20, 30, 40):
        tx.send(v)
    assert len(rx) == 4
    assert_lagged(rx, 1)
    assert len(rx) == 3
    assert rx.try_recv() == 20
    tx.send(50)
    tx.send(60)
    assert len(rx) == 4
    assert_lagged(rx, 1)
    assert rx.try_recv() == 40
    assert len(rx) == 2


def test_resubscribe_points_to_tail() -> None:
    """Ports Tokio's `resubscribe_points_to_tail`."""
    tx, rx = broadcast(3)
    tx.send(1)
    rx_resub = rx.resubscribe()

    # The new receiver starts at the tail: it never sees 1.
    assert_empty(rx_resub)
    assert len(rx_resub) == 0
    assert rx.try_recv() == 1

    # Reading from one does not move the other.
    tx.send(2)
    assert rx_resub.try_recv() == 2
    tx.send(3)
    assert rx.try_recv() == 2
    assert rx.try_recv() == 3
    assert_empty(rx)

    assert rx_resub.try_recv() == 3
    assert_empty(rx_resub)


def test_resubscribe_lagged() -> None:
    """Ports Tokio's `resubscribe_lagged`."""
    tx, rx = broadcast(1)
    tx.send(1)
    tx.send(2)
    rx_resub = rx.resubscribe()
    assert_lagged(rx, 1)
    assert_empty(rx_resub)
    assert rx.try_recv() == 2
    assert_empty(rx)
    assert_empty(rx_resub)


def test_resubscribe_to_closed_channel() -> None:
    """Ports Tokio's `resubscribe_to_closed_channel`."""
    tx, rx = broadcast(2)
    tx.close()
    rx_resub = rx.resubscribe()
    assert_closed(rx_resub)


def test_subscribe_sees_only_later_values() -> None:
    tx, rx = broadcast(4)
    tx.send("before")
    late = tx.subscribe()
    assert len(late) == 0
    assert_empty(late)
    assert tx.send("after") == 2
    assert late.try_recv() == "after"
    assert rx.try_recv() == "before"
    assert rx.try_recv() == "after"


def test_sender_len() -> None:
    """Ports Tokio's `sender_len`."""
    tx, rx1 = broadcast(4)
    rx2 = tx.subscribe()
    assert len(tx) == 0

    for v in (1, 2, 3):
        tx.send(v)
    assert len(tx) == 3

    rx1.try_recv()
    rx1.try_recv()
    assert len(tx) == 3

    rx2.try_recv()
    assert len(tx) == 2

    for v in (4, 5, 6):
        tx.send(v)
    assert len(tx) == 4


def test_sender_len_random() -> None:
    """Ports Tokio's `sender_len_random` (with a seeded random.Random)."""
    rng = random.Random(20240917)
    tx, rx1 = broadcast(16)
    rx2 = tx.subscribe()
    for _ in range(1000):
        match rng.randrange(4):
            case 0:
                with contextlib.suppress(ChannelEmpty, Lagged):
                    rx1.try_recv()
            case 1:
                with contextlib.suppress(ChannelEmpty, Lagged):
                    rx2.try_recv()
            case _:
                assert tx.send(0) == 2
        assert len(tx) == min(max(len(rx1), len(rx2)), 16)


def test_receiver_count_on_sender_constructor() -> None:
    """Ports Tokio's `receiver_count_on_sender_constructor` (a channel with rx closed)."""
    tx, rx = broadcast(16)
    rx.close()
    assert tx.receiver_count == 0

    rx_1 = tx.subscribe()
    assert tx.receiver_count == 1
    rx_2 = rx_1.resubscribe()
    assert tx.receiver_count == 2
    rx_3 = tx.subscribe()
    assert tx.receiver_count == 3

    rx_3.close()
    rx_1.close()
    assert tx.receiver_count == 1
    rx_2.close()
    assert tx.receiver_count == 0


def test_receiver_count_on_channel_constructor() -> None:
    """Ports Tokio's `receiver_count_on_channel_constructor`."""
    tx, rx = broadcast(16)
    assert tx.receiver_count == 1
    rx.resubscribe()
    assert tx.receiver_count == 2
    assert tx.clone().receiver_count == 2


def test_send_returns_receiver_count() -> None:
    tx, rx1 = broadcast(4)
    rx2 = tx.subscribe()
    rx3 = rx2.resubscribe()
    assert tx.send("a") == 3
    rx2.close()
    assert tx.send("b") == 2
    rx3.close()
    assert tx.send("c") == 1
    assert [rx1.try_recv() for _ in range(3)] == ["a", "b", "c"]


async def test_broadcast_sender_closed() -> None:
    """Ports Tokio's `broadcast_sender_closed`: closed() waits for the last receiver."""
    tx, rx = broadcast(1)
    rx2 = tx.subscribe()
    task = asyncio.create_task(tx.closed())
    await settle()
    assert not task.done()

    rx.close()
    await settle()
    assert not task.done()

    rx2.close()
    await task
    assert tx.receiver_count == 0


async def test_broadcast_sender_closed_with_extra_subscribe() -> None:
    """Ports Tokio's `broadcast_sender_closed_with_extra_subscribe`."""
    tx, rx = broadcast(1)
    rx2 = tx.subscribe()
    task = asyncio.create_task(tx.closed())
    await settle()
    assert not task.done()

    rx.close()
    await settle()
    assert not task.done()

    # The last receiver leaves, but a new one subscribes before the waiter runs.
    rx2.close()
    rx3 = tx.subscribe()
    await settle()
    assert not task.done()

    rx3.close()
    await task

    task2 = asyncio.create_task(tx.closed())
    await asyncio.sleep(0)
    assert task2.done()
    await task2

    rx4 = tx.subscribe()
    task3 = asyncio.create_task(tx.closed())
    await settle()
    assert not task3.done()
    rx4.close()
    await task3


async def test_tx_closed_returns_at_once_without_receivers() -> None:
    tx, rx = broadcast(2)
    rx.close()
    task = asyncio.create_task(tx.closed())
    await asyncio.sleep(0)
    assert task.done()
    await task


async def test_tx_closed_waiter_cancelled_is_forgotten() -> None:
    tx, rx = broadcast(2)
    task = asyncio.create_task(tx.closed())
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    rx.close()
    await tx.closed()


# --- close ordering, async recv ------------------------------------------------------------------


def test_closed_channel_gives_lagged_then_retained_then_closed() -> None:
    tx, rx = broadcast(2)
    tx2 = tx.clone()
    for v in (1, 2, 3, 4, 5):
        tx.send(v)
    tx.close()
    assert len(rx) == 5
    tx2.close()
    assert len(rx) == 5
    assert_lagged(rx, 3)
    assert rx.try_recv() == 4
    assert rx.try_recv() == 5
    assert_closed(rx)
    assert_closed(rx)


async def test_recv_after_close_gives_lagged_then_retained_then_closed() -> None:
    tx, rx = broadcast(2)
    for v in (1, 2, 3):
        tx.send(v)
    tx.close()
    with pytest.raises(Lagged) as excinfo:
        await rx.recv()
    assert excinfo.value.skipped == 1
    assert await rx.recv() == 2
    assert await rx.recv() == 3
    with pytest.raises(ChannelClosed, match=r"^channel closed$"):
        await rx.recv()


async def test_waiting_recv_raises_lagged_when_overrun() -> None:
    tx, rx = broadcast(2)
    task = asyncio.create_task(rx.recv())
    await settle()
    for v in range(5):
        tx.send(v)
    with pytest.raises(Lagged) as excinfo:
        await task
    assert excinfo.value.skipped == 3
    assert await rx.recv() == 3
    assert await rx.recv() == 4
    assert_empty(rx)


async def test_recv_returns_buffered_value_without_waiting() -> None:
    tx, rx = broadcast(2)
    tx.send("ready")
    task = asyncio.create_task(rx.recv())
    await asyncio.sleep(0)
    assert task.done()
    assert await task == "ready"


async def test_woken_recv_rewaits_if_value_taken_first() -> None:
    tx, rx = broadcast(4)
    task = asyncio.create_task(rx.recv())
    await settle()
    tx.send("a")
    assert rx.try_recv() == "a"  # taken before the woken task runs
    await settle()
    assert not task.done()
    tx.send("b")
    assert await task == "b"


# --- cancellation -------------------------------------------------------------------------------


async def test_cancelled_recv_loses_nothing() -> None:
    tx, rx = broadcast(4)
    task = asyncio.create_task(rx.recv())
    await settle()
    assert tx.statistics().tasks_waiting_receive == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert tx.statistics().tasks_waiting_receive == 0
    assert tx.send("kept") == 1
    assert await rx.recv() == "kept"


async def test_recv_cancelled_after_wakeup_loses_nothing() -> None:
    tx, rx = broadcast(4)
    task = asyncio.create_task(rx.recv())
    await settle()
    tx.send("kept")
    task.cancel()  # woken by the send, cancelled before it could run
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(rx) == 1
    assert rx.try_recv() == "kept"


async def test_recv_under_timeout_loses_nothing() -> None:
    tx, rx = broadcast(4)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0):
            await rx.recv()
    tx.send("kept")
    assert rx.try_recv() == "kept"


async def test_cancelling_one_waiter_does_not_affect_others() -> None:
    tx, rx1 = broadcast(4)
    rx2 = tx.subscribe()
    recv1 = asyncio.create_task(rx1.recv())
    recv2 = asyncio.create_task(rx2.recv())
    await settle()
    recv1.cancel()
    with pytest.raises(asyncio.CancelledError):
        await recv1
    tx.send("v")
    assert await recv2 == "v"
    assert rx1.try_recv() == "v"


# --- handles: async for, context managers, use after close --------------------------------------


async def test_async_for_ends_at_close() -> None:
    tx, rx = broadcast(8)

    async def collect() -> list[int]:
        return [v async for v in rx]

    task = asyncio.create_task(collect())
    await settle()
    for v in (1, 2, 3):
        tx.send(v)
        await settle()
    tx.send(4)
    tx.close()
    assert await task == [1, 2, 3, 4]


def test_with_closes_receiver() -> None:
    tx, rx = broadcast(2)
    with rx as same:
        assert same is rx
        assert tx.receiver_count == 1
    assert tx.receiver_count == 0
    with pytest.raises(ChannelClosed, match=r"^receiver is closed$"):
        rx.try_recv()


def test_with_closes_sender() -> None:
    tx, rx = broadcast(2)
    with tx as same:
        assert same is tx
        tx.send(1)
    assert rx.try_recv() == 1
    assert_closed(rx)


async def test_async_with_closes_both() -> None:
    tx, rx = broadcast(2)
    async with tx.subscribe() as rx2:
        assert tx.receiver_count == 2
    assert tx.receiver_count == 1
    with pytest.raises(ChannelClosed, match=r"^receiver is closed$"):
        rx2.try_recv()
    async with tx:
        tx.send(5)
    assert rx.try_recv() == 5
    assert_closed(rx)


def test_context_manager_closes_on_error() -> None:
    tx, rx = broadcast(2)
    with pytest.raises(RuntimeError, match=r"^boom$"), tx:
        raise RuntimeError("boom")
    assert_closed(rx)


async def test_receiver_use_after_own_close() -> None:
    tx, rx = broadcast(4)
    tx.send("unread")
    rx.close()
    rx.close()  # idempotent
    assert tx.receiver_count == 0
    with pytest.raises(ChannelClosed, match=r"^receiver is closed$"):
        rx.try_recv()
    with pytest.raises(ChannelClosed, match=r"^receiver is closed$"):
        await rx.recv()
    with pytest.raises(ChannelClosed, match=r"^receiver is closed$"):
        rx.resubscribe()
    assert [v async for v in rx] == []


def test_receiver_close_is_idempotent_for_counts() -> None:
    tx, rx1 = broadcast(4)
    rx2 = tx.subscribe()
    tx.send("v")
    rx1.close()
    rx1.close()
    assert tx.receiver_count == 1
    assert len(tx) == 1
    assert rx2.try_recv() == "v"
    assert len(tx) == 0


def test_sender_use_after_own_close() -> None:
    tx, rx = broadcast(4)
    tx2 = tx.clone()
    tx.close()
    tx.close()  # idempotent: tx2 still keeps the channel open
    assert tx2.statistics().open_send_handles == 1
    with pytest.raises(ChannelClosed, match=r"^sender handle is closed$") as excinfo:
        tx.send("v")
    assert excinfo.value.value == "v"
    with pytest.raises(ChannelClosed, match=r"^sender handle is closed$"):
        tx.subscribe()
    with pytest.raises(ChannelClosed, match=r"^sender handle is closed$"):
        tx.clone()
    assert_empty(rx)  # the channel is still open through tx2
    assert tx2.send("w") == 1
    assert rx.try_recv() == "w"


def test_send_on_closed_handle_without_receivers_raises_closed() -> None:
    tx, rx = broadcast(4)
    rx.close()
    tx.close()
    with pytest.raises(ChannelClosed, match=r"^sender handle is closed$") as excinfo:
        tx.send("v")
    assert excinfo.value.value == "v"


async def test_closing_receiver_wakes_its_own_waiting_recv() -> None:
    tx, rx = broadcast(4)
    task = asyncio.create_task(rx.recv())
    await settle()
    rx.close()
    await settle()
    still_waiting = not task.done()
    task.cancel()  # a no-op if recv() already finished
    with pytest.raises((ChannelClosed, asyncio.CancelledError)) as excinfo:
        await task
    assert not still_waiting, "recv() still waiting after its receiver was closed"
    assert excinfo.type is ChannelClosed
    assert str(excinfo.value) == "receiver is closed"
    assert tx.receiver_count == 0


# --- built outside a loop ------------------------------------------------------------------------


def test_built_outside_loop_used_across_loops() -> None:
    tx, rx = broadcast(4)

    async def first() -> str:
        task = asyncio.create_task(rx.recv())
        await settle()
        tx.send("one")
        return await task

    async def second() -> str:
        task = asyncio.create_task(rx.recv())
        await settle()
        tx.send("two")
        return await task

    assert asyncio.run(first()) == "one"
    assert asyncio.run(second()) == "two"


# --- statistics and repr -------------------------------------------------------------------------


def test_statistics_fields_and_frozen() -> None:
    assert [f.name for f in dataclasses.fields(BroadcastStatistics)] == [
        "max_buffer_size",
        "current_buffer_used",
        "current_receivers",
        "open_send_handles",
        "tasks_waiting_receive",
        "total_sent",
        "total_lagged",
        "name",  # given at creation (None here)
    ]
    assert [f.name for f in dataclasses.fields(BroadcastReceiverStatistics)] == [
        "current_pending",
        "total_received",
        "total_lagged",
        "total_lag_events",
    ]
    tx, rx = broadcast(2)
    stats = tx.statistics()
    rstats = rx.statistics()
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.total_sent = 5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        rstats.total_received = 5  # type: ignore[misc]


def test_statistics_snapshots() -> None:
    tx, rx1 = broadcast(2)
    rx2 = tx.subscribe()
    before = tx.statistics()
    before_rx = rx1.statistics()
    assert before == BroadcastStatistics(
        max_buffer_size=2,
        current_buffer_used=0,
        current_receivers=2,
        open_send_handles=1,
        tasks_waiting_receive=0,
        total_sent=0,
        total_lagged=0,
    )
    tx2 = tx.clone()
    for v in (1, 2, 3):
        tx.send(v)
    assert_lagged(rx1, 1)
    assert rx1.try_recv() == 2
    assert tx2.statistics() == BroadcastStatistics(
        max_buffer_size=2,
        current_buffer_used=2,
        current_receivers=2,
        open_send_handles=2,
        tasks_waiting_receive=0,
        total_sent=3,
        total_lagged=1,
    )
    assert rx1.statistics() == BroadcastReceiverStatistics(
        current_pending=1, total_received=1, total_lagged=1, total_lag_events=1
    )
    assert rx2.statistics() == BroadcastReceiverStatistics(
        current_pending=3, total_received=0, total_lagged=0, total_lag_events=0
    )
    assert_lagged(rx2, 1)
    assert tx.statistics().total_lagged == 2
    # Earlier snapshots do not change.
    assert before.total_sent == 0
    assert before.open_send_handles == 1
    assert before_rx.total_received == 0


async def test_statistics_tasks_waiting_receive() -> None:
    tx, rx1 = broadcast(2)
    rx2 = tx.subscribe()
    recv1 = asyncio.create_task(rx1.recv())
    recv2 = asyncio.create_task(rx2.recv())
    await settle()
    assert tx.statistics().tasks_waiting_receive == 2
    recv2.cancel()
    with pytest.raises(asyncio.CancelledError):
        await recv2
    assert tx.statistics().tasks_waiting_receive == 1
    tx.send("x")
    assert tx.statistics().tasks_waiting_receive == 0
    assert await recv1 == "x"


def test_repr_shows_live_state() -> None:
    tx, rx = broadcast(3)
    assert repr(tx) == "<BroadcastSender capacity=3 len=0 receivers=1 senders=1 closed=False>"
    assert repr(rx) == "<BroadcastReceiver capacity=3 len=0 received=0 lagged=0 closed=False>"
    tx2 = tx.clone()
    for v in (1, 2, 3, 4):
        tx.send(v)
    assert repr(tx) == "<BroadcastSender capacity=3 len=3 receivers=1 senders=2 closed=False>"
    assert repr(rx) == "<BroadcastReceiver capacity=3 len=4 received=0 lagged=0 closed=False>"
    assert_lagged(rx, 1)
    assert rx.try_recv() == 2
    assert repr(rx) == "<BroadcastReceiver capacity=3 len=2 received=1 lagged=1 closed=False>"
    assert repr(tx2) == "<BroadcastSender capacity=3 len=2 receivers=1 senders=2 closed=False>"
    tx.close()
    assert repr(tx) == "<BroadcastSender capacity=3 len=2 receivers=1 senders=1 closed=True>"
    rx.close()
    assert repr(rx) == "<BroadcastReceiver capacity=3 len=0 received=1 lagged=1 closed=True>"
    assert repr(tx2) == "<BroadcastSender capacity=3 len=0 receivers=0 senders=1 closed=False>"


def test_truthiness_follows_is_closed_not_the_length() -> None:
    tx, rx = broadcast[int](2)
    assert tx
    assert rx
    assert len(tx) == len(rx) == 0
    tx.send(1)
    tx.close()
    assert not tx  # this handle is closed
    assert rx  # the value is still there
    assert rx.try_recv() == 1
    assert not rx
