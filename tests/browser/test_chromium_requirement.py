"""Without Chromium the browser test skips on a laptop but fails in CI."""

from __future__ import annotations

from pathlib import Path

import lab_driver as browser_test
import pytest


def test_missing_chromium_fails_under_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(browser_test, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"CI must run the browser test\.$"):
        browser_test.require_chromium()


def test_missing_chromium_skips_with_install_instructions_elsewhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(browser_test, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"sudo apt-get install chromium"):
        browser_test.require_chromium()


def test_present_chromium_is_accepted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "chromium"
    fake.write_text("")
    monkeypatch.setattr(browser_test, "CHROMIUM", fake)
    monkeypatch.setenv("CI", "true")
    browser_test.require_chromium()  # no skip, no failure
