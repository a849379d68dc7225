"""Check the exercises of notebook 12: turn a knob in code, read backpressure from a snapshot."""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from telemetry_lab.config import GatewayConfig
from telemetry_lab.exercises._check import cancel_new_tasks, exercise, reject
from telemetry_lab.gateway import Gateway, GatewayStatistics
from telemetry_lab.metrics import MetricsSeries
from telemetry_lab.models import Report

__all__ = ["check_exercise_1", "check_exercise_2"]

RunWithKnob = Callable[..., Awaitable[Any]]
Pressure = Callable[[GatewayStatistics], Any]


@exercise(1)
async def check_exercise_1(run_with_knob: RunWithKnob, *, fast: bool = True) -> str:
    """Check `run_with_knob(config, at, **knobs)`: it turns the knob mid-run and waits."""
    db = Path(tempfile.mkdtemp()) / "exercise_1.db"
    duration, at = (1.8, 0.5) if fast else (6.0, 2.0)
    config = GatewayConfig(
        db_path=db, duration=duration, device_interval=0.05, sample_interval=0.05
    )
    before_tasks = asyncio.all_tasks()
    try:
        async with asyncio.timeout(duration + config.shutdown_timeout + 5):
            result = await run_with_knob(config, at, storage_latency=0.2)
    except TimeoutError:
        reject(
            "run_with_knob did not return",
            "await the gateway's task once, after adjust(): `report = await task`",
        )
    if not (isinstance(result, tuple) and len(result) == 2):
        reject(
            f"run_with_knob returned {type(result).__name__}, not a pair (report, series)",
            "return `report, gw.series`",
        )
    report, series = result
    left = await cancel_new_tasks(before_tasks)
    if isinstance(report, asyncio.Task) or not isinstance(report, Report) or left:
        reject(
            "the run was still going when run_with_knob returned: a fire-and-forget task "
            "nobody owns",
            "keep the task from asyncio.create_task(gw.run()) and `await` it before you "
            "return; its result is the report",
        )
    if not isinstance(series, MetricsSeries):
        reject(f"the second value is a {type(series).__name__}", "return `gw.series`")
    samples = [x for x in series if x.t <= duration]  # not the sample after the drain
    before = [x.storage_depth for x in samples if x.t < at]
    after = [x.storage_depth for x in samples if x.t > at]
    if not before:
        reject(
            "the knob turned before the run had begun",
            f"sleep `at` seconds ({at} here) after starting the task, then `gw.adjust(**knobs)`",
        )
    mean_before, mean_after = statistics.mean(before), statistics.mean(after or [0])
    if report.loop_seconds < duration - 0.01:
        reject(
            f"the run stopped after {report.loop_seconds:.1f} s of its {duration:g}",
            "do not cancel or stop the run: let it last its duration",
        )
    if not mean_after > mean_before + 2:
        reject(
            f"the storage channel did not fill after the change (mean depth "
            f"{mean_before:.1f} before, {mean_after:.1f} after): the knob never turned",
            "pass the knobs on: `gw.adjust(**knobs)` (not `adjust(knobs)`), while it runs",
        )
    if not (report.ok and report.balanced):
        reject(
            "the run did not end cleanly: " + "; ".join(report.verdicts()),
            "let the run drain by itself: await its task, do not cancel it",
        )
    return f"storage channel depth {mean_before:.1f} before the change, {mean_after:.1f} after"


def _snapshot(used: int, waiting: int, capacity: int = 50) -> GatewayStatistics:
    """A GatewayStatistics whose telemetry channel holds `used` and has `waiting` senders."""
    base = Gateway(GatewayConfig(db_path=Path(tempfile.mkdtemp()) / "unused.db")).statistics()
    telemetry = dataclasses.replace(
        base.telemetry,
        max_buffer_size=capacity,
        current_buffer_used=used,
        tasks_waiting_send=waiting,
    )
    return dataclasses.replace(base, telemetry=telemetry)


@exercise(2, sync=True)
def check_exercise_2(telemetry_pressure: Pressure) -> str:
    """Check `telemetry_pressure(stats) -> (fraction full, devices blocked)`."""
    for used, waiting, capacity in [(50, 3, 50), (5, 0, 50), (0, 0, 10), (7, 1, 10)]:
        answer = telemetry_pressure(_snapshot(used, waiting, capacity))
        if not (isinstance(answer, tuple) and len(answer) == 2):
            reject(
                f"it returned {answer!r}, not a pair",
                "return two values: `return fraction, blocked`",
            )
        fraction, blocked = answer
        expected = used / capacity
        where = f"for a channel holding {used} of {capacity} with {waiting} senders waiting"
        if fraction == used and used:
            reject(
                f"{where} it gave {fraction!r} as the fraction: that is the count",
                "divide by the capacity: current_buffer_used / max_buffer_size",
            )
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            reject(f"{where} the fraction is {fraction!r}", "a number from 0.0 to 1.0")
        if abs(fraction - 100 * expected) < 1e-9 and used:
            reject(
                f"{where} it gave {fraction!r}: a percentage",
                "a fraction from 0.0 to 1.0, not 0 to 100",
            )
        if abs(fraction - expected) > 1e-9:
            reject(
                f"{where} the fraction should be {expected}, got {fraction!r}",
                "use stats.telemetry: current_buffer_used / max_buffer_size",
            )
        if not isinstance(blocked, bool):
            reject(
                f"{where} 'blocked' is {blocked!r}, not True or False",
                "compare: stats.telemetry.tasks_waiting_send > 0",
            )
        if blocked != (waiting > 0):
            hint = (
                "devices are blocked when senders wait in send(): tasks_waiting_send > 0 "
                "(a full channel is a sign, not the answer)"
            )
            reject(f"{where} 'blocked' should be {waiting > 0}, got {blocked}", hint)
    return "the fraction and the blocked devices are right in four conditions"
