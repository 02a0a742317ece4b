"""A snapshot knows which log it came from: nothing loads another log's snapshot unasked.

Real SQLite files, real `gravityd serve` processes and the real CLI; synchronisation by the
API's signals (min_cursor reads, /readyz). Event times are relative to now.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from gravityd.commands.build import build
from gravityd.core.graph import GravityGraph
from gravityd.log import LogIdentity
from gravityd.log.sqlite_schema import connect_sync, read_identity
from gravityd.snapshots.files import list_snapshots, load_newest, write_snapshot

from .support import REPO, Daemon, free_port, make_config, run_cli, serve, tid

FAST = {"GRAVITYD_SNAPSHOT_ON_SHUTDOWN": "0"}


def listening(n_sessions: int, length: int, seed: int, ago_s: float = 3600.0) -> list[dict]:
    """Sessions over 23 tracks, timed relative to now, each event with an event_id."""
    start = time.time() - ago_s
    out = []
    for s in range(n_sessions):
        for i in range(length):
            track = (s * 7 + i * (seed + 3)) % 23
            at = datetime.fromtimestamp(start + s * 60 + i * 5, UTC).isoformat()
            out.append(
                {
                    "session_id": f"s{seed}-{s}",
                    "track_id": tid(track),
                    "event_type": "play_10s",
                    "event_id": f"e{seed}-{s}-{i}",
                    "timestamp": at,
                }
            )
    return out


def post(url: str, events: list[dict]) -> dict[str, Any]:
    r = requests.post(url + "/events", json=events, timeout=30)
    assert r.status_code == 202, r.text
    return r.json()


def read(url: str, track: int, cursor: int = 0) -> tuple[int, list[dict]]:
    r = requests.get(
        f"{url}/tracks/{tid(track)}/gravity_neighbors",
        params={"min_cursor": cursor, "limit": 100},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return int(r.headers["Gravityd-Cursor"]), r.json()


def log_lines(d: Daemon) -> list[dict]:
    return [json.loads(x) for x in d.stderr_path.read_text().splitlines() if x.startswith("{")]


def other_log(tmp_path: Path, sessions: int = 30) -> tuple[Any, Path]:
    """Another SQLite log with events and a built snapshot of it: (its config, the file)."""
    cfg = make_config(tmp_path / "other")
    (tmp_path / "other").mkdir(parents=True, exist_ok=True)
    from .test_snapshot import write_events

    write_events(cfg, listening(sessions, 8, seed=9))
    res = build(cfg)
    assert res.path is not None and res.cursor == sessions * 8
    return cfg, res.path


def test_a_daemon_on_a_new_log_skips_another_logs_snapshot(
    daemon_factory: Any, tmp_path: Path
) -> None:
    """The issue's scenario: a writer and a replica on a brand-new log share a snapshot folder
    with another log's snapshots (one that records its log, one from before 0.6 whose cursor
    lies past this log's end). Neither is loaded; each skip is one log line saying why."""
    _, foreign = other_log(tmp_path)
    folder = tmp_path / "new"
    (folder / "snapshots").mkdir(parents=True)
    shutil.copy(foreign, folder / "snapshots" / foreign.name)
    legacy = GravityGraph()
    legacy.fold([(5000, "x", tid(1), "play_10s", time.time(), None, None)])
    write_snapshot(legacy, folder / "snapshots")  # no origin; cursor 5000, past the end
    assert len(list_snapshots(folder / "snapshots")) == 2
    writer = daemon_factory("--role", "writer", folder=folder, env=FAST).start()
    replica = daemon_factory("--role", "replica", folder=folder, env=FAST).start()
    cursor, got = read(replica.url, 0)
    assert cursor == 0 and got == []  # the other log's graph is not served
    done = post(writer.url, listening(4, 6, seed=1))
    assert done["last_id"] == 24  # positions of this log, not after the other's cursor
    cursor, got = read(replica.url, 0, done["last_id"])
    assert cursor == 24 and got  # read your writes: this log's events are folded
    skipped = [x for x in log_lines(replica) if x["msg"] == "snapshot skipped: not of this log"]
    reasons = [x["reason"] for x in skipped]
    assert len(reasons) == 2, reasons
    assert any("a snapshot of another log (sqlite:" in r for r in reasons), reasons
    assert any("its cursor 5000 lies beyond the log's end (0)" in r for r in reasons), reasons
    assert not [x for x in log_lines(replica) if x["msg"] == "snapshot loaded"]


