"""Tests for `telemetry_lab.primitives.notify`, ported from Tokio's `tokio/tests/sync_notify.rs`.

Tokio's `spawn(async { notify.notified().await })` + `poll()` becomes `await poll(wait_on(n))`:
start a task and let it run one step, so `task.done()` tells "ready" from "pending". Rust's
`drop(notified)` of a pending future is the cancellation of the task awaiting it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

import pytest
from support import settle

import telemetry_lab
from telemetry_lab import primitives
from telemetry_lab.primitives import Notified, Notify, NotifyStatistics

T = TypeVar("T")

ALREADY_AWAITED = r"^this notified\(\) was already awaited; call notified\(\) again$"


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


async def wait_on(notify: Notify, log: list[str] | None = None, name: str = "") -> None:
    """Await a fresh `notify.notified()`, then record `name` in `log`."""
    await notify.notified()
    if log is not None:
        log.append(name)


async def await_it(aw: Awaitable[None]) -> None:
    await aw


def assert_ready(task: asyncio.Task[None]) -> None:
    assert task.done()
    assert task.result() is None


# --------------------------------------------------------------------------- Tokio ports


async def test_notify_notified_one() -> None:
    """Ports Tokio's `notify_notified_one`."""
    n = Notify()
    t = asyncio.create_task(wait_on(n))  # not polled yet: the wake-up is stored
    n.notify_one()
    assert n.statistics().current_permit is True
    await asyncio.sleep(0)
    assert_ready(t)
    assert n.statistics().current_permit is False


async def test_notify_multi_notified_one() -> None:
    """Ports Tokio's `notify_multi_notified_one`."""
    n = Notify()
    t1 = await poll(wait_on(n))
    t2 = await poll(wait_on(n))
    n.notify_one()
    await settle()
    assert_ready(t1)
    assert not t2.done()
    await cancel(t2)


async def test_notify_multi_notified_last() -> None:
    """Ports Tokio's `notify_multi_notified_last`."""
    n = Notify()
    t1 = await poll(wait_on(n))
    t2 = await poll(wait_on(n))
    n.notify_last()
    await settle()
    assert not t1.done()
    assert_ready(t2)
    await cancel(t1)


async def test_notified_one_notify() -> None:
    """Ports Tokio's `notified_one_notify`."""
    n = Notify()
    t = await poll(wait_on(n))
    assert not t.done()
    n.notify_one()
    await settle()
    assert_ready(t)
    assert n.statistics().current_permit is False


async def test_notified_multi_notify() -> None:
    """Ports Tokio's `notified_multi_notify`."""
    n = Notify()
    t1 = await poll(wait_on(n))
    t2 = await poll(wait_on(n))
    assert not t1.done()
    assert not t2.done()
    n.notify_one()
    await settle()
    assert_ready(t1)
    assert not t2.done()
    await cancel(t2)


async def test_notify_notified_multi() -> None:
    """Ports Tokio's `notify_notified_multi`."""
    n = Notify()
    n.notify_one()
    t1 = await poll(wait_on(n))
    t2 = await poll(wait_on(n))
    assert_ready(t1)
    assert not t2.done()
    n.notify_one()
    await settle()
    assert_ready(t2)


async def test_notified_drop_notified_notify() -> None:
    """Ports Tokio's `notified_drop_notified_notify`: a waiter cancelled while pending."""
    n = Notify()
    t1 = await poll(wait_on(n))
    assert not t1.done()
    await cancel(t1)

    t2 = await poll(wait_on(n))
    assert not t2.done()
    n.notify_one()
    await settle()
    assert_ready(t2)
    assert n.statistics().current_permit is False


async def test_notified_multi_notify_drop_one() -> None:
    """Ports Tokio's `notified_multi_notify_drop_one`: a chosen waiter passes the wake-up on."""
    n = Notify()
    t1 = await poll(wait_on(n))
    t2 = await poll(wait_on(n))
    n.notify_one()  # chooses t1 ...
    t1.cancel()  # ... which is cancelled before it runs
    await asyncio.wait([t1])
    await settle()
    assert t1.cancelled()
    assert_ready(t2)
    assert n.statistics().current_permit is False


async def test_notified_multi_notify_one_drop() -> None:
    """Ports Tokio's `notified_multi_notify_one_drop`: the wake-up goes to the next oldest."""
    n = Notify()
    t1 = await poll(wait_on(n))
    t2 = await poll(wait_on(n))
    t3 = await poll(wait_on(n))
    n.notify_one()
    await cancel(t1)
    await settle()
    assert_ready(t2)
    assert not t3.done()
    assert n.statistics().current_permit is False
    await cancel(t3)


