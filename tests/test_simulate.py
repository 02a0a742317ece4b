"""The simulator: deterministic, valid events, and a closed loop where the graph helps."""

from __future__ import annotations

from typing import Any

import pytest

from gravityd.core.events import ValidationLimits, validate_event
from gravityd.daemon.service import Gravityd
from gravityd.http.app import create_app
from gravityd.lab.simulate import (
    World,
    closed_loop,
    embedding_order,
    open_loop,
    oracle_order,
    run_session,
    session_events,
    skip_rate,
)

from .support import Daemon, make_config

BASE = 1_780_000_000.0


def test_same_seed_same_events_other_seed_other_events() -> None:
    a, b, c = World(3), World(3), World(4)
    ev_a = [session_events(run_session(a, 3, i, embedding_order(a), BASE)) for i in range(20)]
    ev_b = [session_events(run_session(b, 3, i, embedding_order(b), BASE)) for i in range(20)]
    ev_c = [session_events(run_session(c, 4, i, embedding_order(c), BASE)) for i in range(20)]
    assert ev_a == ev_b
    assert ev_a != ev_c


def test_events_are_valid_and_plausible() -> None:
    w = World(1)
    limits = ValidationLimits(max_future_s=1e12)
    sessions = [run_session(w, 1, i, embedding_order(w), BASE) for i in range(30)]
    events = [e for s in sessions for e in session_events(s)]
    for e in events:
        validate_event(e, limits)  # raises if the simulator ever posts something invalid
    kinds = {e["event_type"] for e in events}
    assert kinds == {"radio_next", "play_start", "play_10s", "skip", "like"}
    skips = [e for e in events if e["event_type"] == "skip"]
    assert all(0 <= e["meta"]["elapsed_ms"] <= 30000 for e in skips)
    assert len({e["event_id"] for e in events}) == len(events)
    # the hidden truth is directional: the oracle skips far less than the embedding radio
    oracle = [run_session(w, 1, i, oracle_order(w), BASE) for i in range(30)]
    assert skip_rate(oracle) < skip_rate(sessions) - 0.15


async def test_open_loop_posts_everything_accepted(client: Any) -> None:
    url = str(client.make_url("")).rstrip("/")
    res = await open_loop(url, sessions=12, seed=5, concurrency=4)
    accepted, world, played = res.accepted, res.world, res.played
    expected = sum(
        len(session_events(run_session(world, 5, i, embedding_order(world), 0.0)))
        for i in range(12)
    )
    assert accepted == expected
    assert sum(played.values()) == 12 * world.params.session_tracks
    # posting the same seed again is idempotent: every event carries its event_id
    again = (await open_loop(url, sessions=12, seed=5, concurrency=4)).accepted
    status = await (await client.post("/admin/fold")).json()
    assert again == accepted and status["last_id"] == accepted


async def test_closed_loop_gravity_beats_embedding(aiohttp_client: Any, tmp_path: Any) -> None:
    # The graph changes only at block ends (POST /admin/fold), not while a block runs, so what
    # each block's radio knows does not depend on how concurrent requests interleave.
    cfg = make_config(tmp_path, fold_interval_ms=3_600_000.0)
    client = await aiohttp_client(create_app(Gravityd(cfg)))
    url = str(client.make_url("")).rstrip("/")
    res = await closed_loop(url, blocks=6, block_sessions=50, seed=0, concurrency=8)
    assert len(res.blocks) == 6
    first = res.blocks[0]
    assert first["gravity"] == first["embedding"]  # an empty graph ranks by embedding alone
    # it learns: the gravity radio ends clearly below where it started and below the embedding
    assert res.tail("gravity", 2) < first["gravity"] - 0.05
    assert res.tail("gravity", 2) < res.tail("embedding", 2) - 0.05
    assert res.tail("oracle", 2) < res.tail("gravity", 2)


@pytest.mark.process
def test_closed_loop_report_counts_equal_the_simulators(daemon_factory: Any, tmp_path: Any) -> None:
    """Every radio's sessions reach the daemon under their own arm, and the scoreboard counts
    exactly the skips and keeps the simulator's listeners gave."""
    import asyncio
    import json
    import urllib.request

    d = daemon_factory().start()
    res = asyncio.run(closed_loop(d.url, blocks=2, block_sessions=12, seed=3, concurrency=4))
    assert set(res.posted) == {"radio:embedding", "radio:gravity", "radio:oracle"}
    q = "since=2000-01-01T00:00:00Z&until=9000-01-01T00:00:00Z"
    with urllib.request.urlopen(f"{d.url}/radio/report?{q}", timeout=10) as r:
        rep = json.loads(r.read())
    got = {a["context"]: {"skipped": a["skipped"], "kept": a["kept"]} for a in rep["arms"]}
    assert got == {arm: dict(c) for arm, c in res.posted.items()}
    for arm, c in res.posted.items():
        assert c["skipped"] + c["kept"] == 24 * 9, arm  # 9 radio picks per 10-track session
    assert rep["pending"] == 0 and all(a["unresolved"] == 0 for a in rep["arms"])
    # the simulator's skip rates are the report's, arm by arm
    for radio in ("embedding", "gravity", "oracle"):
        arm = next(a for a in rep["arms"] if a["context"] == f"radio:{radio}")
        assert arm["skip_rate"] == pytest.approx(sum(b[radio] for b in res.blocks) / 2)
    d.kill()
    # with --only-gravity the other radios stay out of the daemon
    (tmp_path / "only").mkdir()
    d2 = Daemon(tmp_path / "only").start()
    res2 = asyncio.run(
        closed_loop(d2.url, blocks=1, block_sessions=8, seed=3, concurrency=4, only_gravity=True)
    )
    with urllib.request.urlopen(f"{d2.url}/radio/report?{q}", timeout=10) as r:
        rep2 = json.loads(r.read())
    assert [a["context"] for a in rep2["arms"]] == ["radio:gravity"]
    assert rep2["arms"][0]["skipped"] == res2.posted["radio:gravity"]["skipped"]
    d2.kill()
