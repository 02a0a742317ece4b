"""Prometheus metrics: one registry per daemon so tests can run several side by side."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

# Every counter and histogram would also export a `<name>_created` gauge (its creation time),
# doubling the exposition for nothing a dashboard or an alert reads. The switch is process-wide.
disable_created_metrics()

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)


class Metrics:
    """Everything an on-call engineer graphs: ingest, fold lag, graph size, snapshots, latency."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.events_accepted = Counter(
            "gravityd_events_accepted", "Events newly committed to the log.", registry=r
        )
        self.events_duplicate = Counter(
            "gravityd_events_duplicate", "Events whose event_id was already in the log.", registry=r
        )
        self.events_rejected = Counter(
            "gravityd_events_rejected",
            "Events refused at validation, by reason.",
            ["reason"],
            registry=r,
        )
        self.commit_batch = Histogram(
            "gravityd_commit_batch_events",
            "Events per group commit.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.commit_seconds = Histogram(
            "gravityd_commit_seconds",
            "Duration of one group commit.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_errors = Counter(
            "gravityd_commit_errors",
            "Group commits that failed (disk full, locked...).",
            registry=r,
        )
        self.request_seconds = Histogram(
            "gravityd_request_seconds",
            "Request latency by route, method and status (its _count counts requests).",
            ["route", "method", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.requests_refused = Counter(
            "gravityd_requests_refused",
            "Requests refused before their handler, by reason (rate_limited, overloaded...).",
            ["reason"],
            registry=r,
        )
        self.loop_lag = Histogram(
            "gravityd_event_loop_lag_seconds",
            "How late the event loop wakes a 100 ms timer: time requests wait before a handler.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.fold_events = Counter(
            "gravityd_fold_events", "Events folded into the graph.", registry=r
        )
        self.fold_errors = Counter("gravityd_fold_errors", "Fold batches that raised.", registry=r)
        self.fold_skipped = Counter(
            "gravityd_fold_skipped_events",
            "Stored events the fold skipped as unreadable, by the field at fault.",
            ["problem"],
            registry=r,
        )
        self.fold_lag_events = Gauge(
            "gravityd_fold_lag_events", "Committed events not yet folded.", registry=r
        )
        self.fold_lag_seconds = Gauge(
            "gravityd_fold_lag_seconds",
            "Age of the oldest committed event not yet folded.",
            registry=r,
        )
        # The kept lanes (docs/reads.md): how far behind the fold they are, how much waits.
        self.lanes_lag_seconds = Gauge(
            "gravityd_lanes_lag_seconds",
            "Age of the oldest fold touch whose lanes are not yet refreshed.",
            registry=r,
        )
        self.lanes_dirty = Gauge(
            "gravityd_lanes_dirty_tracks", "Tracks whose kept lanes wait for a refresh.", registry=r
        )
        self.lanes_cursor = Gauge(
            "gravityd_lanes_cursor", "Log position every kept lane reflects.", registry=r
        )
        self.lanes_refreshed = Gauge(
            "gravityd_lanes_refreshed", "Track lanes recomputed off the request path.", registry=r
        )
        self.lanes_read_rebuilds = Gauge(
            "gravityd_lanes_read_rebuilds",
            "Lanes computed while answering a request (kept at 0 by design).",
            registry=r,
        )
        self.lanes_fold_waits = Counter(
            "gravityd_lanes_fold_waits",
            "Times the fold paused because the lanes lagged past lanes_max_lag_ms.",
            registry=r,
        )
        self.galaxies_seconds = Histogram(
            "gravityd_galaxies_seconds",
            "Duration of one galaxies computation (in the worker process).",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300),
            registry=r,
        )
        self.galaxies = Gauge("gravityd_galaxies", "Galaxies served now.", registry=r)
        self.galaxies_cursor = Gauge(
            "gravityd_galaxies_cursor",
            "Log position the served galaxies were computed at.",
            registry=r,
        )
        self.galaxies_errors = Counter(
            "gravityd_galaxies_errors", "Galaxies computations that failed.", registry=r
        )
        self.graph_nodes = Gauge("gravityd_graph_nodes", "Tracks in the graph.", registry=r)
        self.graph_edges = Gauge("gravityd_graph_edges", "Edges in the graph.", registry=r)
        self.graph_sessions = Gauge(
            "gravityd_graph_sessions", "Open listening sessions held by the fold.", registry=r
        )
        self.model_tracks = Gauge(
            "gravityd_model_tracks",
            "Tracks with vectors in the learned transition model.",
            registry=r,
        )
        self.model_cursor = Gauge(
            "gravityd_model_cursor",
            "Cursor the learned transition model was trained at (compare gravityd_cursor).",
            registry=r,
        )
        self.model_seconds = Histogram(
            "gravityd_model_seconds",
            "Duration of one transition model training (in the worker process).",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300),
            registry=r,
        )
        self.model_errors = Counter(
            "gravityd_model_errors", "Transition model trainings that failed.", registry=r
        )
        self.cursor = Gauge("gravityd_cursor", "Id of the last event folded.", registry=r)
        self.log_last_id = Gauge(
            "gravityd_log_last_id", "Id of the last committed event.", registry=r
        )
        self.ready = Gauge("gravityd_ready", "1 once the graph has caught up at start.", registry=r)
        self.snapshot_age = Gauge(
            "gravityd_snapshot_age_seconds",
            "Seconds since the newest snapshot was written.",
            registry=r,
        )
        self.blocked_tracks = Gauge(
            "gravityd_blocked_tracks",
            "Tracks taken down (PUT /admin/tracks/{id}/block) as this process knows them.",
            registry=r,
        )
        self.snapshot_seconds = Histogram(
            "gravityd_snapshot_seconds",
            "Duration of a snapshot write.",
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60),
            registry=r,
        )
        self.snapshot_errors = Counter(
            "gravityd_snapshot_errors", "Snapshot writes that failed.", registry=r
        )

        self.info = Gauge(
            "gravityd_info",
            "1, labelled with this process's role and its worker index under a supervisor.",
            ["role", "worker"],
            registry=r,
        )
        self.snapshotter = Gauge(
            "gravityd_snapshotter",
            "1 while this process holds the snapshotter lease (writes snapshots).",
            registry=r,
        )
        self.read_waits = Counter(
            "gravityd_read_waits",
            "Reads with a min_cursor ahead of the graph, by outcome (caught_up, not_caught_up).",
            ["outcome"],
            registry=r,
        )
        self.worker_starts = Gauge(
            "gravityd_worker_starts",
            "How many times the supervisor has started this worker slot (1 = never restarted).",
            registry=r,
        )
        self.radio_transitions = Counter(
            "gravityd_radio_transitions",
            "Radio picks by arm (the radio_next context; 'none' without one, 'other' past the "
            "first report_metric_arms arms seen) and verdict (skipped, kept, unresolved).",
            ["context", "verdict"],
            registry=r,
        )
        self._radio_labels: dict[str | None, str] = {}

    def count_radio(self, tally: Mapping[tuple[str | None, str], int], max_arms: int) -> None:
        """Add a fold's verdicts; contexts come from clients, so only the first `max_arms`
        distinct ones get a label of their own (bounded series), the rest count as 'other'."""
        labels = self._radio_labels
        for (context, verdict), n in tally.items():
            label = labels.get(context)
            if label is None:
                if len(labels) < max_arms:
                    label = labels[context] = "none" if context is None else context
                else:
                    label = "other"
            self.radio_transitions.labels(label, verdict).inc(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)
