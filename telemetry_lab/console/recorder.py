"""Record every step of every task of one loop: the console's instrument (its hot path).

asyncio runs a task as a series of *steps*: each one resumes the coroutine and runs it to
its next suspension. Every step is scheduled through `loop.call_soon` (the first one by
`create_task`, the others by the wake-up a finished future schedules, or by a bare `yield`),
and the scheduled callback is bound to its task. So `Recorder` replaces `call_soon` on the
loop *instance* (the class is untouched; `uninstall()` deletes the override and the loop is
as it was): a task's callback is wrapped in `_step`, which times the step; anything else
passes through untouched. Nothing else in the loop changes, and when no console runs there
is no cost at all.

Per task it keeps a `TaskRecord`: time busy in steps, time spent ready (scheduled, waiting
for its turn), steps, wake-ups, and since when it waits. Tasks are held weakly: watching a
task never keeps it alive (asyncio's "keep a reference to your tasks" rule still bites).

A step that blocks the loop cannot be seen from the loop, so `check_stall()` runs in the
console's thread: when one step has run longer than the threshold it copies the loop
thread's stack, and the warning can say where the loop is stuck while it still is.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import CodeType, FrameType, MethodType
from typing import Any

from telemetry_lab.console._asyncio_private import (
    TASK_TYPES,
    failure,
    frame_of_thread,
)
from telemetry_lab.console.places import (
    Place,
    is_internal,
    place_of_frame,
    short_place,
    stack_of,
)
from telemetry_lab.console.snapshot import task_label

__all__ = ["BlockedStep", "Recorder", "Stall", "TaskRecord"]

READY = "ready"
RUNNING = "running"
WAITING = "waiting"
DONE = "done"

_now = time.perf_counter


class TaskRecord:
    """What the console knows of one task (updated on the loop thread only)."""

    __slots__ = (
        "busy",
        "coroutine",
        "created_at",
        "done_at",
        "failed_at",
        "name",
        "outcome",
        "ready_since",
        "ready_total",
        "ref",
        "state",
        "steps",
        "wait_since",
        "wakeups",
    )

    def __init__(
        self,
        ref: weakref.ref[asyncio.Task[Any]],
        name: str,
        coroutine: str,
        created_at: str,
        now: float,
    ) -> None:
        self.ref = ref
        self.name = name
        self.coroutine = coroutine
        self.created_at = created_at
        self.state = WAITING
        self.busy = 0.0
        self.steps = 0
        self.wakeups = 0
        self.ready_since = now
        self.ready_total = 0.0
        self.wait_since = now
        self.done_at = 0.0
        self.outcome = ""
        self.failed_at: Place | None = None

    def task(self) -> asyncio.Task[Any] | None:
        return self.ref()


@dataclass(frozen=True, slots=True)
class Stall:
    """A step seen from the watchdog thread while it was still running too long."""

    record: TaskRecord
    started: float
    stack: tuple[Place, ...]
    place: Place | None


@dataclass(frozen=True, slots=True)
class BlockedStep:
    """A step that ran longer than the threshold (recorded when it ended)."""

    task: str
    duration: float
    place: Place | None
    stack: tuple[Place, ...]
    seen_live: bool
    """Whether the watchdog saw it while it ran (then `place` is where it was stuck)."""
    label: str
    """The task's name as a person reads it (`Task-12 (shell_main)`)."""


