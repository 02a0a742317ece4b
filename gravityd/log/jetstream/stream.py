"""Reaching the stream: the log URL, the connection's options (credentials, TLS), the stream
gravityd creates or checks, its origin, and the failures that mean "ask again later"."""

from __future__ import annotations

import asyncio
import logging
import ssl
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import nats
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext, api

from gravityd.log import LogError, LogMissing, NotALog
from gravityd.log.jetstream.retry import OpenRetry, describe
from gravityd.log.jetstream_params import JetStreamParams

log = logging.getLogger("gravityd.log.jetstream")

# Failures after which a publish may or may not have been stored: kept in doubt, republished.
IN_DOUBT = (
    asyncio.TimeoutError,
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionDrainingError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.TooManyStalledMsgsError,
    nats.js.errors.ServiceUnavailableError,
    OSError,
)
ERRORS = (*IN_DOUBT, nats.errors.Error)


def parse_log_url(url: str) -> list[str]:
    """`nats://HOST:PORT[,HOST:PORT...]` (or `tls://`) to nats-py's server list.

    Raises ValueError with one line naming what is wrong.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("nats", "tls"):
        raise ValueError(f"log URL {url!r}: expected nats://HOST:PORT[,HOST:PORT...]")
    servers = []
    for part in rest.split(","):
        part = part.strip().rstrip("/")
        if not part:
            raise ValueError(f"log URL {url!r}: an empty server in the list")
        try:
            parsed = urlsplit(f"{scheme}://{part}")
            host, port = parsed.hostname, parsed.port
        except ValueError as exc:
            raise ValueError(f"log URL {url!r}: {part!r}: {exc}") from None
        if not host or parsed.path or parsed.query:
            raise ValueError(f"log URL {url!r}: {part!r} is not HOST:PORT")
        servers.append(f"{scheme}://{part}" if port else f"{scheme}://{part}:4222")
    return servers


def connect_options(params: JetStreamParams, servers: list[str]) -> dict[str, Any]:
    """nats.connect's keyword arguments from the settings (credentials and TLS included)."""
    opts: dict[str, Any] = {
        "servers": servers,
        "connect_timeout": params.js_connect_timeout_s,
        "reconnect_time_wait": params.js_reconnect_wait_s,
        "max_reconnect_attempts": params.js_max_reconnect_attempts,
        "allow_reconnect": True,
        "name": "gravityd",
    }
    if params.js_user:
        opts["user"] = params.js_user
        opts["password"] = params.js_password
    if params.js_token:
        opts["token"] = params.js_token
    if params.js_creds_file:
        opts["user_credentials"] = params.js_creds_file
    if params.js_nkeys_seed_file:
        opts["nkeys_seed"] = params.js_nkeys_seed_file
    tls_wanted = (
        params.js_tls_ca_file
        or params.js_tls_cert_file
        or any(s.startswith("tls://") for s in servers)
    )
    if tls_wanted:
        try:
            ctx = ssl.create_default_context(cafile=params.js_tls_ca_file or None)
            if params.js_tls_cert_file:
                ctx.load_cert_chain(params.js_tls_cert_file, params.js_tls_key_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise LogError(f"JetStream TLS settings: {exc}") from None
        opts["tls"] = ctx
        if params.js_tls_hostname:
            opts["tls_hostname"] = params.js_tls_hostname
    return opts


def stream_config(p: JetStreamParams) -> api.StreamConfig:
    """The stream gravityd creates, from the settings."""
    return api.StreamConfig(
        name=p.js_stream,
        subjects=[p.js_subject],
        retention=api.RetentionPolicy.LIMITS,
        discard=api.DiscardPolicy.OLD,
        storage=api.StorageType.FILE if p.js_storage == "file" else api.StorageType.MEMORY,
        num_replicas=p.js_replicas,
        duplicate_window=p.js_duplicate_window_s,
        max_age=p.js_max_age_days * 86400.0,
        max_bytes=p.js_max_bytes or -1,
        allow_direct=True,
        description="gravityd event log (docs/jetstream.md)",
    )


def stream_origin(stream: str, created: datetime | None) -> str:
    """`<stream>@<creation time>`: which log a snapshot came from."""
    return f"{stream}@{_iso(created)}"


async def ensure_stream(
    js: JetStreamContext, p: JetStreamParams, writer: bool, retry: OpenRetry
) -> api.StreamInfo:
    """The stream's info; a writer creates it if missing. LogMissing (a replica before any
    writer), NotALog (settings it contradicts) or LogError, one line each. Both requests are
    asked again while the cluster is not ready (`retry`, the open's budget)."""
    try:
        info = await retry("stream_info", lambda: js.stream_info(p.js_stream))
    except nats.js.errors.NotFoundError:
        if not writer:
            raise LogMissing(
                f"JetStream stream {p.js_stream} does not exist yet (no writer has started)"
            ) from None
        info = await _add_stream(js, p, retry)
        log.info("jetstream stream created", extra={"stream": p.js_stream})
        return info
    except ERRORS as exc:
        raise LogError(f"JetStream stream {p.js_stream}: {describe(exc)}") from None
    problem = contradiction(info.config, stream_config(p))
    if problem:
        raise NotALog(f"JetStream stream {p.js_stream}: {problem}")
    return info


async def _add_stream(js: JetStreamContext, p: JetStreamParams, retry: OpenRetry) -> api.StreamInfo:
    """Create the stream. A cluster that has just started may not have placed its peers yet
    ("no suitable peers for placement") or may answer late: both are asked again (creating the
    same stream again is idempotent in JetStream); anything else is one line."""
    try:
        return await retry("add_stream", lambda: js.add_stream(stream_config(p)))
    except nats.js.errors.APIError as exc:
        raise LogError(f"cannot create JetStream stream {p.js_stream}: {exc}") from None
    except ERRORS as exc:
        raise LogError(f"cannot create JetStream stream {p.js_stream}: {describe(exc)}") from None


def contradiction(have: api.StreamConfig, want: api.StreamConfig) -> str | None:
    """What in an existing stream contradicts gravityd's settings, in one line, or None."""
    checks = [
        ("subjects", have.subjects or [], "js_subject", want.subjects),
        ("replicas", have.num_replicas, "js_replicas", want.num_replicas),
        ("storage", _enum(have.storage), "js_storage", _enum(want.storage)),
        ("retention", _enum(have.retention), None, _enum(want.retention)),
        ("duplicate_window", have.duplicate_window, "js_duplicate_window_s", want.duplicate_window),
        ("max_age", have.max_age or 0.0, "js_max_age_days", want.max_age or 0.0),
        ("max_bytes", have.max_bytes or -1, "js_max_bytes", want.max_bytes or -1),
        ("allow_direct", bool(have.allow_direct), None, True),
    ]
    for name, got, key, expected in checks:
        if name == "subjects":
            if want.subjects and want.subjects[0] not in (got or []):
                return (
                    f"its subjects are {got}, gravityd publishes to {want.subjects[0]} (js_subject)"
                )
            continue
        if isinstance(expected, float) and isinstance(got, (int, float)):
            same = abs(float(got) - expected) < 1e-3
        else:
            same = got == expected
        if not same:
            fix = f" ({key})" if key else ""
            return f"{name} is {got!r}, gravityd's settings say {expected!r}{fix}"
    return None


def _enum(value: Any) -> Any:
    return value.value if hasattr(value, "value") else value


def _iso(when: datetime | None) -> str:
    return when.isoformat() if when is not None else "unknown"
