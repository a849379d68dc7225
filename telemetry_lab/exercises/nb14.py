"""Check the exercises of notebook 14: predict where a fault's readings end, size a retry budget.

Both checkers judge a decision against a real gateway run, not against a formula: each
config is run to the end on a virtual clock (`run(config, virtual_time=True)`, in a worker
thread so the notebook's own loop keeps going; seeded, so the same answer always meets the
same run), in a temporary directory removed afterwards. Every run of a check takes tens of
milliseconds of real time.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from telemetry_lab.config import GatewayConfig
from telemetry_lab.exercises._check import exercise, reject
from telemetry_lab.gateway import run
from telemetry_lab.models import Report

__all__ = ["LEDGER_PARTS", "check_exercise_1", "check_exercise_2"]

PredictLedger = Callable[[GatewayConfig], Any]
RetrySettings = Callable[[float, float], Any]

LEDGER_PARTS = ("stored", "rejected", "dead_lettered", "unwritable", "in_flight")
"""The places a reading can end in, as `Report` fields (they add up to `produced`)."""

FAST_RETRY = {"retry_initial": 0.02, "retry_max_interval": 0.1}


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """One faulty run of Exercise 1: its name in the messages and its knobs."""

    name: str
    """How messages name it, e.g. "a long outage (storage_outage=(0.5, 1.5), budget 0.3 s)"."""
    knobs: Mapping[str, Any] = field(default_factory=dict)
    """`GatewayConfig` fields on top of a 2-second run with a reading every 0.05 s."""


SCENARIOS = (
    Scenario(name="malformed readings (malformed_rate=0.2)", knobs={"malformed_rate": 0.2}),
    Scenario(
        name="transient write failures (storage_failure_rate=0.5, default 10 s budget)",
        knobs={"storage_failure_rate": 0.5, **FAST_RETRY},
    ),
    Scenario(
        name="a 1 s outage against a 0.3 s retry budget (storage_outage=(0.5, 1.5))",
        knobs={"storage_outage": (0.5, 1.5), "retry_max_elapsed": 0.3, **FAST_RETRY},
    ),
    Scenario(
        name="a 0.3 s outage against a 1 s retry budget (storage_outage=(0.5, 0.8))",
        knobs={"storage_outage": (0.5, 0.8), "retry_max_elapsed": 1.0, **FAST_RETRY},
    ),
    Scenario(
        name="a slow client (client_delays=(0.2,))",
        knobs={"client_delays": (0.2,), "broadcast_capacity": 5},
    ),
    Scenario(
        name="a slow database (storage_latency=0.1, default 5 s shutdown_timeout)",
        knobs={
            "storage_latency": 0.1,
            "device_interval": 0.02,
            "telemetry_capacity": 10,
            "storage_capacity": 5,
            "db_connections": 1,
        },
    ),
    Scenario(
        name="a drain out of time (storage_latency=1.0, shutdown_timeout=0.3)",
        knobs={"storage_latency": 1.0, "shutdown_timeout": 0.3},
    ),
    Scenario(name="crashing devices (device_crash_rate=0.1)", knobs={"device_crash_rate": 0.1}),
    Scenario(
        name="malformed readings and a 1 s outage against a 0.3 s budget",
        knobs={
            "malformed_rate": 0.2,
            "storage_outage": (0.5, 1.5),
            "retry_max_elapsed": 0.3,
            **FAST_RETRY,
        },
    ),
)
"""Exercise 1's runs, in the order they are checked."""


def _run_all(configs: list[GatewayConfig]) -> list[Report]:
    """Run each config to the end on a virtual clock (blocking: call it in a thread)."""
    return [run(config, virtual_time=True) for config in configs]


async def _reports(configs: list[GatewayConfig]) -> list[Report]:
    return await asyncio.to_thread(_run_all, configs)


def _nonzero(report: Report) -> set[str]:
    return {part for part in LEDGER_PARTS if getattr(report, part)}


def _as_parts(answer: Any, name: str) -> set[str]:
    """The learner's prediction as a set of part names, or a rejection saying why not."""
    if isinstance(answer, str) or not isinstance(answer, Iterable):
        reject(
            f"for {name} predict_ledger returned {type(answer).__name__}, not a set of names",
            'return a set such as `{"stored", "rejected"}`: the parts that end above zero',
        )
    parts = set(answer)
    for part in sorted(parts, key=repr):
        if part == "lost":
            reject(
                f'for {name} you predicted "lost": it is not a place a reading ends in',
                "lost is produced - stored - rejected - dead_lettered, the readings in "
                "flight or unwritable: name those places instead",
            )
        if part not in LEDGER_PARTS:
            reject(
                f"for {name} you predicted {part!r}, which is not a part of the ledger",
                "name parts among " + ", ".join(LEDGER_PARTS),
            )
    return parts


