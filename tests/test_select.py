"""Tests for `telemetry_lab.primitives.select`: race branches, let only the winner consume.

Ported from Tokio's `tokio/tests/macros_select.rs` where the behaviour applies, plus the
contract (DESIGN.md, "Primitive contracts", select) and the module docstring's rules. The
central test shows the trap select exists for: `asyncio.wait(FIRST_COMPLETED)` on two
`recv()` tasks consumes two values and delivers one; `select` delivers every value.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
from typing import Any

import pytest
from support import settle

from telemetry_lab import (
    Branch,
    Notify,
    Receiver,
    Selected,
    broadcast,
    channel,
    on_changed,
    on_deadline,
    on_done,
    on_event,
    on_notified,
    on_recv,
    on_timeout,
    select,
    watch,
)
from telemetry_lab import primitives as prims
from telemetry_lab.errors import ChannelClosed, FutureCancelled, Lagged


def ready_future(value: Any) -> asyncio.Future[Any]:
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    fut.set_result(value)
    return fut


def filled(*values: Any, capacity: int = 8) -> Receiver[Any]:
    """Return the receiver of a fresh channel that holds `values`.

    The sender is dropped unclosed, so the channel stays open (closing is explicit).
    """
    tx, rx = channel[Any](capacity)
    for v in values:
        tx.try_send(v)
    return rx


def completes_without_waiting(coro: Any) -> Any:
    """Run `coro` one step; return its result, failing if it had to suspend."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    pytest.fail("the coroutine suspended instead of completing at once")