class Recorder:
    """Instrument one loop: per-task steps, time busy, ready and waiting; blocked steps.

    Args:
        loop: the loop to watch.
        blocked_threshold: a step longer than this (seconds) is recorded as blocking.
        keep_done: how many finished tasks stay visible.
        keep_blocked: how many blocked steps stay visible.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        blocked_threshold: float,
        keep_done: int,
        keep_blocked: int = 20,
    ) -> None:
        self.loop = loop
        self.blocked_threshold = blocked_threshold
        self.records: dict[int, TaskRecord] = {}
        """Live tasks by `id()` (a record leaves when its task finishes or is collected)."""
        self.finished: deque[TaskRecord] = deque(maxlen=keep_done)
        self.blocked: deque[BlockedStep] = deque(maxlen=keep_blocked)
        self.unretrieved: deque[tuple[str, str, Place | None]] = deque(maxlen=keep_blocked)
        """(task, exception, place) that asyncio reported as never retrieved."""
        self.running: tuple[TaskRecord, float] | None = None
        """The step running now and when it started (read by the watchdog thread)."""
        self.stall: Stall | None = None
        self.started = _now()
        self.active = False
        self.thread_id = 0
        self._call: Callable[..., asyncio.Handle] | None = None
        self._call_soon: Callable[..., asyncio.Handle] | None = None
        self._previous_handler: Any = None

    # --- installing --------------------------------------------------------------------

    def install(self) -> None:
        """Start recording: override `call_soon` on the loop instance, adopt its tasks."""
        loop = self.loop
        try:
            overrides = vars(loop)
        except TypeError:
            raise RuntimeError(
                f"the console cannot watch {type(loop).__name__}: it needs an event loop "
                "whose call_soon can be overridden (asyncio's own loops can; uvloop cannot)"
            ) from None
        if "call_soon" in overrides:
            raise RuntimeError(
                "this event loop's call_soon is already overridden (is another Console "
                "watching it? stop that one first)"
            )
        self.thread_id = threading.get_ident()
        self._call = loop.call_soon
        now = _now()
        current = asyncio.current_task(loop)
        for task in asyncio.all_tasks(loop):
            record = self._adopt(task, now, "(before the console started)")
            if task is current:
                record.state = RUNNING  # the task starting the console; its step is untimed
        self._previous_handler = loop.get_exception_handler()
        loop.set_exception_handler(self._exception_handler)
        self._call_soon, step = self._hot_path()
        global _STEP_CODE
        _STEP_CODE = step.__code__  # where the watchdog cuts the loop thread's stack
        loop.call_soon = self._call_soon  # type: ignore[method-assign,assignment]
        self.active = True

    def uninstall(self) -> None:
        """Stop recording and give the loop back as it was (idempotent)."""
        if not self.active:
            return
        self.active = False
        for record in list(self.records.values()):
            task = record.task()
            if task is not None:
                task.remove_done_callback(self._finished)
        loop = self.loop
        if vars(loop).get("call_soon") is self._call_soon:
            del loop.call_soon
        if loop.get_exception_handler() == self._exception_handler:
            loop.set_exception_handler(self._previous_handler)

    # --- the hot path (loop thread) ----------------------------------------------------

    def _hot_path(
        self,
    ) -> tuple[Callable[..., asyncio.Handle], Callable[..., None]]:
        """Build the `call_soon` override and the step wrapper, as closures.

        Closures over local names, not methods: these two functions run for every step of
        every task (bench/console.py measures what they cost).
        """
        call = self._call
        assert call is not None
        records = self.records
        adopt = self._adopt
        blocked = self._blocked
        threshold = self.blocked_threshold
        exact_types = frozenset(TASK_TYPES)
        now = _now
        bind = MethodType
        recorder = self

        def step(task: Any, record: TaskRecord, callback: Any, args: Any) -> None:
            # Bound to its task (`MethodType(step, task)`), as asyncio's own step is: debug
            # mode's "Executing <Task ...> took 0.2 seconds" still names the task.
            if not recorder.active:  # scheduled before the console stopped
                callback(*args)
                return
            start = now()
            record.ready_total += start - record.ready_since
            record.state = RUNNING
            outer = recorder.running  # a nested loop (nest_asyncio) runs steps in a step
            recorder.running = (record, start)
            try:
                callback(*args)
            finally:
                end = now()
                recorder.running = outer
                record.busy += end - start
                record.steps += 1
                if record.state is RUNNING:  # it did not schedule itself again (a yield)
                    record.state = WAITING
                    record.wait_since = end
                if end - start >= threshold:
                    blocked(record, start, end)

        def call_soon(callback: Any, *args: Any, context: Any = None) -> asyncio.Handle:
            # `task_of_callback()` inlined (its private detail is tested there): an exact
            # class is a set lookup, isinstance() only for subclasses and other callbacks.
            task = getattr(callback, "__self__", None)
            if task.__class__ not in exact_types and not isinstance(task, TASK_TYPES):
                return call(callback, *args, context=context)
            record = records.get(id(task))
            stamp = now()
            if record is None:
                record = adopt(task, stamp, None)
            else:
                record.wakeups += 1
            record.state = READY
            record.ready_since = stamp
            return call(bind(step, task), record, callback, args, context=context)

        return call_soon, step

    # --- the rest (loop thread) --------------------------------------------------------

    def _adopt(self, task: asyncio.Task[Any], now: float, created_at: str | None) -> TaskRecord:
        key = id(task)
        records = self.records

        def forget(_: object, key: int = key) -> None:
            records.pop(key, None)

        if created_at is None:
            created_at = _creation_site()
        coro = task.get_coro()
        coroutine = getattr(coro, "__qualname__", None) or type(coro).__name__
        record = TaskRecord(weakref.ref(task, forget), task.get_name(), coroutine, created_at, now)
        task.add_done_callback(self._finished)  # asyncio calls it once the task is done
        records[key] = record
        return record

    def _finished(self, task: asyncio.Future[Any]) -> None:
        """The done callback of every task watched: record how it ended."""
        record = self.records.get(id(task))
        if self.active and record is not None and record.ref() is task:
            self._finish(record, task, _now())

    def _finish(self, record: TaskRecord, task: asyncio.Task[Any], now: float) -> None:
        record.state = DONE
        record.done_at = now
        record.name = task.get_name()
        if task.cancelled():
            record.outcome = "cancelled"
        else:
            exc = failure(task)
            if exc is None:
                record.outcome = "returned"
            else:
                record.outcome = f"failed: {_exception_text(exc)}"
                record.failed_at = _raise_site(exc)
        self.records.pop(id(task), None)
        if record.created_at == MACHINERY_SITE and record.outcome == "returned":
            return  # the kernel's own bookkeeping tasks: not worth a row once done
        self.finished.append(record)

    def _blocked(self, record: TaskRecord, start: float, end: float) -> None:
        task = record.task()
        if task is not None:
            record.name = task.get_name()
        stall = self.stall
        if stall is not None and stall.started == start:
            place, stack, live = stall.place, stall.stack, True
        else:  # too short for the watchdog to see: say where the step ended
            frame = _suspended_frame(task) if task is not None else None
            place, stack, live = (place_of_frame(frame) if frame else None), (), False
        self.stall = None
        shown = task_label(record.name, record.coroutine)
        self.blocked.append(BlockedStep(record.name, end - start, place, stack, live, shown))

    def _exception_handler(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        future = context.get("future")
        exc = context.get("exception")
        if isinstance(future, TASK_TYPES) and isinstance(exc, BaseException):
            message = str(context.get("message", ""))
            if "never retrieved" in message:
                name = future.get_name()
                self.unretrieved.append((name, _exception_text(exc), _raise_site(exc)))
        handler = self._previous_handler
        if handler is not None:
            handler(loop, context)
        else:
            loop.default_exception_handler(context)

    # --- the watchdog (console thread) -------------------------------------------------

    def check_stall(self) -> Stall | None:
        """If one step has been running longer than the threshold, record where it is.

        Called from the console's thread, never from the loop's.
        """
        running = self.running
        if running is None:
            return None
        record, start = running
        if _now() - start < self.blocked_threshold:
            return None
        stall = self.stall
        if stall is not None and stall.started == start:
            return stall
        stack = _loop_stack(frame_of_thread(self.thread_id))
        if self.running is not running:
            return None  # the step ended meanwhile: the stack is of something else
        place = _culprit(stack)
        stall = Stall(record, start, stack, place)
        self.stall = stall
        return stall


def _exception_text(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _raise_site(exc: BaseException) -> Place | None:
    """Where `exc` was raised: the innermost frame of the traceback outside the machinery
    (`float(raw)` in the user's code, not the stdlib's line that raised)."""
    tb = exc.__traceback__
    places: list[Place] = []
    while tb is not None:
        code = tb.tb_frame.f_code
        places.append(Place.of(code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    return _culprit(tuple(places))


MACHINERY_SITE = "(asyncio or the notebook's kernel)"
"""The creation site of a task that no code of the user's asked for (the kernel's own)."""


def _creation_site() -> str:
    """Where the task being created was asked for: the first frame outside the machinery."""
    frame = inspect.currentframe()
    while frame is not None:
        filename = frame.f_code.co_filename
        if not is_internal(filename):
            return short_place(filename, frame.f_lineno or 0)
        frame = frame.f_back
    return MACHINERY_SITE


def _suspended_frame(task: asyncio.Task[Any]) -> FrameType | None:
    from telemetry_lab.console.waits import await_chain

    frames, _ = await_chain(task.get_coro())
    return frames[-1] if frames else None


def _loop_stack(frame: FrameType | None) -> tuple[Place, ...]:
    """The loop thread's stack below the running step, outermost first (code only: the
    machinery's frames are left out)."""
    frames: list[FrameType] = []
    while frame is not None:
        if frame.f_code is _STEP_CODE:
            break
        frames.append(frame)
        frame = frame.f_back
    frames.reverse()
    stack = stack_of(frames)
    mine = tuple(place for place in stack if not place.internal)
    return mine or stack


def _culprit(stack: tuple[Place, ...]) -> Place | None:
    """The innermost place outside asyncio's and the console's own code."""
    for place in reversed(stack):
        if not place.internal:
            return place
    return stack[-1] if stack else None


_STEP_CODE: CodeType | None = None
"""The code of the step wrapper (the same for every console): the stack is cut there."""
