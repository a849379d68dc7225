"""The live dashboard in a real JupyterLab, used the way a person uses it (Debian's Chromium).

Each test opens its own copy of notebook 12 and does what a learner does: Run All, click
Stop during the run, Start and Stop again with the buttons, drag a slider, re-run the
dashboard's cells, interrupt the kernel while a cell waits, restart the kernel. The tools
(the JupyterLab server, the page) are in `lab_driver.py`.
"""

from __future__ import annotations

import re

import pytest
from lab_driver import SHUTDOWN_TIMEOUT, Lab, Notebook

pytestmark = [pytest.mark.browser, pytest.mark.timeout(480)]


def elapsed(status: str) -> float:
    """The run's seconds in a status line such as "running (run 1, 12.3 s)"."""
    match = re.search(r", (\d+\.\d) s\)", status)
    return float(match.group(1)) if match else 0.0


def test_stop_during_run_all_then_start_stop_start_again_with_the_buttons(lab: Lab) -> None:
    """Found: Stop deadlocked the kernel; a run from Start never showed its end."""
    with Notebook.opened(lab, "buttons") as nb:
        nb.run_all()
        nb.wait_until("the run to start", lambda: nb.status().startswith("running"))
        nb.wait_for_frames(4)
        # The notebook slows the database at 5 s: wait until backpressure has built up.
        nb.wait_until("12 s of the run", lambda: elapsed(nb.status()) >= 12.0, timeout=40)
        nb.dashboard().scroll_into_view_if_needed()
        nb.shot("dashboard-in-jupyterlab")
        nb.shot_dashboard("dashboard-backpressure")
        assert nb.button("Start").is_disabled()
        nb.button("Stop").click()
        # The kernel finishes the whole notebook: idle within the drain plus a few seconds.
        took = nb.kernel_idle_within(SHUTDOWN_TIMEOUT + 15)
        nb.wait_until(
            "the final frame and verdict",
            lambda: "finished" in nb.status() and "Zero data loss" in nb.numbers(),
        )
        assert nb.button("Stop").is_disabled()
        nb.shot_dashboard("dashboard-stopped")
        print(f"kernel idle {took:.1f} s after Stop")

        # Start again from the button alone: the end of that run must show too.
        nb.button("Start").click()
        nb.wait_until("the second run", lambda: nb.status().startswith("running (run 2"))
        nb.wait_for_frames(3)
        nb.button("Stop").click()
        nb.wait_until(
            "the second run's end and verdict",
            lambda: nb.status().startswith("finished (run 2") and "Zero data loss" in nb.numbers(),
        )
        nb.button("Start").click()
        nb.wait_until("the third run", lambda: nb.status().startswith("running (run 3"))
        nb.wait_for_frames(2)
        nb.shot_dashboard("dashboard-started-again")
        nb.button("Stop").click()
        nb.wait_until("the third run's end", lambda: nb.status().startswith("finished (run 3"))
        assert nb.kernel_idle_within(15) >= 0


def test_drag_a_slider_mid_run_then_rerun_the_dashboard_cells(lab: Lab) -> None:
    """Found: a slider broke Run All; re-running cells left a hidden gateway running."""
    with Notebook.opened(lab, "slider") as nb:
        nb.run_all()
        nb.wait_until("the run to start", lambda: nb.status().startswith("running"))
        nb.wait_for_frames(3)
        nb.drag_slider_to_the_end("client 1 delay s")  # the slowest client 1 can be: 1 s
        nb.wait_until(
            "client 1 to lag",
            lambda: re.search(r"client 1\s+\d+ received, [1-9]\d* lagged", nb.numbers()),
            timeout=30,
        )
        nb.shot_dashboard("dashboard-slider")
        nb.kernel_idle_within(SHUTDOWN_TIMEOUT + 60)  # Run All goes on to the end: no error
        assert "Zero data loss" in nb.numbers()  # a slow client never fails a run

        # A run from the Start button, then the dashboard's cells run again meanwhile.
        nb.button("Start").click()
        nb.wait_until("the button's run", lambda: nb.status().startswith("running (run 2"))
        nb.run_cell("dashboard = Dashboard(config")
        nb.wait_until(
            "the old dashboard's run to stop",
            lambda: (
                "Replaced by a newer dashboard" in nb.numbers(0)
                and nb.status(0).startswith("finished (run 2")
            ),
            timeout=SHUTDOWN_TIMEOUT + 10,
        )
        nb.run_cell("# NBVAL_IGNORE_OUTPUT")
        nb.run_cell("gateway = await dashboard.start()")
        nb.wait_until("the new dashboard's run", lambda: nb.status().startswith("running"))
        nb.wait_for_frames(2)
        nb.shot("dashboard-rerun")
        nb.button("Stop").click()
        nb.wait_until("the new run's end", lambda: nb.status().startswith("finished"))
        nb.kernel_idle_within(SHUTDOWN_TIMEOUT + 10)


def test_interrupt_during_wait_then_restart_the_kernel(lab: Lab) -> None:
    """The interrupted cell stops the run gracefully; a restart marks the widget disconnected."""
    with Notebook.opened(lab, "interrupt") as nb:
        nb.run_all()
        nb.wait_until("the run to start", lambda: nb.status().startswith("running"))
        wait_cell = nb.cell("report = await dashboard.wait()")
        snapshot_cell = nb.cell("snapshot = None")  # the code cell just before the wait
        nb.wait_until(
            "the kernel to reach `await dashboard.wait()`",
            lambda: snapshot_cell.locator(".jp-OutputArea-output").count() > 0,
            timeout=60,
        )
        nb.page.wait_for_timeout(1_000)
        assert nb.status().startswith("running")
        nb.menu("Kernel", "kernelmenu:interrupt")
        nb.interrupted = True
        nb.kernel_idle_within(SHUTDOWN_TIMEOUT + 10)
        nb.wait_until(
            "the run's end and verdict",
            lambda: "finished" in nb.status() and "Zero data loss" in nb.numbers(),
        )
        output = wait_cell.locator(".jp-OutputArea").inner_text()
        assert "Interrupted: the run was stopped and drained" in output, output
        nb.assert_no_errors(except_interrupted=True)
        nb.shot_dashboard("dashboard-interrupted")

        nb.menu("Kernel", "kernelmenu:restart")
        dialog = nb.page.locator(".jp-Dialog")
        dialog.wait_for(state="visible", timeout=10_000)
        dialog.locator("button", has_text=re.compile(r"^Restart$")).click()
        banner = nb.dashboard().locator(".tl-disconnected")
        banner.wait_for(state="visible", timeout=30_000)
        assert "Disconnected: the kernel restarted" in banner.inner_text()
        nb.shot_dashboard("dashboard-disconnected")
        nb.lab.wait_for_kernel(nb.name, "idle", timeout=60)
