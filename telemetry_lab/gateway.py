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

Three ways in:
- `await run_gateway(config)`: the real API (notebooks use top-level `await`).
- `start(config)`: a task for notebooks; cancelling it drains and it still returns the report.
- `run(config, virtual_time=False)`: blocking, for scripts and tests.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from enum import Enum

from telemetry_lab.aggregator import Aggregator, AggregatorStatistics
from telemetry_lab.client import Client, ClientStatistics
from telemetry_lab.config import LIVE_KNOBS, GatewayConfig, Knobs
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
    watch,
)
from telemetry_lab.storage import ConnectionPool, RetryPolicy, StorageStatistics, StorageWriter
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

UNTHROTTLED_ON_VIRTUAL_CLOCK = (
    "device_interval=0 (unthrottled devices) never lets a virtual clock advance; "
    "use a positive device_interval with virtual time"
)

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
    `statistics()`, the `series` of samples and the `state` watch receiver at any time.
    """

    def __init__(self, config: GatewayConfig | None = None) -> None:
        self.config = config = config or GatewayConfig()
        self.phase = GatewayPhase.NEW
        self.series = MetricsSeries()
        self._telemetry_tx, self._telemetry_rx = channel[Reading](config.telemetry_capacity)
        self._storage_tx, self._storage_rx = channel[Reading](config.storage_capacity)
        self._updates_tx, first_rx = broadcast[StateUpdate](config.broadcast_capacity)
        self._state_tx, self.state = watch(SystemState())
        self._shutdown_tx, shutdown_rx = watch(False)
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
            Client(i, rx, delay=config.client_delay(i), knobs=knobs_rx.clone())
            for i, rx in enumerate(receivers, start=1)
        ]
        self._knobs_rx = knobs_rx  # for the storage writer, built when the run starts
        self.aggregator = Aggregator(
            rx=self._telemetry_rx,
            storage_tx=self._storage_tx,
            updates_tx=self._updates_tx,
            state_tx=self._state_tx,
        )
        self.pool: ConnectionPool | None = None
        self.storage: StorageWriter | None = None
        self._started_at = 0.0
        self._stopped_at = 0.0
        self._drain_requested = False
        self._tasks_started = 0
        self._stopped_cleanly = 0
        self._restarts = 0
        self._last_sample: tuple[float, int] = (0.0, 0)

    def _enter(self, phase: GatewayPhase) -> None:
        if phase not in _ALLOWED[self.phase]:
            raise RuntimeError(f"{self!r} cannot go from {self.phase.name} to {phase.name}")
        self.phase = phase

    async def run(self) -> Report:
        """Run for `duration`, drain, and return the report.

        Cancelling the task running this drains under `shutdown_timeout` and still returns
        the report; a second cancellation during the drain aborts every task and propagates.

        Raises:
            ValueError: the database file cannot be used (before any task starts).
        """
        config = self.config
        loop = asyncio.get_running_loop()
        if config.device_interval == 0 and isinstance(loop, VirtualTimeEventLoop):
            raise ValueError(UNTHROTTLED_ON_VIRTUAL_CLOCK)
        self._enter(GatewayPhase.RUNNING)
        wall_start = time.perf_counter()
        self._started_at = loop.time()
        opening = asyncio.ensure_future(ConnectionPool.open(config.db_path, config.db_connections))
        try:
            try:
                self.pool = await asyncio.shield(opening)
            except asyncio.CancelledError:
                # Cancelled while opening the database: finish opening it, then run the
                # (empty) drain, so the caller still gets a report.
                self._cancel_requested()
                self.pool = await opening
        except BaseException:
            self._enter(GatewayPhase.STOPPED)
            self._stopped_at = loop.time()
            raise
        self.storage = StorageWriter(
            rx=self._storage_rx,
            pool=self.pool,
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
        try:
            clean = await self._run_and_drain()
        finally:
            self._enter(GatewayPhase.STOPPED)
            self._stopped_at = loop.time()
            await self.pool.close()
        self._sample(self._stopped_at)
        loop_seconds = self._stopped_at - self._started_at
        return self._report(clean, loop_seconds, time.perf_counter() - wall_start)

    async def _run_and_drain(self) -> bool:
        tasks = JoinSet[None]()
        for device in self.devices:
            tasks.spawn(self._run_device(device), name=f"device-{device.device_id}")
        origin = self._started_at
        tasks.spawn(self.aggregator.run(origin=origin), name="aggregator")
        assert self.storage is not None
        tasks.spawn(self.storage.run(origin=origin), name="storage")
        for client in self.clients:
            tasks.spawn(client.run(), name=f"client-{client.client_id}")
        self._tasks_started = len(tasks)
        log.info("🚀 Starting Telemetry Gateway")
        log.info("📊 Watch for device backpressure, storage batching, and client updates")
        try:
            if not self._drain_requested:
                await self._monitor(tasks, self._started_at + self.config.duration)
        except asyncio.CancelledError:
            self._cancel_requested()
        try:
            return await self._drain(tasks)
        except asyncio.CancelledError:
            log.error("🛑 Cancelled again while draining: aborting every task")
            await tasks.shutdown()
            raise

    def _cancel_requested(self) -> None:
        """Turn a cancellation of the running task into a request to drain."""
        current = asyncio.current_task()
        if current is not None:
            current.uncancel()  # handled here: the task goes on to drain and report
        self._drain_requested = True
        log.warning("🛑 Cancelled: draining gracefully")

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
        """Sample the metrics until the deadline, or until a pipeline task ends early."""
        loop = asyncio.get_running_loop()
        interval = self.config.sample_interval
        while True:
            now = loop.time()
            self._sample(now)
            if now >= deadline:
                return
            if tasks.statistics().current_finished:
                log.error("A pipeline task stopped early: shutting down")
                return
            await asyncio.sleep(min(interval, deadline - now))

    async def _drain(self, tasks: JoinSet[None]) -> bool:
        """Signal shutdown and join every task; return whether it finished in time."""
        self._enter(GatewayPhase.DRAINING)
        self._shutdown_tx.send_replace(True)
        log.info("🛑 Shutting down: draining devices → aggregator → storage → clients")
        try:
            async with asyncio.timeout(self.config.shutdown_timeout):
                while (task := await tasks.join_next()) is not None:
                    self._record(task)
        except TimeoutError:
            log.error(
                "⏱️ Drain took longer than shutdown_timeout=%gs: cancelling %d tasks",
                self.config.shutdown_timeout,
                len(tasks),
            )
            tasks.abort_all()
            while (task := await tasks.join_next()) is not None:
                self._record(task)
            return False
        return True

    def _record(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            log.warning("Task %s was cancelled", task.get_name())
        elif (exc := task.exception()) is not None:
            log.error("Task %s failed", task.get_name(), exc_info=exc)
        else:
            self._stopped_cleanly += 1

    def _sample(self, now: float) -> None:
        stored = self.storage.statistics().total_stored if self.storage else 0
        batches = self.storage.statistics().total_batches if self.storage else 0
        t = now - self._started_at
        last_t, last_stored = self._last_sample
        throughput = (stored - last_stored) / (t - last_t) if t > last_t else 0.0
        self._last_sample = (t, stored)
        telemetry = self._telemetry_rx.statistics()
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
                client_received=tuple(c.statistics().total_received for c in self.clients),
                client_lagged=tuple(c.statistics().total_lagged for c in self.clients),
            )
        )

    def _report(self, clean: bool, loop_seconds: float, wall_seconds: float) -> Report:
        assert self.storage is not None
        agg = self.aggregator.statistics()
        st = self.storage.statistics()
        produced = sum(d.statistics().total_sent for d in self.devices)
        in_flight = (
            len(self._telemetry_rx)
            + agg.current_holding
            + len(self._storage_rx)
            + st.current_batch
            + st.current_writing
        )
        final = agg.total_rejected + st.total_stored + st.total_dead_lettered
        summaries = tuple(c.summary() for c in self.clients)
        return Report(
            devices=self.config.devices,
            clients=self.config.clients,
            seed=self.config.seed,
            db_path=str(self.config.db_path),
            produced=produced,
            stored=st.total_stored,
            rejected=agg.total_rejected,
            dead_lettered=st.total_dead_lettered,
            in_flight=in_flight,
            lost=produced - final,
            balanced=produced == final + in_flight,
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
            loop_seconds=loop_seconds,
            wall_seconds=wall_seconds,
        )

    @property
    def knobs(self) -> Knobs:
        """The live knobs' current values."""
        return self._knobs_tx.borrow()

    def adjust(self, **changes: object) -> Knobs:
        """Turn live knobs (see `LIVE_KNOBS`) while the gateway runs; return the new values.

        Each component picks the new value up the next time it needs it (a watch channel
        carries them). Values are validated exactly as `GatewayConfig` validates them.

        Raises:
            ValueError: a field that cannot change while running, or an invalid value.
        """
        fixed = sorted(set(changes) - set(LIVE_KNOBS))
        if fixed:
            raise ValueError(
                f"{', '.join(fixed)} cannot be changed while running; "
                f"live knobs are: {', '.join(LIVE_KNOBS)}"
            )
        current = {name: getattr(self.knobs, name) for name in LIVE_KNOBS}
        knobs = Knobs.from_config(self.config.replace(**{**current, **changes}))
        if knobs.device_interval == 0 and self.phase is not GatewayPhase.STOPPED:
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
            elapsed = asyncio.get_running_loop().time() - self._started_at
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
        return (
            f"<Gateway phase={self.phase.name} devices={len(self.devices)} "
            f"clients={len(self.clients)} db={str(self.config.db_path)!r}>"
        )


async def run_gateway(config: GatewayConfig | None = None) -> Report:
    """Run one gateway with `config` (defaults: the seed's 10-second demo); return the report."""
    return await Gateway(config).run()


def start(config: GatewayConfig | None = None) -> asyncio.Task[Report]:
    """Start a gateway as a task of the running loop and return the task (for notebooks).

    The caller owns the task: `await` it for the report, or cancel it to drain early (the
    cancelled task still returns the report).
    """
    return asyncio.get_running_loop().create_task(run_gateway(config), name="telemetry-gateway")


def run(
    config: GatewayConfig | None = None,
    *,
    virtual_time: bool = False,
    allow_nested: bool = False,
) -> Report:
    """Run a gateway to completion from synchronous code and return the report.

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
            return runner.run(run_gateway(config))
    if virtual_time or not allow_nested:
        raise LoopAlreadyRunning(
            "run() blocks, but an event loop is already running here (as in Jupyter): "
            "use `report = await run_gateway(config)` instead"
            + ("" if virtual_time else ", or pass allow_nested=True to use nest_asyncio2")
        )
    import nest_asyncio2  # imported only when a caller opts in

    nest_asyncio2.apply(running)
    return running.run_until_complete(run_gateway(config))
