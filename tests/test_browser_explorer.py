"""The graph explorer (GET /) in a real headless Chromium against a real daemon.

One daemon and one desktop browser serve the whole module. The graph is known by construction:

    A -> B kept 4 times, A -> C twice, A -> D once, A -> E skipped at 0.5 s twice (rejected),
    F -> A kept 3 times (an in-lane of A), B -> G kept twice, H -> X1..X7 once each.

The catalogue names A, B, C, E, F and H; D, G and the X tracks stay unknown (short ids).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from .support import Daemon, run_cli, tid
from .support.browser import call, make_driver

pytestmark = [pytest.mark.browser, pytest.mark.process]

A, B, C, D, E, F, G, H = (tid(n) for n in "ABCDEFGH")
XS = [tid(f"X{i}") for i in range(1, 8)]
CATALOG = {
    A: ("Alpha Song", "Artist One"),
    B: ("Bravo", "Artist Two"),
    C: ("Charlie, Live", "The Cs"),
    E: ("Echo", "Skipper"),
    F: ("Foxtrot", "Artist Six"),
    H: ("Hub", "Many Lanes"),
}
WAIT_S = 15


def ev(sid: str, track: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"session_id": sid, "track_id": track, "event_type": kind, **extra}


def two_step(sid: str, first: str, second: str, verdict: str = "play_10s") -> list[dict]:
    """A session that plays `first`, then `second` with the verdict."""
    out = [ev(sid, first, "play_start"), ev(sid, first, "play_10s"), ev(sid, second, "play_start")]
    if verdict == "skip":
        out.append(ev(sid, second, "skip", meta={"elapsed_ms": 500}))
    else:
        out.append(ev(sid, second, verdict))
    return out


def known_graph() -> list[dict]:
    events: list[dict] = []
    for i in range(4):
        events += two_step(f"ab{i}", A, B)
    for i in range(2):
        events += two_step(f"ac{i}", A, C)
    events += two_step("ad", A, D)
    for i in range(2):
        events += two_step(f"ae{i}", A, E, "skip")
    for i in range(3):
        events += two_step(f"fa{i}", F, A)
    for i in range(2):
        events += two_step(f"bg{i}", B, G)
    for i, x in enumerate(XS):
        events += two_step(f"hx{i}", H, x)
    return events


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("explorer")
    # The page is tested on a known set of lanes: one hop only (the read-time terms off).
    one_hop = {"GRAVITYD_LANES_TWO_HOP": "0", "GRAVITYD_LANES_BACKWARD_CREDIT": "0"}
    d = Daemon(tmp, env=one_hop).start()
    try:
        accepted = call(d.url + "/events", known_graph())
        assert accepted["rejected"] == [], accepted
        catalog = tmp / "catalog.csv"
        lines = ["track_id,title,artist"]
        lines += [f'{t},"{title}",{artist}' for t, (title, artist) in CATALOG.items()]
        catalog.write_text("\n".join(lines) + "\n")
        loaded = run_cli("catalog", "load", str(catalog), "--db", str(d.db))
        assert loaded.returncode == 0, loaded.stderr
        call(d.url + "/admin/fold", {})
        yield d
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.kill()


def wait(driver: Any, cond: Callable[[Any], Any], timeout: float = WAIT_S) -> Any:
    return WebDriverWait(driver, timeout).until(cond)


def page_state(driver: Any) -> tuple[str | None, str | None]:
    return tuple(
        driver.execute_script(
            "const m = document.getElementById('explorer');"
            "return [m.dataset.state, m.dataset.trackId];"
        )
    )


def wait_track(driver: Any, track: str, state: str = "ready") -> None:
    wait(driver, lambda d: page_state(d) == (state, track))


def open_page(
    driver: Any, daemon: Daemon, track: str | None = None, state: str = "ready", **params: str
) -> None:
    """Load /?track=...&params and wait until the page shows that track in `state`."""
    query = {"track": track, **params} if track else params
    driver.get(f"{daemon.url}/?{urllib.parse.urlencode(query)}")
    if track:
        wait_track(driver, track, state)
    else:
        wait(driver, lambda d: page_state(d)[0] == "idle")


def track_ids(driver: Any, selector: str) -> list[str]:
    """The data-track-id of every match, read in one script call: the page may be re-rendering
    while a wait polls, and element handles from an earlier call would be stale."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.dataset.trackId)",
        selector,
    )


