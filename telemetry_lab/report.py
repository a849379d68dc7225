"""Build a run's `Report` from the gateway's last snapshot, and check its ledger.

The conservation ledger: every reading the devices produced is stored, rejected,
dead-lettered, unwritable (storage had failed) or still in flight (in a channel, in the
aggregator's hand, in the batch being filled, in a running write). `lost` counts the
readings that reached no final place; after a clean drain it is 0. The report also checks
the gateway's counts against the rows the database file holds for the run, and says so in
`errors` when they differ.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, replace

from telemetry_lab.config import GatewayConfig
from telemetry_lab.database import RunCounts
from telemetry_lab.lifecycle import GatewayStatistics
from telemetry_lab.models import ClientSummary, Report
from telemetry_lab.storage import ConnectionPool, describe

__all__ = ["RunOutcome", "build_report", "in_flight", "record_report"]

log = logging.getLogger("telemetry_lab.report")


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOutcome:
    """How a run ended, as the gateway that ran it counted it (what no snapshot holds)."""

    run_id: int
    """The run's id in the database file."""
    clean: bool
    """Whether the drain finished within `shutdown_timeout` (and was not aborted)."""
    ended_by: str
    """What ended the run: "duration", "stop", "cancel", "abort" or "failure"."""
    errors: tuple[str, ...]
    """What went wrong, in words (failed tasks, storage failure, uncounted rows)."""
    device_restarts: int
    """Devices restarted by their supervisor."""
    tasks_started: int
    """Pipeline tasks started."""
    tasks_stopped_cleanly: int
    """Pipeline tasks that returned (neither failed nor cancelled)."""
    wall_seconds: float
    """Real seconds the run took."""


def in_flight(stats: GatewayStatistics) -> int:
    """Return the readings still inside the pipeline: in a channel, a hand, a batch, a write."""
    st = stats.storage
    return (
        stats.telemetry.current_buffer_used
        + stats.aggregator.current_holding
        + stats.storage_channel.current_buffer_used
        + (st.current_batch + st.current_writing if st is not None else 0)
    )


def build_report(
    config: GatewayConfig,
    stats: GatewayStatistics,
    outcome: RunOutcome,
    counts: RunCounts | None,
) -> Report:
    """Return the report of a finished run.

    Args:
        config: the run's configuration.
        stats: the gateway's snapshot once it has stopped.
        outcome: how the run ended.
        counts: the rows the database holds for the run (None if they could not be
            counted); a mismatch with the gateway's counts is added to `errors`.
    """
    agg, st = stats.aggregator, stats.storage
    assert st is not None, "a report needs the storage writer's counts"
    produced = stats.telemetry.total_sent  # whoever sent them
    pending = in_flight(stats)
    final = agg.total_rejected + st.total_stored + st.total_dead_lettered
    errors = list(outcome.errors)
    if counts is not None:
        for table, held, counted in (
            ("readings", counts.readings, st.total_stored),
            ("dead_letters", counts.dead_letters, st.total_dead_lettered),
        ):
            if held != counted:
                errors.append(
                    f"the database holds {held} {table} rows for run {outcome.run_id}, but the "
                    f"gateway counted {counted}"
                )
    summaries = tuple(
        ClientSummary(client_id=c.client_id, received=c.total_received, lagged=c.total_lagged)
        for c in stats.clients
    )
    return Report(
        run_id=outcome.run_id,
        devices=config.devices,
        clients=config.clients,
        seed=config.seed,
        db_path=str(config.db_path),
        produced=produced,
        stored=st.total_stored,
        rejected=agg.total_rejected,
        dead_lettered=st.total_dead_lettered,
        unwritable=st.total_unwritable,
        in_flight=pending,
        lost=produced - final,
        balanced=produced == final + st.total_unwritable + pending,
        batches=st.total_batches,
        updates_sent=agg.total_updates,
        updates_delivered=sum(s.received for s in summaries),
        updates_lagged=sum(s.lagged for s in summaries),
        client_summaries=summaries,
        rejected_reasons=agg.rejected_reasons,
        device_restarts=outcome.device_restarts,
        storage_retries=st.total_retries,
        device_blocked_seconds=stats.telemetry.total_send_wait,
        tasks_started=outcome.tasks_started,
        tasks_stopped_cleanly=outcome.tasks_stopped_cleanly,
        clean_shutdown=outcome.clean,
        ended_by=outcome.ended_by,
        errors=tuple(errors),
        loop_seconds=stats.elapsed,
        wall_seconds=outcome.wall_seconds,
    )


async def record_report(
    pool: ConnectionPool, build: Callable[[RunCounts | None, list[str]], Report]
) -> Report:
    """Count the run's rows, `build` the report, record it in the file, close the pool.

    `build` gets the counts (None if the file could not count them) and the problems met
    so far, in words; a report that cannot be recorded says so in its `errors`. Every
    error is logged once, here.
    """
    problems: list[str] = []
    counts: RunCounts | None = None
    try:
        counts = await pool.counts()
    except sqlite3.Error as exc:
        problems.append(f"could not count run {pool.run_id}'s rows: {describe(exc)}")
    report = build(counts, problems)
    try:
        await pool.finish(report.to_dict())
    except sqlite3.Error as exc:
        note = f"could not record the report in the runs table: {describe(exc)}"
        report = replace(report, errors=(*report.errors, note))
    await pool.close()
    if report.errors:
        log.error("❌ %s", "; ".join(report.errors))
    return report
