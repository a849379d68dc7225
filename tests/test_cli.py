"""Tests for `telemetry_lab.__main__`: the `telemetry-lab` command line.

In-process runs call `main(argv)` with `--fast` (virtual clock) and a `--db` under
`tmp_path`. A few tests start real processes: `python -m telemetry_lab`, the installed
`telemetry-lab` script, and one real-time run interrupted with SIGINT (Ctrl-C).
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from telemetry_lab import __main__ as cli
from telemetry_lab.__main__ import build_parser, main
from telemetry_lab.config import GatewayConfig
from telemetry_lab.models import ClientSummary, Report

# The Report fields DESIGN.md requires in the JSON output.
REQUIRED_FIELDS = {
    "produced",
    "stored",
    "rejected",
    "dead_lettered",
    "in_flight",
    "lost",
    "batches",
    "clients",
    "updates_delivered",
    "updates_lagged",
    "device_restarts",
    "tasks_started",
    "tasks_stopped_cleanly",
    "wall_seconds",
}

USAGE_PREFIX = "usage: telemetry-lab "


@pytest.fixture(autouse=True)
def _isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Run in `tmp_path` (a stray default `telemetry.db` lands there) and put the
    `telemetry_lab` logger back as it was, so `main` cannot change other tests' logging."""
    monkeypatch.chdir(tmp_path)
    logger = logging.getLogger("telemetry_lab")
    saved = (logger.level, logger.propagate, list(logger.handlers))
    yield
    logger.setLevel(saved[0])
    logger.propagate = saved[1]
    logger.handlers[:] = saved[2]


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Call `main(argv)`; return (exit status, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], db: Path, *argv: str) -> dict[str, Any]:
    """A quiet `--fast --json` run into `db`; return the parsed report."""
    code, out, err = run_main(capsys, "--fast", "--quiet", "--json", "--db", str(db), *argv)
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert isinstance(report, dict)
    return report


def count_rows(db: Path, run_id: int | None = None) -> int:
    """Rows in `readings`: of one run, or of every run in the file."""
    where, args = ("WHERE run_id = ?", (run_id,)) if run_id is not None else ("", ())
    with closing(sqlite3.connect(db)) as conn:
        (count,) = conn.execute(f"SELECT COUNT(*) FROM readings {where}", args).fetchone()
    assert isinstance(count, int)
    return count


def read_rows(db: Path, run_id: int = 1) -> list[tuple[Any, ...]]:
    query = (
        "SELECT device_id, seq, ts, temperature, humidity FROM readings WHERE run_id = ? "
        "ORDER BY device_id, seq"
    )
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(query, (run_id,)).fetchall()


def child_env() -> dict[str, str]:
    """The environment for a child process: ours, with UTF-8 standard streams."""
    return {**os.environ, "PYTHONIOENCODING": "utf-8"}


