"""Faults: a full disk, a locked log, an unwritable or full snapshot folder, unreadable rows.

Each one must end in a clear answer (503 with Retry-After, a log line, a metric), lose nothing
acknowledged, write nothing half-way, and heal without a restart once the fault is gone.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from gravityd.daemon.service import Gravityd
from gravityd.http.app import SERVICE, create_app
from gravityd.snapshots.files import list_snapshots, load_snapshot
from gravityd.snapshots.lease import LEASE_NAME

from .support import event, make_config, metric, run_cli, serve, tid


def stored_event_ids(db: str | Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT event_id FROM events ORDER BY id")]


def batch(prefix: str, n: int) -> list[dict[str, Any]]:
    return [event(f"{prefix}-s{i % 7}", i % 13, event_id=f"{prefix}-{i}") for i in range(n)]


@contextmanager
def tiny_fs(path: Path, size: str) -> Iterator[Callable[[str], None]]:
    """A real small filesystem (tmpfs) at `path`; yields a function that resizes it."""
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")

    def resize(new: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={new}", str(path)], check=True)

    try:
        yield resize
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextmanager
def unwritable(path: Path) -> Iterator[None]:
    """A folder nobody can create files in: chmod for a normal user; root ignores modes, so
    the immutable attribute there."""
    if os.geteuid() != 0:
        path.chmod(0o500)
        try:
            yield
        finally:
            path.chmod(0o700)
        return
    res = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot make a folder immutable here: {res.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


# ------------------------------------------------------------------------------- the log


async def test_sqlite_full_answers_503_then_recovers(aiohttp_client: Any, tmp_path: Path) -> None:
    client, svc = await serve(aiohttp_client, tmp_path)
    assert (await client.post("/events", json=batch("a", 50))).status == 202
    # SQLite's own size cap: the next page it needs is refused with SQLITE_FULL.
    pages = await svc.event_log.page_count()
    await svc.event_log.set_max_pages(pages)
    resp = await client.post("/events", json=batch("b", 2000))
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "1"
    body = await resp.json()
    assert body["error"]["code"] == "log_unavailable"
    assert "full" in body["error"]["message"]
    assert stored_event_ids(svc.config.db) == [f"a-{i}" for i in range(50)]  # nothing half-written
    metrics = await (await client.get("/metrics")).text()
    assert metric(metrics, "gravityd_commit_errors_total") >= 1
    assert (await client.get("/readyz")).status == 200  # reads and readiness carry on
    # Space comes back: the same daemon takes the retry, ids carry on without a gap.
    await svc.event_log.set_max_pages(1073741823)
    resp = await client.post("/events", json=batch("b", 2000))
    assert resp.status == 202
    assert (await resp.json())["first_id"] == 51
    ids = stored_event_ids(svc.config.db)
    assert ids == [f"a-{i}" for i in range(50)] + [f"b-{i}" for i in range(2000)]
    fold = await (await client.post("/admin/fold")).json()
    assert fold["cursor"] == 2050


@pytest.mark.process
async def test_real_full_disk_loses_nothing_acknowledged(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    disk = tmp_path / "disk"
    with tiny_fs(disk, "400k") as resize:
        client, svc = await serve(
            aiohttp_client, tmp_path, db=str(disk / "events.db"), snapshot_on_shutdown=False
        )
        acked: list[str] = []
        refused = 0
        for k in range(200):  # ~100 KB a batch: the disk fills within a few
            events = batch(f"k{k}", 300)
            resp = await client.post("/events", json=events)
            if resp.status == 202:
                acked += [e["event_id"] for e in events]
                continue
            assert resp.status == 503 and "Retry-After" in resp.headers
            refused += 1
            if refused == 3:
                break
        assert refused == 3 and acked, "the tiny disk never filled"
        assert stored_event_ids(svc.config.db) == acked  # all acknowledged, nothing more
        resize("16m")  # the operator frees space: no restart
        late = batch("late", 300)
        resp = await client.post("/events", json=late)
        assert resp.status == 202, await resp.text()
        assert stored_event_ids(svc.config.db) == acked + [e["event_id"] for e in late]
        await client.close()


async def test_locked_log_answers_503_and_recovers(aiohttp_client: Any, tmp_path: Path) -> None:
    client, svc = await serve(aiohttp_client, tmp_path, busy_timeout_ms=100)
    assert (await client.post("/event", json=event("s", 1, event_id="first"))).status == 202
    other = sqlite3.connect(svc.config.db, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        resp = await client.post("/event", json=event("s", 2, event_id="second"))
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "1"
        assert "locked" in (await resp.json())["error"]["message"]
        other.execute("ROLLBACK")
    finally:
        other.close()
    assert (await client.post("/event", json=event("s", 2, event_id="second"))).status == 202
    assert stored_event_ids(svc.config.db) == ["first", "second"]


# ---------------------------------------------------------------------------- snapshots


async def graph_with_events(client: Any, prefix: str, n: int = 200) -> None:
    assert (await client.post("/events", json=batch(prefix, n))).status == 202
    assert (await client.post("/admin/fold")).status == 200


async def wait_for(check: Callable[[], Any], what: str, timeout: float = 20.0) -> None:
    """Poll a condition that no request can signal (a background retry), bounded."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.mark.process
