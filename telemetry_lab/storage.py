"""Store readings in SQLite in batches, with blocking calls kept off the event loop.

`ConnectionPool` opens the database file (WAL mode) and keeps `db_connections`
connections behind a semaphore. `StorageWriter` takes readings from the storage channel and
cuts them into batches: by size (`batch_size`) and by age (`flush_interval` after the
batch's first reading), and a last partial batch when the channel closes. Each batch is
written in a worker thread (`loop.run_in_executor`) holding one connection; when every
connection is busy the writer waits, the storage channel fills, and backpressure travels
upstream. Inserts are idempotent: a reading is identified by `(device_id, seq)`.

A failed write is retried with exponential backoff and full jitter *while the connection is
held*, so retries can never outnumber the pool. A batch still failing when its retry budget
(`retry_max_elapsed`) is spent goes to the `dead_letters` table with the reason; it is
counted, never silently dropped. (The dead-letter table stands for a local dead-letter
queue: the simulated faults do not touch it.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from telemetry_lab.config import Knobs
from telemetry_lab.errors import ChannelClosed, TransientStorageError
from telemetry_lab.faults import StorageFault, StorageFaults
from telemetry_lab.metrics import MeteredSemaphore, SemaphoreStatistics
from telemetry_lab.models import Reading
from telemetry_lab.primitives import (
    JoinSet,
    Receiver,
    WatchReceiver,
    on_deadline,
    on_recv,
    select,
)

__all__ = [
    "ConnectionPool",
    "RetryPolicy",
    "StorageStatistics",
    "StorageWriter",
    "dead_letter_batch",
    "insert_batch",
    "write_attempt",
]

T = TypeVar("T")

log = logging.getLogger("telemetry_lab.storage")

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    device_id   INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    ts          REAL    NOT NULL,
    temperature REAL    NOT NULL,
    humidity    REAL    NOT NULL,
    PRIMARY KEY (device_id, seq)
);
CREATE TABLE IF NOT EXISTS dead_letters (
    device_id   INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    ts          REAL,
    temperature REAL,
    humidity    REAL,
    reason      TEXT    NOT NULL,
    failed_at   REAL    NOT NULL,  -- seconds since the start of the run
    PRIMARY KEY (device_id, seq)
);
"""

INSERT_READINGS = "INSERT OR IGNORE INTO readings VALUES (?, ?, ?, ?, ?)"
INSERT_DEAD_LETTER = """
INSERT OR IGNORE INTO dead_letters
SELECT ?, ?, ?, ?, ?, ?, ?
WHERE NOT EXISTS (SELECT 1 FROM readings WHERE device_id = ? AND seq = ?)
"""

Row = tuple[int, int, float, float, float]


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _open_all(path: Path, size: int) -> list[sqlite3.Connection]:
    """Create the schema, empty the tables (a run starts fresh), open `size` connections."""
    first = _connect(path)
    try:
        with first:
            first.executescript(SCHEMA)
            first.execute("DELETE FROM readings")
            first.execute("DELETE FROM dead_letters")
        return [first] + [_connect(path) for _ in range(size - 1)]
    except BaseException:
        first.close()
        raise


def insert_batch(conn: sqlite3.Connection, rows: Sequence[Row]) -> int:
    """Insert `rows` in one transaction, ignoring ones already stored; return rows added.

    Blocking: call it in a worker thread.
    """
    with conn:
        before = conn.total_changes
        conn.executemany(INSERT_READINGS, rows)
        return conn.total_changes - before


