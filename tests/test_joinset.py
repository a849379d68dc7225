"""Tests for `telemetry_lab.primitives.joinset`: a set of tasks joined in completion order.

Ported from Tokio's `tokio/tests/task_join_set.rs` where the contract reaches, plus the
contract's own clauses (DESIGN.md, "Primitive contracts", JoinSet).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from support import settle

from telemetry_lab import JoinSet, JoinSetStatistics
from telemetry_lab import primitives as prims


async def wait_for(fut: asyncio.Future[Any]) -> Any:
    """Return what `fut` resolves to (a task body that finishes when the test says so)."""
    return await fut


async def return_value(value: Any) -> Any:
    return value


async def boom(message: str) -> None:
    raise ValueError(message)


async def forever(cancelled: list[str], tag: str) -> None:
    """Wait until cancelled, recording the cancellation."""
    try:
        await asyncio.get_running_loop().create_future()
    except asyncio.CancelledError:
        cancelled.append(tag)
        raise


async def fail_on_cancel(gate: asyncio.Future[Any], message: str) -> None:
    """Wait for `gate`; fail with RuntimeError(message) when cancelled (failing cleanup)."""
    try:
        await gate
    except asyncio.CancelledError:
        raise RuntimeError(message) from None


@contextmanager
def loop_errors() -> Iterator[list[dict[str, Any]]]:
    """Collect what the loop's exception handler receives ("Task exception was never ...")."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    old = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        yield errors
    finally:
        loop.set_exception_handler(old)


def test_exported_from_package_and_primitives() -> None:
    """JoinSet and its statistics are importable from both public namespaces."""
    assert prims.JoinSet is JoinSet
    assert prims.JoinSetStatistics is JoinSetStatistics


def test_build_outside_running_loop() -> None:
    """A JoinSet can be built in one notebook cell (no loop) and used in another."""
    js: JoinSet[int] = JoinSet()
    assert len(js) == 0

    async def use() -> list[int]:
        js.spawn(return_value(7))
        return await js.join_all()

    assert asyncio.run(use()) == [7]


async def test_with_sleep() -> None:
    """Ports `test_with_sleep`: detach_all empties; join_next yields tasks in completion order."""
    loop = asyncio.get_running_loop()
    js: JoinSet[int] = JoinSet()
    gates = [loop.create_future() for _ in range(10)]
    detached = []
    for i in range(10):
        detached.append(js.spawn(wait_for(gates[i])))
        assert len(js) == i + 1
    js.detach_all()
    assert len(js) == 0
    assert await js.join_next() is None
    for i, gate in enumerate(gates):
        gate.set_result(i)
    assert await asyncio.gather(*detached) == list(range(10))  # detached tasks kept running

    for _round in range(2):  # "Do it again."
        gates = [loop.create_future() for _ in range(10)]
        for i in range(10):
            js.spawn(wait_for(gates[i]))
            assert len(js) == i + 1
        order = [3, 9, 0, 5, 1, 8, 2, 7, 4, 6]
        seen = []
        for i in order:
            gates[i].set_result(i)
            task = await js.join_next()
            assert task is not None
            seen.append(task.result())
            assert len(js) == 10 - len(seen)
        assert seen == order
        assert await js.join_next() is None


async def test_completion_order_within_one_iteration() -> None:
    """Tasks finishing in the same loop iteration are joined in the order they finished."""
    loop = asyncio.get_running_loop()
    js: JoinSet[str] = JoinSet()
    gates = {name: loop.create_future() for name in "abcd"}
    for name in "abcd":
        js.spawn(wait_for(gates[name]), name=name)
    await settle()  # every task now waits on its gate
    for name in "cadb":
        gates[name].set_result(name)
    joined = []
    while (task := await js.join_next()) is not None:
        joined.append((task.get_name(), task.result()))
    assert joined == [("c", "c"), ("a", "a"), ("d", "d"), ("b", "b")]


