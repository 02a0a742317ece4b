"""The writing side of the JetStream log: group commits published as a few large messages.

**Durability.** A 202 is given once JetStream acknowledged every message of the commit, that
is once a quorum of the stream's replicas stored it. Each message carries a `Nats-Msg-Id`
unique to its writer and commit; a publish whose answer never came (leader lost, timeout) is
kept "in doubt" and published again, with the same id, before the writer's next commit:
JetStream stores it at most once inside its duplicate window and answers with its sequence.
Client retries are answered from the duplicate index (gravityd.log.jetstream.dedup).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from itertools import chain, repeat
from operator import itemgetter
from typing import Any, Protocol

import nats.errors
import nats.js.errors
from nats.js import api

from gravityd.core.events import ValidEvent
from gravityd.log import Appended, LogError
from gravityd.log.event_ids import new_event_id
from gravityd.log.jetstream.dedup import DedupIndex
from gravityd.log.jetstream.messages import (
    COUNT_HEADER,
    SLOTS,
    WRITER_HEADER,
    CommitMessage,
    encode_message,
    position,
)
from gravityd.log.jetstream.metrics import JetStreamMetrics
from gravityd.log.jetstream.stream import ERRORS, IN_DOUBT, describe
from gravityd.log.jetstream_params import JetStreamParams

log = logging.getLogger("gravityd.log.jetstream")

_EVENT_ID = itemgetter(0)  # ValidEvent.event_id
# An Appended built in C from a (position, event_id, duplicate) tuple: the answer to a large
# commit is one per event, and NamedTuple's own __new__ is a Python call each.
_appended = partial(tuple.__new__, Appended)

Batch = list[tuple[list[ValidEvent], float, asyncio.Future]]


class Owner(Protocol):
    """What the publisher needs of the log it writes for (JetStreamLog): its settings, the
    connection, the high-water mark it moves and the hooks it calls. Declared here so the
    writer does not import the log that builds it."""

    params: JetStreamParams
    metrics: JetStreamMetrics
    writer_id: str
    writer: bool
    clock: Callable[[], float]
    last_id: int
    on_commit: Callable[[int, float], None] | None
    on_commit_error: Callable[[], None] | None

    @property
    def connected(self) -> bool: ...

    @property
    def jetstream(self) -> Any: ...

    def advance(self, top: int, at: float | None = None) -> None: ...


class _Replan(LogError):
    """Internal: the events were larger than estimated; plan the commit again."""


class Publisher:
    """The log's writer task: takes queued appends, plans and publishes group commits, keeps
    up to js_max_inflight_commits of them in flight, and republishes the ones in doubt.

    It moves the log's high-water mark and calls its on_commit hooks (`self.log`)."""

    def __init__(self, owner: Owner, index: DedupIndex, ready: asyncio.Event) -> None:
        self.log = owner
        self.params = owner.params
        self.metrics = owner.metrics
        self.writer_id = owner.writer_id
        self.clock = owner.clock
        self.max_bytes = owner.params.js_message_max_bytes  # lowered to the server's at open
        self._index = index
        self._ready = ready  # the duplicate window is read: commits may go
        self._queue: deque[tuple[list[ValidEvent], float, asyncio.Future]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False
        self._commit_no = 0
        self._in_doubt: list[CommitMessage] = []
        self._bytes_per_event = 200.0
        self._inflight = asyncio.Semaphore(self.params.js_max_inflight_commits)
        self._inflight_tasks: set[asyncio.Task] = set()
        # (commit's future, message index, event_id -> slot) per message of commits in flight
        self._pending: list[tuple[asyncio.Future, int, dict[str, int]]] = []
        self._last_ack = 0.0  # monotonic time of the last publish acknowledged

    def start(self) -> None:
        self._task = asyncio.create_task(self._write_loop(), name="gravityd-js-writer")

    async def drain(self) -> None:
        """Stop taking events and wait until every queued one is published (or failed)."""
        self._closing = True
        if self._task is not None:
            self._wake.set()
            with contextlib.suppress(Exception):
                await asyncio.shield(self._task)

    async def stop(self) -> None:
        """Drain, then wait for the writer task to end."""
        await self.drain()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
            self._task = None

    async def append(
        self, events: list[ValidEvent], received_at: float | None = None
    ) -> list[Appended]:
        """Queue events for the next group commit; return once JetStream acknowledged them."""
        if self._closing or self._task is None:
            raise LogError(
                "the log is not open (NATS not reached yet, or closing)"
                if self.log.writer
                else "this log is read-only"
            )
        if not events:
            return []
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.append((events, received_at or self.clock(), fut))
        self._wake.set()
        return await fut

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

    async def _commit(self, batch: Batch) -> None:
        """Plan and send one group commit; a task waits for its acks while the next is sent.

        Up to js_max_inflight_commits commits are in flight: the acks of an R3 stream take
        milliseconds, and waiting for each before sending the next left the link idle.
        JetStream orders the messages of one connection as sent, so positions still grow in
        commit order. Ids of a commit in flight are in `_pending`, so a repeat of one in
        a later commit waits for that commit and answers its position.
        """
        started = time.perf_counter()
        try:
            if not self.log.connected:
                raise LogError("the event log cannot take writes: NATS is not connected")
            if not self._ready.is_set():
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
        batch: Batch,
        plan: list[list[Any]] | None,
        messages: list[CommitMessage],
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
        self.log.advance(top, now)
        if self.log.on_commit is not None:
            self.log.on_commit(new, time.perf_counter() - started)
        if failed is not None and self.log.on_commit_error is not None:
            self.log.on_commit_error()
        for (_, _, fut), out in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(out, LogError):
                fut.set_exception(LogError(str(out)))
            else:
                fut.set_result(out)

    def _unpend(self, messages: list[CommitMessage], done: asyncio.Future) -> None:
        self._pending = [entry for entry in self._pending if entry[0] is not done]

    def _in_flight(self, event_id: str) -> tuple[asyncio.Future, int, int] | None:
        """(commit, message, slot) of an event_id in a commit not yet acknowledged."""
        for done, k, slots in self._pending:
            i = slots.get(event_id)
            if i is not None:
                return done, k, i
        return None

    def _plan_fitting(self, batch: Batch) -> tuple[list[list[Any]] | None, list[CommitMessage]]:
        for _ in range(6):
            try:
                return self._plan(batch)
            except _Replan:
                continue
        raise LogError("events too large for one JetStream message (js_message_max_bytes)")

    def _plan(self, batch: Batch) -> tuple[list[list[Any]] | None, list[CommitMessage]]:
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
        by_bytes = int(self.max_bytes * 0.8 / max(self._bytes_per_event, 1.0))
        return max(1, min(self.params.js_message_max_events, by_bytes))

    def _pack(
        self,
        events: list[ValidEvent],
        ids: list[str],
        assigned: bytes,
        received_at: float,
        limit: int,
    ) -> list[CommitMessage]:
        messages: list[CommitMessage] = []
        for start in range(0, len(events), limit):
            part = slice(start, start + limit)
            n = len(ids[part])
            payload = encode_message(events[part], ids[part], assigned[part], received_at)
            if len(payload) > self.max_bytes:
                # Events larger than the estimate: learn, and plan the commit again.
                self._bytes_per_event = len(payload) / n * 1.2
                raise _Replan()
            self._bytes_per_event = 0.9 * self._bytes_per_event + 0.1 * (len(payload) / n)
            self._commit_no += 1
            messages.append(
                CommitMessage(
                    msg_id=f"{self.writer_id}-{self._commit_no}",
                    payload=payload,
                    ids=ids[part],
                    assigned=assigned[part],
                )
            )
        return messages

    async def _publish(self, messages: list[CommitMessage]) -> list[api.PubAck]:
        """Publish messages pipelined and wait for every ack, or LogError."""
        return await self._await_acks(messages, await self._send(messages), time.perf_counter())

    async def _send(self, messages: list[CommitMessage]) -> list[asyncio.Future]:
        """Hand the messages to the connection; their acks come back as futures."""
        js = self.log.jetstream
        p = self.params
        futures: list[asyncio.Future] = []
        try:
            for m in messages:
                futures.append(
                    await js.publish_async(
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
        except ERRORS as exc:
            for f in futures:
                f.cancel()
            self._doubt(messages)
            self.metrics.errors.labels("publish").inc()
            raise LogError(
                f"the event log cannot take writes: publish failed ({describe(exc)})"
            ) from None
        return futures

    def _note_ack(self, fut: asyncio.Future) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self._last_ack = time.monotonic()

    async def _await_acks(
        self, messages: list[CommitMessage], futures: list[asyncio.Future], started: float
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
        except IN_DOUBT as exc:
            for f in futures:
                f.cancel()
            self._doubt(messages)
            self.metrics.errors.labels("publish").inc()
            raise LogError(
                f"the event log cannot take writes: no answer from JetStream ({describe(exc)})"
            ) from None
        self.metrics.messages.inc(len(messages))
        self.metrics.publish_seconds.observe(time.perf_counter() - started)
        return list(acks)

    def _doubt(self, messages: list[CommitMessage]) -> None:
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
            self.log.last_id = max(self.log.last_id, base + m.count - 1)
            self.metrics.republished.labels("duplicate" if ack.duplicate else "stored").inc()

    def _fail(self, batch: list, exc: LogError) -> None:
        log.error("log commit failed", extra={"error": str(exc)})
        if self.log.on_commit_error is not None:
            self.log.on_commit_error()
        for _, _, fut in batch:
            if not fut.done():
                fut.set_exception(LogError(str(exc)))
