"""Tests for `telemetry_lab.primitives.watch`, ported from Tokio's `tokio/tests/sync_watch.rs`.

Tokio's `spawn(fut).poll()` becomes `await poll(coro)`: start a task and let it run one
step, so `task.done()` tells "ready" from "pending". Rust's `drop(handle)` is `close()`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from support import settle

import telemetry_lab
from telemetry_lab import primitives
from telemetry_lab.errors import ChannelClosed, NoReceivers
from telemetry_lab.primitives import WatchReceiver, WatchSender, WatchStatistics, watch

T = TypeVar("T")

CLOSED = r"^channel closed$"
SENDER_CLOSED = r"^sender handle is closed$"
RECEIVER_CLOSED = r"^receiver is closed$"


async def poll(coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Start `coro` as a task and let it run one step (Tokio's `spawn(fut).poll()`)."""
    task = asyncio.create_task(coro)
    await asyncio.sleep(0)
    return task


async def cancel(*tasks: asyncio.Task[Any]) -> None:
    """Cancel `tasks` and wait until they are finished."""
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks)
    assert all(task.cancelled() for task in tasks)


def assert_ready_ok(task: asyncio.Task[Any]) -> None:
    assert task.done()
    assert task.result() is None


def assert_ready_closed(task: asyncio.Task[Any]) -> None:
    assert task.done()
    with pytest.raises(ChannelClosed, match=CLOSED):
        task.result()


# --------------------------------------------------------------------------- Tokio ports


async def test_single_rx_recv() -> None:
    """Ports Tokio's `single_rx_recv`."""
    tx, rx = watch("one")

    t = await poll(rx.changed())
    assert not t.done()  # not initially notified
    await cancel(t)
    assert rx.borrow() == "one"

    t = await poll(rx.changed())
    assert not t.done()
    tx.send("two")
    await settle()
    assert_ready_ok(t)
    assert rx.borrow() == "two"

    t = await poll(rx.changed())
    assert not t.done()
    tx.close()
    await settle()
    assert_ready_closed(t)
    assert rx.borrow() == "two"


async def test_rx_version_underflow() -> None:
    """Ports Tokio's `rx_version_underflow`."""
    _tx, rx = watch("one")
    rx.mark_changed()
    rx.mark_changed()
    assert rx.has_changed() is True
    assert_ready_ok(await poll(rx.changed()))
    assert rx.has_changed() is False
    assert rx.borrow() == "one"


async def test_rx_mark_changed() -> None:
    """Ports Tokio's `rx_mark_changed`."""
    tx, rx = watch("one")
    rx2 = rx.clone()
    rx3 = rx.clone()
    rx4 = rx.clone()

    rx.mark_changed()
    assert rx.has_changed() is True
    assert_ready_ok(await poll(rx.changed()))

    assert rx2.has_changed() is False
    t = await poll(rx2.changed())
    assert not t.done()
    await cancel(t)

    rx3.mark_changed()
    assert rx3.borrow() == "one"
    assert rx3.has_changed() is True
    assert rx3.borrow_and_update() == "one"
    assert rx3.has_changed() is False
    t = await poll(rx3.changed())
    assert not t.done()
    await cancel(t)

    tx.send("two")
    assert rx4.has_changed() is True
    assert rx4.borrow_and_update() == "two"
    rx4.mark_changed()
    assert rx4.has_changed() is True
    assert rx4.borrow_and_update() == "two"

    assert rx.borrow() == "two"


async def test_rx_mark_unchanged() -> None:
    """Ports Tokio's `rx_mark_unchanged`."""
    tx, rx = watch("one")
    rx2 = rx.clone()

    assert rx.has_changed() is False
    rx.mark_changed()
    assert rx.has_changed() is True
    rx.mark_unchanged()
    assert rx.has_changed() is False
    t = await poll(rx.changed())
    assert not t.done()
    await cancel(t)

    assert rx2.has_changed() is False
    tx.send("two")
    assert rx2.has_changed() is True
    rx2.mark_unchanged()
    assert rx2.has_changed() is False
    assert rx2.borrow_and_update() == "two"

    assert rx.borrow() == "two"


