"""The gateway's conservation ledger holds for any config, fault mix and stop time.

A hypothesis property test on the virtual clock: random sizes, capacities, fault knobs,
retry policies and shutdown timeouts; the run either lasts its `duration` or is ended
part-way: by `stop()`, `abort()`, or cancelling its task once or twice. Every report must
balance and must match the database file.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from telemetry_lab import Gateway, GatewayConfig, Report, VirtualTimeEventLoop

STOP_HOW = ("cancel", "cancel twice", "stop", "abort")
"""The ways a scenario ends its run early."""

TEMPERATURE_RANGE = (-50.0, 100.0)
HUMIDITY_RANGE = (0.0, 100.0)


@dataclass(frozen=True, slots=True)
class Scenario:
    """One example: the config (db_path replaced per example), when and how to end the run."""

    config: GatewayConfig
    stop_at: float | None
    """Loop seconds after which the run is ended early; None runs to `duration`."""
    how: str
    """One of `STOP_HOW`."""


def _floats(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    devices = draw(st.integers(1, 5))
    clients = draw(st.integers(0, 4))
    duration = draw(_floats(0.5, 6.0))
    outage: tuple[float, float] | None = None
    if draw(st.booleans()):  # a window inside the run, as fractions of `duration`
        start_frac = draw(_floats(0.0, 0.9))
        end_frac = draw(_floats(start_frac + 0.05, 1.0))
        outage = (duration * start_frac, duration * end_frac)
    delays = tuple(draw(st.lists(_floats(0.0, 0.3), max_size=clients)))
    retry_initial = draw(_floats(0.01, 0.5))
    config = GatewayConfig(
        db_path=Path("replaced-per-example.db"),
        devices=devices,
        clients=clients,
        duration=duration,
        device_interval=draw(_floats(0.05, 2.0)),
        telemetry_capacity=draw(st.integers(1, 20)),
        storage_capacity=draw(st.integers(1, 20)),
        broadcast_capacity=draw(st.integers(1, 20)),
        batch_size=draw(st.integers(1, 15)),
        flush_interval=draw(_floats(0.1, 5.0)),
        db_connections=draw(st.integers(1, 3)),
        device_bandwidth=draw(st.integers(1, 4)),
        seed=draw(st.integers(0, 2**32)),
        storage_failure_rate=draw(_floats(0.0, 0.6)),
        storage_outage=outage,
        storage_latency=draw(_floats(0.0, 0.5)),
        client_delays=delays,
        malformed_rate=draw(_floats(0.0, 0.5)),
        device_crash_rate=draw(_floats(0.0, 0.2)),
        retry_initial=retry_initial,
        retry_max_interval=draw(_floats(retry_initial, 1.0)),
        retry_max_elapsed=draw(_floats(0.0, 3.0)),
        shutdown_timeout=draw(_floats(0.1, 5.0)),
    )
    stop_at = draw(st.none() | st.floats(min_value=0.01, max_value=duration, exclude_max=True))
    how = draw(st.sampled_from(STOP_HOW))
    return Scenario(config=config, stop_at=stop_at, how=how)


def run_scenario(scenario: Scenario, config: GatewayConfig) -> Report:
    """Run to `duration`, or end the run at `stop_at` the scenario's way."""
    gateway = Gateway(config)
    stop_at = scenario.stop_at

    async def main() -> None:
        task = asyncio.create_task(gateway.run())
        if stop_at is None:
            await task
            outcome.append("returned")
            return
        await asyncio.sleep(stop_at)
        if scenario.how == "stop":
            gateway.stop()
        elif scenario.how == "abort":
            gateway.abort()
        else:
            for _ in range(2 if scenario.how == "cancel twice" else 1):
                task.cancel()
                await asyncio.sleep(0)
        try:
            await task
        except asyncio.CancelledError:
            outcome.append("cancelled")
        else:
            outcome.append("returned")

    outcome: list[str] = []

    with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner:
        runner.run(main())
    assert gateway.report is not None
    cancelled = stop_at is not None and scenario.how.startswith("cancel")
    assert outcome == ["cancelled" if cancelled else "returned"]  # cancellation propagates
    return gateway.report


