"""Switch on what goes wrong in production: failing storage, bad readings, crashing devices.

Every fault is driven by a seeded `random.Random` and the loop's clock, so a faulty run is
as reproducible as a healthy one. The knobs are `GatewayConfig` fields; this module holds
the decisions they drive. (Which readings are valid is a business rule, not a fault: see
`telemetry_lab.validation`.)
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Literal

from telemetry_lab.config import KnobsReader, fixed_knobs
from telemetry_lab.models import Reading

__all__ = [
    "MALFORMATIONS",
    "StorageFault",
    "StorageFaults",
    "malform",
]


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
    makes idempotent inserts necessary). The failure rate is a live knob: it is read from
    `knobs` at every attempt, never written into this object.

    Args:
        failure_rate: the probability of a transient failure, when no `knobs` are given.
        outage: `(start, end)` seconds into the run during which every attempt fails.
        rng: the source of every random choice.
        knobs: where the live `storage_failure_rate` is read (a gateway's knobs).
    """

    def __init__(
        self,
        *,
        failure_rate: float = 0.0,
        outage: tuple[float, float] | None,
        rng: random.Random,
        knobs: KnobsReader | None = None,
    ) -> None:
        self._knobs = knobs or fixed_knobs(storage_failure_rate=failure_rate)
        self._outage = outage
        self._rng = rng

    @property
    def failure_rate(self) -> float:
        """The probability of a transient failure now (the live knob)."""
        return self._knobs().storage_failure_rate

    def check(self, t: float) -> StorageFault | None:
        """Return the fault for an attempt `t` seconds into the run, or None."""
        if self._outage is not None and self._outage[0] <= t < self._outage[1]:
            return StorageFault(when="before", reason="storage outage")
        rate = self.failure_rate
        if rate and self._rng.random() < rate:
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