async def test_completion_order_before_the_done_callbacks_have_run() -> None:
    """Joined in completion order even when asked before the done callbacks ran.

    Tasks finishing in one iteration are done at once, but their done callbacks run one
    iteration later; joining right away must still follow completion order (a scan of the
    set gave set order: out of order in 200 of 200 trials).
    """
    loop = asyncio.get_running_loop()
    rng = random.Random(7)
    names = [f"t{i}" for i in range(8)]
    for _ in range(200):
        js: JoinSet[str] = JoinSet()
        gates = {name: loop.create_future() for name in names}
        for name in names:
            js.spawn(wait_for(gates[name]), name=name)
        await settle()
        order = rng.sample(names, len(names))
        for name in order:
            gates[name].set_result(name)
        await asyncio.sleep(0)  # every task finishes in this iteration
        assert all(gates[name].done() for name in names)
        joined = []
        while (task := js.try_join_next()) is not None:
            joined.append(task.get_name())
        assert joined == order


async def test_a_task_cancelled_before_it_started_is_joined_without_a_warning() -> None:
    """Its coroutine never ran: the set closes it (no "never awaited" RuntimeWarning)."""
    js: JoinSet[int] = JoinSet()
    task = js.spawn(return_value(1))
    task.cancel()
    await asyncio.sleep(0)
    assert task.done()
    joined = js.try_join_next()
    assert joined is task
    assert joined.cancelled()
    gc.collect()  # filterwarnings=error turns the RuntimeWarning into a failure


async def test_spawn_refuses_what_is_not_a_coroutine() -> None:
    js: JoinSet[int] = JoinSet()
    with pytest.raises(TypeError, match=r"^spawn\(\) needs a coroutine, got 3$"):
        js.spawn(3)  # type: ignore[arg-type]
    assert len(js) == 0


async def test_leaving_async_with_cancelled_twice_still_waits_for_every_task() -> None:
    """A second cancellation while shutting down must not orphan the tasks (TaskGroup too)."""
    finished: list[str] = []
    entered = asyncio.Event()

    async def stubborn(tag: str) -> None:
        try:
            await asyncio.sleep(100)
        finally:  # cleanup that takes a while, as a write finishing in a thread would
            await asyncio.sleep(0.05)
            finished.append(tag)

    async def owner() -> None:
        async with JoinSet[None]() as js:
            js.spawn(stubborn("a"))
            js.spawn(stubborn("b"))
            entered.set()
            await asyncio.sleep(100)

    task = asyncio.create_task(owner())
    await entered.wait()
    await settle()
    task.cancel()  # first: leaving `async with` cancels the tasks and waits for them
    await settle()
    task.cancel()  # second, while the tasks are still cleaning up
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(finished) == ["a", "b"]  # both finished before the owner let go
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_shutdown_cancelled_again_lets_the_clean_up_finish_then_propagates() -> None:
    """Like TaskGroup: a repeated cancellation of the owner does not cancel the tasks again."""
    cleaned: list[str] = []

    async def slow_clean_up() -> None:
        try:
            await asyncio.sleep(100)
        finally:
            for _ in range(5):
                await asyncio.sleep(0)
            cleaned.append("done")

    js: JoinSet[None] = JoinSet()
    task = js.spawn(slow_clean_up())
    await settle()
    shutting = asyncio.create_task(js.shutdown())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not task.done()
    shutting.cancel()
    shutting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await shutting
    assert cleaned == ["done"]
    assert task.cancelled()
    assert len(js) == 0


async def test_abort_on_drop() -> None:
    """Ports `test_abort_on_drop`: leaving `async with` cancels and awaits every task."""
    cancelled: list[str] = []
    async with JoinSet[None]() as js:
        tasks = [js.spawn(forever(cancelled, str(i))) for i in range(16)]
        await settle()
        assert len(js) == 16
    assert len(js) == 0
    assert all(t.cancelled() for t in tasks)
    assert sorted(cancelled, key=int) == [str(i) for i in range(16)]


