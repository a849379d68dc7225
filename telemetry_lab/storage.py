"""Store readings in SQLite in batches, with blocking calls kept off the event loop.

`ConnectionPool` opens one run's database file (through `telemetry_lab.database`, which
refuses a file that is not ours and numbers the run) and keeps `db_connections`
connections behind a semaphore. `StorageWriter` takes readings from the storage channel and
cuts them into batches: by size (`batch_size`) and by age (`flush_interval` after the
batch's first reading), and a last partial batch when the channel closes. Each batch is
written in a worker thread holding one connection; when every connection is busy the
writer waits, the storage channel fills, and backpressure travels upstream. Inserts are
idempotent: a reading is identified by `(run_id, device_id, seq)`.

A failed write is retried with exponential backoff and full jitter *while the connection is
held*, so retries can never outnumber the pool. Failures are the injected faults and
SQLite's own `OperationalError`s ("database is locked" past the busy timeout, disk full,
read-only file); any other `sqlite3.Error` (a constraint, a damaged file) will not go away
by waiting, so that batch is dead-lettered at once. A batch still failing when its retry
budget (`retry_max_elapsed`) is spent goes to the `dead_letters` table with the reason; it
is counted, never silently dropped. If even its dead letters cannot be written, the writer
has *failed*: it says why once (`failure`), counts that batch and every later reading as
`unwritable` without trying again, and the gateway ends the run.

A worker thread cannot be stopped, so a cancelled write still waits for its thread and
counts what it did before the cancellation goes on: the counts always match the file.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from telemetry_lab import database
from telemetry_lab._private import wait_to_the_end
from telemetry_lab.config import Knobs
from telemetry_lab.database import RunCounts
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

INSERT_READINGS = (
    "INSERT OR IGNORE INTO readings (run_id, device_id, seq, ts, temperature, humidity) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
INSERT_DEAD_LETTER = """
INSERT OR IGNORE INTO dead_letters
    (run_id, device_id, seq, ts, temperature, humidity, reason, failed_at)