async def test_notified_multi_notify_last_drop() -> None:
    """Ports Tokio's `notified_multi_notify_last_drop`: the wake-up goes to the next newest."""
    n = Notify()
    t1 = await poll(wait_on(n))
    t2 = await poll(wait_on(n))
    t3 = await poll(wait_on(n))
    n.notify_last()
    await cancel(t3)
    await settle()
    assert_ready(t2)
    assert not t1.done()
    assert n.statistics().current_permit is False
    await cancel(t1)


async def test_notify_in_drop_after_wake() -> None:
    """Ports Tokio's `notify_in_drop_after_wake`: notify_waiters from a waking waiter's cleanup."""
    n = Notify()

    async def waiter() -> None:
        try:
            await n.notified()
        finally:
            n.notify_waiters()

    t = await poll(waiter())
    n.notify_waiters()
    await settle()
    assert_ready(t)
    n.notify_waiters()  # still works; nothing is left behind
    assert n.statistics() == NotifyStatistics(
        current_permit=False, tasks_waiting=0, total_notify_one=0, total_notify_waiters=3
    )


async def test_notify_one_after_dropped_all() -> None:
    """Ports Tokio's `notify_one_after_dropped_all`: a notify_waiters wake-up is not passed on."""
    n = Notify()
    t1 = await poll(wait_on(n))
    assert not t1.done()

    n.notify_waiters()
    n.notify_one()  # nobody is waiting any more: stored
    t1.cancel()  # woken by notify_waiters, cancelled before it runs
    await asyncio.wait([t1])
    assert t1.cancelled()
    assert n.statistics().current_permit is True

    t2 = await poll(wait_on(n))
    assert_ready(t2)
    assert n.statistics().current_permit is False


async def test_notify_one_not_enabled() -> None:
    """Ports Tokio's `test_notify_one_not_enabled`: created, not awaited, then notified."""
    n = Notify()
    fut = n.notified()
    n.notify_one()
    t = await poll(await_it(fut))
    assert_ready(t)
    assert n.statistics().current_permit is False


async def test_notify_one_after_enable() -> None:
    """Ports Tokio's `test_notify_one_after_enable` (registered by awaiting; no `enable()`)."""
    n = Notify()
    fut = n.notified()
    t = await poll(await_it(fut))
    assert not t.done()
    assert n.statistics().tasks_waiting == 1
    n.notify_one()
    await settle()
    assert_ready(t)
    assert n.statistics().current_permit is False  # the wake-up went to it, not to storage


async def test_unpolled_future_completed_by_notify_waiters_preserves_notify_one_permit() -> None:
    """Ports Tokio's `unpolled_future_completed_by_notify_waiters_preserves_notify_one_permit`."""
    n = Notify()
    notified1 = n.notified()
    n.notify_waiters()
    n.notify_one()
    assert_ready(await poll(await_it(notified1)))
    assert n.statistics().current_permit is True
    notified2 = n.notified()
    assert_ready(await poll(await_it(notified2)))
    assert n.statistics().current_permit is False


# ----------------------------------------------------------------------- notify_waiters


async def test_notify_waiters_wakes_every_notified_created_before_the_call() -> None:
    """`notify_waiters` wakes waiting and not-yet-awaited `notified()`s made before it."""
    n = Notify()
    created = n.notified()  # created, not awaited yet
    waiting = await poll(wait_on(n))
    also_waiting = await poll(wait_on(n))
    n.notify_waiters()
    after = n.notified()  # created after the call: not woken

    await settle()
    assert_ready(waiting)
    assert_ready(also_waiting)
    assert_ready(await poll(await_it(created)))

    late = await poll(await_it(after))
    assert not late.done()
    assert n.statistics().current_permit is False
    n.notify_one()
    await settle()
    assert_ready(late)


async def test_notify_waiters_stores_nothing() -> None:
    """`notify_waiters` with nobody waiting leaves no permit behind."""
    n = Notify()
    n.notify_waiters()
    assert n.statistics().current_permit is False
    t = await poll(wait_on(n))
    assert not t.done()
    await cancel(t)


async def test_notify_waiters_keeps_a_stored_permit() -> None:
    """`notify_waiters` neither stores nor consumes the permit of an earlier `notify_one`."""
    n = Notify()
    n.notify_one()
    n.notify_waiters()
    assert n.statistics().current_permit is True
    t1 = await poll(wait_on(n))
    t2 = await poll(wait_on(n))
    assert_ready(t1)
    assert not t2.done()
    await cancel(t2)


