"""Offline evaluation on real radio playlists (Yes.com, Chen et al., KDD 2012): does the graph
predict what a station plays next?

The recipe (docs/design.md, section 3):

1. **Load** a Yes.com folder: ``train.txt`` (line 1 the song ids, line 2 play counts, then one
   playlist per line as 0-based song indices), ``tags.txt`` (line i: tag indices of song i, ``#``
   for none) and, if present, ``song_hash.txt`` (only checked for its song count).
2. **Split by whole playlists**: a playlist is held out when a seeded stable hash (BLAKE2b) of its
   line number falls under ``test_fraction``; ``max_playlists`` keeps a seeded subsample first.
3. **Replay** the training playlists through the real fold (`GravityGraph.fold`) as sessions:
   song i is the track ``uuid5(YES_NAMESPACE, str(i))``, each playlist is one session, and each
   song is a ``play_start`` then a ``play_10s`` (10 s later); songs start 200 s apart (so no
   session timeout fires) and playlists an hour apart, with increasing log ids. Decay is off by
   default (``half_life_days = 0``): the playlists carry no real dates, so an offline replay must
   not let its made-up clock weigh early playlists less than late ones.
4. **Score every held-out transition** a -> b (b != a) of the test playlists (a seeded sample of at
   most ``max_transitions``), in two settings:

   - *full catalogue*: a next-track list of 20 for a, no candidates given. ``gravity neighbors``
     is ``GravityGraph.neighbors(a, limit=20, direction="out")``; the baselines are
     ``popularity`` (the most played training songs), ``tag cosine`` (the 20 songs with the
     highest tag cosine to a), ``bigram`` (a's first-order successor counts in training) and
     ``SR`` (sequential rules, Ludewig & Jannach 2018: every later track within 10 steps of a is
     credited 1/distance, top 20 per track kept). The rule-based lists are not padded, like the
     graph's.
   - *candidate pool*: the true next track plus ``pool_size - 1`` others drawn by training
     popularity without replacement (seeded; never a, nor a song of the session history, so
     every method ranks exactly the same pool). ``gravity blend`` is the real
     ``rank_pool`` with the tag cosine as the embedding score and the previous (up to) 10
     songs of the test playlist as ``session_history``; ``gravity only`` ranks the pool by the
     graph's edge weight a->c alone; ``SR`` and ``bigram`` by their scores; ``tag cosine`` and
     ``popularity`` by theirs.

   Tag cosine treats tags as sparse sets: |A n B| / sqrt(|A| |B|), 0 when either song has no tags.
   Ties break deterministically: by tag cosine (pool settings of the transition methods), then
   training popularity, then song index; the graph's own lists break ties by track id.
   Hit rate HR@k is the share of transitions whose true next track is in the top k; MRR@k the mean
   of 1/rank over them (0 past k).

Pure Python, no server: ``evaluate(...)`` returns a dict, ``format_table`` renders it, and the CLI
(``gravityd eval``) reaches ``add_arguments`` / ``run``. The parts live apart: the data and the
replay in ``gravityd.lab.yes`` (shared with ``gravityd simulate --replay``), the split, pools and
metrics in ``gravityd.lab.protocol``, the baselines in ``gravityd.lab.baselines``.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, fields, replace
from typing import Any

from gravityd.core.graph import FoldParams
from gravityd.core.ranking import RankParams, rank_pool
from gravityd.lab.baselines import (
    TagCosines,
    sequential_rules,
    successor_counts,
    tag_cosine,
    top_cosine,
)
from gravityd.lab.protocol import (
    RankingScores,
    Split,
    draw_pool,
    held_out,
    metrics_from_ranks,
    pool_rank,
    rank_in_list,
    split_playlists,
)
from gravityd.lab.session_knn import KnnParams, SessionKnn, sr_over_session
from gravityd.lab.yes import (
    YES_NAMESPACE,
    Dataset,
    load_yes,
    replay,
    session_index,
    track_uuid,
)
from gravityd.snapshots.state import train_model

__all__ = [  # the evaluation's names, wherever they live (tests and notebooks import them here)
    "FULL_METHODS",
    "POOL_METHODS",
    "YES_NAMESPACE",
    "Dataset",
    "RankingScores",
    "Split",
    "add_arguments",
    "evaluate",
    "format_table",
    "load_yes",
    "metrics_from_ranks",
    "params_from_args",
    "replay",
    "run",
    "sequential_rules",
    "split_playlists",
    "successor_counts",
    "tag_cosine",
    "track_uuid",
]

CUTOFFS = (10, 20)
FULL_METHODS = (
    "gravity neighbors",
    "V-SKNN",
    "STAN",
    "SR over session",
    "SR",
    "bigram",
    "tag cosine",
    "popularity",
)
POOL_METHODS = (
    "gravity blend",
    "gravity only",
    "learned prior",
    "V-SKNN",
    "STAN",
    "SR over session",
    "SR",
    "bigram",
    "tag cosine",
    "popularity",
)
POOL_DRAWS = ("popularity", "uniform")
TIE_BREAKS = ("index", "popularity")
HISTORY = 10  # songs of the test playlist passed as session_history


def evaluate(
    data: Dataset,
    *,
    fold_params: FoldParams | None = None,
    rank_params: RankParams | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    max_playlists: int | None = None,
    max_transitions: int | None = 20_000,
    pool_size: int = 100,
    methods: str = "all",
    tie_break: str = "index",
    pool_draw: str = "popularity",
    knn_params: KnnParams | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Split, replay, score; returns counts, timings, parameters and the two metric tables.

    ``progress(stage, done, total)`` as it goes: stage "fold" counts training playlists,
    "score" held-out transitions (for a progress bar; it changes nothing).

    ``methods`` "all", "full" (full-catalogue lists only) or "pool" (candidate pools only), so a
    parameter sweep can skip what it does not need. ``tie_break`` orders the baselines' equal
    scores: "index" (song index: arbitrary, like the graph's own order by track id) or
    "popularity" (training popularity, then index: a stronger baseline).
    """
    if methods not in ("all", "full", "pool"):
        raise ValueError("methods: must be all, full or pool")
    if tie_break not in TIE_BREAKS:
        raise ValueError("tie_break: must be index or popularity")
    if pool_draw not in POOL_DRAWS:
        raise ValueError("pool_draw: must be popularity or uniform")
    if pool_size < 2:
        raise ValueError("pool_size: must be at least 2")
    if max_transitions is not None and max_transitions < 1:
        raise ValueError("max_transitions: must be at least 1")
    fold_params = fold_params if fold_params is not None else _default_fold_params()
    rank_params = rank_params if rank_params is not None else RankParams()
    t_start = time.perf_counter()
    split = split_playlists(
        data.playlists, seed=seed, test_fraction=test_fraction, max_playlists=max_playlists
    )
    uuids = [track_uuid(i) for i in range(data.n_songs)]
    index_of = {u: i for i, u in enumerate(uuids)}

    fold_progress = (lambda d, t: progress("fold", d, t)) if progress else None
    sessions = session_index(fold_params)
    graph, n_events, fold_s = replay(split.train, uuids, fold_params, fold_progress, sessions)
    t_model = time.perf_counter()
    model = train_model(graph)  # what a daemon's background training holds at this cursor
    model_s = time.perf_counter() - t_model
    now = graph.clock
    t_replayed = time.perf_counter()

    pop = [0] * data.n_songs
    for songs in split.train:
        for s in songs:
            pop[s] += 1
    bigram = successor_counts(split.train)
    sr = sequential_rules(split.train)
    cos = TagCosines(data.tags)
    by_pop = sorted(range(data.n_songs), key=lambda s: (-pop[s], s))
    popular = [s for s in by_pop if pop[s] > 0]
    popular_sorted = sorted(popular)
    cum = list(
        itertools.accumulate(pop[s] if pool_draw == "popularity" else 1 for s in popular_sorted)
    )
    knn = SessionKnn(split.train, knn_params)

    transitions = held_out(split.test)
    n_all = len(transitions)
    rng = random.Random(seed * 1_000_003 + 7)
    if max_transitions is not None and n_all > max_transitions:
        picked = sorted(rng.sample(range(n_all), max_transitions))
        transitions = [transitions[i] for i in picked]
    do_full = methods in ("all", "full")
    do_pool = methods in ("all", "pool") and bool(popular)
    pools: list[list[int]] = []
    b_in_history = 0
    for k, j in transitions:
        songs = split.test[k]
        a, b = songs[j], songs[j + 1]
        history = songs[max(0, j - HISTORY) : j]
        if b in history:
            b_in_history += 1
        if do_pool:
            exclude = {a, b, *history}
            pools.append([b, *draw_pool(rng, popular_sorted, cum, pool_size - 1, exclude)])

    full = {m: RankingScores() for m in FULL_METHODS} if do_full else {}
    pool_m = {m: RankingScores() for m in POOL_METHODS} if do_pool else {}
    pop_top = by_pop[:21]
    pop_rank = [0] * data.n_songs  # position in training popularity order (ties by index)
    for r, s in enumerate(by_pop):
        pop_rank[s] = r
    tie = pop_rank if tie_break == "popularity" else list(range(data.n_songs))
    succ = graph.g.succ
    decay = graph.decay_factor(now)
    # Visit the transitions grouped by their source song, so each song's cosines and lists are
    # computed once (the pools were drawn above in sample order, so the order changes nothing).
    order = sorted(
        range(len(transitions)), key=lambda i: (split.test[transitions[i][0]][transitions[i][1]], i)
    )
    current = -1
    cos_a: dict[int, float] = {}
    lists: dict[str, list[int]] = {}
    neigh_s = rank_s = knn_s = 0.0
    for scored, i in enumerate(order):
        if progress and scored % 500 == 0:
            progress("score", scored, len(order))
        k, j = transitions[i]
        songs = split.test[k]
        a, b = songs[j], songs[j + 1]
        if a != current:
            current = a
            cos_a = cos.from_song(a)
            if do_full:
                t0 = time.perf_counter()
                lanes = graph.neighbors(uuids[a], limit=20, direction="out", now=now)
                neigh_s += time.perf_counter() - t0
                lists = {
                    "gravity neighbors": [index_of[lane["track_id"]] for lane in lanes],
                    "popularity": [s for s in pop_top if s != a][:20],
                    "tag cosine": top_cosine(cos_a, by_pop, tie, a),
                    "bigram": [
                        s
                        for s, _ in heapq.nsmallest(
                            20,
                            bigram.get(a, {}).items(),
                            key=lambda kv: (-kv[1], tie[kv[0]]),
                        )
                    ],
                    "SR": [
                        s
                        for s, _ in heapq.nsmallest(
                            20, sr.get(a, {}).items(), key=lambda kv: (-kv[1], tie[kv[0]])
                        )
                    ],
                }
        session = [*songs[max(0, j - HISTORY) : j], a]
        t0 = time.perf_counter()
        by_session = {
            "V-SKNN": knn.vsknn(session),
            "STAN": knn.stan(session),
            "SR over session": sr_over_session(sr, session),
        }
        knn_s += time.perf_counter() - t0
        if do_full:
            for m, sc in by_session.items():
                lists[m] = [
                    s
                    for s, _ in heapq.nsmallest(21, sc.items(), key=lambda kv: (-kv[1], tie[kv[0]]))
                    if s != a
                ][:20]
            for m in FULL_METHODS:
                full[m].add(rank_in_list(lists[m], b))
        if not do_pool:
            continue
        pool = pools[i]
        cget = cos_a.get
        pool_m["popularity"].add(pool_rank(pool, b, None, None, pop_rank))
        pool_m["tag cosine"].add(pool_rank(pool, b, None, cos_a, tie))
        pool_m["SR"].add(pool_rank(pool, b, sr.get(a, {}), cos_a, tie))
        pool_m["bigram"].add(pool_rank(pool, b, bigram.get(a, {}), cos_a, tie))
        for m, sc in by_session.items():
            pool_m[m].add(pool_rank(pool, b, sc, cos_a, tie))
        nbrs = succ.get(uuids[a], {})
        w_of = {
            c: (nbrs[uuids[c]]["pos"] - nbrs[uuids[c]]["neg"]) * decay
            for c in pool
            if uuids[c] in nbrs
        }
        pool_m["gravity only"].add(pool_rank(pool, b, w_of, cos_a, tie))
        pri = model.priors([(uuids[a], 1.0)], [uuids[c] for c in pool])
        pool_m["learned prior"].add(
            pool_rank(pool, b, {c: pri.get(uuids[c], 0.0) for c in pool}, cos_a, tie)
        )
        history = songs[max(0, j - HISTORY) : j]
        t0 = time.perf_counter()
        ranked = rank_pool(
            uuids[a],
            [uuids[c] for c in pool],
            {uuids[c]: cget(c, 0.0) for c in pool},
            [uuids[h] for h in history],
            graph=graph,
            params=rank_params,
            now=now,
            sessions=sessions,
            model=model,
        )
        rank_s += time.perf_counter() - t0
        target = uuids[b]
        pos = next((r + 1 for r, item in enumerate(ranked) if item["track_id"] == target), None)
        pool_m["gravity blend"].add(pos)
    if progress:
        progress("score", len(order), len(order))
    t_end = time.perf_counter()

    return {
        "dataset": data.path,
        "seed": seed,
        "test_fraction": test_fraction,
        "pool_size": pool_size,
        "tie_break": tie_break,
        "pool_draw": pool_draw,
        "counts": {
            "songs": data.n_songs,
            "playlists": len(split.train) + len(split.test),
            "train_playlists": len(split.train),
            "test_playlists": len(split.test),
            "train_transitions": sum(max(0, len(s) - 1) for s in split.train),
            "test_transitions": n_all,
            "evaluated_transitions": len(transitions),
            "true_next_in_history": b_in_history,
            "events_folded": n_events,
            "graph_tracks": graph.node_count,
            "edges": graph.edge_count,
        },
        "timings_s": {
            "fold": round(fold_s, 3),
            "model": round(model_s, 3),
            "replay": round(t_replayed - t_start, 3),
            "neighbors": round(neigh_s, 3),
            "rank_candidates": round(rank_s, 3),
            "references": round(knn_s, 3),
            "total": round(t_end - t_start, 3),
        },
        "params": {"fold": asdict(fold_params), "rank": asdict(rank_params)},
        "full_catalogue": {m: full[m].result() for m in full},
        "pool": {m: pool_m[m].result() for m in pool_m},
    }


