"""The JetStream backend of the event log: one replicated stream for writers and replicas on any
number of machines (`--log-url nats://HOST:PORT[,HOST:PORT...]`). See docs/jetstream.md.

**Messages.** nats-py publishes some 23k single messages/s into an R3 stream, so an event per
message would cap a writer far below 100k events/s. A group commit is published instead as a
few messages of up to 8,192 events each (columns packed with msgpack). An event's position is
`sequence * 8192 + slot`, the slots of a message of n events being the last n (8192 - n ..
8191): positions are unique and strictly increasing, `position >> 13` is the stream sequence,
and the committed high-water mark is `last_seq * 8192 + 8191`, one cheap stream-info call.

**Durability.** A 202 is given once JetStream acknowledged every message of the commit, that
is once a quorum of the stream's replicas stored it. Each message carries a `Nats-Msg-Id`
unique to its writer and commit; a publish whose answer never came (leader lost, timeout) is
kept "in doubt" and published again, with the same id, before the writer's next commit:
JetStream stores it at most once inside its duplicate window and answers with its sequence.

**Duplicates of client event_ids.** Message ids cannot catch a client's retry, which the writer
may group differently. Each writer keeps an index event_id -> position of the duplicate window:
its own commits, and every other writer's, read from the stream by an ordered consumer (only
the ids block of a message is decoded). A retry inside the window is answered
`duplicate: true` with the first positions. Past the window, or in the milliseconds before
another writer's message reaches the index, a repeat is stored again; the fold counts each kind
of verdict once per session transition, so the graph counts it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import chain, repeat
from operator import itemgetter
from typing import Any
from urllib.parse import urlsplit

import msgpack
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gravityd.core.events import EVENT_TYPES, MAX_ELAPSED_MS, FoldEvent, ValidEvent
from gravityd.core.takedowns import ADMIN_EVENT_TYPES
from gravityd.log import (
    Appended,
    BadRows,
    CommitTimes,
    LogError,
    LogIdentity,
    LogMissing,
    NotALog,
)
from gravityd.log.jetstream_params import MAX_MESSAGE_EVENTS, JetStreamParams
from gravityd.log.sqlite import new_event_id

log = logging.getLogger("gravityd.log.jetstream")

SHIFT = 13  # positions: sequence << SHIFT | slot
SLOTS = 1 << SHIFT
assert SLOTS == MAX_MESSAGE_EVENTS

MAGIC = b"GEV1"
_U32 = struct.Struct(">I")
WRITER_HEADER = "Gravityd-Writer"
COUNT_HEADER = "Gravityd-Events"

# Failures after which a publish may or may not have been stored: kept in doubt, republished.
_IN_DOUBT = (
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
_ERRORS = (*_IN_DOUBT, nats.errors.Error)
_EVENT_ID = itemgetter(0)  # ValidEvent.event_id
# Listening events and takedowns (block/unblock of a track) travel in the same messages.
_FOLDED_TYPES = EVENT_TYPES | ADMIN_EVENT_TYPES
# The stored columns after event_id: session, track, type, user, ts, context, meta, elapsed.
_COLUMN_GETTERS = [itemgetter(i) for i in range(1, len(ValidEvent._fields))]
# An Appended built in C from a (position, event_id, duplicate) tuple: the answer to a large
# commit is one per event, and NamedTuple's own __new__ is a Python call each.
_appended = partial(tuple.__new__, Appended)


def position(seq: int, slot: int) -> int:
    return seq << SHIFT | slot


def high_water_of(last_seq: int) -> int:
    """The position of the last event of message `last_seq` (0 for an empty stream)."""
    return position(last_seq, SLOTS - 1) if last_seq > 0 else 0


# --------------------------------------------------------------------------- the URL


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


# --------------------------------------------------------------------------- messages


def encode_message(
    events: list[ValidEvent], event_ids: list[str], assigned: bytes, received_at: float
) -> bytes:
    """One message: MAGIC, u32 length of the ids block, the ids block, the columns block.

    The ids block (`[event_ids, assigned]`, assigned[i] = 1 where the server made the id up)
    comes first and alone so other writers decode only it for their duplicate index.
    """
    cols = [list(map(g, events)) for g in _COLUMN_GETTERS]  # in C, column by column
    ids = msgpack.packb([event_ids, assigned], use_bin_type=True)
    body = msgpack.packb([received_at, *cols], use_bin_type=True)
    return MAGIC + _U32.pack(len(ids)) + ids + body


def decode_ids(payload: bytes) -> tuple[list[str], bytes] | None:
    """The ids block of a message, or None if it is not a gravityd message."""
    if not payload.startswith(MAGIC) or len(payload) < 8:
        return None
    (n,) = _U32.unpack_from(payload, 4)
    try:
        ids, assigned = msgpack.unpackb(payload[8 : 8 + n], raw=False)
    except Exception:
        return None
    if not isinstance(ids, list) or not isinstance(assigned, bytes) or len(ids) != len(assigned):
        return None
    return ids, assigned


_COLUMNS = 9  # received_at then session, track, type, user, ts, context, meta, elapsed


def decode_events(seq: int, payload: bytes) -> tuple[list[FoldEvent], BadRows]:
    """A message's events as the fold reads them (plain tuples in FoldEvent's order).

    An event the fold cannot trust comes back with a None event type and is listed in the bad
    rows; a message that is not gravityd's at all is one such row at the message's last slot.
    """
    last = position(seq, SLOTS - 1)
    if not payload.startswith(MAGIC) or len(payload) < 8:
        return [(last, "", "", None, 0.0, None, None)], [(last, "message")]  # type: ignore[list-item]
    (n,) = _U32.unpack_from(payload, 4)
    try:
        cols = msgpack.unpackb(payload[8 + n :], raw=False)
        ok = isinstance(cols, list) and len(cols) == _COLUMNS
        count = len(cols[1]) if ok else 0
        ok = (
            ok
            and 0 < count <= SLOTS
            and all(isinstance(c, list) and len(c) == count for c in cols[1:])
        )
    except Exception:
        ok = False
    if not ok:
        return [(last, "", "", None, 0.0, None, None)], [(last, "message")]  # type: ignore[list-item]
    _, sessions, tracks, types, _users, tss, contexts, _metas, elapsed = cols
    first = position(seq, SLOTS - count)
    rows: list[Any] = []
    bad: BadRows = []
    for i, (s, t, et, ts, ctx, el) in enumerate(
        zip(sessions, tracks, types, tss, contexts, elapsed, strict=True)
    ):
        problem = None
        if type(s) is not str:
            problem = "session_id"
        elif type(t) is not str:
            problem = "track_id"
        elif et not in _FOLDED_TYPES:
            problem = "event_type"
        elif type(ts) not in (float, int) or not -1e300 <= ts <= 1e300:
            problem = "ts"
        elif el is not None and (type(el) is not int or not 0 <= el <= MAX_ELAPSED_MS):
            problem = "elapsed_ms"
        elif ctx is not None and type(ctx) is not str:
            problem = "context"
        if problem is None:
            rows.append((first + i, s, t, et, ts, el, ctx))
        else:
            rows.append((first + i, "", "", None, 0.0, None, None))
            bad.append((first + i, problem))
    return rows, bad


# --------------------------------------------------------------------------- metrics


class JetStreamMetrics:
    """What the backend adds to /metrics: publishes, their latency, doubts, the dedup index."""

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


# --------------------------------------------------------------------------- the log


@dataclass
class _Message:
    """One message of a commit, kept until JetStream acknowledged it."""

    msg_id: str
    payload: bytes
    ids: list[str]  # every event_id, in slot order
    assigned: bytes  # 1 where the server made the id up (not remembered for duplicates)
    first_sent: float = field(default_factory=time.monotonic)

    @property
    def count(self) -> int:
        return len(self.ids)

    def client_pairs(self, base: int) -> tuple[list[str], range | list[int]]:
        """(client event_ids, their positions) once the message sits at `base`."""
        if not any(self.assigned):
            return self.ids, range(base, base + self.count)
        keep = [i for i, a in enumerate(self.assigned) if not a]
        return [self.ids[i] for i in keep], [base + i for i in keep]


class DedupIndex:
    """event_id -> position for the duplicate window, bounded in size, oldest dropped first."""

    def __init__(self, window_s: float, max_ids: int) -> None:
        self.window_s = window_s
        self.max_ids = max_ids
        self._pos: dict[str, int] = {}
        self._batches: deque[tuple[float, list[str]]] = deque()

    def __len__(self) -> int:
        return len(self._pos)

    def get(self, event_id: str) -> int | None:
        return self._pos.get(event_id)

    def isdisjoint(self, event_ids: set[str]) -> bool:
        return self._pos.keys().isdisjoint(event_ids)

    def add(self, ids: list[str], positions: range | list[int], now: float) -> None:
        """Remember event_ids at these positions (in C: one dict.update per message)."""
        if not ids or self.max_ids == 0:
            return
        self._pos.update(zip(ids, positions, strict=True))
        self._batches.append((now, ids))
        self.expire(now)

    def expire(self, now: float) -> None:
        cut = now - self.window_s
        batches, pos = self._batches, self._pos
        while batches and (batches[0][0] < cut or len(pos) > self.max_ids):
            for eid in batches.popleft()[1]:
                pos.pop(eid, None)


class JetStreamLog:
    """The event log on a JetStream stream; implements gravityd.log.EventLog."""

    def __init__(
        self,
        servers: list[str],
        params: JetStreamParams,
        *,
        writer: bool = True,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.servers = servers
        self.params = params
        self.writer = writer
        self.clock = clock
        self.last_id = 0
        self.origin = ""  # "<stream>@<creation time>": which log a snapshot came from
        self.identity: LogIdentity | None = None  # the origin, once open
        self.writer_id = uuid.uuid4().hex
        self.metrics = JetStreamMetrics(registry)
        # Called after each commit with (new events, seconds), and after a failed one.
        self.on_commit: Callable[[int, float], None] | None = None
        self.on_commit_error: Callable[[], None] | None = None
        self.committed = asyncio.Event()  # set whenever last_id grows; the fold waits on it
        self.readonly = not writer
        self.reserved = 0  # positions come from the stream: nothing is ever reserved
        self.commits = CommitTimes()  # when each position became visible here: fold lag
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._queue: deque[tuple[list[ValidEvent], float, asyncio.Future]] = deque()
        self._wake = asyncio.Event()
        self._writer_task: asyncio.Task | None = None
        self._closing = False
        self._commit_no = 0
        self._in_doubt: list[_Message] = []
        self._index = DedupIndex(params.js_duplicate_window_s, params.js_dedup_max_ids)
        self._tail: Any = None
        self._tail_seq = 0
        self._tail_ready = asyncio.Event()
        self._tail_target = 0
        self._bytes_per_event = 200.0
        self._max_bytes = params.js_message_max_bytes
        self._cache: tuple[int, list[FoldEvent], BadRows] | None = None
        self._watch: Any = None
        self._inflight = asyncio.Semaphore(params.js_max_inflight_commits)
        self._inflight_tasks: set[asyncio.Task] = set()
        # (commit's future, message index, event_id -> slot) per message of commits in flight
        self._pending: list[tuple[asyncio.Future, int, dict[str, int]]] = []
        self._last_ack = 0.0  # monotonic time of the last publish acknowledged
        self.metrics.dedup_ids.set_function(lambda: len(self._index))

    # ------------------------------------------------------------------ open and close

    @property
    def jetstream(self) -> JetStreamContext:
        """The JetStream context (the snapshot store shares the connection)."""
        if self._js is None:
            raise LogError("the JetStream log is not open")
        return self._js

    async def open(self) -> None:
        p = self.params
        opts = connect_options(p, self.servers)
        nc = NATS()
        # With unlimited reconnects nats-py's first connect never gives up; bound it, so an
        # unreachable cluster at start is one clear error the caller retries with back-off.
        budget = p.js_connect_timeout_s * len(self.servers) * 2 + 1.0
        try:
            await asyncio.wait_for(
                nc.connect(
                    **opts,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                ),
                timeout=budget,
            )
        except (*_ERRORS, ValueError) as exc:
            with contextlib.suppress(Exception):
                await nc.close()
            raise LogError(
                f"cannot reach NATS at {','.join(self.servers)}: {_describe(exc)}"
            ) from None
        self._nc = nc
        self._js = self._nc.jetstream(timeout=p.js_ack_timeout_s)
        try:
            info = await self._ensure_stream()
            self._max_bytes = min(p.js_message_max_bytes, self._nc.max_payload - 4096)
            self.origin = f"{p.js_stream}@{_iso(info.created)}"
            self.last_id = high_water_of(info.state.last_seq)
            if self.writer:
                await self._start_tail(info.state.last_seq)
            else:
                await self._start_watch(info.state.last_seq)
            self.identity = LogIdentity(self.origin, frozenset(), self.last_id)
        except _ERRORS as exc:  # a transient answer (no responders, a timeout): retry later
            await self._close_conn()
            raise LogError(
                f"JetStream stream {p.js_stream}: cannot open it now: {_describe(exc)}"
            ) from None
        except BaseException:
            await self._close_conn()
            raise
        if self.writer:
            self._writer_task = asyncio.create_task(self._write_loop(), name="gravityd-js-writer")
        log.info(
            "jetstream log opened",
            extra={"stream": p.js_stream, "origin": self.origin, "last_id": self.last_id},
        )

    def stream_config(self) -> api.StreamConfig:
        """The stream gravityd creates, from the settings."""
        p = self.params
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

    async def _ensure_stream(self) -> api.StreamInfo:
        p = self.params
        assert self._js is not None
        try:
            info = await self._js.stream_info(p.js_stream)
        except nats.js.errors.NotFoundError:
            if not self.writer:
                raise LogMissing(
                    f"JetStream stream {p.js_stream} does not exist yet (no writer has started)"
                ) from None
            info = await self._add_stream()
            log.info("jetstream stream created", extra={"stream": p.js_stream})
            return info
        except _ERRORS as exc:
            raise LogError(f"JetStream stream {p.js_stream}: {_describe(exc)}") from None
        problem = contradiction(info.config, self.stream_config())
        if problem:
            raise NotALog(f"JetStream stream {p.js_stream}: {problem}")
        return info

    async def _add_stream(self) -> api.StreamInfo:
        """Create the stream. A cluster that has just started may not have placed its peers
        yet ("no suitable peers for placement", err_code 10005) or may answer late: both are
        retried for a few seconds; anything else is one line."""
        assert self._js is not None
        p = self.params
        deadline = time.monotonic() + max(10.0, 2 * p.js_ack_timeout_s)
        while True:
            try:
                return await self._js.add_stream(self.stream_config())
            except nats.js.errors.APIError as exc:
                if exc.err_code != 10005 or time.monotonic() > deadline:
                    raise LogError(f"cannot create JetStream stream {p.js_stream}: {exc}") from None
            except (TimeoutError, nats.errors.TimeoutError) as exc:
                # A slow answer (a cluster busy starting): creating the same stream again is
                # idempotent in JetStream, so ask again until the deadline.
                if time.monotonic() > deadline:
                    raise LogError(
                        f"cannot create JetStream stream {p.js_stream}: {_describe(exc)}"
                    ) from None
            except _ERRORS as exc:
                raise LogError(
                    f"cannot create JetStream stream {p.js_stream}: {_describe(exc)}"
                ) from None
            await asyncio.sleep(0.2)  # the servers place peers among themselves: no signal

    async def close(self) -> None:
        """Publish everything queued (and in doubt), then close the connection."""
        await self.drain()
        if self._writer_task is not None:
            with contextlib.suppress(Exception):
                await self._writer_task
            self._writer_task = None
        await self._close_conn()

    async def drain(self) -> None:
        """Stop taking events and wait until every queued one is published (or failed)."""
        self._closing = True
        if self._writer_task is not None:
            self._wake.set()
            with contextlib.suppress(Exception):
                await asyncio.shield(self._writer_task)

    async def _close_conn(self) -> None:
        for sub in (self._tail, self._watch):
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        self._tail = self._watch = None
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
        self._nc = self._js = None

    async def _on_error(self, exc: Exception) -> None:
        log.warning("nats error", extra={"error": _describe(exc)})

    async def _on_disconnected(self) -> None:
        log.warning("nats disconnected", extra={"servers": ",".join(self.servers)})

    async def _on_reconnected(self) -> None:
        url = self._nc.connected_url.netloc if self._nc and self._nc.connected_url else "?"
        log.info("nats reconnected", extra={"server": url})

    # ------------------------------------------------------------------ writing

    async def append(
        self, events: list[ValidEvent], received_at: float | None = None
    ) -> list[Appended]:
        """Queue events for the next group commit; return once JetStream acknowledged them."""
        if self._closing or self._writer_task is None:
            raise LogError(
                "the log is not open (NATS not reached yet, or closing)"
                if self.writer
                else "this log is read-only"
            )
        if not events:
            return []
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.append((events, received_at or self.clock(), fut))
        self._wake.set()
        return await fut

    async def lookup(self, event_ids: list[str]) -> dict[str, int]:
        """Positions of the event_ids this writer knows inside the duplicate window."""
        out = {}
        for eid in event_ids:
            pos = self._index.get(eid)
            if pos is not None:
                out[eid] = pos
        return out

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = []
                count = 0
                while self._queue and count < self.params.js_commit_max_events:
                    item = self._queue.popleft()
                    batch.append(item)
                    count += len(item[0])
                await self._inflight.acquire()
                await self._commit(batch)
            if self._closing:
                if self._inflight_tasks:
                    await asyncio.gather(*self._inflight_tasks, return_exceptions=True)
                if self._in_doubt:
                    with contextlib.suppress(LogError):
                        await self._resolve_in_doubt()
                return

    async def _commit(self, batch: list[tuple[list[ValidEvent], float, asyncio.Future]]) -> None:
        """Plan and send one group commit; a task waits for its acks while the next is sent.

        Up to js_max_inflight_commits commits are in flight: the acks of an R3 stream take
        milliseconds, and waiting for each before sending the next left the link idle.
        JetStream orders the messages of one connection as sent, so positions still grow in
        commit order. Ids of a commit in flight are in `_pending`, so a repeat of one in
        a later commit waits for that commit and answers its position.
        """
        started = time.perf_counter()
        try:
            if self._nc is None or not self._nc.is_connected:
                raise LogError("the event log cannot take writes: NATS is not connected")
            if not self._tail_ready.is_set():
                raise LogError("the event log is not ready: reading the duplicate window")
            if self._in_doubt:
                await self._resolve_in_doubt()
            plan, messages = self._plan_fitting(batch)
            futures = await self._send(messages) if messages else []
        except LogError as exc:
            self._inflight.release()
            self._fail(batch, exc)
            return
        done: asyncio.Future = asyncio.get_running_loop().create_future()
        for k, m in enumerate(messages):  # dict(zip()) runs in C: no Python step per event
            self._pending.append((done, k, dict(zip(m.ids, range(m.count), strict=True))))
        task = asyncio.create_task(self._finish(batch, plan, messages, futures, done, started))
        self._inflight_tasks.add(task)
        task.add_done_callback(self._inflight_tasks.discard)

    async def _finish(
        self,
        batch: list[tuple[list[ValidEvent], float, asyncio.Future]],
        plan: list[list[Any]] | None,
        messages: list[_Message],
        futures: list[asyncio.Future],
        done: asyncio.Future,
        started: float,
    ) -> None:
        try:
            acks = await self._await_acks(messages, futures, started) if messages else []
        except LogError as exc:
            self._unpend(messages, done)
            done.set_exception(exc)
            done.exception()  # retrieved: waiters may be none
            self._fail(batch, exc)
            return
        finally:
            self._inflight.release()
        now = self.clock()
        bases = [position(ack.seq, SLOTS - m.count) for m, ack in zip(messages, acks, strict=True)]
        for m, base in zip(messages, bases, strict=True):
            self._index.add(*m.client_pairs(base), now)
        self._unpend(messages, done)
        done.set_result(bases)
        failed: LogError | None = None
        if plan is None:
            # Every event new, in order: answers built by map() over each message's range.
            flat: list[Appended] = []
            for m, base in zip(messages, bases, strict=True):
                rows = zip(range(base, base + m.count), m.ids, repeat(False))
                flat.extend(map(_appended, rows))
            results: list[list[Appended] | LogError] = []
            at = 0
            for events, _, _ in batch:
                results.append(flat[at : at + len(events)])
                at += len(events)
        else:
            results = []
            for entries in plan:
                out: list[Appended] = []
                try:
                    for e in entries:
                        if isinstance(e, Appended):
                            out.append(e)
                        elif len(e) == 4:
                            k, i, eid, dup = e
                            out.append(Appended(bases[k] + i, eid, dup))
                        else:  # a repeat of an event of an earlier commit still in flight
                            _, other, k, i, eid = e
                            other_bases = await other
                            out.append(Appended(other_bases[k] + i, eid, True))
                except LogError as exc:
                    failed = exc
                    results.append(exc)
                    continue
                results.append(out)
        new = sum(m.count for m in messages)
        top = bases[-1] + messages[-1].count - 1 if messages else 0
        if top > self.last_id:
            self.last_id = top
            self.commits.note(top, now)
            self.committed.set()
        if self.on_commit is not None:
            self.on_commit(new, time.perf_counter() - started)
        if failed is not None and self.on_commit_error is not None:
            self.on_commit_error()
        for (_, _, fut), out in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(out, LogError):
                fut.set_exception(LogError(str(out)))
            else:
                fut.set_result(out)

    def _unpend(self, messages: list[_Message], done: asyncio.Future) -> None:
        self._pending = [entry for entry in self._pending if entry[0] is not done]

    def _in_flight(self, event_id: str) -> tuple[asyncio.Future, int, int] | None:
        """(commit, message, slot) of an event_id in a commit not yet acknowledged."""
        for done, k, slots in self._pending:
            i = slots.get(event_id)
            if i is not None:
                return done, k, i
        return None

    def _plan_fitting(
        self, batch: list[tuple[list[ValidEvent], float, asyncio.Future]]
    ) -> tuple[list[list[Any]] | None, list[_Message]]:
        for _ in range(6):
            try:
                return self._plan(batch)
            except _Replan:
                continue
        raise LogError("events too large for one JetStream message (js_message_max_bytes)")

    def _plan(
        self, batch: list[tuple[list[ValidEvent], float, asyncio.Future]]
    ) -> tuple[list[list[Any]] | None, list[_Message]]:
        """Answer repeats from the index, give new events a slot in a message of this commit.

        The common case (client ids, none seen before, none repeated) is checked with set
        operations and packed without a Python step per event: plan None. Otherwise each
        request's entries are an Appended (a known duplicate) or (message, slot, event_id,
        duplicate), a repeat inside the commit pointing at the first one's slot.
        """
        limit = self.message_events()
        received_at = batch[0][1]
        events = list(chain.from_iterable(ev for ev, _, _ in batch))
        eids = list(map(_EVENT_ID, events))
        if eids.count(None) == len(eids):
            # No client ids (server-side batches): fresh UUIDv7s, nothing to look up.
            fresh = [new_event_id() for _ in eids]
            return None, self._pack(events, fresh, b"\x01" * len(fresh), received_at, limit)
        if None not in eids:
            unique = set(eids)
            if (
                len(unique) == len(eids)
                and self._index.isdisjoint(unique)
                and all(slots.keys().isdisjoint(unique) for _, _, slots in self._pending)
            ):
                return None, self._pack(events, eids, bytes(len(eids)), received_at, limit)
        index = self._index
        seen: dict[str, tuple[int, int]] = {}
        plan: list[list[Any]] = []
        p_events: list[ValidEvent] = []
        p_ids: list[str] = []
        p_assigned = bytearray()
        for request, _, _ in batch:
            out: list[Any] = []
            for e in request:
                eid = e.event_id
                if eid is not None:
                    known = index.get(eid)
                    if known is not None:
                        out.append(Appended(known, eid, True))
                        continue
                    in_flight = self._in_flight(eid) if self._pending else None
                    if in_flight is not None:
                        out.append(("wait", *in_flight, eid))
                        continue
                    first = seen.get(eid)
                    if first is not None:
                        out.append((*first, eid, True))
                        continue
                assigned = eid is None
                if eid is None:
                    eid = new_event_id()
                k, i = divmod(len(p_ids), limit)
                p_events.append(e)
                p_ids.append(eid)
                p_assigned.append(1 if assigned else 0)
                if not assigned:
                    seen[eid] = (k, i)
                out.append((k, i, eid, False))
            plan.append(out)
        return plan, self._pack(p_events, p_ids, bytes(p_assigned), received_at, limit)

    def message_events(self) -> int:
        """Events per message: the configured count, fewer when events are large."""
        by_bytes = int(self._max_bytes * 0.8 / max(self._bytes_per_event, 1.0))
        return max(1, min(self.params.js_message_max_events, by_bytes))

    def _pack(
        self,
        events: list[ValidEvent],
        ids: list[str],
        assigned: bytes,
        received_at: float,
        limit: int,
    ) -> list[_Message]:
        messages: list[_Message] = []
        for start in range(0, len(events), limit):
            part = slice(start, start + limit)
            n = len(ids[part])
            payload = encode_message(events[part], ids[part], assigned[part], received_at)
            if len(payload) > self._max_bytes:
                # Events larger than the estimate: learn, and plan the commit again.
                self._bytes_per_event = len(payload) / n * 1.2
                raise _Replan()
            self._bytes_per_event = 0.9 * self._bytes_per_event + 0.1 * (len(payload) / n)
            self._commit_no += 1
            messages.append(
                _Message(
                    msg_id=f"{self.writer_id}-{self._commit_no}",
                    payload=payload,
                    ids=ids[part],
                    assigned=assigned[part],
                )
            )
        return messages

    async def _publish(self, messages: list[_Message]) -> list[api.PubAck]:
        """Publish messages pipelined and wait for every ack, or LogError."""
        return await self._await_acks(messages, await self._send(messages), time.perf_counter())

    async def _send(self, messages: list[_Message]) -> list[asyncio.Future]:
        """Hand the messages to the connection; their acks come back as futures."""
        assert self._js is not None
        p = self.params
        futures: list[asyncio.Future] = []
        try:
            for m in messages:
                futures.append(
                    await self._js.publish_async(
                        p.js_subject,
                        m.payload,
                        wait_stall=p.js_ack_timeout_s,
                        stream=p.js_stream,
                        headers={
                            "Nats-Msg-Id": m.msg_id,
                            WRITER_HEADER: self.writer_id,
                            COUNT_HEADER: str(m.count),
                        },
                    )
                )
                futures[-1].add_done_callback(self._note_ack)
        except _ERRORS as exc:
            for f in futures:
                f.cancel()
            self._doubt(messages)
            self.metrics.errors.labels("publish").inc()
            raise LogError(
                f"the event log cannot take writes: publish failed ({_describe(exc)})"
            ) from None
        return futures

    def _note_ack(self, fut: asyncio.Future) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self._last_ack = time.monotonic()

    async def _await_acks(
        self, messages: list[_Message], futures: list[asyncio.Future], started: float
    ) -> list[api.PubAck]:
        p = self.params
        deadline = time.monotonic() + p.js_ack_timeout_s
        retry = p.js_publish_retry_s or p.js_ack_timeout_s
        try:
            while True:
                left = deadline - time.monotonic()
                # asyncio.wait cancels nothing on its timeout: the acks may still come.
                await asyncio.wait(
                    futures,
                    timeout=max(0.001, min(retry, left)),
                    return_when=asyncio.FIRST_EXCEPTION,
                )
                try:
                    errors = [  # every exception retrieved, so none is logged as lost
                        nats.errors.ConnectionClosedError() if f.cancelled() else f.exception()
                        for f in futures
                        if f.done()
                    ]
                    for exc in errors:
                        if exc is not None:
                            raise exc
                    if len(errors) == len(futures):
                        acks = [f.result() for f in futures]
                        break
                    if left <= retry:
                        raise TimeoutError()
                    if time.monotonic() - self._last_ack < retry:
                        continue  # other commits are acknowledged: a slow leader, not a dead one
                    # No ack at all for js_publish_retry_s: a SIGKILLed leader drops what it was
                    # sent, and the stream's new leader (4 to 9 s later: NATS raft's election
                    # timeout) answers only what comes after. Send again, same message ids, so
                    # the commit is acknowledged within js_publish_retry_s of the election
                    # instead of failing at the deadline; a message that did land is answered
                    # as a duplicate with its first sequence, so nothing is stored twice.
                    self.metrics.republished.labels("retry").inc(len(messages))
                except nats.js.errors.NoStreamResponseError:
                    # Nobody took the message (a stream just created, a leader being elected):
                    # it was not stored. Send the commit again, same message ids (JetStream
                    # answers any that did land with its first sequence), until the deadline.
                    if time.monotonic() + 0.05 >= deadline:
                        raise
                    await asyncio.sleep(0.05)
                for f in futures:
                    f.cancel()
                futures = await self._send(messages)
        except nats.js.errors.APIError as exc:
            if isinstance(exc, nats.js.errors.ServiceUnavailableError):
                self._doubt(messages)
            for f in futures:
                f.cancel()
            self.metrics.errors.labels("publish").inc()
            raise LogError(f"the event log cannot take writes: JetStream: {exc}") from None
        except _IN_DOUBT as exc:
            for f in futures:
                f.cancel()
            self._doubt(messages)
            self.metrics.errors.labels("publish").inc()
            raise LogError(
                f"the event log cannot take writes: no answer from JetStream ({_describe(exc)})"
            ) from None
        self.metrics.messages.inc(len(messages))
        self.metrics.publish_seconds.observe(time.perf_counter() - started)
        return list(acks)

    def _doubt(self, messages: list[_Message]) -> None:
        self._in_doubt.extend(messages)
        self.metrics.in_doubt.set(len(self._in_doubt))
        log.warning("publish in doubt", extra={"messages": len(messages)})

    async def _resolve_in_doubt(self) -> None:
        """Publish again, with their ids, the messages whose answer never came.

        JetStream answers a repeat inside its duplicate window with the first sequence, so
        each is stored once; their events enter the index, and a client retrying them is
        answered duplicate: true. One older than the window could be stored twice: dropped.
        """
        window = self.params.js_duplicate_window_s - self.params.js_ack_timeout_s
        now = time.monotonic()
        fresh = [m for m in self._in_doubt if now - m.first_sent < window]
        for _ in range(len(self._in_doubt) - len(fresh)):
            self.metrics.republished.labels("expired").inc()
            log.error("in-doubt message older than the duplicate window dropped")
        self._in_doubt = []
        self.metrics.in_doubt.set(0)
        if not fresh:
            return
        acks = await self._publish(fresh)  # on failure they are in doubt again
        now = self.clock()
        for m, ack in zip(fresh, acks, strict=True):
            base = position(ack.seq, SLOTS - m.count)
            self._index.add(*m.client_pairs(base), now)
            self.last_id = max(self.last_id, base + m.count - 1)
            self.metrics.republished.labels("duplicate" if ack.duplicate else "stored").inc()

    def _fail(self, batch: list, exc: LogError) -> None:
        log.error("log commit failed", extra={"error": str(exc)})
        if self.on_commit_error is not None:
            self.on_commit_error()
        for _, _, fut in batch:
            if not fut.done():
                fut.set_exception(LogError(str(exc)))

    # ------------------------------------------------------------------ other writers' ids

    async def _start_tail(self, last_seq: int) -> None:
        """Read the duplicate window's ids of every writer, then follow the stream.

        open() returns once the window is read, so the first answer already knows every
        event_id the stream got in it.
        """
        assert self._js is not None
        p = self.params
        self._tail_target = last_seq
        start_time = datetime.now(UTC) - timedelta(seconds=p.js_duplicate_window_s)
        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_TIME,
            opt_start_time=start_time,
            headers_only=False,
        )
        if last_seq == 0 or await self._last_message_older_than(last_seq, start_time):
            config = api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=last_seq + 1
            )
            self._tail_ready.set()
        try:
            self._tail = await self._js.subscribe(
                p.js_subject,
                stream=p.js_stream,
                ordered_consumer=True,
                config=config,
                cb=self._on_tail,
                idle_heartbeat=5.0,
                pending_bytes_limit=256 * 1024 * 1024,
            )
            await asyncio.wait_for(
                self._tail_ready.wait(), timeout=max(30.0, 10 * p.js_ack_timeout_s)
            )
        except (*_ERRORS, TimeoutError) as exc:
            raise LogError(
                f"JetStream stream {p.js_stream}: cannot read the duplicate window: "
                f"{_describe(exc)}"
            ) from None

    async def _last_message_older_than(self, seq: int, when: datetime) -> bool:
        assert self._js is not None
        try:
            try:
                msg = await self._js.get_msg(self.params.js_stream, seq=seq, direct=True)
            except nats.errors.NoRespondersError:
                # Direct get has no responders yet (a new stream, an election): ask the leader.
                msg = await self._js.get_msg(self.params.js_stream, seq=seq, direct=False)
        except nats.js.errors.NotFoundError:
            return True
        return msg.time is not None and msg.time < when

    async def _on_tail(self, msg: Msg) -> None:
        try:
            seq = msg.metadata.sequence.stream
        except Exception:
            return
        self._tail_seq = seq
        self._grow(high_water_of(seq))
        headers = msg.headers or {}
        if headers.get(WRITER_HEADER) != self.writer_id:
            decoded = decode_ids(msg.data)
            if decoded is not None:
                ids, assigned = decoded
                m = _Message("", b"", ids, assigned)
                self._index.add(*m.client_pairs(position(seq, SLOTS - len(ids))), self.clock())
                self.metrics.tail_messages.inc()
        if seq >= self._tail_target:
            self._tail_ready.set()

    # ------------------------------------------------------------------ reading

    async def high_water(self) -> int:
        """The last stream sequence's last slot: one stream-info request."""
        if self._js is None:
            raise LogError("the JetStream log is not open")
        try:
            info = await self._js.stream_info(self.params.js_stream)
        except _ERRORS as exc:
            self.metrics.errors.labels("stream_info").inc()
            raise LogError(f"JetStream stream {self.params.js_stream}: {_describe(exc)}") from None
        return high_water_of(info.state.last_seq)

    async def read_after(self, cursor: int, limit: int) -> tuple[list[FoldEvent], BadRows]:
        """Up to `limit` events after `cursor`, by direct gets of whole messages.

        No consumer is created: the cursor alone says where to go on (`next_by_subj` from its
        sequence), so any number of replicas read without server-side state. The last message
        decoded is kept, since the fold may take a message of 8,192 events in several steps.
        A read JetStream cannot answer returns what was read so far (maybe nothing) and wakes
        the fold again a moment later, so the fold task outlives an outage.
        """
        if self._js is None:
            raise LogError("the JetStream log is not open")
        seq, slot = cursor >> SHIFT, cursor & (SLOTS - 1)
        start = seq + 1 if slot == SLOTS - 1 else seq
        start = max(start, 1)
        rows: list[FoldEvent] = []
        bad: BadRows = []
        while len(rows) < limit:
            try:
                got = await self._message_at_or_after(start)
            except LogError as exc:
                if rows:
                    break  # hand over what was read; the next call goes on from there
                self._retry_soon("read", exc)
                return [], []
            if got is None:
                break
            mseq, mrows, mbad = got
            take = [r for r in mrows if r[0] > cursor]
            room = limit - len(rows)
            part = take[:room]
            rows.extend(part)
            if part:
                top = part[-1][0]
                bad.extend(b for b in mbad if cursor < b[0] <= top)
            if len(take) > room:
                break
            start = mseq + 1
        return rows, bad

    async def _message_at_or_after(self, seq: int) -> tuple[int, list[FoldEvent], BadRows] | None:
        cache = self._cache
        if cache is not None and cache[0] == seq:
            return cache
        assert self._js is not None
        p = self.params
        try:
            self.metrics.reads.inc()
            try:
                raw = await self._js.get_msg(
                    p.js_stream, seq=seq, subject=p.js_subject, direct=True, next=True
                )
            except nats.errors.NoRespondersError:
                # Direct-get responders appear a moment after the stream (or a replica) does;
                # the leader's message-get API answers meanwhile.
                raw = await self._js.get_msg(p.js_stream, seq=seq, subject=p.js_subject, next=True)
        except nats.js.errors.NotFoundError:
            return None
        except _ERRORS as exc:
            self.metrics.errors.labels("read").inc()
            raise LogError(
                f"JetStream stream {p.js_stream}: read failed: {_describe(exc)}"
            ) from None
        mrows, mbad = decode_events(raw.seq, raw.data or b"")
        self._cache = (raw.seq, mrows, mbad)
        return self._cache

    # ------------------------------------------------------------------ fold lag

    def forget_through(self, cursor: int) -> None:
        self.commits.forget_through(cursor)

    def lag_seconds(self, cursor: int, now: float | None = None) -> float:
        """Age of the oldest commit seen here that the fold has not reached (0 when caught up)."""
        return self.commits.lag_seconds(cursor, now)

    def _grow(self, top: int) -> None:
        if top > self.last_id:
            self.last_id = top
            self.commits.note(top)
            self.committed.set()

    async def refresh(self) -> int:
        """Read the high-water mark now (one stream-info request); wake the fold if it grew.

        The fold polls this: while JetStream cannot answer (leader election, NATS down) it
        reports what it knew, so the graph keeps serving and the fold lag shows the outage,
        and tries again a moment later."""
        try:
            self._grow(await self.high_water())
        except LogError as exc:
            self._retry_soon("refresh", exc)
        return self.last_id

    def _retry_soon(self, stage: str, exc: LogError) -> None:
        """Wake the fold again after a reconnect interval: nothing else would, when the
        messages it could not read are already counted in last_id."""
        log.warning("jetstream read failed, retrying", extra={"stage": stage, "error": str(exc)})
        loop = asyncio.get_running_loop()
        loop.call_later(max(self.params.js_reconnect_wait_s, 0.1), self.committed.set)

    async def _start_watch(self, last_seq: int) -> None:
        """A reader learns of new messages from a headers-only ordered consumer: the server
        pushes each new message's headers (no payload, no durable consumer), so the fold
        wakes within a millisecond without polling stream info."""
        assert self._js is not None
        p = self.params
        try:
            self._watch = await self._js.subscribe(
                p.js_subject,
                stream=p.js_stream,
                ordered_consumer=True,
                headers_only=True,
                config=api.ConsumerConfig(
                    deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                    opt_start_seq=last_seq + 1,
                ),
                cb=self._on_watch,
                idle_heartbeat=5.0,
            )
        except _ERRORS as exc:
            raise LogError(
                f"JetStream stream {p.js_stream}: cannot watch: {_describe(exc)}"
            ) from None

    async def _on_watch(self, msg: Msg) -> None:
        with contextlib.suppress(Exception):
            self._grow(high_water_of(msg.metadata.sequence.stream))

    @property
    def description(self) -> str:
        """Servers and stream, never credentials."""
        hosts = ",".join(s.split("://", 1)[-1] for s in self.servers)
        return f"nats://{hosts} stream {self.params.js_stream}"


class _Replan(LogError):
    """Internal: the events were larger than estimated; plan the commit again."""


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


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " ")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def open_log(
    url: str, cfg: Any, writer: bool = True, registry: CollectorRegistry | None = None
) -> JetStreamLog:
    """The JetStream log of a `nats://` URL with the [jetstream] settings of a Config (not yet
    open: `await log.open()`). Raises ValueError, one line, for a bad URL."""
    servers = parse_log_url(url)
    if isinstance(cfg, JetStreamParams):
        return JetStreamLog(servers, cfg, writer=writer, registry=registry)
    return JetStreamLog(servers, cfg.jetstream, writer=writer, registry=registry)
