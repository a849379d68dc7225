"""Copy the workshop notebooks out of the package: `telemetry-lab workshop [DIR]`.

Someone who installed only the package (a wheel, no clone of the repository) starts the
workshop with two commands:

    telemetry-lab workshop            # copies the notebooks into ./telemetry-lab-workshop
    cd telemetry-lab-workshop && python -m jupyter lab 00_start_here.ipynb

(`telemetry-lab workshop --open` does both.) `copy_workshop` never overwrites a file the
user changed. It keeps a small manifest in DIR (`.telemetry-lab-workshop.json`, the sha256
of every notebook it wrote), so a later run can tell the two kinds of difference apart:
a notebook that still matches what an older version of the package wrote is the user's
untouched copy, and it is updated; one that matches neither is the user's work, and it is
kept (and named, one line each).

How the notebooks get into the package. `notebooks/*.ipynb` at the top of the repository
is their only copy in git (nbval tests it there, `make lab` opens it there). The package
subpackage holds a relative symlink to it, `telemetry_lab/workshop/notebooks ->
../../notebooks`, and `[tool.setuptools.package-data]` lists `notebooks/*.ipynb` for it, so:

- `pip install .` and `pip wheel .`: setuptools' `build_py` reads through the link and puts
  real files in the wheel, under `telemetry_lab/workshop/notebooks/`;
- the sdist holds real files in both places (tar follows the link), so a wheel built from
  the sdist has them too, and the sdist's own tests still find `notebooks/`;
- `pip install -e .`: the package is the source directory, and `importlib.resources` reads
  through the same link, so the command copies exactly what nbval tests.

The alternatives were worse: `package-data` cannot reach outside the package directory;
`[tool.setuptools.data-files]` installs under `sys.prefix`, where `importlib.resources`
cannot find it; a custom build step (`[tool.setuptools.cmdclass]`) must ship its own code in
the sdist and still finds nothing in an editable install; a second committed copy drifts.
The price of the link: a git checkout made without symlink support (Windows with
`core.symlinks=false`) has a small text file there instead, and the command then says the
notebooks are missing instead of copying anything.

This module imports only the standard library: copying the notebooks needs neither
Jupyter nor the dashboard's plotting libraries.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

__all__ = [
    "DEFAULT_DIR",
    "FIRST_NOTEBOOK",
    "MANIFEST_NAME",
    "CopyResult",
    "build_parser",
    "copy_workshop",
    "main",
    "open_command",
    "shipped_notebooks",
]

DEFAULT_DIR = Path("telemetry-lab-workshop")
"""Where `telemetry-lab workshop` copies the notebooks when no DIR is given."""
FIRST_NOTEBOOK = "00_start_here.ipynb"
"""The notebook the workshop opens on."""
MANIFEST_NAME = ".telemetry-lab-workshop.json"
"""The file in DIR that records the sha256 of every notebook `copy_workshop` wrote."""

EXIT_OK, EXIT_USAGE = 0, 2


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyResult:
    """What `copy_workshop` did with each shipped notebook (file names, sorted).

    Every shipped notebook is in exactly one of the four tuples. It is not a list of DIR's
    contents: files the package does not ship are never looked at.
    """

    dest: Path
    """The directory the notebooks are in."""
    copied: tuple[str, ...] = ()
    """New in DIR: there was no file of that name."""
    updated: tuple[str, ...] = ()
    """Replaced by the shipped version: DIR held what an earlier run wrote, untouched."""
    unchanged: tuple[str, ...] = ()
    """Already identical to the shipped version; not written."""
    kept: tuple[str, ...] = ()
    """Left alone because they differ from what the package wrote: the user's changes."""

    @property
    def notebooks(self) -> tuple[str, ...]:
        """Every shipped notebook, now in DIR in one version or another, sorted."""
        return tuple(sorted(self.copied + self.updated + self.unchanged + self.kept))


def shipped_notebooks() -> Traversable:
    """Return the directory of workshop notebooks inside the installed package.

    Raises:
        FileNotFoundError: this installation has no notebooks (see the module docstring).
    """
    source = files("telemetry_lab.workshop").joinpath("notebooks")
    if not source.is_dir() or not any(_notebook_names(source)):
        raise FileNotFoundError(
            errno.ENOENT,
            "this installation of telemetry_lab has no workshop notebooks (in a git checkout, "
            "telemetry_lab/workshop/notebooks must be a symlink to ../../notebooks)",
            str(source),
        )
    return source


