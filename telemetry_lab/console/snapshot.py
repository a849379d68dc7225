"""What the console shows, frozen: task rows, resource rows, warnings, and the text table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ConsoleSnapshot",
    "ConsoleWarning",
    "ResourceRow",
    "TaskRow",
    "TaskState",
    "WarningKind",
    "task_label",
]

TaskState = Literal["running", "ready", "waiting", "done"]
WarningKind = Literal["blocked_loop", "stuck", "unretrieved_exception"]


def task_label(name: str, coroutine: str) -> str:
    """A task's name, with its coroutine when asyncio named it: `Task-12 (shell_main)`."""
    if coroutine and name.startswith("Task-"):
        return f"{name} ({coroutine.rsplit('.', 1)[-1]})"
    return name


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRow:
    """One task of the loop, as the console saw it."""

    name: str
    """The task's name (`asyncio.create_task(..., name=)`, or asyncio's `Task-N`)."""
    state: TaskState
    """running (executing a step now), ready (scheduled, waiting for its turn), waiting
    (suspended until something wakes it) or done."""
    waiting_on: str
    """What it waits on, in plain words (`send on channel 'telemetry' (50/50 full)`,
    `sleep 0.5 s`, `task 'storage'`, `future`); for a done task, how it ended."""
    busy_seconds: float
    """Wall seconds spent running its steps since the console saw it first."""
    steps: int
    """Steps run (each resumption of its coroutine until the next suspension)."""
    wakeups: int
    """Times it was scheduled again after its first step (woken, or yielding)."""
    waiting_seconds: float
    """Seconds in the current wait (0 unless waiting)."""
    created_at: str
    """Where it was created (`file.py:12`), or `(before the console started)`."""
    coroutine: str = ""
    """The qualified name of its coroutine function (`Device.run`): tells unnamed tasks
    (`Task-12`) apart."""
    ready_seconds: float = 0.0
    """Wall seconds it spent scheduled but not yet running (waiting for the loop)."""
    location: str = ""
    """Where its coroutine is now (`device.py:88 in run`), outside asyncio's own code."""
    task_id: int = 0
    """`id()` of the task while it lives: tells apart two tasks of one name."""

    @property
    def label(self) -> str:
        """The name, with the coroutine for a task asyncio named (`Task-12 (run_cell)`)."""
        return task_label(self.name, self.coroutine)

    @property
    def busy_fraction(self) -> float:
        """Share of its observed life it spent running (0 for a task never observed)."""
        total = self.busy_seconds + self.ready_seconds + self.waiting_seconds
        return self.busy_seconds / total if total > 0 else 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceRow:
    """One primitive of the package (named, or with tasks waiting on it)."""

    name: str | None
    """The primitive's `name=`, or None."""
    description: str
    """What it is and its state: `channel 'telemetry' (50/50 full)`."""
    waiting: tuple[tuple[str, str], ...] = ()
    """(operation, task name) for each task waiting on it, oldest first."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleWarning:
    """Something wrong, in plain language, with the task and the place it is about."""

    kind: WarningKind
    """`blocked_loop`, `stuck` or `unretrieved_exception`."""
    task: str
    """The task's name."""
    message: str
    """What happened and where (the message names the task and a file:line)."""
    location: str = ""
    """The `file.py:12` the warning points at (empty if unknown)."""
    stack: tuple[str, ...] = ()
    """For a blocked loop: the frozen stack, outermost first (`file.py:12 in f`)."""
    ongoing: bool = False
    """True while the condition still holds (the loop is blocked right now)."""

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleSnapshot:
    """What the console knew at one moment: print it for a table."""

    tasks: tuple[TaskRow, ...]
    """One row per live task, then the recently finished ones."""
    resources: tuple[ResourceRow, ...] = ()
    """One row per named primitive (and per unnamed one with waiters)."""
    warnings: tuple[ConsoleWarning, ...] = ()
    """Current and recent warnings, the most recent last."""
    uptime: float = 0.0
    """Seconds since the console started."""
    loop_blocked_for: float = 0.0
    """Seconds the loop has been stuck in one step, when the snapshot was taken during a
    stall (from the watchdog thread); 0 when the loop is responsive."""

    def task(self, name: str) -> TaskRow:
        """The row of the live (else finished) task called `name`."""
        rows = [row for row in self.tasks if row.name == name]
        if not rows:
            names = ", ".join(sorted({row.name for row in self.tasks}))
            raise KeyError(f"no task named {name!r} in this snapshot; tasks: {names}")
        live = [row for row in rows if row.state != "done"]
        return (live or rows)[0]

    def tasks_named(self, prefix: str) -> tuple[TaskRow, ...]:
        """The rows whose name starts with `prefix` (`"device-"` for every device)."""
        return tuple(row for row in self.tasks if row.name.startswith(prefix))

    def warnings_of(self, kind: WarningKind) -> tuple[ConsoleWarning, ...]:
        """The warnings of one kind."""
        return tuple(warning for warning in self.warnings if warning.kind == kind)

    def counts(self) -> dict[str, int]:
        """How many tasks are in each state."""
        counts = {"running": 0, "ready": 0, "waiting": 0, "done": 0}
        for row in self.tasks:
            counts[row.state] += 1
        return counts

    def format(self, *, width: int = 120, max_tasks: int | None = 40) -> str:
        """The snapshot as a text table (what `print(snapshot)` shows)."""
        from telemetry_lab.console.table import format_snapshot

        return format_snapshot(self, width=width, max_tasks=max_tasks)

    def __str__(self) -> str:
        return self.format()
