"""The session simulator: a small world with a hidden truth, listeners who follow it, and radios.

The world: tracks with latent features (a genre, a taste vector, an energy level). The map's
embedding sees the taste vector with noise and nothing else. Listeners accept or skip a transition
A->B by a hidden truth the embedding cannot see:

- taste similarity (what the embedding sees, noisily),
- genre *flow*: a set moves well from genre g to genre g+1 and badly from g to g-1,
- *energy*: listeners keep a set whose energy rises gently and skip one that drops.

Flow and energy are directional (A->B is not B->A), which no cosine similarity can express; the
transition graph can, by watching which transitions listeners keep.

`gravityd simulate` posts plausible sessions to a running daemon (the open loop). The closed
loop (`--closed-loop`) runs three radios over the same listeners, block after block: embedding
only, the gravity blend (each pick is a `POST /rank` on the daemon), and an oracle that knows the
hidden truth. All three pick from the same candidate pools with the same variety rule, and the
listeners draw the same random numbers, so the skip rates differ only by what each radio knows.
Every radio's sessions go to the daemon (an A/B test: the graph learns from all the traffic), each
radio's picks with its own arm as the `context` of their `radio_next` events (`radio:embedding`,
`radio:gravity`, `radio:oracle`), so `GET /radio/report` shows the comparison; `--only-gravity`
posts the gravity radio's sessions alone (the graph then learns from its own picks only).
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gravityd.progress import Progress

SIM_NAMESPACE = uuid.UUID("6c0f7a1e-4d0b-4c55-9a55-2a7e3f1c9b10")
RADIOS = ("embedding", "gravity", "oracle")
ARMS = {radio: f"radio:{radio}" for radio in RADIOS}  # the context of each radio's radio_next
# A simulated skip is an early one (under the scoreboard's default report_skip_ms of 30 s), so
# the scoreboard counts exactly the skips the simulator does.
MAX_SKIP_MS = 29_999
# Sessions start this far apart (many listeners at once): a long run spans days, not months,
# so the 30-day half-life does not wash out what the graph learnt early.
SESSION_SPACING_S = 60.0


@dataclass(frozen=True)
class WorldParams:
    """The simulated world and its listeners."""

    n_tracks: int = 200
    n_genres: int = 8
    dims: int = 8
    # Spread of a track's taste vector around its genre centre.
    taste_spread: float = 0.45
    # Noise the map's embedding adds to the taste vector (what the embedding gets wrong).
    embed_noise: float = 0.45
    # Hidden truth: logit = bias + taste * similarity + flow * (+1 next genre, -1 previous)
    # + energy * (+1 gentle rise, -1 drop).
    bias: float = -0.6
    taste: float = 2.0
    flow: float = 1.6
    energy: float = 1.2
    like_rate: float = 0.2
    # Candidates per pick: the nearest by embedding plus a few random ones.
    pool_nearest: int = 20
    pool_random: int = 2
    session_tracks: int = 10
    # Radio variety: the pick is the k-th best of the radio's own order with these odds.
    variety: tuple[float, ...] = (0.8, 0.15, 0.05)


def _unit(v: list[float]) -> list[float]:
    n = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / n for x in v]


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


class World:
    """A catalogue with latent features and the hidden truth of how listeners react."""

    def __init__(self, seed: int = 0, params: WorldParams | None = None) -> None:
        p = self.params = params or WorldParams()
        rnd = random.Random(f"world:{seed}")
        # Genres sit on a ring, so each genre's neighbours in taste are the genres before and
        # after it: the embedding cannot tell "next" (a good move) from "previous" (a bad one).
        centers = []
        for g in range(p.n_genres):
            angle = 2 * math.pi * g / p.n_genres
            rest = [rnd.gauss(0, 0.3) for _ in range(p.dims - 2)]
            centers.append(_unit([math.cos(angle), math.sin(angle), *rest]))
        self.ids = [str(uuid.uuid5(SIM_NAMESPACE, f"{seed}:{i}")) for i in range(p.n_tracks)]
        self.index = {t: i for i, t in enumerate(self.ids)}
        self.genre = [rnd.randrange(p.n_genres) for _ in range(p.n_tracks)]
        self.energy = [rnd.random() for _ in range(p.n_tracks)]
        self.taste = [
            _unit([c + rnd.gauss(0, p.taste_spread) for c in centers[g]]) for g in self.genre
        ]
        self.emb = [_unit([x + rnd.gauss(0, p.embed_noise) for x in t]) for t in self.taste]
        self._emb_cache: dict[int, list[float]] = {}

    def emb_row(self, a: int) -> list[float]:
        row = self._emb_cache.get(a)
        if row is None:
            ea = self.emb[a]
            row = self._emb_cache[a] = [_dot(ea, eb) for eb in self.emb]
        return row

    def accept_prob(self, a: int, b: int) -> float:
        """The hidden truth: how likely a listener keeps b after a."""
        p = self.params
        g = p.n_genres
        flow = 1.0 if self.genre[b] == (self.genre[a] + 1) % g else 0.0
        if self.genre[b] == (self.genre[a] - 1) % g:
            flow = -1.0
        rise = self.energy[b] - self.energy[a]
        energy = 1.0 if 0.0 <= rise <= 0.35 else (-1.0 if rise < -0.2 else 0.0)
        x = p.bias + p.taste * _dot(self.taste[a], self.taste[b]) + p.flow * flow
        x += p.energy * energy
        return 1.0 / (1.0 + math.exp(-x))

    def pool(self, a: int, exclude: set[int], rnd: random.Random) -> list[int]:
        """The radio's candidates after a: nearest by embedding, plus a few at random."""
        p = self.params
        row = self.emb_row(a)
        order = sorted(range(p.n_tracks), key=lambda b: (-row[b], b))
        near = [b for b in order if b != a and b not in exclude][: p.pool_nearest]
        rest = [b for b in range(p.n_tracks) if b != a and b not in exclude and b not in near]
        return near + rnd.sample(rest, min(p.pool_random, len(rest)))


