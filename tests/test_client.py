"""Tests for `telemetry_lab.client`: a live subscriber that counts what it got and missed."""

from __future__ import annotations

import asyncio

import pytest
from support import settle, vrun

from telemetry_lab.client import Client, ClientStatistics
from telemetry_lab.errors import ChannelClosed
from telemetry_lab.models import ClientSummary, StateUpdate
from telemetry_lab.primitives import broadcast

RECEIVER_CLOSED = r"^receiver is closed$"


def update(n: int) -> StateUpdate:
    return StateUpdate(
        update=n,
        device_id=1 + n % 3,
        devices_active=3,
        avg_temperature=20.0 + n / 10,
        avg_humidity=50.0,
        ts=float(n),
    )


def client_stats(
    client_id: int = 1,
    *,
    received: int = 0,
    lagged: int = 0,
    lag_events: int = 0,
    pending: int = 0,
    skipped: int = 0,
) -> ClientStatistics:
    return ClientStatistics(
        client_id=client_id,
        total_received=received,
        total_lagged=lagged,
        total_lag_events=lag_events,
        total_skipped_at_shutdown=skipped,
        current_pending=pending,
    )


def test_initial_statistics_summary_and_repr() -> None:
    _, rx = broadcast[StateUpdate](4)
    client = Client(2, rx)
    assert client.statistics() == client_stats(2)
    assert client.summary() == ClientSummary(client_id=2, received=0, lagged=0)
    assert repr(client) == "<Client 2 received=0 lagged=0>"


async def test_counts_received_updates_and_exits_on_close() -> None:
    tx, rx = broadcast[StateUpdate](10)
    client = Client(1, rx)
    task = asyncio.create_task(client.run())
    for n in range(1, 4):
        tx.send(update(n))
    await settle()
    assert client.statistics() == client_stats(received=3)
    assert not task.done()
    tx.close()
    await task
    assert client.summary() == ClientSummary(client_id=1, received=3, lagged=0)
    assert repr(client) == "<Client 1 received=3 lagged=0>"


async def test_drains_updates_still_buffered_when_the_sender_closes() -> None:
    tx, rx = broadcast[StateUpdate](10)
    client = Client(1, rx)
    for n in range(1, 6):
        tx.send(update(n))
    tx.close()
    await client.run()
    assert client.summary() == ClientSummary(client_id=1, received=5, lagged=0)


async def test_pending_counts_updates_not_yet_read() -> None:
    tx, rx = broadcast[StateUpdate](10)
    client = Client(3, rx)
    for n in range(1, 4):
        tx.send(update(n))
    assert client.statistics() == client_stats(3, pending=3)
    tx.close()
    await client.run()


async def test_counts_lagged_updates_exactly() -> None:
    tx, rx = broadcast[StateUpdate](2)
    client = Client(1, rx)
    for n in range(1, 6):  # five sent before the client reads: three are overwritten
        tx.send(update(n))
    assert client.statistics() == client_stats(pending=5)
    task = asyncio.create_task(client.run())
    await settle()
    assert client.statistics() == client_stats(received=2, lagged=3, lag_events=1)
    assert client.summary() == ClientSummary(client_id=1, received=2, lagged=3)
    assert repr(client) == "<Client 1 received=2 lagged=3>"
    tx.close()
    await task


async def test_lagging_twice_adds_up() -> None:
    tx, rx = broadcast[StateUpdate](2)
    client = Client(1, rx)
    for n in range(1, 6):
        tx.send(update(n))
    task = asyncio.create_task(client.run())
    await settle()
    for n in range(6, 11):
        tx.send(update(n))
    await settle()
    assert client.statistics() == client_stats(received=4, lagged=6, lag_events=2)
    tx.close()
    await task
    assert client.summary() == ClientSummary(client_id=1, received=4, lagged=6)


async def test_lagged_updates_are_reported_when_the_sender_closes_too() -> None:
    tx, rx = broadcast[StateUpdate](2)
    client = Client(1, rx)
    for n in range(1, 6):
        tx.send(update(n))
    tx.close()
    await client.run()
    assert client.statistics() == client_stats(received=2, lagged=3, lag_events=1)


async def test_closes_its_receiver_when_it_exits() -> None:
    tx, rx = broadcast[StateUpdate](4)
    other = tx.subscribe()
    client = Client(1, rx)
    assert tx.receiver_count == 2
    tx.send(update(1))
    closer = tx.clone()
    tx.close()
    task = asyncio.create_task(client.run())
    await settle()
    assert not task.done()  # `closer` keeps the channel open
    closer.close()
    await task
    assert rx.is_closed
    with pytest.raises(ChannelClosed, match=RECEIVER_CLOSED):
        rx.try_recv()
    assert other.try_recv() == update(1)  # the other subscriber is untouched
    other.close()


async def test_closes_its_receiver_when_cancelled() -> None:
    tx, rx = broadcast[StateUpdate](4)
    client = Client(1, rx)
    task = asyncio.create_task(client.run())
    await settle()
    assert tx.receiver_count == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert tx.receiver_count == 0
    with pytest.raises(ChannelClosed, match=RECEIVER_CLOSED):
        rx.try_recv()
    tx.close()


def test_every_update_is_either_received_or_counted_lagged() -> None:
    """A slow client (1 s per update) behind a fast sender (one update per 0.25 s)."""

    async def main() -> ClientStatistics:
        tx, rx = broadcast[StateUpdate](2)
        client = Client(1, rx, delay=1.0)
        task = asyncio.create_task(client.run())
        for n in range(1, 41):
            tx.send(update(n))
            await asyncio.sleep(0.25)
        tx.close()
        await task
        return client.statistics()

    stats = vrun(main())
    assert stats.total_received + stats.total_lagged == 40
    assert stats.total_lagged > 0
    assert stats.total_lag_events > 0
    assert stats.current_pending == 0


def test_slow_client_with_enough_capacity_never_lags() -> None:
    async def main() -> tuple[ClientStatistics, float]:
        tx, rx = broadcast[StateUpdate](10)
        client = Client(1, rx, delay=1.0)
        task = asyncio.create_task(client.run())
        for n in range(1, 11):
            tx.send(update(n))
        tx.close()
        await task
        return client.statistics(), asyncio.get_running_loop().time()

    assert vrun(main()) == (client_stats(received=10), 10.0)
