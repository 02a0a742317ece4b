"""The explorer's Map and Route views in a real headless Chromium against a real daemon: every
dot is a track of a galaxy the API names, coloured by its galaxy, titled from the catalogue; a
click opens the track's lanes; the Route view draws the API's path; nothing comes from elsewhere.
"""

from __future__ import annotations

import random
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from .support import Daemon, run_cli, tid
from .support.browser import call

pytestmark = [pytest.mark.browser, pytest.mark.process]

WAIT_S = 20
GROUPS, SIZE = 3, 6


def track(g: int, i: int) -> str:
    return tid(f"map-g{g}-{i}")


def sessions() -> list[dict[str, Any]]:
    """Listeners who stay inside one group of tracks (a crossing now and then)."""
    rnd = random.Random(3)
    out = []
    for s in range(90):
        g, here = s % GROUPS, rnd.randrange(SIZE)
        for step in range(7):
            if step == 3 and s % 15 == 0:
                g = (g + 1) % GROUPS
            here = (here + rnd.choice((1, 2))) % SIZE
            out.append(
                {"session_id": f"m{s}", "track_id": track(g, here), "event_type": "play_10s"}
            )
    return out


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = Path(tmp_path_factory.mktemp("map"))
    d = Daemon(tmp).start()
    try:
        assert call(d.url + "/events", sessions())["rejected"] == []
        catalog = tmp / "catalog.csv"
        rows = ["track_id,title,artist"]
        rows += [f"{track(g, i)},Song {g}-{i},Band {g}" for g in range(GROUPS) for i in range(SIZE)]
        catalog.write_text("\n".join(rows) + "\n")
        loaded = run_cli("catalog", "load", str(catalog), "--db", str(d.db))
        assert loaded.returncode == 0, loaded.stderr
        call(d.url + "/admin/fold", {})
        call(d.url + "/admin/snapshot", {})  # brings the galaxies up to the lanes
        yield d
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.kill()


def wait(driver: Any, cond: Any) -> Any:
    return WebDriverWait(driver, WAIT_S).until(cond)


def open_map(driver: Any, daemon: Daemon) -> None:
    driver.get("about:blank")
    driver.get(f"{daemon.url}/#map")
    wait(driver, lambda d: d.find_element(By.ID, "map").get_attribute("data-state") == "ready")


def dots(driver: Any) -> list[dict[str, Any]]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#map-chart circle.map-dot')].map(c => ({"
        "track: c.dataset.trackId, galaxy: Number(c.dataset.galaxy),"
        "centrality: Number(c.dataset.centrality), fill: c.getAttribute('fill'),"
        "r: Number(c.getAttribute('r'))}))"
    )


def test_the_map_draws_every_galaxy_the_api_names(drv: Any, daemon: Daemon) -> None:
    open_map(drv, daemon)
    page = call(f"{daemon.url}/galaxies")
    assert page["count"] == GROUPS
    drawn = dots(drv)
    expected = {}
    for g in page["galaxies"]:
        detail = call(f"{daemon.url}/galaxies/{g['galaxy']}?limit=400")
        for t in detail["tracks"]:
            expected[t["track_id"]] = (g["galaxy"], t["centrality"])
    assert {d["track"]: (d["galaxy"], d["centrality"]) for d in drawn} == expected
    # one colour per galaxy, a different one for each; a more central track is drawn bigger
    fills = {d["galaxy"]: {x["fill"] for x in drawn if x["galaxy"] == d["galaxy"]} for d in drawn}
    assert all(len(f) == 1 for f in fills.values())
    assert len({next(iter(f)) for f in fills.values()}) == GROUPS
    ordered = sorted(drawn, key=lambda d: d["centrality"])
    assert ordered[0]["r"] <= ordered[-1]["r"]


def test_hover_titles_and_click_opens_the_lanes(drv: Any, daemon: Daemon) -> None:
    open_map(drv, daemon)
    dot = drv.find_element(By.CSS_SELECTOR, "#map-chart circle.map-dot")
    trk = dot.get_attribute("data-track-id")
    ActionChains(drv).move_to_element(dot).perform()
    tip = drv.find_element(By.ID, "map-tip")
    wait(drv, lambda d: tip.is_displayed() and "Song " in tip.text)
    dot.click()
    wait(drv, lambda d: urllib.parse.urlsplit(d.current_url).query == f"track={trk}")
    wait(drv, lambda d: d.find_element(By.ID, "graph").get_attribute("data-track-id") == trk)


def test_the_route_view_shows_the_api_s_path(drv: Any, daemon: Daemon) -> None:
    open_map(drv, daemon)
    a, b = track(0, 0), track(0, 4)
    want = call(f"{daemon.url}/route?from={a}&to={b}")
    drv.find_element(By.ID, "route-from").send_keys(a)
    drv.find_element(By.ID, "route-to").send_keys(b)
    drv.find_element(By.ID, "route-go").click()
    status = drv.find_element(By.ID, "route-status")
    wait(drv, lambda d: status.get_attribute("data-state") == "ready")
    rows = drv.execute_script(
        "return [...document.querySelectorAll('#route-hops tbody tr')]"
        ".map(r => [r.dataset.trackId, r.dataset.score])"
    )
    assert [r[0] for r in rows] == want["path"]
    assert [float(r[1]) for r in rows[1:]] == pytest.approx(want["scores"], abs=5e-4)
    assert f"{want['hops']} hop" in status.text

    drv.find_element(By.ID, "route-to").clear()
    drv.find_element(By.ID, "route-to").send_keys(tid("nowhere"))
    drv.find_element(By.ID, "route-go").click()
    wait(drv, lambda d: status.get_attribute("data-state") == "none")
    assert status.text.startswith("No route")


def test_the_map_loads_nothing_from_elsewhere(drv: Any, daemon: Daemon) -> None:
    drv.get_log("browser")
    open_map(drv, daemon)
    urls = drv.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).concat([location.href])"
    )
    host = urllib.parse.urlsplit(daemon.url).netloc
    assert all(urllib.parse.urlsplit(u).netloc == host for u in urls), urls
    assert any("/galaxies" in u for u in urls)
    assert [e for e in drv.get_log("browser") if e["level"] == "SEVERE"] == []
