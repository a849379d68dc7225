"""Live knobs: `Knobs`, `LIVE_KNOBS` and `Gateway.adjust`, turned mid-run on the virtual clock."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from telemetry_lab import (
    LIVE_KNOBS,
    Gateway,
    GatewayConfig,
    GatewayStatistics,
    Knobs,
    Report,
    VirtualTimeEventLoop,
)

LIVE_LIST = (
    "device_interval, storage_latency, storage_failure_rate, malformed_rate, "
    "device_crash_rate, client_delays"
)


def db_rows(path: Path) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(
            "SELECT device_id, seq, ts, temperature, humidity FROM readings ORDER BY device_id, seq"
        ).fetchall()


def comparable(report: Report) -> dict[str, Any]:
    out = report.to_dict()
    del out["wall_seconds"], out["db_path"]
    return out


@dataclasses.dataclass
class Adjusted:
    """What one run with a mid-run adjustment saw."""

    gateway: Gateway
    at: float
    """Seconds into the run when the knobs were turned."""
    before: GatewayStatistics
    """The gateway's statistics just before the knobs were turned."""
    knobs: Knobs | None
    report: Report


def run_adjusted(config: GatewayConfig, at: float, **changes: object) -> Adjusted:
    """Run `config` on the virtual clock, calling `adjust(**changes)` `at` seconds in.

    With no `changes` nothing is adjusted (a control run with the same snapshots).
    """

    async def main() -> Adjusted:
        gateway = Gateway(config)
        task = asyncio.create_task(gateway.run())
        await asyncio.sleep(at)
        before = gateway.statistics()
        knobs = gateway.adjust(**changes) if changes else None
        report = await task
        return Adjusted(
            gateway=gateway, at=before.elapsed, before=before, knobs=knobs, report=report
        )

    with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner:
        return runner.run(main())


def assert_ledger(report: Report, db: Path) -> None:
    assert report.balanced
    assert report.clean_shutdown
    assert (report.lost, report.in_flight) == (0, 0)
    assert report.stored == len(db_rows(db))


# --- Knobs and LIVE_KNOBS --------------------------------------------------------------------


def test_live_knobs_are_exactly_the_knobs_fields_and_config_fields() -> None:
    assert LIVE_KNOBS == (
        "device_interval",
        "storage_latency",
        "storage_failure_rate",
        "malformed_rate",
        "device_crash_rate",
        "client_delays",
    )
    assert tuple(f.name for f in dataclasses.fields(Knobs)) == LIVE_KNOBS
    config_fields = {f.name for f in dataclasses.fields(GatewayConfig)}
    assert set(LIVE_KNOBS) <= config_fields


def test_knobs_from_config_mirrors_the_config(tmp_path: Path) -> None:
    config = GatewayConfig(
        db_path=tmp_path / "t.db",
        clients=3,
        device_interval=0.75,
        storage_latency=0.2,
        storage_failure_rate=0.1,
        malformed_rate=0.05,
        device_crash_rate=0.01,
        client_delays=[0.5, 0],
    )
    knobs = Knobs.from_config(config)
    assert knobs == Knobs(
        device_interval=0.75,
        storage_latency=0.2,
        storage_failure_rate=0.1,
        malformed_rate=0.05,
        device_crash_rate=0.01,
        client_delays=(0.5, 0.0),
    )
    for name in LIVE_KNOBS:
        assert getattr(knobs, name) == getattr(config, name)
    assert Knobs.from_config(GatewayConfig()) == Knobs(
        device_interval=1.5,
        storage_latency=0.0,
        storage_failure_rate=0.0,
        malformed_rate=0.0,
        device_crash_rate=0.0,
        client_delays=(),
    )


def test_knobs_are_frozen() -> None:
    knobs = Knobs.from_config(GatewayConfig())
    with pytest.raises(dataclasses.FrozenInstanceError):
        knobs.storage_latency = 1.0  # type: ignore[misc]


def test_knobs_client_delay_defaults_to_zero() -> None:
    knobs = dataclasses.replace(Knobs.from_config(GatewayConfig()), client_delays=(0.5, 0.25))
    assert [knobs.client_delay(i) for i in (1, 2, 3, 4)] == [0.5, 0.25, 0.0, 0.0]
    assert knobs.client_delay(0) == 0.0


# --- Gateway.adjust: validation and publication ----------------------------------------------


def test_a_new_gateway_publishes_its_configs_knobs(tmp_path: Path) -> None:
    config = GatewayConfig(db_path=tmp_path / "t.db", storage_latency=0.25)
    assert Gateway(config).knobs == Knobs.from_config(config)


def test_adjust_returns_and_publishes_new_knobs(tmp_path: Path) -> None:
    gateway = Gateway(GatewayConfig(db_path=tmp_path / "t.db", clients=2))
    before = gateway.knobs
    knobs = gateway.adjust(storage_latency=0.5)
    assert knobs == dataclasses.replace(before, storage_latency=0.5)
    assert gateway.knobs == knobs
    # Adjustments accumulate: an earlier change is kept by a later one.
    again = gateway.adjust(malformed_rate=0.25, client_delays=[0, 1])
    assert again == dataclasses.replace(
        before, storage_latency=0.5, malformed_rate=0.25, client_delays=(0.0, 1.0)
    )
    assert gateway.knobs == again
    # The frozen config is not live state: it is untouched.
    assert gateway.config.storage_latency == 0.0
    assert gateway.config.malformed_rate == 0.0


