"""Re-running a notebook's cells, as a learner does, never leaves a gateway running unseen.

Found: re-running notebook 03's gateway cell (or 12's dashboard cells) kept the old gateway
running invisibly, and the next report said "LEDGER DOES NOT BALANCE". The notebooks run in
a real kernel here (nbclient, as nbval uses), cell by cell, with one cell run twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

pytestmark = pytest.mark.timeout(300)


def source(cell: Any) -> str:
    return "".join(cell.source) if isinstance(cell.source, list) else str(cell.source)


def run_with_a_rerun(name: str, rerun_starts_with: str, probe: str) -> str:
    """Run `name` up to and including the cell starting with `rerun_starts_with`, run that
    cell again, then run `probe` and return what it printed."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={})
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            client.execute_cell(cell, index)
            if source(cell).startswith(rerun_starts_with):
                client.execute_cell(cell, index)  # the learner runs it again
                break
        else:
            raise AssertionError(f"no cell starts with {rerun_starts_with!r}")
        probe_cell = nbformat.v4.new_code_cell(probe)
        nb.cells.append(probe_cell)
        client.execute_cell(probe_cell, len(nb.cells) - 1)
    return "".join(out.get("text", "") for out in probe_cell.outputs)


def test_rerunning_notebook_03s_gateway_cell_stops_the_previous_run() -> None:
    printed = run_with_a_rerun(
        "03_watch.ipynb",
        'if "gateway" in globals()',
        "import json\n"
        "running = [t for t in tasks if not t.done()]\n"
        "first = next(t for t in tasks if t.get_name().startswith('Task') and t.done()"
        " and not t.cancelled() and hasattr(t.result(), 'ended_by'))\n"
        "print(json.dumps({'ended_by': first.result().ended_by, 'ok': first.result().ok,"
        " 'live_gateways': sum(1 for t in running if t is task)}))",
    )
    result = json.loads(printed)
    assert result == {"ended_by": "stop", "ok": True, "live_gateways": 1}
