"""Batch readings from the storage channel and write each batch through the pool.

`StorageWriter` cuts the readings into batches: by size (`batch_size`), by age
(`flush_interval` after the batch's first reading), and a last partial batch when the
channel closes. Each batch is written in a worker thread holding one connection.

A failed write is retried with the `RetryPolicy` *while the connection is held*, so retries
can never outnumber the pool. Failures are the injected faults and SQLite's own
`OperationalError`s ("database is locked" past the busy timeout, disk full, read-only
file); any other `sqlite3.Error` (a constraint, a damaged file) will not go away by
waiting, so that batch is dead-lettered at once. A batch still failing when its retry budget
is spent goes to the `dead_letters` table with the reason; it is counted, never silently
dropped. If even its dead letters cannot be written, the writer has *failed*: it says why
once (`failure`), counts that batch and every later reading as `unwritable` without trying
again, and the gateway ends the run.

The live knobs (`storage_latency`, and `storage_failure_rate` through `StorageFaults`) are
read at every attempt from the gateway's knobs.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
from dataclasses import dataclass, field

from telemetry_lab.config import GatewayConfig, KnobsReader, fixed_knobs
from telemetry_lab.errors import ChannelClosed, TransientStorageError
from telemetry_lab.faults import StorageFaults
from telemetry_lab.models import Reading
from telemetry_lab.primitives import JoinSet, Receiver, on_deadline, on_recv, select
from telemetry_lab.storage import sql
from telemetry_lab.storage.pool import ConnectionPool
from telemetry_lab.storage.retry import RetryPolicy
from telemetry_lab.storage.sql import Row, describe

__all__ = ["StorageStatistics", "StorageWriter"]

log = logging.getLogger("telemetry_lab.storage")


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

    Args:
        rx: the storage channel.
        pool: the run's connections.
        batch_size: readings per batch.
        flush_interval: seconds a batch's first reading may wait before it is written.
        retry: the backoff of failed writes.
        faults: the injected storage faults (none by default).
        latency: seconds added to every attempt, when no `knobs` are given.
        rng: the source of the retry jitter.
        knobs: where the live `storage_latency` is read (a gateway's knobs).
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
        knobs: KnobsReader | None = None,
    ) -> None:
        self._rx = rx
        self._pool = pool
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._retry = retry or RetryPolicy(initial=0.1, max_interval=2.0, max_elapsed=10.0)
        self._faults = faults
        self._knobs = knobs or fixed_knobs(storage_latency=latency)
        self._rng = rng or random.Random(0)
        self._started_at = 0.0
        self._batch: list[Reading] = []
        self._tally = _Tally()
        self.failure: str | None = None
        """Why the writer failed (its dead letters could not be written), or None."""

    @classmethod
    def from_config(
        cls,
        config: GatewayConfig,
        *,
        rx: Receiver[Reading],
        pool: ConnectionPool,
        knobs: KnobsReader,
    ) -> StorageWriter:
        """Build the writer of a gateway run: `config`'s batching, retries and faults."""
        return cls(
            rx=rx,
            pool=pool,
            batch_size=config.batch_size,
            flush_interval=config.flush_interval,
            retry=RetryPolicy.from_config(config),
            faults=StorageFaults(
                outage=config.storage_outage,
                rng=random.Random(f"{config.seed}:storage-faults"),
                knobs=knobs,
            ),
            rng=random.Random(f"{config.seed}:storage-retry"),
            knobs=knobs,
        )

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
                self._tally.received += 1
                if len(self._batch) >= size:
                    await self._flush(writes, "size")
                elif loop.time() >= deadline:
                    await self._flush(writes, "age")
                self._reap(writes)
            if self._batch:
                await self._flush(writes, "close")
            await writes.join_all()

    async def _flush(self, writes: JoinSet[None], why: str) -> None:
        tally = self._tally
        if self.failure is not None:  # failed: nothing can be written any more
            tally.unwritable += len(self._batch)
            self._batch = []
            return
        conn = await self._pool.acquire()  # every connection busy: wait (backpressure)
        batch, self._batch = self._batch, []
        tally.batches_started += 1
        tally.flushes[why] += 1
        tally.writing += len(batch)
        log.info("💾 Writing batch %d (%d records) to storage", tally.batches_started, len(batch))
        task = writes.spawn(self._write(conn, batch), name=f"batch-{tally.batches_started}")
        task.add_done_callback(lambda _: self._pool.release(conn))

    async def _write(self, conn: sqlite3.Connection, batch: list[Reading]) -> None:
        """Write one batch: retry failures, dead-letter it past the budget."""
        loop = asyncio.get_running_loop()
        run_id = self._pool.run_id
        rows = [(run_id, r.device_id, r.seq, r.ts, r.temperature, r.humidity) for r in batch]
        write = _BatchWrite(rows, self._tally)
        first_attempt = loop.time()
        attempt = 0
        while True:
            latency = self._knobs().storage_latency
            if latency:
                await asyncio.sleep(latency)  # a slow database, on the loop's clock
            fault = self._faults.check(loop.time() - self._started_at) if self._faults else None
            try:
                await self._pool.call(
                    conn, sql.write_attempt, write.rows, fault, account=write.count_attempt
                )
            except (TransientStorageError, sqlite3.Error) as exc:
                attempt += 1
                delay = self._retry.delay(attempt, self._rng)
                retryable = isinstance(exc, TransientStorageError | sqlite3.OperationalError)
                if retryable and loop.time() + delay - first_attempt <= self._retry.max_elapsed:
                    self._tally.retries += 1
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
        unwritable = write.unsettled
        try:
            dead = await self._pool.call(
                conn,
                sql.dead_letter_batch,
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
        tally = self._tally
        return StorageStatistics(
            total_received=tally.received,
            total_stored=tally.stored,
            total_duplicates=tally.duplicates,
            total_dead_lettered=tally.dead_lettered,
            total_unwritable=tally.unwritable,
            total_batches=tally.batches,
            total_retries=tally.retries,
            current_batch=len(self._batch),
            current_writing=tally.writing,
            flushes_by_size=tally.flushes["size"],
            flushes_by_age=tally.flushes["age"],
            flushes_at_close=tally.flushes["close"],
        )

    def __repr__(self) -> str:
        tally = self._tally
        return (
            f"<StorageWriter batch={len(self._batch)} writing={tally.writing} "
            f"stored={tally.stored} batches={tally.batches}>"
        )


@dataclass(slots=True)
class _Tally:
    """The writer's counts: where every reading it took in is now."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    unwritable: int = 0
    writing: int = 0
    """Readings in batch writes still running."""
    batches: int = 0
    """Batch writes completed."""
    batches_started: int = 0
    retries: int = 0
    flushes: dict[str, int] = field(default_factory=lambda: {"size": 0, "age": 0, "close": 0})

    def settle(self, *, stored: int = 0, dead_lettered: int = 0, duplicates: int = 0) -> None:
        """Move readings from `writing` to their final place."""
        self.stored += stored
        self.dead_lettered += dead_lettered
        self.duplicates += duplicates
        self.writing -= stored + dead_lettered + duplicates

    def give_up(self, unwritable: int) -> None:
        """Move readings from `writing` to `unwritable`: no table could take them."""
        self.unwritable += unwritable
        self.writing -= unwritable


class _BatchWrite:
    """The accounting of one batch write: where each of its readings ended up.

    Every attempt's outcome is counted when its worker thread is done (even if the writing
    task was cancelled meanwhile), so the writer's counts always match the file.
    """

    __slots__ = ("rows", "settled", "tally")

    def __init__(self, rows: list[Row], tally: _Tally) -> None:
        self.rows = rows
        self.tally = tally
        self.settled = 0
        """Readings of this batch that reached their final place."""

    @property
    def unsettled(self) -> int:
        """Readings of this batch not (yet) in the file."""
        return len(self.rows) - self.settled

    def _settle(self, *, stored: int = 0, dead_lettered: int = 0, final: bool = False) -> None:
        self.settled += stored + dead_lettered
        # When final, the rest were found already stored (before this batch): duplicates.
        duplicates = len(self.rows) - self.settled if final else 0
        self.settled += duplicates
        self.tally.settle(stored=stored, dead_lettered=dead_lettered, duplicates=duplicates)

    def count_attempt(self, future: asyncio.Future[int]) -> None:
        """Count one write attempt (success, or failure after rows were committed)."""
        exc = future.exception()
        if exc is None:
            self._settle(stored=future.result(), final=True)
            self.tally.batches += 1
        elif isinstance(exc, TransientStorageError):
            self._settle(stored=exc.inserted)  # a lost ack: those rows are in the file

    def count_dead_letters(self, future: asyncio.Future[int]) -> None:
        """Count the dead-letter write; if it failed, the rest of the batch is unwritable."""
        if future.exception() is None:
            self._settle(dead_lettered=future.result(), final=True)
            return
        left = self.unsettled
        self.tally.give_up(left)
        self.settled += left
