"""Show the gateway's log in a notebook as a few compact lines instead of hundreds.

The gateway logs every event in the seed's style, one line per reading, per update and per
client ("📱 Device 3 sent: ...", "👤 Client 1 received update: ..."): about 330 lines for the
10-second demo, which a notebook shows as one long error-coloured block (logging writes to
stderr). `compact_log()` counts those events instead and prints one line per `every`
seconds, to stdout (ordinary output), with the latest values as a sample:

      1.0 s  📱 7 sent  🔄 7 processed  📡 7 broadcast  👤 28 received  avg 20.3°C

Everything else (start, knobs, shutdown, warnings, errors) is printed as it comes, in order.

    with compact_log():
        report = await run_gateway(config)
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["CompactLogHandler", "compact_log"]

COUNTED = {
    "📱": "sent",
    "🔄": "processed",
    "📡": "broadcast",
    "👤": "received",
    "💾": "batches",
}
"""The per-event lines that are counted, by their leading emoji, and what a count is called."""

_AVG = re.compile(r"avg temps: (-?\d+\.\d)°C")


class CompactLogHandler(logging.Handler):
    """A logging handler that counts per-event lines and writes one summary line per period.

    Args:
        every: seconds (of the records' own clock) between two summary lines.
        stream: where to write (default: standard output).
    """

    def __init__(self, every: float = 1.0, stream: TextIO | None = None) -> None:
        super().__init__(logging.INFO)
        if not every > 0:
            raise ValueError(f"every must be a positive number of seconds, got {every!r}")
        self.every = every
        self.stream = stream if stream is not None else sys.stdout
        self._counts: dict[str, int] = {}
        self._average: str | None = None
        self._started: float | None = None
        self._last_flush = 0.0
        self._last_record = 0.0
        self.lines = 0
        """Lines written so far."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if self._started is None:
                self._started = self._last_flush = record.created
            emoji = message[:1]
            if record.levelno < logging.WARNING and emoji in COUNTED:
                self._last_record = record.created
                self._counts[emoji] = self._counts.get(emoji, 0) + 1
                if average := _AVG.search(message):
                    self._average = average.group(1)
                if record.created - self._last_flush >= self.every:
                    self.flush()
                return
            self.flush()
            self._write(message)
        except Exception:  # a logging handler must never raise into the code that logs
            self.handleError(record)

    def flush(self) -> None:
        """Write the summary line for the events counted since the last one, if any."""
        if not self._counts:
            return
        assert self._started is not None
        parts = [f"{emoji} {self._counts[emoji]} {COUNTED[emoji]}" for emoji in COUNTED
                 if emoji in self._counts]  # fmt: skip
        if self._average is not None:
            parts.append(f"avg {self._average}°C")
        self._write(f"{self._last_record - self._started:7.1f} s  " + "  ".join(parts))
        self._counts.clear()
        self._average = None
        self._last_flush = self._last_record

    def close(self) -> None:
        self.flush()
        super().close()

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()
        self.lines += 1


@contextmanager
def compact_log(every: float = 1.0, stream: TextIO | None = None) -> Iterator[CompactLogHandler]:
    """Show the `telemetry_lab` log compactly while the block runs (see the module docs).

    The logger is put back as it was afterwards (level, handlers, propagation), so a
    `logging.basicConfig()` elsewhere does not print every line a second time meanwhile.
    """
    handler = CompactLogHandler(every, stream)
    logger = logging.getLogger("telemetry_lab")
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.level, logger.propagate = saved
        handler.close()
