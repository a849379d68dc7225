"""The private details of asyncio that the console reads, checked on this Python.

`telemetry_lab/console/_asyncio_private.py` lists them; `make test` runs this file on every
CPython the machine has (3.11, 3.12, 3.13), for the C tasks asyncio uses by default and for
the pure-Python ones (`nest_asyncio` swaps them in). When a new Python changes one of
them, this file fails first and names it.
"""

from __future__ import annotations

import asyncio
import asyncio.tasks
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from telemetry_lab.console import _asyncio_private as private

TASK_CLASSES = [
    pytest.param(asyncio.tasks._CTask, id="C-task"),  # type: ignore[attr-defined]
    pytest.param(asyncio.tasks._PyTask, id="Python-task"),  # type: ignore[attr-defined]
]


def run_with(task_class: type, main: Callable[[], Any]) -> Any:
    """Run `main()` with tasks of `task_class` (a task factory, the public way)."""

    async def runner() -> Any:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(lambda loop, coro, **kw: task_class(coro, loop=loop, **kw))
        return await main()

    return asyncio.run(runner())


@pytest.mark.parametrize("task_class", TASK_CLASSES)
def test_step_and_wakeup_callbacks_are_bound_to_their_task(task_class: type) -> None:
    seen: list[tuple[object, object]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        original = loop.call_soon

        def spy(callback: Any, *args: Any, context: Any = None) -> asyncio.Handle:
            seen.append((callback, private.task_of_callback(callback)))
            return original(callback, *args, context=context)

        async def child() -> None:
            await asyncio.sleep(0.001)  # a wake-up
            await asyncio.sleep(0)  # a bare yield: the step scheduled again

        loop.call_soon = spy  # type: ignore[method-assign]
        try:
            task = asyncio.create_task(child())  # the first step
            await task
        finally:
            del loop.call_soon
        owned = [callback for callback, owner in seen if owner is task]
        assert len(owned) >= 3, seen  # first step, wake-up after sleep, step after yield
        assert all(isinstance(task, task_class) for _, owner in seen if owner is not None)

    run_with(task_class, main)


def test_other_callbacks_are_not_taken_for_tasks() -> None:
    future: asyncio.Future[int]

    async def main() -> None:
        nonlocal future
        future = asyncio.get_running_loop().create_future()
        assert private.task_of_callback(future.set_result) is None
        assert private.task_of_callback(print) is None
        assert private.task_of_callback(lambda: None) is None

    asyncio.run(main())


@pytest.mark.parametrize("task_class", TASK_CLASSES)
def test_fut_waiter_is_the_future_a_task_waits_on(task_class: type) -> None:
    async def main() -> None:
        future = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(asyncio.wait_for(future, 10))

        async def waits_on(awaitable: Any) -> None:
            await awaitable

        plain = asyncio.create_task(waits_on(future))
        await asyncio.sleep(0)
        assert private.awaited_future(plain) is future
        assert isinstance(private.awaited_future(task), asyncio.Future)
        me = asyncio.current_task()
        assert me is not None
        assert private.awaited_future(me) is None  # running
        future.set_result(1)
        await asyncio.gather(task, plain)
        assert private.awaited_future(plain) is None  # done

    run_with(task_class, main)


@pytest.mark.parametrize("task_class", TASK_CLASSES)
def test_log_traceback_and_exception_read_a_failure_without_retrieving_it(
    task_class: type,
) -> None:
    async def main() -> None:
        async def fails() -> None:
            raise ValueError("x")

        task = asyncio.create_task(fails())
        await asyncio.sleep(0)
        exc = private.unretrieved_exception(task)
        assert isinstance(exc, ValueError)
        assert private.unretrieved_exception(task) is exc  # reading did not retrieve it
        assert private.failure(task) is exc
        assert task.exception() is exc  # the public retrieval
        assert private.unretrieved_exception(task) is None
        assert private.failure(task) is exc

        async def fine() -> int:
            return 1

        ok = asyncio.create_task(fine())
        await ok
        assert private.unretrieved_exception(ok) is None
        assert private.failure(ok) is None

    run_with(task_class, main)


def test_current_frames_shows_the_loop_thread_while_it_is_blocked() -> None:
    seen: list[str] = []
    main_thread = threading.get_ident()

    def look() -> None:
        time.sleep(0.1)
        frame = private.frame_of_thread(main_thread)
        while frame is not None:
            seen.append(frame.f_code.co_name)
            frame = frame.f_back

    def blocked_here() -> None:
        time.sleep(0.3)

    thread = threading.Thread(target=look)
    thread.start()
    blocked_here()
    thread.join()
    assert seen[0] == "blocked_here"


def test_taskgroup_joinset_and_gather_keep_their_tasks_where_the_console_looks() -> None:
    from telemetry_lab import JoinSet

    async def main() -> None:
        async def sleeper() -> None:
            await asyncio.sleep(10)

        async with asyncio.TaskGroup() as group:
            member = group.create_task(sleeper())
            assert member in private.members(group)
            member.cancel()
        js: JoinSet[None] = JoinSet()
        spawned = js.spawn(sleeper())
        assert spawned in private.members(js)
        await js.shutdown()
        a = asyncio.create_task(sleeper())
        gathered = asyncio.gather(a)
        assert a in private.members(gathered)
        a.cancel()
        await asyncio.gather(gathered, return_exceptions=True)
        assert private.members(object()) == ()

    asyncio.run(main())


def test_the_task_classes_cover_what_asyncio_uses_here() -> None:
    assert asyncio.Task in private.TASK_TYPES
    assert asyncio.tasks._PyTask in private.TASK_TYPES  # type: ignore[attr-defined]
    assert sys.version_info >= (3, 11)