async def test_multi_rx() -> None:
    """Ports Tokio's `multi_rx`."""
    tx, rx1 = watch("one")
    rx2 = rx1.clone()

    t1 = await poll(rx1.changed())
    t2 = await poll(rx2.changed())
    assert not t1.done()
    assert not t2.done()
    await cancel(t1, t2)
    assert rx1.borrow() == "one"
    assert rx2.borrow() == "one"

    t2 = await poll(rx2.changed())
    t1 = await poll(rx1.changed())
    assert not t1.done()
    assert not t2.done()
    tx.send("two")
    await settle()
    assert_ready_ok(t1)
    assert_ready_ok(t2)
    assert rx1.borrow() == "two"

    # Tokio keeps t2 un-polled across "two" and "three"; an asyncio task runs as soon as
    # it is woken, so t2 finished above and a fresh one waits for "three".
    t1 = await poll(rx1.changed())
    t2 = await poll(rx2.changed())
    assert not t1.done()
    assert not t2.done()
    tx.send("three")
    await settle()
    assert_ready_ok(t1)
    assert_ready_ok(t2)
    assert rx1.borrow() == "three"
    assert rx2.borrow() == "three"

    t1 = await poll(rx1.changed())
    t2 = await poll(rx2.changed())
    assert not t1.done()
    assert not t2.done()
    tx.send("four")
    await settle()
    assert_ready_ok(t1)
    assert_ready_ok(t2)
    assert rx1.borrow() == "four"
    assert rx2.borrow() == "four"


async def test_rx_observes_final_value() -> None:
    """Ports Tokio's `rx_observes_final_value`."""
    tx, rx = watch("one")
    tx.close()
    assert_ready_closed(await poll(rx.changed()))
    assert rx.borrow() == "one"

    tx, rx = watch("one")
    tx.send("two")
    assert_ready_ok(await poll(rx.changed()))
    assert rx.borrow() == "two"

    t = await poll(rx.changed())
    assert not t.done()
    tx.send("three")
    tx.close()
    await settle()
    assert_ready_ok(t)
    assert rx.borrow() == "three"

    assert_ready_closed(await poll(rx.changed()))
    assert rx.borrow() == "three"


async def test_poll_close() -> None:
    """Ports Tokio's `poll_close`: `tx.closed()` waits for the last receiver to close."""
    tx, rx = watch("one")
    t = await poll(tx.closed())
    assert not t.done()
    rx.close()
    await settle()
    assert_ready_ok(t)

    with pytest.raises(NoReceivers, match=r"^no receivers$") as info:
        tx.send("two")
    assert info.value.value == "two"


async def test_borrow_and_update() -> None:
    """Ports Tokio's `borrow_and_update`."""
    tx, rx = watch("one")
    assert rx.has_changed() is False

    tx.send("two")
    assert rx.has_changed() is True
    assert_ready_ok(await poll(rx.changed()))
    t = await poll(rx.changed())
    assert not t.done()
    await cancel(t)
    assert rx.has_changed() is False

    tx.send("three")
    assert rx.has_changed() is True
    assert rx.borrow_and_update() == "three"
    t = await poll(rx.changed())
    assert not t.done()
    await cancel(t)
    assert rx.has_changed() is False

    tx.close()
    assert rx.borrow_and_update() == "three"
    assert_ready_closed(await poll(rx.changed()))
    with pytest.raises(ChannelClosed, match=CLOSED):
        rx.has_changed()


def test_reopened_after_subscribe() -> None:
    """Ports Tokio's `reopened_after_subscribe`."""
    tx, rx = watch("one")
    assert tx.is_closed is False
    assert tx.receiver_count == 1

    rx.close()
    assert tx.is_closed is True
    assert tx.receiver_count == 0

    rx = tx.subscribe()
    assert tx.is_closed is False
    assert tx.receiver_count == 1

    rx.close()
    assert tx.is_closed is True
    assert tx.receiver_count == 0


class Boom(Exception):
    """Raised by a modify function on purpose."""


async def test_send_modify_panic() -> None:
    """Ports Tokio's `send_modify_panic`: a raising fn propagates and notifies nobody."""
    tx, rx = watch(["one"])

    def set_to(text: str) -> Any:
        def modify(value: list[str]) -> None:
            value[0] = text

        return modify

    def explode(value: list[str]) -> None:
        value[0] = "panicked"
        raise Boom

    tx.send_modify(set_to("two"))
    assert rx.borrow_and_update() == ["two"]

    rx2 = rx.clone()
    assert rx2.borrow_and_update() == ["two"]
    t = await poll(rx2.changed())

    with pytest.raises(Boom):
        tx.send_modify(explode)

    await settle()
    assert not t.done()
    assert rx.borrow() == ["panicked"]  # mutated in place, but nobody was told
    assert rx.has_changed() is False
    assert tx.statistics().current_version == 1

    tx.send_modify(set_to("three"))
    await settle()
    assert_ready_ok(t)
    assert rx.borrow_and_update() == ["three"]