def _explain(name: str, config: GatewayConfig, report: Report, predicted: set[str]) -> None:
    """Reject the first wrong part of a prediction, with what the run did instead."""
    actual = _nonzero(report)
    for part in LEDGER_PARTS:
        count = getattr(report, part)
        if part in actual and part not in predicted:
            _missed(name, part, count)
        if part in predicted and part not in actual:
            _imagined(name, part, config, report)


def _missed(name: str, part: str, count: int) -> None:
    if part == "stored":
        reject(
            f"for {name} you predicted no stored readings, but {count} were stored",
            "every run here stores most of its readings: start from `{'stored'}`",
        )
    if part == "rejected":
        reject(
            f"for {name} the aggregator rejected {count} readings, and you did not predict it",
            "malformed_rate > 0 garbles readings; validation rejects them before storage",
        )
    if part == "dead_lettered":
        reject(
            f"for {name} {count} readings were dead-lettered, and you did not predict it",
            "an outage longer than the retry budget (retry_max_elapsed) makes batches give "
            "up: compare `end - start` of storage_outage with the budget",
        )
    if part == "in_flight":
        reject(
            f"for {name} {count} readings were still in flight at the end, and you did not "
            "predict it",
            "when one write takes longer than shutdown_timeout, the drain cannot finish: "
            "what is left is counted in flight (and report.ok is False)",
        )
    reject(
        f"for {name} {count} readings were {part}, and you did not predict it",
        "compare your rules with the run's report",
    )


def _imagined(name: str, part: str, config: GatewayConfig, report: Report) -> None:
    what = f"for {name} you predicted {part}, but the run had none"
    if part == "rejected":
        reject(
            f"{what}: only validation rejects, and every reading was valid",
            "predict rejected only when malformed_rate > 0: crashes, failures and outages "
            "reject nothing",
        )
    if part == "dead_lettered":
        if config.storage_failure_rate:
            reject(
                f"{what}: transient failures are retried ({report.storage_retries} retries), "
                "and every retried batch got through",
                "only a batch still failing when its budget (retry_max_elapsed) runs out is "
                "dead-lettered; a failure rate alone does not make one",
            )
        if config.storage_outage is not None:
            start, end = config.storage_outage
            reject(
                f"{what}: the outage ({end - start:g} s) is shorter than the retry budget "
                f"({config.retry_max_elapsed:g} s), so the retries outlasted it",
                "compare the outage's length with retry_max_elapsed",
            )
        reject(f"{what}: no write failed", "dead letters come only from writes that fail")
    if part == "in_flight":
        if config.client_delays:
            reject(
                f"{what}: a slow client holds no reading of the ledger; it lags "
                f"({report.updates_lagged} updates missed) and the drain skips what it "
                "cannot finish",
                "clients are lossy by design: the ledger counts readings, not updates",
            )
        if config.storage_latency:
            reject(
                f"{what}: a slow database makes devices wait (backpressure, "
                f"{report.device_blocked_seconds:.1f} s blocked), and the drain still "
                "finished in time",
                "in flight only when the drain runs out of time: compare one write's "
                "storage_latency with shutdown_timeout",
            )
        reject(
            f"{what}: the drain finished within shutdown_timeout",
            "in flight only when the drain runs out of time",
        )
    if part == "unwritable":
        reject(
            f"{what}: readings are unwritable only when even their dead letters cannot be "
            "written (a broken database file)",
            "no fault knob does that: leave unwritable out",
        )
    reject(f"{what}", "compare your rules with the run's report")


@exercise(1)
async def check_exercise_1(predict_ledger: PredictLedger) -> str:
    """Check `predict_ledger(config)`: the ledger parts a faulty run ends with above zero."""
    with tempfile.TemporaryDirectory() as tmp:
        configs = [
            GatewayConfig(
                db_path=Path(tmp) / f"scenario_{i}.db",
                **{"duration": 2.0, "device_interval": 0.05, **scenario.knobs},
            )
            for i, scenario in enumerate(SCENARIOS)
        ]
        predictions = [
            _as_parts(predict_ledger(config), scenario.name)
            for scenario, config in zip(SCENARIOS, configs, strict=True)
        ]
        reports = await _reports(configs)
    for scenario, config, report, predicted in zip(
        SCENARIOS, configs, reports, predictions, strict=True
    ):
        _explain(scenario.name, config, report, predicted)
    return f"{len(SCENARIOS)} faulty runs, every ledger predicted"


