"""Own a dynamic set of tasks and collect them in the order they finish.

`JoinSet` is the asyncio counterpart of Tokio's `JoinSet`. Every task spawned into it has an
owner that will join or cancel it: `join_next()` hands back finished tasks in completion
order, and leaving `async with JoinSet()` cancels and awaits whatever is left.

Compare `asyncio.TaskGroup`: a TaskGroup is fail-fast (one failure cancels the siblings and
the body) and waits for every task on exit. A JoinSet leaves failures to the caller, who
sees each finished task and decides. Like a TaskGroup, it never lets its tasks outlive it:
`shutdown()` (and so leaving `async with`) keeps waiting for them even if it is cancelled
again meanwhile, and only then lets the cancellation through.

Completion order is exact: each task records itself, in its last step, as it finishes, so
several tasks finishing in the same loop iteration are joined in the order they finished
(a done-callback would run one iteration later, and a scan of the set would be unordered).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

from telemetry_lab.primitives._private import LoopBinding, check_name
from telemetry_lab.primitives.waiting import WaitQueue

__all__ = ["JoinSet", "JoinSetStatistics"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinSetStatistics:
    """A snapshot of one `JoinSet`."""

    current_tasks: int
    """Tasks spawned and not yet joined (`len(js)`), finished or not."""
    current_finished: int
    """Tasks that finished and wait to be joined."""
    tasks_waiting_join: int
    """Tasks blocked in `join_next()`."""
    total_spawned: int
    """Tasks ever spawned into the set."""
    total_joined: int
    """Tasks ever handed back by `join_next()`/`try_join_next()`."""
    name: str | None = None
    """The name given to `JoinSet()`, or None."""


class JoinSet(Generic[T]):
    """A set of tasks joined in completion order.

    A JoinSet is not fail-fast: one task's failure never cancels the others. It is an owner:
    `shutdown()` (and leaving `async with`) cancels and awaits every task still in it.

    Args:
        name: how reprs, statistics and the console call it.
    """

    __slots__ = (
        "_binding",
        "_done",
        "_joined",
        "_queued",
        "_spawned",
        "_tasks",
        "_unstarted",
        "_waiters",
        "name",
    )

    def __init__(self, *, name: str | None = None) -> None:
        self.name = check_name(name)
        self._binding = LoopBinding("JoinSet" if name is None else f"JoinSet {name!r}")
        self._tasks: set[asyncio.Task[T]] = set()
        # Tasks whose coroutine has not run yet, with it (in spawn order): one cancelled
        # now finishes without ever reaching `_finish_in_order`.
        self._unstarted: dict[asyncio.Task[T], Coroutine[Any, Any, T]] = {}
        self._done: deque[asyncio.Task[T]] = deque()  # finished, in completion order
        self._queued: set[asyncio.Task[T]] = set()  # the members of _done
        self._waiters = WaitQueue(self._binding, self, "join_next", on_abandoned=self._pass_on)
        self._spawned = 0
        self._joined = 0

    def spawn(self, coro: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Task[T]:
        """Start `coro` as a task owned by this set and return the task.

        Raises:
            TypeError: `coro` is not a coroutine.
            RuntimeError: the set's tasks run on another event loop.
        """
        if not asyncio.iscoroutine(coro):
            raise TypeError(f"spawn() needs a coroutine, got {coro!r}")
        loop = self._binding.bind()
        task: asyncio.Task[T] = loop.create_task(self._finish_in_order(coro), name=name)
        self._tasks.add(task)
        if not task.done():  # (an eager task factory may already have run it)
            self._unstarted[task] = coro
        self._spawned += 1
        task.add_done_callback(self._on_done)
        return task

    async def _finish_in_order(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro`; as its task finishes (in that same step), queue it for joining."""
        task = cast("asyncio.Task[T]", asyncio.current_task())
        self._unstarted.pop(task, None)
        try:
            return await coro
        finally:
            self._queue_finished(task)

    def _queue_finished(self, task: asyncio.Task[T]) -> None:
        if task in self._tasks and task not in self._queued:
            self._done.append(task)
            self._queued.add(task)
            self._waiters.wake_one()

    def _on_done(self, task: asyncio.Task[T]) -> None:
        # Usually a no-op: the task queued itself as it finished. Not if it was cancelled
        # before its first step: then its coroutine never ran (close it, or Python warns
        # that it was never awaited).
        coro = self._unstarted.pop(task, None)
        if coro is not None:
            coro.close()
        self._queue_finished(task)

    def _collect_finished(self) -> None:
        # A task cancelled before its first step is done one loop iteration before its
        # done callback runs; a caller who saw `task.done()` must be able to join it now.
        for task in [t for t in self._unstarted if t.done()]:
            self._on_done(task)

    def _take(self) -> asyncio.Task[T]:
        task = self._done.popleft()
        self._queued.discard(task)
        self._tasks.discard(task)
        self._joined += 1
        if not self._tasks:
            self._waiters.wake_all()  # other joiners get None instead of waiting forever
        return task

    def _pass_on(self, wake: object) -> None:
        """A joiner was woken, then cancelled: another one gets the finished task."""
        if self._done:
            self._waiters.wake_one()

    def try_join_next(self) -> asyncio.Task[T] | None:
        """Return a finished task (removed from the set) or None if none has finished."""
        self._collect_finished()
        return self._take() if self._done else None

    async def join_next(self) -> asyncio.Task[T] | None:
        """Wait for the next task to finish and return it, removed from the set.

        Returns None at once when the set is empty. The task is done: call `.result()` (or
        `await` it) to get its value or exception.
        """
        self._collect_finished()
        while not self._done:
            if not self._tasks:
                return None
            await self._waiters.park()
        return self._take()

    def abort_all(self) -> None:
        """Cancel every task; they stay in the set to be joined."""
        for task in self._tasks:
            task.cancel()

    async def shutdown(self) -> None:
        """Cancel every task and wait for all of them; the set is empty afterwards.

        If the caller is cancelled meanwhile, the tasks are still waited for (a task must not
        outlive its owner), without cancelling them again, which would cut their clean-up
        short, as `asyncio.TaskGroup` does; then the cancellation propagates.
        """
        self.abort_all()
        cancelled: asyncio.CancelledError | None = None
        while self._tasks:
            try:
                task = await self.join_next()
            except asyncio.CancelledError as exc:
                cancelled = exc
                continue
            if task is not None and not task.cancelled():
                task.exception()  # consumed: a shut-down task's failure is not reported
        if cancelled is not None:
            raise cancelled

    async def join_all(self) -> list[T]:
        """Wait for every task and return their results in completion order.

        Raises:
            BaseException: the first failure (a cancelled task raises CancelledError, as
                `task.result()` would); the remaining tasks are cancelled and awaited first.
        """
        results: list[T] = []
        while (task := await self.join_next()) is not None:
            if task.cancelled() or task.exception() is not None:
                await self.shutdown()
            results.append(task.result())
        return results

    def detach_all(self) -> None:
        """Forget every task without cancelling it; they keep running, unowned by this set."""
        for task in self._tasks:
            task.remove_done_callback(self._on_done)
        self._tasks.clear()
        self._unstarted.clear()
        self._done.clear()
        self._queued.clear()
        self._waiters.wake_all()

    def statistics(self) -> JoinSetStatistics:
        """Return a snapshot of this set."""
        return JoinSetStatistics(
            current_tasks=len(self._tasks),
            current_finished=sum(task.done() for task in self._tasks),
            tasks_waiting_join=self._waiters.tasks_waiting,
            total_spawned=self._spawned,
            total_joined=self._joined,
            name=self.name,
        )

    def describe(self) -> str:
        name = "JoinSet" if self.name is None else f"JoinSet {self.name!r}"
        finished = sum(task.done() for task in self._tasks)
        return f"{name} ({len(self._tasks)} tasks, {finished} finished)"

    def __len__(self) -> int:
        return len(self._tasks)

    async def __aenter__(self) -> JoinSet[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    def __repr__(self) -> str:
        finished = sum(task.done() for task in self._tasks)
        named = "" if self.name is None else f" name={self.name!r}"
        return (
            f"<JoinSet{named} tasks={len(self._tasks)} finished={finished} spawned={self._spawned}>"
        )
