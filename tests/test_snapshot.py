"""Snapshots, restart, restore and the cron builder, on real files and real processes."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import pytest

from gravityd.commands.build import build, restore
from gravityd.core.graph import FoldParams, GravityGraph, graph_signature
from gravityd.log.sqlite import read_after_sync
from gravityd.log.sqlite_schema import connect_sync
from gravityd.log.sqlite_tables import delete_folded_before
from gravityd.snapshots.files import (
    MAGIC,
    SnapshotError,
    list_snapshots,
    load_newest,
    load_snapshot,
    write_snapshot,
)

from .support import REPO, make_config, run_cli
from .support.sessions import radio_events


def fold_log(db: Path, params: FoldParams | None = None) -> GravityGraph:
    """The reference: one fold of the whole log, in-process."""
    conn = connect_sync(db)
    gg = GravityGraph(params)
    try:
        while events := read_after_sync(conn, gg.cursor, 5000)[0]:
            gg.fold(events)
    finally:
        conn.close()
    return gg


def assert_same_graph(a: GravityGraph, b: GravityGraph) -> None:
    assert a.cursor == b.cursor
    ea, eb = a.to_edge_list(), b.to_edge_list()
    assert [e[:2] for e in ea] == [e[:2] for e in eb]
    for x, y in zip(ea, eb, strict=True):
        assert x[2:5] == pytest.approx(y[2:5], abs=1e-9, rel=1e-9)
        assert x[5] == y[5]
    assert graph_signature(a)[-1] == graph_signature(b)[-1]  # the open sessions


def write_events(cfg: Any, events: list[dict]) -> None:
    """Append events to a log file the way the daemon does (validated, ids in order)."""
    import time as _t

    from gravityd.core.events import ValidationLimits, validate_event
    from gravityd.log.sqlite import _write_batch

    conn = connect_sync(cfg.db)
    try:
        top = conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
        now = _t.time()
        valid = [validate_event(e, ValidationLimits(), now) for e in events]
        _write_batch(conn, [(valid, now)], top + 1)
    finally:
        conn.close()


# ---------------------------------------------------------------------------- format


def test_round_trip_and_streamed_records(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    write_events(cfg, radio_events(60, 1))
    gg = fold_log(Path(cfg.db))
    assert gg.edge_count > 50
    path = write_snapshot(gg, tmp_path / "snaps", chunk=7)  # many small records
    header, back = load_snapshot(path, gg.params)
    assert header["cursor"] == gg.cursor and header["counts"]["edges"] == gg.edge_count
    assert graph_signature(back) == graph_signature(gg)
    assert back.export_state() == gg.export_state()


@pytest.fixture
def good_snapshot(tmp_path: Path) -> Path:
    cfg = make_config(tmp_path)
    write_events(cfg, radio_events(20, 2))
    return write_snapshot(fold_log(Path(cfg.db)), tmp_path / "snaps")


def _rewrite(path: Path, data: bytes) -> None:
    path.write_bytes(data)


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (lambda b: b[: len(b) // 2], "checksum"),
        (lambda b: b[:-1], "checksum"),
        (lambda b: b[:40] + bytes([b[40] ^ 0xFF]) + b[41:], "checksum"),
        (lambda b: b"", "too short"),
        (lambda b: b"NOTASNAP" + b[8:], "not a gravityd snapshot"),
    ],
)
def test_corrupt_snapshots_are_refused(good_snapshot: Path, damage: Any, needle: str) -> None:
    _rewrite(good_snapshot, damage(good_snapshot.read_bytes()))
    with pytest.raises(SnapshotError) as info:
        load_snapshot(good_snapshot)
    assert needle in str(info.value)


def test_wrong_format_version_is_refused(tmp_path: Path) -> None:
    import hashlib
    import struct

    header = msgpack.packb({"format": 99, "cursor": 0, "state": {}})
    body = MAGIC + struct.pack(">I", len(header)) + header + struct.pack(">I", 0)
    path = tmp_path / "gravity-000000000001-c0.gsnap"
    path.write_bytes(body + hashlib.blake2b(body, digest_size=32).digest())
    with pytest.raises(SnapshotError) as info:
        load_snapshot(path)
    assert "format version 99" in str(info.value)


def test_newest_broken_snapshot_is_skipped(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    write_events(cfg, radio_events(10, 3))
    first = fold_log(Path(cfg.db))
    older = write_snapshot(first, cfg.snapshot_dir)
    write_events(cfg, radio_events(10, 4))
    newer = write_snapshot(fold_log(Path(cfg.db)), cfg.snapshot_dir)
    assert [s.path for s in list_snapshots(cfg.snapshot_dir)] == [newer, older]
    newer.write_bytes(newer.read_bytes()[:-10])
    info, _, gg = load_newest(cfg.snapshot_dir)
    assert info.path == older and gg.cursor == first.cursor


# ---------------------------------------------------------------------------- build


def test_build_incremental_equals_one_big_run(tmp_path: Path) -> None:
    inc = make_config(tmp_path / "inc")
    big = make_config(tmp_path / "big")
    (tmp_path / "inc").mkdir()
    (tmp_path / "big").mkdir()
    parts = [radio_events(15, seed) for seed in (10, 11, 12)]
    for part in parts:
        write_events(inc, part)
        res = build(inc)
        assert res.path is not None and res.folded == len(part)
    write_events(big, [e for part in parts for e in part])
    build(big)
    a = load_newest(inc.snapshot_dir)[2]
    b = load_newest(big.snapshot_dir)[2]
    assert graph_signature(a) == graph_signature(b)
    assert_same_graph(a, fold_log(Path(big.db)))
    # a second run with nothing new changes nothing
    before = sorted(p.name for p in Path(inc.snapshot_dir).iterdir())
    conn = sqlite3.connect(inc.db)
    edges_before = conn.execute("SELECT * FROM track_edges ORDER BY src, dst").fetchall()
    res = build(inc)
    assert res.path is None and res.folded == 0
    assert sorted(p.name for p in Path(inc.snapshot_dir).iterdir()) == before
    assert conn.execute("SELECT * FROM track_edges ORDER BY src, dst").fetchall() == edges_before
    # the SQL side: cursor and edges
    assert conn.execute("SELECT cursor FROM gravity_cursor").fetchone()[0] == a.cursor
    assert len(edges_before) == a.edge_count
    conn.close()
    assert len(list_snapshots(inc.snapshot_dir)) == inc.snapshot_keep  # retention


@pytest.mark.process
def test_build_cli_and_lock_beside_daemon(tmp_path: Path, daemon_factory: Any) -> None:
    cfg = make_config(tmp_path)
    write_events(cfg, radio_events(5, 5))
    out = run_cli("build", "--db", cfg.db, "--snapshot-dir", cfg.snapshot_dir)
    assert out.returncode == 0, out.stderr
    assert "cursor" in out.stdout
    out = run_cli("build", "--db", cfg.db, "--snapshot-dir", cfg.snapshot_dir)
    assert out.returncode == 0 and out.stdout.startswith("up to date")
    d = daemon_factory().start()
    out = run_cli("build", "--db", str(d.db), "--snapshot-dir", cfg.snapshot_dir)
    assert out.returncode == 2
    assert "another gravityd process" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------- restore


@pytest.mark.process
def test_restore_refuses_a_bad_file(tmp_path: Path, good_snapshot: Path) -> None:
    cfg = make_config(tmp_path)
    bad = tmp_path / "bad.gsnap"
    bad.write_bytes(good_snapshot.read_bytes()[:-3])
    for target in (bad, tmp_path / "missing.gsnap"):
        out = run_cli("restore", str(target), "--db", cfg.db, "--snapshot-dir", cfg.snapshot_dir)
        assert out.returncode == 2
        assert out.stderr.startswith("gravityd: error: cannot restore")
        assert len(out.stderr.strip().splitlines()) == 1
    assert list_snapshots(cfg.snapshot_dir) == []


def test_restore_older_snapshot_then_replay(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    write_events(cfg, radio_events(10, 6))
    build(cfg)
    old = list_snapshots(cfg.snapshot_dir)[0].path
    kept = tmp_path / "kept.gsnap"
    kept.write_bytes(old.read_bytes())
    write_events(cfg, radio_events(10, 7))
    build(cfg)
    installed = restore(cfg, kept)
    assert list_snapshots(cfg.snapshot_dir)[0].path == installed
    conn = sqlite3.connect(cfg.db)
    assert (
        conn.execute("SELECT cursor FROM gravity_cursor").fetchone()[0]
        < (conn.execute("SELECT MAX(id) FROM events").fetchone()[0])
    )
    conn.close()
    # the next build (like the next start) loads the restored one and replays after it
    res = build(cfg)
    assert res.folded > 0
    assert_same_graph(load_newest(cfg.snapshot_dir)[2], fold_log(Path(cfg.db)))


def test_log_retention_keeps_unfolded_and_newest(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    write_events(cfg, radio_events(10, 8))
    conn = connect_sync(cfg.db)
    total = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    deleted = delete_folded_before(conn, cursor=10, older_than=1e12, chunk=3)
    assert deleted == 10
    assert conn.execute("SELECT MIN(id) FROM events").fetchone()[0] == 11
    assert delete_folded_before(conn, cursor=10**9, older_than=1e12) == total - 11
    assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 1  # the newest stays
    conn.close()


# ---------------------------------------------------------------------------- daemon


async def post(url: str, events: list[dict], http: aiohttp.ClientSession) -> int:
    acked = 0
    for i in range(0, len(events), 200):
        async with http.post(url + "/events", json=events[i : i + 200]) as r:
            assert r.status == 202
            acked += (await r.json())["accepted"]
    return acked


async def daemon_graph(url: str, http: aiohttp.ClientSession, tmp_path: Path) -> GravityGraph:
    """The daemon's live graph, as the snapshot it writes on request."""
    async with http.post(url + "/admin/snapshot") as r:
        assert r.status == 200, await r.text()
        path = (await r.json())["path"]
    return load_snapshot(path)[1]