def rows(driver: Any) -> list[str]:
    return track_ids(driver, "#lanes tbody tr[data-track-id]")


def graph_nodes(driver: Any) -> list[str]:
    return track_ids(driver, "#graph .lane-node")


def url_params(driver: Any) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(driver.current_url).query))


def node(driver: Any, track: str) -> Any:
    return driver.find_element(By.CSS_SELECTOR, f'#graph .lane-node[data-track-id="{track}"]')


def test_lanes_in_strength_order_with_titles(drv: Any, daemon: Daemon) -> None:
    open_page(drv, daemon, A)
    assert rows(drv) == [B, C, D]  # E was skipped away: not a lane
    assert graph_nodes(drv) == [B, C, D]
    assert drv.find_element(By.ID, "center-title").text == "Alpha Song — Artist One"
    assert drv.find_element(By.ID, "center-id").text == A
    assert drv.find_element(By.ID, "center-counts").text == "3 out · 1 in"
    assert drv.find_element(By.CSS_SELECTOR, "#graph").get_attribute("data-track-id") == A
    titles = [
        a.text.split("\n")[0] for a in drv.find_elements(By.CSS_SELECTOR, "#lanes tbody td.track a")
    ]
    assert titles == ["Bravo", "Charlie, Live", D[:8]]  # D is not in the catalogue
    # scores as the server computed them: the top lane is 1.00, then weaker, monotone
    scores = [
        float(td.text.split()[-1])
        for td in drv.find_elements(By.CSS_SELECTOR, "#lanes tbody td.score")
    ]
    assert scores[0] == 1.0 and scores[0] > scores[1] > scores[2] > 0
    assert "Alpha Song" in drv.title
    # thicker line for the stronger lane
    widths = {
        line.get_attribute("data-track-id"): float(line.get_attribute("stroke-width"))
        for line in drv.find_elements(By.CSS_SELECTOR, "#graph line.lane")
    }
    assert widths[B] > widths[C] > widths[D]


def test_hover_and_focus_show_the_lane_evidence(drv: Any, daemon: Daemon) -> None:
    open_page(drv, daemon, A)
    (lane_b,) = [
        lane for lane in call(f"{daemon.url}/tracks/{A}/gravity_neighbors") if lane["track_id"] == B
    ]
    ActionChains(drv).move_to_element(node(drv, B)).perform()
    tip = drv.find_element(By.ID, "tooltip")
    wait(drv, lambda d: tip.is_displayed() and tip.get_attribute("data-track-id") == B)
    text = tip.text
    assert "Bravo" in text and "Artist Two" in text
    facts = dict(
        zip(
            [dt.text for dt in tip.find_elements(By.TAG_NAME, "dt")],
            [dd.text for dd in tip.find_elements(By.TAG_NAME, "dd")],
            strict=True,
        )
    )
    assert facts["direction"] == "out"
    assert float(facts["weight"]) == pytest.approx(lane_b["weight"], abs=1e-3)
    assert float(facts["normalized score"]) == 1.0
    pos, neg = (float(x) for x in facts["pos / neg"].split(" / "))
    assert pos == pytest.approx(lane_b["evidence"]["pos"], abs=1e-3)
    assert neg == pytest.approx(lane_b["evidence"]["neg"], abs=1e-3)
    assert float(facts["accepted (acc)"]) == pytest.approx(lane_b["evidence"]["acc"], abs=1e-3)
    assert facts["traversals (n)"] == "4"
    # the matching table row is highlighted
    row = drv.find_element(By.CSS_SELECTOR, f'#lanes tr[data-track-id="{B}"]')
    assert "active" in row.get_attribute("class")
    # keyboard: focusing another node shows its details
    drv.execute_script("arguments[0].focus()", node(drv, C))
    wait(drv, lambda d: tip.get_attribute("data-track-id") == C)
    assert "Charlie, Live" in tip.text