def test_load_falls_back_to_an_older_snapshot_of_this_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg, first = other_log(tmp_path, sessions=5)
    conn = connect_sync(cfg.db)
    try:
        identity = read_identity(conn)
    finally:
        conn.close()
    assert identity.id.startswith("sqlite:") and identity.claimed == 40
    # Newer files: one of another log, one of this log past its end (a log restored from an
    # older backup), one that does not verify.
    g = load_newest(cfg.snapshot_dir)[2]
    write_snapshot(g, cfg.snapshot_dir, origin="sqlite:" + "0" * 32)
    ahead = GravityGraph()
    ahead.fold([(41, "x", tid(1), "play_10s", time.time(), None, None)])
    write_snapshot(ahead, cfg.snapshot_dir, origin=identity.id)
    broken = write_snapshot(g, cfg.snapshot_dir, origin=identity.id)
    broken.write_bytes(broken.read_bytes()[:-5])
    with caplog.at_level(logging.WARNING, logger="gravityd.snapshot"):
        found = load_newest(cfg.snapshot_dir, None, identity, identity.claimed)
    assert found is not None and found.info.path == first and found.graph.cursor == 40
    said = [(r.getMessage(), getattr(r, "reason", getattr(r, "error", ""))) for r in caplog.records]
    assert len(said) == 3, said
    assert "checksum mismatch" in said[0][1]
    assert "beyond the log's end (40)" in said[1][1]
    assert "another log" in said[2][1]
    # Without an identity (the in-process ranker) the newest that verifies.
    assert load_newest(cfg.snapshot_dir).graph.cursor == 41
    # A snapshot adopted by restore is accepted although of another log.
    adopted = LogIdentity(identity.id, frozenset({("sqlite:" + "0" * 32, 40)}), 40)
    assert load_newest(cfg.snapshot_dir, None, adopted, 40).info.path != first


@pytest.mark.process
def test_build_never_adopts_restore_does_and_says_so(tmp_path: Path) -> None:
    other, foreign = other_log(tmp_path)
    mine = make_config(tmp_path / "mine")
    (tmp_path / "mine").mkdir()
    Path(mine.snapshot_dir).mkdir()
    shutil.copy(foreign, Path(mine.snapshot_dir) / foreign.name)
    # build on the new, empty log does not pick the other log's snapshot up
    res = run_cli("build", "--db", mine.db, "--snapshot-dir", mine.snapshot_dir)
    assert res.returncode == 0, res.stderr
    assert "folded 0 events from the start of the log" in res.stdout
    assert load_newest(mine.snapshot_dir, None, _identity(mine.db), 0).graph.edge_count == 0
    # restore is the explicit way: it names the snapshot, its log, and what the next start does
    res = run_cli("restore", str(foreign), "--db", mine.db, "--snapshot-dir", mine.snapshot_dir)
    assert res.returncode == 0, res.stderr
    other_id = _identity(other.db).id
    mine_id = _identity(mine.db).id
    said = res.stdout.strip()
    assert said.startswith(f"restored {foreign} as {mine.snapshot_dir}/gravity-")
    assert f"a snapshot of another log ({other_id}), now adopted by this log ({mine_id})" in said
    assert "cursor 240" in said and "The next start (or build) loads it" in said
    assert _identity(mine.db).adopted == frozenset({(other_id, 240)})
    assert _identity(mine.db).claimed == 240
    # ...and the next start does: the other log's graph, new positions after its cursor
    d = Daemon(tmp_path / "mine", env=FAST)
    try:
        d.start()
        loaded = [x for x in log_lines(d) if x["msg"] == "snapshot loaded"]
        assert loaded and loaded[0]["origin"] == other_id and loaded[0]["cursor"] == 240
        assert read(d.url, 0)[1]  # the adopted graph
        done = post(d.url, listening(1, 3, seed=2))
        assert done["first_id"] == 241
    finally:
        d.terminate()


