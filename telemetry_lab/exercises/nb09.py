"""Check the exercises of notebook 09: remove a race with a lock, keep state in one owner task.

Exercise 1 calls the learner's `add_reading(totals, lock, key, value)`, first one call at a
time, then thirty at once. It hands over a lock and a dict that take notes: the lock knows
which task holds it (and sees a task acquire it a second time), the dict records every
read and write with whether the task doing it held the lock, and `audit()` records that it
was awaited, under the lock or not. From those notes the check names the mistake: no lock,
a new lock on every call, a lock around the write only, a read outside it, a write after
it, a nested acquire (asyncio.Lock is not reentrant), or a lock never released.

Exercise 2 runs the learner's `counter_owner(rx)` on a real channel with several senders at
once: first only ("add", key, n) messages, then ("get", key, reply) requests as well. Its
receiver notices an owner that polls a closed channel in a loop that never waits (it would
freeze the kernel), and the check bounds every other wait.

Both own every task they start and finish it, and close every channel handle they made,
before they return.
"""

from __future__ import annotations

import ast
import asyncio
import contextvars
import inspect
import textwrap
from collections import UserDict
from collections.abc import Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from telemetry_lab.errors import ChannelClosed
from telemetry_lab.exercises._check import cancel_new_tasks, exercise, reject
from telemetry_lab.exercises._spinning import Spinning, WatchedReceiver
from telemetry_lab.primitives import Receiver, Sender, channel

__all__ = ["Spinning", "audit", "check_exercise_1", "check_exercise_2"]

T = TypeVar("T")

AddReading = Callable[[Any, asyncio.Lock, str, float], Awaitable[Any]]
CounterOwner = Callable[[Receiver[Any]], Awaitable[Any]]

PATIENCE = 0.5
"""Seconds a check waits for the answer: every right answer needs a few milliseconds."""
KEYS = ("device-1", "device-2", "device-3")
"""The totals Exercise 1 adds to at once."""
READINGS_EACH = 10
"""How many readings of 1.0 Exercise 1 adds to each of `KEYS`, all calls at once."""
SENDERS = 5
"""How many tasks send to Exercise 2's owner at once."""
ADDS_EACH = 10
"""How many ("add", ...) messages each sender sends in Exercise 2's first run."""


# --- Exercise 1: remove the race -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Note:
    """One thing a call did: read or write a total, or await the audit."""

    kind: Literal["read", "write", "audit"]
    task: asyncio.Task[Any] | None
    key: str
    locked: bool
    """Whether the task doing it held the check's lock."""


_NOTES: contextvars.ContextVar[list[_Note] | None] = contextvars.ContextVar(
    "telemetry_lab_nb09_notes", default=None
)
"""Where `audit()` notes that it was awaited: set only in the tasks a check creates."""
_HOLDER: contextvars.ContextVar[_WatchedLock | None] = contextvars.ContextVar(
    "telemetry_lab_nb09_lock", default=None
)
"""The check's lock, in the tasks a check creates (so that `audit()` can ask who holds it)."""


class _Audit:
    """What `audit()` returns: awaiting it notes the audit (in a check) and yields once."""

    __slots__ = ("_key",)

    def __init__(self, key: str) -> None:
        self._key = key

    def __await__(self) -> Generator[None, None, None]:
        notes, lock = _NOTES.get(), _HOLDER.get()
        if notes is not None:
            held = lock is not None and lock.held_here()
            notes.append(_Note("audit", asyncio.current_task(), self._key, held))
        yield  # a bare yield: the task steps aside for one turn of the loop, as sleep(0)


def audit(key: str, old: float, new: float) -> Awaitable[None]:
    """Audit a change of `key`'s total from `old` to `new`: `await audit(key, old, new)`.

    Like a real audit (a log line written, a remote service asked) it takes a moment:
    awaiting it lets the other tasks run once before yours goes on. It approves every
    change, so it returns nothing.
    """
    del old, new  # approved
    return _Audit(key)


