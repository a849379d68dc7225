"""The browser tests share one JupyterLab server for the session (see `lab_driver.py`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lab_driver import Lab, serve_lab


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A JupyterLab server over a copy of the notebooks, for every browser test."""
    yield from serve_lab(tmp_path_factory)
