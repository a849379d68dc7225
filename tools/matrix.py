"""Run the pytest suite on every CPython >= 3.11 on this machine, each in its own venv.

`make test` calls this after lint and type checks. It looks for interpreters in the usual
places (the `python3.X` commands on PATH, pyenv's versions, and the Python running this
script), keeps one per exact version, gives each a virtual environment under `.venvs/`
(the version that `.venv` already has uses `.venv`), installs the project there when
`pyproject.toml` changed, runs pytest, and prints one line per version with its time.

    python tools/matrix.py              # every interpreter found
    python tools/matrix.py --list       # only show what was found
    python tools/matrix.py -- -x tests  # arguments after -- go to pytest

With `CI=true` in the environment a missing 3.11, 3.12 or 3.13 is an error: CI must test
the versions the workshop promises (Binder's newest 3.12 behaves like 3.13).
It exits non-zero if any version fails.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIRED_IN_CI = ("3.11", "3.12", "3.13")
MINIMUM = (3, 11)
PROBE = (
    "import platform, sys; "
    "print(platform.python_implementation(), '%d.%d.%d' % sys.version_info[:3], sys.executable)"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Interpreter:
    """One CPython found on the machine."""

    version: str
    """Its exact version, e.g. "3.12.1"."""
    executable: Path
    """The interpreter's own path (as `sys.executable` reports it)."""

    @property
    def minor(self) -> str:
        """The "3.12" part of the version."""
        return ".".join(self.version.split(".")[:2])


def candidates() -> list[str]:
    """Return paths and command names that may be Python interpreters."""
    found = [sys.executable, "python3"]
    found += [f"python3.{minor}" for minor in range(MINIMUM[1], 20)]
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    if shutil.which("pyenv"):
        result = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=False)
        if result.returncode == 0 and result.stdout.strip():
            pyenv_root = result.stdout.strip()
    found += sorted(glob.glob(os.path.join(pyenv_root, "versions", "*", "bin", "python3")))
    return found


def probe(candidate: str) -> Interpreter | None:
    """Return the interpreter behind `candidate` if it is a CPython >= 3.11."""
    path = shutil.which(candidate) if os.sep not in candidate else candidate
    if path is None or not os.access(path, os.X_OK):
        return None
    try:
        result = subprocess.run(
            [path, "-c", PROBE], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    implementation, version, executable = result.stdout.split(maxsplit=2)
    numbers = tuple(int(part) for part in version.split("."))
    if implementation != "CPython" or numbers[:2] < MINIMUM:
        return None
    return Interpreter(version=version, executable=Path(executable.strip()))


def discover() -> list[Interpreter]:
    """Return one interpreter per exact CPython version found, oldest first."""
    by_version: dict[str, Interpreter] = {}
    for candidate in candidates():
        interpreter = probe(candidate)
        if interpreter is not None:
            by_version.setdefault(interpreter.version, interpreter)
    return sorted(by_version.values(), key=lambda i: tuple(int(p) for p in i.version.split(".")))


def venv_python(venv: Path) -> Path:
    """Return the interpreter inside `venv`."""
    return venv / "bin" / "python"


def venv_for(interpreter: Interpreter) -> Path:
    """Return the venv that runs the tests for `interpreter` (`.venv` if it matches)."""
    main = ROOT / ".venv"
    python = venv_python(main)
    if python.exists():
        result = subprocess.run(
            [str(python), "-c", PROBE], capture_output=True, text=True, check=False
        )
        if result.returncode == 0 and result.stdout.split()[1] == interpreter.version:
            return main
    return ROOT / ".venvs" / interpreter.version


def ensure_installed(interpreter: Interpreter, venv: Path) -> None:
    """Create `venv` and install the project with its test extra, if pyproject changed."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    stamp = venv / ".installed-matrix"
    if stamp.exists() and stamp.read_text() == digest and venv_python(venv).exists():
        return
    print(f"matrix: installing telemetry_lab[test] into {venv.relative_to(ROOT)}", flush=True)
    if not venv_python(venv).exists():
        subprocess.run([str(interpreter.executable), "-m", "venv", str(venv)], check=True)
    pip = [str(venv_python(venv)), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[test]"], check=True, cwd=ROOT)
    stamp.write_text(digest)


def main(argv: list[str] | None = None) -> int:
    """Run the matrix; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="show the interpreters and stop")
    parser.add_argument("pytest_args", nargs="*", help="arguments for pytest (after --)")
    args = parser.parse_args(argv)
    interpreters = discover()
    for interpreter in interpreters:
        print(f"matrix: found CPython {interpreter.version} at {interpreter.executable}")
    found = {i.minor for i in interpreters}
    missing = [minor for minor in REQUIRED_IN_CI if minor not in found]
    if missing:
        message = f"matrix: CPython {', '.join(missing)} not found on this machine"
        if os.environ.get("CI", "").lower() == "true":
            print(f"{message}; CI must test {', '.join(REQUIRED_IN_CI)}", file=sys.stderr)
            return 2
        print(f"{message}; testing what there is", file=sys.stderr)
    if not interpreters:
        print("matrix: no CPython >= 3.11 found", file=sys.stderr)
        return 2
    if args.list:
        return 0
    results: list[tuple[str, int, float]] = []
    for interpreter in interpreters:
        venv = venv_for(interpreter)
        if venv != ROOT / ".venv":  # make keeps .venv itself up to date
            ensure_installed(interpreter, venv)
        print(f"\nmatrix: pytest on CPython {interpreter.version} ({venv.name})", flush=True)
        started = time.monotonic()
        status = subprocess.call([str(venv / "bin" / "pytest"), *args.pytest_args], cwd=ROOT)
        results.append((interpreter.version, status, time.monotonic() - started))
    print("\nmatrix: summary")
    for version, status, seconds in results:
        verdict = "passed" if status == 0 else f"FAILED (pytest exit {status})"
        print(f"  CPython {version:<8} {verdict:<24} {seconds:6.1f} s")
    return 0 if all(status == 0 for _, status, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
