"""Validate readings: the business rule that decides which readings the gateway accepts.

A reading is accepted only if every field is what storage can keep and what a sensor can
measure: integer ids and sequence numbers within SQLite's 64-bit range, a finite timestamp,
a finite and physically possible temperature and humidity. The aggregator calls
`validate_reading` on every reading and rejects (and counts, by reason) the rest; the
`malformed_rate` fault (`telemetry_lab.faults.malform`) produces readings it must reject.
"""

from __future__ import annotations

import math

from telemetry_lab.models import Reading

__all__ = [
    "HUMIDITY_RANGE",
    "ID_RANGE",
    "SEQ_RANGE",
    "TEMPERATURE_RANGE",
    "validate_reading",
]

TEMPERATURE_RANGE = (-50.0, 100.0)
"""Physically plausible air temperatures (°C) for this gateway; outside is rejected."""
HUMIDITY_RANGE = (0.0, 100.0)
"""Relative humidity is a percentage."""


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