async def test_multiple_sender() -> None:
    """Ports Tokio's `multiple_sender`."""
    tx1, rx = watch(0)
    tx2 = tx1.clone()

    async def observe() -> tuple[int, int]:
        await rx.changed()
        v1 = rx.borrow_and_update()
        await rx.changed()
        v2 = rx.borrow_and_update()
        return v1, v2

    tx1.send(1)
    t = await poll(observe())
    assert not t.done()
    tx2.send(2)
    await settle()
    assert t.result() == (1, 2)


async def test_receiver_is_notified_when_last_sender_is_dropped() -> None:
    """Ports Tokio's `receiver_is_notified_when_last_sender_is_dropped`."""
    tx1, rx = watch(0)
    tx2 = tx1.clone()

    t = await poll(rx.changed())
    assert not t.done()

    tx1.close()
    await settle()
    assert not t.done()

    tx2.close()
    await settle()
    assert_ready_closed(t)


async def test_changed_succeeds_on_closed_channel_with_unseen_value() -> None:
    """Ports Tokio's `changed_succeeds_on_closed_channel_with_unseen_value`."""
    tx, rx = watch("A")
    tx.send("B")
    tx.close()

    assert_ready_ok(await poll(rx.changed()))
    assert rx.borrow() == "B"
    assert_ready_closed(await poll(rx.changed()))


async def test_changed_errors_on_closed_channel_with_seen_value() -> None:
    """Ports Tokio's `changed_errors_on_closed_channel_with_seen_value`."""
    tx, rx = watch("A")
    tx.close()
    with pytest.raises(ChannelClosed, match=CLOSED):
        await rx.changed()


def test_has_changed_errors_on_closed_channel_with_unseen_value() -> None:
    """Ports Tokio's `has_changed_errors_on_closed_channel_with_unseen_value`."""
    tx, rx = watch("A")
    tx.send("B")
    tx.close()
    with pytest.raises(ChannelClosed, match=CLOSED):
        rx.has_changed()
    assert rx.borrow() == "B"


def test_has_changed_errors_on_closed_channel_with_seen_value() -> None:
    """Ports Tokio's `has_changed_errors_on_closed_channel_with_seen_value`."""
    tx, rx = watch("A")
    tx.close()
    with pytest.raises(ChannelClosed, match=CLOSED):
        rx.has_changed()


async def test_wait_for_errors_on_closed_channel_true_predicate() -> None:
    """Ports Tokio's `wait_for_errors_on_closed_channel_true_predicate`."""
    tx, rx = watch("A")
    tx.send("B")
    tx.close()
    t = await poll(rx.wait_for(lambda _: True))
    assert t.result() == "B"


# ---------------------------------------------------------------------------- wait_for


async def test_wait_for_returns_the_current_value_and_marks_it_seen() -> None:
    """The current value is checked first; an unseen current value becomes seen."""
    tx, rx = watch(3)
    t = await poll(rx.wait_for(lambda v: v > 2))
    assert t.result() == 3

    tx.send(5)
    assert rx.has_changed() is True
    t = await poll(rx.wait_for(lambda v: v > 2))
    assert t.result() == 5
    assert rx.has_changed() is False


async def test_wait_for_checks_only_the_latest_value_after_each_wake_up() -> None:
    """`wait_for` waits for a matching value, seeing only the latest after each send."""
    tx, rx = watch(0)
    checked: list[int] = []

    def at_least_three(v: int) -> bool:
        checked.append(v)
        return v >= 3

    t = await poll(rx.wait_for(at_least_three))
    assert not t.done()
    assert checked == [0]

    tx.send(1)
    await settle()
    assert not t.done()
    assert checked == [0, 1]

    tx.send(2)
    tx.send(3)
    await settle()
    assert t.result() == 3
    assert checked == [0, 1, 3]
    assert rx.has_changed() is False


