"""Aggregate readings: running averages, forward to storage, fan out to clients.

The aggregator is the hub of the gateway. For every reading from the telemetry channel it
first validates it (a malformed reading is rejected, counted by reason, and goes nowhere
else), then updates the recent averages (over the last `RECENT` readings, so they follow
the readings instead of freezing at a lifetime mean), broadcasts a `StateUpdate` to the
live clients
(never waiting: a slow client lags instead), publishes the new `SystemState` through a
watch channel, and forwards the reading to storage (waiting when storage is behind: that
wait travels back to the devices as backpressure). When every device has closed its
sender and the channel is drained, it closes its own outputs, so shutdown flows downstream.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

from telemetry_lab.errors import NoReceivers
from telemetry_lab.models import Reading, StateUpdate, SystemState
from telemetry_lab.primitives import BroadcastSender, Receiver, Sender, WatchSender
from telemetry_lab.validation import validate_reading

__all__ = ["RECENT", "Aggregator", "AggregatorStatistics"]

log = logging.getLogger("telemetry_lab.aggregator")

RECENT = 10
"""How many of the latest readings (from any device) the averages are taken over."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AggregatorStatistics:
    """A snapshot of the aggregator."""

    total_received: int
    """Readings taken from the telemetry channel."""
    total_forwarded: int
    """Readings accepted by the storage channel."""
    total_rejected: int
    """Readings refused by validation."""
    rejected_reasons: tuple[tuple[str, int], ...]
    """Rejections counted per reason, sorted by reason."""
    total_updates: int
    """State updates broadcast."""
    total_updates_unheard: int
    """Updates not broadcast because no client was subscribed."""
    current_holding: int
    """Readings taken in but not yet forwarded or rejected (0 or 1)."""
    devices_active: int
    """Devices heard from."""


class Aggregator:
    """The hub: one task that owns the storage sender, the update broadcast and the state.

    It is not a buffer: it holds at most one reading at a time, so the readings in the
    gateway are always in a channel, in the aggregator's hand, or in storage's batch.
    """

    def __init__(
        self,
        *,
        rx: Receiver[Reading],
        storage_tx: Sender[Reading],
        updates_tx: BroadcastSender[StateUpdate],
        state_tx: WatchSender[SystemState],
    ) -> None:
        self._rx = rx
        self._storage_tx = storage_tx
        self._updates_tx = updates_tx
        self._state_tx = state_tx
        self._received = 0
        self._forwarded = 0
        self._rejected = 0
        self._reasons: dict[str, int] = {}
        self._updates = 0
        self._unheard = 0
        self._holding = 0
        self._devices: set[int] = set()
        self._recent: deque[tuple[float, float]] = deque(maxlen=RECENT)
        self._sum_temperature = 0.0  # over the readings in _recent
        self._sum_humidity = 0.0

    def _update_averages(self, reading: Reading) -> None:
        self._devices.add(reading.device_id)
        recent = self._recent
        if len(recent) == RECENT:
            old_t, old_h = recent[0]
            self._sum_temperature -= old_t
            self._sum_humidity -= old_h
        recent.append((reading.temperature, reading.humidity))
        self._sum_temperature += reading.temperature
        self._sum_humidity += reading.humidity

    async def run(self, *, origin: float = 0.0) -> None:
        """Process readings until every device is done, then close the outputs.

        Args:
            origin: the loop time the run started at (updates carry seconds since then).
        """
        loop = asyncio.get_running_loop()
        verbose = log.isEnabledFor(logging.INFO)
        with self._storage_tx, self._updates_tx, self._state_tx:
            async for reading in self._rx:
                self._received += 1
                problem = validate_reading(reading)
                if problem is not None:
                    self._rejected += 1
                    self._reasons[problem] = self._reasons.get(problem, 0) + 1
                    device = getattr(reading, "device_id", "?")
                    seq = getattr(reading, "seq", "?")
                    log.warning("🚫 Rejected reading %r/%r: %s", device, seq, problem)
                    continue
                self._holding = 1
                self._update_averages(reading)
                active = len(self._devices)
                avg_t = self._sum_temperature / len(self._recent)
                avg_h = self._sum_humidity / len(self._recent)
                now = loop.time() - origin
                if verbose:
                    log.info("🔄 Aggregator processed telemetry from device %d", reading.device_id)
                update = StateUpdate(
                    update=self._received,
                    device_id=reading.device_id,
                    devices_active=active,
                    avg_temperature=avg_t,
                    avg_humidity=avg_h,
                    ts=now,
                )
                try:
                    listeners = self._updates_tx.send(update)
                except NoReceivers:
                    self._unheard += 1
                else:
                    self._updates += 1
                    if verbose:
                        log.info("📡 Broadcasted update to %d clients", listeners)
                self._state_tx.send_replace(
                    SystemState(
                        readings=self._received,
                        devices_active=active,
                        avg_temperature=avg_t,
                        avg_humidity=avg_h,
                        updated_at=now,
                    )
                )
                await self._storage_tx.send(reading)
                self._forwarded += 1
                self._holding = 0

    def statistics(self) -> AggregatorStatistics:
        """Return a snapshot of the aggregator."""
        return AggregatorStatistics(
            total_received=self._received,
            total_forwarded=self._forwarded,
            total_rejected=self._rejected,
            rejected_reasons=tuple(sorted(self._reasons.items())),
            total_updates=self._updates,
            total_updates_unheard=self._unheard,
            current_holding=self._holding,
            devices_active=len(self._devices),
        )

    def __repr__(self) -> str:
        return (
            f"<Aggregator received={self._received} forwarded={self._forwarded} "
            f"holding={self._holding}>"
        )
