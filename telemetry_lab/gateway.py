"""Wire the gateway together, run it for a while, drain it, and report.

    Device x N ─▶ channel ─▶ Aggregator ─▶ channel ─▶ StorageWriter ─▶ SQLite
                               ├─ broadcast ─▶ Client x M
                               └─ watch(SystemState) ─▶ dashboard, CLI

Every pipeline task is owned by one `JoinSet`. Shutdown is a level-triggered signal (a
`watch(False)` that turns True) and drains *in order*, each stage closing its outputs when
its inputs are exhausted: devices close their senders → the aggregator drains and closes
storage's channel and the broadcast → storage writes the last partial batch → clients drain.
The drain runs under `shutdown_timeout`; whatever is still inside at the deadline is
counted as in flight and reported, never hidden.

How a run ends:
- its `duration` passes, or `gateway.stop()` is called (from any thread): it drains and
  `run()` returns the report;
- the task running it is cancelled (`asyncio.timeout`, a `TaskGroup` sibling failing,
  `task.cancel()`): it drains the same way, then the `CancelledError` goes on, as asyncio
  expects; `gateway.report` keeps the report;
- `gateway.abort()`, or a second cancellation while it drains: every task is cancelled at
  once (SQLite writes already running in threads finish first), and the partial report
  says what was left in flight.
In every case the database connections are closed only once no thread uses them.

Three ways in:
- `await run_gateway(config)`: the real API (notebooks use top-level `await`).
- `start(config)`: a task for notebooks; cancelling it is a cancellation as above.
- `run(config, virtual_time=False)`: blocking, for scripts and tests; Ctrl-C stops the run
  gracefully and returns the report, a second Ctrl-C aborts and raises KeyboardInterrupt.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import signal
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from telemetry_lab._private import wait_to_the_end
from telemetry_lab.aggregator import Aggregator, AggregatorStatistics
from telemetry_lab.client import Client, ClientStatistics
from telemetry_lab.config import LIVE_KNOBS, UNTHROTTLED_ON_VIRTUAL_CLOCK, GatewayConfig, Knobs
from telemetry_lab.database import RunCounts
from telemetry_lab.device import Device, DeviceStatistics
from telemetry_lab.errors import ChannelError, LoopAlreadyRunning
from telemetry_lab.faults import StorageFaults
from telemetry_lab.metrics import MeteredSemaphore, MetricsSeries, Sample, SemaphoreStatistics
from telemetry_lab.models import Reading, Report, StateUpdate, SystemState
from telemetry_lab.primitives import (
    BroadcastStatistics,
    ChannelStatistics,
    JoinSet,
    broadcast,
    channel,
    on_changed,
    on_timeout,
    select,
    watch,
)
from telemetry_lab.signals import ShutdownSignals
from telemetry_lab.storage import (
    ConnectionPool,
    RetryPolicy,
    StorageStatistics,
    StorageWriter,
    describe,
)
from telemetry_lab.virtual_time import VirtualTimeEventLoop

__all__ = [
    "Gateway",
    "GatewayPhase",
    "GatewayStatistics",
    "run",
    "run_gateway",
    "start",
]

log = logging.getLogger("telemetry_lab.gateway")


RESTART_INITIAL = 0.1
"""First delay before a crashed device is restarted (seconds); doubles per crash."""
RESTART_MAX = 2.0
"""Longest delay before a restart."""


class GatewayPhase(Enum):
    """The lifecycle of one `Gateway`: NEW → RUNNING → DRAINING → STOPPED."""

    NEW = "new"
    RUNNING = "running"
    DRAINING = "draining"
    STOPPED = "stopped"


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


class Gateway:
    """One run of the telemetry gateway: build it, `await gateway.run()`, read the report.

    A gateway is single-use: its channels are closed by its shutdown. Observers may read
    `statistics()`, the `series` of samples and the `state` watch receiver at any time;
    `report` holds the report once the run has ended, however it ended.
    """

    def __init__(self, config: GatewayConfig | None = None) -> None:
        self.config = config = config or GatewayConfig()
        self.phase = GatewayPhase.NEW
        self.series = MetricsSeries()
        self.report: Report | None = None
        """The report of the finished run (drained, timed out, cancelled or aborted)."""
        self.run_id: int | None = None
        """This run's id in the database file, once the run has opened it."""
        self._telemetry_tx, self._telemetry_rx = channel[Reading](config.telemetry_capacity)
        self._storage_tx, self._storage_rx = channel[Reading](config.storage_capacity)
        self._updates_tx, first_rx = broadcast[StateUpdate](config.broadcast_capacity)
        self._state_tx, self.state = watch(SystemState())
        self._shutdown_tx, shutdown_rx = watch(False)
        no_deadline: float | None = None  # the drain's deadline, once it has started
        self._deadline_tx, deadline_rx = watch(no_deadline)
        self._stop_tx, self._stop_rx = watch(False)
        self._knobs_tx, knobs_rx = watch(Knobs.from_config(config))
        self.bandwidth = MeteredSemaphore(config.device_bandwidth)
        self.devices = [
            Device(
                i,
                seed=config.seed,
                interval=config.device_interval,
                tx=self._telemetry_tx.clone(),
                bandwidth=self.bandwidth,
                shutdown=shutdown_rx.clone(),
                malformed_rate=config.malformed_rate,
                crash_rate=config.device_crash_rate,
                knobs=knobs_rx.clone(),
            )
            for i in range(1, config.devices + 1)
        ]
        self._telemetry_tx.close()  # from now on only the devices hold senders
        shutdown_rx.close()
        receivers = [first_rx] + [self._updates_tx.subscribe() for _ in range(config.clients - 1)]
        if not config.clients:
            first_rx.close()
            receivers = []
        self.clients = [
            Client(
                i,
                rx,
                delay=config.client_delay(i),
                knobs=knobs_rx.clone(),
                deadline=deadline_rx.clone(),
            )
            for i, rx in enumerate(receivers, start=1)
        ]
        deadline_rx.close()
        self._knobs_rx = knobs_rx  # for the storage writer, built when the run starts
        self.aggregator = Aggregator(
            rx=self._telemetry_rx,
            storage_tx=self._storage_tx,
            updates_tx=self._updates_tx,
            state_tx=self._state_tx,
        )
        self.pool: ConnectionPool | None = None
        self.storage: StorageWriter | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: JoinSet[None] | None = None
        self._started_at = 0.0
        self._stopped_at = 0.0
        self._ended_by = "duration"
        self._stop_requested = False
        self._abort_requested = False
        self._errors: list[str] = []
        self._tasks_started = 0
        self._stopped_cleanly = 0
        self._restarts = 0
        self._last_sample: tuple[float, int] = (0.0, 0)

    def _enter(self, phase: GatewayPhase) -> None:
        if phase not in _ALLOWED[self.phase]:
            hint = "; a Gateway runs once: build a new one" if phase is GatewayPhase.RUNNING else ""
            raise RuntimeError(f"{self!r} cannot go from {self.phase.name} to {phase.name}{hint}")
        self.phase = phase

    # --- stopping ------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask for the graceful drain now; `run()` then returns the report as usual.

        Synchronous and idempotent; safe to call from any thread, and before `run()` (the
        run then drains as soon as it has started). Does nothing once the run has ended.
        """
        self._call_in_loop(self._request_stop, "stop")

    def abort(self) -> None:
        """Stop now, without draining: every pipeline task is cancelled at once.

        SQLite writes already running in worker threads finish (they cannot be cut off);
        `run()` returns the partial report, with what was left in flight. Synchronous,
        idempotent, safe from any thread.
        """
        self._call_in_loop(self._request_abort)

    def _call_in_loop(self, request: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            request(*args)  # not running (yet): nothing waits, nothing to wake
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            request(*args)
        else:
            loop.call_soon_threadsafe(request, *args)

    def _request_stop(self, ended_by: str) -> None:
        if self.phase is GatewayPhase.STOPPED or self._stop_requested:
            return
        self._stop_requested = True
        if self._ended_by == "duration":
            self._ended_by = ended_by
        if ended_by == "stop" and self.phase is not GatewayPhase.NEW:
            log.warning("🛑 Stop requested: draining gracefully")
        self._stop_tx.send_replace(True)

    def _request_abort(self) -> None:
        if self.phase is GatewayPhase.STOPPED or self._abort_requested:
            return
        self._abort_requested = True
        self._ended_by = "abort"
        log.warning("🛑 Aborting: cancelling every task without draining")
        self._request_stop("abort")
        if self._tasks is not None and self.phase is GatewayPhase.DRAINING:
            self._tasks.abort_all()

    # --- running ---------------------------------------------------------------------------

    async def run(self) -> Report:
        """Run for `duration` (or until `stop()`), drain, and return the report.

        Cancelling the task running this drains under `shutdown_timeout`, then the
        `CancelledError` propagates (`self.report` holds the report); a second cancellation
        during the drain aborts every task, and still propagates after the partial report.

        Raises:
            UnusableDatabase: the database file cannot be used (before any task starts).
            ValueError: the config cannot run on this loop (see the message).
            RuntimeError: this gateway has already run.
        """
        config = self.config
        loop = asyncio.get_running_loop()
        if isinstance(loop, VirtualTimeEventLoop):
            config.check_runs_on_virtual_time()
        self._enter(GatewayPhase.RUNNING)
        self._loop = loop
        wall_start = time.perf_counter()
        self._started_at = loop.time()
        cancelled: asyncio.CancelledError | None = None
        opening = loop.create_task(
            ConnectionPool.open(config.db_path, config.db_connections, config=config.to_dict()),
            name="gateway-open-database",
        )
        try:
            await wait_to_the_end(opening)  # a thread is opening the file: let it finish
        except asyncio.CancelledError as exc:
            cancelled = exc
        try:
            self.pool = pool = opening.result()
        except BaseException:
            self._enter(GatewayPhase.STOPPED)
            self._stopped_at = loop.time()
            if cancelled is not None:
                raise cancelled from None
            raise
        self.run_id = pool.run_id
        tasks = self._start_pipeline(pool)
        if cancelled is not None:
            self._cancelled_while_running()
        elif not self._stop_requested:
            try:
                await self._monitor(tasks, self._started_at + config.duration)
            except asyncio.CancelledError as exc:
                cancelled = exc
                self._cancelled_while_running()
        draining = loop.create_task(self._drain(tasks), name="gateway-drain")
        while not draining.done():
            try:
                await asyncio.wait([draining])
            except asyncio.CancelledError as exc:
                if cancelled is not None:  # cancelled again while draining: abort
                    self._request_abort()
                else:  # the first cancellation: it asks for what is happening already
                    cancelled = exc
                    self._cancelled_while_running()
        clean = draining.result()
        self._enter(GatewayPhase.STOPPED)
        self._stopped_at = loop.time()
        self._sample(self._stopped_at)
        finishing = loop.create_task(self._finish(clean, wall_start), name="gateway-finish")
        try:
            await wait_to_the_end(finishing)  # count, record the report, close: never cut off
        except asyncio.CancelledError as exc:
            cancelled = cancelled or exc
        self.report = report = finishing.result()
        if cancelled is not None:
            raise cancelled
        return report

    def _cancelled_while_running(self) -> None:
        if self._ended_by in ("duration", "stop"):
            self._ended_by = "cancel"
        log.warning("🛑 Cancelled: draining gracefully, then the cancellation goes on")

    def _start_pipeline(self, pool: ConnectionPool) -> JoinSet[None]:
        config = self.config
        self.storage = StorageWriter(
            rx=self._storage_rx,
            pool=pool,
            batch_size=config.batch_size,
            flush_interval=config.flush_interval,
            retry=RetryPolicy(
                initial=config.retry_initial,
                max_interval=config.retry_max_interval,
                max_elapsed=config.retry_max_elapsed,
            ),
            faults=StorageFaults(
                failure_rate=config.storage_failure_rate,
                outage=config.storage_outage,
                rng=random.Random(f"{config.seed}:storage-faults"),
            ),
            latency=config.storage_latency,
            rng=random.Random(f"{config.seed}:storage-retry"),
            knobs=self._knobs_rx,
        )
        self._tasks = tasks = JoinSet[None]()
        for device in self.devices:
            tasks.spawn(self._run_device(device), name=f"device-{device.device_id}")
        origin = self._started_at
        tasks.spawn(self.aggregator.run(origin=origin), name="aggregator")
        tasks.spawn(self.storage.run(origin=origin), name="storage")
        for client in self.clients:
            tasks.spawn(client.run(), name=f"client-{client.client_id}")
        self._tasks_started = len(tasks)
        log.info("🚀 Starting Telemetry Gateway")
        log.info("🗄️ Run %d, stored in %s", pool.run_id, config.db_path)
        log.info("📊 Watch for device backpressure, storage batching, and client updates")
        return tasks

    async def _run_device(self, device: Device) -> None:
        """Supervise one device: restart it with backoff when it crashes."""
        backoff = RESTART_INITIAL
        try:
            while True:
                sent_before = device.statistics().total_sent
                try:
                    await device.run(origin=self._started_at)
                    return
                except ChannelError:
                    raise  # the pipeline is gone: not the device's fault, nothing to restart
                except Exception as exc:
                    self._restarts += 1
                    if device.statistics().total_sent > sent_before:
                        backoff = RESTART_INITIAL  # it had been working: start over
                    log.warning("💥 %s; restarting in %.2fs", exc, backoff)
                    if await device.wait_or_shutdown(backoff):
                        return
                    backoff = min(backoff * 2, RESTART_MAX)
        finally:
            device.close()

    async def _monitor(self, tasks: JoinSet[None], deadline: float) -> None:
        """Sample the metrics until the deadline, a stop request, or a failure."""
        loop = asyncio.get_running_loop()
        interval = self.config.sample_interval
        while True:
            now = loop.time()
            self._sample(now)
            if now >= deadline or self._stop_rx.borrow():
                return
            if tasks.statistics().current_finished:
                log.error("A pipeline task stopped early: shutting down")
                self._ended_by = "failure"
                return
            if self.storage is not None and self.storage.failure is not None:
                self._ended_by = "failure"
                return
            await select(
                on_changed(self._stop_rx), on_timeout(min(interval, deadline - now)), biased=True
            )

    async def _drain(self, tasks: JoinSet[None]) -> bool:
        """Signal shutdown and join every task; return whether it drained in time."""
        self._enter(GatewayPhase.DRAINING)
        loop = asyncio.get_running_loop()
        timeout = self.config.shutdown_timeout
        deadline = loop.time() + timeout
        # Clients leave a margin for everyone else: they skip what they cannot finish.
        self._deadline_tx.send_replace(deadline - max(0.05 * timeout, min(0.2 * timeout, 0.5)))
        self._shutdown_tx.send_replace(True)
        if self._abort_requested:
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
        return not self._abort_requested

    def _record(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            if not self._abort_requested:
                log.warning("Task %s was cancelled", task.get_name())
        elif (exc := task.exception()) is not None:
            log.error("Task %s failed", task.get_name(), exc_info=exc)
            self._errors.append(f"task {task.get_name()} failed: {type(exc).__name__}: {exc}")
        else:
            self._stopped_cleanly += 1

    async def _finish(self, clean: bool, wall_start: float) -> Report:
        """Count the run's rows, build the report, record it in the file, close the pool."""
        pool = self.pool
        assert pool is not None
        problems: list[str] = []
        counts: RunCounts | None = None
        try:
            counts = await pool.counts()
        except sqlite3.Error as exc:
            problems.append(f"could not count run {pool.run_id}'s rows: {describe(exc)}")
        report = self._report(clean, counts, problems, time.perf_counter() - wall_start)
        try:
            await pool.finish(report.to_dict())
        except sqlite3.Error as exc:
            note = f"could not record the report in the runs table: {describe(exc)}"
            report = dataclasses.replace(report, errors=(*report.errors, note))
        await pool.close()
        if report.errors:
            log.error("❌ %s", "; ".join(report.errors))
        return report

    def _sample(self, now: float) -> None:
        stored = self.storage.statistics().total_stored if self.storage else 0
        batches = self.storage.statistics().total_batches if self.storage else 0
        t = now - self._started_at
        last_t, last_stored = self._last_sample
        throughput = (stored - last_stored) / (t - last_t) if t > last_t else 0.0
        self._last_sample = (t, stored)
        telemetry = self._telemetry_rx.statistics()
        clients = [c.statistics() for c in self.clients]
        self.series.append(
            Sample(
                t=t,
                telemetry_depth=telemetry.current_buffer_used,
                storage_depth=len(self._storage_rx),
                senders_blocked=telemetry.tasks_waiting_send,
                bandwidth_in_use=self.bandwidth.in_use,
                db_in_use=self.pool.permits.in_use if self.pool else 0,
                produced=telemetry.total_sent,
                stored=stored,
                batches=batches,
                throughput=throughput,
                client_received=tuple(c.total_received for c in clients),
                client_lagged=tuple(c.total_lagged for c in clients),
                client_pending=tuple(c.current_pending for c in clients),
            )
        )

    def _report(
        self, clean: bool, counts: RunCounts | None, problems: list[str], wall_seconds: float
    ) -> Report:
        assert self.storage is not None
        assert self.pool is not None
        agg = self.aggregator.statistics()
        st = self.storage.statistics()
        run_id = self.pool.run_id
        produced = self._telemetry_rx.statistics().total_sent  # whoever sent them
        in_flight = (
            len(self._telemetry_rx)
            + agg.current_holding
            + len(self._storage_rx)
            + st.current_batch
            + st.current_writing
        )
        final = agg.total_rejected + st.total_stored + st.total_dead_lettered
        errors = [*self._errors, *problems]
        if self.storage.failure is not None:
            errors.append(self.storage.failure)
        if counts is not None:
            for table, held, counted in (
                ("readings", counts.readings, st.total_stored),
                ("dead_letters", counts.dead_letters, st.total_dead_lettered),
            ):
                if held != counted:
                    errors.append(
                        f"the database holds {held} {table} rows for run {run_id}, but the "
                        f"gateway counted {counted}"
                    )
        summaries = tuple(c.summary() for c in self.clients)
        return Report(
            run_id=run_id,
            devices=self.config.devices,
            clients=self.config.clients,
            seed=self.config.seed,
            db_path=str(self.config.db_path),
            produced=produced,
            stored=st.total_stored,
            rejected=agg.total_rejected,
            dead_lettered=st.total_dead_lettered,
            unwritable=st.total_unwritable,
            in_flight=in_flight,
            lost=produced - final,
            balanced=produced == final + st.total_unwritable + in_flight,
            batches=st.total_batches,
            updates_sent=agg.total_updates,
            updates_delivered=sum(s.received for s in summaries),
            updates_lagged=sum(s.lagged for s in summaries),
            client_summaries=summaries,
            rejected_reasons=agg.rejected_reasons,
            device_restarts=self._restarts,
            storage_retries=st.total_retries,
            device_blocked_seconds=self._telemetry_rx.statistics().total_send_wait,
            tasks_started=self._tasks_started,
            tasks_stopped_cleanly=self._stopped_cleanly,
            clean_shutdown=clean,
            ended_by=self._ended_by,
            errors=tuple(errors),
            loop_seconds=self._stopped_at - self._started_at,
            wall_seconds=wall_seconds,
        )

    # --- knobs and observation ---------------------------------------------------------------

    @property
    def knobs(self) -> Knobs:
        """The live knobs' current values."""
        return self._knobs_tx.borrow()

    def adjust(self, **changes: object) -> Knobs:
        """Turn live knobs (see `LIVE_KNOBS`) before or while the gateway runs.

        Each component picks the new value up the next time it needs it (a watch channel
        carries them). Values are validated exactly as `GatewayConfig` validates them.

        Raises:
            ValueError: a field that cannot change while running, or an invalid value.
            RuntimeError: the run has ended (build a new `Gateway` for another run).
        """
        if self.phase is GatewayPhase.STOPPED:
            raise RuntimeError(
                f"adjust() turns the knobs of a running gateway, but run {self.run_id} has "
                "ended; build a new Gateway (with the knobs in its config) for another run"
            )
        fixed = sorted(set(changes) - set(LIVE_KNOBS))
        if fixed:
            raise ValueError(
                f"{', '.join(fixed)} cannot be changed while running; "
                f"live knobs are: {', '.join(LIVE_KNOBS)}"
            )
        current = {name: getattr(self.knobs, name) for name in LIVE_KNOBS}
        knobs = Knobs.from_config(self.config.replace(**{**current, **changes}))
        if knobs.device_interval == 0:
            try:
                on_virtual_clock = isinstance(asyncio.get_running_loop(), VirtualTimeEventLoop)
            except RuntimeError:
                on_virtual_clock = False
            if on_virtual_clock:
                raise ValueError(UNTHROTTLED_ON_VIRTUAL_CLOCK)
        self._knobs_tx.send_replace(knobs)
        log.info("🎛️ Knobs changed: %s", ", ".join(f"{k}={v!r}" for k, v in changes.items()))
        return knobs

    def statistics(self) -> GatewayStatistics:
        """Return a snapshot of every component."""
        if self.phase is GatewayPhase.NEW:
            elapsed = 0.0
        elif self.phase is GatewayPhase.STOPPED:
            elapsed = self._stopped_at - self._started_at
        else:
            assert self._loop is not None
            elapsed = self._loop.time() - self._started_at
        return GatewayStatistics(
            phase=self.phase,
            elapsed=elapsed,
            telemetry=self._telemetry_rx.statistics(),
            storage_channel=self._storage_rx.statistics(),
            updates=self._updates_tx.statistics(),
            bandwidth=self.bandwidth.statistics(),
            db_pool=self.pool.statistics() if self.pool else None,
            aggregator=self.aggregator.statistics(),
            storage=self.storage.statistics() if self.storage else None,
            devices=tuple(d.statistics() for d in self.devices),
            clients=tuple(c.statistics() for c in self.clients),
        )

    def __repr__(self) -> str:
        run = "" if self.run_id is None else f" run_id={self.run_id}"
        return (
            f"<Gateway phase={self.phase.name}{run} devices={len(self.devices)} "
            f"clients={len(self.clients)} db={str(self.config.db_path)!r}>"
        )


