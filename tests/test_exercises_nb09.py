"""The checkers of notebook 09 accept a right answer and explain the classic wrong ones."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest

from telemetry_lab import ChannelClosed
from telemetry_lab.exercises import ExerciseRejected
from telemetry_lab.exercises.nb09 import audit, check_exercise_1, check_exercise_2


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


async def test_audit_yields_once_and_approves_everything() -> None:
    order: list[str] = []

    async def audited() -> None:
        order.append("audit starts")
        assert await audit("device-1", 1.0, 2.0) is None
        order.append("audit ends")

    async def other() -> None:
        order.append("other runs")

    await asyncio.gather(audited(), other())
    assert order == ["audit starts", "other runs", "audit ends"]  # it let the other one run


# --- Exercise 1: add_reading -----------------------------------------------------------------


async def add_reading(totals: Any, lock: asyncio.Lock, key: str, value: float) -> None:
    async with lock:
        old = totals[key]
        new = old + value
        await audit(key, old, new)
        totals[key] = new


async def with_get_and_augmented_assignment(
    totals: Any, lock: asyncio.Lock, key: str, value: float
) -> None:
    async with lock:
        old = totals.get(key, 0)
        await audit(key, old, old + value)
        totals[key] += value


async def with_acquire_and_release(totals: Any, lock: asyncio.Lock, key: str, value: float) -> None:
    await lock.acquire()
    try:
        old = totals[key]
        await audit(key, old, old + value)
        totals[key] = old + value
    finally:
        lock.release()


async def without_a_lock(totals: Any, lock: asyncio.Lock, key: str, value: float) -> None:
    old = totals[key]
    await audit(key, old, old + value)
    totals[key] = old + value


async def with_a_new_lock(totals: Any, lock: asyncio.Lock, key: str, value: float) -> None:
    async with asyncio.Lock():  # a lock of its own: nobody else ever waits for it
        old = totals[key]
        await audit(key, old, old + value)
        totals[key] = old + value


async def locks_only_the_write(totals: Any, lock: asyncio.Lock, key: str, value: float) -> None:
    old = totals[key]
    await audit(key, old, old + value)
    async with lock:
        totals[key] = old + value


async def reads_before_locking(totals: Any, lock: asyncio.Lock, key: str, value: float) -> None:
    old = totals[key]
    async with lock:
        await audit(key, old, old + value)
        totals[key] = old + value


async def writes_after_unlocking(totals: Any, lock: asyncio.Lock, key: str, value: float) -> None:
    async with lock:
        old = totals[key]
        await audit(key, old, old + value)
    totals[key] = old + value  # right here, by luck: nothing awaits since the release


async def locks_only_the_read(totals: Any, lock: asyncio.Lock, key: str, value: float) -> None:
    async with lock:
        old = totals[key]
    await audit(key, old, old + value)
    totals[key] = old + value


async def unlocks_for_the_audit(totals: Any, lock: asyncio.Lock, key: str, value: float) -> None:
    async with lock:
        old = totals[key]
    await audit(key, old, old + value)
    async with lock:
        totals[key] = old + value


async def locks_twice(totals: Any, lock: asyncio.Lock, key: str, value: float) -> None:
    async def write(new: float) -> None:
        async with lock:  # the caller holds it already
            totals[key] = new

    async with lock:
        old = totals[key]
        await audit(key, old, old + value)
        await write(old + value)


async def never_releases(totals: Any, lock: asyncio.Lock, key: str, value: float) -> None:
    await lock.acquire()
    old = totals[key]
    await audit(key, old, old + value)
    totals[key] = old + value


async def skips_the_audit(totals: Any, lock: asyncio.Lock, key: str, value: float) -> None:
    totals[key] = totals[key] + value  # no await: atomic, but nothing audited


async def forgets_to_await_the_audit(
    totals: Any, lock: asyncio.Lock, key: str, value: float
) -> None:
    async with lock:
        old = totals[key]
        audit(key, old, old + value)  # no await: it does nothing
        totals[key] = old + value


async def writes_before_the_audit(totals: Any, lock: asyncio.Lock, key: str, value: float) -> None:
    async with lock:
        old = totals[key]
        totals[key] = old + value
        await audit(key, old, old + value)


async def ignores_the_old_total(totals: Any, lock: asyncio.Lock, key: str, value: float) -> None:
    async with lock:
        old = totals[key]
        await audit(key, old, value)
        totals[key] = value


def not_async(totals: Any, lock: asyncio.Lock, key: str, value: float) -> None:
    totals[key] = totals[key] + value


async def test_exercise_1_accepts_the_solution(capsys: pytest.CaptureFixture[str]) -> None:
    assert (await check_exercise_1(add_reading)).passed
    assert capsys.readouterr().out == (
        "✅ Exercise 1 passed: 30 readings added at once to 3 totals, none lost; every read, "
        "audit and write under the lock\n"
    )


@pytest.mark.parametrize("answer", [with_get_and_augmented_assignment, with_acquire_and_release])
async def test_exercise_1_accepts_other_right_answers(answer: Any) -> None:
    assert (await check_exercise_1(answer)).passed


async def test_exercise_1_counts_the_updates_lost_without_a_lock() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: no lock: calls read the same total, awaited the audit, and "
        r"wrote over each other's updates; 27 of the 30 readings were lost: each total should "
        r"be 10, got device-1 1, device-2 1, device-3 1\n   Hint: hold the lock from the "
        r"read to the write",
    ):
        await check_exercise_1(without_a_lock)


async def test_exercise_1_explains_a_new_lock_on_every_call() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: add_reading made a new lock on every call, so each call locked "
        r"its own and nothing was excluded: 27 of the 30 readings were lost.*\n   Hint: use "
        r"the one lock you are given",
    ):
        await check_exercise_1(with_a_new_lock)


async def test_exercise_1_explains_a_lock_around_the_write_only() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: the lock was taken only around the write: .*27 of the 30 "
        r"readings were lost.*\n   Hint: take it before the read",
    ):
        await check_exercise_1(locks_only_the_write)


async def test_exercise_1_explains_a_read_outside_the_lock() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: the total was read outside the lock, before `async with lock:`"
        r".*27 of the 30 readings were lost.*\n   Hint: move the read inside",
    ):
        await check_exercise_1(reads_before_locking)


async def test_exercise_1_explains_a_write_after_the_release() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: the new total was written after the lock was released; here "
        r"the totals came out right only because nothing awaits between the release and the "
        r"write.*\n   Hint: keep the write inside",
    ):
        await check_exercise_1(writes_after_unlocking)


async def test_exercise_1_explains_a_lock_around_the_read_only() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: the lock was taken only around the read: it was released before "
        r"the audit.*27 of the 30 readings were lost.*\n   Hint: keep it until the write",
    ):
        await check_exercise_1(locks_only_the_read)


async def test_exercise_1_explains_letting_the_lock_go_during_the_audit() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: the lock was let go during the audit \(two `async with lock:` "
        r"blocks.*27 of the 30 readings were lost.*\n   Hint: hold it without a break",
    ):
        await check_exercise_1(unlocks_for_the_audit)


async def test_exercise_1_says_asyncio_lock_is_not_reentrant() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: add_reading did not return within 0.5 s: it acquired the lock "
        r"while already holding it, and waits for itself forever \(a deadlock\); asyncio.Lock "
        r"is not reentrant\n   Hint: take the lock once per call",
    ):
        await check_exercise_1(locks_twice)


async def test_exercise_1_explains_a_lock_never_released() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: add_reading returned still holding the lock "
        r"\(`lock.acquire\(\)` without `lock.release\(\)`\).*\n   Hint: use `async with lock:`",
    ):
        await check_exercise_1(never_releases)


@pytest.mark.parametrize("answer", [skips_the_audit, forgets_to_await_the_audit])
async def test_exercise_1_insists_on_the_awaited_audit(answer: Any) -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: add_reading never awaited audit\(key, old, new\)",
    ):
        await check_exercise_1(answer)


async def test_exercise_1_explains_writing_before_the_audit() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: add_reading wrote the new total before awaiting its audit",
    ):
        await check_exercise_1(writes_before_the_audit)


async def test_exercise_1_explains_wrong_arithmetic() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: add_reading\(totals, lock, 'device-9', 2.5\) left "
        r"totals\['device-9'\] at 2.5, not 1.5 \+ 2.5",
    ):
        await check_exercise_1(ignores_the_old_total)


async def test_exercise_1_explains_a_plain_function() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: add_reading\(\.\.\.\) returned a NoneType, not something to await",
    ):
        await check_exercise_1(not_async)


# --- Exercise 2: counter_owner ---------------------------------------------------------------


async def counter_owner(rx: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    async for message in rx:
        match message:
            case ("add", key, n):
                counts[key] = counts.get(key, 0) + n
            case ("get", key, reply):
                reply.set_result(counts.get(key, 0))
    return counts


async def with_a_defaultdict(rx: Any) -> dict[str, int]:
    counts: defaultdict[str, int] = defaultdict(int)
    async for kind, key, payload in rx:
        if kind == "add":
            counts[key] += payload
        else:
            payload.set_result(counts[key])  # creates the key at 0
    return counts


async def with_recv_and_channel_closed(rx: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    while True:
        try:
            kind, key, payload = await rx.recv()
        except ChannelClosed:
            return counts
        if kind == "add":
            counts[key] = counts.get(key, 0) + payload
        else:
            payload.set_result(counts.get(key, 0))


async def lets_channel_closed_escape(rx: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    while True:
        kind, key, payload = await rx.recv()
        if kind == "add":
            counts[key] = counts.get(key, 0) + payload
        else:
            payload.set_result(counts.get(key, 0))


async def spins_on_the_closed_channel(rx: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    while True:
        try:
            _kind, key, payload = await rx.recv()
        except ChannelClosed:
            continue  # recv raises again at once: this loop never waits
        counts[key] = counts.get(key, 0) + payload


async def waits_for_a_stop_message(rx: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    stop = asyncio.Event()  # nobody ever sets it
    async for kind, key, payload in rx:
        if kind == "add":
            counts[key] = counts.get(key, 0) + payload
        else:
            payload.set_result(counts.get(key, 0))
    await stop.wait()
    return counts


async def stops_while_closed_but_not_drained(rx: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    while not rx.is_closed:  # True as soon as the senders close, values still buffered
        _kind, key, payload = await rx.recv()
        counts[key] = counts.get(key, 0) + payload
    return counts


async def stops_when_empty(rx: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    await asyncio.sleep(0)
    while len(rx):  # empty for a moment is not the end
        _kind, key, payload = rx.try_recv()
        counts[key] = counts.get(key, 0) + payload
    return counts


async def stops_receiving(rx: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _ in range(3):
        _kind, key, payload = await rx.recv()
        counts[key] = counts.get(key, 0) + payload
    await asyncio.Event().wait()  # forgot the rest
    return counts


async def counts_messages_not_n(rx: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    async for _kind, key, _payload in rx:
        counts[key] = counts.get(key, 0) + 1
    return counts


async def returns_nothing(rx: Any) -> None:
    counts: dict[str, int] = {}
    async for _kind, key, payload in rx:
        counts[key] = counts.get(key, 0) + payload


async def treats_every_message_as_an_add(rx: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    async for _kind, key, n in rx:
        counts[key] = counts.get(key, 0) + n  # a reply future is not a number
    return counts


async def ignores_gets(rx: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    async for kind, key, payload in rx:
        if kind == "add":
            counts[key] = counts.get(key, 0) + payload
    return counts


async def fails_on_an_unknown_key(rx: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    async for kind, key, payload in rx:
        if kind == "add":
            counts[key] = counts.get(key, 0) + payload
        else:
            payload.set_result(counts[key])
    return counts


async def answers_with_its_dict(rx: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    async for kind, key, payload in rx:
        if kind == "add":
            counts[key] = counts.get(key, 0) + payload
        else:
            payload.set_result(counts)  # the owner's own dict: the requester can change it
    return counts


async def answers_with_the_key(rx: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    async for kind, key, payload in rx:
        if kind == "add":
            counts[key] = counts.get(key, 0) + payload
        else:
            payload.set_result(key)
    return counts


def plain_owner(rx: Any) -> dict[str, int]:
    return {}


async def test_exercise_2_accepts_the_solution(capsys: pytest.CaptureFixture[str]) -> None:
    assert (await check_exercise_2(counter_owner)).passed
    assert capsys.readouterr().out == (
        "✅ Exercise 2 passed: 50 adds from 5 senders at once, none lost; 4 gets answered; "
        "ended when the channel closed\n"
    )


@pytest.mark.parametrize("answer", [with_a_defaultdict, with_recv_and_channel_closed])
async def test_exercise_2_accepts_other_right_answers(answer: Any) -> None:
    assert (await check_exercise_2(answer)).passed


async def test_exercise_2_explains_an_escaped_channel_closed() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: ChannelClosed escaped from counter_owner \(5 senders at once, "
        r"10 \('add', key, n\) messages each\).*\n   Hint: loop with `async for message in rx:`",
    ):
        await check_exercise_2(lets_channel_closed_escape)


async def test_exercise_2_catches_a_spinning_loop_instead_of_freezing() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: counter_owner kept receiving from the closed channel .* in a "
        r"loop that never waits",
    ):
        await check_exercise_2(spins_on_the_closed_channel)


async def test_exercise_2_explains_not_ending_with_the_channel() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: counter_owner did not return within 0.5 s after every sender "
        r"had closed .*\n   Hint: loop with `async for message in rx:`: it ends once every "
        r"sender is closed",
    ):
        await check_exercise_2(waits_for_a_stop_message)


@pytest.mark.parametrize("answer", [stops_while_closed_but_not_drained, stops_when_empty])
async def test_exercise_2_explains_messages_dropped_by_stopping_early(answer: Any) -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: counter_owner returned after taking \d+ of the 50 messages "
        r".*the rest were dropped\n   Hint: `async for message in rx:` runs until every sender "
        r"is closed \*and\* the channel is drained",
    ):
        await check_exercise_2(answer)


async def test_exercise_2_explains_an_owner_that_stops_receiving() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: the senders were still waiting for room after 0.5 s .*: "
        r"counter_owner took 3 of the 50 messages and then stopped receiving",
    ):
        await check_exercise_2(stops_receiving)


async def test_exercise_2_explains_adds_not_applied_in_full() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: counter_owner took all 50 messages but the counts came out "
        r"\{'all': 25, 'sender-0': 5, .*some \('add', key, n\) messages were dropped or not "
        r"added in full",
    ):
        await check_exercise_2(counts_messages_not_n)


async def test_exercise_2_explains_returning_nothing() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: counter_owner returned NoneType .*, not the dict of counts",
    ):
        await check_exercise_2(returns_nothing)


async def test_exercise_2_explains_a_get_taken_for_an_add() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: counter_owner failed on a \('get', key, reply\) message .*: "
        r"TypeError: .*\n   Hint: tell the two kinds apart by their first item",
    ):
        await check_exercise_2(treats_every_message_as_an_add)


async def test_exercise_2_explains_a_get_never_answered() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: 4 get request\(s\) were never answered .*: the requester of "
        r"'device-1', 'device-2', 'device-3', 'never-added' waits on its reply future forever"
        r"\n   Hint: answer each \('get', key, reply\) with `reply.set_result",
    ):
        await check_exercise_2(ignores_gets)


async def test_exercise_2_explains_a_key_never_added() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: counter_owner failed with KeyError\('never-added'\) .*\n   "
        r"Hint: a key never added counts 0",
    ):
        await check_exercise_2(fails_on_an_unknown_key)


async def test_exercise_2_explains_answering_with_a_reference() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: get\('device-1'\) was answered with a whole dict .*a reference "
        r"the requester could change behind the owner's back",
    ):
        await check_exercise_2(answers_with_its_dict)


async def test_exercise_2_explains_a_wrong_answer() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: get\('device-1'\) was answered 'device-1', not 3",
    ):
        await check_exercise_2(answers_with_the_key)


async def test_exercise_2_explains_a_plain_function() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: counter_owner\(rx\) returned a dict, not something to await",
    ):
        await check_exercise_2(plain_owner)


async def test_checks_leave_no_task_behind() -> None:
    before = asyncio.all_tasks()
    for answer in (ignores_gets, stops_receiving, waits_for_a_stop_message):
        with pytest.raises(ExerciseRejected):
            await check_exercise_2(answer)
    for answer in (locks_twice, never_releases):
        with pytest.raises(ExerciseRejected):
            await check_exercise_1(answer)
    assert asyncio.all_tasks() == before
