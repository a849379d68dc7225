"""The sdist and the wheel carry what they promise; the wheel alone starts the workshop.

One module-scoped build, as a release would do it: a copy of the source tree (junk planted
in it, to prove it stays out), a fresh venv holding only pip and the `[build-system]`
requirements, the sdist built from the tree, the wheel built from that sdist. The wheel is
then installed there with `--no-deps`: no Jupyter, no matplotlib, no ipywidgets, which
proves that `telemetry-lab workshop` needs none of them. About 15 s, most of it pip.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from telemetry_lab.workshop import MANIFEST_NAME

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(path.name for path in (ROOT / "notebooks").glob("*.ipynb"))
# Never part of a release: VCS, venvs, caches, build output, local databases.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", ".venvs", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
    ".hypothesis", ".ipynb_checkpoints", "*.db", "*.db-wal", "*.db-shm",
)  # fmt: skip
JUNK = ("tests/__pycache__/stale.cpython-311.pyc", "notebooks/.ipynb_checkpoints/x.ipynb")

pytestmark = pytest.mark.timeout(90)


@dataclass(frozen=True, slots=True, kw_only=True)
class Built:
    """The artefacts of one build, and the venv they were built (and installed) in."""

    tree: Path
    sdist: Path
    wheel: Path
    bin: Path


def run(*command: str | Path, cwd: Path | None = None) -> str:
    """Run `command`; fail the test with its output if it fails; return its stdout."""
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=80,
        check=False,
    )
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    base = tmp_path_factory.mktemp("packaging")
    tree = base / "src"
    shutil.copytree(ROOT, tree, symlinks=True, ignore=NOT_SOURCE)
    for junk in JUNK:
        (tree / junk).parent.mkdir(parents=True, exist_ok=True)
        (tree / junk).write_bytes(b"junk")
    venv = base / "venv"
    run(sys.executable, "-m", "venv", venv)
    bin_dir = venv / ("Scripts" if sys.platform == "win32" else "bin")
    python = bin_dir / "python"
    requires = tomllib.loads((tree / "pyproject.toml").read_text("utf-8"))["build-system"]
    pip = (python, "-m", "pip", "--disable-pip-version-check", "--quiet")
    run(*pip, "install", *requires["requires"])
    dist = base / "dist"
    build_sdist = f"from setuptools import build_meta; print(build_meta.build_sdist({str(dist)!r}))"
    sdist = dist / run(python, "-c", build_sdist, cwd=tree).split()[-1]
    run(*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", dist, sdist)
    (wheel,) = dist.glob("*.whl")
    run(*pip, "install", "--no-deps", wheel)
    return Built(tree=tree, sdist=sdist, wheel=wheel, bin=bin_dir)


def sdist_names(built: Built) -> set[str]:
    with tarfile.open(built.sdist) as archive:
        return {name.partition("/")[2] for name in archive.getnames() if "/" in name}


def test_sdist_carries_what_its_tests_need(built: Built) -> None:
    names = sdist_names(built)
    for required in ("LICENSE", "README.md", "pyproject.toml", "MANIFEST.in", "conftest.py"):
        assert required in names, required
    for folder in ("tests", "bench", "tools", "docs"):
        expected = {
            path.relative_to(built.tree).as_posix()
            for path in (built.tree / folder).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts
        }
        assert expected, folder
        assert expected <= names, sorted(expected - names)
    for notebook in NOTEBOOKS:
        assert f"notebooks/{notebook}" in names
        assert f"telemetry_lab/workshop/notebooks/{notebook}" in names
    assert not {name for name in names if name.endswith(JUNK)}
    assert not any(part.startswith((".git", ".venv")) for name in names for part in name.split("/"))


def test_wheel_ships_the_notebooks_and_the_license_but_no_tests(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read("telemetry_lab-0.1.0.dist-info/METADATA").decode("utf-8")
        for notebook in NOTEBOOKS:
            shipped = wheel.read(f"telemetry_lab/workshop/notebooks/{notebook}")
            assert shipped == (ROOT / "notebooks" / notebook).read_bytes(), notebook
    assert "telemetry_lab/py.typed" in names
    assert "telemetry_lab-0.1.0.dist-info/licenses/LICENSE" in names
    assert not [name for name in names if name.startswith(("tests/", "bench/", "notebooks/"))]
    assert "License-Expression: MIT" in metadata
    assert "Project-URL: Source, https://github.com/telemetry-lab/telemetry_lab" in metadata


def test_installed_wheel_copies_the_workshop_and_keeps_a_changed_notebook(
    built: Built, tmp_path: Path
) -> None:
    command = (built.bin / "telemetry-lab", "workshop", "ws")
    first = run(*command, cwd=tmp_path)
    assert first.splitlines()[0] == f"Copied {len(NOTEBOOKS)} notebooks to ws. Open them with:"
    assert first.splitlines()[1].startswith("  cd ws && ")
    assert first.splitlines()[1].endswith(" -m jupyter lab 00_start_here.ipynb")
    workshop = tmp_path / "ws"
    assert sorted(path.name for path in workshop.glob("*.ipynb")) == NOTEBOOKS
    for notebook in NOTEBOOKS:
        assert (workshop / notebook).read_bytes() == (ROOT / "notebooks" / notebook).read_bytes()
    manifest = json.loads((workshop / MANIFEST_NAME).read_text("utf-8"))
    assert (
        manifest["files"]["03_watch.ipynb"]
        == hashlib.sha256((ROOT / "notebooks" / "03_watch.ipynb").read_bytes()).hexdigest()
    )

    mine = (workshop / "03_watch.ipynb").read_bytes().replace(b'"cells"', b'"cells" ', 1)
    (workshop / "03_watch.ipynb").write_bytes(mine)
    second = run(*command, cwd=tmp_path).splitlines()
    assert second[0].startswith("Kept 03_watch.ipynb: you changed it")
    unchanged = len(NOTEBOOKS) - 1
    kept = f"{len(NOTEBOOKS)} notebooks in ws: {unchanged} unchanged, 1 kept. Open them with:"
    assert second[1] == kept
    assert (workshop / "03_watch.ipynb").read_bytes() == mine


def test_installed_package_imports_without_its_heavy_dependencies(built: Built) -> None:
    # The venv has only pip, setuptools and the wheel (--no-deps): importing the package and
    # its CLI must not need Jupyter, matplotlib, ipywidgets or Pillow.
    code = "import telemetry_lab, telemetry_lab.__main__, telemetry_lab.workshop; print('ok')"
    assert run(built.bin / "python", "-c", code, cwd=built.bin) == "ok\n"
