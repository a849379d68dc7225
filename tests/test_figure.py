"""The dashboard's figure: every picture tells its lesson at a glance, and frames blit."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from telemetry_lab import GatewayConfig
from telemetry_lab.figure import (
    DISPLAY_WIDTH,
    MAX_CLIENT_LINES,
    DashboardFigure,
    Frame,
    smoothed_rate,
)
from telemetry_lab.metrics import Sample

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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
        "client_pending": (0,) * clients,
        **changes,
    }
    return Sample(**fields)


def config(**changes: Any) -> GatewayConfig:
    return GatewayConfig(**{"clients": 2, "duration": 10.0, "device_interval": 0.5, **changes})


def pixels(png: bytes) -> bytes:
    with Image.open(io.BytesIO(png)) as image:
        return image.convert("RGBA").tobytes()


@pytest.fixture(scope="module")
def figure() -> DashboardFigure:
    return DashboardFigure(config())


# --- what a person sees ----------------------------------------------------------------------


def test_frames_are_rendered_at_twice_the_displayed_size(figure: DashboardFigure) -> None:
    """Found: a 648-px bitmap, blurry on HiDPI screens."""
    png = figure.draw(Frame(samples=(sample(0.0),)))
    with Image.open(io.BytesIO(png)) as image:
        assert image.size[0] == 2 * DISPLAY_WIDTH
        assert image.size == figure.canvas.get_width_height()


def test_all_text_is_at_least_10_px(figure: DashboardFigure) -> None:
    """Found: 8-px tick labels. At the display width one point is one CSS pixel."""
    figure.canvas.draw()
    sizes = [
        text.get_fontsize()
        for ax in figure.axes
        for text in [
            ax.title, ax._left_title, ax.xaxis.label, *ax.get_xticklabels(),
            *ax.get_yticklabels(), *ax.get_legend().get_texts(), *ax.texts,
        ]
        if text.get_text()
    ]  # fmt: skip
    assert sizes
    assert min(sizes) >= 10


def test_legends_sit_outside_the_data(figure: DashboardFigure) -> None:
    """Found: the data lines were drawn over the channel-depth legend."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    for ax in figure.axes:
        legend = ax.get_legend().get_window_extent(renderer)
        plot_area = ax.get_window_extent(renderer)
        assert legend.y1 < plot_area.y0, ax.get_title(loc="left")


def test_every_line_of_the_waiting_panel_stays_visible_when_values_are_equal() -> None:
    """Found: "bandwidth" was always hidden under "senders blocked"."""
    fig = DashboardFigure(config())
    both = tuple(sample(t / 4, bandwidth_in_use=3, senders_blocked=3) for t in range(8))
    with_both = pixels(fig.draw(Frame(samples=both)))
    only_blocked = tuple(sample(t / 4, bandwidth_in_use=0, senders_blocked=3) for t in range(8))
    assert pixels(fig.draw(Frame(samples=only_blocked))) != with_both  # the area shows


def test_the_channel_panel_shows_each_channel_as_a_share_of_its_capacity() -> None:
    fig = DashboardFigure(config(telemetry_capacity=50, storage_capacity=10))
    fig.draw(Frame(samples=(sample(0.0, telemetry_depth=50, storage_depth=10),)))
    assert list(fig.telemetry.get_ydata()) == [100.0]
    assert list(fig.storage_depth.get_ydata()) == [100.0]  # both reach the top line


