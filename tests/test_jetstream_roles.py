"""Writers and replicas over one JetStream stream, as real `gravityd serve` processes, against a
`--role all` daemon on SQLite given the same events."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from bench.nats_nodes import NatsCluster, nats_server_binary

from .support import Daemon, tid
from .support.jetstream import stream_event_ids
from .support.replicas import FAST, comparable, lanes, post, sessions

pytestmark = [pytest.mark.cluster, pytest.mark.process]


@pytest.fixture
def procs(daemon_factory: Any, tmp_path: Path) -> Any:
    def make(name: str, *args: str) -> Daemon:
        env = {**FAST, "GRAVITYD_JS_ACK_TIMEOUT_S": "2"}
        return daemon_factory(*args, folder=tmp_path / name, env=env)

    return make


def test_two_writers_two_replicas_match_an_all_sqlite_daemon(
    nats_cluster: NatsCluster, procs: Any
) -> None:
    url = nats_cluster.url
    writers = [procs(f"w{i}", "--role", "writer", "--log-url", url).start() for i in range(2)]
    replicas = [procs(f"r{i}", "--role", "replica", "--log-url", url).start() for i in range(2)]
    alone = procs("all").start()
    events = sessions(40, 12)
    last = 0
    for k, i in enumerate(range(0, len(events), 97)):
        # Alternate writers; each answer's last_id is a stream position to read through.
        done = post(writers[k % 2].url, events[i : i + 97])
        assert done["last_id"] > last
        last = done["last_id"]
        lanes(replicas[k % 2].url, 0, last)  # read your writes on a replica
        post(alone.url, events[i : i + 97])
    # A retry of an earlier batch through the other writer is a duplicate, positions kept.
    again = post(writers[1].url, events[:97])
    assert again["duplicates"] == 97
    requests.post(alone.url + "/admin/fold", timeout=30).raise_for_status()
    for rep in replicas:
        for track in range(23):
            for direction in ("out", "in"):
                got = lanes(rep.url, track, last, direction)
                want = lanes(alone.url, track, 0, direction)
                assert comparable(got) == comparable(want), (track, direction)
        rank = {
            "current_track_id": tid(3),
            "candidate_track_ids": [tid(i) for i in range(23)],
            "embeddings_scores": {tid(i): (i % 7) / 7 for i in range(23)},
            "session_history": [tid(5)],
            "min_cursor": last,
        }
        a = requests.post(rep.url + "/rank", json=rank, timeout=10)
        b = requests.post(alone.url + "/rank", json={**rank, "min_cursor": 0}, timeout=10)
        assert a.status_code == b.status_code == 200
        assert int(a.headers["Gravityd-Cursor"]) == last
        ra, rb = a.json()["ranked"], b.json()["ranked"]
        assert [x["track_id"] for x in ra] == [x["track_id"] for x in rb]
        assert [round(x["score"], 6) for x in ra] == [round(x["score"], 6) for x in rb]


def test_nats_stopped_then_back_the_same_processes_recover(
    nats_cluster: NatsCluster, procs: Any
) -> None:
    url = nats_cluster.url
    writer = procs("w", "--role", "writer", "--log-url", url).start()
    replica = procs("r", "--role", "replica", "--log-url", url).start()
    events = sessions(10, 6, seed=2)
    first = post(writer.url, events[:30])
    before = lanes(replica.url, 0, first["last_id"])
    nats_cluster.stop()
    r = requests.post(writer.url + "/events", json=events[30:], timeout=30)
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "log_unavailable" and int(r.headers["Retry-After"]) >= 1
    # The replica keeps serving the graph it has.
    r = requests.get(f"{replica.url}/tracks/{tid(0)}/gravity_neighbors", timeout=10)
    assert r.status_code == 200 and r.json() == before
    nats_cluster.start()
    deadline = time.monotonic() + 60
    while True:  # the client's retry, as client.js does after a 503
        r = requests.post(writer.url + "/events", json=events[30:], timeout=30)
        if r.status_code == 202:
            break
        assert r.status_code == 503 and time.monotonic() < deadline, r.text
        time.sleep(float(r.headers.get("Retry-After", "1")) / 4)  # a client's back-off
    last = r.json()["last_id"]
    assert last > first["last_id"]
    lanes(replica.url, 0, last)  # caught up, without a restart
    assert writer.proc is not None and writer.proc.poll() is None
    assert replica.proc is not None and replica.proc.poll() is None


def test_a_replica_on_an_empty_machine_starts_from_the_object_store(
    nats_cluster: NatsCluster, procs: Any, tmp_path: Path
) -> None:
    url = nats_cluster.url
    writer = procs("w", "--role", "writer", "--log-url", url).start()
    first = procs("r1", "--role", "replica", "--log-url", url).start()
    events = sessions(20, 8, seed=4)
    done = post(writer.url, events)
    lanes(first.url, 0, done["last_id"])
    snap = requests.post(first.url + "/admin/snapshot", timeout=60)
    assert snap.status_code == 200, snap.text
    name = Path(snap.json()["path"]).name
    more = post(writer.url, sessions(5, 8, seed=5))
    # A second replica with an empty snapshot folder: it downloads that snapshot, then tails.
    fresh = procs("r2", "--role", "replica", "--log-url", url).start()
    assert (tmp_path / "r2" / "snapshots" / name).exists()
    log = fresh.stderr_path.read_text()
    assert "snapshot bootstrapped from the object store" in log
    assert '"msg":"snapshot loaded"' in log  # loaded, not a replay of the whole stream
    for track in range(23):
        got = lanes(fresh.url, track, more["last_id"])
        assert comparable(got) == comparable(lanes(first.url, track, more["last_id"]))


def test_stream_leader_sigkilled_during_http_ingest(nats_cluster: NatsCluster, procs: Any) -> None:
    """Clients retry what failed; every event that got a 202 is in the stream once, and the
    replica's graph reaches the last position."""
    url = nats_cluster.url
    writer = procs("w", "--role", "writer", "--log-url", url).start()
    replica = procs("r", "--role", "replica", "--log-url", url).start()
    events = sessions(60, 10, seed=6)
    batches = [events[i : i + 50] for i in range(0, len(events), 50)]
    acked: dict[str, int] = {}
    last = 0
    leader = nats_cluster.wait_leader("GRAVITYD_EVENTS")
    for k, batch in enumerate(batches):
        if k == len(batches) // 3:
            nats_cluster.kill(leader)
        deadline = time.monotonic() + 60
        while True:
            r = requests.post(writer.url + "/events", json=batch, timeout=30)
            if r.status_code == 202:
                break
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "log_unavailable" and "Retry-After" in r.headers
            assert time.monotonic() < deadline, "the writer never recovered"
            time.sleep(0.1)  # a client's back-off
        last = max(last, r.json()["last_id"])
        acked.update((e["event_id"], 1) for e in batch)
    assert len(acked) == len(events)
    stored = asyncio.run(stream_event_ids(nats_cluster))
    assert sorted(stored) == sorted(acked), "each acknowledged event once, nothing else"
    # The replica's reads timed out while the stream elected a new leader; it catches up by
    # itself. A min_cursor read is the signal: 503 not_caught_up until it has.
    path = f"{replica.url}/tracks/{tid(0)}/gravity_neighbors?min_cursor={last}"
    deadline = time.monotonic() + 60
    while (r := requests.get(path, timeout=10)).status_code != 200:
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_caught_up", r.text
        assert time.monotonic() < deadline, "the replica never caught up"
    assert requests.get(replica.url + "/readyz", timeout=5).json()["cursor"] >= last


