"""`gravityd import`: the API's validation line by line, idempotent reruns, the same graph as the
API, refused beside a running daemon, and --url through a daemon that rate limits."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from gravityd.commands.importer import (
    ImportProgress,
    derived_event_id,
    id_prefix,
    parse_piece,
    plan,
)
from gravityd.core.events import ValidationLimits
from gravityd.core.graph import GravityGraph, graph_signature
from gravityd.log.sqlite import read_after_sync
from gravityd.log.sqlite_schema import connect_sync

from .support import event, recent, run_cli, serve, tid


def history(n: int = 60) -> list[dict[str, Any]]:
    """Sessions with every field the API takes; a third carry their own event_id."""
    kinds = ["play_start", "play_10s", "skip", "like", "radio_next"]
    out = []
    for i in range(n):
        ev = event(
            f"s{i // 6}",
            (i * 7) % 11,
            kinds[i % 5],
            timestamp=recent(i),  # near now: the importer refuses times ahead of its clock
            context="radio:gravity" if i % 5 == 4 else "map",
        )
        if ev["event_type"] == "skip":
            ev["meta"] = {"elapsed_ms": 1000 * (i % 40), "reason": 'bored, "really"'}
        if i % 4 == 0:
            ev["user_id"] = tid(f"user{i % 3}")
        if i % 3 == 0:
            ev["event_id"] = f"wh-{i}"
        out.append(ev)
    return out


def write_ndjson(path: Path, events: list[Any]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


def write_csv(path: Path, events: list[dict[str, Any]]) -> Path:
    cols = ["session_id", "track_id", "event_type", "timestamp", "context", "meta"]
    cols += ["user_id", "event_id"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for e in events:
        row = []
        for c in cols:
            v = e.get(c)
            row.append("" if v is None else orjson.dumps(v).decode() if c == "meta" else v)
        w.writerow(row)
    path.write_text(buf.getvalue())
    return path


def store(tmp_path: Path, name: str) -> list[str]:
    return ["--db", str(tmp_path / name / "events.db"), "--snapshot-dir", str(tmp_path / name)]


def count(db: Path) -> int:
    conn = connect_sync(db)
    try:
        return conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    finally:
        conn.close()


def folded(db: Path) -> GravityGraph:
    """The log folded as the daemon folds it (read_after, in position order)."""
    gg = GravityGraph()
    conn = connect_sync(db)
    try:
        while True:
            rows, _ = read_after_sync(conn, gg.cursor, 1000)
            if not rows:
                return gg
            gg.fold(rows)
    finally:
        conn.close()


@pytest.mark.process
def test_import_then_rerun_adds_nothing(tmp_path: Path) -> None:
    f = write_ndjson(tmp_path / "history.ndjson", history())
    res = run_cli("import", str(f), *store(tmp_path, "a"))
    assert res.returncode == 0, res.stderr
    assert "imported 60 valid events" in res.stdout and "60 added, 0 already there" in res.stdout
    db = tmp_path / "a" / "events.db"
    assert count(db) == 60
    conn = connect_sync(db)
    stored = dict(conn.execute("SELECT event_id, session_id FROM events").fetchall())
    conn.close()
    assert stored["wh-0"] == "s0"  # the client's ids kept; the others derived, all distinct
    assert len(stored) == 60
    again = run_cli("import", str(f), *store(tmp_path, "a"), "--jobs", "2")
    assert again.returncode == 0, again.stderr
    assert "0 added, 60 already there" in again.stdout
    assert count(db) == 60


@pytest.mark.process
def test_bad_lines_are_reported_by_number_and_the_rest_kept(tmp_path: Path) -> None:
    good = history(5)
    lines = [
        orjson.dumps(good[0]),  # 1
        b"",  # 2: blank, skipped silently
        b"{not json",  # 3
        orjson.dumps({**good[1], "track_id": "nope"}),  # 4
        orjson.dumps(good[1]),  # 5
        orjson.dumps({"session_id": "x", "event_type": "like"}),  # 6: no track_id
        orjson.dumps([1, 2]),  # 7
        orjson.dumps({**good[2], "timestamp": "2999-01-01T00:00:00Z"}),  # 8
        orjson.dumps({**good[3], "meta": {"elapsed_ms": -1}}),  # 9
        orjson.dumps(good[4]),  # 10
    ]
    f = tmp_path / "mixed.ndjson"
    f.write_bytes(b"\n".join(lines) + b"\n")
    res = run_cli("import", str(f), *store(tmp_path, "a"))
    assert res.returncode == 0, res.stderr
    errs = res.stderr.strip().splitlines()
    assert [e.split(":")[1] for e in errs] == ["3", "4", "6", "7", "8", "9"]
    assert "[invalid_json]" in errs[0]
    assert "(track_id) [invalid_track_id]" in errs[1]
    assert "(track_id) [missing_field]" in errs[2]
    assert "[not_an_object]" in errs[3]
    assert "[timestamp_in_future]" in errs[4]
    assert "(meta.elapsed_ms)" in errs[5]
    assert "3 added" in res.stdout and "6 bad lines" in res.stdout
    assert count(tmp_path / "a" / "events.db") == 3

    c = tmp_path / "bad.csv"
    c.write_text(
        "session_id,track_id,event_type,meta\n"
        f"s1,{tid(1)},play_10s,\n"
        f"s1,{tid(2)},skip,{{broken\n"
        f's1,{tid(2)},skip,"{{""elapsed_ms"": 5}}",extra\n'
        f"s1,{tid(3)},nope,\n"
    )
    res = run_cli("import", str(c), *store(tmp_path, "c"))
    assert res.returncode == 0, res.stderr
    errs = res.stderr.strip().splitlines()
    assert [e.split(":")[1] for e in errs] == ["3", "4", "5"]
    assert "(meta) [invalid_meta]" in errs[0] and "[invalid_csv]" in errs[1]
    assert "(event_type) [invalid_event_type]" in errs[2]


@pytest.mark.process
def test_nothing_valid_and_bad_files_exit_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"a": 1}\nnope\n')
    for args in (
        [str(bad)],
        [str(tmp_path / "missing.ndjson")],
        [str(write_ndjson(tmp_path / "empty.ndjson", []))],
        [str(bad), "--batch", "9000", "--url", "http://127.0.0.1:9"],
    ):
        res = run_cli("import", *args, *store(tmp_path, "a"))
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert "Traceback" not in res.stderr
        assert res.stderr.strip().splitlines()[-1].startswith("gravityd: error: ")
    header = tmp_path / "h.csv"
    header.write_text(f"session_id,track,event_type\ns,{tid(1)},like\n")
    res = run_cli("import", str(header), *store(tmp_path, "a"))
    assert res.returncode == 2 and "unknown column 'track'" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.process
async def test_ndjson_csv_and_the_api_give_the_same_graph(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    events = history(90)
    client, svc = await serve(aiohttp_client, tmp_path / "api")
    resp = await client.post("/events", json=events)
    assert resp.status == 202 and (await resp.json())["accepted"] == 90
    assert (await client.post("/admin/fold")).status == 200
    via_api = graph_signature(svc.graph)
    assert via_api[4] > 10  # edges: a real graph

    nd = write_ndjson(tmp_path / "h.ndjson", events)
    cs = write_csv(tmp_path / "h.csv", events)
    for name, f in (("nd", nd), ("csv", cs)):
        res = run_cli("import", str(f), *store(tmp_path, name))
        assert res.returncode == 0, res.stderr
        assert "90 added" in res.stdout
        imported = graph_signature(folded(tmp_path / name / "events.db"))
        # the same graph; only the cursor (the log positions) differs
        assert imported[1:] == via_api[1:], name


def test_pieces_cut_at_record_boundaries_parse_like_the_whole(tmp_path: Path) -> None:
    """Quoted newlines in CSV cells and tiny pieces: the same rows, the same line numbers."""
    events = history(40)
    for ev in events[::7]:
        ev["session_id"] = "multi\nline"
    limits = ValidationLimits()
    now = time.time()
    for f in (write_ndjson(tmp_path / "h.ndjson", events), write_csv(tmp_path / "h.csv", events)):
        fmt = "csv" if f.suffix == ".csv" else "ndjson"
        whole = plan(str(f), fmt, piece_bytes=1 << 30)
        tiny = plan(str(f), fmt, piece_bytes=50)
        assert len(whole.pieces) == 1 and len(tiny.pieces) > 10
        assert tiny.digest == whole.digest

        def rows(p: Any) -> list[Any]:
            return [r for piece in p.pieces for r in parse_piece(p, piece, limits, now, 0).rows]

        a, b = rows(whole), rows(tiny)
        assert len(a) == 40 and a == b
        assert sum(1 for r in a if r[2] == "multi\nline") == 6
    prefix = id_prefix(whole.digest)
    assert derived_event_id(prefix, 3) != derived_event_id(prefix, 4)
    assert derived_event_id(prefix, 3)[14] == "8"  # UUID version 8


@pytest.mark.process
def test_import_is_refused_while_a_daemon_holds_the_log(
    daemon_factory: Any, tmp_path: Path
) -> None:
    d = daemon_factory().start()
    f = write_ndjson(tmp_path / "h.ndjson", history(10))
    res = run_cli("import", str(f), "--db", str(d.db), "--snapshot-dir", str(tmp_path / "s"))
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "another gravityd process is using" in res.stderr
    assert count(d.db) == 0
    assert d.terminate() == 0
    res = run_cli("import", str(f), "--db", str(d.db), "--snapshot-dir", str(tmp_path / "s"))
    assert res.returncode == 0, res.stderr


@pytest.mark.process
def test_import_after_a_snapshot_is_folded_by_the_next_start(
    daemon_factory: Any, tmp_path: Path
) -> None:
    """Imported ids come after the newest snapshot's cursor, so the daemon folds them."""
    d = daemon_factory().start()
    requests.post(d.url + "/events", json=history(30)[:20], timeout=10).raise_for_status()
    assert d.terminate() == 0  # writes the shutdown snapshot
    f = write_ndjson(tmp_path / "h.ndjson", history(60)[20:])
    res = run_cli(
        "import", str(f), "--db", str(d.db), "--snapshot-dir", str(d.db.parent / "snapshots")
    )
    assert res.returncode == 0, res.stderr
    d.start()
    status = requests.get(d.url + "/readyz", timeout=5).json()
    assert status["cursor"] == status["last_id"] and count(d.db) == 60
    d.kill()
    assert graph_signature(folded(d.db))[1:] == graph_signature(_api_graph(history(60)))[1:]


