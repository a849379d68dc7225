"""The asyncio console's widget in a real JupyterLab, while the gateway runs (Chromium).

A person starts the console in a cell, starts a gateway whose database is slow, and watches
the table update on its own (the kernel is idle: the widget is refreshed from the console's
thread). Then a cell blocks the loop with `time.sleep`: the widget says so while the cell is
still running, and afterwards names the cell's line. Screenshots go to
`build/test-artifacts/`; `docs/console.png` and `docs/console-blocked.png` are copies.
"""

from __future__ import annotations

import re
import time

import nbformat
import pytest
from lab_driver import ARTIFACTS, Lab, Notebook

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

CELLS = [
    "import asyncio, time\n"
    "from telemetry_lab import Console, Gateway, GatewayConfig\n"
    "console = Console().start()\n"
    "console.widget",
    'config = GatewayConfig(db_path="console-demo.db", duration=60, device_interval=0.002,\n'
    "                       storage_latency=0.4, db_connections=1)\n"
    "gateway = Gateway(config)\n"
    'run = asyncio.create_task(gateway.run(), name="gateway-run")',
    "time.sleep(4)  # freeze the event loop",
    "gateway.stop()\nreport = await run\nassert report.ok\n"
    "console.stop()\nprint(report.verdicts()[0])",
]


def shot_console(nb: Notebook, name: str) -> None:
    """Save a picture of the console's table alone."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    table = nb.page.locator(".jp-NotebookPanel:visible .tl-console").first
    table.scroll_into_view_if_needed()
    table.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def console_text(nb: Notebook) -> str:
    table = nb.page.locator(".jp-NotebookPanel:visible .tl-console").first
    table.wait_for(state="visible", timeout=120_000)
    return str(table.inner_text())


def uptime(text: str) -> float:
    match = re.search(r"up (\d+(?:\.\d+)?)(ms|s)\b", text)
    if match is None:
        return -1.0
    value = float(match.group(1))
    return value / 1000 if match.group(2) == "ms" else value


def wait_for(nb: Notebook, what: str, check: object, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = console_text(nb)
        if check(text):  # type: ignore[operator]
            return text
        nb.page.wait_for_timeout(250)
    raise AssertionError(f"timed out waiting for {what}; the console shows:\n{text}")


def test_the_console_widget_updates_while_the_gateway_runs_and_shows_a_stall(lab: Lab) -> None:
    source = "console_source.ipynb"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(notebook, lab.root / source)
    with Notebook.opened(lab, "console", source=source) as nb:
        nb.run_cell("import asyncio, time")
        console_text(nb)
        nb.run_cell("config = GatewayConfig")
        text = wait_for(
            nb,
            "devices waiting on send and storage on the db semaphore",
            lambda t: (
                "send on channel 'telemetry' (50/50 full)" in t and "acquire semaphore 'db'" in t
            ),
        )
        assert "device-1" in text
        assert "RESOURCES" in text.upper()
        first = uptime(text)
        # The kernel is idle now: only the console's thread can refresh the table.
        later = wait_for(nb, "the table to refresh on its own", lambda t: uptime(t) >= first + 2)
        assert "waiting" in later
        shot_console(nb, "console")
        nb.shot("console-in-jupyterlab")

        nb.run_cell("time.sleep(4)")
        stalled = wait_for(
            nb,
            "the widget to show the stall while the cell still runs, 2 s into it",
            lambda t: re.search(r"The event loop is blocked: one step has run for [23]\.", t),
            timeout=10,
        )
        assert nb.lab.kernel_state(nb.name) == "busy"  # the cell is still sleeping
        assert "blocking the loop right now" in stalled
        assert "cell:1" in stalled
        assert "time.sleep(4)" in stalled
        shot_console(nb, "console-blocked")
        after = wait_for(
            nb,
            "the blocked_loop warning after the stall",
            lambda t: "blocked the loop for 4." in t and "The event loop is blocked" not in t,
            timeout=20,
        )
        assert "time.sleep(4)" in after

        nb.run_cell("gateway.stop()")
        nb.kernel_idle_within(30)
        final = wait_for(nb, "the console to say it stopped", lambda t: "stopped" in t)
        assert re.search(r"gateway-run\s+done", final), final  # the run's own task, finished
        outputs = nb.page.locator(
            ".jp-NotebookPanel:visible .jp-OutputArea-output"
        ).all_inner_texts()
        assert any("Zero data loss" in text for text in outputs), outputs
