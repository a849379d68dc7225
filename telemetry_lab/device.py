"""Simulate one sensor device: a seeded random walk of temperature and humidity.

A device takes a reading every `device_interval` seconds on average (jittered), asks the
bandwidth semaphore for a permit, and sends the reading into the bounded telemetry channel.
When the channel is full the send waits: that wait *is* backpressure, and it is counted.
It stops when the shutdown watch turns True, and closes its sender so the aggregator can
tell when every device is done.

Three live knobs are read here, before every reading: `device_interval` paces it,
`malformed_rate` garbles a reading (the aggregator must reject it) and `device_crash_rate`
makes the device task raise `DeviceCrashed` (its supervisor, `telemetry_lab.supervisor`,
restarts it; the sequence numbers carry on, so no `(device_id, seq)` is ever reused).
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

from telemetry_lab.config import KnobsReader, fixed_knobs
from telemetry_lab.errors import DeviceCrashed
from telemetry_lab.faults import malform
from telemetry_lab.metrics import MeteredSemaphore
from telemetry_lab.models import Reading
from telemetry_lab.primitives import Sender, WatchReceiver, on_changed, on_timeout, select

__all__ = ["Device", "DeviceStatistics"]

log = logging.getLogger("telemetry_lab.device")


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceStatistics:
    """A snapshot of one device."""

    device_id: int
    """1-based device number."""
    total_sent: int
    """Readings accepted into the telemetry channel."""
    total_malformed: int
    """Readings this device garbled on purpose (the `malformed_rate` fault)."""
    next_seq: int
    """Sequence number of the next reading."""
    temperature: float
    """Current temperature of the random walk."""
    humidity: float
    """Current humidity of the random walk."""


class Device:
    """One simulated sensor: owns its random generator, its sequence numbers and its sender.

    A device is not restartable by re-creating it: its sequence numbers continue across
    calls to `run()`, so a supervisor that restarts it never reuses a `(device_id, seq)`.

    Args:
        device_id: the 1-based device number.
        seed: the run's seed (each device derives its own generator from it).
        tx: the telemetry channel's sender, owned (and closed) by the device.
        bandwidth: the semaphore every send holds.
        shutdown: turns True when the device must stop; owned by the device.
        knobs: where the live `device_interval`, `malformed_rate` and `device_crash_rate`
            are read (a gateway's knobs).
        interval, malformed_rate, crash_rate: fixed values instead, for a device run on
            its own (without `knobs`).
    """

    def __init__(
        self,
        device_id: int,
        *,
        seed: int,
        tx: Sender[Reading],
        bandwidth: MeteredSemaphore,
        shutdown: WatchReceiver[bool],
        knobs: KnobsReader | None = None,
        interval: float | None = None,
        malformed_rate: float | None = None,
        crash_rate: float | None = None,
    ) -> None:
        if knobs is None:
            fixed = {
                "device_interval": interval,
                "malformed_rate": malformed_rate,
                "device_crash_rate": crash_rate,
            }
            knobs = fixed_knobs(**{k: v for k, v in fixed.items() if v is not None})
        elif (interval, malformed_rate, crash_rate) != (None, None, None):
            raise TypeError("pass either knobs or fixed interval/malformed_rate/crash_rate")
        self.device_id = device_id
        self._rng = random.Random(f"{seed}:device:{device_id}")
        self._tx = tx
        self._bandwidth = bandwidth
        self._shutdown = shutdown
        self._knobs = knobs
        self._seq = 0
        self._sent = 0
        self._malformed = 0
        self._temperature = 20.0 + self._rng.gauss(0.0, 2.0)
        self._humidity = 55.0 + self._rng.gauss(0.0, 5.0)

    def next_reading(self, now: float) -> Reading:
        """Advance the random walk and return the next reading, stamped `now`."""
        rng = self._rng
        self._temperature = min(60.0, max(-30.0, self._temperature + rng.gauss(0.0, 0.3)))
        self._humidity = min(100.0, max(0.0, self._humidity + rng.gauss(0.0, 1.0)))
        reading = Reading(
            device_id=self.device_id,
            seq=self._seq,
            ts=now,
            temperature=round(self._temperature, 2),
            humidity=round(self._humidity, 2),
        )
        self._seq += 1
        return reading

    async def wait_or_shutdown(self, seconds: float) -> bool:
        """Sleep `seconds` unless shutdown comes first; return True if it did."""
        if self._shutdown.borrow():
            return True
        if seconds == 0:
            await asyncio.sleep(0)  # unthrottled: still let others run between readings
            return False
        winner = await select(on_changed(self._shutdown), on_timeout(seconds), biased=True)
        return winner.index == 0 and bool(winner.value)

    async def run(self, *, origin: float = 0.0) -> None:
        """Send readings until shutdown; the caller closes the handles (see `close`).

        Args:
            origin: the loop time the run started at; readings are stamped with the
                seconds since then.
        """
        loop = asyncio.get_running_loop()
        tx, bandwidth = self._tx, self._bandwidth
        verbose = log.isEnabledFor(logging.INFO)
        rng = self._rng
        while True:
            knobs = self._knobs()  # the latest values: they may be turned while it runs
            if await self.wait_or_shutdown(knobs.device_interval * rng.uniform(0.5, 1.5)):
                return
            if knobs.device_crash_rate and rng.random() < knobs.device_crash_rate:
                raise DeviceCrashed(f"device {self.device_id} crashed (simulated)")
            reading = self.next_reading(loop.time() - origin)
            if knobs.malformed_rate and rng.random() < knobs.malformed_rate:
                reading = malform(reading, rng)
                self._malformed += 1
            async with bandwidth:
                await tx.send(reading)
            self._sent += 1
            if verbose:
                log.info(
                    "📱 Device %d sent: temp=%s°C, humidity=%s%%",
                    self.device_id,
                    _show(reading.temperature),
                    _show(reading.humidity),
                )

    def close(self) -> None:
        """Close the device's sender and shutdown receiver (idempotent)."""
        self._tx.close()
        self._shutdown.close()

    def statistics(self) -> DeviceStatistics:
        """Return a snapshot of this device."""
        return DeviceStatistics(
            device_id=self.device_id,
            total_sent=self._sent,
            total_malformed=self._malformed,
            next_seq=self._seq,
            temperature=self._temperature,
            humidity=self._humidity,
        )

    def __repr__(self) -> str:
        return f"<Device {self.device_id} sent={self._sent} next_seq={self._seq}>"


def _show(value: object) -> str:
    """Format a reading's value for the log, whatever a faulty device put there."""
    return f"{value:.1f}" if isinstance(value, float) else repr(value)