async def run_gateway(config: GatewayConfig | None = None) -> Report:
    """Run one gateway with `config` (defaults: the seed's 10-second demo); return the report.

    Cancelling it drains, then propagates the cancellation (see `Gateway.run`); to stop
    early and keep the report, use `Gateway(config)` and `stop()`.
    """
    return await Gateway(config).run()


def start(config: GatewayConfig | None = None) -> asyncio.Task[Report]:
    """Start a gateway as a task of the running loop and return the task (for notebooks).

    The caller owns the task: `await` it for the report. Cancelling it drains and then
    raises `CancelledError` (a cancellation is a cancellation); to stop early and keep the
    report, build a `Gateway` and call its `stop()`.
    """
    return asyncio.get_running_loop().create_task(run_gateway(config), name="telemetry-gateway")


async def _run_with_ctrl_c(config: GatewayConfig | None) -> Report:
    gateway = Gateway(config)
    with ShutdownSignals(gateway, (signal.SIGINT,)) as signals:
        report = await gateway.run()
    if signals.aborted_by is not None:
        raise KeyboardInterrupt  # the second Ctrl-C: the run was aborted
    return report


def run(
    config: GatewayConfig | None = None,
    *,
    virtual_time: bool = False,
    allow_nested: bool = False,
) -> Report:
    """Run a gateway to completion from synchronous code and return the report.

    Ctrl-C (in the main thread) stops the run gracefully and still returns the report; a
    second Ctrl-C aborts it (running SQLite writes finish) and raises `KeyboardInterrupt`.

    Args:
        config: the run's configuration (defaults: the seed's demo).
        virtual_time: run on a `VirtualTimeEventLoop`: same events, no waiting; a given
            seed gives the same report and the same database rows.
        allow_nested: inside an already running loop (Jupyter), re-enter it with
            `nest_asyncio2` instead of raising. Prefer `await run_gateway(config)`.

    Raises:
        LoopAlreadyRunning: called inside a running loop without `allow_nested`, or with
            `virtual_time` (a running loop's clock cannot be swapped).
    """
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is None:
        factory = VirtualTimeEventLoop if virtual_time else None
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(_run_with_ctrl_c(config))
    if virtual_time or not allow_nested:
        raise LoopAlreadyRunning(
            "run() blocks, but an event loop is already running here (as in Jupyter): "
            "use `report = await run_gateway(config)` instead"
            + ("" if virtual_time else ", or pass allow_nested=True to use nest_asyncio2")
        )
    import nest_asyncio2  # imported only when a caller opts in

    nest_asyncio2.apply(running)
    return running.run_until_complete(run_gateway(config))
