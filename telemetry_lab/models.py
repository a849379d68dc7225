"""Define the values that flow through the gateway and the report it ends with.

All are frozen: a value handed to a channel cannot be changed behind the receiver's back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ClientSummary", "Reading", "Report", "StateUpdate", "SystemState"]


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
    """Mean of the devices' running average temperatures."""
    avg_humidity: float
    """Mean of the devices' running average humidities."""
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
    """Mean of the devices' running average temperatures (0 before any reading)."""
    avg_humidity: float = 0.0
    """Mean of the devices' running average humidities (0 before any reading)."""
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
    """Updates it missed because it fell more than `broadcast_capacity` behind."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """The outcome of one gateway run, with its conservation ledger.

    The ledger: `produced == stored + rejected + dead_lettered + in_flight` (`balanced`).
    `lost` counts readings that reached no final place (`produced - stored - rejected -
    dead_lettered`); after a clean drain it is 0, and `stored` equals the number of rows in
    the database file.
    """

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
    in_flight: int
    """Readings still inside the gateway when it stopped (0 after a clean drain)."""
    lost: int
    """Readings with no final place: produced - stored - rejected - dead_lettered."""
    balanced: bool
    """Whether produced == stored + rejected + dead_lettered + in_flight."""
    batches: int
    """Batches written to storage."""
    updates_sent: int
    """State updates broadcast by the aggregator."""
    updates_delivered: int
    """Updates processed by clients, summed over clients."""
    updates_lagged: int
    """Updates clients missed by lagging, summed over clients."""
    client_summaries: tuple[ClientSummary, ...]
    """Per-client received/lagged counts."""
    rejected_reasons: tuple[tuple[str, int], ...]
    """Rejections counted per reason, sorted by reason."""
    device_restarts: int
    """Times a crashed device was restarted by its supervisor."""
    storage_retries: int
    """Batch write attempts retried after a transient failure."""
    device_blocked_seconds: float
    """Loop-clock seconds devices spent blocked on a full telemetry channel (backpressure)."""
    tasks_started: int
    """Pipeline tasks started (devices + aggregator + storage + clients)."""
    tasks_stopped_cleanly: int
    """Pipeline tasks that finished on their own, neither failed nor cancelled."""
    clean_shutdown: bool
    """Whether the drain finished within `shutdown_timeout`."""
    loop_seconds: float
    """Seconds the run took on the loop's clock (virtual seconds under `--fast`)."""
    wall_seconds: float
    """Real seconds the run took."""

    @property
    def ok(self) -> bool:
        """True for a clean run: drained in time, nothing lost or left in flight."""
        return self.clean_shutdown and self.lost == 0 and self.in_flight == 0

    def summary_table(self) -> str:
        """Return the report as the aligned table the CLI prints at the end of a run."""
        rows = [
            ("Readings produced", f"{self.produced}"),
            ("Readings stored", f"{self.stored} in {self.batches} batches"),
            ("Rejected / dead-lettered", f"{self.rejected} / {self.dead_lettered}"),
            *((f"  rejected: {reason}", f"{n}") for reason, n in self.rejected_reasons),
            ("In flight at stop", f"{self.in_flight}"),
            ("Lost", f"{self.lost}" + ("" if self.balanced else "  (LEDGER DOES NOT BALANCE)")),
            ("Clients served", f"{self.clients}"),
            ("Updates delivered / lagged", f"{self.updates_delivered} / {self.updates_lagged}"),
            ("Device restarts", f"{self.device_restarts}"),
            ("Storage retries", f"{self.storage_retries}"),
            ("Devices blocked (backpressure)", f"{self.device_blocked_seconds:.2f} s"),
            ("Tasks stopped cleanly", f"{self.tasks_stopped_cleanly} of {self.tasks_started}"),
            ("Clean shutdown", "yes" if self.clean_shutdown else "NO (drain timed out)"),
            ("Run time", f"{self.loop_seconds:.2f} s loop clock, {self.wall_seconds:.2f} s wall"),
            ("Database", self.db_path),
        ]
        width = max(len(name) for name, _ in rows)
        lines = ["📈 Summary", *(f"  {name:<{width}}  {value}" for name, value in rows)]
        lines.append("  ✅ Zero data loss" if self.ok else "  ❌ Data was lost or left in flight")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON-friendly values."""
        out = asdict(self)
        out["client_summaries"] = [asdict(c) for c in self.client_summaries]
        out["rejected_reasons"] = dict(self.rejected_reasons)
        out["ok"] = self.ok
        return out
