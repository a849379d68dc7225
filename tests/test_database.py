"""The database file: run ids, files that are not ours, the old schema, shared files, failures.

A run never deletes or changes rows it did not write. A file that is not a telemetry_lab
database is refused before anything starts and left byte-for-byte unchanged. SQLite's own
failures ("database is locked", a full disk) are storage failures: retried, dead-lettered,
and if even the dead letters cannot be written, the run stops with one clear message and
counts what it could not write.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from telemetry_lab import (
    Gateway,
    GatewayConfig,
    Report,
    UnusableDatabase,
    VirtualTimeEventLoop,
    run,
)
from telemetry_lab import database as db_module
from telemetry_lab.__main__ import main


def query(path: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql, args).fetchall()


def execute(path: Path, *statements: str) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        for statement in statements:
            conn.execute(statement)


def fingerprint(path: Path) -> tuple[str, int, int]:
    """The file's content hash, size and modification time."""
    stat = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), stat.st_size, stat.st_mtime_ns


def run_virtual(gateway: Gateway) -> Report:
    with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner:
        return runner.run(gateway.run())


def refused(path: Path, why: str) -> str:
    return rf"^db_path {re.escape(repr(str(path)))} cannot be used: {why}"


# --- files that are not ours --------------------------------------------------------------


def another_apps_database(path: Path) -> None:
    """The case that was found: another application's `readings(id, note)` table."""
    execute(
        path,
        "CREATE TABLE readings (id INTEGER PRIMARY KEY, note TEXT)",
        "INSERT INTO readings (note) VALUES ('keep me'), ('and me')",
    )


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (
            another_apps_database,
            r"it is another application's SQLite database, with tables readings \(readings "
            r"would clash with telemetry_lab's own\); telemetry_lab writes only to its own "
            r"database files \(this one was left unchanged\): choose another db_path$",
        ),
        (
            lambda p: execute(
                p, "CREATE TABLE notes (body TEXT)", "INSERT INTO notes VALUES ('x')"
            ),
            r"it is another application's SQLite database, with tables notes; ",
        ),
        (
            lambda p: execute(
                p,
                "PRAGMA application_id = 1234",
                "CREATE TABLE runs (x)",
                "INSERT INTO runs VALUES (1)",
            ),
            r"it belongs to another application \(SQLite application_id 1234\)$",
        ),
        (
            lambda p: p.write_text("name,value\nreadings,42\n"),
            r"it is not an SQLite database \(it was left unchanged\)$",
        ),
        (
            lambda p: execute(
                p,
                f"PRAGMA application_id = {db_module.APPLICATION_ID}",
                "PRAGMA user_version = 3",
                "CREATE TABLE runs (x)",
            ),
            r"it was written by a newer telemetry_lab \(schema 3; this version writes schema "
            r"2\); upgrade telemetry_lab or choose another file$",
        ),
    ],
    ids=["readings-id-note", "unrelated-tables", "foreign-application-id", "not-sqlite", "newer"],
)
def test_a_file_that_is_not_ours_is_refused_and_left_byte_for_byte_unchanged(
    tmp_path: Path, make: Any, why: str
) -> None:
    path = tmp_path / "other.db"
    make(path)
    before = fingerprint(path)
    gateway = Gateway(GatewayConfig(db_path=path))
    with pytest.raises(UnusableDatabase, match=refused(path, why)):
        run_virtual(gateway)
    assert fingerprint(path) == before
    assert gateway.report is None
    assert all(d.total_sent == 0 for d in gateway.statistics().devices)  # nothing started


