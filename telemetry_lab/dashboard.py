"""Watch a running gateway live in JupyterLab, and turn its knobs while it runs.

`Dashboard` shows a `DashboardFigure` (telemetry_lab.figure) as PNG frames in an
`ipywidgets.Image`, with a status line, Start/Stop buttons, the numbers and a slider per live
knob. It reads only `Gateway.statistics()` snapshots and the sampled `Gateway.series`, so it
works headless too: tests drive it without a browser and inspect its frames and numbers.

    dashboard = Dashboard(GatewayConfig(duration=30))
    display(dashboard.widget)
    await dashboard.start()
    ...                       # turn the sliders, watch the channels fill
    report = await dashboard.wait()   # or: await dashboard.stop(), or the Stop button

How it behaves under a person's hands:
- Each run has an owner: one watcher task per run (in the dashboard's `JoinSet`) refreshes
  the frames, waits for the run's end however it ends, shows the final frame and the
  verdict, and keeps the report (`dashboard.report`). Start from the button or from a cell:
  the end is shown either way.
- Stop is synchronous (`Gateway.stop()`): the button never waits for anything, so it
  cannot deadlock the kernel; `await dashboard.stop()` also waits for the report.
- Interrupting the kernel during `await dashboard.wait()` stops the run gracefully (a
  second interrupt aborts it), then lets the interruption through.
- Re-running cells never leaves a hidden gateway: `start()` while a run is in progress
  stops that run first, and a new `Dashboard` stops the runs of the ones it replaces.
- Buttons are enabled only when they can act; a refused slider value is shown, not raised.
- When the kernel restarts, JupyterLab marks the widget disconnected; the dashboard then
  shows a banner saying so, over the last frame it drew.

ipywidgets and matplotlib are imported when a dashboard is built, not when the package is.
"""

from __future__ import annotations

import asyncio
import html
import logging
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from telemetry_lab.config import GatewayConfig
from telemetry_lab.console import Console
from telemetry_lab.gateway import Gateway, GatewayPhase
from telemetry_lab.models import Report
from telemetry_lab.primitives import JoinSet

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from telemetry_lab.figure import DashboardFigure

__all__ = ["SLIDERS", "Dashboard", "DashboardStatistics"]

log = logging.getLogger("telemetry_lab.dashboard")

SLIDERS: tuple[tuple[str, str, float, float, float], ...] = (
    # (knob, label, min, max, step)
    ("device_interval", "device interval s", 0.0, 3.0, 0.05),
    ("storage_latency", "storage latency s", 0.0, 2.0, 0.05),
    ("client_delays", "client 1 delay s", 0.0, 1.0, 0.01),
    ("storage_failure_rate", "write failure rate", 0.0, 1.0, 0.05),
    ("malformed_rate", "malformed rate", 0.0, 1.0, 0.05),
    ("device_crash_rate", "device crash rate", 0.0, 0.5, 0.01),
)
"""The sliders: every live knob (client_delays drives the first client's delay)."""

