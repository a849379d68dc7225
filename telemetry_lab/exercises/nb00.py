"""Check the exercises of notebook 00: run work concurrently, count the gateway's tasks.

Exercise 1 hands the learner's `fetch_all(fetch, ids)` a `fetch` of the checker's own that
counts how many fetches are running at once, so concurrency is measured without patching
anything (not `asyncio.sleep`, not the loop). Exercise 2 runs the learner's
`count_tasks(db_path)` against a fresh database file and reads back what the gateway wrote.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sqlite3
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from telemetry_lab.errors import LoopAlreadyRunning
from telemetry_lab.exercises._check import cancel_new_tasks, exercise, reject
from telemetry_lab.models import Report

__all__ = ["check_exercise_1", "check_exercise_2"]

Fetch = Callable[[int], Awaitable[str]]
FetchAll = Callable[[Fetch, list[int]], Awaitable[Any]]
CountTasks = Callable[[Path], Awaitable[Any]]

IDS = [1, 2, 3, 4, 5]
STEP = 0.01
"""Seconds of work per place from the end: device 5 answers after 0.01 s, device 1 after 0.05 s."""
FETCH_LIMIT = 2.0
"""Seconds `fetch_all` may take (0.05 s when the fetches overlap, 0.15 s one by one)."""
GATEWAY_LIMIT = 5.0
"""Seconds `count_tasks` may take (a 0.3 s run takes about that; the default run takes 10 s)."""


def reading(device_id: int) -> str:
    """What the checker's `fetch(device_id)` returns."""
    return f"reading from device {device_id}"


def _discard(value: object) -> None:
    """Close or cancel an awaitable the answer returned instead of awaiting it."""
    if inspect.iscoroutine(value):
        value.close()
    elif isinstance(value, asyncio.Future):
        value.cancel()


@exercise(1)
async def check_exercise_1(fetch_all: FetchAll) -> str:
    """Check `fetch_all(fetch, ids)`: every fetch running at once, results in the order of ids."""
    started: list[int] = []  # ids in the order their fetch began
    finished: list[int] = []  # ...and in the order it ended
    running = most = 0

    async def fetch(device_id: int) -> str:
        nonlocal running, most
        started.append(device_id)
        running += 1
        most = max(most, running)
        try:
            await asyncio.sleep(STEP * (len(IDS) + 1 - device_id))  # later ids answer sooner
        finally:
            running -= 1
        finished.append(device_id)
        return reading(device_id)

    before = asyncio.all_tasks()
    try:
        async with asyncio.timeout(FETCH_LIMIT):
            result = await fetch_all(fetch, list(IDS))
    except TimeoutError:
        reject(
            f"fetch_all did not return within {FETCH_LIMIT:g} s, although the five fetches "
            "take 0.05 s when they overlap",
            "await each task you started, once, and nothing else: a task that was never "
            "started, or an Event nobody sets, waits forever",
        )
    finally:
        left_running = await cancel_new_tasks(before)

    items = list(result) if isinstance(result, list | tuple) else None
    if inspect.isawaitable(result) or any(inspect.isawaitable(r) for r in items or []):
        for value in [result, *(items or [])]:
            _discard(value)
        reject(
            "fetch_all returned coroutines or tasks, not their results (an `await` is missing)",
            "await them before returning: `[await task for task in tasks]`, or "
            "`await asyncio.gather(...)`",
        )
    if items is None:
        reject(
            f"fetch_all returned {type(result).__name__}, not a list of results",
            "collect what each fetch gives back in a list, and return that list",
        )
    if sorted(started) != IDS:
        twice = sorted({i for i in started if started.count(i) > 1})
        if twice:
            reject(
                f"fetch ran more than once for device(s) {twice}",
                "call `fetch(i)` exactly once for each `i` in `ids`; await each task only once",
            )
        reject(
            f"fetch ran for devices {sorted(started)} only, not for every id in {IDS}",
            "call `fetch(i)` once for each `i` in `ids`, and await every one of them",
        )
    if most == 1:
        reject(
            "the fetches ran one after the other: never more than 1 at a time",
            "start them all before you wait for any: `asyncio.create_task(fetch(i))` for every "
            "id, then await the tasks; or `await asyncio.gather(*(fetch(i) for i in ids))`; "
            "or a `TaskGroup`",
        )
    if most < len(IDS):
        reject(
            f"at most {most} of the {len(IDS)} fetches ran at the same time",
            "create every task first, then await them: an `await` inside the loop that creates "
            "them waits for one fetch before the next one starts",
        )
    if left_running:
        reject(
            f"fetch_all returned while {left_running} task(s) it started were still running "
            "(the check cancelled them)",
            "a task needs an owner: await every task you create before you return",
        )
    if items == [reading(i) for i in finished] and finished != IDS:
        reject(
            "the results are in the order the fetches finished (device 5 first), not in the "
            "order of `ids`",
            "keep the tasks in a list, in the order of `ids`, and await them in that order "
            "(`asyncio.gather` returns its results in the order of its arguments)",
        )
    if items != [reading(i) for i in IDS]:
        reject(
            f"fetch_all returned {len(items)} item(s) that are not the fetches' results, one "
            "per id, in the order of `ids`",
            "return exactly what each `fetch(i)` gave back, in the order of `ids`, nothing else",
        )
    return f"all {len(IDS)} fetches ran at the same time, results in the order of ids"