def test_click_travels_back_returns(drv: Any, daemon: Daemon) -> None:
    open_page(drv, daemon, A)
    back = drv.find_element(By.ID, "back")
    assert not back.is_enabled()  # nothing to go back to yet
    node(drv, B).click()
    wait_track(drv, B)
    assert url_params(drv)["track"] == B
    assert drv.find_element(By.ID, "center-title").text == "Bravo — Artist Two"
    assert rows(drv) == [G]
    assert back.is_enabled()
    back.click()
    wait_track(drv, A)
    assert url_params(drv)["track"] == A
    assert rows(drv) == [B, C, D]
    # a table link travels too, and the browser's own back button returns
    drv.find_element(By.CSS_SELECTOR, f'#lanes tbody a[data-track-id="{C}"]').click()
    wait_track(drv, C)
    assert url_params(drv)["track"] == C
    drv.back()
    wait_track(drv, A)
    drv.forward()
    wait_track(drv, C)


def test_keyboard_enter_on_a_node_travels(drv: Any, daemon: Daemon) -> None:
    open_page(drv, daemon, A)
    drv.execute_script("arguments[0].focus()", node(drv, C))
    ActionChains(drv).send_keys(Keys.ENTER).perform()
    wait_track(drv, C)


def test_rejected_lane_only_when_asked(drv: Any, daemon: Daemon) -> None:
    open_page(drv, daemon, A)
    assert E not in rows(drv) and E not in graph_nodes(drv)
    box = drv.find_element(By.ID, "show-rejected")
    assert not box.is_selected()
    box.click()
    wait(drv, lambda d: E in rows(d) and page_state(d)[0] == "ready")
    assert rows(drv) == [B, C, D, E]  # the rejected lane comes after the lanes
    assert url_params(drv)["rejected"] == "1"
    row = drv.find_element(By.CSS_SELECTOR, f'#lanes tr[data-track-id="{E}"]')
    assert row.get_attribute("data-rejected") == "1"
    assert "Echo" in row.text
    e_node = node(drv, E)
    assert "rejected" in e_node.get_attribute("class")
    line = drv.find_element(By.CSS_SELECTOR, f'#graph line.lane[data-track-id="{E}"]')
    assert line.value_of_css_property("stroke-dasharray") not in ("none", "")
    ok_line = drv.find_element(By.CSS_SELECTOR, f'#graph line.lane[data-track-id="{B}"]')
    assert ok_line.value_of_css_property("stroke-dasharray") in ("none", "")
    # the setting survives a reload (it is in the URL)
    drv.refresh()
    wait_track(drv, A)
    assert drv.find_element(By.ID, "show-rejected").is_selected()
    assert E in rows(drv)
    drv.find_element(By.ID, "show-rejected").click()
    wait(drv, lambda d: E not in rows(d) and page_state(d)[0] == "ready")
    assert "rejected" not in url_params(drv)


def test_direction_in_and_both(drv: Any, daemon: Daemon) -> None:
    open_page(drv, daemon, A)
    Select(drv.find_element(By.ID, "direction")).select_by_value("in")
    wait(drv, lambda d: rows(d) == [F])
    assert url_params(drv)["direction"] == "in"
    badge = drv.find_element(By.CSS_SELECTOR, f'#lanes tr[data-track-id="{F}"] .badge')
    assert badge.text == "in"
    assert "in" in node(drv, F).get_attribute("class").split()
    Select(drv.find_element(By.ID, "direction")).select_by_value("both")
    wait(drv, lambda d: rows(d) == [B, F, C, D])
    directions = [
        tr.get_attribute("data-direction")
        for tr in drv.find_elements(By.CSS_SELECTOR, "#lanes tbody tr")
    ]
    assert directions == ["out", "in", "out", "out"]
    # travelling keeps the direction
    node(drv, F).click()
    wait_track(drv, F)
    assert url_params(drv) == {"track": F, "direction": "both"}
    assert rows(drv) == [A]