def default_sigint() -> None:
    """Give the child the default SIGINT disposition (as in a terminal), even when this
    process was started with SIGINT ignored (a background job), which a child inherits."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def table_value(out: str, name: str) -> str:
    """The value column of the summary-table row called `name`."""
    match = re.search(rf"^  {re.escape(name)} +(\S.*)$", out, flags=re.MULTILINE)
    assert match is not None, f"no row {name!r} in:\n{out}"
    return match.group(1)


# --------------------------------------------------------------------------- the parser


def test_the_parser_defaults_come_from_the_config() -> None:
    args = build_parser().parse_args([])
    defaults = GatewayConfig()
    assert args.duration == defaults.duration == 10.0
    assert args.devices == defaults.devices == 7
    assert args.clients == defaults.clients == 4
    assert args.seed == defaults.seed == 42
    assert args.db == defaults.db_path == Path("telemetry.db")
    assert (args.fast, args.json, args.quiet) == (False, False, False)


def test_help_lists_every_flag_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc_info:
        main(["--help"])
    assert exc_info.value.code == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith(USAGE_PREFIX)
    for flag in ["--duration", "--devices", "--clients", "--seed", "--db", "--fast", "--json"]:
        assert flag in out
    assert "--quiet" in out
    assert "(default 10.0)" in out
    assert "(default 7)" in out


# --------------------------------------------------------------------------- summary table


def test_a_default_fast_quiet_run_prints_the_summary_table(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = tmp_path / "default.db"
    code, out, err = run_main(capsys, "--fast", "--quiet", "--db", str(db))
    assert code == 0
    assert err == ""
    lines = out.splitlines()
    assert lines[:2] == ["", "📈 Summary"]
    assert lines[-1] == "  ✅ Zero data loss: every reading was stored, rejected or dead-lettered"
    assert table_value(out, "Run") == "1 (ended by duration)"
    squeezed = [" ".join(line.split()) for line in lines]  # column width is not the point
    for expected in (
        "Tasks stopped cleanly 13 of 13",
        "In flight at stop 0",
        "Lost 0",
        "Rejected / dead-lettered 0 / 0",
        "Clients served 4",
        "Device restarts 0",
        "Storage retries 0",
        "Devices blocked (backpressure) 0.00 s",
        "Clean shutdown yes",
        f"Database {db}",
    ):
        assert expected in squeezed, expected
    produced = int(table_value(out, "Readings produced"))
    stored_row = re.fullmatch(r"(\d+) in (\d+) batches", table_value(out, "Readings stored"))
    assert stored_row is not None
    stored, batches = int(stored_row.group(1)), int(stored_row.group(2))
    assert produced == stored == count_rows(db)
    assert produced > 0
    assert stored <= 10 * batches  # batch_size 10
    assert table_value(out, "Updates delivered / lagged") == f"{4 * produced} / 0"
    assert re.fullmatch(r"10\.00 s loop clock, \d+\.\d\d s wall", table_value(out, "Run time")), (
        table_value(out, "Run time")
    )
    assert not (tmp_path / "telemetry.db").exists()


def test_the_table_run_logs_on_stderr_without_quiet(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run_main(capsys, "--fast", "--db", str(tmp_path / "t.db"))
    assert code == 0
    assert err.startswith("🚀 Starting Telemetry Gateway\n")
    assert "📱 Device" not in out
    assert out.splitlines()[1] == "📈 Summary"


# --------------------------------------------------------------------------- --json


def test_json_prints_exactly_one_object_and_logs_go_to_stderr(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = tmp_path / "json.db"
    code, out, err = run_main(capsys, "--fast", "--json", "--db", str(db))
    assert code == 0
    assert out.endswith("\n")
    assert out.count("\n") == 1
    report = json.loads(out)
    assert isinstance(report, dict)
    assert report.keys() >= REQUIRED_FIELDS
    for name in REQUIRED_FIELDS - {"wall_seconds"}:
        assert type(report[name]) is int, name
    assert type(report["wall_seconds"]) is float
    assert report["ok"] is True
    assert report["clean_shutdown"] is True
    assert report["db_path"] == str(db)
    assert (report["lost"], report["in_flight"]) == (0, 0)
    assert report["produced"] == report["stored"] == count_rows(db)
    assert (report["tasks_started"], report["tasks_stopped_cleanly"]) == (13, 13)
    for emoji in ["🚀", "📱", "🔄", "📡", "👤", "💾", "🛑"]:
        assert emoji not in out
    err_lines = err.splitlines()
    assert err_lines[0] == "🚀 Starting Telemetry Gateway"
    device_lines = [line for line in err_lines if line.startswith("📱 Device ")]
    batch_lines = [line for line in err_lines if line.startswith("💾 Writing batch ")]
    assert len(device_lines) == report["produced"]
    assert len(batch_lines) == report["batches"]
    device_line = r"📱 Device [1-7] sent: temp=-?\d+\.\d°C, humidity=\d+\.\d%"
    for line in device_lines:
        assert re.fullmatch(device_line, line), line
    assert "{" not in err


def test_json_with_quiet_leaves_stderr_empty(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    report = run_json(capsys, tmp_path / "q.db")
    assert report["ok"] is True
    assert (report["devices"], report["clients"], report["seed"]) == (7, 4, 42)
    assert report["loop_seconds"] == 10.0


# --------------------------------------------------------------------------- flags


def test_devices_clients_duration_seed_and_db_are_honoured(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = tmp_path / "flags.db"
    report = run_json(
        capsys, db, "--devices", "3", "--clients", "2", "--duration", "5", "--seed", "7"
    )
    assert (report["devices"], report["clients"], report["seed"]) == (3, 2, 7)
    # 3 devices + aggregator + storage + 2 clients
    assert (report["tasks_started"], report["tasks_stopped_cleanly"]) == (7, 7)
    assert len(report["client_summaries"]) == 2
    assert report["loop_seconds"] == 5.0
    assert report["db_path"] == str(db)
    assert report["stored"] == count_rows(db)
    assert report["stored"] > 0
    assert {row[0] for row in read_rows(db)} <= {1, 2, 3}
    assert report["updates_delivered"] == 2 * report["produced"]
    assert not (tmp_path / "telemetry.db").exists()


def test_clients_zero_is_allowed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    report = run_json(capsys, tmp_path / "c0.db", "--clients", "0", "--duration", "3")
    assert report["clients"] == 0
    assert report["client_summaries"] == []
    assert report["updates_delivered"] == 0
    assert (report["tasks_started"], report["tasks_stopped_cleanly"]) == (9, 9)
    assert report["ok"] is True


def test_each_run_adds_its_rows_under_a_new_run_id_and_deletes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = tmp_path / "reused.db"
    first = run_json(capsys, db, "--duration", "10")
    second = run_json(capsys, db, "--duration", "2")
    assert (first["run_id"], second["run_id"]) == (1, 2)
    assert second["stored"] < first["stored"]
    assert count_rows(db, 1) == first["stored"]
    assert count_rows(db, 2) == second["stored"]
    assert count_rows(db) == first["stored"] + second["stored"]
    with closing(sqlite3.connect(db)) as conn:
        runs = conn.execute("SELECT run_id, config, report FROM runs ORDER BY run_id").fetchall()
    assert [run_id for run_id, _, _ in runs] == [1, 2]
    assert [json.loads(config)["duration"] for _, config, _ in runs] == [10.0, 2.0]
    assert json.loads(runs[1][2])["stored"] == second["stored"]


def test_the_same_seed_gives_the_same_report_and_rows(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = tmp_path / "same.db"
    first = run_json(capsys, db, "--seed", "123")
    first_rows = read_rows(db, 1)
    second = run_json(capsys, db, "--seed", "123")
    second_rows = read_rows(db, 2)
    assert (first.pop("run_id"), second.pop("run_id")) == (1, 2)
    del first["wall_seconds"], second["wall_seconds"]
    assert first == second
    assert first_rows == second_rows
    assert len(first_rows) == first["stored"]


def test_different_seeds_give_different_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    one = run_json(capsys, tmp_path / "one.db", "--seed", "1")
    two = run_json(capsys, tmp_path / "two.db", "--seed", "2")
    one_rows, two_rows = read_rows(tmp_path / "one.db"), read_rows(tmp_path / "two.db")
    assert (one["produced"], one_rows) != (two["produced"], two_rows)
    assert one_rows != two_rows


# --------------------------------------------------------------------------- bad arguments


BAD_ARGUMENTS: list[tuple[list[str], str]] = [
    (["--devices", "0"], "devices must be in [1, 1000], got 0"),
    (["--devices", "1001"], "devices must be in [1, 1000], got 1001"),
    (["--devices", "1.5"], "argument --devices: invalid int value: '1.5'"),
    (["--devices"], "argument --devices: expected one argument"),
    (["--duration", "-1"], "duration must be in (0, 86400], got -1.0"),
    (["--duration", "0"], "duration must be in (0, 86400], got 0.0"),
    (["--duration", "nan"], "duration must be a finite number in (0, 86400], got nan"),
    (["--duration", "abc"], "argument --duration: invalid float value: 'abc'"),
    (["--clients", "abc"], "argument --clients: invalid int value: 'abc'"),
    (["--clients", "-1"], "clients must be in [0, 1000], got -1"),
    (["--devices", "10000", "--clients", "10000"], "devices must be in [1, 1000], got 10000"),
    (["--duration", "1e400"], "duration must be a finite number in (0, 86400], got inf"),
    (["--seed", "-5"], "seed must be in [0, 9223372036854775807], got -5"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["extra"], "unrecognized arguments: extra"),
    (
        ["--db", ":memory:"],
        f"db_path must be a file path (str or Path), got {Path(':memory:')!r}",
    ),
]


@pytest.mark.parametrize(
    ("argv", "message"), BAD_ARGUMENTS, ids=[" ".join(argv) for argv, _ in BAD_ARGUMENTS]
)
def test_bad_arguments_exit_2_naming_the_problem(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], message: str
) -> None:
    db = tmp_path / "never.db"
    with pytest.raises(SystemExit) as exc_info:
        main(["--fast", "--db", str(db), *argv])
    assert exc_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(USAGE_PREFIX)
    assert err.endswith(f"\ntelemetry-lab: error: {message}\n")
    assert not db.exists()
    assert not (tmp_path / "telemetry.db").exists()


def test_a_db_in_a_missing_directory_returns_2_before_starting(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = tmp_path / "missing" / "t.db"
    code, out, err = run_main(capsys, "--fast", "--db", str(db))
    assert code == 2
    assert out == ""
    assert err == (
        f"telemetry-lab: error: db_path {str(db)!r} cannot be used: the directory "
        f"{str(db.parent)!r} does not exist\n"
    )
    assert not db.parent.exists()


def test_a_db_that_is_a_directory_returns_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run_main(capsys, "--fast", "--quiet", "--json", "--db", str(tmp_path))
    assert code == 2
    assert out == ""
    assert re.fullmatch(
        rf"telemetry-lab: error: db_path {re.escape(repr(str(tmp_path)))} cannot be used: .+\n",
        err,
    ), err


def test_a_run_too_big_for_the_virtual_clock_exits_2_before_starting(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Found: `--devices 10000 --clients 10000 --fast` did not finish in 600 s."""
    db = tmp_path / "big.db"
    argv = ["--fast", "--devices", "1000", "--clients", "1000", "--duration", "600"]
    code, out, err = run_main(capsys, *argv, "--db", str(db))
    assert (code, out) == (2, "")
    assert err.startswith("telemetry-lab: error: this config asks for about ")
    assert "the limit is 25,000,000" in err
    assert not db.exists()


