"""Check the exercises of notebook 07: merge two channels with select, receive with a timeout.

Both checkers hand the learner receivers of real channels. They are of a small `Receiver`
subclass that notices a loop spinning on a channel without ever yielding to the event loop
(a closed branch left on in `select` is always ready, so such a loop would freeze the
kernel, and no `asyncio.timeout` could interrupt it): after many failed receives in one
loop step, the next raises `Spinning`, a `BaseException` that no `except Exception:`
catches, and the check turns it into a rejection with a hint (`_spinning.py`, shared
with notebook 09's checker).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from telemetry_lab.errors import ChannelClosed
from telemetry_lab.exercises._check import exercise, reject, surface
from telemetry_lab.exercises._spinning import Spinning, WatchedReceiver
from telemetry_lab.primitives import Receiver, Selected, Sender, channel

__all__ = ["Spinning", "check_exercise_1", "check_exercise_2"]

T = TypeVar("T")

Merge = Callable[[Receiver[str], Receiver[str]], Awaitable[Any]]
RecvWithTimeout = Callable[[Receiver[str], float], Awaitable[Any]]

PATIENCE = 1.0
"""Seconds an answer may take: the checks' values all arrive within a few milliseconds."""


def watched(capacity: int) -> tuple[Sender[str], Receiver[str]]:
    """Return a channel whose receiver notices a caller spinning on it."""
    tx, rx = channel[str](capacity)
    return tx, WatchedReceiver(rx)


async def _produce(tx: Sender[str], prefix: str, n: int, pause: int) -> None:
    with tx:
        for i in range(n):
            await tx.send(f"{prefix}{i}")
            for _ in range(pause):
                await asyncio.sleep(0)


SPIN = (
    "your merge kept selecting a closed channel: `select` raised ChannelClosed over and "
    "over without ever waiting, a loop that would freeze the kernel",
    "switch the finished branch off on the next call, `on_recv(rx, enabled=...)` or None "
    "in its place; `exc.branch_index` says which branch it was (Tokio disables it for "
    "you; here you must)",
)


async def _merged(merge: Merge, rx1: Receiver[str], rx2: Receiver[str], what: str) -> Any:
    try:
        async with asyncio.timeout(PATIENCE):
            return await merge(rx1, rx2)
    except Spinning:
        reject(*SPIN)
    except TimeoutError:
        reject(
            f"merge did not return within {PATIENCE:g} s ({what}): its loop did not end "
            "once both channels were closed and drained",
            "stop when both branches are switched off: `while rx1_on or rx2_on:` (or, as "
            "receivers are truthy until closed and drained, `while any(receivers)`)",
        )
    except ChannelClosed as exc:
        where = getattr(exc, "branch_index", None)
        branch = "" if where is None else f" (from branch {where})"
        reject(
            f"ChannelClosed escaped from your merge{branch}: when a channel ends, `select` "
            "raises it",
            "catch it around `select(...)`, switch that branch off (its index is "
            "`exc.branch_index`) and keep racing the other one",
        )
    except ValueError as exc:
        if "needs an enabled branch" not in str(exc):
            raise
        reject(
            "merge called select() with every branch switched off (ValueError)",
            "that is where Tokio's `else => break` arm would run: end the loop once both "
            "channels are finished, before selecting again",
        )


def _check_merged(got: Any, n_a: int, n_b: int, what: str) -> None:
    want_a, want_b = [f"a{i}" for i in range(n_a)], [f"b{i}" for i in range(n_b)]
    if not isinstance(got, list):
        reject(
            f"merge returned {type(got).__name__} ({what}), not a list",
            "collect every value in a list and return it",
        )
    if not got:
        reject(
            f"merge returned nothing ({what}), though {n_a + n_b} values were sent: its "
            "loop ended before the first value",
            "a receiver is truthy until it is closed *and* drained, so `while rx1 or rx2:` "
            "(or `any(...)`) runs as long as a value may come; `len(rx)` is 0 while a value "
            "is on its way, and `rx.is_closed` is True while values are still buffered",
        )
    missing = [v for v in want_a + want_b if v not in got]
    if missing:
        source = "rx1" if missing[0].startswith("a") else "rx2"
        reject(
            f"merge lost {len(missing)} of the {n_a + n_b} values ({what}), from {source}: "
            "it stopped before that channel had ended",
            "a closed channel still gives its buffered values first; switch off only the "
            "branch whose ChannelClosed you caught (`exc.branch_index`), and keep racing "
            "the other one until it ends too",
        )
    if len(got) != n_a + n_b:
        reject(
            f"merge returned {len(got)} values for the {n_a + n_b} sent ({what}): some twice, "
            "or some nobody sent",
            "append `sel.value` once per `select` that returns, nothing else",
        )
    for name, prefix, want in (("rx1", "a", want_a), ("rx2", "b", want_b)):
        if [v for v in got if isinstance(v, str) and v.startswith(prefix)] != want:
            reject(
                f"{name}'s values came out of order ({what})",
                "append each value as `select` returns it; do not sort or regroup them",
            )


