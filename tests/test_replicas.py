"""Roles over one log: a writer, replicas (alone and as supervised workers), read your writes.

Every test runs real `gravityd serve` processes on loopback ports over a real SQLite file, and
kills them for real (SIGKILL). Synchronisation is by the API's own signals: `min_cursor` reads,
`POST /admin/fold`, /readyz; polling appears only where a child process gives no signal (a
restarted worker coming back).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from gravityd.core.graph import graph_signature
from gravityd.snapshots.files import load_newest

from .support import Daemon, event, make_config, run_cli, tid
from .support.replicas import FAST, comparable, lanes, post, sessions

pytestmark = [pytest.mark.process]


def status(d: Daemon) -> dict[str, Any]:
    return requests.get(d.url + "/readyz", timeout=5).json()


def children(pid: int) -> list[int]:
    """The supervisor's worker pids, from the kernel's own list."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()]


def wait_until(check: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)  # a child process coming back up gives no signal to wait on
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def cluster(daemon_factory: Any, tmp_path: Path) -> Any:
    def make(*args: str, folder: Path = tmp_path, env: dict[str, str] | None = None) -> Daemon:
        return daemon_factory(*args, folder=folder, env={**FAST, **(env or {})})

    return make


def test_writer_and_two_workers_read_your_writes_and_match_all(
    cluster: Any, tmp_path: Path
) -> None:
    writer = cluster("--role", "writer").start()
    replicas = cluster("--role", "replica", "--workers", "2").start()
    alone = cluster(folder=tmp_path / "all").start()
    # The writer takes ingest only; reads there say where they are served.
    r = requests.get(f"{writer.url}/tracks/{tid(1)}/gravity_neighbors", timeout=5)
    assert r.status_code == 404 and r.json()["error"]["code"] == "wrong_role"
    r = requests.post(f"{replicas.url}/event", json=event(), timeout=5)
    assert r.status_code == 404 and r.json()["error"]["code"] == "wrong_role"

    events = sessions(40, 12)
    for i in range(0, len(events), 97):  # many commits, so the replicas tail a moving log
        done = post(writer.url, events[i : i + 97])
        # Read your writes on the replica, through whichever worker the kernel picks.
        lanes(replicas.url, 0, done["last_id"])
        post(alone.url, events[i : i + 97])
    last = done["last_id"]
    assert last == len(events)
    requests.post(alone.url + "/admin/fold", timeout=30).raise_for_status()
    pids = set()
    for track in range(23):
        for direction in ("out", "in", "both"):
            got = lanes(replicas.url, track, last, direction)
            want = lanes(alone.url, track, last, direction)
            assert comparable(got) == comparable(want), (track, direction)
    # Both workers answered (the kernel spreads new connections), both hold the whole graph.
    for _ in range(40):
        with requests.Session() as s:
            st = s.get(replicas.url + "/readyz", timeout=5).json()
            pids.add(st["pid"])
            assert st["role"] == "replica" and st["cursor"] == last
    assert len(pids) == 2
    rank = {
        "current_track_id": tid(3),
        "candidate_track_ids": [tid(i) for i in range(23)],
        "embeddings_scores": {tid(i): (i % 7) / 7 for i in range(23)},
        "session_history": [tid(5)],
        "min_cursor": last,
    }
    a = requests.post(replicas.url + "/rank", json=rank, timeout=10)
    b = requests.post(alone.url + "/rank", json=rank, timeout=10)
    assert a.status_code == b.status_code == 200
    assert int(a.headers["Gravityd-Cursor"]) == last
    ra, rb = a.json()["ranked"], b.json()["ranked"]
    assert [x["track_id"] for x in ra] == [x["track_id"] for x in rb]
    assert [round(x["score"], 6) for x in ra] == [round(x["score"], 6) for x in rb]
    # The same graph: the replicas' snapshotter and the all-process snapshot the same state.
    ra = requests.post(replicas.url + "/admin/snapshot", timeout=30)
    if ra.status_code == 409:  # this connection reached the worker without the lease
        ra = wait_until(
            lambda: (x := requests.post(replicas.url + "/admin/snapshot", timeout=30)).ok and x,
            "the snapshotter worker",
        )
    assert ra.status_code == 200, ra.text
    requests.post(alone.url + "/admin/snapshot", timeout=30).raise_for_status()
    cfg = make_config(tmp_path)
    one = load_newest(cfg.snapshot_dir, cfg.graph)
    two = load_newest(str(tmp_path / "all" / "snapshots"), cfg.graph)
    assert one is not None and two is not None
    assert graph_signature(one[2]) == graph_signature(two[2])
    # The snapshotter also published the SQL tables: the cursor and track_edges.
    with sqlite3.connect(tmp_path / "events.db") as conn:
        assert conn.execute("SELECT cursor FROM gravity_cursor").fetchone()[0] == last
        assert conn.execute("SELECT COUNT(*) FROM track_edges").fetchone()[0] == one[2].edge_count


