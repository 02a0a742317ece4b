"""The writer-side duplicate index: event_id -> position over the duplicate window, of this
writer's commits and, read from the stream by an ordered consumer, every other writer's.

Message ids cannot catch a client's retry, which the writer may group differently; this index
answers such a retry `duplicate: true` with the first positions. Only the ids block of another
writer's message is decoded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from gravityd.log import LogError
from gravityd.log.jetstream.messages import (
    SLOTS,
    WRITER_HEADER,
    CommitMessage,
    decode_ids,
    high_water_of,
    position,
)
from gravityd.log.jetstream.metrics import JetStreamMetrics
from gravityd.log.jetstream.retry import describe
from gravityd.log.jetstream.stream import ERRORS
from gravityd.log.jetstream_params import JetStreamParams

if TYPE_CHECKING:
    from gravityd.log.jetstream.retry import OpenRetry


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


class OtherWriters:
    """Follows the stream from the start of the duplicate window and puts every other
    writer's client event_ids into the index; each message seen also moves the log's
    high-water mark (`grow`)."""

    def __init__(
        self,
        params: JetStreamParams,
        writer_id: str,
        index: DedupIndex,
        metrics: JetStreamMetrics,
        clock: Callable[[], float],
        grow: Callable[[int], None],
    ) -> None:
        self.params = params
        self.writer_id = writer_id
        self.index = index
        self.metrics = metrics
        self.clock = clock
        self.grow = grow
        self.ready = asyncio.Event()  # set once the duplicate window is read
        self.seq = 0  # the last stream sequence seen
        self._target = 0
        self._sub: Any = None

    async def start(self, js: JetStreamContext, last_seq: int, retry: OpenRetry) -> None:
        """Read the duplicate window's ids of every writer, then follow the stream.

        open() returns once the window is read, so the first answer already knows every
        event_id the stream got in it. Its requests are asked again while the cluster is not
        ready (`retry`, the open's budget): right after the nodes start, creating the consumer
        may time out while the stream's leader is being elected.
        """
        p = self.params
        self._target = last_seq
        start_time = datetime.now(UTC) - timedelta(seconds=p.js_duplicate_window_s)
        try:
            from_window = last_seq > 0 and not await retry(
                "last_message", lambda: self._last_message_older_than(js, last_seq, start_time)
            )
            if not from_window:
                self.ready.set()  # nothing in the window: only what comes next
            self._sub = await retry(
                "consumer", lambda: self._subscribe(js, last_seq, start_time, from_window)
            )
            await asyncio.wait_for(self.ready.wait(), timeout=max(30.0, 10 * p.js_ack_timeout_s))
        except (*ERRORS, TimeoutError) as exc:
            raise LogError(
                f"JetStream stream {p.js_stream}: cannot read the duplicate window: {describe(exc)}"
            ) from None

    async def _subscribe(
        self, js: JetStreamContext, last_seq: int, start_time: datetime, from_window: bool
    ) -> Any:
        """The ordered consumer, from the window's start or after `last_seq`. Its config is
        built anew for each try: nats-py fills in the deliver subject, and a consumer created
        after its request timed out must not deliver to the same inbox as the next one."""
        if from_window:
            config = api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_TIME,
                opt_start_time=start_time,
                headers_only=False,
            )
        else:
            config = api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=last_seq + 1
            )
        return await js.subscribe(
            self.params.js_subject,
            stream=self.params.js_stream,
            ordered_consumer=True,
            config=config,
            cb=self._on_message,
            idle_heartbeat=5.0,
            pending_bytes_limit=256 * 1024 * 1024,
        )

    async def _last_message_older_than(
        self, js: JetStreamContext, seq: int, when: datetime
    ) -> bool:
        try:
            try:
                msg = await js.get_msg(self.params.js_stream, seq=seq, direct=True)
            except nats.errors.NoRespondersError:
                # Direct get has no responders yet (a new stream, an election): ask the leader.
                msg = await js.get_msg(self.params.js_stream, seq=seq, direct=False)
        except nats.js.errors.NotFoundError:
            return True
        return msg.time is not None and msg.time < when

    async def _on_message(self, msg: Msg) -> None:
        try:
            seq = msg.metadata.sequence.stream
        except Exception:
            return
        self.seq = seq
        self.grow(high_water_of(seq))
        headers = msg.headers or {}
        if headers.get(WRITER_HEADER) != self.writer_id:
            decoded = decode_ids(msg.data)
            if decoded is not None:
                ids, assigned = decoded
                m = CommitMessage("", b"", ids, assigned)
                self.index.add(*m.client_pairs(position(seq, SLOTS - len(ids))), self.clock())
                self.metrics.tail_messages.inc()
        if seq >= self._target:
            self.ready.set()

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        self._sub = None
