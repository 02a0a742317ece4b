"""Several daemons over one log (writer, replicas, `all`): their events, writes and reads."""

from __future__ import annotations

from typing import Any

import requests

from .sessions import event, recent, tid

# No snapshot at shutdown: the tests stop many daemons, and none needs one. No background
# training of the learned prior: these tests compare rankings across roles at one cursor, and a
# model retrained in the background is as of whatever cursor its timer fell on (the model of a
# cursor is the same everywhere: tests/test_transitions.py). A snapshot still trains it.
FAST = {"GRAVITYD_SNAPSHOT_ON_SHUTDOWN": "0", "GRAVITYD_MODEL_INTERVAL_S": "0"}


def post(url: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    r = requests.post(url + "/events", json=events, timeout=30)
    assert r.status_code == 202, r.text
    return r.json()


def sessions(n_sessions: int, length: int, seed: int = 0) -> list[dict[str, Any]]:
    """Listening sessions with kept and skipped transitions (every event has an event_id)."""
    out = []
    for s in range(n_sessions):
        for i in range(length):
            track = (s * 7 + i * (seed + 3)) % 23
            kind = "skip" if (s + i) % 5 == 0 else "play_10s"
            extra = {"meta": {"elapsed_ms": 1500}} if kind == "skip" else {}
            out.append(
                {
                    **event(f"s{seed}-{s}", track, kind, **extra),
                    "event_id": f"e{seed}-{s}-{i}",
                    "timestamp": recent(60 * (s % 60) + i % 60),
                }
            )
    return out


def lanes(url: str, track: int, cursor: int, direction: str = "out") -> list[dict[str, Any]]:
    r = requests.get(
        f"{url}/tracks/{tid(track)}/gravity_neighbors",
        params={"min_cursor": cursor, "limit": 100, "direction": direction},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert int(r.headers["Gravityd-Cursor"]) >= cursor
    return r.json()


def comparable(items: list[dict[str, Any]]) -> list[tuple[str, float, int]]:
    """Lanes without the read-time decay (weights move by ~1e-9 between two reads)."""
    return [(x["track_id"], round(x["normalized_score"], 9), x["evidence"]["n"]) for x in items]
