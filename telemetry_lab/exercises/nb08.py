"""Check the exercises of notebook 08: a cancellation-safe worker, one deadline for many steps.

Exercise 1 runs the learner's `worker(rx, process, unfinished)` on the notebook's loop,
against a real channel and a `process` of the check's own that records which readings it
started and finished. The check cancels the worker at three chosen moments (while it
processes a reading, while it waits on an empty channel, and just as a reading arrives),
each decided by events, not by timing, and then counts: every reading sent must have been
processed, handed back in `unfinished`, or still be in the channel, exactly once; and the
worker's task must end *cancelled*.

Exercise 2 runs the learner's `fetch_all(steps, deadline)` on a `VirtualTimeEventLoop` of
its own, in a worker thread (the notebook's loop keeps going meanwhile): the steps sleep
whole virtual seconds, so the check measures exactly when `fetch_all` ended and what each
step was doing at that moment, in microseconds of real time.

Both own every task they start and finish it, and close every channel handle they made,
before they return.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import textwrap
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from telemetry_lab.errors import ChannelClosed, ChannelEmpty
from telemetry_lab.exercises._check import cancel_new_tasks, exercise, reject
from telemetry_lab.primitives import Receiver, channel
from telemetry_lab.virtual_time import VirtualTimeEventLoop

__all__ = [
    "CLOCK_START",
    "ENDING",
    "PATIENCE",
    "VIRTUAL_PATIENCE",
    "check_exercise_1",
    "check_exercise_2",
]

Process = Callable[[str], Awaitable[None]]
Worker = Callable[[Receiver[str], Process, list[str]], Awaitable[Any]]
Step = Callable[[], Awaitable[str]]
FetchAll = Callable[[list[Step], float], Awaitable[Any]]

PATIENCE = 1.0
"""Seconds Exercise 1 waits for the worker to reach the reading it is cancelled on."""
ENDING = 0.3
"""Seconds a cancelled worker (and any task of its own) may take to end: a right one needs
a few loop steps."""
VIRTUAL_PATIENCE = 100.0
"""Virtual seconds Exercise 2 waits for `fetch_all` (its longest step sleeps 10)."""
CLOCK_START = 1000.0
"""Exercise 2's virtual clock starts here, as a real loop's clock never reads 0."""


# --- Exercise 1: a worker that loses nothing when it is cancelled -------------------------


class _Process:
    """The check's `process(item)`: records what it started and finished; one item waits."""

    def __init__(self, hold: str | None = None) -> None:
        self.hold = hold
        self.holding = asyncio.Event()
        """Set once `process(hold)` has started and is waiting to be released."""
        self.release = asyncio.Event()
        self.started: list[str] = []
        self.finished: list[str] = []
        self.after_cancel: list[str] = []
        """Items whose processing started after the worker was cancelled."""
        self.cancel_sent = False
        self.idle = asyncio.Event()
        """Set whenever `finished` reaches `expect` items."""
        self.expect = -1

    async def __call__(self, item: str) -> None:
        self.started.append(item)
        if self.cancel_sent:
            self.after_cancel.append(item)
        await asyncio.sleep(0)  # processing takes at least one loop step
        if item == self.hold:
            self.holding.set()
            await self.release.wait()
        self.finished.append(item)
        if len(self.finished) == self.expect:
            self.idle.set()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Cancelled:
    """How one cancellation of the learner's worker ended."""

    what: str
    sent: list[str]
    in_flight: list[str]
    """The items inside `process` when the cancel was sent."""
    ended: bool
    cancelled: bool
    error: BaseException | None
    returned: Any
    processed: list[str]
    unfinished: list[str]
    remaining: list[str]
    after_cancel: list[str]
    """Items the answer started processing after it was cancelled."""
    not_reached: str = ""
    """Why the worker never got to the moment of the cancel, if it did not."""


def _drain(rx: Receiver[str]) -> list[str]:
    left: list[str] = []
    while True:
        try:
            left.append(rx.try_recv())
        except (ChannelEmpty, ChannelClosed):
            return left


async def _end(task: asyncio.Task[Any], rx: Receiver[str]) -> bool:
    """Wait for the cancelled `task`; if it will not end, close its input and cancel again.

    Returns whether it ended after the first cancel, within `ENDING` seconds.
    """
    await asyncio.wait([task], timeout=ENDING)
    if task.done():
        return True
    rx.close()  # a worker that swallowed the cancel may still end when its input does
    for _ in range(3):
        task.cancel()
        await asyncio.wait([task], timeout=ENDING)
        if task.done():
            break
    return False


