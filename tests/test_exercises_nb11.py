"""The checkers of notebook 11 accept a right answer and explain the classic wrong ones."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from telemetry_lab import Console
from telemetry_lab.exercises import ExerciseRejected
from telemetry_lab.exercises.nb11 import (
    DEVICES,
    END,
    ITEMS,
    QUERY_SECONDS,
    check_exercise_1,
    check_exercise_2,
    create_readings_db,
    latest_reading,
)

HERE = Path(__file__).name


def line_of(marker: str) -> str:
    """`test_exercises_nb11.py:N`: the line of this file that ends with `# marker`."""
    for number, text in enumerate(Path(__file__).read_text().splitlines(), start=1):
        if text.rstrip().endswith(f"# {marker}"):
            return f"{HERE}:{number}"
    raise AssertionError(f"no line marked {marker!r}")


async def stub(*args: Any) -> Any:
    # Your answer here: replace the next line.
    raise NotImplementedError


def thread_stub(loop: Any, queue: Any, items: Any) -> None:
    raise NotImplementedError


def only_the_test_runs() -> None:
    assert asyncio.all_tasks() == {asyncio.current_task()}, asyncio.all_tasks()


def test_latest_reading_reads_the_latest_row_slowly(tmp_path: Path) -> None:
    path = create_readings_db(tmp_path / "r.db")
    with contextlib.closing(sqlite3.connect(path)) as conn:
        started = time.monotonic()
        assert latest_reading(conn, "device-2") == {"device": "device-2", "celsius": 22.0}
        assert time.monotonic() - started >= QUERY_SECONDS["device-2"]
        with pytest.raises(LookupError, match="device-9"):
            latest_reading(conn, "device-9")
    create_readings_db(path)  # replaces the file: safe to re-run
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT count(*) FROM readings").fetchone() == (12,)


async def test_a_stub_is_not_attempted_and_raises_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert not (await check_exercise_1(stub)).passed
    assert not (await check_exercise_2(thread_stub)).passed
    out = capsys.readouterr().out
    assert out.startswith("⏳ Exercise 1 is not attempted yet: replace `raise NotImplementedError`")
    assert "⏳ Exercise 2 is not attempted yet" in out
    with pytest.raises(NotImplementedError):
        await check_exercise_1(stub, solution=True)
    with pytest.raises(NotImplementedError):
        await check_exercise_2(thread_stub, solution=True)


# --- Exercise 1: lookup_all --------------------------------------------------------------


def lookup_one(db_path: Path, device: str) -> dict[str, Any]:
    with contextlib.closing(sqlite3.connect(db_path)) as conn:  # made in the worker thread
        return latest_reading(conn, device)


async def lookup_all(db_path: Path, devices: Sequence[str]) -> list[dict[str, Any]]:
    return await asyncio.gather(*(asyncio.to_thread(lookup_one, db_path, d) for d in devices))


async def with_run_in_executor(db_path: Path, devices: Sequence[str]) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    return await asyncio.gather(
        *(loop.run_in_executor(None, lookup_one, db_path, d) for d in devices)
    )


async def queries_on_the_loop(db_path: Path, devices: Sequence[str]) -> list[dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        return [latest_reading(conn, d) for d in devices]  # the blocking query


async def calls_it_eagerly(db_path: Path, devices: Sequence[str]) -> list[dict[str, Any]]:
    return await asyncio.gather(
        *(asyncio.to_thread(lookup_one(db_path, d)) for d in devices)  # type: ignore[arg-type]
    )


async def shares_one_connection(db_path: Path, devices: Sequence[str]) -> list[dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(db_path)) as conn:  # made on the loop's thread
        return await asyncio.gather(*(asyncio.to_thread(latest_reading, conn, d) for d in devices))


async def forgets_to_await_gather(db_path: Path, devices: Sequence[str]) -> Any:
    return asyncio.gather(*(asyncio.to_thread(lookup_one, db_path, d) for d in devices))


async def returns_coroutines(db_path: Path, devices: Sequence[str]) -> Any:
    return [asyncio.to_thread(lookup_one, db_path, d) for d in devices]


async def one_after_another(db_path: Path, devices: Sequence[str]) -> list[dict[str, Any]]:
    return [await asyncio.to_thread(lookup_one, db_path, d) for d in devices]


async def as_they_finish(db_path: Path, devices: Sequence[str]) -> list[dict[str, Any]]:
    threads = [asyncio.to_thread(lookup_one, db_path, d) for d in devices]
    return [await next_one for next_one in asyncio.as_completed(threads)]


def plain_lookup_all(db_path: Path, devices: Sequence[str]) -> list[dict[str, Any]]:
    return [{"device": d, "celsius": 0.0} for d in devices]


def quick_query(db_path: Path, device: str) -> dict[str, Any]:
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        row = conn.execute(
            "SELECT device, celsius FROM readings WHERE device = ? ORDER BY seq DESC LIMIT 1",
            (device,),
        ).fetchone()
    return {"device": row[0], "celsius": row[1]}


async def skips_latest_reading(db_path: Path, devices: Sequence[str]) -> list[dict[str, Any]]:
    return await asyncio.gather(*(asyncio.to_thread(quick_query, db_path, d) for d in devices))


async def returns_celsius_only(db_path: Path, devices: Sequence[str]) -> list[float]:
    readings = await lookup_all(db_path, devices)
    return [r["celsius"] for r in readings]


async def has_a_bug(db_path: Path, devices: Sequence[str]) -> list[float]:
    readings = await lookup_all(db_path, devices)
    return [r["fahrenheit"] for r in readings]


async def test_exercise_1_accepts_the_solution(capsys: pytest.CaptureFixture[str]) -> None:
    assert (await check_exercise_1(lookup_all)).passed
    out = capsys.readouterr().out
    assert out.startswith("✅ Exercise 1 passed: 4 queries side by side in 0.2"), out
    assert out.endswith(
        "s (one after another: 0.57 s), readings in order, and no step blocked the loop\n"
    )
    only_the_test_runs()


async def test_exercise_1_accepts_run_in_executor() -> None:
    assert (await check_exercise_1(with_run_in_executor)).passed


async def test_exercise_1_works_while_a_console_watches_the_loop() -> None:
    async with Console() as console:
        assert (await check_exercise_1(lookup_all)).passed
        with pytest.raises(ExerciseRejected, match="queries_on_the_loop blocked the event loop"):
            await check_exercise_1(queries_on_the_loop)
        mine = console.snapshot().warnings_of("blocked_loop")
    assert not mine  # the answer blocked the check's loop, never this one


async def test_exercise_1_names_the_line_that_blocks_the_loop() -> None:
    with pytest.raises(ExerciseRejected) as rejected:
        await check_exercise_1(queries_on_the_loop)
    message = str(rejected.value)
    assert message.startswith(
        "❌ Exercise 1: queries_on_the_loop blocked the event loop: the console saw task "
        f"'lookup_all' hold it in one step at {line_of('the blocking query')}"
    ), message
    assert "the lookup took 0.5" in message or "the lookup took 0.6" in message, message
    assert message.endswith("run with `asyncio.to_thread(...)`")


async def test_exercise_1_explains_an_eager_call_inside_to_thread() -> None:
    with pytest.raises(ExerciseRejected) as rejected:
        await check_exercise_1(calls_it_eagerly)
    message = str(rejected.value)
    assert message.startswith(
        "❌ Exercise 1: the query ran on the loop before any thread got it: "
        "`asyncio.to_thread(f(x))` calls f first (at "
    ), message
    assert "it blocked the loop, then to_thread was handed its result" in message
    assert "(TypeError: 'dict' object is not callable)" in message
    assert message.endswith("`asyncio.to_thread(lookup, db_path, device)`")


async def test_exercise_1_explains_a_connection_shared_across_threads() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: one sqlite3 connection was made in one thread and used in "
        r"another: sqlite3 refused it \(ProgrammingError: SQLite objects created in a thread "
        r"can only be used in that same thread\)\. A connection opened on the loop cannot be "
        r"handed to a worker thread\n   Hint: open the connection inside the function that "
        r"runs in the thread",
    ):
        await check_exercise_1(shares_one_connection)


async def test_exercise_1_explains_a_gather_not_awaited() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: forgets_to_await_gather gave back a _GatheringFuture, not the "
        r"readings: an `await` is missing",
    ):
        await check_exercise_1(forgets_to_await_gather)
    only_the_test_runs()


async def test_exercise_1_explains_coroutines_not_awaited() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: returns_coroutines gave back a list of coroutine, not the "
        r"readings: an `await` is missing",
    ):
        await check_exercise_1(returns_coroutines)


async def test_exercise_1_explains_queries_one_after_another() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: one_after_another took 0\.\d\d s: the queries ran one after "
        r"another \(together they take 0\.57 s; side by side, as long as the slowest, 0\.2 s\)"
        r".*\n   Hint: start every thread first, then wait for all of them",
    ):
        await check_exercise_1(one_after_another)


async def test_exercise_1_explains_results_in_finishing_order() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: as_they_finish returned the readings in the order the queries "
        r"finished \(device-2, device-4, device-3, device-1\), not in the order of devices "
        r"\(device-1, device-2, device-3, device-4\)\n   Hint: `asyncio.gather\(\*aws\)`",
    ):
        await check_exercise_1(as_they_finish)


async def test_exercise_1_explains_a_plain_function() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: plain_lookup_all\(db_path, devices\) returned a list, not "
        r"something to await: it is a plain function",
    ):
        await check_exercise_1(plain_lookup_all)


async def test_exercise_1_notices_that_latest_reading_was_not_called() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: skips_latest_reading returned in \d+ ms, faster than the "
        r"slowest query \(0\.2 s\): it did not call latest_reading",
    ):
        await check_exercise_1(skips_latest_reading)


async def test_exercise_1_explains_wrong_values() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: returns_celsius_only returned \[21\.0, 22\.0, 23\.0, 24\.0\], "
        r"not \[\{'device': 'device-1', 'celsius': 21\.0\}",
    ):
        await check_exercise_1(returns_celsius_only)


async def test_exercise_1_keeps_a_bug_in_the_answer_with_its_traceback() -> None:
    with pytest.raises(KeyError, match="fahrenheit") as raised:
        await check_exercise_1(has_a_bug)
    assert raised.value.__notes__ == ["(raised while checking your answer to Exercise 1)"]


def test_the_devices_finish_out_of_order() -> None:
    """The first device is the slowest: results collected as they finish are reordered."""
    finishing = sorted(DEVICES, key=QUERY_SECONDS.__getitem__)
    assert finishing != list(DEVICES)
    assert finishing[-1] == DEVICES[0]


# --- Exercise 2: producer_thread ---------------------------------------------------------


def producer_thread(loop: Any, queue: Any, items: Any) -> None:
    for item in items:
        loop.call_soon_threadsafe(queue.put_nowait, item)
    loop.call_soon_threadsafe(queue.put_nowait, END)


def waits_for_each_put(loop: Any, queue: Any, items: Any) -> None:
    for item in [*items, END]:
        asyncio.run_coroutine_threadsafe(queue.put(item), loop).result(timeout=1)


def does_not_wait_for_puts(loop: Any, queue: Any, items: Any) -> None:
    for item in [*items, END]:
        asyncio.run_coroutine_threadsafe(queue.put(item), loop)


def puts_directly(loop: Any, queue: Any, items: Any) -> None:
    for item in [*items, END]:
        queue.put_nowait(item)


def runs_a_loop_of_its_own(loop: Any, queue: Any, items: Any) -> None:
    for item in [*items, END]:
        asyncio.run(queue.put(item))


def uses_call_soon(loop: Any, queue: Any, items: Any) -> None:
    for item in [*items, END]:
        loop.call_soon(queue.put_nowait, item)


def calls_put_eagerly(loop: Any, queue: Any, items: Any) -> None:
    for item in [*items, END]:
        loop.call_soon_threadsafe(queue.put_nowait(item))


def forgets_the_end(loop: Any, queue: Any, items: Any) -> None:
    for item in items:
        loop.call_soon_threadsafe(queue.put_nowait, item)


def looks_for_its_own_loop(loop: Any, queue: Any, items: Any) -> None:
    mine = asyncio.get_event_loop()
    for item in [*items, END]:
        mine.call_soon_threadsafe(queue.put_nowait, item)


async def async_producer(loop: Any, queue: Any, items: Any) -> None:
    for item in [*items, END]:
        await queue.put(item)


def sends_the_whole_list(loop: Any, queue: Any, items: Any) -> None:
    loop.call_soon_threadsafe(queue.put_nowait, items)
    loop.call_soon_threadsafe(queue.put_nowait, END)


def never_returns(loop: Any, queue: Any, items: Any) -> None:
    threading.Event().wait(3.0)  # longer than the check's patience, then it ends anyway


def thread_has_a_bug(loop: Any, queue: Any, items: Any) -> None:
    for item in items:
        loop.call_soon_threadsafe(queue.put_nowait, item.upper_case())


async def test_exercise_2_accepts_the_solution(capsys: pytest.CaptureFixture[str]) -> None:
    assert (await check_exercise_2(producer_thread)).passed
    assert capsys.readouterr().out == (
        "✅ Exercise 2 passed: 5 items handed from a thread to the loop, in order, then the "
        "end marker; no asyncio call was made off the loop's thread\n"
    )
    only_the_test_runs()


async def test_exercise_2_accepts_run_coroutine_threadsafe() -> None:
    assert (await check_exercise_2(waits_for_each_put)).passed
    assert (await check_exercise_2(does_not_wait_for_puts)).passed


async def test_exercise_2_rejects_put_nowait_from_the_thread() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: queue.put_nowait was called 6 times from the producer thread: "
        r"not thread-safe: .*\n   Hint: use loop.call_soon_threadsafe: "
        r"`loop.call_soon_threadsafe\(queue.put_nowait, item\)`",
    ):
        await check_exercise_2(puts_directly)
    only_the_test_runs()


async def test_exercise_2_rejects_a_second_event_loop() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: the thread put items into the queue from an event loop of its "
        r"own \(`asyncio.run\(...\)` in a thread starts a second loop\)",
    ):
        await check_exercise_2(runs_a_loop_of_its_own)


async def test_exercise_2_rejects_call_soon_from_the_thread() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: `loop.call_soon` was called from the producer thread: it is not "
        r"thread-safe .*RuntimeError: Non-thread-safe operation",
    ):
        await check_exercise_2(uses_call_soon)


async def test_exercise_2_explains_an_eager_put() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: `loop.call_soon_threadsafe\(queue.put_nowait\(item\)\)` calls "
        r"put_nowait first, in the thread, then hands its result, None, to the loop to call "
        r"\(a callable object was expected",
    ):
        await check_exercise_2(calls_put_eagerly)


async def test_exercise_2_explains_a_forgotten_end_marker() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: the consumer got all 5 items but never stopped: forgets_the_end "
        r"returned without sending the end marker \(None\)",
    ):
        await check_exercise_2(forgets_the_end)
    only_the_test_runs()


async def test_exercise_2_explains_looking_for_a_loop_in_the_thread() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: the producer thread looked for an event loop of its own: "
        r"RuntimeError: There is no current event loop",
    ):
        await check_exercise_2(looks_for_its_own_loop)


async def test_exercise_2_explains_an_async_def() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: async_producer\(loop, queue, items\) returned a coroutine: it "
        r"is an `async def`, and a thread cannot await",
    ):
        await check_exercise_2(async_producer)


async def test_exercise_2_explains_wrong_items() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: the consumer received \[\('reading-1', .*\)\], then the end "
        r"marker; sends_the_whole_list was given \['reading-1'",
    ):
        await check_exercise_2(sends_the_whole_list)


@pytest.mark.async_timeout(15)
async def test_exercise_2_gives_up_on_a_thread_that_does_not_return() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: never_returns did not return within 2 s",
    ):
        await check_exercise_2(never_returns)
    only_the_test_runs()


async def test_exercise_2_keeps_a_bug_in_the_answer_with_its_traceback() -> None:
    with pytest.raises(AttributeError, match="upper_case") as raised:
        await check_exercise_2(thread_has_a_bug)
    assert raised.value.__notes__ == ["(raised while checking your answer to Exercise 2)"]


def test_exercise_2_delivers_the_items_given() -> None:
    assert len(ITEMS) == 5
    assert END is None
