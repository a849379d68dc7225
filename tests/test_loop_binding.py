"""Primitives are bound to the event loop of their first waiter, as asyncio's own are.

Used from another loop's task or from another thread while a waiter is parked, a primitive
used to resolve the waiter's future from the wrong thread: the waiter was silently never
woken, and a send that then raised had already enqueued its value. Now the operation raises
a clear `RuntimeError` *before* it changes anything. (Sequential loops, as in several
`asyncio.run()` calls of one script, are covered in each primitive's own tests.)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest
from support import settle

from telemetry_lab import JoinSet, Notify, broadcast, channel, on_recv, select, watch

T = TypeVar("T")

BOUND = r"^this {what} is bound to the event loop <.*> \(its waiters belong to it\), but it "


@contextmanager
def loop_in_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """Run an event loop in a second thread for the duration of the block."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def in_loop(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` in `loop` (another thread) and return its result."""
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=5)


def park(loop: asyncio.AbstractEventLoop, wait: Callable[[], Awaitable[T]]) -> asyncio.Task[T]:
    """Start `wait()` as a task of `loop` and return once it is parked on its primitive."""

    async def start() -> asyncio.Task[T]:
        async def run() -> T:
            return await wait()

        task = asyncio.create_task(run())
        await settle()
        return task

    return in_loop(loop, start())


def result(loop: asyncio.AbstractEventLoop, task: asyncio.Task[T]) -> T:
    async def wait() -> T:
        return await task

    return in_loop(loop, wait())


def test_mpsc_send_from_another_loop_raises_and_enqueues_nothing() -> None:
    tx, rx = channel[int](4)
    with loop_in_thread() as loop_a:
        receiving = park(loop_a, rx.recv)

        async def send_from_loop_b() -> None:
            await tx.send(1)

        with pytest.raises(RuntimeError, match=BOUND.format(what="channel") + "was used from"):
            asyncio.run(send_from_loop_b())
        with pytest.raises(RuntimeError, match=BOUND.format(what="channel") + "was used outside"):
            tx.try_send(2)  # a plain thread, no loop at all
        assert len(rx) == 0
        assert rx.statistics().total_sent == 0
        loop_a.call_soon_threadsafe(tx.try_send, 3)  # the right way across threads
        assert result(loop_a, receiving) == 3


def test_mpsc_close_from_another_thread_with_a_waiter_raises_and_closes_nothing() -> None:
    tx, rx = channel[int](1)
    with loop_in_thread() as loop_a:
        receiving = park(loop_a, rx.recv)
        with pytest.raises(RuntimeError, match=BOUND.format(what="channel")):
            tx.close()
        assert not tx.is_closed
        assert tx.statistics().open_send_handles == 1
        loop_a.call_soon_threadsafe(tx.close)

        async def closed() -> str:
            try:
                await receiving
            except Exception as exc:
                return type(exc).__name__
            return "no error"

        assert in_loop(loop_a, closed()) == "ChannelClosed"


def test_broadcast_send_from_another_loop_raises_and_stores_nothing() -> None:
    tx, rx = broadcast[str](4)
    with loop_in_thread() as loop_a:
        receiving = park(loop_a, rx.recv)

        async def send_from_loop_b() -> int:
            return tx.send("lost?")

        with pytest.raises(RuntimeError, match=BOUND.format(what="broadcast channel")):
            asyncio.run(send_from_loop_b())
        assert tx.statistics().total_sent == 0
        assert len(rx) == 0
        loop_a.call_soon_threadsafe(tx.send, "kept")
        assert result(loop_a, receiving) == "kept"


def test_watch_send_from_another_thread_raises_and_changes_nothing() -> None:
    tx, rx = watch(0)
    with loop_in_thread() as loop_a:
        waiting = park(loop_a, rx.changed)
        with pytest.raises(RuntimeError, match=BOUND.format(what="watch channel")):
            tx.send_replace(1)
        assert tx.borrow() == 0
        assert tx.statistics().current_version == 0
        loop_a.call_soon_threadsafe(tx.send_replace, 2)
        result(loop_a, waiting)
        assert rx.borrow() == 2


def test_notify_from_another_loop_raises_and_stores_no_permit() -> None:
    notify = Notify()
    with loop_in_thread() as loop_a:
        waiting = park(loop_a, notify.notified)

        async def notify_from_loop_b() -> None:
            notify.notify_one()

        with pytest.raises(RuntimeError, match=BOUND.format(what="Notify")):
            asyncio.run(notify_from_loop_b())
        assert notify.statistics().total_notify_one == 0
        assert notify.statistics().tasks_waiting == 1
        loop_a.call_soon_threadsafe(notify.notify_one)
        result(loop_a, waiting)


def test_joinset_spawn_from_another_loop_raises() -> None:
    with loop_in_thread() as loop_a:

        async def make() -> JoinSet[int]:
            js: JoinSet[int] = JoinSet()
            js.spawn(asyncio.sleep(0, result=1))
            return js

        js = in_loop(loop_a, make())

        async def spawn_from_loop_b() -> None:
            coro = asyncio.sleep(0)
            try:
                js.spawn(coro)
            finally:
                coro.close()

        with pytest.raises(RuntimeError, match=BOUND.format(what="JoinSet")):
            asyncio.run(spawn_from_loop_b())
        assert len(js) == 1

        async def join() -> list[int]:
            return await js.join_all()

        assert in_loop(loop_a, join()) == [1]


def test_select_on_a_receiver_bound_to_another_loop_raises() -> None:
    tx, rx = channel[int](1)
    with loop_in_thread() as loop_a:
        receiving = park(loop_a, rx.recv)

        async def select_from_loop_b() -> None:
            await select(on_recv(rx))

        with pytest.raises(RuntimeError, match=BOUND.format(what="channel")):
            asyncio.run(select_from_loop_b())
        assert rx.statistics().tasks_waiting_receive == 1
        loop_a.call_soon_threadsafe(tx.try_send, 9)
        assert result(loop_a, receiving) == 9


def test_a_primitive_whose_loop_closed_can_be_used_by_the_next_loop() -> None:
    tx, rx = channel[int](1)

    async def wait_then_get(value: int) -> int:
        task = asyncio.create_task(rx.recv())
        await settle()
        tx.try_send(value)
        return await task

    assert asyncio.run(wait_then_get(1)) == 1  # bound to the first loop, now closed
    assert asyncio.run(wait_then_get(2)) == 2