async def test_wait_for_raises_when_closed_and_final_value_fails() -> None:
    """`wait_for` raises ChannelClosed once closed with a final value failing `pred`."""
    tx, rx = watch(0)
    t = await poll(rx.wait_for(lambda v: v == 10))
    assert not t.done()
    tx.send(1)
    tx.close()
    await settle()
    assert_ready_closed(t)
    assert rx.borrow() == 1

    with pytest.raises(ChannelClosed, match=CLOSED):
        await rx.wait_for(lambda v: v == 10)


async def test_wait_for_returns_final_value_of_closed_channel_when_it_passes() -> None:
    """A value sent just before the last sender closes still satisfies a waiting `wait_for`."""
    tx, rx = watch(0)
    t = await poll(rx.wait_for(lambda v: v == 10))
    assert not t.done()
    tx.send(10)
    tx.close()
    await settle()
    assert t.result() == 10
    assert await rx.wait_for(lambda v: v == 10) == 10


# ------------------------------------------------------------------- sender operations


async def test_send_without_receivers_raises_and_does_not_store() -> None:
    """`send` with no receivers raises NoReceivers(.value) and keeps the old value."""
    tx, rx = watch("one")
    rx.close()
    with pytest.raises(NoReceivers, match=r"^no receivers$") as info:
        tx.send("two")
    assert info.value.value == "two"
    assert tx.borrow() == "one"
    assert tx.statistics().current_version == 0

    rx2 = tx.subscribe()
    assert rx2.borrow() == "one"
    assert rx2.has_changed() is False


async def test_send_replace_stores_without_receivers_and_returns_old() -> None:
    """`send_replace` stores even with no receivers and returns the old value."""
    tx, rx = watch("one")
    rx.close()
    assert tx.send_replace("two") == "one"
    assert tx.borrow() == "two"
    assert tx.statistics().current_version == 1

    rx2 = tx.subscribe()
    assert rx2.borrow() == "two"
    assert rx2.has_changed() is False


async def test_send_replace_notifies_receivers() -> None:
    """`send_replace` wakes waiting receivers like `send`."""
    tx, rx = watch("one")
    t = await poll(rx.changed())
    assert tx.send_replace("two") == "one"
    await settle()
    assert_ready_ok(t)
    assert rx.borrow() == "two"
    assert tx.send_replace("three") == "two"
    assert rx.has_changed() is True


async def test_send_modify_mutates_in_place_and_notifies() -> None:
    """`send_modify` hands the stored object itself to `fn`, then notifies."""
    value = {"n": 0}
    tx, rx = watch(value)
    t = await poll(rx.changed())

    def bump(v: dict[str, int]) -> None:
        v["n"] += 1

    assert tx.send_modify(bump) is None
    await settle()
    assert_ready_ok(t)
    assert rx.borrow() is value
    assert value == {"n": 1}
    assert tx.statistics().current_version == 1


async def test_send_if_modified() -> None:
    """`send_if_modified` notifies only when `fn` returns True, and returns that bool."""
    tx, rx = watch({"n": 0})
    t = await poll(rx.changed())

    def unchanged(v: dict[str, int]) -> bool:
        return False

    def silently_bump(v: dict[str, int]) -> bool:
        v["n"] += 10
        return False

    def bump(v: dict[str, int]) -> bool:
        v["n"] += 1
        return True

    assert tx.send_if_modified(unchanged) is False
    await settle()
    assert not t.done()
    assert rx.has_changed() is False

    assert tx.send_if_modified(silently_bump) is False
    await settle()
    assert not t.done()
    assert rx.has_changed() is False
    assert rx.borrow() == {"n": 10}  # changed in place, but not announced
    assert tx.statistics().current_version == 0

    assert tx.send_if_modified(bump) is True
    await settle()
    assert_ready_ok(t)
    assert rx.borrow_and_update() == {"n": 11}
    assert tx.statistics().current_version == 1


async def test_tx_closed_returns_at_once_without_receivers() -> None:
    """`await tx.closed()` returns at once when no receiver is left."""
    tx, rx = watch(0)
    rx.close()
    assert_ready_ok(await poll(tx.closed()))


async def test_tx_closed_waits_for_every_receiver() -> None:
    """`await tx.closed()` returns only when the last receiver closes, subscribers included."""
    tx, rx = watch(0)
    rx2 = rx.clone()
    t = await poll(tx.closed())
    rx.close()
    await settle()
    assert not t.done()

    rx3 = tx.subscribe()
    rx2.close()
    await settle()
    assert not t.done()

    rx3.close()
    await settle()
    assert_ready_ok(t)


