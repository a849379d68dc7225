"""Sample a gateway's vital signs: turn its snapshots into the `MetricsSeries` time series.

The gateway calls `Sampler.sample` with a `GatewayStatistics` every `sample_interval`
(and once more when it stops); the sampler reads nothing else, adds the throughput since
the previous sample, and appends the `Sample` to its series, which the dashboard plots.
"""

from __future__ import annotations

from telemetry_lab.lifecycle import GatewayStatistics
from telemetry_lab.metrics import MetricsSeries, Sample

__all__ = ["Sampler"]


class Sampler:
    """Record one `Sample` per call into `series`; not a timer (the caller says when)."""

    def __init__(self, series: MetricsSeries) -> None:
        self.series = series
        self._last: tuple[float, int] = (0.0, 0)  # (t, stored) of the previous sample

    def sample(self, stats: GatewayStatistics) -> Sample:
        """Append the sample of `stats` (taken `stats.elapsed` seconds in) and return it."""
        stored = stats.storage.total_stored if stats.storage else 0
        batches = stats.storage.total_batches if stats.storage else 0
        t = stats.elapsed
        last_t, last_stored = self._last
        throughput = (stored - last_stored) / (t - last_t) if t > last_t else 0.0
        self._last = (t, stored)
        telemetry = stats.telemetry
        clients = stats.clients
        sample = Sample(
            t=t,
            telemetry_depth=telemetry.current_buffer_used,
            storage_depth=stats.storage_channel.current_buffer_used,
            senders_blocked=telemetry.tasks_waiting_send,
            bandwidth_in_use=stats.bandwidth.current_in_use,
            db_in_use=stats.db_pool.current_in_use if stats.db_pool else 0,
            produced=telemetry.total_sent,
            stored=stored,
            batches=batches,
            throughput=throughput,
            client_received=tuple(c.total_received for c in clients),
            client_lagged=tuple(c.total_lagged for c in clients),
            client_pending=tuple(c.current_pending for c in clients),
        )
        self.series.append(sample)
        return sample

    def __repr__(self) -> str:
        return f"<Sampler samples={len(self.series)}>"
