"""Every workshop notebook is committed clean and has the course's opening and closing.

The notebooks themselves run under nbval (`pytest --nbval-lax`, configured in
pyproject.toml); this file checks their *shape*, which nbval does not.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

NOTEBOOKS = sorted(
    (Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb")
)
EXPECTED = [f"{n:02d}" for n in range(15)]
LAST = int(EXPECTED[-1])


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def test_the_course_has_its_notebooks_in_order() -> None:
    assert [p.name[:2] for p in NOTEBOOKS] == EXPECTED


def test_the_readme_map_lists_every_notebook_in_order() -> None:
    readme = (NOTEBOOKS[0].parent.parent / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d\d) \| \[[^]]+\]\(notebooks/(\S+?\.ipynb)\) \|", readme, re.M)
    assert [name for _, name in rows] == [p.name for p in NOTEBOOKS]
    assert all(name.startswith(number) for number, name in rows)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path: Path) -> None:
    nb = load(path)
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name} cell {i} has outputs"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} has a count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_opens_with_a_title_and_what_you_will_learn(path: Path) -> None:
    cells = load(path)["cells"]
    first = source(cells[0])
    assert cells[0]["cell_type"] == "markdown"
    assert re.match(r"^# \S", first), f"{path.name}: the first cell must start with an H1"
    opening = "\n".join(source(c) for c in cells[:3] if c["cell_type"] == "markdown")
    assert "You will learn" in opening, path.name
    assert re.search(r"^\s*[-*] ", opening, re.M), f"{path.name}: bullets under You will learn"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_closes_with_summary_whats_next_and_exercises(path: Path) -> None:
    cells = load(path)["cells"]
    markdown = [source(c) for c in cells if c["cell_type"] == "markdown"]
    headings = [line for text in markdown for line in text.splitlines() if line.startswith("#")]
    titles = [h.lstrip("#").strip().lower() for h in headings]
    for wanted in ("summary", "what's next", "exercises"):
        assert any(t.startswith(wanted) for t in titles), f"{path.name}: no '{wanted}' heading"
    order = [next(i for i, t in enumerate(titles) if t.startswith(w))
             for w in ("summary", "what's next", "exercises")]  # fmt: skip
    assert order == sorted(order), f"{path.name}: Summary, What's next, Exercises in order"


def exercises(path: Path) -> dict[int, dict[str, Any]]:
    """Each exercise's cells: the learner's check cell, its stub and its solution cell."""
    cells = load(path)["cells"]
    found: dict[int, dict[str, Any]] = {}
    for i, cell in enumerate(cells):
        text = source(cell)
        if cell["cell_type"] != "code":
            continue
        check = re.fullmatch(r"(?:await )?check_exercise_(\d+)\((\w+)\)\s*", text)
        if check:
            number, name = int(check.group(1)), check.group(2)
            found.setdefault(number, {})["check"] = (i, name)
        solution = re.search(
            r"^assert \(?(?:await )?check_exercise_(\d+)\((solution_\w+), solution=True\)\)?"
            r"\.passed$",
            text,
            re.M,
        )
        if solution:
            found.setdefault(int(solution.group(1)), {})["solution"] = (i, solution.group(2))
    for entry in found.values():
        if "check" in entry:
            name = entry["check"][1]
            for i, cell in enumerate(cells):
                text = source(cell)
                if cell["cell_type"] == "code" and re.search(
                    rf"^(async )?def {name}\(", text, re.M
                ):
                    entry.setdefault("stub", (i, text))
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_has_at_least_two_exercises_checked_by_the_package(path: Path) -> None:
    """Exercise, stub, one line that checks it, a collapsed solution under its own name."""
    code = [source(c) for c in load(path)["cells"] if c["cell_type"] == "code"]
    number = path.name[:2]
    assert not any(re.search(r"^def check_exercise_", c, re.M) for c in code), (
        f"{path.name}: checkers live in telemetry_lab.exercises.nb{number}, not in the notebook"
    )
    imports = f"from telemetry_lab.exercises.nb{number} import "
    assert any(imports in c for c in code), f"{path.name}: import the checkers ({imports}...)"
    found = exercises(path)
    assert len(found) >= 2, f"{path.name}: needs >= 2 exercises, found {sorted(found)}"
    cells = load(path)["cells"]
    for n, entry in sorted(found.items()):
        where = f"{path.name} exercise {n}"
        assert {"check", "stub", "solution"} <= entry.keys(), f"{where}: has {sorted(entry)}"
        (check_at, name), (stub_at, stub), (solution_at, solution) = (
            entry["check"],
            entry["stub"],
            entry["solution"],
        )
        assert stub_at < check_at < solution_at, f"{where}: stub, check, then solution"
        assert "raise NotImplementedError" in stub, f"{where}: the stub raises NotImplementedError"
        assert solution == f"solution_{name}", f"{where}: the solution is named solution_{name}"
        meta = cells[solution_at]["metadata"]
        assert meta.get("jupyter", {}).get("source_hidden") is True, f"{where}: collapse it"
        assert "solution" in meta.get("tags", []), f"{where}: tag the solution cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_cells_that_teach_assert(path: Path) -> None:
    code = [source(c) for c in load(path)["cells"] if c["cell_type"] == "code"]
    assert sum("assert" in c for c in code) >= 3, f"{path.name}: assert what you teach"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_links_to_the_next_notebook(path: Path) -> None:
    number = int(path.name[:2])
    text = "\n".join(source(c) for c in load(path)["cells"] if c["cell_type"] == "markdown")
    if number < LAST:
        assert re.search(rf"\({number + 1:02d}_[a-z0-9_]+\.ipynb\)", text), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_uses_the_kernel_it_is_tested_with(path: Path) -> None:
    nb = load(path)
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert nb["nbformat"] == 4
