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

__all__ = [
    "ID_RANGE",
    "MALFORMATIONS",
    "SEQ_RANGE",
    "StorageFault",
    "StorageFaults",
    "malform",
    "validate_reading",
]

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


ID_RANGE = (1, 2**63 - 1)
"""Device ids: positive, and within SQLite's 64-bit INTEGER."""
SEQ_RANGE = (0, 2**63 - 1)
"""Sequence numbers: from 0, within SQLite's 64-bit INTEGER."""


def _integer_problem(name: str, value: object, low: int, high: int) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{name}_wrong_type"
    if not low <= value <= high:
        return f"{name}_out_of_range"
    return None


def _number_problem(name: str, value: object, low: float, high: float) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{name}_wrong_type"
    try:
        number = float(value)
    except OverflowError:
        return f"{name}_out_of_range"
    if math.isnan(number):
        return f"{name}_nan"
    if math.isinf(number):
        return f"{name}_infinite"
    if not low <= number <= high:
        return f"{name}_out_of_range"
    return None


def validate_reading(reading: object) -> str | None:
    """Return why `reading` must be rejected (e.g. "temperature_nan"), or None if valid.

    Every field is checked, in order: `device_id` and `seq` are integers within SQLite's
    64-bit range (`device_id` from 1, `seq` from 0), `ts` a finite number of seconds from 0,
    `temperature` and `humidity` finite and physically possible. The reason is
    `<field>_{wrong_type,nan,infinite,out_of_range}`, or `not_a_reading`.
    """
    if not isinstance(reading, Reading):
        return "not_a_reading"
    return (
        _integer_problem("device_id", reading.device_id, *ID_RANGE)
        or _integer_problem("seq", reading.seq, *SEQ_RANGE)
        or _number_problem("ts", reading.ts, 0.0, math.inf)
        or _number_problem("temperature", reading.temperature, *TEMPERATURE_RANGE)
        or _number_problem("humidity", reading.humidity, *HUMIDITY_RANGE)
    )
