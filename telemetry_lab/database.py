"""Own the SQLite file: recognise it, create or migrate its schema, and number its runs.

A run never deletes or changes rows it did not write. Every run gets a `run_id` (1, 2, 3...
per file) and writes its readings and dead letters under that id, so several runs, even at
the same time, can share one file, and a re-run never hides the previous one. The `runs`
table keeps each run's configuration and, once it has ended, its report (both as JSON).

    runs(run_id, started_at, finished_at, config, report)
    readings(run_id, device_id, seq, ts, temperature, humidity)      unique per run
    dead_letters(run_id, device_id, seq, ts, temperature, humidity, reason, failed_at)

A telemetry_lab database says so in its header: SQLite's `application_id` is 0x544C4142
("TLAB") and `user_version` is the schema version (2). Before anything is written, the file
at `db_path` is checked, and refused with `UnusableDatabase`, unchanged, when it is not
SQLite, belongs to another application (any table of its own), or was written by a newer
telemetry_lab. A database from before run ids (schema 1: `readings` and `dead_letters`
keyed by `(device_id, seq)`, nothing else) is migrated in one transaction: its rows become
run 1. Everything here blocks: call it in a worker thread.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from telemetry_lab.errors import UnusableDatabase

__all__ = [
    "APPLICATION_ID",
    "BUSY_TIMEOUT",
    "SCHEMA_VERSION",
    "RunCounts",
    "connect",
    "count_run",
    "finish_run",
    "open_run",
]

APPLICATION_ID = 0x544C4142
"""SQLite `PRAGMA application_id` of a telemetry_lab database ("TLAB")."""
SCHEMA_VERSION = 2
"""SQLite `PRAGMA user_version` of the schema this version writes (1 had no run ids)."""
BUSY_TIMEOUT = 1.0
"""Seconds a statement waits for another connection's lock before "database is locked".

Short on purpose: a write blocked longer is a storage failure, retried with backoff on the
loop (where a drain deadline can stop it), instead of a thread stuck for many seconds.
"""

OPEN_TIMEOUT = 10.0
"""Seconds opening a run waits for another writer's lock (once per run, before it starts)."""

SQLITE_HEADER = b"SQLite format 3\x00"

SCHEMA = (
    """CREATE TABLE runs (
    run_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at  TEXT,     -- UTC, ISO 8601 (NULL for a run migrated from schema 1)
    finished_at TEXT,     -- NULL until the run has ended
    config      TEXT NOT NULL,  -- the GatewayConfig, as JSON
    report      TEXT            -- the Report, as JSON, written when the run ends
)""",
    """CREATE TABLE readings (
    run_id      INTEGER NOT NULL REFERENCES runs (run_id),
    device_id   INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    ts          REAL    NOT NULL,  -- seconds since the start of the run
    temperature REAL    NOT NULL,
    humidity    REAL    NOT NULL,
    PRIMARY KEY (run_id, device_id, seq)
)""",
    """CREATE TABLE dead_letters (
    run_id      INTEGER NOT NULL REFERENCES runs (run_id),
    device_id   INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    ts          REAL,
    temperature REAL,
    humidity    REAL,
    reason      TEXT    NOT NULL,
    failed_at   REAL    NOT NULL,  -- seconds since the start of the run
    PRIMARY KEY (run_id, device_id, seq)
)""",
)

