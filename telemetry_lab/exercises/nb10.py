"""Check the exercises of notebook 10: a stage that does not block the loop, one that closes.

Exercise 1 runs the learner's `parse_stage` on a fresh event loop of its own, in a worker
thread (the notebook's loop keeps going meanwhile), under a `Console` of its own: whether
or not a console already watches the notebook's loop (one loop takes one console), the
check can always start one, and a call that blocks its loop is named with its line, as the
notebook's console names it. Exercise 2 runs the learner's `forward` between two real
channels on the notebook's loop, with a consumer downstream, and judges by what the
consumer received and whether its `async for` ever ended.

Both own every task they start and finish it, and close every channel handle they made,
before they return.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from telemetry_lab.console import Console, ConsoleWarning
from telemetry_lab.errors import ChannelClosed
from telemetry_lab.exercises._check import caused_by, exercise, reject
from telemetry_lab.primitives import Receiver, Sender, channel

__all__ = [
    "BAD_READING",
    "READINGS",
    "SLOW_PARSE_SECONDS",
    "check_exercise_1",
    "check_exercise_2",
    "parse_reading",
    "slow_parse",
]

ParseStage = Callable[[bytes], Any]
Forward = Callable[[Receiver[bytes], Sender[dict[str, Any]]], Any]

SLOW_PARSE_SECONDS = 0.2
"""How long `slow_parse` blocks its thread (what a slow, blocking library call takes)."""
BLOCKED = 0.1
"""Exercise 1's console flags a step longer than this: half of one `slow_parse` call."""
PATIENCE = 3.0
"""Seconds Exercise 1 waits for its calls (every right answer needs about 0.2 s)."""
STAGE_PATIENCE = 1.0
"""Seconds Exercise 2 waits for the stage and its consumer (they need milliseconds)."""

READINGS = (b"device-1 20.5", b"device-2 21.0", b"device-3 21.5", b"device-4 22.0")
"""Raw readings as devices send them: a device name and degrees Celsius."""
BAD_READING = b"device-9 ???"
"""A garbled reading: `parse_reading` raises ValueError on it."""


def parse_reading(raw: bytes) -> dict[str, Any]:
    """Parse `b"device-1 20.5"` into `{"device": "device-1", "celsius": 20.5}`.

    Raises:
        ValueError: `raw` is not a device name and a number.
    """
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
        device, celsius = text.split()
        return {"device": device, "celsius": float(celsius)}
    except (AttributeError, UnicodeDecodeError, ValueError):
        raise ValueError(f"bad reading {raw!r}") from None


def slow_parse(raw: bytes) -> dict[str, Any]:
    """`parse_reading`, behind a blocking `time.sleep`: a slow library call you cannot change.

    It blocks the thread that calls it for `SLOW_PARSE_SECONDS`.
    """
    time.sleep(SLOW_PARSE_SECONDS)
    return parse_reading(raw)


# --- Exercise 1: run a blocking call without blocking the loop ---------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Outcome:
    """How one call of the learner's `parse_stage` ended."""

    value: Any = None
    error: BaseException | None = None
    not_async: str = ""
    """The type of what `parse_stage(raw)` returned when it was not awaitable."""
    unawaited: str = ""
    """The type of the awaitable `await parse_stage(raw)` returned (an `await` missing)."""
    pending: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class _Calls:
    """Exercise 1's calls, run at once on a loop of their own."""

    outcomes: tuple[_Outcome, ...]
    blocked: tuple[ConsoleWarning, ...]
    elapsed: float


async def _call(parse_stage: ParseStage, raw: bytes) -> _Outcome:
    try:
        pending = parse_stage(raw)
        if not inspect.isawaitable(pending):
            return _Outcome(not_async=type(pending).__name__)
        value = await pending
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # judged by the check
        return _Outcome(error=exc)
    if inspect.iscoroutine(value):
        value.close()  # never started: nothing to wait for, no "never awaited" warning
        return _Outcome(unawaited=type(value).__name__)
    if isinstance(value, asyncio.Future):
        await asyncio.wait([value])  # it runs on this loop: finish it before judging
        if not value.cancelled():
            value.exception()  # retrieved
        return _Outcome(unawaited=type(value).__name__)
    return _Outcome(value=value)


