"""The waiting core: one WaitQueue under every primitive, and select's public protocol."""

from __future__ import annotations

import asyncio
import gc
import warnings
from typing import Any, ClassVar

import pytest

from telemetry_lab.errors import ChannelClosed
from telemetry_lab.primitives import (
    JoinSet,
    Notify,
    Selected,
    broadcast,
    channel,
    on_recv,
    on_timeout,
    select,
    watch,
)
from telemetry_lab.primitives._private import LoopBinding
from telemetry_lab.primitives.waiting import (
    PENDING,
    Branch,
    Pending,
    QueueBranch,
    WaitQueue,
    wait_queues,
)


class Thing:
    """A stand-in resource for the queue's descriptions."""

    name = "thing"

    def describe(self) -> str:
        return "thing 'thing'"


def queue(**kwargs: Any) -> WaitQueue:
    return WaitQueue(LoopBinding("thing"), Thing(), "wait", **kwargs)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_park_records_the_task_and_wakes_in_fifo_order() -> None:
    q = queue()
    order: list[str] = []

    async def wait(name: str) -> None:
        order.append(f"{name}:{await q.park()}")

    tasks = [asyncio.create_task(wait(n), name=n) for n in "abc"]
    await settle()
    assert [w.task.get_name() for w in q.waiters() if w.task] == ["a", "b", "c"]
    assert q.tasks_waiting == 3
    assert q.wake_one("x")
    assert q.wake_last("z")
    await settle()
    assert order == ["a:x", "c:z"]
    assert q.wake_all("y") == 1
    await asyncio.gather(*tasks)
    assert order == ["a:x", "c:z", "b:y"]
    assert len(q) == 0


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    q = queue()
    task = asyncio.create_task(q.park())
    await settle()
    task.cancel()
    await settle()
    assert task.cancelled()
    assert len(q) == 0
    assert not q.wake_one()


async def test_woken_then_cancelled_passes_the_wake_up_on() -> None:
    q = queue()
    first = asyncio.create_task(q.park())
    second = asyncio.create_task(q.park())
    await settle()
    assert q.wake_one("turn")
    first.cancel()  # chosen, then cancelled before it ran: the turn goes to `second`
    await settle()
    assert first.cancelled()
    assert second.result() == "turn"


async def test_on_abandoned_decides_what_an_unused_wake_up_becomes() -> None:
    handed_back: list[object] = []
    q = queue(on_abandoned=handed_back.append)
    waiter = asyncio.create_task(q.park())
    await settle()
    q.wake_one("slot")
    waiter.cancel()
    await settle()
    assert handed_back == ["slot"]


async def test_wake_owner_wakes_only_that_handles_waiters() -> None:
    q = queue()
    mine, other = object(), object()
    a = asyncio.create_task(q.park(owner=mine))
    b = asyncio.create_task(q.park(owner=other))
    await settle()
    assert q.has_owner(mine)
    assert q.wake_owner(mine, "closed") == 1
    await settle()
    assert a.result() == "closed"
    assert not b.done()
    assert not q.has_owner(mine)
    b.cancel()


async def test_queues_are_listed_for_observers() -> None:
    tx, _rx = channel[int](1, name="listed")
    mine = [q for q in wait_queues() if q.resource.name == "listed"]
    assert sorted(q.operation for q in mine) == ["recv", "send"]
    tx.try_send(1)
    assert mine[0].resource.describe() == "channel 'listed' (1/1 full)"
    assert repr(mine[0]).startswith(f"<WaitQueue {mine[0].operation} on channel 'listed'")


async def test_a_blocked_task_is_visible_with_its_operation_and_resource() -> None:
    tx, rx = channel[int](1, name="telemetry")
    tx.try_send(1)
    sender = asyncio.create_task(tx.send(2), name="device-1")
    await settle()
    (q,) = [q for q in wait_queues() if q.resource.name == "telemetry" and q.waiters()]
    (w,) = q.waiters()
    assert (q.operation, q.resource.describe(), w.task) == (
        "send",
        "channel 'telemetry' (1/1 full)",
        sender,
    )
    assert rx.try_recv() == 1
    await sender


# --------------------------------------------------------------------- names


def test_names_show_in_reprs_and_statistics() -> None:
    tx, rx = channel[int](5, name="telemetry")
    btx, brx = broadcast[int](3, name="updates")
    wtx, wrx = watch(0, name="state")
    n, js = Notify(name="wake"), JoinSet[None](name="tasks")
    assert "name='telemetry'" in repr(tx)
    assert "name='telemetry'" in repr(rx)
    assert "name='updates'" in repr(btx)
    assert "name='updates'" in repr(brx)
    assert "name='state'" in repr(wtx)
    assert "name='state'" in repr(wrx)
    assert "name='wake'" in repr(n)
    assert "name='tasks'" in repr(js)
    names = [
        tx.statistics().name,
        btx.statistics().name,
        wtx.statistics().name,
        n.statistics().name,
        js.statistics().name,
    ]
    assert names == ["telemetry", "updates", "state", "wake", "tasks"]
    assert channel[int](1)[0].statistics().name is None


