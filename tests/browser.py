"""A real headless Chromium (Debian's `chromium` + `chromium-driver`) for the browser tests.

`.ci/run` installs both; on a developer machine without them the browser tests skip with the
reason, except under CI (CI=true), where a missing browser is a failure, not a silent skip.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
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


def make_driver(width: int = 1280, height: int = 900) -> Any:
    """chromium() for a test: skipped where the browser is missing, failed under CI."""
    try:
        return chromium(width, height)
    except BrowserMissing as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture
def browser() -> Iterator[Any]:
    drv = make_driver()
    try:
        yield drv
    finally:
        drv.quit()


def call(url: str, body: Any = None) -> Any:
    """A JSON request the way the page's own fetches make it: GET, or POST with a JSON body."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url,
        data=data,
        method="GET" if body is None else "POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())
