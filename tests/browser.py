"""Headless Chromium for the browser tests: Debian's ``chromium`` driven by Playwright (its own browser
download never runs; the network is closed). ``make test`` installs both. Screenshots go to
``$RH_ARTIFACTS`` (default ``.test-artifacts/``), kept as the tests' artifacts."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("RH_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("RH_ARTIFACTS", Path(__file__).resolve().parent.parent / ".test-artifacts"))
TIMEOUT_MS = 15_000  # two cores shared with other pytest processes


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium per test module. Without it: fails under ``RH_REQUIRE_SERVICES`` (CI), else skips
    naming what to install."""
    if shutil.which(CHROMIUM) is None:
        if os.environ.get("RH_REQUIRE_SERVICES"):
            pytest.fail(
                f"{CHROMIUM} is missing and RH_REQUIRE_SERVICES is set (make test installs chromium as root)"
            )
        pytest.skip(
            f"{CHROMIUM} is missing: apt-get install chromium fonts-liberation (make test does, as root)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--disable-gpu"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    try:
        yield tab
    finally:
        context.close()  # before the server stops: an open event stream would hold its shutdown


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as ``ARTIFACTS/screenshots/NAME.png``; returns its path."""
    path = ARTIFACTS / "screenshots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path
