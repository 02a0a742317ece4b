"""The offline evaluation (gravityd/lab/evaluate.py) on small synthetic Yes.com-format folders."""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import replace
from pathlib import Path

import pytest

from gravityd.core.graph import FoldParams
from gravityd.lab import evaluate as ev

N_SONGS = 40


def write_yes(folder: Path, playlists: list[list[int]], tags: list[list[int]]) -> Path:
    """Write a Yes.com-format folder: train.txt, tags.txt, song_hash.txt."""
    folder.mkdir(parents=True, exist_ok=True)
    n = len(tags)
    lines = [" ".join(str(1000 + i) for i in range(n)), " ".join("1" for _ in range(n))]
    lines += ["".join(f"{s} " for s in pl) for pl in playlists]
    (folder / "train.txt").write_text("\n".join(lines) + "\n")
    (folder / "tags.txt").write_text(
        "\n".join(" ".join(map(str, t)) if t else "#" for t in tags) + "\n"
    )
    (folder / "song_hash.txt").write_text(
        "\n".join(f"{i}\tSong {i}\tArtist {i % 7}" for i in range(n)) + "\n"
    )
    return folder


def planted(folder: Path, n_playlists: int = 80, seed: int = 1) -> Path:
    """Playlists that mostly walk i -> i + 1 (mod N): a successor structure popularity can't see.

    Tags are genre-like blocks of 8 songs with a little noise, so cosine is informative but weak.
    """
    rng = random.Random(seed)
    playlists = []
    for _ in range(n_playlists):
        s = rng.randrange(N_SONGS)
        pl = [s]
        for _ in range(rng.randint(5, 10)):
            nxt = (s + 1) % N_SONGS if rng.random() < 0.85 else rng.randrange(N_SONGS)
            if nxt == s:
                nxt = (s + 2) % N_SONGS
            pl.append(nxt)
            s = nxt
        playlists.append(pl)
    tags = []
    for i in range(N_SONGS):
        t = {i // 8, 10 + rng.randrange(5)}
        tags.append(sorted(t) if i % 13 else [])  # a few songs without tags
    return write_yes(folder, playlists, tags)


def cli_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    ev.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_split_is_by_whole_playlists_and_deterministic(tmp_path: Path) -> None:
    data = ev.load_yes(planted(tmp_path / "d", n_playlists=200))
    a = ev.split_playlists(data.playlists, seed=3, test_fraction=0.25)
    b = ev.split_playlists(data.playlists, seed=3, test_fraction=0.25)
    assert a == b
    lines = [ln for ln, _ in data.playlists]
    assert sorted(a.train_lines + a.test_lines) == lines
    assert not set(a.train_lines) & set(a.test_lines)
    by_line = dict(data.playlists)
    assert [by_line[ln] for ln in a.test_lines] == a.test  # whole playlists, in file order
    assert [by_line[ln] for ln in a.train_lines] == a.train
    assert 20 <= len(a.test) <= 80
    c = ev.split_playlists(data.playlists, seed=4, test_fraction=0.25)
    assert c.test_lines != a.test_lines
    # A playlist's side depends on its line number only, not on the other lines.
    sub = ev.split_playlists(data.playlists[::2], seed=3, test_fraction=0.25)
    assert set(sub.test_lines) == set(a.test_lines) & {ln for ln, _ in data.playlists[::2]}
    few = ev.split_playlists(data.playlists, seed=3, test_fraction=0.25, max_playlists=50)
    assert len(few.train) + len(few.test) == 50
    assert few == ev.split_playlists(data.playlists, seed=3, test_fraction=0.25, max_playlists=50)
    with pytest.raises(ValueError):
        ev.split_playlists(data.playlists, test_fraction=1.0)


def test_metrics_hand_computed() -> None:
    m = ev.metrics_from_ranks([1, 2, None, 15, 11])
    assert m["HR@10"] == pytest.approx(2 / 5)
    assert m["HR@20"] == pytest.approx(4 / 5)
    assert m["MRR@10"] == pytest.approx((1 + 1 / 2) / 5)
    assert m["MRR@20"] == pytest.approx((1 + 1 / 2 + 1 / 15 + 1 / 11) / 5)
    assert ev.metrics_from_ranks([21, None]) == {
        "HR@10": 0.0,
        "HR@20": 0.0,
        "MRR@10": 0.0,
        "MRR@20": 0.0,
    }


def test_baselines_hand_computed() -> None:
    assert ev.tag_cosine(frozenset({1, 2}), frozenset({2, 3, 4, 5})) == pytest.approx(
        1 / (2**0.5 * 2)
    )
    assert ev.tag_cosine(frozenset(), frozenset({1})) == 0.0
    sr = ev.sequential_rules([[0, 1, 2], [0, 2]])
    # 0->1: 1, 0->2: 1/2 + 1 = 1.5 (normalised by the max), 1->2: 1.
    assert sr == {0: {2: 1.0, 1: pytest.approx(1 / 1.5)}, 1: {2: 1.0}}
    assert ev.successor_counts([[0, 1, 2], [0, 1]]) == {0: {1: 2}, 1: {2: 1}}


def test_replay_goes_through_the_real_fold() -> None:
    uuids = [ev.track_uuid(i) for i in range(3)]
    assert uuids[0] == ev.track_uuid(0) and len(set(uuids)) == 3
    params = replace(FoldParams(), half_life_days=0.0, distance_discount_power=1.0)
    graph, n_events, _ = ev.replay([[0, 1, 2], [2, 0]], uuids, params)
    assert n_events == 10
    w = {(u, v): round(e["pos"] - e["neg"], 6) for u, v, e in graph.g.edges(data=True)}
    u0, u1, u2 = uuids
    assert w == {(u0, u1): 1.0, (u1, u2): 1.0, (u0, u2): 0.5, (u2, u0): 1.0}


def test_graph_methods_beat_popularity_on_planted_data(tmp_path: Path) -> None:
    data = ev.load_yes(planted(tmp_path / "d"))
    result = ev.evaluate(data, seed=0, test_fraction=0.3, pool_size=15)
    full, pool = result["full_catalogue"], result["pool"]
    assert result["counts"]["evaluated_transitions"] > 50
    assert full["gravity neighbors"]["HR@10"] > full["popularity"]["HR@10"] + 0.3
    assert full["gravity neighbors"]["MRR@10"] > 0.5
    assert pool["gravity blend"]["HR@10"] >= pool["popularity"]["HR@10"]
    assert pool["gravity blend"]["MRR@10"] > pool["popularity"]["MRR@10"] + 0.2
    assert pool["gravity blend"]["MRR@10"] > pool["tag cosine"]["MRR@10"]
    assert pool["gravity only"]["MRR@10"] > pool["popularity"]["MRR@10"] + 0.2
    # Same seed, same figures (timings aside).
    again = ev.evaluate(data, seed=0, test_fraction=0.3, pool_size=15)
    assert again["full_catalogue"] == full and again["pool"] == pool


def test_run_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = planted(tmp_path / "d")
    args = cli_args(
        str(folder),
        "--json",
        "--seed",
        "2",
        "--max-transitions",
        "40",
        "--pool-size",
        "12",
        "--credit-window",
        "3",
        "--set",
        "rank_history_seeds=2",
    )
    assert ev.run(args) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("dataset", "seed", "counts", "timings_s", "params", "full_catalogue", "pool"):
        assert key in out
    assert set(out["full_catalogue"]) == set(ev.FULL_METHODS)
    assert set(out["pool"]) == set(ev.POOL_METHODS)
    for row in [*out["full_catalogue"].values(), *out["pool"].values()]:
        assert set(row) == {"HR@10", "HR@20", "MRR@10", "MRR@20"}
    for key in ("train_playlists", "test_playlists", "test_transitions", "edges"):
        assert out["counts"][key] > 0
    assert out["counts"]["evaluated_transitions"] == 40
    assert out["timings_s"]["fold"] >= 0
    assert out["params"]["fold"]["credit_window"] == 3
    assert out["params"]["fold"]["half_life_days"] == 0.0  # decay off by default offline
    assert out["params"]["rank"]["rank_history_seeds"] == 2
    # The table form prints every method.
    assert ev.run(cli_args(str(folder), "--max-transitions", "20")) == 0
    text = capsys.readouterr().out
    assert "gravity neighbors" in text and "gravity blend" in text and "HR@20" in text


def test_bad_paths_and_values(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        ev.load_yes(tmp_path / "missing")
    with pytest.raises(FileNotFoundError):
        ev.run(cli_args(str(tmp_path / "missing")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"train\.txt"):
        ev.load_yes(tmp_path / "empty")
    bad = write_yes(tmp_path / "bad", [[0, 1, 7]], [[1], [2], [3]])
    with pytest.raises(ValueError, match="line 3"):
        ev.load_yes(bad)
    short = write_yes(tmp_path / "short", [[0, 1]], [[1], [2], [3]])
    (short / "tags.txt").write_text("1\n")
    with pytest.raises(ValueError, match=r"tags\.txt"):
        ev.load_yes(short)
    with pytest.raises(ValueError, match="credit_window"):
        ev.run(cli_args(str(short), "--credit-window", "0"))
    with pytest.raises(ValueError, match="not a"):
        ev.run(cli_args(str(short), "--set", "nonsense=1"))
