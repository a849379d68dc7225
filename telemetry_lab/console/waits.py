"""Say what a waiting task waits on, and whether anybody can ever end that wait.

For the package's primitives the answer is exact: every waiter sits in a `WaitQueue` that
knows its operation, its resource and its task (`wait_queues()`), and every
`MeteredSemaphore` lists the tasks in its `acquire()`. For anything else the console reads
what asyncio shows: the chain of coroutines a task is suspended in (`cr_await`), the frame
at its bottom (`asyncio.sleep`, `Queue.get`, `Lock.acquire`, ...) and the future it waits
on (a task, a gather, a plain future).
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from telemetry_lab.console._asyncio_private import awaited_future, failure, members
from telemetry_lab.console.places import Place, place_of_frame
from telemetry_lab.metrics import metered_semaphores
from telemetry_lab.primitives.select import select
from telemetry_lab.primitives.waiting import Branch, WaitQueue, wait_queues

__all__ = [
    "Waits",
    "await_chain",
    "collect_waits",
    "describe_frame_wait",
    "describe_primitive_wait",
    "location",
    "owners_of_frames",
    "why_stuck",
]

_ASYNCIO_DIR = os.path.dirname(asyncio.__file__) + os.sep
_SELECT_CODE = select.__code__
_HERE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def await_chain(coro: object) -> tuple[list[FrameType], object]:
    """The frames a suspended coroutine waits in, outermost first, and what the last awaits.

    It follows `cr_await` (coroutines), `gi_yieldfrom` (generator-based ones) and
    `ag_await` (async generators): public attributes of the coroutine protocol.
    """
    frames: list[FrameType] = []
    obj: object = coro
    for _ in range(200):  # a cycle is impossible, a very deep chain is not worth more
        frame = _frame_of(obj)
        if frame is None:
            break
        frames.append(frame)
        nxt = _awaiting(obj)
        if nxt is None:
            return frames, None
        obj = nxt
    return frames, obj


def _frame_of(obj: object) -> FrameType | None:
    for attribute in ("cr_frame", "gi_frame", "ag_frame"):
        frame = getattr(obj, attribute, None)
        if frame is not None:
            return frame  # type: ignore[no-any-return]
    return None


def _awaiting(obj: object) -> object:
    for attribute in ("cr_await", "gi_yieldfrom", "ag_await"):
        nxt = getattr(obj, attribute, None)
        if nxt is not None:
            return nxt
    return None


@dataclass
class Waits:
    """Who waits on which primitive of the package, gathered once per snapshot."""

    queues: dict[int, list[tuple[WaitQueue, object]]] = field(default_factory=dict)
    """By `id(task)`: (queue, owner handle) of every wait queue it is registered in."""
    semaphores: dict[int, Any] = field(default_factory=dict)
    """By `id(task)`: the `MeteredSemaphore` it waits to acquire."""
    resources: list[tuple[Any, list[tuple[str, asyncio.Task[Any] | None]]]] = field(
        default_factory=list
    )
    """Every resource worth a row, with (operation, task) for each of its waiters."""


def collect_waits(loop: asyncio.AbstractEventLoop) -> Waits:
    """Gather the waiters of every wait queue and metered semaphore of `loop`."""
    waits = Waits()
    by_resource: dict[int, tuple[Any, list[tuple[str, asyncio.Task[Any] | None]]]] = {}
    serials: dict[int, int] = {}
    for queue in wait_queues():
        bound = queue.binding.loop
        if bound is not None and bound is not loop:
            continue
        resource = queue.resource
        entry = by_resource.get(id(resource))
        if entry is None:
            entry = by_resource[id(resource)] = (resource, [])
        serials[id(resource)] = max(serials.get(id(resource), 0), queue.serial)
        for waiter in queue.waiters():
            entry[1].append((queue.operation, waiter.task))
            if waiter.task is not None:
                waits.queues.setdefault(id(waiter.task), []).append((queue, waiter.owner))
    for semaphore in metered_semaphores():
        tasks = list(semaphore.waiting_tasks)
        by_resource[id(semaphore)] = (semaphore, [("acquire", task) for task in tasks])
        serials[id(semaphore)] = semaphore.serial
        for task in tasks:
            if task is not None:
                waits.semaphores[id(task)] = semaphore
    # A name may be on several resources (a gateway run again in one kernel): show the
    # ones tasks wait on, else only the newest open one of that name.
    newest: dict[str, tuple[int, Any, list[Any]]] = {}
    for key, (resource, waiting) in by_resource.items():
        name = getattr(resource, "name", None)
        if waiting:
            waits.resources.append((resource, waiting))
        elif (
            name is not None
            and not getattr(resource, "closed", False)
            and (name not in newest or serials[key] > newest[name][0])
        ):
            newest[name] = (serials[key], resource, waiting)
    shown = {getattr(resource, "name", None) for resource, _ in waits.resources}
    waits.resources.extend(
        (resource, waiting) for name, (_, resource, waiting) in newest.items() if name not in shown
    )
    return waits


def describe_primitive_wait(
    waits: Waits, task: asyncio.Task[Any], frames: list[FrameType]
) -> str | None:
    """`send on channel 'telemetry' (50/50 full)`, for a task waiting on our primitives."""
    for frame in reversed(frames):
        if frame.f_code is _SELECT_CODE:
            active = frame.f_locals.get("active") or ()
            parts = [branch.describe() for _, branch in active if isinstance(branch, Branch)]
            if parts:
                return "select: " + " | ".join(parts)
    entries = waits.queues.get(id(task))
    if entries:
        parts = [f"{queue.operation} on {queue.resource.describe()}" for queue, _ in entries]
        return parts[0] if len(parts) == 1 else "select: " + " | ".join(parts)
    semaphore = waits.semaphores.get(id(task))
    if semaphore is not None:
        return f"acquire {semaphore.describe()}"
    return None


def describe_frame_wait(frames: list[FrameType], future: object) -> str:
    """What asyncio can tell about a wait: the innermost asyncio frame, else the future."""
    for frame in reversed(frames):
        if not frame.f_code.co_filename.startswith(_ASYNCIO_DIR):
            break
        said = _asyncio_frame(frame)
        if said is not None:
            return said
    if isinstance(future, asyncio.Task):
        return f"task {future.get_name()!r}"
    if future is not None and members(future):
        return f"gather of {len(members(future))}"
    return "future"


def _asyncio_frame(frame: FrameType) -> str | None:
    code = frame.f_code.co_name
    module = os.path.basename(frame.f_code.co_filename)
    local = frame.f_locals
    me = local.get("self")
    if module == "tasks.py" and code == "sleep":
        return f"sleep {_seconds(local.get('delay'))}"
    if module == "queues.py" and isinstance(me, asyncio.Queue):
        size = f"{me.qsize()}/{me.maxsize}" if me.maxsize else f"{me.qsize()}"
        operation = {"get": "get from", "put": "put on", "join": "join"}.get(code, code)
        return f"{operation} asyncio.Queue ({size} queued)"
    if module == "locks.py" and me is not None:
        kind = type(me).__name__
        state = ""
        if isinstance(me, asyncio.Lock | asyncio.Semaphore):
            state = " (locked)" if me.locked() else " (free)"
        elif isinstance(me, asyncio.Event):
            state = " (not set)" if not me.is_set() else " (set)"
        return f"{code} asyncio.{kind}{state}"
    if module == "threads.py" and code == "to_thread":
        func = local.get("func")
        return f"thread running {getattr(func, '__qualname__', func)!s}"
    if module == "tasks.py" and code in ("wait", "_wait"):
        fs = local.get("fs")
        count = len(fs) if isinstance(fs, set | list | tuple) else "some"
        return f"asyncio.wait for {count} future(s)"
    return None


def _seconds(value: object) -> str:
    return f"{value:g} s" if isinstance(value, int | float) else "?"


def location(frames: list[FrameType]) -> Place | None:
    """The innermost frame outside the machinery: where a person would look."""
    for frame in reversed(frames):
        place = place_of_frame(frame)
        if not place.internal:
            return place
    return place_of_frame(frames[-1]) if frames else None


# --- stuck: can anybody end this wait? --------------------------------------------------


def why_stuck(
    queue: WaitQueue,
    waiting: asyncio.Task[Any],
    live_frames: dict[int, asyncio.Task[Any]],
    finished: Iterable[tuple[str, asyncio.Task[Any] | None]],
) -> str | None:
    """Say why `waiting`'s wait in `queue` can never end, or None if it might.

    The resource names the open handles that could end the wait (`completers`). None left
    (each was garbage-collected without `close()`): stuck. Otherwise each handle must be
    held by a live task that is not itself waiting for `waiting` to finish; a handle
    referenced only from the frames of finished tasks (kept alive by a traceback) does not
    count. A handle held anywhere else (an object, a list) might still be used: not stuck.
    """
    completers = getattr(queue.resource, "completers", None)
    if completers is None:
        return None
    handles = completers(queue.operation)
    if handles is None:
        return None
    other = _OTHER_SIDE.get(queue.operation, "handle that could complete it")
    if not handles:
        return (
            f"no {other} is left: every one was garbage-collected without close(), "
            "so this wait can never end"
        )
    dead_owner = {id(frame): name for name, frame in _dead_frames(finished)}
    reasons: list[str] = []
    ignore = {id(handles)}
    for handle in handles:
        holders = _holders(handle, live_frames, dead_owner, ignore)
        if holders is None:
            return None  # held by something we cannot judge: maybe live
        for kind, name, task in holders:
            if kind == "live" and task is not None:
                if task is waiting or not _waits_for(task, waiting, set()):
                    return None
                reasons.append(f"task {name!r}, which is itself waiting for this task")
            else:
                reasons.append(f"the frames of finished task {name!r}")
    if not reasons:
        return None
    held = "; ".join(dict.fromkeys(reasons))
    return f"its only {other}s are held by {held}: nobody will ever complete this wait"


_OTHER_SIDE = {
    "recv": "sender",
    "changed": "sender",
    "send": "receiver",
    "closed": "receiver",
}


def _dead_frames(
    finished: Iterable[tuple[str, asyncio.Task[Any] | None]],
) -> Iterable[tuple[str, FrameType]]:
    for name, task in finished:
        exc = failure(task) if task is not None else None
        tb = exc.__traceback__ if exc is not None else None
        while tb is not None:
            yield name, tb.tb_frame
            tb = tb.tb_next


def _holders(
    handle: object,
    live_owner: dict[int, asyncio.Task[Any]],
    dead_owner: dict[int, str],
    ignore: set[int],
) -> list[tuple[str, str, asyncio.Task[Any] | None]] | None:
    """Which tasks hold `handle`: live ones (their coroutines), finished ones (frames a
    traceback keeps); None if anything else holds it (an object, a list: maybe live)."""
    holders: list[tuple[str, str, asyncio.Task[Any] | None]] = []
    for referrer in gc.get_referrers(handle):
        if id(referrer) in ignore:
            continue
        task = live_owner.get(id(referrer))
        if task is not None:
            holders.append(("live", task.get_name(), task))
        elif id(referrer) in dead_owner:
            holders.append(("dead", dead_owner[id(referrer)], None))
        elif isinstance(referrer, FrameType) and referrer.f_code.co_filename.startswith(_HERE):
            continue  # the console's own frame, looking at it
        else:
            return None
    return holders


def _waits_for(task: asyncio.Task[Any], target: asyncio.Task[Any], seen: set[int]) -> bool:
    """Whether `task` is waiting (directly or through other tasks) for `target` to end."""
    if id(task) in seen or task.done():
        return False
    seen.add(id(task))
    future = awaited_future(task)
    if future is None:
        return False
    if future is target:
        return True
    if isinstance(future, asyncio.Task) and _waits_for(future, target, seen):
        return True
    candidates: list[object] = list(members(future))
    frames, _ = await_chain(task.get_coro())
    for frame in frames:
        holder = frame.f_locals.get("self")
        if holder is not None:
            candidates.extend(members(holder))
    for candidate in candidates:
        if candidate is target:
            return True
        if isinstance(candidate, asyncio.Task) and _waits_for(candidate, target, seen):
            return True
    return False


def owners_of_frames(tasks: Iterable[asyncio.Task[Any]]) -> dict[int, asyncio.Task[Any]]:
    """`id()` -> task, for every coroutine and frame of every live task's await chain.

    A suspended coroutine's locals are referenced by the coroutine object (its frame is
    part of it since Python 3.11) or by its frame object: both are mapped.
    """
    owners: dict[int, asyncio.Task[Any]] = {}
    for task in tasks:
        if task.done():
            continue
        obj: object = task.get_coro()
        for _ in range(200):
            frame = _frame_of(obj)
            if frame is None:
                break
            owners[id(obj)] = task
            owners[id(frame)] = task
            obj = _awaiting(obj)
            if obj is None:
                break
    return owners
