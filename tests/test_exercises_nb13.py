"""The checkers of notebook 13 accept a good test and explain each classic weak one."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest

from telemetry_lab import channel
from telemetry_lab.exercises import ExerciseRejected
from telemetry_lab.exercises.nb13 import (
    HIGH,
    LOW,
    RETRY_MUTANTS,
    STAGE_MUTANTS,
    VirtualTimeLimit,
    check_exercise_1,
    check_exercise_2,
    keep_in_range,
    retry,
    run_in_virtual_time,
)


async def stub(*args: Any) -> Any:
    # Your answer here: replace the next line.
    raise NotImplementedError


async def test_a_stub_is_not_attempted_and_raises_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert not (await check_exercise_1(stub)).passed
    assert not (await check_exercise_2(stub)).passed
    out = capsys.readouterr().out
    assert out.startswith("⏳ Exercise 1 is not attempted yet: replace `raise NotImplementedError`")
    assert "⏳ Exercise 2 is not attempted yet" in out
    with pytest.raises(NotImplementedError):
        await check_exercise_1(stub, solution=True)
    with pytest.raises(NotImplementedError):
        await check_exercise_2(stub, solution=True)


# --- the helpers --------------------------------------------------------------------------


def test_run_in_virtual_time_skips_the_waits_and_returns_the_result() -> None:
    async def scenario(delay: float) -> float:
        await asyncio.sleep(delay)
        return asyncio.get_running_loop().time()

    started = time.perf_counter()
    assert run_in_virtual_time(scenario, 300.0) == 300.0
    assert time.perf_counter() - started < 0.5


def test_run_in_virtual_time_gives_up_on_a_scenario_that_never_ends() -> None:
    async def forever() -> None:
        await asyncio.get_running_loop().create_future()

    with pytest.raises(VirtualTimeLimit, match=r"ran 10 virtual seconds without ending"):
        run_in_virtual_time(forever, limit=10.0)


def test_run_in_virtual_time_keeps_the_scenarios_own_timeout_error() -> None:
    async def own_timeout() -> None:
        async with asyncio.timeout(5):
            await asyncio.get_running_loop().create_future()

    with pytest.raises(TimeoutError) as caught:
        run_in_virtual_time(own_timeout)
    assert not isinstance(caught.value, VirtualTimeLimit)


async def always_fails() -> None:
    raise ConnectionError("down")


async def test_retry_keeps_its_contract() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        calls: list[float] = []

        async def flaky() -> str:
            calls.append(loop.time())
            if len(calls) < 3:
                raise ConnectionError("down")
            return "up"

        assert await retry(flaky, attempts=3, delay=30) == "up"
        assert calls == [0, 30, 60]
        with pytest.raises(ConnectionError):
            await retry(always_fails, attempts=4, delay=10)
        assert loop.time() == 60 + 30
        with pytest.raises(ValueError, match="attempts must be >= 1"):
            await retry(always_fails, attempts=0, delay=1)

    await asyncio.to_thread(run_in_virtual_time, scenario)


async def test_keep_in_range_keeps_its_contract() -> None:
    tx, rx = channel[float](8)
    for celsius in (LOW - 1, LOW, 20.0, HIGH, HIGH + 1, float("nan")):
        tx.try_send(celsius)
    tx.close()
    tx_out, rx_out = channel[float](8)
    await keep_in_range(rx, tx_out)
    assert [c async for c in rx_out] == [LOW, 20.0, HIGH]


def test_every_mutant_has_its_own_name_and_implementation() -> None:
    for mutants in (RETRY_MUTANTS, STAGE_MUTANTS):
        assert len({m.name for m in mutants}) == len(mutants)
        assert len({m.impl for m in mutants}) == len(mutants)
        assert sum(m.hangs for m in mutants) == 1  # the one a test must bound


# --- Exercise 1: test_retry -----------------------------------------------------------------


async def good_test_retry(retry: Any) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        calls: list[float] = []

        async def flaky() -> str:  # fails twice, then works
            calls.append(loop.time())
            if len(calls) < 3:
                raise ConnectionError("down")
            return "up"

        async with asyncio.timeout(600):
            assert await retry(flaky, attempts=3, delay=30) == "up"
        assert calls == [0, 30, 60]

        started = loop.time()
        try:
            async with asyncio.timeout(600):
                await retry(always_fails, attempts=3, delay=30)
        except ConnectionError:
            pass
        else:
            raise AssertionError("retry did not re-raise the last error")
        assert loop.time() - started == 60  # no wait after the last call

    await asyncio.to_thread(run_in_virtual_time, scenario)


async def test_exercise_1_accepts_a_good_test(capsys: pytest.CaptureFixture[str]) -> None:
    assert (await check_exercise_1(good_test_retry)).passed
    out = capsys.readouterr().out
    assert out.startswith(
        "✅ Exercise 1 passed: it passes on the correct retry and catches all 5 mutants, "
        "each run in under "
    )
    assert out.endswith(" ms of real time\n")


async def test_exercise_1_names_every_survivor_of_a_test_that_asserts_little() -> None:
    async def only_the_happy_path(retry: Any) -> None:
        async def scenario() -> None:
            calls = []

            async def once_down() -> str:
                calls.append(1)
                if len(calls) == 1:
                    raise ConnectionError("down")
                return "up"

            assert await retry(once_down, attempts=3, delay=30) == "up"

        await asyncio.to_thread(run_in_virtual_time, scenario)

    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: 5 of 5 mutants survived your test_retry\(retry\) \(gives up "
        r"early, swallows the error, does not wait, waits after the last call, never gives "
        r"up\): it passes on a retry that calls op at most attempts - 1 times\n   Hint: let "
        r"op fail attempts - 1 times and then succeed",
    ):
        await check_exercise_1(only_the_happy_path)


async def test_exercise_1_explains_a_missing_check_of_the_re_raise() -> None:
    async def never_looks_at_the_failure(retry: Any) -> None:
        async def scenario() -> None:
            loop = asyncio.get_running_loop()
            calls: list[float] = []

            async def flaky() -> str:
                calls.append(loop.time())
                if len(calls) < 3:
                    raise ConnectionError("down")
                return "up"

            async with asyncio.timeout(600):
                assert await retry(flaky, attempts=3, delay=30) == "up"
            assert calls == [0, 30, 60]
            async with asyncio.timeout(600):
                with contextlib.suppress(ConnectionError):  # raised or not: nothing asserted
                    await retry(always_fails, attempts=3, delay=30)

        await asyncio.to_thread(run_in_virtual_time, scenario)

    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: 2 of 5 mutants survived your test_retry\(retry\) \(swallows "
        r"the error, waits after the last call\): it passes on a retry that returns None when "
        r"every call fails, instead of re-raising\n   Hint: make op fail every time",
    ):
        await check_exercise_1(never_looks_at_the_failure)


async def test_exercise_1_explains_a_test_that_never_looks_at_the_clock() -> None:
    async def counts_calls_only(retry: Any) -> None:
        async def scenario() -> None:
            calls = []

            async def flaky() -> str:
                calls.append(1)
                if len(calls) < 3:
                    raise ConnectionError("down")
                return "up"

            async with asyncio.timeout(600):
                assert await retry(flaky, attempts=3, delay=30) == "up"
            assert len(calls) == 3
            try:
                async with asyncio.timeout(600):
                    await retry(always_fails, attempts=3, delay=30)
            except ConnectionError:
                pass
            else:
                raise AssertionError("no error")

        await asyncio.to_thread(run_in_virtual_time, scenario)

    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: 2 of 5 mutants survived your test_retry\(retry\) \(does not "
        r"wait, waits after the last call\): it passes on a retry that retries at once, "
        r"without waiting `delay` between two calls\n   Hint: record `loop.time\(\)` at each "
        r"call of op",
    ):
        await check_exercise_1(counts_calls_only)


async def test_exercise_1_explains_timing_only_the_happy_path() -> None:
    async def times_only_success(retry: Any) -> None:
        async def scenario() -> None:
            loop = asyncio.get_running_loop()
            calls: list[float] = []

            async def flaky() -> str:
                calls.append(loop.time())
                if len(calls) < 3:
                    raise ConnectionError("down")
                return "up"

            async with asyncio.timeout(600):
                assert await retry(flaky, attempts=3, delay=30) == "up"
            assert calls == [0, 30, 60]
            try:
                async with asyncio.timeout(600):
                    await retry(always_fails, attempts=3, delay=30)
            except ConnectionError:
                pass
            else:
                raise AssertionError("no error")

        await asyncio.to_thread(run_in_virtual_time, scenario)

    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: 1 of 5 mutants survived your test_retry\(retry\) \(waits after "
        r"the last call\): .*\n   Hint: when every call fails, assert how long retry took: "
        r"\(attempts - 1\) \* delay",
    ):
        await check_exercise_1(times_only_success)


async def test_exercise_1_explains_a_test_that_fails_the_correct_retry() -> None:
    async def expects_a_wait_after_the_last(retry: Any) -> None:
        async def scenario() -> None:
            loop = asyncio.get_running_loop()
            with contextlib.suppress(ConnectionError):
                await retry(always_fails, attempts=3, delay=30)
            assert loop.time() == 90, loop.time()

        await asyncio.to_thread(run_in_virtual_time, scenario)

    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: your test_retry\(retry\) fails on the correct retry "
        r"\(AssertionError: 60\.0\): a test must pass when the code is right\n   Hint: check "
        r"each expectation against retry's contract",
    ):
        await check_exercise_1(expects_a_wait_after_the_last)


async def test_exercise_1_explains_measuring_the_virtual_clock_with_a_wall_clock() -> None:
    async def uses_time_monotonic(retry: Any) -> None:
        async def scenario() -> None:
            started = time.monotonic()
            with contextlib.suppress(ConnectionError):
                await retry(always_fails, attempts=3, delay=30)
            assert time.monotonic() - started >= 60

        await asyncio.to_thread(run_in_virtual_time, scenario)

    with pytest.raises(
        ExerciseRejected,
        match=r"(?s)^❌ Exercise 1: your test_retry\(retry\) fails on the correct retry "
        r"\(AssertionError.*`time.monotonic\(\)` barely moves there\)$",
    ):
        await check_exercise_1(uses_time_monotonic)


@pytest.mark.async_timeout(15)
async def test_exercise_1_explains_a_test_on_the_real_clock() -> None:
    async def in_real_time(retry: Any) -> None:
        async with asyncio.timeout(600):
            await retry(always_fails, attempts=3, delay=30)  # really waits 60 s

    started = time.perf_counter()
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: your test_retry\(retry\) did not finish within 1 s of real "
        r"time on the correct retry\n   Hint: in real time every `delay` really passes: run "
        r"the scenario on the virtual clock, `await asyncio.to_thread\(run_in_virtual_time, "
        r"scenario\)`",
    ):
        await check_exercise_1(in_real_time)
    assert time.perf_counter() - started < 3


async def test_exercise_1_explains_a_virtual_test_without_a_timeout() -> None:
    async def unbounded(retry: Any) -> None:
        async def scenario() -> None:
            loop = asyncio.get_running_loop()
            calls: list[float] = []

            async def flaky() -> str:
                calls.append(loop.time())
                if len(calls) < 3:
                    raise ConnectionError("down")
                return "up"

            assert await retry(flaky, attempts=3, delay=30) == "up"
            assert calls == [0, 30, 60]
            started = loop.time()
            try:
                await retry(always_fails, attempts=3, delay=30)  # no timeout around it
            except ConnectionError:
                pass
            else:
                raise AssertionError("no error")
            assert loop.time() - started == 60

        await asyncio.to_thread(run_in_virtual_time, scenario)

    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: your test_retry\(retry\) hung on the mutant that never returns "
        r"when every call fails \(never gives up\): it was still waiting after 3600 virtual "
        r"seconds, when run_in_virtual_time's safety net stopped it\n"
        r"   Hint: bound every wait in a test with `async with asyncio.timeout\(\.\.\.\)`",
    ):
        await check_exercise_1(unbounded)


@pytest.mark.async_timeout(15)
async def test_exercise_1_explains_a_real_time_test_without_a_timeout() -> None:
    async def unbounded_in_real_time(retry: Any) -> None:
        try:
            await retry(always_fails, attempts=3, delay=0.001)
        except ConnectionError:
            pass
        else:
            raise AssertionError("no error")

    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: your test_retry\(retry\) hung on the mutant that never returns "
        r"when every call fails \(never gives up\): it was still waiting after 1 s of real "
        r"time, when the check's bound stopped it\n   Hint: bound every wait",
    ):
        await check_exercise_1(unbounded_in_real_time)


async def test_exercise_1_explains_a_plain_def_test() -> None:
    def not_async(retry: Any) -> None:
        return None

    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: your test_retry\(retry\) returned a NoneType, not something to "
        r"await: write it as `async def`",
    ):
        await check_exercise_1(not_async)


async def test_exercise_1_keeps_a_bug_in_the_test_with_its_traceback() -> None:
    async def buggy(retry: Any) -> None:
        raise KeyError("oops")

    with pytest.raises(KeyError, match="oops") as caught:
        await check_exercise_1(buggy)
    assert "(your test_retry(retry) raised this on the correct retry)" in caught.value.__notes__


# --- Exercise 2: check_stage ----------------------------------------------------------------


READINGS = [20.5, LOW - 1, HIGH, float("nan"), LOW, HIGH + 35, 3.0, 19.0]
KEPT = [20.5, HIGH, LOW, 3.0, 19.0]


async def good_check_stage(stage: Any) -> None:
    tx_in, rx_in = channel[float](len(READINGS))
    for celsius in READINGS:
        tx_in.try_send(celsius)
    tx_in.close()
    tx_out, rx_out = channel[float](len(READINGS))
    before = asyncio.all_tasks()
    async with asyncio.timeout(0.5):
        await stage(rx_in, tx_out)
        out = [c async for c in rx_out]  # ends only if the stage closed tx
    assert out == KEPT, out
    left = [t for t in asyncio.all_tasks() - before if not t.done()]
    assert not left, left


async def test_exercise_2_accepts_a_good_test(capsys: pytest.CaptureFixture[str]) -> None:
    assert (await check_exercise_2(good_check_stage)).passed
    assert capsys.readouterr().out == (
        "✅ Exercise 2 passed: it passes on keep_in_range and catches all 6 mutants (keeps "
        "everything, excludes the limits, drops the last, reorders, never closes, leaks a "
        "task)\n"
    )


async def run_stage(stage: Any, readings: list[float]) -> list[float]:
    """Feed `readings`, run the stage, collect its output under a timeout."""
    tx_in, rx_in = channel[float](max(len(readings), 1))
    for celsius in readings:
        tx_in.try_send(celsius)
    tx_in.close()
    tx_out, rx_out = channel[float](max(len(readings), 1))
    async with asyncio.timeout(0.5):
        await stage(rx_in, tx_out)
        return [c async for c in rx_out]


async def test_exercise_2_explains_feeding_only_readings_in_range() -> None:
    async def all_in_range(stage: Any) -> None:
        assert await run_stage(stage, [20.5, 21.0]) == [20.5, 21.0]

    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: 3 of 6 mutants survived your check_stage\(stage\) \(keeps "
        r"everything, excludes the limits, leaks a task\): it passes on a "
        r"stage that forwards every reading, in range or not\n   Hint: feed it readings out "
        r"of range too",
    ):
        await check_exercise_2(all_in_range)


async def test_exercise_2_explains_missing_the_boundaries() -> None:
    async def no_boundaries(stage: Any) -> None:
        before = asyncio.all_tasks()
        assert await run_stage(stage, [20.5, -50.0, 21.0, 99.0, 22.0]) == [20.5, 21.0, 22.0]
        assert not [t for t in asyncio.all_tasks() - before if not t.done()]

    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: 1 of 6 mutants survived your check_stage\(stage\) \(excludes "
        r"the limits\): it passes on a stage that drops -40 and 85 themselves \(< instead of "
        r"<=\)\n   Hint: test the boundaries",
    ):
        await check_exercise_2(no_boundaries)


async def test_exercise_2_explains_checking_membership_only() -> None:
    async def membership_only(stage: Any) -> None:
        before = asyncio.all_tasks()
        out = await run_stage(stage, READINGS)
        assert all(c in out for c in KEPT[:-1])
        assert not any(c in out for c in (LOW - 1, HIGH + 35))
        assert not [t for t in asyncio.all_tasks() - before if not t.done()]

    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: 2 of 6 mutants survived your check_stage\(stage\) \(drops the "
        r"last, reorders\): it passes on a stage that holds each reading back until the next "
        r"one comes, and never sends the last\n   Hint: assert the whole output list",
    ):
        await check_exercise_2(membership_only)


async def test_exercise_2_explains_comparing_sorted_outputs() -> None:
    async def sorted_output(stage: Any) -> None:
        before = asyncio.all_tasks()
        assert sorted(await run_stage(stage, READINGS)) == sorted(KEPT)
        assert not [t for t in asyncio.all_tasks() - before if not t.done()]

    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: 1 of 6 mutants survived your check_stage\(stage\) \(reorders\): "
        r"it passes on a stage that sends its readings out of order \(each pair back to "
        r"front\)\n   Hint: assert the output as a list, in order",
    ):
        await check_exercise_2(sorted_output)


async def test_exercise_2_explains_never_checking_the_end() -> None:
    async def reads_exactly_what_it_expects(stage: Any) -> None:
        tx_in, rx_in = channel[float](len(READINGS))
        for celsius in READINGS:
            tx_in.try_send(celsius)
        tx_in.close()
        tx_out, rx_out = channel[float](len(READINGS))
        before = asyncio.all_tasks()
        async with asyncio.timeout(0.5):
            await stage(rx_in, tx_out)
            out = [await rx_out.recv() for _ in KEPT]  # never asks whether it ended
        assert out == KEPT
        assert not [t for t in asyncio.all_tasks() - before if not t.done()]

    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: 1 of 6 mutants survived your check_stage\(stage\) \(never "
        r"closes\): it passes on a stage that never closes tx, so whoever reads it waits "
        r"forever\n   Hint: assert that the output ends",
    ):
        await check_exercise_2(reads_exactly_what_it_expects)


async def test_exercise_2_explains_forgetting_leaked_tasks() -> None:
    async def no_task_check(stage: Any) -> None:
        assert await run_stage(stage, READINGS) == KEPT

    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: 1 of 6 mutants survived your check_stage\(stage\) \(leaks a "
        r"task\): it passes on a stage that starts a watchdog task that outlives it\n"
        r"   Hint: take `before = asyncio.all_tasks\(\)`",
    ):
        await check_exercise_2(no_task_check)
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "keep_in_range-watchdog"]


@pytest.mark.async_timeout(15)
async def test_exercise_2_explains_a_test_that_hangs_without_a_timeout() -> None:
    async def unbounded(stage: Any) -> None:
        tx_in, rx_in = channel[float](len(READINGS))
        for celsius in READINGS:
            tx_in.try_send(celsius)
        tx_in.close()
        tx_out, rx_out = channel[float](len(READINGS))
        await stage(rx_in, tx_out)
        assert [c async for c in rx_out] == KEPT  # waits forever if tx stays open

    started = time.perf_counter()
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: your check_stage\(stage\) hung on the mutant that never closes "
        r"tx, so whoever reads it waits forever \(never closes\): it was still waiting after 2 s "
        r"of real time, when the check's bound stopped it\n   Hint: bound every wait in a test",
    ):
        await check_exercise_2(unbounded)
    assert time.perf_counter() - started < 5


async def test_exercise_2_explains_a_test_that_fails_the_correct_stage() -> None:
    async def expects_the_limits_dropped(stage: Any) -> None:
        assert await run_stage(stage, [LOW, 20.0, HIGH]) == [20.0]

    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: your check_stage\(stage\) fails on the correct stage "
        r"\(keep_in_range\) \(AssertionError.*\): a test must pass when the code is right\n"
        r"   Hint: check each expectation against keep_in_range's contract: readings from -40 "
        r"to 85 °C, both included,",
    ):
        await check_exercise_2(expects_the_limits_dropped)


async def test_exercise_2_cancels_what_the_test_leaves_running() -> None:
    async def leaves_the_stage_running(stage: Any) -> None:
        _tx_in, rx_in = channel[float](1)
        tx_out, _rx_out = channel[float](1)
        asyncio.get_running_loop().create_task(stage(rx_in, tx_out), name="left-behind")
        await asyncio.sleep(0)
        raise AssertionError("gave up")

    before = asyncio.all_tasks()
    with pytest.raises(ExerciseRejected, match=r"fails on the correct stage"):
        await check_exercise_2(leaves_the_stage_running)
    assert not [t for t in asyncio.all_tasks() - before if not t.done()]
