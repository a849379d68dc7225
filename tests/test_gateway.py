"""The whole gateway, end to end, on the virtual clock (and once in real time)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from telemetry_lab import (
    Gateway,
    GatewayConfig,
    GatewayPhase,
    LoopAlreadyRunning,
    Report,
    VirtualTimeEventLoop,
    run,
    run_gateway,
)


def rows(path: Path, run_id: int | None = 1) -> list[tuple[Any, ...]]:
    """The readings of one run (or of every run, for None), without their run id."""
    where, args = ("WHERE run_id = ?", (run_id,)) if run_id is not None else ("", ())
    query = (
        f"SELECT device_id, seq, ts, temperature, humidity FROM readings {where} "
        "ORDER BY run_id, device_id, seq"
    )
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(query, args).fetchall()


def comparable(report: Report) -> dict[str, Any]:
    out = report.to_dict()
    del out["wall_seconds"], out["db_path"]
    return out


def run_virtual(coro_factory: Any) -> Any:
    with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner:
        return runner.run(coro_factory())


def test_default_run_reproduces_the_seed(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    report = run(GatewayConfig(db_path=db), virtual_time=True)
    assert (report.devices, report.clients) == (7, 4)
    assert (report.tasks_started, report.tasks_stopped_cleanly) == (13, 13)
    assert 30 <= report.produced <= 55  # the seed: "about 40 readings"
    assert 4 <= report.batches <= 6  # the seed: "5 storage batches"
    assert report.batches == -(-report.produced // 10)  # full batches of 10 + the last
    assert (report.lost, report.in_flight, report.rejected, report.dead_lettered) == (0, 0, 0, 0)
    assert report.balanced
    assert report.clean_shutdown
    assert report.ok
    assert report.stored == report.produced == len(rows(db))
    assert report.updates_sent == report.produced
    assert report.updates_delivered == 4 * report.produced
    assert report.updates_lagged == 0
    assert [c.received for c in report.client_summaries] == [report.produced] * 4
    assert report.loop_seconds == pytest.approx(10.0)


def test_default_seed_gives_the_documented_figures(tmp_path: Path) -> None:
    """The README quotes these numbers for seed 42; keep them honest."""
    report = run(GatewayConfig(db_path=tmp_path / "t.db"), virtual_time=True)
    assert (report.produced, report.stored, report.batches) == (45, 45, 5)


def test_same_seed_gives_the_same_report_and_rows(tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    first = run(GatewayConfig(db_path=a, seed=7), virtual_time=True)
    second = run(GatewayConfig(db_path=b, seed=7), virtual_time=True)
    assert comparable(first) == comparable(second)
    assert rows(a) == rows(b)
    assert len(rows(a)) == first.stored


def test_different_seeds_differ(tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    run(GatewayConfig(db_path=a, seed=1), virtual_time=True)
    run(GatewayConfig(db_path=b, seed=2), virtual_time=True)
    assert rows(a) != rows(b)


def test_rows_are_the_readings_with_per_device_gapless_sequences(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    report = run(GatewayConfig(db_path=db, duration=30.0), virtual_time=True)
    table = rows(db)
    assert len(table) == report.stored
    by_device: dict[int, list[int]] = {}
    for device_id, seq, ts, temperature, humidity in table:
        by_device.setdefault(device_id, []).append(seq)
        assert 0.0 < ts <= 30.0
        assert -30.0 <= temperature <= 60.0
        assert 0.0 <= humidity <= 100.0
    assert sorted(by_device) == list(range(1, 8))
    for seqs in by_device.values():
        assert seqs == list(range(len(seqs)))


def test_a_second_run_on_the_same_file_gets_the_next_run_id_and_keeps_the_first(
    tmp_path: Path,
) -> None:
    db = tmp_path / "t.db"
    first = run(GatewayConfig(db_path=db, seed=1), virtual_time=True)
    before = rows(db, 1)
    second = run(GatewayConfig(db_path=db, seed=2, duration=5.0), virtual_time=True)
    assert (first.run_id, second.run_id) == (1, 2)
    assert rows(db, 1) == before
    assert len(before) == first.stored
    assert len(rows(db, 2)) == second.stored
    assert len(rows(db, None)) == first.stored + second.stored


def test_backpressure_under_fast_devices_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    config = GatewayConfig(
        db_path=db, device_interval=0.001, duration=0.5, telemetry_capacity=5, storage_capacity=2
    )
    gateway = Gateway(config)
    report = run_virtual(gateway.run)
    assert report.produced > 1000
    assert report.ok
    assert report.stored == len(rows(db)) == report.produced
    stats = gateway.statistics()
    assert stats.telemetry.total_sent == stats.storage_channel.total_sent == report.produced
    assert stats.bandwidth.max_in_use <= 3
    assert stats.elapsed == pytest.approx(report.loop_seconds)


def test_unthrottled_devices_are_refused_on_the_virtual_clock(tmp_path: Path) -> None:
    config = GatewayConfig(db_path=tmp_path / "t.db", device_interval=0)
    with pytest.raises(ValueError, match=r"^device_interval=0 \(unthrottled devices\) never"):
        run(config, virtual_time=True)


def test_zero_clients_and_one_device(tmp_path: Path) -> None:
    report = run(GatewayConfig(db_path=tmp_path / "t.db", devices=1, clients=0), virtual_time=True)
    assert (report.tasks_started, report.tasks_stopped_cleanly) == (3, 3)
    assert report.updates_sent == 0
    assert report.updates_delivered == 0
    assert report.ok


def test_the_log_reads_like_the_seed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="telemetry_lab")
    run(GatewayConfig(db_path=tmp_path / "t.db"), virtual_time=True)
    text = caplog.text
    assert "🚀 Starting Telemetry Gateway" in text
    for expected in (
        r"📱 Device \d sent: temp=-?\d+\.\d°C, humidity=\d+\.\d%",
        r"🔄 Aggregator processed telemetry from device \d",
        r"📡 Broadcasted update to 4 clients",
        r"👤 Client \d received update: \d devices active, avg temps: -?\d+\.\d°C",
        r"💾 Writing batch 1 \(10 records\) to storage",
    ):
        assert any(__import__("re").search(expected, r.getMessage()) for r in caplog.records), (
            expected
        )


def test_statistics_and_series_track_the_run(tmp_path: Path) -> None:
    config = GatewayConfig(db_path=tmp_path / "t.db", sample_interval=0.5)
    gateway = Gateway(config)
    before = gateway.statistics()
    assert before.phase is GatewayPhase.NEW
    assert (before.storage, before.db_pool, before.elapsed) == (None, None, 0.0)
    seen: list[GatewayPhase] = []

    async def main() -> Report:
        task = asyncio.create_task(gateway.run())
        await asyncio.sleep(5.0)
        mid = gateway.statistics()
        seen.append(mid.phase)
        assert mid.elapsed == pytest.approx(5.0)
        assert 0 < mid.aggregator.total_received == mid.telemetry.total_received
        return await task

    report = run_virtual(main)
    assert seen == [GatewayPhase.RUNNING]
    assert gateway.phase is GatewayPhase.STOPPED
    samples = list(gateway.series)
    assert len(samples) == 10 / 0.5 + 2  # t = 0, 0.5, ..., 10, and one after the drain
    assert [s.t for s in samples[:-1]] == pytest.approx([i * 0.5 for i in range(21)])
    assert samples[-1].stored == report.stored
    assert gateway.series.column("produced")[-1] == report.produced
    assert all(len(s.client_received) == 4 for s in samples)
    assert [s.stored for s in samples] == sorted(s.stored for s in samples)


def test_a_gateway_runs_once(tmp_path: Path) -> None:
    gateway = Gateway(GatewayConfig(db_path=tmp_path / "t.db", duration=1.0))
    run_virtual(gateway.run)
    with pytest.raises(
        RuntimeError, match=r"cannot go from STOPPED to RUNNING; a Gateway runs once: build a new"
    ):
        run_virtual(gateway.run)


def test_cancelling_start_drains_then_propagates_and_keeps_the_report(tmp_path: Path) -> None:
    """Cancellation is cancellation: the task drains, then ends cancelled (no uncancel)."""
    db = tmp_path / "t.db"
    gateways: list[Gateway] = []

    async def main() -> None:
        gateway = Gateway(GatewayConfig(db_path=db, duration=60.0))
        gateways.append(gateway)
        task = asyncio.create_task(gateway.run())
        await asyncio.sleep(3.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()

    run_virtual(main)
    report = gateways[0].report
    assert report is not None
    assert report.ended_by == "cancel"
    assert report.loop_seconds == pytest.approx(3.0)
    assert report.clean_shutdown
    assert report.ok
    assert report.produced > 0
    assert report.stored == report.produced == len(rows(db))
    assert report.tasks_stopped_cleanly == 13


def test_asyncio_timeout_around_run_gateway_raises_timeout_error(tmp_path: Path) -> None:
    """`async with asyncio.timeout(1): await run_gateway(...)` used to return a report."""
    db = tmp_path / "t.db"

    async def main() -> float:
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                await run_gateway(GatewayConfig(db_path=db, duration=60.0))
        current = asyncio.current_task()
        assert current is not None
        assert current.cancelling() == 0  # the timeout consumed exactly its own cancel
        return loop.time()

    assert run_virtual(main) == pytest.approx(1.0)  # the drain took no loop time
    assert len(rows(db)) > 0


def test_a_failing_task_group_sibling_cancels_the_gateway(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    gateway = Gateway(GatewayConfig(db_path=db, duration=60.0))

    async def sibling() -> None:
        await asyncio.sleep(2.0)
        raise KeyError("sibling failed")

    async def main() -> None:
        with pytest.RaisesGroup(pytest.RaisesExc(KeyError, match="sibling failed")):
            async with asyncio.TaskGroup() as group:
                group.create_task(gateway.run())
                group.create_task(sibling())

    run_virtual(main)
    report = gateway.report
    assert report is not None
    assert (report.ended_by, report.ok, report.loop_seconds) == ("cancel", True, 2.0)
    assert report.stored == len(rows(db))


def test_stop_drains_and_run_returns_the_report(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    gateway = Gateway(GatewayConfig(db_path=db, duration=60.0))

    async def main() -> Report:
        task = asyncio.create_task(gateway.run())
        await asyncio.sleep(2.5)
        gateway.stop()
        gateway.stop()  # idempotent
        report = await task
        gateway.stop()  # after the end: nothing happens
        return report

    report = run_virtual(main)
    assert report is gateway.report
    assert (report.ended_by, report.ok, report.loop_seconds) == ("stop", True, 2.5)
    assert report.stored == report.produced == len(rows(db)) > 0


def test_stop_before_run_drains_at_once(tmp_path: Path) -> None:
    gateway = Gateway(GatewayConfig(db_path=tmp_path / "t.db", duration=60.0))
    gateway.stop()
    report = run_virtual(gateway.run)
    assert (report.ended_by, report.ok, report.loop_seconds, report.produced) == (
        "stop",
        True,
        0.0,
        0,
    )
    assert report.tasks_stopped_cleanly == 13


def test_stop_from_another_thread_drains_the_run(tmp_path: Path) -> None:
    gateway = Gateway(GatewayConfig(db_path=tmp_path / "t.db", duration=3600.0))

    async def main() -> Report:
        task = asyncio.create_task(gateway.run())
        await asyncio.sleep(1.0)
        thread = threading.Thread(target=gateway.stop)
        await asyncio.to_thread(thread.start)
        await asyncio.to_thread(thread.join)
        return await task

    report = run_virtual(main)
    assert (report.ended_by, report.ok) == ("stop", True)
    assert report.loop_seconds < 2.0


def test_a_second_cancel_during_the_drain_aborts_and_propagates(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    config = GatewayConfig(db_path=db, duration=60.0, storage_latency=0.5, device_interval=0.01)
    gateway = Gateway(config)

    async def main() -> None:
        task = asyncio.create_task(gateway.run())
        await asyncio.sleep(1.0)
        task.cancel()
        while gateway.phase is not GatewayPhase.DRAINING:  # noqa: ASYNC110 (a phase, no event)
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run_virtual(main)
    report = gateway.report
    assert report is not None
    assert report.ended_by == "abort"
    assert not report.clean_shutdown
    assert not report.ok
    assert report.balanced
    assert report.in_flight > 0
    assert report.stored == len(rows(db))  # what was written is counted, nothing more
    assert report.verdicts()[0].startswith("❌ Aborted without draining: ")


def test_abort_cancels_every_task_and_returns_the_partial_report(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    config = GatewayConfig(db_path=db, duration=60.0, storage_latency=0.5, device_interval=0.01)
    gateway = Gateway(config)

    async def main() -> Report:
        task = asyncio.create_task(gateway.run())
        await asyncio.sleep(2.0)
        gateway.abort()
        gateway.abort()
        return await task

    report = run_virtual(main)
    assert (report.ended_by, report.clean_shutdown, report.tasks_stopped_cleanly) == (
        "abort",
        False,
        0,
    )
    assert report.balanced
    assert report.loop_seconds == pytest.approx(2.0)
    assert report.stored == len(rows(db))


def test_a_third_cancel_while_a_write_is_in_flight_closes_nothing_under_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelling three times while a batch write runs in its thread used to segfault:
    the connection was closed under the write. Every thread now finishes first."""
    from telemetry_lab.storage import sql as storage  # where insert_batch is looked up

    writing = threading.Event()
    release = threading.Event()
    real = storage.insert_batch

    def slow_insert(conn: sqlite3.Connection, batch: Any) -> int:
        writing.set()
        release.wait(10)  # a write held in flight
        return real(conn, batch)

    monkeypatch.setattr(storage, "insert_batch", slow_insert)
    db = tmp_path / "t.db"
    gateway = Gateway(GatewayConfig(db_path=db, duration=60.0, device_interval=0.001))

    async def main() -> None:  # real time: the test acts while the write is held
        task = asyncio.create_task(gateway.run())
        await asyncio.to_thread(writing.wait, 10)
        for _ in range(3):
            task.cancel()
            await asyncio.sleep(0.01)
        assert not task.done()  # still waiting for the write in its thread
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    report = gateway.report
    assert report is not None
    assert report.ended_by == "abort"
    assert report.stored == len(rows(db)) > 0  # the held write finished and was counted
    assert report.balanced
    assert report.errors == ()