async def _calls(parse_stage: ParseStage) -> _Calls:
    loop = asyncio.get_running_loop()
    async with Console(blocked_threshold=BLOCKED) as console:
        started = loop.time()
        tasks = [
            asyncio.create_task(_call(parse_stage, raw), name=f"parse-{i}")
            for i, raw in enumerate(READINGS, start=1)
        ]
        done, pending = await asyncio.wait(tasks, timeout=PATIENCE)
        elapsed = loop.time() - started
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        blocked = tuple(
            warning
            for warning in console.snapshot().warnings_of("blocked_loop")
            if warning.task.startswith("parse-")
        )
    outcomes = tuple(task.result() if task in done else _Outcome(pending=True) for task in tasks)
    return _Calls(outcomes=outcomes, blocked=blocked, elapsed=elapsed)


def _on_a_loop_of_its_own(parse_stage: ParseStage) -> _Calls:
    """Run the calls on a fresh loop, in this (worker) thread, and close that loop."""
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        return runner.run(_calls(parse_stage))


def _blocking_line(warning: ConsoleWarning) -> str:
    """The line that made the blocking call: `cell:3 in parse_stage: return slow_parse(raw)`.

    The console's frozen stack goes down to `time.sleep` inside `slow_parse`; the line worth
    showing is the one that called `slow_parse`. Empty when the console saw no stack.
    """
    stack = list(warning.stack)
    inside = [i for i, place in enumerate(stack) if " in slow_parse" in place]
    if inside and inside[0] > 0:
        return stack[inside[0] - 1]
    return stack[-1] if stack else warning.location


def _judge_calls(calls: _Calls, name: str) -> None:
    outcomes = calls.outcomes
    not_async = next((o.not_async for o in outcomes if o.not_async), "")
    if not_async:
        reject(
            f"{name}(raw) returned a {not_async}, not something to await: it is a plain "
            "function, so whatever it calls runs right there, on the loop",
            f"write it as `async def {name}(raw):` and `await` the thread that runs slow_parse",
        )
    errors = [o.error for o in outcomes if o.error is not None]
    line = _blocking_line(calls.blocked[0]) if calls.blocked else ""
    eager = "to_thread" in line or "run_in_executor" in line
    not_callable = [e for e in errors if isinstance(e, TypeError) and "not callable" in str(e)]
    if not_callable or eager:
        where = f" (at {line})" if line else ""
        blocked = "it blocked the loop, then " if calls.blocked else ""
        reject(
            "slow_parse(raw) ran on the loop before the thread got anything: "
            f"`asyncio.to_thread(slow_parse(raw))` calls slow_parse first{where}; "
            f"{blocked}to_thread was handed its result, a dict, to call"
            + (f" ({type(not_callable[0]).__name__}: {not_callable[0]})" if not_callable else ""),
            "pass the function and its argument separately, and to_thread calls it in the "
            "thread: `await asyncio.to_thread(slow_parse, raw)`",
        )
    if calls.blocked:
        warning = calls.blocked[0]
        where = f" at {line}" if line else ""
        reject(
            f"{name} blocked the event loop: the console saw task {warning.task!r} hold it "
            f"for a whole slow_parse in one step{where}; the {len(READINGS)} calls ran one "
            f"after another ({calls.elapsed:.2f} s, not {SLOW_PARSE_SECONDS:g} s), and while "
            "each ran no other task could",
            "run the blocking call in a worker thread and await it: "
            "`return await asyncio.to_thread(slow_parse, raw)`",
        )
    if errors:
        raise errors[0]  # a bug in the answer (or a stub): shown with its traceback
    unawaited = next((o.unawaited for o in outcomes if o.unawaited), "")
    if unawaited:
        reject(
            f"{name}(raw) gave back a {unawaited}, not the parsed reading: the `await` is "
            "missing, so the thread's work was never waited for",
            "`return await asyncio.to_thread(slow_parse, raw)`: await it, and return what it gives",
        )
    if any(o.pending for o in outcomes):
        reject(
            f"{name} did not return within {PATIENCE:g} s (one slow_parse takes "
            f"{SLOW_PARSE_SECONDS:g} s)",
            "await only the thread running slow_parse, then return its result",
        )
    for raw, outcome in zip(READINGS, outcomes, strict=True):
        want = parse_reading(raw)
        got = outcome.value
        if got == want:
            continue
        if got is None:
            reject(
                f"{name}({raw!r}) returned None, not the parsed reading",
                "return what the thread gives: `return await asyncio.to_thread(...)`",
            )
        if got == raw:
            reject(
                f"{name}({raw!r}) returned the raw bytes: nothing parsed them",
                "return slow_parse's result, run in a thread",
            )
        reject(
            f"{name}({raw!r}) returned {got!r}, not {want!r}",
            "return slow_parse(raw)'s result, unchanged, run in a thread",
        )
    if calls.elapsed < SLOW_PARSE_SECONDS * 0.9:
        reject(
            f"{name} returned in {calls.elapsed * 1000:.0f} ms, faster than one call of "
            f"slow_parse ({SLOW_PARSE_SECONDS:g} s): it did not call slow_parse",
            "slow_parse stands for a blocking library call you cannot rewrite: call it, "
            "in a worker thread",
        )


