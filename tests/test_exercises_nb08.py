"""The checkers of notebook 08 accept right answers and explain the classic wrong ones."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from telemetry_lab.exercises import ExerciseRejected
from telemetry_lab.exercises.nb08 import check_exercise_1, check_exercise_2

# --- Exercise 1: a cancellation-safe worker ------------------------------------------------


async def worker(rx: Any, process: Any, unfinished: list[str]) -> None:
    async for item in rx:
        try:
            await process(item)
        except asyncio.CancelledError:
            unfinished.append(item)  # handed back: someone else can process it
            raise


async def worker_stub(rx: Any, process: Any, unfinished: list[str]) -> None:
    raise NotImplementedError


async def finishes_under_shield(rx: Any, process: Any, unfinished: list[str]) -> None:
    async for item in rx:
        await asyncio.shield(process(item))  # the item in flight finishes after the cancel


async def with_while_and_recv(rx: Any, process: Any, unfinished: list[str]) -> None:
    while True:
        item = await rx.recv()
        try:
            await process(item)
        except BaseException:
            unfinished.append(item)
            raise


async def naive(rx: Any, process: Any, unfinished: list[str]) -> None:
    async for item in rx:
        await process(item)


async def catches_exception(rx: Any, process: Any, unfinished: list[str]) -> None:
    async for item in rx:
        try:
            await process(item)
        except Exception:
            unfinished.append(item)
            raise


async def swallows_and_returns(rx: Any, process: Any, unfinished: list[str]) -> None:
    async for item in rx:
        try:
            await process(item)
        except asyncio.CancelledError:
            unfinished.append(item)
            return


async def bare_except_returns(rx: Any, process: Any, unfinished: list[str]) -> None:
    async for item in rx:
        try:
            await process(item)
        except:  # noqa: E722
            unfinished.append(item)
            return


async def swallows_and_keeps_going(rx: Any, process: Any, unfinished: list[str]) -> None:
    async for item in rx:
        try:
            await process(item)
        except BaseException:
            unfinished.append(item)


async def shields_the_whole_loop(rx: Any, process: Any, unfinished: list[str]) -> None:
    async def loop() -> None:
        async for item in rx:
            await process(item)

    await asyncio.shield(loop())


async def hands_back_in_finally(rx: Any, process: Any, unfinished: list[str]) -> None:
    async for item in rx:
        try:
            await process(item)
        finally:
            unfinished.append(item)


async def returns_at_once(rx: Any, process: Any, unfinished: list[str]) -> None:
    return None


def not_async(rx: Any, process: Any, unfinished: list[str]) -> None:
    return None


async def test_exercise_1_accepts_the_solution(capsys: pytest.CaptureFixture[str]) -> None:
    assert (await check_exercise_1(worker)).passed
    assert capsys.readouterr().out == (
        "✅ Exercise 1 passed: cancelled 3 times, every reading accounted for: 'r2' handed "
        "back in `unfinished`, 2 left in the channel, and the task ended cancelled each time\n"
    )


async def test_exercise_1_accepts_finishing_the_item_under_shield(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (await check_exercise_1(finishes_under_shield)).passed
    assert "'r2' finished under shield" in capsys.readouterr().out


async def test_exercise_1_accepts_a_while_loop_that_reraises_base_exception() -> None:
    assert (await check_exercise_1(with_while_and_recv)).passed


async def test_exercise_1_says_not_attempted_for_the_stub(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert not (await check_exercise_1(worker_stub)).passed
    assert capsys.readouterr().out.startswith("⏳ Exercise 1 is not attempted yet")
    with pytest.raises(NotImplementedError):
        await check_exercise_1(worker_stub, solution=True)


async def test_exercise_1_explains_losing_the_item_in_flight() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: the worker lost \['r2'\] of the 5 readings: taken from the "
        r"channel, then neither processed nor handed back; it was inside process\(\) when "
        r"the cancel came \(cancelled while processing 'r2' of 'r0'..'r4'\)\n"
        r"   Hint: when process\(\) is cancelled, put the item in `unfinished` and re-raise",
    ):
        await check_exercise_1(naive)


async def test_exercise_1_explains_that_except_exception_misses_the_cancel() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: the worker lost \['r2'\] of the 5 readings: .*; `except "
        r"Exception:` never sees a CancelledError \(a BaseException since Python 3.8\)",
    ):
        await check_exercise_1(catches_exception)


async def test_exercise_1_explains_swallowing_the_cancellation() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: your worker swallowed the cancellation: its task returned "
        r"normally \(cancelled while processing 'r2' of 'r0'..'r4'\) instead of ending "
        r"cancelled.*\n   Hint: catch it only to hand the item back, then re-raise",
    ):
        await check_exercise_1(swallows_and_returns)


async def test_exercise_1_explains_a_bare_except_that_does_not_reraise() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: your worker swallowed the cancellation: a bare `except:` "
        r"caught the CancelledError and did not re-raise it.*\n   Hint: a bare `except:` and "
        r"`except BaseException:` catch CancelledError too",
    ):
        await check_exercise_1(bare_except_returns)


async def test_exercise_1_explains_a_worker_that_never_ends() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: the worker caught the cancellation with `except BaseException:` "
        r"and kept going: its task never ended after `cancel\(\)` \(cancelled while processing "
        r"'r2' of 'r0'..'r4'\)\n   Hint: catch it only to hand the item back, then re-raise",
    ):
        await check_exercise_1(swallows_and_keeps_going)


async def test_exercise_1_explains_shielding_the_whole_loop() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: the worker went on processing after it was cancelled "
        r"\(cancelled while processing 'r2' of 'r0'..'r4'\): \['r3', 'r4'\] started after "
        r"`cancel\(\)`; a shield around the whole loop keeps it running forever",
    ):
        await check_exercise_1(shields_the_whole_loop)
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


async def test_exercise_1_explains_handing_back_processed_items() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: the worker handed back \['r0', 'r1'\] in `unfinished` although "
        r"process\(\) had finished them .*\n   Hint: hand an item back only when its "
        r"processing was cut off",
    ):
        await check_exercise_1(hands_back_in_finally)


async def test_exercise_1_explains_returning_before_the_cancel() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: the worker returned before anyone cancelled it",
    ):
        await check_exercise_1(returns_at_once)


async def test_exercise_1_explains_a_plain_function() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: worker\(rx, process, unfinished\) returned a NoneType",
    ):
        await check_exercise_1(not_async)


# --- Exercise 2: one deadline for several steps --------------------------------------------


async def fetch_all(steps: list[Any], deadline: float) -> list[Any]:
    async with asyncio.timeout_at(deadline):
        return [await step() for step in steps]


async def fetch_all_stub(steps: list[Any], deadline: float) -> list[Any]:
    raise NotImplementedError


async def with_the_time_left(steps: list[Any], deadline: float) -> list[Any]:
    loop = asyncio.get_running_loop()
    return [await asyncio.wait_for(step(), deadline - loop.time()) for step in steps]


async def fresh_wait_for_per_step(steps: list[Any], deadline: float) -> list[Any]:
    budget = deadline - asyncio.get_running_loop().time()
    return [await asyncio.wait_for(step(), budget) for step in steps]


async def deadline_as_a_delay(steps: list[Any], deadline: float) -> list[Any]:
    async with asyncio.timeout(deadline):
        return [await step() for step in steps]


async def swallows_the_timeout(steps: list[Any], deadline: float) -> list[Any]:
    results: list[Any] = []
    try:
        async with asyncio.timeout_at(deadline):
            for step in steps:
                results.append(await step())
    except TimeoutError:
        pass
    return results


async def leaves_the_step_running(steps: list[Any], deadline: float) -> list[Any]:
    loop = asyncio.get_running_loop()
    results = []
    for step in steps:
        task = asyncio.ensure_future(step())
        done, _ = await asyncio.wait([task], timeout=deadline - loop.time())
        if not done:
            raise TimeoutError
        results.append(task.result())
    return results


async def cancels_without_waiting(steps: list[Any], deadline: float) -> list[Any]:
    loop = asyncio.get_running_loop()
    results = []
    for step in steps:
        task = asyncio.ensure_future(step())
        done, _ = await asyncio.wait([task], timeout=deadline - loop.time())
        if not done:
            task.cancel()
            raise TimeoutError
        results.append(task.result())
    return results


async def starts_the_next_step_anyway(steps: list[Any], deadline: float) -> list[Any]:
    loop = asyncio.get_running_loop()
    results: list[Any] = []
    timed_out = False
    for step in steps:
        try:
            results.append(await asyncio.wait_for(step(), max(deadline - loop.time(), 0.5)))
        except TimeoutError:
            timed_out = True
    if timed_out:
        raise TimeoutError
    return results


async def too_early(steps: list[Any], deadline: float) -> list[Any]:
    async with asyncio.timeout(0.5):
        return [await step() for step in steps]


async def test_exercise_2_accepts_the_solution(capsys: pytest.CaptureFixture[str]) -> None:
    assert (await check_exercise_2(fetch_all)).passed
    assert capsys.readouterr().out == (
        "✅ Exercise 2 passed: 3 steps done in 3 s before a 5 s deadline; a 10 s step and "
        "three 1.5 s steps both cut at the 2.5 s deadline, with nothing left running\n"
    )


async def test_exercise_2_accepts_wait_for_with_the_time_left() -> None:
    assert (await check_exercise_2(with_the_time_left)).passed


async def test_exercise_2_says_not_attempted_for_the_stub(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert not (await check_exercise_2(fetch_all_stub)).passed
    assert capsys.readouterr().out.startswith("⏳ Exercise 2 is not attempted yet")
    with pytest.raises(NotImplementedError):
        await check_exercise_2(fetch_all_stub, solution=True)


async def test_exercise_2_explains_a_fresh_timeout_per_step() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: each step got a fresh timeout, and they added up \(three 1.5 s "
        r"steps, a deadline 2.5 s away\): every step fit in its own, so fetch_all returned "
        r"after 4.5 s, 2 s past the deadline\n   Hint: one deadline for the whole sequence",
    ):
        await check_exercise_2(fresh_wait_for_per_step)


async def test_exercise_2_explains_a_deadline_taken_for_a_delay() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: the timeout never fired \(one 10 s step, a deadline 2.5 s "
        r"away\): fetch_all returned after the step's full 10 s. `deadline` is a point on the "
        r"loop's clock \(here 1002.5\), not a delay.*\n   Hint: `async with "
        r"asyncio.timeout_at\(deadline\):`",
    ):
        await check_exercise_2(deadline_as_a_delay)


async def test_exercise_2_explains_swallowing_the_timeout() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: fetch_all returned \[\] after 2.5 s \(one 10 s step, a deadline "
        r"2.5 s away\) instead of raising TimeoutError: it swallowed the timeout",
    ):
        await check_exercise_2(swallows_the_timeout)


async def test_exercise_2_explains_leaving_a_step_running() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: fetch_all raised TimeoutError but left step 1 running \(one 10 s "
        r"step, a deadline 2.5 s away\): a task nobody owns",
    ):
        await check_exercise_2(leaves_the_step_running)


async def test_exercise_2_explains_cancelling_without_waiting() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: fetch_all raised TimeoutError while step 1 was still running "
        r"\(one 10 s step, a deadline 2.5 s away\): it was cancelled, but nobody waited",
    ):
        await check_exercise_2(cancels_without_waiting)


async def test_exercise_2_explains_starting_steps_after_the_deadline() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: fetch_all started step 3 after the deadline had passed "
        r"\(three 1.5 s steps, a deadline 2.5 s away\)",
    ):
        await check_exercise_2(starts_the_next_step_anyway)


async def test_exercise_2_explains_timing_out_too_early() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: fetch_all raised TimeoutError after 0.5 s \(three 1 s steps, a "
        r"deadline 5 s away\), though the steps need only 3 s",
    ):
        await check_exercise_2(too_early)


async def test_exercise_2_explains_a_plain_function() -> None:
    with pytest.raises(ExerciseRejected, match=r"^❌ Exercise 2: fetch_all is not an `async def`"):
        await check_exercise_2(not_async)  # type: ignore[arg-type]
