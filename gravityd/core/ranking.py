"""Ranking the radio's candidate pool: the embedding score, nudged by the graph in proportion to
what the graph knows.

For each candidate c (after dropping duplicates, the current track and every track of
``session_history``):

- **Embedding part** ``emb'``: the map's score, clamped to ``[rank_embedding_floor, 1]`` and mapped
  linearly onto [-1, 1] (identity for cosine scores with the default floor -1; set the floor to 0
  for a map whose scores lie in 0..1), so it shares the gravity score's scale. A missing or
  non-finite score is replaced by the lowest known score of the pool (``rank_missing_embedding =
  "pool_min"``, the default; ``rank_missing_embedding_score`` if the pool knows none) or by
  ``rank_missing_embedding_score`` (``"fixed"``). Never an exception.
- **One seed's verdict** on c, from the edge seed->c with decayed positive and negative evidence
  pos, neg (``graph.py``: one accepted play adds 1, a like 2, an early skip up to 1 of neg):
  evidence mass ``m = pos + neg``, confidence ``conf = m / (m + k)`` (k =
  ``rank_confidence_half_evidence``: an edge seen once barely counts, one seen 500 times fully),
  acceptance ``a = pos / m`` mapped onto [-1, 1] with ``rank_neutral_acceptance`` (a0) as 0:
  ``g = (a - a0) / (1 - a0)`` above a0, ``(a - a0) / a0`` below; the seed's vote ``x = conf * g``.
  Transitions listeners skip away from (a < a0) get a negative vote.
- **The learned prior** (the current track only; ``gravityd/core/transitions.py``): the
  acceptance on current->c is a posterior mean, ``conf * a + (1 - conf) * p`` with ``p = a0 +
  rank_model_weight * (P - a0)``, P the model's probability that c is kept after the current
  track (its query mixes in the history's out-vectors at ``rank_model_history``); p = a0 where
  the model has no vector, which is exactly the vote above. With ``rank_explore`` b > 0 the
  estimate is raised by ``b * sqrt(a (1 - a) / (mass + k + 1))`` (UCB) before it is mapped.
- **Direct evidence first**: on current->c, direct verdicts (c kept or skipped right after the
  current track, ``acc`` and ``neg``) weigh fully and multi-step credit (c kept a few tracks later,
  ``pos - acc``) counts at ``rank_cooccurrence_weight``: a skip is weighed against what listeners
  did at the same step, not against co-occurrence.
- **History seeds**: the ``rank_history_seeds`` most recent distinct tracks of ``session_history``
  (most recent last) also vote on c from their edges (all their credit), with weights
  ``rank_history_weight * rank_history_decay ** i`` (i = 0 for the most recent). Positive votes
  combine with Pixie's multi-hit booster ``H+ = (sum_s sqrt(r_s * max(x_s, 0))) ** 2`` (or the plain
  ``sum_s r_s * max(x_s, 0)`` with ``rank_multi_hit_boost = false``), which favours candidates that
  several recent tracks agree on; negative votes add up, ``H = clamp(H+ - H-, -1, 1)``.
- **Gating**: ``G = clamp(x0 + (1 - conf0) * H, -1, 1)`` where x0 and conf0 are the current track's
  vote and confidence: the history fills in only what the current track's own edge does not
  know. (Without the gate, co-occurrence in the radio's own sessions outvoted listeners' direct
  skips, and the closed loop learnt half as fast; the offline eval is unchanged by it.)
- **Session neighbours** ``V`` in [0, 1]: the votes of the indexed sessions most like this one
  (``gravityd/core/session_index.py``; the formula once, in docs/model.md, "Ranking"), divided by
  the pool's highest, times ``1 - conf0`` (gated like the history: the index never saw a skip).
- **Score** ``= emb' + rank_gravity_weight * G + rank_session_weight * V``. With no evidence
  and no prior (G = 0, V = 0) the order is exactly the embedding order; neutral evidence
  (a = a0) changes nothing; the graph can move a candidate by at most ``rank_gravity_weight``,
  and only as far as its evidence allows.
- **Order**: score descending, then the raw embedding score descending, then candidates with a known
  embedding score first, then ``track_id`` ascending: deterministic whatever the input order.

Track ids are compared exactly as given: the graph holds canonical (lower-case) UUIDs, which
``validate_rank_request`` produces for HTTP bodies. Pure: no I/O, no asyncio.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from gravityd.core.checks import check_fields
from gravityd.core.events import EventError, canonical_uuid
from gravityd.core.graph import GravityGraph
from gravityd.core.session_index import SessionIndex, SessionQuery, session_scores
from gravityd.core.transitions import TransitionModel

__all__ = [
    "MISSING_EMBEDDING_RULES",
    "RankParams",
    "RankRequest",
    "rank_pool",
    "validate_rank_request",
]

MISSING_EMBEDDING_RULES = ("pool_min", "fixed")
_INF = math.inf


@dataclass(frozen=True, slots=True)
class RankParams:
    """Every knob of the ranking; the [rank] section of the config maps onto these names 1:1."""

    # Most the graph can add to or take from a candidate's score (score units; the embedding
    # part spans [-1, 1]). 0 turns the graph off: pure embedding order.
    rank_gravity_weight: float = 2.0
    # Decayed evidence mass pos + neg (weight units: one accepted play = 1) at which the
    # confidence in an edge reaches 0.5 (confidence = mass / (mass + this)).
    rank_confidence_half_evidence: float = 2.0
    # Acceptance share pos / (pos + neg) that counts as neutral (gravity 0): above it lifts a
    # candidate, below it (transitions listeners skip away from) pushes it down. In (0, 1).
    rank_neutral_acceptance: float = 0.5
    # Most recent distinct tracks of session_history used as extra seeds (tracks); 0 = current only.
    rank_history_seeds: int = 5
    # Weight of the most recent history seed relative to the current track's 1.0 (0..1).
    rank_history_weight: float = 0.5
    # Each older history seed weighs this times the next newer one (recency discount, 0..1).
    rank_history_decay: float = 0.7
    # Pixie's multi-hit booster (sum of sqrt)^2 over seeds; false: a plain weighted sum.
    rank_multi_hit_boost: bool = True
    # How much multi-step credit (c kept within a few tracks after the current one, not right
    # after it) counts beside direct verdicts on current->c, in [0, 1]. History seeds always use
    # all of it: for them the candidate is several steps ahead anyway.
    rank_cooccurrence_weight: float = 0.25
    # Lowest embedding score the map produces: scores are clamped to [this, 1] and mapped linearly
    # onto [-1, 1]. -1 for cosine similarity, 0 for scores in 0..1.
    rank_embedding_floor: float = -1.0
    # Rule for a candidate without a finite embedding score: "pool_min" (the lowest known score of
    # the pool) or "fixed" (rank_missing_embedding_score).
    rank_missing_embedding: str = "pool_min"
    # Embedding score used by the "fixed" rule, and by "pool_min" when the pool knows no score
    # (same units as the map's scores).
    rank_missing_embedding_score: float = 0.0
    # Session neighbours (gravityd/core/session_index.py): weight of their vote, divided by the
    # pool's highest, beside the graph's (0 turns it off).
    rank_session_weight: float = 1.0
    # Most recent indexed sessions sharing a track with the current session that are compared.
    rank_session_sample: int = 150
    # Most similar of them that vote.
    rank_session_neighbours: int = 100
    # The session's track i steps back weighs exp(-i / this) in the similarity (steps).
    rank_session_position_decay: float = 2.0
    # A neighbour s sessions older than the newest weighs exp(-s / this); 0 turns recency off.
    rank_session_recency: float = 0.0
    # A neighbour's track d steps from its match votes exp(-d / this) (steps).
    rank_session_item_decay: float = 2.0
    # A vote for c is multiplied by 1 + this * log(sessions / sessions holding c) (0: off).
    rank_session_idf: float = 1.0
    # A neighbour's vote for a track it played *before* its match counts this much (0..1; 1:
    # both sides alike, as STAN; 0: successors only).
    rank_session_before: float = 1.0
    # The learned transition model (gravityd/core/transitions.py) as the prior of the acceptance
    # on current->c: it stands in for rank_confidence_half_evidence of pseudo-evidence, so an edge
    # without evidence gets the model's guess and a well-known edge its own record. This scales
    # the prior's distance from rank_neutral_acceptance (0 turns the prior off, 1 takes it whole).
    rank_model_weight: float = 1.0
    # Weight of the most recent history track's out-vector beside the current track's 1.0 in the
    # prior's query (older ones decay by rank_history_decay; 0: the current track only).
    rank_model_history: float = 0.5
    # Exploration (UCB): the acceptance estimate is raised by this times its standard deviation,
    # sqrt(a (1 - a) / (evidence + rank_confidence_half_evidence + 1)), so a candidate whose
    # prior is good but untried gets tried; 0 turns it off.
    rank_explore: float = 0.0

    def __post_init__(self) -> None:
        check_fields(self)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError("<field>: reason") for the first out-of-range value."""
        if not 0.0 <= self.rank_gravity_weight <= 10.0:
            raise ValueError("rank_gravity_weight: must be between 0 and 10")
        if self.rank_confidence_half_evidence <= 0.0:
            raise ValueError("rank_confidence_half_evidence: must be > 0")
        if not 0.0 < self.rank_neutral_acceptance < 1.0:
            raise ValueError("rank_neutral_acceptance: must be strictly between 0 and 1")
        if not 0 <= self.rank_history_seeds <= 100:
            raise ValueError("rank_history_seeds: must be between 0 and 100")
        if not 0.0 <= self.rank_history_weight <= 1.0:
            raise ValueError("rank_history_weight: must be between 0 and 1")
        if not 0.0 <= self.rank_history_decay <= 1.0:
            raise ValueError("rank_history_decay: must be between 0 and 1")
        if not 0.0 <= self.rank_cooccurrence_weight <= 1.0:
            raise ValueError("rank_cooccurrence_weight: must be between 0 and 1")
        if not -1.0 <= self.rank_embedding_floor < 1.0:
            raise ValueError("rank_embedding_floor: must be >= -1 and < 1")
        if not 0.0 <= self.rank_session_weight <= 10.0:
            raise ValueError("rank_session_weight: must be between 0 and 10")
        if not 1 <= self.rank_session_sample <= 100_000:
            raise ValueError("rank_session_sample: must be between 1 and 100000")
        if not 1 <= self.rank_session_neighbours <= 100_000:
            raise ValueError("rank_session_neighbours: must be between 1 and 100000")
        for name in ("rank_session_position_decay", "rank_session_item_decay"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"{name}: must be > 0")
        if self.rank_session_recency < 0.0:
            raise ValueError("rank_session_recency: must be >= 0")
        if not 0.0 <= self.rank_session_before <= 1.0:
            raise ValueError("rank_session_before: must be between 0 and 1")
        if self.rank_session_idf < 0.0:
            raise ValueError("rank_session_idf: must be >= 0")
        if not 0.0 <= self.rank_model_weight <= 1.0:
            raise ValueError("rank_model_weight: must be between 0 and 1")
        if not 0.0 <= self.rank_model_history <= 1.0:
            raise ValueError("rank_model_history: must be between 0 and 1")
        if not 0.0 <= self.rank_explore <= 10.0:
            raise ValueError("rank_explore: must be between 0 and 10")
        if self.rank_missing_embedding not in MISSING_EMBEDDING_RULES:
            raise ValueError(
                "rank_missing_embedding: must be one of " + ", ".join(MISSING_EMBEDDING_RULES)
            )


