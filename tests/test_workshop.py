"""Tests for `telemetry_lab.workshop`: `telemetry-lab workshop [DIR]` and `copy_workshop`.

`copy_workshop` runs against the notebooks this checkout ships (`notebooks/`, read through
`telemetry_lab/workshop/notebooks`), or against a `source` folder a test writes to play an older
version of the package. tests/test_packaging.py runs the command from an installed wheel.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from telemetry_lab import workshop
from telemetry_lab.__main__ import build_parser
from telemetry_lab.__main__ import main as cli_main
from telemetry_lab.workshop import MANIFEST_NAME, CopyResult, copy_workshop, shipped_notebooks

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = tuple(sorted(path.name for path in (ROOT / "notebooks").glob("*.ipynb")))
WATCH = "03_watch.ipynb"


def shipped(name: str) -> bytes:
    return (ROOT / "notebooks" / name).read_bytes()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest(dest: Path) -> dict[str, str]:
    files = json.loads((dest / MANIFEST_NAME).read_text("utf-8"))["files"]
    assert isinstance(files, dict)
    return files


def older_version(tmp_path: Path) -> Path:
    """A folder playing an older package: every notebook as now, but 03 different."""
    old = tmp_path / "old-package"
    old.mkdir()
    for name in NOTEBOOKS:
        (old / name).write_bytes(shipped(name))
    (old / WATCH).write_bytes(b'{"cells": [], "the": "old version"}')
    return old


def test_module_declares_a_sorted_all_and_a_summary_line() -> None:
    # tests/test_exports.py checks modules, not subpackages: the same checks, here.
    def order(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)

    assert list(workshop.__all__) == sorted(workshop.__all__, key=order)
    assert all(hasattr(workshop, name) for name in workshop.__all__)
    assert (workshop.__doc__ or "").splitlines()[0].endswith(".")


def test_the_package_ships_exactly_the_repository_notebooks() -> None:
    source = shipped_notebooks()
    names = sorted(entry.name for entry in source.iterdir() if entry.name.endswith(".ipynb"))
    assert len(NOTEBOOKS) == 15
    assert tuple(names) == NOTEBOOKS
    for name in NOTEBOOKS:
        assert source.joinpath(name).read_bytes() == shipped(name), name


def test_the_package_reaches_the_notebooks_through_a_symlink_not_a_copy() -> None:
    link = ROOT / "telemetry_lab" / "workshop" / "notebooks"
    if not (ROOT / ".git").exists():
        pytest.skip("an unpacked sdist holds real copies; the link exists only in git")
    assert link.is_symlink()
    assert os.readlink(link) == "../../notebooks"


def test_an_installation_without_notebooks_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pkg").mkdir()
    # What git writes in place of the link when symlinks are off: a file holding its target.
    (tmp_path / "pkg" / "notebooks").write_text("../../notebooks", encoding="utf-8")
    monkeypatch.setattr(workshop, "files", lambda package: tmp_path / "pkg")
    assert run_cli(capsys, str(tmp_path / "ws")) == (
        2,
        "",
        f"telemetry-lab workshop: error: {tmp_path / 'pkg' / 'notebooks'}: this installation "
        "of telemetry_lab has no workshop notebooks (in a git checkout, "
        "telemetry_lab/workshop/notebooks must be a symlink to ../../notebooks)\n",
    )
    assert not (tmp_path / "ws").exists()


def test_fresh_directory_gets_every_notebook_and_a_manifest(tmp_path: Path) -> None:
    dest = tmp_path / "a" / "b" / "workshop"  # parents are created
    result = copy_workshop(dest)
    assert result == CopyResult(dest=dest, copied=NOTEBOOKS)
    assert result.notebooks == NOTEBOOKS
    for name in NOTEBOOKS:
        assert (dest / name).read_bytes() == shipped(name)
    assert manifest(dest) == {name: sha256(shipped(name)) for name in NOTEBOOKS}
    record = json.loads((dest / MANIFEST_NAME).read_text("utf-8"))
    assert (record["package"], record["version"]) == ("telemetry_lab", "0.1.0")
    assert sorted(path.name for path in dest.iterdir()) == sorted([*NOTEBOOKS, MANIFEST_NAME])


def test_identical_notebooks_are_left_alone(tmp_path: Path) -> None:
    copy_workshop(tmp_path)
    stamps = {path.name: path.stat().st_mtime_ns for path in tmp_path.iterdir()}
    os.utime(tmp_path / WATCH, ns=(1, 1))
    stamps[WATCH] = 1
    assert copy_workshop(tmp_path) == CopyResult(dest=tmp_path, unchanged=NOTEBOOKS)
    assert {path.name: path.stat().st_mtime_ns for path in tmp_path.iterdir()} == stamps


def test_a_notebook_the_user_changed_is_kept(tmp_path: Path) -> None:
    copy_workshop(tmp_path)
    mine = shipped(WATCH).replace(b'"cells"', b'"cells" ', 1)
    (tmp_path / WATCH).write_bytes(mine)
    (tmp_path / "00_start_here.ipynb").unlink()  # deleted: it comes back
    others = tuple(name for name in NOTEBOOKS if name not in {WATCH, "00_start_here.ipynb"})
    assert copy_workshop(tmp_path) == CopyResult(
        dest=tmp_path, copied=("00_start_here.ipynb",), unchanged=others, kept=(WATCH,)
    )
    assert (tmp_path / WATCH).read_bytes() == mine
    assert manifest(tmp_path)[WATCH] == sha256(shipped(WATCH))  # still what we wrote


def test_a_notebook_an_older_package_wrote_is_updated(tmp_path: Path) -> None:
    dest = tmp_path / "ws"
    copy_workshop(dest, source=older_version(tmp_path))
    assert (dest / WATCH).read_bytes() == b'{"cells": [], "the": "old version"}'
    others = tuple(name for name in NOTEBOOKS if name != WATCH)
    assert copy_workshop(dest) == CopyResult(dest=dest, updated=(WATCH,), unchanged=others)
    assert (dest / WATCH).read_bytes() == shipped(WATCH)
    assert manifest(dest)[WATCH] == sha256(shipped(WATCH))


def test_an_older_notebook_the_user_then_changed_is_kept(tmp_path: Path) -> None:
    dest = tmp_path / "ws"
    copy_workshop(dest, source=older_version(tmp_path))
    (dest / WATCH).write_bytes(b'{"cells": [], "the": "old version", "mine": 1}')
    assert copy_workshop(dest).kept == (WATCH,)
    assert (dest / WATCH).read_bytes() == b'{"cells": [], "the": "old version", "mine": 1}'


def test_without_a_manifest_a_different_file_is_the_users(tmp_path: Path) -> None:
    (tmp_path / WATCH).write_bytes(b"my own notes")  # same name, not written by us
    (tmp_path / MANIFEST_NAME).write_text("{not json", encoding="utf-8")
    result = copy_workshop(tmp_path)
    assert result.kept == (WATCH,)
    assert len(result.copied) == len(NOTEBOOKS) - 1
    assert (tmp_path / WATCH).read_bytes() == b"my own notes"
    assert WATCH not in manifest(tmp_path)  # a broken manifest is replaced, trusting nothing


def test_a_file_in_the_way_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    dest = tmp_path / "ws"
    dest.write_bytes(b"a file")
    with pytest.raises(NotADirectoryError) as caught:
        copy_workshop(dest)
    assert (caught.value.errno, caught.value.strerror, caught.value.filename) == (
        errno.ENOTDIR,
        "exists and is not a directory",
        str(dest),
    )
    assert dest.read_bytes() == b"a file"


# The command line, in process: `telemetry-lab workshop ...` is `main(["workshop", ...])`.


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli_main(["workshop", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_copies_into_the_default_directory_and_prints_the_command(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(workshop, "_python_command", lambda: "python")
    assert run_cli(capsys) == (
        0,
        f"Copied {len(NOTEBOOKS)} notebooks to telemetry-lab-workshop. Open them with:\n"
        "  cd telemetry-lab-workshop && python -m jupyter lab 00_start_here.ipynb\n",
        "",
    )
    names = sorted(path.name for path in (tmp_path / "telemetry-lab-workshop").glob("*.ipynb"))
    assert tuple(names) == NOTEBOOKS


def test_cli_names_each_kept_notebook_on_its_own_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workshop, "_python_command", lambda: "/opt/py 3/bin/python")
    dest = tmp_path / "my workshop"
    copy_workshop(dest)
    for name in (WATCH, "07_select.ipynb"):
        (dest / name).write_bytes(b"mine")
    (dest / "01_bounded_channels.ipynb").unlink()
    code, out, err = run_cli(capsys, str(dest))
    assert (code, err) == (0, "")
    hint = "you changed it (delete or rename it, then run this again, to get the shipped version)"
    assert out.splitlines() == [
        f"Kept {WATCH}: {hint}",
        f"Kept 07_select.ipynb: {hint}",
        f"{len(NOTEBOOKS)} notebooks in {dest}: 1 copied, {len(NOTEBOOKS) - 3} unchanged, 2 kept. "
        "Open them with:",
        f"  cd '{dest}' && '/opt/py 3/bin/python' -m jupyter lab 00_start_here.ipynb",
    ]


def test_cli_refuses_a_file_with_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "ws").write_text("x", encoding="utf-8")
    assert run_cli(capsys, str(tmp_path / "ws")) == (
        2,
        "",
        f"telemetry-lab workshop: error: {tmp_path / 'ws'}: exists and is not a directory\n",
    )
    assert run_cli(capsys, str(tmp_path / "ws" / "sub")) == (
        2,
        "",
        f"telemetry-lab workshop: error: {tmp_path / 'ws' / 'sub'}: Not a directory\n",
    )


def test_cli_refuses_a_directory_it_cannot_write(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> tuple[int, str]:
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".x.tmp"))

    monkeypatch.setattr(workshop.tempfile, "mkstemp", refuse)
    assert run_cli(capsys, str(tmp_path)) == (
        2,
        "",
        f"telemetry-lab workshop: error: {tmp_path}: Permission denied\n",
    )
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_a_read_only_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory the user may not write to (root may write anywhere, so the refusal of
    the operating system is played by the one call that creates files there)."""
    dest = tmp_path / "ro"
    dest.mkdir()
    real = tempfile.mkstemp

    def refused(*args: Any, dir: Any = None, **kwargs: Any) -> Any:
        if Path(dir) == dest:
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(workshop.tempfile, "mkstemp", refused)
    code, out, err = run_cli(capsys, str(dest))
    assert (code, out) == (2, "")
    assert err == f"telemetry-lab workshop: error: {dest}: Permission denied\n"
    assert list(dest.iterdir()) == []  # nothing half-written


