"""Check the exercises of notebook 01: a fan-in that ends, a producer that never waits.

Exercise 1 runs the learner's `fan_in(n_producers, per_producer)` and, when it hangs, looks
at the channel it is stuck on to say which sender handle was left open. Exercise 2 hands the
learner's `offer(tx, attempts)` a channel of the checker's own, drained by a consumer that
takes a fixed number of loop turns per value, so the outcome does not depend on the clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from telemetry_lab.errors import ChannelClosed
from telemetry_lab.exercises._check import cancel_new_tasks, exercise, reject
from telemetry_lab.primitives import Receiver, Sender, channel

__all__ = ["check_exercise_1", "check_exercise_2"]

FanIn = Callable[[int, int], Awaitable[Any]]
Offer = Callable[[Sender[int], int], Awaitable[Any]]

FAN_IN_CASES = [(3, 5), (4, 12), (1, 0)]
FAN_IN_LIMIT = 1.0
"""Seconds one `fan_in` call may take (a few milliseconds when every handle is closed)."""
ATTEMPTS = 30
CONSUMER_TURNS = 3
"""Loop turns the checker's consumer spends on each value in Exercise 2."""
OFFER_LIMIT = 2.0


def _raised(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether `exc` is a `kind`, or a group (a TaskGroup's error) holding one."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(kind) is not None
    return isinstance(exc, kind)


def _stuck_receiver(call: asyncio.Task[Any]) -> Receiver[Any] | None:
    """The mpsc receiver a suspended `fan_in` holds, read from its frame (None if not found)."""
    coro = call.get_coro()
    frame = getattr(coro, "cr_frame", None)
    if frame is None:
        return None
    found = [v for v in frame.f_locals.values() if isinstance(v, Receiver)]
    return found[0] if len(found) == 1 else None


def _explain_hang(n: int, per: int, rx: Receiver[Any] | None) -> tuple[str, str]:
    """Why `fan_in(n, per)` never returned, from what its channel says."""
    head = f"fan_in({n}, {per}) never returned: its receiving loop did not end"
    if rx is not None:
        stats = rx.statistics()
        received = stats.total_received
        if stats.open_send_handles == 1 and received == n * per:
            return (
                f"{head}; every value arrived, but one sender handle is still open, most "
                "likely the original `tx`",
                "close the original `tx` once the clones are made (`tx.close()`, or create "
                "the clones inside `with tx:`): `async for` ends only when every sender is "
                "closed",
            )
        if stats.open_send_handles > 1 and received == n * per:
            return (
                f"{head}; every value arrived, but {stats.open_send_handles} sender handles "
                "are still open",
                "each producer must close its own clone when it is done (`with tx:` around "
                "its loop), and the original `tx` must be closed too",
            )
        if stats.tasks_waiting_send:
            return (
                f"{head}; {stats.tasks_waiting_send} producer(s) are stuck in `send` on a full "
                "channel, because nothing reads it while they send",
                "start the producers as tasks first, then read with `async for` at the same "
                "time; await the producers only after the loop",
            )
    return (
        head,
        "`async for value in rx` ends only when every sender handle is closed: each "
        "producer closes its clone (`with tx:`), and the original `tx` is closed too",
    )


@exercise(1)
async def check_exercise_1(fan_in: FanIn) -> str:
    """Check `fan_in(n_producers, per_producer)`: every value, in per-producer order, an end."""
    for n, per in FAN_IN_CASES:
        before = asyncio.all_tasks()
        call = asyncio.ensure_future(fan_in(n, per))
        try:
            done, _ = await asyncio.wait([call], timeout=FAN_IN_LIMIT)
            if not done:
                reject(*_explain_hang(n, per, _stuck_receiver(call)))
            try:
                values = call.result()
            except Exception as exc:
                if not _raised(exc, ChannelClosed):
                    raise
                reject(
                    f"in fan_in({n}, {per}) a send raised ChannelClosed: a sender handle was "
                    "closed while a producer still sent through it",
                    "give each producer its own `tx.clone()` and let it close only that one",
                )
        finally:
            call.cancel()
            await asyncio.wait([call])
            left_running = await cancel_new_tasks(before)
        where = f"fan_in({n}, {per})"
        if not isinstance(values, list):
            reject(
                f"{where} returned {type(values).__name__}, not a list",
                "collect what the receiver gets in a list, `[v async for v in rx]`, and return it",
            )
        if left_running:
            reject(
                f"{where} returned while {left_running} task(s) it started were still running "
                "(the check cancelled them)",
                "await the producer tasks before returning, e.g. `await asyncio.gather(*tasks)`",
            )
        if len(values) < n * per:
            reject(
                f"{where} returned {len(values)} of the {n * per} values sent",
                "each producer needs its own `tx.clone()` (closing a shared handle ends the "
                "channel for everyone), and the receiver reads until `async for` ends",
            )
        if len(values) > n * per:
            reject(
                f"{where} returned {len(values)} values, more than the {n * per} sent",
                f"start exactly {n} producers, each sending `(pid, i)` for `i` in "
                f"`range({per})`, and receive each value once",
            )
        if not all(isinstance(v, tuple) and len(v) == 2 for v in values):
            reject(
                f"{where} returned values that are not `(producer id, i)` pairs",
                "each producer sends the tuple `(pid, i)`",
            )
        pids = sorted({pid for pid, _ in values})
        if pids != list(range(n)) and per:
            reject(
                f"{where}: producer ids {pids}, not 0 to {n - 1}",
                "number the producers with `range(n_producers)`",
            )
        for pid in range(n):
            mine = [i for p, i in values if p == pid]
            if mine != list(range(per)):
                reject(
                    f"{where}: producer {pid}'s values arrived out of order or changed",
                    "a channel keeps each producer's order: return the values as received, "
                    "without sorting or rebuilding them",
                )
    return "every value arrived, each producer's in order, and the receiving loop ended"


@exercise(2)
async def check_exercise_2(offer: Offer) -> str:
    """Check `offer(tx, attempts)`: try_send only, refusals counted, tx closed at the end."""
    tx, rx = channel[int](2)
    delivered: list[int] = []

    async def slow_consumer() -> None:
        async for value in rx:
            delivered.append(value)
            for _ in range(CONSUMER_TURNS):
                await asyncio.sleep(0)  # slow, but measured in loop turns, not seconds

    consumer = asyncio.ensure_future(slow_consumer())
    try:
        try:
            async with asyncio.timeout(OFFER_LIMIT):
                refused = await offer(tx, ATTEMPTS)
        except TimeoutError:
            reject(
                f"offer() did not return within {OFFER_LIMIT:g} s",
                "never wait for room: `tx.try_send(value)` either takes the value or raises "
                "ChannelFull at once",
            )
        except ChannelClosed:
            reject(
                "a `try_send` raised ChannelClosed: tx was closed before the last attempt",
                "close tx once, after the loop: put the whole loop inside `with tx:`",
            )
        if not tx.is_closed:
            reject(
                "offer() returned without closing tx: the consumer would wait forever",
                "put the loop inside `with tx:` (or call `tx.close()` at the end)",
            )
        async with asyncio.timeout(OFFER_LIMIT):
            await consumer  # tx is closed: it drains what is buffered, then ends
    finally:
        consumer.cancel()
        await asyncio.wait([consumer])
        rx.close()
    if isinstance(refused, bool) or not isinstance(refused, int):
        reject(
            f"offer() returned {type(refused).__name__}, not a count",
            "return the number of values that `try_send` refused (an int)",
        )
    if refused + len(delivered) != ATTEMPTS:
        reject(
            f"the books do not balance: {refused} refused + {len(delivered)} delivered is not "
            f"the {ATTEMPTS} attempted",
            "count one refusal per ChannelFull and nothing else, and do not retry a refused "
            "value: each attempt is either delivered or refused",
        )
    if refused == 0:
        reject(
            "no value was refused, although the consumer is slow: offer() waited for room",
            "use `tx.try_send(value)`, not `await tx.send(value)`, and count the ChannelFull",
        )
    if len(delivered) <= 2:
        reject(
            f"only {len(delivered)} values were delivered: the consumer never got a turn "
            "while offer() ran",
            "`await asyncio.sleep(0)` after each attempt lets the consumer take a value",
        )
    return f"{len(delivered)} delivered, {refused} refused of {ATTEMPTS}"
