"""Run the storage SQL: blocking statements meant for a worker thread, one batch each.

Every function here takes a `sqlite3.Connection` and blocks: call it in a worker thread
(`ConnectionPool.call` does). Inserts are idempotent, a reading being identified by
`(run_id, device_id, seq)`, so a retried batch never duplicates a row, and a dead letter
is never written for a reading that was stored after all.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from telemetry_lab.errors import TransientStorageError
from telemetry_lab.faults import StorageFault

__all__ = [
    "INSERT_DEAD_LETTER",
    "INSERT_READINGS",
    "Row",
    "dead_letter_batch",
    "describe",
    "insert_batch",
    "write_attempt",
]

INSERT_READINGS = (
    "INSERT OR IGNORE INTO readings (run_id, device_id, seq, ts, temperature, humidity) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
"""Insert one reading, unless its `(run_id, device_id, seq)` is already stored."""
INSERT_DEAD_LETTER = """
INSERT OR IGNORE INTO dead_letters
    (run_id, device_id, seq, ts, temperature, humidity, reason, failed_at)
SELECT ?, ?, ?, ?, ?, ?, ?, ?
WHERE NOT EXISTS (SELECT 1 FROM readings WHERE run_id = ? AND device_id = ? AND seq = ?)
"""
"""Dead-letter one reading, unless it is stored (or dead-lettered) already."""

Row = tuple[int, int, int, float, float, float]
"""(run_id, device_id, seq, ts, temperature, humidity)"""


def insert_batch(conn: sqlite3.Connection, rows: Sequence[Row]) -> int:
    """Insert `rows` in one transaction, ignoring ones already stored; return rows added.

    The count is the statement's own (`rowcount`), not `total_changes`: rows that a trigger
    writes elsewhere are not readings. Blocking: call it in a worker thread.
    """
    with conn:
        return conn.executemany(INSERT_READINGS, rows).rowcount


def write_attempt(conn: sqlite3.Connection, rows: Sequence[Row], fault: StorageFault | None) -> int:
    """One write attempt with an optional injected fault; return rows added.

    Blocking: call it in a worker thread.

    Raises:
        TransientStorageError: the injected fault; `.inserted` rows were committed first
            when the fault is a lost acknowledgement.
        sqlite3.Error: the database itself failed (locked, full, read-only...).
    """
    if fault is not None and fault.when == "before":
        raise TransientStorageError(fault.reason)
    inserted = insert_batch(conn, rows)
    if fault is not None:
        raise TransientStorageError(fault.reason, inserted=inserted)
    return inserted


def dead_letter_batch(
    conn: sqlite3.Connection, rows: Sequence[Row], reason: str, failed_at: float
) -> int:
    """Record `rows` in `dead_letters` (except any already stored); return rows added.

    Blocking: call it in a worker thread.
    """
    with conn:
        return conn.executemany(
            INSERT_DEAD_LETTER, [(*row, reason, failed_at, *row[:3]) for row in rows]
        ).rowcount


def describe(exc: BaseException) -> str:
    """Name a storage failure in words, e.g. "database is locked (sqlite3.OperationalError)"."""
    if isinstance(exc, TransientStorageError):
        return exc.reason
    return f"{exc} (sqlite3.{type(exc).__name__})"
