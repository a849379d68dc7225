"""Supervise devices: restart a crashed device after a growing delay, and count restarts.

A device that raises (the `device_crash_rate` fault, or a bug) is restarted after
`RESTART_INITIAL` seconds, doubling per crash up to `RESTART_MAX`, and the delay starts
over once the device has sent again; the restarted device carries on with its sequence
numbers. A device that fails because the pipeline is gone (a `ChannelError`) is not
restarted: that is not its fault, and restarting it cannot help. Shutdown during the delay
ends the supervision at once.
"""

from __future__ import annotations

import logging

from telemetry_lab.device import Device
from telemetry_lab.errors import ChannelError

__all__ = ["RESTART_INITIAL", "RESTART_MAX", "Supervisor"]

log = logging.getLogger("telemetry_lab.supervisor")

RESTART_INITIAL = 0.1
"""First delay before a crashed device is restarted (seconds); doubles per crash."""
RESTART_MAX = 2.0
"""Longest delay before a restart."""


class Supervisor:
    """Keep devices running: restart each one with backoff when it crashes.

    It is not a task owner: the caller spawns one `supervise(device)` per device (the
    gateway, in its `JoinSet`) and joins them; the supervisor only counts the restarts.
    """

    def __init__(self) -> None:
        self.restarts = 0
        """Device restarts so far, over every device supervised."""

    async def supervise(self, device: Device, *, origin: float = 0.0) -> None:
        """Run `device` until shutdown, restarting it with backoff; then close it.

        Args:
            device: the device to run (it is closed when supervision ends, however it ends).
            origin: the loop time the run started at (see `Device.run`).

        Raises:
            ChannelError: the pipeline is gone (the device is not restarted).
        """
        backoff = RESTART_INITIAL
        try:
            while True:
                sent_before = device.statistics().total_sent
                try:
                    await device.run(origin=origin)
                    return
                except ChannelError:
                    raise  # the pipeline is gone: not the device's fault, nothing to restart
                except Exception as exc:
                    self.restarts += 1
                    if device.statistics().total_sent > sent_before:
                        backoff = RESTART_INITIAL  # it had been working: start over
                    log.warning("💥 %s; restarting in %.2fs", exc, backoff)
                    if await device.wait_or_shutdown(backoff):
                        return
                    backoff = min(backoff * 2, RESTART_MAX)
        finally:
            device.close()

    def __repr__(self) -> str:
        return f"<Supervisor restarts={self.restarts}>"