async def _cancel_worker(
    worker: Worker,
    what: str,
    items: list[str],
    *,
    hold: str | None = None,
    arrives: str | None = None,
) -> _Cancelled:
    """Start `worker` with `items` in its channel, cancel it at the chosen moment, count.

    With `hold`, the cancel comes while `process(hold)` waits; without, once every item is
    processed and the worker waits on the empty channel; with `arrives`, `arrives` is sent
    in the same loop step as the cancel.
    """
    before = asyncio.all_tasks()
    tx, rx = channel[str](max(len(items), 1) + 1, name="readings")
    for item in items:
        tx.try_send(item)
    process = _Process(hold)
    process.expect = len(items)
    if not items:
        process.idle.set()
    unfinished: list[str] = []
    sent = list(items)
    pending = worker(rx, process, unfinished)
    if not inspect.isawaitable(pending):
        tx.close()
        rx.close()
        reject(
            f"worker(rx, process, unfinished) returned a {type(pending).__name__}, not "
            "something to await",
            "write it as `async def worker(rx, process, unfinished):`",
        )
    task: asyncio.Task[Any] = asyncio.ensure_future(pending)
    task.set_name("worker")
    not_reached = ""
    in_flight: list[str] = []
    ended = True
    try:
        reached = process.holding if hold is not None else process.idle
        waiter = asyncio.ensure_future(reached.wait())
        await asyncio.wait([task, waiter], timeout=PATIENCE, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        await asyncio.wait([waiter])
        if not reached.is_set():
            not_reached = "ended" if task.done() else "late"
        else:
            for _ in range(5):
                await asyncio.sleep(0)  # let it settle into its next await
            in_flight = [item for item in process.started if item not in process.finished]
            if arrives is not None:
                tx.try_send(arrives)
                sent.append(arrives)
            process.cancel_sent = True
            task.cancel()
            ended = await _end(task, rx)
    finally:
        process.release.set()  # an item finished under shield may complete now
        mine = [t for t in asyncio.all_tasks() - before if t is not task and not t.done()]
        if mine:
            await asyncio.wait(mine, timeout=ENDING)
        if not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=ENDING)
        await cancel_new_tasks(before | {task})
        remaining = _drain(rx)
        tx.close()
        rx.close()
    error: BaseException | None = None
    returned: Any = None
    if task.done() and not task.cancelled():
        error = task.exception()
        if error is None:
            returned = task.result()
    return _Cancelled(
        what=what,
        sent=sent,
        in_flight=in_flight,
        ended=ended,
        cancelled=ended and task.cancelled(),
        error=error,
        returned=returned,
        processed=list(process.finished),
        unfinished=list(unfinished),
        remaining=remaining,
        after_cancel=list(process.after_cancel),
        not_reached=not_reached,
    )


def _handlers(answer: object) -> list[ast.ExceptHandler]:
    """The `except` clauses of the answer's source (none if it cannot be read)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(answer)))  # type: ignore[arg-type]
    except (OSError, TypeError, SyntaxError):
        return []
    return [node for node in ast.walk(tree) if isinstance(node, ast.ExceptHandler)]


def _names(handler: ast.ExceptHandler) -> set[str]:
    kinds = handler.type
    parts = kinds.elts if isinstance(kinds, ast.Tuple) else [kinds] if kinds else []
    names = set()
    for part in parts:
        if isinstance(part, ast.Attribute):
            names.add(part.attr)
        elif isinstance(part, ast.Name):
            names.add(part.id)
    return names


def _reraises(handler: ast.ExceptHandler) -> bool:
    return any(isinstance(node, ast.Raise) for node in ast.walk(handler))


def _swallower(answer: object) -> str:
    """How the answer's source catches a cancellation without re-raising, in words ('' if not)."""
    for handler in _handlers(answer):
        if _reraises(handler):
            continue
        if handler.type is None:
            return "a bare `except:`"
        if "BaseException" in _names(handler):
            return "`except BaseException:`"
    for handler in _handlers(answer):
        if not _reraises(handler) and "CancelledError" in _names(handler):
            return "`except asyncio.CancelledError:`"
    return ""


