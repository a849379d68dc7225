"""Define the values that flow through the gateway and the report it ends with.

All are frozen: a value handed to a channel cannot be changed behind the receiver's back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ENDINGS", "ClientSummary", "Reading", "Report", "StateUpdate", "SystemState"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading:
    """One measurement from one device; `(device_id, seq)` identifies it everywhere."""

    device_id: int
    """1-based device number."""
    seq: int
    """Per-device sequence number, from 0, without gaps."""
    ts: float
    """Seconds since the start of the run (loop clock) when the reading was taken."""
    temperature: float
    """Degrees Celsius."""
    humidity: float
    """Relative humidity, percent."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StateUpdate:
    """What the aggregator broadcasts to live clients after each reading."""

    update: int
    """1-based number of this update."""
    device_id: int
    """The device whose reading caused the update."""
    devices_active: int
    """Devices heard from so far."""
    avg_temperature: float
    """Mean temperature of the last 10 readings (from any device)."""
    avg_humidity: float
    """Mean humidity of the last 10 readings (from any device)."""
    ts: float
    """Seconds since the start of the run (loop clock) of the update."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemState:
    """The latest whole-system snapshot, shared through a watch channel."""

    readings: int = 0
    """Readings accepted by the aggregator so far."""
    devices_active: int = 0
    """Devices heard from so far."""
    avg_temperature: float = 0.0
    """Mean temperature of the last 10 readings (0 before any reading)."""
    avg_humidity: float = 0.0
    """Mean humidity of the last 10 readings (0 before any reading)."""
    updated_at: float = 0.0
    """Seconds since the start of the run (loop clock) of the last change."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientSummary:
    """What one live client saw."""

    client_id: int
    """1-based client number."""
    received: int
    """Updates it processed."""
    lagged: int
    """Updates it missed: overwritten while it lagged, or skipped at shutdown."""