async def finish(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait for it (cleanup for tasks a test started)."""
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_exported_from_package_and_primitives() -> None:
    """select and its branch constructors are importable from both public namespaces."""
    for name in ("select", "Selected", "Branch", "on_recv", "on_changed", "on_notified"):
        assert hasattr(prims, name)
    for name in ("on_timeout", "on_deadline", "on_event", "on_done"):
        assert hasattr(prims, name)
    assert prims.select is select


def test_branches_built_outside_running_loop() -> None:
    """Branches and channels can be built in one cell (no loop) and selected in another."""
    tx, rx = channel[int](2)
    tx.try_send(1)
    notify = Notify()
    branches = (on_recv(rx), on_notified(notify), on_timeout(5.0))

    async def use() -> Selected[Any]:
        return await select(*branches, biased=True)

    sel = asyncio.run(use())
    assert (sel.index, sel.value) == (0, 1)


# --- ports of macros_select.rs ---------------------------------------------------------


async def test_sync_one_lit_expr_comma() -> None:
    """Ports `sync_one_lit_expr_comma` (and `_no_comma`, `_block`, `sync_one_await`)."""
    branch = on_done(ready_future(1))
    sel = await select(branch)
    assert sel == Selected(0, 1, branch)
    assert sel.branch is branch


async def test_no_branch_else_only() -> None:
    """Ports `no_branch_else_only`: with every branch off, select raises ValueError."""
    with pytest.raises(ValueError, match=r"^select\(\) needs an enabled branch; all 0 are off$"):
        await select()
    rx = filled(1)
    with pytest.raises(ValueError, match=r"^select\(\) needs an enabled branch; all 2 are off$"):
        await select(None, on_recv(rx, enabled=False))
    assert len(rx) == 1


async def test_no_branch_else_only_biased() -> None:
    """Ports `no_branch_else_only_biased`: the same with biased=True."""
    with pytest.raises(ValueError, match=r"^select\(\) needs an enabled branch; all 3 are off$"):
        await select(None, on_timeout(0, enabled=False), None, biased=True)


async def test_nested_one() -> None:
    """Ports `nested_one`: a select inside a select's handler."""
    outer = await select(on_done(ready_future(1)))
    inner = await select(on_done(ready_future(outer.value)))
    assert inner.value == 1


async def test_nested() -> None:
    """Ports `nested`: an inner select racing as a task inside an outer select."""
    tx1, rx1 = channel[int](1)
    tx2, rx2 = channel[int](1)
    inner = asyncio.create_task(select(on_recv(rx2)))
    outer = asyncio.create_task(select(on_recv(rx1), on_done(inner)))
    await settle()
    tx2.try_send(2)
    sel = await outer
    assert sel.index == 1
    assert isinstance(sel.value, Selected)
    assert (sel.value.index, sel.value.value) == (0, 2)
    assert len(rx1) == 0
    tx1.try_send(1)
    assert (await select(on_recv(rx1))).value == 1


async def test_sync_two() -> None:
    """Ports `sync_two`: two ready branches, exactly one operation runs."""
    for seed in range(10):
        rx1, rx2 = filled(1), filled(2)
        sel = await select(on_recv(rx1), on_recv(rx2), rng=random.Random(seed))
        assert sel.value == sel.index + 1
        assert len(rx1) + len(rx2) == 1  # the loser's value is still there
        assert [len(rx1), len(rx2)][sel.index] == 0


async def test_one_ready() -> None:
    """Ports `one_ready`: the only ready branch wins, whatever the random start."""
    for seed in range(10):
        rx1, rx2 = filled(1), filled()
        sel = await select(on_recv(rx1), on_recv(rx2), rng=random.Random(seed))
        assert (sel.index, sel.value) == (0, 1)
        assert rx2.statistics().tasks_waiting_receive == 0


async def test_select_streams() -> None:
    """Ports `select_streams`: loop over two channels until both close; all values arrive."""
    tx1, rx1 = channel[int](4)
    tx2, rx2 = channel[int](4)

    async def produce() -> None:
        await tx2.send(1)
        await asyncio.sleep(0)
        await tx1.send(2)
        await asyncio.sleep(0)
        await tx2.send(3)
        await asyncio.sleep(0)
        tx1.close()
        tx2.close()

    producer = asyncio.create_task(produce())
    msgs: list[int] = []
    while True:
        open1 = not (rx1.is_closed and len(rx1) == 0)
        open2 = not (rx2.is_closed and len(rx2) == 0)
        if not (open1 or open2):
            break  # Tokio's `else =>` branch
        try:
            sel = await select(on_recv(rx1, enabled=open1), on_recv(rx2, enabled=open2))
        except ChannelClosed:
            continue
        msgs.append(sel.value)
    await producer
    assert sorted(msgs) == [1, 2, 3]


async def test_move_uncompleted_futures() -> None:
    """Ports `move_uncompleted_futures`: the losing receiver still holds its value."""
    rx1, rx2 = filled(1), filled(2)
    sel = await select(on_recv(rx1), on_recv(rx2))
    if sel.index == 0:
        assert sel.value == 1
        assert rx2.try_recv() == 2
    else:
        assert sel.value == 2
        assert rx1.try_recv() == 1


async def test_disable_with_if() -> None:
    """Ports `disable_with_if`: a switched-off branch is never polled, even when ready."""
    ready = filled(7)
    tx, rx = channel[str](1)

    class Exploding(Branch[None]):
        def poll(self) -> None:
            raise AssertionError("a disabled branch was polled")

        def arm(self, waker: asyncio.Future[Any]) -> None:
            raise AssertionError("a disabled branch was armed")

        def disarm(self, waker: asyncio.Future[Any]) -> None:
            raise AssertionError("a disabled branch was disarmed")

    task = asyncio.create_task(
        select(on_recv(ready, enabled=False), Exploding(enabled=False), on_recv(rx))
    )
    await settle()
    assert not task.done()
    tx.try_send("go")
    sel = await task
    assert (sel.index, sel.value) == (2, "go")
    assert len(ready) == 1


async def test_join_with_select() -> None:
    """Ports `join_with_select`: switch a branch off once it has produced its value."""
    tx1, rx1 = channel[int](1)
    tx2, rx2 = channel[int](1)

    async def both() -> tuple[int, int]:
        a: int | None = None
        b: int | None = None
        while a is None or b is None:
            sel = await select(on_recv(rx1, enabled=a is None), on_recv(rx2, enabled=b is None))
            if sel.index == 0:
                a = sel.value
            else:
                b = sel.value
        return a, b

    task = asyncio.create_task(both())
    await settle()
    tx1.try_send(123)
    await settle()
    assert not task.done()
    tx1.try_send(999)  # branch 0 is off now: this value stays in the channel
    tx2.try_send(456)
    assert await task == (123, 456)
    assert rx1.try_recv() == 999


@pytest.mark.parametrize("biased", [False, True])
async def test_use_future_in_if_condition(biased: bool) -> None:
    """Ports `use_future_in_if_condition` and `_biased`: an off timeout never fires."""
    sel = await select(on_timeout(0, enabled=False), on_done(ready_future(1)), biased=biased)
    assert (sel.index, sel.value) == (1, 1)


async def test_many_branches() -> None:
    """Ports `many_branches`: 64 ready branches."""
    sel = await select(*(on_done(ready_future(1)) for _ in range(64)))
    assert sel.value == 1
    assert 0 <= sel.index < 64


async def test_never_branch_no_warnings() -> None:
    """Ports `never_branch_no_warnings`: a never-ready branch loses to a ready one."""
    never: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    sel = await select(on_done(never), on_done(ready_future(1)))
    assert (sel.index, sel.value) == (1, 1)
    assert not never.done()


async def test_biased_one_not_ready() -> None:
    """Ports `biased_one_not_ready`: biased polls in order; the first ready branch wins."""
    rx1, rx2, rx3 = filled(), filled(2), filled(3)
    sel = await select(on_recv(rx1), on_recv(rx2), on_recv(rx3), biased=True)
    assert (sel.index, sel.value) == (1, 2)
    assert len(rx3) == 1


async def test_biased_eventually_ready() -> None:
    """Ports `biased_eventually_ready`: branches switched off by a counter, in biased order."""

    async def after_yield() -> None:
        await asyncio.sleep(0)

    one = ready_future(None)
    two = asyncio.create_task(after_yield())
    three = asyncio.create_task(after_yield())
    count = 0
    while True:
        try:
            sel = await select(
                on_done(two, enabled=count < 2),
                on_done(three, enabled=count < 3),
                on_done(one, enabled=count < 1),
                biased=True,
            )
        except ValueError:
            break  # Tokio's `else => break`
        count += 1
        assert count == {2: 1, 0: 2, 1: 3}[sel.index]
    assert count == 3


async def test_deterministic_select() -> None:
    """Ports `deterministic_select_current_thread`: the same seed picks the same winners."""

    async def select_0_to_9(rng: random.Random) -> list[int]:
        picks = []
        for _ in range(20):
            sel = await select(*(on_done(ready_future(i)) for i in range(10)), rng=rng)
            assert sel.value == sel.index
            picks.append(sel.value)
        return picks

    first = await select_0_to_9(random.Random(2024))
    second = await select_0_to_9(random.Random(2024))
    assert first == second
    assert len(set(first)) > 1


# --- biased, disabled, fairness -------------------------------------------------------------


async def test_biased_first_ready_always_wins() -> None:
    """With biased=True the first ready branch in argument order wins every time."""
    rx0, rx1, rx2 = filled(), filled(*range(50), capacity=50), filled(*range(50), capacity=50)
    for i in range(50):
        sel = await select(on_recv(rx0), on_recv(rx1), on_recv(rx2), biased=True)
        assert (sel.index, sel.value) == (1, i)
    assert len(rx2) == 50


async def test_disabled_branches_keep_indices() -> None:
    """None and enabled=False positions still count in `Selected.index`."""
    rx = filled("x")
    sel = await select(None, on_recv(filled(1), enabled=False), None, on_recv(rx))
    assert (sel.index, sel.value) == (3, "x")


async def test_unbiased_fairness() -> None:
    """Unbiased select: two always-ready branches both win a good share (seeded)."""
    rx0 = filled(*range(200), capacity=200)
    rx1 = filled(*range(200), capacity=200)
    rng = random.Random(12345)
    wins = [0, 0]
    for _ in range(200):
        wins[(await select(on_recv(rx0), on_recv(rx1), rng=rng)).index] += 1
    assert sum(wins) == 200
    assert wins[0] > 50
    assert wins[1] > 50
    assert len(rx0) + len(rx1) == 200  # exactly one value consumed per select


# --- the trap: asyncio.wait(FIRST_COMPLETED) loses messages, select does not ----------------


async def naive_recv_either(rx1: Receiver[Any], rx2: Receiver[Any]) -> tuple[Any, int]:
    """The naive select: race two recv() tasks, keep one result, cancel the pending ones.

    Returns the value kept and how many tasks had completed (each one consumed a value).
    """
    t1 = asyncio.create_task(rx1.recv())
    t2 = asyncio.create_task(rx2.recv())
    done, pending = await asyncio.wait({t1, t2}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    winner = t1 if t1 in done else t2  # deterministic pick; any other done task is ignored
    return winner.result(), len(done)


async def test_naive_asyncio_wait_loses_a_message() -> None:
    """asyncio.wait on two recv() tasks consumes both buffered values and delivers one."""
    rx1, rx2 = filled("a"), filled("b")
    sent = 2
    value, n_done = await naive_recv_either(rx1, rx2)
    delivered = [value]
    assert n_done == 2  # both recv() tasks completed in the same loop iteration
    assert delivered == ["a"]
    assert len(rx1) == 0
    assert len(rx2) == 0  # "b" was consumed ...
    consumed = rx1.statistics().total_received + rx2.statistics().total_received
    assert consumed == 2
    assert sent - len(delivered) == 1  # ... and never delivered: one message lost


async def test_select_loses_no_message() -> None:
    """The same scenario with select: the loser keeps its value, every message arrives."""
    rx1, rx2 = filled("a"), filled("b")
    sel = await select(on_recv(rx1), on_recv(rx2))
    delivered = [sel.value]
    assert len(rx1) + len(rx2) == 1  # only the winner consumed
    sel = await select(on_recv(rx1), on_recv(rx2))
    delivered.append(sel.value)
    assert sorted(delivered) == ["a", "b"]
    assert rx1.statistics().total_received + rx2.statistics().total_received == 2


async def test_naive_loop_loses_messages_select_loop_does_not() -> None:
    """Over N messages per side, the naive loop delivers N of 2N; select delivers all 2N."""
    n = 10
    a_values = [f"a{i}" for i in range(n)]
    b_values = [f"b{i}" for i in range(n)]

    rx1, rx2 = filled(*a_values, capacity=n), filled(*b_values, capacity=n)
    naive: list[str] = []
    while len(rx1) or len(rx2):
        value, _ = await naive_recv_either(rx1, rx2)
        naive.append(value)
    assert naive == a_values  # every b was consumed alongside an a, and dropped
    assert 2 * n - len(naive) == n
    assert rx2.statistics().total_received == n

    rx1, rx2 = filled(*a_values, capacity=n), filled(*b_values, capacity=n)
    selected: list[str] = []
    while len(rx1) or len(rx2):
        selected.append((await select(on_recv(rx1), on_recv(rx2), rng=random.Random(1))).value)
    assert len(selected) == 2 * n
    assert sorted(selected) == sorted(a_values + b_values)
    assert [v for v in selected if v[0] == "a"] == a_values  # FIFO per channel
    assert [v for v in selected if v[0] == "b"] == b_values


# --- closed channels, timeouts, events, futures -----------------------------------------


async def test_select_on_closed_channel_raises_channel_closed() -> None:
    """A closed, drained channel's branch wins with ChannelClosed; buffered values come first."""
    tx, rx = channel[int](2)
    tx.try_send(1)
    tx.close()
    sel = await select(on_recv(rx), on_timeout(5.0))
    assert (sel.index, sel.value) == (0, 1)
    with pytest.raises(ChannelClosed, match=r"^channel closed$"):
        await select(on_recv(rx), on_timeout(5.0))

    _tx2, rx2 = channel[int](2)
    rx2.close()
    with pytest.raises(ChannelClosed, match=r"^channel closed$"):
        await select(on_recv(rx2), biased=True)


async def test_select_raises_when_channel_closes_while_waiting() -> None:
    """Closing the last sender wakes a waiting select, which raises ChannelClosed."""
    tx, rx = channel[int](1)
    _other_tx, other_rx = channel[int](1)
    task = asyncio.create_task(select(on_recv(other_rx), on_recv(rx)))
    await settle()
    tx.close()
    with pytest.raises(ChannelClosed, match=r"^channel closed$"):
        await task
    assert other_rx.statistics().tasks_waiting_receive == 0
    assert repr(other_rx).count("waiting=0") == 1


async def test_timeout_wins_over_empty_channel() -> None:
    """on_timeout(0.01) wins over a channel that stays empty; the receiver is unregistered."""
    loop = asyncio.get_running_loop()
    tx, rx = channel[int](1)
    start = loop.time()
    sel = await select(on_recv(rx), on_timeout(0.01))
    assert (sel.index, sel.value) == (1, None)
    assert loop.time() - start >= 0.01
    assert repr(rx) == "<Receiver capacity=1 len=0 senders=1 waiting=0 closed=False>"
    tx.try_send(5)
    assert rx.try_recv() == 5


async def test_deadline_now_is_ready_at_once() -> None:
    """on_deadline(loop.time()) and on_timeout(0) complete without suspending."""
    loop = asyncio.get_running_loop()
    rx = filled()
    sel = completes_without_waiting(select(on_recv(rx), on_deadline(loop.time())))
    assert (sel.index, sel.value) == (1, None)
    sel = completes_without_waiting(select(on_recv(rx), on_deadline(loop.time() - 10)))
    assert sel.index == 1
    sel = completes_without_waiting(select(on_recv(rx), on_timeout(0)))
    assert sel.index == 1


async def test_deadline_in_future_wakes_select() -> None:
    """on_deadline a little ahead suspends, then wins when the clock reaches it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 0.01
    sel = await select(on_recv(filled()), on_deadline(deadline))
    assert sel.index == 1
    assert loop.time() >= deadline


def test_on_timeout_rejects_negative() -> None:
    """A negative timeout is a ValueError naming the value."""
    with pytest.raises(ValueError, match=r"^seconds must be >= 0, got -1$"):
        on_timeout(-1)


async def test_on_event() -> None:
    """on_event wins once the event is set, without clearing it; no helper task is left."""
    event = asyncio.Event()
    rx = filled()
    task = asyncio.create_task(select(on_recv(rx), on_event(event)))
    await settle()
    assert not task.done()
    event.set()
    sel = await task
    assert (sel.index, sel.value) == (1, None)
    assert event.is_set()
    sel = completes_without_waiting(select(on_event(event)))  # already set: at once
    assert sel.index == 0
    await settle()
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_on_event_losing_leaves_no_task() -> None:
    """An event branch that loses (or whose select is cancelled) leaves no helper task."""
    event = asyncio.Event()
    tx, rx = channel[int](1)
    task = asyncio.create_task(select(on_event(event), on_recv(rx)))
    await settle()
    tx.try_send(3)
    assert (await task).value == 3
    task = asyncio.create_task(select(on_event(event)))
    await settle()
    await finish(task)
    await settle()
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert not event.is_set()


async def test_on_done_wins_with_result_and_never_cancels() -> None:
    """on_done wins with the future's result; a losing on_done's task is not cancelled."""
    loop = asyncio.get_running_loop()
    gate: asyncio.Future[str] = loop.create_future()

    async def work() -> str:
        return f"got {await gate}"

    job = asyncio.create_task(work())
    sel = await select(on_done(job), on_recv(filled(1)), biased=True)
    assert sel.index == 1
    sel = await select(on_done(job), on_timeout(0.01))
    assert sel.index == 1
    await settle()
    assert not job.done()
    gate.set_result("x")
    sel = await select(on_done(job), on_recv(filled()))
    assert (sel.index, sel.value) == (0, "got x")


async def test_on_done_raises_the_futures_exception() -> None:
    """A failed future's branch wins with its exception."""
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    fut.set_exception(KeyError("k"))
    with pytest.raises(KeyError):
        await select(on_recv(filled()), on_done(fut))


async def test_on_done_of_a_cancelled_task_raises_future_cancelled_not_cancelled_error() -> None:
    """Nobody cancelled the selecting task: it must not see a CancelledError."""
    job = asyncio.create_task(asyncio.sleep(100))
    await settle()
    job.cancel()
    with pytest.raises(FutureCancelled, match=r"^the future watched by on_done\(\) was cancelled"):
        await select(on_done(job), on_recv(filled()))
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0
    with pytest.raises(FutureCancelled) as raised:
        await select(on_done(job))
    assert raised.value.future is job
    await asyncio.sleep(0)  # still running normally: no cancellation was delivered


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: on_timeout(math.nan), r"^seconds must be a finite number, got nan$"),
        (
            lambda: on_timeout(math.inf),
            r"^seconds must be a finite number, got inf; to wait without a limit, "
            r"leave the branch out$",
        ),
        (lambda: on_timeout(10**400), r"^seconds must be a finite number, got an integer too"),
        (lambda: on_deadline(math.nan), r"^when must be a finite number, got nan$"),
        (lambda: on_deadline(-math.inf), r"^when must be a finite number, got -inf$"),
        (lambda: on_deadline(10**400), r"^when must be a finite number, got an integer too"),
    ],
    ids=["timeout-nan", "timeout-inf", "timeout-huge", "deadline-nan", "deadline-inf", "huge"],
)
def test_non_finite_or_huge_times_are_refused(make: Any, message: str) -> None:
    """`on_timeout(nan)` used to spin the CPU forever; huge ints raised OverflowError later."""
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("bad", ["1", None, True])
def test_times_of_the_wrong_type_are_refused(bad: Any) -> None:
    with pytest.raises(TypeError, match=r"^seconds must be a number of seconds, got "):
        on_timeout(bad)