def _catches_only_exception(answer: object) -> bool:
    """Whether the answer's source catches `Exception` and nothing that sees a cancel."""
    handlers = _handlers(answer)
    if any(h.type is None or _names(h) & {"BaseException", "CancelledError"} for h in handlers):
        return False
    return any("Exception" in _names(h) for h in handlers)


RERAISE = (
    "catch it only to hand the item back, then re-raise: `except asyncio.CancelledError: "
    "unfinished.append(item); raise` (a `finally:` that re-raises by itself works too)"
)


def _judge_cancel(run: _Cancelled, worker: Worker) -> None:
    if run.not_reached == "late":
        reject(
            f"the worker did not process the readings it was given within {PATIENCE:g} s "
            f"({run.what})",
            "loop over the channel, `async for item in rx:`, and `await process(item)` for each",
        )
    if run.not_reached == "ended":
        if run.error is not None:
            raise run.error  # a bug in the answer (or a stub): shown with its traceback
        reject(
            f"the worker returned before anyone cancelled it ({run.what}), with readings "
            "still to process",
            "keep taking readings until the task is cancelled (or the channel closes): "
            "`async for item in rx:`",
        )
    swallower = _swallower(worker)
    if not run.ended:
        how = f" with {swallower}" if swallower else ""
        reject(
            f"the worker caught the cancellation{how} and kept going: its task never ended "
            f"after `cancel()` ({run.what})",
            RERAISE,
        )
    if run.error is not None:
        raise run.error
    if not run.cancelled:
        if swallower in ("a bare `except:`", "`except BaseException:`"):
            reject(
                f"your worker swallowed the cancellation: {swallower} caught the "
                "CancelledError and did not re-raise it, so its task returned normally "
                f"({run.what}), and whoever cancelled it thinks it is still working",
                "a bare `except:` and `except BaseException:` catch CancelledError too: "
                "catch `asyncio.CancelledError` itself, hand the item back, and `raise`",
            )
        reject(
            "your worker swallowed the cancellation: its task returned normally "
            f"({run.what}) instead of ending cancelled, so whoever cancelled it (a "
            "timeout, a TaskGroup, a shutdown) cannot tell it stopped",
            RERAISE,
        )
    if run.after_cancel:
        reject(
            f"the worker went on processing after it was cancelled ({run.what}): "
            f"{run.after_cancel} started after `cancel()`; a shield around the whole loop "
            "keeps it running forever, with nobody left to stop it",
            "shield at most the one item in flight (`await asyncio.shield(process(item))`), "
            "or hand that item back in `unfinished` and re-raise",
        )
    accounted = Counter(run.processed) + Counter(run.unfinished) + Counter(run.remaining)
    twice = sorted((Counter(run.processed) & Counter(run.unfinished)).elements())
    if twice:
        reject(
            f"the worker handed back {twice} in `unfinished` although process() had "
            f"finished {'it' if len(twice) == 1 else 'them'} ({run.what}): someone would "
            "process it again",
            "hand an item back only when its processing was cut off: in `except "
            "asyncio.CancelledError:`, not in a `finally:` that also runs after success",
        )
    lost = sorted((Counter(run.sent) - accounted).elements())
    if lost:
        n = len(run.sent)
        where = (
            f"it was inside process() when the cancel came ({run.what})"
            if set(lost) <= set(run.in_flight)
            else f"({run.what})"
        )
        if _catches_only_exception(worker):
            reject(
                f"the worker lost {lost} of the {n} readings: {where}; `except Exception:` "
                "never sees a CancelledError (a BaseException since Python 3.8), so the item "
                "was dropped with the task",
                "catch `asyncio.CancelledError` to hand the item back "
                "(`unfinished.append(item)`), then `raise`",
            )
        reject(
            f"the worker lost {lost} of the {n} readings: taken from the channel, then "
            f"neither processed nor handed back; {where}",
            "when process() is cancelled, put the item in `unfinished` and re-raise: "
            "`try: await process(item)` / `except asyncio.CancelledError: "
            "unfinished.append(item); raise`",
        )
    extra = sorted((accounted - Counter(run.sent)).elements())
    if extra:
        reject(
            f"the worker accounted for {extra} more often than they were sent ({run.what})",
            "append to `unfinished` only the item whose processing was cut off, once",
        )


