"""Stress the ways a run is ended, with SQLite writes in flight: count crashes, hangs, tracebacks.

Every trial is a real process on a slow disk (`tests/slow_disk.py`: each batch write takes
0.3 s longer in its worker thread, so a write is in flight when the signal lands):

- double SIGINT: the CLI, SIGINT during a write, then a second SIGINT 0-0.2 s later;
  expected: exit 130, one "aborted" line on stderr, the partial report on stdout, the
  report's `stored` equal to the run's rows in the file;
- SIGTERM: the CLI, one SIGTERM during a write; expected: a graceful drain, exit 0, a clean
  report that matches the file;
- triple cancel: a gateway task cancelled three times during a write; expected: the
  `CancelledError` propagates after an abort, and the report matches the file.

A crash is a process killed by a signal (a segfault) or an unexpected exit status; a hang
is a process still running 60 s after the last signal; a traceback is "Traceback" on
stderr; "wrong" is any other broken expectation (no report, a report that disagrees with
the file). All four must be 0.

    python bench/stress_signals.py              # 50 trials of each kind
    python bench/stress_signals.py --trials 5   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SLOW_DISK = ROOT / "tests" / "slow_disk.py"
WRITE_SECONDS = 0.3
HANG_AFTER = 60.0
KINDS = ("double SIGINT", "SIGTERM", "triple cancel")


def rows_of(db: Path, run_id: int) -> int:
    with closing(sqlite3.connect(db)) as conn:
        query = "SELECT COUNT(*) FROM readings WHERE run_id = ?"
        return int(conn.execute(query, (run_id,)).fetchone()[0])


class Trial:
    """One child process, its stderr watched line by line."""

    def __init__(self, argv: list[str]) -> None:
        self.lines: list[str] = []
        self._seen = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, str(SLOW_DISK), *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env={**os.environ, "PYTHONIOENCODING": "utf-8"},
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.out: list[str] = []
        for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.lines)):
            threading.Thread(target=self._read, args=(stream, sink), daemon=True).start()

    def _read(self, stream: object, sink: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._seen:
                sink.append(line)
                self._seen.notify_all()

    def wait_for(self, prefix: str, timeout: float = 30.0) -> bool:
        with self._seen:
            return self._seen.wait_for(
                lambda: any(line.startswith(prefix) for line in self.lines), timeout
            )

    def finish(self) -> tuple[int | None, str, str]:
        """Wait for the exit (None: it hung, and was killed)."""
        try:
            code: int | None = self.proc.wait(timeout=HANG_AFTER)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = None
        time.sleep(0.05)  # let the readers take the last lines
        return code, "".join(self.out), "".join(self.lines)


def judge(code: int | None, expected: int, out: str, err: str, db: Path, ended_by: str) -> str:
    """Classify one finished trial: "ok", "crash", "hang", "traceback" or "wrong"."""
    if code is None:
        return "hang"
    if code < 0 or code != expected:
        return "crash"
    if "Traceback" in err:
        return "traceback"
    try:
        report = json.loads(out.splitlines()[-1])
        if "report" in report:  # the triple-cancel child wraps it
            if report["ended"] != "CancelledError":
                return "wrong"
            report = report["report"]
        good = (
            report["ended_by"] == ended_by
            and report["balanced"]
            and report["stored"] == rows_of(db, report["run_id"])
            and (ended_by != "stop" or report["ok"])
        )
    except (IndexError, KeyError, TypeError, ValueError):
        return "wrong"
    return "ok" if good else "wrong"


def double_sigint(db: Path, rng: random.Random) -> str:
    trial = Trial(["cli", str(WRITE_SECONDS), "--devices", "50", "--db", str(db), "--json"])
    if not trial.wait_for("💾 Writing batch"):  # no write within 30 s: the setup failed
        trial.proc.kill()
        trial.finish()
        return "wrong"
    trial.proc.send_signal(signal.SIGINT)
    trial.wait_for("🛑 SIGINT received")
    time.sleep(rng.uniform(0.0, 0.2))
    trial.proc.send_signal(signal.SIGINT)
    code, out, err = trial.finish()
    if code == 128 + signal.SIGINT:
        told = [line for line in err.splitlines() if line.startswith("telemetry-lab:")]
        if len(told) != 1:
            return "wrong"
    return judge(code, 128 + signal.SIGINT, out, err, db, "abort")


def sigterm(db: Path, rng: random.Random) -> str:
    trial = Trial(["cli", str(WRITE_SECONDS), "--devices", "50", "--db", str(db), "--json"])
    if not trial.wait_for("💾 Writing batch"):
        trial.proc.kill()
        trial.finish()
        return "wrong"
    time.sleep(rng.uniform(0.0, 0.2))
    trial.proc.send_signal(signal.SIGTERM)
    code, out, err = trial.finish()
    return judge(code, 0, out, err, db, "stop")


def triple_cancel(db: Path, rng: random.Random) -> str:
    trial = Trial(["cancel3", str(WRITE_SECONDS), str(db)])
    code, out, err = trial.finish()
    return judge(code, 0, out, err, db, "abort")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50, help="trials of each kind (50)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the signal timing")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    results: dict[str, Counter[str]] = {kind: Counter() for kind in KINDS}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.trials):
            for kind, trial in zip(KINDS, (double_sigint, sigterm, triple_cancel), strict=True):
                db = Path(tmp) / f"{kind.replace(' ', '-')}-{i}.db"
                results[kind][trial(db, rng)] += 1
            print(f"  {i + 1}/{args.trials} trials of each kind", file=sys.stderr, flush=True)
    print(f"Python {sys.version.split()[0]}, {args.trials} trials of each kind, "
          f"{time.monotonic() - started:.0f} s")  # fmt: skip
    print(f"{'trial':<15}{'ok':>5}{'crash':>7}{'hang':>6}{'traceback':>11}{'wrong':>7}")
    for kind, counts in results.items():
        print(
            f"{kind:<15}{counts['ok']:>5}{counts['crash']:>7}{counts['hang']:>6}"
            f"{counts['traceback']:>11}{counts['wrong']:>7}"
        )
    return 0 if all(counts["ok"] == args.trials for counts in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
