"""Tests for `telemetry_lab.device`: the seeded sensor simulation and its send loop.

`run()` tests use the virtual-time loop, so intervals, shutdown instants and time spent
blocked in a full channel are exact loop times.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass

import pytest
from support import settle, vrun

from telemetry_lab.device import Device, DeviceStatistics
from telemetry_lab.errors import ChannelClosed
from telemetry_lab.metrics import MeteredSemaphore
from telemetry_lab.models import Reading
from telemetry_lab.primitives import Receiver, Sender, WatchSender, channel, watch


@dataclass
class Rig:
    """Devices sharing one channel, one bandwidth semaphore and one shutdown watch."""

    devices: list[Device]
    rx: Receiver[Reading]
    bandwidth: MeteredSemaphore
    shutdown: WatchSender[bool]


def make_rig(
    count: int = 1, *, seed: int = 42, interval: float = 1.0, capacity: int = 100, permits: int = 3
) -> Rig:
    tx, rx = channel[Reading](capacity)
    shutdown_tx, shutdown_rx = watch(False)
    bandwidth = MeteredSemaphore(permits)
    devices = [
        Device(
            i,
            seed=seed,
            interval=interval,
            tx=tx.clone(),
            bandwidth=bandwidth,
            shutdown=shutdown_rx.clone(),
        )
        for i in range(1, count + 1)
    ]
    tx.close()
    shutdown_rx.close()
    return Rig(devices=devices, rx=rx, bandwidth=bandwidth, shutdown=shutdown_tx)


def lone_device(device_id: int = 1, *, seed: int = 42) -> Device:
    """A device used only for `next_reading` (its handles are never used)."""
    tx: Sender[Reading]
    tx, _ = channel[Reading](1)
    _, shutdown = watch(False)
    return Device(
        device_id,
        seed=seed,
        interval=1.0,
        tx=tx,
        bandwidth=MeteredSemaphore(1),
        shutdown=shutdown,
    )


async def run_and_close(device: Device) -> None:
    """Run a device and close its handles afterwards, as the gateway does."""
    try:
        await device.run()
    finally:
        device.close()


# --- the random walk ---------------------------------------------------------------------


def test_same_seed_gives_the_same_readings() -> None:
    a, b = lone_device(seed=7), lone_device(seed=7)
    first = [a.next_reading(i * 1.5) for i in range(200)]
    second = [b.next_reading(i * 1.5) for i in range(200)]
    assert first == second
    assert a.statistics() == b.statistics()


def test_different_seeds_or_device_ids_give_different_readings() -> None:
    walks = {
        "base": lone_device(1, seed=7),
        "other seed": lone_device(1, seed=8),
        "other device": lone_device(2, seed=7),
    }
    values = {
        name: [(r.temperature, r.humidity) for r in (d.next_reading(0.0) for _ in range(20))]
        for name, d in walks.items()
    }
    assert values["base"] != values["other seed"]
    assert values["base"] != values["other device"]
    assert values["other seed"] != values["other device"]


def test_seq_counts_from_zero_without_gaps_and_readings_carry_their_stamp() -> None:
    device = lone_device(3)
    readings = [device.next_reading(10.0 + i) for i in range(50)]
    assert [r.seq for r in readings] == list(range(50))
    assert {r.device_id for r in readings} == {3}
    assert [r.ts for r in readings] == [10.0 + i for i in range(50)]
    stats = device.statistics()
    assert (stats.device_id, stats.next_seq, stats.total_sent) == (3, 50, 0)
    assert repr(device) == "<Device 3 sent=0 next_seq=50>"


@pytest.mark.parametrize("seed", [0, 1, 42, 2**63 - 1])
def test_values_stay_in_physical_bounds(seed: int) -> None:
    device = lone_device(seed=seed)
    readings = [device.next_reading(float(i)) for i in range(10_000)]
    temperatures = [r.temperature for r in readings]
    humidities = [r.humidity for r in readings]
    assert -30.0 <= min(temperatures) <= max(temperatures) <= 60.0
    assert 0.0 <= min(humidities) <= max(humidities) <= 100.0
    assert all(round(v, 2) == v for v in temperatures + humidities)
    stats = device.statistics()
    assert -30.0 <= stats.temperature <= 60.0
    assert 0.0 <= stats.humidity <= 100.0


def test_first_reading_is_plausible_room_air() -> None:
    readings = [lone_device(i).next_reading(0.0) for i in range(1, 51)]
    assert all(5.0 <= r.temperature <= 35.0 for r in readings)
    assert all(25.0 <= r.humidity <= 85.0 for r in readings)


def test_statistics_snapshot_and_close_is_idempotent() -> None:
    rig = make_rig()
    device = rig.devices[0]
    assert device.statistics() == DeviceStatistics(
        device_id=1,
        total_sent=0,
        total_malformed=0,
        next_seq=0,
        temperature=device.statistics().temperature,
        humidity=device.statistics().humidity,
    )
    device.close()
    device.close()
    assert rig.rx.is_closed  # the device held the only sender
    assert rig.shutdown.receiver_count == 0


# --- run() -------------------------------------------------------------------------------


def test_run_sends_jittered_readings_until_shutdown() -> None:
    async def main() -> tuple[list[Reading], float, Rig]:
        loop = asyncio.get_running_loop()
        rig = make_rig(interval=1.0)
        task = asyncio.create_task(run_and_close(rig.devices[0]))
        await asyncio.sleep(20)
        rig.shutdown.send_replace(True)
        received = [r async for r in rig.rx]
        await task
        return received, loop.time(), rig

    received, ended, rig = vrun(main())
    assert ended == 20.0
    assert [r.seq for r in received] == list(range(len(received)))
    assert 13 <= len(received) <= 40  # 20 s at 0.5-1.5 s per reading
    gaps = [b.ts - a.ts for a, b in itertools.pairwise(received)]
    assert 0.5 <= received[0].ts <= 1.5
    assert all(0.5 <= g <= 1.5 for g in gaps)
    stats = rig.devices[0].statistics()
    assert (stats.total_sent, stats.next_seq) == (len(received), len(received))


def test_run_is_deterministic_for_a_seed() -> None:
    async def main(seed: int) -> list[Reading]:
        rig = make_rig(3, seed=seed, interval=1.0)
        async with asyncio.TaskGroup() as tg:
            for d in rig.devices:
                tg.create_task(run_and_close(d))
            await asyncio.sleep(15)
            rig.shutdown.send_replace(True)
            received = [r async for r in rig.rx]
        return received

    first, second, other = vrun(main(5)), vrun(main(5)), vrun(main(6))
    assert first == second
    assert first != other
    assert {r.device_id for r in first} == {1, 2, 3}


def test_shutdown_mid_interval_stops_the_device_at_once() -> None:
    async def main() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        rig = make_rig(interval=100.0)  # the first reading is 50-150 s away
        task = asyncio.create_task(rig.devices[0].run())
        await asyncio.sleep(2)
        rig.shutdown.send_replace(True)
        await task
        stopped_at = loop.time()
        rig.devices[0].close()
        return stopped_at, rig.devices[0].statistics().total_sent

    assert vrun(main()) == (2.0, 0)


def test_shutdown_already_signalled_sends_nothing() -> None:
    async def main() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        rig = make_rig(interval=1.0)
        rig.shutdown.send_replace(True)
        await run_and_close(rig.devices[0])
        return loop.time(), len(rig.rx)

    assert vrun(main()) == (0.0, 0)


def test_a_false_shutdown_value_does_not_stop_the_device() -> None:
    async def main() -> tuple[bool, int]:
        rig = make_rig(interval=1.0)
        task = asyncio.create_task(rig.devices[0].run())
        await asyncio.sleep(0.25)
        rig.shutdown.send_replace(False)  # a change, but not to True
        await asyncio.sleep(10)
        running = not task.done()
        rig.shutdown.send_replace(True)
        await task
        rig.devices[0].close()
        return running, rig.devices[0].statistics().total_sent

    running, sent = vrun(main())
    assert running
    assert sent >= 6


def test_unthrottled_device_still_yields_between_readings() -> None:
    async def main() -> tuple[list[int], float]:
        loop = asyncio.get_running_loop()
        rig = make_rig(interval=0.0, capacity=1_000)
        task = asyncio.create_task(rig.devices[0].run())
        sent_after_each_yield = []
        for _ in range(10):
            await asyncio.sleep(0)
            sent_after_each_yield.append(rig.devices[0].statistics().total_sent)
        rig.shutdown.send_replace(True)
        await task
        rig.devices[0].close()
        assert all(r.ts == 0.0 for r in [rig.rx.try_recv() for _ in range(len(rig.rx))])
        return sent_after_each_yield, loop.time()

    sent, now = vrun(main())
    assert now == 0.0
    assert sent[-1] >= 5
    assert all(b - a <= 1 for a, b in itertools.pairwise(sent))  # one per yield


def test_device_holds_a_bandwidth_permit_while_its_send_waits() -> None:
    async def main() -> None:
        rig = make_rig(2, interval=0.0, capacity=1, permits=1)
        async with asyncio.TaskGroup() as tg:
            for d in rig.devices:
                tg.create_task(run_and_close(d))
            await asyncio.sleep(5)
            # one device is blocked in send holding the only permit, the other waits for it
            bw = rig.bandwidth.statistics()
            assert (bw.current_in_use, bw.tasks_waiting, bw.max_in_use) == (1, 1, 1)
            ch = rig.rx.statistics()
            assert (ch.current_buffer_used, ch.tasks_waiting_send) == (1, 1)
            rig.shutdown.send_replace(True)
            received = [r async for r in rig.rx]
        assert len(received) == sum(d.statistics().total_sent for d in rig.devices)
        assert rig.bandwidth.statistics().max_in_use == 1
        assert rig.bandwidth.statistics().current_in_use == 0

    vrun(main())


def test_concurrent_sends_never_exceed_the_bandwidth() -> None:
    async def main() -> None:
        rig = make_rig(6, interval=0.5, capacity=1, permits=2)
        async with asyncio.TaskGroup() as tg:
            for d in rig.devices:
                tg.create_task(run_and_close(d))
            received = []
            for _ in range(30):  # a slow reader: one reading every 0.4 s
                await asyncio.sleep(0.4)
                received.append(await rig.rx.recv())
                assert rig.bandwidth.in_use <= 2
            rig.shutdown.send_replace(True)
            received += [r async for r in rig.rx]
        bw = rig.bandwidth.statistics()
        assert bw.max_in_use == 2
        assert bw.current_in_use == 0
        assert bw.total_acquired == len(received)
        assert bw.total_wait > 0

    vrun(main())


def test_full_channel_blocks_the_device_and_counts_the_wait() -> None:
    async def main() -> None:
        rig = make_rig(interval=0.0, capacity=1)  # nobody reads
        device = rig.devices[0]
        task = asyncio.create_task(run_and_close(device))
        await asyncio.sleep(10)
        ch = rig.rx.statistics()
        assert (ch.total_sent, ch.current_buffer_used, ch.tasks_waiting_send) == (1, 1, 1)
        assert (ch.total_blocked_sends, ch.total_send_wait) == (1, 0.0)  # still waiting
        assert (device.statistics().total_sent, device.statistics().next_seq) == (1, 2)
        assert rig.bandwidth.in_use == 1

        first = await rig.rx.recv()  # t=10: frees the slot, the blocked send completes
        await settle()
        ch = rig.rx.statistics()
        assert ch.total_send_wait == 10.0
        assert (ch.total_blocked_sends, ch.tasks_waiting_send) == (2, 1)  # blocked again

        await asyncio.sleep(15)
        second = await rig.rx.recv()  # t=25
        await settle()
        assert rig.rx.statistics().total_send_wait == 25.0

        rig.shutdown.send_replace(True)
        rest = [r async for r in rig.rx]
        await task
        seqs = [r.seq for r in [first, second, *rest]]
        assert seqs == list(range(len(seqs)))
        assert device.statistics().total_sent == len(seqs)

    vrun(main())


def test_closed_receiver_fails_the_device_with_the_unsent_reading() -> None:
    async def main() -> None:
        rig = make_rig(interval=1.0)
        task = asyncio.create_task(run_and_close(rig.devices[0]))
        await asyncio.sleep(5)
        rig.rx.close()
        with pytest.raises(ChannelClosed, match=r"^channel closed$") as info:
            await task
        assert isinstance(info.value.value, Reading)
        assert rig.bandwidth.in_use == 0

    vrun(main())