@pytest.mark.parametrize(
    "changes",
    [
        {"storage_failure_rate": 2},
        {"storage_latency": -1.0},
        {"storage_latency": 61},
        {"device_interval": float("nan")},
        {"device_interval": "fast"},
        {"malformed_rate": True},
        {"device_crash_rate": 1.5},
        {"client_delays": (0.1, 0.2, 0.3, 0.4, 0.5)},
        {"client_delays": (0.1, -0.2)},
        {"client_delays": 0.5},
    ],
)
def test_adjust_refuses_invalid_values_with_the_configs_message(
    tmp_path: Path, changes: dict[str, object]
) -> None:
    config = GatewayConfig(db_path=tmp_path / "t.db")
    with pytest.raises(ValueError, match=r"^(client_delays|device_|malformed_|storage_)") as exc:
        config.replace(**changes)
    message = str(exc.value)
    gateway = Gateway(config)
    before = gateway.knobs
    with pytest.raises(ValueError, match=rf"^{re.escape(message)}$"):
        gateway.adjust(**changes)
    assert gateway.knobs == before  # nothing was published


def test_adjust_refusal_messages_are_exact(tmp_path: Path) -> None:
    gateway = Gateway(GatewayConfig(db_path=tmp_path / "t.db"))
    with pytest.raises(ValueError, match=r"^storage_failure_rate must be in \[0, 1\], got 2$"):
        gateway.adjust(storage_failure_rate=2)
    with pytest.raises(ValueError, match=r"^client_delays has 5 entries but clients is 4$"):
        gateway.adjust(client_delays=(0.0,) * 5)
    with pytest.raises(
        ValueError,
        match=r"^device_interval must be a finite number, 0 or in \[0\.001, 3600\], got 'x'$",
    ):
        gateway.adjust(device_interval="x")


def test_adjust_refuses_a_field_that_is_not_live(tmp_path: Path) -> None:
    gateway = Gateway(GatewayConfig(db_path=tmp_path / "t.db"))
    before = gateway.knobs
    with pytest.raises(
        ValueError, match=rf"^devices cannot be changed while running; live knobs are: {LIVE_LIST}$"
    ):
        gateway.adjust(devices=3)
    # Several fixed fields are named in order; a live change alongside them is not applied.
    fixed = "batch_size, devices cannot be changed while running"
    with pytest.raises(ValueError, match=rf"^{fixed}; live knobs are: {LIVE_LIST}$"):
        gateway.adjust(storage_latency=0.5, devices=3, batch_size=2)
    assert gateway.knobs == before


def test_adjust_with_nothing_republishes_the_same_knobs(tmp_path: Path) -> None:
    gateway = Gateway(GatewayConfig(db_path=tmp_path / "t.db", malformed_rate=0.1))
    before = gateway.knobs
    assert gateway.adjust() == before
    assert gateway.knobs == before


# --- Turning knobs mid-run on the virtual clock ----------------------------------------------


def backpressure_config(db: Path) -> GatewayConfig:
    """Fast devices and small queues: a slow database backs up to the devices quickly."""
    return GatewayConfig(
        db_path=db,
        devices=5,
        clients=1,
        duration=4.0,
        device_interval=0.1,
        telemetry_capacity=5,
        storage_capacity=2,
        batch_size=5,
        db_connections=1,
        sample_interval=0.1,
    )


def test_raising_storage_latency_mid_run_blocks_devices_only_after(tmp_path: Path) -> None:
    control_db, db = tmp_path / "control.db", tmp_path / "t.db"
    control = run_adjusted(backpressure_config(control_db), 2.0)
    assert control.report.device_blocked_seconds == 0.0  # without the change: never blocked

    run = run_adjusted(backpressure_config(db), 2.0, storage_latency=0.5)
    assert run.at == pytest.approx(2.0)
    assert run.knobs is not None
    assert run.knobs.storage_latency == 0.5
    assert run.before.telemetry.total_send_wait == 0.0
    samples = list(run.gateway.series)
    assert all(s.senders_blocked == 0 for s in samples if s.t <= run.at)
    assert max(s.senders_blocked for s in samples if s.t > run.at) > 0
    assert run.report.device_blocked_seconds > 0.5
    # Fewer readings get through after the change than in the same span of the control run.
    assert run.report.produced < control.report.produced
    assert_ledger(run.report, db)
    assert_ledger(control.report, control_db)