def test_limit_control_and_reload_of_a_shared_url(drv: Any, daemon: Daemon) -> None:
    open_page(drv, daemon, H)
    assert len(rows(drv)) == 7
    Select(drv.find_element(By.ID, "limit")).select_by_value("5")
    wait(drv, lambda d: len(rows(d)) == 5)
    assert url_params(drv) == {"track": H, "limit": "5"}
    # the URL is the view: load it fresh, then reload
    shared = drv.current_url
    drv.get(f"{daemon.url}/?track={B}")
    wait_track(drv, B)
    drv.get(shared)
    wait_track(drv, H)
    assert Select(drv.find_element(By.ID, "limit")).first_selected_option.text == "5"
    assert len(rows(drv)) == 5
    drv.refresh()
    wait_track(drv, H)
    assert len(rows(drv)) == 5
    assert drv.find_element(By.ID, "center-title").text == "Hub — Many Lanes"


def test_typed_or_pasted_id_goes_there(drv: Any, daemon: Daemon) -> None:
    open_page(drv, daemon)
    assert drv.find_element(By.ID, "message").get_attribute("data-kind") == "welcome"
    box = drv.find_element(By.ID, "track-input")
    box.send_keys(B.upper(), Keys.ENTER)  # ids in any case
    wait_track(drv, B)
    assert url_params(drv)["track"] == B
    box.send_keys(f"{daemon.url}/?track={C}", Keys.ENTER)  # a pasted share link
    wait_track(drv, C)
    drv.find_element(By.ID, "back").click()
    wait_track(drv, B)


def test_top_tracks_list_picks_a_track(drv: Any, daemon: Daemon) -> None:
    open_page(drv, daemon)
    top = call(f"{daemon.url}/tracks/top?limit=20")
    link_sel = "#top-tracks a[data-track-id]"
    wait(drv, lambda d: len(d.find_elements(By.CSS_SELECTOR, link_sel)) == len(top))
    links = drv.find_elements(By.CSS_SELECTOR, link_sel)
    assert [a.get_attribute("data-track-id") for a in links] == [t["track_id"] for t in top]
    assert links[0].get_attribute("data-track-id") == H  # seven lanes: the most connected
    assert "Hub" in links[0].text and "Many Lanes" in links[0].text
    links[0].click()
    wait_track(drv, H)
    assert url_params(drv)["track"] == H
    current = drv.find_element(By.CSS_SELECTOR, f'#top-tracks a[data-track-id="{H}"]')
    assert current.get_attribute("aria-current") == "page"


def test_unknown_bad_and_failing_requests_say_so(drv: Any, daemon: Daemon) -> None:
    unknown = tid("never-played")
    open_page(drv, daemon, unknown)
    msg = drv.find_element(By.ID, "message")
    assert msg.get_attribute("data-kind") == "empty"
    assert "No warp lanes" in msg.text
    assert rows(drv) == [] and graph_nodes(drv) == []
    # a track with only in-lanes says where its lanes are
    open_page(drv, daemon, G)
    assert "try direction" in drv.find_element(By.ID, "message").text
    # a malformed id says so (without asking the server: see the test below)
    open_page(drv, daemon, "not-a-track", state="error")
    msg = drv.find_element(By.ID, "message")
    assert msg.get_attribute("data-kind") == "bad-request"
    assert "the track id must be a UUID" in msg.text
    # a server error (the next neighbours request answers 500) is reported as one
    open_page(drv, daemon, A)
    drv.execute_script(
        """
        const real = window.fetch;
        window.fetch = (url, opts) => String(url).includes("gravity_neighbors")
          ? Promise.resolve(new Response(
              JSON.stringify({error: {code: "internal_error", message: "internal error"}}),
              {status: 500, headers: {"Content-Type": "application/json"}}))
          : real(url, opts);
        """
    )
    node(drv, B).click()
    wait_track(drv, B, "error")
    msg = drv.find_element(By.ID, "message")
    assert msg.get_attribute("data-kind") == "server-error"
    assert "500" in msg.text and "internal error" in msg.text
    assert rows(drv) == []


FETCH_SPY = """
window.__fetched = [];
const realFetch = window.fetch;
window.fetch = (input, init) => {
  window.__fetched.push(String(input instanceof Request ? input.url : input));
  return realFetch(input, init);
};
"""


def track_requests(driver: Any) -> list[str]:
    """Every fetch of the page that names a track (the top list and stats excepted)."""
    fetched = driver.execute_script("return window.__fetched")
    return [u for u in fetched if "/tracks/" in u and "/tracks/top" not in u]