async def test_tx_clone_receiver_count_and_is_closed() -> None:
    """Cloned senders share the channel; `receiver_count`/`is_closed` track receivers."""
    tx, rx = watch(0)
    tx2 = tx.clone()
    rx2 = rx.clone()
    rx3 = tx2.subscribe()
    assert tx.receiver_count == 3
    assert tx2.receiver_count == 3

    tx2.send(5)
    assert tx.borrow() == 5
    assert [r.has_changed() for r in (rx, rx2, rx3)] == [True, True, True]

    tx.close()
    assert rx.has_changed() is True  # tx2 keeps the channel open
    assert rx.is_closed is False

    rx.close()
    rx2.close()
    assert tx2.receiver_count == 1
    assert tx2.is_closed is False
    rx3.close()
    assert tx2.receiver_count == 0
    assert tx2.is_closed is True


async def test_rx_clone_copies_the_seen_version() -> None:
    """`rx.clone()` starts with the seen version of the original, then is independent."""
    tx, rx = watch("one")
    tx.send("two")
    unseen = rx.clone()
    assert unseen.has_changed() is True

    assert rx.borrow_and_update() == "two"
    seen = rx.clone()
    assert seen.has_changed() is False
    assert unseen.has_changed() is True

    rx.mark_changed()
    marked = rx.clone()
    assert marked.has_changed() is True

    assert_ready_ok(await poll(unseen.changed()))
    assert unseen.has_changed() is False
    assert marked.has_changed() is True


async def test_subscribe_counts_the_current_value_as_seen() -> None:
    """A new subscriber's current value is seen: `changed()` waits for the next send."""
    tx, rx = watch("one")
    tx.send("two")
    sub = tx.subscribe()
    assert sub.borrow() == "two"
    assert sub.has_changed() is False
    assert rx.has_changed() is True

    t = await poll(sub.changed())
    assert not t.done()
    tx.send("three")
    await settle()
    assert_ready_ok(t)
    assert sub.borrow() == "three"


# --------------------------------------------------------------- cancellation, fan-out


async def test_changed_cancelled_while_waiting_leaves_others_working() -> None:
    """A task cancelled in `changed()` detaches; the other receiver still wakes."""
    tx, rx1 = watch("one")
    rx2 = rx1.clone()
    t1 = await poll(rx1.changed())
    t2 = await poll(rx2.changed())
    assert tx.statistics().tasks_waiting_changed == 2

    await cancel(t1)
    assert tx.statistics().tasks_waiting_changed == 1

    tx.send("two")
    await settle()
    assert_ready_ok(t2)
    assert rx1.has_changed() is True
    assert_ready_ok(await poll(rx1.changed()))
    assert rx1.borrow() == "two"


async def test_changed_cancelled_after_wake_up_loses_nothing() -> None:
    """A task woken by a send but cancelled before it runs leaves the value unseen."""
    tx, rx1 = watch("one")
    rx2 = rx1.clone()
    t1 = await poll(rx1.changed())
    t2 = await poll(rx2.changed())

    tx.send("two")
    t1.cancel()  # t1 was woken but has not run yet
    await asyncio.wait([t1, t2])
    assert t1.cancelled()
    assert_ready_ok(t2)

    assert rx1.has_changed() is True
    assert rx1.borrow_and_update() == "two"
    assert tx.statistics().tasks_waiting_changed == 0


async def test_wait_for_cancelled_after_wake_up_loses_nothing() -> None:
    """A `wait_for` cancelled after being woken leaves the new value unseen."""
    tx, rx = watch(0)
    t = await poll(rx.wait_for(lambda v: v == 1))
    tx.send(1)
    t.cancel()
    await asyncio.wait([t])
    assert t.cancelled()
    assert rx.has_changed() is True
    assert await rx.wait_for(lambda v: v == 1) == 1