class _WatchedLock(asyncio.Lock):
    """An `asyncio.Lock` that knows which task holds it, and sees a nested acquire."""

    def __init__(self) -> None:
        super().__init__()
        self.owner: asyncio.Task[Any] | None = None
        self.acquired = 0
        self.nested = False

    async def acquire(self) -> Literal[True]:
        me = asyncio.current_task()
        if me is not None and self.owner is me:
            self.nested = True  # this task holds it already: it will wait for itself
        await super().acquire()
        self.owner = me
        self.acquired += 1
        return True

    def release(self) -> None:
        super().release()
        self.owner = None

    def held_here(self) -> bool:
        return self.owner is not None and self.owner is asyncio.current_task()


class _Totals(UserDict[str, float]):
    """A dict of totals that notes every read and write, and whether the lock was held."""

    def __init__(self, lock: _WatchedLock, notes: list[_Note], initial: dict[str, float]) -> None:
        self._lock = lock
        self._notes = notes
        super().__init__()
        self.data.update(initial)  # not through __setitem__: these are not the answer's writes

    def _note(self, kind: Literal["read", "write"], key: object) -> None:
        task = asyncio.current_task()
        self._notes.append(_Note(kind, task, str(key), self._lock.held_here()))

    def __getitem__(self, key: str) -> float:
        self._note("read", key)
        return self.data[key]

    def __contains__(self, key: object) -> bool:
        self._note("read", key)
        return key in self.data

    def __setitem__(self, key: str, value: float) -> None:
        self._note("write", key)
        self.data[key] = value

    def get(self, key: str, default: Any = None) -> Any:
        self._note("read", key)
        return self.data.get(key, default)


@dataclass(slots=True, kw_only=True)
class _Calls:
    """What a batch of calls of `add_reading` did."""

    totals: _Totals
    lock: _WatchedLock
    notes: list[_Note]
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    pending: int = 0

    def of(self, task: asyncio.Task[Any]) -> list[_Note]:
        return [note for note in self.notes if note.task is task]


