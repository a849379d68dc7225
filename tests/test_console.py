"""The asyncio console, on plain asyncio code, on the gateway, and on the mistakes it flags."""

# Blocking the loop on purpose is what several tests here are about.
# ruff: noqa: ASYNC251

from __future__ import annotations

import asyncio
import gc
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from telemetry_lab import Gateway, GatewayConfig, channel
from telemetry_lab.console import Console, ConsoleSnapshot, TaskRow
from telemetry_lab.console.widget import render_html

HERE = Path(__file__).name


def line_of(marker: str) -> int:
    """The line number in this file of the line that ends with `# marker`."""
    for number, text in enumerate(Path(__file__).read_text().splitlines(), start=1):
        if text.rstrip().endswith(f"# {marker}"):
            return number
    raise AssertionError(f"no line marked {marker!r}")


async def until(console: Console, check: Any, *, within: float = 5.0) -> ConsoleSnapshot:
    """Take snapshots until `check(snapshot)` is true; fail with the last one if never."""
    deadline = time.monotonic() + within
    while True:
        snapshot = console.snapshot()
        if check(snapshot):
            return snapshot
        if time.monotonic() > deadline:
            raise AssertionError(f"never true; last snapshot:\n{snapshot}")
        await asyncio.sleep(0.05)


# --- plain asyncio ----------------------------------------------------------------------


async def test_plain_asyncio_tasks_get_rows_with_their_state_and_what_they_wait_on() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=3)
    lock = asyncio.Lock()
    async with Console() as console:

        async def sleeper() -> None:
            await asyncio.sleep(30)

        async def getter() -> int:
            return await queue.get()

        async def holder() -> None:
            async with lock:
                await asyncio.sleep(30)

        async def locker() -> None:
            async with lock:
                pass

        async def quick() -> str:
            return "done"

        coros = (sleeper, getter, holder, locker, quick)
        tasks = [asyncio.create_task(c(), name=c.__name__) for c in coros]  # creation site
        await asyncio.sleep(0.1)
        late = asyncio.create_task(sleeper(), name="late")  # scheduled, not run yet
        snapshot = console.snapshot()
        rows = {row.name: row for row in snapshot.tasks}

        assert rows["sleeper"].state == "waiting"
        assert rows["sleeper"].waiting_on == "sleep 30 s"
        assert rows["getter"].waiting_on == "get from asyncio.Queue (0/3 queued)"
        assert rows["holder"].waiting_on == "sleep 30 s"
        assert rows["locker"].waiting_on == "acquire asyncio.Lock (locked)"
        assert rows["late"].state == "ready"
        assert rows["late"].steps == 0
        assert rows["quick"].state == "done"
        assert rows["quick"].waiting_on == "returned"
        me = asyncio.current_task()
        assert me is not None
        assert snapshot.task(me.get_name()).state == "running"
        for name in ("sleeper", "getter", "holder", "locker"):
            row = rows[name]
            assert row.steps == 1
            assert row.wakeups == 0
            assert 0.05 < row.waiting_seconds < 5
            assert row.busy_seconds >= 0
            assert row.created_at == f"{HERE}:{line_of('creation site')}"
        assert "sleeper" in str(snapshot)
        for task in (*tasks, late):
            task.cancel()
        await asyncio.gather(*tasks, late, return_exceptions=True)
        rows = {row.name: row for row in console.snapshot().tasks if row.state == "done"}
        assert rows["sleeper"].waiting_on == "cancelled"


async def test_steps_wakeups_and_busy_time_are_counted() -> None:
    async with Console() as console:

        async def three_sleeps() -> None:
            for _ in range(3):
                await asyncio.sleep(0.01)
            time.sleep(0.03)  # busy in its last step

        task = asyncio.create_task(three_sleeps(), name="three")
        await task
        row = console.snapshot().task("three")
    assert row.state == "done"
    assert row.steps == 4  # the first step, then one per wake-up
    assert row.wakeups == 3
    assert 0.03 <= row.busy_seconds < 1.0
    assert row.busy_fraction > 0


