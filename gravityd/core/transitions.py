"""The learned transition model: what listeners would likely do on a pair the radio never tried.

Why: the graph knows only the pairs listeners went through. A logistic factorisation of their
direct verdicts (kept against skipped, and kept against random tracks) gives every track an
out-vector and an in-vector, so what was learnt on some pairs carries over to others: a track
kept after tracks like the current one gets a good prior before its own edge has any evidence.
`rank_pool` uses it as the prior of the acceptance it estimates (docs/model.md, "The learned
prior").

The model (d = ``model_dims``): ``P(b kept after a) = sigmoid(out[a] . in[b] + bias[b])``.

Training (`fit_transitions`) is a pure function of the graph's edges as of one cursor: for every
edge a->b with direct evidence, ``kept`` (decayed ``acc``: b kept right after a) and
``skipped`` (decayed ``neg``) are the weights of label 1 and label 0; each edge with kept
evidence also gets ``model_negatives`` random tracks as "not chosen" (label 0, weight
``model_negative_weight`` * min(kept, 1) each; a share ``model_negative_popularity`` drawn like
the targets of kept edges, the rest uniformly), since playlists carry no skips and without them
the model would learn that everything is kept. Full-batch Adam over ``model_epochs`` steps,
random numbers from a generator seeded by ``model_seed``: the same edges give the same model bit
for bit, so a replay of the log to the same cursor trains the same model.

A daemon trains it in the background (gravityd/daemon/models.py), a worker process at the
lowest CPU priority, and swaps the result in whole: a read sees the old model or the new one.
Memory: 2 * d + 1 float32 per track and a dict entry; nothing per edge. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from scipy import sparse

from gravityd.core.params import FoldParams

__all__ = [
    "MODEL_PART",
    "EdgeArrays",
    "ModelParams",
    "TransitionModel",
    "fit_transitions",
]

MODEL_PART = "transition_model"  # the snapshot part that carries the model
_FORMAT = 2
_INIT_SCALE = 0.05
_ADAM = (0.9, 0.999, 1e-8)


@dataclass(frozen=True, slots=True)
class ModelParams:
    """The model's knobs (the [graph] settings model_*)."""

    dims: int = 32
    epochs: int = 100
    learning_rate: float = 0.05
    l2: float = 1e-4
    negatives: int = 5
    negative_weight: float = 0.5
    negative_popularity: float = 0.8
    seed: int = 0

    @classmethod
    def from_fold(cls, p: FoldParams) -> ModelParams:
        return cls(
            p.model_dims,
            p.model_epochs,
            p.model_learning_rate,
            p.model_l2,
            p.model_negatives,
            p.model_negative_weight,
            p.model_negative_popularity,
            p.model_seed,
        )

    def as_list(self) -> list[Any]:
        return [
            self.dims,
            self.epochs,
            self.learning_rate,
            self.l2,
            self.negatives,
            self.negative_weight,
            self.negative_popularity,
            self.seed,
        ]


class EdgeArrays(NamedTuple):
    """The training input: track ids, and per edge with direct evidence its source and target
    rows and its decayed kept and skipped weights."""

    ids: list[str]
    src: np.ndarray  # int32
    dst: np.ndarray  # int32
    kept: np.ndarray  # float32
    skipped: np.ndarray  # float32


def edge_arrays(rows: Sequence[tuple[str, str, float, float]]) -> EdgeArrays:
    """(src, dst, kept, skipped) rows, in any order, as arrays over sorted track ids (the order
    fixes the result: the same rows give the same arrays)."""
    rows = sorted(r for r in rows if r[2] > 0.0 or r[3] > 0.0)
    ids = sorted({r[0] for r in rows} | {r[1] for r in rows})
    index = {t: i for i, t in enumerate(ids)}
    n = len(rows)
    return EdgeArrays(
        ids,
        np.fromiter((index[r[0]] for r in rows), np.int32, n),
        np.fromiter((index[r[1]] for r in rows), np.int32, n),
        np.fromiter((r[2] for r in rows), np.float32, n),
        np.fromiter((r[3] for r in rows), np.float32, n),
    )