async def test_each_receiver_sees_a_burst_of_sends_once() -> None:
    """Several receivers each wake once per burst and see only the latest value."""
    tx, rx1 = watch(0)
    receivers = [rx1, rx1.clone(), tx.subscribe()]

    async def observe(rx: WatchReceiver[int]) -> list[int]:
        got: list[int] = []
        while True:
            try:
                await rx.changed()
            except ChannelClosed:
                return got
            got.append(rx.borrow())

    tasks = [asyncio.create_task(observe(rx)) for rx in receivers]
    await settle()
    for i in range(1, 6):
        tx.send(i)
    await settle()
    tx.send(6)
    tx.send(7)
    await settle()
    tx.close()
    assert await asyncio.gather(*tasks) == [[5, 7], [5, 7], [5, 7]]


# ------------------------------------------------------------ lifecycle and introspection


async def test_sender_use_after_own_close_raises_channel_closed() -> None:
    """Every sender operation on a closed handle raises ChannelClosed; clones keep working."""
    tx, rx = watch("one")
    tx2 = tx.clone()
    tx.close()
    called: list[str] = []

    def modify(v: str) -> bool:
        called.append(v)
        return True

    with pytest.raises(ChannelClosed, match=SENDER_CLOSED):
        tx.send("two")
    with pytest.raises(ChannelClosed, match=SENDER_CLOSED):
        tx.send_replace("two")
    with pytest.raises(ChannelClosed, match=SENDER_CLOSED):
        tx.send_modify(modify)
    with pytest.raises(ChannelClosed, match=SENDER_CLOSED):
        tx.send_if_modified(modify)
    with pytest.raises(ChannelClosed, match=SENDER_CLOSED):
        tx.borrow()
    with pytest.raises(ChannelClosed, match=SENDER_CLOSED):
        tx.subscribe()
    with pytest.raises(ChannelClosed, match=SENDER_CLOSED):
        tx.clone()
    assert called == []
    assert tx.receiver_count == 1
    assert rx.has_changed() is False

    tx2.send("three")
    assert rx.borrow_and_update() == "three"


@pytest.mark.parametrize("method", ["send", "send_replace"])
def test_send_after_own_close_carries_the_value(method: str) -> None:
    """Contract: a ChannelClosed raised by a send carries the unsent `.value`."""
    tx, _rx = watch("one")
    tx.close()
    with pytest.raises(ChannelClosed, match=SENDER_CLOSED) as info:
        getattr(tx, method)("two")
    assert info.value.value == "two"


async def test_receiver_use_after_own_close_raises_channel_closed() -> None:
    """Every receiver operation on a closed handle raises ChannelClosed; others keep working."""
    tx, rx = watch("one")
    other = rx.clone()
    rx.close()

    with pytest.raises(ChannelClosed, match=RECEIVER_CLOSED):
        rx.borrow()
    with pytest.raises(ChannelClosed, match=RECEIVER_CLOSED):
        rx.borrow_and_update()
    with pytest.raises(ChannelClosed, match=RECEIVER_CLOSED):
        rx.has_changed()
    with pytest.raises(ChannelClosed, match=RECEIVER_CLOSED):
        rx.mark_changed()
    with pytest.raises(ChannelClosed, match=RECEIVER_CLOSED):
        rx.mark_unchanged()
    with pytest.raises(ChannelClosed, match=RECEIVER_CLOSED):
        rx.clone()
    with pytest.raises(ChannelClosed, match=RECEIVER_CLOSED):
        await rx.changed()
    with pytest.raises(ChannelClosed, match=RECEIVER_CLOSED):
        await rx.wait_for(lambda _: True)
    assert rx.is_closed is True
    assert tx.receiver_count == 1

    tx.send("two")
    assert other.borrow_and_update() == "two"


def test_close_is_idempotent() -> None:
    """Closing a handle twice counts once."""
    tx, rx = watch(0)
    tx2 = tx.clone()
    rx2 = rx.clone()
    tx.close()
    tx.close()
    rx.close()
    rx.close()
    stats = tx2.statistics()
    assert stats.open_send_handles == 1
    assert stats.current_receivers == 1
    assert rx2.has_changed() is False


def test_with_closes_both_handles() -> None:
    """`with tx, rx:` closes both handles on exit."""
    tx, rx = watch(0)
    with tx as t, rx as r:
        assert t is tx
        assert r is rx
        tx.send(1)
    assert tx.is_closed is True
    assert rx.is_closed is True
    assert rx.statistics() == WatchStatistics(
        current_version=1, current_receivers=0, open_send_handles=0, tasks_waiting_changed=0
    )
    with pytest.raises(ChannelClosed, match=SENDER_CLOSED):
        tx.send(2)
    with pytest.raises(ChannelClosed, match=RECEIVER_CLOSED):
        rx.borrow()