@pytest.mark.parametrize("bad", ["", "   "])
def test_an_empty_name_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r"^name must not be empty, got "):
        channel(1, name=bad)


def test_a_name_must_be_a_string() -> None:
    with pytest.raises(TypeError, match=r"^name must be a str or None, got 3$"):
        Notify(name=3)  # type: ignore[arg-type]


# --------------------------------------------------------------------- per-handle waiters


async def test_closing_one_broadcast_receiver_wakes_only_its_own_waiters() -> None:
    tx, rx1 = broadcast[int](4)
    rx2 = tx.subscribe()
    t1, t2 = asyncio.create_task(rx1.recv()), asyncio.create_task(rx2.recv())
    await settle()
    rx1.close()
    await settle()
    assert isinstance(t1.exception(), ChannelClosed)
    assert not t2.done()  # rx2's waiter was not woken by rx1's close
    tx.send(7)
    assert await t2 == 7


async def test_closing_one_watch_receiver_wakes_only_its_own_waiters() -> None:
    tx, rx1 = watch(0)
    rx2 = rx1.clone()
    t1, t2 = asyncio.create_task(rx1.changed()), asyncio.create_task(rx2.changed())
    await settle()
    rx1.close()
    await settle()
    assert isinstance(t1.exception(), ChannelClosed)
    assert not t2.done()
    tx.send(1)
    await t2


async def test_closing_a_sender_refuses_only_its_own_waiting_sends() -> None:
    tx1, rx = channel[int](1)
    tx2 = tx1.clone()
    tx1.try_send(0)
    s1, s2 = asyncio.create_task(tx1.send(1)), asyncio.create_task(tx2.send(2))
    await settle()
    tx1.close()
    await settle()
    assert isinstance(s1.exception(), ChannelClosed)
    assert not s2.done()
    assert [await rx.recv(), await rx.recv()] == [0, 2]


# --------------------------------------------------------------------- select's protocol


class Mailbox:
    """A primitive written outside the package that joins select through the protocol."""

    select_operation: ClassVar[str] = "recv"

    def __init__(self) -> None:
        self.items: list[str] = []
        self.queue = WaitQueue(LoopBinding("mailbox"), self, "recv")

    name = "mailbox"

    def describe(self) -> str:
        return f"mailbox ({len(self.items)} items)"

    def put(self, item: str) -> None:
        self.items.append(item)
        self.queue.wake_one()

    def _poll(self) -> str | Pending:
        return self.items.pop(0) if self.items else PENDING

    def select_branch(self, *, enabled: bool = True) -> Branch[str]:
        return QueueBranch(self._poll, self.queue, label="on_recv(mailbox)", enabled=enabled)


async def test_a_new_primitive_joins_select_without_changes_to_select() -> None:
    box = Mailbox()
    _tx, rx = channel[str](1)
    racer = asyncio.create_task(select(on_recv(box), on_recv(rx), on_timeout(5)))
    await settle()
    assert box.queue.tasks_waiting == 1  # select registered itself in the mailbox's queue
    box.put("letter")
    result = await racer
    assert (result.index, result.value) == (0, "letter")
    assert len(box.queue) == 0  # and unregistered
    match await select(box.select_branch(), on_timeout(0)):
        case Selected(index=1):
            pass
        case other:
            raise AssertionError(other)


def test_on_recv_refuses_what_does_not_offer_a_recv_branch() -> None:
    _wtx, wrx = watch(0)
    with pytest.raises(TypeError, match=r"^on_recv\(\) needs a Receiver or BroadcastReceiver"):
        on_recv(wrx)


async def test_a_woken_select_that_loses_passes_the_wake_up_on() -> None:
    tx, rx = channel[int](4)
    other = asyncio.create_task(rx.recv())  # a second task waiting on the same receiver
    racer = asyncio.create_task(select(on_recv(rx), on_timeout(0.0), biased=True))
    await settle()
    assert racer.done()  # the timeout was ready at once; nothing consumed
    tx.try_send(5)
    assert await other == 5


# --------------------------------------------------------------------- unclosed handles


def collect() -> None:
    for _ in range(3):
        gc.collect()


async def test_a_sender_collected_unclosed_while_its_receiver_waits_warns() -> None:
    tx, rx = channel[int](1)
    waiting = asyncio.create_task(rx.recv())
    await settle()
    held = [tx]
    del tx
    with pytest.warns(ResourceWarning, match=r"^Sender was garbage-collected without close\(\)"):
        held.clear()  # the last reference: collected now
    waiting.cancel()


async def test_handles_that_only_leave_values_unread_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        tx, rx = channel[int](2)
        tx.try_send(1)
        btx, brx = broadcast[int](2)
        btx.send(1)
        del tx, rx, btx, brx
        collect()
