"""Configure one gateway run with a single frozen, validated object.

`GatewayConfig()` with no arguments reproduces the Tokio seed's 10-second run: 7 devices,
4 clients, channel capacities 50 / 10 / 100, batches of 10, 3 concurrent device sends.
Every field is validated when the object is built; a bad value raises `ValueError` naming
the field, the value and the allowed range, before anything starts.

Every accepted config finishes. The ranges are what was measured to run on a 2-core
machine: 1,000 devices and 1,000 clients at most, intervals no shorter than a millisecond
(a sampler every 10 ns froze the virtual clock, whose readings cannot grow by less than
their precision), and on the virtual clock, where a run must do all of its work before it
ends, at most `VIRTUAL_WORK_LIMIT` of it (`check_runs_on_virtual_time`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeAlias

__all__ = [
    "LIVE_KNOBS",
    "UNTHROTTLED_ON_VIRTUAL_CLOCK",
    "VIRTUAL_WORK_LIMIT",
    "GatewayConfig",
    "Knobs",
    "KnobsReader",
    "fixed_knobs",
]

VIRTUAL_WORK_LIMIT = 25_000_000
"""The most work (see `GatewayConfig.virtual_work`) a run may ask for on a virtual clock."""

UNTHROTTLED_ON_VIRTUAL_CLOCK = (
    "device_interval=0 (unthrottled devices) never lets a virtual clock advance; "
    "use a positive device_interval with virtual time"
)


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")


def _finite(value: object) -> bool:
    """Whether `value` is a real, finite number (bools, huge ints and NaN are not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _check_float(
    name: str, value: object, low: float, high: float, *, open_low: bool, zero_too: bool = False
) -> None:
    bracket = "(" if open_low else "["
    allowed = f"in {bracket}{low:g}, {high:g}]"
    if zero_too:
        allowed = f"0 or {allowed}"
    if not _finite(value):
        where = f", {allowed}" if zero_too else f" {allowed}"
        raise ValueError(f"{name} must be a finite number{where}, got {value!r}")
    assert isinstance(value, int | float)
    if zero_too and value == 0:
        return
    too_low = value <= low if open_low else value < low
    if too_low or value > high:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayConfig:
    """Everything that shapes one gateway run. Defaults reproduce the seed's demo.

    A config is not live state: it is frozen. Use `config.replace(field=value)` for a
    variant. (Knobs changed *during* a run travel through a watch channel instead.)
    """

    devices: int = 7
    """Sensor devices, one task each (at most 1,000)."""
    clients: int = 4
    """Live clients subscribed to the broadcast of state updates (0 to 1,000)."""
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
    """The SQLite database file; each run adds its rows under a new run id."""
    seed: int = 42
    """Seed of every random choice: the same seed gives the same readings."""
    shutdown_timeout: float = 5.0
    """Seconds the graceful drain may take before what is left is reported in flight."""
    device_interval: float = 1.5
    """Mean seconds between two readings of one device (at least 0.001); 0 sends as fast
    as possible (real time only)."""
    sample_interval: float = 0.25
    """Seconds between two samples of the metrics time series (0.01 to 60)."""

    # Fault knobs: each one switches on something that goes wrong in production.
    storage_failure_rate: float = 0.0
    """Probability that one batch write attempt fails transiently (0..1)."""
    storage_outage: tuple[float, float] | None = None
    """`(start, end)` seconds into the run during which every write attempt fails."""
    storage_latency: float = 0.0
    """Seconds added to every write attempt (a slow database)."""
    client_delays: tuple[float, ...] = ()
    """Seconds each client spends per update, by client; missing entries mean 0."""
    malformed_rate: float = 0.0
    """Fraction of readings that are malformed (NaN, infinite, impossible, wrong type)."""
    device_crash_rate: float = 0.0
    """Probability, per reading, that a device task crashes (and is restarted)."""
    retry_initial: float = 0.1
    """First retry delay cap of the storage retry policy (exponential, full jitter)."""
    retry_max_interval: float = 2.0
    """Largest retry delay cap."""
    retry_max_elapsed: float = 10.0
    """Retry budget per batch in seconds; past it the batch is dead-lettered."""

    def __post_init__(self) -> None:
        _check_int("devices", self.devices, 1, 1_000)
        _check_int("clients", self.clients, 0, 1_000)
        _check_float("duration", self.duration, 0, 86_400, open_low=True)
        _check_int("telemetry_capacity", self.telemetry_capacity, 1, 1_000_000)
        _check_int("storage_capacity", self.storage_capacity, 1, 1_000_000)
        _check_int("broadcast_capacity", self.broadcast_capacity, 1, 1_000_000)
        _check_int("batch_size", self.batch_size, 1, 100_000)
        _check_float("flush_interval", self.flush_interval, 0.001, 3_600, open_low=False)
        _check_int("device_bandwidth", self.device_bandwidth, 1, 10_000)
        _check_int("db_connections", self.db_connections, 1, 64)
        _check_int("seed", self.seed, 0, 2**63 - 1)
        _check_float("shutdown_timeout", self.shutdown_timeout, 0.01, 3_600, open_low=False)
        _check_float(
            "device_interval", self.device_interval, 0.001, 3_600, open_low=False, zero_too=True
        )
        _check_float("sample_interval", self.sample_interval, 0.01, 60, open_low=False)
        path = self.db_path
        if not isinstance(path, str | os.PathLike) or str(path) in ("", ":memory:"):
            raise ValueError(f"db_path must be a file path (str or Path), got {path!r}")
        object.__setattr__(self, "db_path", Path(path))
        _check_float("storage_failure_rate", self.storage_failure_rate, 0, 1, open_low=False)
        self._check_outage()
        _check_float("storage_latency", self.storage_latency, 0, 60, open_low=False)
        self._check_client_delays()
        _check_float("malformed_rate", self.malformed_rate, 0, 1, open_low=False)
        _check_float("device_crash_rate", self.device_crash_rate, 0, 1, open_low=False)
        _check_float("retry_initial", self.retry_initial, 0.001, 60, open_low=False)
        _check_float("retry_max_interval", self.retry_max_interval, 0.001, 3_600, open_low=False)
        if self.retry_max_interval < self.retry_initial:
            raise ValueError(
                f"retry_max_interval must be >= retry_initial ({self.retry_initial!r}), "
                f"got {self.retry_max_interval!r}"
            )
        _check_float("retry_max_elapsed", self.retry_max_elapsed, 0, 86_400, open_low=False)

    def _check_outage(self) -> None:
        outage = self.storage_outage
        if outage is None:
            return
        allowed = "None or (start, end) seconds with 0 <= start < end <= 86400"
        if not isinstance(outage, tuple | list) or len(outage) != 2:
            raise ValueError(f"storage_outage must be {allowed}, got {outage!r}")
        start, end = outage
        for value in outage:
            if not _finite(value):
                raise ValueError(f"storage_outage must be {allowed}, got {outage!r}")
        if not 0 <= start < end <= 86_400:
            raise ValueError(f"storage_outage must be {allowed}, got {outage!r}")
        object.__setattr__(self, "storage_outage", (float(start), float(end)))

    def _check_client_delays(self) -> None:
        delays = self.client_delays
        if not isinstance(delays, tuple | list):
            raise ValueError(
                f"client_delays must be a tuple of seconds, one per client, got {delays!r}"
            )
        if len(delays) > self.clients:
            raise ValueError(
                f"client_delays has {len(delays)} entries but clients is {self.clients}"
            )
        for i, delay in enumerate(delays):
            _check_float(f"client_delays[{i}]", delay, 0, 60, open_low=False)
        object.__setattr__(self, "client_delays", tuple(float(d) for d in delays))

    def virtual_work(self) -> float:
        """Estimate the work a run of this config does on a virtual clock, in work units.

        One unit is about 5 µs of CPU (measured on a 2-core machine): a reading passing
        through the pipeline costs 32, each client handling its update 1, a metrics sample
        12 plus 0.7 per client, a storage write attempt 12 (counted only when storage
        faults can make batches retry, at their shortest delay).
        """
        seconds = self.duration + self.shutdown_timeout
        readings = self.devices * self.duration / self.device_interval
        samples = self.duration / self.sample_interval
        attempts = 0.0
        if self.storage_failure_rate or self.storage_outage:
            attempts = self.db_connections * seconds / (self.retry_initial / 2)
        return readings * (32 + self.clients) + samples * (12 + 0.7 * self.clients) + 12 * attempts

    def check_runs_on_virtual_time(self) -> None:
        """Raise `ValueError` if this config cannot finish on a virtual clock.

        A virtual clock only moves when every task is idle, so unthrottled devices would
        never let it advance, and a run must do all its work (see `virtual_work`) before it
        ends: at most `VIRTUAL_WORK_LIMIT` units, about two minutes of CPU.
        """
        if self.device_interval == 0:
            raise ValueError(UNTHROTTLED_ON_VIRTUAL_CLOCK)
        work = self.virtual_work()
        if work > VIRTUAL_WORK_LIMIT:
            raise ValueError(
                f"this config asks for about {work:,.0f} units of work on the virtual clock "
                f"(devices x duration / device_interval readings, each handled by every "
                f"client, plus samples and retries); the limit is {VIRTUAL_WORK_LIMIT:,}, "
                "about two minutes of CPU: use fewer devices or clients, a shorter duration, "
                "or longer intervals (or run it in real time)"
            )

    def client_delay(self, client_id: int) -> float:
        """Return the processing delay of the 1-based client `client_id` (0 if unset)."""
        if not 1 <= client_id <= self.clients:
            raise ValueError(f"client_id must be in [1, {self.clients}], got {client_id!r}")
        index = client_id - 1
        return self.client_delays[index] if index < len(self.client_delays) else 0.0

    @property
    def faults_enabled(self) -> bool:
        """Whether any fault knob is switched on."""
        return bool(
            self.storage_failure_rate
            or self.storage_outage
            or self.storage_latency
            or any(self.client_delays)
            or self.malformed_rate
            or self.device_crash_rate
        )

    def replace(self, **changes: Any) -> GatewayConfig:
        """Return a copy with `changes` applied (validated like a new config)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as plain JSON-friendly values."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Knobs:
    """The pacing and fault knobs that can be turned while a gateway runs.

    The gateway publishes them through a watch channel, the one source of every live value:
    each stage reads the latest `Knobs` (through a `KnobsReader`) when it next needs it, so
    turning a knob never blocks and never queues up. A new knob is a field here, a field of
    `GatewayConfig` (with its validation), and a read in the one stage that uses it.
    """

    device_interval: float
    """Mean seconds between two readings of one device."""
    storage_latency: float
    """Seconds added to every write attempt."""
    storage_failure_rate: float
    """Probability that a write attempt fails transiently."""
    malformed_rate: float
    """Fraction of readings that are malformed."""
    device_crash_rate: float
    """Probability, per reading, that a device crashes."""
    client_delays: tuple[float, ...]
    """Seconds each client spends per update; missing entries mean 0."""

    @classmethod
    def from_config(cls, config: GatewayConfig) -> Knobs:
        """Return the knobs' values in `config`."""
        return cls(**{name: getattr(config, name) for name in LIVE_KNOBS})

    def client_delay(self, client_id: int) -> float:
        """Return the delay of the 1-based client `client_id` (0 if unset)."""
        index = client_id - 1
        return self.client_delays[index] if 0 <= index < len(self.client_delays) else 0.0

    def changed(self, config: GatewayConfig, **changes: object) -> Knobs:
        """Return these knobs with `changes`, validated exactly as `GatewayConfig` does.

        Raises:
            ValueError: a field that is not a live knob, or an invalid value.
        """
        fixed = sorted(set(changes) - set(LIVE_KNOBS))
        if fixed:
            raise ValueError(
                f"{', '.join(fixed)} cannot be changed while running; "
                f"live knobs are: {', '.join(LIVE_KNOBS)}"
            )
        current = {name: getattr(self, name) for name in LIVE_KNOBS}
        return Knobs.from_config(config.replace(**{**current, **changes}))


LIVE_KNOBS: tuple[str, ...] = tuple(f.name for f in fields(Knobs))
"""The `GatewayConfig` fields that `Gateway.adjust()` can change while the gateway runs
(the fields of `Knobs`, in order)."""


KnobsReader: TypeAlias = Callable[[], Knobs]
"""Where a pipeline stage reads its live knobs: call it for the current values.

Inside a gateway every stage gets the same reader, the knobs watch's `borrow`; a stage run
on its own gets `fixed_knobs(...)`.
"""


def fixed_knobs(**values: Any) -> KnobsReader:
    """Return a reader of knobs that never change: the defaults, with `values` changed.

    For a stage run on its own, outside a gateway (the values are not validated).
    """
    knobs = replace(Knobs.from_config(GatewayConfig()), **values)
    return lambda: knobs
