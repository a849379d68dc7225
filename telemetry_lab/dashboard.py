"""Watch a running gateway live in JupyterLab, and turn its knobs while it runs.

`Dashboard` shows one matplotlib `Figure` (Agg backend, never pyplot) as PNG frames in an
`ipywidgets.Image`, refreshed by an asyncio task a few times a second, with the numbers in
an HTML widget and sliders for the live knobs. It reads only `Gateway.statistics()`
snapshots and the sampled `Gateway.series`, so it works headless too: tests drive it
without a browser and inspect its frames and numbers.

Rendering a figure takes tens of milliseconds of CPU. To keep the event loop responsive,
the dashboard copies a snapshot of the data on the loop and draws the frame in a worker
thread (one at a time), on a figure whose artists are created once and only updated.

    dashboard = Dashboard(GatewayConfig(duration=30))
    display(dashboard.widget)
    await dashboard.start()
    ...                       # turn the sliders, watch the channels fill
    report = await dashboard.stop()

ipywidgets and matplotlib are imported when a dashboard is built, not when the package is.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from telemetry_lab.config import GatewayConfig
from telemetry_lab.gateway import Gateway, GatewayPhase
from telemetry_lab.metrics import Sample
from telemetry_lab.models import Report
from telemetry_lab.primitives import JoinSet

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Dashboard", "DashboardStatistics", "Frame"]

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


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """The data one frame shows, copied on the loop before rendering."""

    samples: tuple[Sample, ...]
    """The gateway's sampled series."""


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