class TransitionModel:
    """Out- and in-vectors per track as of one cursor; read by the ranking, never changed."""

    def __init__(
        self,
        params: ModelParams | None = None,
        ids: Sequence[str] = (),
        out: np.ndarray | None = None,
        inn: np.ndarray | None = None,
        bias: np.ndarray | None = None,
        cursor: int = 0,
        edges: int = 0,
    ) -> None:
        self.params = p = params or ModelParams()
        self.ids = list(ids)
        self.index = {t: i for i, t in enumerate(self.ids)}
        n = len(self.ids)
        self.out = out if out is not None else np.zeros((n, p.dims), np.float32)
        self.inn = inn if inn is not None else np.zeros((n, p.dims), np.float32)
        self.bias = bias if bias is not None else np.zeros(n, np.float32)
        self.cursor = cursor  # the graph's cursor the model was trained at
        self.edges = edges  # edges it was trained on

    @classmethod
    def for_fold(cls, params: FoldParams | None) -> TransitionModel:
        """The empty model the [graph] settings describe (before the first training)."""
        return cls(ModelParams.from_fold(params if params is not None else FoldParams()))

    def __len__(self) -> int:
        return len(self.ids)

    def priors(
        self, sources: Sequence[tuple[str, float]], candidates: Sequence[str]
    ) -> dict[str, float]:
        """P(kept) of each candidate after the weighted sources (their out-vectors averaged);
        candidates the model has no vector for, or no known source, are left out. O(len * d)."""
        if not self.ids:
            return {}
        idx = self.index
        rows, weights = [], []
        for t, wgt in sources:
            i = idx.get(t)
            if i is not None and wgt > 0.0:
                rows.append(i)
                weights.append(wgt)
        if not rows:
            return {}
        cand = [(c, i) for c in candidates if (i := idx.get(c)) is not None]
        if not cand:
            return {}
        if len(rows) == 1:
            src = self.out[rows[0]]
        else:
            wv = np.asarray(weights, np.float32)
            src = (self.out[rows] * wv[:, None]).sum(axis=0) / wv.sum()
        ci = np.fromiter((i for _, i in cand), np.int64, len(cand))
        s = self.inn[ci] @ src + self.bias[ci]
        pr = 1.0 / (1.0 + np.exp(-np.clip(s, -30.0, 30.0)))
        return {c: v for (c, _), v in zip(cand, pr.tolist(), strict=True)}

    # ------------------------------------------------------------------ snapshots

    def records(self) -> Iterator[tuple[str, Any]]:
        """The model as one snapshot record (float32 arrays as little-endian bytes)."""
        if not self.ids:
            return

        def raw(arr: np.ndarray) -> bytes:
            return arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()

        yield (
            MODEL_PART,
            {
                "format": _FORMAT,
                "params": self.params.as_list(),
                "cursor": self.cursor,
                "edges": self.edges,
                "ids": self.ids,
                "out": raw(self.out),
                "in": raw(self.inn),
                "bias": raw(self.bias),
            },
        )

    @classmethod
    def from_records(
        cls, payloads: Sequence[Mapping[str, Any]], params: ModelParams | None = None
    ) -> TransitionModel:
        """Rebuild what `records` wrote; ValueError when the part is not one we wrote, or (with
        `params`, the running config's) when it was trained with other settings."""
        try:
            head = payloads[-1]
            if head.get("format") != _FORMAT:
                raise ValueError(f"transition model format {head.get('format')!r} unknown")
            stored = ModelParams(*head["params"])
            if params is not None and params != stored:
                raise ValueError("the snapshot's model settings differ from the config's")
            ids = [str(t) for t in head["ids"]]
            n, d = len(ids), stored.dims

            def arr(key: str, shape: tuple[int, ...]) -> np.ndarray:
                a = np.frombuffer(head[key], dtype=np.dtype("float32").newbyteorder("<"))
                return a.astype(np.float32).reshape(shape)

            return cls(
                stored,
                ids,
                arr("out", (n, d)),
                arr("in", (n, d)),
                arr("bias", (n,)),
                int(head["cursor"]),
                int(head["edges"]),
            )
        except (IndexError, KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"transition model part unreadable: {exc}") from None

    def signature(self) -> tuple[Any, ...]:
        """Everything the model holds, its numbers as bytes (tests: bit for bit)."""
        return (
            self.params,
            self.cursor,
            self.edges,
            tuple(self.ids),
            self.out.tobytes(),
            self.inn.tobytes(),
            self.bias.tobytes(),
        )

    def nbytes(self) -> int:
        """Bytes of the arrays (the dict and the id strings are the graph's own strings)."""
        return self.out.nbytes + self.inn.nbytes + self.bias.nbytes