def _api_graph(events: list[dict[str, Any]]) -> GravityGraph:
    from gravityd.core.events import validate_event

    gg = GravityGraph()
    rows = []
    for i, e in enumerate(events, 1):
        v = validate_event(e, ValidationLimits(), time.time())
        rows.append((i, v.session_id, v.track_id, v.event_type, v.ts, v.elapsed_ms, v.context))
    gg.fold(rows)
    return gg


@pytest.mark.process
@pytest.mark.parametrize("fmt", ["ndjson", "csv"])
def test_url_import_posts_batches_and_honours_retry_after(
    daemon_factory: Any, tmp_path: Path, fmt: str
) -> None:
    # loopback is rate limited too here: one request a second after the first
    env = {
        "GRAVITYD_RATE_LIMIT_EXEMPT": "",
        "GRAVITYD_RATE_LIMIT_PER_S": "2",
        "GRAVITYD_RATE_LIMIT_BURST": "1",
    }
    d = daemon_factory(env=env).start()
    events = history(9)
    f = (write_csv if fmt == "csv" else write_ndjson)(tmp_path / f"h.{fmt}", events)
    res = run_cli("import", str(f), "--url", d.url, "--batch", "3")
    assert res.returncode == 0, res.stderr
    assert "9 added" in res.stdout and "retried" in res.stdout
    again = run_cli("import", str(f), "--url", d.url, "--batch", "3")
    assert again.returncode == 0, again.stderr
    assert "0 added, 9 already there" in again.stdout
    requests.post(d.url + "/admin/fold", timeout=10).raise_for_status()
    d.kill()
    assert count(d.db) == 9
    assert graph_signature(folded(d.db))[1:] == graph_signature(_api_graph(events))[1:]


def test_progress_is_plain_lines_when_stderr_is_not_a_terminal() -> None:
    stream = io.StringIO()  # isatty() is False, as for a log file or a pipe
    progress = ImportProgress(2_000_000, stream, delay=0.0, interval=0.0)
    progress.update(1_000_000, 10)
    progress.write("f.ndjson:3: bad")
    progress.update(1_000_000, 10)
    progress.close()
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert "f.ndjson:3: bad" in lines  # the error line whole, on a line of its own
    meter = [x for x in lines if x.startswith("import:")]
    assert any("50%" in x and "10 valid events" in x for x in meter)
    assert "100%" in meter[-1] and "20 valid events" in meter[-1]