def test_a_malformed_track_id_is_never_requested(drv: Any, daemon: Daemon) -> None:
    """`?track=..` would fetch /tracks/.. (which the browser resolves to /), and worse ids other
    paths: anything but a UUID is refused in the page, with the message the server's 400 gives."""
    spy = drv.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": FETCH_SPY})
    try:
        shown = set()
        for raw in ("..", "../../metrics", "..%2F..%2Fmetrics", f"{A}/..", f" {A}x"):
            drv.get(f"{daemon.url}/?track={raw}")
            wait(drv, lambda d: page_state(d)[0] == "error")
            assert track_requests(drv) == [], raw
            assert drv.find_element(By.ID, "center-title").text == "Not a track id"
            msg = drv.find_element(By.ID, "message")
            assert msg.get_attribute("data-kind") == "bad-request"
            shown.add(msg.text)
        (local,) = shown
        assert local.startswith("Not a valid track id: the track id must be a UUID")
        # typed into the box: refused the same way
        open_page(drv, daemon)
        drv.find_element(By.ID, "track-input").send_keys("../../metrics", Keys.ENTER)
        wait_track(drv, "../../metrics", "error")
        assert drv.find_element(By.ID, "message").text == local
        assert track_requests(drv) == []

        # The server's own 400 for a malformed id, played back to the page for a well-formed
        # one, reads the same: the page says what the server would have said.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{daemon.url}/tracks/not-a-track", timeout=10)
        assert refused.value.code == 400
        body = refused.value.read().decode()
        assert json.loads(body)["error"]["code"] == "invalid_track_id"
        open_page(drv, daemon)
        drv.execute_script(
            """
            const [body, real] = [arguments[0], window.fetch];
            window.fetch = (url, opts) => String(url).includes(arguments[1])
              ? Promise.resolve(new Response(body,
                  {status: 400, headers: {"Content-Type": "application/json"}}))
              : real(url, opts);
            """,
            body,
            B,
        )
        drv.find_element(By.ID, "track-input").send_keys(B, Keys.ENTER)
        wait_track(drv, B, "error")
        assert drv.find_element(By.ID, "message").text == local
        assert drv.find_element(By.ID, "center-title").text == "Not a track id"
        # and a well-formed id is fetched as before
        open_page(drv, daemon, A)
        assert track_requests(drv) and all(A in u for u in track_requests(drv))
    finally:
        drv.execute_cdp_cmd(
            "Page.removeScriptToEvaluateOnNewDocument", {"identifier": spy["identifier"]}
        )


XSS = (
    '<img src=x onerror="window.__xss=1">',
    "<script>window.__xss=1</script>",
    "<svg onload=window.__xss=1>",
)

PAGE_INTEGRITY_JS = """
const onAttrs = [];
for (const e of document.querySelectorAll("*")) {
  for (const a of e.attributes) if (a.name.startsWith("on")) onAttrs.push(e.tagName + " " + a.name);
}
return {
  xss: typeof window.__xss,
  onAttrs,
  imgs: document.querySelectorAll("img").length,
  scripts: [...document.scripts].map((s) => s.getAttribute("src")),
  svgs: [...document.querySelectorAll("svg")].map((s) => s.id || s.getAttribute("class")),
};
"""