# --------------------------------------------------------------------------- exit status


def fake_report(config: GatewayConfig, **changes: Any) -> Report:
    fields: dict[str, Any] = {
        "run_id": 1,
        "devices": config.devices,
        "clients": config.clients,
        "seed": config.seed,
        "db_path": str(config.db_path),
        "produced": 10,
        "stored": 10,
        "rejected": 0,
        "dead_lettered": 0,
        "unwritable": 0,
        "in_flight": 0,
        "lost": 0,
        "balanced": True,
        "batches": 1,
        "updates_sent": 10,
        "updates_delivered": 10 * config.clients,
        "updates_lagged": 0,
        "client_summaries": tuple(
            ClientSummary(client_id=i, received=10, lagged=0) for i in range(1, config.clients + 1)
        ),
        "rejected_reasons": (),
        "device_restarts": 0,
        "storage_retries": 0,
        "device_blocked_seconds": 0.0,
        "tasks_started": config.devices + 2 + config.clients,
        "tasks_stopped_cleanly": config.devices + 2 + config.clients,
        "clean_shutdown": True,
        "ended_by": "duration",
        "errors": (),
        "loop_seconds": config.duration,
        "wall_seconds": 0.5,
    }
    fields.update(changes)
    return Report(**fields)


@pytest.mark.parametrize(
    ("changes", "code", "last_line"),
    [
        ({}, 0, "  ✅ Zero data loss: every reading was stored, rejected or dead-lettered"),
        (
            {"stored": 8, "lost": 2, "balanced": False},
            1,
            "  ❌ The ledger does not balance: 2 readings unaccounted for",
        ),
        (
            {"stored": 7, "in_flight": 3, "lost": 3, "clean_shutdown": False},
            1,
            "  ❌ The drain did not finish in time: 3 readings were still in flight (raise "
            "shutdown_timeout, or make storage faster)",
        ),
        (
            {"clean_shutdown": False, "tasks_stopped_cleanly": 12},
            1,
            "  ⚠️ Every reading is accounted for, but the drain did not finish in time: 1 "
            "tasks were cancelled",
        ),
        (
            {"unwritable": 10, "stored": 0, "lost": 10, "errors": ("storage failed: x",)},
            1,
            "  ❌ storage failed: x",
        ),
    ],
    ids=["clean", "lost", "in-flight", "drain-timed-out", "storage-failed"],
)
def test_the_exit_status_is_1_when_the_run_is_not_clean(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    changes: dict[str, Any],
    code: int,
    last_line: str,
) -> None:
    calls: list[tuple[GatewayConfig, bool]] = []

    def fake_run(config: GatewayConfig, *, virtual_time: bool = False) -> tuple[Report, None]:
        calls.append((config, virtual_time))
        return fake_report(config, **changes), None

    monkeypatch.setattr(cli, "run_until_signalled", fake_run)
    db = tmp_path / "fake.db"
    status, out, err = run_main(capsys, "--db", str(db), "--quiet")
    assert (status, err) == (code, "")
    verdicts = [line for line in out.splitlines() if line.startswith("  ") and line[2] in "✅❌⚠"]
    assert verdicts[0] == last_line
    assert calls == [(GatewayConfig(db_path=db), False)]