def test_raising_malformed_rate_mid_run_rejects_only_later_readings(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    config = GatewayConfig(db_path=db, devices=4, clients=1, duration=4.0, device_interval=0.1)
    run = run_adjusted(config, 2.0, malformed_rate=0.5)
    report = run.report
    assert run.before.aggregator.total_rejected == 0
    assert sum(d.total_malformed for d in run.before.devices) == 0
    assert report.rejected > 10
    after = run.gateway.statistics()
    assert sum(d.total_malformed for d in after.devices) == report.rejected
    assert sum(n for _, n in report.rejected_reasons) == report.rejected
    assert report.dead_lettered == 0
    # In the database: every reading made before the change is there; the missing ones
    # (rejected) all come after it.
    stored: dict[int, set[int]] = {}
    for device_id, seq, *_ in db_rows(db):
        stored.setdefault(device_id, set()).add(seq)
    missing = 0
    for made_before, made_total in zip(run.before.devices, after.devices, strict=True):
        seqs = stored[made_before.device_id]
        assert set(range(made_before.next_seq)) <= seqs
        missing += made_total.next_seq - len(seqs)
    assert missing == report.rejected
    assert report.produced == report.stored + report.rejected
    assert_ledger(report, db)


def test_client_delay_mid_run_makes_only_that_client_lag(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    config = GatewayConfig(
        db_path=db,
        devices=4,
        clients=2,
        duration=4.0,
        device_interval=0.1,
        broadcast_capacity=5,
    )
    run = run_adjusted(config, 2.0, client_delays=(0.5,))
    report = run.report
    assert [c.total_lagged for c in run.before.clients] == [0, 0]
    samples = list(run.gateway.series)
    assert all(s.client_lagged == (0, 0) for s in samples if s.t <= run.at)
    first, second = report.client_summaries
    assert first.lagged > 0
    assert first.received + first.lagged == report.updates_sent
    assert (second.received, second.lagged) == (report.updates_sent, 0)
    assert report.updates_lagged == first.lagged
    assert samples[-1].client_lagged == (first.lagged, 0)
    assert_ledger(report, db)


def test_device_interval_mid_run_changes_the_production_rate(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    config = GatewayConfig(
        db_path=db, devices=5, clients=1, duration=4.0, device_interval=0.2, sample_interval=0.5
    )
    run = run_adjusted(config, 2.0, device_interval=0.05)
    produced = {round(s.t, 6): s.produced for s in run.gateway.series}
    before = produced[2.0] / 2.0  # readings per second
    after = (produced[4.0] - produced[2.0]) / 2.0
    assert 5 / 0.2 * 0.8 <= before <= 5 / 0.2 * 1.2  # about 25/s
    assert 5 / 0.05 * 0.8 <= after <= 5 / 0.05 * 1.2  # about 100/s
    assert_ledger(run.report, db)


def test_adjust_device_interval_to_zero_mid_run_on_the_virtual_clock_is_refused(
    tmp_path: Path,
) -> None:
    """`run()` refuses device_interval=0 on a virtual clock (it would never advance);
    turning the knob to 0 mid-run must be refused too, not hang the run forever."""
    config = GatewayConfig(db_path=tmp_path / "t.db", devices=2, clients=1, duration=2.0)

    async def main() -> Report:
        gateway = Gateway(config)
        task = asyncio.create_task(gateway.run())
        await asyncio.sleep(1.0)
        try:
            with pytest.raises(
                ValueError,
                match=(
                    r"^device_interval=0 \(unthrottled devices\) never lets a virtual clock "
                    r"advance; use a positive device_interval with virtual time$"
                ),
            ):
                gateway.adjust(device_interval=0)
        finally:
            if gateway.knobs.device_interval == 0:
                gateway.adjust(device_interval=1.0)  # let the run finish
        return await task

    with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner:
        report = runner.run(main())
    assert report.clean_shutdown


def test_storage_failure_rate_mid_run_retries_only_after(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    config = GatewayConfig(db_path=db, devices=3, clients=1, duration=4.0, device_interval=0.1)
    run = run_adjusted(config, 2.0, storage_failure_rate=0.5)
    before = run.before.storage
    assert before is not None
    assert before.total_retries == 0
    assert run.report.storage_retries > 0
    assert_ledger(run.report, db)


# --- Determinism ----------------------------------------------------------------------------


def test_same_seed_and_same_adjustment_give_identical_runs(tmp_path: Path) -> None:
    def once(db: Path) -> Adjusted:
        config = backpressure_config(db).replace(seed=7)
        return run_adjusted(config, 1.5, storage_latency=0.3, malformed_rate=0.2)

    a, b = tmp_path / "a.db", tmp_path / "b.db"
    first, second = once(a), once(b)
    assert first.report.rejected > 0
    assert first.report.device_blocked_seconds > 0
    assert comparable(first.report) == comparable(second.report)
    assert list(first.gateway.series) == list(second.gateway.series)
    assert db_rows(a) == db_rows(b)


def test_adjusting_to_the_same_values_changes_nothing(tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    control = run_adjusted(backpressure_config(a), 2.0)
    same = run_adjusted(backpressure_config(b), 2.0, storage_latency=0.0, malformed_rate=0.0)
    assert comparable(control.report) == comparable(same.report)
    assert db_rows(a) == db_rows(b)