# --- watch, notify, broadcast -------------------------------------------------------------


async def test_on_changed() -> None:
    """on_changed waits for an unseen value, wins with it and marks it seen."""
    tx, rx = watch(0)
    task = asyncio.create_task(select(on_changed(rx), on_recv(filled())))
    await settle()
    assert not task.done()  # the initial value counts as seen
    assert tx.statistics().tasks_waiting_changed == 1
    tx.send(5)
    sel = await task
    assert (sel.index, sel.value) == (0, 5)
    assert rx.has_changed() is False
    assert tx.statistics().tasks_waiting_changed == 0
    tx.send(6)
    tx.send(7)
    sel = completes_without_waiting(select(on_changed(rx)))
    assert sel.value == 7


async def test_on_changed_closed() -> None:
    """A closed watch: an unseen final value wins first, then ChannelClosed."""
    tx, rx = watch("a")
    tx.send("b")
    tx.close()
    sel = await select(on_changed(rx))
    assert sel.value == "b"
    with pytest.raises(ChannelClosed, match=r"^channel closed$"):
        await select(on_changed(rx))


async def test_on_changed_closed_while_waiting() -> None:
    """Closing the last watch sender wakes a waiting select with ChannelClosed."""
    tx, rx = watch(1)
    task = asyncio.create_task(select(on_changed(rx)))
    await settle()
    tx.close()
    with pytest.raises(ChannelClosed, match=r"^channel closed$"):
        await task