@dataclass
class Step:
    """One transition of a session as the listener lived it."""

    src: int
    dst: int
    skipped: bool
    events: list[dict[str, Any]] = field(default_factory=list)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def _react(
    world: World,
    a: int | None,
    b: int,
    rnd: random.Random,
    sid: str,
    k: int,
    clock: list[float],
    arm: str = "radio",
) -> tuple[bool, list[dict[str, Any]]]:
    """The listener's events on b after a (a None: the first track, always kept); the radio's
    pick carries `arm` as its context."""
    t = world.ids[b]
    draw_accept, draw_like, draw_elapsed = rnd.random(), rnd.random(), rnd.random()
    accepted = a is None or draw_accept < world.accept_prob(a, b)
    events = []

    def ev(event_type: str, seconds: float, **extra: Any) -> None:
        clock[0] += seconds
        events.append(
            {
                "session_id": sid,
                "track_id": t,
                "event_type": event_type,
                "timestamp": _iso(clock[0]),
                "event_id": f"{sid}-{k}-{event_type}",
                "context": "radio",
                **extra,
            }
        )

    if a is not None:
        ev("radio_next", 0.5, context=arm)
    ev("play_start", 0.5)
    if accepted:
        ev("play_10s", 10.0)
        if draw_like < world.params.like_rate:
            ev("like", 20.0)
        clock[0] += 150.0
    else:
        elapsed = int(min(MAX_SKIP_MS, -math.log(1.0 - draw_elapsed) * 4000.0))
        ev("skip", elapsed / 1000.0, meta={"elapsed_ms": elapsed})
    return not accepted, events


Request = tuple[int, list[int], list[int]]  # (current, pool, history)
Picker = Callable[[int, list[int], list[int]], list[int]]


