"""Screenshots of the graph explorer for docs/explorer.md, on real listening data.

    python -m scripts.screenshots --data DIR [--out docs] [--playlists 6000]

Starts a temporary daemon (`python -m gravityd serve` on a free loopback port, its log and
snapshots in a temporary folder), replays the first Yes.com radio playlists into it with
`gravityd simulate --replay`, loads the songs' real titles with `gravityd catalog load --format
yes`, folds, picks the best-connected track and saves `explorer-desktop.png` (1280x900, both
directions, one lane's details shown), `explorer-phone.png` (390x844) and `map.png` (the Map
view: every galaxy, docs/galaxies.md) with headless Chromium, and prints what the biggest
galaxies hold (their most common artist and tags; `--map-only` skips the explorer pictures).
Everything it starts is stopped and removed at the end. Needs `chromium` and `chromedriver`.
The pictures in docs/ use `yes_small` from the authors' data page (docs/evaluation.md, "Real
playlists: Yes.com radio"); without --data it uses the small generated tests/data/yes_sample.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.browser import BrowserMissing, chromium
from bench.common import http_get_json, http_post_json, serve
from gravityd.lab.yes import load_yes, track_uuid

REPO = Path(__file__).resolve().parent.parent

DEFAULT_DATA = REPO / "tests" / "data" / "yes_sample"
DESKTOP = (1280, 900)
PHONE = (390, 844)


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


def make_driver(width: int, height: int) -> Any:
    try:
        drv = chromium(width, height, "--hide-scrollbars")
    except BrowserMissing as exc:
        sys.exit(str(exc))
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


def shoot_map(url: str, path: Path) -> None:
    """The Map view, as a picture of its card."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    drv = make_driver(*DESKTOP)
    try:
        drv.get(url + "/#map")
        WebDriverWait(drv, 60).until(
            lambda d: d.find_element(By.ID, "map").get_attribute("data-state") == "ready"
        )
        drv.find_element(By.CSS_SELECTOR, "#map .radio-card").screenshot(str(path))
    finally:
        drv.quit()
    print(f"wrote {path}")


def describe_galaxies(url: str, data: Path, top: int = 8) -> None:
    """What the biggest galaxies hold: their most common artist and tags (tags.txt), beside the
    share those tags have in the whole catalogue."""
    ds = load_yes(data)
    index = {track_uuid(i): i for i in range(ds.n_songs)}
    tag_names = {}
    tag_file = data / "tag_hash.txt"
    if tag_file.is_file():
        for line in tag_file.read_text(encoding="utf-8").splitlines():
            k, _, name = line.partition(",")
            if k.strip().isdigit():
                tag_names[int(k)] = name.strip()
    everywhere = Counter(t for tags in ds.tags for t in tags)
    page = http_get_json(f"{url}/galaxies?limit={top}")
    print(f"{page['count']} galaxies at cursor {page['cursor']}")
    print("galaxy | size | most common artist (share) | top tags (share in galaxy / catalogue)")
    for g in page["galaxies"]:
        detail = http_get_json(f"{url}/galaxies/{g['galaxy']}?limit=1000")
        tracks = detail["tracks"]
        artists = Counter(t["artist"] for t in tracks if t["artist"])
        artist, n = artists.most_common(1)[0] if artists else ("-", 0)
        songs = [index[t["track_id"]] for t in tracks if t["track_id"] in index]
        tags = Counter(t for s in songs for t in ds.tags[s])
        shown = ", ".join(
            f"{tag_names.get(t, t)} ({c / len(songs):.0%} / {everywhere[t] / ds.n_songs:.0%})"
            for t, c in tags.most_common(3)
        )
        print(f"{g['galaxy']} | {g['size']} | {artist} ({n / len(tracks):.0%}) | {shown}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default=str(REPO / "docs"), help="folder for the PNGs (docs)")
    p.add_argument(
        "--data", default=str(DEFAULT_DATA), help="a Yes.com folder (docs/evaluation.md: yes_small)"
    )
    p.add_argument("--playlists", type=int, default=6000, help="playlists to replay (6000)")
    p.add_argument("--track", help="centre track id (default: the best-connected one)")
    p.add_argument("--map-only", action="store_true", help="only map.png and the galaxies")
    args = p.parse_args(argv)
    data = Path(args.data)
    if not (data / "train.txt").is_file() or not (data / "song_hash.txt").is_file():
        sys.exit(f"{data} is not a Yes.com folder (train.txt, song_hash.txt)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gravityd-shots-") as tmp:
        db = Path(tmp) / "events.db"
        with serve(db, Path(tmp) / "snapshots", timeout=30) as d:
            print(f"daemon on {d.url}; replaying {args.playlists} playlists of {data}")
            gravityd(
                "simulate",
                "--replay",
                str(data),
                "--url",
                d.url,
                "--playlists",
                str(args.playlists),
            )
            gravityd(
                "catalog", "load", "--format", "yes", str(data / "song_hash.txt"), "--db", str(db)
            )
            http_post_json(d.url + "/admin/fold")
            # so the live panel shows a snapshot age, and the galaxies reflect every lane
            http_post_json(d.url + "/admin/snapshot")
            shoot_map(d.url, out / "map.png")
            describe_galaxies(d.url, data)
            if args.map_only:
                return 0
            track = args.track or http_get_json(d.url + "/tracks/top?limit=1")[0]["track_id"]
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
