"""A real headless Chromium (Debian's `chromium` + `chromium-driver`) for the browser tests.

`.ci/run` installs both; on a developer machine without them the browser tests skip with the
reason, except under CI (CI=true), where a missing browser is a failure, not a silent skip.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
DRIVER_NAMES = ("chromedriver",)


def _find(names: tuple[str, ...]) -> str | None:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def make_driver(width: int = 1280, height: int = 900) -> Any:
    """A headless Chromium driven through chromedriver; never downloads anything."""
    binary, driver = _find(CHROMIUM_NAMES), _find(DRIVER_NAMES)
    if binary is None or driver is None:
        reason = "no chromium or chromedriver: apt-get install chromium chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:  # pragma: no cover - selenium is in the test extra
        pytest.fail("selenium is missing: pip install '.[test]'")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        f"--window-size={width},{height}",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


@pytest.fixture
def browser() -> Iterator[Any]:
    drv = make_driver()
    try:
        yield drv
    finally:
        drv.quit()