def session(
    world: World,
    seed: int,
    index: int,
    base_time: float,
    prefix: str = "sim",
    arm: str = ARMS["embedding"],
) -> Generator[Request, list[int], list[Step]]:
    """One radio session as a generator: it yields (current, pool, history) and is sent back
    the pool best first, so a radio may rank in-process or over HTTP alike.

    The pick is the k-th best with the world's variety odds. Everything random is drawn from one
    generator seeded by (seed, index), in the same order whatever the radio, so radios face the
    same listeners.
    """
    p = world.params
    rnd = random.Random(f"session:{seed}:{index}")
    sid = f"{prefix}-{seed}-{index}"
    clock = [base_time + index * SESSION_SPACING_S]
    current = rnd.randrange(p.n_tracks)
    history = [current]
    _, first = _react(world, None, current, rnd, sid, 0, clock)
    steps = [Step(-1, current, False, first)]
    for k in range(1, p.session_tracks):
        pool_rnd = random.Random(f"pool:{seed}:{index}:{k}:{current}")
        pool = world.pool(current, set(history), pool_rnd)
        ranked = yield current, pool, list(history)
        draw = rnd.random()
        acc, pick = 0.0, 0
        for i, odds in enumerate(p.variety):
            acc += odds
            if draw < acc:
                pick = i
                break
        nxt = ranked[min(pick, len(ranked) - 1)]
        skipped, events = _react(world, current, nxt, rnd, sid, k, clock, arm)
        steps.append(Step(current, nxt, skipped, events))
        history.append(nxt)
        current = nxt
    return steps


def run_session(
    world: World,
    seed: int,
    index: int,
    order: Picker,
    base_time: float,
    radio: str = "embedding",
    prefix: str = "sim",
) -> list[Step]:
    """A session whose radio ranks in-process with `order(current, pool, history)`."""
    gen = session(world, seed, index, base_time, prefix, ARMS[radio])
    try:
        request = next(gen)
        while True:
            request = gen.send(order(*request))
    except StopIteration as stop:
        return stop.value


def embedding_order(world: World) -> Picker:
    def order(current: int, pool: list[int], history: list[int]) -> list[int]:
        row = world.emb_row(current)
        return sorted(pool, key=lambda b: (-row[b], world.ids[b]))

    return order


def oracle_order(world: World) -> Picker:
    def order(current: int, pool: list[int], history: list[int]) -> list[int]:
        return sorted(pool, key=lambda b: (-world.accept_prob(current, b), world.ids[b]))

    return order


def session_events(steps: list[Step]) -> list[dict[str, Any]]:
    return [e for s in steps for e in s.events]


def skip_rate(sessions: list[list[Step]]) -> float:
    moves = [s for steps in sessions for s in steps[1:]]
    return sum(s.skipped for s in moves) / max(1, len(moves))


def verdicts(sessions: list[list[Step]]) -> Counter[str]:
    """Skipped and kept radio picks, as the scoreboard counts them (the first track of a
    session is no pick)."""
    out: Counter[str] = Counter(skipped=0, kept=0)
    for steps in sessions:
        for s in steps[1:]:
            out["skipped" if s.skipped else "kept"] += 1
    return out


# ------------------------------------------------------------------------------- over HTTP


class Client:
    """The daemon's HTTP API, as the simulator uses it."""

    def __init__(self, url: str, token: str = "") -> None:
        import aiohttp

        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = aiohttp.ClientSession(headers=headers)

    async def post_events(self, events: list[dict[str, Any]]) -> int:
        async with self.http.post(self.url + "/events", json=events) as r:
            body = await r.json()
            if r.status != 202 or body.get("rejected"):
                raise RuntimeError(f"the daemon refused events: {r.status} {body}")
            return body["accepted"]

    async def fold(self) -> int:
        async with self.http.post(self.url + "/admin/fold") as r:
            if r.status != 200:
                raise RuntimeError(f"POST /admin/fold: {r.status} {await r.text()}")
            return (await r.json())["cursor"]

    async def rank(self, body: dict[str, Any]) -> list[str]:
        async with self.http.post(self.url + "/rank", json=body) as r:
            if r.status != 200:
                raise RuntimeError(f"POST /rank: {r.status} {await r.text()}")
            return [x["track_id"] for x in (await r.json())["ranked"]]

    async def close(self) -> None:
        await self.http.close()


