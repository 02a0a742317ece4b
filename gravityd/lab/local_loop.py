"""The closed loop in one process: the simulator's world and listeners, the real fold, session
index, learned model and `rank_pool`, without HTTP, so a 4,000-session run on three world seeds
takes a minute, not an hour.

Same radios, pools, variety rule and common random numbers as `gravityd simulate --closed-loop
--only-gravity` (gravityd/lab/simulate.py); the difference is the fold's timing. Here the
gravity radio's sessions are folded one by one as they end, as a daemon's background fold
would fold them; over HTTP a block's sessions rank concurrently while the daemon folds.

Cold start: with ``--new-tracks K``, K tracks of the world are held back (no session starts on
them, no pool holds them) until ``--release`` sessions have run; the measurement is, for each,
the sessions from its release until it has its first lane (an edge to or from it with positive
net weight, what the map draws), and until its first out-lane. A track still without one at
the end counts as the run's length (the median is then a lower bound, said so).

    python -m gravityd.lab.local_loop --seeds 0,1,2 --sessions 1200
    python -m gravityd.lab.local_loop --seeds 0,1,2 --sessions 4000 --window 1000
    python -m gravityd.lab.local_loop --seeds 0,1,2 --sessions 1500 --new-tracks 20 --release 1000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from gravityd.core.events import FoldEvent
from gravityd.core.graph import GravityGraph
from gravityd.core.params import FoldParams
from gravityd.core.ranking import RankParams, rank_pool
from gravityd.core.session_index import SessionIndex
from gravityd.core.transitions import TransitionModel
from gravityd.lab.simulate import (
    Step,
    World,
    embedding_order,
    oracle_order,
    run_session,
    session_events,
)
from gravityd.snapshots.state import train_model

BASE_TIME = 1_700_000_000.0  # a fixed clock: the run is the same whatever the day


@dataclass
class LocalLoop:
    """One world's run: the skip rate of each radio per session, and cold-start counts."""

    seed: int
    skipped: dict[str, list[int]] = field(default_factory=dict)  # radio -> skips per session
    moves: list[int] = field(default_factory=list)  # transitions per session
    first_lane: dict[int, int] = field(default_factory=dict)  # new track -> sessions to it
    first_out_lane: dict[int, int] = field(default_factory=dict)

    def rate(self, radio: str, lo: int, hi: int) -> float:
        """Skip rate of the radio's picks over sessions [lo, hi)."""
        return sum(self.skipped[radio][lo:hi]) / max(1, sum(self.moves[lo:hi]))

    def gap_closed(self, lo: int, hi: int) -> float:
        emb, grav, orc = (self.rate(r, lo, hi) for r in ("embedding", "gravity", "oracle"))
        return (emb - grav) / (emb - orc) if emb > orc else float("nan")


def _fold_events(steps: list[Step], first_id: int) -> list[FoldEvent]:
    out = []
    for k, e in enumerate(session_events(steps)):
        ts = datetime.fromisoformat(e["timestamp"]).timestamp()
        elapsed = (e.get("meta") or {}).get("elapsed_ms")
        out.append(
            FoldEvent(
                first_id + k,
                e["session_id"],
                e["track_id"],
                e["event_type"],
                ts,
                elapsed,
                e.get("context"),
            )
        )
    return out


