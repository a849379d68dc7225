"""`Console`: watch every task of a running event loop, as tokio-console does for Tokio."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import shutil
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

from telemetry_lab.console._asyncio_private import awaited_future, unretrieved_exception
from telemetry_lab.console.places import Place
from telemetry_lab.console.recorder import READY, RUNNING, Recorder, TaskRecord
from telemetry_lab.console.snapshot import (
    ConsoleSnapshot,
    ConsoleWarning,
    ResourceRow,
    TaskRow,
    TaskState,
    task_label,
)
from telemetry_lab.console.table import seconds
from telemetry_lab.console.waits import (
    Waits,
    await_chain,
    collect_waits,
    describe_frame_wait,
    describe_primitive_wait,
    location,
    owners_of_frames,
    why_stuck,
)

if TYPE_CHECKING:
    from telemetry_lab.console.widget import ConsoleView

__all__ = ["Console"]

logger = logging.getLogger(__name__)

Listener = Callable[[ConsoleSnapshot], None]

_LOOP_ANSWER = 0.25
"""Seconds the console's thread waits for the loop to build a snapshot before building it
itself (the loop is blocked, or too busy to answer)."""


class TextOut(Protocol):
    """Where `print_every` writes: anything with `write` (and `flush`)."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


class Console:
    """Watch every task of the running event loop: any asyncio code, not only the gateway.

    Start it inside the loop to watch (`async with Console() as console:` in a script, or
    `console.start()` in a notebook cell), then print `console.snapshot()`, display
    `console.widget` in JupyterLab, or `print_every(1.0)` on stderr. Stop it to give the
    loop back exactly as it was; while no console runs there is nothing to pay.

    Args:
        blocked_threshold: a step running longer than this (seconds) blocks the loop and
            gets a `blocked_loop` warning (asyncio's debug mode uses 0.1 s).
        stuck_threshold: a task waiting longer than this on a resource that nobody can
            complete gets a `stuck` warning.
        refresh_interval: seconds between two updates of the widget and the printer.
        keep_done: how many finished tasks stay in the table.
        unretrieved_after: a failed task whose exception nobody retrieved this long after
            it finished gets an `unretrieved_exception` warning.
    """

    def __init__(
        self,
        *,
        blocked_threshold: float = 0.05,
        stuck_threshold: float = 1.0,
        refresh_interval: float = 1.0,
        keep_done: int = 20,
        unretrieved_after: float = 0.5,
    ) -> None:
        for field, value, low in (
            ("blocked_threshold", blocked_threshold, 0.001),
            ("stuck_threshold", stuck_threshold, 0.0),
            ("refresh_interval", refresh_interval, 0.05),
            ("unretrieved_after", unretrieved_after, 0.0),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= low:
                raise ValueError(f"{field} must be a number >= {low} (seconds), got {value!r}")
        if isinstance(keep_done, bool) or not isinstance(keep_done, int) or keep_done < 0:
            raise ValueError(f"keep_done must be an int >= 0, got {keep_done!r}")
        self.blocked_threshold = float(blocked_threshold)
        self.stuck_threshold = float(stuck_threshold)
        self.refresh_interval = float(refresh_interval)
        self.keep_done = keep_done
        self.unretrieved_after = float(unretrieved_after)
        self._recorder: Recorder | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self._stuck_cache: dict[tuple[int, float], str | None] = {}
        self._view: ConsoleView | None = None
        self._last: ConsoleSnapshot | None = None

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the console is watching a loop now."""
        return self._recorder is not None and self._recorder.active

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop being watched (None before `start()` and after `stop()`)."""
        return self._recorder.loop if self.running and self._recorder else None

    def start(self) -> Self:
        """Start watching the running loop (call it from async code or a notebook cell).

        Raises:
            RuntimeError: no loop is running here, this console already runs, or another
                console watches this loop.
        """
        if self.running:
            raise RuntimeError("this Console is already running; stop() it first")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "Console.start() needs a running event loop: call it from async code "
                "(`async with Console() as console:`), or in a notebook cell (JupyterLab "
                "runs cells in its loop)"
            ) from None
        recorder = Recorder(
            loop, blocked_threshold=self.blocked_threshold, keep_done=self.keep_done
        )
        recorder.install()
        self._recorder = recorder
        self._stuck_cache.clear()
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._watch, name="telemetry-lab-console", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching and give the loop back as it was (idempotent, any thread).

        The last snapshot stays available (`snapshot()` returns it) and the widget shows it.
        """
        recorder = self._recorder
        if recorder is None or not recorder.active:
            return
        with contextlib.suppress(Exception):
            self._last = self._build()
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)
        if threading.get_ident() == recorder.thread_id or recorder.loop.is_closed():
            recorder.uninstall()
        else:  # the loop's call_soon is only ever changed from the loop's own thread
            done = threading.Event()

            def uninstall() -> None:
                recorder.uninstall()
                done.set()

            recorder.loop.call_soon_threadsafe(uninstall)
            done.wait(timeout=2.0)
        self._notify(self._last)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- looking -------------------------------------------------------------------------

    def snapshot(self) -> ConsoleSnapshot:
        """What the console knows now, frozen (from any thread; print it for a table).

        After `stop()`, the last snapshot taken. From another thread while the loop is
        blocked, it is taken there, with the stall as an ongoing `blocked_loop` warning.
        """
        if not self.running:
            if self._last is not None:
                return self._last
            raise RuntimeError("the Console has not been started: call start() first")
        return self._build_here()

    def print_every(self, interval: float | None = None, file: TextOut | None = None) -> None:
        """Print the table every `interval` seconds (default `refresh_interval`) on `file`.

        The printing runs in the console's thread, so it goes on while the loop is blocked.
        """
        out = file if file is not None else sys.stderr
        every = self.refresh_interval if interval is None else interval
        state = {"next": 0.0}

        def show(snapshot: ConsoleSnapshot) -> None:
            now = time.monotonic()
            if now >= state["next"] or snapshot.loop_blocked_for:
                state["next"] = now + every
                width = max(100, shutil.get_terminal_size((120, 24)).columns)
                print(snapshot.format(width=width), file=out, flush=True)

        self.add_listener(show)

    @property
    def widget(self) -> Any:
        """A live table for JupyterLab, refreshed from the console's thread."""
        if self._view is None:
            from telemetry_lab.console.widget import ConsoleView

            self._view = ConsoleView(self)
            self.add_listener(self._view.show)
            if self.running or self._last is not None:
                self._view.show(self.snapshot())
        return self._view.widget

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(snapshot)` from the console's thread at every refresh."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling `listener`."""
        with self._lock, contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Console {state} blocked_threshold={self.blocked_threshold}>"

    # --- the console's thread ------------------------------------------------------------

    def _watch(self) -> None:
        """The console's thread: watch for stalls every few milliseconds, and refresh.

        It never waits for the loop: a refresh asks the loop to build a snapshot and picks
        it up at a later poll; if the loop does not answer within `_LOOP_ANSWER` seconds
        (it is blocked), the thread builds the snapshot itself. So a stall is always seen
        while it happens, whatever the listeners are doing.
        """
        recorder = self._recorder
        assert recorder is not None
        poll = min(0.01, self.blocked_threshold / 5)
        next_refresh = time.monotonic() + self.refresh_interval
        last_stall = None
        pending: concurrent.futures.Future[ConsoleSnapshot] | None = None
        asked_at = 0.0
        while not self._stopping.wait(poll):
            loop = recorder.loop
            if loop.is_closed():
                break
            stall = recorder.check_stall()
            now = time.monotonic()
            if pending is not None:
                if pending.done():
                    answer, pending = pending, None
                    try:
                        self._notify(answer.result())
                    except Exception:  # the loop could not build it: build it here
                        self._notify(self._build_here())
                elif stall is not None or now - asked_at > _LOOP_ANSWER:
                    pending.cancel()
                    pending = None
                    self._notify(self._build_here())
            if stall is not None and stall is not last_stall:
                self._notify(self._build_here())  # show a new stall at once
            last_stall = stall
            if now < next_refresh:
                continue
            next_refresh = now + self.refresh_interval
            if not self._listeners or pending is not None:
                continue
            if stall is not None or not loop.is_running():
                self._notify(self._build_here())
            else:
                pending, asked_at = self._ask_loop(loop), now

    def _ask_loop(
        self, loop: asyncio.AbstractEventLoop
    ) -> concurrent.futures.Future[ConsoleSnapshot] | None:
        """Ask `loop` to build a snapshot soon; return the future it will resolve."""
        future: concurrent.futures.Future[ConsoleSnapshot] = concurrent.futures.Future()

        def build() -> None:
            if not future.set_running_or_notify_cancel():
                return  # the thread gave up waiting (the loop was blocked)
            try:
                future.set_result(self._build())
            except BaseException as exc:
                future.set_exception(exc)

        try:
            loop.call_soon_threadsafe(build)
        except RuntimeError:  # the loop closed meanwhile
            return None
        return future

    def _notify(self, snapshot: ConsoleSnapshot | None) -> None:
        if snapshot is None:
            return
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(snapshot)
            except Exception:  # a broken view must not stop the console
                logger.exception("console listener %r failed; removing it", listener)
                self.remove_listener(listener)

    def _build_here(self) -> ConsoleSnapshot:
        """Build a snapshot in this thread. Off the loop's thread, the loop may change a
        registry while it is read ("changed size during iteration"): read it again."""
        recorder = self._recorder
        if recorder is None or threading.get_ident() == recorder.thread_id:
            return self._build()
        for _ in range(4):
            try:
                return self._build()
            except RuntimeError:
                time.sleep(0.001)
        return self._build()

    # --- building a snapshot -------------------------------------------------------------

    def _build(self) -> ConsoleSnapshot:
        recorder = self._recorder
        assert recorder is not None
        now = time.perf_counter()
        running = recorder.running
        stall = recorder.stall
        waits = collect_waits(recorder.loop)
        rows: list[TaskRow] = []
        warnings: list[ConsoleWarning] = []
        candidates: list[tuple[TaskRow, asyncio.Task[Any], Any, float]] = []
        for record in list(recorder.records.values()):
            task = record.task()
            if task is None:
                continue
            row, queue = self._live_row(record, task, running, waits, now)
            rows.append(row)
            if queue is not None and row.waiting_seconds >= self.stuck_threshold:
                candidates.append((row, task, queue, record.wait_since))
        finished = list(recorder.finished)
        rows.extend(_done_row(record) for record in finished)
        warnings.extend(self._blocked_warnings(recorder))
        blocked_for = 0.0
        if running is not None and now - running[1] >= self.blocked_threshold:
            blocked_for = now - running[1]
            warnings.append(_ongoing_stall(running[0], blocked_for, stall, self.blocked_threshold))
        if candidates:
            warnings.extend(self._stuck_warnings(candidates, recorder, finished))
        warnings.extend(self._unretrieved_warnings(recorder, finished, now))
        resources = tuple(
            ResourceRow(
                name=getattr(resource, "name", None),
                description=resource.describe(),
                waiting=tuple(
                    (operation, task.get_name() if task is not None else "(no task)")
                    for operation, task in waiting
                ),
            )
            for resource, waiting in waits.resources
        )
        return ConsoleSnapshot(
            tasks=tuple(rows),
            resources=tuple(sorted(resources, key=lambda r: (r.name is None, r.name or ""))),
            warnings=tuple(warnings),
            uptime=now - recorder.started,
            loop_blocked_for=blocked_for,
        )

    def _live_row(
        self,
        record: TaskRecord,
        task: asyncio.Task[Any],
        running: tuple[TaskRecord, float] | None,
        waits: Waits,
        now: float,
    ) -> tuple[TaskRow, Any]:
        busy = record.busy
        awaited = awaited_future(task)
        state: TaskState
        if running is not None and running[0] is record:
            state = "running"
            busy += now - running[1]
        elif task is asyncio.current_task(task.get_loop()):
            state = "running"  # a step the console did not time (it began before start())
        elif task.done():
            state = "done"
        elif awaited is not None:
            state = "waiting"
        elif record.state in (READY, RUNNING):
            state = "ready"
        else:
            state = "waiting"
        frames, _ = await_chain(task.get_coro()) if state != "running" else ([], None)
        waiting_on = ""
        queue = None
        if state == "waiting":
            waiting_on = describe_primitive_wait(waits, task, frames) or describe_frame_wait(
                frames, awaited
            )
            entries = waits.queues.get(id(task))
            queue = entries[0][0] if entries and len(entries) == 1 else None
        place = location(frames)
        row = TaskRow(
            name=task.get_name(),
            state=state,
            waiting_on=waiting_on,
            busy_seconds=busy,
            steps=record.steps,
            wakeups=record.wakeups,
            waiting_seconds=max(0.0, now - record.wait_since) if state == "waiting" else 0.0,
            created_at=record.created_at,
            coroutine=record.coroutine,
            ready_seconds=record.ready_total
            + (now - record.ready_since if state == "ready" else 0.0),
            location=place.describe() if place is not None else "",
            task_id=id(task),
        )
        return row, queue

    def _blocked_warnings(self, recorder: Recorder) -> list[ConsoleWarning]:
        grouped: dict[tuple[str, str], list[Any]] = {}
        for step in list(recorder.blocked):
            key = (step.task, step.place.short if step.place else "")
            grouped.setdefault(key, []).append(step)
        warnings = []
        for (task, _), steps in grouped.items():
            longest = max(steps, key=lambda s: s.duration)
            last = steps[-1]
            shown = last.label
            times = (
                f"{len(steps)} times, longest {seconds(longest.duration)}"
                if len(steps) > 1
                else (f"for {seconds(longest.duration)}")
            )
            threshold = f"{self.blocked_threshold * 1000:.0f} ms"
            if last.place is None:
                where = ""
            elif last.seen_live:
                where = f", at {last.place.describe()}"
            else:
                where = f"; the step ended at {last.place.describe()}"
            warnings.append(
                ConsoleWarning(
                    kind="blocked_loop",
                    task=task,
                    message=(
                        f"task {shown!r} blocked the loop {times} in one step (more than "
                        f"{threshold}: every other task waited){where}"
                    ),
                    location=last.place.short if last.place else "",
                    stack=tuple(place.describe() for place in last.stack),
                )
            )
        return warnings

    def _stuck_warnings(
        self,
        candidates: list[tuple[TaskRow, asyncio.Task[Any], Any, float]],
        recorder: Recorder,
        finished: list[TaskRecord],
    ) -> list[ConsoleWarning]:
        owners: dict[int, asyncio.Task[Any]] | None = None
        dead = [(record.name, record.task()) for record in finished if record.failed_at]
        warnings = []
        for row, task, queue, since in candidates:
            key = (id(task), since)
            if key not in self._stuck_cache:
                if owners is None:
                    live = [r.task() for r in list(recorder.records.values())]
                    owners = owners_of_frames(t for t in live if t is not None)
                self._stuck_cache[key] = why_stuck(queue, task, owners, dead)
            reason = self._stuck_cache[key]
            if reason is None:
                continue
            where = f" at {row.location}" if row.location else ""
            warnings.append(
                ConsoleWarning(
                    kind="stuck",
                    task=row.name,
                    message=(
                        f"task {row.name!r} has waited {row.waiting_seconds:.1f} s to "
                        f"{row.waiting_on}{where}; {reason}"
                    ),
                    location=row.location.split(" in ")[0] if row.location else "",
                    ongoing=True,
                )
            )
        if len(self._stuck_cache) > 1000:
            self._stuck_cache.clear()
        return warnings

    def _unretrieved_warnings(
        self, recorder: Recorder, finished: list[TaskRecord], now: float
    ) -> list[ConsoleWarning]:
        warnings = []
        seen: set[str] = set()
        for record in finished:
            task = record.task()
            if (
                task is None
                or not record.failed_at
                or now - record.done_at < self.unretrieved_after
            ):
                continue
            if unretrieved_exception(task) is None:
                continue
            text = record.outcome.removeprefix("failed: ")
            warnings.append(_unretrieved(record.name, text, record.failed_at))
            seen.add(record.name)
        for name, text, place in list(recorder.unretrieved):
            if name not in seen:
                warnings.append(_unretrieved(name, text, place))
        return warnings


def _unretrieved(name: str, exception: str, place: Place | None) -> ConsoleWarning:
    where = f" at {place.describe()}" if place else ""
    return ConsoleWarning(
        kind="unretrieved_exception",
        task=name,
        message=(
            f"task {name!r} failed with {exception}{where}, and nobody awaited it: keep a "
            "reference and await it (or use a TaskGroup / JoinSet), or the error is lost"
        ),
        location=place.short if place else "",
    )


def _ongoing_stall(
    record: TaskRecord, blocked_for: float, stall: Any, threshold: float
) -> ConsoleWarning:
    place = stall.place if stall is not None and stall.record is record else None
    where = f", at {place.describe()}" if place else ""
    task = record.task()
    name = task.get_name() if task is not None else record.name
    return ConsoleWarning(
        kind="blocked_loop",
        task=name,
        message=(
            f"task {task_label(name, record.coroutine)!r} is blocking the loop right now: one step "
            f"has run for {seconds(blocked_for)} (more than {threshold * 1000:.0f} ms){where}"
        ),
        location=place.short if place else "",
        stack=tuple(p.describe() for p in stall.stack) if place else (),
        ongoing=True,
    )


def _done_row(record: TaskRecord) -> TaskRow:
    return TaskRow(
        name=record.name,
        state="done",
        waiting_on=record.outcome,
        busy_seconds=record.busy,
        steps=record.steps,
        wakeups=record.wakeups,
        waiting_seconds=0.0,
        created_at=record.created_at,
        coroutine=record.coroutine,
        ready_seconds=record.ready_total,
        location=record.failed_at.describe() if record.failed_at else "",
    )