def test_bad_min_cursor_is_400_and_past_the_log_is_503(cluster: Any) -> None:
    d = cluster(env={"GRAVITYD_READ_WAIT_MS": "50"}).start()
    url = f"{d.url}/tracks/{tid(1)}/gravity_neighbors"
    for bad in ("-1", "x", "1.5", str(2**63), " "):
        r = requests.get(url, params={"min_cursor": bad}, timeout=5)
        assert r.status_code == 400, bad
        assert r.json()["error"]["field"] == "min_cursor"
        assert "Gravityd-Cursor" in r.headers
    body = {"current_track_id": tid(1), "candidate_track_ids": [tid(2)], "embeddings_scores": {}}
    for bad in (-3, "7", 1.0, True, [1]):
        r = requests.post(d.url + "/rank", json={**body, "min_cursor": bad}, timeout=5)
        assert r.status_code == 400 and r.json()["error"]["field"] == "min_cursor", bad
    r = requests.get(url, params={"min_cursor": 10}, timeout=5)
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "not_caught_up"
    assert r.headers["Retry-After"] == "1" and r.headers["Gravityd-Cursor"] == "0"
    # Reads without min_cursor, and every read route, carry the cursor.
    post(d.url, [event("s", 1), event("s", 2)])
    for path in (
        "/tracks/top",
        f"/tracks/{tid(1)}",
        "/stats",
        f"/tracks/{tid(1)}/gravity_neighbors",
    ):
        r = requests.get(d.url + path, params={"min_cursor": 2}, timeout=5)
        assert r.status_code == 200 and r.headers["Gravityd-Cursor"] == "2", path
    metrics = requests.get(d.url + "/metrics", timeout=5).text
    assert 'gravityd_read_waits_total{outcome="not_caught_up"} 1.0' in metrics


def test_sigkill_a_worker_under_read_load(cluster: Any) -> None:
    writer = cluster("--role", "writer").start()
    post(writer.url, sessions(10, 10))
    replicas = cluster("--role", "replica", "--workers", "2").start()
    assert replicas.proc is not None
    workers = wait_until(
        lambda: len(children(replicas.proc.pid)) == 2 and children(replicas.proc.pid), "two workers"
    )
    stop = threading.Event()
    answers: list[int] = []
    failures: list[str] = []

    def read_load() -> None:
        while not stop.is_set():
            try:
                # A fresh connection each time: the kernel picks a live worker for each.
                r = requests.get(f"{replicas.url}/tracks/{tid(0)}/gravity_neighbors", timeout=5)
                answers.append(r.status_code)
            except requests.ConnectionError as exc:  # a connection the dying worker held
                failures.append(str(exc))

    def pid_answering() -> int:
        with requests.Session() as s:  # a new connection: the kernel picks a listening worker
            return s.get(f"{replicas.url}/readyz", timeout=5).json()["pid"]

    # Both workers listen (each only once it has caught up) before one is killed.
    wait_until(lambda: {pid_answering() for _ in range(20)} == set(workers), "both workers")
    t = threading.Thread(target=read_load)
    t.start()
    try:
        wait_until(lambda: len(answers) > 50, "reads before the kill")
        os.kill(workers[0], signal.SIGKILL)
        before = len(answers)
        wait_until(lambda: len(answers) > before + 200, "reads after the kill")
        # The supervisor starts a new worker in the dead one's place.
        fresh = wait_until(
            lambda: (
                (c := children(replicas.proc.pid)) and len(c) == 2 and workers[0] not in c and c
            ),
            "the worker restarted",
        )
    finally:
        stop.set()
        t.join(30)
    assert set(answers) == {200}
    assert len(failures) <= 5, failures  # at most the requests in flight on the killed worker
    # The new worker catches up, including writes made after it came back.
    last = post(writer.url, sessions(3, 5, seed=9))["last_id"]
    new = next(p for p in fresh if p not in workers)

    def answered_by_new() -> bool:
        with requests.Session() as s:  # a new connection: any live worker may take it
            r = s.get(f"{replicas.url}/readyz", timeout=5)
        return r.status_code == 200 and r.json()["pid"] == new

    wait_until(answered_by_new, "the restarted worker to answer, ready")
    for _ in range(10):
        lanes(replicas.url, 0, last)
    log = replicas.stderr_path.read_text()
    assert "worker died; restarting" in log
    # SIGTERM stops the supervisor and every worker, exit 0.
    assert replicas.terminate() == 0
    for pid in fresh:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        )