def test_the_cli_refuses_another_apps_file_with_exit_2_and_keeps_its_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "notes.db"
    another_apps_database(path)
    before = fingerprint(path)
    assert main(["--fast", "--quiet", "--db", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"telemetry-lab: error: db_path {str(path)!r} cannot be used: ")
    assert "Traceback" not in err
    assert fingerprint(path) == before
    assert query(path, "SELECT note FROM readings ORDER BY id") == [("keep me",), ("and me",)]


def test_an_empty_file_or_an_empty_sqlite_database_is_adopted(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    blank = tmp_path / "blank.db"
    execute(blank, "PRAGMA user_version = 0")
    for path in (empty, blank):
        report = run(GatewayConfig(db_path=path, duration=2.0), virtual_time=True)
        assert report.ok
        assert query(path, "PRAGMA application_id") == [(db_module.APPLICATION_ID,)]
        assert query(path, "PRAGMA user_version") == [(db_module.SCHEMA_VERSION,)]


# --- runs ----------------------------------------------------------------------------------


def test_the_runs_table_keeps_each_runs_config_and_report(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    first = run(GatewayConfig(db_path=path, seed=1, duration=3.0), virtual_time=True)
    second = run(GatewayConfig(db_path=path, seed=2, duration=4.0), virtual_time=True)
    runs = query(path, "SELECT run_id, started_at, finished_at, config, report FROM runs")
    assert [r[0] for r in runs] == [1, 2]
    for (run_id, started, finished, config, report), expected in zip(
        runs, (first, second), strict=True
    ):
        assert started < finished  # ISO 8601 UTC strings sort by time
        assert json.loads(config)["seed"] == expected.seed
        assert json.loads(report) == json.loads(json.dumps(expected.to_dict()))
        assert run_id == expected.run_id
    counts = query(path, "SELECT run_id, COUNT(*) FROM readings GROUP BY run_id")
    assert counts == [(1, first.stored), (2, second.stored)]


def test_a_database_from_before_run_ids_is_migrated_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    execute(
        path,
        "CREATE TABLE readings (device_id INTEGER NOT NULL, seq INTEGER NOT NULL, ts REAL NOT "
        "NULL, temperature REAL NOT NULL, humidity REAL NOT NULL, PRIMARY KEY (device_id, seq))",
        "CREATE TABLE dead_letters (device_id INTEGER NOT NULL, seq INTEGER NOT NULL, ts REAL, "
        "temperature REAL, humidity REAL, reason TEXT NOT NULL, failed_at REAL NOT NULL, "
        "PRIMARY KEY (device_id, seq))",
        "INSERT INTO readings VALUES (1, 0, 0.5, 20.0, 50.0), (1, 1, 1.5, 20.1, 50.2)",
        "INSERT INTO dead_letters VALUES (2, 0, 0.7, 19.0, 49.0, 'storage outage', 3.0)",
    )
    report = run(GatewayConfig(db_path=path, duration=2.0), virtual_time=True)
    assert report.run_id == 2  # the old rows became run 1
    assert report.ok
    assert query(path, "SELECT * FROM readings WHERE run_id = 1 ORDER BY seq") == [
        (1, 1, 0, 0.5, 20.0, 50.0),
        (1, 1, 1, 1.5, 20.1, 50.2),
    ]
    assert query(path, "SELECT * FROM dead_letters WHERE run_id = 1") == [
        (1, 2, 0, 0.7, 19.0, 49.0, "storage outage", 3.0)
    ]
    assert query(path, "SELECT run_id, started_at, config FROM runs WHERE run_id = 1") == [
        (1, None, '{"migrated_from_schema": 1}')
    ]
    assert query(path, "SELECT COUNT(*) FROM readings WHERE run_id = 2") == [(report.stored,)]
    tables = {name for (name,) in query(path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"runs", "readings", "dead_letters", "sqlite_sequence"}


def test_two_gateways_on_one_file_at_the_same_time_keep_their_own_rows(tmp_path: Path) -> None:
    """Found: B's start-up delete removed A's rows, and A still reported `ok`."""
    path = tmp_path / "shared.db"

    async def both() -> tuple[Report, Report]:
        a = Gateway(GatewayConfig(db_path=path, seed=1, duration=20.0, device_interval=0.05))
        b = Gateway(GatewayConfig(db_path=path, seed=2, duration=20.0, device_interval=0.05))
        return await asyncio.gather(a.run(), b.run())

    with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner:
        first, second = runner.run(both())
    assert {first.run_id, second.run_id} == {1, 2}
    for report in (first, second):
        assert report.ok, report.summary_table()
        assert report.errors == ()
        held = query(path, "SELECT COUNT(*) FROM readings WHERE run_id = ?", report.run_id)
        assert held == [(report.stored,)]
    assert query(path, "SELECT COUNT(*) FROM readings") == [(first.stored + second.stored,)]


def test_two_cli_processes_on_one_file_at_the_same_time(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    argv = [sys.executable, "-m", "telemetry_lab", "--fast", "--quiet", "--json", "--db", str(path)]
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    procs = [
        subprocess.Popen(
            [*argv, "--seed", str(seed), "--duration", "60"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for seed in (1, 2)
    ]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert err == ""
        reports.append(json.loads(out))
    assert sorted(r["run_id"] for r in reports) == [1, 2]
    for report in reports:
        held = query(path, "SELECT COUNT(*) FROM readings WHERE run_id = ?", report["run_id"])
        assert held == [(report["stored"],)]
        assert report["ok"] is True


def test_stored_counts_inserted_readings_not_changes_made_by_triggers(tmp_path: Path) -> None:
    """Found: a trigger on `readings` made a run of 45 rows report "stored 90"."""
    path = tmp_path / "t.db"
    run(GatewayConfig(db_path=path, duration=1.0), virtual_time=True)
    execute(
        path,
        "CREATE TABLE audit (run_id INTEGER, seq INTEGER)",
        "CREATE TRIGGER copy AFTER INSERT ON readings BEGIN "
        "INSERT INTO audit VALUES (new.run_id, new.seq); END",
    )
    report = run(GatewayConfig(db_path=path), virtual_time=True)
    assert (report.run_id, report.stored) == (2, 45)
    assert query(path, "SELECT COUNT(*) FROM readings WHERE run_id = 2") == [(45,)]
    assert query(path, "SELECT COUNT(*) FROM audit WHERE run_id = 2") == [(45,)]
    assert report.ok


def test_the_gateway_checks_the_file_against_its_own_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the file disagrees with the count (here: a bug made to count wrong), it says so."""
    from telemetry_lab.storage import sql as storage  # where insert_batch is looked up

    real = storage.insert_batch
    monkeypatch.setattr(storage, "insert_batch", lambda conn, rows: real(conn, rows) + 1)
    report = run(GatewayConfig(db_path=tmp_path / "t.db"), virtual_time=True)
    assert report.stored == 50  # 45 rows, 5 batches each counted one too many
    assert report.errors == (
        f"the database holds 45 readings rows for run {report.run_id}, but the gateway counted 50",
    )
    assert not report.ok
    assert "❌ the database holds 45 readings rows" in report.summary_table()


# --- SQLite's own failures ------------------------------------------------------------------


class Lock:
    """Another connection holding the database's write lock (taken and released in threads)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def take(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


async def lock_once_running(gateway: Gateway, lock: Lock) -> None:
    """Take `lock` as soon as `gateway` has opened its run (its first write comes later)."""
    while gateway.run_id is None:  # noqa: ASYNC110 (opening happens in a thread)
        await asyncio.sleep(0)
    await asyncio.to_thread(lock.take)


def test_database_is_locked_is_retried_until_the_lock_is_released(tmp_path: Path) -> None:
    """Found: "database is locked" past the busy timeout killed the storage task."""
    path = tmp_path / "t.db"
    gateway = Gateway(GatewayConfig(db_path=path, duration=2.0, retry_max_elapsed=60.0))
    lock = Lock(path)

    async def main() -> Report:
        task = asyncio.create_task(gateway.run())
        await lock_once_running(gateway, lock)
        release = threading.Timer(2.5, lock.release)  # real seconds: a few write attempts
        release.start()
        try:
            return await task
        finally:
            await asyncio.to_thread(release.join)

    with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner:
        report = runner.run(main())
    assert report.ok, report.summary_table()
    assert report.storage_retries >= 1
    assert report.errors == ()
    assert query(path, "SELECT COUNT(*) FROM readings WHERE run_id = 1") == [(report.stored,)]


def test_a_lock_held_past_the_retry_budget_dead_letters_and_then_stops_the_run(
    tmp_path: Path,
) -> None:
    """The dead letters cannot be written either (same lock): the run ends, saying why."""
    path = tmp_path / "t.db"
    gateway = Gateway(GatewayConfig(db_path=path, duration=30.0, retry_max_elapsed=0.0))
    lock = Lock(path)

    async def main() -> Report:
        task = asyncio.create_task(gateway.run())
        await lock_once_running(gateway, lock)
        try:
            while gateway.storage is None or gateway.storage.failure is None:  # noqa: ASYNC110
                await asyncio.sleep(0.5)
        finally:
            await asyncio.to_thread(lock.release)
        return await task

    with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner:
        report = runner.run(main())
    assert report.ended_by == "failure"
    assert report.loop_seconds < 30.0  # the failure stopped the run
    assert not report.ok
    assert report.balanced  # every reading is accounted for...
    assert report.unwritable > 0  # ...the ones that could not be written included
    assert report.lost == report.unwritable + report.in_flight
    (error,) = report.errors
    assert re.fullmatch(
        rf"storage failed: 10 readings could be written neither to readings \(database is "
        rf"locked \(sqlite3\.OperationalError\); gave up after 1 attempt\) nor to dead_letters "
        rf"\(database is locked \(sqlite3\.OperationalError\)\) in {re.escape(repr(str(path)))}",
        error,
    ), error
    assert f"❌ {error}" in report.summary_table()
    assert query(path, "SELECT COUNT(*) FROM readings WHERE run_id = 1") == [(report.stored,)]


def test_a_full_disk_is_a_storage_failure_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite says "database or disk is full": retried, then the run stops, counted."""
    real_connect = db_module.connect

    def full(path: Path) -> sqlite3.Connection:
        conn = real_connect(path)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")  # no room for one more page
        return conn

    monkeypatch.setattr(db_module, "connect", full)
    config = GatewayConfig(db_path=tmp_path / "t.db", device_interval=0.01, retry_max_elapsed=0.5)
    report = run(config, virtual_time=True)
    assert report.ended_by == "failure"
    assert report.balanced
    assert report.unwritable > 0
    assert report.storage_retries >= 1
    assert any("database or disk is full" in error for error in report.errors), report.errors
    assert report.tasks_stopped_cleanly == report.tasks_started  # no task crashed


def test_the_drain_deadline_holds_while_storage_keeps_failing(tmp_path: Path) -> None:
    """Found: storage errors made the drain overrun `shutdown_timeout` by 26 s."""
    path = tmp_path / "t.db"
    config = GatewayConfig(db_path=path, duration=2.0, shutdown_timeout=1.0, retry_max_elapsed=600)
    gateway = Gateway(config)
    lock = Lock(path)

    async def main() -> Report:
        task = asyncio.create_task(gateway.run())
        await lock_once_running(gateway, lock)
        try:
            return await task
        finally:
            await asyncio.to_thread(lock.release)

    with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner:
        report = runner.run(main())
    assert report.loop_seconds == pytest.approx(3.0)  # duration + shutdown_timeout, exactly
    assert not report.clean_shutdown
    assert report.balanced
    assert report.stored == 0
    assert report.in_flight == report.produced > 0
    assert report.storage_retries >= 1


def test_switching_to_wal_waits_for_a_reader_instead_of_refusing_the_file(
    tmp_path: Path,
) -> None:
    """Found in CI: two gateways opening a new file together, one was refused with
    "database is locked": SQLite refuses the switch to WAL at once (no busy wait) while
    another connection is inside a transaction."""
    path = tmp_path / "t.db"
    run(GatewayConfig(db_path=path, duration=1.0), virtual_time=True)
    execute(path, "PRAGMA journal_mode=DELETE")  # as a file whose first run is still going
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM readings").fetchone()  # holds a shared lock
    release = threading.Timer(0.3, reader.execute, args=("COMMIT",))
    release.start()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        db_module._use_wal(conn)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        release.join()
        reader.close()
        conn.close()
