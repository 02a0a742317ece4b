"""The JetStream backend's series on /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class JetStreamMetrics:
    """What the backend adds to /metrics: publishes, their latency, doubts, the dedup index,
    failures and the requests asked again at open."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry or CollectorRegistry(auto_describe=True)
        self.messages = Counter(
            "gravityd_js_messages_published", "Messages acknowledged by JetStream.", registry=r
        )
        self.publish_seconds = Histogram(
            "gravityd_js_publish_seconds",
            "From the first publish of a commit to its last acknowledgement.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.in_doubt = Gauge(
            "gravityd_js_in_doubt_messages",
            "Messages whose publish got no answer, to be published again (same message id).",
            registry=r,
        )
        self.republished = Counter(
            "gravityd_js_republished",
            "Messages published again, same message id: in-doubt ones (stored, duplicate,"
            " expired) and unanswered ones inside the ack timeout (retry).",
            ["outcome"],
            registry=r,
        )
        self.dedup_ids = Gauge(
            "gravityd_js_dedup_ids",
            "Client event_ids in the writer's duplicate index.",
            registry=r,
        )
        self.tail_messages = Counter(
            "gravityd_js_tail_messages",
            "Messages of other writers read into the duplicate index.",
            registry=r,
        )
        self.reads = Counter(
            "gravityd_js_read_requests", "Direct-get requests of read_after.", registry=r
        )
        self.errors = Counter(
            "gravityd_js_errors",
            "JetStream requests that failed, by stage.",
            ["stage"],
            registry=r,
        )
        self.open_retries = Counter(
            "gravityd_js_open_retries",
            "JetStream requests asked again while opening the log because the cluster was not"
            " ready (a timeout, no responders, a leader being elected), by stage.",
            ["stage"],
            registry=r,
        )
