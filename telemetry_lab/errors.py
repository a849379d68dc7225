"""Name every way a telemetry_lab operation can fail.

The exception tree::

    TelemetryLabError        base of everything raised on purpose here
    └── ChannelError         a channel operation could not complete
        ├── ChannelClosed    the channel (or this handle) is closed; `.value`: unsent value
        ├── ChannelEmpty     a non-blocking receive found nothing to take
        ├── ChannelFull      a non-blocking send found no free slot; `.value`: unsent value
        ├── Lagged           a broadcast receiver fell behind; `.skipped` values overwritten
        └── NoReceivers      a send found nobody listening; `.value`: unsent value
    FutureCancelled          the task an `on_done()` branch watched was cancelled; `.future`
    LoopAlreadyRunning       (also a RuntimeError) a blocking call inside a running loop
    StorageError             a batch could not be written
    UnusableDatabase         (also a ValueError) the file at db_path cannot be used; it was
                             left unchanged and nothing was started
    └── TransientStorageError  a write failed but may succeed if retried; `.inserted` rows
                               were committed before the failure was reported
    DeviceCrashed            a (simulated) device failure; its supervisor restarts it

Errors are named by what happened, not by who noticed. A send that fails always hands the
value back on the exception, so nothing a caller owned is lost by an error.
"""

from __future__ import annotations

__all__ = [
    "ChannelClosed",
    "ChannelEmpty",
    "ChannelError",
    "ChannelFull",
    "DeviceCrashed",
    "FutureCancelled",
    "Lagged",
    "LoopAlreadyRunning",
    "NoReceivers",
    "StorageError",
    "TelemetryLabError",
    "TransientStorageError",
    "UnusableDatabase",
]


class TelemetryLabError(Exception):
    """Base class of every error that telemetry_lab raises on purpose."""


class ChannelError(TelemetryLabError):
    """A channel operation could not complete."""


class ChannelClosed(ChannelError):
    """The channel, or the handle used, is closed.

    Raised by a send when the receiving side is gone or the sending handle was closed: the
    value was not enqueued and is available as `.value`. Raised by a receive once the channel
    is closed and nothing is left to read (`.value` is then None).
    """

    def __init__(self, message: str = "channel closed", *, value: object = None) -> None:
        super().__init__(message)
        self.value = value


class ChannelEmpty(ChannelError):
    """A non-blocking receive found no value, and the channel is still open."""

    def __init__(self, message: str = "channel empty") -> None:
        super().__init__(message)


class ChannelFull(ChannelError):
    """A non-blocking send found no free slot; the unsent value is `.value`."""

    def __init__(self, message: str = "channel full", *, value: object = None) -> None:
        super().__init__(message)
        self.value = value


class Lagged(ChannelError):
    """A broadcast receiver fell behind and `.skipped` unread values were overwritten.

    The receiver stays subscribed: its next receive returns the oldest value still retained.
    """

    def __init__(self, skipped: int) -> None:
        super().__init__(f"receiver lagged behind; {skipped} values were skipped")
        self.skipped = skipped


class NoReceivers(ChannelError):
    """A send found no receiver; the value was not stored and is `.value`."""

    def __init__(self, message: str = "no receivers", *, value: object = None) -> None:
        super().__init__(message)
        self.value = value


class FutureCancelled(TelemetryLabError):
    """The task or future that an `on_done()` branch of `select` watched was cancelled.

    `select` raises this instead of the future's `CancelledError`: re-raising that would make
    the selecting task look cancelled, although nobody cancelled it. `.future` is the
    cancelled future.
    """

    def __init__(self, future: object) -> None:
        super().__init__(f"the future watched by on_done() was cancelled: {future!r}")
        self.future = future


class LoopAlreadyRunning(TelemetryLabError, RuntimeError):
    """A blocking entry point (`run`) was called while an event loop is running.

    In Jupyter a loop is always running: `await` the async API instead.
    """


class StorageError(TelemetryLabError):
    """A batch of readings could not be written to the database."""


class TransientStorageError(StorageError):
    """A write failed in a way that may succeed if retried.

    `.inserted` counts rows that *were* committed before the failure was reported (a lost
    acknowledgement): the retry must be idempotent, and the ledger must count them.
    """

    def __init__(self, reason: str, *, inserted: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.inserted = inserted


class DeviceCrashed(TelemetryLabError):
    """A device task failed (a simulated crash); its supervisor restarts it."""


class UnusableDatabase(TelemetryLabError, ValueError):
    """The file at `db_path` cannot be used: not SQLite, another application's, unreadable.

    Raised before anything starts; the file is left unchanged. The message names the path
    and the reason.
    """