def test_fast_runs_on_the_virtual_clock_and_flags_reach_the_config(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[tuple[GatewayConfig, bool]] = []

    def fake_run(config: GatewayConfig, *, virtual_time: bool = False) -> tuple[Report, None]:
        calls.append((config, virtual_time))
        return fake_report(config), None

    monkeypatch.setattr(cli, "run_until_signalled", fake_run)
    db = tmp_path / "f.db"
    argv = ["--fast", "--duration", "2.5", "--devices", "2", "--clients", "1", "--seed", "9"]
    code, _, _ = run_main(capsys, *argv, "--db", str(db), "--json")
    assert code == 0
    expected = GatewayConfig(duration=2.5, devices=2, clients=1, seed=9, db_path=db)
    assert calls == [(expected, True)]


# --------------------------------------------------------------------------- logging state


def test_main_leaves_the_logging_configuration_as_it_found_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`main` is an importable function: after it returns, the `telemetry_lab` logger must
    propagate again at its old level, or later `caplog` users see nothing."""
    logger = logging.getLogger("telemetry_lab")
    before = (logger.level, logger.propagate, list(logger.handlers))
    run_json(capsys, tmp_path / "log.db")
    assert (logger.level, logger.propagate, list(logger.handlers)) == before


# --------------------------------------------------------------------------- real processes


def check_subprocess_json(result: subprocess.CompletedProcess[str], db: Path) -> None:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    report = json.loads(result.stdout)
    assert report.keys() >= REQUIRED_FIELDS
    assert report["ok"] is True
    assert report["db_path"] == str(db)
    assert report["stored"] == count_rows(db) > 0
    assert (report["tasks_started"], report["tasks_stopped_cleanly"]) == (13, 13)


def test_python_dash_m_runs_the_cli(tmp_path: Path) -> None:
    db = tmp_path / "dash_m.db"
    result = subprocess.run(
        [sys.executable, "-m", "telemetry_lab", "--fast", "--quiet", "--json", "--db", str(db)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=tmp_path,
        env=child_env(),
        timeout=60,
        check=False,
    )
    check_subprocess_json(result, db)


def test_the_console_script_is_installed_and_runs(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "telemetry-lab"
    assert script.is_file()
    assert os.access(script, os.X_OK)
    db = tmp_path / "script.db"
    result = subprocess.run(
        [str(script), "--fast", "--quiet", "--json", "--db", str(db)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=tmp_path,
        env=child_env(),
        timeout=60,
        check=False,
    )
    check_subprocess_json(result, db)


SLOW_DISK = Path(__file__).with_name("slow_disk.py")


class Child:
    """A real `telemetry-lab` process, its stderr read line by line as it comes.

    With `write_seconds`, it runs on a slow disk (`tests/slow_disk.py`): every batch write
    takes that much longer in its worker thread, so a signal can land while one is in flight.
    `close` names standard streams to close at once, as a reader that went away would.
    """

    def __init__(
        self,
        tmp_path: Path,
        *argv: str,
        write_seconds: float | None = None,
        close: tuple[str, ...] = (),
    ) -> None:
        if write_seconds is None:
            command = [sys.executable, "-m", "telemetry_lab", *argv]
        else:
            command = [sys.executable, str(SLOW_DISK), "cli", str(write_seconds), *argv]
        self.lines: list[str] = []
        self.out: list[str] = []
        self._seen = threading.Condition()
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            cwd=tmp_path,
            env=child_env(),
            preexec_fn=default_sigint,
        )
        self._readers: list[threading.Thread] = []
        for name, stream, sink in (
            ("stdout", self.proc.stdout, self.out),
            ("stderr", self.proc.stderr, self.lines),
        ):
            assert stream is not None
            if name in close:
                stream.close()
                continue
            reader = threading.Thread(target=self._read, args=(stream, sink), daemon=True)
            reader.start()
            self._readers.append(reader)

    def _read(self, stream: Any, sink: list[str]) -> None:
        for line in stream:
            with self._seen:
                sink.append(line)
                self._seen.notify_all()
        stream.close()

    def wait_for(self, prefix: str, timeout: float = 30.0) -> None:
        """Wait until a stderr line starts with `prefix`."""
        with self._seen:
            found = self._seen.wait_for(
                lambda: any(line.startswith(prefix) for line in self.lines), timeout
            )
        assert found, f"no line {prefix!r} on stderr: {''.join(self.lines)}"

    def send(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    def finish(self, timeout: float = 30.0) -> tuple[int, str, str]:
        """Wait for the exit; return (status, stdout, stderr)."""
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for reader in self._readers:
                reader.join(timeout=10)
        return self.proc.returncode, "".join(self.out), "".join(self.lines)


def check_no_crash(code: int, err: str) -> None:
    assert code >= 0, f"killed by signal {-code}: {err}"
    for sign in ("Traceback", "KeyboardInterrupt", "Exception ignored", "Error:"):
        assert sign not in err, err


@pytest.mark.timeout(60)
def test_ctrl_c_drains_and_still_reports(tmp_path: Path) -> None:
    """A real-time run interrupted after its first reading exits 0 with a clean report."""
    db = tmp_path / "ctrl_c.db"
    child = Child(tmp_path, "--db", str(db), "--duration", "30", "--json")
    child.wait_for("📱 Device ")
    child.send(signal.SIGINT)
    code, out, err = child.finish()
    check_no_crash(code, err)
    assert code == 0, err
    assert "🛑 SIGINT received: draining gracefully (send it again to abort)\n" in err
    report = json.loads(out)
    assert report["clean_shutdown"] is True
    assert (report["lost"], report["in_flight"]) == (0, 0)
    assert report["ok"] is True
    assert report["produced"] >= 1
    assert report["stored"] == report["produced"] == count_rows(db)
    assert (report["tasks_started"], report["tasks_stopped_cleanly"]) == (13, 13)
    assert report["loop_seconds"] < 30
    assert report["ended_by"] == "stop"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_sigterm_and_sighup_drain_with_a_write_in_flight_and_report(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """Found: `docker stop` (SIGTERM) and a closed terminal (SIGHUP) killed the CLI at once:
    the partial batch and every buffered reading vanished, uncounted."""
    db = tmp_path / "term.db"
    child = Child(tmp_path, "--db", str(db), "--duration", "30", "--json", write_seconds=0.5)
    child.wait_for("💾 Writing batch 1 ")
    child.send(signum)
    code, out, err = child.finish()
    check_no_crash(code, err)
    assert code == 0, err
    assert f"🛑 {signum.name} received: draining gracefully (send it again to abort)\n" in err
    report = json.loads(out)
    assert (report["ok"], report["ended_by"], report["lost"]) == (True, "stop", 0)
    assert report["stored"] == report["produced"] == count_rows(db, report["run_id"]) > 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name
)
def test_a_second_signal_aborts_at_once_with_one_line_the_partial_report_and_128_plus_signum(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """Found: Ctrl-C twice gave tracebacks with no report, hangs and a segfault."""
    db = tmp_path / "abort.db"
    child = Child(tmp_path, "--db", str(db), "--duration", "30", "--json", write_seconds=1.0)
    child.wait_for("💾 Writing batch 1 ")  # a write is in flight for a second
    child.send(signum)
    child.wait_for(f"🛑 {signum.name} received")
    child.send(signum)
    code, out, err = child.finish()
    check_no_crash(code, err)
    assert code == 128 + signum
    told = [line for line in err.splitlines() if line.startswith("telemetry-lab:")]
    assert told == [
        f"telemetry-lab: aborted by a second {signum.name}: the run was not drained; the "
        "partial report follows"
    ]
    report = json.loads(out)
    assert report["ended_by"] == "abort"
    assert report["clean_shutdown"] is False
    assert report["balanced"] is True
    assert report["stored"] == count_rows(db, report["run_id"])  # the write in flight finished


@pytest.mark.timeout(60)
def test_a_closed_stdout_ends_the_output_quietly(tmp_path: Path) -> None:
    """Found: `telemetry-lab | head` gave a BrokenPipeError traceback and exit status 1."""
    db = tmp_path / "pipe.db"
    child = Child(tmp_path, "--fast", "--db", str(db), "--duration", "200", close=("stdout",))
    code, _, err = child.finish(timeout=60)
    check_no_crash(code, err)
    assert "BrokenPipe" not in err
    assert code == 0  # the run itself was clean
    assert count_rows(db) > 0


@pytest.mark.timeout(60)
def test_a_closed_stderr_does_not_break_the_run(tmp_path: Path) -> None:
    """A closed terminal takes stderr with it: the log stops, the run and its status do not."""
    db = tmp_path / "quiet.db"
    child = Child(
        tmp_path, "--fast", "--json", "--db", str(db), "--duration", "200", close=("stderr",)
    )
    code, out, _ = child.finish(timeout=60)
    assert code == 0
    assert json.loads(out)["ok"] is True


# --------------------------------------------------------------------------- --console


def test_console_prints_the_task_table_on_stderr_and_keeps_stdout_json(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run_main(
        capsys, "--fast", "--quiet", "--json", "--console", "--db", str(tmp_path / "c.db")
    )
    assert code == 0
    assert json.loads(out)["ok"] is True  # stdout is still one JSON object
    assert "asyncio console, at the end of the run:" in err
    final = err.split("asyncio console, at the end of the run:")[1]
    for text in ("TASKS", "done", "returned", "RESOURCES", "watch 'stop'"):
        assert text in final, text
    assert "0 warnings" in final


def test_console_in_real_time_prints_every_second_and_at_the_end(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run_main(
        capsys, "--quiet", "--console", "--duration", "1.5", "--db", str(tmp_path / "c.db")
    )
    assert code == 0
    assert err.count("asyncio console: ") >= 2, err  # once a second, and the final table
    assert "waiting" in err
    assert "--console" in build_parser().format_help()