# --- the gateway ------------------------------------------------------------------------


@pytest.mark.async_timeout(30)
async def test_gateway_with_a_slow_database_shows_backpressure_as_tasks_waiting(
    tmp_path: Path,
) -> None:
    config = GatewayConfig(
        db_path=tmp_path / "slow.db",
        duration=6,
        device_interval=0.002,
        storage_latency=0.4,
        db_connections=1,
    )
    async with Console() as console:
        gateway = Gateway(config)
        run = asyncio.create_task(gateway.run(), name="gateway")

        def backpressure(snapshot: ConsoleSnapshot) -> bool:
            devices = snapshot.tasks_named("device-")
            sending = [row for row in devices if row.waiting_on.startswith("send on")]
            return bool(sending) and snapshot.task("storage").waiting_on.startswith(
                "acquire semaphore 'db'"
            )

        snapshot = await until(console, backpressure, within=5)
        gateway.stop()
        report = await run
    assert report.ok
    devices = snapshot.tasks_named("device-")
    assert len(devices) == config.devices
    sending = [row for row in devices if row.waiting_on.startswith("send on")]
    assert all(row.state == "waiting" for row in sending)
    assert all(
        row.waiting_on == f"send on channel 'telemetry' ({config.telemetry_capacity}/"
        f"{config.telemetry_capacity} full)"
        for row in sending
    ), [row.waiting_on for row in sending]
    assert snapshot.task("storage").waiting_on == "acquire semaphore 'db' (1/1 in use, 1 waiting)"
    resources = {row.name: row for row in snapshot.resources}
    telemetry = resources["telemetry"]
    assert telemetry.description.startswith("channel 'telemetry'")
    assert {task for op, task in telemetry.waiting if op == "send"} == {r.name for r in sending}
    assert resources["db"].waiting == (("acquire", "storage"),)
    assert {"telemetry", "storage", "updates", "state", "stop", "db"} <= set(resources)
    assert not snapshot.warnings_of("stuck"), snapshot
    assert not snapshot.warnings_of("unretrieved_exception"), snapshot


# --- warnings ---------------------------------------------------------------------------


async def test_time_sleep_in_a_coroutine_is_flagged_with_its_task_and_line() -> None:
    async with Console() as console:

        async def sleepy_stage() -> None:
            await asyncio.sleep(0)
            time.sleep(0.2)  # the blocking line

        await asyncio.create_task(sleepy_stage(), name="sleepy-stage")
        warnings = console.snapshot().warnings_of("blocked_loop")
    assert len(warnings) == 1, warnings
    warning = warnings[0]
    assert warning.task == "sleepy-stage"
    assert warning.location == f"{HERE}:{line_of('the blocking line')}"
    assert "sleepy-stage" in warning.message
    assert f"{HERE}:{line_of('the blocking line')}" in warning.message
    assert "time.sleep(0.2)" in warning.message


async def test_a_short_step_is_not_flagged_and_the_threshold_is_a_knob() -> None:
    async with Console(blocked_threshold=0.5) as console:

        async def stage() -> None:
            time.sleep(0.1)

        await asyncio.create_task(stage())
        assert not console.snapshot().warnings_of("blocked_loop")


async def test_a_stall_is_seen_from_another_thread_while_the_loop_is_blocked() -> None:
    seen: list[ConsoleSnapshot] = []
    async with Console() as console:

        def look() -> None:
            time.sleep(0.3)  # the loop is frozen by then
            seen.append(console.snapshot())

        async def frozen() -> None:
            time.sleep(0.8)  # the frozen line

        thread = threading.Thread(target=look)
        thread.start()
        await asyncio.create_task(frozen(), name="frozen")
        thread.join()
    (during,) = seen
    assert during.loop_blocked_for > 0.2
    assert during.task("frozen").state == "running"
    (live,) = [w for w in during.warnings if w.ongoing and w.kind == "blocked_loop"]
    assert live.task == "frozen"
    assert live.location == f"{HERE}:{line_of('the frozen line')}"
    assert "blocking the loop right now" in live.message
    assert "THE LOOP IS BLOCKED" in str(during)


