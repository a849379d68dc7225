"""The live dashboard, headless: ipywidgets objects work without a frontend.

Real-loop runs are short (about a second). The buttons are pressed with `Button.click()`,
which calls the same handlers a browser click does. (The figure has tests of its own, in
tests/test_figure.py; the browser tests drive the same dashboard in JupyterLab.)
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
from telemetry_lab.dashboard import Dashboard, DashboardStatistics
from telemetry_lab.figure import DISPLAY_WIDTH, DashboardFigure, Frame

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NOT_STARTED = '<div class="tl-status"><b>Not started.</b> Press Start.</div>'


@pytest.fixture(scope="module", autouse=True)
def _warm_up() -> None:
    """Pay matplotlib's and ipywidgets' one-time import and font loading once per module."""
    import ipywidgets  # noqa: F401

    DashboardFigure(GatewayConfig()).draw(Frame(samples=()))


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
        frames=0, skipped=0, total_render_seconds=0.0, running=False, runs=0
    )
    assert not dash.running
    assert dash.status.value == NOT_STARTED
    assert not dash.start_button.disabled
    assert dash.stop_button.disabled
    assert dash.image.value == b""
    assert dash.gateway is None
    assert dash.report is None
    assert repr(dash) == "<Dashboard running=False runs=0 frames=0 refresh_hz=4>"
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
    assert dash.status.value == NOT_STARTED


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
        assert image.size == dash.figure.canvas.get_width_height()
        assert image.size[0] == 2 * DISPLAY_WIDTH  # rendered for HiDPI screens
    assert dash.image.layout.width == f"{DISPLAY_WIDTH}px"

    assert dash.status.value.startswith('<div class="tl-status"><b>finished</b> (run 1, ')
    numbers = dash.numbers.value
    assert "✅ Zero data loss" in numbers  # the verdict, once the run has ended
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
    capacity = gateway.config.telemetry_capacity
    assert list(plot.telemetry.get_xdata()) == t
    assert list(plot.telemetry.get_ydata()) == [100 * s.telemetry_depth / capacity for s in samples]
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
    assert "<b>finished</b>" in dash.status.value
    assert report.ended_by == "stop"
    # Stopping again returns the same report; a slider change now changes nothing.
    knobs = gateway.knobs
    assert await dash.stop() is report
    dash.sliders["storage_latency"].value = 1.0
    assert gateway.knobs == knobs
    await dash.close()
    assert only_this_task_left()


async def test_start_while_running_stops_that_run_first(tmp_path: Path) -> None:
    """Re-running the `await dashboard.start()` cell never leaves a hidden gateway."""
    dash = Dashboard(short_config(tmp_path, duration=5.0))
    first = await started_mid_run(dash)
    second = await dash.start()
    assert second is not first
    assert first.phase is GatewayPhase.STOPPED
    assert first.report is not None
    assert first.report.ended_by == "stop"
    assert first.report.ok
    assert dash.gateway is second
    await dash.close()
    assert dash.statistics().runs == 2
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


# --- under a person's hands: the buttons, re-runs, interrupts ----------------------------------


async def test_the_stop_button_returns_at_once_and_the_run_ends_with_its_report(
    tmp_path: Path,
) -> None:
    """Found: Stop ran as a task inside the JoinSet that `_finish()` joined, itself
    included: the widget froze at "draining" and `await dashboard.wait()` hung."""
    dash = Dashboard(short_config(tmp_path, duration=30.0), refresh_hz=4)
    gateway = await started_mid_run(dash)
    assert dash.start_button.disabled
    assert not dash.stop_button.disabled
    dash.stop_button.click()  # what a click in the browser runs: synchronous
    assert gateway.phase in (GatewayPhase.RUNNING, GatewayPhase.DRAINING)
    async with asyncio.timeout(gateway.config.shutdown_timeout + 2):
        report = await dash.wait()
    assert report is not None
    assert report.ended_by == "stop"
    assert_clean(report, tmp_path / "t.db")
    assert "<b>finished</b>" in dash.status.value
    assert "✅ Zero data loss" in dash.numbers.value
    assert not dash.start_button.disabled
    assert dash.stop_button.disabled
    dash.stop_button.click()  # a second click after the end does nothing
    await dash.close()
    assert only_this_task_left()


async def test_a_run_started_by_the_button_shows_its_end_without_a_wait(tmp_path: Path) -> None:
    """Found: after Start the widget stayed at "running at 30.0 s" for good and
    `dashboard.report` was None: nobody awaited the end of a button's run."""
    dash = Dashboard(short_config(tmp_path, duration=0.6), refresh_hz=4)
    await dash.start()  # a cell first, as the notebook does (it binds the loop)
    await dash.wait()
    dash.start_button.click()  # the second run comes from the button alone
    assert dash.statistics().runs == 2
    assert dash.running
    for _ in range(200):  # no wait(): only the dashboard's own watcher sees the end
        if not dash.running:
            break
        await asyncio.sleep(0.05)
    assert dash.report is not None
    assert dash.report.ok
    assert dash.gateway is not None
    assert dash.report is dash.gateway.report
    assert "<b>finished</b>" in dash.status.value
    assert "✅ Zero data loss" in dash.numbers.value
    await dash.close()
    assert only_this_task_left()


