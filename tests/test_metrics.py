"""Tests for `telemetry_lab.metrics`: `MeteredSemaphore` and the `MetricsSeries` of samples.

Waiting times are loop-clock seconds, so those tests run on the virtual-time loop, where
they are exact.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from support import settle, vrun

from telemetry_lab.metrics import MeteredSemaphore, MetricsSeries, Sample, SemaphoreStatistics

OVER_RELEASE = r"^MeteredSemaphore released more times than it was acquired$"


def stats(
    *,
    max_permits: int,
    current_in_use: int = 0,
    max_in_use: int = 0,
    tasks_waiting: int = 0,
    total_acquired: int = 0,
    total_wait: float = 0.0,
) -> SemaphoreStatistics:
    return SemaphoreStatistics(
        max_permits=max_permits,
        current_in_use=current_in_use,
        max_in_use=max_in_use,
        tasks_waiting=tasks_waiting,
        total_acquired=total_acquired,
        total_wait=total_wait,
    )


# --- MeteredSemaphore --------------------------------------------------------------------


def test_is_an_asyncio_semaphore_and_can_be_built_outside_a_loop() -> None:
    sem = MeteredSemaphore(3)
    assert isinstance(sem, asyncio.Semaphore)
    assert sem.statistics() == stats(max_permits=3)
    assert sem.in_use == 0
    assert not sem.locked()


@pytest.mark.parametrize("permits", [0, -1])
def test_permits_below_one_are_refused(permits: int) -> None:
    with pytest.raises(ValueError, match=rf"^permits must be >= 1, got {permits}$"):
        MeteredSemaphore(permits)


def test_statistics_is_a_frozen_snapshot() -> None:
    sem = MeteredSemaphore(1)
    snap = sem.statistics()
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.current_in_use = 5  # type: ignore[misc]


async def test_counts_in_use_max_in_use_and_acquisitions() -> None:
    sem = MeteredSemaphore(3)
    await sem.acquire()
    await sem.acquire()
    assert sem.statistics() == stats(
        max_permits=3, current_in_use=2, max_in_use=2, total_acquired=2
    )
    sem.release()
    async with sem:
        assert sem.in_use == 2
    sem.release()
    assert sem.statistics() == stats(max_permits=3, max_in_use=2, total_acquired=3)


async def test_async_with_releases_on_error() -> None:
    sem = MeteredSemaphore(1)
    with pytest.raises(KeyError):
        async with sem:
            raise KeyError("x")
    assert sem.statistics() == stats(max_permits=1, max_in_use=1, total_acquired=1)
    assert not sem.locked()


def test_max_in_use_reaches_permits_under_contention() -> None:
    async def main() -> tuple[int, SemaphoreStatistics]:
        sem = MeteredSemaphore(2)
        peak = 0

        async def worker() -> None:
            nonlocal peak
            async with sem:
                peak = max(peak, sem.in_use)
                await settle(2)

        async with asyncio.TaskGroup() as tg:
            for _ in range(6):
                tg.create_task(worker())
        return peak, sem.statistics()

    # no timer is involved, so no loop time passes: total_wait is exactly 0
    assert vrun(main()) == (2, stats(max_permits=2, max_in_use=2, total_acquired=6))


def test_tasks_waiting_and_total_wait_are_exact_in_virtual_time() -> None:
    async def main() -> list[SemaphoreStatistics]:
        sem = MeteredSemaphore(1)
        snaps = []

        async def holder(seconds: float) -> None:
            async with sem:
                await asyncio.sleep(seconds)

        async with asyncio.TaskGroup() as tg:
            tg.create_task(holder(3))  # t=0..3
            await settle()
            tg.create_task(holder(1))  # waits 0..3, holds 3..4
            await asyncio.sleep(1)
            tg.create_task(holder(1))  # waits 1..4, holds 4..5
            await asyncio.sleep(1)
            snaps.append(sem.statistics())  # t=2
            await asyncio.sleep(1.5)
            snaps.append(sem.statistics())  # t=3.5
        snaps.append(sem.statistics())  # t=5
        assert asyncio.get_running_loop().time() == 5.0
        return snaps

    assert vrun(main()) == [
        stats(max_permits=1, current_in_use=1, max_in_use=1, tasks_waiting=2, total_acquired=1),
        stats(
            max_permits=1,
            current_in_use=1,
            max_in_use=1,
            tasks_waiting=1,
            total_acquired=2,
            total_wait=3.0,
        ),
        stats(max_permits=1, max_in_use=1, total_acquired=3, total_wait=6.0),
    ]


def test_an_uncontended_acquire_counts_no_wait() -> None:
    async def main() -> SemaphoreStatistics:
        sem = MeteredSemaphore(1)
        for _ in range(3):
            async with sem:
                await asyncio.sleep(2)
        return sem.statistics()

    assert vrun(main()) == stats(max_permits=1, max_in_use=1, total_acquired=3)


async def test_release_without_acquire_raises_and_changes_nothing() -> None:
    sem = MeteredSemaphore(1)
    with pytest.raises(ValueError, match=OVER_RELEASE):
        sem.release()
    assert sem.statistics() == stats(max_permits=1)
    await sem.acquire()
    assert sem.locked()  # the failed release did not add a permit
    sem.release()
    with pytest.raises(ValueError, match=OVER_RELEASE):
        sem.release()
    assert sem.statistics() == stats(max_permits=1, max_in_use=1, total_acquired=1)
    # still exactly one permit
    await sem.acquire()
    assert sem.locked()
    sem.release()


def test_cancellation_while_waiting_leaves_counts_consistent() -> None:
    async def main() -> tuple[SemaphoreStatistics, SemaphoreStatistics, SemaphoreStatistics]:
        sem = MeteredSemaphore(1)
        await sem.acquire()
        waiter = asyncio.create_task(sem.acquire())
        await asyncio.sleep(2)
        waiting = sem.statistics()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        after_cancel = sem.statistics()
        sem.release()
        assert not sem.locked()
        async with sem:  # the permit is still usable
            pass
        return waiting, after_cancel, sem.statistics()

    waiting, after_cancel, final = vrun(main())
    assert waiting == stats(
        max_permits=1, current_in_use=1, max_in_use=1, tasks_waiting=1, total_acquired=1
    )
    assert after_cancel == stats(
        max_permits=1, current_in_use=1, max_in_use=1, total_acquired=1, total_wait=2.0
    )
    assert final == stats(max_permits=1, max_in_use=1, total_acquired=2, total_wait=2.0)


def test_a_waiter_cancelled_after_being_woken_passes_the_permit_on() -> None:
    async def main() -> tuple[SemaphoreStatistics, SemaphoreStatistics]:
        sem = MeteredSemaphore(1)
        await sem.acquire()
        first = asyncio.create_task(sem.acquire())
        second = asyncio.create_task(sem.acquire())
        await asyncio.sleep(1)
        sem.release()  # wakes `first`...
        first.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await first
        assert await second is True
        held = sem.statistics()
        sem.release()
        return held, sem.statistics()

    held, final = vrun(main())
    assert held == stats(
        max_permits=1, current_in_use=1, max_in_use=1, total_acquired=2, total_wait=2.0
    )
    assert final == stats(max_permits=1, max_in_use=1, total_acquired=2, total_wait=2.0)


async def test_repr_shows_live_state() -> None:
    sem = MeteredSemaphore(2)
    assert repr(sem) == "<MeteredSemaphore permits=2 in_use=0 waiting=0>"
    await sem.acquire()
    await sem.acquire()
    waiter = asyncio.create_task(sem.acquire())
    await settle()
    assert repr(sem) == "<MeteredSemaphore permits=2 in_use=2 waiting=1>"
    sem.release()
    await waiter
    assert repr(sem) == "<MeteredSemaphore permits=2 in_use=2 waiting=0>"
    sem.release()
    sem.release()


# --- MetricsSeries -----------------------------------------------------------------------


def sample(t: float, **changes: Any) -> Sample:
    fields: dict[str, Any] = {
        "t": t,
        "telemetry_depth": 0,
        "storage_depth": 0,
        "senders_blocked": 0,
        "bandwidth_in_use": 0,
        "db_in_use": 0,
        "produced": 0,
        "stored": 0,
        "batches": 0,
        "throughput": 0.0,
        "client_received": (),
        "client_lagged": (),
    }
    fields.update(changes)
    return Sample(**fields)


def test_empty_series() -> None:
    series = MetricsSeries()
    assert len(series) == 0
    assert series.latest() is None
    assert series.column("t") == []
    assert list(series) == []
    assert repr(series) == "<MetricsSeries samples=0 maxlen=4096>"


def test_append_latest_and_iteration_oldest_first() -> None:
    series = MetricsSeries(max_samples=10)
    samples = [sample(float(i), produced=i * 3) for i in range(4)]
    for s in samples:
        series.append(s)
    assert len(series) == 4
    assert series.latest() is samples[-1]
    assert list(series) == samples
    assert repr(series) == "<MetricsSeries samples=4 maxlen=10>"


def test_series_is_bounded_and_drops_the_oldest() -> None:
    series = MetricsSeries(max_samples=3)
    for i in range(7):
        series.append(sample(float(i), stored=10 * i))
    assert len(series) == 3
    assert series.column("t") == [4.0, 5.0, 6.0]
    assert series.column("stored") == [40.0, 50.0, 60.0]
    assert series.latest() == sample(6.0, stored=60)
    assert repr(series) == "<MetricsSeries samples=3 maxlen=3>"


def test_column_returns_floats_of_one_field() -> None:
    series = MetricsSeries()
    series.append(sample(0.25, storage_depth=3, throughput=1.5))
    series.append(sample(0.5, storage_depth=7, throughput=2.0))
    depth = series.column("storage_depth")
    assert depth == [3.0, 7.0]
    assert all(type(v) is float for v in depth)
    assert series.column("throughput") == [1.5, 2.0]


def test_iteration_is_a_snapshot() -> None:
    series = MetricsSeries(max_samples=5)
    series.append(sample(0.0))
    series.append(sample(1.0))
    seen = []
    for s in series:  # appending while iterating must not break the iteration
        seen.append(s.t)
        series.append(sample(10.0 + s.t))
    assert seen == [0.0, 1.0]
    assert series.column("t") == [0.0, 1.0, 10.0, 11.0]


def test_sample_is_frozen() -> None:
    s = sample(1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.t = 2.0  # type: ignore[misc]