def _default_fold_params() -> FoldParams:
    from gravityd.config import load_config

    return replace(load_config(env={}).graph, half_life_days=0.0)


# --------------------------------------------------------------------------- output


_LABELS = ("HR@10", "HR@20", "MRR@10", "MRR@20")


def format_table(result: dict[str, Any]) -> str:
    """The result as a plain-text table with the counts and timings above it."""
    c = result["counts"]
    t = result["timings_s"]
    fp = result["params"]["fold"]
    rp = result["params"]["rank"]
    lines = [
        f"{result['dataset']}: {c['train_playlists']:,} train / {c['test_playlists']:,} test "
        f"playlists (seed {result['seed']}, test fraction {result['test_fraction']:g}); "
        f"{c['evaluated_transitions']:,} of {c['test_transitions']:,} held-out transitions "
        f"evaluated",
        f"graph: {c['events_folded']:,} events folded in {t['fold']:.1f} s, "
        f"{c['graph_tracks']:,} tracks, {c['edges']:,} edges (credit_window "
        f"{fp['credit_window']}, distance_discount_power {fp['distance_discount_power']:g}, "
        f"half_life_days {fp['half_life_days']:g}); blend: rank_gravity_weight "
        f"{rp['rank_gravity_weight']:g}, rank_confidence_half_evidence "
        f"{rp['rank_confidence_half_evidence']:g}; model trained in {t['model']:.1f} s; "
        f"total {t['total']:.1f} s",
    ]
    width = 28
    for title, key in (
        ("Full catalogue (next-track list of 20)", "full_catalogue"),
        (
            f"{result['pool_size']}-candidate pool (true next + {result['pool_draw']}-drawn)",
            "pool",
        ),
    ):
        table = result.get(key) or {}
        if not table:
            continue
        lines.append("")
        lines.append(title)
        lines.append(f"  {'method':<{width - 2}}" + "".join(f"{lab:>9}" for lab in _LABELS))
        for method, row in table.items():
            lines.append(
                f"  {method:<{width - 2}}" + "".join(f"{row[lab]:>9.4f}" for lab in _LABELS)
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


_FLAG_FIELDS = {
    "credit_window": "fold",
    "distance_discount_power": "fold",
    "half_life_days": "fold",
    "rank_gravity_weight": "rank",
    "rank_confidence_half_evidence": "rank",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `gravityd eval`."""
    parser.add_argument(
        "path",
        metavar="DATA_DIR",
        help="a Yes.com folder (train.txt, tags.txt): yes_small or yes_big from the data page "
        "of Chen et al., KDD 2012 (see docs/evaluation.md), or tests/data/yes_sample",
    )
    parser.add_argument("--seed", type=int, default=0, help="split and sampling seed (default 0)")
    parser.add_argument(
        "--test-fraction", type=float, default=0.2, help="share of playlists held out (default 0.2)"
    )
    parser.add_argument(
        "--max-playlists",
        type=int,
        default=None,
        metavar="N",
        help="use a seeded sample of N playlists (default: all)",
    )
    parser.add_argument(
        "--max-transitions",
        type=int,
        default=20_000,
        metavar="N",
        help="evaluate a seeded sample of at most N held-out transitions (default 20000; 0 = all)",
    )
    parser.add_argument(
        "--pool-size",
        type=int,
        default=100,
        metavar="N",
        help="candidates per pool, the true next track included (default 100)",
    )
    parser.add_argument(
        "--tie-break",
        choices=TIE_BREAKS,
        default="index",
        help="order of the baselines' equal scores: song index (default; arbitrary, like the "
        "graph's track-id order) or training popularity (stronger baselines)",
    )
    parser.add_argument(
        "--pool-draw",
        choices=POOL_DRAWS,
        default="popularity",
        help="how a pool's other candidates are drawn: by training popularity (default; harder) "
        "or uniformly from the songs played in training (the issue's 'random')",
    )
    parser.add_argument(
        "--config",
        metavar="F",
        help="TOML config whose [graph] and [rank] sections are the starting "
        "parameters (default: the built-in defaults / config/gravityd.toml)",
    )
    parser.add_argument(
        "--credit-window",
        type=int,
        default=None,
        metavar="N",
        help="fold: earlier tracks credited by an accepted play",
    )
    parser.add_argument(
        "--distance-discount-power",
        "--discount-power",
        type=float,
        default=None,
        metavar="P",
        help="fold: credit at distance d is d**-P",
    )
    parser.add_argument(
        "--half-life-days",
        type=float,
        default=0.0,
        metavar="D",
        help="fold: evidence half-life; default 0 = no decay, since an offline "
        "replay's clock is made up",
    )
    parser.add_argument(
        "--gravity-weight",
        dest="rank_gravity_weight",
        type=float,
        default=None,
        metavar="W",
        help="rank: rank_gravity_weight",
    )
    parser.add_argument(
        "--confidence-half-evidence",
        dest="rank_confidence_half_evidence",
        type=float,
        default=None,
        metavar="K",
        help="rank: rank_confidence_half_evidence",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any FoldParams or RankParams field, e.g. --set rank_history_seeds=3 (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _parse_value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def params_from_args(args: argparse.Namespace) -> tuple[FoldParams, RankParams]:
    """FoldParams and RankParams: the config's, then the flags, then --set overrides."""
    from gravityd.config import load_config

    cfg = load_config(getattr(args, "config", None), env={})
    fold_kw: dict[str, Any] = {}
    rank_kw: dict[str, Any] = {}
    for name, where in _FLAG_FIELDS.items():
        value = getattr(args, name, None)
        if value is not None:
            (fold_kw if where == "fold" else rank_kw)[name] = value
    fold_names = {f.name for f in fields(FoldParams)}
    rank_names = {f.name for f in fields(RankParams)}
    for item in getattr(args, "overrides", None) or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise ValueError(f"--set {item}: expected KEY=VALUE")
        if key in fold_names:
            fold_kw[key] = _parse_value(value)
        elif key in rank_names:
            rank_kw[key] = _parse_value(value)
        else:
            raise ValueError(f"--set {key}: not a [graph] or [rank] setting")
    fold_kw.setdefault("half_life_days", 0.0)
    return replace(cfg.graph, **fold_kw), replace(cfg.rank, **rank_kw)


def run(args: argparse.Namespace) -> int:
    """`gravityd eval`: print the table (or JSON with --json); 0 on success."""
    fold_params, rank_params = params_from_args(args)
    if args.max_playlists is not None and args.max_playlists < 1:
        raise ValueError("--max-playlists: must be at least 1")
    if args.max_transitions is not None and args.max_transitions < 0:
        raise ValueError("--max-transitions: must be at least 0 (0 = all)")
    from gravityd.progress import Stages

    data = load_yes(args.path)
    with Stages(units={"fold": "playlist", "score": "transition"}) as stages:
        result = evaluate(
            data,
            fold_params=fold_params,
            rank_params=rank_params,
            seed=args.seed,
            test_fraction=args.test_fraction,
            max_playlists=args.max_playlists,
            max_transitions=args.max_transitions or None,
            pool_size=args.pool_size,
            tie_break=args.tie_break,
            pool_draw=args.pool_draw,
            progress=stages,
        )
    if args.json:
        print(json.dumps(result, sort_keys=False))
    else:
        print(format_table(result))
    return 0
