"""Screenshots of the graph explorer for the README, on real listening data.

    python scripts/screenshots.py [--out docs] [--playlists 6000] [--data ../shared/data/yes_small]

Starts a temporary daemon (`python -m gravityd serve` on a free loopback port, its log and
snapshots in a temporary folder), replays the first Yes.com radio playlists into it with
`gravityd simulate --replay`, loads the songs' real titles with `gravityd catalog load --format
yes`, folds, picks the best-connected track and saves `explorer-desktop.png` (1280x900, both
directions, one lane's details shown) and `explorer-phone.png` (390x844) with headless Chromium.
Everything it starts is stopped and removed at the end. Needs `chromium` and `chromedriver`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "yes_small"
DESKTOP = (1280, 900)
PHONE = (390, 844)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gravityd(*args: str) -> str:
    """Run `python -m gravityd ARGS` from the repo; its stdout, or exit with its stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "gravityd", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        sys.exit(f"gravityd {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def http(url: str, method: str = "GET") -> Any:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


class TempDaemon:
    """`python -m gravityd serve` on a free port, with a throwaway log and snapshot folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.db = folder / "events.db"
        self.url = f"http://127.0.0.1:{free_port()}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> TempDaemon:
        port = self.url.rsplit(":", 1)[1]
        err = open(self.folder / "daemon.log", "wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gravityd",
                "serve",
                "--port",
                port,
                "--db",
                str(self.db),
                "--snapshot-dir",
                str(self.folder / "snapshots"),
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "GRAVITYD_LOG_FORMAT": "json"},
        )
        err.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"the daemon exited: {(self.folder / 'daemon.log').read_text()}")
            try:
                http(self.url + "/readyz")
                return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)  # waiting for a child's port: nothing to block on
        sys.exit("the daemon did not become ready in 30 s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def make_driver(width: int, height: int) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not binary or not driver:
        sys.exit("needs chromium and chromedriver (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
    ):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(executable_path=driver), options=opts)
    # the viewport, not the window, is what the screenshot shows: make it exactly width x height
    drv.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )
    return drv


def shoot(url: str, path: Path, size: tuple[int, int], hover_rank: int | None) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    drv = make_driver(*size)
    try:
        drv.get(url)
        wait = WebDriverWait(drv, 20)
        wait.until(
            lambda d: d.find_element(By.ID, "explorer").get_attribute("data-state") == "ready"
        )
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#graph .lane-node"))
        wait.until(lambda d: d.find_element(By.ID, "stats").get_attribute("data-state") == "ready")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#top-tracks a[data-track-id]"))
        if hover_rank is not None:
            nodes = drv.find_elements(By.CSS_SELECTOR, "#graph .lane-node")
            target = nodes[min(hover_rank, len(nodes)) - 1]
            ActionChains(drv).move_to_element(target).perform()
            wait.until(lambda d: d.find_element(By.ID, "tooltip").is_displayed())
        drv.save_screenshot(str(path))
    finally:
        drv.quit()
    print(f"wrote {path} ({size[0]}x{size[1]})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default=str(REPO / "docs"), help="folder for the PNGs (docs)")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="a Yes.com folder (yes_small)")
    p.add_argument("--playlists", type=int, default=6000, help="playlists to replay (6000)")
    p.add_argument("--track", help="centre track id (default: the best-connected one)")
    args = p.parse_args(argv)
    data = Path(args.data)
    if not (data / "train.txt").is_file() or not (data / "song_hash.txt").is_file():
        sys.exit(f"{data} is not a Yes.com folder (train.txt, song_hash.txt)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gravityd-shots-") as tmp, TempDaemon(Path(tmp)) as d:
        print(f"daemon on {d.url}; replaying {args.playlists} playlists of {data}")
        gravityd(
            "simulate", "--replay", str(data), "--url", d.url, "--playlists", str(args.playlists)
        )
        gravityd(
            "catalog", "load", "--format", "yes", str(data / "song_hash.txt"), "--db", str(d.db)
        )
        http(d.url + "/admin/fold", "POST")
        http(d.url + "/admin/snapshot", "POST")  # so the live panel has a snapshot age to show
        track = args.track or http(d.url + "/tracks/top?limit=1")[0]["track_id"]
        base = f"{d.url}/?"
        shoot(
            base + urlencode({"track": track, "limit": 20, "direction": "both"}),
            out / "explorer-desktop.png",
            DESKTOP,
            hover_rank=3,
        )
        shoot(base + urlencode({"track": track}), out / "explorer-phone.png", PHONE, None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
