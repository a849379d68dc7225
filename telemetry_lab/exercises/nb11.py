"""Check the exercises of notebook 11: blocking queries off the loop, results back from a thread.

Exercise 1 runs the learner's `lookup_all` on a fresh event loop of its own, in a worker
thread (the notebook's loop keeps going meanwhile), under a `Console` of its own, against a
small SQLite file of its own: a query run on the loop is named with its line, a connection
shared between threads shows as sqlite3's own `ProgrammingError`, and the time the whole
lookup took tells concurrent queries from queries run one after another.

Exercise 2 runs the learner's `producer_thread` in a `threading.Thread` against an event
loop of its own, in debug mode (where asyncio itself refuses `loop.call_soon` from another
thread). Its queue is a small `asyncio.Queue` subclass that notes every `put_nowait` made
from a thread other than the loop's, and still delivers the item safely, so that a wrong
answer is explained instead of leaving the consumer asleep.

Both own every task and thread they start, close their loops and remove their files before
they return (a thread cannot be stopped: one still running after its patience is reported).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telemetry_lab.console import Console, ConsoleWarning
from telemetry_lab.exercises._check import caused_by, exercise, reject

__all__ = [
    "DEVICES",
    "END",
    "ITEMS",
    "QUERY_SECONDS",
    "check_exercise_1",
    "check_exercise_2",
    "create_readings_db",
    "latest_reading",
]

LookupAll = Callable[[Path, Sequence[str]], Any]
ProducerThread = Callable[[asyncio.AbstractEventLoop, "asyncio.Queue[Any]", Sequence[Any]], Any]

DEVICES = ("device-1", "device-2", "device-3", "device-4")
"""The devices Exercise 1 looks up, in the order their readings must come back."""
QUERY_SECONDS = {"device-1": 0.2, "device-2": 0.1, "device-3": 0.15, "device-4": 0.12}
"""How long `latest_reading` blocks for each device (a big table on a slow disk): the first
device is the slowest, so results collected as they finish come back out of order."""
DEFAULT_QUERY_SECONDS = 0.1
"""How long `latest_reading` blocks for a device not in `QUERY_SECONDS`."""
BLOCKED = 0.05
"""Exercise 1's console flags a step longer than this: half of the shortest query."""
PATIENCE = 3.0
"""Seconds Exercise 1 waits for the lookup (a right answer needs about 0.2 s)."""

ITEMS = ("reading-1", "reading-2", "reading-3", "reading-4", "reading-5")
"""What Exercise 2's thread is given to deliver, in this order."""
END = None
"""The end marker: delivered after the last item, it tells the consumer to stop."""
THREAD_PATIENCE = 2.0
"""Seconds Exercise 2 waits for the learner's thread to return (it needs milliseconds)."""
END_PATIENCE = 0.5
"""Seconds Exercise 2's consumer waits, once the thread returned, for what is still coming."""


def create_readings_db(path: Path | str) -> Path:
    """Create (or replace) a small SQLite file of readings: 3 per device of `DEVICES`.

    The latest reading of `device-N` (the one with the highest `seq`) is `20 + N` degrees.
    """
    path = Path(path)
    path.unlink(missing_ok=True)
    rows = [
        (device, seq, round(20.0 + n - 0.5 * (3 - seq), 1))
        for n, device in enumerate(DEVICES, start=1)
        for seq in (1, 2, 3)
    ]
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE readings (device TEXT, seq INTEGER, celsius REAL)")
        conn.executemany("INSERT INTO readings VALUES (?, ?, ?)", rows)
    return path


def latest_reading(conn: sqlite3.Connection, device: str) -> dict[str, Any]:
    """The latest reading of `device`: `{"device": "device-1", "celsius": 21.0}`.

    A blocking query, as slow as a big table on a slow disk: it holds the thread that calls
    it for `QUERY_SECONDS[device]`. `conn` must have been made in that same thread (sqlite3
    refuses anything else).
    """
    cursor = conn.execute(
        "SELECT device, celsius FROM readings WHERE device = ? ORDER BY seq DESC LIMIT 1",
        (device,),
    )
    time.sleep(QUERY_SECONDS.get(device, DEFAULT_QUERY_SECONDS))  # the big table, the disk
    row = cursor.fetchone()
    if row is None:
        raise LookupError(f"no reading of {device!r}")
    return {"device": row[0], "celsius": row[1]}