def test_rates_are_smoothed_over_a_window_that_holds_several_batches() -> None:
    """Found: 100 readings/s written in batches of 10 every 0.1 s, sampled every 0.25 s,
    looked like an 80-120 saw-tooth. Over a 1-s window it is a flat 100."""
    t = [i * 0.25 for i in range(41)]
    stored = [(int(x * 100) // 10) * 10 for x in t]  # whole batches of 10 only
    instant = smoothed_rate(t, [float(v) for v in stored], 0.25)
    smooth = smoothed_rate(t, [float(v) for v in stored], 1.0)
    assert max(instant[1:]) - min(instant[1:]) >= 40  # the saw-tooth
    assert all(abs(r - 100) <= 10 for r in smooth[4:])  # steady


def test_the_rate_axis_is_set_by_the_devices_and_does_not_jump_with_a_burst() -> None:
    """Found: the y-axis grew four times after one burst."""
    fig = DashboardFigure(config(devices=7, device_interval=0.05))  # about 140 readings/s
    top = fig.axes[1].get_ylim()[1]
    assert 140 < top <= 200
    burst = (sample(0.0, stored=0), sample(1.0, stored=150), sample(2.0, stored=300))
    fig.draw(Frame(samples=burst, production_rate=140.0))
    assert fig.axes[1].get_ylim()[1] == top  # 150/s still fits
    assert fig.full_draws == 1


def test_a_faster_knob_grows_the_rate_axis_once() -> None:
    fig = DashboardFigure(config(devices=7, device_interval=1.5))
    fig.draw(Frame(samples=(sample(0.0),), production_rate=7 / 1.5))
    fig.draw(Frame(samples=(sample(0.0), sample(0.5)), production_rate=7 / 0.01))
    assert fig.axes[1].get_ylim()[1] >= 700
    assert fig.full_draws == 2
    fig.draw(Frame(samples=(sample(0.0), sample(0.5), sample(1.0)), production_rate=700))
    assert fig.full_draws == 2


def test_the_client_panel_shows_each_clients_backlog_and_its_lag() -> None:
    """Found: the client panel had no legend and, cumulative, showed nothing healthy."""
    fig = DashboardFigure(config(broadcast_capacity=100))
    samples = (
        sample(0.0, client_pending=(0, 0)),
        sample(0.5, client_pending=(0, 90)),
        sample(1.0, client_pending=(0, 101), client_lagged=(0, 3)),
    )
    fig.draw(Frame(samples=samples))
    assert [line.get_label() for line in fig.client_lines] == ["client 1", "client 2"]
    assert list(fig.client_lines[1].get_ydata()) == [0, 90, 101]
    assert list(fig.lag_marks.get_xdata()) == [1.0]
    texts = [t.get_text() for t in fig.axes[2].get_legend().get_texts()]
    assert texts == ["client 1", "client 2", "lagged (updates lost)"]


def test_many_clients_are_shown_as_the_most_behind_and_the_median() -> None:
    clients = MAX_CLIENT_LINES + 4
    fig = DashboardFigure(config(clients=clients))
    pending = tuple(range(clients))
    fig.draw(Frame(samples=(sample(0.0, clients=clients, client_pending=pending),)))
    assert [line.get_label() for line in fig.client_lines] == ["most behind", "median"]
    assert list(fig.client_lines[0].get_ydata()) == [clients - 1]
    assert list(fig.client_lines[1].get_ydata()) == [clients // 2]


# --- blitting ----------------------------------------------------------------------------------


def test_frames_inside_the_limits_are_blitted() -> None:
    fig = DashboardFigure(config())
    samples: list[Sample] = []
    for i in range(40):
        samples.append(sample(i * 0.25))
        assert fig.draw(Frame(samples=tuple(samples))).startswith(PNG_SIGNATURE)
    assert fig.full_draws == 1  # only the construction drew everything


def test_an_empty_frame_draws() -> None:
    fig = DashboardFigure(config())
    assert fig.draw(Frame(samples=())).startswith(PNG_SIGNATURE)
    assert fig.full_draws == 1


def test_time_beyond_the_x_limit_forces_one_full_draw() -> None:
    fig = DashboardFigure(config())
    right = fig.axes[0].get_xlim()[1]
    late = (sample(0.0), sample(right + 1.0))
    fig.draw(Frame(samples=late))
    assert fig.full_draws == 2
    assert fig.axes[0].get_xlim()[1] > right + 1.0
    fig.draw(Frame(samples=(*late, sample(right + 1.1))))
    assert fig.full_draws == 2


def test_a_blitted_frame_equals_the_same_frame_on_a_fresh_figure() -> None:
    """Restoring the background erases the previous frame's lines: nothing stale remains."""
    first = Frame(samples=(sample(0.0), sample(0.5, telemetry_depth=40, senders_blocked=2)))
    second = Frame(samples=(sample(0.0), sample(0.5), sample(1.0, storage_depth=8)))
    reused, fresh = DashboardFigure(config()), DashboardFigure(config())
    reused.draw(first)
    blitted = reused.draw(second)
    assert reused.full_draws == 1
    assert pixels(blitted) == pixels(fresh.draw(second))
    assert pixels(blitted) != pixels(fresh.draw(first))