async def test_async_with_closes_handles_and_wakes_waiters() -> None:
    """`async with` closes the handle on exit; closing the last sender wakes `changed()`."""
    tx, rx = watch(0)
    waiter = rx.clone()
    t = await poll(waiter.changed())
    async with tx as t_handle:
        assert t_handle is tx
    await settle()
    assert_ready_closed(t)

    async with rx as r_handle:
        assert r_handle is rx
    assert rx.is_closed is True
    assert tx.receiver_count == 1


async def test_statistics() -> None:
    """`statistics()` is a frozen snapshot of version, handles and waiting tasks."""
    assert [f.name for f in dataclasses.fields(WatchStatistics)] == [
        "current_version",
        "current_receivers",
        "open_send_handles",
        "tasks_waiting_changed",
        "name",  # given at creation (None here)
    ]
    tx, rx = watch("a")
    assert tx.statistics() == WatchStatistics(
        current_version=0, current_receivers=1, open_send_handles=1, tasks_waiting_changed=0
    )

    tx2 = tx.clone()
    rx2 = rx.clone()
    t1 = await poll(rx.changed())
    t2 = await poll(rx2.wait_for(lambda v: v == "c"))
    before = rx.statistics()
    assert before == WatchStatistics(
        current_version=0, current_receivers=2, open_send_handles=2, tasks_waiting_changed=2
    )

    tx.send("b")
    await settle()
    assert_ready_ok(t1)
    assert tx2.statistics() == WatchStatistics(
        current_version=1, current_receivers=2, open_send_handles=2, tasks_waiting_changed=1
    )
    tx2.send("c")
    await settle()
    assert t2.result() == "c"
    tx2.close()
    rx2.close()
    assert tx.statistics() == WatchStatistics(
        current_version=2, current_receivers=1, open_send_handles=1, tasks_waiting_changed=0
    )
    assert before.current_version == 0  # a snapshot, not a live view
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.current_version = 9  # type: ignore[misc]


async def test_repr_shows_live_state() -> None:
    """`repr` shows version, seen version, handle counts and closed flags as they change."""
    tx, rx = watch("one")
    assert repr(tx) == "<WatchSender version=0 receivers=1 senders=1 closed=False value='one'>"
    assert repr(rx) == "<WatchReceiver version=0 seen=0 senders=1 closed=False>"

    tx.send("two")
    assert repr(rx) == "<WatchReceiver version=1 seen=0 senders=1 closed=False>"
    rx.borrow_and_update()
    assert repr(rx) == "<WatchReceiver version=1 seen=1 senders=1 closed=False>"

    rx.close()
    tx.close()
    assert repr(tx) == "<WatchSender version=1 receivers=0 senders=0 closed=True value='two'>"
    assert repr(rx) == "<WatchReceiver version=1 seen=1 senders=0 closed=True>"


def test_watch_built_outside_a_running_loop() -> None:
    """A channel built with no loop running can be awaited later inside one."""
    tx, rx = watch(0)
    tx.send(1)

    async def main() -> list[int]:
        async with asyncio.timeout(5):
            await rx.changed()
            first = rx.borrow()
            t = await poll(rx.changed())
            tx.send(2)
            await t
            return [first, rx.borrow()]

    assert asyncio.run(main()) == [1, 2]


def test_exports() -> None:
    """The watch API is importable from `telemetry_lab.primitives` and `telemetry_lab`."""
    assert telemetry_lab.watch is primitives.watch is watch
    assert telemetry_lab.WatchSender is WatchSender
    assert telemetry_lab.WatchReceiver is WatchReceiver
    tx, rx = watch(0)
    assert isinstance(tx, WatchSender)
    assert isinstance(rx, WatchReceiver)


async def test_closing_a_receiver_wakes_its_own_waiting_changed() -> None:
    """A changed() waiting on a receiver raises ChannelClosed when that receiver closes."""
    tx, rx = watch(0)
    other = tx.subscribe()
    waiter = asyncio.create_task(rx.changed())
    await asyncio.sleep(0)
    assert not waiter.done()
    rx.close()
    with pytest.raises(ChannelClosed, match=r"^receiver is closed$"):
        await waiter
    tx.send(1)  # the other receiver is unaffected
    await other.changed()
    assert other.borrow() == 1