# --- Exercise 1: blocking queries in threads, concurrently, results in order -------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Lookup:
    """How one call of the learner's `lookup_all` ended, on the check's own loop."""

    value: Any = None
    error: BaseException | None = None
    not_async: str = ""
    """The type of what `lookup_all(...)` returned when it was not awaitable."""
    unawaited: str = ""
    """What was left un-awaited: `coroutine`, `_GatheringFuture`, `list of coroutine`..."""
    pending: bool = False
    blocked: tuple[ConsoleWarning, ...] = ()
    elapsed: float = 0.0


def _unawaited(value: Any) -> list[Any]:
    """The awaitables in `value` (itself, or the items of a list or tuple)."""
    if inspect.isawaitable(value):
        return [value]
    if isinstance(value, list | tuple):
        return [item for item in value if inspect.isawaitable(item)]
    return []


async def _finish_unawaited(pending: list[Any]) -> None:
    """Close never-started coroutines; wait for futures and tasks (threads) to end."""
    futures = []
    for item in pending:
        if inspect.iscoroutine(item):
            item.close()  # never started: no "never awaited" warning
        elif isinstance(item, asyncio.Future):
            futures.append(item)
    if futures:
        await asyncio.wait(futures, timeout=PATIENCE)
    for future in futures:
        if not future.done():
            future.cancel()
        elif not future.cancelled():
            future.exception()  # retrieved


async def _lookup(lookup_all: LookupAll, db_path: Path) -> _Lookup:
    loop = asyncio.get_running_loop()
    async with Console(blocked_threshold=BLOCKED) as console:

        async def call() -> _Lookup:
            try:
                pending = lookup_all(db_path, DEVICES)
                if not inspect.isawaitable(pending):
                    left = _unawaited(pending)
                    await _finish_unawaited(left)
                    return _Lookup(not_async=type(pending).__name__)
                value = await pending
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # judged by the check
                return _Lookup(error=exc)
            left = _unawaited(value)
            if left:
                await _finish_unawaited(left)
                kind = type(left[0]).__name__
                what = kind if left[0] is value else f"{type(value).__name__} of {kind}"
                return _Lookup(unawaited=what)
            return _Lookup(value=value)

        started = loop.time()
        task = asyncio.create_task(call(), name="lookup_all")
        done, _ = await asyncio.wait([task], timeout=PATIENCE)
        elapsed = loop.time() - started
        if not done:
            task.cancel()
            await asyncio.wait([task])
        blocked = tuple(console.snapshot().warnings_of("blocked_loop"))
    outcome = task.result() if done else _Lookup(pending=True)
    return _Lookup(
        value=outcome.value,
        error=outcome.error,
        not_async=outcome.not_async,
        unawaited=outcome.unawaited,
        pending=outcome.pending,
        blocked=blocked,
        elapsed=elapsed,
    )


def _lookup_on_a_loop_of_its_own(lookup_all: LookupAll) -> _Lookup:
    """Make the database, run the lookup on a fresh loop in this (worker) thread, clean up."""
    with tempfile.TemporaryDirectory(prefix="nb11-") as folder:
        db_path = create_readings_db(Path(folder) / "readings.db")
        with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
            return runner.run(_lookup(lookup_all, db_path))


def _query_lines(warning: ConsoleWarning) -> tuple[str, list[str]]:
    """The line that called `latest_reading`, and every line above it, outermost first."""
    stack = list(warning.stack)
    inside = [i for i, place in enumerate(stack) if " in latest_reading" in place]
    if inside and inside[0] > 0:
        return stack[inside[0] - 1], stack[: inside[0]]
    return (stack[-1] if stack else warning.location), stack


