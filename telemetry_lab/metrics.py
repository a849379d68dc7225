"""Measure the gateway: permits in use, and a time series of its vital signs.

Components keep their own counters and expose them as frozen `statistics()` snapshots. This
module adds the two instruments they share: `MeteredSemaphore`, an `asyncio.Semaphore` that
counts permits in use and time spent waiting, and `MetricsSeries`, a bounded time series of
`Sample`s that the gateway records every `sample_interval` for the dashboard.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from telemetry_lab.primitives._private import check_name
from telemetry_lab.primitives.waiting import next_serial

__all__ = [
    "MeteredSemaphore",
    "MetricsSeries",
    "Sample",
    "SemaphoreStatistics",
    "metered_semaphores",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SemaphoreStatistics:
    """A snapshot of one `MeteredSemaphore`."""

    max_permits: int
    """Permits the semaphore was created with."""
    current_in_use: int
    """Permits held now."""
    max_in_use: int
    """The most permits ever held at once."""
    tasks_waiting: int
    """Tasks blocked in `acquire()` now."""
    total_acquired: int
    """Successful acquisitions."""
    total_wait: float
    """Loop-time seconds spent waiting in `acquire()`, summed over acquisitions."""
    name: str | None = None
    """The name given to the semaphore, or None."""


_semaphores: weakref.WeakSet[MeteredSemaphore] = weakref.WeakSet()


def metered_semaphores() -> list[MeteredSemaphore]:
    """Every live `MeteredSemaphore` (for observers such as the console)."""
    return list(_semaphores)


class MeteredSemaphore(asyncio.Semaphore):
    """An `asyncio.Semaphore` that counts permits in use and time spent waiting.

    It is asyncio's own semaphore (same fairness, same cancellation behaviour); it is not a
    bounded semaphore, and releasing more than was acquired is a bug it refuses.
    """

    def __init__(self, permits: int, *, name: str | None = None) -> None:
        if permits < 1:
            raise ValueError(f"permits must be >= 1, got {permits!r}")
        super().__init__(permits)
        self.name = check_name(name)
        """How reprs, statistics and the console call it."""
        self.waiting_tasks: list[asyncio.Task[Any] | None] = []
        """The tasks blocked in `acquire()` now, oldest first (for observers)."""
        self.serial = next_serial()
        """Creation order among resources (newer ones have larger serials)."""
        _semaphores.add(self)
        self._max_permits = permits
        self._in_use = 0
        self._max_in_use = 0
        self._acquired = 0
        self._wait = 0.0

    async def acquire(self) -> Literal[True]:
        """Take a permit, waiting (and counting the wait) if none is free."""
        if not self.locked():
            await super().acquire()
        else:
            loop = asyncio.get_running_loop()
            started = loop.time()
            task = asyncio.current_task(loop)
            self.waiting_tasks.append(task)
            try:
                await super().acquire()
            finally:
                self.waiting_tasks.remove(task)
                self._wait += loop.time() - started
        self._in_use += 1
        self._acquired += 1
        if self._in_use > self._max_in_use:
            self._max_in_use = self._in_use
        return True

    def release(self) -> None:
        """Give a permit back."""
        if self._in_use == 0:
            raise ValueError("MeteredSemaphore released more times than it was acquired")
        self._in_use -= 1
        super().release()

    @property
    def in_use(self) -> int:
        """Permits held now."""
        return self._in_use

    def statistics(self) -> SemaphoreStatistics:
        """Return a snapshot of this semaphore."""
        return SemaphoreStatistics(
            max_permits=self._max_permits,
            current_in_use=self._in_use,
            max_in_use=self._max_in_use,
            tasks_waiting=len(self.waiting_tasks),
            total_acquired=self._acquired,
            total_wait=self._wait,
            name=self.name,
        )

    @property
    def closed(self) -> bool:
        """Always False: a semaphore never ends (for observers)."""
        return False

    def describe(self) -> str:
        """Say what it is and its state: `semaphore 'db' (2/2 in use, 3 waiting)`."""
        name = "semaphore" if self.name is None else f"semaphore {self.name!r}"
        waiting = len(self.waiting_tasks)
        return f"{name} ({self._in_use}/{self._max_permits} in use, {waiting} waiting)"

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        named = "" if self.name is None else f" name={self.name!r}"
        return (
            f"<MeteredSemaphore{named} permits={self._max_permits} in_use={self._in_use} "
            f"waiting={len(self.waiting_tasks)}>"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """The gateway's vital signs at one instant."""

    t: float
    """Seconds since the run started (loop clock)."""
    telemetry_depth: int
    """Readings buffered in the device → aggregator channel."""
    storage_depth: int
    """Readings buffered in the aggregator → storage channel."""
    senders_blocked: int
    """Device sends waiting for room in the telemetry channel (backpressure)."""
    bandwidth_in_use: int
    """Device-bandwidth permits held."""
    db_in_use: int
    """Database connections busy writing."""
    produced: int
    """Readings accepted into the telemetry channel so far."""
    stored: int
    """Readings written to the database so far."""
    batches: int
    """Batches written so far."""
    throughput: float
    """Readings stored per second since the previous sample."""
    client_received: tuple[int, ...]
    """Updates each client has processed so far."""
    client_lagged: tuple[int, ...]
    """Updates each client has missed by lagging so far."""
    client_pending: tuple[int, ...] = ()
    """Updates sent but not yet read, per client: how far behind each one is now."""


class MetricsSeries:
    """A bounded time series of `Sample`s (the oldest are dropped past `max_samples`)."""

    def __init__(self, max_samples: int = 4096) -> None:
        self._samples: deque[Sample] = deque(maxlen=max_samples)

    def append(self, sample: Sample) -> None:
        """Record one sample."""
        self._samples.append(sample)

    def latest(self) -> Sample | None:
        """Return the newest sample, or None before the first."""
        return self._samples[-1] if self._samples else None

    def column(self, name: str) -> list[float]:
        """Return one numeric field of every sample, oldest first (e.g. "storage_depth")."""
        return [float(getattr(s, name)) for s in self._samples]

    def __len__(self) -> int:
        return len(self._samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(list(self._samples))

    def __repr__(self) -> str:
        return f"<MetricsSeries samples={len(self._samples)} maxlen={self._samples.maxlen}>"
