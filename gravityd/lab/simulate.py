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

Every run has a label (`--run`, else a fresh one, printed): its session ids, event ids and arms
carry it (see `Run`), so runs on one daemon never collide and a report of a run's arms counts that
run alone; the same seed and label repeat a run exactly. A daemon is asked its role first: events
go to `--url` (a writer or `--role all`), reads to `--read-url` or, unless it is a writer, `--url`.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import secrets
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

from gravityd.commands.client import Accepted, Client, DaemonError
from gravityd.lab.yes import Posted, iso_time, load_yes, post_replay
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
                "timestamp": iso_time(clock[0]),
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
    hidden: frozenset[int] = frozenset(),
) -> Generator[Request, list[int], list[Step]]:
    """One radio session as a generator: it yields (current, pool, history) and is sent back
    the pool best first, so a radio may rank in-process or over HTTP alike.

    The pick is the k-th best with the world's variety odds. Everything random is drawn from one
    generator seeded by (seed, index), in the same order whatever the radio, so radios face the
    same listeners. `hidden` tracks are not released yet: no session starts on them and no
    pool holds them (the cold-start measurement releases them later).
    """
    p = world.params
    rnd = random.Random(f"session:{seed}:{index}")
    sid = f"{prefix}-{seed}-{index}"
    clock = [base_time + index * SESSION_SPACING_S]
    current = rnd.randrange(p.n_tracks)
    while current in hidden:
        current = rnd.randrange(p.n_tracks)
    history = [current]
    _, first = _react(world, None, current, rnd, sid, 0, clock)
    steps = [Step(-1, current, False, first)]
    for k in range(1, p.session_tracks):
        pool_rnd = random.Random(f"pool:{seed}:{index}:{k}:{current}")
        pool = world.pool(current, set(history) | hidden, pool_rnd)
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
    arm: str | None = None,
    hidden: frozenset[int] = frozenset(),
) -> list[Step]:
    """A session whose radio ranks in-process with `order(current, pool, history)`; its picks
    carry `arm` (default: the radio's unlabelled arm)."""
    gen = session(world, seed, index, base_time, prefix, arm or ARMS[radio], hidden)
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


# ------------------------------------------------------------------------------- runs

RUN_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")


def run_label(text: str) -> str:
    """A run label as given on the command line; ValueError unless 1-32 safe characters."""
    if not RUN_LABEL.fullmatch(text):
        raise ValueError(
            f"--run {text!r}: 1 to 32 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit"
        )
    return text


def fresh_run_label() -> str:
    """A new run's label: random, so two runs on one daemon never share an id."""
    return secrets.token_hex(4)


@dataclass(frozen=True)
class Run:
    """A run's namespace: its session ids, event ids and arms.

    Session ids are `sim-RUN-MODE-SEED-INDEX` (MODE: `open` for the open loop, the radio's name
    in the closed loop) and event ids `SESSION-K-TYPE`, so the same seed and label give the same
    ids (a repeat adds nothing) and another label gives new ones. Each radio's picks carry the
    arm `radio:RADIO@RUN`, so a report of a run's arms counts that run alone. Without a label
    (`label=None`, the library's default) ids are `sim-MODE-SEED-INDEX` and arms `radio:RADIO`.
    """

    label: str | None = None

    def prefix(self, mode: str) -> str:
        return f"sim-{self.label}-{mode}" if self.label else f"sim-{mode}"

    def arm(self, radio: str) -> str:
        return f"{ARMS[radio]}@{self.label}" if self.label else ARMS[radio]


@dataclass
class Tally:
    """Events a run posted: accepted, and of those already in the log (an earlier run's)."""

    accepted: int = 0
    duplicates: int = 0

    @property
    def new(self) -> int:
        return self.accepted - self.duplicates

    def add(self, answer: Accepted) -> None:
        self.accepted += answer.accepted
        self.duplicates += answer.duplicates

    def words(self) -> str:
        return f"{self.accepted:,} events posted, {self.new:,} new, {self.duplicates:,} duplicates"


# ------------------------------------------------------------------------------- over HTTP


async def role_of(client: Client) -> str:
    """The role the daemon says it has (GET /readyz answers it, ready or not)."""
    body = (await client.request("GET", "/readyz")).json()
    if not isinstance(body, dict) or not isinstance(body.get("role"), str):
        raise DaemonError(f"{client.url} did not answer GET /readyz as a gravityd daemon")
    return body["role"]


@dataclass(frozen=True)
class Daemons:
    """Where a run writes (`writer`) and where it reads (`reader`: None when it has nowhere)."""

    writer: Client
    reader: Client | None

    async def close(self) -> None:
        await self.writer.close()
        if self.reader is not None and self.reader is not self.writer:
            await self.reader.close()


