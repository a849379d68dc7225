"""Settings shared by the unit tests and the notebooks run under nbval.

Notebook kernels inherit this process's environment: `TELEMETRY_LAB_FAST=1` tells the
notebooks to shorten their long demos (a 10-second gateway run becomes 2 seconds), so the
whole workshop runs quickly in CI. Set it to 0 to run them at full length.
"""

import os

import pytest

os.environ.setdefault("TELEMETRY_LAB_FAST", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the browser tests last: by then the notebooks have warmed every cache.

    (A fresh machine's first kernel compiles its modules and builds matplotlib's font
    cache; that is slow, and the browser test should not be the one to pay for it.)
    """
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