def test_sigkill_the_writer_replicas_keep_serving_nothing_acknowledged_lost(cluster: Any) -> None:
    writer = cluster("--role", "writer").start()
    replica = cluster("--role", "replica").start()
    acked = []
    for i in range(0, 600, 60):
        acked.append(post(writer.url, sessions(60, 1, seed=i)))
    writer.kill()
    last = acked[-1]["last_id"]
    # The replica keeps serving what it has, and has everything acknowledged.
    for track in range(5):
        lanes(replica.url, track, last)
    assert requests.get(replica.url + "/readyz", timeout=5).status_code == 200
    writer.start()
    more = post(writer.url, sessions(5, 4, seed=77))
    assert more["first_id"] == last + 1  # positions carry on: nothing acknowledged was lost
    lanes(replica.url, 0, more["last_id"])
    with sqlite3.connect(writer.db) as conn:
        ids = {r[0] for r in conn.execute("SELECT event_id FROM events")}
    want = {e["event_id"] for i in range(0, 600, 60) for e in sessions(60, 1, seed=i)}
    assert want <= ids


def test_replica_waits_for_a_missing_log_and_refuses_a_foreign_one(
    cluster: Any, tmp_path: Path
) -> None:
    replica = cluster("--role", "replica").start(wait_ready=False)
    r = requests.get(replica.url + "/readyz", timeout=5)
    assert r.status_code == 503 and r.json()["ready"] is False
    wait_until(lambda: "waiting for the log" in replica.stderr_path.read_text(), "the log line")
    writer = cluster("--role", "writer").start()
    last = post(writer.url, sessions(2, 3))["last_id"]
    replica.wait("/readyz")
    lanes(replica.url, 0, last)
    lines = [json.loads(x) for x in replica.stderr_path.read_text().splitlines() if x.strip()]
    said = sum(1 for x in lines if x["msg"] == "waiting for the log")
    assert 1 <= said <= 3  # once per reason (missing, being created), not once per look
    # A file that is not a gravityd log: one clear line, exit 2, no traceback.
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE songs (x)")
    res = run_cli("serve", "--role", "replica", "--db", str(foreign), "--port", "0")
    assert res.returncode == 2
    assert "not a gravityd log" in res.stderr and "Traceback" not in res.stderr
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    res = run_cli("serve", "--role", "replica", "--db", str(junk), "--port", "0")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    res = run_cli("serve", "--role", "writer", "--workers", "2", "--db", str(junk))
    assert res.returncode == 2 and "needs role replica" in res.stderr


def test_one_snapshotter_among_replicas(cluster: Any, tmp_path: Path) -> None:
    """Exactly one graph-holding process holds the lease; when it dies another takes over."""
    env = {"GRAVITYD_SNAPSHOT_INTERVAL_S": "1"}
    writer = cluster("--role", "writer").start()
    last = post(writer.url, sessions(5, 5))["last_id"]
    a = cluster("--role", "replica", env=env).start()
    b = cluster("--role", "replica", env=env).start()
    holders = [
        d for d in (a, b) if requests.get(d.url + "/readyz", timeout=5).json()["snapshotter"]
    ]
    assert len(holders) == 1
    other = b if holders[0] is a else a
    r = requests.post(other.url + "/admin/snapshot", timeout=10)
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_snapshotter"
    assert "gravityd_snapshotter 0.0" in requests.get(other.url + "/metrics", timeout=5).text
    holders[0].kill()
    wait_until(
        lambda: requests.get(other.url + "/readyz", timeout=5).json()["snapshotter"],
        "the other replica to take the lease",
    )
    more = post(writer.url, sessions(2, 2, seed=5))["last_id"]
    lanes(other.url, 0, more)
    r = requests.post(other.url + "/admin/snapshot", timeout=30)
    assert r.status_code == 200 and r.json()["cursor"] >= more > last


def test_a_takedown_on_the_writer_reaches_the_replicas(cluster: Any) -> None:
    """Blocks travel in the log: PUT on the writer, read it back on a replica with min_cursor."""
    writer = cluster("--role", "writer").start()
    replica = cluster("--role", "replica").start()
    last = post(writer.url, sessions(20, 8))["last_id"]
    before = lanes(replica.url, 0, last)
    victim = before[0]["track_id"]
    r = requests.put(f"{writer.url}/admin/tracks/{victim}/block", timeout=10)
    assert r.status_code == 200 and r.json()["changed"] is True
    pos = r.json()["id"]
    assert (
        requests.put(f"{writer.url}/admin/tracks/{victim}/block", timeout=10).json()["changed"]
        is False
    )  # the writer knows the blocks in force from the log itself
    after = lanes(replica.url, 0, pos)
    assert victim not in {x["track_id"] for x in after}
    listed = requests.get(replica.url + "/admin/blocks", params={"min_cursor": pos}, timeout=5)
    assert [b["track_id"] for b in listed.json()["blocks"]] == [victim]
    assert int(listed.headers["Gravityd-Cursor"]) >= pos
    # The replica does not take takedowns (it never writes the log): it says who does.
    r = requests.put(f"{replica.url}/admin/tracks/{victim}/block", timeout=5)
    assert r.status_code == 404 and r.json()["error"]["code"] == "wrong_role"
    undo = requests.delete(f"{writer.url}/admin/tracks/{victim}/block", timeout=10).json()["id"]
    assert comparable(lanes(replica.url, 0, undo)) == comparable(before)