def table(path: Path, sql: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


def assert_in_range(value: object, low: float, high: float) -> None:
    assert isinstance(value, float), value
    assert math.isfinite(value), value
    assert low <= value <= high, value


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
def test_ledger_balances_and_matches_the_database(
    scenario: Scenario, tmp_path_factory: pytest.TempPathFactory
) -> None:
    db = tmp_path_factory.mktemp("ledger") / "t.db"
    config = scenario.config.replace(db_path=db)
    report = run_scenario(scenario, config)
    event("stop", scenario.how if scenario.stop_at is not None else "duration")
    event("clean_shutdown", str(report.clean_shutdown))
    event("outcome", "ok" if report.ok else "not ok")
    event("dead-lettered", "some" if report.dead_lettered else "none")
    event("rejected", "some" if report.rejected else "none")
    event("lagged", "some" if report.updates_lagged else "none")
    event("restarts", "some" if report.device_restarts else "none")
    event("in flight at stop", "some" if report.in_flight else "none")

    # The ledger.
    assert report.balanced
    assert report.produced == (
        report.stored + report.rejected + report.dead_lettered + report.in_flight
    )
    assert report.lost == report.produced - report.stored - report.rejected - report.dead_lettered
    if report.clean_shutdown:
        assert (report.in_flight, report.lost) == (0, 0)
    assert report.errors == ()  # injected faults are handled: nothing fails for real
    assert report.unwritable == 0
    assert report.ok == (report.clean_shutdown and report.lost == 0 and report.in_flight == 0)
    if scenario.stop_at is not None and report.ended_by != "failure":
        expected = {"stop": "stop", "abort": "abort", "cancel": "cancel"}
        assert report.ended_by == expected.get(scenario.how, report.ended_by)

    # The report matches the file.
    readings = table(db, "SELECT device_id, seq, ts, temperature, humidity FROM readings")
    dead = table(db, "SELECT device_id, seq, ts, temperature, humidity FROM dead_letters")
    assert table(db, "SELECT DISTINCT run_id FROM readings UNION SELECT run_id FROM runs") == [
        (report.run_id,)
    ]
    assert report.stored == table(db, "SELECT COUNT(*) FROM readings")[0][0] == len(readings)
    assert report.dead_lettered == table(db, "SELECT COUNT(*) FROM dead_letters")[0][0]
    stored_keys = {(row[0], row[1]) for row in readings}
    dead_keys = {(row[0], row[1]) for row in dead}
    assert len(stored_keys) == len(readings)
    assert len(dead_keys) == len(dead)
    assert stored_keys & dead_keys == set()

    # Only valid readings reach either table: malformed ones are rejected upstream.
    for device_id, seq, ts, temperature, humidity in readings + dead:
        assert isinstance(device_id, int)
        assert 1 <= device_id <= config.devices
        assert isinstance(seq, int)
        assert seq >= 0
        assert_in_range(ts, 0.0, math.inf)
        assert_in_range(temperature, *TEMPERATURE_RANGE)
        assert_in_range(humidity, *HUMIDITY_RANGE)

    # Clients.
    assert len(report.client_summaries) == config.clients
    assert report.updates_delivered == sum(s.received for s in report.client_summaries)
    assert report.updates_lagged == sum(s.lagged for s in report.client_summaries)
    assert report.updates_delivered + report.updates_lagged <= report.updates_sent * config.clients
    for summary in report.client_summaries:
        assert summary.received + summary.lagged <= report.updates_sent
        if report.clean_shutdown:  # every client, slow ones too, accounts for every update
            assert summary.received + summary.lagged == report.updates_sent, summary

    # Tasks.
    assert report.tasks_started == config.devices + config.clients + 2
    assert report.tasks_stopped_cleanly <= report.tasks_started
    if report.clean_shutdown:  # faults are handled inside the tasks: none fails
        assert report.tasks_stopped_cleanly == report.tasks_started
