"""The live dashboard, in a real JupyterLab, in a real browser (Debian's Chromium).

Starts `jupyter lab` on 127.0.0.1 (random port, a token) over a temporary copy of the
notebooks, opens notebook 08 in Chromium driven by Playwright, runs all cells without
waiting for them, and checks that the dashboard's image appears and changes, that its
counters increase, and that no cell shows an error. A screenshot is saved to
`build/test-artifacts/dashboard.png`. Playwright never downloads a browser here: it
launches `/usr/bin/chromium`. Without Chromium the test skips with install instructions,
except under CI=true, where a missing browser is a failure.
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
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("TELEMETRY_LAB_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = ROOT / "build" / "test-artifacts"
CHROMIUM_FLAGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [pytest.mark.browser, pytest.mark.timeout(480)]


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


def api(base: str, token: str, path: str, method: str = "GET") -> object:
    request = urllib.request.Request(
        f"{base}{path}", method=method, headers={"Authorization": f"token {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # loopback only
        body = response.read()
    return json.loads(body) if body else None


@pytest.fixture
def jupyter_lab(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Run JupyterLab over a copy of the notebooks; yield (base URL, token)."""
    require_chromium()
    root = tmp_path / "lab"
    shutil.copytree(ROOT / "notebooks", root)
    port, token = free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "TELEMETRY_LAB_FAST": "0",  # the full-length dashboard demo: time to watch it
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
        yield base, token
    finally:
        with contextlib.suppress(OSError):
            for kernel in api(base, token, "/api/kernels") or []:  # type: ignore[union-attr]
                api(base, token, f"/api/kernels/{kernel['id']}", method="DELETE")
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()


def wait_for_idle_kernel(base: str, token: str, notebook: str, timeout: float) -> None:
    """Poll the server's sessions until `notebook` has a kernel in the idle state."""
    deadline = time.monotonic() + timeout
    states: list[str] = []
    while time.monotonic() < deadline:
        for session in api(base, token, "/api/sessions") or []:  # type: ignore[union-attr]
            if session["path"].endswith(notebook):
                states.append(session["kernel"]["execution_state"])
                if states[-1] == "idle":
                    return
        time.sleep(0.5)
    pytest.fail(f"the kernel of {notebook} never became idle; states seen: {states[-5:]}")


def produced_count(numbers_text: str) -> int | None:
    match = re.search(r"produced\s*(\d+)", numbers_text)
    return int(match.group(1)) if match else None


def test_the_dashboard_runs_live_in_jupyterlab(jupyter_lab: tuple[str, str]) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
    from playwright.sync_api import sync_playwright

    base, token = jupyter_lab
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{base}/lab/tree/08_live_dashboard.ipynb?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            # Wait until the server says the notebook's kernel is up and idle: a cold machine
            # takes a while to start its first kernel.
            wait_for_idle_kernel(base, token, "08_live_dashboard.ipynb", timeout=240)
            # Run > Run All Cells, as a person would.
            page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
            page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()
            # If the kernel was still connecting, JupyterLab asks which one: the default.
            dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
            with contextlib.suppress(PlaywrightTimeoutError):
                dialog.wait_for(state="visible", timeout=3_000)
                dialog.locator("button", has_text=re.compile(r"^Select$")).click()

            image = page.locator(".jp-OutputArea img.widget-image").first
            image.wait_for(state="visible", timeout=180_000)
            sources: list[str] = []
            counts: list[int] = []
            numbers = page.locator(".jp-OutputArea .widget-html", has_text="produced").first
            text = ""
            # Watch for ~12 s (the notebook turns a knob at 5 s: backpressure builds after).
            watch_until = time.monotonic() + 12
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                src = image.get_attribute("src") or ""
                if src and (not sources or src != sources[-1]):
                    sources.append(src)
                text = numbers.inner_text() if numbers.count() else ""
                count = produced_count(text)
                if count is not None and (not counts or count != counts[-1]):
                    counts.append(count)
                if len(sources) >= 3 and len(counts) >= 3 and time.monotonic() > watch_until:
                    break
                page.wait_for_timeout(250)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            image.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
            image.screenshot(path=str(ARTIFACTS / "dashboard-image.png"))

            assert len(sources) >= 3, f"the dashboard image did not change: {sources!r}"
            assert len(counts) >= 3, f"the counters did not move: {counts!r} in {text!r}"
            assert counts == sorted(counts), f"produced went backwards: {counts!r}"
            natural = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
            assert natural[0] > 300, natural
            assert natural[1] > 200, natural
            errors = page.locator("[data-mime-type='application/vnd.jupyter.error']")
            assert errors.count() == 0, errors.first.inner_text()
        except BaseException:
            # Leave evidence for whoever reads the CI log: what the page looked like.
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
            (ARTIFACTS / "failure.html").write_text(page.content(), encoding="utf-8")
            raise
        finally:
            browser.close()
