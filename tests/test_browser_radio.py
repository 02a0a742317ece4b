"""The explorer's Radio view in a real headless Chromium against a real daemon: the chart is
drawn from GET /radio/report and every number on the page is the API's.

The scoreboard is known by construction: radio:control and radio:gravity over three days (day 1:
control 6 skipped of 10, gravity 3 of 10; day 2: 5 of 10 and 2 of 10; day 3: 4 of 8 and 1 of 8),
and radio:oracle with 1 skipped of 4 on day 3.
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from .support import Daemon, tid
from .support.browser import call

pytestmark = [pytest.mark.browser, pytest.mark.process]

WAIT_S = 15
DASH, MINUS = "\u2013", "\u2212"  # what the page prints between bounds and before < 0
# Three whole days ending yesterday, relative to now: hour buckets older than the report's hour
# retention merge into days, so fixed dates would empty the hour view as the calendar moves on.
_TODAY = datetime.now(UTC).date()
DAYS = tuple((_TODAY - timedelta(days=k)).isoformat() for k in (3, 2, 1))
PLAN = {  # (arm, day index) -> (skipped, kept)
    ("radio:control", 0): (6, 4),
    ("radio:gravity", 0): (3, 7),
    ("radio:control", 1): (5, 5),
    ("radio:gravity", 1): (2, 8),
    ("radio:control", 2): (4, 4),
    ("radio:gravity", 2): (1, 7),
    ("radio:oracle", 2): (1, 3),
}


def events() -> list[dict[str, Any]]:
    out = []
    for (arm, day), (skipped, kept) in PLAN.items():
        for i in range(skipped + kept):
            sid = f"{arm}-{day}-{i}"
            at = f"{DAYS[day]}T{10 + i % 8:02d}:{i:02d}:00Z"
            out.append(
                {
                    "session_id": sid,
                    "track_id": tid(f"{arm}{i}"),
                    "event_type": "radio_next",
                    "context": arm,
                    "timestamp": at,
                }
            )
            verdict: dict[str, Any] = (
                {"event_type": "skip", "meta": {"elapsed_ms": 3000}}
                if i < skipped
                else {"event_type": "play_10s"}
            )
            out.append(
                {"session_id": sid, "track_id": tid(f"{arm}{i}"), "timestamp": at, **verdict}
            )
    return out


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(Path(tmp_path_factory.mktemp("radio"))).start()
    try:
        assert call(d.url + "/events", events())["rejected"] == []
        call(d.url + "/admin/fold", {})
        yield d
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.kill()


def wait(driver: Any, cond: Any, timeout: float = WAIT_S) -> Any:
    return WebDriverWait(driver, timeout).until(cond)


def wait_ready(driver: Any, bucket: str) -> None:
    wait(
        driver,
        lambda d: d.execute_script(
            "const v = document.getElementById('radio');"
            "return v.dataset.state === 'ready' && v.dataset.bucket === arguments[0];",
            bucket,
        ),
    )


def open_radio(driver: Any, daemon: Daemon) -> None:
    driver.get("about:blank")  # a fresh page load, not a jump within the same document
    driver.get(f"{daemon.url}/#radio")
    wait_ready(driver, "day")


def api(daemon: Daemon, **query: str) -> dict[str, Any]:
    return call(f"{daemon.url}/radio/report?{urllib.parse.urlencode(query)}")


def drawn_points(driver: Any) -> list[dict[str, Any]]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#radio-chart circle.point')].map(c => ({"
        "context: c.dataset.context, start: c.dataset.start, skipped: +c.dataset.skipped,"
        "kept: +c.dataset.kept, rate: +c.dataset.rate, cy: +c.getAttribute('cy')}))"
    )


def table(driver: Any) -> dict[str, list[str]]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#radio-arms tbody tr")
    return {
        r.get_attribute("data-context"): [td.text for td in r.find_elements(By.TAG_NAME, "td")]
        for r in rows
    }


def test_the_chart_is_drawn_and_the_numbers_match_the_api(drv: Any, daemon: Daemon) -> None:
    open_radio(drv, daemon)
    rep = api(daemon, bucket="day")
    # one line per arm, one point per day with a verdict, carrying the API's numbers
    paths = drv.execute_script(
        "return [...document.querySelectorAll('#radio-chart path.series')]"
        ".map(p => [p.dataset.context, p.getAttribute('d').split(/[ML]/).length - 1])"
    )
    assert paths == [[a["context"], len(a["series"])] for a in rep["arms"]]
    assert [p[1] for p in paths] == [3, 3, 1]
    expected = [
        {"context": a["context"], "start": p["start"], "skipped": p["skipped"], "kept": p["kept"]}
        for a in rep["arms"]
        for p in a["series"]
    ]
    points = drawn_points(drv)
    assert [{k: p[k] for k in ("context", "start", "skipped", "kept")} for p in points] == expected
    rates = [p["skip_rate"] for a in rep["arms"] for p in a["series"]]
    assert [p["rate"] for p in points] == pytest.approx(rates)
    # a higher skip rate is drawn higher (smaller y): control day 1 (0.6) above gravity day 1 (0.3)
    by = {(p["context"], p["start"][:10]): p["cy"] for p in points}
    assert by[("radio:control", DAYS[0])] < by[("radio:gravity", DAYS[0])]
    # the table is the API's totals and Wilson intervals, to 3 decimals
    rows = table(drv)
    for a in rep["arms"]:
        cells = rows[a["context"]]
        assert cells[1:5] == [
            str(a["transitions"]),
            str(a["skipped"]),
            str(a["kept"]),
            f"{a['skip_rate']:.3f}",
        ]
        assert cells[5] == f"{a['ci95'][0]:.3f} {DASH} {a['ci95'][1]:.3f}"
    assert rows["radio:control"][1:4] == ["28", "15", "13"]


def test_the_difference_and_plain_words_match_the_api(drv: Any, daemon: Daemon) -> None:
    open_radio(drv, daemon)
    verdict = drv.find_element(By.ID, "radio-verdict")
    # the first two arms by name are compared: control is a, gravity b
    cmp = api(daemon, bucket="day", arms="radio:control,radio:gravity")["comparison"]
    assert verdict.get_attribute("data-a") == "radio:control"
    assert verdict.get_attribute("data-b") == "radio:gravity"
    assert float(verdict.get_attribute("data-difference")) == pytest.approx(cmp["difference"])
    assert cmp["p_value"] < 0.05  # 15/28 against 6/28
    text = verdict.text
    assert "radio:gravity skips less than radio:control" in text and "significant" in text
    assert f"{MINUS}{abs(cmp['difference']):.3f}" in text
    assert f"{MINUS}{abs(cmp['ci95'][0]):.3f} to {MINUS}{abs(cmp['ci95'][1]):.3f}" in text
    assert verdict.get_attribute("data-significant") == "yes"
    # oracle (1 of 4) against gravity (6 of 28): too few picks to tell
    Select(drv.find_element(By.ID, "radio-a")).select_by_value("radio:gravity")
    Select(drv.find_element(By.ID, "radio-b")).select_by_value("radio:oracle")
    wait(
        drv,
        lambda d: (
            verdict.get_attribute("data-b") == "radio:oracle"
            and verdict.get_attribute("data-a") == "radio:gravity"
        ),
    )
    cmp = api(daemon, arms="radio:gravity,radio:oracle")["comparison"]
    assert cmp["p_value"] > 0.05
    assert verdict.get_attribute("data-significant") == "no"
    assert "No significant difference" in verdict.text
    assert float(verdict.get_attribute("data-difference")) == pytest.approx(cmp["difference"])


def test_hour_buckets(drv: Any, daemon: Daemon) -> None:
    open_radio(drv, daemon)
    Select(drv.find_element(By.ID, "radio-bucket")).select_by_value("hour")
    wait_ready(drv, "hour")
    rep = api(daemon, bucket="hour")
    points = drawn_points(drv)
    assert len(points) == sum(len(a["series"]) for a in rep["arms"]) > 7
    assert {p["start"] for p in points} == {p["start"] for a in rep["arms"] for p in a["series"]}


def test_the_radio_view_loads_nothing_from_elsewhere(drv: Any, daemon: Daemon) -> None:
    drv.get_log("browser")
    open_radio(drv, daemon)
    urls = drv.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).concat([location.href])"
    )
    host = urllib.parse.urlsplit(daemon.url).netloc
    assert all(urllib.parse.urlsplit(u).netloc == host for u in urls), urls
    assert any("/radio/report" in u for u in urls)
    assert [e for e in drv.get_log("browser") if e["level"] == "SEVERE"] == []
