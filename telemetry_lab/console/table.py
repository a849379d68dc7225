"""Print a `ConsoleSnapshot` as a text table: warnings first, then tasks, then resources."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from telemetry_lab.console.snapshot import ConsoleSnapshot, ResourceRow, TaskRow

__all__ = ["by_state", "format_snapshot", "seconds", "waiters_text"]

_ORDER = {"running": 0, "ready": 1, "waiting": 2, "done": 3}


def by_state(rows: Iterable[TaskRow]) -> list[TaskRow]:
    """The rows running first, then ready, waiting, done (stable within a state)."""
    return sorted(rows, key=lambda row: _ORDER[row.state])


def waiters_text(resource: ResourceRow, limit: int) -> str:
    """`device-1 (send), device-2 (send), +3 more`: who waits on a resource."""
    text = ", ".join(f"{task} ({op})" for op, task in resource.waiting[:limit])
    more = len(resource.waiting) - limit
    return f"{text}, +{more} more" if more > 0 else text


def seconds(value: float) -> str:
    """`850us`, `12ms`, `3.40s`, `2m05s`: short and readable at a glance."""
    if value < 0.001:
        return f"{value * 1e6:.0f}us"
    if value < 1:
        return f"{value * 1e3:.0f}ms"
    if value < 60:
        return f"{value:.2f}s"
    minutes, rest = divmod(value, 60)
    return f"{minutes:.0f}m{rest:02.0f}s"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 3)] + "..."


def format_snapshot(
    snapshot: ConsoleSnapshot, *, width: int = 120, max_tasks: int | None = 40
) -> str:
    """The text table (plain ASCII, so it prints on any terminal)."""
    counts = snapshot.counts()
    lines = [
        f"asyncio console: {len(snapshot.tasks)} tasks ("
        + ", ".join(f"{n} {state}" for state, n in counts.items())
        + f"), {len(snapshot.warnings)} warnings, up {seconds(snapshot.uptime)}"
    ]
    if snapshot.loop_blocked_for:
        blocked = seconds(snapshot.loop_blocked_for)
        lines.append(f"!! THE LOOP IS BLOCKED: one step has run for {blocked}")
    if snapshot.warnings:
        lines.append("WARNINGS")
        for warning in snapshot.warnings:
            lines.extend(
                textwrap.wrap(
                    f"! {warning.kind}: {warning.message}",
                    width,
                    initial_indent="  ",
                    subsequent_indent="      ",
                )
            )
            if len(warning.stack) > 1:
                lines.extend(_clip(f"      {frame}", width) for frame in warning.stack[-4:])
    rows = by_state(snapshot.tasks)
    shown = rows if max_tasks is None else rows[:max_tasks]
    lines.append("TASKS")
    header = ("NAME", "STATE", "BUSY", "READY", "STEPS", "WAKES", "WAITING", "WAITING ON / OUTCOME")
    table = [header] + [_cells(row) for row in shown]
    widths = [max(len(r[i]) for r in table) for i in range(len(header) - 1)]
    for cells in table:
        fixed = "  ".join(cell.ljust(w) for cell, w in zip(cells[:-1], widths, strict=False))
        lines.append(_clip(f"  {fixed}  {cells[-1]}", width))
    if len(rows) > len(shown):
        lines.append(f"  ... and {len(rows) - len(shown)} more tasks")
    if snapshot.resources:
        lines.append("RESOURCES")
        for resource in snapshot.resources:
            waiting = waiters_text(resource, 6)
            suffix = f"  waiting: {waiting}" if waiting else ""
            lines.append(_clip(f"  {resource.description}{suffix}", width))
    return "\n".join(lines)


def _cells(row: TaskRow) -> tuple[str, ...]:
    waiting = seconds(row.waiting_seconds) if row.state == "waiting" else "-"
    return (
        _clip(row.label, 32),
        row.state,
        seconds(row.busy_seconds),
        seconds(row.ready_seconds),
        str(row.steps),
        str(row.wakeups),
        waiting,
        row.waiting_on or (f"at {row.location}" if row.location else ""),
    )