def _judge_lookup(run: _Lookup, name: str) -> None:
    if run.not_async:
        reject(
            f"{name}(db_path, devices) returned a {run.not_async}, not something to await: it "
            "is a plain function, so whatever it calls runs right there, on the loop",
            f"write it as `async def {name}(db_path, devices):` and `await` the threads "
            "that run the queries",
        )
    shared = caused_by(run.error, sqlite3.ProgrammingError)
    if shared is not None and "thread" in str(shared):
        reject(
            "one sqlite3 connection was made in one thread and used in another: sqlite3 "
            f"refused it (ProgrammingError: {str(shared).split('. ')[0]}). A connection "
            "opened on the loop cannot be handed to a worker thread",
            "open the connection inside the function that runs in the thread, and close it "
            "there: `def lookup(db_path, device): conn = sqlite3.connect(db_path)` ... then "
            "`asyncio.to_thread(lookup, db_path, device)`",
        )
    blocked = list(run.blocked)  # the check's own loop runs only the answer
    line, above = _query_lines(blocked[0]) if blocked else ("", [])
    eager = any("to_thread(" in place or "run_in_executor(" in place for place in above)
    not_callable = caused_by(run.error, TypeError)
    if not_callable is not None and "not callable" not in str(not_callable):
        not_callable = None
    if not_callable is not None or eager:
        where = f" (at {line})" if line else ""
        blocked_first = "it blocked the loop, then " if blocked else ""
        reject(
            "the query ran on the loop before any thread got it: `asyncio.to_thread(f(x))` "
            f"calls f first{where}; {blocked_first}to_thread was handed its result, a "
            "reading, to call"
            + (f" (TypeError: {not_callable})" if not_callable is not None else ""),
            "pass the function and its arguments separately, and to_thread calls it in the "
            "thread: `asyncio.to_thread(lookup, db_path, device)`",
        )
    if blocked:
        warning = blocked[0]
        where = f" at {line}" if line else ""
        reject(
            f"{name} blocked the event loop: the console saw task {warning.task!r} hold it "
            f"in one step{where}; the lookup took {run.elapsed:.2f} s, and while each query "
            "ran no other task could",
            "run each query in a worker thread and await it: a plain `def` that opens its "
            "connection and calls latest_reading, run with `asyncio.to_thread(...)`",
        )
    if run.error is not None:
        raise run.error  # a bug in the answer (or a stub): shown with its traceback
    if run.unawaited:
        reject(
            f"{name} gave back a {run.unawaited}, not the readings: an `await` is missing, "
            "so the threads' work was never waited for",
            "`return await asyncio.gather(*(asyncio.to_thread(...) for device in devices))`",
        )
    if run.pending:
        reject(
            f"{name} did not return within {PATIENCE:g} s (the slowest query takes "
            f"{max(QUERY_SECONDS.values()):g} s)",
            "await only the threads running the queries, then return their results",
        )
    want = [_expected(device) for device in DEVICES]
    got = run.value
    if not isinstance(got, list | tuple):
        reject(
            f"{name} returned {got!r}, not a list of {len(DEVICES)} readings",
            "return one reading per device, in the order of `devices`: "
            "`await asyncio.gather(...)` gives exactly that list",
        )
    got = list(got)
    if got != want and sorted(got, key=repr) == sorted(want, key=repr):
        reject(
            f"{name} returned the readings in the order the queries finished "
            f"({', '.join(r['device'] for r in got)}), not in the order of devices "
            f"({', '.join(DEVICES)})",
            "`asyncio.gather(*aws)` returns the results in the order of `aws`, whatever "
            "order they finish in (`as_completed` gives the finishing order)",
        )
    if got != want:
        reject(
            f"{name} returned {got!r}, not {want!r}",
            "return latest_reading(conn, device)'s result, unchanged, for every device in order",
        )
    slowest = max(QUERY_SECONDS.values())
    serial = sum(QUERY_SECONDS.values())
    if run.elapsed > (slowest + serial) / 2:
        reject(
            f"{name} took {run.elapsed:.2f} s: the queries ran one after another (together "
            f"they take {serial:.2f} s; side by side, as long as the slowest, "
            f"{slowest:g} s). Each `await` waited for one thread before the next started",
            "start every thread first, then wait for all of them: "
            "`await asyncio.gather(*(asyncio.to_thread(lookup, db_path, d) for d in devices))`",
        )
    if run.elapsed < slowest * 0.9:
        reject(
            f"{name} returned in {run.elapsed * 1000:.0f} ms, faster than the slowest query "
            f"({slowest:g} s): it did not call latest_reading",
            "latest_reading stands for a slow query you cannot rewrite: call it, in a "
            "worker thread",
        )