async def test_a_receiver_whose_senders_are_all_gone_is_stuck() -> None:
    async with Console(stuck_threshold=0.2) as console:
        tx, rx = channel(4, name="jobs")

        async def producer(tx: Any) -> None:
            await asyncio.sleep(0.01)  # finds nothing to send, and forgets to close tx

        async def consumer(rx: Any) -> None:
            async for _ in rx:  # the stuck consumer
                pass

        waiting = asyncio.create_task(consumer(rx), name="consumer")
        await asyncio.sleep(0.01)  # the consumer waits for a value
        done = asyncio.create_task(producer(tx), name="producer")
        del tx
        # The sender goes with the producer's frame while the consumer waits for it.
        with pytest.warns(ResourceWarning, match="garbage-collected without close"):
            await done
        del done
        snapshot = await until(console, lambda s: s.warnings_of("stuck"))
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
    (stuck,) = snapshot.warnings_of("stuck")
    assert stuck.task == "consumer"
    assert "recv on channel 'jobs'" in stuck.message
    assert "no sender is left" in stuck.message
    assert stuck.location == f"{HERE}:{line_of('the stuck consumer')}"


async def test_a_receiver_whose_only_sender_died_with_an_error_is_stuck_and_unretrieved() -> None:
    async with Console(stuck_threshold=0.2, unretrieved_after=0.1) as console:
        tx, rx = channel(4, name="jobs")

        async def producer(tx: Any) -> None:
            await tx.send(1)
            raise ValueError("bad reading")  # the producer's failure

        async def consumer(rx: Any) -> None:
            async for _ in rx:
                pass

        failed = asyncio.create_task(producer(tx), name="producer")
        waiting = asyncio.create_task(consumer(rx), name="consumer")
        del tx
        snapshot = await until(
            console,
            lambda s: s.warnings_of("stuck") and s.warnings_of("unretrieved_exception"),
        )
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        with pytest.raises(ValueError, match="bad reading"):
            await failed
        after = console.snapshot()
    (stuck,) = snapshot.warnings_of("stuck")
    assert stuck.task == "consumer"
    assert "finished task 'producer'" in stuck.message
    (unretrieved,) = snapshot.warnings_of("unretrieved_exception")
    assert unretrieved.task == "producer"
    assert "ValueError: bad reading" in unretrieved.message
    assert unretrieved.location == f"{HERE}:{line_of('the producer' + chr(39) + 's failure')}"
    assert not after.warnings_of("unretrieved_exception")  # retrieved now


async def test_a_task_holding_the_only_sender_while_waiting_for_the_receiver_is_a_deadlock() -> (
    None
):
    async with Console(stuck_threshold=0.2) as console:
        tx, rx = channel(4, name="results")

        async def consumer() -> None:
            async for _ in rx:
                pass

        async def main(tx: Any) -> None:
            await tx.send(1)
            await asyncio.create_task(consumer(), name="consumer")  # tx still open here

        outer = asyncio.create_task(main(tx), name="main")
        del tx
        snapshot = await until(console, lambda s: s.warnings_of("stuck"))
        outer.cancel()
        await asyncio.gather(outer, return_exceptions=True)
    (stuck,) = snapshot.warnings_of("stuck")
    assert stuck.task == "consumer"
    assert "task 'main', which is itself waiting for this task" in stuck.message


async def test_a_receiver_whose_sender_is_held_by_a_live_task_is_not_stuck() -> None:
    async with Console(stuck_threshold=0.1) as console:
        tx, rx = channel(4, name="slow")

        async def producer(tx: Any) -> None:
            await asyncio.sleep(1.0)  # will send, later
            await tx.send(1)
            tx.close()

        async def consumer() -> list[int]:
            return [value async for value in rx]

        sending = asyncio.create_task(producer(tx), name="producer")
        del tx
        receiving = asyncio.create_task(consumer(), name="consumer")
        await asyncio.sleep(0.5)
        assert not console.snapshot().warnings_of("stuck")
        assert await receiving == [1]
        await sending