def _notebook_names(source: Traversable) -> list[str]:
    return sorted(
        entry.name
        for entry in source.iterdir()
        if entry.name.endswith(".ipynb") and entry.is_file()
    )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_manifest(dest: Path) -> dict[str, str]:
    """Return {notebook name: sha256 of what we wrote}; a missing or broken manifest is {}."""
    try:
        data = json.loads((dest / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent, unreadable, not JSON: trust nothing in DIR
        return {}
    written = data.get("files") if isinstance(data, dict) else None
    if not isinstance(written, dict):
        return {}
    return {name: sha for name, sha in written.items() if isinstance(sha, str)}


def _write_atomically(path: Path, data: bytes) -> None:
    """Write `path` through a temporary file, so an interrupted copy leaves no half file."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:  # name the directory, not the temporary file
        raise type(exc)(exc.errno, exc.strerror, str(path.parent)) from exc
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def copy_workshop(dest: Path, *, source: Traversable | None = None) -> CopyResult:
    """Copy the workshop notebooks into `dest`, never overwriting a file the user changed.

    For each shipped notebook: no file of that name in `dest` → copy it; an identical file
    → leave it; a file that still matches what an earlier run wrote (the manifest says so)
    → replace it with this version; any other file → keep it. `dest` and its parents are
    created as needed. The manifest is rewritten only when it changes.

    Args:
        dest: the directory to copy into.
        source: where the notebooks come from (default: `shipped_notebooks()`).

    Returns:
        What happened to each notebook.

    Raises:
        NotADirectoryError: `dest` exists and is not a directory (nothing was written).
        FileNotFoundError: there are no notebooks to copy.
        OSError: `dest` cannot be created, read or written (its `filename` says which).
    """
    if source is None:
        source = shipped_notebooks()
    if dest.exists() and not dest.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "exists and is not a directory", str(dest))
    dest.mkdir(parents=True, exist_ok=True)
    previous = _read_manifest(dest)
    manifest = dict(previous)
    outcome: dict[str, list[str]] = {"copied": [], "updated": [], "unchanged": [], "kept": []}
    for name in _notebook_names(source):
        shipped = source.joinpath(name).read_bytes()
        target = dest / name
        try:
            existing: bytes | None = target.read_bytes()
        except FileNotFoundError:
            existing = None
        if existing is None:
            kind = "copied"
        elif existing == shipped:
            kind = "unchanged"
        elif previous.get(name) == _sha256(existing):
            kind = "updated"
        else:
            outcome["kept"].append(name)  # the manifest keeps what we last wrote
            continue
        if kind != "unchanged":
            _write_atomically(target, shipped)
        manifest[name] = _sha256(shipped)
        outcome[kind].append(name)
    if manifest != previous or not (dest / MANIFEST_NAME).is_file():
        from telemetry_lab import __version__

        record = {"package": "telemetry_lab", "version": __version__, "files": manifest}
        text = json.dumps(record, indent=2, sort_keys=True) + "\n"
        _write_atomically(dest / MANIFEST_NAME, text.encode("utf-8"))
    return CopyResult(
        dest=dest,
        copied=tuple(outcome["copied"]),
        updated=tuple(outcome["updated"]),
        unchanged=tuple(outcome["unchanged"]),
        kept=tuple(outcome["kept"]),
    )


def _python_command() -> str:
    """`python` if that is the interpreter running now, else this interpreter's path."""
    on_path = shutil.which("python")
    here = os.path.normcase(os.path.abspath(sys.executable))
    if on_path is not None and os.path.normcase(os.path.abspath(on_path)) == here:
        return "python"
    return sys.executable


def open_command(dest: Path) -> str:
    """Return the one shell command that opens the workshop in `dest` in JupyterLab."""
    python = shlex.quote(_python_command())
    return f"cd {shlex.quote(str(dest))} && {python} -m jupyter lab {FIRST_NOTEBOOK}"


def _summary(result: CopyResult) -> list[str]:
    """The lines `telemetry-lab workshop` prints about a copy."""
    lines = [
        f"Kept {name}: you changed it (delete or rename it, then run this again, to get the "
        "shipped version)"
        for name in result.kept
    ]
    count = len(result.notebooks)
    if len(result.copied) == count:
        head = f"Copied {count} notebooks to {result.dest}."
    else:
        parts = [
            f"{len(names)} {label}"
            for names, label in (
                (result.copied, "copied"),
                (result.updated, "updated"),
                (result.unchanged, "unchanged"),
                (result.kept, "kept"),
            )
            if names
        ]
        head = f"{count} notebooks in {result.dest}: {', '.join(parts)}."
    lines += [f"{head} Open them with:", f"  {open_command(result.dest)}"]
    return lines


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of `telemetry-lab workshop`."""
    parser = argparse.ArgumentParser(
        prog="telemetry-lab workshop",
        description=(
            "Copy the workshop notebooks into DIR and print the command that opens them. "
            "A notebook you changed is never overwritten; one you did not touch is updated "
            "to this version of the package."
        ),
    )
    parser.add_argument(
        "dir",
        metavar="DIR",
        type=Path,
        nargs="?",
        default=DEFAULT_DIR,
        help="where to put the notebooks (default ./%(default)s)",
    )
    parser.add_argument(
        "--open", action="store_true", help="then start JupyterLab there (python -m jupyter lab)"
    )
    return parser


def _error(message: str) -> int:
    print(f"telemetry-lab workshop: error: {message}", file=sys.stderr, flush=True)
    return EXIT_USAGE


def _start_lab(dest: Path) -> int:
    """Run JupyterLab in `dest`: this process becomes it (POSIX) or waits for it (Windows)."""
    command = [sys.executable, "-m", "jupyter", "lab", FIRST_NOTEBOOK]
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.chdir(dest)
        os.execv(sys.executable, command)
    # Windows has no exec: wait for JupyterLab, leaving Ctrl-C to it (it asks to confirm).
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return subprocess.call(command, cwd=dest)
    finally:
        signal.signal(signal.SIGINT, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `telemetry-lab workshop`; return the exit status (0, or 2 with one line)."""
    args = build_parser().parse_args(argv)
    dest: Path = args.dir
    if args.open and importlib.util.find_spec("jupyterlab") is None:
        return _error(
            f"--open needs JupyterLab, which is not installed for {sys.executable} "
            "(pip install jupyterlab)"
        )
    try:
        result = copy_workshop(dest)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _error(f"{where}{exc.strerror or exc}")
    print("\n".join(_summary(result)), flush=True)
    if args.open:
        return _start_lab(dest)
    return EXIT_OK
