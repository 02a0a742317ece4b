"""The learned transition model: what listeners would likely do on a pair the radio never tried.

Why: the graph knows only the pairs listeners went through. A logistic factorisation of their
verdicts (kept against skipped, and kept against random tracks) gives every track an out-vector
and an in-vector, so what was learnt on some pairs carries over to others: a track whose
successors were kept after tracks like the current one gets a good prior before its own edge has
any evidence. `rank_pool` uses it as the prior of the acceptance it estimates (docs/model.md,
"The learned prior").

The model (d = ``model_dims``): ``P(b kept after a) = sigmoid(out[a] . in[b] + bias[b])``.

Training, by the fold, one verdict at a time in log order (``GravityGraph.take_verdicts``):

- a direct verdict on a->b (b kept right after a: label 1, weight of the play; b skipped: label
  0, weight of the graded skip penalty) is queued;
- every ``model_batch`` queued verdicts make one step of row-wise AdaGrad on the logistic loss,
  each kept verdict joined by ``model_negatives`` random tracks (label 0, weight
  ``model_negative_weight`` times the verdict's): without them, data without skips (playlists)
  would teach "everything is kept";
- random numbers come from a counter (SplitMix64), never from a global generator, and steps
  are taken at fixed verdict counts, so the same log gives the same model bit for bit
  whatever the fold's batches: a replay, a restart from a snapshot plus the log's tail, and a
  replica give one model. Verdicts queued short of a batch travel in the snapshot.

Memory: 2 * d + 3 float32 per track and a dict entry; nothing per edge. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gravityd.core.params import FoldParams

__all__ = ["MODEL_PART", "ModelParams", "TransitionModel", "Verdict"]

MODEL_PART = "transition_model"  # the snapshot part that carries the model
_FORMAT = 1
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_INIT_SCALE = 0.1

Verdict = tuple[str, str, float, float]  # (from, to, label 1 kept / 0 skipped, weight)


@dataclass(frozen=True, slots=True)
class ModelParams:
    """The model's knobs (the [graph] settings model_*)."""

    dims: int = 16
    batch: int = 256
    learning_rate: float = 0.1
    l2: float = 1e-4
    negatives: int = 2
    negative_weight: float = 0.5

    @classmethod
    def from_fold(cls, p: FoldParams) -> ModelParams:
        return cls(
            p.model_dims,
            p.model_batch,
            p.model_learning_rate,
            p.model_l2,
            p.model_negatives,
            p.model_negative_weight,
        )


