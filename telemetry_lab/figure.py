"""Draw the dashboard's four panels from a gateway's sampled series, as PNG frames.

Each panel tells one part of the backpressure story, and is built so that it tells it at a
glance:

1. **Channels, % full** (devices → aggregator, aggregator → storage). As a share of each
   channel's capacity both lines use the whole height: the storage channel fills first,
   then the telemetry channel.
2. **Storage, readings per second**: produced by the devices against stored, each smoothed
   over a window long enough to hold several batches, so steady batching reads as a steady
   rate, not a saw-tooth. The axis is set from what the devices can produce (and grows once
   if a knob makes them faster), so a burst does not rescale it.
3. **Clients, updates not yet read**: each client's backlog against the broadcast's capacity;
   a client at the top line is about to lag, and every lag shows as a marker.
4. **Waiting**: device-bandwidth permits in use (a shaded area), database connections in use
   and devices blocked on the full telemetry channel (lines drawn over it), so every line
   stays visible when two are equal.

Legends sit outside the data (below each panel), text is at least 10 px, and frames are
rendered at twice the displayed size for HiDPI screens. The static parts are drawn once;
each frame restores them and draws only the data (blitting), an order of magnitude cheaper
than a full draw. A frame is rendered in a worker thread, never on the event loop.
matplotlib is imported only when a figure is built.
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from telemetry_lab.config import GatewayConfig
from telemetry_lab.metrics import Sample

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["DISPLAY_WIDTH", "MAX_CLIENT_LINES", "DashboardFigure", "Frame"]

DPI = 144
"""Rendering resolution: twice the 72 dots per inch the image is displayed at (HiDPI)."""
SIZE = (10.5, 6.6)
"""Figure size in inches."""
DISPLAY_WIDTH = int(SIZE[0] * 72)
"""Width to show the image at, in CSS pixels (the bitmap has twice as many)."""
FONT = 10.0
"""Smallest text, in points: 10 px on screen at the display width."""
MAX_CLIENT_LINES = 6
"""Above this many clients, the client panel shows the most-behind and the median client."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """The data one frame shows, copied on the loop before rendering."""

    samples: tuple[Sample, ...]
    """The gateway's sampled series."""
    production_rate: float | None = None
    """Readings per second the devices can produce with the current knobs (None: no limit)."""


def smoothed_rate(t: list[float], totals: list[float], window: float) -> list[float]:
    """Return the rate of a cumulative count: its growth over the last `window` seconds."""
    rates: list[float] = []
    first = 0  # the oldest sample inside the window
    for now, total in zip(t, totals, strict=True):
        while t[first] < now - window:
            first += 1
        span = now - t[first]
        rates.append((total - totals[first]) / span if span > 0 else 0.0)
    return rates


