"""Drive a real JupyterLab in Debian's Chromium, as a person does: the browser tests' tools.

One JupyterLab server (127.0.0.1, a random port and token) serves a temporary copy of the
notebooks for the whole session (`conftest.py` makes it the `lab` fixture); each test opens
its own copy of a notebook (its own kernel and workspace) in Chromium driven by Playwright
and does what a learner does: Run All, click buttons, drag sliders, re-run cells, interrupt
and restart the kernel. Screenshots go to `build/test-artifacts/` (the README shows some of
them, copied to `docs/`). Playwright never downloads a browser here: it launches
`/usr/bin/chromium`. Without Chromium the tests skip with install instructions, except
under CI=true, where a missing browser is a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("TELEMETRY_LAB_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = ROOT / "build" / "test-artifacts"
NOTEBOOK = "12_live_dashboard.ipynb"
SHUTDOWN_TIMEOUT = 5.0  # notebook 12 runs the default GatewayConfig.shutdown_timeout
CHROMIUM_FLAGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = (
        f"Chromium not found at {CHROMIUM}. Install Debian's browser with "
        "`sudo apt-get install chromium` (or set TELEMETRY_LAB_CHROMIUM to its path)."
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message + " CI must run the browser test.")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api(base: str, token: str, path: str, method: str = "GET") -> Any:
    request = urllib.request.Request(
        f"{base}{path}", method=method, headers={"Authorization": f"token {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # loopback only
        body = response.read()
    return json.loads(body) if body else None


@dataclass
class Lab:
    """A running JupyterLab server."""

    base: str
    token: str
    root: Path

    def kernel_state(self, notebook: str) -> str | None:
        for session in api(self.base, self.token, "/api/sessions") or []:
            if session["path"].endswith(notebook):
                return str(session["kernel"]["execution_state"])
        return None

    def wait_for_kernel(
        self, notebook: str, state: str, timeout: float, *, steady: float = 0.0
    ) -> float:
        """Wait until `notebook`'s kernel is in `state`; return the seconds it took.

        With `steady`, the state must hold that long: during Run All the kernel is idle
        for a few milliseconds between two cells, which a poll can catch.
        """
        started = time.monotonic()
        seen: list[str | None] = []
        since: float | None = None
        while time.monotonic() - started < timeout:
            seen.append(self.kernel_state(notebook))
            now = time.monotonic()
            if seen[-1] != state:
                since = None
            else:
                since = now if since is None else since
                if now - since >= steady:
                    return since - started
            time.sleep(0.25)
        pytest.fail(f"the kernel of {notebook} never became {state}; states seen: {seen[-5:]}")


def serve_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Run JupyterLab over a copy of the notebooks (the `lab` fixture of conftest.py)."""
    require_chromium()
    tmp_path = tmp_path_factory.mktemp("jupyterlab")
    root = tmp_path / "lab"
    shutil.copytree(ROOT / "notebooks", root)
    port, token = free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "TELEMETRY_LAB_FAST": "0",  # the full-length dashboard demo: time to use it
        "PYTHONFAULTHANDLER": "1",  # a kernel that crashes prints its threads' stacks
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
    }
    # JupyterLab reads user settings from JUPYTERLAB_SETTINGS_DIR: no "news" pop-up over
    # the page, and every cell stays in the page (no windowing of off-screen cells).
    settings = {
        "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
        "notebook-extension/tracker": {"windowingMode": "none"},
    }
    for name, values in settings.items():
        path = tmp_path / "settings" / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    log = (tmp_path / "jupyter.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "jupyter", "lab", "--no-browser",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            "--ServerApp.port_retries=0", "--LabApp.news_url=",
            *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                api(base, token, "/api/status")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    text = (tmp_path / "jupyter.log").read_text()
                    pytest.fail(f"JupyterLab did not start:\n{text[-3000:]}")
                time.sleep(0.5)
        yield Lab(base=base, token=token, root=root)
    finally:
        with contextlib.suppress(OSError):
            for kernel in api(base, token, "/api/kernels") or []:
                api(base, token, f"/api/kernels/{kernel['id']}", method="DELETE")
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()


class Notebook:
    """A notebook open in a Chromium page, with what a person does to it."""

    def __init__(self, page: Any, lab: Lab, name: str) -> None:
        self.page = page
        self.lab = lab
        self.name = name
        self.interrupted = False
        """Set by a test that interrupts a cell: that cell's CancelledError is expected."""

    @classmethod
    @contextlib.contextmanager
    def opened(cls, lab: Lab, scenario: str, source: str = NOTEBOOK) -> Iterator[Notebook]:
        """Open a copy of `source` (a notebook in the lab's folder) named `scenario`."""
        from playwright.sync_api import sync_playwright

        name = f"{scenario}.ipynb"
        shutil.copy(lab.root / source, lab.root / name)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            notebook = cls(page, lab, name)
            try:
                # A workspace of its own: JupyterLab would reopen the other tests' notebooks.
                page.goto(f"{lab.base}/lab/workspaces/{scenario}/tree/{name}?token={lab.token}")
                page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
                # A cold machine takes a while to start its first kernel: wait for it.
                lab.wait_for_kernel(name, "idle", timeout=240)
                yield notebook
                notebook.assert_no_errors(except_interrupted=notebook.interrupted)
            except BaseException:
                notebook.shot(f"{scenario}-failure", full_page=True)
                (ARTIFACTS / f"{scenario}-failure.html").write_text(
                    page.content(), encoding="utf-8"
                )
                # The server's log says whether the kernel died (pytest shows it on failure).
                server_log = lab.root.parent / "jupyter.log"
                text = server_log.read_text(errors="replace") if server_log.exists() else ""
                print(f"--- the end of {server_log} ---\n{text[-6000:]}")
                raise
            finally:
                browser.close()

    # --- what a person does -----------------------------------------------------------------

    def menu(self, menu: str, command: str) -> None:
        self.page.locator(".lm-MenuBar-item", has_text=re.compile(rf"^{menu}$")).click()
        self.page.locator(f".lm-Menu-item[data-command='{command}']").click()

    def run_all(self) -> None:
        from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

        self.menu("Run", "runmenu:run-all")
        # If the kernel was still connecting, JupyterLab asks which one: the default.
        dialog = self.page.locator(".jp-Dialog", has_text="Select Kernel")
        with contextlib.suppress(PlaywrightTimeoutError):
            dialog.wait_for(state="visible", timeout=2_000)
            dialog.locator("button", has_text=re.compile(r"^Select$")).click()

    def cell(self, starts_with: str) -> Any:
        """The code cell whose source starts with `starts_with`."""
        cells = self.page.locator(".jp-NotebookPanel:visible .jp-CodeCell")
        for i in range(cells.count()):
            text = cells.nth(i).locator(".jp-InputArea-editor").inner_text()
            if text.lstrip().startswith(starts_with):
                return cells.nth(i)
        raise AssertionError(f"no cell starting with {starts_with!r}")

    def run_cell(self, starts_with: str) -> None:
        """Click into the cell and press Shift+Enter, as a person re-runs one."""
        cell = self.cell(starts_with)
        cell.scroll_into_view_if_needed()
        cell.locator(".jp-InputPrompt").click()  # select the cell (command mode)
        self.page.keyboard.press("Shift+Enter")

    def dashboard(self, which: int = -1) -> Any:
        """The `which`-th dashboard widget shown in the notebook (default: the newest)."""
        widgets = self.page.locator(
            ".jp-NotebookPanel:visible .jp-OutputArea .widget-vbox:has(.tl-status)"
        )
        widgets.first.wait_for(state="visible", timeout=180_000)
        return widgets.nth(which if which >= 0 else widgets.count() - 1)

    def status(self, which: int = -1) -> str:
        return str(self.dashboard(which).locator(".tl-status").inner_text())

    def numbers(self, which: int = -1) -> str:
        return str(self.dashboard(which).locator(".tl-numbers").inner_text())

    def button(self, label: str, which: int = -1) -> Any:
        return self.dashboard(which).locator("button", has_text=re.compile(rf"^{label}$"))

    def image_src(self, which: int = -1) -> str:
        return str(self.dashboard(which).locator("img.widget-image").get_attribute("src") or "")

    def wait_until(self, what: str, check: Any, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            self.page.wait_for_timeout(250)
        raise AssertionError(f"timed out waiting for {what}: status {self.status()!r}")

    def wait_for_frames(self, count: int = 3, which: int = -1) -> None:
        """Wait until the dashboard's image has changed `count` times (frames arriving)."""
        seen: list[str] = []

        def changed() -> bool:
            src = self.image_src(which)
            if src and (not seen or src != seen[-1]):
                seen.append(src)
            return len(seen) >= count

        self.wait_until(f"{count} new frames", changed)

    def drag_slider_to_the_end(self, description: str) -> None:
        """Drag a slider's handle with the mouse to the right end of its track."""
        slider = self.dashboard().locator(".widget-slider", has_text=description)
        slider.scroll_into_view_if_needed()  # Run All scrolled the page to its last cell
        handle = slider.locator(".noUi-handle").first
        track = slider.locator(".noUi-target, .slider-container").first
        box, end = handle.bounding_box(), track.bounding_box()
        assert box is not None
        assert end is not None
        mouse = self.page.mouse
        mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        mouse.down()
        mouse.move(end["x"] + end["width"] + 20, box["y"] + box["height"] / 2, steps=12)
        mouse.up()

    # --- what a person sees ------------------------------------------------------------------

    def shot(self, name: str, *, full_page: bool = False) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)

    def shot_dashboard(self, name: str, which: int = -1) -> None:
        widget = self.dashboard(which)
        widget.scroll_into_view_if_needed()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        widget.screenshot(path=str(ARTIFACTS / f"{name}.png"))

    def errors(self) -> list[str]:
        outputs = self.page.locator("[data-mime-type='application/vnd.jupyter.error']")
        return [outputs.nth(i).inner_text()[:500] for i in range(outputs.count())]

    def assert_no_errors(self, *, except_interrupted: bool = False) -> None:
        errors = self.errors()
        if except_interrupted:
            errors = [e for e in errors if "CancelledError" not in e]
        assert errors == [], errors

    def kernel_idle_within(self, seconds: float) -> float:
        """Wait until the kernel has finished everything queued (idle for a whole second)."""
        return self.lab.wait_for_kernel(self.name, "idle", timeout=seconds, steady=1.0)