OWN_TABLES = frozenset({"runs", "readings", "dead_letters"})
SCHEMA_1_COLUMNS = {
    "readings": ["device_id", "seq", "ts", "temperature", "humidity"],
    "dead_letters": ["device_id", "seq", "ts", "temperature", "humidity", "reason", "failed_at"],
}
MIGRATE_FROM_1 = (
    "ALTER TABLE readings RENAME TO readings_schema_1",
    "ALTER TABLE dead_letters RENAME TO dead_letters_schema_1",
    *SCHEMA,
    "INSERT INTO runs (run_id, started_at, finished_at, config, report) "
    "VALUES (1, NULL, NULL, '{\"migrated_from_schema\": 1}', NULL)",
    "INSERT INTO readings SELECT 1, device_id, seq, ts, temperature, humidity "
    "FROM readings_schema_1",
    "INSERT INTO dead_letters SELECT 1, device_id, seq, ts, temperature, humidity, reason, "
    "failed_at FROM dead_letters_schema_1",
    "DROP TABLE readings_schema_1",
    "DROP TABLE dead_letters_schema_1",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunCounts:
    """What the file holds for one run."""

    readings: int
    """Rows in `readings` with this run's id."""
    dead_letters: int
    """Rows in `dead_letters` with this run's id."""


def connect(path: Path) -> sqlite3.Connection:
    """Open a connection to a telemetry_lab database for writing in worker threads."""
    conn = sqlite3.connect(path, check_same_thread=False, timeout=BUSY_TIMEOUT)
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _refuse(path: Path, why: str) -> UnusableDatabase:
    return UnusableDatabase(f"db_path {str(path)!r} cannot be used: {why}")


def _check_file(path: Path) -> None:
    """Refuse a path that is not a file we may create or an SQLite file, touching nothing."""
    if path.is_dir():
        raise _refuse(path, "it is a directory")
    if not path.parent.is_dir():
        raise _refuse(path, f"the directory {str(path.parent)!r} does not exist")
    if path.exists() and path.stat().st_size:
        try:
            with path.open("rb") as file:
                header = file.read(len(SQLITE_HEADER))
        except OSError as exc:
            raise _refuse(path, exc.strerror or str(exc)) from exc
        if header != SQLITE_HEADER:
            raise _refuse(path, "it is not an SQLite database (it was left unchanged)")


def _tables(conn: sqlite3.Connection) -> dict[str, list[str]]:
    names = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    return {
        name: [col[1] for col in conn.execute(f'PRAGMA table_info("{name}")')]
        for name in sorted(names)
    }


def _prepare_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Inside a write transaction: accept, create or migrate the schema, or refuse."""
    application_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = _tables(conn)
    if application_id == APPLICATION_ID:
        if version == SCHEMA_VERSION and tables.keys() >= OWN_TABLES:
            return
        if version > SCHEMA_VERSION:
            raise _refuse(
                path,
                f"it was written by a newer telemetry_lab (schema {version}; this version "
                f"writes schema {SCHEMA_VERSION}); upgrade telemetry_lab or choose another file",
            )
        raise _refuse(path, f"its telemetry_lab schema {version} is damaged or unknown")
    if application_id != 0:
        raise _refuse(
            path, f"it belongs to another application (SQLite application_id {application_id})"
        )
    if not tables:
        statements: tuple[str, ...] = SCHEMA
    elif tables == SCHEMA_1_COLUMNS:
        statements = MIGRATE_FROM_1
    else:
        listed = ", ".join(tables)
        clash = sorted(OWN_TABLES & tables.keys())
        detail = f" ({', '.join(clash)} would clash with telemetry_lab's own)" if clash else ""
        raise _refuse(
            path,
            f"it is another application's SQLite database, with tables {listed}{detail}; "
            "telemetry_lab writes only to its own database files (this one was left "
            "unchanged): choose another db_path",
        )
    for statement in statements:
        conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL (readers and the writer do not block each other), once.

    The mode is kept in the file, so only its first run switches it. Switching needs the
    file to itself, and SQLite answers "database is locked" at once (no busy wait) while
    another connection is open, as when two gateways start on a new file together: then
    try again for a while, and if another run keeps the file busy, carry on in the default
    journal mode, which is just as correct.
    """
    deadline = time.monotonic() + OPEN_TIMEOUT
    while conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        try:
            conn.execute("PRAGMA journal_mode=WAL")  # answers the mode it could set
            return
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)


def open_run(path: Path, config: Mapping[str, Any]) -> int:
    """Check the file at `path`, prepare its schema, record a new run; return its run_id.

    Raises:
        UnusableDatabase: the file cannot be used (it is left unchanged).
    """
    _check_file(path)
    try:
        conn = sqlite3.connect(path, timeout=OPEN_TIMEOUT, isolation_level=None)
    except sqlite3.Error as exc:
        raise _refuse(path, str(exc)) from exc
    try:
        try:
            conn.execute("BEGIN IMMEDIATE")  # one process at a time decides the schema
            try:
                _prepare_schema(conn, path)
                cursor = conn.execute(
                    "INSERT INTO runs (started_at, config) VALUES (?, ?)",
                    (_now(), json.dumps(dict(config), sort_keys=True)),
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise _refuse(path, str(exc)) from exc
        _use_wal(conn)
        run_id = cursor.lastrowid
        assert run_id is not None
        return run_id
    finally:
        conn.close()


def count_run(conn: sqlite3.Connection, run_id: int) -> RunCounts:
    """Count the rows `run_id` has in `readings` and `dead_letters`."""
    readings = conn.execute("SELECT COUNT(*) FROM readings WHERE run_id = ?", (run_id,))
    dead = conn.execute("SELECT COUNT(*) FROM dead_letters WHERE run_id = ?", (run_id,))
    return RunCounts(readings=int(readings.fetchone()[0]), dead_letters=int(dead.fetchone()[0]))


def finish_run(conn: sqlite3.Connection, run_id: int, report: Mapping[str, Any]) -> None:
    """Record that `run_id` has ended, with its report."""
    with conn:
        conn.execute(
            "UPDATE runs SET finished_at = ?, report = ? WHERE run_id = ?",
            (_now(), json.dumps(dict(report), sort_keys=True), run_id),
        )