async def connect(url: str, read_url: str | None = None, token: str | None = None) -> Daemons:
    """Ask each daemon its role: events go to `url`, which must take them; reads go to
    `read_url` if given, else to `url` unless it is a writer (which answers reads wrong_role)."""
    writer = Client(url, token=token)
    try:
        if await role_of(writer) == "replica":
            raise ValueError(
                f"{url} is a replica, which takes no events: give --url of a writer (or a "
                f"--role all daemon) and --read-url {url}"
            )
        reader: Client | None = writer
        if read_url is not None:
            reader = Client(read_url, token=token)
            if await role_of(reader) == "writer":
                await reader.close()
                raise ValueError(f"--read-url {read_url} is a writer, which serves no reads")
        elif await role_of(writer) == "writer":
            reader = None
    except BaseException:
        await writer.close()
        raise
    return Daemons(writer, reader)


async def _gravity_session(
    world: World, reader: Client, seed: int, index: int, base_time: float, run: Run
) -> list[Step]:
    """A gravity-radio session: each pick is a POST /rank on the daemon's live graph."""
    gen = session(world, seed, index, base_time, run.prefix("gravity"), run.arm("gravity"))
    try:
        current, pool, history = next(gen)
        while True:
            row = world.emb_row(current)
            body = {
                "current_track_id": world.ids[current],
                "candidate_track_ids": [world.ids[b] for b in pool],
                "embeddings_scores": {world.ids[b]: row[b] for b in pool},
                "session_history": [world.ids[h] for h in history],
            }
            answer = await reader.call("POST", "/rank", json=body)
            ranked = [world.index[x["track_id"]] for x in answer["ranked"]]
            current, pool, history = gen.send(ranked)
    except StopIteration as stop:
        return stop.value


@dataclass
class LoopResult:
    """Skip rates per block for each radio, and the share of the gap the blend closed."""

    blocks: list[dict[str, float]]
    sessions_per_block: int
    # per arm context: the skipped and kept picks of the sessions posted to the daemon
    posted: dict[str, Counter[str]] = field(default_factory=dict)
    events: Tally = field(default_factory=Tally)

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
    token: str | None = None,
    world: World | None = None,
    progress: Callable[[dict[str, float]], None] | None = None,
    only_gravity: bool = False,
    run: Run | None = None,
    read_url: str | None = None,
) -> LoopResult:
    """Run the three radios block by block; the gravity radio ranks on the daemon, and every
    radio's sessions (only the gravity radio's with `only_gravity`) are posted to it before the
    block's fold. Events go to `url`; ranks and folds to `read_url` when given."""
    world = world or World(seed)
    run = run or Run()
    base_time = float(int(time.time()) - blocks * block_sessions * SESSION_SPACING_S - 3600)
    daemons = await connect(url, read_url, token)
    if daemons.reader is None:
        await daemons.close()
        raise ValueError(
            f"{url} is a writer: the closed loop ranks and folds on a reader; give --read-url "
            "of a replica on the same log"
        )
    writer, reader = daemons.writer, daemons.reader
    emb, orc = embedding_order(world), oracle_order(world)
    sem = asyncio.Semaphore(concurrency)
    rows = []
    tally = Tally()
    radios = ("gravity",) if only_gravity else RADIOS
    posted = {run.arm(r): Counter(skipped=0, kept=0) for r in radios}
    try:
        for b in range(blocks):
            idx = range(b * block_sessions, (b + 1) * block_sessions)

            async def one(i: int) -> list[Step]:
                async with sem:
                    steps = await _gravity_session(world, reader, seed, i, base_time, run)
                    tally.add(await writer.post_events(session_events(steps)))
                    return steps

            grav = list(await asyncio.gather(*[one(i) for i in idx]))
            runs = {"gravity": grav}
            for radio, order in (("embedding", emb), ("oracle", orc)):
                prefix, arm = run.prefix(radio), run.arm(radio)
                runs[radio] = [
                    run_session(world, seed, i, order, base_time, radio, prefix, arm) for i in idx
                ]
            for radio in radios:
                posted[run.arm(radio)].update(verdicts(runs[radio]))
                if radio != "gravity":
                    events = [e for steps in runs[radio] for e in session_events(steps)]
                    for i in range(0, len(events), 2000):
                        tally.add(await writer.post_events(events[i : i + 2000]))
            await reader.call("POST", "/admin/fold")
            row = {
                "block": b + 1,
                "sessions": (b + 1) * block_sessions,
                **{radio: skip_rate(runs[radio]) for radio in RADIOS},
            }
            rows.append(row)
            if progress:
                progress(row)
    finally:
        await daemons.close()
    return LoopResult(rows, block_sessions, posted, tally)


@dataclass
class OpenLoopResult:
    """What the open loop posted, the world, how often each track was played (so a user can
    look at the busiest tracks' lanes), and where reads go (None: the daemon is a writer)."""

    accepted: int
    duplicates: int
    world: World
    played: Counter[int]
    read_url: str | None

    @property
    def events(self) -> Tally:
        return Tally(self.accepted, self.duplicates)