@exercise(1)
async def check_exercise_1(worker: Worker) -> str:
    """Check `worker(rx, process, unfinished)`: cancelled anywhere, it loses nothing."""
    items = [f"r{i}" for i in range(5)]
    runs = [
        await _cancel_worker(
            worker, "cancelled while processing 'r2' of 'r0'..'r4'", items, hold="r2"
        ),
        await _cancel_worker(worker, "cancelled while waiting on an empty channel", items[:2]),
        await _cancel_worker(
            worker, "cancelled in the same loop step as 'r9' arrived", [], arrives="r9"
        ),
    ]
    for run in runs:
        _judge_cancel(run, worker)
    first = runs[0]
    back = "'r2' handed back in `unfinished`" if first.unfinished else "'r2' finished under shield"
    return (
        f"cancelled 3 times, every reading accounted for: {back}, "
        f"{len(first.remaining)} left in the channel, and the task ended cancelled each time"
    )


# --- Exercise 2: one deadline across several steps -----------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Trial:
    """One call of the learner's `fetch_all` on the virtual clock."""

    what: str
    durations: tuple[float, ...]
    budget: float
    value: Any
    error: BaseException | None
    raised_timeout: bool
    out_of_patience: bool
    ended_after: float
    """Virtual seconds from the call to the end of `fetch_all`."""
    at_end: tuple[str, ...]
    """What each step was doing when `fetch_all` ended."""
    later: tuple[str, ...]
    """... and a few loop steps later."""


async def _trial(
    fetch_all: FetchAll, what: str, durations: tuple[float, ...], budget: float
) -> _Trial:
    loop = asyncio.get_running_loop()
    before = asyncio.all_tasks()
    states = ["not started"] * len(durations)

    def make(i: int, seconds: float) -> Step:
        async def step() -> str:
            states[i] = "running"
            try:
                await asyncio.sleep(seconds)
            except asyncio.CancelledError:
                states[i] = "cancelled"
                raise
            states[i] = "done"
            return f"result-{i + 1}"

        step.__name__ = step.__qualname__ = f"step_{i + 1}"
        return step

    steps = [make(i, s) for i, s in enumerate(durations)]
    started = loop.time()
    value: Any = None
    error: BaseException | None = None
    raised_timeout = out_of_patience = False
    try:
        async with asyncio.timeout(VIRTUAL_PATIENCE) as patience:
            value = await fetch_all(steps, started + budget)
    except TimeoutError as exc:
        if patience.expired():
            out_of_patience = True
        else:
            raised_timeout = True
            error = exc
    except Exception as exc:  # judged by the check
        error = exc
    ended_after = loop.time() - started
    at_end = tuple(states)
    for _ in range(5):
        await asyncio.sleep(0)  # a step cancelled but not waited for ends now
    later = tuple(states)
    await cancel_new_tasks(before)
    return _Trial(
        what=what,
        durations=durations,
        budget=budget,
        value=value,
        error=None if raised_timeout else error,
        raised_timeout=raised_timeout,
        out_of_patience=out_of_patience,
        ended_after=ended_after,
        at_end=at_end,
        later=later,
    )


async def _trials(fetch_all: FetchAll) -> list[_Trial]:
    return [
        await _trial(fetch_all, "three 1 s steps, a deadline 5 s away", (1.0, 1.0, 1.0), 5.0),
        await _trial(fetch_all, "one 10 s step, a deadline 2.5 s away", (10.0,), 2.5),
        await _trial(fetch_all, "three 1.5 s steps, a deadline 2.5 s away", (1.5, 1.5, 1.5), 2.5),
    ]


def _on_a_virtual_clock(fetch_all: FetchAll) -> list[_Trial]:
    """Run the trials on a fresh virtual-time loop, in this (worker) thread, and close it."""
    with asyncio.Runner(loop_factory=lambda: VirtualTimeEventLoop(start=CLOCK_START)) as runner:
        return runner.run(_trials(fetch_all))


def _close(a: float, b: float) -> bool:
    return abs(a - b) < 1e-6


