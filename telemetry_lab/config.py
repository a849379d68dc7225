"""Configure one gateway run with a single frozen, validated object.

`GatewayConfig()` with no arguments reproduces the Tokio seed's 10-second run: 7 devices,
4 clients, channel capacities 50 / 10 / 100, batches of 10, 3 concurrent device sends.
Every field is validated when the object is built; a bad value raises `ValueError` naming
the field, the value and the allowed range, before anything starts.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

__all__ = ["GatewayConfig"]


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")


def _check_float(name: str, value: object, low: float, high: float, *, open_low: bool) -> None:
    bracket = "(" if open_low else "["
    allowed = f"{bracket}{low:g}, {high:g}]"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number in {allowed}, got {value!r}")
    too_low = value <= low if open_low else value < low
    if too_low or value > high:
        raise ValueError(f"{name} must be in {allowed}, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayConfig:
    """Everything that shapes one gateway run. Defaults reproduce the seed's demo.

    A config is not live state: it is frozen. Use `config.replace(field=value)` for a
    variant. (Knobs changed *during* a run travel through a watch channel instead.)
    """

    devices: int = 7
    """Sensor devices, one task each."""
    clients: int = 4
    """Live clients subscribed to the broadcast of state updates (0 is allowed)."""
    duration: float = 10.0
    """Seconds (of loop time) before the gateway starts its graceful shutdown."""
    telemetry_capacity: int = 50
    """Capacity of the device → aggregator channel."""
    storage_capacity: int = 10
    """Capacity of the aggregator → storage channel."""
    broadcast_capacity: int = 100
    """Updates retained for clients; a client further behind than this lags."""
    batch_size: int = 10
    """Readings per storage batch; a batch is written when it is full..."""
    flush_interval: float = 5.0
    """...or when its oldest reading has waited this many seconds."""
    device_bandwidth: int = 3
    """Devices allowed to be sending at once (a semaphore)."""
    db_connections: int = 2
    """SQLite connections in the storage pool: batch writes in flight at once."""
    db_path: Path = Path("telemetry.db")
    """The SQLite database file; its tables are emptied at the start of each run."""
    seed: int = 42
    """Seed of every random choice: the same seed gives the same readings."""
    shutdown_timeout: float = 5.0
    """Seconds the graceful drain may take before what is left is reported in flight."""
    device_interval: float = 1.5
    """Mean seconds between two readings of one device; 0 sends as fast as possible."""
    sample_interval: float = 0.25
    """Seconds between two samples of the metrics time series."""

    def __post_init__(self) -> None:
        _check_int("devices", self.devices, 1, 10_000)
        _check_int("clients", self.clients, 0, 10_000)
        _check_float("duration", self.duration, 0, 86_400, open_low=True)
        _check_int("telemetry_capacity", self.telemetry_capacity, 1, 1_000_000)
        _check_int("storage_capacity", self.storage_capacity, 1, 1_000_000)
        _check_int("broadcast_capacity", self.broadcast_capacity, 1, 1_000_000)
        _check_int("batch_size", self.batch_size, 1, 100_000)
        _check_float("flush_interval", self.flush_interval, 0, 3_600, open_low=True)
        _check_int("device_bandwidth", self.device_bandwidth, 1, 10_000)
        _check_int("db_connections", self.db_connections, 1, 64)
        _check_int("seed", self.seed, 0, 2**63 - 1)
        _check_float("shutdown_timeout", self.shutdown_timeout, 0, 3_600, open_low=True)
        _check_float("device_interval", self.device_interval, 0, 3_600, open_low=False)
        _check_float("sample_interval", self.sample_interval, 0, 60, open_low=True)
        path = self.db_path
        if not isinstance(path, str | os.PathLike) or str(path) in ("", ":memory:"):
            raise ValueError(f"db_path must be a file path (str or Path), got {path!r}")
        object.__setattr__(self, "db_path", Path(path))

    def replace(self, **changes: Any) -> GatewayConfig:
        """Return a copy with `changes` applied (validated like a new config)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as plain JSON-friendly values."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out
