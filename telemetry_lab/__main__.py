"""Run a small tour of the primitives: `python -m telemetry_lab` (the gateway comes next).

Three devices push readings through a bounded `channel` (watch the senders block), an
aggregator fans updates out through a `broadcast` to a fast and a slow client (watch the
slow one lag), publishes a running count through a `watch`, and a `JoinSet` owns every
task. The statistics snapshots are printed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from telemetry_lab.errors import ChannelClosed, Lagged
from telemetry_lab.primitives import (
    BroadcastReceiver,
    JoinSet,
    Receiver,
    Sender,
    broadcast,
    channel,
    watch,
)

__all__ = ["main", "tour"]

log = logging.getLogger("telemetry_lab")


async def _device(device_id: int, tx: Sender[tuple[int, int]], readings: int) -> None:
    with tx:
        for seq in range(readings):
            await tx.send((device_id, seq))  # waits while the channel is full: backpressure
            log.info("📱 Device %d sent reading %d", device_id, seq)


async def _client(name: str, rx: BroadcastReceiver[int], delay: float) -> tuple[int, int]:
    received = lagged = 0
    with rx:
        while True:
            try:
                total = await rx.recv()
            except Lagged as exc:
                lagged += exc.skipped
                log.info("👤 %s lagged: %d updates skipped", name, exc.skipped)
                continue
            except ChannelClosed:
                return received, lagged
            received += 1
            log.info("👤 %s received update: %d readings so far", name, total)
            await asyncio.sleep(delay)  # a slow client falls behind


async def tour(devices: int = 3, readings: int = 5) -> dict[str, object]:
    """Run the tour and return each primitive's final statistics."""
    tx, rx = channel[tuple[int, int]](5)
    updates_tx, fast_rx = broadcast[int](4)
    slow_rx = updates_tx.subscribe()
    state_tx, state_rx = watch(0)
    results: dict[str, object] = {}

    async def aggregator(rx: Receiver[tuple[int, int]]) -> None:
        with updates_tx, state_tx:
            async for device_id, seq in rx:
                await asyncio.sleep(0.01)  # processing time
                log.info("🔄 Aggregator processed reading %d of device %d", seq, device_id)
                state_tx.send(state_tx.borrow() + 1)  # the latest count, for any observer
                log.info("📡 Broadcast to %d clients", updates_tx.send(state_tx.borrow()))

    async with JoinSet[object]() as tasks:
        for d in range(1, devices + 1):
            tasks.spawn(_device(d, tx.clone(), readings), name=f"device-{d}")
        tx.close()
        tasks.spawn(aggregator(rx), name="aggregator")
        fast = tasks.spawn(_client("Client fast", fast_rx, 0), name="client-fast")
        slow = tasks.spawn(_client("Client slow", slow_rx, 0.05), name="client-slow")
        await tasks.join_all()
        results["channel"] = rx.statistics()
        results["broadcast"] = updates_tx.statistics()
        results["watch"] = state_rx.statistics()
        results["fast client (received, lagged)"] = fast.result()
        results["slow client (received, lagged)"] = slow.result()
        results["readings counted"] = state_rx.borrow()
    return results


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m telemetry_lab` and the `telemetry-lab` script."""
    parser = argparse.ArgumentParser(prog="telemetry-lab", description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=3)
    parser.add_argument("--readings", type=int, default=5, help="readings per device")
    parser.add_argument("--quiet", action="store_true", help="only print the summary")
    args = parser.parse_args(argv)
    if args.devices < 1 or args.readings < 1:
        parser.error("--devices and --readings must be >= 1")
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    print("🚀 Starting the primitives tour\n")
    results = asyncio.run(tour(args.devices, args.readings))
    print("\n📊 Final statistics")
    for name, value in results.items():
        print(f"  {name}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
