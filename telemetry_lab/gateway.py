"""Assemble the gateway: build its stages, start them, drain them in order, report.

    Device x N ─▶ channel ─▶ Aggregator ─▶ channel ─▶ StorageWriter ─▶ SQLite
                               ├─ broadcast ─▶ Client x M
                               └─ watch(SystemState) ─▶ dashboard, CLI

Shutdown drains *in order*, each stage closing its outputs when its inputs are exhausted:
devices close their senders → the aggregator drains and closes storage's channel and the
broadcast → storage writes the last partial batch → clients drain. Every stage reads its
live knobs from one watch (`adjust()` turns them). How a run ends (duration, `stop()`,
cancellation, `abort()`) and its drain are `lifecycle`'s; restarts are `supervisor`'s,
samples `sampler`'s, the ledger `report`'s, the ways in (`run_gateway`, `start`, `run`) `entry`'s.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import TYPE_CHECKING

from telemetry_lab._private import call_in_loop
from telemetry_lab.aggregator import Aggregator
from telemetry_lab.client import Client
from telemetry_lab.config import UNTHROTTLED_ON_VIRTUAL_CLOCK, GatewayConfig, Knobs
from telemetry_lab.database import RunCounts
from telemetry_lab.device import Device
from telemetry_lab.lifecycle import GatewayPhase, GatewayStatistics, RunControl
from telemetry_lab.metrics import MeteredSemaphore, MetricsSeries
from telemetry_lab.models import Reading, Report, StateUpdate, SystemState
from telemetry_lab.primitives import broadcast, channel, watch
from telemetry_lab.report import RunOutcome, build_report, record_report
from telemetry_lab.sampler import Sampler
from telemetry_lab.storage import ConnectionPool, StorageWriter
from telemetry_lab.supervisor import Supervisor
from telemetry_lab.virtual_time import on_virtual_clock

if TYPE_CHECKING:  # for type checkers; at run time `__getattr__` below provides them
    from telemetry_lab.entry import run, run_gateway, start

__all__ = ["Gateway", "GatewayPhase", "GatewayStatistics", "run", "run_gateway", "start"]

log = logging.getLogger("telemetry_lab.gateway")


class Gateway:
    """One run of the telemetry gateway: build it, `await gateway.run()`, read the report.

    A gateway is single-use: its channels are closed by its shutdown. Observers may read
    `statistics()`, the `series` of samples and the `state` watch receiver at any time;
    `report` holds the report once the run has ended, however it ended.
    """

    def __init__(self, config: GatewayConfig | None = None) -> None:
        self.config = config = config or GatewayConfig()
        self._control = control = RunControl(self, config)
        self.series = MetricsSeries()
        self._sampler = Sampler(self.series)
        self.report: Report | None = None
        """The report of the finished run (drained, timed out, cancelled or aborted)."""
        self.run_id: int | None = None
        """This run's id in the database file, once the run has opened it."""
        c = config
        self._telemetry_tx, self._telemetry_rx = channel[Reading](
            c.telemetry_capacity, name="telemetry"
        )
        self._storage_tx, self._storage_rx = channel[Reading](c.storage_capacity, name="storage")
        self._updates_tx, first_rx = broadcast[StateUpdate](c.broadcast_capacity, name="updates")
        self._state_tx, self.state = watch(SystemState(), name="state")
        self._knobs_tx, self._knobs_rx = watch(Knobs.from_config(config), name="knobs")
        knobs = self._knobs_rx.borrow  # the one source of every stage's live knobs
        self.bandwidth = MeteredSemaphore(config.device_bandwidth, name="bandwidth")
        self.supervisor = Supervisor()
        self.devices = [
            Device(
                i,
                seed=config.seed,
                tx=self._telemetry_tx.clone(),
                bandwidth=self.bandwidth,
                shutdown=control.shutdown_receiver(),
                knobs=knobs,
            )
            for i in range(1, config.devices + 1)
        ]
        self._telemetry_tx.close()  # from now on only the devices hold senders
        receivers = [first_rx] + [self._updates_tx.subscribe() for _ in range(config.clients - 1)]
        if not config.clients:
            first_rx.close()
            receivers = []
        self.clients = [
            Client(i, rx, knobs=knobs, deadline=control.deadline_receiver())
            for i, rx in enumerate(receivers, start=1)
        ]
        self.aggregator = Aggregator(
            rx=self._telemetry_rx,
            storage_tx=self._storage_tx,
            updates_tx=self._updates_tx,
            state_tx=self._state_tx,
        )
        self.pool: ConnectionPool | None = None
        self.storage: StorageWriter | None = None

    @property
    def phase(self) -> GatewayPhase:
        """Where the gateway is in its lifecycle."""
        return self._control.phase

    def stop(self) -> None:
        """Ask for the graceful drain now; `run()` then returns the report as usual.

        Synchronous and idempotent; safe to call from any thread, and before `run()` (the
        run then drains as soon as it has started). Does nothing once the run has ended.
        """
        call_in_loop(self._control.loop, self._control.request_stop, "stop")

    def abort(self) -> None:
        """Stop now, without draining: every pipeline task is cancelled at once.

        SQLite writes already running in worker threads finish (they cannot be cut off);
        `run()` returns the partial report, with what was left in flight. Synchronous,
        idempotent, safe from any thread.
        """
        call_in_loop(self._control.loop, self._control.request_abort)

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
        if on_virtual_clock():
            config.check_runs_on_virtual_time()
        return await self._control.run(
            prepare=lambda: ConnectionPool.open(
                config.db_path, config.db_connections, config=config.to_dict()
            ),
            start=self.start_pipeline,
            sample=lambda: self._sampler.sample(self.statistics()),
            failed=lambda: self.storage is not None and self.storage.failure is not None,
            finish=self._finish,
        )

    def start_pipeline(self, pool: ConnectionPool) -> None:
        """Spawn every pipeline task into the run's one `JoinSet` (`run` calls it)."""
        self.pool, self.run_id = pool, pool.run_id
        tasks, origin = self._control.tasks, self._control.started_at
        self.storage = StorageWriter.from_config(
            self.config, rx=self._storage_rx, pool=pool, knobs=self._knobs_rx.borrow
        )
        for device in self.devices:
            supervised = self.supervisor.supervise(device, origin=origin)
            tasks.spawn(supervised, name=f"device-{device.device_id}")
        tasks.spawn(self.aggregator.run(origin=origin), name="aggregator")
        tasks.spawn(self.storage.run(origin=origin), name="storage")
        for client in self.clients:
            tasks.spawn(client.run(), name=f"client-{client.client_id}")
        log.info("🚀 Starting Telemetry Gateway")
        log.info("🗄️ Run %d, stored in %s", pool.run_id, self.config.db_path)
        log.info("📊 Watch for device backpressure, storage batching, and client updates")

    async def _finish(self, clean: bool) -> Report:
        """Count the run's rows, build the report, record it in the file, close the pool."""
        assert self.pool is not None
        self.report = await record_report(self.pool, functools.partial(self._report, clean))
        return self.report

    def _report(self, clean: bool, counts: RunCounts | None, problems: list[str]) -> Report:
        control, storage, pool = self._control, self.storage, self.pool
        assert storage is not None
        assert pool is not None
        failure = [] if storage.failure is None else [storage.failure]
        outcome = RunOutcome(
            run_id=pool.run_id,
            clean=clean,
            ended_by=control.ended_by,
            errors=(*control.errors, *problems, *failure),
            device_restarts=self.supervisor.restarts,
            tasks_started=control.tasks_started,
            tasks_stopped_cleanly=control.tasks_stopped_cleanly,
            wall_seconds=time.perf_counter() - control.wall_started,
        )
        return build_report(self.config, self.statistics(), outcome, counts)

    @property
    def knobs(self) -> Knobs:
        """The live knobs' current values."""
        return self._knobs_tx.borrow()

    def adjust(self, **changes: object) -> Knobs:
        """Turn live knobs (see `LIVE_KNOBS`) before or while the gateway runs.

        Each stage picks the new value up the next time it needs it (it reads the knobs
        watch). Values are validated exactly as `GatewayConfig` validates them.

        Raises:
            ValueError: a field that cannot change while running, or an invalid value.
            RuntimeError: the run has ended (build a new `Gateway` for another run).
        """
        if self.phase is GatewayPhase.STOPPED:
            raise RuntimeError(
                f"adjust() turns the knobs of a running gateway, but run {self.run_id} has "
                "ended; build a new Gateway (with the knobs in its config) for another run"
            )
        knobs = self.knobs.changed(self.config, **changes)
        if knobs.device_interval == 0 and on_virtual_clock():
            raise ValueError(UNTHROTTLED_ON_VIRTUAL_CLOCK)
        self._knobs_tx.send_replace(knobs)
        log.info("🎛️ Knobs changed: %s", ", ".join(f"{k}={v!r}" for k, v in changes.items()))
        return knobs

    def statistics(self) -> GatewayStatistics:
        """Return a snapshot of every component."""
        return GatewayStatistics(
            phase=self.phase,
            elapsed=self._control.elapsed(),
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


def __getattr__(name: str) -> object:
    """Provide `entry`'s run, run_gateway, start (PEP 562: `entry` imports this module)."""
    if name in ("run", "run_gateway", "start"):
        from telemetry_lab import entry

        return getattr(entry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
