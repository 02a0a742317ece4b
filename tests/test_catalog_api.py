"""The explorer's server side: catalogue, meta, rejected lanes, track info, top tracks, stats,
static files and the Yes.com replay."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gravityd.commands.catalog import CatalogError, read_catalog
from gravityd.daemon.service import RateMeter
from gravityd.lab.evaluate import track_uuid

from .support import REPO, post_and_fold, run_cli, session, tid

# Generated in the Yes.com format by scripts/make_yes_sample.py: the repository needs no other data.
YES_SAMPLE = REPO / "tests" / "data" / "yes_sample"


def write_csv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    lines = ["track_id,title,artist"] + [",".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tracks_table(db: Path) -> dict[str, tuple[str | None, str | None]]:
    with sqlite3.connect(db) as conn:
        return {
            t: (ti, a) for t, ti, a in conn.execute("SELECT track_id, title, artist FROM tracks")
        }


# ------------------------------------------------------------------------------ catalogue CLI


def new_log(path: Path) -> Path:
    """An empty event log, as the daemon's first start leaves it."""
    from gravityd.log.sqlite_schema import connect_sync

    connect_sync(path).close()
    return path


@pytest.mark.process
def test_catalog_load_csv_jsonl_and_update(tmp_path: Path) -> None:
    db = new_log(tmp_path / "events.db")
    csv_file = write_csv(tmp_path / "c.csv", [(tid(1), "One", "Band"), (tid(2), '"Two, too"', "")])
    res = run_cli("catalog", "load", str(csv_file), "--db", str(db))
    assert res.returncode == 0, res.stderr
    assert "loaded 2 tracks" in res.stdout
    assert tracks_table(db) == {tid(1): ("One", "Band"), tid(2): ("Two, too", None)}
    jl = tmp_path / "c.jsonl"
    jl.write_text(
        json.dumps({"track_id": tid(2).upper(), "title": "Two", "artist": "Duo"})
        + "\n\n"
        + json.dumps({"track_id": tid(3), "title": "Three"})
        + "\n"
    )
    res = run_cli("catalog", "load", str(jl), "--db", str(db))
    assert res.returncode == 0, res.stderr
    assert "the catalogue holds 3" in res.stdout
    table = tracks_table(db)
    assert table[tid(2)] == ("Two", "Duo")  # upper-case id canonicalised, title updated
    assert table[tid(3)] == ("Three", None)
    again = run_cli("catalog", "load", str(jl), "--db", str(db))
    assert again.returncode == 0 and tracks_table(db) == table


@pytest.mark.process
@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.csv", "track_id,title,artist\n{good},A,B\nnot-a-uuid,C,D\n", "bad.csv:3: track_id"),
        ("nohead.csv", "{good},A,B\n", "needs a header with track_id"),
        ("bad.jsonl", '{{"track_id": "{good}"}}\n[1, 2]\n', "bad.jsonl:2: each line"),
        ("broken.jsonl", '{{"track_id": "{good}"}}\n{{nope\n', "broken.jsonl:2: not valid JSON"),
        ("types.jsonl", '{{"track_id": "{good}", "title": 5}}\n', "title must be a string"),
        ("empty.csv", "track_id,title,artist\n", "no tracks in the file"),
        ("what.txt", "x", "cannot tell the format"),
    ],
)
def test_catalog_bad_file_is_one_line_and_loads_nothing(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    db = tmp_path / "events.db"
    path = tmp_path / name
    path.write_text(text.replace("{good}", tid(1)).replace("{{", "{").replace("}}", "}"))
    res = run_cli("catalog", "load", str(path), "--db", str(db))
    assert res.returncode == 2
    assert message in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    if db.exists():
        assert tracks_table(db) == {}  # the good first row was not written either


@pytest.mark.process
def test_catalog_needs_an_existing_log_and_reports_repeats(tmp_path: Path) -> None:
    csv_file = write_csv(tmp_path / "c.csv", [(tid(1), "One", "A"), (tid(1).upper(), "Uno", "B")])
    res = run_cli("catalog", "load", str(csv_file), "--db", str(tmp_path / "typo.db"))
    assert res.returncode == 2 and "no event log at" in res.stderr
    assert not (tmp_path / "typo.db").exists()  # a mistyped --db creates nothing
    db = new_log(tmp_path / "events.db")
    res = run_cli("catalog", "load", str(csv_file), "--db", str(db))
    assert res.returncode == 0, res.stderr
    assert "loaded 1 tracks" in res.stdout and "1 repeated ids" in res.stdout
    assert tracks_table(db) == {tid(1): ("Uno", "B")}


@pytest.mark.process
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('track_id,title,artist\n{good},"unterminated,B\n', "not valid CSV"),
        ('track_id,title,artist\n{good},"a"b"c,B\n', "not valid CSV"),
        ("track_id,title,artist\n{good},{huge},B\n", "not valid CSV"),
    ],
)
def test_catalog_malformed_csv_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    db = new_log(tmp_path / "events.db")
    path = tmp_path / "bad.csv"
    path.write_text(text.replace("{good}", tid(1)).replace("{huge}", "x" * 200_000))
    res = run_cli("catalog", "load", str(path), "--db", str(db))
    assert res.returncode == 2, res.stdout
    assert message in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert tracks_table(db) == {}


