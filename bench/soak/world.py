"""What the load generators send: a fixed catalogue, interleaved radio sessions over it, and
the ledger of every event generated (the truth the log is checked against)."""

from __future__ import annotations

import array
import itertools
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from bench.common import track_ids

EVENTS = "POST /events"
EVENT = "POST /event"
NEIGHBORS = "GET neighbors"
RANK = "POST /rank"
METRICS = "GET /metrics"
READYZ = "GET /readyz"
SNAPSHOT = "POST /admin/snapshot"
FOLD = "POST /admin/fold"
EVENTS_RETRY = "POST /events retry"
EVENT_RETRY = "POST /event retry"
EVENTS_DUP = "POST /events dup"
EVENT_DUP = "POST /event dup"
ROUTES = (
    EVENTS,
    EVENT,
    NEIGHBORS,
    RANK,
    METRICS,
    READYZ,
    SNAPSHOT,
    FOLD,
    EVENTS_DUP,
    EVENT_DUP,
    EVENTS_RETRY,
    EVENT_RETRY,
)
JSON = {"Content-Type": "application/json"}
NDJSON = {"Content-Type": "application/x-ndjson"}

# Ledger states of a generated event.
UNSENT, UNKNOWN, ACKED, REJECTED = 0, 1, 2, 3


class World:
    """A fixed catalogue: popularity (Zipf-like) and per-track neighbours, as gen_events."""

    def __init__(self, tracks: int, seed: int, fanout: int = 16) -> None:
        rng = random.Random(seed)
        self.ids = track_ids(tracks)
        cum = list(itertools.accumulate(1.0 / (r + 20) for r in range(tracks)))
        self.pool = rng.choices(range(tracks), cum_weights=cum, k=1 << 15)
        spread = max(5, tracks // 60)
        half = fanout // 2
        self.neigh = [
            [(i + rng.randint(-spread, spread)) % tracks for _ in range(half)]
            + rng.choices(range(tracks), cum_weights=cum, k=half)
            for i in range(tracks)
        ]
        self.users = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(500)]

    def popular(self, rng: random.Random) -> int:
        return self.pool[rng.randrange(len(self.pool))]


class Ledger:
    """Every event_id this run generated, by number n (the id is prefix + n), and its fate."""

    def __init__(self) -> None:
        self.prefix = f"soak-{uuid.uuid4().hex[:10]}-"
        self.state = bytearray()
        self.ids = array.array("q")  # the log id a single POST /event's 202 gave, else 0

    def new(self) -> int:
        self.state.append(UNSENT)
        self.ids.append(0)
        return len(self.state) - 1

    def mark(self, ns: range | list[int], state: int) -> None:
        for n in ns:
            if self.state[n] != ACKED:  # an ack is final; a later failed retry changes nothing
                self.state[n] = state


class Sessions:
    """Interleaved radio sessions over the world; events come out in each session's order."""

    def __init__(
        self, world: World, ledger: Ledger, rng: random.Random, slots: int, name: str
    ) -> None:
        self.world, self.ledger, self.rng, self.name = world, ledger, rng, name
        self.count = 0
        self.slots = [self._fresh() for _ in range(slots)]

    def _fresh(self) -> list[Any]:
        self.count += 1
        user = self.world.users[self.rng.randrange(len(self.world.users))]
        return [f"{self.name}-{self.count}", self.rng.randint(5, 40), -1, user]

    def step(self, out: list[tuple[int, dict[str, Any]]]) -> None:
        """One track of one session: 2-4 events appended to out as (n, event)."""
        rng, world = self.rng, self.world
        i = rng.randrange(len(self.slots))
        slot = self.slots[i]
        sid, left, cur, user = slot
        if cur >= 0 and rng.random() < 0.7:
            cur = world.neigh[cur][rng.randrange(len(world.neigh[cur]))]
        else:
            cur = world.popular(rng)
        tid = world.ids[cur]
        ts = datetime.now(UTC).isoformat(timespec="milliseconds")
        kinds: list[tuple[str, int | None]] = []
        if rng.random() < 0.6:
            kinds.append(("radio_next", None))
        kinds.append(("play_start", None))
        if rng.random() < 0.72:
            kinds.append(("play_10s", None))
            if rng.random() < 0.08:
                kinds.append(("like", None))
        else:
            kinds.append(("skip", min(120_000, int(rng.expovariate(1 / 8000)))))
        for kind, elapsed in kinds:
            n = self.ledger.new()
            ev: dict[str, Any] = {
                "event_id": self.ledger.prefix + str(n),
                "session_id": sid,
                "track_id": tid,
                "event_type": kind,
                "user_id": user,
                "timestamp": ts,
                "context": "radio",
            }
            if elapsed is not None:
                ev["meta"] = {"elapsed_ms": elapsed}
            out.append((n, ev))
        if left <= 1:
            self.slots[i] = self._fresh()
        else:
            slot[1], slot[2] = left - 1, cur

    def take(self, k: int) -> list[tuple[int, dict[str, Any]]]:
        out: list[tuple[int, dict[str, Any]]] = []
        while len(out) < k:
            self.step(out)
        return out


def rank_bodies(world: World, count: int, lo: int, hi: int, seed: int) -> list[bytes]:
    """POST /rank bodies: a 10-track walk as history, lanes of the current track and of the
    history, 3 history tracks, the rest popular or random tracks; 95 % with an embedding score."""
    rng = random.Random(seed)
    n_tracks = len(world.ids)
    hi = min(hi, n_tracks - 12)
    lo = min(lo, hi)
    bodies = []
    for _ in range(count):
        walk = [world.popular(rng)]
        while len(walk) < 11:
            nxt = [v for v in world.neigh[walk[-1]] if v not in walk]
            walk.append(rng.choice(nxt) if nxt else rng.randrange(n_tracks))
        current, history = walk[-1], walk[:-1]
        size = rng.randint(lo, hi)
        pool = dict.fromkeys(world.neigh[current])
        for h in history[-5:]:
            pool.update(dict.fromkeys(world.neigh[h]))
        pool.update(dict.fromkeys(rng.sample(history, 3)))
        while len(pool) < size:
            pool[world.popular(rng) if rng.random() < 0.5 else rng.randrange(n_tracks)] = None
        pool.pop(current, None)
        cands = [world.ids[c] for c in pool]
        rng.shuffle(cands)
        body = {
            "current_track_id": world.ids[current],
            "candidate_track_ids": cands,
            "embeddings_scores": {
                c: round(rng.uniform(-0.2, 0.95), 6) for c in cands if rng.random() < 0.95
            },
            "session_history": [world.ids[h] for h in history],
            "limit": 20,
        }
        bodies.append(orjson.dumps(body))
    return bodies
