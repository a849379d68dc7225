"""The checkers of notebook 07 accept a right answer and explain the classic wrong ones."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from telemetry_lab import ChannelClosed, Selected, on_recv, on_timeout, select
from telemetry_lab.exercises import ExerciseRejected
from telemetry_lab.exercises.nb07 import Spinning, check_exercise_1, check_exercise_2, watched


async def merge(rx1: Any, rx2: Any) -> list[Any]:
    out = []
    live = [True, True]
    while any(live):
        try:
            sel = await select(on_recv(rx1, enabled=live[0]), on_recv(rx2, enabled=live[1]))
        except ChannelClosed as exc:
            live[exc.branch_index] = False  # type: ignore[attr-defined]
            continue
        out.append(sel.value)
    return out


async def merge_while_truthy(rx1: Any, rx2: Any) -> list[Any]:
    out = []
    while rx1 or rx2:  # a receiver is truthy until closed and drained
        try:
            sel = await select(on_recv(rx1, enabled=bool(rx1)), on_recv(rx2, enabled=bool(rx2)))
        except ChannelClosed:
            continue  # it closed during the wait: falsy now, so off on the next call
        out.append(sel.value)
    return out


async def loops_while_something_is_buffered(rx1: Any, rx2: Any) -> list[Any]:
    out = []
    receivers = [rx1, rx2]
    while any(len(r) for r in receivers):  # what `any(receivers)` did before __bool__
        sel = await select(*(on_recv(r, enabled=len(r) > 0) for r in receivers))
        out.append(sel.value)
    return out


async def loops_until_closed(rx1: Any, rx2: Any) -> list[Any]:
    out = []
    while not (rx1.is_closed and rx2.is_closed):  # closed is not drained
        out.append((await select(on_recv(rx1), on_recv(rx2))).value)
    return out


async def never_switches_off(rx1: Any, rx2: Any) -> list[Any]:
    out = []
    while True:
        try:
            out.append((await select(on_recv(rx1), on_recv(rx2))).value)
        except ChannelClosed:
            if rx1.is_closed and rx2.is_closed and not len(rx1) and not len(rx2):
                return out
            continue  # the closed branch is still on: it wins again at once


async def lets_it_escape(rx1: Any, rx2: Any) -> list[Any]:
    out = []
    while True:  # biased: rx1 is drained first, then its branch raises ChannelClosed
        out.append((await select(on_recv(rx1), on_recv(rx2), biased=True)).value)


async def stops_at_the_first_close(rx1: Any, rx2: Any) -> list[Any]:
    out = []
    while True:
        try:
            out.append((await select(on_recv(rx1), on_recv(rx2), biased=True)).value)
        except ChannelClosed:
            return out


async def selects_with_everything_off(rx1: Any, rx2: Any) -> list[Any]:
    out = []
    on = [True, True]
    while True:  # no `else => break`: the last select has every branch off
        try:
            sel = await select(on_recv(rx1, enabled=on[0]), on_recv(rx2, enabled=on[1]))
        except ChannelClosed as exc:
            on[exc.branch_index] = False  # type: ignore[attr-defined]
            continue
        out.append(sel.value)


async def stub(*args: Any) -> None:
    raise NotImplementedError


async def test_exercise_1_accepts_the_solution(capsys: pytest.CaptureFixture[str]) -> None:
    assert (await check_exercise_1(merge)).passed
    assert capsys.readouterr().out == (
        "✅ Exercise 1 passed: 8 values from two closed channels, 10 from live senders, in order\n"
    )


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


async def test_exercise_1_accepts_a_loop_on_truthiness() -> None:
    assert (await check_exercise_1(merge_while_truthy)).passed


async def test_exercise_1_points_at_truthiness_when_nothing_comes_out() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: merge returned nothing \(open, empty channels at first; rx1 "
        r"closes early, rx2 goes on\), though 10 values were sent: its loop ended before the "
        r"first value\n   Hint: a receiver is truthy until it is closed \*and\* drained",
    ):
        await check_exercise_1(loops_while_something_is_buffered)
    with pytest.raises(
        ExerciseRejected,
        match=r"(?s)^❌ Exercise 1: merge returned nothing \(both channels full and closed before "
        r"merge starts\), though 8 values were sent.*`rx.is_closed` is True while values are "
        r"still buffered$",
    ):
        await check_exercise_1(loops_until_closed)


async def test_exercise_1_catches_a_spinning_loop_instead_of_freezing() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: your merge kept selecting a closed channel: .*\n"
        r"   Hint: switch the finished branch off on the next call, `on_recv\(rx, enabled=",
    ):
        await check_exercise_1(never_switches_off)


async def test_exercise_1_explains_an_escaped_channel_closed() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: ChannelClosed escaped from your merge \(from branch 0\): when "
        r"a channel ends, `select` raises it\n   Hint: catch it around `select\(\.\.\.\)`",
    ):
        await check_exercise_1(lets_it_escape)


async def test_exercise_1_explains_stopping_at_the_first_close() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: merge lost 5 of the 8 values \(both channels full and closed "
        r"before merge starts\), from rx2: it stopped before that channel had ended",
    ):
        await check_exercise_1(stops_at_the_first_close)


async def test_exercise_1_explains_a_select_with_every_branch_off() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 1: merge called select\(\) with every branch switched off "
        r"\(ValueError\)\n   Hint: that is where Tokio's `else => break` arm would run",
    ):
        await check_exercise_1(selects_with_everything_off)


def spin(rx: Any) -> None:
    """Receive from a closed channel forever, never yielding to the loop."""
    while True:
        try:
            rx.try_recv()
        except ChannelClosed:
            continue


async def test_a_watched_receiver_is_a_receiver_that_notices_spinning() -> None:
    tx, rx = watched(1)
    assert rx  # open and empty: truthy
    assert len(rx) == 0
    tx.try_send("x")
    tx.close()
    assert rx.try_recv() == "x"
    assert not rx  # closed and drained
    with pytest.raises(Spinning):
        spin(rx)
    for _ in range(3):
        await asyncio.sleep(0)  # a loop step resets the count
    with pytest.raises(ChannelClosed):
        rx.try_recv()


async def recv_with_timeout(rx: Any, seconds: float) -> Any:
    match await select(on_recv(rx), on_timeout(seconds), biased=True):
        case Selected(index=0, value=value):
            return value
        case _:
            return None


async def naive_race(rx: Any, seconds: float) -> Any:
    receive = asyncio.ensure_future(rx.recv())
    done, _ = await asyncio.wait([receive], timeout=seconds)
    return receive.result() if done else None  # the receive is left running


async def gives_up_at_once(rx: Any, seconds: float) -> Any:
    return rx.try_recv() if len(rx) else None


async def sleeps_then_looks(rx: Any, seconds: float) -> Any:
    if len(rx):
        return rx.try_recv()
    await asyncio.sleep(seconds)
    return rx.try_recv() if len(rx) else None


async def returns_the_selected(rx: Any, seconds: float) -> Any:
    return await select(on_recv(rx), on_timeout(seconds), biased=True)


async def test_exercise_2_accepts_the_solution(capsys: pytest.CaptureFixture[str]) -> None:
    assert (await check_exercise_2(recv_with_timeout)).passed
    assert capsys.readouterr().out == (
        "✅ Exercise 2 passed: a waiting value, a timeout that consumes nothing, a value "
        "arriving in time\n"
    )


async def with_wait_for(rx: Any, seconds: float) -> Any:
    try:
        return await asyncio.wait_for(rx.recv(), seconds)  # a cancelled recv takes nothing
    except TimeoutError:
        return None


async def lets_the_timeout_escape(rx: Any, seconds: float) -> Any:
    return await asyncio.wait_for(rx.recv(), seconds)


async def test_exercise_2_accepts_wait_for_on_a_receive() -> None:
    assert (await check_exercise_2(with_wait_for)).passed


async def test_exercise_2_explains_an_escaped_timeout_error() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: recv_with_timeout\(rx, 0.05\) raised TimeoutError instead of "
        r"returning None\n   Hint: catch it around `asyncio.wait_for",
    ):
        await check_exercise_2(lets_the_timeout_escape)


async def test_exercise_2_explains_a_receive_left_running() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: a value sent after the timeout was consumed: a receive left "
        r"running took it\n   Hint: the losing receive must take nothing",
    ):
        await check_exercise_2(naive_race)


async def test_exercise_2_explains_giving_up_before_the_timeout() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: recv_with_timeout returned None after 0 ms, before its 50 ms "
        r"timeout\n   Hint: wait up to `seconds`",
    ):
        await check_exercise_2(gives_up_at_once)


async def test_exercise_2_explains_sleeping_through_an_arrival() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: a value arrived 10 ms into the wait, yet recv_with_timeout "
        r"waited for the whole timeout\n   Hint: do not sleep and then look",
    ):
        await check_exercise_2(sleeps_then_looks)


async def test_exercise_2_explains_returning_the_selected() -> None:
    with pytest.raises(
        ExerciseRejected,
        match=r"^❌ Exercise 2: recv_with_timeout returned the Selected record, not the value",
    ):
        await check_exercise_2(returns_the_selected)
