"""The fold's knobs: the [graph] section of the config, one field per key."""

from __future__ import annotations

from dataclasses import dataclass

from gravityd.core.checks import check_fields

__all__ = ["FoldParams"]


@dataclass(frozen=True, slots=True)
class FoldParams:
    """Every knob of the fold; the [graph] section of the config maps onto these names 1:1."""

    # Seconds of silence after which a session starts fresh (no edge across the gap).
    session_timeout_s: float = 1800.0
    # Half-life of evidence in days; <= 0 disables decay.
    half_life_days: float = 30.0
    # Weight added to A->B when B starts playing (a traversal, usually no verdict).
    weight_play_start: float = 0.0
    # Weight added to A->B when B plays for 10 seconds (accepted).
    weight_play_10s: float = 1.0
    # Weight added to A->B when B is liked (loved).
    weight_like: float = 2.0
    # Penalty subtracted from A->B for a skip of B at 0 ms; graded down to 0 over skip_grade_ms.
    skip_penalty: float = 1.0
    # Skip grading window in ms: penalty = skip_penalty * max(0, 1 - elapsed_ms / skip_grade_ms).
    skip_grade_ms: float = 30000.0
    # elapsed_ms assumed for a skip that does not report it, in ms (15000 = half the penalty).
    skip_default_elapsed_ms: float = 15000.0
    # A skip earlier than this (ms) passes through the track: A, B(skipped), C credits A->C.
    # 0 turns it off.
    skip_through_ms: float = 5000.0
    # Positive verdicts credit this many earlier tracks of the session (steps; 1 = successor only).
    credit_window: int = 10
    # Credit at distance d is weight * d ** -distance_discount_power (1.0 gives 1/d, SR's rule;
    # 0.5, 1/sqrt(d), predicts real radio playlists better: docs/evaluation.md).
    distance_discount_power: float = 0.5
    # Out-lanes (warp lanes, the next-track list) also count what flows the other way: a lane
    # a->b gains lanes_backward_credit * pos(b->a), the positive evidence of b->a (radio
    # playlists that go b->a also tend to go a->b: docs/model.md, "Warp lanes"). Read-time only; a
    # transition listeners reject directly stays rejected. 0 turns it off.
    lanes_backward_credit: float = 0.6
    # Out-lanes (warp lanes, the next-track list) also count two hops: a lane a->c gains
    # lanes_two_hop * sum over a's strongest lanes a->b of (w(a->b) / w_top(a)) * (w(b->c) /
    # w_top(b)) * w_top(a), so a track with few lanes of its own borrows from where its
    # successors lead. Read-time only: the stored edges do not change. 0 turns it off.
    lanes_two_hop: float = 0.15
    # How many of a's strongest out-lanes, and of each of theirs, the two-hop term visits.
    lanes_two_hop_fanout: int = 20
    # Out-edges kept per track, strongest decayed |weight| first (K); a track is trimmed back to K
    # when it would exceed 2K, and by the maintenance sweep.
    max_edges_per_track: int = 100
    # Edges whose decayed |weight| is below this are dropped when trimmed or swept (weight units).
    epsilon: float = 0.01
    # A maintenance step runs when the log id crosses a multiple of this (events).
    maintenance_every: int = 20_000
    # Slices of tracks and sessions: each maintenance step sweeps the next one, so a full pass
    # takes maintenance_every * maintenance_parts events.
    maintenance_parts: int = 512
    # Forward-decay exponent (in half-lives since t0) past which stored values are rebased.
    rebase_exponent: float = 32.0
    # Session neighbours (gravityd/core/session_index.py): each track remembers the last this
    # many sessions that kept it; 0 turns the index (and the ranking's session votes) off.
    session_index_per_track: int = 100
    # Tracks per indexed session; a longer session goes on as a new indexed one.
    session_index_length: int = 20
    # Indexed sessions kept in all, the oldest forgotten first.
    session_index_sessions: int = 100_000
    # The learned transition model (gravityd/core/transitions.py): out- and in-vector size per
    # track; 0 turns the model (and the ranking's learned prior) off.
    model_dims: int = 32
    # Full-batch Adam steps per training.
    model_epochs: int = 100
    # Adam's step size.
    model_learning_rate: float = 0.05
    # L2 penalty on the vectors.
    model_l2: float = 1e-4
    # Random tracks joined to each edge with kept evidence as "not chosen" (label 0).
    model_negatives: int = 10
    # Weight of each such random track relative to the edge's kept evidence (capped at 1).
    model_negative_weight: float = 0.5
    # Share of them drawn like the targets of kept edges (popular tracks more often), the rest
    # uniformly from the tracks.
    model_negative_popularity: float = 0.8
    # Seed of the training's random numbers (initial vectors, random tracks).
    model_seed: int = 0
    # A daemon retrains the model in the background when the fold moved and this many seconds
    # passed since the last training (0: never in a daemon; `gravityd build` trains it anyway).
    model_interval_s: float = 300.0

    def __post_init__(self) -> None:
        check_fields(self)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError("<field>: reason") for the first out-of-range value."""
        positive = ("session_timeout_s", "skip_grade_ms", "rebase_exponent")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be > 0")
        non_negative = (
            "weight_play_start",
            "weight_play_10s",
            "weight_like",
            "skip_penalty",
            "skip_default_elapsed_ms",
            "skip_through_ms",
            "distance_discount_power",
            "lanes_backward_credit",
            "lanes_two_hop",
            "epsilon",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0")
        if not 1 <= self.credit_window <= 100:
            raise ValueError("credit_window: must be between 1 and 100")
        if self.max_edges_per_track < 1:
            raise ValueError("max_edges_per_track: must be >= 1")
        if not 1 <= self.lanes_two_hop_fanout <= 100:
            raise ValueError("lanes_two_hop_fanout: must be between 1 and 100")
        if self.maintenance_every < 1:
            raise ValueError("maintenance_every: must be >= 1")
        if not 1 <= self.maintenance_parts <= 65536:
            raise ValueError("maintenance_parts: must be between 1 and 65536")
        if not 0 <= self.session_index_per_track <= 10_000:
            raise ValueError("session_index_per_track: must be between 0 and 10000")
        if not 1 <= self.session_index_length <= 1000:
            raise ValueError("session_index_length: must be between 1 and 1000")
        if self.session_index_sessions < 1:
            raise ValueError("session_index_sessions: must be >= 1")
        if not 0 <= self.model_dims <= 256:
            raise ValueError("model_dims: must be between 0 and 256")
        if not 1 <= self.model_epochs <= 10_000:
            raise ValueError("model_epochs: must be between 1 and 10000")
        if not 0.0 < self.model_learning_rate <= 10.0:
            raise ValueError("model_learning_rate: must be > 0 and <= 10")
        if not 0.0 <= self.model_l2 <= 1.0:
            raise ValueError("model_l2: must be between 0 and 1")
        if not 0 <= self.model_negatives <= 100:
            raise ValueError("model_negatives: must be between 0 and 100")
        if not 0.0 <= self.model_negative_weight <= 10.0:
            raise ValueError("model_negative_weight: must be between 0 and 10")
        if not 0.0 <= self.model_negative_popularity <= 1.0:
            raise ValueError("model_negative_popularity: must be between 0 and 1")
        if self.model_seed < 0:
            raise ValueError("model_seed: must be >= 0")
        if self.model_interval_s < 0:
            raise ValueError("model_interval_s: must be >= 0")
        if self.rebase_exponent > 512:
            raise ValueError("rebase_exponent: must be <= 512 (2**1024 overflows a float)")
