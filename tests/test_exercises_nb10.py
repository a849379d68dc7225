"""The checkers of notebook 10 accept a right answer and explain the classic wrong ones."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from telemetry_lab import Console
from telemetry_lab.exercises import ExerciseRejected
from telemetry_lab.exercises.nb10 import (
    BAD_READING,
    READINGS,
    check_exercise_1,
    check_exercise_2,
    parse_reading,
    slow_parse,
)

HERE = Path(__file__).name


def line_of(marker: str) -> str:
    """`test_exercises_nb10.py:N`: the line of this file that ends with `# marker`."""
    for number, text in enumerate(Path(__file__).read_text().splitlines(), start=1):
        if text.rstrip().endswith(f"# {marker}"):
            return f"{HERE}:{number}"
    raise AssertionError(f"no line marked {marker!r}")


async def stub(*args: Any) -> Any:
    # Your answer here: replace the next line.
    raise NotImplementedError


def test_parse_reading_parses_a_reading_and_refuses_garbage() -> None:
    assert parse_reading(b"device-1 20.5") == {"device": "device-1", "celsius": 20.5}
    assert [parse_reading(raw)["device"] for raw in READINGS] == [
        "device-1",
        "device-2",
        "device-3",
        "device-4",
    ]
    for garbage in (BAD_READING, b"", b"device-1", b"\xff 1.0", None):
        with pytest.raises(ValueError, match=r"^bad reading "):
            parse_reading(garbage)  # type: ignore[arg-type]


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


# --- Exercise 1: parse_stage -------------------------------------------------------------


async def parse_stage(raw: bytes) -> dict[str, Any]:
    return await asyncio.to_thread(slow_parse, raw)


async def with_run_in_executor(raw: bytes) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, slow_parse, raw)


async def calls_it_on_the_loop(raw: bytes) -> dict[str, Any]:
    return slow_parse(raw)  # the blocking call


async def calls_it_eagerly(raw: bytes) -> Any:
    return await asyncio.to_thread(slow_parse(raw))  # type: ignore[arg-type]  # the eager call


async def forgets_the_await(raw: bytes) -> Any:
    return asyncio.to_thread(slow_parse, raw)


async def forgets_to_return(raw: bytes) -> None:
    await asyncio.to_thread(slow_parse, raw)


def is_not_async(raw: bytes) -> dict[str, Any]:
    return slow_parse(raw)


async def skips_slow_parse(raw: bytes) -> dict[str, Any]:
    return parse_reading(raw)


async def has_a_bug(raw: bytes) -> dict[str, Any]:
    reading = await asyncio.to_thread(slow_parse, raw)
    return {"celsius": reading["fahrenheit"]}


async def test_exercise_1_accepts_the_solution(capsys: pytest.CaptureFixture[str]) -> None:
    assert (await check_exercise_1(parse_stage)).passed
    assert re.fullmatch(
        r"✅ Exercise 1 passed: 4 readings parsed at once in 0\.\d\d s \(one after another on "
        r"the loop: 0\.80 s\); no step blocked the loop\n",
        capsys.readouterr().out,
    )


async def test_exercise_1_accepts_run_in_executor() -> None:
    assert (await check_exercise_1(with_run_in_executor)).passed


async def test_exercise_1_names_the_line_that_blocked_the_loop() -> None:
    with pytest.raises(ExerciseRejected) as rejected:
        await check_exercise_1(calls_it_on_the_loop)
    message = str(rejected.value)
    assert message.startswith(
        "❌ Exercise 1: calls_it_on_the_loop blocked the event loop: the console saw task "
        f"'parse-1' hold it for a whole slow_parse in one step at {line_of('the blocking call')}"
        " in calls_it_on_the_loop: return slow_parse(raw)"
    ), message
    assert "the 4 calls ran one after another (0.8" in message
    assert message.endswith(
        "\n   Hint: run the blocking call in a worker thread and await it: "
        "`return await asyncio.to_thread(slow_parse, raw)`"
    )


async def test_exercise_1_works_while_a_console_watches_the_loop() -> None:
    """One loop takes one console: the check runs the answer on a loop of its own."""
    async with Console() as console:
        assert (await check_exercise_1(parse_stage)).passed
        with pytest.raises(ExerciseRejected, match="calls_it_on_the_loop blocked the event loop"):
            await check_exercise_1(calls_it_on_the_loop)
        assert console.running
        mine = console.snapshot().warnings_of("blocked_loop")
    assert not mine  # the answer blocked the check's loop, never this one


async def test_exercise_1_explains_an_eager_call_inside_to_thread() -> None:
    with pytest.raises(ExerciseRejected) as rejected:
        await check_exercise_1(calls_it_eagerly)
    message = str(rejected.value)
    assert message.startswith(
        "❌ Exercise 1: slow_parse(raw) ran on the loop before the thread got anything: "
        "`asyncio.to_thread(slow_parse(raw))` calls slow_parse first "
        f"(at {line_of('the eager call')} in calls_it_eagerly: "
    ), message
    assert "it blocked the loop, then to_thread was handed its result" in message
    assert "(TypeError: 'dict' object is not callable)" in message
    assert message.endswith("`await asyncio.to_thread(slow_parse, raw)`")


async def test_exercise_1_explains_a_missing_await() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: forgets_the_await\(raw\) gave back a coroutine, not the parsed "
        r"reading: the `await` is missing",
    ):
        await check_exercise_1(forgets_the_await)


async def test_exercise_1_explains_a_missing_return() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: forgets_to_return\(b'device-1 20.5'\) returned None, not the "
        r"parsed reading\n   Hint: return what the thread gives",
    ):
        await check_exercise_1(forgets_to_return)


async def test_exercise_1_explains_a_plain_function() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: is_not_async\(raw\) returned a dict, not something to await: it "
        r"is a plain function.*\n   Hint: write it as `async def is_not_async\(raw\):`",
    ):
        await check_exercise_1(is_not_async)


async def test_exercise_1_notices_that_slow_parse_was_not_called() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: skips_slow_parse returned in \d+ ms, faster than one call of "
        r"slow_parse \(0.2 s\): it did not call slow_parse",
    ):
        await check_exercise_1(skips_slow_parse)


async def test_exercise_1_keeps_a_bug_in_the_answer_with_its_traceback() -> None:
    with pytest.raises(KeyError, match="fahrenheit") as raised:
        await check_exercise_1(has_a_bug)
    assert raised.value.__notes__ == ["(raised while checking your answer to Exercise 1)"]


# --- Exercise 2: forward -----------------------------------------------------------------


async def forward(rx: Any, tx: Any) -> None:
    with tx:
        async for raw in rx:
            await tx.send(parse_reading(raw))


async def closes_in_finally(rx: Any, tx: Any) -> None:
    try:
        async for raw in rx:
            await tx.send(parse_reading(raw))
    finally:
        tx.close()


async def wraps_the_error(rx: Any, tx: Any) -> None:
    with tx:
        async for raw in rx:
            try:
                reading = parse_reading(raw)
            except ValueError as exc:
                raise RuntimeError("the stage met a bad reading") from exc
            await tx.send(reading)


async def never_closes(rx: Any, tx: Any) -> None:
    async for raw in rx:
        await tx.send(parse_reading(raw))


async def closes_on_success_only(rx: Any, tx: Any) -> None:
    async for raw in rx:
        await tx.send(parse_reading(raw))
    tx.close()


async def skips_bad_readings(rx: Any, tx: Any) -> None:
    with tx:
        async for raw in rx:
            try:
                await tx.send(parse_reading(raw))
            except ValueError:
                continue


async def returns_on_a_bad_reading(rx: Any, tx: Any) -> None:
    with tx:
        try:
            async for raw in rx:
                await tx.send(parse_reading(raw))
        except ValueError:
            return


async def receives_past_the_end(rx: Any, tx: Any) -> None:
    with tx:
        while True:
            raw = await rx.recv()
            await tx.send(parse_reading(raw))


async def closes_too_early(rx: Any, tx: Any) -> None:
    async for raw in rx:
        with tx:
            await tx.send(parse_reading(raw))


async def forwards_raw_bytes(rx: Any, tx: Any) -> None:
    with tx:
        async for raw in rx:
            await tx.send(raw)


async def waits_forever(rx: Any, tx: Any) -> None:
    with tx:
        await asyncio.Event().wait()


def plain_forward(rx: Any, tx: Any) -> None:
    tx.close()


def only_the_test_runs() -> None:
    assert asyncio.all_tasks() == {asyncio.current_task()}, asyncio.all_tasks()


async def test_exercise_2_accepts_the_solution(capsys: pytest.CaptureFixture[str]) -> None:
    assert (await check_exercise_2(forward)).passed
    assert capsys.readouterr().out == (
        "✅ Exercise 2 passed: 3 readings forwarded and the consumer ended; on a bad reading "
        "the consumer still ended and the ValueError propagated\n"
    )
    only_the_test_runs()


async def test_exercise_2_accepts_finally_and_a_chained_error() -> None:
    assert (await check_exercise_2(closes_in_finally)).passed
    assert (await check_exercise_2(wraps_the_error)).passed


async def test_exercise_2_finds_the_consumer_stuck_when_nothing_closes() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: the consumer is stuck waiting on recv: no sender will ever send "
        r"or close \(3 good readings\): forward returned without closing tx, so the consumer's "
        r"`async for` waits for a next reading forever\n   Hint: close the sender when the "
        r"stage ends: `with tx:` around the loop$",
    ):
        await check_exercise_2(never_closes)
    only_the_test_runs()


async def test_exercise_2_finds_the_consumer_stuck_when_only_success_closes() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: the consumer is stuck waiting on recv: no sender will ever send "
        r"or close \(a bad reading second of 3\): on the bad reading forward failed "
        r"\(ValueError: bad reading b'device-9 \?\?\?'\) without closing tx; it closes only on "
        r"the success path\n   Hint: `with tx:` around the loop closes it on every path",
    ):
        await check_exercise_2(closes_on_success_only)
    only_the_test_runs()


async def test_exercise_2_explains_a_swallowed_error() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: forward swallowed the ValueError of the bad reading \(a bad "
        r"reading second of 3\): it skipped the bad reading and carried on, so nobody learns "
        r"that a reading was bad\n   Hint: do not catch it: let it propagate out of forward",
    ):
        await check_exercise_2(skips_bad_readings)
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: forward swallowed the ValueError of the bad reading \(a bad "
        r"reading second of 3\): it returned normally",
    ):
        await check_exercise_2(returns_on_a_bad_reading)


async def test_exercise_2_explains_receiving_past_the_end() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: ChannelClosed escaped from forward \(3 good readings\): "
        r"`await rx.recv\(\)` raises it once the input is closed and drained\n"
        r"   Hint: loop with `async for raw in rx:`",
    ):
        await check_exercise_2(receives_past_the_end)


async def test_exercise_2_explains_sending_after_closing() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: forward sent on tx after closing it \(3 good readings\): "
        r"ChannelClosed\n   Hint: close tx once, after the last send",
    ):
        await check_exercise_2(closes_too_early)


async def test_exercise_2_explains_forwarding_raw_bytes() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: forward sent the raw bytes downstream \(3 good readings\), not "
        r"parsed readings",
    ):
        await check_exercise_2(forwards_raw_bytes)


async def test_exercise_2_gives_up_on_a_stage_that_never_ends() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: forward did not finish within 1 s \(3 good readings\), although "
        r"its input channel was closed",
    ):
        await check_exercise_2(waits_forever)
    only_the_test_runs()


async def test_exercise_2_explains_a_plain_function() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: forward\(rx, tx\) returned a NoneType, not something to await\n"
        r"   Hint: write it as `async def forward\(rx, tx\):`",
    ):
        await check_exercise_2(plain_forward)