@pytest.mark.process
def test_catalog_cli_errors(tmp_path: Path) -> None:
    res = run_cli("catalog", "load", str(tmp_path / "missing.csv"), "--db", str(tmp_path / "x.db"))
    assert res.returncode == 2 and "no such file" in res.stderr
    res = run_cli("catalog")
    assert res.returncode == 2 and "catalog load FILE" in res.stderr
    res = run_cli("catalog", "load", "x.csv", "--format", "xml")
    assert res.returncode == 2 and "invalid choice" in res.stderr


def test_catalog_reads_the_yes_song_hash() -> None:
    n_songs = len((YES_SAMPLE / "train.txt").read_text().split("\n", 1)[0].split())
    rows = read_catalog(YES_SAMPLE / "song_hash.txt")
    assert len(rows) == n_songs == 300
    by_id = {t: (title, artist) for t, title, artist in rows}
    assert all(by_id[track_uuid(i)][0] for i in (0, 1, n_songs - 1))
    assert by_id[track_uuid(17)][0] == "Song 17 (w/ Guest 6)"  # "\\/" unescaped
    assert not any("\\/" in (title or "") + (artist or "") for title, artist in by_id.values())
    with pytest.raises(CatalogError, match="expected index<TAB>title<TAB>artist"):
        read_catalog(YES_SAMPLE / "tags.txt", "yes")


# --------------------------------------------------------------------------------- the API


async def known_graph(client: Any) -> None:
    events = []
    for i in range(4):
        events += session(f"a{i}", [1, 2])
    events += session("b", [1, 3])
    for i in range(3):  # 1 -> 4 skipped at once: rejected
        events += [*session(f"c{i}", [1]), *session(f"c{i}", [4], "skip", elapsed_ms=200)]
    await post_and_fold(client, events)


@pytest.mark.process
async def test_neighbors_with_meta_and_rejected(client: Any, config: Any, tmp_path: Path) -> None:
    await known_graph(client)
    csv_file = write_csv(tmp_path / "c.csv", [(tid(2), "Two", "Duo"), (tid(4), "Four", "Quad")])
    res = run_cli("catalog", "load", str(csv_file), "--db", config.db)  # the daemon is running
    assert res.returncode == 0, res.stderr
    url = f"/tracks/{tid(1)}/gravity_neighbors"
    plain = await (await client.get(url)).json()
    assert [x["track_id"] for x in plain] == [tid(2), tid(3)]
    assert "title" not in plain[0]
    meta = await (await client.get(url + "?with=meta")).json()
    assert [(x["title"], x["artist"]) for x in meta] == [("Two", "Duo"), (None, None)]
    both = await (await client.get(url + "?with=meta&rejected=1")).json()
    assert [x["track_id"] for x in both] == [tid(2), tid(3), tid(4)]
    bad = both[2]
    assert bad["rejected"] is True and bad["weight"] < 0 and bad["normalized_score"] == 0.0
    assert bad["title"] == "Four" and bad["evidence"]["neg"] > 0
    assert not any(x.get("rejected") for x in both[:2])
    for query, field in (("with=tags", "with"), ("rejected=maybe", "rejected")):
        resp = await client.get(f"{url}?{query}")
        assert resp.status == 400
        assert (await resp.json())["error"]["field"] == field


@pytest.mark.process
async def test_track_top_and_stats(client: Any, config: Any, tmp_path: Path) -> None:
    await known_graph(client)
    run_cli(
        "catalog",
        "load",
        str(write_csv(tmp_path / "c.csv", [(tid(1), "One", "Solo")])),
        "--db",
        config.db,
    )
    one = await (await client.get(f"/tracks/{tid(1)}")).json()
    galaxy, centrality = one.pop("galaxy"), one.pop("centrality")
    assert one == {
        "track_id": tid(1),
        "out_lanes": 2,
        "in_lanes": 0,
        "title": "One",
        "artist": "Solo",
    }
    # The galaxies are computed in the background once ready: none yet, or the track's own.
    if galaxy is None:
        assert centrality is None
    else:
        page = await (await client.get(f"/galaxies/{galaxy}")).json()
        assert {"track_id": tid(1), "centrality": centrality} in [
            {k: t[k] for k in ("track_id", "centrality")} for t in page["tracks"]
        ]
    unknown = await client.get(f"/tracks/{tid(99)}")
    assert unknown.status == 200
    assert (await unknown.json())["out_lanes"] == 0
    assert (await client.get("/tracks/nope")).status == 400
    top = await (await client.get("/tracks/top?limit=2")).json()
    assert top[0]["track_id"] == tid(1) and top[0]["title"] == "One"  # lanes to 2 and 3
    assert len(top) == 2 and top[0]["lanes"] == 2
    every = await (await client.get("/tracks/top?limit=100")).json()
    # 4 has only the rejected transition from 1: no lanes, so not "connected" at all
    assert [t["track_id"] for t in every] == [tid(1), *sorted([tid(2), tid(3)])]
    assert [t["lanes"] for t in every] == [2, 1, 1]
    assert (await client.get("/tracks/top?limit=0")).status == 400
    stats = await (await client.get("/stats")).json()
    assert stats["ready"] is True and stats["fold_lag"] == 0
    assert stats["nodes"] == 4 and stats["edges"] >= 3
    assert stats["catalog_tracks"] == 1
    assert stats["snapshot_age_s"] is None  # none written yet
    await client.post("/admin/snapshot")
    assert (await (await client.get("/stats")).json())["snapshot_age_s"] >= 0