async def test_async_with_shuts_down_when_body_raises() -> None:
    """An exception in the `async with` body still cancels the tasks, then propagates."""
    cancelled: list[str] = []
    js: JoinSet[None] = JoinSet()
    tasks: list[asyncio.Task[None]] = []

    async def body() -> None:
        async with js:
            tasks.append(js.spawn(forever(cancelled, "t")))
            await settle()
            raise RuntimeError("body failed")

    with pytest.raises(RuntimeError, match=r"^body failed$"):
        await body()
    assert tasks[0].cancelled()
    assert cancelled == ["t"]
    assert len(js) == 0


async def test_alternating() -> None:
    """Ports `alternating`: len tracks spawn and join one for one."""
    js: JoinSet[None] = JoinSet()
    assert len(js) == 0
    js.spawn(return_value(None))
    assert len(js) == 1
    js.spawn(return_value(None))
    assert len(js) == 2
    for _ in range(16):
        task = await js.join_next()
        assert task is not None
        assert task.result() is None
        assert len(js) == 1
        js.spawn(return_value(None))
        assert len(js) == 2
    await js.shutdown()


async def test_abort_tasks() -> None:
    """Ports `abort_tasks`: tasks cancelled through their handle are joined as cancelled."""
    loop = asyncio.get_running_loop()
    js: JoinSet[int] = JoinSet()
    gates = [loop.create_future() for _ in range(16)]
    for i in range(16):
        task = js.spawn(wait_for(gates[i]))
        if i % 2 != 0:
            task.cancel()
    for i in range(0, 16, 2):
        gates[i].set_result(i)
    completed, cancelled = [], 0
    while (task := await js.join_next()) is not None:
        if task.cancelled():
            cancelled += 1
        else:
            completed.append(task.result())
    assert cancelled == 8
    assert sorted(completed) == list(range(0, 16, 2))
    assert len(js) == 0


async def test_abort_all() -> None:
    """Ports `abort_all`: aborted tasks stay in the set until joined; finished ones keep results."""
    cancelled: list[str] = []
    js: JoinSet[Any] = JoinSet()
    for i in range(5):
        js.spawn(forever(cancelled, str(i)))
    for i in range(5):
        js.spawn(return_value(i))
    await settle()  # 5 pending tasks and 5 finished ones
    js.abort_all()
    assert len(js) == 10
    results, n_cancelled = [], 0
    while (task := await js.join_next()) is not None:
        if task.cancelled():
            n_cancelled += 1
        else:
            results.append(task.result())
    assert n_cancelled == 5
    assert sorted(results) == [0, 1, 2, 3, 4]
    assert sorted(cancelled) == ["0", "1", "2", "3", "4"]
    assert len(js) == 0


async def test_try_join_next() -> None:
    """Ports `try_join_next`: None while nothing finished, then every task exactly once."""
    n = 100
    gate = asyncio.Event()
    js: JoinSet[bool] = JoinSet()
    for _ in range(n):
        js.spawn(gate.wait())
    assert js.try_join_next() is None
    await settle()
    assert js.try_join_next() is None
    gate.set()
    await settle()
    count = 0
    while (task := js.try_join_next()) is not None:
        assert task.result() is True
        count += 1
    assert count == n
    assert len(js) == 0
    assert js.try_join_next() is None


async def test_try_join_next_returns_task_as_soon_as_it_is_done() -> None:
    """try_join_next returns a finished task: it may not lag behind `task.done()`."""
    js: JoinSet[int] = JoinSet()
    task = js.spawn(return_value(1))
    await asyncio.sleep(0)  # the task runs to completion in this iteration
    assert task.done()
    assert js.try_join_next() is task


async def test_join_all() -> None:
    """Ports `join_all`: every result, the set empty afterwards."""
    js: JoinSet[int] = JoinSet()
    for _ in range(5):
        js.spawn(return_value(1))
    assert await js.join_all() == [1, 1, 1, 1, 1]
    assert len(js) == 0