def fit_transitions(edges: EdgeArrays, params: ModelParams, cursor: int = 0) -> TransitionModel:
    """Train the model on these edges (full-batch Adam on the weighted log loss). Pure and
    deterministic: the same arrays and params give the same model bit for bit."""
    p = params
    n, d = len(edges.ids), p.dims
    if not n or not d or not len(edges.src):
        return TransitionModel(p, edges.ids, cursor=cursor)
    rng = np.random.Generator(np.random.PCG64(p.seed))
    out = ((rng.random((n, d), dtype=np.float32) - 0.5) * (2 * _INIT_SCALE)).astype(np.float32)
    inn = ((rng.random((n, d), dtype=np.float32) - 0.5) * (2 * _INIT_SCALE)).astype(np.float32)
    bias = np.zeros(n, np.float32)

    src, dst = edges.src.astype(np.int64), edges.dst.astype(np.int64)
    kept, skipped = edges.kept.astype(np.float32), edges.skipped.astype(np.float32)
    # The examples: every edge (label weight kept, against kept + skipped), then the random
    # "not chosen" tracks of each edge with kept evidence (sampled once per fit, fixed seed).
    k = p.negatives if p.negative_weight > 0.0 else 0
    has_kept = np.flatnonzero(kept > 0.0)
    neg_src = np.repeat(src[has_kept], k)
    neg_dst = rng.integers(0, n, len(neg_src))
    if p.negative_popularity > 0.0:
        # A share drawn like the targets of kept edges (a popular track more often): "kept
        # after a, not just popular" is what separates candidates in a radio's pool.
        by_pop = rng.random(len(neg_src)) < p.negative_popularity
        pick = rng.integers(0, len(has_kept), int(by_pop.sum()))
        neg_dst[by_pop] = dst[has_kept][pick]
    neg_w = np.repeat(np.minimum(kept[has_kept], 1.0) * np.float32(p.negative_weight), k)
    a = np.concatenate([src, neg_src])
    b = np.concatenate([dst, neg_dst])
    pos = np.concatenate([kept, np.zeros(len(neg_src), np.float32)])  # weight of label 1
    tot = np.concatenate([kept + skipped, neg_w.astype(np.float32)])  # weight of both labels
    m = len(a)
    # Scatter matrices (rows: tracks, columns: examples), built once: a gradient per example
    # becomes a gradient per track in one sparse product.
    cols = np.arange(m)
    ones = np.ones(m, np.float32)
    to_src = sparse.csr_matrix((ones, (a, cols)), shape=(n, m))
    to_dst = sparse.csr_matrix((ones, (b, cols)), shape=(n, m))
    scale = np.float32(1.0 / len(src))
    b1, b2, eps = _ADAM
    moments = [[np.zeros_like(x), np.zeros_like(x)] for x in (out, inn, bias)]
    lr = p.learning_rate
    for t in range(1, p.epochs + 1):
        oa, ib = out[a], inn[b]
        s = np.einsum("ij,ij->i", oa, ib) + bias[b]
        prob = 1.0 / (1.0 + np.exp(-np.clip(s, -30.0, 30.0)))
        g = ((tot * prob - pos) * scale).astype(np.float32)  # d loss / d s per example
        grads = (
            np.asarray(to_src @ (g[:, None] * ib)) + p.l2 * out,
            np.asarray(to_dst @ (g[:, None] * oa)) + p.l2 * inn,
            np.asarray(to_dst @ g).ravel(),
        )
        c1, c2 = 1.0 - b1**t, 1.0 - b2**t
        for x, gx, mv in zip((out, inn, bias), grads, moments, strict=True):
            mv[0] *= b1
            mv[0] += (1.0 - b1) * gx
            mv[1] *= b2
            mv[1] += (1.0 - b2) * gx * gx
            x -= (lr * (mv[0] / c1) / (np.sqrt(mv[1] / c2) + eps)).astype(np.float32)
    return TransitionModel(p, edges.ids, out, inn, bias, cursor, len(src))
