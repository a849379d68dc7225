"""The asyncio console: every task of a running loop, what it waits on, and what went wrong.

`Console()` watches any asyncio code (not only the gateway): one row per task with its
state, what it waits on in plain words, time busy and waiting, steps and wake-ups; one row
per named primitive with its waiters; and warnings that name the task and the line: a step
that blocked the loop, a task stuck on a resource nobody can complete, a failure nobody
awaited. See `Console` for how to start it, and DESIGN.md ("The console") for the contract.
"""

from telemetry_lab.console.console import Console
from telemetry_lab.console.snapshot import (
    ConsoleSnapshot,
    ConsoleWarning,
    ResourceRow,
    TaskRow,
    TaskState,
    WarningKind,
)

__all__ = [
    "Console",
    "ConsoleSnapshot",
    "ConsoleWarning",
    "ResourceRow",
    "TaskRow",
    "TaskState",
    "WarningKind",
]
