"""Tests for `telemetry_lab.aggregator`: running averages, forwarding, fan-out, shutdown.

The aggregator is fed through a real telemetry channel and its outputs are real channels;
tests run on the virtual-time loop so update timestamps are exact loop times.
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
from dataclasses import dataclass
from typing import TypeVar

import pytest
from support import settle, vrun

from telemetry_lab.aggregator import RECENT, Aggregator, AggregatorStatistics
from telemetry_lab.errors import ChannelClosed, ChannelEmpty
from telemetry_lab.models import Reading, StateUpdate, SystemState
from telemetry_lab.primitives import (
    BroadcastReceiver,
    BroadcastSender,
    Receiver,
    Sender,
    WatchReceiver,
    broadcast,
    channel,
    watch,
)

T = TypeVar("T")

CLOSED = r"^channel closed$"


def reading(
    device_id: int, seq: int, temperature: float, humidity: float, ts: float = 0.0
) -> Reading:
    return Reading(device_id=device_id, seq=seq, ts=ts, temperature=temperature, humidity=humidity)


def drain(rx: Receiver[T] | BroadcastReceiver[T]) -> list[T]:
    """Take every value available now."""
    out: list[T] = []
    while True:
        try:
            out.append(rx.try_recv())
        except (ChannelEmpty, ChannelClosed):
            return out


@dataclass
class Rig:
    tx: Sender[Reading]
    storage_rx: Receiver[Reading]
    updates_tx: BroadcastSender[StateUpdate]
    updates_rx: BroadcastReceiver[StateUpdate]
    state_rx: WatchReceiver[SystemState]
    aggregator: Aggregator


def make_rig(*, storage_capacity: int = 100, broadcast_capacity: int = 100) -> Rig:
    tx, rx = channel[Reading](100)
    storage_tx, storage_rx = channel[Reading](storage_capacity)
    updates_tx, updates_rx = broadcast[StateUpdate](broadcast_capacity)
    state_tx, state_rx = watch(SystemState())
    aggregator = Aggregator(rx=rx, storage_tx=storage_tx, updates_tx=updates_tx, state_tx=state_tx)
    return Rig(
        tx=tx,
        storage_rx=storage_rx,
        updates_tx=updates_tx,
        updates_rx=updates_rx,
        state_rx=state_rx,
        aggregator=aggregator,
    )


def agg_stats(**changes: int) -> AggregatorStatistics:
    fields = {
        "total_received": 0,
        "total_forwarded": 0,
        "total_rejected": 0,
        "rejected_reasons": (),
        "total_updates": 0,
        "total_updates_unheard": 0,
        "current_holding": 0,
        "devices_active": 0,
    }
    fields.update(changes)
    return AggregatorStatistics(**fields)


# --- averages and fan-out ----------------------------------------------------------------


def test_averages_are_the_mean_of_the_recent_readings() -> None:
    # 10, 30, 20 (two devices): the means of the readings so far, 10, 20 and 20
    readings = [
        reading(1, 0, 10.0, 40.0),
        reading(2, 0, 30.0, 60.0),
        reading(1, 1, 20.0, 50.0),
    ]

    async def main() -> tuple[list[StateUpdate], list[Reading], SystemState, AggregatorStatistics]:
        rig = make_rig()
        task = asyncio.create_task(rig.aggregator.run())
        for r in readings:
            await rig.tx.send(r)
            await asyncio.sleep(1)  # updates at t = 0, 1, 2
        rig.tx.close()
        await task
        return (
            drain(rig.updates_rx),
            drain(rig.storage_rx),
            rig.state_rx.borrow(),
            rig.aggregator.statistics(),
        )

    updates, forwarded, state, stats = vrun(main())
    assert updates == [
        StateUpdate(
            update=1, device_id=1, devices_active=1, avg_temperature=10.0, avg_humidity=40.0, ts=0.0
        ),
        StateUpdate(
            update=2, device_id=2, devices_active=2, avg_temperature=20.0, avg_humidity=50.0, ts=1.0
        ),
        StateUpdate(
            update=3, device_id=1, devices_active=2, avg_temperature=20.0, avg_humidity=50.0, ts=2.0
        ),
    ]
    assert forwarded == readings
    assert state == SystemState(
        readings=3, devices_active=2, avg_temperature=20.0, avg_humidity=50.0, updated_at=2.0
    )
    assert stats == agg_stats(
        total_received=3, total_forwarded=3, total_updates=3, devices_active=2
    )


def test_many_readings_forwarded_in_order_with_one_update_each() -> None:
    rng = random.Random(3)
    n = 300
    seqs = {1: 0, 2: 0, 3: 0}
    readings = []
    for _ in range(n):
        device = rng.choice([1, 2, 3])
        readings.append(reading(device, seqs[device], rng.uniform(-5, 40), rng.uniform(10, 90)))
        seqs[device] += 1

    async def main() -> tuple[list[StateUpdate], list[Reading], SystemState]:
        rig = make_rig(storage_capacity=n, broadcast_capacity=n)
        task = asyncio.create_task(rig.aggregator.run())
        for r in readings:
            await rig.tx.send(r)
        rig.tx.close()
        await task
        return drain(rig.updates_rx), drain(rig.storage_rx), rig.state_rx.borrow()

    updates, forwarded, state = vrun(main())
    assert forwarded == readings
    assert [u.update for u in updates] == list(range(1, n + 1))
    assert [u.device_id for u in updates] == [r.device_id for r in readings]
    expected_t = statistics.fmean(r.temperature for r in readings[-RECENT:])
    expected_h = statistics.fmean(r.humidity for r in readings[-RECENT:])
    assert math.isclose(updates[-1].avg_temperature, expected_t, rel_tol=1e-9)
    assert math.isclose(updates[-1].avg_humidity, expected_h, rel_tol=1e-9)
    assert (state.readings, state.devices_active) == (n, 3)
    assert (state.avg_temperature, state.avg_humidity) == (
        updates[-1].avg_temperature,
        updates[-1].avg_humidity,
    )


def test_the_averages_follow_recent_readings_instead_of_freezing() -> None:
    """Found: the seed-style "avg temps" read 20.0 °C for 25 updates in a row (lifetime
    means hardly move). Over the last 10 readings, a change shows at once."""
    readings = [reading(1, seq, 20.0, 50.0) for seq in range(50)]
    readings += [reading(2, seq, 30.0, 60.0) for seq in range(5)]

    async def main() -> list[StateUpdate]:
        rig = make_rig(storage_capacity=100, broadcast_capacity=100)
        task = asyncio.create_task(rig.aggregator.run())
        for r in readings:
            await rig.tx.send(r)
        rig.tx.close()
        await task
        return drain(rig.updates_rx)

    updates = vrun(main())
    temps = [round(u.avg_temperature, 6) for u in updates[-6:]]
    assert temps == [20.0, 21.0, 22.0, 23.0, 24.0, 25.0]  # a lifetime mean: 20.9 at the end


def test_every_subscribed_client_gets_every_update() -> None:
    async def main() -> tuple[list[int], list[int]]:
        rig = make_rig()
        second = rig.updates_tx.subscribe()
        task = asyncio.create_task(rig.aggregator.run())
        for seq in range(4):
            await rig.tx.send(reading(1, seq, 20.0, 50.0))
        rig.tx.close()
        await task
        return [u.update for u in drain(rig.updates_rx)], [u.update for u in drain(second)]

    assert vrun(main()) == ([1, 2, 3, 4], [1, 2, 3, 4])


def test_no_receivers_is_counted_and_does_not_stop_processing() -> None:
    async def main() -> tuple[AggregatorStatistics, list[int], SystemState, list[Reading]]:
        rig = make_rig()
        rig.updates_rx.close()  # no client at all
        task = asyncio.create_task(rig.aggregator.run())
        for seq in range(3):
            await rig.tx.send(reading(1, seq, 20.0, 50.0))
        await settle()
        late = rig.updates_tx.subscribe()  # a client arrives after three updates
        for seq in range(3, 5):
            await rig.tx.send(reading(1, seq, 20.0, 50.0))
        rig.tx.close()
        await task
        heard = [u.update for u in drain(late)]
        return rig.aggregator.statistics(), heard, rig.state_rx.borrow(), drain(rig.storage_rx)

    stats, heard, state, forwarded = vrun(main())
    assert stats == agg_stats(
        total_received=5,
        total_forwarded=5,
        total_updates=2,
        total_updates_unheard=3,
        devices_active=1,
    )
    assert heard == [4, 5]
    assert state.readings == 5
    assert [r.seq for r in forwarded] == [0, 1, 2, 3, 4]


def test_watch_state_tracks_each_reading() -> None:
    async def main() -> list[SystemState]:
        rig = make_rig()
        task = asyncio.create_task(rig.aggregator.run())
        seen = []
        for seq in range(3):
            await asyncio.sleep(2)
            await rig.tx.send(reading(seq + 1, 0, 10.0 * (seq + 1), 50.0))
            await rig.state_rx.changed()
            seen.append(rig.state_rx.borrow_and_update())
        rig.tx.close()
        await task
        return seen

    assert vrun(main()) == [
        SystemState(
            readings=1, devices_active=1, avg_temperature=10.0, avg_humidity=50.0, updated_at=2.0
        ),
        SystemState(
            readings=2, devices_active=2, avg_temperature=15.0, avg_humidity=50.0, updated_at=4.0
        ),
        SystemState(
            readings=3, devices_active=3, avg_temperature=20.0, avg_humidity=50.0, updated_at=6.0
        ),
    ]


# --- shutdown ----------------------------------------------------------------------------


def test_closing_every_sender_ends_run_and_closes_the_outputs() -> None:
    async def main() -> None:
        rig = make_rig()
        tx2 = rig.tx.clone()
        watcher = rig.state_rx.clone()
        task = asyncio.create_task(rig.aggregator.run())
        await rig.tx.send(reading(1, 0, 20.0, 50.0))
        await tx2.send(reading(2, 0, 22.0, 52.0))
        rig.tx.close()
        await settle()
        assert not task.done()  # one sender is still open
        tx2.close()
        await task

        # storage: the buffered readings, then ChannelClosed
        assert [await rig.storage_rx.recv(), await rig.storage_rx.recv()] == [
            reading(1, 0, 20.0, 50.0),
            reading(2, 0, 22.0, 52.0),
        ]
        with pytest.raises(ChannelClosed, match=CLOSED):
            await rig.storage_rx.recv()
        assert rig.storage_rx.is_closed

        # broadcast: both updates, then ChannelClosed
        assert [(await rig.updates_rx.recv()).update for _ in range(2)] == [1, 2]
        with pytest.raises(ChannelClosed, match=CLOSED):
            await rig.updates_rx.recv()
        with pytest.raises(ChannelClosed, match=r"^sender handle is closed$"):
            rig.updates_tx.send(
                StateUpdate(
                    update=0,
                    device_id=0,
                    devices_active=0,
                    avg_temperature=0.0,
                    avg_humidity=0.0,
                    ts=0.0,
                )
            )

        # watch: the final state is still reported once, then ChannelClosed
        for rx in (rig.state_rx, watcher):
            await rx.changed()
            assert rx.borrow_and_update() == SystemState(
                readings=2,
                devices_active=2,
                avg_temperature=21.0,
                avg_humidity=51.0,
                updated_at=0.0,
            )
            with pytest.raises(ChannelClosed, match=CLOSED):
                await rx.changed()

    vrun(main())


def test_run_with_no_readings_closes_the_outputs_and_keeps_the_initial_state() -> None:
    async def main() -> None:
        rig = make_rig()
        rig.tx.close()
        await rig.aggregator.run()
        with pytest.raises(ChannelClosed, match=CLOSED):
            await rig.storage_rx.recv()
        with pytest.raises(ChannelClosed, match=CLOSED):
            await rig.updates_rx.recv()
        with pytest.raises(ChannelClosed, match=CLOSED):
            await rig.state_rx.changed()
        assert rig.state_rx.borrow() == SystemState()
        assert rig.aggregator.statistics() == agg_stats()

    vrun(main())


def test_holding_is_one_while_blocked_on_a_full_storage_channel() -> None:
    async def main() -> None:
        rig = make_rig(storage_capacity=1)  # nobody reads storage yet
        task = asyncio.create_task(rig.aggregator.run())
        assert repr(rig.aggregator) == "<Aggregator received=0 forwarded=0 holding=0>"
        for seq in range(3):
            await rig.tx.send(reading(1, seq, 20.0, 50.0))
        await asyncio.sleep(5)
        # reading 0 is in the storage buffer, reading 1 is in the aggregator's hand
        assert rig.aggregator.statistics() == agg_stats(
            total_received=2,
            total_forwarded=1,
            total_updates=2,
            current_holding=1,
            devices_active=1,
        )
        assert repr(rig.aggregator) == "<Aggregator received=2 forwarded=1 holding=1>"
        assert rig.storage_rx.statistics().tasks_waiting_send == 1
        assert rig.tx.statistics().current_buffer_used == 1  # reading 2 still queued
        assert rig.state_rx.borrow().readings == 2  # state and update went out before storage

        forwarded = [await rig.storage_rx.recv()]
        await settle()
        assert rig.aggregator.statistics().current_holding == 1  # now holding reading 2
        forwarded.append(await rig.storage_rx.recv())
        await settle()
        assert rig.aggregator.statistics() == agg_stats(
            total_received=3,
            total_forwarded=3,
            total_updates=3,
            current_holding=0,
            devices_active=1,
        )
        forwarded.append(await rig.storage_rx.recv())
        assert [r.seq for r in forwarded] == [0, 1, 2]
        rig.tx.close()
        await task
        assert rig.aggregator.statistics().current_holding == 0

    vrun(main())


def test_a_closed_storage_channel_fails_the_aggregator_holding_the_reading() -> None:
    async def main() -> None:
        rig = make_rig()
        rig.storage_rx.close()  # storage died
        task = asyncio.create_task(rig.aggregator.run())
        await rig.tx.send(reading(1, 0, 20.0, 50.0))
        with pytest.raises(ChannelClosed, match=CLOSED) as info:
            await task
        assert info.value.value == reading(1, 0, 20.0, 50.0)
        stats = rig.aggregator.statistics()
        assert (stats.total_received, stats.total_forwarded, stats.current_holding) == (1, 0, 1)
        rig.tx.close()

    vrun(main())
