"""Turn the signals that end a process into a graceful stop, then an abort.

`docker stop` sends SIGTERM, closing a terminal sends SIGHUP, Ctrl-C sends SIGINT. Their
default actions kill the process at once (SIGINT raises `KeyboardInterrupt` wherever the
main thread happens to be, even inside the event loop), and every reading still buffered
would vanish uncounted. `ShutdownSignals` handles them on the event loop instead
(`loop.add_signal_handler`): the first asks the gateway to drain (`Gateway.stop()`), a
second aborts it (`Gateway.abort()`: every task cancelled at once, running SQLite writes
finish). Either way `run()` then returns its report, and the caller decides the exit.

SIGQUIT (Ctrl-\\) is left alone on purpose: it is the user's way to kill a process that
is stuck, with a core dump for debugging.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from telemetry_lab.gateway import Gateway

__all__ = ["ShutdownSignals"]

log = logging.getLogger("telemetry_lab.signals")


class ShutdownSignals:
    """While active, the first of `signals` stops `gateway` gracefully, a second aborts it.

    Use it around `await gateway.run()`. Outside the main thread (where signal handlers
    cannot be installed) it does nothing.

    Args:
        gateway: the gateway to stop.
        signals: the signals to handle, e.g. `(signal.SIGINT, signal.SIGTERM)`.
    """

    def __init__(self, gateway: Gateway, signals: Iterable[signal.Signals]) -> None:
        self._gateway = gateway
        self._signals = tuple(signals)
        self._installed: list[signal.Signals] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.received: list[signal.Signals] = []
        """The handled signals received so far, in order."""

    @property
    def aborted_by(self) -> signal.Signals | None:
        """The signal that aborted the run (the second one received), or None."""
        return self.received[1] if len(self.received) > 1 else None

    def _on_signal(self, signum: signal.Signals) -> None:
        self.received.append(signum)
        if len(self.received) == 1:
            log.warning("🛑 %s received: draining gracefully (send it again to abort)", signum.name)
            self._gateway.stop()
        elif len(self.received) == 2:
            self._gateway.abort()

    def __enter__(self) -> Self:
        loop = asyncio.get_running_loop()
        self._loop = loop
        for signum in self._signals:
            try:
                loop.add_signal_handler(signum, self._on_signal, signum)
            except (ValueError, RuntimeError, NotImplementedError):
                continue  # not the main thread, or a loop without signal support
            self._installed.append(signum)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._loop is not None
        for signum in self._installed:
            self._loop.remove_signal_handler(signum)
        self._installed.clear()