def _expected(device: str) -> dict[str, Any]:
    return {"device": device, "celsius": 20.0 + DEVICES.index(device) + 1}


@exercise(1)
async def check_exercise_1(lookup_all: LookupAll) -> str:
    """Check `lookup_all(db_path, devices)`: readings in order, queries side by side."""
    run = await asyncio.to_thread(_lookup_on_a_loop_of_its_own, lookup_all)
    _judge_lookup(run, getattr(lookup_all, "__name__", "lookup_all"))
    serial = sum(QUERY_SECONDS.values())
    return (
        f"{len(DEVICES)} queries side by side in {run.elapsed:.2f} s (one after another: "
        f"{serial:.2f} s), readings in order, and no step blocked the loop"
    )


# --- Exercise 2: hand values from a thread to the loop -----------------------------------


class _WatchedQueue(asyncio.Queue[Any]):
    """An asyncio.Queue that notes each `put_nowait` made off its loop's thread.

    Such a put is still delivered, through `call_soon_threadsafe`, so the check goes on
    and explains the mistake instead of leaving its consumer asleep.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._home = loop
        self._home_thread = threading.get_ident()
        self.foreign: list[str] = []
        """How each put off the loop's thread came: `thread`, or `another loop`."""

    def put_nowait(self, item: Any) -> None:
        if threading.get_ident() == self._home_thread:
            super().put_nowait(item)
            return
        try:
            other = asyncio.get_running_loop()
        except RuntimeError:
            other = None
        self.foreign.append("another loop" if other is not None else "thread")
        self._home.call_soon_threadsafe(super().put_nowait, item)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Delivery:
    """One run of the learner's producer thread, with a consumer on the loop."""

    returned: Any
    error: BaseException | None
    thread_done: bool
    consumer_done: bool
    received: list[Any]
    foreign: list[str]


async def _deliver(producer_thread: ProducerThread, items: tuple[Any, ...]) -> _Delivery:
    loop = asyncio.get_running_loop()
    queue = _WatchedQueue(loop)
    outcome: dict[str, Any] = {}

    finished: asyncio.Future[None] = loop.create_future()

    def mark_finished() -> None:
        if not finished.done():
            finished.set_result(None)

    def target() -> None:
        try:
            outcome["returned"] = producer_thread(loop, queue, items)
        except BaseException as exc:  # judged by the check
            outcome["error"] = exc
        finally:
            with contextlib.suppress(RuntimeError):  # the check gave up and closed its loop
                loop.call_soon_threadsafe(mark_finished)

    received: list[Any] = []

    async def consume() -> None:
        while (item := await queue.get()) is not END:
            received.append(item)

    consumer = asyncio.create_task(consume(), name="consumer")
    thread = threading.Thread(target=target, name="producer-thread", daemon=True)
    thread.start()
    # The loop keeps running meanwhile: the thread's calls get through.
    await asyncio.wait([finished], timeout=THREAD_PATIENCE)
    thread_done = finished.done()
    if not thread_done:
        finished.cancel()
    await asyncio.wait([consumer], timeout=END_PATIENCE)
    consumer_done = consumer.done()
    if not consumer_done:
        consumer.cancel()
        await asyncio.wait([consumer])
    elif not consumer.cancelled():
        consumer.exception()  # retrieved
    returned = outcome.get("returned")
    if inspect.iscoroutine(returned):
        returned.close()  # an `async def` answer: never started, nothing to wait for
    return _Delivery(
        returned=returned,
        error=outcome.get("error"),
        thread_done=thread_done,
        consumer_done=consumer_done,
        received=received,
        foreign=list(queue.foreign),
    )


def _deliver_on_a_loop_of_its_own(producer_thread: ProducerThread) -> _Delivery:
    """Run the delivery on a fresh loop in debug mode, in this (worker) thread."""
    with asyncio.Runner(debug=True, loop_factory=asyncio.new_event_loop) as runner:
        return runner.run(_deliver(producer_thread, ITEMS))