async def test_on_notified() -> None:
    """notify_one reaches a waiting on_notified branch; a stored permit wins at once."""
    notify = Notify()
    task = asyncio.create_task(select(on_recv(filled()), on_notified(notify)))
    await settle()
    assert notify.statistics().tasks_waiting == 1
    notify.notify_one()
    sel = await task
    assert (sel.index, sel.value) == (1, None)
    assert notify.statistics().current_permit is False

    notify.notify_one()  # nobody waits: stored
    sel = completes_without_waiting(select(on_notified(notify)))
    assert sel.index == 0
    assert notify.statistics().current_permit is False


async def test_on_notified_notify_waiters() -> None:
    """notify_waiters wakes a branch created before the call, and stores nothing."""
    notify = Notify()
    branch = on_notified(notify)
    notify.notify_waiters()  # before select runs, after the branch was created
    sel = completes_without_waiting(select(branch))
    assert sel.index == 0
    assert notify.statistics().current_permit is False
    task = asyncio.create_task(select(on_notified(notify)))
    await settle()
    notify.notify_waiters()
    assert (await task).index == 0


async def test_on_notified_loser_passes_wake_up_on() -> None:
    """A notified branch that lost keeps nothing: its wake-up becomes the stored permit."""
    notify = Notify()
    tx, rx = channel[int](1)
    task = asyncio.create_task(select(on_recv(rx), on_notified(notify), biased=True))
    await settle()
    tx.try_send(1)
    notify.notify_one()  # reaches the waiting branch, which then loses to recv
    sel = await task
    assert (sel.index, sel.value) == (0, 1)
    assert notify.statistics().current_permit is True
    waiter = asyncio.create_task(_notified(notify))
    await settle()
    assert waiter.done()
    await waiter