class _Plot:
    """One figure whose static parts are drawn once; a frame redraws only the data lines.

    Every axis has limits known in advance wherever possible: channel depths up to their
    capacities, permits up to the devices, client updates as a percentage of the updates
    sent, time up to `duration`. Only the two rates (readings and batches per second) can
    outgrow their limits; they then grow fourfold and the whole figure is redrawn once.
    Every other frame restores the cached background and draws the data lines over it
    (blitting): an order of magnitude cheaper than a full draw.
    """

    def __init__(self, config: GatewayConfig) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.figure: Figure = Figure(figsize=(9.0, 5.6), dpi=72)
        self.figure.subplots_adjust(
            left=0.06, right=0.93, top=0.94, bottom=0.08, hspace=0.38, wspace=0.24
        )
        self.canvas = FigureCanvasAgg(self.figure)
        (depth, updates), (storage, permits) = self.figure.subplots(2, 2)
        batches_axis = storage.twinx()
        self.axes = (depth, updates, storage, batches_axis, permits)

        def line(ax: Any, **style: Any) -> Any:
            return ax.plot([], [], animated=True, **style)[0]

        depth.set_title("Channel depth (backpressure)", fontsize=10)
        depth.axhline(config.telemetry_capacity, ls=":", color="C0")
        depth.axhline(config.storage_capacity, ls=":", color="C1")
        self.telemetry = line(depth, color="C0", label="devices → aggregator")
        self.storage = line(depth, color="C1", label="aggregator → storage")
        depth.set_ylim(0, max(config.telemetry_capacity, config.storage_capacity) * 1.1)
        updates.set_title("Client updates, % of sent: received (—), lagged (- -)", fontsize=10)
        self.received = [line(updates, color=f"C{i}") for i in range(config.clients)]
        self.lagged = [line(updates, ls="--", color=f"C{i}") for i in range(config.clients)]
        updates.set_ylim(-2, 105)
        storage.set_title("Storage: readings/s (—) and batches/s (- -)", fontsize=10)
        self.throughput = line(storage, color="C2")
        self.batches = line(batches_axis, ls="--", color="C3")
        expected = config.devices / config.device_interval if config.device_interval else 4e3
        storage.set_ylim(0, expected * 1.5)
        batches_axis.set_ylim(0, expected * 1.5 / config.batch_size)
        permits.set_title("Permits in use and blocked senders", fontsize=10)
        self.bandwidth = line(permits, drawstyle="steps-post", color="C0", label="bandwidth")
        self.db = line(permits, drawstyle="steps-post", color="C1", label="db connections")
        self.blocked = line(permits, drawstyle="steps-post", color="C2", label="senders blocked")
        top = max(config.device_bandwidth, config.db_connections, config.devices)
        permits.set_ylim(0, top + 0.5)
        for ax in self.axes:
            ax.set_xlim(0, config.duration * 1.05)
            ax.tick_params(labelsize=8)
            ax.locator_params(nbins=4)
        for ax in (depth, updates, storage, permits):
            ax.set_xlabel("seconds", fontsize=8)
        depth.legend(handles=[self.telemetry, self.storage], loc="upper left", fontsize=8)
        permits.legend(
            handles=[self.bandwidth, self.db, self.blocked], loc="upper left", fontsize=8
        )
        self._data_lines = [
            (depth, self.telemetry),
            (depth, self.storage),
            *((updates, ln) for ln in (*self.received, *self.lagged)),
            (storage, self.throughput),
            (batches_axis, self.batches),
            (permits, self.bandwidth),
            (permits, self.db),
            (permits, self.blocked),
        ]
        self._background: Any = None
        self.full_draws = 0
        self._draw_background()  # now, before any run: frames only blit

    def _draw_background(self) -> None:
        self.canvas.draw()  # type: ignore[no-untyped-call]
        bbox = self.figure.bbox
        self._background = self.canvas.copy_from_bbox(bbox)  # type: ignore[no-untyped-call]
        self.full_draws += 1

    def _grow_limits(self, throughput: list[float], batch_rate: list[float], end: float) -> bool:
        """Widen an axis a value has outgrown; return whether one changed."""
        changed = False
        for ax, values in ((self.axes[2], throughput), (self.axes[3], batch_rate)):
            low, high = ax.get_ylim()
            top = max(values, default=0.0)
            if top > high:
                while top > high:
                    high *= 4
                ax.set_ylim(low, high)
                changed = True
        left, right = self.axes[0].get_xlim()
        if end > right:
            for ax in self.axes:
                ax.set_xlim(left, end * 1.1)
            changed = True
        return changed

    def draw(self, frame: Frame) -> bytes:
        """Update the data lines from `frame` and return the figure as PNG bytes."""
        from PIL import Image

        s = frame.samples
        t = [x.t for x in s]
        self.telemetry.set_data(t, [x.telemetry_depth for x in s])
        self.storage.set_data(t, [x.storage_depth for x in s])
        # Updates sent so far ~ the most any client has accounted for (received + lagged).
        sent = [max(map(sum, zip(x.client_received, x.client_lagged, strict=True)), default=0)
                or 1 for x in s]  # fmt: skip
        for i, (received, lagged) in enumerate(zip(self.received, self.lagged, strict=True)):
            received.set_data(
                t, [100 * x.client_received[i] / n for x, n in zip(s, sent, strict=True)]
            )
            lagged.set_data(t, [100 * x.client_lagged[i] / n for x, n in zip(s, sent, strict=True)])
        batch_rate = [0.0] + [
            (b.batches - a.batches) / (b.t - a.t) if b.t > a.t else 0.0
            for a, b in itertools.pairwise(s)
        ]
        throughput = [x.throughput for x in s]
        self.throughput.set_data(t, throughput)
        self.batches.set_data(t, batch_rate)
        self.bandwidth.set_data(t, [x.bandwidth_in_use for x in s])
        self.db.set_data(t, [x.db_in_use for x in s])
        self.blocked.set_data(t, [x.senders_blocked for x in s])
        if self._grow_limits(throughput, batch_rate, t[-1] if t else 0.0):
            self._draw_background()
        self.canvas.restore_region(self._background)  # type: ignore[no-untyped-call]
        for ax, artist in self._data_lines:
            ax.draw_artist(artist)
        width, height = self.canvas.get_width_height()
        rgba = self.canvas.buffer_rgba()  # type: ignore[no-untyped-call]
        image = Image.frombuffer("RGBA", (width, height), rgba)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()