def write_attempt(conn: sqlite3.Connection, rows: Sequence[Row], fault: StorageFault | None) -> int:
    """One write attempt with an optional injected fault; return rows added.

    Blocking: call it in a worker thread.

    Raises:
        TransientStorageError: the injected fault; `.inserted` rows were committed first
            when the fault is a lost acknowledgement.
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
        before = conn.total_changes
        conn.executemany(
            INSERT_DEAD_LETTER, [(*row, reason, failed_at, row[0], row[1]) for row in rows]
        )
        return conn.total_changes - before


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by a total time budget per batch."""

    initial: float
    """Cap of the first delay."""
    max_interval: float
    """Largest cap of any delay."""
    max_elapsed: float
    """Seconds after the first attempt past which no retry is started."""

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Return the delay before retry number `attempt` (1-based): uniform in [0, cap]."""
        cap = min(self.max_interval, self.initial * 2 ** (attempt - 1))
        return rng.uniform(0.0, cap)


class ConnectionPool:
    """A fixed set of SQLite connections, handed out one per batch write.

    Not a general pool: a connection is used by one worker thread at a time, and the
    semaphore (not a lock per connection) bounds how many writes run at once.
    """

    def __init__(self, path: Path, connections: list[sqlite3.Connection]) -> None:
        self.path = path
        self._free = connections
        self._all = list(connections)
        self.permits = MeteredSemaphore(len(connections))

    @classmethod
    async def open(cls, path: Path, size: int) -> ConnectionPool:
        """Open the database at `path` with `size` connections (tables emptied).

        Raises:
            ValueError: the file cannot be opened or written (names the path and why).
        """
        try:
            connections = await asyncio.to_thread(_open_all, path, size)
        except sqlite3.Error as exc:
            raise ValueError(f"db_path {str(path)!r} cannot be used: {exc}") from exc
        return cls(path, connections)

    async def acquire(self) -> sqlite3.Connection:
        """Wait for a free connection and take it."""
        await self.permits.acquire()
        return self._free.pop()

    def release(self, conn: sqlite3.Connection) -> None:
        """Give a connection back."""
        self._free.append(conn)
        self.permits.release()

    async def row_count(self, table: str = "readings") -> int:
        """Count the rows of `table` ("readings" or "dead_letters")."""
        if table not in ("readings", "dead_letters"):
            raise ValueError(f"table must be 'readings' or 'dead_letters', got {table!r}")

        def count() -> int:
            with contextlib.closing(sqlite3.connect(self.path)) as conn:
                return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

        return await asyncio.to_thread(count)

    async def close(self) -> None:
        """Close every connection."""

        def close_all() -> None:
            for conn in self._all:
                conn.close()

        await asyncio.to_thread(close_all)

    def statistics(self) -> SemaphoreStatistics:
        """Return a snapshot of the pool's permits (connections in use)."""
        return self.permits.statistics()

    def __repr__(self) -> str:
        return f"<ConnectionPool path={str(self.path)!r} {self.permits!r}>"


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageStatistics:
    """A snapshot of the storage writer."""

    total_received: int
    """Readings taken from the storage channel."""
    total_stored: int
    """Rows inserted into `readings`."""
    total_duplicates: int
    """Readings already stored (ignored by the idempotent insert)."""
    total_dead_lettered: int
    """Readings written to `dead_letters` instead."""
    total_batches: int
    """Batch writes completed."""
    total_retries: int
    """Write attempts retried after a transient failure."""
    current_batch: int
    """Readings in the batch being filled."""
    current_writing: int
    """Readings in batch writes still running."""
    flushes_by_size: int
    """Batches cut because they were full."""
    flushes_by_age: int
    """Batches cut because their first reading waited `flush_interval`."""
    flushes_at_close: int
    """Partial batches written at shutdown."""