class DashboardFigure:
    """One figure whose static parts are drawn once; a frame redraws only the data.

    It is not thread-safe: draw one frame at a time (the dashboard does).

    Args:
        config: the configuration of the runs it shows (capacities, sizes, duration).
    """

    def __init__(self, config: GatewayConfig) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.config = config
        self.figure: Figure = Figure(figsize=SIZE, dpi=DPI)
        self.figure.subplots_adjust(
            left=0.07, right=0.98, top=0.95, bottom=0.13, hspace=0.62, wspace=0.2
        )
        self.canvas = FigureCanvasAgg(self.figure)
        (channels, storage), (clients, waiting) = self.figure.subplots(2, 2)
        self.axes = (channels, storage, clients, waiting)
        self.window = max(1.0, 4 * config.sample_interval)
        """Seconds the rates are smoothed over."""
        self.full_draws = 0
        self._lines: list[tuple[Any, Any]] = []

        def line(ax: Any, label: str, **style: Any) -> Any:
            artist = ax.plot([], [], animated=True, label=label, **style)[0]
            self._lines.append((ax, artist))
            return artist

        channels.set_title("Channels: how full (%)", fontsize=FONT + 1, loc="left")
        self.telemetry = line(
            channels, f"devices → aggregator ({config.telemetry_capacity})", color="C0", lw=2
        )
        self.storage_depth = line(
            channels, f"aggregator → storage ({config.storage_capacity})", color="C1", lw=2
        )
        channels.axhline(100, ls=":", color="0.5", lw=1)
        channels.set_ylim(-3, 108)

        storage.set_title(
            f"Storage: readings per second (over {self.window:g} s)", fontsize=FONT + 1, loc="left"
        )
        self.produced = line(storage, "produced by devices", color="C0", ls="--", lw=1.5)
        self.stored = line(storage, "stored", color="C2", lw=2)
        self._rate_limit = self._rate_ceiling(self._expected_rate(config.device_interval))
        storage.set_ylim(0, self._rate_limit)

        clients.set_title("Clients: updates not yet read", fontsize=FONT + 1, loc="left")
        capacity = config.broadcast_capacity
        clients.axhline(capacity, ls=":", color="0.5", lw=1)
        clients.text(
            0.99, capacity * 0.97, "capacity: lags beyond", fontsize=FONT, color="0.4",
            ha="right", va="top", transform=clients.get_yaxis_transform(),
        )  # fmt: skip
        self.many_clients = config.clients > MAX_CLIENT_LINES
        names = (
            ["most behind", "median"]
            if self.many_clients
            else [f"client {i}" for i in range(1, config.clients + 1)]
        )
        self.client_lines = [
            line(clients, name, color=f"C{i % 10}", lw=1.5) for i, name in enumerate(names)
        ]
        self.lag_marks = line(
            clients, "lagged (updates lost)", color="C3", ls="none", marker="v", ms=4
        )
        clients.set_ylim(-capacity * 0.03, capacity * 1.18)

        waiting.set_title("Waiting and in use", fontsize=FONT + 1, loc="left")
        self.bandwidth = waiting.fill_between(
            [], [], step="post", color="C0", alpha=0.25, animated=True,
            label=f"bandwidth in use (of {config.device_bandwidth})",
        )  # fmt: skip
        self._lines.append((waiting, self.bandwidth))
        self.db = line(
            waiting, f"db connections (of {config.db_connections})",
            color="C1", ls="--", lw=2, drawstyle="steps-post",
        )  # fmt: skip
        self.blocked = line(waiting, "devices blocked", color="C3", lw=1.5, drawstyle="steps-post")
        top = max(config.device_bandwidth, config.db_connections)
        waiting.set_ylim(-0.1, top + 0.6)
        waiting.yaxis.get_major_locator().set_params(integer=True)

        for ax in self.axes:
            ax.set_xlim(0, config.duration * 1.05)
            ax.tick_params(labelsize=FONT)
            ax.set_xlabel("seconds", fontsize=FONT, labelpad=1)
            ax.grid(alpha=0.25)
            handles = [artist for axis, artist in self._lines if axis is ax]
            ax.legend(
                handles=handles, loc="upper left", bbox_to_anchor=(0.0, -0.2),
                ncol=2, fontsize=FONT, frameon=False, borderaxespad=0.0,
                handlelength=1.8, columnspacing=1.0,
            )  # fmt: skip
        self._background: Any = None
        self._draw_background()  # now, before any run: frames only blit

    # --- limits ------------------------------------------------------------------------

    def _expected_rate(self, device_interval: float) -> float | None:
        return self.config.devices / device_interval if device_interval else None

    @staticmethod
    def _rate_ceiling(rate: float | None, room: float = 1.3) -> float:
        """A round y-limit holding `rate` with `room` to spare (1, 1.5, 2, 3, 4, 5, 6, 8...)."""
        target = max((1_000.0 if rate is None else rate) * room, 1.0)  # None: unthrottled
        scale = 1.0
        while True:
            for step in (1, 1.5, 2, 3, 4, 5, 6, 8):
                if step * scale >= target:
                    return step * scale
            scale *= 10

    def _draw_background(self) -> None:
        self.canvas.draw()  # type: ignore[no-untyped-call]
        self._background = self.canvas.copy_from_bbox(self.figure.bbox)  # type: ignore[no-untyped-call]
        self.full_draws += 1

    def _grow_limits(self, rates: list[float], expected: float | None, end: float) -> bool:
        """Widen an axis the data or a knob has outgrown; return whether one changed."""
        changed = False
        wanted = self._rate_ceiling(max(rates, default=0.0), room=1.05)
        if expected is not None:  # what the devices can produce now, with room
            wanted = max(wanted, self._rate_ceiling(expected))
        if wanted > self._rate_limit:
            self._rate_limit = wanted
            self.axes[1].set_ylim(0, wanted)
            changed = True
        left, right = self.axes[0].get_xlim()
        if end > right:
            for ax in self.axes:
                ax.set_xlim(left, end * 1.1)
            changed = True
        return changed

    # --- a frame -----------------------------------------------------------------------

    def draw(self, frame: Frame) -> bytes:
        """Update the data from `frame` and return the figure as PNG bytes."""
        from PIL import Image

        config = self.config
        s = frame.samples
        t = [x.t for x in s]
        self.telemetry.set_data(t, [100 * x.telemetry_depth / config.telemetry_capacity for x in s])
        self.storage_depth.set_data(t, [100 * x.storage_depth / config.storage_capacity for x in s])
        produced = smoothed_rate(t, [float(x.produced) for x in s], self.window)
        stored = smoothed_rate(t, [float(x.stored) for x in s], self.window)
        self.produced.set_data(t, produced)
        self.stored.set_data(t, stored)
        self._draw_clients(s, t)
        self._set_area(t, [float(x.bandwidth_in_use) for x in s])
        self.db.set_data(t, [x.db_in_use for x in s])
        self.blocked.set_data(t, [x.senders_blocked for x in s])
        if self._grow_limits(produced + stored, frame.production_rate, t[-1] if t else 0.0):
            self._draw_background()
        self.canvas.restore_region(self._background)  # type: ignore[no-untyped-call]
        for ax, artist in self._lines:
            ax.draw_artist(artist)
        width, height = self.canvas.get_width_height()
        rgba = self.canvas.buffer_rgba()  # type: ignore[no-untyped-call]
        buffer = io.BytesIO()
        Image.frombuffer("RGBA", (width, height), rgba).save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()

    def _draw_clients(self, s: tuple[Sample, ...], t: list[float]) -> None:
        pending = [x.client_pending for x in s]
        if self.many_clients:
            most = [max(p, default=0) for p in pending]
            median = [sorted(p)[len(p) // 2] if p else 0 for p in pending]
            self.client_lines[0].set_data(t, most)
            self.client_lines[1].set_data(t, median)
        else:
            for i, artist in enumerate(self.client_lines):
                artist.set_data(t, [p[i] if i < len(p) else 0 for p in pending])
        lag_t: list[float] = []
        lag_y: list[float] = []
        top = self.config.broadcast_capacity
        for before, now in itertools.pairwise(s):
            if sum(now.client_lagged) > sum(before.client_lagged):
                lag_t.append(now.t)
                lag_y.append(top * 1.1)
        self.lag_marks.set_data(lag_t, lag_y)

    def _set_area(self, t: list[float], values: list[float]) -> None:
        """Replace the shaded bandwidth area with `values` (a step plot from 0)."""
        from matplotlib.collections import PolyCollection

        area: PolyCollection = self.bandwidth
        if len(t) < 2:
            area.set_verts([])
            return
        points = [(t[0], 0.0)]
        for i in range(len(t) - 1):
            points += [(t[i], values[i]), (t[i + 1], values[i])]
        points += [(t[-1], values[-1]), (t[-1], 0.0)]
        area.set_verts([points])
