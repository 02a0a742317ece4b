"""A real headless Chromium (Debian's `chromium` + `chromium-driver`), never downloaded.

The browser tests (through tests/support/browser.py, which skips or fails when it is missing)
and scripts/screenshots.py both start it here; `.ci/run` installs both packages.
"""

from __future__ import annotations

import shutil
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
DRIVER_NAMES = ("chromedriver",)


def _find(names: tuple[str, ...]) -> str | None:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserMissing(RuntimeError):
    """Debian's chromium or chromedriver is not installed."""


def chromium(width: int = 1280, height: int = 900, *extra_args: str) -> Any:
    """A headless Chromium driven through chromedriver; never downloads anything.

    Shared by the browser tests and scripts/screenshots.py; raises BrowserMissing."""
    binary, driver = _find(CHROMIUM_NAMES), _find(DRIVER_NAMES)
    if binary is None or driver is None:
        raise BrowserMissing("no chromium/chromedriver: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

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
        *extra_args,
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)
