"""The console in JupyterLab: a live table, refreshed from the console's thread.

The view is one `ipywidgets.HTML`: warnings on top (red, with the line they point at), then
one row per task (state in colour, what it waits on), then the resources. It is updated from
the console's own thread, never from the event loop, so it keeps refreshing while a cell
blocks the loop, and shows where the loop is stuck.
"""

from __future__ import annotations

import html
import threading
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from telemetry_lab.console.table import by_state, seconds, waiters_text

if TYPE_CHECKING:
    from telemetry_lab.console.console import Console
    from telemetry_lab.console.snapshot import ConsoleSnapshot, TaskRow

__all__ = ["ConsoleView", "render_html"]

_COLOURS = {"running": "#1a7f37", "ready": "#9a6700", "waiting": "#0969da", "done": "#6e7781"}
_STYLE = (
    "<style>"
    ".tl-console{font-family:var(--jp-code-font-family,monospace);font-size:12px;}"
    ".tl-console table{border-collapse:collapse;margin:2px 0 6px 0;}"
    ".tl-console th{text-align:left;border-bottom:1px solid #8884;padding:1px 8px 1px 0;}"
    ".tl-console td{padding:1px 8px 1px 0;vertical-align:top;white-space:nowrap;"
    "line-height:1.35;}"
    ".tl-console td.on{white-space:normal;min-width:280px;max-width:520px;}"
    ".tl-console .rows{max-height:430px;overflow-y:auto;border-top:1px solid #8884;}"
    ".tl-console .warn{background:#ffebe9;color:#82071e;border-left:4px solid #cf222e;"
    "padding:3px 6px;margin:2px 0;white-space:pre-wrap;}"
    ".tl-console .stall{background:#cf222e;color:white;font-weight:bold;padding:3px 6px;}"
    ".tl-console .head{font-weight:bold;margin:4px 0 2px 0;}"
    ".tl-console .num{text-align:right;}"
    "</style>"
)


def _e(text: object) -> str:
    return html.escape(str(text), quote=False)


def render_html(snapshot: ConsoleSnapshot, *, max_tasks: int = 40, stopped: bool = False) -> str:
    """The snapshot as an HTML fragment (what the widget shows)."""
    counts = snapshot.counts()
    summary = ", ".join(f"{n} {state}" for state, n in counts.items())
    status = "stopped" if stopped else f"up {seconds(snapshot.uptime)}"
    parts = [
        _STYLE,
        '<div class="tl-console">',
        f'<div class="head">asyncio console: {len(snapshot.tasks)} tasks ({_e(summary)}), '
        f"{status}</div>",
    ]
    if snapshot.loop_blocked_for:
        parts.append(
            '<div class="stall">The event loop is blocked: one step has run for '
            f"{seconds(snapshot.loop_blocked_for)} (every other task is frozen)</div>"
        )
    for warning in snapshot.warnings:
        stack = ""
        if len(warning.stack) > 1:
            stack = "\n    " + "\n    ".join(_e(frame) for frame in warning.stack[-4:])
        parts.append(
            f'<div class="warn"><b>{_e(warning.kind)}</b>: {_e(warning.message)}{stack}</div>'
        )
    rows = by_state(snapshot.tasks)
    parts.append('<div class="rows">')
    parts.append(
        "<table><tr><th>task</th><th>state</th><th>busy</th><th>ready</th><th>steps</th>"
        "<th>wakes</th><th>waiting</th><th>waiting on / outcome</th><th>created at</th></tr>"
    )
    parts.extend(_row(row) for row in rows[:max_tasks])
    parts.append("</table>")
    if len(rows) > max_tasks:
        parts.append(f"<div>... and {len(rows) - max_tasks} more tasks</div>")
    if snapshot.resources:
        parts.append('<div class="head">resources</div><table>')
        for resource in snapshot.resources:
            waiting = waiters_text(resource, 8)
            parts.append(
                f"<tr><td>{_e(resource.description)}</td><td class='on'>{_e(waiting)}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</div></div>")
    return "".join(parts)


def _row(row: TaskRow) -> str:
    colour = _COLOURS[row.state]
    waiting = seconds(row.waiting_seconds) if row.state == "waiting" else ""
    on = row.waiting_on or (f"at {row.location}" if row.location else "")
    return (
        f"<tr><td>{_e(row.label)}</td><td style='color:{colour};font-weight:bold'>{row.state}</td>"
        f"<td class='num'>{seconds(row.busy_seconds)}</td>"
        f"<td class='num'>{seconds(row.ready_seconds)}</td>"
        f"<td class='num'>{row.steps}</td><td class='num'>{row.wakeups}</td>"
        f"<td class='num'>{waiting}</td><td class='on'>{_e(on)}</td>"
        f"<td>{_e(row.created_at)}</td></tr>"
    )


class ConsoleView:
    """The widget of one `Console` (`console.widget`)."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._lock = threading.Lock()
        self.html = widgets.HTML(value="<i>the console has not taken a snapshot yet</i>")
        self.widget: Any = widgets.VBox([self.html])
        self.updates = 0
        """How many times the table was redrawn (for tests)."""

    def show(self, snapshot: ConsoleSnapshot) -> None:
        """Redraw with `snapshot` (from any thread)."""
        value = render_html(snapshot, stopped=not self._console.running)
        with self._lock:
            if value != self.html.value:
                self.html.value = value
                self.updates += 1
