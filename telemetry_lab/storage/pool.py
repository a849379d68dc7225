"""Keep one run's SQLite connections behind a semaphore, and run blocking calls in threads.

`ConnectionPool.open` checks the database file (through `telemetry_lab.database`, which
refuses a file that is not ours and numbers the run) and opens `db_connections`
connections. A batch write takes one (`acquire`), runs its SQL in a worker thread
(`call`), and gives it back (`release`); when every connection is busy the writer waits,
and backpressure travels upstream. A worker thread cannot be stopped, so a cancelled call
still waits for its thread, and says what the thread did, before the cancellation goes on.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from telemetry_lab import database
from telemetry_lab._private import wait_to_the_end
from telemetry_lab.database import RunCounts
from telemetry_lab.metrics import MeteredSemaphore, SemaphoreStatistics

__all__ = ["ConnectionPool"]

T = TypeVar("T")


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
        self.permits = MeteredSemaphore(len(connections), name="db")

    @classmethod
    async def open(
        cls, path: Path, size: int, *, config: Mapping[str, Any] | None = None
    ) -> ConnectionPool:
        """Check the file, record a new run in it, and open `size` connections.

        Waits for the worker thread to the end, even if cancelled meanwhile.

        Raises:
            UnusableDatabase: the file cannot be used (it is left unchanged).
        """
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, _open_run, path, size, config or {})
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
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, _call_locked, self._locks[conn], func, conn, args)
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
        future = asyncio.get_running_loop().run_in_executor(None, _close_all, self._locks)
        await wait_to_the_end(future)
        future.result()

    def statistics(self) -> SemaphoreStatistics:
        """Return a snapshot of the pool's permits (connections in use)."""
        return self.permits.statistics()

    def __repr__(self) -> str:
        return f"<ConnectionPool path={str(self.path)!r} run_id={self.run_id} {self.permits!r}>"


# The blocking halves, run in worker threads.


def _open_run(
    path: Path, size: int, config: Mapping[str, Any]
) -> tuple[int, list[sqlite3.Connection]]:
    run_id = database.open_run(path, config)
    return run_id, [database.connect(path) for _ in range(size)]


def _call_locked(
    lock: threading.Lock,
    func: Callable[..., T],
    conn: sqlite3.Connection,
    args: tuple[object, ...],
) -> T:
    with lock:  # close() waits for this: never close a connection under a running call
        return func(conn, *args)


def _close_all(locks: Mapping[sqlite3.Connection, threading.Lock]) -> None:
    for conn, lock in locks.items():
        with lock:
            conn.close()