def run_world(
    seed: int,
    sessions: int,
    fold_params: FoldParams,
    rank_params: RankParams,
    *,
    new_tracks: int = 0,
    release: int = 0,
    train_every: int = 25,
    progress: Callable[[int], None] | None = None,
) -> LocalLoop:
    """Run the three radios over `sessions` sessions of world `seed`; the gravity radio ranks
    with `rank_pool` on the graph folded from its own sessions so far, and the transition
    model retrained every `train_every` sessions (0: never)."""
    world = World(seed)
    graph = GravityGraph(fold_params)
    index = SessionIndex.for_fold(fold_params)
    model = TransitionModel.for_fold(fold_params)
    ids = world.ids
    res = LocalLoop(seed, {"embedding": [], "gravity": [], "oracle": []})
    emb, orc = embedding_order(world), oracle_order(world)
    n = world.params.n_tracks
    held = frozenset(range(n - new_tracks, n)) if new_tracks else frozenset()

    def gravity(current: int, pool: list[int], history: list[int]) -> list[int]:
        row = world.emb_row(current)
        ranked = rank_pool(
            ids[current],
            [ids[b] for b in pool],
            {ids[b]: row[b] for b in pool},
            [ids[h] for h in history],
            graph=graph,
            params=rank_params,
            now=graph.clock or None,
            sessions=index,
            model=model,
        )
        return [world.index[r["track_id"]] for r in ranked]

    next_id = 1
    for i in range(sessions):
        hidden = held if i < release else frozenset()
        runs = {
            "gravity": run_session(world, seed, i, gravity, BASE_TIME, "gravity", hidden=hidden),
            "embedding": run_session(world, seed, i, emb, BASE_TIME, "embedding", hidden=hidden),
            "oracle": run_session(world, seed, i, orc, BASE_TIME, "oracle", hidden=hidden),
        }
        for radio, steps in runs.items():
            res.skipped[radio].append(sum(s.skipped for s in steps[1:]))
        res.moves.append(len(runs["gravity"]) - 1)
        events = _fold_events(runs["gravity"], next_id)
        next_id += len(events)
        graph.fold(events)
        index.fold(events)
        if train_every and (i + 1) % train_every == 0:
            model = train_model(graph)  # as a daemon's background training would
        if new_tracks and i >= release:
            for t in held:
                if t in res.first_out_lane:
                    continue
                outs, ins = graph.lane_counts(ids[t])
                if (outs or ins) and t not in res.first_lane:
                    res.first_lane[t] = i + 1 - release
                if outs:
                    res.first_out_lane[t] = i + 1 - release
        if progress:
            progress(i + 1)
    if new_tracks:
        span = sessions - release
        for t in held:
            res.first_lane.setdefault(t, span)
            res.first_out_lane.setdefault(t, span)
    return res


def _median(values: Sequence[int], span: int) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    return f"{med:g}" if med < span else f">= {span}"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m gravityd.lab.local_loop",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--seeds", default="0,1,2", help="world seeds, comma-separated")
    ap.add_argument("--sessions", type=int, default=1200)
    ap.add_argument(
        "--window",
        type=int,
        default=200,
        help="the gap closed is measured over the last this many sessions",
    )
    ap.add_argument("--new-tracks", type=int, default=0, metavar="K")
    ap.add_argument(
        "--release",
        type=int,
        default=0,
        metavar="N",
        help="sessions before the K new tracks are released",
    )
    ap.add_argument(
        "--train-every",
        type=int,
        default=25,
        metavar="N",
        help="retrain the transition model every N sessions (a daemon retrains "
        "every model_interval_s; 0: never)",
    )
    ap.add_argument("--config", metavar="F", help="TOML config ([graph], [rank])")
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any [graph] or [rank] setting (repeatable)",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from gravityd.lab.evaluate import params_from_args

    fold_params, rank_params = params_from_args(
        argparse.Namespace(config=args.config, overrides=args.overrides)
    )
    # params_from_args turns decay off for offline replays; the loop runs on the daemon's.
    if not any(o.startswith("half_life_days") for o in args.overrides):
        from gravityd.config import load_config

        fold_params = replace(
            fold_params, half_life_days=load_config(args.config, env={}).graph.half_life_days
        )
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    lo, hi = max(0, args.sessions - args.window), args.sessions
    out: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for seed in seeds:
        r = run_world(
            seed,
            args.sessions,
            fold_params,
            rank_params,
            new_tracks=args.new_tracks,
            release=args.release,
        )
        row: dict[str, Any] = {
            "seed": seed,
            "embedding": r.rate("embedding", lo, hi),
            "gravity": r.rate("gravity", lo, hi),
            "oracle": r.rate("oracle", lo, hi),
            "gap_closed": r.gap_closed(lo, hi),
        }
        if args.new_tracks:
            span = args.sessions - args.release
            row["first_lane_median"] = _median(list(r.first_lane.values()), span)
            row["first_out_lane_median"] = _median(list(r.first_out_lane.values()), span)
            row["first_lane"] = sorted(r.first_lane.values())
        out.append(row)
        if not args.json:
            extra = ""
            if args.new_tracks:
                extra = (
                    f"; new tracks' first lane after a median of {row['first_lane_median']} "
                    f"sessions, first out-lane {row['first_out_lane_median']}"
                )
            print(
                f"world {seed}: sessions {lo}-{hi}: skip rate embedding {row['embedding']:.3f}, "
                f"gravity {row['gravity']:.3f}, oracle {row['oracle']:.3f}; gap closed "
                f"{row['gap_closed']:.2f}{extra}",
                flush=True,
            )
    mean = statistics.fmean(r["gap_closed"] for r in out)
    if args.json:
        print(json.dumps({"worlds": out, "mean_gap_closed": mean}))
    else:
        print(
            f"mean gap closed over {len(out)} worlds: {mean:.2f} ({time.perf_counter() - t0:.0f} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