async def test_a_failed_task_that_was_awaited_is_not_reported() -> None:
    async with Console(unretrieved_after=0.0) as console:

        async def fails() -> None:
            raise KeyError("x")

        task = asyncio.create_task(fails(), name="fails")
        with pytest.raises(KeyError):
            await task
        await asyncio.sleep(0.05)
        snapshot = console.snapshot()
    assert not snapshot.warnings_of("unretrieved_exception")
    assert snapshot.task("fails").waiting_on == "failed: KeyError: 'x'"


async def test_a_forgotten_failed_task_is_reported_when_asyncio_collects_it() -> None:
    loop = asyncio.get_running_loop()
    logged: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda loop, context: logged.append(context))
    async with Console(unretrieved_after=10.0) as console:

        async def fire_and_forget() -> None:
            raise RuntimeError("lost")

        asyncio.create_task(fire_and_forget(), name="forgotten")  # noqa: RUF006
        await asyncio.sleep(0.01)
        gc.collect()
        snapshot = console.snapshot()
    (warning,) = snapshot.warnings_of("unretrieved_exception")
    assert warning.task == "forgotten"
    assert "RuntimeError: lost" in warning.message
    assert [c["message"] for c in logged] == ["Task exception was never retrieved"]
    assert loop.get_exception_handler() is not None  # the previous handler is back


# --- the lifecycle ----------------------------------------------------------------------


async def test_stopping_gives_the_loop_back_as_it_was() -> None:
    loop = asyncio.get_running_loop()
    handler = loop.get_exception_handler()
    console = Console().start()
    assert "call_soon" in vars(loop)
    with pytest.raises(RuntimeError, match="already running"):
        console.start()
    with pytest.raises(RuntimeError, match="another Console"):
        Console().start()
    await asyncio.sleep(0)
    console.stop()
    console.stop()  # idempotent
    assert "call_soon" not in vars(loop)
    assert loop.get_exception_handler() is handler
    last = console.snapshot()  # the last one stays
    assert isinstance(last, ConsoleSnapshot)
    async with Console() as again:  # a new console on the same loop
        await asyncio.sleep(0)
        assert again.running
    assert not again.running