def _creates_a_lock(answer: object) -> bool:
    """Whether the answer's source calls `Lock(...)` or `Semaphore(...)` (a lock per call)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(answer)))  # type: ignore[arg-type]
    except (OSError, TypeError, SyntaxError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("Lock", "Semaphore", "BoundedSemaphore"):
                return True
    return False


async def _add_readings(
    add_reading: AddReading, calls: Iterable[tuple[str, float]], initial: dict[str, float]
) -> _Calls:
    """Run `add_reading` for every (key, value) of `calls` at once, each in a task of its own."""
    notes: list[_Note] = []
    lock = _WatchedLock()
    totals = _Totals(lock, notes, initial)
    run = _Calls(totals=totals, lock=lock, notes=notes)
    for i, (key, value) in enumerate(calls):
        context = contextvars.copy_context()
        context.run(_NOTES.set, notes)
        context.run(_HOLDER.set, lock)
        coro = _call(add_reading, totals, lock, key, value)
        run.tasks.append(asyncio.create_task(coro, name=f"add-reading-{i}", context=context))
    _, pending = await asyncio.wait(run.tasks, timeout=PATIENCE)
    run.pending = len(pending)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    errors = [t.exception() for t in run.tasks if not t.cancelled() and t.exception()]
    if errors:
        raise errors[0]  # type: ignore[misc]  # a bug in the answer, or a stub
    return run


async def _call(add_reading: AddReading, totals: _Totals, lock: _WatchedLock, key: str,
                value: float) -> None:  # fmt: skip
    pending = add_reading(totals, lock, key, value)
    if not inspect.isawaitable(pending):
        reject(
            f"add_reading(...) returned a {type(pending).__name__}, not something to await",
            "write it as `async def add_reading(totals, lock, key, value):`",
        )
    await pending


def _judge_order(run: _Calls) -> None:
    """Every call reads the total, awaits the audit, then writes: in that order, once each."""
    for task in run.tasks:
        kinds = [note.kind for note in run.of(task)]
        if "audit" not in kinds:
            reject(
                "add_reading never awaited audit(key, old, new): every change must be "
                "audited before it is written"
                + (" (an `audit(...)` without `await` does nothing)" if kinds else ""),
                "keep the three steps: read the total, `await audit(key, old, new)`, write "
                "the new total",
            )
        if "write" not in kinds:
            reject(
                "add_reading never wrote the new total into `totals`",
                "finish with `totals[key] = new`",
            )
        if kinds.count("audit") > 1:
            reject(
                f"add_reading awaited audit {kinds.count('audit')} times for one reading",
                "audit each change once: `await audit(key, old, new)`",
            )
        if kinds.index("write") < kinds.index("audit"):
            reject(
                "add_reading wrote the new total before awaiting its audit: the audit must "
                "approve the change before it lands",
                "read, `await audit(key, old, new)`, and only then write",
            )


async def _judge_one_at_a_time(add_reading: AddReading) -> None:
    """One call alone: the arithmetic, the order, a lock left held or taken twice."""
    key = "device-9"
    first = await _add_readings(add_reading, [(key, 2.5)], {key: 1.5})
    if first.pending:
        if first.lock.nested:
            reject(
                f"add_reading did not return within {PATIENCE:g} s: it acquired the lock "
                "while already holding it, and waits for itself forever (a deadlock); "
                "asyncio.Lock is not reentrant",
                "take the lock once per call: one `async with lock:` around the read, the "
                "audit and the write, and no second `async with lock:` (or helper that "
                "takes it) inside",
            )
        reject(
            f"add_reading did not return within {PATIENCE:g} s (one reading, no other "
            "call running)",
            "await only the audit: read, `await audit(key, old, new)`, write, under the lock",
        )
    if first.lock.locked():
        reject(
            "add_reading returned still holding the lock (`lock.acquire()` without "
            "`lock.release()`): the next call would wait for it forever",
            "use `async with lock:`, which releases it however the block ends",
        )
    _judge_order(first)
    got = first.totals.data[key]
    if got != 4.0:
        reject(
            f"add_reading(totals, lock, {key!r}, 2.5) left totals[{key!r}] at {got!r}, "
            "not 1.5 + 2.5",
            "the new total is the old one plus `value`: `totals[key] = old + value`",
        )


async def _judge_at_once(add_reading: AddReading) -> str:
    calls = [(key, 1.0) for _ in range(READINGS_EACH) for key in KEYS]
    run = await _add_readings(add_reading, calls, dict.fromkeys(KEYS, 0.0))
    if run.pending:
        nested = " (it acquired the lock while holding it: asyncio.Lock is not reentrant)"
        reject(
            f"{run.pending} of {len(calls)} calls of add_reading made at once did not return "
            f"within {PATIENCE:g} s" + (nested if run.lock.nested else ""),
            "take the lock once per call, with `async with lock:`, and await nothing but "
            "the audit inside it",
        )
    _judge_order(run)
    want = float(READINGS_EACH)
    lost = round(sum(want - run.totals.data[key] for key in KEYS))
    what = (
        f"{lost} of the {len(calls)} readings were lost: each total should be {want:g}, got "
        + ", ".join(f"{key} {run.totals.data[key]:g}" for key in KEYS)
    )
    read_outside = [n for n in run.notes if n.kind == "read" and not n.locked]
    audit_outside = [n for n in run.notes if n.kind == "audit" and not n.locked]
    write_outside = [n for n in run.notes if n.kind == "write" and not n.locked]
    if run.lock.acquired == 0:
        if _creates_a_lock(add_reading):
            reject(
                f"add_reading made a new lock on every call, so each call locked its own "
                f"and nothing was excluded: {what}",
                "use the one lock you are given, the `lock` argument, shared by every "
                "call: `async with lock:`",
            )
        reject(
            f"no lock: calls read the same total, awaited the audit, and wrote over each "
            f"other's updates; {what}",
            "hold the lock from the read to the write: `async with lock:` around the read, "
            "`await audit(...)` and the write",
        )
    if read_outside and audit_outside and not write_outside:
        reject(
            f"the lock was taken only around the write: the read and the audit happen "
            f"before it, so calls still read the same old total; {what}",
            "take it before the read: the read, the audit and the write all inside one "
            "`async with lock:`",
        )
    if read_outside:
        reject(
            f"the total was read outside the lock, before `async with lock:`, so calls "
            f"still read the same old total while another one was auditing; {what}",
            "move the read inside: the read, the audit and the write all inside one "
            "`async with lock:`",
        )
    if audit_outside and write_outside:
        reject(
            f"the lock was taken only around the read: it was released before the audit, "
            f"so other calls read the same old total meanwhile; {what}",
            "keep it until the write: the read, the audit and the write all inside one "
            "`async with lock:`",
        )
    if write_outside and not audit_outside:
        reject(
            "the new total was written after the lock was released; here the totals came "
            "out right only because nothing awaits between the release and the write, and "
            "the next change to the code (a log call awaited there) brings the race back"
            + (f"; {what}" if lost else ""),
            "keep the write inside the `async with lock:` block, with the read and the audit",
        )
    if audit_outside and lost:
        reject(
            f"the lock was let go during the audit (two `async with lock:` blocks, one for "
            f"the read and one for the write), so other calls read the old total "
            f"meanwhile; {what}",
            "hold it without a break: the read, the audit and the write all inside one "
            "`async with lock:`",
        )
    if lost or any(run.totals.data[key] != want for key in KEYS):
        reject(what, "the new total is the old one plus `value`, read and written under the lock")
    return (
        f"{len(calls)} readings added at once to {len(KEYS)} totals, none lost; every read, "
        "audit and write under the lock"
    )


@exercise(1)
async def check_exercise_1(add_reading: AddReading) -> str:
    """Check `add_reading(totals, lock, key, value)`: no update lost, calls made at once."""
    before = asyncio.all_tasks()
    try:
        await _judge_one_at_a_time(add_reading)
        return await _judge_at_once(add_reading)
    finally:
        await cancel_new_tasks(before)


# --- Exercise 2: one owner task --------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class _Run:
    """One run of the learner's owner, with senders at once."""

    what: str
    owner_done: bool = False
    error: BaseException | None = None
    returned: Any = None
    senders_done: bool = False
    sent: int = 0
    """Messages the channel accepted."""
    received: int = 0
    """Messages the owner took out of the channel."""
    answers: dict[str, Any] = field(default_factory=dict)
    """What each get request was answered, by key."""
    unanswered: list[str] = field(default_factory=list)
    """The keys of the get requests whose reply never came."""
    replies: list[asyncio.Future[Any]] = field(default_factory=list)