def test_titles_and_artists_are_shown_as_text_never_as_markup(
    drv: Any, daemon_factory: Any, tmp_path: Path
) -> None:
    """Catalogue titles and artists are anybody's text: markup in them shows literally in the
    lanes (graph labels and table), the tooltip, the strongest-tracks list and the centre title,
    and nothing runs. The page's Content-Security-Policy would block inline handlers anyway, so
    it is bypassed here: this tests the page's own escaping, not the policy."""
    p, q, r = tid("xss-p"), tid("xss-q"), tid("xss-r")
    names = {p: (XSS[1], XSS[0]), q: (XSS[0], XSS[2]), r: (XSS[2], XSS[1])}
    d = daemon_factory().start()
    events = two_step("x1", p, q) + two_step("x2", p, q) + two_step("x3", p, r)
    assert call(d.url + "/events", events)["rejected"] == []
    catalog = tmp_path / "xss.jsonl"
    catalog.write_text(
        "".join(
            json.dumps({"track_id": t, "title": title, "artist": artist}) + "\n"
            for t, (title, artist) in names.items()
        )
    )
    loaded = run_cli("catalog", "load", str(catalog), "--db", str(d.db))
    assert loaded.returncode == 0, loaded.stderr
    call(d.url + "/admin/fold", {})

    drv.execute_cdp_cmd("Page.setBypassCSP", {"enabled": True})
    try:
        open_page(drv, d, p)
        assert rows(drv) == [q, r] and graph_nodes(drv) == [q, r]
        # the centre title and the tab's title
        assert drv.find_element(By.ID, "center-title").text == f"{XSS[1]} — {XSS[0]}"
        assert drv.title.startswith("<script>window.__xss=1")
        # the lanes table and the graph's labels (cut to fit, never re-parsed)
        for t in (q, r):
            link = f'#lanes tbody a[data-track-id="{t}"]'
            assert drv.find_element(By.CSS_SELECTOR, f"{link} .t").text == names[t][0]
            assert drv.find_element(By.CSS_SELECTOR, f"{link} .a").text == names[t][1]
        labels = drv.execute_script(
            "return [...document.querySelectorAll('#graph text.label')]"
            ".map((t) => [t.dataset.trackId, t.textContent])"
        )
        assert labels, "no label was drawn"
        for t, text in labels:
            assert names[t][0].startswith(text.removesuffix("…")), text
        # the tooltip
        ActionChains(drv).move_to_element(node(drv, q)).perform()
        tip = drv.find_element(By.ID, "tooltip")
        wait(drv, lambda _: tip.is_displayed() and tip.get_attribute("data-track-id") == q)
        assert tip.find_element(By.CLASS_NAME, "tip-title").text == names[q][0]
        assert tip.find_element(By.CLASS_NAME, "tip-sub").text == names[q][1]
        # the strongest tracks
        top = "#top-tracks a[data-track-id]"
        wait(drv, lambda d: len(d.find_elements(By.CSS_SELECTOR, top)) == 3)
        for t, (title, artist) in names.items():
            link = f'#top-tracks a[data-track-id="{t}"]'
            assert drv.find_element(By.CSS_SELECTOR, f"{link} .t").text == title
            assert drv.find_element(By.CSS_SELECTOR, f"{link} .a").text == artist

        # A control: markup that does get parsed here runs (an inline handler, since the policy
        # is bypassed), so a payload parsed anywhere above would have run too by now.
        drv.execute_script(
            "document.body.insertAdjacentHTML('beforeend',"
            " '<img id=control src=x onerror=\"window.__control=1\">')"
        )
        wait(drv, lambda d: d.execute_script("return window.__control") == 1)
        drv.execute_script("document.getElementById('control').remove()")
        state = drv.execute_script(PAGE_INTEGRITY_JS)
        assert state == {
            "xss": "undefined",
            "onAttrs": [],
            "imgs": 0,
            "scripts": ["/static/explorer.js", "/static/radio.js", "/static/map.js"],
            "svgs": ["brand-mark", "graph", "map-chart", "radio-chart"],
        }
    finally:
        drv.execute_cdp_cmd("Page.setBypassCSP", {"enabled": False})


def test_stats_panel_follows_the_daemon(drv: Any, daemon: Daemon) -> None:
    open_page(drv, daemon, A)
    before = call(f"{daemon.url}/stats")

    def shown(name: str) -> str:
        return drv.find_element(By.ID, f"stat-{name}").text

    wait(drv, lambda d: shown("edges") == f"{before['edges']:,}")
    assert shown("nodes") == f"{before['nodes']:,}"
    assert shown("lag").startswith("0")
    # no snapshot yet (the periodic one comes after 5 minutes), then one on demand
    assert before["snapshot_age_s"] is None and shown("snapshot") == "none yet"
    call(f"{daemon.url}/admin/snapshot", {})
    wait(drv, lambda d: shown("snapshot").endswith("s ago"), timeout=10)
    # new lanes elsewhere in the graph: the panel catches up by itself (it polls every 2 s)
    call(f"{daemon.url}/events", two_step("yz", tid("Y"), tid("Z")))
    call(f"{daemon.url}/admin/fold", {})
    after = call(f"{daemon.url}/stats")
    assert after["edges"] == before["edges"] + 1
    wait(drv, lambda d: shown("edges") == f"{after['edges']:,}", timeout=10)
    assert drv.find_element(By.ID, "stats").get_attribute("data-state") == "ready"