OUTAGES = ((0.6, 1.0), (2.0, 1.0), (3.0, 0.5))
"""Exercise 2's (outage seconds, shutdown_timeout) pairs, in the order they are checked."""
OUTAGE_START = 0.3
"""The outage starts this many seconds into the run..."""
TAIL = 0.1
"""...and ends this many seconds before the run's `duration`; then the drain starts."""
RETRY_FIELDS = ("retry_initial", "retry_max_interval", "retry_max_elapsed")


def _outage_config(db: Path, outage: float, shutdown_timeout: float, **retry: Any) -> GatewayConfig:
    settings: dict[str, Any] = {"retry_initial": 0.02, **retry}
    return GatewayConfig(
        db_path=db,
        duration=OUTAGE_START + outage + TAIL,
        device_interval=0.02,
        storage_outage=(OUTAGE_START, OUTAGE_START + outage),
        shutdown_timeout=shutdown_timeout,
        telemetry_capacity=10,
        storage_capacity=5,
        db_connections=1,
        **settings,
    )


def _settings(answer: Any, outage: float, shutdown_timeout: float) -> dict[str, Any]:
    where = f"retry_settings({outage:g}, {shutdown_timeout:g})"
    if not isinstance(answer, Mapping):
        reject(
            f"{where} returned {type(answer).__name__}, not a dict",
            'return a dict of GatewayConfig fields: `{"retry_max_elapsed": ..., '
            '"retry_max_interval": ...}`',
        )
    unknown = sorted(str(k) for k in answer if k not in RETRY_FIELDS)
    if unknown:
        reject(
            f"{where} set {', '.join(unknown)}: only the retry policy is yours to choose",
            "use the keys " + ", ".join(RETRY_FIELDS),
        )
    if "retry_max_elapsed" not in answer:
        reject(
            f"{where} did not choose a retry budget",
            "set retry_max_elapsed: how long a batch may keep retrying",
        )
    return dict(answer)


@exercise(2)
async def check_exercise_2(retry_settings: RetrySettings) -> str:
    """Check `retry_settings(outage, shutdown_timeout)`: no dead letters, a drain that ends."""
    with tempfile.TemporaryDirectory() as tmp:
        configs: list[GatewayConfig] = []
        for i, (outage, shutdown_timeout) in enumerate(OUTAGES):
            settings = _settings(retry_settings(outage, shutdown_timeout), outage, shutdown_timeout)
            try:
                config = _outage_config(
                    Path(tmp) / f"outage_{i}.db", outage, shutdown_timeout, **settings
                )
            except ValueError as exc:
                reject(
                    f"GatewayConfig refused your settings for a {outage:g} s outage: {exc}",
                    "retry_initial and retry_max_interval from 0.001 s, retry_max_interval "
                    ">= retry_initial (0.02 s unless you set it), a budget >= 0",
                )
            configs.append(config)
        reports = await _reports(configs)
    for (outage, shutdown_timeout), config, report in zip(OUTAGES, configs, reports, strict=True):
        budget, cap = config.retry_max_elapsed, config.retry_max_interval
        where = f"in the {outage:g} s outage (budget {budget:g} s, retry_max_interval {cap:g} s)"
        if report.dead_lettered:
            if budget < outage:
                reject(
                    f"readings were dead-lettered {where}: {report.dead_lettered} of them; the "
                    "budget ran out before the outage ended",
                    "the budget must outlast the outage: retry_max_elapsed >= outage + "
                    "retry_max_interval",
                )
            reject(
                f"readings were dead-lettered {where}: {report.dead_lettered} of them; the "
                "budget covers the outage but not the wait that follows: a retry planned past "
                "the budget is never started",
                "leave a margin of one wait: retry_max_elapsed >= outage + retry_max_interval",
            )
        if not report.clean_shutdown or report.in_flight:
            reject(
                f"the drain did not finish {where}: {report.in_flight} readings were still "
                f"in flight when shutdown_timeout ({shutdown_timeout:g} s) ran out; after the "
                "outage a batch was still sleeping before its next retry",
                "cap the wait between retries (retry_max_interval) well below "
                "shutdown_timeout, so that the first retry after the outage comes in time",
            )
        if not report.storage_retries or not report.ok:
            reject(
                f"the run {where} did not end well: " + "; ".join(report.verdicts()),
                "choose a budget longer than the outage and short waits between retries",
            )
    return f"{len(OUTAGES)} outages (0.6 to 3 s): nothing dead-lettered, every drain finished"
