"""A child program for signal and cancellation tests: the real CLI or gateway, on a slow disk.

Every batch write sleeps `write_seconds` in its worker thread before it inserts, so a test
can send a signal (or cancel) while a write is certainly in flight. Nothing else changes:

    python tests/slow_disk.py cli WRITE_SECONDS [telemetry-lab arguments...]
        runs `telemetry_lab.__main__.main` (signals, exit status, output: all real)
    python tests/slow_disk.py cancel3 WRITE_SECONDS DB
        runs a gateway, cancels its task three times while a write is in flight, and
        prints one JSON object: how `run()` ended, the report, the rows in the file

Used by `tests/test_cli.py`, `tests/test_gateway.py` and `bench/stress_signals.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from telemetry_lab import Gateway, GatewayConfig, storage
from telemetry_lab.__main__ import main as cli_main

WRITING = threading.Event()
"""Set while a (slow) batch write is in its worker thread."""


def slow_disk(write_seconds: float) -> None:
    """Make every batch write take `write_seconds` longer, in its worker thread."""
    real = storage.insert_batch

    def slow(conn: sqlite3.Connection, rows: Sequence[Any]) -> int:
        WRITING.set()
        time.sleep(write_seconds)
        try:
            return real(conn, rows)
        finally:
            WRITING.clear()

    storage.insert_batch = slow  # type: ignore[assignment]


def cancel_three_times(db: Path) -> dict[str, Any]:
    """Run a gateway; cancel it three times while a write is in flight; say what happened."""
    gateway = Gateway(GatewayConfig(db_path=db, duration=60.0, device_interval=0.001))

    async def scenario() -> str:
        task = asyncio.create_task(gateway.run())
        await asyncio.to_thread(WRITING.wait, 30)
        for _ in range(3):
            task.cancel()
            await asyncio.sleep(0.01)
        try:
            await task
        except asyncio.CancelledError:
            return "CancelledError"
        return "returned"

    ended = asyncio.run(scenario())
    report = gateway.report
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT COUNT(*) FROM readings WHERE run_id = ?",
            (report.run_id if report else -1,),
        ).fetchone()[0]
    return {"ended": ended, "report": report.to_dict() if report else None, "rows": rows}


if __name__ == "__main__":
    mode, seconds, *rest = sys.argv[1:]
    slow_disk(float(seconds))
    if mode == "cli":
        sys.exit(cli_main(rest))
    print(json.dumps(cancel_three_times(Path(rest[0]))))