def _identity(db: str) -> LogIdentity:
    conn = connect_sync(db)
    try:
        return read_identity(conn)
    finally:
        conn.close()


@pytest.mark.process
def test_build_counts_events_not_positions(tmp_path: Path) -> None:
    """20 events and 3 takedowns are 23 positions: build says it folded 20 events."""
    import asyncio

    from gravityd.core.events import ValidationLimits, validate_event
    from gravityd.core.takedowns import change_event
    from gravityd.log.sqlite import SqliteLog

    cfg = make_config(tmp_path)

    async def fill() -> None:
        log = SqliteLog(cfg.db)
        await log.open()
        try:
            now = time.time()
            evs = [validate_event(e, ValidationLimits(), now) for e in listening(4, 5, seed=3)]
            await log.append(evs[:10], now)
            for k in range(3):
                await log.append([change_event(tid(k), k != 1, now)], now)
            await log.append(evs[10:], now)
        finally:
            await log.close()

    asyncio.run(fill())
    res = run_cli("build", "--db", cfg.db, "--snapshot-dir", cfg.snapshot_dir)
    assert res.returncode == 0, res.stderr
    assert "cursor 23: folded 20 events and 3 block changes from the start of the log" in (
        res.stdout
    )


async def test_a_block_answer_and_the_next_read_agree_no_op_spends_nothing(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client, svc = await serve(aiohttp_client, tmp_path, fold_interval_ms=200.0)
    assert (await client.post("/events", json=listening(3, 4, seed=4))).status == 202
    resp = await client.put(f"/admin/tracks/{tid(5)}/block")
    body = await resp.json()
    assert body["changed"] is True and body["id"] == 13
    resp = await client.get(f"/tracks/{tid(1)}/gravity_neighbors")
    assert int(resp.headers["Gravityd-Cursor"]) == body["id"]
    # the same PUT again: nothing changes, no position is spent, the answer names the block's
    top = svc.event_log.last_id
    again = await (await client.put(f"/admin/tracks/{tid(5)}/block")).json()
    assert again == {"track_id": tid(5), "blocked": True, "id": 13, "changed": False}
    assert svc.event_log.last_id == top
    # an unblock of a track never blocked: no position either
    never = await (await client.delete(f"/admin/tracks/{tid(6)}/block")).json()
    assert never["changed"] is False and never["id"] == 0 and svc.event_log.last_id == top
    resp = await client.delete(f"/admin/tracks/{tid(5)}/block")
    gone = await resp.json()
    assert gone["changed"] is True and gone["id"] == 14 and svc.event_log.last_id == 14
    resp = await client.get(f"/tracks/{tid(1)}/gravity_neighbors")
    assert int(resp.headers["Gravityd-Cursor"]) == 14


def _start_pair(root: Path, n: int) -> str | None:
    """A writer then at once a replica on a new log; None once the replica is ready, else
    what went wrong."""
    folder = root / f"race{n}"
    folder.mkdir()
    db = folder / "events.db"
    procs = []
    ports = []
    try:
        for role in ("writer", "replica"):
            port = free_port()
            ports.append(port)
            err = open(folder / f"{role}.log", "wb")  # noqa: SIM115 - closed with the process
            procs.append(
                (
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "gravityd",
                            "serve",
                            "--role",
                            role,
                            "--db",
                            str(db),
                            "--snapshot-dir",
                            str(folder / "snapshots"),
                            "--port",
                            str(port),
                        ],
                        cwd=REPO,
                        stdout=subprocess.DEVNULL,
                        stderr=err,
                        env={**os.environ, **FAST, "GRAVITYD_LOG_FORMAT": "json"},
                    ),
                    err,
                )
            )
        replica = procs[1][0]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if replica.poll() is not None:
                return (folder / "replica.log").read_text()
            try:
                r = requests.get(f"http://127.0.0.1:{ports[1]}/readyz", timeout=1)
                if r.status_code == 200:
                    return None
            except requests.RequestException:
                pass
            time.sleep(0.05)  # a child process's port gives no signal to wait on
        return "replica not ready within 60 s"
    finally:
        for proc, err in procs:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            err.close()


