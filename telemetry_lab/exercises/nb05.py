"""Check the exercises of notebook 05: a worker that never misses a wake-up, an ordered drain."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import Any

from telemetry_lab.exercises._check import exercise, reject, surface
from telemetry_lab.primitives import Notify, Receiver, Sender, channel

__all__ = ["check_exercise_1", "check_exercise_2"]

JobWorker = Callable[[Notify, collections.deque[str], Callable[[str], Awaitable[None]]], Any]
TwoStage = Callable[[Receiver[int], Sender[int]], Awaitable[None]]


NEVER_READ = (
    "inbox was never read: nothing came out",
    "`inbox.is_closed` is True from the start, yet 30 values are buffered: 'closed' is not "
    "'drained'. Read until the channel ends, with `async for x in inbox`",
)


async def _finish(task: asyncio.Task[Any]) -> None:
    """Cancel `task` (the learner's worker runs forever) and wait until it has ended."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


@exercise(1)
async def check_exercise_1(job_worker: JobWorker) -> str:
    """Check `job_worker(notify, inbox, process)`: every job handled, in order, none missed."""
    notify, inbox = Notify(), collections.deque[str]()
    handled: list[str] = []
    sent: list[str] = []
    caught_up = asyncio.Event()  # set while every job sent so far is handled

    def send(job: str) -> None:
        sent.append(job)
        caught_up.clear()
        inbox.append(job)
        notify.notify_one()

    async def process(job: str) -> None:
        await asyncio.sleep(0.001)  # busy...
        if job == "burst-1-0":
            send("sent-while-busy")  # ...and a notification arrives meanwhile
        handled.append(job)
        if len(handled) == len(sent):
            caught_up.set()

    worker = asyncio.ensure_future(job_worker(notify, inbox, process))
    try:
        for burst in range(4):
            for j in range(3):  # a burst: 3 jobs and 3 notify_one() calls at once
                send(f"burst-{burst}-{j}")
            await asyncio.sleep(0.002 if burst % 2 else 0)
        try:
            async with asyncio.timeout(1.0):
                await caught_up.wait()
        except TimeoutError:
            surface(worker)
            if worker.done():
                reject(
                    "your worker returned (or failed) instead of waiting for more jobs",
                    "loop forever: `while True:` handle the inbox, then `await notify.notified()`",
                )
            missing = [j for j in sent if j not in handled]
            reject(
                f"jobs sent but never handled: {missing}",
                "one notify_one() can stand for several jobs (a stored permit): after each "
                "wake-up, handle *everything* in the inbox, not just one job",
            )
        for _ in range(5):
            await asyncio.sleep(0)
        if handled != sent:
            reject(
                f"jobs handled out of order or twice: {handled}",
                "take jobs with `inbox.popleft()`, oldest first, each exactly once",
            )
        if worker.done():
            reject(
                "your worker stopped after the last job",
                "it should keep waiting on `notify` for more work",
            )
        if notify.statistics().tasks_waiting != 1:
            reject(
                "with an empty inbox your worker is not waiting on the Notify",
                "when the inbox is empty, `await notify.notified()` (do not poll with sleep)",
            )
    finally:
        await _finish(worker)
    return f"{len(handled)} jobs handled in order, including the one sent while busy"


@exercise(2)
async def check_exercise_2(two_stage: TwoStage) -> str:
    """Check `two_stage(inbox, outbox)`: every value through both stages, in order."""
    values = list(range(30))
    inbox_tx, inbox_rx = channel[int](len(values))
    outbox_tx, outbox_rx = channel[int](4)
    for v in values:
        inbox_tx.try_send(v)
    inbox_tx.close()  # shutdown: no more input, but everything is still buffered
    pipeline = asyncio.ensure_future(two_stage(inbox_rx, outbox_tx))
    received: list[int] = []
    try:
        async with asyncio.timeout(2.0):
            async for y in outbox_rx:  # ends only when outbox is closed
                received.append(y)  # noqa: PERF401 (kept as it comes, for the message)
            await pipeline
    except TimeoutError:
        surface(pipeline)
        if len(inbox_rx) == len(values):
            reject(*NEVER_READ)
        reject(
            f"not finished after 2 s, {len(received)} values came out",
            "each stage must close its output when its input ends: wrap stage 1 in "
            "`with mid_tx:` and stage 2 in `with outbox:`",
        )
    finally:
        if not pipeline.done():
            await _finish(pipeline)
    if len(inbox_rx) == len(values):
        reject(*NEVER_READ)
    if received != [2 * v + 1 for v in values]:
        reject(
            f"values lost or reordered: {received}",
            "stage 1 sends x * 2, stage 2 sends y + 1; a drain must not drop what is buffered",
        )
    if len(inbox_rx):
        reject("inbox was not drained", "stage 1 reads until `async for` ends")
    return "30 values, both stages drained in order, outbox closed"