def tap(driver: Any, selector: str) -> None:
    """A finger tap at the centre of the element (touch events, as on a phone)."""
    x, y = driver.execute_script(
        "const e = document.querySelector(arguments[0]); e.scrollIntoView({block: 'center'});"
        "const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2];",
        selector,
    )
    for kind, points in (("touchStart", [{"x": x, "y": y}]), ("touchEnd", [])):
        driver.execute_cdp_cmd("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})


def test_phone_width_has_no_horizontal_overflow(daemon: Daemon) -> None:
    phone = make_driver(500, 844)  # headless Chromium's narrowest window; emulate the phone
    try:
        phone.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True},
        )
        for params in ({}, {"direction": "both", "rejected": "1", "limit": "100"}):
            open_page(phone, daemon, A, **params)
            assert phone.execute_script("return innerWidth") == 390
            assert phone.execute_script(
                "return document.documentElement.scrollWidth <= innerWidth"
            ), phone.execute_script("return document.documentElement.scrollWidth")
            assert graph_nodes(phone) and rows(phone)
            svg = phone.find_element(By.ID, "graph").rect
            assert svg["width"] <= 390 and svg["height"] > 250
            for tr in phone.find_elements(By.CSS_SELECTOR, "#lanes tbody tr"):
                assert tr.rect["x"] + tr.rect["width"] <= 390
        # a tap shows the lane's details (and a button), a second tap on it travels there
        open_page(phone, daemon, A)
        phone.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True})
        tip = phone.find_element(By.ID, "tooltip")
        tap(phone, f'#graph .lane-node[data-track-id="{C}"]')
        wait(phone, lambda d: tip.is_displayed() and tip.get_attribute("data-track-id") == C)
        assert page_state(phone) == ("ready", A)  # the first tap does not travel
        assert "Charlie, Live" in tip.text and "traversals (n)" in tip.text
        assert phone.find_element(By.ID, "tooltip-go").is_displayed()
        tap(phone, f'#graph .lane-node[data-track-id="{C}"]')
        wait_track(phone, C)
        assert url_params(phone)["track"] == C
        # a long unknown id does not push the page wide either
        open_page(phone, daemon, "x" * 200, state="error")
        assert phone.execute_script("return document.documentElement.scrollWidth <= innerWidth")
    finally:
        phone.quit()


def test_page_loads_nothing_from_elsewhere(drv: Any, daemon: Daemon) -> None:
    drv.get_log("browser")  # drop what earlier tests logged (their 400s on purpose)
    open_page(drv, daemon, A)
    urls = drv.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).concat([location.href])"
    )
    host = urllib.parse.urlsplit(daemon.url).netloc
    assert urls and all(urllib.parse.urlsplit(u).netloc == host for u in urls), urls
    severe = [e for e in drv.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == [], severe


def test_static_files_are_served(daemon: Daemon) -> None:
    for path, kind in (
        ("/", "text/html"),
        ("/static/explorer.js", "javascript"),
        ("/static/explorer.css", "text/css"),
    ):
        with urllib.request.urlopen(daemon.url + path, timeout=10) as r:
            assert r.status == 200 and kind in r.headers["Content-Type"]


def test_a_blocked_track_says_so_and_leaves_the_lanes(drv: Any, daemon: Daemon) -> None:
    def admin(method: str) -> Any:
        req = urllib.request.Request(f"{daemon.url}/admin/tracks/{B}/block", method=method)
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    assert admin("PUT")["blocked"] is True
    try:
        open_page(drv, daemon, B)
        assert drv.find_element(By.ID, "center-counts").text.startswith("blocked")
        msg = drv.find_element(By.ID, "message")
        assert msg.get_attribute("data-kind") == "empty" and "blocked (taken down)" in msg.text
        assert rows(drv) == [] and graph_nodes(drv) == []
        open_page(drv, daemon, A)
        assert B not in rows(drv) and B not in graph_nodes(drv)
        assert C in rows(drv)
    finally:
        admin("DELETE")
    open_page(drv, daemon, A)
    assert rows(drv)[0] == B