async def _gravity_session(
    world: World, client: Client, seed: int, index: int, base_time: float
) -> list[Step]:
    """A gravity-radio session: each pick is a POST /rank on the daemon's live graph."""
    gen = session(world, seed, index, base_time, arm=ARMS["gravity"])
    try:
        current, pool, history = next(gen)
        while True:
            row = world.emb_row(current)
            ranked = await client.rank(
                {
                    "current_track_id": world.ids[current],
                    "candidate_track_ids": [world.ids[b] for b in pool],
                    "embeddings_scores": {world.ids[b]: row[b] for b in pool},
                    "session_history": [world.ids[h] for h in history],
                }
            )
            current, pool, history = gen.send([world.index[t] for t in ranked])
    except StopIteration as stop:
        return stop.value


@dataclass
class LoopResult:
    """Skip rates per block for each radio, and the share of the gap the blend closed."""

    blocks: list[dict[str, float]]
    sessions_per_block: int
    # per arm context: the skipped and kept picks of the sessions posted to the daemon
    posted: dict[str, Counter[str]] = field(default_factory=dict)

    def tail(self, radio: str, n: int) -> float:
        rows = self.blocks[-n:]
        return sum(r[radio] for r in rows) / len(rows)

    def gap_closed(self, n: int) -> float:
        emb, grav, orc = (self.tail(r, n) for r in RADIOS)
        return (emb - grav) / (emb - orc) if emb > orc else float("nan")


async def closed_loop(
    url: str,
    *,
    blocks: int = 10,
    block_sessions: int = 50,
    seed: int = 0,
    concurrency: int = 8,
    token: str = "",
    world: World | None = None,
    progress: Callable[[dict[str, float]], None] | None = None,
    only_gravity: bool = False,
) -> LoopResult:
    """Run the three radios block by block; the gravity radio ranks on the daemon, and every
    radio's sessions (only the gravity radio's with `only_gravity`) are posted to it before the
    block's fold."""
    world = world or World(seed)
    base_time = float(int(time.time()) - blocks * block_sessions * SESSION_SPACING_S - 3600)
    client = Client(url, token)
    emb, orc = embedding_order(world), oracle_order(world)
    sem = asyncio.Semaphore(concurrency)
    rows = []
    posted = {
        ARMS[r]: Counter(skipped=0, kept=0) for r in (("gravity",) if only_gravity else RADIOS)
    }
    try:
        for b in range(blocks):
            idx = range(b * block_sessions, (b + 1) * block_sessions)

            async def one(i: int) -> list[Step]:
                async with sem:
                    steps = await _gravity_session(world, client, seed, i, base_time)
                    await client.post_events(session_events(steps))
                    return steps

            grav = list(await asyncio.gather(*[one(i) for i in idx]))
            runs = {"gravity": grav}
            for radio, order in (("embedding", emb), ("oracle", orc)):
                runs[radio] = [
                    run_session(world, seed, i, order, base_time, radio, f"sim-{radio}")
                    for i in idx
                ]
            for radio, arm in ((r, ARMS[r]) for r in RADIOS):
                if arm not in posted:
                    continue
                posted[arm].update(verdicts(runs[radio]))
                if radio != "gravity":
                    events = [e for steps in runs[radio] for e in session_events(steps)]
                    for i in range(0, len(events), 2000):
                        await client.post_events(events[i : i + 2000])
            await client.fold()
            row = {
                "block": b + 1,
                "sessions": (b + 1) * block_sessions,
                **{radio: skip_rate(runs[radio]) for radio in RADIOS},
            }
            rows.append(row)
            if progress:
                progress(row)
    finally:
        await client.close()
    return LoopResult(rows, block_sessions, posted)


