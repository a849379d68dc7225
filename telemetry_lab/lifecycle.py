"""Run a gateway's lifecycle: its phases, and how a run ends whatever ends it.

A gateway goes NEW → RUNNING → DRAINING → STOPPED (or RUNNING → STOPPED when it could not
start its pipeline), once: `GatewayPhase.to` refuses any other move. `RunControl` sequences
one run's steps through those phases, owns its tasks (one `JoinSet`), drains them in order
under `shutdown_timeout` (a level-triggered shutdown watch, and a deadline watch for the
slow), and decides how the run ends:
- its `duration` passes, or `request_stop()` is called: it drains and returns the result;
- the task running it is cancelled (`asyncio.timeout`, a `TaskGroup` sibling failing,
  `task.cancel()`): it drains the same way, then the `CancelledError` goes on, as asyncio
  expects (nothing here swallows a cancellation it did not request);
- `request_abort()`, or a second cancellation while it drains: every task is cancelled at
  once, and the partial result still comes back.
Work that cannot be interrupted (opening the database, counting and recording the report)
always runs to its end. `GatewayStatistics` is the frozen snapshot of every component at
one moment, which the sampler, the report, the dashboard and the CLI read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

from telemetry_lab._private import wait_to_the_end
from telemetry_lab.aggregator import AggregatorStatistics
from telemetry_lab.client import ClientStatistics
from telemetry_lab.config import GatewayConfig
from telemetry_lab.device import DeviceStatistics
from telemetry_lab.metrics import SemaphoreStatistics
from telemetry_lab.primitives import (
    BroadcastStatistics,
    ChannelStatistics,
    JoinSet,
    WatchReceiver,
    on_changed,
    on_timeout,
    select,
    watch,
)
from telemetry_lab.storage import StorageStatistics

__all__ = ["GatewayPhase", "GatewayStatistics", "RunControl"]

log = logging.getLogger("telemetry_lab.lifecycle")

T = TypeVar("T")
R = TypeVar("R")


class GatewayPhase(Enum):
    """The lifecycle of one `Gateway`: NEW → RUNNING → DRAINING → STOPPED."""

    NEW = "new"
    RUNNING = "running"
    DRAINING = "draining"
    STOPPED = "stopped"

    def to(self, phase: GatewayPhase, owner: object) -> GatewayPhase:
        """Return `phase` if `owner` may move there from this phase.

        Raises:
            RuntimeError: an illegal move (the message shows `owner`'s repr).
        """
        if phase not in _ALLOWED[self]:
            hint = "; a Gateway runs once: build a new one" if phase is GatewayPhase.RUNNING else ""
            raise RuntimeError(f"{owner!r} cannot go from {self.name} to {phase.name}{hint}")
        return phase


_ALLOWED = {
    GatewayPhase.NEW: {GatewayPhase.RUNNING},
    GatewayPhase.RUNNING: {GatewayPhase.DRAINING, GatewayPhase.STOPPED},
    GatewayPhase.DRAINING: {GatewayPhase.STOPPED},
    GatewayPhase.STOPPED: set(),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayStatistics:
    """A snapshot of every component of a running (or finished) gateway."""

    phase: GatewayPhase
    """Where the gateway is in its lifecycle."""
    elapsed: float
    """Loop-clock seconds since the run started (0 before it starts)."""
    telemetry: ChannelStatistics
    """The device → aggregator channel."""
    storage_channel: ChannelStatistics
    """The aggregator → storage channel."""
    updates: BroadcastStatistics
    """The update broadcast to clients."""
    bandwidth: SemaphoreStatistics
    """The device bandwidth semaphore."""
    db_pool: SemaphoreStatistics | None
    """The database connection pool (None before the run opens it)."""
    aggregator: AggregatorStatistics
    """The aggregator."""
    storage: StorageStatistics | None
    """The storage writer (None before the run starts it)."""
    devices: tuple[DeviceStatistics, ...]
    """Each device."""
    clients: tuple[ClientStatistics, ...]
    """Each client."""


class RunControl:
    """One run's lifecycle: its phase and clock, its tasks, their shutdown, how it ended.

    It owns the run's `JoinSet` (`tasks`) and its two shutdown signals, but not what runs
    in it: `run()` sequences the owner's steps. `request_stop` and `request_abort` must be
    called in the run's loop (the gateway hands calls from other threads over).
    """

    def __init__(self, owner: object, config: GatewayConfig) -> None:
        self.phase = GatewayPhase.NEW
        self.loop: asyncio.AbstractEventLoop | None = None
        """The loop the run runs in, once it has started."""
        self.started_at = self.stopped_at = 0.0
        """Loop times the run started and stopped at."""
        self.wall_started = 0.0
        """`time.perf_counter()` when the run started."""
        self.ended_by = "duration"
        """What ended the run: "duration", "stop", "cancel", "abort" or "failure"."""
        self.stop_requested = self.abort_requested = False
        self.tasks = JoinSet[None](name="gateway")
        """The run's tasks: every one is joined (or cancelled) by the drain."""
        self.tasks_started = self.tasks_stopped_cleanly = 0
        self.errors: list[str] = []
        """Tasks that failed, in words."""
        self._owner, self._config = owner, config
        self._stop_tx, self._stop_rx = watch(False, name="stop")
        self._shutdown_tx, shutdown = watch(False, name="shutdown")
        no_deadline: float | None = None  # the drain's deadline, once it has started
        self._deadline_tx, deadline = watch(no_deadline, name="deadline")
        shutdown.close()  # the tasks subscribe (see below)
        deadline.close()

    def shutdown_receiver(self) -> WatchReceiver[bool]:
        """Return a receiver that turns True when the drain starts (the task closes it)."""
        return self._shutdown_tx.subscribe()

    def deadline_receiver(self) -> WatchReceiver[float | None]:
        """Return a receiver of the loop time by which a slow task should have finished."""
        return self._deadline_tx.subscribe()

    def enter(self, phase: GatewayPhase) -> None:
        """Move to `phase` (see `GatewayPhase.to`), noting the time a run starts and stops."""
        self.phase = self.phase.to(phase, self._owner)
        if phase is GatewayPhase.RUNNING:
            self.loop = asyncio.get_running_loop()
            self.wall_started = time.perf_counter()
            self.started_at = self.loop.time()
        elif phase is GatewayPhase.STOPPED:
            assert self.loop is not None
            self.stopped_at = self.loop.time()

    def elapsed(self) -> float:
        """Return the loop-clock seconds since the run started (0 before, fixed after)."""
        if self.phase is GatewayPhase.NEW:
            return 0.0
        if self.phase is GatewayPhase.STOPPED:
            return self.stopped_at - self.started_at
        assert self.loop is not None
        return self.loop.time() - self.started_at

    def request_stop(self, ended_by: str) -> None:
        """Ask for the graceful drain now (idempotent; nothing once the run has stopped)."""
        if self.phase is GatewayPhase.STOPPED or self.stop_requested:
            return
        self.stop_requested = True
        if self.ended_by == "duration":
            self.ended_by = ended_by
        if ended_by == "stop" and self.phase is not GatewayPhase.NEW:
            log.warning("🛑 Stop requested: draining gracefully")
        self._stop_tx.send_replace(True)

    def request_abort(self) -> None:
        """Stop without draining: cancel every task now, or as soon as the drain starts."""
        if self.phase is GatewayPhase.STOPPED or self.abort_requested:
            return
        self.abort_requested = True
        self.ended_by = "abort"
        log.warning("🛑 Aborting: cancelling every task without draining")
        self.request_stop("abort")
        if self.phase is GatewayPhase.DRAINING:
            self.tasks.abort_all()

    def _cancelled(self) -> None:
        if self.ended_by in ("duration", "stop"):
            self.ended_by = "cancel"
        log.warning("🛑 Cancelled: draining gracefully, then the cancellation goes on")

    async def run(
        self,
        *,
        prepare: Callable[[], Coroutine[Any, Any, T]],
        start: Callable[[T], None],
        sample: Callable[[], object],
        failed: Callable[[], bool],
        finish: Callable[[bool], Coroutine[Any, Any, R]],
    ) -> R:
        """Run one run's steps in order, and return what `finish` returns.

        Args:
            prepare: uncancellable set-up (opening the database); if it fails the run
                stops and its error propagates, before any task has started.
            start: spawn the run's tasks into `tasks`, given what `prepare` returned.
            sample: called every `sample_interval` while the run runs.
            failed: whether the run must end now (a part of it has failed for good).
            finish: uncancellable wrap-up, given whether the drain was clean.

        Raises:
            CancelledError: the run was cancelled (after the drain and `finish`).
        """
        self.enter(GatewayPhase.RUNNING)
        loop = asyncio.get_running_loop()
        cancelled: asyncio.CancelledError | None = None
        preparing = loop.create_task(prepare(), name="gateway-open-database")
        try:
            await wait_to_the_end(preparing)  # a thread is opening the file: let it finish
        except asyncio.CancelledError as exc:
            cancelled = exc
        try:
            prepared = preparing.result()
        except BaseException:
            self.enter(GatewayPhase.STOPPED)
            if cancelled is not None:
                raise cancelled from None
            raise
        start(prepared)
        self.tasks_started = len(self.tasks)
        if cancelled is not None:
            self._cancelled()
        elif not self.stop_requested:
            try:
                await self._monitor(sample, failed)
            except asyncio.CancelledError as exc:
                cancelled = exc
                self._cancelled()
        draining = loop.create_task(self.drain(), name="gateway-drain")
        while not draining.done():
            try:
                await asyncio.wait([draining])
            except asyncio.CancelledError as exc:
                if cancelled is not None:  # cancelled again while draining: abort
                    self.request_abort()
                else:  # the first cancellation: it asks for what is happening already
                    cancelled = exc
                    self._cancelled()
        clean = draining.result()
        self.enter(GatewayPhase.STOPPED)
        sample()  # the last sample, once stopped
        finishing = loop.create_task(finish(clean), name="gateway-finish")
        try:
            await wait_to_the_end(finishing)  # count, record the report, close: never cut off
        except asyncio.CancelledError as exc:
            cancelled = cancelled or exc
        result = finishing.result()
        if cancelled is not None:
            raise cancelled
        return result

    async def _monitor(self, sample: Callable[[], object], failed: Callable[[], bool]) -> None:
        """Sample until the run's `duration` has passed, a stop request, or a failure."""
        loop = asyncio.get_running_loop()
        deadline = self.started_at + self._config.duration
        while True:
            now = loop.time()
            sample()
            if now >= deadline or self._stop_rx.borrow():
                return
            if self.tasks.statistics().current_finished:
                log.error("A pipeline task stopped early: shutting down")
                self.ended_by = "failure"
                return
            if failed():
                self.ended_by = "failure"
                return
            timeout = on_timeout(min(self._config.sample_interval, deadline - now))
            await select(on_changed(self._stop_rx), timeout, biased=True)

    async def drain(self) -> bool:
        """Signal shutdown and join every task; return whether it drained in time.

        The tasks see the shutdown receivers turn True and finish what they hold, each
        closing its outputs; all of it must be over within `shutdown_timeout`, past which
        every task still running is cancelled (and what it held is reported in flight).
        """
        self.enter(GatewayPhase.DRAINING)
        tasks, timeout = self.tasks, self._config.shutdown_timeout
        deadline = asyncio.get_running_loop().time() + timeout
        # Slow tasks (clients) leave a margin for everyone else: they skip what they cannot
        # finish by then.
        self._deadline_tx.send_replace(deadline - max(0.05 * timeout, min(0.2 * timeout, 0.5)))
        self._shutdown_tx.send_replace(True)
        if self.abort_requested:
            tasks.abort_all()
        else:
            log.info("🛑 Shutting down: draining devices → aggregator → storage → clients")
        try:
            async with asyncio.timeout_at(deadline):
                while (task := await tasks.join_next()) is not None:
                    self._record(task)
        except TimeoutError:
            log.error(
                "⏱️ Drain took longer than shutdown_timeout=%gs: cancelling %d tasks",
                timeout,
                len(tasks),
            )
            tasks.abort_all()
            while (task := await tasks.join_next()) is not None:
                self._record(task)
            return False
        return not self.abort_requested

    def _record(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            if not self.abort_requested:
                log.warning("Task %s was cancelled", task.get_name())
        elif (exc := task.exception()) is not None:
            log.error("Task %s failed", task.get_name(), exc_info=exc)
            self.errors.append(f"task {task.get_name()} failed: {type(exc).__name__}: {exc}")
        else:
            self.tasks_stopped_cleanly += 1

    def __repr__(self) -> str:
        return (
            f"<RunControl phase={self.phase.name} ended_by={self.ended_by!r} "
            f"tasks={len(self.tasks)}>"
        )