# -------------------------------------------------------------- notify_one / notify_last


async def test_notify_one_stores_at_most_one_permit() -> None:
    """Two `notify_one` with no waiters store one permit: only one waiter completes."""
    n = Notify()
    n.notify_one()
    n.notify_one()
    assert n.statistics().current_permit is True
    t1 = await poll(wait_on(n))
    t2 = await poll(wait_on(n))
    assert_ready(t1)
    assert not t2.done()
    await cancel(t2)


async def test_notify_last_stores_a_permit_without_waiters() -> None:
    """`notify_last` with nobody waiting stores the (single) permit."""
    n = Notify()
    n.notify_last()
    n.notify_last()
    assert n.statistics().current_permit is True
    t1 = await poll(wait_on(n))
    t2 = await poll(wait_on(n))
    assert_ready(t1)
    assert not t2.done()
    await cancel(t2)


async def test_notify_one_wakes_waiters_in_fifo_order() -> None:
    """`notify_one` wakes the oldest waiter first, one per call."""
    n = Notify()
    log: list[str] = []
    tasks = [await poll(wait_on(n, log, name)) for name in "abcd"]

    n.notify_one()
    await settle()
    assert log == ["a"]

    n.notify_one()
    n.notify_one()
    await settle()
    assert log == ["a", "b", "c"]
    assert not tasks[3].done()
    assert n.statistics().tasks_waiting == 1

    n.notify_one()
    await settle()
    assert log == ["a", "b", "c", "d"]
    assert n.statistics().current_permit is False


async def test_notify_last_wakes_the_newest_waiter() -> None:
    """`notify_last` wakes the newest waiter; `notify_one` still takes the oldest."""
    n = Notify()
    log: list[str] = []
    tasks = [await poll(wait_on(n, log, name)) for name in "abcd"]

    n.notify_last()
    await settle()
    assert log == ["d"]
    n.notify_last()
    await settle()
    assert log == ["d", "c"]
    n.notify_one()
    await settle()
    assert log == ["d", "c", "a"]
    n.notify_last()
    await settle()
    assert log == ["d", "c", "a", "b"]
    assert all(t.done() for t in tasks)


async def test_chosen_waiter_cancelled_passes_on_in_fifo_order() -> None:
    """Cancelled chosen waiters hand their wake-ups to the oldest remaining waiters in order."""
    n = Notify()
    log: list[str] = []
    a, b, c, d = [await poll(wait_on(n, log, name)) for name in "abcd"]
    n.notify_one()  # chooses a
    n.notify_one()  # chooses b
    a.cancel()
    b.cancel()
    await asyncio.wait([a, b])
    await settle()
    assert a.cancelled()
    assert b.cancelled()
    assert log == ["c", "d"]
    assert_ready(c)
    assert_ready(d)
    assert n.statistics().current_permit is False


async def test_chosen_waiter_cancelled_passes_on_to_the_newest_after_notify_last() -> None:
    """A cancelled waiter chosen by `notify_last` hands its wake-up to the newest remaining."""
    n = Notify()
    log: list[str] = []
    tasks = [await poll(wait_on(n, log, name)) for name in "abcd"]
    n.notify_last()  # chooses d
    await cancel(tasks[3])
    await settle()
    assert log == ["c"]
    n.notify_one()
    await settle()
    assert log == ["c", "a"]
    assert not tasks[1].done()
    await cancel(tasks[1])


async def test_chosen_waiter_cancelled_without_others_stores_the_permit() -> None:
    """A chosen waiter cancelled with nobody else waiting turns its wake-up into the permit."""
    n = Notify()
    t = await poll(wait_on(n))
    n.notify_one()
    t.cancel()
    await asyncio.wait([t])
    assert t.cancelled()
    assert n.statistics().current_permit is True
    assert_ready(await poll(wait_on(n)))
    assert n.statistics().current_permit is False


async def test_chosen_waiter_cancelled_with_a_permit_stored_keeps_one_permit() -> None:
    """Passing a wake-up on to an already stored permit still leaves only one permit."""
    n = Notify()
    t = await poll(wait_on(n))
    n.notify_one()  # chooses t
    n.notify_one()  # nobody else waits: stored
    t.cancel()
    await asyncio.wait([t])
    assert t.cancelled()
    assert n.statistics().current_permit is True
    t1 = await poll(wait_on(n))
    t2 = await poll(wait_on(n))
    assert_ready(t1)
    assert not t2.done()
    await cancel(t2)


