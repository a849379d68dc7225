"""Each fault knob, end to end on the virtual clock, plus the pieces that handle it.

Every gateway run here is checked against the database file: the ledger balances, `stored`
and `dead_lettered` equal the rows of their tables, and no reading is in both tables.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
import re
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import telemetry_lab.__main__ as cli
from telemetry_lab import (
    Gateway,
    GatewayConfig,
    Reading,
    Report,
    TransientStorageError,
    VirtualTimeEventLoop,
    run,
)
from telemetry_lab.faults import MALFORMATIONS, StorageFault, StorageFaults, malform
from telemetry_lab.storage import ConnectionPool, RetryPolicy, dead_letter_batch, write_attempt
from telemetry_lab.validation import HUMIDITY_RANGE, TEMPERATURE_RANGE, validate_reading

REASONS = {
    f"{field}_{suffix}"
    for field in ("temperature", "humidity")
    for suffix in ("wrong_type", "nan", "infinite", "out_of_range")
}
"""Every reason `validate_reading` can give, written out here."""


# --- helpers ---------------------------------------------------------------------------------


def query(db: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql, params).fetchall()


def count(db: Path, table: str) -> int:
    return int(query(db, f"SELECT COUNT(*) FROM {table}")[0][0])


def table_rows(db: Path, table: str) -> list[tuple[Any, ...]]:
    return query(db, f"SELECT * FROM {table} ORDER BY device_id, seq")


def check_ledger(report: Report, db: Path) -> None:
    """The invariants every run must keep, faults or not."""
    assert report.balanced
    assert report.stored == count(db, "readings")
    assert report.dead_lettered == count(db, "dead_letters")
    in_both = query(
        db, "SELECT COUNT(*) FROM readings JOIN dead_letters USING (run_id, device_id, seq)"
    )
    assert in_both == [(0,)]
    assert report.produced == (
        report.stored
        + report.rejected
        + report.dead_lettered
        + report.unwritable
        + report.in_flight
    )
    assert report.lost == report.produced - report.stored - report.rejected - report.dead_lettered


def comparable(report: Report) -> dict[str, Any]:
    out = report.to_dict()
    del out["wall_seconds"], out["db_path"]
    return out


def run_gateway_object(config: GatewayConfig) -> tuple[Gateway, Report]:
    gateway = Gateway(config)
    with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner:
        report = runner.run(gateway.run())
    return gateway, report


def messages(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if needle in r.getMessage()]


def reading(**changes: object) -> Reading:
    values: dict[str, Any] = {
        "device_id": 1,
        "seq": 0,
        "ts": 0.0,
        "temperature": 20.0,
        "humidity": 50.0,
    }
    values.update(changes)
    return Reading(**values)


# --- 1. transient failures and lost acknowledgements -----------------------------------------


def test_transient_failures_are_retried_until_every_reading_is_stored(tmp_path: Path) -> None:
    healthy = run(GatewayConfig(db_path=tmp_path / "h.db"), virtual_time=True)
    db = tmp_path / "t.db"
    report = run(GatewayConfig(db_path=db, storage_failure_rate=0.5), virtual_time=True)
    check_ledger(report, db)
    assert report.storage_retries > 0
    assert (report.lost, report.in_flight, report.dead_lettered, report.rejected) == (0, 0, 0, 0)
    assert report.produced == healthy.produced == 45  # storage faults do not slow devices here
    assert report.stored == report.produced
    assert report.clean_shutdown
    assert report.ok
    assert report.batches == healthy.batches  # every batch got through, once
    assert query(db, "SELECT COUNT(DISTINCT device_id || ':' || seq) FROM readings") == [(45,)]
    # The same readings as a healthy run, and each row once.
    assert table_rows(db, "readings") == table_rows(tmp_path / "h.db", "readings")


def test_lost_acknowledgements_never_duplicate_or_double_count_rows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A high failure rate: half the failures commit the rows and then fail (lost ack)."""
    db = tmp_path / "t.db"
    config = GatewayConfig(
        db_path=db, storage_failure_rate=0.9, batch_size=2, retry_max_elapsed=0.5
    )
    with caplog.at_level(logging.WARNING, logger="telemetry_lab"):
        gateway, report = run_gateway_object(config)
    lost_acks = [m for m in messages(caplog, "🔁 Write failed") if "acknowledgement lost" in m]
    assert len(lost_acks) > 0  # the scenario really lost acknowledgements
    check_ledger(report, db)
    assert report.dead_lettered > 0  # and some batches ran out of budget
    assert (report.lost, report.in_flight) == (0, 0)
    assert report.stored + report.dead_lettered == report.produced == 45
    storage = gateway.statistics().storage
    assert storage is not None
    assert storage.total_duplicates == 0  # a retried lost ack is not a duplicate
    assert storage.total_received == storage.total_stored + storage.total_dead_lettered
    assert storage.current_writing == 0
    assert report.storage_retries == storage.total_retries >= len(lost_acks)
    # Batches that gave up: rows a lost ack had committed stay stored, not dead-lettered.
    gave_up = [
        tuple(map(int, re.findall(r"^☠️ Dead-lettered (\d+) of (\d+) readings", m)[0]))
        for m in messages(caplog, "☠️ Dead-lettered")
    ]
    assert sum(dead for dead, _ in gave_up) == report.dead_lettered
    assert any(dead == 0 for dead, _ in gave_up)  # a whole batch was in already
    assert any(dead == size for dead, size in gave_up)  # a whole batch was not
    # Same run again: identical, lost acks included.
    db2 = tmp_path / "t2.db"
    again = run(config.replace(db_path=db2), virtual_time=True)
    assert comparable(again) == comparable(report)
    assert table_rows(db2, "readings") == table_rows(db, "readings")


