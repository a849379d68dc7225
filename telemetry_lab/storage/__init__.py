"""Store readings in SQLite in batches, with blocking calls kept off the event loop.

One concept per module:
- `sql`: the statements, run in worker threads (`insert_batch`, `write_attempt`,
  `dead_letter_batch`), and `describe` for a failure's words;
- `retry`: `RetryPolicy`, exponential backoff with full jitter within a time budget;
- `pool`: `ConnectionPool`, one run's connections behind a semaphore, and the thread calls;
- `writer`: `StorageWriter`, which cuts the storage channel into batches and writes them,
  retrying and dead-lettering, with its `StorageStatistics`.

Inserts are idempotent: a reading is identified by `(run_id, device_id, seq)`. A worker
thread cannot be stopped, so a cancelled write still waits for its thread and counts what
it did before the cancellation goes on: the counts always match the file.
"""

from telemetry_lab.storage.pool import ConnectionPool
from telemetry_lab.storage.retry import RetryPolicy
from telemetry_lab.storage.sql import (
    INSERT_DEAD_LETTER,
    INSERT_READINGS,
    Row,
    dead_letter_batch,
    describe,
    insert_batch,
    write_attempt,
)
from telemetry_lab.storage.writer import StorageStatistics, StorageWriter

__all__ = [
    "INSERT_DEAD_LETTER",
    "INSERT_READINGS",
    "ConnectionPool",
    "RetryPolicy",
    "Row",
    "StorageStatistics",
    "StorageWriter",
    "dead_letter_batch",
    "describe",
    "insert_batch",
    "write_attempt",
]