def _judge_cleanup(trial: _Trial) -> None:
    running = [i + 1 for i, s in enumerate(trial.at_end) if s == "running"]
    if not running:
        return
    step = running[0]
    if trial.later[step - 1] == "cancelled":
        reject(
            f"fetch_all raised TimeoutError while step {step} was still running ({trial.what}): "
            "it was cancelled, but nobody waited for it to end",
            "after `task.cancel()`, await the task before raising; simpler, let "
            "`async with asyncio.timeout_at(deadline):` cancel the step and wait for it",
        )
    reject(
        f"fetch_all raised TimeoutError but left step {step} running ({trial.what}): a task "
        "nobody owns, still working past the deadline",
        "do not run the steps in tasks you then leave: `await step()` inside "
        "`async with asyncio.timeout_at(deadline):` cancels the step in flight and waits for it",
    )


def _judge_trial(trial: _Trial) -> None:
    n = len(trial.durations)
    total = sum(trial.durations)
    want = [f"result-{i + 1}" for i in range(n)]
    if trial.out_of_patience:
        reject(
            f"fetch_all had not ended {VIRTUAL_PATIENCE:g} s after it was called ({trial.what})",
            "run the steps one after another, `await step()`, under one "
            "`asyncio.timeout_at(deadline)`",
        )
    if trial.error is not None:
        raise trial.error  # a bug in the answer (or a stub): shown with its traceback
    fits = total <= trial.budget
    if fits:
        if trial.raised_timeout:
            reject(
                f"fetch_all raised TimeoutError after {trial.ended_after:g} s ({trial.what}), "
                f"though the steps need only {total:g} s",
                "time out at the deadline itself: `asyncio.timeout_at(deadline)`, where "
                "`deadline` is a reading of `loop.time()`, not a number of seconds",
            )
        if trial.value != want:
            reject(
                f"fetch_all returned {trial.value!r} ({trial.what}), not {want!r}",
                "await each step in order and return their results in a list",
            )
        return
    if not trial.raised_timeout:
        if _close(trial.ended_after, total) and trial.ended_after > trial.budget:
            if n == 1:
                reject(
                    f"the timeout never fired ({trial.what}): fetch_all returned after the "
                    f"step's full {total:g} s. `deadline` is a point on the loop's clock "
                    f"(here {CLOCK_START + trial.budget:g}), not a delay: "
                    "`asyncio.timeout(deadline)` would wait that many seconds",
                    "`async with asyncio.timeout_at(deadline):` times out at that point; "
                    "`asyncio.timeout(deadline - loop.time())` is the same as a delay",
                )
            reject(
                f"each step got a fresh timeout, and they added up ({trial.what}): every "
                f"step fit in its own, so fetch_all returned after {total:g} s, "
                f"{total - trial.budget:g} s past the deadline",
                "one deadline for the whole sequence: a single `async with "
                "asyncio.timeout_at(deadline):` around the loop (or, per step, only the "
                "time that is left: `deadline - loop.time()`)",
            )
        reject(
            f"fetch_all returned {trial.value!r} after {trial.ended_after:g} s "
            f"({trial.what}) instead of raising TimeoutError: it swallowed the timeout, and "
            "its caller cannot tell the results are incomplete",
            "let the TimeoutError go on to the caller: do not catch it (or re-raise it "
            "after cleaning up)",
        )
    first_cut = next(i for i in range(n) if sum(trial.durations[: i + 1]) > trial.budget)
    for i in range(first_cut + 1, n):
        if trial.at_end[i] != "not started":
            reject(
                f"fetch_all started step {i + 1} after the deadline had passed ({trial.what})",
                "once the deadline has passed, start nothing more: let the TimeoutError end "
                "the whole sequence",
            )
    if not _close(trial.ended_after, trial.budget):
        reject(
            f"fetch_all raised TimeoutError after {trial.ended_after:g} s ({trial.what}), "
            f"not at the deadline, {trial.budget:g} s after the call",
            "`async with asyncio.timeout_at(deadline):` raises exactly at the deadline",
        )
    _judge_cleanup(trial)


@exercise(2)
async def check_exercise_2(fetch_all: FetchAll) -> str:
    """Check `fetch_all(steps, deadline)`: every result, or TimeoutError at the deadline."""
    if not inspect.iscoroutinefunction(fetch_all):
        reject(
            "fetch_all is not an `async def` function",
            "write it as `async def fetch_all(steps, deadline):`",
        )
    trials = await asyncio.to_thread(_on_a_virtual_clock, fetch_all)
    for trial in trials:
        _judge_trial(trial)
    return (
        "3 steps done in 3 s before a 5 s deadline; a 10 s step and three 1.5 s steps "
        "both cut at the 2.5 s deadline, with nothing left running"
    )