async def test_write_attempt_with_a_lost_ack_commits_then_raises_and_a_retry_is_idempotent(
    tmp_path: Path,
) -> None:
    db = tmp_path / "t.db"
    pool = await ConnectionPool.open(db, 1)
    conn = await pool.acquire()
    try:
        rows = [(1, 1, 0, 0.5, 20.0, 50.0), (1, 1, 1, 1.5, 20.5, 51.0), (1, 2, 0, 0.7, 19.0, 49.0)]
        lost = StorageFault(when="after", reason="write acknowledgement lost")
        with pytest.raises(TransientStorageError, match=r"^write acknowledgement lost$") as info:
            write_attempt(conn, rows, lost)
        assert info.value.inserted == 3
        assert info.value.reason == "write acknowledgement lost"
        assert table_rows(db, "readings") == rows  # committed despite the error
        assert write_attempt(conn, rows, None) == 0  # the retry adds nothing
        assert table_rows(db, "readings") == rows
        # A lost ack on a retry of stored rows reports 0 inserted.
        with pytest.raises(TransientStorageError) as again:
            write_attempt(conn, rows, lost)
        assert again.value.inserted == 0
        # A failure *before* the write commits nothing.
        more = [(1, 3, 0, 2.0, 18.0, 40.0)]
        refused = StorageFault(when="before", reason="transient write failure")
        with pytest.raises(TransientStorageError, match=r"^transient write failure$") as before:
            write_attempt(conn, more, refused)
        assert before.value.inserted == 0
        assert count(db, "readings") == 3
        # Mixed: one row already stored, one new.
        assert write_attempt(conn, [rows[0], *more], None) == 1
        assert count(db, "readings") == 4
        # Dead letters skip rows already stored.
        late = [rows[1], (1, 4, 0, 3.0, 17.0, 45.0)]
        assert dead_letter_batch(conn, late, "storage outage; gave up after 2 attempts", 9.5) == 1
        assert table_rows(db, "dead_letters") == [
            (1, 4, 0, 3.0, 17.0, 45.0, "storage outage; gave up after 2 attempts", 9.5)
        ]
        assert dead_letter_batch(conn, late, "again", 10.0) == 0  # idempotent too
    finally:
        pool.release(conn)
        await pool.close()


def test_storage_faults_fail_every_attempt_inside_the_half_open_outage() -> None:
    faults = StorageFaults(failure_rate=0.0, outage=(2.0, 9.0), rng=random.Random(1))
    outage = StorageFault(when="before", reason="storage outage")
    assert [faults.check(t) for t in (0.0, 1.999, 2.0, 5.0, 8.999, 9.0, 100.0)] == [
        None,
        None,
        outage,
        outage,
        outage,
        None,
        None,
    ]


def test_storage_faults_draw_reproducible_transient_failures_of_both_kinds() -> None:
    def draws(seed: int, rate: float) -> list[StorageFault | None]:
        faults = StorageFaults(failure_rate=rate, outage=None, rng=random.Random(seed))
        return [faults.check(float(t)) for t in range(2000)]

    always = draws(3, 1.0)
    assert None not in always
    kinds = {(f.when, f.reason) for f in always if f is not None}
    assert kinds == {
        ("after", "write acknowledgement lost"),
        ("before", "transient write failure"),
    }
    assert draws(3, 0.0) == [None] * 2000
    half = draws(3, 0.5)
    assert draws(3, 0.5) == half
    assert 800 < sum(f is not None for f in half) < 1200


def test_a_zero_failure_rate_does_not_consume_random_numbers() -> None:
    rng = random.Random(5)
    state = rng.getstate()
    faults = StorageFaults(failure_rate=0.0, outage=None, rng=rng)
    assert [faults.check(float(t)) for t in range(10)] == [None] * 10
    assert rng.getstate() == state


# --- 2. retries hold the pool permit ----------------------------------------------------------


