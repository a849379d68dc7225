"""The checkers of notebook 01 accept a right answer and explain the classic wrong ones."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from telemetry_lab import ChannelFull, channel
from telemetry_lab.exercises import ExerciseRejected
from telemetry_lab.exercises.nb01 import check_exercise_1, check_exercise_2

NOT_ATTEMPTED = (
    "⏳ Exercise {n} is not attempted yet: replace `raise NotImplementedError` in the cell "
    "above with your answer, run that cell, then this one.\n"
)


async def stub(*args: Any) -> None:
    raise NotImplementedError


async def fan_in(n_producers: int, per_producer: int) -> list[tuple[int, int]]:
    async def produce(pid: int, tx: Any) -> None:
        with tx:
            for i in range(per_producer):
                await tx.send((pid, i))

    tx, rx = channel[tuple[int, int]](2)
    with tx:
        tasks = [asyncio.create_task(produce(pid, tx.clone())) for pid in range(n_producers)]
    try:
        values = [value async for value in rx]
    finally:
        rx.close()
        await asyncio.gather(*tasks, return_exceptions=True)
    return values


async def keeps_the_original(n_producers: int, per_producer: int) -> list[tuple[int, int]]:
    async def produce(pid: int, tx: Any) -> None:
        with tx:
            for i in range(per_producer):
                await tx.send((pid, i))

    tx, rx = channel[tuple[int, int]](100)
    tasks = [asyncio.create_task(produce(pid, tx.clone())) for pid in range(n_producers)]
    values = [value async for value in rx]  # the original tx is never closed
    await asyncio.gather(*tasks)
    return values


async def waits_for_producers_first(n_producers: int, per_producer: int) -> list[Any]:
    async def produce(pid: int, tx: Any) -> None:
        with tx:
            for i in range(per_producer):
                await tx.send((pid, i))

    tx, rx = channel[tuple[int, int]](2)
    with tx:
        producers = [produce(pid, tx.clone()) for pid in range(n_producers)]
    await asyncio.gather(*producers)  # nobody reads yet: the channel fills up
    return [value async for value in rx]


async def shares_one_handle(n_producers: int, per_producer: int) -> list[tuple[int, int]]:
    async def produce(pid: int, tx: Any) -> None:
        with tx:  # the first producer to finish closes it for everyone
            for i in range(per_producer):
                await tx.send((pid, i))

    tx, rx = channel[tuple[int, int]](2)
    async with asyncio.TaskGroup() as group:
        for pid in range(n_producers):
            group.create_task(produce(pid, tx))
        values = [value async for value in rx]
    return values


async def sorts_the_values(n_producers: int, per_producer: int) -> list[tuple[int, int]]:
    values = await fan_in(n_producers, per_producer)
    return sorted(values, key=lambda v: -v[1])


async def test_exercise_1_accepts_the_solution(capsys: pytest.CaptureFixture[str]) -> None:
    assert (await check_exercise_1(fan_in)).passed
    assert capsys.readouterr().out == (
        "✅ Exercise 1 passed: every value arrived, each producer's in order, and the "
        "receiving loop ended\n"
    )
    assert (await check_exercise_1(fan_in, solution=True)).passed


async def test_exercise_1_stub_is_not_attempted(capsys: pytest.CaptureFixture[str]) -> None:
    assert not (await check_exercise_1(stub)).passed
    assert capsys.readouterr().out == NOT_ATTEMPTED.format(n=1)
    with pytest.raises(NotImplementedError):
        await check_exercise_1(stub, solution=True)


async def test_exercise_1_explains_the_original_sender_left_open() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: fan_in\(3, 5\) never returned: its receiving loop did not end; "
        r"every value arrived, but one sender handle is still open, most likely the original "
        r"`tx`\n   Hint: close the original `tx` once the clones are made",
    ):
        await check_exercise_1(keeps_the_original)
    assert asyncio.all_tasks() == {asyncio.current_task()}  # nothing left running


async def test_exercise_1_explains_waiting_for_the_producers_before_reading() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: fan_in\(3, 5\) never returned: its receiving loop did not end; "
        r"3 producer\(s\) are stuck in `send` on a full channel, because nothing reads it "
        r"while they send\n   Hint: start the producers as tasks first",
    ):
        await check_exercise_1(waits_for_producers_first)
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_exercise_1_explains_one_shared_sender() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: in fan_in\(3, 5\) a send raised ChannelClosed: a sender handle "
        r"was closed while a producer still sent through it\n   Hint: give each producer its "
        r"own `tx\.clone\(\)`",
    ):
        await check_exercise_1(shares_one_handle)


async def test_exercise_1_explains_reordered_values() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: fan_in\(3, 5\): producer 0's values arrived out of order or "
        r"changed\n   Hint: a channel keeps each producer's order",
    ):
        await check_exercise_1(sorts_the_values)


async def offer(tx: Any, attempts: int) -> int:
    refused = 0
    with tx:
        for value in range(attempts):
            try:
                tx.try_send(value)
            except ChannelFull:
                refused += 1
            await asyncio.sleep(0)
    return refused


async def never_closes(tx: Any, attempts: int) -> int:
    refused = 0
    for value in range(attempts):
        try:
            tx.try_send(value)
        except ChannelFull:
            refused += 1
        await asyncio.sleep(0)
    return refused


async def waits_for_room(tx: Any, attempts: int) -> int:
    with tx:
        for value in range(attempts):
            await tx.send(value)
    return 0


async def never_yields(tx: Any, attempts: int) -> int:
    refused = 0
    with tx:
        for value in range(attempts):
            try:
                tx.try_send(value)
            except ChannelFull:
                refused += 1
    return refused


async def retries(tx: Any, attempts: int) -> int:
    refused = 0
    with tx:
        for value in range(attempts):
            while True:
                try:
                    tx.try_send(value)
                    break
                except ChannelFull:
                    refused += 1
                    await asyncio.sleep(0)
    return refused


async def closes_inside_the_loop(tx: Any, attempts: int) -> int:
    refused = 0
    for value in range(attempts):
        with tx:
            try:
                tx.try_send(value)
            except ChannelFull:
                refused += 1
    return refused


async def test_exercise_2_accepts_the_solution(capsys: pytest.CaptureFixture[str]) -> None:
    assert (await check_exercise_2(offer)).passed
    assert capsys.readouterr().out == "✅ Exercise 2 passed: 12 delivered, 18 refused of 30\n"


async def test_exercise_2_stub_is_not_attempted(capsys: pytest.CaptureFixture[str]) -> None:
    assert not (await check_exercise_2(stub)).passed
    assert capsys.readouterr().out == NOT_ATTEMPTED.format(n=2)
    with pytest.raises(NotImplementedError):
        await check_exercise_2(stub, solution=True)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            never_closes,
            r"offer\(\) returned without closing tx: the consumer would wait forever\n"
            r"   Hint: put the loop inside `with tx:` \(or call `tx\.close\(\)` at the end\)$",
        ),
        (
            waits_for_room,
            r"no value was refused, although the consumer is slow: offer\(\) waited for room\n"
            r"   Hint: use `tx\.try_send\(value\)`, not `await tx\.send\(value\)`",
        ),
        (
            never_yields,
            r"only 2 values were delivered: the consumer never got a turn while offer\(\) ran\n"
            r"   Hint: `await asyncio\.sleep\(0\)` after each attempt",
        ),
        (
            retries,
            r"the books do not balance: \d+ refused \+ 30 delivered is not the 30 attempted\n"
            r"   Hint: count one refusal per ChannelFull and nothing else, and do not retry",
        ),
        (
            closes_inside_the_loop,
            r"a `try_send` raised ChannelClosed: tx was closed before the last attempt\n"
            r"   Hint: close tx once, after the loop",
        ),
    ],
    ids=lambda v: getattr(v, "__name__", "message"),
)
async def test_exercise_2_explains_the_classic_mistakes(answer: Any, message: str) -> None:
    with pytest.raises(ExerciseRejected, match=r"^❌ Exercise 2: " + message):
        await check_exercise_2(answer)
