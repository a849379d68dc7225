"""Decide how long to wait before retrying a failed batch write: backoff with full jitter.

The delay before retry number n is uniform in `[0, min(max_interval, initial * 2**(n-1))]`
(AWS's "full jitter", which spreads out writers that failed together), and no retry starts
once `max_elapsed` seconds have passed since the batch's first attempt.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from telemetry_lab.config import GatewayConfig

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by a total time budget per batch."""

    initial: float
    """Cap of the first delay."""
    max_interval: float
    """Largest cap of any delay."""
    max_elapsed: float
    """Seconds after the first attempt past which no retry is started."""

    @classmethod
    def from_config(cls, config: GatewayConfig) -> RetryPolicy:
        """Return the policy of `config`'s `retry_*` fields."""
        return cls(
            initial=config.retry_initial,
            max_interval=config.retry_max_interval,
            max_elapsed=config.retry_max_elapsed,
        )

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Return the delay before retry number `attempt` (1-based): uniform in [0, cap]."""
        doublings = min(attempt - 1, 64)  # past that, the cap is max_interval anyway
        cap = min(self.max_interval, self.initial * 2.0**doublings)
        return rng.uniform(0.0, cap)
