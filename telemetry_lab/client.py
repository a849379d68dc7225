"""Follow the gateway live: a client subscribed to the aggregator's state updates.

A client reads the update broadcast as fast as it can. If it falls more than
`broadcast_capacity` updates behind, the oldest are overwritten and it is told so
(`Lagged`): it counts what it missed and carries on from the oldest update still there,
without ever slowing the aggregator or the other clients.

At shutdown a slow client does not hold the drain up: once the gateway has set the drain's
deadline, an update the client could not finish before it is skipped and counted as lagged
(the database has every reading; a live view that is late is worth nothing).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from telemetry_lab.config import KnobsReader, fixed_knobs
from telemetry_lab.errors import ChannelClosed, Lagged
from telemetry_lab.models import ClientSummary, StateUpdate
from telemetry_lab.primitives import BroadcastReceiver, WatchReceiver

__all__ = ["Client", "ClientStatistics"]

log = logging.getLogger("telemetry_lab.client")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientStatistics:
    """A snapshot of one client."""

    client_id: int
    """1-based client number."""
    total_received: int
    """Updates processed."""
    total_lagged: int
    """Updates missed because they were overwritten before this client read them."""
    total_lag_events: int
    """Times this client was told it lagged."""
    total_skipped_at_shutdown: int
    """Updates skipped during the drain because they could not be finished in time."""
    current_pending: int
    """Updates sent but not yet read by this client."""


class Client:
    """One live subscriber; owns (and closes) its broadcast receiver.

    A client is not a durable consumer: what it misses while lagging is gone for it (the
    database has every reading).

    Args:
        client_id: the 1-based client number.
        rx: its broadcast receiver, owned (and closed) by the client.
        delay: seconds spent per update, for a client run on its own (without `knobs`).
        knobs: where its live delay (`client_delays`) is read (a gateway's knobs).
        deadline: the drain's deadline (loop time), once the gateway has set it.
    """

    def __init__(
        self,
        client_id: int,
        rx: BroadcastReceiver[StateUpdate],
        delay: float | None = None,
        knobs: KnobsReader | None = None,
        deadline: WatchReceiver[float | None] | None = None,
    ) -> None:
        if knobs is None:
            knobs = fixed_knobs(client_delays=(0.0,) * (client_id - 1) + (delay or 0.0,))
        elif delay is not None:
            raise TypeError("pass either knobs or a fixed delay")
        self.client_id = client_id
        self._rx = rx
        self._knobs = knobs
        self._deadline = deadline  # loop time by which the drain must be over, once set
        self._received = 0
        self._lagged = 0
        self._lag_events = 0
        self._skipped = 0

    async def run(self) -> None:
        """Process updates until the broadcast closes and is drained."""
        rx = self._rx
        loop = asyncio.get_running_loop()
        verbose = log.isEnabledFor(logging.INFO)
        with rx:
            while True:
                try:
                    update = await rx.recv()
                except Lagged as lag:
                    self._lagged += lag.skipped
                    self._lag_events += 1
                    log.warning(
                        "👤 Client %d lagged: %d updates skipped", self.client_id, lag.skipped
                    )
                    continue
                except ChannelClosed:
                    if self._skipped:
                        log.warning(
                            "👤 Client %d skipped %d updates it could not finish in time",
                            self.client_id,
                            self._skipped,
                        )
                    return
                delay = self._knobs().client_delay(self.client_id)  # the latest value
                deadline = self._deadline.borrow() if self._deadline is not None else None
                if deadline is not None and loop.time() + delay > deadline:
                    self._skipped += 1  # draining, and out of time for this one
                    self._lagged += 1
                    continue
                self._received += 1
                if verbose:
                    log.info(
                        "👤 Client %d received update: %d devices active, avg temps: %.1f°C",
                        self.client_id,
                        update.devices_active,
                        update.avg_temperature,
                    )
                if delay:
                    await asyncio.sleep(delay)  # a slow client: it will lag

    def summary(self) -> ClientSummary:
        """Return what this client saw, for the report."""
        return ClientSummary(client_id=self.client_id, received=self._received, lagged=self._lagged)

    def statistics(self) -> ClientStatistics:
        """Return a snapshot of this client."""
        return ClientStatistics(
            client_id=self.client_id,
            total_received=self._received,
            total_lagged=self._lagged,
            total_lag_events=self._lag_events,
            total_skipped_at_shutdown=self._skipped,
            current_pending=len(self._rx),
        )

    def __repr__(self) -> str:
        return f"<Client {self.client_id} received={self._received} lagged={self._lagged}>"
