"""`compact_log()`: the gateway's log as a few lines a notebook can show."""

from __future__ import annotations

import io
import logging

import pytest

from telemetry_lab import GatewayConfig, compact_log, run
from telemetry_lab.live_log import CompactLogHandler


def record(message: str, created: float, level: int = logging.INFO) -> logging.LogRecord:
    rec = logging.LogRecord("telemetry_lab.x", level, __file__, 1, message, (), None)
    rec.created = created
    return rec


def test_events_are_counted_into_one_line_per_period() -> None:
    out = io.StringIO()
    handler = CompactLogHandler(every=1.0, stream=out)
    for message, t in [
        ("🚀 Starting Telemetry Gateway", 100.0),
        ("📱 Device 1 sent: temp=20.3°C, humidity=55.7%", 100.1),
        ("🔄 Aggregator processed telemetry from device 1", 100.1),
        ("👤 Client 1 received update: 1 devices active, avg temps: 20.3°C", 100.2),
        ("📱 Device 2 sent: temp=19.0°C, humidity=50.0%", 101.2),  # a period has passed
        ("💾 Writing batch 1 (10 records) to storage", 101.5),
    ]:
        handler.emit(record(message, t))
    handler.emit(record("👤 Client 2 lagged: 3 updates skipped", 101.6, logging.WARNING))
    handler.close()
    assert out.getvalue().splitlines() == [
        "🚀 Starting Telemetry Gateway",
        "    1.2 s  📱 2 sent  🔄 1 processed  👤 1 received  avg 20.3°C",
        "    1.5 s  💾 1 batches",
        "👤 Client 2 lagged: 3 updates skipped",  # warnings come through as they are
    ]


def test_a_whole_run_prints_a_handful_of_lines_on_stdout(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found: notebook 00's gateway cell printed ~330 lines, as a pink stderr block."""
    logger = logging.getLogger("telemetry_lab")
    before = (logger.level, logger.propagate, list(logger.handlers))
    with compact_log() as handler:
        report = run(GatewayConfig(db_path=f"{tmp_path}/t.db"), virtual_time=True)
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == "🚀 Starting Telemetry Gateway"
    assert handler.lines == len(lines) <= 12
    assert any(f"📱 {report.produced} sent" in line for line in lines)
    assert (logger.level, logger.propagate, list(logger.handlers)) == before


def test_every_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"^every must be a positive number of seconds, got 0$"):
        CompactLogHandler(every=0)