def test_start_outside_a_running_loop_says_where_to_call_it() -> None:
    with pytest.raises(RuntimeError, match="needs a running event loop"):
        Console().start()
    with pytest.raises(RuntimeError, match="has not been started"):
        Console().snapshot()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("blocked_threshold", 0),
        ("blocked_threshold", "fast"),
        ("stuck_threshold", -1),
        ("refresh_interval", 0.0),
        ("keep_done", -1),
        ("unretrieved_after", float("nan")),
    ],
)
def test_bad_settings_are_refused_with_the_field_name(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        Console(**{field: value})  # type: ignore[arg-type]


def test_the_console_runs_on_the_virtual_time_loop() -> None:
    from tests.support import vrun

    async def main() -> TaskRow:
        async with Console() as console:

            async def waits() -> None:
                await asyncio.sleep(100)

            task = asyncio.create_task(waits(), name="virtual")
            await asyncio.sleep(40)
            row = console.snapshot().task("virtual")
            task.cancel()
            return row

    row = vrun(main())
    assert row.state == "waiting"
    assert row.waiting_on == "sleep 100 s"


async def test_listeners_get_snapshots_from_the_console_thread() -> None:
    got: list[tuple[ConsoleSnapshot, str]] = []
    async with Console(refresh_interval=0.1) as console:
        console.add_listener(lambda s: got.append((s, threading.current_thread().name)))
        await asyncio.sleep(0.35)
    assert len(got) >= 3  # about one per 0.1 s, and the last one at stop()
    threads = [name for _, name in got]
    assert threads[:-1] == ["telemetry-lab-console"] * (len(got) - 1)
    assert threads[-1] == "MainThread"  # stop() shows the final snapshot


async def test_the_widget_shows_the_table_and_the_warnings() -> None:
    async with Console(refresh_interval=0.1) as console:

        async def blocker() -> None:
            time.sleep(0.1)

        await asyncio.create_task(blocker(), name="blocker")
        widget = console.widget
        await asyncio.sleep(0.3)
        view = console._view
        assert view is not None
        assert view.updates >= 1
        assert "blocker" in view.html.value
        assert "blocked_loop" in view.html.value
    html = render_html(console.snapshot(), stopped=True)
    assert "stopped" in html
    assert widget is console.widget


def test_the_console_reads_pure_python_tasks_too() -> None:
    """`nest_asyncio` swaps in asyncio's pure-Python tasks: the console sees them alike."""
    import asyncio.tasks

    async def main() -> TaskRow:
        loop = asyncio.get_running_loop()
        py_task = asyncio.tasks._PyTask  # type: ignore[attr-defined]
        loop.set_task_factory(lambda loop, coro, **kw: py_task(coro, loop=loop, **kw))
        async with Console() as console:

            async def waits() -> None:
                await asyncio.sleep(0.01)
                await asyncio.sleep(30)

            task = asyncio.create_task(waits(), name="python-task")
            await asyncio.sleep(0.1)
            row = console.snapshot().task("python-task")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return row

    row = asyncio.run(main())
    assert (row.state, row.steps, row.wakeups, row.waiting_on) == ("waiting", 2, 1, "sleep 30 s")


async def test_every_blocked_step_is_seen_live_even_while_listeners_refresh_fast() -> None:
    """Found: the thread waited for the loop to build the widget's snapshot and missed
    stalls that began meanwhile (their warnings lost the line)."""
    async with Console(refresh_interval=0.05) as console:
        console.add_listener(lambda snapshot: None)

        async def stage() -> None:
            for _ in range(8):
                time.sleep(0.12)  # blocks eight times
                await asyncio.sleep(0.03)

        await asyncio.create_task(stage(), name="blocky")
        warnings = console.snapshot().warnings_of("blocked_loop")
    assert len(warnings) == 1, [w.message for w in warnings]  # one place: every step seen live
    assert "8 times" in warnings[0].message
    assert warnings[0].location == f"{HERE}:{line_of('blocks eight times')}"


async def test_a_failure_inside_the_stdlib_is_placed_at_the_callers_line() -> None:
    import json

    async with Console(unretrieved_after=0.0) as console:

        async def parse() -> None:
            json.loads("{")  # the caller's line

        task = asyncio.create_task(parse(), name="parse")
        await asyncio.sleep(0.05)
        (warning,) = console.snapshot().warnings_of("unretrieved_exception")
        with pytest.raises(json.JSONDecodeError):
            await task
    assert warning.location == f"{HERE}:{line_of('the caller' + chr(39) + 's line')}"


@pytest.mark.async_timeout(30)
async def test_a_gateway_run_twice_shows_each_named_resource_once(tmp_path: Path) -> None:
    async with Console() as console:
        for run in range(2):
            config = GatewayConfig(db_path=tmp_path / f"{run}.db", duration=0.3)
            assert (await Gateway(config).run()).ok
        names = [row.name for row in console.snapshot().resources if row.name is not None]
    assert len(names) == len(set(names)), names
    assert "db" in names


async def test_debug_modes_slow_step_warning_still_names_the_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The step wrapper is bound to its task, as asyncio's own step is."""
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 0.05
    try:
        async with Console():

            async def sleepy() -> None:
                await asyncio.sleep(0)
                time.sleep(0.1)

            with caplog.at_level("WARNING", logger="asyncio"):
                await asyncio.create_task(sleepy(), name="sleepy-stage")
    finally:
        loop.set_debug(False)
    slow = [r.getMessage() for r in caplog.records if "took" in r.getMessage()]
    assert slow, caplog.records
    assert slow[0].startswith("Executing <Task finished name='sleepy-stage'")
