"""JetStreamLog: the EventLog over one JetStream stream. It owns the connection and the
high-water mark; the writer (Publisher), the duplicate index and its follower of other
writers (OtherWriters), and the reader (StreamReader, Watch) are its parts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext, api
from prometheus_client import CollectorRegistry

from gravityd.core.events import FoldEvent, ValidEvent
from gravityd.log import Appended, BadRows, CommitTimes, LogError, LogIdentity
from gravityd.log.jetstream.dedup import DedupIndex, OtherWriters
from gravityd.log.jetstream.messages import high_water_of
from gravityd.log.jetstream.metrics import JetStreamMetrics
from gravityd.log.jetstream.reader import StreamReader, Watch
from gravityd.log.jetstream.retry import OpenRetry, describe
from gravityd.log.jetstream.stream import (
    ERRORS,
    connect_options,
    ensure_stream,
    parse_log_url,
    stream_config,
    stream_origin,
)
from gravityd.log.jetstream.writer import Publisher
from gravityd.log.jetstream_params import JetStreamParams

log = logging.getLogger("gravityd.log.jetstream")


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
        self._index = DedupIndex(params.js_duplicate_window_s, params.js_dedup_max_ids)
        self._others = OtherWriters(
            params, self.writer_id, self._index, self.metrics, clock, self.advance
        )
        self._publisher = Publisher(self, self._index, self._others.ready)
        self._reader = StreamReader(params, self.metrics, self._retry_soon)
        self._watch = Watch(params, self.advance)
        self.metrics.dedup_ids.set_function(lambda: len(self._index))

    # ------------------------------------------------------------------ open and close

    @property
    def jetstream(self) -> JetStreamContext:
        """The JetStream context (the snapshot store shares the connection)."""
        if self._js is None:
            raise LogError("the JetStream log is not open")
        return self._js

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

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
        except (*ERRORS, ValueError) as exc:
            with contextlib.suppress(Exception):
                await nc.close()
            raise LogError(
                f"cannot reach NATS at {','.join(self.servers)}: {describe(exc)}"
            ) from None
        self._nc = nc
        self._js = self._nc.jetstream(timeout=p.js_ack_timeout_s)
        # A cluster just started (or restarted) answers late until its leaders are elected:
        # every request below is asked again while it is not ready, within js_open_timeout_s.
        retry = OpenRetry(p, self.metrics)
        try:
            info = await ensure_stream(self._js, p, self.writer, retry)
            self._publisher.max_bytes = min(p.js_message_max_bytes, self._nc.max_payload - 4096)
            self.origin = stream_origin(p.js_stream, info.created)
            self.last_id = high_water_of(info.state.last_seq)
            if self.writer:
                await self._others.start(self._js, info.state.last_seq, retry)
            else:
                await self._watch.start(self._js, info.state.last_seq, retry)
            self.identity = LogIdentity(self.origin, frozenset(), self.last_id)
        except ERRORS as exc:  # a transient answer (no responders, a timeout): retry later
            await self._close_conn()
            raise LogError(
                f"JetStream stream {p.js_stream}: cannot open it now: {describe(exc)}"
            ) from None
        except BaseException:
            await self._close_conn()
            raise
        if self.writer:
            self._publisher.start()
        log.info(
            "jetstream log opened",
            extra={
                "stream": p.js_stream,
                "origin": self.origin,
                "last_id": self.last_id,
                "retries": retry.retries,
            },
        )

    def stream_config(self) -> api.StreamConfig:
        """The stream gravityd creates, from the settings."""
        return stream_config(self.params)

    async def close(self) -> None:
        """Publish everything queued (and in doubt), then close the connection."""
        await self._publisher.stop()
        await self._close_conn()

    async def drain(self) -> None:
        """Stop taking events and wait until every queued one is published (or failed)."""
        await self._publisher.drain()

    async def _close_conn(self) -> None:
        await self._others.stop()
        await self._watch.stop()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
        self._nc = self._js = None

    async def _on_error(self, exc: Exception) -> None:
        log.warning("nats error", extra={"error": describe(exc)})

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
        return await self._publisher.append(events, received_at)

    async def lookup(self, event_ids: list[str]) -> dict[str, int]:
        """Positions of the event_ids this writer knows inside the duplicate window."""
        out = {}
        for eid in event_ids:
            pos = self._index.get(eid)
            if pos is not None:
                out[eid] = pos
        return out

    def message_events(self) -> int:
        """Events per message: the configured count, fewer when events are large."""
        return self._publisher.message_events()

    # ------------------------------------------------------------------ reading

    async def high_water(self) -> int:
        """The last stream sequence's last slot: one stream-info request."""
        if self._js is None:
            raise LogError("the JetStream log is not open")
        return await self._reader.high_water(self._js)

    async def read_after(self, cursor: int, limit: int) -> tuple[list[FoldEvent], BadRows]:
        """Up to `limit` events after `cursor` (see StreamReader.read_after)."""
        if self._js is None:
            raise LogError("the JetStream log is not open")
        return await self._reader.read_after(self._js, cursor, limit)

    # ------------------------------------------------------------------ fold lag

    def forget_through(self, cursor: int) -> None:
        self.commits.forget_through(cursor)

    def lag_seconds(self, cursor: int, now: float | None = None) -> float:
        """Age of the oldest commit seen here that the fold has not reached (0 when caught up)."""
        return self.commits.lag_seconds(cursor, now)

    def advance(self, top: int, at: float | None = None) -> None:
        """A commit up to position `top` became visible (at `at`, default now): wake the fold."""
        if top > self.last_id:
            self.last_id = top
            self.commits.note(top, at)
            self.committed.set()

    async def refresh(self) -> int:
        """Read the high-water mark now (one stream-info request); wake the fold if it grew.

        The fold polls this: while JetStream cannot answer (leader election, NATS down) it
        reports what it knew, so the graph keeps serving and the fold lag shows the outage,
        and tries again a moment later."""
        try:
            self.advance(await self.high_water())
        except LogError as exc:
            self._retry_soon("refresh", exc)
        return self.last_id

    def _retry_soon(self, stage: str, exc: LogError) -> None:
        """Wake the fold again after a reconnect interval: nothing else would, when the
        messages it could not read are already counted in last_id."""
        log.warning("jetstream read failed, retrying", extra={"stage": stage, "error": str(exc)})
        loop = asyncio.get_running_loop()
        loop.call_later(max(self.params.js_reconnect_wait_s, 0.1), self.committed.set)

    @property
    def description(self) -> str:
        """Servers and stream, never credentials."""
        hosts = ",".join(s.split("://", 1)[-1] for s in self.servers)
        return f"nats://{hosts} stream {self.params.js_stream}"


def open_jetstream_log(
    url: str, cfg: Any, writer: bool = True, registry: CollectorRegistry | None = None
) -> JetStreamLog:
    """The JetStream log of a `nats://` URL with the [jetstream] settings of a Config (not yet
    open: `await log.open()`). Raises ValueError, one line, for a bad URL."""
    servers = parse_log_url(url)
    if isinstance(cfg, JetStreamParams):
        return JetStreamLog(servers, cfg, writer=writer, registry=registry)
    return JetStreamLog(servers, cfg.jetstream, writer=writer, registry=registry)
