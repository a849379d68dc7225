"""`python -m telemetry_lab` (for now the primitives tour) runs and accounts for every reading."""

from __future__ import annotations

import pytest

from telemetry_lab.__main__ import main, tour
from telemetry_lab.primitives import BroadcastStatistics, ChannelStatistics


async def test_tour_delivers_every_reading_and_the_slow_client_accounts_for_its_lag() -> None:
    results = await tour(devices=3, readings=5)
    chan = results["channel"]
    assert isinstance(chan, ChannelStatistics)
    assert (chan.total_sent, chan.total_received, chan.current_buffer_used) == (15, 15, 0)
    assert chan.total_blocked_sends > 0  # capacity 5 < 15 readings: senders felt backpressure
    assert results["readings counted"] == 15
    assert results["fast client (received, lagged)"] == (15, 0)
    slow_received, slow_lagged = results["slow client (received, lagged)"]  # type: ignore[misc]
    assert slow_lagged > 0
    assert slow_received + slow_lagged == 15
    bcast = results["broadcast"]
    assert isinstance(bcast, BroadcastStatistics)
    assert (bcast.total_sent, bcast.total_lagged, bcast.current_receivers) == (15, slow_lagged, 0)


def test_cli_runs_quietly_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quiet", "--devices", "2", "--readings", "2"]) == 0
    out = capsys.readouterr().out
    assert "Final statistics" in out
    assert "readings counted: 4" in out


def test_cli_rejects_bad_arguments_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--devices", "0"])
    assert info.value.code == 2
    assert "--devices and --readings must be >= 1" in capsys.readouterr().err
