"""The README's Python example runs and prints what it promises."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_has_a_python_example() -> None:
    assert python_blocks()


def test_illustrative_blocks_at_least_compile() -> None:
    """Blocks fenced `python notest` use top-level await (Jupyter style): compile them."""
    import ast

    blocks = re.findall(r"```python notest\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks
    for block in blocks:
        compile(block, str(README), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def test_readme_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    for block in python_blocks():
        exec(compile(block, str(README), "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out.splitlines()
    assert out == [f"got {i}" for i in range(5)] + ["no alert within 0.1 s"]
