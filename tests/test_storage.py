"""Tests for `telemetry_lab.storage`: the SQLite connection pool and the batching writer.

The writer runs on the virtual-time loop: batches cut by age happen at exact loop times,
and because the clock stands still while a batch is written in a worker thread, every
write finishes before the clock moves on. A wrapper around `insert_batch` records the loop
time and size of every write and how many writes overlap.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support import vrun

from telemetry_lab.errors import ChannelClosed
from telemetry_lab.metrics import SemaphoreStatistics
from telemetry_lab.models import Reading
from telemetry_lab.primitives import Receiver, Sender, channel
from telemetry_lab.storage import ConnectionPool, StorageStatistics, StorageWriter, insert_batch
from telemetry_lab.storage import sql as storage  # where the writer looks insert_batch up


def reading(device_id: int, seq: int, ts: float = 0.0) -> Reading:
    return Reading(
        device_id=device_id,
        seq=seq,
        ts=ts,
        temperature=20.0 + seq / 4,
        humidity=50.0 + device_id,
    )


def row(r: Reading, run_id: int = 1) -> tuple[int, int, int, float, float, float]:
    return (run_id, r.device_id, r.seq, r.ts, r.temperature, r.humidity)


def query(path: Path, sql: str) -> list[Any]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


def count(path: Path, table: str = "readings") -> int:
    return int(query(path, f"SELECT COUNT(*) FROM {table}")[0][0])


def writer_stats(**changes: int) -> StorageStatistics:
    fields: dict[str, int] = {
        "total_received": 0,
        "total_stored": 0,
        "total_duplicates": 0,
        "total_dead_lettered": 0,
        "total_unwritable": 0,
        "total_batches": 0,
        "total_retries": 0,
        "current_batch": 0,
        "current_writing": 0,
        "flushes_by_size": 0,
        "flushes_by_age": 0,
        "flushes_at_close": 0,
    }
    fields.update(changes)
    return StorageStatistics(**fields)


@dataclass
class WriteLog:
    """What the wrapped `insert_batch` saw: (loop time, rows) per write, and overlap."""

    loop: asyncio.AbstractEventLoop | None = None
    writes: list[tuple[float, int]] = field(default_factory=list)
    active: int = 0
    max_active: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def write_log(monkeypatch: pytest.MonkeyPatch) -> WriteLog:
    """Wrap `storage.insert_batch` (called in worker threads) to record every write."""
    log = WriteLog()
    real = storage.insert_batch

    def recording(conn: sqlite3.Connection, rows: Sequence[Any]) -> int:
        assert log.loop is not None
        with log.lock:
            log.active += 1
            log.max_active = max(log.max_active, log.active)
            log.writes.append((log.loop.time(), len(rows)))
        try:
            return real(conn, rows)
        finally:
            with log.lock:
                log.active -= 1

    monkeypatch.setattr(storage, "insert_batch", recording)
    return log


@dataclass
class Rig:
    """A writer fed through a real channel, with its pool."""

    tx: Sender[Reading]
    rx: Receiver[Reading]
    writer: StorageWriter
    pool: ConnectionPool
    task: asyncio.Task[None]


async def start_writer(
    path: Path,
    *,
    batch_size: int,
    flush_interval: float,
    capacity: int = 100,
    connections: int = 2,
    log: WriteLog | None = None,
) -> Rig:
    """Open a pool, build a writer on a fresh channel and start it as a task."""
    if log is not None:
        log.loop = asyncio.get_running_loop()
    tx, rx = channel[Reading](capacity)
    pool = await ConnectionPool.open(path, connections)
    writer = StorageWriter(rx=rx, pool=pool, batch_size=batch_size, flush_interval=flush_interval)
    task = asyncio.create_task(writer.run(), name="storage")
    return Rig(tx=tx, rx=rx, writer=writer, pool=pool, task=task)


# --- ConnectionPool ----------------------------------------------------------------------


def test_open_creates_the_schema_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "t.db"

    async def main() -> SemaphoreStatistics:
        pool = await ConnectionPool.open(path, 3)
        try:
            return pool.statistics()
        finally:
            await pool.close()

    assert vrun(main()) == SemaphoreStatistics(
        max_permits=3,
        current_in_use=0,
        max_in_use=0,
        tasks_waiting=0,
        total_acquired=0,
        total_wait=0.0,
        name="db",
    )
    assert query(path, "PRAGMA journal_mode") == [("wal",)]
    columns = [c[1] for c in query(path, "PRAGMA table_info(readings)")]
    assert columns == ["run_id", "device_id", "seq", "ts", "temperature", "humidity"]
    dead_columns = [c[1] for c in query(path, "PRAGMA table_info(dead_letters)")]
    assert dead_columns[:3] == ["run_id", "device_id", "seq"]
    assert "reason" in dead_columns
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("INSERT INTO readings VALUES (1, 1, 0, 0.0, 20.0, 50.0)")
        conn.execute("INSERT INTO readings VALUES (1, 1, 1, 0.0, 20.0, 50.0)")
        conn.execute("INSERT INTO readings VALUES (1, 2, 0, 0.0, 20.0, 50.0)")
        conn.execute("INSERT INTO readings VALUES (2, 1, 0, 0.0, 20.0, 50.0)")  # another run
        with pytest.raises(
            sqlite3.IntegrityError,
            match=r"^UNIQUE constraint failed: readings\.run_id, readings\.device_id, "
            r"readings\.seq$",
        ):
            conn.execute("INSERT INTO readings VALUES (1, 1, 0, 1.0, 21.0, 51.0)")


def test_each_open_is_a_new_run_and_keeps_the_rows_of_earlier_runs(tmp_path: Path) -> None:
    path = tmp_path / "t.db"

    async def main() -> tuple[list[int], tuple[int, int]]:
        pool = await ConnectionPool.open(path, 1)
        first = pool.run_id
        await pool.close()
        with closing(sqlite3.connect(path)) as conn, conn:
            conn.execute("INSERT INTO readings VALUES (1, 1, 0, 0.0, 20.0, 50.0)")
            conn.execute(
                "INSERT INTO dead_letters (run_id, device_id, seq, reason, failed_at) "
                "VALUES (1, 1, 1, 'disk full', 3.0)"
            )
        pool = await ConnectionPool.open(path, 2)
        try:
            return [first, pool.run_id], (
                await pool.row_count(),
                await pool.row_count("dead_letters"),
            )
        finally:
            await pool.close()

    assert vrun(main()) == ([1, 2], (0, 0))  # run 2 has no rows of its own yet
    assert (count(path), count(path, "dead_letters")) == (1, 1)  # run 1's are untouched
    assert query(path, "SELECT run_id FROM runs ORDER BY run_id") == [(1,), (2,)]


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("missing directory", "the directory {parent} does not exist"),
        ("a directory", "it is a directory"),
    ],
)
def test_open_refuses_an_unusable_path_naming_it(tmp_path: Path, kind: str, why: str) -> None:
    path = tmp_path / "nope" / "t.db" if kind == "missing directory" else tmp_path
    reason = why.format(parent=repr(str(path.parent)))
    message = rf"^db_path {re.escape(repr(str(path)))} cannot be used: {re.escape(reason)}$"

    async def main() -> None:
        with pytest.raises(ValueError, match=message):
            await ConnectionPool.open(path, 2)

    vrun(main())
    assert not (tmp_path / "nope").exists()


def test_row_count_refuses_other_tables(tmp_path: Path) -> None:
    async def main() -> None:
        pool = await ConnectionPool.open(tmp_path / "t.db", 1)
        try:
            with pytest.raises(
                ValueError,
                match=r"^table must be 'readings' or 'dead_letters', got 'sqlite_master'$",
            ):
                await pool.row_count("sqlite_master")
        finally:
            await pool.close()

    vrun(main())


def test_acquire_release_and_repr(tmp_path: Path) -> None:
    path = tmp_path / "t.db"

    async def main() -> None:
        pool = await ConnectionPool.open(path, 2)
        try:
            assert repr(pool) == (
                f"<ConnectionPool path={str(path)!r} run_id=1 "
                "<MeteredSemaphore name='db' permits=2 in_use=0 waiting=0>>"
            )
            a = await pool.acquire()
            b = await pool.acquire()
            assert a is not b
            waiter = asyncio.create_task(pool.acquire())
            await asyncio.sleep(2)
            assert repr(pool) == (
                f"<ConnectionPool path={str(path)!r} run_id=1 "
                "<MeteredSemaphore name='db' permits=2 in_use=2 waiting=1>>"
            )
            pool.release(a)
            c = await waiter
            assert c is a
            pool.release(b)
            pool.release(c)
            assert pool.statistics() == SemaphoreStatistics(
                max_permits=2,
                current_in_use=0,
                max_in_use=2,
                tasks_waiting=0,
                total_acquired=3,
                total_wait=2.0,
                name="db",
            )
        finally:
            await pool.close()

    vrun(main())


def test_insert_batch_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    rows = [row(reading(1, seq)) for seq in range(3)] + [row(reading(2, 0))]

    async def main() -> list[int]:
        pool = await ConnectionPool.open(path, 1)
        try:
            conn = await pool.acquire()
            added = [
                await asyncio.to_thread(insert_batch, conn, rows),
                await asyncio.to_thread(insert_batch, conn, rows),
                await asyncio.to_thread(insert_batch, conn, [*rows[2:], row(reading(2, 1))]),
            ]
            pool.release(conn)
            assert await pool.row_count() == 5
            return added
        finally:
            await pool.close()

    assert vrun(main()) == [4, 0, 1]
    assert count(path) == 5
    first = query(path, "SELECT * FROM readings WHERE device_id = 1 AND seq = 2")
    assert first == [row(reading(1, 2))]


# --- StorageWriter batching --------------------------------------------------------------


def test_a_full_batch_is_written_at_once(tmp_path: Path, write_log: WriteLog) -> None:
    path = tmp_path / "t.db"
    readings = [reading(1, seq) for seq in range(3)]

    async def main() -> tuple[StorageStatistics, StorageStatistics]:
        rig = await start_writer(path, batch_size=3, flush_interval=60.0, log=write_log)
        for r in readings:
            await rig.tx.send(r)
        await asyncio.sleep(1)
        during = rig.writer.statistics()
        rig.tx.close()
        await rig.task
        await rig.pool.close()
        return during, rig.writer.statistics()

    during, final = vrun(main())
    expected = writer_stats(total_received=3, total_stored=3, total_batches=1, flushes_by_size=1)
    assert during == expected
    assert final == expected
    assert write_log.writes == [(0.0, 3)]
    assert query(path, "SELECT * FROM readings ORDER BY seq") == [row(r) for r in readings]


def test_a_partial_batch_is_written_flush_interval_after_its_first_reading(
    tmp_path: Path, write_log: WriteLog
) -> None:
    path = tmp_path / "t.db"

    async def main() -> list[StorageStatistics]:
        snaps = []
        rig = await start_writer(path, batch_size=10, flush_interval=5.0, log=write_log)
        for seq in range(3):
            await rig.tx.send(reading(1, seq))
        await asyncio.sleep(4.999)
        snaps.append(rig.writer.statistics())  # t=4.999: not yet
        await asyncio.sleep(1.001)
        snaps.append(rig.writer.statistics())  # t=6: written at t=5
        rig.tx.close()
        await rig.task
        await rig.pool.close()
        snaps.append(rig.writer.statistics())
        return snaps

    before, after, final = vrun(main())
    assert before == writer_stats(total_received=3, current_batch=3)
    assert after == writer_stats(
        total_received=3, total_stored=3, total_batches=1, flushes_by_age=1
    )
    assert final == after
    assert write_log.writes == [(5.0, 3)]
    assert count(path) == 3


def test_the_age_of_a_batch_counts_from_its_first_reading(
    tmp_path: Path, write_log: WriteLog
) -> None:
    path = tmp_path / "t.db"

    async def main() -> StorageStatistics:
        rig = await start_writer(path, batch_size=10, flush_interval=5.0, log=write_log)
        await asyncio.sleep(1)
        await rig.tx.send(reading(1, 0, ts=1.0))  # batch 1 due at 6
        await asyncio.sleep(3)
        await rig.tx.send(reading(1, 1, ts=4.0))  # joins batch 1
        await asyncio.sleep(3)
        await rig.tx.send(reading(1, 2, ts=7.0))  # batch 2 due at 12
        await asyncio.sleep(10)
        rig.tx.close()
        await rig.task
        await rig.pool.close()
        return rig.writer.statistics()

    assert vrun(main()) == writer_stats(
        total_received=3, total_stored=3, total_batches=2, flushes_by_age=2
    )
    assert write_log.writes == [(6.0, 2), (12.0, 1)]


def test_a_partial_batch_is_written_when_the_channel_closes(
    tmp_path: Path, write_log: WriteLog
) -> None:
    path = tmp_path / "t.db"
    readings = [reading(d, s) for d in (1, 2) for s in range(2)]

    async def main() -> tuple[float, StorageStatistics]:
        loop = asyncio.get_running_loop()
        rig = await start_writer(path, batch_size=10, flush_interval=60.0, log=write_log)
        for r in readings:
            await rig.tx.send(r)
        await asyncio.sleep(1)
        rig.tx.close()
        await rig.task
        ended = loop.time()
        await rig.pool.close()
        return ended, rig.writer.statistics()

    ended, final = vrun(main())
    assert ended == 1.0
    assert final == writer_stats(
        total_received=4, total_stored=4, total_batches=1, flushes_at_close=1
    )
    assert write_log.writes == [(1.0, 4)]
    assert query(path, "SELECT * FROM readings ORDER BY device_id, seq") == [
        row(r) for r in readings
    ]


def test_size_age_and_close_flushes_together(tmp_path: Path, write_log: WriteLog) -> None:
    path = tmp_path / "t.db"

    async def main() -> StorageStatistics:
        rig = await start_writer(path, batch_size=4, flush_interval=2.0, log=write_log)
        for seq in range(6):  # one full batch at t=0, two readings left
            await rig.tx.send(reading(1, seq))
        await asyncio.sleep(3)  # the two are written at t=2
        for seq in range(6, 9):  # three more, closed at t=3.5 before they age
            await rig.tx.send(reading(1, seq, ts=3.0))
        await asyncio.sleep(0.5)
        rig.tx.close()
        await rig.task
        await rig.pool.close()
        return rig.writer.statistics()

    assert vrun(main()) == writer_stats(
        total_received=9,
        total_stored=9,
        total_batches=3,
        flushes_by_size=1,
        flushes_by_age=1,
        flushes_at_close=1,
    )
    assert write_log.writes == [(0.0, 4), (2.0, 2), (3.5, 3)]
    assert count(path) == 9


def test_closing_an_idle_writer_writes_nothing(tmp_path: Path, write_log: WriteLog) -> None:
    path = tmp_path / "t.db"

    async def main() -> StorageStatistics:
        rig = await start_writer(path, batch_size=4, flush_interval=2.0, log=write_log)
        await asyncio.sleep(10)
        rig.tx.close()
        await rig.task
        await rig.pool.close()
        return rig.writer.statistics()

    assert vrun(main()) == writer_stats()
    assert write_log.writes == []
    assert count(path) == 0


def test_total_stored_equals_the_rows_in_the_file_and_duplicates_are_counted(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.db"
    readings = [reading(d, s) for d in range(1, 4) for s in range(7)]
    resent = readings[:5]  # a retry of five readings already sent

    async def main() -> tuple[StorageStatistics, int]:
        rig = await start_writer(path, batch_size=4, flush_interval=1.0)
        for r in readings + resent:
            await rig.tx.send(r)
        rig.tx.close()
        await rig.task
        rows = await rig.pool.row_count()
        await rig.pool.close()
        return rig.writer.statistics(), rows

    final, rows = vrun(main())
    assert final == writer_stats(
        total_received=26,
        total_stored=21,
        total_duplicates=5,
        total_batches=7,
        flushes_by_size=6,
        flushes_at_close=1,
    )
    assert rows == 21
    assert count(path) == final.total_stored


@pytest.mark.parametrize("connections", [1, 3])
def test_never_more_writes_in_flight_than_connections(
    tmp_path: Path, write_log: WriteLog, connections: int
) -> None:
    path = tmp_path / "t.db"
    n = 200

    async def main() -> tuple[SemaphoreStatistics, StorageStatistics]:
        rig = await start_writer(
            path,
            batch_size=5,
            flush_interval=1.0,
            capacity=n,
            connections=connections,
            log=write_log,
        )
        for seq in range(n):
            rig.tx.try_send(reading(1 + seq % 4, seq // 4))
        rig.tx.close()
        await rig.task
        await rig.pool.close()
        return rig.pool.statistics(), rig.writer.statistics()

    pool_stats, final = vrun(main())
    assert pool_stats.max_in_use == connections
    assert pool_stats.current_in_use == 0
    assert pool_stats.total_acquired == n // 5
    assert write_log.max_active <= connections
    assert final == writer_stats(
        total_received=n, total_stored=n, total_batches=n // 5, flushes_by_size=n // 5
    )
    assert count(path) == n
    assert all(t == 0.0 for t, _ in write_log.writes)


def test_busy_pool_makes_the_writer_wait_and_the_channel_fill(tmp_path: Path) -> None:
    """Backpressure: every connection busy → writer waits → storage channel full → sender waits."""
    path = tmp_path / "t.db"
    readings = [reading(1, seq) for seq in range(10)]

    async def main() -> None:
        rig = await start_writer(path, batch_size=2, flush_interval=60.0, capacity=2, connections=1)
        held = await rig.pool.acquire()  # the only connection is busy

        async def feed() -> None:
            for r in readings:
                await rig.tx.send(r)
            rig.tx.close()

        feeder = asyncio.create_task(feed())
        await asyncio.sleep(1)
        # the writer took one batch and waits for a connection...
        assert rig.writer.statistics() == writer_stats(total_received=2, current_batch=2)
        pool = rig.pool.statistics()
        assert (pool.current_in_use, pool.tasks_waiting, pool.total_acquired) == (1, 1, 1)
        # ...so the channel is full and the feeder is blocked on its fifth reading
        channel_stats = rig.tx.statistics()
        assert channel_stats.current_buffer_used == 2
        assert channel_stats.tasks_waiting_send == 1
        assert channel_stats.total_sent == 4
        assert not feeder.done()

        rig.pool.release(held)
        await feeder
        await rig.task
        after = rig.tx.statistics()
        assert after.total_send_wait == 1.0  # blocked from t=0 to t=1, never again in loop time
        assert after.total_sent == 10
        assert rig.pool.statistics().total_wait == 1.0
        assert rig.writer.statistics() == writer_stats(
            total_received=10, total_stored=10, total_batches=5, flushes_by_size=5
        )
        await rig.pool.close()

    vrun(main())
    assert count(path) == 10


def test_writer_drains_the_channel_before_it_stops(tmp_path: Path) -> None:
    path = tmp_path / "t.db"

    async def main() -> None:
        rig = await start_writer(path, batch_size=3, flush_interval=60.0)
        for seq in range(5):
            await rig.tx.send(reading(1, seq))
        rig.tx.close()
        await rig.task
        assert len(rig.rx) == 0
        with pytest.raises(ChannelClosed, match=r"^channel closed$"):
            rig.rx.try_recv()
        await rig.pool.close()

    vrun(main())
    assert count(path) == 5


def test_statistics_and_repr_while_a_batch_fills(tmp_path: Path) -> None:
    path = tmp_path / "t.db"

    async def main() -> None:
        rig = await start_writer(path, batch_size=3, flush_interval=60.0)
        assert repr(rig.writer) == "<StorageWriter batch=0 writing=0 stored=0 batches=0>"
        for seq in range(4):
            await rig.tx.send(reading(1, seq))
        await asyncio.sleep(1)
        assert repr(rig.writer) == "<StorageWriter batch=1 writing=0 stored=3 batches=1>"
        assert rig.writer.statistics() == writer_stats(
            total_received=4, total_stored=3, total_batches=1, current_batch=1, flushes_by_size=1
        )
        rig.tx.close()
        await rig.task
        assert repr(rig.writer) == "<StorageWriter batch=0 writing=0 stored=4 batches=2>"
        await rig.pool.close()

    vrun(main())