@pytest.mark.process
async def test_restart_from_snapshot_equals_full_fold(tmp_path: Path, daemon_factory: Any) -> None:
    d = daemon_factory().start()
    async with aiohttp.ClientSession() as http:
        await post(d.url, radio_events(40, 20), http)
        async with http.post(d.url + "/admin/fold") as r:
            assert r.status == 200
        async with http.post(d.url + "/admin/snapshot") as r:
            snap = await r.json()
        assert Path(snap["path"]).exists() and snap["cursor"] > 0
        await post(d.url, radio_events(40, 21), http)  # a tail after the snapshot
    d.kill()
    d.start()  # ready = snapshot loaded + tail replayed
    log = d.stderr_path.read_text()
    assert "snapshot loaded" in log
    async with aiohttp.ClientSession() as http:
        live = await daemon_graph(d.url, http, tmp_path)
    assert_same_graph(live, fold_log(d.db))
    conn = sqlite3.connect(d.db)
    assert conn.execute("SELECT cursor FROM gravity_cursor").fetchone()[0] == live.cursor
    assert conn.execute("SELECT COUNT(*) FROM track_edges").fetchone()[0] == live.edge_count
    conn.close()


@pytest.mark.process
async def test_sigkill_during_fold_and_snapshot(tmp_path: Path, daemon_factory: Any) -> None:
    """Kill at random points while events stream in and snapshots are written; after each
    restart the graph equals one fold of the whole log and no acknowledged event is missing."""
    rnd = random.Random(7)
    d = daemon_factory("--config", str(REPO / "config" / "gravityd.toml"))
    d.start()
    acked = 0
    for round_ in range(4):
        async with aiohttp.ClientSession() as http:

            async def snapshots() -> None:
                while True:
                    async with http.post(d.url + "/admin/snapshot") as r:
                        await r.read()

            task = asyncio.create_task(snapshots())
            events = radio_events(30, 100 + round_)
            acked += await post(d.url, events, http)
            await asyncio.sleep(rnd.random() * 0.05)  # a random point of the fold / snapshot
            d.kill()
            task.cancel()
            with pytest.raises((asyncio.CancelledError, aiohttp.ClientError)):
                await task
        # no half-written file is ever taken for a snapshot
        for s in list_snapshots(d.db.parent / "snapshots"):
            load_snapshot(s.path)
        d.start()
    conn = sqlite3.connect(d.db)
    assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == acked
    conn.close()
    async with aiohttp.ClientSession() as http:
        live = await daemon_graph(d.url, http, tmp_path)
    assert_same_graph(live, fold_log(d.db))