@exercise(1)
async def check_exercise_1(parse_stage: ParseStage) -> str:
    """Check `parse_stage(raw)`: slow_parse's result, with the loop never blocked."""
    calls = await asyncio.to_thread(_on_a_loop_of_its_own, parse_stage)
    _judge_calls(calls, getattr(parse_stage, "__name__", "parse_stage"))
    serial = len(READINGS) * SLOW_PARSE_SECONDS
    return (
        f"{len(READINGS)} readings parsed at once in {calls.elapsed:.2f} s (one after "
        f"another on the loop: {serial:.2f} s); no step blocked the loop"
    )


# --- Exercise 2: a stage that closes its sender on every path ----------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Run:
    """One run of the learner's stage between two channels, with a consumer downstream."""

    what: str
    """How messages name the run's input."""
    stage_done: bool
    returned: bool
    """The stage ended without an exception."""
    error: BaseException | None
    consumer_done: bool
    received: list[Any]
    sender_closed: bool
    """Whether the stage's output sender was closed when the run was judged."""


async def _consume(rx: Receiver[Any], into: list[Any]) -> None:
    """Receive into `into` one value at a time: what came stays there if this is cancelled."""
    async for value in rx:
        into.append(value)  # noqa: PERF401 (not `extend`: keep what came before a cancel)


async def _run_stage(forward: Forward, raws: tuple[bytes, ...], what: str) -> _Run:
    tx_in, rx_in = channel[bytes](len(raws), name="raw")
    for raw in raws:
        tx_in.try_send(raw)
    tx_in.close()  # the input is complete: a right stage ends once it is drained
    tx_out, rx_out = channel[dict[str, Any]](2, name="parsed")
    received: list[Any] = []
    pending = forward(rx_in, tx_out)
    if not inspect.isawaitable(pending):
        tx_out.close()
        reject(
            f"forward(rx, tx) returned a {type(pending).__name__}, not something to await",
            "write it as `async def forward(rx, tx):`",
        )
    stage: asyncio.Future[Any] = asyncio.ensure_future(pending)
    if isinstance(stage, asyncio.Task):
        stage.set_name("forward")  # how a console watching the notebook shows them
    consumer = asyncio.create_task(_consume(rx_out, received), name="downstream")
    try:
        await asyncio.wait([stage, consumer], timeout=STAGE_PATIENCE)
        if stage.done() and not consumer.done():
            await asyncio.wait([consumer], timeout=0.05)  # let a last close() reach it
        stage_done, consumer_done = stage.done(), consumer.done()
        sender_closed = tx_out.is_closed
    finally:
        left = [task for task in (stage, consumer) if not task.done()]
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left)
        for handle in (tx_out, rx_out, rx_in):
            handle.close()
    error = None
    if stage_done and not stage.cancelled():
        error = stage.exception()
    if not consumer.cancelled():
        consumer.exception()  # retrieved
    return _Run(
        what=what,
        stage_done=stage_done,
        returned=stage_done and not stage.cancelled() and error is None,
        error=error,
        consumer_done=consumer_done,
        received=received,
        sender_closed=sender_closed,
    )


