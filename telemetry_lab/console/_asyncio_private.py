"""Every private detail of asyncio that the console reads, in one place.

The console relies on public APIs where they exist: `loop.call_soon` (overridden on the
instance), `asyncio.all_tasks`, `Task.get_name`/`get_coro`/`done`, the coroutine protocol
(`cr_frame`, `cr_await`, `gi_yieldfrom`, ...), `loop.set_exception_handler` and
`inspect.currentframe`. What asyncio does not expose publicly is read here, each with a
fallback, and `tests/test_console_private.py` checks every one on each Python we support:

- a task's step and wake-up callbacks are bound to the task: `callback.__self__` is the
  task (C `TaskStepMethWrapper` and `task_wakeup`; `Task.__step`/`__wakeup` in pure Python);
- `Task._fut_waiter`: the future a waiting task is suspended on (None while it runs or is
  ready);
- `Future._log_traceback`: true while a failed task's exception has not been retrieved, and
  `Future._exception`: that exception, read without retrieving it;
- `sys._current_frames()`: the loop thread's frame during a stall (CPython, documented);
- the `self` of `asyncio.TaskGroup.__aexit__`, `asyncio.gather`'s future and the package's
  `JoinSet` keep their tasks in `_tasks` / `_children` (to see who waits on whom).
"""

from __future__ import annotations

import asyncio
import asyncio.tasks
import sys
from collections.abc import Collection
from types import FrameType
from typing import Any

__all__ = [
    "TASK_TYPES",
    "awaited_future",
    "failure",
    "frame_of_thread",
    "members",
    "task_of_callback",
    "unretrieved_exception",
]

TASK_TYPES: tuple[type[asyncio.Task[Any]], ...] = tuple(
    {
        cls
        for cls in (
            asyncio.Task,
            getattr(asyncio.tasks, "_PyTask", None),
            getattr(asyncio.tasks, "_CTask", None),
        )
        if isinstance(cls, type)
    }
)
"""The task classes asyncio may use (C and pure Python; nest_asyncio swaps them)."""


def task_of_callback(callback: object) -> asyncio.Task[Any] | None:
    """The task whose step (or wake-up) `callback` is, or None for any other callback."""
    owner = getattr(callback, "__self__", None)
    return owner if isinstance(owner, TASK_TYPES) else None


def awaited_future(task: asyncio.Task[Any]) -> asyncio.Future[Any] | None:
    """The future `task` is suspended on, or None (running, ready, done, or unknown)."""
    future = getattr(task, "_fut_waiter", None)
    return future if isinstance(future, asyncio.Future) else None


def unretrieved_exception(task: asyncio.Task[Any]) -> BaseException | None:
    """The exception of a failed task that nobody retrieved yet, without retrieving it."""
    if not task.done() or task.cancelled() or not getattr(task, "_log_traceback", False):
        return None
    exc = getattr(task, "_exception", None)
    return exc if isinstance(exc, BaseException) else None


def failure(task: asyncio.Task[Any]) -> BaseException | None:
    """The exception a done task failed with, read without marking it retrieved."""
    if not task.done() or task.cancelled():
        return None
    exc = getattr(task, "_exception", None)
    return exc if isinstance(exc, BaseException) else None


def frame_of_thread(thread_id: int) -> FrameType | None:
    """The frame a thread is executing now (the loop's thread, seen from the watchdog)."""
    return sys._current_frames().get(thread_id)


def members(container: object) -> Collection[object]:
    """The tasks a TaskGroup, a JoinSet or a gather future holds (empty if unknown)."""
    for attribute in ("_tasks", "_children"):
        held = getattr(container, attribute, None)
        if isinstance(held, (set, list, tuple, frozenset)):
            return held
    return ()