SELECT ?, ?, ?, ?, ?, ?, ?, ?
WHERE NOT EXISTS (SELECT 1 FROM readings WHERE run_id = ? AND device_id = ? AND seq = ?)
"""

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
        doublings = min(attempt - 1, 64)  # past that, the cap is max_interval anyway
        cap = min(self.max_interval, self.initial * 2.0**doublings)
        return rng.uniform(0.0, cap)


class ConnectionPool:
    """A fixed set of SQLite connections to one run's database, one per batch write.

    Not a general pool: a connection is used by one worker thread at a time, and the
    semaphore (not a lock per connection) bounds how many writes run at once. Each
    connection also has a thread lock, held by the worker thread while it uses it; `close()`
    takes every lock before closing, so a connection is never closed under a running write,
    whatever happened to the task that started it.
    """

    def __init__(self, path: Path, run_id: int, connections: list[sqlite3.Connection]) -> None:
        self.path = path
        self.run_id = run_id
        """This run's id in the file's `runs` table."""
        self._free = connections
        self._first = connections[0]
        self._locks = {conn: threading.Lock() for conn in connections}
        self.permits = MeteredSemaphore(len(connections))

    @classmethod
    async def open(
        cls, path: Path, size: int, *, config: Mapping[str, Any] | None = None
    ) -> ConnectionPool:
        """Check the file, record a new run in it, and open `size` connections.

        Waits for the worker thread to the end, even if cancelled meanwhile.

        Raises:
            UnusableDatabase: the file cannot be used (it is left unchanged).
        """

        def open_all() -> tuple[int, list[sqlite3.Connection]]:
            run_id = database.open_run(path, config or {})
            return run_id, [database.connect(path) for _ in range(size)]

        future = asyncio.get_running_loop().run_in_executor(None, open_all)
        try:
            await wait_to_the_end(future)
        except asyncio.CancelledError:
            if future.exception() is None:
                for conn in future.result()[1]:
                    conn.close()
            raise
        run_id, connections = future.result()
        return cls(path, run_id, connections)

    async def acquire(self) -> sqlite3.Connection:
        """Wait for a free connection and take it."""
        await self.permits.acquire()
        return self._free.pop()

    def release(self, conn: sqlite3.Connection) -> None:
        """Give a connection back."""
        self._free.append(conn)
        self.permits.release()

    async def call(
        self,
        conn: sqlite3.Connection,
        func: Callable[..., T],
        *args: object,
        account: Callable[[asyncio.Future[T]], None] | None = None,
    ) -> T:
        """Run blocking `func(conn, *args)` in a worker thread and return its result.

        A thread cannot be stopped: if the calling task is cancelled meanwhile, the call
        still waits for the thread, calls `account` with the finished future (so what the
        thread did is counted), and only then lets the cancellation through.
        """
        lock = self._locks[conn]

        def locked() -> T:
            with lock:
                return func(conn, *args)

        future = asyncio.get_running_loop().run_in_executor(None, locked)
        try:
            await wait_to_the_end(future)
        finally:
            if account is not None and future.done():
                account(future)
        return future.result()

    async def counts(self) -> RunCounts:
        """Count this run's rows in the file.

        It does not take a permit (a count is not a batch write): it waits, if need be,
        for the thread using the pool's first connection.
        """
        return await self.call(self._first, database.count_run, self.run_id)

    async def row_count(self, table: str = "readings") -> int:
        """Count this run's rows in `table` ("readings" or "dead_letters")."""
        if table not in ("readings", "dead_letters"):
            raise ValueError(f"table must be 'readings' or 'dead_letters', got {table!r}")
        counts = await self.counts()
        return counts.readings if table == "readings" else counts.dead_letters

    async def finish(self, report: Mapping[str, Any]) -> None:
        """Record this run's end and its report in the `runs` table (no permit taken)."""
        await self.call(self._first, database.finish_run, self.run_id, report)

    async def close(self) -> None:
        """Close every connection, each once no thread is using it (idempotent)."""

        def close_all() -> None:
            for conn, lock in self._locks.items():
                with lock:
                    conn.close()

        future = asyncio.get_running_loop().run_in_executor(None, close_all)
        await wait_to_the_end(future)
        future.result()

    def statistics(self) -> SemaphoreStatistics:
        """Return a snapshot of the pool's permits (connections in use)."""
        return self.permits.statistics()

    def __repr__(self) -> str:
        return f"<ConnectionPool path={str(self.path)!r} run_id={self.run_id} {self.permits!r}>"


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
    total_unwritable: int
    """Readings written to neither table: the writer had failed (see `failure`)."""
    total_batches: int
    """Batch writes completed."""
    total_retries: int
    """Write attempts retried after a failure."""
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
    running, or in its final place (stored, dead-lettered, or counted unwritable);
    `statistics()` says how many are where.
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
        self._unwritable = 0
        self._batches = 0
        self._batches_started = 0
        self._writing = 0
        self._flushes = {"size": 0, "age": 0, "close": 0}
        self.failure: str | None = None
        """Why the writer failed (its dead letters could not be written), or None."""

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
        if self.failure is not None:  # failed: nothing can be written any more
            self._unwritable += len(self._batch)
            self._batch = []
            return
        conn = await self._pool.acquire()  # every connection busy: wait (backpressure)
        batch, self._batch = self._batch, []
        self._batches_started += 1
        self._flushes[why] += 1
        self._writing += len(batch)
        log.info("💾 Writing batch %d (%d records) to storage", self._batches_started, len(batch))
        task = writes.spawn(self._write(conn, batch), name=f"batch-{self._batches_started}")
        task.add_done_callback(lambda _: self._pool.release(conn))

    async def _write(self, conn: sqlite3.Connection, batch: list[Reading]) -> None:
        """Write one batch: retry failures, dead-letter it past the budget."""
        loop = asyncio.get_running_loop()
        write = _BatchWrite(self, batch)
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
                await self._pool.call(
                    conn, write_attempt, write.rows, fault, account=write.count_attempt
                )
            except (TransientStorageError, sqlite3.Error) as exc:
                attempt += 1
                delay = self._retry.delay(attempt, self._rng)
                retryable = isinstance(exc, TransientStorageError | sqlite3.OperationalError)
                if retryable and loop.time() + delay - first_attempt <= self._retry.max_elapsed:
                    self._retries += 1
                    log.warning(
                        "🔁 Write failed (%s); retry %d in %.2fs", describe(exc), attempt, delay
                    )
                    # Back off while holding the connection: retries never exceed the pool.
                    await asyncio.sleep(delay)
                    continue
                if retryable:
                    why = f"gave up after {attempt} attempt" + ("s" if attempt > 1 else "")
                else:
                    why = "not retried (waiting cannot fix it)"
                await self._dead_letter(conn, write, f"{describe(exc)}; {why}")
            return

    async def _dead_letter(self, conn: sqlite3.Connection, write: _BatchWrite, reason: str) -> None:
        """Send a batch that cannot be stored to `dead_letters`; fail if even that fails."""
        failed_at = asyncio.get_running_loop().time() - self._started_at
        unwritable = write.unwritable
        try:
            dead = await self._pool.call(
                conn,
                dead_letter_batch,
                write.rows,
                reason,
                failed_at,
                account=write.count_dead_letters,
            )
        except sqlite3.Error as exc:
            if self.failure is None:
                self.failure = (
                    f"storage failed: {unwritable} readings could be written neither to "
                    f"readings ({reason}) nor to dead_letters ({describe(exc)}) in "
                    f"{str(self._pool.path)!r}"
                )
                log.error("☠️ %s; the run stops", self.failure)
            return
        log.error(
            "☠️ Dead-lettered %d of %d readings (the rest were already stored): %s",
            dead,
            len(write.rows),
            reason,
        )

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
            total_unwritable=self._unwritable,
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