class StorageWriter:
    """The storage task: batches readings and writes them through the pool.

    It is not a cache: a reading is either in the batch being filled, in a write that is
    running, or in the database; `statistics()` says how many are where.
    """

    def __init__(
        self,
        *,
        rx: Receiver[Reading],
        pool: ConnectionPool,
        batch_size: int,
        flush_interval: float,
        retry: RetryPolicy | None = None,
        faults: StorageFaults | None = None,
        latency: float = 0.0,
        rng: random.Random | None = None,
        knobs: WatchReceiver[Knobs] | None = None,
    ) -> None:
        self._rx = rx
        self._pool = pool
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._retry = retry or RetryPolicy(initial=0.1, max_interval=2.0, max_elapsed=10.0)
        self._faults = faults
        self._latency = latency
        self._knobs = knobs  # live latency and failure rate, when a gateway lets them turn
        self._rng = rng or random.Random(0)
        self._started_at = 0.0
        self._retries = 0
        self._batch: list[Reading] = []
        self._received = 0
        self._stored = 0
        self._duplicates = 0
        self._dead_lettered = 0
        self._batches = 0
        self._batches_started = 0
        self._writing = 0
        self._flushes = {"size": 0, "age": 0, "close": 0}

    async def run(self, *, origin: float | None = None) -> None:
        """Batch and write until the storage channel is closed and drained.

        Args:
            origin: the loop time the run started at (default: now); the outage window
                and the dead letters' `failed_at` are in seconds since then.
        """
        loop = asyncio.get_running_loop()
        self._started_at = loop.time() if origin is None else origin
        rx, size = self._rx, self._batch_size
        deadline = 0.0
        async with JoinSet[None]() as writes:
            while True:
                if len(rx):  # fast path: readings are waiting, no need to select
                    reading = rx.try_recv()
                else:
                    try:
                        winner = await select(
                            on_recv(rx),
                            on_deadline(deadline, enabled=bool(self._batch)),
                            biased=True,
                        )
                    except ChannelClosed:
                        break
                    if winner.index == 1:
                        await self._flush(writes, "age")
                        continue
                    reading = winner.value
                if not self._batch:
                    deadline = loop.time() + self._flush_interval
                self._batch.append(reading)
                self._received += 1
                if len(self._batch) >= size:
                    await self._flush(writes, "size")
                elif loop.time() >= deadline:
                    await self._flush(writes, "age")
                self._reap(writes)
            if self._batch:
                await self._flush(writes, "close")
            await writes.join_all()

    async def _flush(self, writes: JoinSet[None], why: str) -> None:
        conn = await self._pool.acquire()  # every connection busy: wait (backpressure)
        batch, self._batch = self._batch, []
        self._batches_started += 1
        self._flushes[why] += 1
        self._writing += len(batch)
        log.info("💾 Writing batch %d (%d records) to storage", self._batches_started, len(batch))
        task = writes.spawn(self._write(conn, batch), name=f"batch-{self._batches_started}")
        task.add_done_callback(lambda _: self._pool.release(conn))

    async def _write(self, conn: sqlite3.Connection, batch: list[Reading]) -> None:
        """Write one batch: retry transient failures, dead-letter it past the budget."""
        loop = asyncio.get_running_loop()
        rows = [(r.device_id, r.seq, r.ts, r.temperature, r.humidity) for r in batch]

        settled = 0  # readings of this batch that reached the file (either table)

        def settle(*, stored: int = 0, dead_lettered: int = 0, final: bool = False) -> None:
            nonlocal settled
            settled += stored + dead_lettered
            # On the final attempt, rows found already stored by someone else are duplicates.
            duplicates = len(rows) - settled if final else 0
            self._finalize(stored=stored, dead_lettered=dead_lettered, duplicates=duplicates)

        def count_attempt(future: asyncio.Future[int]) -> None:
            exc = future.exception()
            if exc is None:
                settle(stored=future.result(), final=True)
                self._batches += 1
            elif isinstance(exc, TransientStorageError):
                settle(stored=exc.inserted)  # a lost ack: those rows are in the file

        def count_dead_letters(future: asyncio.Future[int]) -> None:
            if future.exception() is None:
                settle(dead_lettered=future.result(), final=True)

        first_attempt = loop.time()
        attempt = 0
        while True:
            if self._knobs is not None:
                knobs = self._knobs.borrow()
                self._latency = knobs.storage_latency
                if self._faults is not None:
                    self._faults.failure_rate = knobs.storage_failure_rate
            if self._latency:
                await asyncio.sleep(self._latency)  # a slow database, on the loop's clock
            fault = self._faults.check(loop.time() - self._started_at) if self._faults else None
            try:
                await self._in_thread(count_attempt, write_attempt, conn, rows, fault)
                return
            except TransientStorageError as exc:
                attempt += 1
                delay = self._retry.delay(attempt, self._rng)
                if loop.time() + delay - first_attempt <= self._retry.max_elapsed:
                    self._retries += 1
                    log.warning(
                        "🔁 Write failed (%s); retry %d in %.2fs", exc.reason, attempt, delay
                    )
                    # Back off while holding the connection: retries never exceed the pool.
                    await asyncio.sleep(delay)
                    continue
                reason = f"{exc.reason}; gave up after {attempt} attempts"
                dead = await self._in_thread(
                    count_dead_letters,
                    dead_letter_batch,
                    conn,
                    rows,
                    reason,
                    loop.time() - self._started_at,
                )
                log.error(
                    "☠️ Dead-lettered %d of %d readings (the rest were already stored): %s",
                    dead,
                    len(rows),
                    reason,
                )
                return

    async def _in_thread(
        self,
        account: Callable[[asyncio.Future[T]], None],
        func: Callable[..., T],
        *args: object,
    ) -> T:
        """Run blocking `func` in a worker thread; `account` for it once it is done.

        A worker thread cannot be stopped, so if this task is cancelled meanwhile, the
        cancellation is delivered only after the thread is done and accounted for: the
        counts always match the file.
        """
        future = asyncio.get_running_loop().run_in_executor(None, func, *args)
        try:
            await asyncio.wait([future])
        finally:
            if not future.done():  # cancelled: wait for the thread, then let it through
                await asyncio.wait([future])
            if not future.cancelled():
                account(future)
        return future.result()

    def _finalize(self, *, stored: int, dead_lettered: int, duplicates: int) -> None:
        """Count readings of a running write that reached their final place."""
        self._stored += stored
        self._dead_lettered += dead_lettered
        self._duplicates += duplicates
        self._writing -= stored + dead_lettered + duplicates

    def _reap(self, writes: JoinSet[None]) -> None:
        while (task := writes.try_join_next()) is not None:
            task.result()  # a failed write fails the writer: never swallow it

    def statistics(self) -> StorageStatistics:
        """Return a snapshot of the writer."""
        return StorageStatistics(
            total_received=self._received,
            total_stored=self._stored,
            total_duplicates=self._duplicates,
            total_dead_lettered=self._dead_lettered,
            total_batches=self._batches,
            total_retries=self._retries,
            current_batch=len(self._batch),
            current_writing=self._writing,
            flushes_by_size=self._flushes["size"],
            flushes_by_age=self._flushes["age"],
            flushes_at_close=self._flushes["close"],
        )

    def __repr__(self) -> str:
        return (
            f"<StorageWriter batch={len(self._batch)} writing={self._writing} "
            f"stored={self._stored} batches={self._batches}>"
        )
