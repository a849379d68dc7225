"""`tools/matrix.py`: `make test` finds every CPython >= 3.11, and CI insists on 3.11-3.13."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MATRIX = ROOT / "tools" / "matrix.py"
VERSION = ".".join(map(str, sys.version_info[:3]))
MINOR = ".".join(map(str, sys.version_info[:2]))


def list_pythons(tmp_path: Path, *, ci: bool) -> subprocess.CompletedProcess[str]:
    """Run `matrix.py --list` where only the running interpreter can be found."""
    env = {
        "PATH": str(tmp_path),  # no python3.X commands, no pyenv
        "PYENV_ROOT": str(tmp_path / "no-pyenv"),
        "HOME": str(tmp_path),
        **({"CI": "true"} if ci else {}),
    }
    return subprocess.run(
        [sys.executable, str(MATRIX), "--list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_it_finds_the_running_interpreter(tmp_path: Path) -> None:
    done = list_pythons(tmp_path, ci=False)
    assert done.returncode == 0, done.stderr
    assert f"matrix: found CPython {VERSION} at " in done.stdout
    assert "testing what there is" in done.stderr  # the others are missing here


def test_under_ci_a_missing_required_version_fails(tmp_path: Path) -> None:
    done = list_pythons(tmp_path, ci=True)
    assert done.returncode == 2
    missing = sorted({"3.11", "3.12", "3.13"} - {MINOR})
    assert done.stderr == (
        f"matrix: CPython {', '.join(missing)} not found on this machine; CI must test "
        "3.11, 3.12, 3.13\n"
    )


def test_on_this_machine_it_finds_each_version_once() -> None:
    done = subprocess.run(
        [sys.executable, str(MATRIX), "--list"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "CI"},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    versions = [line.split()[3] for line in done.stdout.splitlines()]
    assert versions == sorted(set(versions), key=lambda v: tuple(map(int, v.split("."))))
    assert VERSION in versions