STYLE = """<style>
.jupyter-widgets-disconnected .tl-disconnected { display: block; }
.tl-disconnected { display: none; padding: 6px 10px; margin: 4px 0; border-radius: 4px;
  background: #fff3cd; color: #664d03; border: 1px solid #ffe69c; font-weight: 600; }
.tl-status { font-size: 14px; margin: 2px 0; }
.tl-numbers table { border-collapse: collapse; font-size: 13px; }
.tl-numbers td { padding: 1px 10px 1px 0; }
.tl-verdict { margin-top: 4px; font-size: 13px; }
</style>"""
DISCONNECTED = (
    '<div class="tl-disconnected">⚠️ Disconnected: the kernel restarted or stopped. This '
    "is the last frame it sent; run the notebook's cells again for a new dashboard.</div>"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DashboardStatistics:
    """A snapshot of one dashboard."""

    frames: int
    """Frames rendered and shown."""
    skipped: int
    """Refreshes skipped because nothing had changed."""
    total_render_seconds: float
    """Wall seconds spent rendering frames (in a worker thread)."""
    running: bool
    """Whether a gateway run is in progress."""
    runs: int
    """Runs started on this dashboard."""


class Dashboard:
    """A live view and control panel for gateway runs.

    A dashboard is not a logger: it shows the latest state, a few times a second, and keeps
    nothing but the gateway's own bounded series. One gateway runs at a time; each Start
    builds a new `Gateway` from the config and the sliders' current values.

    Args:
        config: the configuration of the runs started from this dashboard.
        refresh_hz: frames per second (2-4 Hz suits a browser; 0.5-10 allowed).
        console: add a panel with the asyncio console (`telemetry_lab.console`): every
            task of the kernel's loop, what it waits on, and warnings. It starts with the
            first run and stops when the dashboard is closed or replaced.
    """

    _live: ClassVar[weakref.WeakSet[Dashboard]] = weakref.WeakSet()

    def __init__(
        self,
        config: GatewayConfig | None = None,
        *,
        refresh_hz: float = 3.0,
        console: bool = False,
    ) -> None:
        if not 0.5 <= refresh_hz <= 10:
            raise ValueError(f"refresh_hz must be in [0.5, 10], got {refresh_hz!r}")
        import ipywidgets as widgets

        from telemetry_lab.figure import DISPLAY_WIDTH, DashboardFigure

        self.config = config or GatewayConfig()
        self.refresh_hz = refresh_hz
        self.gateway: Gateway | None = None
        self.report: Report | None = None
        self._plot: DashboardFigure = DashboardFigure(self.config)
        self._tasks: JoinSet[Any] = JoinSet(name="dashboard")
        self._watcher: asyncio.Task[None] | None = None
        self._watching = False  # from a run's start until its watcher has shown its end
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None  # built outside a loop: bound at the first start()
        self._render_lock = asyncio.Lock()  # one frame at a time: one figure, one thread
        self._frames = 0
        self._skipped = 0
        self._runs = 0
        self._render_seconds = 0.0
        self._last_shown: tuple[int, float] = (-1, -1.0)
        self._message = ""
        self._closed = False
        self.image = widgets.Image(format="png", layout=widgets.Layout(width=f"{DISPLAY_WIDTH}px"))
        self.status = widgets.HTML()
        self.numbers = widgets.HTML()
        self.sliders: dict[str, Any] = {}
        for knob, label, low, high, step in SLIDERS:
            slider = widgets.FloatSlider(
                value=self._knob_value(knob), min=low, max=high, step=step, description=label,
                continuous_update=False, style={"description_width": "130px"},
                layout=widgets.Layout(width="380px"),
            )  # fmt: skip
            slider.observe(self._on_slider, names="value")
            self.sliders[knob] = slider
        self.start_button = widgets.Button(description="Start", button_style="success")
        self.stop_button = widgets.Button(description="Stop", button_style="danger")
        self.start_button.on_click(self._on_start_click)
        self.stop_button.on_click(self._on_stop_click)
        banner = widgets.HTML(STYLE + DISCONNECTED)
        controls = widgets.VBox([*self.sliders.values()])
        self.console: Console | None = Console() if console else None
        """The console of the panel (None without `console=True`)."""
        self.console_note = widgets.HTML()
        panel = [self.console_note, self.console.widget] if self.console is not None else []
        self.widget = widgets.VBox(
            [
                banner,
                widgets.HBox([self.start_button, self.stop_button, self.status]),
                self.image,
                widgets.HBox([self.numbers, controls]),
                *panel,
            ]
        )
        for older in list(Dashboard._live):  # re-running the cell: no hidden gateway left
            older._replaced()
        Dashboard._live.add(self)
        self._buttons()
        self._show_numbers()

    # --- knobs ---------------------------------------------------------------------------

    def _knob_value(self, knob: str) -> float:
        if knob == "client_delays":
            return self.config.client_delay(1) if self.config.clients else 0.0
        return float(getattr(self.config, knob))

    def _knob_changes(self) -> dict[str, object]:
        changes: dict[str, object] = {}
        for knob, slider in self.sliders.items():
            if knob == "client_delays":
                if self.config.clients:
                    rest = self.config.client_delays[1:]
                    changes[knob] = (float(slider.value), *rest)
            else:
                changes[knob] = float(slider.value)
        return changes

    def _on_slider(self, change: dict[str, Any]) -> None:
        gateway = self.gateway
        if gateway is None or gateway.phase is GatewayPhase.STOPPED:
            return  # the next Start uses the sliders' values
        try:
            gateway.adjust(**self._knob_changes())
        except (ValueError, RuntimeError) as exc:
            self._message = f"Knob refused: {exc}"
            log.warning("%s", self._message)
        else:
            self._message = ""
        self._show_numbers()

    # --- running -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether a gateway run is in progress (its watcher has not finished)."""
        return self._watcher is not None and not self._watcher.done()

    def _in_loop(self, action: Any) -> None:
        """Run `action` on the dashboard's loop: now if we are on it, else soon, safely."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None and (self._loop is None or running is self._loop):
            self._loop = running
            action()
        elif self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(action)
        else:
            self._message = "Run `await dashboard.start()` in a cell first."
            self._show_numbers()

    def _on_start_click(self, _: object) -> None:
        self._in_loop(lambda: None if self.running or self._closed else self._begin())

    def _on_stop_click(self, _: object) -> None:
        gateway = self.gateway
        if gateway is not None:
            gateway.stop()  # synchronous and thread-safe: a click never waits
            self._show_numbers()

    def _begin(self) -> Gateway:
        """Build a gateway from the sliders, start it and its watcher; return it."""
        self._loop = asyncio.get_running_loop()
        self._start_console()
        config = self.config.replace(**self._knob_changes())
        self.gateway = gateway = Gateway(config)
        self.report = None
        self._message = ""
        self._runs += 1
        self._last_shown = (-1, -1.0)
        self._watching = True
        run = self._tasks.spawn(gateway.run(), name="dashboard-gateway")
        self._watcher = self._tasks.spawn(self._watch(gateway, run), name="dashboard-watch")
        self._buttons()
        self._show_numbers()
        return gateway

    async def start(self) -> Gateway:
        """Start a gateway run with the sliders' current values, and its live refresh.

        If a run is in progress (a re-run cell, say), it is stopped and drained first.

        Raises:
            RuntimeError: the dashboard was closed.
        """
        if self._closed:
            raise RuntimeError("this dashboard is closed; build a new Dashboard")
        if self.running:
            log.warning("🛑 A run is in progress on this dashboard: stopping it first")
            await self.stop()
        gateway = self._begin()
        await asyncio.sleep(0)  # let the run begin
        return gateway

    async def wait(self) -> Report | None:
        """Wait for the current run to end (its `duration`, or Stop) and return its report.

        If the waiting task is cancelled (a kernel interrupt), the run is stopped gracefully
        and waited for (a second cancellation aborts it), then the cancellation goes on.

        Raises:
            RuntimeError: nothing was started on this dashboard.
        """
        watcher = self._watcher
        if watcher is None:
            raise RuntimeError("nothing has been started on this dashboard")
        cancelled: asyncio.CancelledError | None = None
        while not watcher.done():
            try:
                await asyncio.wait([watcher])
            except asyncio.CancelledError as exc:
                gateway = self.gateway
                if gateway is not None:
                    if cancelled is None:
                        log.warning("🛑 Interrupted: stopping the run gracefully")
                        gateway.stop()
                    else:
                        gateway.abort()
                cancelled = cancelled or exc
        if cancelled is not None:
            report = self.report
            done = f" ({report.verdicts()[0]})" if report is not None else ""
            print(f"Interrupted: the run was stopped and drained{done}; this cell ends here.")
            raise cancelled
        return self.report

    async def stop(self) -> Report | None:
        """Stop the current run early (it drains gracefully); return its report."""
        if self.gateway is not None:
            self.gateway.stop()
        if self._watcher is None:
            return self.report
        return await self.wait()

    async def close(self) -> None:
        """Stop everything this dashboard started and wait for it (idempotent)."""
        if self.gateway is not None:
            self.gateway.stop()
        if self.running:
            await self.wait()
        await self._tasks.shutdown()
        self._stop_console()
        self._closed = True
        Dashboard._live.discard(self)
        self._buttons()
        self._show_numbers()

    def _start_console(self) -> None:
        console = self.console
        if console is None or console.running:
            return
        try:
            console.start()
        except RuntimeError as exc:  # another console already watches this loop
            self.console_note.value = f"<b>asyncio console</b>: not started: {exc}"
        else:
            self.console_note.value = (
                "<b>asyncio console</b>: every task of this kernel's event loop "
                "(refreshed every second, even while the loop is blocked)"
            )

    def _stop_console(self) -> None:
        if self.console is not None and self.console.running:
            self.console.stop()
            self.console_note.value = "<b>asyncio console</b>: stopped (the last table stays)"

    def _replaced(self) -> None:
        """A newer dashboard takes over: stop this one's run (its watcher finishes it)."""
        self._stop_console()
        if self.gateway is not None and self.running:
            self.gateway.stop()
            self._message = "Replaced by a newer dashboard: this run was stopped."
            self._show_numbers()

    async def _watch(self, gateway: Gateway, run: asyncio.Task[Report]) -> None:
        """Refresh frames until the run ends, then show its last frame and its verdict."""
        loop = asyncio.get_running_loop()
        period = 1.0 / self.refresh_hz
        next_frame = loop.time()
        try:
            while not run.done():
                await self._render()
                next_frame += period  # a fixed schedule: a slow frame does not slow the rate
                await asyncio.wait([run], timeout=max(0.0, next_frame - loop.time()))
            if run.cancelled():
                self._message = "The run was cancelled."
            elif (exc := run.exception()) is not None:
                self._message = f"The run failed: {type(exc).__name__}: {exc}"
                log.error("Dashboard run failed", exc_info=exc)
            else:
                self.report = run.result()
            self.report = self.report or gateway.report
            await self._render(force=True)
        finally:
            self._watching = False
            self._buttons(running=False)
            self._show_numbers()

    async def _render(self, *, force: bool = False) -> None:
        from telemetry_lab.figure import Frame

        gateway = self.gateway
        if gateway is None:
            return
        self._show_numbers()
        latest = gateway.series.latest()
        key = (len(gateway.series), latest.t if latest else -1.0)
        if key == self._last_shown and not force:
            self._skipped += 1
            return
        self._last_shown = key
        interval = gateway.knobs.device_interval
        rate = gateway.config.devices / interval if interval else None
        frame = Frame(samples=tuple(gateway.series), production_rate=rate)
        async with self._render_lock:
            started = time.perf_counter()
            png = await asyncio.to_thread(self._plot.draw, frame)  # off the loop
            self._render_seconds += time.perf_counter() - started
        self.image.value = png
        self._frames += 1

    # --- what the widget shows -----------------------------------------------------------------

    def _buttons(self, *, running: bool | None = None) -> None:
        live = self.running if running is None else running
        self.start_button.disabled = live or self._closed
        self.stop_button.disabled = not live

    def _show_numbers(self) -> None:
        gateway = self.gateway
        message = (
            f'<div class="tl-verdict">{html.escape(self._message)}</div>' if self._message else ""
        )
        if self._closed:
            self.status.value = '<div class="tl-status"><b>Closed.</b></div>'
        if gateway is None:
            if not self._closed:
                self.status.value = '<div class="tl-status"><b>Not started.</b> Press Start.</div>'
            self.numbers.value = f'<div class="tl-numbers">{message}</div>'
            return
        s = gateway.statistics()
        storage = s.storage
        stored = storage.total_stored if storage else 0
        batches = storage.total_batches if storage else 0
        run_id = f"run {gateway.run_id}, " if gateway.run_id is not None else ""
        phase = {
            GatewayPhase.NEW: "starting",
            GatewayPhase.RUNNING: "running",
            GatewayPhase.DRAINING: "draining",
            GatewayPhase.STOPPED: "finished",
        }[s.phase]
        if s.phase is GatewayPhase.STOPPED and self._watching:
            phase = "finishing"  # the watcher is drawing the last frame
        if not self._closed:
            verdict = ""
            if self.report is not None and s.phase is GatewayPhase.STOPPED:
                verdict = f" · {html.escape(self.report.verdicts()[0])}"
            self.status.value = (
                f'<div class="tl-status"><b>{phase}</b> ({run_id}{s.elapsed:.1f} s){verdict}</div>'
            )
        rows = [
            ("produced", f"{s.telemetry.total_sent}"),
            ("stored", f"{stored} in {batches} batches"),
            ("rejected", f"{s.aggregator.total_rejected}"),
            ("dead-lettered", f"{storage.total_dead_lettered if storage else 0}"),
            ("storage retries", f"{storage.total_retries if storage else 0}"),
            ("devices blocked", f"{s.telemetry.total_send_wait:.1f} s"),
            *(
                (f"client {c.client_id}", f"{c.total_received} received, {c.total_lagged} lagged")
                for c in s.clients[:8]
            ),
        ]
        table = "".join(f"<tr><td>{name}</td><td>{value}</td></tr>" for name, value in rows)
        verdict = ""
        if self.report is not None:
            lines = "<br>".join(html.escape(line) for line in self.report.verdicts())
            verdict = f'<div class="tl-verdict">{lines}</div>'
        self.numbers.value = (
            f'<div class="tl-numbers"><table>{table}</table>{verdict}{message}</div>'
        )

    def statistics(self) -> DashboardStatistics:
        """Return a snapshot of this dashboard."""
        return DashboardStatistics(
            frames=self._frames,
            skipped=self._skipped,
            total_render_seconds=self._render_seconds,
            running=self.running,
            runs=self._runs,
        )

    @property
    def figure(self) -> Figure:
        """The matplotlib figure the frames are rendered from."""
        return self._plot.figure

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)  # type: ignore[no-untyped-call]

    def __repr__(self) -> str:
        return (
            f"<Dashboard running={self.running} runs={self._runs} frames={self._frames} "
            f"refresh_hz={self.refresh_hz}>"
        )