STUCK = "the consumer is stuck waiting on recv: no sender will ever send or close"


def _judge_stage_end(run: _Run) -> None:
    """What every run must show: the stage ended, and a ChannelClosed is explained."""
    if not run.stage_done:
        reject(
            f"forward did not finish within {STAGE_PATIENCE:g} s ({run.what}), although its "
            "input channel was closed: it waited for something that never came",
            "loop with `async for raw in rx:`: it ends by itself once the input is closed "
            "and drained",
        )
    closed = caused_by(run.error, ChannelClosed)
    if isinstance(closed, ChannelClosed) and closed.value is not None:
        reject(
            f"forward sent on tx after closing it ({run.what}): ChannelClosed",
            "close tx once, after the last send: `with tx:` around the whole loop does it",
        )
    if closed is not None:
        reject(
            f"ChannelClosed escaped from forward ({run.what}): `await rx.recv()` raises it "
            "once the input is closed and drained",
            "loop with `async for raw in rx:`, which simply ends there",
        )


@exercise(2)
async def check_exercise_2(forward: Forward) -> str:
    """Check `forward(rx, tx)`: every reading parsed downstream, tx closed on every path."""
    good = READINGS[:3]
    want = [parse_reading(raw) for raw in good]
    what = f"{len(good)} good readings"
    run = await _run_stage(forward, good, what)
    _judge_stage_end(run)
    if run.error is not None:
        raise run.error  # a bug in the answer (or a stub): shown with its traceback
    if not run.consumer_done:
        reject(
            f"{STUCK} ({what}): forward returned without closing tx, so the consumer's "
            "`async for` waits for a next reading forever",
            "close the sender when the stage ends: `with tx:` around the loop",
        )
    if run.received and run.received == list(good):
        reject(
            f"forward sent the raw bytes downstream ({what}), not parsed readings",
            "send `parse_reading(raw)`, the dict",
        )
    if run.received != want:
        reject(
            f"the consumer received {len(run.received)} readings of the {len(good)} sent "
            f"({what}): {run.received!r}",
            "send `parse_reading(raw)` once for every raw reading, and `await` each send",
        )

    bad = (READINGS[0], BAD_READING, READINGS[1])
    what = f"a bad reading second of {len(bad)}"
    run = await _run_stage(forward, bad, what)
    _judge_stage_end(run)
    if not run.consumer_done:
        left = (
            "returned"
            if run.returned
            else f"failed ({type(run.error).__name__}: {run.error})"
            if run.error is not None
            else "ended"
        )
        reject(
            f"{STUCK} ({what}): on the bad reading forward {left} without closing tx; it "
            "closes only on the success path",
            "`with tx:` around the loop closes it on every path, the failing one too (or "
            "`try:` ... `finally: tx.close()`)",
        )
    failure = caused_by(run.error, ValueError)
    if run.returned or failure is None:
        skipped = run.received == [parse_reading(READINGS[0]), parse_reading(READINGS[1])]
        how = "skipped the bad reading and carried on" if skipped else "returned normally"
        if run.error is not None:
            raise run.error
        reject(
            f"forward swallowed the ValueError of the bad reading ({what}): it {how}, so "
            "nobody learns that a reading was bad",
            "do not catch it: let it propagate out of forward (the caller's TaskGroup will "
            "see it); the closing belongs in `with tx:` or `finally:`, not in `except`",
        )
    if run.received != [parse_reading(READINGS[0])]:
        reject(
            f"the consumer received {run.received!r} ({what}): the reading before the bad "
            "one should have reached it",
            "send each reading as soon as it is parsed, in order",
        )
    return (
        "3 readings forwarded and the consumer ended; on a bad reading the consumer still "
        "ended and the ValueError propagated"
    )