async def _notified(notify: Notify) -> None:
    await notify.notified()


async def test_on_notified_loser_passes_wake_up_to_next_waiter() -> None:
    """A losing notified branch hands its wake-up to the task queued behind it."""
    notify = Notify()
    tx, rx = channel[int](1)
    task = asyncio.create_task(select(on_recv(rx), on_notified(notify), biased=True))
    await settle()
    behind = asyncio.create_task(_notified(notify))
    await settle()
    assert notify.statistics().tasks_waiting == 2
    tx.try_send(1)
    notify.notify_one()  # wakes the select's branch (first in line)
    assert (await task).index == 0
    await settle()
    assert behind.done()
    await behind
    assert notify.statistics().current_permit is False


async def test_cancelled_select_passes_notify_wake_up_on() -> None:
    """A select cancelled after notify_one reached it passes the wake-up on."""
    notify = Notify()
    task = asyncio.create_task(select(on_notified(notify)))
    await settle()
    notify.notify_one()
    await finish(task)  # cancelled before it could run
    assert notify.statistics().current_permit is True
    assert notify.statistics().tasks_waiting == 0


async def test_on_recv_broadcast() -> None:
    """on_recv works with a broadcast receiver: values, then Lagged, then the oldest kept."""
    tx, rx = broadcast[int](2)
    task = asyncio.create_task(select(on_recv(rx), on_recv(filled())))
    await settle()
    assert tx.send(10) == 1
    assert (await task).value == 10
    for i in range(5):
        tx.send(i)
    with pytest.raises(Lagged, match=r"^receiver lagged behind; 3 values were skipped$") as info:
        await select(on_recv(rx))
    assert info.value.skipped == 3
    assert (await select(on_recv(rx))).value == 3
    assert (await select(on_recv(rx))).value == 4
    tx.close()
    with pytest.raises(ChannelClosed, match=r"^channel closed$"):
        await select(on_recv(rx))