async def open_loop(
    url: str,
    *,
    sessions: int,
    seed: int,
    concurrency: int = 8,
    token: str = "",
    world: World | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[int, World, Counter[int]]:
    """Post `sessions` embedding-radio sessions; returns the events accepted, the world, and
    how often each track was played (so a user can look at the busiest tracks' lanes)."""
    world = world or World(seed)
    base_time = float(int(time.time()) - sessions * SESSION_SPACING_S - 3600)
    order = embedding_order(world)
    client = Client(url, token)
    sem = asyncio.Semaphore(concurrency)
    done = [0, 0]
    played: Counter[int] = Counter()

    async def one(i: int) -> None:
        async with sem:
            steps = run_session(world, seed, i, order, base_time)
            played.update(s.dst for s in steps)
            n = await client.post_events(session_events(steps))
            done[0] += 1
            done[1] += n
            if progress:
                progress(done[0], done[1])

    try:
        await asyncio.gather(*[one(i) for i in range(sessions)])
    finally:
        await client.close()
    return done[1], world, played


# ----------------------------------------------------------------------- Yes.com replay

REPLAY_NAMESPACE = uuid.UUID("0b8e3c52-5f0e-4a53-8d3c-6b1d1f6c2a77")
REPLAY_SONG_GAP_S = 200.0  # a song's length in the replay's clock
REPLAY_BATCH = 2000  # events per POST /events


def yes_replay_events(
    data: str, playlists: int | None, now: float
) -> tuple[list[list[dict[str, Any]]], int]:
    """Real radio playlists as one event list per playlist (play_start, play_10s per song).

    Playlist k is session `yes-k`; playlists start a second apart and end in the past, so the
    replay keeps the daemon's decay meaningful. Event ids are derived from the folder, the
    playlist and the song, so replaying the same data twice adds nothing.
    """
    from gravityd.lab.evaluate import load_yes, track_uuid

    ds = load_yes(data)
    chosen = ds.playlists if playlists is None else ds.playlists[:playlists]
    span = max((len(songs) for _, songs in chosen), default=0) * REPLAY_SONG_GAP_S
    base = now - len(chosen) - span - 60.0
    tag = ds.path.rstrip("/").rsplit("/", 1)[-1]
    out = []
    for k, (line, songs) in enumerate(chosen):
        events = []
        t = base + k
        for j, song in enumerate(songs):
            tid = track_uuid(song)
            for kind, dt in (("play_start", 0.0), ("play_10s", 10.0)):
                events.append(
                    {
                        "event_id": str(uuid.uuid5(REPLAY_NAMESPACE, f"{tag}:{line}:{j}:{kind}")),
                        "session_id": f"yes-{tag}-{line}",
                        "track_id": tid,
                        "event_type": kind,
                        "timestamp": _iso(t + dt),
                        "context": "radio",
                    }
                )
            t += REPLAY_SONG_GAP_S
        out.append(events)
    return out, ds.n_songs


async def replay_yes(
    url: str,
    data: str,
    *,
    playlists: int | None = None,
    token: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[int, int, int]:
    """Post Yes.com playlists to a daemon; returns (playlists, events accepted, duplicates).

    One batch at a time: the log then holds the playlists in file order, so two replays of the
    same data build the same graph (per-track edge trimming depends on the order).
    `progress(events posted, events in all)` after each batch.
    """
    sessions, _ = yes_replay_events(data, playlists, time.time())
    batches: list[list[dict[str, Any]]] = [[]]
    for events in sessions:
        if len(batches[-1]) + len(events) > REPLAY_BATCH:
            batches.append([])
        batches[-1].extend(events)
    client = Client(url, token)
    done = [0, 0, 0]
    total = sum(len(b) for b in batches)
    try:
        for batch in batches:
            if not batch:
                continue
            async with client.http.post(client.url + "/events", json=batch) as r:
                body = await r.json()
                if r.status != 202 or body.get("rejected"):
                    raise RuntimeError(f"the daemon refused events: {r.status} {body}")
            done[0] += len(batch)
            done[1] += body["accepted"]
            done[2] += body.get("duplicates", 0)
            if progress:
                progress(done[0], total)
    finally:
        await client.close()
    return len(sessions), done[1], done[2]


def format_table(res: LoopResult) -> str:
    lines = [
        "| block | sessions | embedding only | gravity blend | oracle |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in res.blocks:
        lines.append(
            f"| {r['block']} | {r['sessions']} | {r['embedding']:.3f} | "
            f"{r['gravity']:.3f} | {r['oracle']:.3f} |"
        )
    n = max(1, len(res.blocks) // 4)
    lines.append("")
    lines.append(
        f"skip rate over the last {n} block(s): embedding {res.tail('embedding', n):.3f}, "
        f"gravity {res.tail('gravity', n):.3f}, oracle {res.tail('oracle', n):.3f}; "
        f"gap closed by the gravity blend: {res.gap_closed(n):.0%}"
    )
    return "\n".join(lines)


def plot(res: LoopResult, path: str) -> None:
    """The learning curve as a PNG (needs the optional matplotlib extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install 'gravityd[plot]'") from None
    xs = [r["sessions"] for r in res.blocks]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for radio, style in zip(RADIOS, ("--", "-", ":"), strict=True):
        ax.plot(xs, [r[radio] for r in res.blocks], style, marker="o", label=radio)
    ax.set_xlabel("sessions played")
    ax.set_ylabel("skip rate per block")
    ax.set_title("Closed loop: the radio learns from how listeners move")
    ax.set_ylim(0, max(0.05, max(r["embedding"] for r in res.blocks) * 1.2))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run(args: Any) -> int:
    """`gravityd simulate`: the open loop, or the closed loop with --closed-loop."""
    import os

    token = os.environ.get("GRAVITYD_ADMIN_TOKEN", "")
    started = time.monotonic()
    if args.replay:
        with Progress(None, "replay", unit="event") as bar:

            def posted(done: int, total: int) -> None:
                bar.set_total(total)
                bar.advance_to(done)

            n, accepted, dups = asyncio.run(
                replay_yes(
                    args.url, args.replay, playlists=args.playlists, token=token, progress=posted
                )
            )
        print(
            f"replayed {n} playlists from {args.replay}: {accepted:,} events accepted "
            f"({dups:,} already there) in {time.monotonic() - started:.1f} s"
        )
        print(f"titles: gravityd catalog load {args.replay.rstrip('/')}/song_hash.txt")
        return 0
    world = World(args.seed, WorldParams(n_tracks=args.tracks))
    if args.closed_loop:
        blocks = max(1, args.sessions // args.block)

        def show(row: dict[str, float]) -> None:
            sys.stderr.write(
                f"block {row['block']}/{blocks}: embedding {row['embedding']:.3f} "
                f"gravity {row['gravity']:.3f} oracle {row['oracle']:.3f}\n"
            )

        res = asyncio.run(
            closed_loop(
                args.url,
                blocks=blocks,
                block_sessions=args.block,
                seed=args.seed,
                concurrency=args.concurrency,
                token=token,
                world=world,
                progress=show,
                only_gravity=args.only_gravity,
            )
        )
        print(format_table(res))
        arms = ",".join(ARMS[r] for r in ("embedding", "gravity") if ARMS[r] in res.posted)
        print(
            f"the daemon's scoreboard of these sessions: gravityd report --url {args.url} "
            f"--arms {arms}"
        )
        if args.plot:
            plot(res, args.plot)
            print(f"learning curve: {args.plot}")
        return 0
    with Progress(args.sessions, "simulate", unit="session") as bar:
        accepted, _, played = asyncio.run(
            open_loop(
                args.url,
                sessions=args.sessions,
                seed=args.seed,
                concurrency=args.concurrency,
                token=token,
                world=world,
                progress=lambda d, e: bar.advance_to(d, postfix=f"{e:,} events"),
            )
        )
    print(
        f"posted {args.sessions} sessions, {accepted:,} events accepted in "
        f"{time.monotonic() - started:.1f} s"
    )
    print("the busiest tracks' warp lanes (after POST /admin/fold):")
    for i, _ in played.most_common(3):
        print(f"  curl -s {args.url.rstrip('/')}/tracks/{world.ids[i]}/gravity_neighbors")
    return 0