async def test_join_all_in_completion_order() -> None:
    """join_all returns results in completion order, not spawn order."""
    loop = asyncio.get_running_loop()
    js: JoinSet[int] = JoinSet()
    gates = [loop.create_future() for _ in range(4)]
    for gate in gates:
        js.spawn(wait_for(gate))
    joining = asyncio.create_task(js.join_all())
    for i in (2, 0, 3, 1):
        await settle()
        gates[i].set_result(i * 10)
    assert await joining == [20, 0, 30, 10]


async def test_task_panics() -> None:
    """Ports `task_panics`: join_all raises the first failure after cancelling the rest."""
    loop = asyncio.get_running_loop()
    cancelled: list[str] = []
    finished = loop.create_future()
    js: JoinSet[None] = JoinSet()

    async def slow() -> None:
        await forever(cancelled, "slow")
        finished.set_result(None)  # never reached: it is cancelled first

    js.spawn(slow())
    assert len(js) == 1
    js.spawn(boom("panic"))
    assert len(js) == 2
    with loop_errors() as errors:
        with pytest.raises(ValueError, match=r"^panic$"):
            await js.join_all()
        assert cancelled == ["slow"]  # cancelled and awaited before join_all raised
        assert not finished.done()
        assert len(js) == 0
        gc.collect()
    assert errors == []


async def test_join_all_raises_first_failure_and_drops_later_ones() -> None:
    """Only the first failure is raised; later failures are consumed, not reported."""
    loop = asyncio.get_running_loop()
    first, second = loop.create_future(), loop.create_future()

    with loop_errors() as errors:
        js: JoinSet[None] = JoinSet()
        js.spawn(fail_on_cancel(first, "first"))
        js.spawn(fail_on_cancel(second, "second"))
        await settle()
        first.cancel()  # the first task fails with RuntimeError("first")
        with pytest.raises(RuntimeError, match=r"^first$"):
            await js.join_all()
        assert len(js) == 0
        del js
        gc.collect()
    assert errors == []


async def test_join_all_cancelled_task_raises_cancelled_error() -> None:
    """A cancelled task counts as a failure: join_all raises CancelledError, rest cancelled."""
    cancelled: list[str] = []
    js: JoinSet[None] = JoinSet()
    victim = js.spawn(forever(cancelled, "victim"))
    other = js.spawn(forever(cancelled, "other"))
    await settle()
    victim.cancel()
    with pytest.raises(asyncio.CancelledError):
        await js.join_all()
    assert other.cancelled()
    assert cancelled == ["victim", "other"]
    assert len(js) == 0
    me = asyncio.current_task()
    assert me is not None
    assert me.cancelling() == 0  # the CancelledError came from the task, not from us


async def test_shutdown() -> None:
    """shutdown cancels every task, waits for all, leaves the set empty; failures unreported."""
    cancelled: list[str] = []
    with loop_errors() as errors:
        js: JoinSet[Any] = JoinSet()
        pending = [js.spawn(forever(cancelled, str(i))) for i in range(3)]
        js.spawn(boom("ignored"))  # failed before the shutdown
        failing = js.spawn(fail_on_cancel(asyncio.get_running_loop().create_future(), "cleanup"))
        done = js.spawn(return_value(5))
        await settle()
        await js.shutdown()
        assert len(js) == 0
        assert js.try_join_next() is None
        assert await js.join_next() is None
        assert all(t.cancelled() for t in pending)
        assert sorted(cancelled) == ["0", "1", "2"]
        assert done.result() == 5
        assert failing.done()
        del js, failing
        gc.collect()
    assert errors == []


async def test_loop_errors_helper_sees_unretrieved_exceptions() -> None:
    """Control for `loop_errors`: an unretrieved task failure is reported (so it can fail)."""
    with loop_errors() as errors:
        task = asyncio.get_running_loop().create_task(boom("lost"))
        await settle()
        assert task.done()
        del task
        gc.collect()
    assert [e["message"] for e in errors] == ["Task exception was never retrieved"]


