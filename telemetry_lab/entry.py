"""Run a gateway three ways: awaited, as a task, or blocking from synchronous code.

- `await run_gateway(config)`: the real API (notebooks use top-level `await`).
- `start(config)`: a task for notebooks; cancelling it drains, then the `CancelledError`
  goes on (a cancellation is a cancellation).
- `run(config, virtual_time=False)`: blocking, for scripts and tests; Ctrl-C stops the run
  gracefully and returns the report, a second Ctrl-C aborts and raises KeyboardInterrupt.
  Inside a running loop (Jupyter) it refuses, unless the caller opts in to `nest_asyncio2`.

All three are also importable from `telemetry_lab.gateway` and from `telemetry_lab`.
"""

from __future__ import annotations

import asyncio
import signal

from telemetry_lab.config import GatewayConfig
from telemetry_lab.errors import LoopAlreadyRunning
from telemetry_lab.gateway import Gateway
from telemetry_lab.models import Report
from telemetry_lab.signals import ShutdownSignals
from telemetry_lab.virtual_time import VirtualTimeEventLoop

__all__ = ["run", "run_gateway", "start"]


async def run_gateway(config: GatewayConfig | None = None) -> Report:
    """Run one gateway with `config` (defaults: the seed's 10-second demo); return the report.

    Cancelling it drains, then propagates the cancellation (see `Gateway.run`); to stop
    early and keep the report, use `Gateway(config)` and `stop()`.
    """
    return await Gateway(config).run()


def start(config: GatewayConfig | None = None) -> asyncio.Task[Report]:
    """Start a gateway as a task of the running loop and return the task (for notebooks).

    The caller owns the task: `await` it for the report. Cancelling it drains and then
    raises `CancelledError` (a cancellation is a cancellation); to stop early and keep the
    report, build a `Gateway` and call its `stop()`.
    """
    return asyncio.get_running_loop().create_task(run_gateway(config), name="telemetry-gateway")


async def _run_with_ctrl_c(config: GatewayConfig | None) -> Report:
    gateway = Gateway(config)
    with ShutdownSignals(gateway, (signal.SIGINT,)) as signals:
        report = await gateway.run()
    if signals.aborted_by is not None:
        raise KeyboardInterrupt  # the second Ctrl-C: the run was aborted
    return report


def run(
    config: GatewayConfig | None = None,
    *,
    virtual_time: bool = False,
    allow_nested: bool = False,
) -> Report:
    """Run a gateway to completion from synchronous code and return the report.

    Ctrl-C (in the main thread) stops the run gracefully and still returns the report; a
    second Ctrl-C aborts it (running SQLite writes finish) and raises `KeyboardInterrupt`.

    Args:
        config: the run's configuration (defaults: the seed's demo).
        virtual_time: run on a `VirtualTimeEventLoop`: same events, no waiting; a given
            seed gives the same report and the same database rows.
        allow_nested: inside an already running loop (Jupyter), re-enter it with
            `nest_asyncio2` instead of raising. Prefer `await run_gateway(config)`.

    Raises:
        LoopAlreadyRunning: called inside a running loop without `allow_nested`, or with
            `virtual_time` (a running loop's clock cannot be swapped).
    """
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is None:
        factory = VirtualTimeEventLoop if virtual_time else None
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(_run_with_ctrl_c(config))
    if virtual_time or not allow_nested:
        raise LoopAlreadyRunning(
            "run() blocks, but an event loop is already running here (as in Jupyter): "
            "use `report = await run_gateway(config)` instead"
            + ("" if virtual_time else ", or pass allow_nested=True to use nest_asyncio2")
        )
    import nest_asyncio2  # imported only when a caller opts in

    nest_asyncio2.apply(running)
    return running.run_until_complete(run_gateway(config))
