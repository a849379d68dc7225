"""Switch on what goes wrong in production: failing storage, bad readings, crashing devices.

Every fault is driven by a seeded `random.Random` and the loop's clock, so a faulty run is
as reproducible as a healthy one. The knobs are `GatewayConfig` fields; this module holds
the decisions they drive.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Literal

from telemetry_lab.models import Reading

__all__ = ["MALFORMATIONS", "StorageFault", "StorageFaults", "malform", "validate_reading"]

TEMPERATURE_RANGE = (-50.0, 100.0)
"""Physically plausible air temperatures (°C) for this gateway; outside is rejected."""
HUMIDITY_RANGE = (0.0, 100.0)
"""Relative humidity is a percentage."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageFault:
    """One injected write failure."""

    when: Literal["before", "after"]
    """'before' the rows are written (nothing committed) or 'after' (the ack is lost)."""
    reason: str
    """What went wrong, as recorded in the dead-letter table."""


class StorageFaults:
    """Decide, per write attempt, whether storage fails.

    Not a network simulator: it fails a whole attempt, before the rows are written (a
    refused connection) or after they are committed (a lost acknowledgement, which is what
    makes idempotent inserts necessary).
    """

    def __init__(
        self,
        *,
        failure_rate: float,
        outage: tuple[float, float] | None,
        rng: random.Random,
    ) -> None:
        self.failure_rate = failure_rate
        """The probability of a transient failure; may be changed between attempts."""
        self._outage = outage
        self._rng = rng

    def check(self, t: float) -> StorageFault | None:
        """Return the fault for an attempt `t` seconds into the run, or None."""
        if self._outage is not None and self._outage[0] <= t < self._outage[1]:
            return StorageFault(when="before", reason="storage outage")
        if self.failure_rate and self._rng.random() < self.failure_rate:
            if self._rng.random() < 0.5:
                return StorageFault(when="after", reason="write acknowledgement lost")
            return StorageFault(when="before", reason="transient write failure")
        return None


MALFORMATIONS: tuple[tuple[str, str, Any], ...] = (
    ("temperature", "nan", math.nan),
    ("humidity", "infinite", math.inf),
    ("temperature", "out_of_range", 1000.0),
    ("humidity", "out_of_range", -5.0),
    ("temperature", "wrong_type", "hot"),
    ("humidity", "wrong_type", None),
)
"""The ways a device garbles a reading: (field, expected rejection reason suffix, value)."""


def malform(reading: Reading, rng: random.Random) -> Reading:
    """Return `reading` with one field garbled (NaN, infinite, impossible or wrong type)."""
    field, _, value = MALFORMATIONS[rng.randrange(len(MALFORMATIONS))]
    values: dict[str, Any] = {
        "device_id": reading.device_id,
        "seq": reading.seq,
        "ts": reading.ts,
        "temperature": reading.temperature,
        "humidity": reading.humidity,
        field: value,
    }
    return Reading(**values)


def validate_reading(reading: Reading) -> str | None:
    """Return why `reading` must be rejected (e.g. "temperature_nan"), or None if valid."""
    checks = (
        ("temperature", reading.temperature, TEMPERATURE_RANGE),
        ("humidity", reading.humidity, HUMIDITY_RANGE),
    )
    for name, value, (low, high) in checks:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{name}_wrong_type"
        if math.isnan(value):
            return f"{name}_nan"
        if math.isinf(value):
            return f"{name}_infinite"
        if not low <= value <= high:
            return f"{name}_out_of_range"
    return None