ENDINGS = ("duration", "stop", "cancel", "abort", "failure")
"""How a run can end: its `duration` passed, `Gateway.stop()` was called, the task running
it was cancelled, it was aborted without draining (`Gateway.abort()`, a second signal or a
second cancellation), or a pipeline task failed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """The outcome of one gateway run, with its conservation ledger.

    The ledger: `produced == stored + rejected + dead_lettered + unwritable + in_flight`
    (`balanced`). `lost` counts readings that reached no final place (`produced - stored -
    rejected - dead_lettered`, so it includes the unwritable and those in flight); after a
    clean drain it is 0, and `stored` equals the rows the database holds for `run_id`,
    which the gateway checks itself. Clients are lossy by design: updates they skipped are
    counted as lagged and never make a run fail.
    """

    run_id: int
    """The run's id in the database file (its rows carry it; see the `runs` table)."""
    devices: int
    """Devices configured."""
    clients: int
    """Live clients served."""
    seed: int
    """The run's seed."""
    db_path: str
    """The SQLite file the readings were stored in."""
    produced: int
    """Readings accepted into the telemetry channel."""
    stored: int
    """Readings written to the `readings` table."""
    rejected: int
    """Readings refused by validation (never stored or broadcast)."""
    dead_lettered: int
    """Readings that could not be stored and went to the `dead_letters` table."""
    unwritable: int
    """Readings written to neither table, because storage had failed (see `errors`)."""
    in_flight: int
    """Readings still inside the gateway when it stopped (0 after a clean drain)."""
    lost: int
    """Readings with no final place: produced - stored - rejected - dead_lettered."""
    balanced: bool
    """Whether produced == stored + rejected + dead_lettered + unwritable + in_flight."""
    batches: int
    """Batches written to storage."""
    updates_sent: int
    """State updates broadcast by the aggregator."""
    updates_delivered: int
    """Updates processed by clients, summed over clients."""
    updates_lagged: int
    """Updates clients missed (by lagging, or skipped at shutdown), summed over clients."""
    client_summaries: tuple[ClientSummary, ...]
    """Per-client received/lagged counts."""
    rejected_reasons: tuple[tuple[str, int], ...]
    """Rejections counted per reason, sorted by reason."""
    device_restarts: int
    """Times a crashed device was restarted by its supervisor."""
    storage_retries: int
    """Batch write attempts retried after a failure."""
    device_blocked_seconds: float
    """Loop-clock seconds devices spent blocked on a full telemetry channel (backpressure)."""
    tasks_started: int
    """Pipeline tasks started (devices + aggregator + storage + clients)."""
    tasks_stopped_cleanly: int
    """Pipeline tasks that finished on their own, neither failed nor cancelled."""
    clean_shutdown: bool
    """Whether the drain finished within `shutdown_timeout` (False if aborted)."""
    ended_by: str
    """What ended the run: "duration", "stop", "cancel", "abort" or "failure"."""
    errors: tuple[str, ...]
    """What went wrong, in words: failed tasks, failed storage, a database that disagrees
    with the counts. Empty for a healthy run."""
    loop_seconds: float
    """Seconds the run took on the loop's clock (virtual seconds under `--fast`)."""
    wall_seconds: float
    """Real seconds the run took."""

    @property
    def ok(self) -> bool:
        """True when every reading is stored, rejected or dead-lettered and the drain finished.

        A slow client never makes it False: clients are lossy by design.
        """
        return self.clean_shutdown and self.lost == 0 and not self.errors

    def verdicts(self) -> tuple[str, ...]:
        """Return what happened, one line each: the first is the overall verdict."""
        lines: list[str] = []
        if self.ok:
            lines.append("✅ Zero data loss: every reading was stored, rejected or dead-lettered")
        lines.extend(f"❌ {error}" for error in self.errors)
        if not self.balanced:
            unaccounted = self.lost - self.unwritable - self.in_flight
            lines.append(f"❌ The ledger does not balance: {unaccounted} readings unaccounted for")
        if self.ended_by == "abort":
            lines.append(
                f"❌ Aborted without draining: {self.in_flight} readings were left in flight"
            )
        elif not self.clean_shutdown:
            if self.in_flight:
                lines.append(
                    f"❌ The drain did not finish in time: {self.in_flight} readings were "
                    "still in flight (raise shutdown_timeout, or make storage faster)"
                )
            else:
                lines.append(
                    "⚠️ Every reading is accounted for, but the drain did not finish in time: "
                    f"{self.tasks_started - self.tasks_stopped_cleanly} tasks were cancelled"
                )
        if self.updates_lagged:
            lines.append(
                f"📉 Clients missed {self.updates_lagged} of {self.updates_sent * self.clients} "
                "updates (slow clients lag; the database still has every reading)"
            )
        return tuple(lines)

    def summary_table(self) -> str:
        """Return the report as the aligned table the CLI prints at the end of a run."""
        rows = [
            ("Run", f"{self.run_id} (ended by {self.ended_by})"),
            ("Readings produced", f"{self.produced}"),
            ("Readings stored", f"{self.stored} in {self.batches} batches"),
            ("Rejected / dead-lettered", f"{self.rejected} / {self.dead_lettered}"),
            *((f"  rejected: {reason}", f"{n}") for reason, n in self.rejected_reasons),
            *((("Unwritable (storage failed)", f"{self.unwritable}"),) if self.unwritable else ()),
            ("In flight at stop", f"{self.in_flight}"),
            ("Lost", f"{self.lost}" + ("" if self.balanced else "  (LEDGER DOES NOT BALANCE)")),
            ("Clients served", f"{self.clients}"),
            ("Updates delivered / lagged", f"{self.updates_delivered} / {self.updates_lagged}"),
            ("Device restarts", f"{self.device_restarts}"),
            ("Storage retries", f"{self.storage_retries}"),
            ("Devices blocked (backpressure)", f"{self.device_blocked_seconds:.2f} s"),
            ("Tasks stopped cleanly", f"{self.tasks_stopped_cleanly} of {self.tasks_started}"),
            ("Clean shutdown", "yes" if self.clean_shutdown else "NO"),
            ("Run time", f"{self.loop_seconds:.2f} s loop clock, {self.wall_seconds:.2f} s wall"),
            ("Database", self.db_path),
        ]
        width = max(len(name) for name, _ in rows)
        lines = ["📈 Summary", *(f"  {name:<{width}}  {value}" for name, value in rows)]
        lines.extend(f"  {line}" for line in self.verdicts())
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON-friendly values."""
        out = asdict(self)
        out["client_summaries"] = [asdict(c) for c in self.client_summaries]
        out["rejected_reasons"] = dict(self.rejected_reasons)
        out["errors"] = list(self.errors)
        out["ok"] = self.ok
        return out