def test_an_unusable_database_fails_before_any_task_starts(tmp_path: Path) -> None:
    gateway = Gateway(GatewayConfig(db_path=tmp_path / "missing" / "t.db"))
    with pytest.raises(ValueError, match=r"^db_path '.*missing/t\.db' cannot be used: "):
        run_virtual(gateway.run)
    assert gateway.phase is GatewayPhase.STOPPED
    assert all(d.total_sent == 0 for d in gateway.statistics().devices)


async def test_run_inside_a_running_loop_says_to_await(tmp_path: Path) -> None:
    config = GatewayConfig(db_path=tmp_path / "t.db")
    with pytest.raises(LoopAlreadyRunning, match=r"use `report = await run_gateway\(config\)`"):
        run(config)
    with pytest.raises(LoopAlreadyRunning, match=r"instead$"):
        run(config, virtual_time=True)


def test_run_nested_with_opt_in_uses_nest_asyncio2(tmp_path: Path) -> None:
    # nest_asyncio2 patches the running loop; keep it out of this process.
    script = textwrap.dedent(
        f"""
        import asyncio
        from telemetry_lab import GatewayConfig, run

        async def main():
            return run(GatewayConfig(db_path={str(tmp_path / "n.db")!r}, duration=0.2,
                                     device_interval=0.05), allow_nested=True)

        report = asyncio.run(main())
        assert report.ok and report.produced > 0, report
        print("nested ok", report.produced == report.stored)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "nested ok True"


@pytest.mark.async_timeout(20)
async def test_a_short_real_time_run(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    config = GatewayConfig(db_path=db, duration=0.3, device_interval=0.02, flush_interval=0.05)
    report = await run_gateway(config)
    assert report.ok
    assert report.loop_seconds >= 0.3
    assert report.stored == report.produced == len(rows(db)) > 0


def test_report_is_frozen_and_serialises(tmp_path: Path) -> None:
    import json

    report = run(GatewayConfig(db_path=tmp_path / "t.db", duration=2.0), virtual_time=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.produced = 0  # type: ignore[misc]
    data = json.loads(json.dumps(report.to_dict()))
    for field in (
        "produced", "stored", "rejected", "dead_lettered", "in_flight", "lost", "batches",
        "clients", "updates_delivered", "updates_lagged", "device_restarts", "tasks_started",
        "tasks_stopped_cleanly", "wall_seconds",
    ):  # fmt: skip
        assert field in data, field
    assert data["ok"] is True
    assert "Zero data loss" in report.summary_table()


def test_cancelled_while_opening_the_database_propagates_after_an_empty_drain(
    tmp_path: Path,
) -> None:
    db = tmp_path / "t.db"
    gateway = Gateway(GatewayConfig(db_path=db, duration=60.0))

    async def main() -> None:
        task = asyncio.create_task(gateway.run())
        await asyncio.sleep(0)  # the run has begun: it is opening the database in a thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run_virtual(main)
    report = gateway.report
    assert report is not None
    assert (report.ended_by, report.clean_shutdown, report.ok) == ("cancel", True, True)
    assert report.produced == report.stored == len(rows(db)) == 0
    assert report.tasks_stopped_cleanly == report.tasks_started == 13
    with contextlib.closing(sqlite3.connect(db)) as conn:
        (finished,) = conn.execute("SELECT finished_at FROM runs WHERE run_id = 1").fetchone()
    assert finished is not None


def test_adjust_after_the_run_has_stopped_raises(tmp_path: Path) -> None:
    gateway = Gateway(GatewayConfig(db_path=tmp_path / "t.db", duration=1.0))
    gateway.adjust(storage_latency=0.1)  # before the run: allowed, used from the start
    run_virtual(gateway.run)
    with pytest.raises(
        RuntimeError,
        match=r"^adjust\(\) turns the knobs of a running gateway, but run 1 has ended; build "
        r"a new Gateway",
    ):
        gateway.adjust(storage_latency=0.2)
    assert gateway.knobs.storage_latency == 0.1


def test_a_task_that_fails_ends_the_run_and_says_so_in_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found: API users without logging configured saw none of the gateway's errors."""
    from telemetry_lab.client import Client

    real = Client.run

    async def failing(self: Client) -> None:
        if self.client_id == 2:
            await asyncio.sleep(3.0)
            raise RuntimeError("the display went away")
        await real(self)

    monkeypatch.setattr(Client, "run", failing)
    db = tmp_path / "t.db"
    report = run(GatewayConfig(db_path=db, duration=60.0), virtual_time=True)
    assert report.errors == ("task client-2 failed: RuntimeError: the display went away",)
    assert report.ended_by == "failure"
    assert report.loop_seconds == pytest.approx(3.0, abs=0.25)  # it stopped the run
    assert not report.ok
    assert report.lost == 0  # every reading still reached its place
    assert report.stored == len(rows(db))
    assert report.verdicts()[0] == "❌ task client-2 failed: RuntimeError: the display went away"
    assert report.to_dict()["errors"] == list(report.errors)


SCRIPT_WITH_CTRL_C = """
import json, logging, sys
from telemetry_lab import GatewayConfig, run
logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
config = GatewayConfig(
    db_path=sys.argv[1], duration=30.0, device_interval=0.05, storage_latency=0.5
)
try:
    report = run(config)
except KeyboardInterrupt:
    print("KeyboardInterrupt")
else:
    print(json.dumps({"ended_by": report.ended_by, "ok": report.ok}))
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_in_a_script_using_run(tmp_path: Path, presses: int) -> None:
    """Once: the run drains and run() returns the report. Twice: it aborts, then raises."""
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT_WITH_CTRL_C, str(tmp_path / "t.db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        env={**__import__("os").environ, "PYTHONIOENCODING": "utf-8"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("💾 Writing batch"):
            break
    proc.send_signal(signal.SIGINT)
    if presses == 2:
        for line in proc.stderr:
            if line.startswith("🛑 SIGINT received"):
                break
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    if presses == 1:
        assert json.loads(out) == {"ended_by": "stop", "ok": True}
    else:
        assert out == "KeyboardInterrupt\n"


def test_the_gateway_names_its_primitives(tmp_path: Path) -> None:
    """Reprs, statistics and the console say which channel is which."""
    gw = Gateway(GatewayConfig(db_path=tmp_path / "t.db"))
    s = gw.statistics()
    assert (s.telemetry.name, s.storage_channel.name, s.updates.name) == (
        "telemetry",
        "storage",
        "updates",
    )
    assert "name='state'" in repr(gw.state)