class Dashboard:
    """A live view and control panel for gateway runs.

    A dashboard is not a logger: it shows the latest state, a few times a second, and keeps
    nothing but the gateway's own bounded series. One gateway runs at a time; each Start
    builds a new `Gateway` from the config and the sliders' current values.

    Args:
        config: the configuration of the runs started from this dashboard.
        refresh_hz: frames per second (2-4 Hz suits a browser; 0.5-10 allowed).
    """

    def __init__(self, config: GatewayConfig | None = None, *, refresh_hz: float = 3.0) -> None:
        if not 0.5 <= refresh_hz <= 10:
            raise ValueError(f"refresh_hz must be in [0.5, 10], got {refresh_hz!r}")
        import ipywidgets as widgets

        self.config = config or GatewayConfig()
        self.refresh_hz = refresh_hz
        self.gateway: Gateway | None = None
        self.report: Report | None = None
        self._plot = _Plot(self.config)
        self._tasks: JoinSet[Any] = JoinSet()
        self._run_task: asyncio.Task[Report] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._finish_lock = asyncio.Lock()
        self._render_lock = asyncio.Lock()  # one frame at a time: one figure, one thread
        self._frames = 0
        self._skipped = 0
        self._render_seconds = 0.0
        self._last_shown: tuple[int, float] = (-1, -1.0)
        self.image = widgets.Image(format="png", layout=widgets.Layout(width="648px"))
        self.numbers = widgets.HTML()
        self.sliders: dict[str, Any] = {}
        for knob, label, low, high, step in SLIDERS:
            value = self._knob_value(knob)
            slider = widgets.FloatSlider(
                value=value, min=low, max=high, step=step, description=label,
                continuous_update=False, style={"description_width": "130px"},
            )  # fmt: skip
            slider.observe(self._on_slider, names="value")
            self.sliders[knob] = slider
        self.start_button = widgets.Button(description="Start", button_style="success")
        self.stop_button = widgets.Button(description="Stop", button_style="danger")
        self.start_button.on_click(lambda _: self._spawn_from_button(self.start()))
        self.stop_button.on_click(lambda _: self._spawn_from_button(self.stop()))
        controls = widgets.VBox(
            [widgets.HBox([self.start_button, self.stop_button]), *self.sliders.values()]
        )
        self.widget = widgets.HBox([self.image, widgets.VBox([self.numbers, controls])])
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
        if gateway is not None and gateway.phase is not GatewayPhase.STOPPED:
            try:
                gateway.adjust(**self._knob_changes())
            except ValueError as exc:
                log.error("Knob refused: %s", exc)

    # --- running -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether a gateway run is in progress."""
        return self._run_task is not None and not self._run_task.done()

    async def start(self) -> Gateway:
        """Start a gateway run with the current knob values, and the live refresh."""
        if self.running:
            raise RuntimeError("a gateway is already running on this dashboard; stop it first")
        self._loop = asyncio.get_running_loop()
        config = self.config.replace(**self._knob_changes())
        self.gateway = gateway = Gateway(config)
        self.report = None
        self._run_task = self._tasks.spawn(gateway.run(), name="dashboard-gateway")
        self._tasks.spawn(self._refresh(gateway), name="dashboard-refresh")
        await asyncio.sleep(0)  # let the run begin: from now on a Stop drains it
        return gateway

    async def wait(self) -> Report:
        """Wait for the current run to finish (its `duration`) and return its report."""
        if self._run_task is None:
            raise RuntimeError("nothing has been started on this dashboard")
        report = await self._run_task
        await self._finish()
        return report

    async def stop(self) -> Report | None:
        """Stop the current run early (it drains gracefully); return its report."""
        if self._run_task is None:
            return self.report
        if self.gateway is not None:
            self.gateway.stop()  # the graceful drain; run() then returns the report
        return await self.wait()

    async def close(self) -> None:
        """Stop everything this dashboard started and wait for it."""
        if self.running:
            await self.stop()
        await self._tasks.shutdown()

    async def _finish(self) -> None:
        """Collect the finished tasks, show the final frame (once, however many wait)."""
        async with self._finish_lock:
            while (task := await self._tasks.join_next()) is not None:
                if task is self._run_task:
                    self.report = task.result()
            await self._render_now(force=True)

    def _spawn_from_button(self, coro: Any) -> None:
        """Run a button's coroutine as a task owned by this dashboard."""

        def spawn() -> None:
            self._tasks.spawn(self._guarded(coro), name="dashboard-button")

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            if self._loop is None:
                coro.close()
                log.error("Press Start from a cell first: `await dashboard.start()`")
                return
            self._loop.call_soon_threadsafe(spawn)
        else:
            spawn()

    async def _guarded(self, coro: Any) -> None:
        try:
            await coro
        except Exception:
            log.exception("Dashboard action failed")

    async def _refresh(self, gateway: Gateway) -> None:
        """Show a new frame every 1/refresh_hz seconds until the run stops."""
        loop = asyncio.get_running_loop()
        period = 1.0 / self.refresh_hz
        next_frame = loop.time()
        while gateway.phase is not GatewayPhase.STOPPED:
            await self._render_now()
            next_frame += period  # a fixed schedule: a slow frame does not slow the rate
            await asyncio.sleep(max(0.0, next_frame - loop.time()))

    async def _render_now(self, *, force: bool = False) -> None:
        gateway = self.gateway
        if gateway is None:
            return
        latest = gateway.series.latest()
        key = (len(gateway.series), latest.t if latest else -1.0)
        self._show_numbers()
        if key == self._last_shown and not force:
            self._skipped += 1
            return
        self._last_shown = key
        frame = Frame(samples=tuple(gateway.series))
        async with self._render_lock:
            started = time.perf_counter()
            png = await asyncio.to_thread(self._plot.draw, frame)  # off the loop
            self._render_seconds += time.perf_counter() - started
        self.image.value = png
        self._frames += 1

    def _show_numbers(self) -> None:
        gateway = self.gateway
        if gateway is None:
            self.numbers.value = "<b>Not started.</b> Press Start."
            return
        s = gateway.statistics()
        storage = s.storage
        stored = storage.total_stored if storage else 0
        dead = storage.total_dead_lettered if storage else 0
        retries = storage.total_retries if storage else 0
        batches = storage.total_batches if storage else 0
        clients = "".join(
            f"<tr><td>client {c.client_id}</td><td>{c.total_received} received, "
            f"{c.total_lagged} lagged</td></tr>"
            for c in s.clients
        )
        self.numbers.value = (
            f"<b>{s.phase.name.lower()}</b> at {s.elapsed:.1f} s"
            "<table>"
            f"<tr><td>produced</td><td>{s.telemetry.total_sent}</td></tr>"
            f"<tr><td>stored</td><td>{stored} in {batches} batches</td></tr>"
            f"<tr><td>rejected</td><td>{s.aggregator.total_rejected}</td></tr>"
            f"<tr><td>dead-lettered</td><td>{dead}</td></tr>"
            f"<tr><td>storage retries</td><td>{retries}</td></tr>"
            f"<tr><td>devices blocked</td><td>{s.telemetry.total_send_wait:.1f} s</td></tr>"
            f"{clients}</table>"
        )

    def statistics(self) -> DashboardStatistics:
        """Return a snapshot of this dashboard."""
        return DashboardStatistics(
            frames=self._frames,
            skipped=self._skipped,
            total_render_seconds=self._render_seconds,
            running=self.running,
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
            f"<Dashboard running={self.running} frames={self._frames} refresh_hz={self.refresh_hz}>"
        )