def _judge_delivery(run: _Delivery, name: str) -> None:
    if inspect.iscoroutine(run.returned):
        reject(
            f"{name}(loop, queue, items) returned a coroutine: it is an `async def`, and a "
            "thread cannot await, so none of it ran",
            f"write it as a plain `def {name}(loop, queue, items):`: it runs in a "
            "threading.Thread, and hands each item to the loop with "
            "`loop.call_soon_threadsafe(queue.put_nowait, item)`",
        )
    error = run.error
    if isinstance(error, TypeError) and "callable" in str(error):
        reject(
            "`loop.call_soon_threadsafe(queue.put_nowait(item))` calls put_nowait first, in "
            f"the thread, then hands its result, None, to the loop to call ({error})",
            "pass the function and its argument separately: "
            "`loop.call_soon_threadsafe(queue.put_nowait, item)`",
        )
    if isinstance(error, RuntimeError) and "Non-thread-safe operation" in str(error):
        reject(
            "`loop.call_soon` was called from the producer thread: it is not thread-safe "
            "(it does not wake the loop); asyncio's debug mode refused it: "
            f"RuntimeError: {error}",
            "from another thread, use `loop.call_soon_threadsafe(queue.put_nowait, item)`",
        )
    if isinstance(error, RuntimeError) and "event loop" in str(error):
        reject(
            f"the producer thread looked for an event loop of its own: RuntimeError: {error}. "
            "A thread has no running loop; the queue belongs to the loop it was given",
            "use the `loop` argument: `loop.call_soon_threadsafe(queue.put_nowait, item)`",
        )
    if error is not None:
        raise error  # a bug in the answer (or a stub): shown with its traceback
    if "another loop" in run.foreign:
        reject(
            "the thread put items into the queue from an event loop of its own "
            "(`asyncio.run(...)` in a thread starts a second loop): the queue belongs to "
            "the loop it was given, and asyncio objects are not thread-safe",
            "hand each item to the queue's own loop: `loop.call_soon_threadsafe("
            "queue.put_nowait, item)` (or `asyncio.run_coroutine_threadsafe(queue.put(item), "
            "loop).result()`)",
        )
    if run.foreign:
        reject(
            f"queue.put_nowait was called {len(run.foreign)} times from the producer thread: "
            "not thread-safe: an asyncio.Queue belongs to its loop, and a put from another "
            "thread does not wake the loop, so the waiting consumer may sleep until "
            "something else happens to wake it",
            "use loop.call_soon_threadsafe: `loop.call_soon_threadsafe(queue.put_nowait, "
            "item)` runs the put on the loop's thread, and wakes the loop",
        )
    if not run.thread_done:
        reject(
            f"{name} did not return within {THREAD_PATIENCE:g} s (delivering "
            f"{len(ITEMS)} items takes milliseconds); a thread cannot be stopped, so it "
            "is still running",
            "hand each item over without waiting for anything that never comes, then the "
            "end marker, and return",
        )
    want = list(ITEMS)
    if not run.consumer_done and run.received == want:
        reject(
            f"the consumer got all {len(ITEMS)} items but never stopped: {name} returned "
            "without sending the end marker (None), so the consumer waits for a next item "
            "forever",
            "after the last item, hand over the end marker too: "
            "`loop.call_soon_threadsafe(queue.put_nowait, None)`",
        )
    if run.received != want:
        ended = "then the end marker" if run.consumer_done else "and no end marker"
        reject(
            f"the consumer received {run.received!r}, {ended}; {name} was given "
            f"{want!r} to deliver",
            "deliver each item once, in order, one `call_soon_threadsafe` per item, then None",
        )


@exercise(2)
async def check_exercise_2(producer_thread: ProducerThread) -> str:
    """Check `producer_thread(loop, queue, items)`: every item, safely, then the end marker."""
    run = await asyncio.to_thread(_deliver_on_a_loop_of_its_own, producer_thread)
    _judge_delivery(run, getattr(producer_thread, "__name__", "producer_thread"))
    return (
        f"{len(ITEMS)} items handed from a thread to the loop, in order, then the end "
        "marker; no asyncio call was made off the loop's thread"
    )