def _splitmix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 of uint64 counters: deterministic, well-spread random bits."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _uniform(start: int, n: int) -> np.ndarray:
    """n floats in [0, 1) from counters start .. start + n - 1."""
    c = np.arange(start, start + n, dtype=np.uint64)
    return (_splitmix(c) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


class TransitionModel:
    """Out- and in-vectors per track, trained by the fold's verdicts; read by the ranking."""

    def __init__(self, params: ModelParams | None = None) -> None:
        self.params = p = params or ModelParams()
        if p.dims < 0 or p.batch < 1 or p.negatives < 0:
            raise ValueError("model bounds must be non-negative (batch >= 1)")
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        cap = 64 if p.dims else 0
        self.out = np.zeros((cap, p.dims), np.float32)
        self.inn = np.zeros((cap, p.dims), np.float32)
        self.bias = np.zeros(cap, np.float32)
        # AdaGrad's running sums of squared gradients, one per row and side.
        self.g_out = np.zeros(cap, np.float32)
        self.g_in = np.zeros(cap, np.float32)
        self.seen = np.zeros(cap, np.int64)  # real verdicts each track was the target of
        self.pending: list[Verdict] = []
        self.steps = 0  # batches learnt; with the batch size, the random counter's position
        self.verdicts = 0  # real verdicts learnt

    @classmethod
    def for_fold(cls, params: FoldParams | None) -> TransitionModel:
        return cls(ModelParams.from_fold(params if params is not None else FoldParams()))

    @property
    def enabled(self) -> bool:
        return self.params.dims > 0

    def __len__(self) -> int:
        return len(self.ids)

    # ------------------------------------------------------------------ learning

    def learn(self, verdicts: Iterable[Verdict]) -> int:
        """Queue verdicts (log order) and take every full batch's step; returns steps taken."""
        if not self.enabled:
            return 0
        self.pending.extend(verdicts)
        b = self.params.batch
        taken = 0
        while len(self.pending) >= b:
            batch, self.pending = self.pending[:b], self.pending[b:]
            self._step(batch)
            taken += 1
        return taken

    def _row(self, track: str) -> int:
        i = self.index.get(track)
        if i is None:
            i = len(self.ids)
            if i >= len(self.bias):
                self._grow()
            self.ids.append(track)
            self.index[track] = i
            d = self.params.dims
            # A fresh row: small deterministic noise (its position seeds it), so vectors differ.
            noise = (_uniform((i + 1) << 20, 2 * d) - 0.5) * (2 * _INIT_SCALE / max(1, d) ** 0.5)
            self.out[i] = noise[:d]
            self.inn[i] = noise[d:]
        return i

    def _grow(self) -> None:
        cap = max(64, 2 * len(self.bias))
        for name in ("out", "inn"):
            old = getattr(self, name)
            new = np.zeros((cap, self.params.dims), np.float32)
            new[: len(old)] = old
            setattr(self, name, new)
        for name in ("bias", "g_out", "g_in", "seen"):
            old = getattr(self, name)
            new = np.zeros(cap, old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def _step(self, batch: Sequence[Verdict]) -> None:
        p = self.params
        row = self._row
        a = np.fromiter((row(v[0]) for v in batch), np.int64, len(batch))
        b = np.fromiter((row(v[1]) for v in batch), np.int64, len(batch))
        y = np.fromiter((v[2] for v in batch), np.float32, len(batch))
        w = np.fromiter((v[3] for v in batch), np.float32, len(batch))
        np.add.at(self.seen, b, 1)
        if p.negatives and p.negative_weight > 0.0:
            kept = np.flatnonzero(y > 0.0)
            k = p.negatives
            n = len(self.ids)
            u = _uniform(self.steps * p.batch * k + (1 << 40), len(kept) * k)
            neg_b = np.minimum((u * n).astype(np.int64), n - 1)
            a = np.concatenate([a, np.repeat(a[kept], k)])
            b = np.concatenate([b, neg_b])
            y = np.concatenate([y, np.zeros(len(neg_b), np.float32)])
            w = np.concatenate([w, np.repeat(w[kept], k) * np.float32(p.negative_weight)])
        self.steps += 1
        self.verdicts += len(batch)
        oa, ib = self.out[a], self.inn[b]
        s = np.einsum("ij,ij->i", oa, ib) + self.bias[b]
        g = w * (1.0 / (1.0 + np.exp(-np.clip(s, -30.0, 30.0))) - y)  # d loss / d s
        grad_out = g[:, None] * ib + p.l2 * oa
        grad_in = g[:, None] * oa + p.l2 * ib
        # Row-wise AdaGrad: a track seen in many verdicts takes smaller steps, a new one learns
        # fast; the sums make the step size independent of how the batch mixes popular tracks.
        go = np.zeros_like(self.out[: len(self.ids)])
        gi = np.zeros_like(go)
        gb = np.zeros(len(self.ids), np.float32)
        np.add.at(go, a, grad_out)
        np.add.at(gi, b, grad_in)
        np.add.at(gb, b, g)
        touched_a = np.unique(a)
        touched_b = np.unique(b)
        self.g_out[touched_a] += np.einsum("ij,ij->i", go[touched_a], go[touched_a])
        self.g_in[touched_b] += np.einsum("ij,ij->i", gi[touched_b], gi[touched_b]) + np.square(
            gb[touched_b]
        )
        lr = np.float32(p.learning_rate)
        self.out[touched_a] -= lr * go[touched_a] / np.sqrt(self.g_out[touched_a] + 1e-6)[:, None]
        scale_b = lr / np.sqrt(self.g_in[touched_b] + 1e-6)
        self.inn[touched_b] -= scale_b[:, None] * gi[touched_b]
        self.bias[touched_b] -= scale_b * gb[touched_b]

    # ------------------------------------------------------------------ reading

    def known(self, track: str) -> bool:
        """True once the track was the target of a learnt verdict (its in-vector means
        something)."""
        i = self.index.get(track)
        return i is not None and bool(self.seen[i])

    def priors(
        self, sources: Sequence[tuple[str, float]], candidates: Sequence[str]
    ) -> dict[str, float]:
        """P(kept) of each candidate after the weighted sources (their out-vectors averaged);
        candidates the model has no verdict on, or no known source, are left out. O(len * d)."""
        if not self.enabled or not self.ids:
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
        seen = self.seen
        cand = [(c, i) for c in candidates if (i := idx.get(c)) is not None and seen[i]]
        if not cand:
            return {}
        wv = np.asarray(weights, np.float32)
        src = (self.out[rows] * wv[:, None]).sum(axis=0) / wv.sum()
        ci = np.fromiter((i for _, i in cand), np.int64, len(cand))
        s = self.inn[ci] @ src + self.bias[ci]
        pr = 1.0 / (1.0 + np.exp(-np.clip(s, -30.0, 30.0)))
        return {c: float(v) for (c, _), v in zip(cand, pr.tolist(), strict=True)}

    # ------------------------------------------------------------------ snapshots

    def records(self, chunk: int = 20_000) -> Iterator[tuple[str, Any]]:
        """The model as snapshot records: a head with the arrays' bytes (float32, little
        endian), then the queued verdicts in chunks."""
        n = len(self.ids)
        p = self.params

        def raw(arr: np.ndarray) -> bytes:
            return arr[:n].astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()

        yield (
            MODEL_PART,
            {
                "format": _FORMAT,
                "params": [p.dims, p.batch, p.learning_rate, p.l2, p.negatives, p.negative_weight],
                "steps": self.steps,
                "verdicts": self.verdicts,
                "ids": self.ids,
                "out": raw(self.out),
                "in": raw(self.inn),
                "bias": raw(self.bias),
                "g_out": raw(self.g_out),
                "g_in": raw(self.g_in),
                "seen": raw(self.seen),
            },
        )
        q = [list(v) for v in self.pending]
        for i in range(0, len(q), chunk):
            yield MODEL_PART, {"pending": q[i : i + chunk]}

    @classmethod
    def from_records(
        cls, payloads: Sequence[Mapping[str, Any]], params: ModelParams | None = None
    ) -> TransitionModel:
        """Rebuild what `records` wrote; ValueError when the part is not one we wrote.

        With `params` (the running config's) differing from the snapshot's, the model starts
        empty: vectors of another size or schedule cannot be carried over (the caller logs it).
        """
        try:
            head = payloads[0]
            if head.get("format") != _FORMAT:
                raise ValueError(f"transition model format {head.get('format')!r} unknown")
            dims, batch, lr, l2, negatives, neg_w = head["params"]
            stored = ModelParams(
                int(dims), int(batch), float(lr), float(l2), int(negatives), float(neg_w)
            )
            if params is not None and params != stored:
                raise ValueError("the snapshot's model settings differ from the config's")
            m = cls(stored)
            ids = [str(t) for t in head["ids"]]
            n = len(ids)
            m.ids = ids
            m.index = {t: i for i, t in enumerate(ids)}
            d = stored.dims

            def arr(key: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
                a = np.frombuffer(head[key], dtype=np.dtype(dtype).newbyteorder("<"))
                return a.astype(dtype).reshape(shape).copy()

            cap = max(64, n)
            m.out = np.zeros((cap, d), np.float32)
            m.inn = np.zeros((cap, d), np.float32)
            m.out[:n] = arr("out", "float32", (n, d))
            m.inn[:n] = arr("in", "float32", (n, d))
            for key, attr, dtype in (
                ("bias", "bias", "float32"),
                ("g_out", "g_out", "float32"),
                ("g_in", "g_in", "float32"),
                ("seen", "seen", "int64"),
            ):
                full = np.zeros(cap, dtype)
                full[:n] = arr(key, dtype, (n,))
                setattr(m, attr, full)
            m.steps = int(head["steps"])
            m.verdicts = int(head["verdicts"])
            for p in payloads[1:]:
                for a, b, y, w in p.get("pending", ()):
                    m.pending.append((str(a), str(b), float(y), float(w)))
        except (IndexError, KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"transition model part unreadable: {exc}") from None
        return m

    def signature(self) -> tuple[Any, ...]:
        """Everything the model holds, as bytes where it is numbers (tests: bit-for-bit)."""
        n = len(self.ids)
        return (
            self.steps,
            self.verdicts,
            tuple(self.ids),
            self.out[:n].tobytes(),
            self.inn[:n].tobytes(),
            self.bias[:n].tobytes(),
            self.g_out[:n].tobytes(),
            self.g_in[:n].tobytes(),
            self.seen[:n].tobytes(),
            tuple(self.pending),
        )

    def nbytes(self) -> int:
        """Bytes of the arrays (the dict and the id strings are counted by the caller's probe)."""
        return sum(
            a.nbytes for a in (self.out, self.inn, self.bias, self.g_out, self.g_in, self.seen)
        )