async def test_a_slow_client_slider_never_fails_the_run(tmp_path: Path) -> None:
    """Found: "client 1 delay" at 0.5 s timed the drain out: "❌ Data was lost" next to
    "Lost 0", and notebook 12's assert failed. A slow client now skips at shutdown."""
    dash = Dashboard(short_config(tmp_path, duration=1.5, shutdown_timeout=1.0), refresh_hz=4)
    await started_mid_run(dash)
    dash.sliders["client_delays"].value = 0.5
    report = await dash.wait()
    assert report is not None
    assert report.ok, report.summary_table()
    assert report.clean_shutdown
    assert report.updates_lagged > 0
    await dash.close()


async def test_a_new_dashboard_stops_the_run_of_the_one_it_replaces(tmp_path: Path) -> None:
    """Found: re-running the notebook's cells left the old gateway running invisibly."""
    old = Dashboard(short_config(tmp_path, duration=30.0))
    gateway = await started_mid_run(old)
    new = Dashboard(short_config(tmp_path, duration=30.0))
    report = await old.wait()
    assert report is not None
    assert report.ended_by == "stop"
    assert report.ok
    assert gateway.phase is GatewayPhase.STOPPED
    assert "Replaced by a newer dashboard" in old.numbers.value
    assert not new.running
    await old.close()
    await new.close()
    assert only_this_task_left()


async def test_interrupting_wait_stops_the_run_gracefully_then_propagates(
    tmp_path: Path,
) -> None:
    """A kernel interrupt cancels the cell awaiting `dashboard.wait()`: the run drains and
    the cancellation goes on (the cell ends; nothing keeps running behind it)."""
    dash = Dashboard(short_config(tmp_path, duration=30.0))
    gateway = await started_mid_run(dash)
    cell = asyncio.create_task(dash.wait())
    await asyncio.sleep(0.1)
    cell.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cell
    assert not dash.running
    assert gateway.report is not None
    assert gateway.report.ended_by == "stop"
    assert gateway.report.ok
    await dash.close()
    assert only_this_task_left()


async def test_interrupting_twice_aborts_the_drain(tmp_path: Path) -> None:
    config = short_config(tmp_path, duration=30.0, storage_latency=1.0, shutdown_timeout=10.0)
    dash = Dashboard(config)
    gateway = await started_mid_run(dash)
    cell = asyncio.create_task(dash.wait())
    await asyncio.sleep(0.3)
    cell.cancel()
    await asyncio.sleep(0.05)  # draining now, a write sleeping its 1 s latency
    cell.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cell
    assert gateway.report is not None
    assert gateway.report.ended_by == "abort"
    assert gateway.report.balanced
    await dash.close()
    assert only_this_task_left()


async def test_a_closed_dashboard_refuses_to_start(tmp_path: Path) -> None:
    dash = Dashboard(short_config(tmp_path))
    await dash.close()
    assert dash.start_button.disabled
    with pytest.raises(RuntimeError, match=r"^this dashboard is closed; build a new Dashboard$"):
        await dash.start()


def test_the_widget_says_when_it_is_disconnected(tmp_path: Path) -> None:
    """JupyterLab marks a widget `jupyter-widgets-disconnected` when its kernel goes away;
    the dashboard's banner is shown only then (tests/browser checks it in a real browser)."""
    dash = Dashboard(short_config(tmp_path))
    banner = dash.widget.children[0].value
    assert ".jupyter-widgets-disconnected .tl-disconnected { display: block; }" in banner
    assert '<div class="tl-disconnected">⚠️ Disconnected: the kernel restarted' in banner


# --- the console panel -----------------------------------------------------------------------


async def test_the_console_panel_shows_the_runs_tasks_and_stops_with_the_dashboard(
    tmp_path: Path,
) -> None:
    dash = Dashboard(short_config(tmp_path, duration=3.0), console=True)
    console = dash.console
    assert console is not None
    assert console.widget in dash.widget.children
    assert not console.running  # it starts with the first run
    await dash.start()
    assert console.running
    await asyncio.sleep(1.3)  # one refresh of the panel, from the console's thread
    html = console._view.html.value if console._view is not None else ""
    assert "device-1" in html
    assert "channel 'telemetry'" in html
    await dash.wait()
    await dash.close()
    assert not console.running
    assert "call_soon" not in vars(asyncio.get_running_loop())
    assert "stopped" in dash.console_note.value
    assert only_this_task_left()


async def test_the_console_panel_says_so_when_another_console_watches_the_loop(
    tmp_path: Path,
) -> None:
    from telemetry_lab.console import Console

    async with Console():
        dash = Dashboard(short_config(tmp_path), console=True)
        await dash.start()
        assert dash.console is not None
        assert not dash.console.running
        assert "another Console" in dash.console_note.value
        await dash.close()
