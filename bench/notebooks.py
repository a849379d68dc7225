"""Time the whole notebook suite under nbval, as CI runs it (target: <= 90 s).

    python bench/notebooks.py

Runs `pytest notebooks` (nbval, `TELEMETRY_LAB_FAST=1` from conftest.py) in a subprocess
and prints the wall time of the suite and of each notebook.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "notebooks",
            "-q",
            "--durations=0",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    per_notebook: dict[str, float] = {}
    for line in done.stdout.splitlines():
        match = re.match(r"^([\d.]+)s \w+\s+notebooks/(\S+?\.ipynb)::", line)
        if match:
            name = match.group(2)
            per_notebook[name] = per_notebook.get(name, 0.0) + float(match.group(1))
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    print(f"notebook suite: {summary}")
    for name, seconds in sorted(per_notebook.items()):
        print(f"   {name:<40} {seconds:5.1f} s in cells")
    print(f"   wall time of the whole suite: {wall:.1f} s   (target <= 90 s)")
    sys.exit(done.returncode)


if __name__ == "__main__":
    main()