async def open_loop(
    url: str,
    *,
    sessions: int,
    seed: int,
    concurrency: int = 8,
    token: str | None = None,
    world: World | None = None,
    progress: Callable[[int, int], None] | None = None,
    run: Run | None = None,
    read_url: str | None = None,
) -> OpenLoopResult:
    """Post `sessions` embedding-radio sessions; `progress(sessions, events accepted)`."""
    world = world or World(seed)
    run = run or Run()
    base_time = float(int(time.time()) - sessions * SESSION_SPACING_S - 3600)
    order = embedding_order(world)
    prefix, arm = run.prefix("open"), run.arm("embedding")
    daemons = await connect(url, read_url, token)
    sem = asyncio.Semaphore(concurrency)
    done = [0]
    tally = Tally()
    played: Counter[int] = Counter()

    async def one(i: int) -> None:
        async with sem:
            steps = run_session(world, seed, i, order, base_time, "embedding", prefix, arm)
            played.update(s.dst for s in steps)
            tally.add(await daemons.writer.post_events(session_events(steps)))
            done[0] += 1
            if progress:
                progress(done[0], tally.accepted)

    try:
        await asyncio.gather(*[one(i) for i in range(sessions)])
    finally:
        await daemons.close()
    reader = daemons.reader.url if daemons.reader is not None else None
    return OpenLoopResult(tally.accepted, tally.duplicates, world, played, reader)


async def replay_yes(
    url: str,
    data: str,
    *,
    playlists: int | None = None,
    token: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Posted:
    """Post Yes.com playlists (gravityd.lab.yes) to the daemon that takes events at `url`."""
    ds = load_yes(data)  # a bad folder is a usage error, whether or not the daemon is up
    daemons = await connect(url, None, token)
    try:
        return await post_replay(daemons.writer, ds, playlists=playlists, progress=progress)
    finally:
        await daemons.close()


# ------------------------------------------------------------------------------- output


def loop_table(res: LoopResult) -> str:
    """The skip rate per block of each radio as a Markdown table, and the gap closed."""
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


def _no_reader(url: str) -> str:
    return (
        f"{url} is a writer: reads (warp lanes, /rank, the report) are served by a replica on "
        "the same log; give --read-url to print links to it"
    )


def run(args: Any) -> int:
    """`gravityd simulate`: the open loop, the closed loop (--closed-loop) or a Yes.com replay.

    ValueError is a usage error (exit 2); DaemonError a daemon unreachable or refusing (exit 1).
    """
    started = time.monotonic()
    if args.replay:
        with Progress(None, "replay", unit="event") as bar:

            def posted(done: int, total: int) -> None:
                bar.set_total(total)
                bar.advance_to(done)

            res = asyncio.run(
                replay_yes(args.url, args.replay, playlists=args.playlists, progress=posted)
            )
        print(
            f"replayed {res.playlists} playlists from {args.replay}: {res.accepted:,} events "
            f"accepted: {res.new:,} new ({res.duplicates:,} already there) in "
            f"{time.monotonic() - started:.1f} s"
        )
        print(f"titles: gravityd catalog load {args.replay.rstrip('/')}/song_hash.txt")
        return 0
    label = run_label(args.run) if args.run is not None else fresh_run_label()
    this = Run(label)
    again = f"the same ids again: --seed {args.seed} --run {label}"
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
                world=world,
                progress=show,
                only_gravity=args.only_gravity,
                run=this,
                read_url=args.read_url,
            )
        )
        print(loop_table(res))
        print(f"run {label}: {res.events.words()}; {again}")
        picks = ", ".join(f"{arm} {c['skipped']}/{c['kept']}" for arm, c in res.posted.items())
        print(f"picks posted (skipped/kept): {picks}")
        arms = ",".join(this.arm(r) for r in ("embedding", "gravity") if this.arm(r) in res.posted)
        print(
            "the daemon's scoreboard of these sessions: gravityd report "
            f"--url {args.read_url or args.url} --arms {arms}"
        )
        if args.plot:
            plot(res, args.plot)
            print(f"learning curve: {args.plot}")
        return 0
    with Progress(args.sessions, "simulate", unit="session") as bar:
        out = asyncio.run(
            open_loop(
                args.url,
                sessions=args.sessions,
                seed=args.seed,
                concurrency=args.concurrency,
                world=world,
                progress=lambda d, e: bar.advance_to(d, postfix=f"{e:,} events"),
                run=this,
                read_url=args.read_url,
            )
        )
    print(
        f"posted {args.sessions} sessions of run {label}: {out.events.words()} in "
        f"{time.monotonic() - started:.1f} s; {again}"
    )
    if out.read_url is None:
        print(_no_reader(args.url))
        return 0
    print(f"the busiest tracks' warp lanes (after curl -s -XPOST {out.read_url}/admin/fold):")
    for i, _ in out.played.most_common(3):
        print(f"  curl -s {out.read_url}/tracks/{world.ids[i]}/gravity_neighbors")
    return 0
