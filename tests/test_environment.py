"""environment.yml (Binder, conda) and pyproject.toml (pip) describe the same environment."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"matplotlib": "matplotlib-base"}  # conda-forge's GUI-free matplotlib


def name_of(requirement: str) -> str:
    return re.split(r"[<>=!~ ;\[]", requirement, maxsplit=1)[0].strip().lower()


def environment() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def conda_entries() -> tuple[list[str], list[str]]:
    conda: list[str] = []
    pip: list[str] = []
    for entry in environment()["dependencies"]:
        if isinstance(entry, dict):
            pip.extend(entry["pip"])
        else:
            conda.append(str(entry))
    return conda, pip


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_channels_are_conda_forge_without_defaults() -> None:
    assert environment()["channels"] == ["conda-forge", "nodefaults"]


def test_python_is_pinned_exactly_to_3_12() -> None:
    conda, _ = conda_entries()
    pythons = [entry for entry in conda if name_of(entry) == "python"]
    assert pythons == ["python=3.12"]


def test_every_runtime_dependency_is_in_the_environment() -> None:
    conda, pip = conda_entries()
    available = {name_of(e) for e in conda} | {name_of(e) for e in pip}
    for requirement in pyproject()["project"]["dependencies"]:
        name = name_of(requirement)
        assert CONDA_NAMES.get(name, name) in available, f"{name} missing from environment.yml"


def test_every_environment_package_is_declared_by_the_project() -> None:
    conda, pip = conda_entries()
    declared = {name_of(r) for r in pyproject()["project"]["dependencies"]}
    declared |= {name_of(r) for r in pyproject()["project"]["optional-dependencies"]["test"]}
    declared |= {CONDA_NAMES.get(n, n) for n in set(declared)} | {"python", "pip"}
    for entry in conda + pip:
        assert name_of(entry) in declared, f"{entry} is not declared in pyproject.toml"


def test_the_notebook_test_tools_are_in_the_environment() -> None:
    conda, pip = conda_entries()
    names = {name_of(e) for e in conda + pip}
    assert {"nbval", "pytest", "ipykernel"} <= names


NOT_FOR_BINDER = {"playwright", "ruff", "mypy"}  # the browser driver and the linters


def test_every_test_tool_but_the_browser_driver_and_the_linters_is_in_the_environment() -> None:
    """Found: in the Binder environment `pytest notebooks` stopped at "Unknown config option:
    timeout" (pytest-timeout, hypothesis and pyyaml were missing; the config is strict)."""
    conda, pip = conda_entries()
    available = {name_of(e) for e in conda + pip}
    test_tools = {name_of(r) for r in pyproject()["project"]["optional-dependencies"]["test"]}
    assert test_tools - NOT_FOR_BINDER <= available, test_tools - NOT_FOR_BINDER - available
    options = pyproject()["tool"]["pytest"]["ini_options"]
    assert "timeout" in options  # a pytest-timeout option: --strict-config needs the plugin
    assert "pytest-timeout" in available


def test_nest_asyncio2_comes_from_conda_forge() -> None:
    """It is packaged there (1.7.3 and later): no pip section is needed at all."""
    conda, pip = conda_entries()
    assert "nest-asyncio2>=1.7.3" in conda
    assert pip == []


def test_postbuild_installs_the_package_without_dependencies_and_no_lab_build() -> None:
    post_build = ROOT / "postBuild"
    text = post_build.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert "pip install --no-deps -e ." in text
    assert "jupyter lab build" not in text
    assert post_build.stat().st_mode & 0o111, "postBuild must be executable"


def test_the_readme_has_a_binder_badge_that_opens_notebook_00() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    badge = re.search(r"\[!\[[^\]]*Binder[^\]]*\]\([^)]*\)\]\((\S+?)\)", readme)
    assert badge is not None, "no Binder badge in the README"
    assert badge.group(1).endswith("?urlpath=lab/tree/notebooks/00_start_here.ipynb")
    assert (ROOT / "notebooks" / "00_start_here.ipynb").is_file()