async def test_on_recv_broadcast_loser_consumes_nothing() -> None:
    """A losing broadcast branch keeps its cursor: the value is still there afterwards."""
    tx, rx = broadcast[str](4)
    tx.send("kept")
    sel = await select(on_recv(filled("win")), on_recv(rx), biased=True)
    assert sel.value == "win"
    assert len(rx) == 1
    assert rx.try_recv() == "kept"


# --- cancellation and waiter hygiene ------------------------------------------------------


async def test_cancelled_select_consumes_nothing_and_unregisters() -> None:
    """A select cancelled while waiting consumes nothing and leaves no waiter behind."""
    tx1, rx1 = channel[int](2)
    tx2, rx2 = channel[int](2)
    task = asyncio.create_task(select(on_recv(rx1), on_recv(rx2)))
    await settle()
    assert rx1.statistics().tasks_waiting_receive == 1
    assert rx2.statistics().tasks_waiting_receive == 1
    await finish(task)
    assert rx1.statistics().tasks_waiting_receive == 0
    assert rx2.statistics().tasks_waiting_receive == 0
    assert repr(rx1) == "<Receiver capacity=2 len=0 senders=1 waiting=0 closed=False>"
    assert repr(rx2) == "<Receiver capacity=2 len=0 senders=1 waiting=0 closed=False>"
    tx1.try_send(1)
    tx2.try_send(2)
    assert (len(rx1), len(rx2)) == (1, 1)
    assert (rx1.try_recv(), rx2.try_recv()) == (1, 2)


