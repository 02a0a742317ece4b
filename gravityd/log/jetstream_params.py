"""The [jetstream] settings: where the JetStream log and its object store live, and how to reach
them. Kept apart from gravityd.log.jetstream so that loading the config never imports nats-py.

Keys carry a `js_` prefix because keys are unique across sections (`GRAVITYD_JS_REPLICAS`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gravityd.core.checks import check_fields

# Positions are sequence * 2**13 + slot: a message holds at most this many events.
MAX_MESSAGE_EVENTS = 8192
_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,255}\Z")
_SUBJECT_RE = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\Z")


@dataclass(frozen=True)
class JetStreamParams:
    """Every knob of the JetStream backend; the [jetstream] section maps onto these 1:1."""

    # Stream holding the event log (created by the first writer if missing).
    js_stream: str = "GRAVITYD_EVENTS"
    # Subject the writers publish to; the stream must capture it (and nothing else is read).
    js_subject: str = "gravityd.events"
    # Copies of the stream (and of the snapshot bucket): a 202 waits for a quorum of them.
    js_replicas: int = 3
    # "file" (survives a restart of every node) or "memory".
    js_storage: str = "file"
    # Seconds JetStream remembers a message id: a writer's retry of an unacknowledged publish
    # inside it is stored once. Also how long writers remember client event_ids.
    js_duplicate_window_s: float = 120.0
    # Events older than this are dropped from the stream (days); 0 keeps them forever.
    js_max_age_days: float = 0.0
    # Bytes the stream may hold before the oldest messages are dropped; 0 means no limit.
    js_max_bytes: int = 0
    # Object-store bucket of snapshots (created if missing).
    js_bucket: str = "gravityd-snapshots"
    # Snapshots kept in the bucket, newest first; older ones are deleted after each upload.
    js_snapshot_keep: int = 3
    # Seconds to wait for a NATS server when connecting.
    js_connect_timeout_s: float = 2.0
    # Seconds between two reconnect attempts after the connection is lost.
    js_reconnect_wait_s: float = 0.5
    # Reconnect attempts per server before giving up for good; -1 retries forever.
    js_max_reconnect_attempts: int = -1
    # Seconds a publish (or a read request) waits for JetStream's answer before ingest
    # answers 503 log_unavailable.
    js_ack_timeout_s: float = 5.0
    # Seconds opening the log keeps asking JetStream while the cluster is not ready (a request
    # timed out, found no responders, or a leader is being elected: nodes just started or
    # restarted), backing off up to 1 s between tries, before it fails; 0 asks once.
    js_open_timeout_s: float = 30.0
    # Seconds without an answer after which a publish is sent again (same Nats-Msg-Id, so it is
    # stored once) inside js_ack_timeout_s: after the stream leader dies, a write is
    # acknowledged this soon after the new leader is elected. 0 sends once.
    js_publish_retry_s: float = 0.5
    # Most events one message carries (at most 8192: positions are sequence * 8192 + slot).
    js_message_max_events: int = 8192
    # Largest message in bytes (also capped by the server's max_payload, 1 MiB by default).
    js_message_max_bytes: int = 1_000_000
    # Most events one group commit takes from the queue (it publishes them as several
    # messages, pipelined).
    js_commit_max_events: int = 8192
    # Group commits whose acknowledgements a writer awaits at once (sent back to back).
    js_max_inflight_commits: int = 8
    # Client event_ids a writer remembers for duplicate answers (the newest, within the
    # duplicate window); past it the oldest are forgotten first. About 165 bytes each with
    # 36-character ids: the default bounds the index near 330 MB.
    js_dedup_max_ids: int = 2_000_000
    # Credentials, as nats-py takes them; empty means unset.
    # User name and password.
    js_user: str = ""
    # Password for js_user.
    js_password: str = ""
    # Authentication token.
    js_token: str = ""
    # A .creds file (JWT and NKey seed).
    js_creds_file: str = ""
    # An NKey seed file.
    js_nkeys_seed_file: str = ""
    # TLS: a CA bundle to verify the servers (setting it, or a client certificate, turns TLS on).
    js_tls_ca_file: str = ""
    # TLS client certificate (PEM).
    js_tls_cert_file: str = ""
    # TLS client key (PEM).
    js_tls_key_file: str = ""
    # Host name expected in the servers' certificates (default: the host of the URL).
    js_tls_hostname: str = ""

    def __post_init__(self) -> None:
        check_fields(self)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError("<field>: reason") for the first out-of-range value."""
        if not _NAME_RE.match(self.js_stream):
            raise ValueError("js_stream: letters, digits, - and _ only")
        if not _SUBJECT_RE.match(self.js_subject):
            raise ValueError("js_subject: dot-separated tokens of letters, digits, - and _")
        if not _NAME_RE.match(self.js_bucket):
            raise ValueError("js_bucket: letters, digits, - and _ only")
        if not 1 <= self.js_replicas <= 5:
            raise ValueError("js_replicas: must be from 1 to 5")
        if self.js_storage not in ("file", "memory"):
            raise ValueError("js_storage: must be file or memory")
        if not 1 <= self.js_message_max_events <= MAX_MESSAGE_EVENTS:
            raise ValueError(f"js_message_max_events: must be from 1 to {MAX_MESSAGE_EVENTS}")
        positive = (
            "js_duplicate_window_s",
            "js_connect_timeout_s",
            "js_reconnect_wait_s",
            "js_ack_timeout_s",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be > 0")
        minimums = {
            "js_max_age_days": 0,
            "js_max_bytes": 0,
            "js_snapshot_keep": 1,
            "js_message_max_bytes": 1024,
            "js_commit_max_events": 1,
            "js_max_inflight_commits": 1,
            "js_dedup_max_ids": 0,
            "js_max_reconnect_attempts": -1,
            "js_publish_retry_s": 0,
            "js_open_timeout_s": 0,
        }
        for name, low in minimums.items():
            if getattr(self, name) < low:
                raise ValueError(f"{name}: must be at least {low}")
