"""Chromium for a test (bench/browser.py starts it) and the page's own kind of JSON request."""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any

import pytest

from bench.browser import BrowserMissing, chromium


def make_driver(width: int = 1280, height: int = 900) -> Any:
    """chromium() for a test: skipped where the browser is missing, failed under CI."""
    try:
        return chromium(width, height)
    except BrowserMissing as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


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
