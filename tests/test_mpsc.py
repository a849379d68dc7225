"""Tests for `telemetry_lab.primitives.mpsc`: the bounded, closable mpsc channel.

Tests named `test_<tokio name>` port the test of that name from Tokio's
`tokio/tests/sync_mpsc.rs`; the others cover the contract in DESIGN.md ("Primitive
contracts", mpsc) and the documented extras (`statistics()`, `repr`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections import deque
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import settle

import telemetry_lab
from telemetry_lab import primitives
from telemetry_lab.errors import ChannelClosed, ChannelEmpty, ChannelError, ChannelFull
from telemetry_lab.primitives.mpsc import ChannelStatistics, Receiver, Sender, channel

CLOSED = r"^channel closed$"
FULL = r"^channel full$"
EMPTY = r"^channel empty$"


def drain(rx: Receiver[Any]) -> list[Any]:
    """Take every buffered value without waiting."""
    out: list[Any] = []
    while len(rx):
        out.append(rx.try_recv())
    return out


# --- construction and exports ------------------------------------------------------------


def test_exported_from_package_and_primitives() -> None:
    assert telemetry_lab.channel is primitives.channel is channel
    assert telemetry_lab.Sender is Sender
    assert telemetry_lab.Receiver is Receiver
    assert telemetry_lab.ChannelStatistics is ChannelStatistics
    tx, rx = channel[int](3)  # subscripting for the item type still returns the pair
    assert isinstance(tx, Sender)
    assert isinstance(rx, Receiver)
    assert tx.max_capacity == 3


@pytest.mark.parametrize("capacity", [0, -1])
def test_buffer_gteq_one(capacity: int) -> None:
    """Port of Tokio `buffer_gteq_one`: a capacity below 1 is refused."""
    with pytest.raises(ValueError, match=rf"^capacity must be >= 1, got {capacity}$"):
        channel(capacity)


# --- send / receive ------------------------------------------------------------------------


async def test_send_recv_with_buffer() -> None:
    """Port of Tokio `send_recv_with_buffer`."""
    tx, rx = channel[int](16)
    await tx.send(1)
    tx.try_send(2)
    tx.close()
    assert await rx.recv() == 1
    assert await rx.recv() == 2
    with pytest.raises(ChannelClosed, match=CLOSED) as info:
        await rx.recv()
    assert info.value.value is None


async def test_async_send_recv_with_buffer() -> None:
    """Port of Tokio `async_send_recv_with_buffer`."""
    tx, rx = channel[int](16)

    async def produce() -> None:
        with tx:
            await tx.send(1)
            await tx.send(2)

    task = asyncio.create_task(produce())
    assert await rx.recv() == 1
    assert await rx.recv() == 2
    with pytest.raises(ChannelClosed, match=CLOSED):
        await rx.recv()
    await task


async def test_send_recv_stream_with_buffer() -> None:
    """Port of Tokio `send_recv_stream_with_buffer`: `async for` ends once senders close."""
    tx, rx = channel[int](1)

    async def produce() -> None:
        with tx:
            for v in range(5):
                await tx.send(v)

    task = asyncio.create_task(produce())
    assert [v async for v in rx] == [0, 1, 2, 3, 4]
    await task


async def test_async_for_ends_when_receiver_closes_after_draining() -> None:
    tx, rx = channel[str](4)
    tx.try_send("a")
    tx.try_send("b")
    seen: list[str] = []
    async for v in rx:
        seen.append(v)
        if v == "a":
            rx.close()  # "b" is already buffered and must still be delivered
    assert seen == ["a", "b"]
    assert tx.is_closed is True


async def test_recv_waits_until_the_last_sender_closes() -> None:
    tx, rx = channel[int](2)
    tx2 = tx.clone()
    waiter = asyncio.create_task(rx.recv())
    await settle()
    tx.close()
    await settle()
    assert not waiter.done()  # tx2 is still open
    tx2.close()
    with pytest.raises(ChannelClosed, match=CLOSED):
        await waiter


async def test_tx_close_gets_none() -> None:
    """Port of Tokio `tx_close_gets_none`: no sender left and nothing buffered."""
    tx, rx = channel[int](10)
    tx.close()
    with pytest.raises(ChannelClosed, match=CLOSED):
        await rx.recv()


async def test_no_t_bounds_buffer() -> None:
    """Port of Tokio `no_t_bounds_buffer`: values need no eq/hash/repr; identity is kept."""

    class NoImpls:
        __slots__ = ()
        __hash__ = None  # type: ignore[assignment]

    tx, rx = channel[NoImpls](100)
    value = NoImpls()
    tx.clone().try_send(value)
    assert "capacity=100" in repr(tx)
    assert "len=1" in repr(rx)
    assert await rx.recv() is value


# --- try_send / try_recv -------------------------------------------------------------------


async def test_try_send_fail() -> None:
    """Port of Tokio `try_send_fail`."""
    tx, rx = channel[str](1)
    tx.try_send("hello")
    with pytest.raises(ChannelFull, match=FULL) as info:
        tx.try_send("fail")
    assert info.value.value == "fail"
    assert await rx.recv() == "hello"
    tx.try_send("goodbye")
    tx.close()
    assert await rx.recv() == "goodbye"
    with pytest.raises(ChannelClosed, match=CLOSED):
        await rx.recv()


def test_try_send_fail_with_try_recv() -> None:
    """Port of Tokio `try_send_fail_with_try_recv`."""
    tx, rx = channel[str](1)
    tx.try_send("hello")
    with pytest.raises(ChannelFull, match=FULL):
        tx.try_send("fail")
    assert rx.try_recv() == "hello"
    tx.try_send("goodbye")
    tx.close()
    assert rx.try_recv() == "goodbye"
    with pytest.raises(ChannelClosed, match=CLOSED):
        rx.try_recv()


def test_try_recv_bounded() -> None:
    """Port of Tokio `try_recv_bounded` (distinct values, so order is checked too)."""
    tx, rx = channel[int](5)
    for v in range(5):
        tx.try_send(v)
    with pytest.raises(ChannelFull):
        tx.try_send(5)
    assert [rx.try_recv() for _ in range(5)] == [0, 1, 2, 3, 4]
    with pytest.raises(ChannelEmpty, match=EMPTY):
        rx.try_recv()

    for v in range(10, 14):
        tx.try_send(v)
    assert rx.try_recv() == 10
    tx.try_send(14)
    tx.try_send(15)
    with pytest.raises(ChannelFull):
        tx.try_send(16)
    assert [rx.try_recv() for _ in range(5)] == [11, 12, 13, 14, 15]
    with pytest.raises(ChannelEmpty, match=EMPTY):
        rx.try_recv()

    for v in range(20, 23):
        tx.try_send(v)
    tx.close()
    assert [rx.try_recv() for _ in range(3)] == [20, 21, 22]
    with pytest.raises(ChannelClosed, match=CLOSED):
        rx.try_recv()


def test_try_recv_after_receiver_close() -> None:
    """Port of Tokio `try_recv_after_receiver_close`."""
    _tx, rx = channel[int](5)
    with pytest.raises(ChannelEmpty, match=EMPTY):
        rx.try_recv()
    rx.close()
    with pytest.raises(ChannelClosed, match=CLOSED):
        rx.try_recv()


def test_try_recv_close_while_empty_bounded() -> None:
    """Port of Tokio `try_recv_close_while_empty_bounded`."""
    tx, rx = channel[int](5)
    with pytest.raises(ChannelEmpty, match=EMPTY):
        rx.try_recv()
    tx.close()
    with pytest.raises(ChannelClosed, match=CLOSED):
        rx.try_recv()


def test_closed_wins_over_full_for_try_send() -> None:
    tx, rx = channel[int](1)
    tx2 = tx.clone()
    tx.try_send(1)  # full from now on
    tx2.close()
    with pytest.raises(ChannelClosed, match=CLOSED) as own:
        tx2.try_send(2)  # own handle closed, buffer full
    assert own.value.value == 2
    rx.close()
    with pytest.raises(ChannelClosed, match=CLOSED) as other:
        tx.try_send(3)  # receiver closed, buffer full
    assert other.value.value == 3
    assert len(rx) == 1


# --- receiver close --------------------------------------------------------------------------


async def test_recv_close_gets_none_idle() -> None:
    """Port of Tokio `recv_close_gets_none_idle`."""
    tx, rx = channel[int](10)
    rx.close()
    with pytest.raises(ChannelClosed, match=CLOSED):
        await rx.recv()
    with pytest.raises(ChannelClosed, match=CLOSED) as info:
        await tx.send(1)
    assert info.value.value == 1


async def test_dropping_rx_closes_channel() -> None:
    """Port of Tokio `dropping_rx_closes_channel` and `..._for_try`: sends hand the value back."""
    tx, rx = channel[object](100)
    first, second, third = object(), object(), object()
    tx.try_send(first)
    rx.close()
    with pytest.raises(ChannelClosed, match=CLOSED) as by_send:
        await tx.send(second)
    assert by_send.value.value is second
    with pytest.raises(ChannelClosed, match=CLOSED) as by_try:
        tx.try_send(third)
    assert by_try.value.value is third
    assert tx.is_closed is True
    assert len(rx) == 1
    assert rx.try_recv() is first


async def test_recv_close_gets_none_reserved() -> None:
    """Port of Tokio `recv_close_gets_none_reserved`: buffered survives, waiting is refused."""
    tx1, rx = channel[int](1)
    tx2 = tx1.clone()
    await tx1.send(123)
    waiting = asyncio.create_task(tx2.send(456))
    await settle()
    rx.close()
    with pytest.raises(ChannelClosed, match=CLOSED) as info:
        await waiting
    assert info.value.value == 456
    assert await rx.recv() == 123
    with pytest.raises(ChannelClosed, match=CLOSED):
        await rx.recv()


async def test_rx_close_refuses_every_waiting_sender_with_its_value() -> None:
    tx, rx = channel[str](2)
    tx.try_send("kept-1")
    tx.try_send("kept-2")
    senders = [asyncio.create_task(tx.clone().send(name)) for name in ("a", "b", "c")]
    await settle()
    assert rx.statistics().tasks_waiting_send == 3
    rx.close()
    results = await asyncio.gather(*senders, return_exceptions=True)
    assert [type(r) for r in results] == [ChannelClosed] * 3
    assert [r.value for r in results if isinstance(r, ChannelClosed)] == ["a", "b", "c"]
    assert rx.statistics().tasks_waiting_send == 0
    assert [await rx.recv(), await rx.recv()] == ["kept-1", "kept-2"]
    with pytest.raises(ChannelClosed, match=CLOSED):
        rx.try_recv()


async def test_rx_close_refuses_a_sender_granted_but_not_yet_run() -> None:
    tx, rx = channel[str](1)
    tx.try_send("x")
    waiting = asyncio.create_task(tx.send("granted"))
    await settle()
    assert rx.try_recv() == "x"  # frees the slot and reserves it for `waiting`
    assert rx.statistics().current_reserved == 1
    rx.close()  # before `waiting` has run
    with pytest.raises(ChannelClosed, match=CLOSED) as info:
        await waiting
    assert info.value.value == "granted"
    assert len(rx) == 0
    assert rx.statistics().current_reserved == 0
    assert tx.capacity == 1
    with pytest.raises(ChannelClosed, match=CLOSED):
        rx.try_recv()


# --- handle close, clone, context managers ---------------------------------------------------


async def test_using_a_sender_after_its_own_close_raises_channel_closed() -> None:
    tx, rx = channel[int](4)
    tx2 = tx.clone()
    tx.close()
    tx.close()  # idempotent: must not count as a second closed handle
    assert tx.is_closed is True
    assert tx2.is_closed is False
    assert rx.is_closed is False
    assert rx.statistics().open_send_handles == 1
    with pytest.raises(ChannelClosed, match=CLOSED) as by_send:
        await tx.send(1)
    assert by_send.value.value == 1
    with pytest.raises(ChannelClosed, match=CLOSED) as by_try:
        tx.try_send(2)
    assert by_try.value.value == 2
    with pytest.raises(ChannelClosed):
        tx.clone()
    tx2.try_send(3)  # the other handle is unaffected
    assert rx.try_recv() == 3


async def test_using_a_receiver_after_its_own_close_raises_channel_closed() -> None:
    tx, rx = channel[int](4)
    rx.close()
    rx.close()  # idempotent
    with pytest.raises(ChannelClosed, match=CLOSED):
        await rx.recv()
    with pytest.raises(ChannelClosed, match=CLOSED):
        rx.try_recv()
    with pytest.raises(ChannelClosed, match=CLOSED):
        await rx.recv_many(3)
    assert tx.is_closed is True


async def test_clone_gives_an_independent_sender_on_the_same_channel() -> None:
    tx, rx = channel[str](3)
    tx2 = tx.clone()
    assert tx2 is not tx
    assert tx2.max_capacity == 3
    await tx.send("from tx")
    await tx2.send("from tx2")
    assert tx2.capacity == 1  # capacity is shared
    assert rx.statistics().open_send_handles == 2
    tx.close()
    assert rx.is_closed is False
    tx2.try_send("still open")
    tx2.close()
    assert rx.is_closed is True
    assert [v async for v in rx] == ["from tx", "from tx2", "still open"]


async def test_with_and_async_with_close_handles() -> None:
    tx, rx = channel[int](2)
    tx2 = tx.clone()
    with tx as entered:
        assert entered is tx
        entered.try_send(1)
    assert tx.is_closed is True
    async with tx2 as entered2:
        assert entered2 is tx2
        await entered2.send(2)
    assert tx2.is_closed is True
    assert rx.is_closed is True  # every sender closed

    tx3, rx3 = channel[int](1)
    with rx3 as entered_rx:
        assert entered_rx is rx3
    assert tx3.is_closed is True
    tx4, rx4 = channel[int](1)
    async with rx4 as entered_rx4:
        assert entered_rx4 is rx4
    assert tx4.is_closed is True
    assert [rx.try_recv(), rx.try_recv()] == [1, 2]

    tx5, rx5 = channel[int](1)
    with pytest.raises(RuntimeError, match=r"^boom$"), tx5:
        raise RuntimeError("boom")
    assert tx5.is_closed is True  # closed on the way out of an error too
    assert rx5.is_closed is True


async def test_tx_close_while_its_own_send_waits_raises_channel_closed() -> None:
    tx, rx = channel[str](1)
    other = tx.clone()
    tx.try_send("buffered")
    mine = asyncio.create_task(tx.send("mine"))
    theirs = asyncio.create_task(other.send("theirs"))
    await settle()
    tx.close()
    with pytest.raises(ChannelClosed, match=CLOSED) as info:
        await mine
    assert info.value.value == "mine"
    await settle()
    assert not theirs.done()  # the other handle's send keeps waiting
    assert rx.statistics().tasks_waiting_send == 1
    assert await rx.recv() == "buffered"
    await theirs
    assert await rx.recv() == "theirs"
    with pytest.raises(ChannelEmpty):
        rx.try_recv()


# --- recv_many -------------------------------------------------------------------------------


async def test_async_send_recv_many_with_buffer() -> None:
    """Port of Tokio `async_send_recv_many_with_buffer`."""
    tx, rx = channel[int](2)
    assert await rx.recv_many(0) == []

    async def produce() -> None:
        with tx:
            for v in (1, 2, 7, 0):
                await tx.send(v)

    task = asyncio.create_task(produce())
    received: list[int] = []
    while len(received) < 4:
        batch = await rx.recv_many(3)
        assert 1 <= len(batch) <= 2  # never more than is buffered (capacity 2)
        received += batch
    assert received == [1, 2, 7, 0]
    with pytest.raises(ChannelClosed, match=CLOSED):
        await rx.recv_many(3)
    await task


async def test_send_recv_many_bounded_capacity() -> None:
    """Port of Tokio `send_recv_many_bounded_capacity`: at most `limit`, then the rest."""
    limit = 9
    tx, rx = channel[str](100)
    expected = [str(i) for i in range(limit)]
    for v in expected:
        await tx.send(v)
    await tx.send("one more")
    assert await rx.recv_many(limit) == expected
    assert await rx.recv_many(limit) == ["one more"]

    async def send_final() -> None:
        with tx:
            await tx.send("final")

    task = asyncio.create_task(send_final())
    assert await rx.recv_many(limit) == ["final"]
    await task
    with pytest.raises(ChannelClosed, match=CLOSED):
        await rx.recv_many(limit)


async def test_recv_many_limit_zero_returns_at_once() -> None:
    tx, rx = channel[int](2)
    coro = rx.recv_many(0)  # open and empty: a real wait would suspend
    with pytest.raises(StopIteration) as stop:
        coro.send(None)
    assert stop.value.value == []
    tx.try_send(5)
    assert await rx.recv_many(0) == []
    assert len(rx) == 1  # limit 0 takes nothing


async def test_recv_many_negative_limit_raises_value_error() -> None:
    tx, rx = channel[int](2)
    tx.try_send(1)
    with pytest.raises(ValueError, match=r"^limit must be >= 0, got -1$"):
        await rx.recv_many(-1)
    assert len(rx) == 1


async def test_recv_many_waits_for_a_value_then_drains_closed_channel() -> None:
    tx, rx = channel[int](4)
    waiter = asyncio.create_task(rx.recv_many(10))
    await settle()
    assert not waiter.done()
    assert rx.statistics().tasks_waiting_receive == 1
    tx.try_send(1)
    tx.try_send(2)
    tx.close()
    assert await waiter == [1, 2]
    with pytest.raises(ChannelClosed, match=CLOSED):
        await rx.recv_many(10)


async def test_recv_many_frees_slots_for_waiting_senders_in_order() -> None:
    tx, rx = channel[int](2)
    tx.try_send(0)
    tx.try_send(1)
    senders = []
    for v in (2, 3, 4):
        senders.append(asyncio.create_task(tx.send(v)))
        await settle()
    assert await rx.recv_many(2) == [0, 1]
    await settle()
    assert await rx.recv_many(5) == [2, 3]
    await settle()
    assert await rx.recv_many(5) == [4]
    await asyncio.gather(*senders)


# --- FIFO among waiting senders --------------------------------------------------------------


async def test_waiting_senders_are_admitted_in_the_order_they_started_waiting() -> None:
    tx, rx = channel[str](1)
    tx.try_send("first")
    senders = []
    for name in ("a", "b", "c", "d"):
        senders.append(asyncio.create_task(tx.clone().send(name)))
        await settle()  # make the waiting order deterministic
    assert rx.statistics().tasks_waiting_send == 4
    assert [await rx.recv() for _ in range(5)] == ["first", "a", "b", "c", "d"]
    await asyncio.gather(*senders)


async def test_send_recv_buffer_limited() -> None:
    """Port of Tokio `send_recv_buffer_limited`: try_send never takes a slot owed to a waiter."""
    tx, rx = channel[int](1)
    tx.try_send(1)
    waiting = asyncio.create_task(tx.send(2))
    await settle()
    assert rx.try_recv() == 1  # a slot frees up, owed to `waiting`
    assert tx.capacity == 0
    with pytest.raises(ChannelFull, match=FULL) as info:
        tx.try_send(1337)
    assert info.value.value == 1337
    assert await rx.recv() == 2
    await waiting
    with pytest.raises(ChannelEmpty):
        rx.try_recv()


async def test_new_send_queues_behind_waiting_senders_even_when_a_slot_is_free() -> None:
    tx, rx = channel[str](1)
    tx.try_send("x")
    early = asyncio.create_task(tx.send("early"))
    await settle()
    assert rx.try_recv() == "x"  # slot reserved for `early`, which has not run yet
    late = asyncio.create_task(tx.send("late"))
    await settle()
    assert [await rx.recv(), await rx.recv()] == ["early", "late"]
    await asyncio.gather(early, late)


# --- cancellation ----------------------------------------------------------------------------


async def test_start_send_past_cap() -> None:
    """Port of Tokio `start_send_past_cap`: an abandoned waiting send does not take the wake-up."""
    tx1, rx = channel[str](1)
    tx2 = tx1.clone()
    tx1.try_send("x")
    abandoned = asyncio.create_task(tx1.send("abandoned"))
    await settle()
    kept = asyncio.create_task(tx2.send("kept"))
    await settle()
    abandoned.cancel()
    with pytest.raises(asyncio.CancelledError):
        await abandoned
    assert await rx.recv() == "x"
    await kept
    assert await rx.recv() == "kept"
    tx1.close()
    tx2.close()
    with pytest.raises(ChannelClosed, match=CLOSED):
        await rx.recv()


async def test_cancelled_waiting_sender_leaves_channel_consistent() -> None:
    tx, rx = channel[str](1)
    tx.try_send("buffered")
    victim = asyncio.create_task(tx.send("cancelled"))
    await settle()
    assert rx.statistics().tasks_waiting_send == 1
    victim.cancel()
    with pytest.raises(asyncio.CancelledError):
        await victim
    stats = rx.statistics()
    assert stats.tasks_waiting_send == 0
    assert stats.current_reserved == 0
    assert stats.total_sent == 1
    assert "waiting=0" in repr(tx)
    assert tx.capacity == 0
    assert rx.try_recv() == "buffered"
    with pytest.raises(ChannelEmpty):
        rx.try_recv()  # the cancelled value was never enqueued
    assert tx.capacity == 1  # no slot leaked
    tx.try_send("later")  # later senders get in at once
    assert rx.try_recv() == "later"
    assert tx.capacity == 1


async def test_cancelled_sender_in_the_middle_of_the_queue_keeps_order() -> None:
    tx, rx = channel[str](1)
    tx.try_send("x")
    tasks = {}
    for name in ("a", "b", "c"):
        tasks[name] = asyncio.create_task(tx.send(name))
        await settle()
    tasks["b"].cancel()
    with pytest.raises(asyncio.CancelledError):
        await tasks["b"]
    assert [await rx.recv() for _ in range(3)] == ["x", "a", "c"]
    await asyncio.gather(tasks["a"], tasks["c"])
    assert tx.capacity == 1
    assert rx.statistics().tasks_waiting_send == 0


async def test_granted_sender_cancelled_before_running_passes_its_slot_on() -> None:
    tx, rx = channel[str](1)
    tx.try_send("x")
    a = asyncio.create_task(tx.send("A"))
    await settle()
    b = asyncio.create_task(tx.send("B"))
    await settle()
    assert rx.try_recv() == "x"  # frees the slot: A is chosen
    assert rx.statistics().current_reserved == 1
    a.cancel()  # A is cancelled before it ever runs with its grant
    await settle()
    assert a.cancelled()
    assert b.done()
    await b
    assert rx.try_recv() == "B"
    with pytest.raises(ChannelEmpty):
        rx.try_recv()  # A's value never arrives
    stats = rx.statistics()
    assert stats.current_reserved == 0
    assert stats.tasks_waiting_send == 0
    assert stats.total_sent == 2
    assert tx.capacity == 1  # no slot lost


async def test_granted_sender_cancelled_with_no_one_waiting_returns_the_slot() -> None:
    tx, rx = channel[str](1)
    tx.try_send("x")
    a = asyncio.create_task(tx.send("A"))
    await settle()
    assert rx.try_recv() == "x"
    assert tx.capacity == 0  # reserved for A
    a.cancel()
    with pytest.raises(asyncio.CancelledError):
        await a
    assert tx.capacity == 1
    tx.try_send("y")
    assert rx.try_recv() == "y"


async def test_cancelled_waiting_receiver_loses_nothing() -> None:
    tx, rx = channel[int](4)
    waiter = asyncio.create_task(rx.recv())
    await settle()
    assert rx.statistics().tasks_waiting_receive == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert rx.statistics().tasks_waiting_receive == 0
    assert "waiting=0" in repr(rx)
    for v in (1, 2, 3):
        await tx.send(v)
    assert [await rx.recv() for _ in range(3)] == [1, 2, 3]


async def test_receiver_woken_then_cancelled_leaves_the_value_buffered() -> None:
    tx, rx = channel[int](4)
    waiter = asyncio.create_task(rx.recv())
    await settle()
    tx.try_send(1)  # wakes `waiter`, which has not run yet
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert len(rx) == 1
    assert rx.try_recv() == 1


async def test_receiver_woken_then_cancelled_passes_the_turn_to_the_next_waiter() -> None:
    tx, rx = channel[int](4)
    first = asyncio.create_task(rx.recv())
    await settle()
    second = asyncio.create_task(rx.recv())
    await settle()
    tx.try_send(1)  # wakes `first`
    first.cancel()
    await settle()
    assert first.cancelled()
    assert second.done()
    assert await second == 1


# --- capacity, len, is_closed ----------------------------------------------------------------


async def test_tx_capacity() -> None:
    """Port of Tokio `test_tx_capacity` (a granted waiting send stands in for the permit)."""
    tx, rx = channel[int](10)
    assert (tx.capacity, tx.max_capacity) == (10, 10)
    await tx.send(0)
    assert (tx.capacity, tx.max_capacity) == (9, 10)
    for v in range(1, 10):
        tx.try_send(v)
    assert (tx.capacity, tx.max_capacity) == (0, 10)
    waiting = asyncio.create_task(tx.send(10))
    await settle()
    assert rx.try_recv() == 0  # the freed slot is reserved for `waiting`
    assert (tx.capacity, tx.max_capacity) == (0, 10)
    await waiting
    assert drain(rx) == list(range(1, 11))
    assert (tx.capacity, tx.max_capacity) == (10, 10)


async def test_rx_is_closed_when_calling_close_with_sender() -> None:
    """Port of Tokio `test_rx_is_closed_when_calling_close_with_sender`."""
    tx, rx = channel[int](10)
    assert rx.is_closed is False
    rx.close()
    assert rx.is_closed is True
    assert tx.is_closed is True


async def test_rx_is_closed_when_dropping_all_senders() -> None:
    """Port of Tokio `test_rx_is_closed_when_dropping_all_senders`."""
    tx, rx = channel[int](10)
    another = tx.clone()

    async def close_other() -> None:
        another.close()

    tx.close()
    assert rx.is_closed is False
    await asyncio.create_task(close_other())
    assert rx.is_closed is True


async def test_rx_is_closed_with_messages_buffered() -> None:
    """Ports Tokio `test_rx_is_(not_)closed_when_there_are_..._messages...` (three tests)."""
    tx, rx = channel[int](10)
    for v in range(10):
        await tx.send(v)
    assert rx.is_closed is False  # full but senders remain
    tx.close()
    assert rx.is_closed is True  # no senders, values buffered
    assert len(rx) == 10

    tx2, rx2 = channel[int](10)
    for v in range(10):
        await tx2.send(v)
    rx2.close()
    assert rx2.is_closed is True
    assert len(rx2) == 10


async def test_rx_len_when_consuming_all_messages() -> None:
    """Port of Tokio `test_rx_len_when_consuming_all_messages` (and `test_rx_len_on_*`)."""
    tx, rx = channel[int](100)
    assert len(rx) == 0
    for i in range(100):
        await tx.send(i)
        assert len(rx) == i + 1
    tx.close()
    assert len(rx) == 100
    for i in reversed(range(100)):
        await rx.recv()
        assert len(rx) == i
    empty_tx, empty_rx = channel[int](100)
    empty_tx.close()
    assert len(empty_rx) == 0


@pytest.mark.parametrize("order", ["close_then_drop_sender", "drop_sender_then_close"])
async def test_rx_len_when_close_is_called(order: str) -> None:
    """Port of Tokio `test_rx_len_when_close_is_called{,_before,_after}_dropping_sender`."""
    tx, rx = channel[int](100)
    await tx.send(7)
    if order == "close_then_drop_sender":
        rx.close()
        tx.close()
    else:
        tx.close()
        rx.close()
    assert len(rx) == 1
    assert await rx.recv() == 7


async def test_is_empty_32_msgs() -> None:
    """Port of Tokio `test_is_empty_32_msgs` (regression tokio#6602)."""
    tx, rx = channel[int](33)
    for value in range(1, 257):
        await tx.send(value)
        assert await rx.recv() == value
        assert len(rx) == 0, value


# --- statistics and repr ---------------------------------------------------------------------


async def test_statistics_snapshot_fields_and_frozen() -> None:
    tx, rx = channel[int](2)
    assert [f.name for f in dataclasses.fields(ChannelStatistics)] == [
        "max_buffer_size",
        "current_buffer_used",
        "current_reserved",
        "open_send_handles",
        "open_receive_handles",
        "tasks_waiting_send",
        "tasks_waiting_receive",
        "total_sent",
        "total_received",
        "total_blocked_sends",
        "total_send_wait",
        "name",  # given at creation (None here)
    ]
    tx2 = tx.clone()
    tx.try_send(1)
    tx.try_send(2)
    blocked = asyncio.create_task(tx2.send(3))
    await settle()
    before = tx.statistics()
    assert before == rx.statistics()
    assert dataclasses.replace(before, total_send_wait=0.0) == ChannelStatistics(
        max_buffer_size=2,
        current_buffer_used=2,
        current_reserved=0,
        open_send_handles=2,
        open_receive_handles=1,
        tasks_waiting_send=1,
        tasks_waiting_receive=0,
        total_sent=2,
        total_received=0,
        total_blocked_sends=1,
        total_send_wait=0.0,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.total_sent = 99  # type: ignore[misc]

    assert rx.try_recv() == 1
    assert tx.statistics().current_reserved == 1
    await blocked
    tx.close()
    rx.close()
    after = rx.statistics()
    assert after.current_buffer_used == 2
    assert after.current_reserved == 0
    assert after.open_send_handles == 1
    assert after.open_receive_handles == 0
    assert after.tasks_waiting_send == 0
    assert after.total_sent == 3
    assert after.total_received == 1
    assert after.total_blocked_sends == 1
    assert after.total_send_wait >= 0.0
    assert before.current_buffer_used == 2  # a snapshot does not change afterwards
    assert before.tasks_waiting_send == 1


async def test_statistics_total_send_wait_uses_loop_time() -> None:
    loop = asyncio.get_running_loop()
    now = float(math.ceil(loop.time()))  # an integer, so the sums below are exact
    loop.time = lambda: now  # type: ignore[method-assign]
    try:
        tx, rx = channel[int](1)
        tx.try_send(0)
        blocked = asyncio.create_task(tx.send(1))
        await settle()
        now += 1.5
        assert rx.try_recv() == 0
        await blocked
        assert rx.try_recv() == 1
        now += 3.0
        await tx.send(2)  # a free slot: the fast path adds no wait time
        stats = rx.statistics()
        assert stats.total_blocked_sends == 1
        assert stats.total_send_wait == 1.5
    finally:
        del loop.time  # type: ignore[method-assign]


async def test_repr_shows_live_state() -> None:
    tx, rx = channel[int](3)
    assert repr(tx).startswith("<Sender ")
    assert repr(rx).startswith("<Receiver ")
    for r in (repr(tx), repr(rx)):
        assert "capacity=3" in r
        assert "len=0" in r
        assert "closed=False" in r
    tx.try_send(1)
    tx.try_send(2)
    assert "len=2" in repr(tx)
    assert "len=2" in repr(rx)
    rx.close()
    assert "closed=True" in repr(tx)
    assert "closed=True" in repr(rx)
    assert "len=2" in repr(rx)


async def test_repr_waiting_count_drops_when_a_waiting_send_is_refused() -> None:
    tx, rx = channel[int](1)
    other = tx.clone()
    tx.try_send(0)
    refused = asyncio.create_task(other.send(1))
    await settle()
    assert "waiting=1" in repr(tx)
    other.close()  # refuses the waiting send on that handle
    with pytest.raises(ChannelClosed):
        await refused
    assert rx.statistics().tasks_waiting_send == 0
    assert "waiting=0" in repr(tx)  # repr must agree with the live state


# --- built outside a running loop ------------------------------------------------------------

MODULE_TX, MODULE_RX = channel[int](2)


def test_channel_built_at_module_level_works_inside_asyncio_run() -> None:
    async def main() -> list[int]:
        async def produce() -> None:
            with MODULE_TX:
                for v in range(5):
                    await MODULE_TX.send(v)  # waits: capacity 2

        task = asyncio.create_task(produce())
        got = [v async for v in MODULE_RX]
        await task
        return got

    assert asyncio.run(main()) == [0, 1, 2, 3, 4]


def test_channel_built_in_sync_code_is_usable_across_two_loops() -> None:
    tx, rx = channel[str](1)  # "one notebook cell"
    tx.try_send("sync")

    async def cell_two() -> str:
        blocked = asyncio.create_task(tx.send("loop one"))
        await settle()
        first = await rx.recv()
        await blocked
        return first

    async def cell_three() -> list[str]:
        waiter = asyncio.create_task(rx.recv_many(5))
        await settle()
        tx.close()
        got = await waiter
        with pytest.raises(ChannelClosed):
            await rx.recv()
        return got

    assert asyncio.run(cell_two()) == "sync"
    assert asyncio.run(cell_three()) == ["loop one"]


# --- model-based: non-blocking operations against a deque ------------------------------------

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(0, 3), st.integers(0, 1000)),
        st.tuples(st.just("recv"), st.just(0), st.just(0)),
        st.tuples(st.just("close_tx"), st.integers(0, 3), st.just(0)),
        st.tuples(st.just("clone"), st.integers(0, 3), st.just(0)),
        st.tuples(st.just("close_rx"), st.just(0), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(capacity=st.integers(1, 4), ops=OPS)
def test_try_operations_match_a_deque_model(capacity: int, ops: list[tuple[str, int, int]]) -> None:
    tx, rx = channel[int](capacity)
    senders: list[Sender[int]] = [tx]
    sender_closed = [False]
    model: deque[int] = deque()
    rx_closed = False
    sent = received = 0

    for op, index, value in ops:
        i = index % len(senders)
        if op == "send":
            expected: type[ChannelError] | None = None
            if sender_closed[i] or rx_closed:
                expected = ChannelClosed
            elif len(model) >= capacity:
                expected = ChannelFull
            if expected is None:
                senders[i].try_send(value)
                model.append(value)
                sent += 1
            else:
                with pytest.raises(expected) as info:
                    senders[i].try_send(value)
                assert type(info.value) is expected
                assert info.value.value == value  # type: ignore[attr-defined]
        elif op == "recv":
            if model:
                assert rx.try_recv() == model.popleft()
                received += 1
            elif rx_closed or all(sender_closed):
                with pytest.raises(ChannelClosed, match=CLOSED):
                    rx.try_recv()
            else:
                with pytest.raises(ChannelEmpty, match=EMPTY):
                    rx.try_recv()
        elif op == "close_tx":
            senders[i].close()
            sender_closed[i] = True
        elif op == "clone":
            if sender_closed[i]:
                with pytest.raises(ChannelClosed):
                    senders[i].clone()
            else:
                senders.append(senders[i].clone())
                sender_closed.append(False)
        else:
            rx.close()
            rx_closed = True

        assert len(rx) == len(model)
        assert tx.capacity == capacity - len(model)
        assert rx.is_closed is (rx_closed or all(sender_closed))
        assert [s.is_closed for s in senders] == [c or rx_closed for c in sender_closed]
        stats = rx.statistics()
        assert stats.open_send_handles == sender_closed.count(False)
        assert stats.open_receive_handles == (0 if rx_closed else 1)
        assert (stats.total_sent, stats.total_received) == (sent, received)


def test_a_receiver_is_truthy_until_it_is_closed_and_drained() -> None:
    """Found: an open, empty receiver was falsy (it has a length), so
    `while any(receivers):` returned at once."""
    tx, rx = channel[int](2)
    assert rx
    assert len(rx) == 0
    tx.try_send(1)
    tx.close()
    assert rx  # closed, but a value is still buffered
    assert rx.try_recv() == 1
    assert not rx  # closed and drained: nothing will ever come