DEFAULT_RANK_PARAMS = RankParams()


def _slow_number(v: Any) -> float | None:
    """A finite float from a non-float number (int, numpy scalar, Decimal...), else None."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return None
    try:
        v = float(v)
    except (OverflowError, ValueError, TypeError):
        return None
    return v if -_INF < v < _INF else None


def rank_pool(
    current_track_id: str,
    candidate_track_ids: Iterable[str],
    embeddings_scores: Mapping[str, Any] | None,
    session_history: Iterable[str] | None = None,
    *,
    graph: GravityGraph | None,
    limit: int | None = None,
    params: RankParams = DEFAULT_RANK_PARAMS,
    now: float | None = None,
    sessions: SessionIndex | None = None,
    model: TransitionModel | None = None,
) -> list[dict[str, Any]]:
    """Rank the candidates best first; see the module docstring for the formula.

    ``graph`` None ranks on an empty graph (pure embedding order). ``now`` (Unix seconds, default
    the wall clock) is the time the evidence is decayed to. ``limit`` keeps the best `limit`
    (None: all; < 1: none). Each result: ``track_id``, ``score``, ``embedding_score`` (the raw
    score used, after the missing-score rule), ``embedding_known``, ``gravity_score`` (G, in
    [-1, 1]), ``confidence`` (of the current->candidate edge, in [0, 1)) and ``evidence``:
    decayed ``pos``/``neg`` and traversal count ``n`` of current->candidate, and ``seeds_hit``,
    how many history seeds have verdict evidence on the candidate. All floats are finite.
    ``sessions``: the fold's session index (None: no session votes); ``model``: the fold's
    learned transition model (None: no learned prior).
    """
    if limit is not None and limit < 1:
        return []
    p = params
    if session_history is None:
        history: list[str] | tuple[str, ...] = ()
    elif isinstance(session_history, (list, tuple)):
        history = session_history
    else:
        history = list(session_history)

    # Deduplicate (first occurrence wins, order kept) and drop the current track and the history.
    pool = dict.fromkeys(candidate_track_ids)
    pool.pop(current_track_id, None)
    for h in history:
        pool.pop(h, None)
    if not pool:
        return []

    # ---- graph votes: only candidates some seed has an edge to get an entry.
    # cur[c] = [x0, conf0, pos_stored, neg_stored, n]; hist[c] = [sqrt_sum, lin_pos, neg_sum, hits]
    cur: dict[str, list[Any]] = {}
    hist: dict[str, list[float]] = {}
    f = 1.0
    if graph is not None:
        out_edges = graph.out_edges
        f = graph.decay_factor(now)
        k = p.rank_confidence_half_evidence
        a0 = p.rank_neutral_acceptance
        up = 1.0 / (1.0 - a0)
        down = 1.0 / a0
        nbrs = out_edges(current_track_id)
        lam = p.rank_cooccurrence_weight
        wm = p.rank_model_weight
        beta = p.rank_explore
        priors: Mapping[str, float] = {}
        if model is not None and wm > 0.0:
            priors = model.priors(_model_sources(current_track_id, history, p), list(pool))
        if priors or beta > 0.0:
            # Every candidate gets a verdict: the posterior acceptance with the learned prior
            # (or neutral) as its pseudo-evidence, plus the exploration bonus.
            get_edge = nbrs.get if nbrs else _no_edge
            get_prior = priors.get
            for c in pool:
                e = get_edge(c)
                if e is not None:
                    good = e["acc"] + lam * (e["pos"] - e["acc"])
                    m = good + e["neg"]
                    mass = m * f if m > 0.0 else 0.0
                    if not mass < _INF:
                        mass = 1.7976931348623157e308
                    conf = mass / (mass + k)
                    a_dir = good / m if m > 0.0 else a0
                    stats = [e["pos"], e["neg"], e["n"]]
                else:
                    mass = conf = 0.0
                    a_dir = a0
                    stats = [0.0, 0.0, 0]
                pr = get_prior(c)
                prior = a0 if pr is None else a0 + wm * (pr - a0)
                a_hat = conf * a_dir + (1.0 - conf) * prior
                if beta > 0.0:
                    a_hat += beta * math.sqrt(a_hat * (1.0 - a_hat) / (mass + k + 1.0))
                    if a_hat > 1.0:
                        a_hat = 1.0
                a = a_hat - a0
                x = a * (up if a >= 0.0 else down)
                x = 1.0 if x > 1.0 else (-1.0 if x < -1.0 else x)
                if e is not None or x != 0.0:
                    cur[c] = [x, conf, *stats]
        elif nbrs:
            if len(nbrs) <= len(pool):
                items = [(v, e) for v, e in nbrs.items() if v in pool]
            else:
                items = [(c, nbrs[c]) for c in pool if c in nbrs]
            for c, e in items:
                # Direct verdicts (kept / skipped right after the current track) weigh fully;
                # multi-step credit (c kept a few tracks later) counts at lam.
                good = e["acc"] + lam * (e["pos"] - e["acc"])
                m = good + e["neg"]
                if m > 0.0:
                    mass = m * f
                    conf = mass / (mass + k) if mass < _INF else 1.0
                    a = good / m - a0
                    x = conf * a * (up if a >= 0.0 else down)
                else:
                    conf = x = 0.0
                cur[c] = [x, conf, e["pos"], e["neg"], e["n"]]
        if p.rank_history_seeds and p.rank_history_weight > 0.0 and history:
            boost = p.rank_multi_hit_boost
            sqrt = math.sqrt
            r = p.rank_history_weight
            taken = {current_track_id}
            for h in reversed(history):
                if h in taken:
                    continue
                taken.add(h)
                nbrs = out_edges(h)
                if nbrs and r > 0.0:
                    if len(nbrs) <= len(pool):
                        items = [(v, e) for v, e in nbrs.items() if v in pool]
                    else:
                        items = [(c, nbrs[c]) for c in pool if c in nbrs]
                    for c, e in items:
                        pos = e["pos"]
                        m = pos + e["neg"]
                        if m <= 0.0:
                            continue
                        mass = m * f
                        conf = mass / (mass + k) if mass < _INF else 1.0
                        a = pos / m - a0
                        x = r * conf * a * (up if a >= 0.0 else down)
                        acc = hist.get(c)
                        if acc is None:
                            acc = hist[c] = [0.0, 0.0, 0.0, 0]
                        if x > 0.0:
                            if boost:
                                acc[0] += sqrt(x)
                            else:
                                acc[1] += x
                        else:
                            acc[2] -= x
                        acc[3] += 1
                if len(taken) > p.rank_history_seeds:
                    break
                r *= p.rank_history_decay

    # ---- combined gravity per candidate with any evidence.
    grav: dict[str, float] = {}
    for c, rec in cur.items():
        if c not in hist:
            grav[c] = rec[0]
    if hist:
        sqrt = math.sqrt
        for c, acc in hist.items():
            rec = cur.get(c)
            x0, conf0 = (rec[0], rec[1]) if rec is not None else (0.0, 0.0)
            # The history speaks where the current track's own edge knows little: what
            # listeners did right after this very track outweighs what co-occurs in sessions.
            h = acc[0] * acc[0] + acc[1] - acc[2]
            h = 1.0 if h > 1.0 else (-1.0 if h < -1.0 else h)
            g = x0 + (1.0 - conf0) * h
            grav[c] = 1.0 if g > 1.0 else (-1.0 if g < -1.0 else g)

    # ---- session neighbours: votes of the indexed sessions most like this one, in [0, 1].
    votes: dict[str, float] = {}
    if sessions is not None and p.rank_session_weight > 0.0 and sessions.enabled:
        votes = session_scores(sessions, [*history, current_track_id], pool, session_query(p))
        if votes:
            top = max(votes.values())
            votes = {c: v / top for c, v in votes.items()} if top > 0.0 else {}
    vw = p.rank_session_weight

    # ---- embedding part.
    get = embeddings_scores.get if embeddings_scores else None
    raws: list[float | None] = []
    lowest = _INF
    for c in pool:
        v = get(c) if get is not None else None
        if v is not None:
            if type(v) is float:
                if not -_INF < v < _INF:
                    v = None
            else:
                v = _slow_number(v)
            if v is not None and v < lowest:
                lowest = v
        raws.append(v)
    if p.rank_missing_embedding == "pool_min" and lowest < _INF:
        fill = lowest
    else:
        fill = p.rank_missing_embedding_score

    floor = p.rank_embedding_floor
    scale = 2.0 / (1.0 - floor)
    identity = floor == -1.0
    weight = p.rank_gravity_weight
    keys = []
    scores = []
    for i, (c, raw) in enumerate(zip(pool, raws, strict=True)):
        missing = raw is None
        if missing:
            raw = fill
        e = 1.0 if raw > 1.0 else (floor if raw < floor else raw)
        if not identity:
            e = (e - floor) * scale - 1.0
        g = grav.get(c)
        s = e if g is None else e + weight * g
        if votes:
            v = votes.get(c, 0.0)
            if v:
                # Gated like the history: sessions that kept c speak where the current track's
                # own edge knows little (they never saw the skips it records).
                rec = cur.get(c)
                s += vw * v * (1.0 - rec[1] if rec is not None else 1.0)
        scores.append(s)
        keys.append((-s, -raw, missing, c, i))
    keys.sort()
    if limit is not None:
        del keys[limit:]

    out = []
    for _, neg_raw, missing, c, i in keys:
        rec = cur.get(c)
        acc = hist.get(c)
        if rec is None:
            conf, pos, neg, n = 0.0, 0.0, 0.0, 0
        else:
            conf, pos, neg, n = rec[1], rec[2] * f, rec[3] * f, rec[4]
            if not pos < _INF:
                pos = 1.7976931348623157e308
            if not neg < _INF:
                neg = 1.7976931348623157e308
        out.append(
            {
                "track_id": c,
                "score": scores[i],
                "embedding_score": -neg_raw,
                "embedding_known": not missing,
                "gravity_score": grav.get(c, 0.0),
                "confidence": conf,
                "evidence": {
                    "pos": pos,
                    "neg": neg,
                    "n": n,
                    "seeds_hit": 0 if acc is None else acc[3],
                },
            }
        )
    return out


def _no_edge(_: str) -> None:
    return None


def _model_sources(current: str, history: Sequence[str], p: RankParams) -> list[tuple[str, float]]:
    """The tracks whose out-vectors make the prior's query: the current track (weight 1) and
    the most recent distinct history tracks (rank_model_history, decayed like the seeds)."""
    out = [(current, 1.0)]
    r = p.rank_model_history
    if r > 0.0 and history:
        seen = {current}
        for h in reversed(history):
            if h in seen:
                continue
            seen.add(h)
            out.append((h, r))
            if len(out) > p.rank_history_seeds:
                break
            r *= p.rank_history_decay
    return out


def session_query(p: RankParams) -> SessionQuery:
    """The session-neighbour search the [rank] settings describe."""
    return SessionQuery(
        sample=p.rank_session_sample,
        neighbours=p.rank_session_neighbours,
        position_decay=p.rank_session_position_decay,
        recency=p.rank_session_recency,
        item_decay=p.rank_session_item_decay,
        idf=p.rank_session_idf,
        before=p.rank_session_before,
    )


# --------------------------------------------------------------------------- POST /rank body


class RankRequest(NamedTuple):
    """A validated POST /rank body; ``rank_pool(**req._asdict(), graph=...)`` ranks it."""

    current_track_id: str
    candidate_track_ids: list[str]
    embeddings_scores: dict[str, float]
    session_history: list[str]
    limit: int | None


def _finite_number(v: Any) -> float | None:
    if type(v) is float:
        return v if -_INF < v < _INF else None
    if type(v) is int:
        try:
            v = float(v)
        except OverflowError:
            return None
        return v if -_INF < v < _INF else None
    return None


def validate_rank_request(obj: Any, max_pool: int, max_history: int | None = None) -> RankRequest:
    """Check a decoded POST /rank body; raise EventError(code, message, field) at the first fault.

    Track ids (current, candidates, history and the keys of embeddings_scores) must be UUIDs and
    come back canonical (lower case). ``session_history`` may be absent or null (no history);
    ``embeddings_scores`` is required but may miss ids. ``max_history`` defaults to 10 * max_pool.
    Codes: not_an_object, missing_field, invalid_current_track_id, invalid_candidate_track_ids
    (not a list), empty_pool, pool_too_large, invalid_candidate_track_id,
    invalid_embeddings_scores (not an object, or a key that is not a UUID),
    invalid_embedding_score (not a finite number; booleans are not numbers),
    invalid_session_history (not a list, or an element that is not a UUID), history_too_long,
    invalid_limit (not an integer >= 1).
    """
    if not isinstance(obj, dict):
        raise EventError("not_an_object", "the body must be a JSON object")
    if max_history is None:
        max_history = 10 * max_pool

    raw = obj.get("current_track_id")
    if raw is None:
        raise EventError("missing_field", "current_track_id is required", "current_track_id")
    current = canonical_uuid(raw)
    if current is None:
        raise EventError(
            "invalid_current_track_id", "current_track_id must be a UUID", "current_track_id"
        )

    field = "candidate_track_ids"
    raw = obj.get(field)
    if raw is None:
        raise EventError("missing_field", f"{field} is required", field)
    if not isinstance(raw, list):
        raise EventError("invalid_candidate_track_ids", f"{field} must be a JSON array", field)
    if not raw:
        raise EventError("empty_pool", f"{field} must not be empty", field)
    if len(raw) > max_pool:
        raise EventError(
            "pool_too_large",
            f"{field} holds {len(raw)} ids, more than the limit of {max_pool}",
            field,
        )
    candidates = []
    for i, v in enumerate(raw):
        c = canonical_uuid(v)
        if c is None:
            raise EventError("invalid_candidate_track_id", f"{field}[{i}] must be a UUID", field)
        candidates.append(c)

    field = "embeddings_scores"
    raw = obj.get(field)
    if raw is None:
        raise EventError("missing_field", f"{field} is required (it may be empty)", field)
    if not isinstance(raw, dict):
        raise EventError(
            "invalid_embeddings_scores", f"{field} must be a JSON object of id: number", field
        )
    scores: dict[str, float] = {}
    for key, v in raw.items():
        c = canonical_uuid(key)
        if c is None:
            raise EventError(
                "invalid_embeddings_scores", f"{field} key {str(key)[:40]!r} is not a UUID", field
            )
        s = _finite_number(v)
        if s is None:
            raise EventError(
                "invalid_embedding_score", f"{field}[{c}] must be a finite number", field
            )
        scores[c] = s

    field = "session_history"
    raw = obj.get(field)
    history: list[str] = []
    if raw is not None:
        if not isinstance(raw, list):
            raise EventError("invalid_session_history", f"{field} must be a JSON array", field)
        if len(raw) > max_history:
            raise EventError(
                "history_too_long", f"{field} holds more than {max_history} ids", field
            )
        for i, v in enumerate(raw):
            h = canonical_uuid(v)
            if h is None:
                raise EventError("invalid_session_history", f"{field}[{i}] must be a UUID", field)
            history.append(h)

    raw = obj.get("limit")
    limit = None
    if raw is not None:
        if type(raw) is float and raw.is_integer():
            raw = int(raw)
        if type(raw) is not int or raw < 1:
            raise EventError("invalid_limit", "limit must be an integer >= 1", "limit")
        limit = raw

    return RankRequest(current, candidates, scores, history, limit)