def _read_run(db_path: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The config and report of the last run recorded in `db_path`, or None if there is none."""
    if not db_path.is_file():
        return None
    conn = sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True)
    try:
        row = conn.execute(
            "SELECT config, report FROM runs ORDER BY run_id DESC LIMIT 1"
        ).fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    if row is None or row[1] is None:
        return None
    config, report = json.loads(row[0]), json.loads(row[1])
    return config, report


@exercise(2)
async def check_exercise_2(count_tasks: CountTasks) -> str:
    """Check `count_tasks(db_path)`: a 3-device, 2-client run there, its task count returned."""
    with tempfile.TemporaryDirectory(prefix="telemetry-lab-exercise-2-") as folder:
        db_path = Path(folder) / "exercise2.db"
        before = asyncio.all_tasks()
        try:
            async with asyncio.timeout(GATEWAY_LIMIT):
                n = await count_tasks(db_path)
        except TimeoutError:
            reject(
                f"count_tasks did not return within {GATEWAY_LIMIT:g} s",
                "run the gateway briefly: `GatewayConfig(..., duration=0.3)` (the default run "
                "lasts 10 s), and `await` it",
            )
        except LoopAlreadyRunning:
            reject(
                "count_tasks called the blocking `run()`, which refuses to run inside the "
                "loop that is already running",
                "`report = await run_gateway(config)`: in a notebook, await",
            )
        finally:
            await cancel_new_tasks(before)
        run = _read_run(db_path)

    if isinstance(n, Report):
        reject(
            "count_tasks returned the whole Report, not the number of tasks",
            "return one field of it: `report.tasks_started`",
        )
    if inspect.isawaitable(n):
        _discard(n)
        reject(
            "count_tasks returned a coroutine or a task: the gateway never ran to the end",
            "`report = await run_gateway(config)`, then return `report.tasks_started`",
        )
    if run is None:
        reject(
            "no finished run was recorded in the database at `db_path`: the gateway wrote "
            "somewhere else, or did not run",
            "pass the path on: `GatewayConfig(devices=3, clients=2, duration=0.3, "
            "db_path=db_path)`, then `await run_gateway(config)`",
        )
    config, report = run
    devices, clients = config["devices"], config["clients"]
    if (devices, clients) != (3, 2):
        reject(
            f"the gateway ran with {devices} devices and {clients} clients, not 3 and 2",
            "set both in the config: `GatewayConfig(devices=3, clients=2, duration=0.3, "
            "db_path=db_path)`",
        )
    if isinstance(n, bool) or not isinstance(n, int):
        reject(
            f"count_tasks returned {type(n).__name__}, not a number of tasks",
            "return `report.tasks_started`, an int",
        )
    started = report.get("tasks_started")
    if n == devices + clients and n != started:
        reject(
            f"{n} counts the devices and the clients only",
            "the aggregator and the storage writer are tasks too: return "
            "`report.tasks_started` instead of adding it up",
        )
    if n != started:
        reject(
            f"count_tasks returned {n}, but the run's report says {started} tasks started",
            "return the report's count, `report.tasks_started`, rather than a number of your own",
        )
    return f"{n} tasks: 3 devices, 2 clients, the aggregator and the storage writer"