@pytest.mark.process
def test_fifty_back_to_back_writer_and_replica_starts_on_a_new_log(tmp_path: Path) -> None:
    """Start order does not matter: a replica that starts while its writer creates the log
    waits for it, never takes the half-made file for somebody else's database."""
    with ThreadPoolExecutor(4) as pool:
        failures = [f for f in pool.map(lambda n: _start_pair(tmp_path, n), range(50)) if f]
    assert failures == [], failures[0]


def test_jetstream_a_fresh_stream_skips_a_foreign_snapshot(
    nats_cluster: Any,
    daemon_factory: Any,
    tmp_path: Path,
) -> None:
    """On JetStream: a writer and a replica on a fresh stream, their snapshot folders holding
    another log's snapshots. The replica starts from nothing, and read-your-writes holds."""
    url = nats_cluster.url
    env = {**FAST, "GRAVITYD_JS_ACK_TIMEOUT_S": "2"}
    ahead = GravityGraph()
    ahead.fold([(28056, "x", tid(1), "play_10s", time.time(), None, None)])
    for name in ("w", "r"):
        write_snapshot(ahead, tmp_path / name / "snapshots")  # before 0.6: no origin
        write_snapshot(ahead, tmp_path / name / "snapshots", origin="gravity@2020-01-01T00:00Z")
    writer = daemon_factory("--role", "writer", "--log-url", url, folder=tmp_path / "w", env=env)
    replica = daemon_factory("--role", "replica", "--log-url", url, folder=tmp_path / "r", env=env)
    writer.start()
    replica.start()
    done = post(writer.url, listening(3, 4, seed=5))
    cursor, got = read(replica.url, 0, done["last_id"])
    assert cursor == done["last_id"] and tid(8) in [x["track_id"] for x in got]
    lines = log_lines(replica)
    reasons = [x["reason"] for x in lines if x["msg"] == "snapshot skipped: not of this log"]
    assert len(reasons) == 2, reasons
    assert any("a snapshot of another log (gravity@2020-01-01T00:00Z)" in r for r in reasons)
    assert any("its cursor 28056 lies beyond the log's end" in r for r in reasons)
    assert not [x for x in lines if x["msg"] == "snapshot loaded"]


def test_readability_check_sees_a_migration_before_or_after_never_half_way(
    tmp_path: Path,
) -> None:
    """The replica's check, with the writer's migration committed between two of its reads
    (as in the start-up race): one read transaction sees either side, never a mix."""
    import sqlite3

    from gravityd.log import LogMissing
    from gravityd.log.sqlite_schema import check_readable, prepare

    db = tmp_path / "events.db"
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("PRAGMA journal_mode = WAL")  # what the writer does first
    reader = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    migrated = []

    def between(statement: str) -> None:
        if "COUNT(*) FROM sqlite_master" in statement and not migrated:
            prepare(writer, "NORMAL")  # the writer's migration commits now
            migrated.append(statement)

    reader.set_trace_callback(between)
    try:
        with pytest.raises(LogMissing):  # "not there yet": the replica waits and looks again
            check_readable(reader)
        assert migrated  # the migration did land in the middle of the check
        reader.set_trace_callback(None)
        top, identity = check_readable(reader)  # the next look sees the whole log
        assert top == 0 and identity.id.startswith("sqlite:")
    finally:
        reader.close()
        writer.close()