async def test_unwritable_snapshot_folder_keeps_previous_and_retries(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client, svc = await serve(
        aiohttp_client,
        tmp_path,
        snapshot_interval_s=1.0,
        snapshot_retry_s=0.05,
        snapshot_on_shutdown=False,
    )
    await graph_with_events(client, "a")
    first = await (await client.post("/admin/snapshot")).json()
    folder = Path(svc.config.snapshot_dir)
    before = Path(first["path"]).read_bytes()
    await graph_with_events(client, "b")
    with unwritable(folder):
        resp = await client.post("/admin/snapshot")
        assert resp.status == 503
        assert resp.headers["Retry-After"]
        assert (await resp.json())["error"]["code"] == "snapshot_failed"

        async def periodic_failed() -> bool:
            text = await (await client.get("/metrics")).text()
            return metric(text, "gravityd_snapshot_errors_total") >= 3  # manual + 2 retries

        await wait_for(periodic_failed, "the periodic snapshot to fail and retry")
        assert [s.path for s in list_snapshots(folder)] == [Path(first["path"])]
        assert Path(first["path"]).read_bytes() == before
        left = sorted(p.name for p in folder.iterdir() if p.name != LEASE_NAME)
        assert left == [Path(first["path"]).name]  # no partial file
    # Writable again: the retry (not a request, not a restart) writes the new snapshot.

    async def retried() -> bool:
        return len(list_snapshots(folder)) == 2

    await wait_for(retried, "the retry to write a snapshot")
    newest = list_snapshots(folder)[0]  # newest first
    _, gg = load_snapshot(newest.path, svc.config.graph)
    assert gg.cursor == svc.graph.cursor == 400
    stats = await (await client.get("/stats")).json()
    assert stats["snapshot_age_s"] < 60


@pytest.mark.process
async def test_snapshot_on_a_full_disk_leaves_no_partial_file(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "snapdisk"
    with tiny_fs(folder, "64k") as resize:
        client, svc = await serve(
            aiohttp_client, tmp_path, snapshot_dir=str(folder), snapshot_on_shutdown=False
        )
        await graph_with_events(client, "a", 50)
        first = await (await client.post("/admin/snapshot")).json()
        before = Path(first["path"]).read_bytes()
        many = [
            event(f"big-{i // 2}", f"t{i}", event_id=f"big-{i}") for i in range(4000)
        ]  # ~2,000 new edges: a snapshot several times the free space
        assert (await client.post("/events", json=many)).status == 202
        await client.post("/admin/fold")
        resp = await client.post("/admin/snapshot")
        assert resp.status == 503
        assert "No space left" in (await resp.json())["error"]["message"]
        left = sorted(p.name for p in folder.iterdir() if p.name != LEASE_NAME)
        assert left == [Path(first["path"]).name]  # no partial file
        assert Path(first["path"]).read_bytes() == before
        resize("32m")
        ok = await client.post("/admin/snapshot")
        assert ok.status == 200
        _, gg = load_snapshot((await ok.json())["path"], svc.config.graph)
        assert gg.edge_count == svc.graph.edge_count
        await client.close()


# ------------------------------------------------------------------------- unreadable rows


def write_log_with_bad_rows(db: Path) -> dict[int, str]:
    """A log with good events around rows that were written around the API."""
    from gravityd.log.sqlite_schema import connect_sync

    conn = connect_sync(db)
    rows = []
    bad = {
        4: ("s1", tid(9), "play_10s", "yesterday", None),  # ts is text
        7: ("s1", tid(9), "teleport", 1.7e9, None),  # unknown event type
        9: ("s2", tid(9), "skip", 1.7e9, -40),  # negative elapsed_ms
        12: ("s2", b"\x00blob", "play_10s", 1.7e9, None),  # track id is a blob
    }
    t = 1_700_000_000.0
    for i in range(1, 15):
        if i in bad:
            sid, track, kind, ts, el = bad[i]
        else:
            sid, track, kind, ts, el = (f"s{i % 2 + 1}", tid(i), "play_10s", t + i, None)
        rows.append((i, f"e{i}", sid, track, kind, None, ts, t, None, None, el))
    conn.executemany(
        "INSERT INTO events (id, event_id, session_id, track_id, event_type, user_id, ts,"
        " received_at, context, meta, elapsed_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        rows,
    )
    conn.close()
    return {4: "ts", 7: "event_type", 9: "elapsed_ms", 12: "track_id"}


async def test_fold_skips_and_reports_unreadable_rows(
    aiohttp_client: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = make_config(tmp_path)
    problems = write_log_with_bad_rows(Path(cfg.db))
    svc = Gravityd(cfg)
    client = await aiohttp_client(create_app(svc))
    assert (await client.post("/admin/fold")).status == 200
    assert (await client.get("/readyz")).status == 200  # the bad rows did not stop readiness
    assert svc.graph.cursor == 14
    text = await (await client.get("/metrics")).text()
    for problem in set(problems.values()):
        assert metric(text, f'gravityd_fold_skipped_events_total{{problem="{problem}"}}') == 1
    logged = {
        (r.__dict__.get("id"), r.__dict__.get("problem"))
        for r in caplog.records
        if r.getMessage() == "stored event skipped by the fold"
    }
    assert logged == set(problems.items())
    # The good events around them were folded (session s2: 3 -> 5 -> 11, past bad 7 and 9),
    # and nothing of the bad rows reached the graph.
    lanes = await (await client.get(f"/tracks/{tid(3)}/gravity_neighbors")).json()
    assert lanes[0]["track_id"] == tid(5)
    assert tid(9) not in svc.graph.g
    # New events after them fold as usual: the fold task is alive.
    assert (await client.post("/event", json=event("s1", 20))).status == 202
    assert (await (await client.post("/admin/fold")).json())["cursor"] == 15
    assert client.server.app[SERVICE] is svc


@pytest.mark.process
def test_build_skips_the_same_rows(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    write_log_with_bad_rows(Path(cfg.db))
    res = run_cli("build", "--db", cfg.db, "--snapshot-dir", cfg.snapshot_dir)
    assert res.returncode == 0, res.stderr
    assert "skipped 4 unreadable stored events" in res.stdout
    assert "cursor 14" in res.stdout
