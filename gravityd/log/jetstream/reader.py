"""The reading side of the JetStream log: whole messages by direct gets (no consumer, no
server-side state per replica), the high-water mark from stream info, and the headers-only
consumer that wakes a replica's fold within a millisecond of a new message."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from gravityd.core.events import FoldEvent
from gravityd.log import BadRows, LogError
from gravityd.log.jetstream.messages import SHIFT, SLOTS, decode_events, high_water_of
from gravityd.log.jetstream.metrics import JetStreamMetrics
from gravityd.log.jetstream.retry import describe
from gravityd.log.jetstream.stream import ERRORS
from gravityd.log.jetstream_params import JetStreamParams

if TYPE_CHECKING:
    from gravityd.log.jetstream.retry import OpenRetry


class StreamReader:
    """Reads events after a cursor; keeps the last message decoded."""

    def __init__(
        self,
        params: JetStreamParams,
        metrics: JetStreamMetrics,
        retry_soon: Callable[[str, LogError], None],
    ) -> None:
        self.params = params
        self.metrics = metrics
        self.retry_soon = retry_soon
        self._cache: tuple[int, list[FoldEvent], BadRows] | None = None

    async def high_water(self, js: JetStreamContext) -> int:
        """The last stream sequence's last slot: one stream-info request."""
        try:
            info = await js.stream_info(self.params.js_stream)
        except ERRORS as exc:
            self.metrics.errors.labels("stream_info").inc()
            raise LogError(f"JetStream stream {self.params.js_stream}: {describe(exc)}") from None
        return high_water_of(info.state.last_seq)

    async def read_after(
        self, js: JetStreamContext, cursor: int, limit: int
    ) -> tuple[list[FoldEvent], BadRows]:
        """Up to `limit` events after `cursor`, by direct gets of whole messages.

        No consumer is created: the cursor alone says where to go on (`next_by_subj` from its
        sequence), so any number of replicas read without server-side state. The last message
        decoded is kept, since the fold may take a message of 8,192 events in several steps.
        A read JetStream cannot answer returns what was read so far (maybe nothing) and wakes
        the fold again a moment later, so the fold task outlives an outage.
        """
        seq, slot = cursor >> SHIFT, cursor & (SLOTS - 1)
        start = seq + 1 if slot == SLOTS - 1 else seq
        start = max(start, 1)
        rows: list[FoldEvent] = []
        bad: BadRows = []
        while len(rows) < limit:
            try:
                got = await self._message_at_or_after(js, start)
            except LogError as exc:
                if rows:
                    break  # hand over what was read; the next call goes on from there
                self.retry_soon("read", exc)
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

    async def _message_at_or_after(
        self, js: JetStreamContext, seq: int
    ) -> tuple[int, list[FoldEvent], BadRows] | None:
        cache = self._cache
        if cache is not None and cache[0] == seq:
            return cache
        p = self.params
        try:
            self.metrics.reads.inc()
            try:
                raw = await js.get_msg(
                    p.js_stream, seq=seq, subject=p.js_subject, direct=True, next=True
                )
            except nats.errors.NoRespondersError:
                # Direct-get responders appear a moment after the stream (or a replica) does;
                # the leader's message-get API answers meanwhile.
                raw = await js.get_msg(p.js_stream, seq=seq, subject=p.js_subject, next=True)
        except nats.js.errors.NotFoundError:
            return None
        except ERRORS as exc:
            self.metrics.errors.labels("read").inc()
            raise LogError(
                f"JetStream stream {p.js_stream}: read failed: {describe(exc)}"
            ) from None
        mrows, mbad = decode_events(raw.seq, raw.data or b"")
        self._cache = (raw.seq, mrows, mbad)
        return self._cache


class Watch:
    """A reader learns of new messages from a headers-only ordered consumer: the server
    pushes each new message's headers (no payload, no durable consumer), so the fold wakes
    within a millisecond without polling stream info."""

    def __init__(self, params: JetStreamParams, grow: Callable[[int], None]) -> None:
        self.params = params
        self.grow = grow
        self._sub: Any = None

    async def start(self, js: JetStreamContext, last_seq: int, retry: OpenRetry) -> None:
        """Watch from after `last_seq`; the consumer's creation is asked again while the
        cluster is not ready (`retry`, the open's budget)."""
        p = self.params
        try:
            self._sub = await retry("watch", lambda: self._subscribe(js, last_seq))
        except ERRORS as exc:
            raise LogError(
                f"JetStream stream {p.js_stream}: cannot watch: {describe(exc)}"
            ) from None

    async def _subscribe(self, js: JetStreamContext, last_seq: int) -> Any:
        # A new config per try: nats-py fills in its deliver subject (see OtherWriters).
        return await js.subscribe(
            self.params.js_subject,
            stream=self.params.js_stream,
            ordered_consumer=True,
            headers_only=True,
            config=api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=last_seq + 1,
            ),
            cb=self._on_message,
            idle_heartbeat=5.0,
        )

    async def _on_message(self, msg: Msg) -> None:
        with contextlib.suppress(Exception):
            self.grow(high_water_of(msg.metadata.sequence.stream))

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        self._sub = None