async def _adder(tx: Sender[Any], i: int, run: _Run) -> None:
    with tx:
        for _ in range(ADDS_EACH // 2):
            await tx.send(("add", "all", 1))
            run.sent += 1
            await tx.send(("add", f"sender-{i}", 2))
            run.sent += 1


async def _asker(tx: Sender[Any], key: str, adds: int, run: _Run) -> None:
    loop = asyncio.get_running_loop()
    with tx:
        for _ in range(adds):
            await tx.send(("add", key, 1))
            run.sent += 1
        reply: asyncio.Future[Any] = loop.create_future()
        run.replies.append(reply)
        await tx.send(("get", key, reply))
        run.sent += 1
        run.unanswered.append(key)
        run.answers[key] = await reply
        run.unanswered.remove(key)


async def _run_owner(
    counter_owner: CounterOwner,
    what: str,
    senders: Callable[[Callable[[], Sender[Any]], _Run], list[Awaitable[None]]],
) -> _Run:
    run = _Run(what=what)
    tx, plain_rx = channel[Any](4, name="counter")
    rx = WatchedReceiver(plain_rx)
    pending = counter_owner(rx)
    if not inspect.isawaitable(pending):
        tx.close()
        rx.close()
        reject(
            f"counter_owner(rx) returned a {type(pending).__name__}, not something to await",
            "write it as `async def counter_owner(rx):`",
        )
    owner: asyncio.Future[Any] = asyncio.ensure_future(pending)
    clones: list[Sender[Any]] = []

    def clone() -> Sender[Any]:
        clones.append(tx.clone())
        return clones[-1]

    with tx:  # only the clones stay open: each sender closes its own when it is done
        workers = [asyncio.ensure_future(job) for job in senders(clone, run)]
    everyone = [owner, *workers]
    try:
        await asyncio.wait([owner], timeout=PATIENCE)
        if owner.done():  # the senders are done by now, or stuck for good: no more waiting
            await asyncio.wait(workers, timeout=0.05)
        run.owner_done = owner.done()
        run.senders_done = all(worker.done() for worker in workers)
        run.received = rx.statistics().total_received
    finally:
        for task in everyone:
            task.cancel()  # a done one ignores it
        rx.close()  # a sender still waiting for room gets ChannelClosed
        await asyncio.wait(everyone)
        for handle in clones:
            handle.close()  # a sender cancelled before it started never closed its own
        for reply in run.replies:
            reply.cancel()
        for worker in workers:
            if not worker.cancelled():
                worker.exception()  # retrieved
    if run.owner_done and not owner.cancelled():
        run.error = owner.exception()
        if run.error is None:
            run.returned = owner.result()
    if isinstance(run.error, Spinning):
        reject(
            f"counter_owner kept receiving from the closed channel ({what}) in a loop that "
            "never waits: ChannelClosed was caught and the loop went round again, which "
            "freezes the kernel",
            "loop with `async for message in rx:`; it ends by itself once every sender is "
            "closed and the channel drained",
        )
    if isinstance(run.error, ChannelClosed):
        reject(
            f"ChannelClosed escaped from counter_owner ({what}): `await rx.recv()` raises it "
            "once every sender is closed and the channel is drained",
            "loop with `async for message in rx:`, which simply ends there; then return the dict",
        )
    return run


def _judge_ended(run: _Run, total: int) -> None:
    if not run.owner_done and not run.senders_done and not run.unanswered:
        reject(
            f"the senders were still waiting for room after {PATIENCE:g} s ({run.what}): "
            f"counter_owner took {run.received} of the {total} messages and then stopped "
            "receiving",
            "receive every message, one after another: `async for message in rx:`",
        )
    if not run.owner_done and not run.unanswered:
        reject(
            f"counter_owner did not return within {PATIENCE:g} s after every sender had "
            f"closed ({run.what}): its loop did not end with the channel",
            "loop with `async for message in rx:`: it ends once every sender is closed and "
            "the channel drained; then `return` the dict",
        )


def _judge_counts(run: _Run, want: dict[str, int], total: int) -> None:
    got = run.returned
    if run.owner_done and run.error is None and not isinstance(got, dict):
        reject(
            f"counter_owner returned {type(got).__name__} ({run.what}), not the dict of counts",
            "`return counts` after the loop",
        )
    if {key: n for key, n in got.items() if n != 0} == want:
        return  # a key a get created at 0 (a defaultdict's way) counts as never added
    if run.received < total:
        reject(
            f"counter_owner returned after taking {run.received} of the {total} messages "
            f"({run.what}): it stopped before the channel had ended, and the rest were "
            "dropped",
            "`async for message in rx:` runs until every sender is closed *and* the "
            "channel is drained; `rx.is_closed` is True while messages are still buffered, "
            "and `len(rx) == 0` only means none is buffered yet",
        )
    kept = {key: got.get(key, 0) for key in want}
    reject(
        f"counter_owner took all {total} messages but the counts came out {kept}, not "
        f"{want} ({run.what}): some ('add', key, n) messages were dropped or not added in "
        "full",
        "for every ('add', key, n): `counts[key] = counts.get(key, 0) + n`, with no "
        "condition that skips any",
    )


@exercise(2)
async def check_exercise_2(counter_owner: CounterOwner) -> str:
    """Check `counter_owner(rx)`: every add applied, every get answered, ends with the channel."""
    before = asyncio.all_tasks()
    try:
        total = SENDERS * ADDS_EACH
        what = f"{SENDERS} senders at once, {ADDS_EACH} ('add', key, n) messages each"
        run = await _run_owner(
            counter_owner,
            what,
            lambda clone, run: [_adder(clone(), i, run) for i in range(SENDERS)],
        )
        if run.error is not None:
            raise run.error  # a bug in the answer (or a stub): shown with its traceback
        _judge_ended(run, total)
        want = {"all": total // 2} | {f"sender-{i}": ADDS_EACH for i in range(SENDERS)}
        _judge_counts(run, want, total)

        what = "adds, then a ('get', key, reply) request, from each of 4 senders at once"
        asked = {"device-1": 3, "device-2": 1, "device-3": 2, "never-added": 0}
        total = sum(asked.values()) + len(asked)
        run = await _run_owner(
            counter_owner,
            what,
            lambda clone, run: [_asker(clone(), key, n, run) for key, n in asked.items()],
        )
        _judge_gets(run, asked)
        _judge_ended(run, total)
        _judge_counts(run, {key: n for key, n in asked.items() if n}, total)
    finally:
        await cancel_new_tasks(before)
    return (
        f"{SENDERS * ADDS_EACH} adds from {SENDERS} senders at once, none lost; "
        f"{len(asked)} gets answered; ended when the channel closed"
    )


def _judge_gets(run: _Run, asked: dict[str, int]) -> None:
    error = run.error
    if isinstance(error, KeyError) and error.args == ("never-added",):
        reject(
            f"counter_owner failed with KeyError('never-added') ({run.what}): a get asked "
            "for a key that was never added",
            "a key never added counts 0: answer `counts.get(key, 0)`",
        )
    if error is not None and not isinstance(error, NotImplementedError):
        reject(
            f"counter_owner failed on a ('get', key, reply) message ({run.what}): "
            f"{type(error).__name__}: {error}",
            "tell the two kinds apart by their first item: `match message:` with "
            "`case ('add', key, n):` and `case ('get', key, reply):`",
        )
    if error is not None:
        raise error  # the stub
    if run.unanswered:
        keys = ", ".join(repr(key) for key in sorted(run.unanswered))
        reject(
            f"{len(run.unanswered)} get request(s) were never answered ({run.what}): the "
            f"requester of {keys} waits on its reply future forever",
            "answer each ('get', key, reply) with `reply.set_result(counts.get(key, 0))`",
        )
    for key, n in asked.items():
        got = run.answers.get(key)
        if isinstance(got, dict):
            reject(
                f"get({key!r}) was answered with a whole dict ({run.what}), the owner's own "
                "if it is not a copy: a reference the requester could change behind the "
                "owner's back",
                "answer the count of that key alone, an int: `reply.set_result(counts.get("
                "key, 0))`",
            )
        if got != n:
            reject(
                f"get({key!r}) was answered {got!r}, not {n} ({run.what}): it was sent "
                f"after that sender's {n} add(s) of 1, so all of them were applied by then",
                "answer the count as it is when the get arrives: "
                "`reply.set_result(counts.get(key, 0))`",
            )