def test_cli_open_replaces_itself_with_jupyterlab_in_the_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    calls: list[tuple[str, list[str], str]] = []

    def execv(path: str, args: list[str]) -> None:
        calls.append((path, args, os.getcwd()))
        raise SystemExit(0)  # exec never returns

    monkeypatch.setattr(workshop.os, "execv", execv)
    with pytest.raises(SystemExit):
        run_cli(capsys, "ws", "--open")
    assert calls == [
        (
            sys.executable,
            [sys.executable, "-m", "jupyter", "lab", "00_start_here.ipynb"],
            str(tmp_path / "ws"),
        )
    ]
    assert capsys.readouterr().out.startswith(
        f"Copied {len(NOTEBOOKS)} notebooks to ws. Open them with:\n"
    )


def test_cli_open_without_jupyterlab_says_so_before_copying(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workshop.importlib.util, "find_spec", lambda name: None)
    assert run_cli(capsys, str(tmp_path / "ws"), "--open") == (
        2,
        "",
        f"telemetry-lab workshop: error: --open needs JupyterLab, which is not installed for "
        f"{sys.executable} (pip install jupyterlab)\n",
    )
    assert not (tmp_path / "ws").exists()


def test_cli_help_of_both_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli_main(["workshop", "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: telemetry-lab workshop [-h] [--open] [DIR]\n")
    assert "default ./telemetry-lab-workshop" in out
    assert "`telemetry-lab workshop [DIR]`" in " ".join(build_parser().format_help().split())


def test_printed_command_uses_python_when_it_is_this_interpreter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(workshop.shutil, "which", lambda name: sys.executable)
    assert workshop.open_command(Path("ws")) == "cd ws && python -m jupyter lab 00_start_here.ipynb"
    monkeypatch.setattr(workshop.shutil, "which", lambda name: None)
    assert workshop.open_command(Path("ws")).startswith(f"cd ws && {sys.executable} -m jupyter")


def test_the_cli_imports_no_jupyter_and_no_plotting() -> None:
    heavy = ("IPython", "ipykernel", "ipywidgets", "jupyter", "jupyterlab", "matplotlib", "PIL")
    code = (
        "import sys, telemetry_lab, telemetry_lab.__main__, telemetry_lab.workshop; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0].startswith({heavy!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out == "[]\n"