async def test_shutdown_empty_and_twice() -> None:
    """shutdown on an empty set returns at once and can be repeated."""
    js: JoinSet[None] = JoinSet()
    await js.shutdown()
    js.spawn(return_value(None))
    await js.shutdown()
    await js.shutdown()
    assert len(js) == 0


async def test_detach_all() -> None:
    """detach_all empties the set; the tasks keep running, unowned by it."""
    loop = asyncio.get_running_loop()
    gate = loop.create_future()
    js: JoinSet[int] = JoinSet()
    tasks = [js.spawn(wait_for(gate)) for _ in range(3)]
    js.detach_all()
    assert len(js) == 0
    assert js.try_join_next() is None
    assert await js.join_next() is None
    await js.shutdown()  # owns nothing: does not cancel the detached tasks
    assert not any(t.done() for t in tasks)
    gate.set_result(9)
    assert await asyncio.gather(*tasks) == [9, 9, 9]
    assert js.try_join_next() is None
    assert js.statistics().current_finished == 0


async def test_len_counts_unjoined_tasks() -> None:
    """len counts tasks not yet joined, finished or not."""
    loop = asyncio.get_running_loop()
    gate = loop.create_future()
    js: JoinSet[Any] = JoinSet()
    js.spawn(return_value(1))
    js.spawn(wait_for(gate))
    await settle()
    assert len(js) == 2  # one finished, still counted until joined
    task = await js.join_next()
    assert task is not None
    assert task.result() == 1
    assert len(js) == 1
    gate.set_result(2)
    task = await js.join_next()
    assert task is not None
    assert task.result() == 2
    assert len(js) == 0


async def test_join_next_on_empty_set_returns_none_at_once() -> None:
    """join_next on an empty set returns None without suspending."""
    js: JoinSet[None] = JoinSet()
    coro = js.join_next()
    with pytest.raises(StopIteration) as info:
        coro.send(None)
    assert info.value.value is None


async def test_one_failure_never_touches_the_others() -> None:
    """A failing task neither cancels nor disturbs its siblings."""
    loop = asyncio.get_running_loop()
    gate = loop.create_future()
    js: JoinSet[Any] = JoinSet()
    sibling = js.spawn(wait_for(gate))
    js.spawn(boom("one"))
    failed = await js.join_next()
    assert failed is not None
    exc = failed.exception()
    assert isinstance(exc, ValueError)
    assert str(exc) == "one"
    await settle()
    assert not sibling.done()
    assert len(js) == 1
    gate.set_result("fine")
    task = await js.join_next()
    assert task is sibling
    assert task.result() == "fine"


async def test_spawn_returns_named_task() -> None:
    """spawn returns the asyncio.Task, with the given name."""
    js: JoinSet[int] = JoinSet()
    task = js.spawn(return_value(3), name="sensor-1")
    assert isinstance(task, asyncio.Task)
    assert task.get_name() == "sensor-1"
    joined = await js.join_next()
    assert joined is task
    assert joined.result() == 3


async def test_cancelled_join_next_loses_no_task() -> None:
    """A caller cancelled in join_next after a task finished leaves it for the next join_next."""
    loop = asyncio.get_running_loop()
    gate = loop.create_future()
    js: JoinSet[int] = JoinSet()
    worker = js.spawn(wait_for(gate))
    joiner = asyncio.create_task(js.join_next())
    await settle()
    assert js.statistics().tasks_waiting_join == 1
    gate.set_result(4)
    # One loop iteration at a time until the worker has finished and woken the joiner.
    while js.statistics().tasks_waiting_join:  # noqa: ASYNC110
        await asyncio.sleep(0)
    assert js.statistics().tasks_waiting_join == 0  # woken, has not run yet
    assert not joiner.done()
    joiner.cancel()  # cancelled after being woken, before it runs
    with pytest.raises(asyncio.CancelledError):
        await joiner
    assert len(js) == 1
    task = await js.join_next()
    assert task is worker
    assert task.result() == 4


