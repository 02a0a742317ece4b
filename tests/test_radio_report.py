"""GET /radio/report, its metrics, snapshots, restarts, replays and `gravityd report`, end to end
on real servers, real SQLite files and real processes."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gravityd.commands.build import build
from gravityd.core.graph import GravityGraph
from gravityd.core.scoreboard import ReportParams, Scoreboard
from gravityd.daemon.service import Gravityd
from gravityd.http.app import create_app
from gravityd.log.sqlite import read_after_sync
from gravityd.log.sqlite_schema import connect_sync
from gravityd.snapshots.files import list_snapshots, load_snapshot, write_snapshot

from .support import Daemon, day, make_config, metric, run_cli, serve, tid

# Days before today, not fixed dates: the daemon refuses events ahead of its own clock.
DAY1 = day(-7)
DAY2 = day(-6)
RANGE = {"since": day(-11) + "00:00:00Z", "until": day(0) + "00:00:00Z"}


def ev(sid: str, track: str, kind: str, at: str, **extra: Any) -> dict[str, Any]:
    return {
        "session_id": sid,
        "track_id": tid(track),
        "event_type": kind,
        "timestamp": at,
        **extra,
    }


def pick(sid: str, track: str, at: str, arm: str | None, verdict: str, at2: str, ms: int = 0):
    """A radio pick and what the listener did: skip (at `ms`), play_10s, like or nothing."""
    out = [ev(sid, track, "radio_next", at, **({"context": arm} if arm else {}))]
    out.append(ev(sid, track, "play_start", at))
    if verdict == "skip":
        out.append(ev(sid, track, "skip", at2, meta={"elapsed_ms": ms}))
    elif verdict != "none":
        out.append(ev(sid, track, verdict, at2))
    return out


def sessions() -> list[dict[str, Any]]:
    """Two arms over two days, with every verdict rule in it.

    radio:control, day 1: 3 early skips, 1 kept; radio:gravity, day 1: 1 early skip, 3 kept
    (one of them skipped after its play_10s, one liked), one skip at 45 s (no verdict);
    day 2: control 1 kept, gravity 1 skipped; a pick without context, kept; one pick that never
    gets a verdict. Day 2 comes long after day 1, so the 45 s skip is unresolved by then.
    """
    out = [ev("c0", "A", "play_start", DAY1 + "10:00:00Z")]
    for i in range(3):
        out += pick(
            f"c{i}", f"C{i}", DAY1 + "10:01:00Z", "radio:control", "skip", DAY1 + "10:01:05Z", 5000
        )
    out += pick("c3", "C3", DAY1 + "11:59:59Z", "radio:control", "play_10s", DAY1 + "12:00:09Z")
    out += pick("g0", "G0", DAY1 + "10:02:00Z", "radio:gravity", "skip", DAY1 + "10:02:01Z", 800)
    out += pick("g1", "G1", DAY1 + "10:03:00Z", "radio:gravity", "play_10s", DAY1 + "10:03:10Z")
    out.append(ev("g1", "G1", "skip", DAY1 + "10:03:20Z", meta={"elapsed_ms": 20000}))
    out += pick("g2", "G2", DAY1 + "10:04:00Z", "radio:gravity", "like", DAY1 + "10:04:30Z")
    out += pick("g3", "G3", DAY1 + "10:05:00Z", "radio:gravity", "play_10s", DAY1 + "10:05:10Z")
    out += pick("g4", "G4", DAY1 + "10:06:00Z", "radio:gravity", "skip", DAY1 + "10:06:45Z", 45000)
    out += pick("d0", "C0", DAY2 + "09:00:00Z", "radio:control", "play_10s", DAY2 + "09:00:10Z")
    out += pick("d1", "G0", DAY2 + "09:00:00Z", "radio:gravity", "skip", DAY2 + "09:00:02Z", 2000)
    out += pick("n0", "N0", DAY2 + "09:30:00Z", None, "play_10s", DAY2 + "09:30:10Z")
    out += pick("p0", "P0", DAY2 + "09:40:00Z", "radio:gravity", "none", DAY2 + "09:40:00Z")
    return out


def report_of(url: str, **query: str) -> dict[str, Any]:
    q = urllib.parse.urlencode({**RANGE, **query})
    with urllib.request.urlopen(f"{url}/radio/report?{q}", timeout=10) as r:
        return json.loads(r.read())


def post(url: str, path: str, body: Any = None) -> Any:
    data = b"" if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url + path, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def counts(rep: dict[str, Any]) -> dict[Any, tuple[int, int, int]]:
    return {a["context"]: (a["skipped"], a["kept"], a["unresolved"]) for a in rep["arms"]}


async def test_report_on_hand_made_sessions(aiohttp_client: Any, tmp_path: Path) -> None:
    client, _ = await serve(aiohttp_client, tmp_path)
    resp = await client.post("/events", json=sessions())
    assert resp.status == 202, await resp.text()
    assert (await client.post("/admin/fold")).status == 200
    resp = await client.get("/radio/report", params=RANGE)
    assert resp.status == 200
    rep = await resp.json()
    assert counts(rep) == {
        None: (0, 1, 0),
        "radio:control": (3, 2, 0),
        "radio:gravity": (2, 3, 1),  # the 45 s skip: no verdict, and day 2 is long after it
    }
    assert rep["pending"] == 1  # the last pick, with no verdict yet
    assert "comparison" not in rep and rep["bucket"] == "day"
    assert (rep["since"], rep["until"]) == (RANGE["since"], RANGE["until"])
    g = next(a for a in rep["arms"] if a["context"] == "radio:gravity")
    assert g["transitions"] == 5 and g["skip_rate"] == 0.4
    assert [(p["start"], p["skipped"], p["kept"]) for p in g["series"]] == [
        (DAY1 + "00:00:00Z", 1, 3),
        (DAY2 + "00:00:00Z", 1, 0),
    ]

    resp = await client.get(
        "/radio/report", params={**RANGE, "bucket": "hour", "arms": "radio:control,radio:gravity"}
    )
    rep = await resp.json()
    control = rep["arms"][0]
    # a pick at 11:59:59 kept at 12:00:09 counts at 11:00, the hour of its radio_next
    assert [(p["start"][11:16], p["skipped"], p["kept"]) for p in control["series"]] == [
        ("10:00", 3, 0),
        ("11:00", 0, 1),
        ("09:00", 0, 1),
    ]
    cmp = rep["comparison"]
    assert (cmp["a"], cmp["b"]) == ("radio:control", "radio:gravity")
    assert abs(cmp["difference"] - (2 / 5 - 3 / 5)) < 1e-12
    assert 0 < cmp["p_value"] <= 1 and cmp["ci95"][0] < cmp["difference"] < cmp["ci95"][1]

    resp = await client.get("/radio/report", params={**RANGE, "arms": "null"})
    assert counts(await resp.json()) == {None: (0, 1, 0)}

    text = await (await client.get("/metrics")).text()
    name = "gravityd_radio_transitions_total"
    assert metric(text, f'{name}{{context="radio:control",verdict="skipped"}}') == 3
    assert metric(text, f'{name}{{context="radio:gravity",verdict="kept"}}') == 3
    assert metric(text, f'{name}{{context="none",verdict="kept"}}') == 1


async def test_bad_queries_are_400_naming_the_field(aiohttp_client: Any, tmp_path: Path) -> None:
    client, _ = await serve(aiohttp_client, tmp_path)
    for query, field in [
        ({"since": "last week"}, "since"),
        ({"until": "2026-02-30T00:00:00Z"}, "until"),
        ({"since": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"}, "until"),
        ({"bucket": "minute"}, "bucket"),
        ({"arms": "radio:a,,radio:b"}, "arms"),
        ({"arms": "radio:a,radio:a"}, "arms"),
        ({"arms": "x" * 65}, "arms"),
    ]:
        resp = await client.get("/radio/report", params=query)
        assert resp.status == 400, query
        err = (await resp.json())["error"]
        assert err["field"] == field and err["code"] == f"invalid_{field}", query


async def test_metric_labels_are_bounded(aiohttp_client: Any, tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    cfg.report = ReportParams(report_metric_arms=2)
    client = await aiohttp_client(create_app(Gravityd(cfg)))
    events = []
    for i in range(5):
        events += pick(
            f"s{i}", "B", DAY1 + "10:00:00Z", f"radio:{i}", "play_10s", DAY1 + "10:00:10Z"
        )
    assert (await client.post("/events", json=events)).status == 202
    await client.post("/admin/fold")
    text = await (await client.get("/metrics")).text()
    name = "gravityd_radio_transitions_total"
    assert metric(text, f'{name}{{context="radio:0",verdict="kept"}}') == 1
    assert metric(text, f'{name}{{context="radio:1",verdict="kept"}}') == 1
    assert metric(text, f'{name}{{context="other",verdict="kept"}}') == 3
    assert 'context="radio:2"' not in text
    # the report itself still knows every arm
    rep = await (await client.get("/radio/report", params=RANGE)).json()
    assert len(rep["arms"]) == 5


@pytest.mark.process
def test_restart_from_snapshot_and_full_replay_give_the_same_report(daemon_factory) -> None:
    d = daemon_factory().start()
    events = sessions()
    half = len(events) // 2
    post(d.url, "/events", events[:half])
    post(d.url, "/admin/fold")
    snap = post(d.url, "/admin/snapshot")
    post(d.url, "/events", events[half:])
    post(d.url, "/admin/fold")
    before = {b: report_of(d.url, bucket=b) for b in ("day", "hour")}
    assert counts(before["day"])["radio:control"] == (3, 2, 0)
    d.kill()  # no shutdown snapshot: the restart loads the mid-way one and replays the tail

    assert [s.cursor for s in list_snapshots(d.db.parent / "snapshots")] == [snap["cursor"]]
    header, _ = load_snapshot(snap["path"])
    assert header["parts"]["radio"], "the snapshot carries the scoreboard"
    d.start()
    assert {b: report_of(d.url, bucket=b) for b in ("day", "hour")} == before
    d.terminate()  # this one writes a shutdown snapshot: a restart from it replays nothing

    d.start()
    assert {b: report_of(d.url, bucket=b) for b in ("day", "hour")} == before
    d.kill()

    shutil.rmtree(d.db.parent / "snapshots")  # no snapshot at all: the whole log replays
    d.start()
    assert {b: report_of(d.url, bucket=b) for b in ("day", "hour")} == before
    d.kill()


@pytest.mark.process
def test_a_snapshot_from_before_the_scoreboard_still_loads(tmp_path: Path, daemon_factory) -> None:
    d = daemon_factory().start()
    post(d.url, "/events", sessions())
    post(d.url, "/admin/fold")
    d.terminate()
    # Rewrite the newest snapshot as an older gravityd wrote it: the graph's records only.
    folder = d.db.parent / "snapshots"
    old = list_snapshots(folder)[0]
    _, graph = load_snapshot(old.path)
    shutil.rmtree(folder)
    write_snapshot(graph, folder)
    d.start()
    assert report_of(d.url)["arms"] == []  # history before its cursor is not in the snapshot
    post(
        d.url,
        "/events",
        pick("late", "Z", DAY2 + "10:00:00Z", "radio:gravity", "skip", DAY2 + "10:00:01Z", 10),
    )
    post(d.url, "/admin/fold")
    assert counts(report_of(d.url)) == {"radio:gravity": (1, 0, 0)}
    d.kill()


@pytest.mark.process
def test_build_carries_the_scoreboard(tmp_path: Path, daemon_factory) -> None:
    d = daemon_factory().start()
    post(d.url, "/events", sessions())
    d.kill()
    cfg = make_config(tmp_path, db=str(d.db), snapshot_dir=str(d.db.parent / "snapshots"))
    for s in list_snapshots(cfg.snapshot_dir):
        s.path.unlink()
    res = build(cfg)
    header, graph = load_snapshot(res.path)
    carried = Scoreboard.from_records(header["parts"]["radio"])
    conn = connect_sync(cfg.db, cfg.synchronous)
    try:
        rows, _ = read_after_sync(conn, 0, 100_000)
    finally:
        conn.close()
    fresh = Scoreboard()
    fresh.fold(rows)
    assert carried.signature() == fresh.signature()
    assert carried.cursor == graph.cursor
    gg = GravityGraph()
    gg.fold(rows)
    assert gg.cursor == graph.cursor
    # and the daemon started on the built snapshot reports it
    d.start()
    assert counts(report_of(d.url))["radio:gravity"] == (2, 3, 1)
    d.kill()


@pytest.mark.process
def test_cli_report_prints_the_table(daemon_factory) -> None:
    d = daemon_factory().start()
    post(d.url, "/events", sessions())
    post(d.url, "/admin/fold")
    out = run_cli(
        "report",
        "--url",
        d.url,
        "--since",
        RANGE["since"],
        "--until",
        RANGE["until"],
        "--arms",
        "radio:control,radio:gravity",
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    control = next(line for line in lines if line.startswith("radio:control "))
    assert control.split()[:6] == ["radio:control", "5", "3", "2", "0", "0.600"]
    assert any("radio:gravity minus radio:control: -0.200" in line for line in lines)
    assert any("not significant" in line for line in lines)
    assert any(line.startswith(DAY2 + "00:00:00Z") for line in lines)
    js = run_cli(
        "report", "--url", d.url, "--json", "--since", RANGE["since"], "--until", RANGE["until"]
    )
    assert js.returncode == 0 and json.loads(js.stdout) == report_of(d.url)
    bad = run_cli("report", "--url", d.url, "--bucket", "week")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    bad = run_cli("report", "--url", d.url, "--since", "soon")
    assert bad.returncode == 2 and "--since" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_cli("report", "--url", d.url, "--arms", "a," + "x" * 65)  # the daemon refuses it
    assert bad.returncode == 2 and "(arms)" in bad.stderr
    d.kill()


@pytest.mark.process
def test_replicas_serve_the_report_and_read_your_writes(tmp_path: Path) -> None:
    env = {"GRAVITYD_SNAPSHOT_ON_SHUTDOWN": "0"}
    writer = Daemon(tmp_path, "--role", "writer", env=env).start()
    replica = Daemon(tmp_path, "--role", "replica", env=env).start()
    try:
        done = post(writer.url, "/events", sessions())
        q = urllib.parse.urlencode({**RANGE, "min_cursor": done["last_id"]})
        with urllib.request.urlopen(f"{replica.url}/radio/report?{q}", timeout=10) as r:
            assert int(r.headers["Gravityd-Cursor"]) >= done["last_id"]
            rep = json.loads(r.read())
        assert counts(rep)["radio:control"] == (3, 2, 0)
        assert rep["cursor"] == done["last_id"]
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{writer.url}/radio/report", timeout=10)
        assert err.value.code == 404
        assert json.loads(err.value.read())["error"]["code"] == "wrong_role"
    finally:
        for d in (replica, writer):
            d.kill()


async def test_the_report_answers_other_origins(aiohttp_client: Any, tmp_path: Path) -> None:
    """A dashboard on another origin reads it like /stats (cors_origins narrows both)."""
    client, _ = await serve(aiohttp_client, tmp_path, cors_origins=["https://ops.example"])
    pre = await client.options(
        "/radio/report",
        headers={"Origin": "https://ops.example", "Access-Control-Request-Method": "GET"},
    )
    assert pre.status == 204
    assert pre.headers["Access-Control-Allow-Origin"] == "https://ops.example"
    resp = await client.get("/radio/report", headers={"Origin": "https://ops.example"})
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == "https://ops.example"
    other = await client.get("/radio/report", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