def wait_for_line(d: Daemon, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in d.stderr_path.read_text():
        assert time.monotonic() < deadline, f"no {text!r} in {d.stderr_path}"
        time.sleep(0.05)  # a child process's log file: no signal to wait on


def test_nats_unreachable_at_start_then_there(tmp_path: Path, procs: Any) -> None:
    """Started before its cluster: one clear line, /readyz 503 and ingest 503 with Retry-After
    while it retries with back-off; once the nodes are up the same processes serve."""

    if nats_server_binary() is None:
        pytest.skip("nats-server missing")
    cluster = NatsCluster(tmp_path / "late")  # ports chosen, nothing started yet
    writer = procs("w", "--role", "writer", "--log-url", cluster.url).start(wait_ready=False)
    replica = procs("r", "--role", "replica", "--log-url", cluster.url).start(wait_ready=False)
    try:
        for d in (writer, replica):
            r = requests.get(d.url + "/readyz", timeout=10)
            assert r.status_code == 503 and r.json()["ready"] is False
        r = requests.post(writer.url + "/events", json=sessions(1, 2), timeout=30)
        assert r.status_code == 503 and r.json()["error"]["code"] == "log_unavailable"
        assert int(r.headers["Retry-After"]) >= 1
        for d in (writer, replica):  # one clear line each, while nothing answers
            wait_for_line(d, "waiting for the log")
        cluster.start()
        writer.wait("/readyz", timeout=90)
        replica.wait("/readyz", timeout=90)
        last = post(writer.url, sessions(3, 4))["last_id"]
        lanes(replica.url, 0, last)
        for d in (writer, replica):
            text = d.stderr_path.read_text()
            assert "waiting for the log" in text and "Traceback" not in text
            # Back-off: a handful of lines at most, not one per try.
            assert text.count("waiting for the log") <= 3
    finally:
        cluster.stop()
