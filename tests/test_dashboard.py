"""The live dashboard, headless: ipywidgets objects work without a frontend.

Real-loop runs are short (about a second); the figure's blitting is checked by drawing
synthetic frames directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from telemetry_lab import LIVE_KNOBS, Gateway, GatewayConfig, GatewayPhase, Report
from telemetry_lab.dashboard import Dashboard, DashboardStatistics, Frame, _Plot
from telemetry_lab.metrics import Sample

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NOT_STARTED = "<b>Not started.</b> Press Start."


@pytest.fixture(scope="module", autouse=True)
def _warm_up() -> None:
    """Pay matplotlib's and ipywidgets' one-time import and font loading once per module."""
    import ipywidgets  # noqa: F401

    _Plot(GatewayConfig()).draw(Frame(samples=()))


def short_config(tmp_path: Path, **changes: Any) -> GatewayConfig:
    fields: dict[str, Any] = {
        "db_path": tmp_path / "t.db",
        "duration": 1.0,
        "device_interval": 0.05,
        **changes,
    }
    return GatewayConfig(**fields)


def db_count(path: Path, run_id: int) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        query = "SELECT COUNT(*) FROM readings WHERE run_id = ?"
        return int(conn.execute(query, (run_id,)).fetchone()[0])


def only_this_task_left() -> bool:
    return asyncio.all_tasks() == {asyncio.current_task()}


async def started_mid_run(dash: Dashboard) -> Gateway:
    """Start a run and return once the aggregator has processed a first reading."""
    gateway = await dash.start()
    await gateway.state.changed()
    assert gateway.phase is GatewayPhase.RUNNING
    return gateway


def assert_clean(report: Report, db: Path) -> None:
    assert report.clean_shutdown
    assert report.balanced
    assert (report.lost, report.in_flight) == (0, 0)
    assert report.stored == db_count(db, report.run_id)


# --- construction ----------------------------------------------------------------------------


def test_a_new_dashboard_starts_nothing(tmp_path: Path) -> None:
    dash = Dashboard(short_config(tmp_path), refresh_hz=4)
    assert dash.statistics() == DashboardStatistics(
        frames=0, skipped=0, total_render_seconds=0.0, running=False
    )
    assert not dash.running
    assert dash.numbers.value == NOT_STARTED
    assert dash.image.value == b""
    assert dash.gateway is None
    assert dash.report is None
    assert repr(dash) == "<Dashboard running=False frames=0 refresh_hz=4>"
    assert not (tmp_path / "t.db").exists()  # no gateway ran, no database was opened


def test_sliders_cover_the_live_knobs_and_start_at_the_configs_values(tmp_path: Path) -> None:
    config = short_config(
        tmp_path,
        clients=2,
        storage_latency=0.25,
        storage_failure_rate=0.1,
        malformed_rate=0.05,
        device_crash_rate=0.02,
        client_delays=(0.3, 0.7),
    )
    dash = Dashboard(config)
    assert set(dash.sliders) == set(LIVE_KNOBS)
    values = {knob: slider.value for knob, slider in dash.sliders.items()}
    assert values == {
        "device_interval": 0.05,
        "storage_latency": 0.25,
        "storage_failure_rate": 0.1,
        "malformed_rate": 0.05,
        "device_crash_rate": 0.02,
        "client_delays": 0.3,  # the slider drives client 1
    }


@pytest.mark.parametrize("refresh_hz", [0.0, 0.49, 10.5, -1.0, float("nan")])
def test_refresh_hz_outside_the_range_is_refused(tmp_path: Path, refresh_hz: float) -> None:
    with pytest.raises(
        ValueError, match=rf"^refresh_hz must be in \[0\.5, 10\], got {refresh_hz!r}$"
    ):
        Dashboard(short_config(tmp_path), refresh_hz=refresh_hz)


@pytest.mark.parametrize("refresh_hz", [0.5, 10])
def test_refresh_hz_bounds_are_allowed(tmp_path: Path, refresh_hz: float) -> None:
    assert Dashboard(short_config(tmp_path), refresh_hz=refresh_hz).refresh_hz == refresh_hz


def test_a_slider_change_with_nothing_running_does_not_raise(tmp_path: Path) -> None:
    dash = Dashboard(short_config(tmp_path))
    dash.sliders["storage_latency"].value = 0.5
    dash.sliders["client_delays"].value = 0.2
    assert dash.gateway is None
    assert dash.numbers.value == NOT_STARTED


async def test_nothing_started_wait_stop_close(tmp_path: Path) -> None:
    dash = Dashboard(short_config(tmp_path))
    with pytest.raises(RuntimeError, match=r"^nothing has been started on this dashboard$"):
        await dash.wait()
    assert await dash.stop() is None
    await dash.close()
    assert dash.statistics().frames == 0
    assert only_this_task_left()


# --- a whole run on a real loop --------------------------------------------------------------


async def test_a_run_shows_frames_and_the_final_numbers(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    dash = Dashboard(short_config(tmp_path), refresh_hz=4)
    gateway = await dash.start()
    assert dash.gateway is gateway
    assert dash.running
    report = await dash.wait()
    assert dash.report is report
    assert_clean(report, db)
    assert report.produced > 0

    stats = dash.statistics()
    assert stats.frames >= 2
    assert stats.total_render_seconds > 0
    assert not stats.running

    png = bytes(dash.image.value)  # the widget holds a memoryview
    assert png.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        assert image.size == dash.figure.canvas.get_width_height() == (648, 403)

    numbers = dash.numbers.value
    assert numbers.startswith("<b>stopped</b> at ")
    assert f"<tr><td>produced</td><td>{report.produced}</td></tr>" in numbers
    assert f"<tr><td>stored</td><td>{report.stored} in {report.batches} batches</td></tr>" in (
        numbers
    )
    assert f"<tr><td>rejected</td><td>{report.rejected}</td></tr>" in numbers
    for summary in report.client_summaries:
        assert (
            f"<tr><td>client {summary.client_id}</td><td>{summary.received} received, "
            f"{summary.lagged} lagged</td></tr>"
        ) in numbers

    # The last frame shows exactly the gateway's series, final sample included.
    samples = list(gateway.series)
    plot = dash._plot
    t = [s.t for s in samples]
    assert list(plot.telemetry.get_xdata()) == t
    assert list(plot.telemetry.get_ydata()) == [s.telemetry_depth for s in samples]
    assert list(plot.storage.get_ydata()) == [s.storage_depth for s in samples]
    assert list(plot.throughput.get_ydata()) == [s.throughput for s in samples]
    assert list(plot.bandwidth.get_ydata()) == [s.bandwidth_in_use for s in samples]
    assert list(plot.db.get_ydata()) == [s.db_in_use for s in samples]
    assert list(plot.blocked.get_ydata()) == [s.senders_blocked for s in samples]
    assert samples[-1].produced == report.produced
    assert samples[-1].stored == report.stored

    await dash.close()
    assert only_this_task_left()


async def test_rendering_happens_off_the_loop(tmp_path: Path) -> None:
    dash = Dashboard(short_config(tmp_path, duration=0.5), refresh_hz=4)
    plot = dash._plot
    draw = plot.draw
    threads: list[int] = []

    def recording_draw(frame: Frame) -> bytes:
        threads.append(threading.get_ident())
        return draw(frame)

    plot.draw = recording_draw  # type: ignore[method-assign]
    await dash.start()
    await dash.wait()
    await dash.close()
    assert len(threads) == dash.statistics().frames >= 2
    assert threading.get_ident() not in threads


# --- stopping, starting, sliders -------------------------------------------------------------


async def test_stop_mid_run_returns_a_clean_report(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    dash = Dashboard(short_config(tmp_path, duration=5.0), refresh_hz=4)
    gateway = await started_mid_run(dash)
    report = await dash.stop()
    assert report is not None
    assert dash.report is report
    assert_clean(report, db)
    assert report.loop_seconds < 5.0  # stopped early
    assert gateway.phase is GatewayPhase.STOPPED
    assert not dash.statistics().running
    assert dash.numbers.value.startswith("<b>stopped</b>")
    # Stopping again returns the same report; a slider change now changes nothing.
    knobs = gateway.knobs
    assert await dash.stop() is report
    dash.sliders["storage_latency"].value = 1.0
    assert gateway.knobs == knobs
    await dash.close()
    assert only_this_task_left()


async def test_starting_twice_while_running_raises(tmp_path: Path) -> None:
    dash = Dashboard(short_config(tmp_path, duration=5.0))
    gateway = await started_mid_run(dash)
    with pytest.raises(
        RuntimeError, match=r"^a gateway is already running on this dashboard; stop it first$"
    ):
        await dash.start()
    assert dash.gateway is gateway
    await dash.close()
    assert not dash.running
    assert dash.report is not None
    assert dash.report.clean_shutdown
    assert only_this_task_left()


async def test_a_new_run_after_a_finished_one(tmp_path: Path) -> None:
    dash = Dashboard(short_config(tmp_path, duration=5.0))
    first = await started_mid_run(dash)
    await dash.stop()
    second = await started_mid_run(dash)
    assert second is not first
    assert dash.report is None
    report = await dash.stop()
    assert report is not None
    assert_clean(report, tmp_path / "t.db")
    await dash.close()
    assert only_this_task_left()


async def test_moving_a_slider_during_a_run_adjusts_the_gateway(tmp_path: Path) -> None:
    config = short_config(tmp_path, duration=5.0, clients=3, client_delays=(0.0, 0.02, 0.01))
    dash = Dashboard(config)
    gateway = await started_mid_run(dash)
    dash.sliders["storage_latency"].value = 0.5
    assert gateway.knobs.storage_latency == 0.5
    dash.sliders["client_delays"].value = 0.03
    assert gateway.knobs.client_delays == (0.03, 0.02, 0.01)  # only client 1's delay moved
    dash.sliders["malformed_rate"].value = 0.25
    assert gateway.knobs.malformed_rate == 0.25
    assert gateway.knobs.device_interval == 0.05
    assert gateway.knobs.storage_failure_rate == 0.0
    assert gateway.knobs.device_crash_rate == 0.0
    report = await dash.stop()
    assert report is not None
    assert report.balanced
    await dash.close()
    assert only_this_task_left()


async def test_the_next_run_starts_with_the_sliders_values(tmp_path: Path) -> None:
    dash = Dashboard(short_config(tmp_path, duration=5.0, clients=2, client_delays=(0.0, 0.02)))
    dash.sliders["storage_latency"].value = 0.1
    dash.sliders["client_delays"].value = 0.01
    gateway = await started_mid_run(dash)
    assert gateway.config.storage_latency == 0.1
    assert gateway.config.client_delays == (0.01, 0.02)
    assert gateway.knobs.storage_latency == 0.1
    assert dash.config.storage_latency == 0.0  # the dashboard's own config is not changed
    await dash.close()
    assert only_this_task_left()


async def test_a_slider_moved_right_after_start_is_not_lost(tmp_path: Path) -> None:
    """`await dash.start()` then a slider move in the same cell: the gateway task has not
    run yet (phase NEW), and the change must still reach the run."""
    dash = Dashboard(short_config(tmp_path, duration=5.0))
    gateway = await dash.start()
    try:
        dash.sliders["storage_latency"].value = 1.0
        await gateway.state.changed()
        assert gateway.knobs.storage_latency == 1.0
    finally:
        await dash.close()


async def test_stop_right_after_start_returns_a_clean_report(tmp_path: Path) -> None:
    """`await dash.start(); await dash.stop()`: the gateway task has not started (or is
    opening the database) when it is cancelled; stop() must still drain and report."""
    dash = Dashboard(short_config(tmp_path, duration=5.0))
    await dash.start()
    try:
        report = await dash.stop()
    except asyncio.CancelledError:
        pytest.fail("stop() right after start() raised CancelledError instead of reporting")
    finally:
        await dash.close()
    assert report is not None
    assert report.clean_shutdown
    assert only_this_task_left()


@pytest.mark.async_timeout(3)
async def test_stop_while_another_task_waits_returns_the_report_to_both(tmp_path: Path) -> None:
    """A cell awaits `dash.wait()` while the Stop button is pressed: both get the report."""
    dash = Dashboard(short_config(tmp_path, duration=5.0))
    await started_mid_run(dash)
    waiter = asyncio.create_task(dash.wait())
    await asyncio.sleep(0)
    try:
        stopped = await dash.stop()
        waited = await waiter
    finally:
        waiter.cancel()
        await dash.close()
    assert stopped is waited
    assert stopped is not None
    assert stopped.clean_shutdown


@pytest.mark.async_timeout(3)
async def test_stop_pressed_again_while_draining_keeps_the_drain_graceful(
    tmp_path: Path,
) -> None:
    """Stop pressed twice (or Stop, then close()): the second request must not abort the
    graceful drain the first one started."""
    dash = Dashboard(short_config(tmp_path, duration=5.0))
    gateway = await started_mid_run(dash)
    first = asyncio.create_task(dash.stop())
    for _ in range(1000):
        if gateway.phase is not GatewayPhase.RUNNING:
            break
        await asyncio.sleep(0)
    assert gateway.phase is GatewayPhase.DRAINING
    second = asyncio.create_task(dash.stop())
    results = await asyncio.gather(first, second, return_exceptions=True)
    await dash.close()
    assert [type(r).__name__ for r in results] == ["Report", "Report"]
    assert dash.report is not None
    assert dash.report.clean_shutdown
    assert only_this_task_left()


# --- the figure: blitting --------------------------------------------------------------------


def sample(t: float, clients: int = 2, **changes: Any) -> Sample:
    fields: dict[str, Any] = {
        "t": t,
        "telemetry_depth": 3,
        "storage_depth": 1,
        "senders_blocked": 0,
        "bandwidth_in_use": 1,
        "db_in_use": 1,
        "produced": int(t * 10),
        "stored": int(t * 10),
        "batches": 0,
        "throughput": 2.0,
        "client_received": (int(t * 10),) * clients,
        "client_lagged": (0,) * clients,
        **changes,
    }
    return Sample(**fields)


def plot_config() -> GatewayConfig:
    return GatewayConfig(clients=2, duration=10.0)


def pixels(png: bytes) -> bytes:
    with Image.open(io.BytesIO(png)) as image:
        return image.convert("RGBA").tobytes()


def test_frames_inside_the_limits_are_blitted() -> None:
    plot = _Plot(plot_config())
    samples: list[Sample] = []
    for i in range(40):
        samples.append(sample(i * 0.25))
        png = plot.draw(Frame(samples=tuple(samples)))
        assert png.startswith(PNG_SIGNATURE)
        assert plot.full_draws == 1  # only the first frame (or the construction) drew it all
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == plot.canvas.get_width_height() == (648, 403)


def test_an_empty_frame_draws() -> None:
    plot = _Plot(plot_config())
    assert plot.draw(Frame(samples=())).startswith(PNG_SIGNATURE)
    assert plot.full_draws == 1


def test_a_value_beyond_a_y_limit_forces_one_full_draw() -> None:
    plot = _Plot(plot_config())
    plot.draw(Frame(samples=(sample(0.0),)))
    assert plot.full_draws == 1
    rates = plot.throughput.axes
    top = rates.get_ylim()[1]
    high = (sample(0.0), sample(0.5, throughput=top * 1.5))
    plot.draw(Frame(samples=high))
    assert plot.full_draws == 2
    assert rates.get_ylim()[1] >= top * 1.5
    plot.draw(Frame(samples=(*high, sample(1.0))))
    plot.draw(Frame(samples=(*high, sample(1.0), sample(1.5))))
    assert plot.full_draws == 2  # the limit grew once; later frames blit again


def test_time_beyond_the_x_limit_forces_one_full_draw() -> None:
    plot = _Plot(plot_config())
    plot.draw(Frame(samples=(sample(0.0),)))
    right = plot.telemetry.axes.get_xlim()[1]
    late = (sample(0.0), sample(right + 1.0))
    plot.draw(Frame(samples=late))
    assert plot.full_draws == 2
    assert plot.telemetry.axes.get_xlim()[1] > right + 1.0
    plot.draw(Frame(samples=(*late, sample(right + 1.1))))
    assert plot.full_draws == 2


def test_a_blitted_frame_equals_the_same_frame_on_a_fresh_figure() -> None:
    """Restoring the background erases the previous frame's lines: nothing stale remains."""
    first = Frame(samples=(sample(0.0), sample(0.5, telemetry_depth=40, senders_blocked=2)))
    second = Frame(samples=(sample(0.0), sample(0.5), sample(1.0, storage_depth=8)))
    reused, fresh = _Plot(plot_config()), _Plot(plot_config())
    reused.draw(first)
    blitted = reused.draw(second)
    assert reused.full_draws == 1
    assert pixels(blitted) == pixels(fresh.draw(second))
    assert pixels(blitted) != pixels(fresh.draw(first))


# --- imports ---------------------------------------------------------------------------------


def test_importing_the_package_does_not_import_ipywidgets_or_matplotlib() -> None:
    code = (
        "import sys\n"
        "import telemetry_lab\n"
        "print('ipywidgets' in sys.modules, 'matplotlib' in sys.modules)\n"
        "import telemetry_lab.dashboard\n"
        "print('ipywidgets' in sys.modules, 'matplotlib' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout == "False False\nFalse False\n"