def test_retries_hold_their_connection_and_never_take_another(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    config = GatewayConfig(db_path=db, db_connections=1, storage_failure_rate=0.5)
    gateway, report = run_gateway_object(config)
    check_ledger(report, db)
    assert report.storage_retries > 0
    assert report.ok
    stats = gateway.statistics()
    assert stats.db_pool is not None
    assert stats.storage is not None
    assert (stats.db_pool.max_permits, stats.db_pool.max_in_use) == (1, 1)
    assert stats.db_pool.current_in_use == 0
    flushes = stats.storage.flushes_by_size + stats.storage.flushes_by_age
    flushes += stats.storage.flushes_at_close
    # One acquisition per batch: the retries happened inside it.
    assert stats.db_pool.total_acquired == flushes == report.batches
    assert max(s.db_in_use for s in gateway.series) <= 1


def test_with_two_connections_retries_never_exceed_the_pool(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    config = GatewayConfig(
        db_path=db, db_connections=2, storage_failure_rate=0.7, device_interval=0.1
    )
    gateway, report = run_gateway_object(config)
    check_ledger(report, db)
    assert report.storage_retries > 0
    stats = gateway.statistics()
    assert stats.db_pool is not None
    assert stats.storage is not None
    assert stats.db_pool.max_in_use == 2
    flushes = stats.storage.flushes_by_size + stats.storage.flushes_by_age
    flushes += stats.storage.flushes_at_close
    assert stats.db_pool.total_acquired == flushes
    assert max(s.db_in_use for s in gateway.series) <= 2


# --- 3. the retry policy ---------------------------------------------------------------------


class UpperBound(random.Random):
    """A generator whose `uniform(a, b)` always returns `b`: exposes the delay's cap."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_retry_delay_caps_double_from_initial_up_to_max_interval() -> None:
    policy = RetryPolicy(initial=0.1, max_interval=2.0, max_elapsed=10.0)
    caps = [policy.delay(k, UpperBound()) for k in range(1, 9)]
    assert caps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0])
    assert policy.delay(60, UpperBound()) == 2.0  # no overflow far out
    # Found while measuring the config limits: attempt 1025 raised OverflowError (2**1024
    # is no float) and killed the storage task.
    assert policy.delay(100_000, UpperBound()) == 2.0
    tiny = RetryPolicy(initial=0.001, max_interval=0.001, max_elapsed=100.0)
    assert tiny.delay(5_000, UpperBound()) == 0.001


def test_a_long_failing_run_with_the_shortest_retries_keeps_retrying(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    config = GatewayConfig(
        db_path=db,
        duration=1.0,
        device_interval=0.1,
        shutdown_timeout=0.5,
        storage_failure_rate=1.0,
        retry_initial=0.001,
        retry_max_interval=0.001,
        retry_max_elapsed=100.0,
    )
    report = run(config, virtual_time=True)
    check_ledger(report, db)
    assert report.errors == ()  # no OverflowError past attempt 1024
    assert report.storage_retries > 1_100
    assert report.ended_by == "duration"
    assert report.tasks_stopped_cleanly < report.tasks_started  # storage cut at the deadline


def test_retry_delay_is_full_jitter_between_0_and_the_cap() -> None:
    policy = RetryPolicy(initial=0.25, max_interval=3.0, max_elapsed=10.0)
    rng = random.Random(11)
    for k in range(1, 10):
        cap = min(3.0, 0.25 * 2 ** (k - 1))
        delays = [policy.delay(k, rng) for _ in range(500)]
        assert all(0.0 <= d <= cap for d in delays)
        assert min(delays) < 0.1 * cap  # full jitter: it reaches down to 0...
        assert max(delays) > 0.9 * cap  # ...and up to the cap


def test_retry_delay_is_reproducible_for_a_seed() -> None:
    policy = RetryPolicy(initial=0.1, max_interval=2.0, max_elapsed=10.0)
    a, b, c = random.Random(7), random.Random(7), random.Random(8)
    first = [policy.delay(k, a) for k in range(1, 20)]
    assert [policy.delay(k, b) for k in range(1, 20)] == first
    assert [policy.delay(k, c) for k in range(1, 20)] != first


# --- 4. an outage longer than the retry budget -----------------------------------------------

OUTAGE_BACKPRESSURE: dict[str, Any] = {
    "duration": 15,
    "device_interval": 0.05,
    "telemetry_capacity": 5,
    "storage_capacity": 2,
    "db_connections": 1,
}


def test_an_outage_past_the_budget_dead_letters_and_pushes_back_on_devices(
    tmp_path: Path,
) -> None:
    healthy_db = tmp_path / "h.db"
    healthy_gw, healthy = run_gateway_object(
        GatewayConfig(db_path=healthy_db, **OUTAGE_BACKPRESSURE)
    )
    check_ledger(healthy, healthy_db)
    assert healthy.device_blocked_seconds == 0.0  # without the outage storage keeps up
    assert healthy_gw.statistics().telemetry.total_blocked_sends == 0

    db = tmp_path / "t.db"
    config = GatewayConfig(
        db_path=db, storage_outage=(2, 9), retry_max_elapsed=3, **OUTAGE_BACKPRESSURE
    )
    gateway, report = run_gateway_object(config)
    check_ledger(report, db)
    assert report.dead_lettered > 0
    assert report.dead_lettered % 10 == 0  # whole batches of 10
    assert (report.lost, report.in_flight, report.rejected) == (0, 0, 0)
    assert report.clean_shutdown
    assert report.ok
    assert report.storage_retries > 0
    assert report.stored + report.dead_lettered == report.produced
    assert report.produced < healthy.produced  # the outage slowed the devices down

    for (reason,) in query(db, "SELECT DISTINCT reason FROM dead_letters"):
        assert re.fullmatch(r"storage outage; gave up after \d+ attempts?", reason), reason
    # A batch is dead-lettered at most retry_max_elapsed after its first failed attempt.
    [(min_failed, max_failed)] = query(
        db, "SELECT MIN(failed_at), MAX(failed_at) FROM dead_letters"
    )
    assert 2.0 <= min_failed <= max_failed <= 9.0 + 3.0
    [(latest_dead,)] = query(db, "SELECT MAX(ts) FROM dead_letters")
    assert latest_dead < 9.0
    # Outside the window readings are stored: before it and after it.
    assert count(db, "readings") > 0
    assert query(db, "SELECT COUNT(*) FROM readings WHERE ts < 1.5")[0][0] > 0
    assert query(db, "SELECT COUNT(*) FROM dead_letters WHERE ts < 1.5") == [(0,)]
    after = query(db, "SELECT COUNT(*) FROM readings WHERE ts >= 9")[0][0]
    assert after > 0
    assert query(db, "SELECT COUNT(*) FROM dead_letters WHERE ts >= 9") == [(0,)]

    # Backpressure reached the devices, and only because of the outage.
    assert report.device_blocked_seconds > 0
    stats = gateway.statistics()
    assert stats.telemetry.total_blocked_sends > 0
    assert stats.telemetry.total_send_wait == report.device_blocked_seconds
    blocked_at = [s.t for s in gateway.series if s.senders_blocked > 0]
    assert blocked_at, "no sample saw a blocked device"
    assert all(2.0 <= t <= 9.0 + 3.0 for t in blocked_at)


def test_without_a_retry_budget_an_outage_dead_letters_at_the_first_failure(
    tmp_path: Path,
) -> None:
    db = tmp_path / "t.db"
    config = GatewayConfig(db_path=db, storage_outage=(2, 9), retry_max_elapsed=0)
    report = run(config, virtual_time=True)
    check_ledger(report, db)
    assert report.storage_retries == 0
    assert report.dead_lettered > 0
    assert report.ok
    reasons = query(db, "SELECT DISTINCT reason FROM dead_letters")
    assert reasons == [("storage outage; gave up after 1 attempt",)]
    assert query(db, "SELECT COUNT(*) FROM dead_letters WHERE failed_at < 2 OR failed_at >= 9") == [
        (0,)
    ]


# --- 5. a slow client ------------------------------------------------------------------------


def test_a_slow_client_lags_alone_and_slows_nothing_else(tmp_path: Path) -> None:
    fast_db, slow_db = tmp_path / "fast.db", tmp_path / "slow.db"
    fast = run(GatewayConfig(db_path=fast_db, broadcast_capacity=5), virtual_time=True)
    config = GatewayConfig(db_path=slow_db, broadcast_capacity=5, client_delays=(0.5,))
    report = run(config, virtual_time=True)
    check_ledger(report, slow_db)
    check_ledger(fast, fast_db)
    first, *others = report.client_summaries
    assert first.client_id == 1
    assert first.lagged > 0
    assert first.received + first.lagged == report.updates_sent
    # Each update costs the slow client 0.5 s of loop time.
    assert first.received <= report.loop_seconds / 0.5 + 1
    for summary in others:
        assert (summary.received, summary.lagged) == (report.updates_sent, 0)
    assert [s.client_id for s in others] == [2, 3, 4]
    assert report.updates_lagged == first.lagged
    assert report.updates_delivered == first.received + 3 * report.updates_sent
    assert report.ok
    assert report.stored == report.produced
    # Same readings, same rows as without the slow client: the aggregator never waited.
    assert (report.produced, report.stored, report.batches) == (
        fast.produced,
        fast.stored,
        fast.batches,
    )
    assert report.updates_sent == fast.updates_sent == fast.produced
    assert [(s.received, s.lagged) for s in fast.client_summaries] == [(fast.produced, 0)] * 4
    assert table_rows(slow_db, "readings") == table_rows(fast_db, "readings")
    # Only the drain waits for the slow client: at most its backlog of 5 plus the one it holds.
    assert fast.loop_seconds == pytest.approx(10.0)
    assert 10.0 <= report.loop_seconds <= 10.0 + 6 * 0.5


def test_a_slow_client_with_a_long_backlog_never_makes_a_clean_run_fail(tmp_path: Path) -> None:
    """Found: every reading stored, and still `ok=False`, "❌ Data was lost" next to "Lost 0":
    the drain waited for a client working through 100 updates at 0.5 s each."""
    db = tmp_path / "t.db"
    gateway, report = run_gateway_object(GatewayConfig(db_path=db, client_delays=(0.5,)))
    check_ledger(report, db)
    assert report.ok, report.summary_table()
    assert report.clean_shutdown
    assert report.tasks_stopped_cleanly == report.tasks_started == 13
    assert (report.lost, report.in_flight) == (0, 0)
    slow = gateway.statistics().clients[0]
    assert slow.total_skipped_at_shutdown > 0  # out of time at shutdown: skipped, counted
    first = report.client_summaries[0]
    assert first.received + first.lagged == report.updates_sent
    assert report.loop_seconds < 10.0 + report.updates_sent * 0.5  # it did not wait it out
    assert report.loop_seconds <= 10.0 + gateway.config.shutdown_timeout
    assert report.verdicts() == (
        "✅ Zero data loss: every reading was stored, rejected or dead-lettered",
        f"📉 Clients missed {report.updates_lagged} of {4 * report.updates_sent} updates (slow "
        "clients lag; the database still has every reading)",
    )


# --- 6. crashing devices ---------------------------------------------------------------------


def test_crashed_devices_are_restarted_and_their_sequences_stay_gapless(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    config = GatewayConfig(db_path=db, device_crash_rate=0.1)
    gateway, report = run_gateway_object(config)
    check_ledger(report, db)
    assert report.device_restarts > 0
    assert report.tasks_stopped_cleanly == report.tasks_started == 13
    assert (report.lost, report.in_flight, report.rejected, report.dead_lettered) == (0, 0, 0, 0)
    assert report.ok
    assert report.stored == report.produced > 0
    by_device: dict[int, list[int]] = {}
    for device_id, seq in query(db, "SELECT device_id, seq FROM readings ORDER BY device_id, seq"):
        by_device.setdefault(device_id, []).append(seq)
    # A crash happens before a reading is taken: no sequence number is skipped or reused.
    for device_id, seqs in by_device.items():
        assert seqs == list(range(len(seqs))), device_id
    next_seqs = {d.device_id: d.next_seq for d in gateway.statistics().devices}
    assert next_seqs == {d: len(by_device.get(d, [])) for d in range(1, 8)}
    assert sum(d.total_sent for d in gateway.statistics().devices) == report.produced


def test_a_device_that_always_crashes_never_stops_the_gateway(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    report = run(GatewayConfig(db_path=db, device_crash_rate=1.0), virtual_time=True)
    check_ledger(report, db)
    assert report.device_restarts >= 7
    assert (report.produced, report.stored, report.batches) == (0, 0, 0)
    assert report.tasks_stopped_cleanly == report.tasks_started == 13
    assert report.ok
    assert report.loop_seconds == pytest.approx(10.0)


def test_a_device_that_always_crashes_is_restarted_with_doubling_backoff(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "t.db"
    config = GatewayConfig(db_path=db, devices=1, device_interval=0.01, device_crash_rate=1.0)
    with caplog.at_level(logging.WARNING, logger="telemetry_lab"):
        report = run(config, virtual_time=True)
    check_ledger(report, db)
    delays = [m.rsplit(" ", 1)[1] for m in messages(caplog, "💥 device 1 crashed (simulated)")]
    # 0.1 doubling to a cap of 2.0: 9 crashes fit in 10 s (0.1+...+1.6 + 3x2.0 = 9.1 s).
    assert delays == [
        "0.10s",
        "0.20s",
        "0.40s",
        "0.80s",
        "1.60s",
        "2.00s",
        "2.00s",
        "2.00s",
        "2.00s",
    ]
    assert report.device_restarts == 9
    assert report.produced == 0
    assert report.ok


def test_the_restart_backoff_starts_over_once_a_device_has_sent_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "t.db"
    config = GatewayConfig(
        db_path=db, devices=1, duration=60, device_interval=0.1, device_crash_rate=0.5
    )
    with caplog.at_level(logging.INFO, logger="telemetry_lab"):
        report = run(config, virtual_time=True)
    check_ledger(report, db)
    expected: list[str] = []
    actual: list[str] = []
    backoff, sent = 0.1, False
    for record in caplog.records:
        message = record.getMessage()
        if message.startswith("📱 Device 1 sent"):
            sent = True
        elif message.startswith("💥 device 1 crashed"):
            if sent:
                backoff = 0.1
            expected.append(f"{backoff:.2f}s")
            actual.append(message.rsplit(" ", 1)[1])
            backoff, sent = min(backoff * 2, 2.0), False
    assert actual == expected
    assert len(actual) == report.device_restarts
    assert "0.10s" in actual
    assert "0.40s" in actual
    assert report.ok


# --- 7. malformed readings -------------------------------------------------------------------


def test_malformed_readings_are_rejected_counted_by_reason_and_never_stored(
    tmp_path: Path,
) -> None:
    db = tmp_path / "t.db"
    gateway, report = run_gateway_object(GatewayConfig(db_path=db, malformed_rate=0.3))
    check_ledger(report, db)
    assert report.rejected > 0
    assert sum(n for _, n in report.rejected_reasons) == report.rejected
    reasons = [reason for reason, _ in report.rejected_reasons]
    assert reasons == sorted(reasons)
    assert set(reasons) <= REASONS
    assert all(n > 0 for _, n in report.rejected_reasons)
    # Exactly the readings the devices garbled were rejected.
    assert sum(d.total_malformed for d in gateway.statistics().devices) == report.rejected
    assert report.stored == report.produced - report.rejected
    assert report.updates_sent == report.produced - report.rejected  # never reach clients
    assert all(s.received == report.updates_sent for s in report.client_summaries)
    assert (report.lost, report.in_flight, report.dead_lettered) == (0, 0, 0)
    assert report.ok
    t_low, t_high = TEMPERATURE_RANGE
    h_low, h_high = HUMIDITY_RANGE
    bad = query(
        db,
        "SELECT COUNT(*) FROM readings WHERE typeof(temperature) != 'real'"
        " OR typeof(humidity) != 'real' OR temperature NOT BETWEEN ? AND ?"
        " OR humidity NOT BETWEEN ? AND ?",
        t_low,
        t_high,
        h_low,
        h_high,
    )
    assert bad == [(0,)]
    for temperature, humidity in query(db, "SELECT temperature, humidity FROM readings"):
        assert math.isfinite(temperature)
        assert math.isfinite(humidity)
    # The table for the summary lists every reason.
    table = report.summary_table()
    for reason, n in report.rejected_reasons:
        assert re.search(rf"^  {re.escape('  rejected: ' + reason)}\s+{n}$", table, re.M)


def test_every_malformed_reading_is_rejected_with_the_documented_reason(
    tmp_path: Path,
) -> None:
    db = tmp_path / "t.db"
    report = run(GatewayConfig(db_path=db, malformed_rate=1.0), virtual_time=True)
    check_ledger(report, db)
    assert report.rejected == report.produced > 0
    assert (report.stored, report.updates_sent, report.batches) == (0, 0, 0)
    assert {r for r, _ in report.rejected_reasons} <= REASONS
    assert report.ok


@pytest.mark.parametrize(
    ("field", "suffix", "value"), MALFORMATIONS, ids=[f"{f}_{s}" for f, s, _ in MALFORMATIONS]
)
def test_validate_reading_names_each_malformation(field: str, suffix: str, value: object) -> None:
    assert validate_reading(reading(**{field: value})) == f"{field}_{suffix}"


def test_the_malformations_cover_every_field_and_kind() -> None:
    assert {f"{field}_{suffix}" for field, suffix, _ in MALFORMATIONS} == {
        "temperature_nan",
        "humidity_infinite",
        "temperature_out_of_range",
        "humidity_out_of_range",
        "temperature_wrong_type",
        "humidity_wrong_type",
    }


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, None),
        ({"temperature": -50.0}, None),
        ({"temperature": 100.0}, None),
        ({"humidity": 0.0}, None),
        ({"humidity": 100.0}, None),
        ({"temperature": -50.0, "humidity": 0.0}, None),
        ({"temperature": 21, "humidity": 40}, None),  # ints are numbers
        ({"temperature": -50.001}, "temperature_out_of_range"),
        ({"temperature": 100.001}, "temperature_out_of_range"),
        ({"humidity": -0.001}, "humidity_out_of_range"),
        ({"humidity": 100.001}, "humidity_out_of_range"),
        ({"temperature": -math.inf}, "temperature_infinite"),
        ({"humidity": math.nan}, "humidity_nan"),
        ({"humidity": -math.inf}, "humidity_infinite"),
        ({"temperature": True}, "temperature_wrong_type"),
        ({"humidity": False}, "humidity_wrong_type"),
        ({"temperature": "20"}, "temperature_wrong_type"),
        ({"humidity": [50.0]}, "humidity_wrong_type"),
        ({"temperature": math.nan, "humidity": None}, "temperature_nan"),  # first field first
        ({"temperature": 1000.0, "humidity": math.inf}, "temperature_out_of_range"),
    ],
)
def test_validate_reading_boundaries_and_order(
    changes: dict[str, object], expected: str | None
) -> None:
    assert validate_reading(reading(**changes)) == expected


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"ts": math.nan}, "ts_nan"),
        ({"ts": math.inf}, "ts_infinite"),
        ({"ts": -0.5}, "ts_out_of_range"),
        ({"ts": "0.5"}, "ts_wrong_type"),
        ({"ts": 10**400}, "ts_out_of_range"),
        ({"ts": 0}, None),
        ({"seq": None}, "seq_wrong_type"),
        ({"seq": 1.0}, "seq_wrong_type"),
        ({"seq": True}, "seq_wrong_type"),
        ({"seq": -1}, "seq_out_of_range"),
        ({"seq": 2**63}, "seq_out_of_range"),
        ({"seq": 2**63 - 1}, None),
        ({"device_id": 2**63}, "device_id_out_of_range"),
        ({"device_id": 0}, "device_id_out_of_range"),
        ({"device_id": "1"}, "device_id_wrong_type"),
        ({"device_id": 2**63 - 1}, None),
        ({"device_id": None, "ts": math.nan}, "device_id_wrong_type"),  # first field first
    ],
)
def test_validate_reading_checks_every_field(
    changes: dict[str, object], expected: str | None
) -> None:
    """Found: `ts=NaN` and `seq=None` passed validation; `device_id=2**63` crashed storage."""
    assert validate_reading(reading(**changes)) == expected


def test_validate_reading_refuses_what_is_not_a_reading() -> None:
    assert validate_reading({"device_id": 1}) == "not_a_reading"
    assert validate_reading(None) == "not_a_reading"


async def test_bad_fields_are_rejected_by_reason_and_never_reach_storage(tmp_path: Path) -> None:
    """Fed straight into a gateway's telemetry channel, as a learner's own device could."""
    db = tmp_path / "t.db"
    gateway = Gateway(GatewayConfig(db_path=db, devices=1, clients=1, duration=1.0))
    bad = [
        reading(device_id=2**63),
        reading(seq=None),
        reading(ts=math.nan),
        {"device_id": 1},
    ]
    task = asyncio.create_task(gateway.run())
    while gateway.phase.name == "NEW" or gateway.storage is None:  # noqa: ASYNC110
        await asyncio.sleep(0)
    tx = gateway.devices[0]._tx
    for value in bad:
        await tx.send(value)  # type: ignore[arg-type]
    report = await task
    assert (
        dict(report.rejected_reasons).items()
        >= {
            "device_id_out_of_range": 1,
            "seq_wrong_type": 1,
            "ts_nan": 1,
            "not_a_reading": 1,
        }.items()
    )
    assert report.errors == ()
    assert report.ok
    assert report.stored == count(db, "readings")
    assert query(db, "SELECT COUNT(*) FROM readings WHERE device_id > 1") == [(0,)]


def test_malform_garbles_exactly_one_field_reproducibly() -> None:
    original = reading(device_id=3, seq=7, ts=1.25, temperature=21.5, humidity=48.0)
    rng = random.Random(9)
    seen = set()
    for _ in range(200):
        bad = malform(original, rng)
        assert (bad.device_id, bad.seq, bad.ts) == (3, 7, 1.25)
        changed = [
            f for f in ("temperature", "humidity") if getattr(bad, f) != getattr(original, f)
        ]
        reason = validate_reading(bad)
        assert reason in REASONS
        assert changed == [reason.split("_", 1)[0]]
        seen.add(reason)
    assert seen == {f"{f}_{s}" for f, s, _ in MALFORMATIONS}
    again = random.Random(9)
    first = [validate_reading(malform(original, again)) for _ in range(20)]
    again = random.Random(9)
    assert [validate_reading(malform(original, again)) for _ in range(20)] == first


# --- 8. the drain times out -------------------------------------------------------------------

SLOW_STORAGE: dict[str, Any] = {
    "storage_latency": 2.0,
    "shutdown_timeout": 1.0,
    "device_interval": 0.2,
}


def test_a_drain_that_times_out_reports_what_is_in_flight(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    report = run(GatewayConfig(db_path=db, **SLOW_STORAGE), virtual_time=True)
    check_ledger(report, db)
    assert report.clean_shutdown is False
    assert report.in_flight > 0
    assert report.lost == report.in_flight
    assert report.balanced
    assert report.tasks_stopped_cleanly < report.tasks_started == 13
    assert report.ok is False
    assert report.loop_seconds == pytest.approx(10.0 + 1.0)
    assert report.device_blocked_seconds > 0
    # Every write holds one of 2 connections for at least 2 s.
    assert report.batches <= 2 * report.loop_seconds / 2.0
    table = report.summary_table()
    assert re.search(r"^  Clean shutdown +NO$", table, re.M)
    assert table.endswith(
        f"  ❌ The drain did not finish in time: {report.in_flight} readings were still in "
        "flight (raise shutdown_timeout, or make storage faster)"
    )


def test_the_cli_exits_1_when_the_drain_times_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "GatewayConfig", functools.partial(GatewayConfig, **SLOW_STORAGE))
    db = tmp_path / "cli.db"
    assert cli.main(["--fast", "--quiet", "--db", str(db)]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^  Clean shutdown +NO$", out, re.M)
    assert out.splitlines()[-1].startswith("  ❌ The drain did not finish in time: ")
    stored = re.search(r"^  Readings stored\s+(\d+) in \d+ batches$", out, re.M)
    assert stored is not None
    assert int(stored.group(1)) == count(db, "readings")


# --- 9. cancellation during an outage ---------------------------------------------------------


def cancel_at(config: GatewayConfig, t: float) -> Report:
    """Cancel a run at loop time `t`; it drains, then the cancellation propagates."""
    gateway = Gateway(config)

    async def main() -> None:
        task = asyncio.create_task(gateway.run())
        await asyncio.sleep(t)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner:
        runner.run(main())
    assert gateway.report is not None
    assert gateway.report.ended_by == "cancel"
    return gateway.report


def test_cancelling_during_an_outage_drains_once_storage_is_back(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    config = GatewayConfig(db_path=db, storage_outage=(2, 9), duration=15, shutdown_timeout=30)
    report = cancel_at(config, 5.0)
    assert isinstance(report, Report)
    check_ledger(report, db)
    assert report.storage_retries > 0  # writes were retrying when the cancel came
    assert report.clean_shutdown
    assert report.ok
    assert (report.lost, report.in_flight, report.dead_lettered) == (0, 0, 0)
    assert report.stored == report.produced > 0
    # Devices stopped at the cancel; storage could only finish after the outage.
    assert query(db, "SELECT COUNT(*) FROM readings WHERE ts > 5") == [(0,)]
    assert 9.0 <= report.loop_seconds < 15.0


def test_cancelling_during_an_outage_with_a_short_drain_leaves_readings_in_flight(
    tmp_path: Path,
) -> None:
    db = tmp_path / "t.db"
    config = GatewayConfig(db_path=db, storage_outage=(2, 9), duration=15, shutdown_timeout=1)
    report = cancel_at(config, 5.0)
    check_ledger(report, db)
    assert report.storage_retries > 0
    assert report.clean_shutdown is False
    assert report.in_flight > 0
    assert report.lost == report.in_flight
    assert report.tasks_stopped_cleanly < report.tasks_started
    assert report.loop_seconds == pytest.approx(6.0)
    assert report.ok is False


# --- 10. slow storage ------------------------------------------------------------------------


def test_slow_storage_pushes_back_on_the_devices_without_losing_anything(tmp_path: Path) -> None:
    fast_db, slow_db = tmp_path / "fast.db", tmp_path / "slow.db"
    fast = run(GatewayConfig(db_path=fast_db, device_interval=0.05), virtual_time=True)
    check_ledger(fast, fast_db)
    assert fast.device_blocked_seconds == 0.0
    config = GatewayConfig(db_path=slow_db, device_interval=0.05, storage_latency=0.5)
    gateway, report = run_gateway_object(config)
    check_ledger(report, slow_db)
    assert report.device_blocked_seconds > 0
    assert gateway.statistics().telemetry.total_blocked_sends > 0
    assert (report.lost, report.in_flight, report.dead_lettered, report.storage_retries) == (
        0,
        0,
        0,
        0,
    )
    assert report.ok
    assert report.stored == report.produced
    assert report.produced < fast.produced  # the devices were held back
    # Every write holds one of 2 connections for at least 0.5 s.
    assert report.batches <= 2 * report.loop_seconds / 0.5


# --- 11. determinism with every fault on -------------------------------------------------------


def test_the_same_seed_and_faults_give_the_same_report_and_rows(tmp_path: Path) -> None:
    def faulty(db: Path) -> GatewayConfig:
        return GatewayConfig(
            db_path=db,
            seed=7,
            duration=12,
            broadcast_capacity=5,
            storage_failure_rate=0.3,
            storage_outage=(3, 7),
            storage_latency=0.1,
            client_delays=(0.4, 0.0, 0.1),
            malformed_rate=0.2,
            device_crash_rate=0.05,
            retry_max_elapsed=2,
        )

    a, b = tmp_path / "a.db", tmp_path / "b.db"
    first = run(faulty(a), virtual_time=True)
    second = run(faulty(b), virtual_time=True)
    check_ledger(first, a)
    check_ledger(second, b)
    assert comparable(first) == comparable(second)
    assert table_rows(a, "readings") == table_rows(b, "readings")
    assert table_rows(a, "dead_letters") == table_rows(b, "dead_letters")
    # Every fault really fired.
    assert first.storage_retries > 0
    assert first.dead_lettered > 0
    assert first.rejected > 0
    assert first.device_restarts > 0
    assert first.updates_lagged > 0
    other = run(faulty(tmp_path / "c.db").replace(seed=8), virtual_time=True)
    assert comparable(other) != comparable(first)