def test_rate_meter_counts_whole_seconds() -> None:
    m = RateMeter(window=10)
    for s in range(100, 120):
        m.add(50, now=s + 0.5)
    assert m.rate(now=120.2) == 50.0  # seconds 110..119
    assert m.rate(now=135.0) == 0.0
    assert len(m._buckets) <= 12


# ----------------------------------------------------------------------------- static files


async def test_static_files_etag_cors_and_policy(client: Any) -> None:
    page = await client.get("/")
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    again = await client.get("/", headers={"If-None-Match": page.headers["ETag"]})
    assert again.status == 304
    listed = f'"nope", W/{page.headers["ETag"]}'
    assert (await client.get("/", headers={"If-None-Match": listed})).status == 304
    assert (await client.get("/", headers={"If-None-Match": '"other"'})).status == 200
    js = await client.get("/client.js", headers={"Origin": "https://player.example"})
    assert js.status == 200
    assert js.headers["Content-Type"].startswith("text/javascript")
    assert js.headers["Access-Control-Allow-Origin"] == "*"
    assert "createGravityClient" in await js.text()
    for path in ("/static/nope.js", "/static/..%2Fapi.py", "/static/../api.py"):
        resp = await client.get(path)
        assert resp.status == 404, path
        assert (await resp.json())["error"]["code"] == "not_found"


@pytest.mark.process
def test_static_files_ship_in_the_wheel(tmp_path: Path) -> None:
    """pip install . must carry the page: a missing package-data line only shows on a fresh box.

    Built from a copy of the sources, so a stale build/ folder cannot hide the mistake.
    """
    import shutil
    import subprocess
    import sys
    import zipfile

    src = tmp_path / "src"
    skip = shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "docs", "bench")
    shutil.copytree(REPO, src, ignore=skip)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("gravityd-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"gravityd/http/static/index.html", "gravityd/http/static/client.js"} <= names
    assert {"gravityd/http/handlers/tracks.py", "gravityd/http/middleware/guard.py"} <= names
    # Every module of the source tree ships: a new subpackage cannot be left out of the wheel.
    tree = {p.relative_to(REPO).as_posix() for p in (REPO / "gravityd").rglob("*.py")}
    assert tree <= names, sorted(tree - names)


# ------------------------------------------------------------------------------ Yes replay


@pytest.mark.process
def test_the_yes_sample_is_what_its_script_writes(tmp_path: Path) -> None:
    """The fixture is reproducible: scripts/make_yes_sample.py writes the same bytes."""
    import subprocess
    import sys

    out = tmp_path / "yes_sample"
    res = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_yes_sample.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    names = sorted(p.name for p in YES_SAMPLE.iterdir())
    assert names == sorted(p.name for p in out.iterdir())
    assert {"train.txt", "song_hash.txt", "tags.txt", "tag_hash.txt"} <= set(names)
    for name in names:
        assert (out / name).read_bytes() == (YES_SAMPLE / name).read_bytes(), name
    assert sum(p.stat().st_size for p in YES_SAMPLE.iterdir()) < 200_000


@pytest.mark.process
def test_yes_replay_of_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    res = run_cli("simulate", "--replay", str(tmp_path / "nope"), "--url", "http://127.0.0.1:9")
    assert res.returncode == 2
    assert "data folder not found" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.process
async def test_yes_replay_posts_real_playlists_once(daemon_factory: Any) -> None:
    d = daemon_factory().start()
    res = run_cli("simulate", "--url", d.url, "--replay", str(YES_SAMPLE), "--playlists", "30")
    assert res.returncode == 0, res.stderr
    with sqlite3.connect(d.db) as conn:
        n, sessions = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT session_id) FROM events"
        ).fetchone()
    assert sessions == 30 and n > 60
    assert f"{n:,} events accepted" in res.stdout
    again = run_cli("simulate", "--url", d.url, "--replay", str(YES_SAMPLE), "--playlists", "30")
    assert again.returncode == 0 and f"({n:,} already there)" in again.stdout
    with sqlite3.connect(d.db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == n
    first = [int(x) for x in (YES_SAMPLE / "train.txt").read_text().splitlines()[2].split()]
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(d.url + "/admin/fold", method="POST"))
    with urllib.request.urlopen(
        f"{d.url}/tracks/{track_uuid(first[0])}/gravity_neighbors?limit=100"
    ) as r:
        lanes = json.loads(r.read())
    assert track_uuid(first[1]) in {x["track_id"] for x in lanes}