@exercise(1)
async def check_exercise_1(merge: Merge) -> str:
    """Check `merge(rx1, rx2)`: every value of both channels, until both are closed."""
    what = "both channels full and closed before merge starts"
    tx1, rx1 = watched(5)
    tx2, rx2 = watched(5)
    for i in range(3):
        tx1.try_send(f"a{i}")
    for i in range(5):
        tx2.try_send(f"b{i}")
    tx1.close()
    tx2.close()
    _check_merged(await _merged(merge, rx1, rx2, what), 3, 5, what)

    what = "open, empty channels at first; rx1 closes early, rx2 goes on"
    tx1, rx1 = watched(2)
    tx2, rx2 = watched(2)
    senders = [
        asyncio.ensure_future(_produce(tx1, "a", 2, pause=1)),
        asyncio.ensure_future(_produce(tx2, "b", 8, pause=3)),
    ]
    try:
        got = await _merged(merge, rx1, rx2, what)
    finally:
        rx1.close()  # a sender still waiting for room gets ChannelClosed and ends
        rx2.close()
        await asyncio.wait(senders)
        for task in senders:
            if not task.cancelled():
                task.exception()  # retrieved (a ChannelClosed after an early return)
    _check_merged(got, 2, 8, what)
    return "8 values from two closed channels, 10 from live senders, in order"


@exercise(2)
async def check_exercise_2(recv_with_timeout: RecvWithTimeout) -> str:
    """Check `recv_with_timeout(rx, seconds)`: the value, or None, and nothing consumed."""
    loop = asyncio.get_running_loop()
    tx, rx = watched(2)
    try:
        await _timeouts(recv_with_timeout, loop, tx, rx)
    except Spinning:
        reject(
            "recv_with_timeout polled the channel in a loop that never waits",
            "race the receive against the timeout with `select(on_recv(rx), "
            "on_timeout(seconds))`: it waits without spinning",
        )
    finally:
        tx.close()
    return "a waiting value, a timeout that consumes nothing, a value arriving in time"


async def _call(recv_with_timeout: RecvWithTimeout, rx: Receiver[str], seconds: float) -> Any:
    try:
        async with asyncio.timeout(PATIENCE) as patience:
            got = await recv_with_timeout(rx, seconds)
    except TimeoutError:
        if not patience.expired():  # the answer's own TimeoutError, not the check's
            reject(
                f"recv_with_timeout(rx, {seconds:g}) raised TimeoutError instead of returning None",
                "catch it around `asyncio.wait_for(...)` and return None, or race "
                "`on_timeout(seconds)` in a `select`, which returns instead of raising",
            )
        reject(
            f"recv_with_timeout(rx, {seconds:g}) did not return within {PATIENCE:g} s",
            "return as soon as either a value arrives or `seconds` have passed",
        )
    if isinstance(got, Selected):
        reject(
            "recv_with_timeout returned the Selected record, not the value",
            "return `sel.value` when the receive branch won, None when the timeout won",
        )
    return got


async def _timeouts(
    recv_with_timeout: RecvWithTimeout,
    loop: asyncio.AbstractEventLoop,
    tx: Sender[str],
    rx: Receiver[str],
) -> None:
    tx.try_send("ready")
    started = loop.time()
    got = await _call(recv_with_timeout, rx, 0.5)
    if got != "ready":
        reject(
            f"a value was waiting, but recv_with_timeout returned {got!r} after "
            f"{loop.time() - started:.2f} s",
            "race `on_recv(rx)` against `on_timeout(seconds)`: a waiting value wins at once",
        )
    if loop.time() - started > 0.25:
        reject(
            "a value was waiting, yet recv_with_timeout waited for the timeout",
            "do not sleep first: `select` returns the first branch that is ready",
        )

    started = loop.time()
    got = await _call(recv_with_timeout, rx, 0.05)
    waited = loop.time() - started
    if got is not None:
        reject(
            f"the channel was empty, but recv_with_timeout returned {got!r}",
            "when the timeout branch wins, return None",
        )
    if waited < 0.05:
        reject(
            f"recv_with_timeout returned None after {waited * 1000:.0f} ms, before its "
            "50 ms timeout",
            "wait up to `seconds`: `on_timeout(seconds)` in the same `select`, not a "
            "`try_recv()` that gives up at once",
        )
    tx.try_send("late")
    for _ in range(5):
        await asyncio.sleep(0)  # a receive left running would take "late" now
    if len(rx) != 1:
        reject(
            "a value sent after the timeout was consumed: a receive left running took it",
            "the losing receive must take nothing: with `select` it never starts; with "
            "tasks you would have to cancel it (and could still lose a value)",
        )
    rx.try_recv()

    async def send_soon() -> None:
        await asyncio.sleep(0.01)
        await tx.send("soon")

    sender = asyncio.ensure_future(send_soon())
    started = loop.time()
    try:
        got = await _call(recv_with_timeout, rx, 0.5)
    finally:
        await asyncio.wait([sender])
    surface(sender)
    if got != "soon":
        reject(
            f"a value arrived 10 ms into a 0.5 s wait, but recv_with_timeout returned {got!r}",
            "wait for the value and the timeout at once; return the value as soon as it comes",
        )
    if loop.time() - started > 0.25:
        reject(
            "a value arrived 10 ms into the wait, yet recv_with_timeout waited for the "
            "whole timeout",
            "do not sleep and then look: race the two with `select`",
        )