async def test_select_cancelled_after_wake_consumes_nothing() -> None:
    """Woken by a value, then cancelled before running: the value stays in the channel."""
    tx1, rx1 = channel[int](2)
    _tx2, rx2 = channel[int](2)
    task = asyncio.create_task(select(on_recv(rx1), on_recv(rx2)))
    await settle()
    tx1.try_send(1)  # wakes the select ...
    await finish(task)  # ... which is cancelled before it runs
    assert len(rx1) == 1
    assert repr(rx2) == "<Receiver capacity=2 len=0 senders=1 waiting=0 closed=False>"
    assert rx1.try_recv() == 1


async def test_losing_recv_branch_passes_wake_up_to_other_receiver_task() -> None:
    """A select woken by a channel it then does not read wakes the next task waiting on it."""
    tx1, rx1 = channel[int](2)
    tx2, rx2 = channel[int](2)
    sel_task = asyncio.create_task(select(on_recv(rx2), on_recv(rx1), biased=True))
    await settle()
    other = asyncio.create_task(rx1.recv())  # queued on rx1 behind the select
    await settle()
    tx1.try_send(1)  # wakes the select (first waiter on rx1) ...
    tx2.try_send(2)  # ... which prefers rx2 and must pass rx1's wake-up on
    assert (await sel_task).value == 2
    await settle()
    assert other.done()  # without the pass-on it would wait forever with 1 buffered
    assert other.result() == 1