class _BatchWrite:
    """The accounting of one batch write: where each of its readings ended up.

    Every attempt's outcome is counted when its worker thread is done (even if the writing
    task was cancelled meanwhile), so the writer's counts always match the file.
    """

    __slots__ = ("rows", "settled", "writer")

    def __init__(self, writer: StorageWriter, batch: list[Reading]) -> None:
        run_id = writer._pool.run_id
        self.writer = writer
        self.rows: list[Row] = [
            (run_id, r.device_id, r.seq, r.ts, r.temperature, r.humidity) for r in batch
        ]
        self.settled = 0
        """Readings of this batch that reached their final place."""

    @property
    def unwritable(self) -> int:
        """Readings of this batch not (yet) in the file."""
        return len(self.rows) - self.settled

    def _settle(self, *, stored: int = 0, dead_lettered: int = 0, final: bool = False) -> None:
        writer = self.writer
        self.settled += stored + dead_lettered
        writer._stored += stored
        writer._dead_lettered += dead_lettered
        writer._writing -= stored + dead_lettered
        if final:  # the rest were found already stored (before this batch): duplicates
            duplicates = self.unwritable
            writer._duplicates += duplicates
            writer._writing -= duplicates
            self.settled += duplicates

    def count_attempt(self, future: asyncio.Future[int]) -> None:
        """Count one write attempt (success, or failure after rows were committed)."""
        exc = future.exception()
        if exc is None:
            self._settle(stored=future.result(), final=True)
            self.writer._batches += 1
        elif isinstance(exc, TransientStorageError):
            self._settle(stored=exc.inserted)  # a lost ack: those rows are in the file

    def count_dead_letters(self, future: asyncio.Future[int]) -> None:
        """Count the dead-letter write; if it failed, the rest of the batch is unwritable."""
        if future.exception() is None:
            self._settle(dead_lettered=future.result(), final=True)
            return
        left = self.unwritable
        self.writer._unwritable += left
        self.writer._writing -= left
        self.settled += left