async def test_new_waiter_does_not_steal_a_wake_up_from_a_chosen_one() -> None:
    """A waiter arriving after `notify_one` chose someone waits instead of taking a permit."""
    n = Notify()
    log: list[str] = []
    a = await poll(wait_on(n, log, "a"))
    n.notify_one()  # chooses a, which has not run yet
    b = asyncio.create_task(wait_on(n, log, "b"))
    await settle()
    assert_ready(a)
    assert not b.done()
    assert log == ["a"]
    await cancel(b)


# ---------------------------------------------------------------- awaitable, lifecycle


async def test_awaiting_the_same_notified_twice_raises() -> None:
    """A `notified()` awaitable can be awaited once; the second await raises RuntimeError."""
    n = Notify()
    n.notify_one()
    fut = n.notified()
    await fut
    with pytest.raises(RuntimeError, match=ALREADY_AWAITED):
        await fut


async def test_awaiting_a_pending_notified_from_a_second_task_raises() -> None:
    """A second await of a `notified()` that is still waiting raises and leaves the first."""
    n = Notify()
    fut = n.notified()
    t = await poll(await_it(fut))
    assert not t.done()
    with pytest.raises(RuntimeError, match=ALREADY_AWAITED):
        await fut
    assert n.statistics().tasks_waiting == 1
    n.notify_one()
    await settle()
    assert_ready(t)


async def test_statistics() -> None:
    """`statistics()` is a frozen snapshot of the permit, waiters and call counts."""
    assert [f.name for f in dataclasses.fields(NotifyStatistics)] == [
        "current_permit",
        "tasks_waiting",
        "total_notify_one",
        "total_notify_waiters",
        "name",  # given at creation (None here)
    ]
    n = Notify()
    first = n.statistics()
    assert first == NotifyStatistics(
        current_permit=False, tasks_waiting=0, total_notify_one=0, total_notify_waiters=0
    )

    t1 = await poll(wait_on(n))
    t2 = await poll(wait_on(n))
    t3 = await poll(wait_on(n))
    assert n.statistics().tasks_waiting == 3

    await cancel(t3)
    assert n.statistics().tasks_waiting == 2
    n.notify_one()
    assert n.statistics() == NotifyStatistics(
        current_permit=False, tasks_waiting=1, total_notify_one=1, total_notify_waiters=0
    )
    n.notify_last()
    n.notify_one()
    n.notify_waiters()
    await settle()
    assert_ready(t1)
    assert_ready(t2)
    assert n.statistics() == NotifyStatistics(
        current_permit=True, tasks_waiting=0, total_notify_one=3, total_notify_waiters=1
    )
    assert first.total_notify_one == 0  # a snapshot, not a live view
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.tasks_waiting = 5  # type: ignore[misc]


async def test_repr_shows_live_state() -> None:
    """`repr` of Notify shows waiters and the permit; Notified shows whether it was awaited."""
    n = Notify()
    assert repr(n) == "<Notify waiting=0 permit=False>"
    fut = n.notified()
    assert isinstance(fut, Notified)
    assert repr(fut) == "<Notified of <Notify waiting=0 permit=False> awaited=False>"

    t = await poll(await_it(fut))
    assert repr(n) == "<Notify waiting=1 permit=False>"
    assert repr(fut) == "<Notified of <Notify waiting=1 permit=False> awaited=True>"

    n.notify_one()
    await settle()
    assert_ready(t)
    n.notify_one()
    assert repr(n) == "<Notify waiting=0 permit=True>"


def test_notify_built_outside_a_running_loop() -> None:
    """A Notify (and a `notified()`) made with no loop running works inside one later."""
    n = Notify()
    n.notify_one()  # stored with no loop running
    early = n.notified()
    log: list[str] = []

    async def main() -> None:
        async with asyncio.timeout(5):
            await early
            t = await poll(wait_on(n, log, "late"))
            assert not t.done()
            n.notify_one()
            await t

    asyncio.run(main())
    assert log == ["late"]
    assert n.statistics() == NotifyStatistics(
        current_permit=False, tasks_waiting=0, total_notify_one=2, total_notify_waiters=0
    )


def test_exports() -> None:
    """Notify is importable from `telemetry_lab.primitives` and `telemetry_lab`."""
    assert telemetry_lab.Notify is primitives.Notify is Notify