async def test_waiters_removed_after_select_returns() -> None:
    """After select returns, no branch stays registered on any primitive."""
    notify = Notify()
    wtx, wrx = watch(0)
    tx, rx = channel[int](1)
    btx, brx = broadcast[int](1)
    task = asyncio.create_task(
        select(on_recv(rx), on_recv(brx), on_changed(wrx), on_notified(notify), on_timeout(5))
    )
    await settle()
    tx.try_send(1)
    assert (await task).index == 0
    assert rx.statistics().tasks_waiting_receive == 0
    assert btx.statistics().tasks_waiting_receive == 0
    assert wtx.statistics().tasks_waiting_changed == 0
    assert notify.statistics().tasks_waiting == 0
    assert repr(notify) == "<Notify waiting=0 permit=False>"


# --- API details ----------------------------------------------------------------------


def test_branch_constructors_reject_wrong_types() -> None:
    """Each branch constructor says what it needs."""
    with pytest.raises(TypeError, match=r"^on_recv\(\) needs a Receiver or BroadcastReceiver"):
        on_recv(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^on_changed\(\) needs a WatchReceiver, got 42$"):
        on_changed(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^on_notified\(\) needs a Notify, got 42$"):
        on_notified(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^on_event\(\) needs an asyncio.Event, got 42$"):
        on_event(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^on_done\(\) needs an asyncio.Future or Task, got 42$"):
        on_done(42)  # type: ignore[arg-type]


async def test_selected_is_frozen_and_matchable() -> None:
    """Selected is a frozen record usable in `match`, as the module docstring shows."""
    rx = filled("reading")
    sel = await select(on_recv(rx), on_timeout(5), biased=True)
    match sel:
        case Selected(index=0, value=reading):
            assert reading == "reading"
        case _:
            pytest.fail(f"unexpected {sel!r}")
    with pytest.raises(dataclasses.FrozenInstanceError):
        sel.index = 1  # type: ignore[misc]
    assert [f.name for f in dataclasses.fields(Selected)] == ["index", "value", "branch"]


async def test_a_failing_branch_is_named_on_the_exception() -> None:
    """Found: `ChannelClosed` out of select did not say which branch had closed."""
    open_tx, open_rx = channel[int](1)
    closed_tx, closed_rx = channel[int](1)
    closed_tx.close()
    with pytest.raises(ChannelClosed) as raised:
        await select(on_recv(open_rx), on_recv(closed_rx), biased=True)
    assert raised.value.branch_index == 1  # type: ignore[attr-defined]
    assert repr(raised.value.branch) == f"on_recv({closed_rx!r})"  # type: ignore[attr-defined]
    assert str(raised.value) == "channel closed"  # the message itself is unchanged
    open_tx.close()