async def test_cancelled_join_next_passes_wake_up_to_next_waiter() -> None:
    """A woken-then-cancelled joiner hands the finished task to another waiting joiner."""
    loop = asyncio.get_running_loop()
    gate = loop.create_future()
    js: JoinSet[int] = JoinSet()
    worker = js.spawn(wait_for(gate))
    first = asyncio.create_task(js.join_next())
    second = asyncio.create_task(js.join_next())
    await settle()
    assert js.statistics().tasks_waiting_join == 2
    gate.set_result(1)
    while js.statistics().tasks_waiting_join == 2:  # noqa: ASYNC110 (one iteration at a time)
        await asyncio.sleep(0)
    assert js.statistics().tasks_waiting_join == 1  # `first` woken, has not run yet
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second is worker
    assert len(js) == 0


async def test_cancelled_join_next_while_waiting_unregisters() -> None:
    """A joiner cancelled before anything finished leaves no waiter behind."""
    loop = asyncio.get_running_loop()
    gate = loop.create_future()
    js: JoinSet[int] = JoinSet()
    js.spawn(wait_for(gate))
    joiner = asyncio.create_task(js.join_next())
    await settle()
    joiner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await joiner
    assert js.statistics().tasks_waiting_join == 0
    gate.set_result(8)
    assert await js.join_all() == [8]


async def test_statistics() -> None:
    """statistics() is a frozen snapshot with the documented fields."""
    loop = asyncio.get_running_loop()
    gate = loop.create_future()
    js: JoinSet[int] = JoinSet()
    assert js.statistics() == JoinSetStatistics(
        current_tasks=0, current_finished=0, tasks_waiting_join=0, total_spawned=0, total_joined=0
    )
    js.spawn(return_value(1))
    js.spawn(return_value(2))
    js.spawn(wait_for(gate))
    await settle()
    assert js.statistics() == JoinSetStatistics(
        current_tasks=3, current_finished=2, tasks_waiting_join=0, total_spawned=3, total_joined=0
    )
    assert js.try_join_next() is not None
    assert await js.join_next() is not None
    joiner = asyncio.create_task(js.join_next())
    await settle()
    stats = js.statistics()
    assert stats == JoinSetStatistics(
        current_tasks=1, current_finished=0, tasks_waiting_join=1, total_spawned=3, total_joined=2
    )
    gate.set_result(3)
    task = await joiner
    assert task is not None
    assert task.result() == 3
    assert js.statistics() == JoinSetStatistics(
        current_tasks=0, current_finished=0, tasks_waiting_join=0, total_spawned=3, total_joined=3
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.current_tasks = 9  # type: ignore[misc]
    assert [f.name for f in dataclasses.fields(JoinSetStatistics)] == [
        "current_tasks",
        "current_finished",
        "tasks_waiting_join",
        "total_spawned",
        "total_joined",
        "name",  # given at creation (None here)
    ]


async def test_repr_shows_live_state() -> None:
    """repr shows the tasks held, those finished and the total spawned."""
    loop = asyncio.get_running_loop()
    gate = loop.create_future()
    js: JoinSet[int] = JoinSet()
    assert repr(js) == "<JoinSet tasks=0 finished=0 spawned=0>"
    js.spawn(return_value(1))
    js.spawn(wait_for(gate))
    await settle()
    assert repr(js) == "<JoinSet tasks=2 finished=1 spawned=2>"
    await js.shutdown()
    assert repr(js) == "<JoinSet tasks=0 finished=0 spawned=2>"


async def test_concurrent_joiners_all_return_when_the_set_empties() -> None:
    """Two tasks waiting in join_next: one gets the task, the other gets None (no hang)."""
    js: JoinSet[None] = JoinSet()
    gate = asyncio.Event()

    async def job() -> None:
        await gate.wait()

    task = js.spawn(job())
    first = asyncio.create_task(js.join_next())
    second = asyncio.create_task(js.join_next())
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(first, second)
    assert sorted(results, key=lambda r: r is None) == [task, None]
    assert len(js) == 0
