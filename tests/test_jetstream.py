"""The JetStream log backend and the snapshot object store, against a real 3-node cluster."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.js import JetStreamContext, api
from prometheus_client import CollectorRegistry

from bench.nats_nodes import NatsCluster
from gravityd.config import ConfigError, load_config
from gravityd.core.events import ValidationLimits, ValidEvent, validate_event
from gravityd.core.graph import GravityGraph, graph_signature
from gravityd.log import EventLog, LogError, LogMissing, NotALog
from gravityd.log.jetstream import JetStreamLog, open_jetstream_log, parse_log_url
from gravityd.log.jetstream.dedup import DedupIndex, OtherWriters
from gravityd.log.jetstream.messages import SHIFT, SLOTS, decode_events
from gravityd.log.jetstream.metrics import JetStreamMetrics
from gravityd.log.jetstream.retry import FIRST_BACKOFF_S, MAX_BACKOFF_S, OpenRetry, not_ready
from gravityd.log.jetstream_params import JetStreamParams
from gravityd.log.sqlite import SqliteLog
from gravityd.snapshots.files import list_snapshots, write_snapshot
from gravityd.snapshots.object_store import SnapshotStore

from .support import REPO
from .support.jetstream import stream_event_ids
from .support.sessions import radio_events

# The tests on the nats_cluster fixture are marked `cluster` by it (conftest.py); the pure
# parts run in the fast subset.
LIMITS = ValidationLimits()


def valid(events: list[dict]) -> list[ValidEvent]:
    return [validate_event(e, LIMITS, now=2e9) for e in events]


def with_ids(events: list[dict], prefix: str) -> list[dict]:
    return [{**e, "event_id": f"{prefix}-{i}"} for i, e in enumerate(events)]


def params(**kw: Any) -> JetStreamParams:
    kw.setdefault("js_ack_timeout_s", 2.0)
    kw.setdefault("js_connect_timeout_s", 1.0)
    kw.setdefault("js_reconnect_wait_s", 0.2)
    return JetStreamParams(**kw)


async def opened(cluster: NatsCluster, writer: bool = True, **kw: Any) -> JetStreamLog:
    log = open_jetstream_log(cluster.url, params(**kw), writer=writer)
    await log.open()
    return log


# --------------------------------------------------------------------------- pure parts


def test_log_url_parsing() -> None:
    assert parse_log_url("nats://a:4222,b:4223") == ["nats://a:4222", "nats://b:4223"]
    assert parse_log_url("nats://host") == ["nats://host:4222"]
    for bad in ("sqlite:///x.db", "nats://", "nats://a:1,,b:2", "nats://a:99999", "http://a:1"):
        with pytest.raises(ValueError) as info:
            parse_log_url(bad)
        assert "\n" not in str(info.value)


def test_a_foreign_or_damaged_message_is_one_bad_row() -> None:
    rows, bad = decode_events(5, b"not ours")
    assert bad == [((5 << SHIFT) + SLOTS - 1, "message")]
    assert rows[0][0] == (5 << SHIFT) + SLOTS - 1 and rows[0][3] is None


def test_jetstream_settings_are_checked_by_key(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[jetstream]\njs_replicas = 0\n")
    with pytest.raises(ConfigError, match="js_replicas"):
        load_config(f, env={})
    f.write_text("[jetstream]\njs_message_max_events = 9000\n")
    with pytest.raises(ConfigError, match="js_message_max_events"):
        load_config(f, env={})
    cfg = load_config(REPO / "config" / "gravityd.toml", env={"GRAVITYD_JS_REPLICAS": "1"})
    assert cfg.jetstream.js_replicas == 1


@pytest.mark.process
def test_loading_config_never_imports_nats() -> None:
    """A SQLite deployment needs no nats-py: the settings, the URL dispatch and the CLI load
    without it; the JetStream backend is what imports it."""
    code = (
        "import sys\n"
        "from gravityd.config import load_config\n"
        "import gravityd.commands.cli, gravityd.log.open, gravityd.log.jetstream_params\n"
        "load_config('config/gravityd.toml', env={})\n"
        "before = 'nats' in sys.modules\n"
        "import gravityd.log.jetstream\n"
        "print(before, 'nats' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "True"]


class FakeClock:
    """Monotonic time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def open_retry(clock: FakeClock, registry: CollectorRegistry | None = None, **kw: Any) -> OpenRetry:
    metrics = JetStreamMetrics(registry or CollectorRegistry())
    return OpenRetry(params(**kw), metrics, clock=clock, sleep=clock.sleep, jitter=lambda: 1.0)


class Failing:
    """A request that raises each of `errors` in turn, then answers; counts its calls."""

    def __init__(self, errors: list[BaseException], answer: Any = "answer") -> None:
        self.errors = errors
        self.answer = answer
        self.calls = 0

    async def __call__(self) -> Any:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.answer


async def test_a_request_the_cluster_is_not_ready_for_is_asked_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Timeouts, no responders and "temporarily unavailable" (a cluster electing leaders) are
    asked again, backing off, each retry logged and counted; then the answer is returned."""
    clock, registry = FakeClock(), CollectorRegistry()
    retry = open_retry(clock, registry)
    errors: list[BaseException] = [
        nats.errors.TimeoutError(),
        nats.errors.NoRespondersError(),
        nats.js.errors.ServiceUnavailableError(code=503, err_code=10008),
        nats.js.errors.ServerError(code=500, err_code=10009),
        TimeoutError(),
        *[nats.errors.TimeoutError() for _ in range(5)],
    ]
    request = Failing(errors)
    with caplog.at_level(logging.WARNING, logger="gravityd.log.jetstream"):
        assert await retry("consumer", request) == "answer"
    assert request.calls == 11 and retry.retries == 10
    got = registry.get_sample_value("gravityd_js_open_retries_total", {"stage": "consumer"})
    assert got == 10
    # Doubling back-off, bounded.
    assert clock.slept[0] == FIRST_BACKOFF_S and max(clock.slept) == MAX_BACKOFF_S
    assert clock.slept == sorted(clock.slept)
    lines = [r for r in caplog.records if r.getMessage().startswith("jetstream not ready")]
    fields = [vars(r) for r in lines]  # the structured log's extra= fields
    assert [f["attempt"] for f in fields] == list(range(1, 11))
    assert {f["stage"] for f in fields} == {"consumer"} and "TimeoutError" in fields[0]["error"]


async def test_asking_again_stops_at_the_open_deadline() -> None:
    """A cluster never ready: the last error is raised once js_open_timeout_s has passed,
    every stage of the open sharing the deadline; no pause runs past it."""
    clock = FakeClock()
    retry = open_retry(clock, js_open_timeout_s=5.0)
    never = Failing([nats.errors.TimeoutError() for _ in range(1000)])
    with pytest.raises(nats.errors.TimeoutError):
        await retry("stream_info", never)
    assert sum(clock.slept) == pytest.approx(5.0) and never.calls > 5
    again = Failing([nats.errors.TimeoutError()])
    with pytest.raises(nats.errors.TimeoutError):
        await retry("consumer", again)  # the same open: its budget is spent
    assert again.calls == 1
    once = open_retry(FakeClock(), js_open_timeout_s=0.0)
    with pytest.raises(nats.errors.TimeoutError):
        await once("stream_info", Failing([nats.errors.TimeoutError()]))
    assert once.retries == 0


async def test_an_answer_is_not_asked_again() -> None:
    """Not found, a bad request or a closed connection will not change: raised at once."""
    for exc in (
        nats.js.errors.NotFoundError(code=404, err_code=10059),
        nats.js.errors.BadRequestError(code=400, err_code=10058),
        nats.js.errors.ServiceUnavailableError(code=503, err_code=10039),
        nats.errors.ConnectionClosedError(),
    ):
        clock = FakeClock()
        retry = open_retry(clock)
        request = Failing([exc])
        with pytest.raises(type(exc)):
            await retry("stream_info", request)
        assert request.calls == 1 and clock.slept == [] and not not_ready(exc)


class FlakyJetStream:
    """js.subscribe timing out `fails` times, as consumer creation does while a stream's
    leader is being elected; then a subscription. Like nats-py it fills in the config's
    deliver subject."""

    def __init__(self, fails: int) -> None:
        self.fails = fails
        self.configs: list[api.ConsumerConfig] = []

    async def subscribe(self, subject: str, *, config: api.ConsumerConfig, **kw: Any) -> Any:
        assert config.deliver_subject is None, "a config used by an earlier try"
        config.deliver_subject = f"_INBOX.{len(self.configs)}"
        self.configs.append(config)
        if len(self.configs) <= self.fails:
            raise nats.errors.TimeoutError()
        return self


async def test_the_duplicate_window_is_read_once_the_consumer_is_created() -> None:
    """The CI failure "cannot read the duplicate window: TimeoutError": creating the writer's
    ordered consumer timed out once on a cluster just started. Now it is asked again with a
    new config (its own deliver subject) and the open goes on; past the deadline, the same
    one-line LogError as before."""
    p = params()
    registry = CollectorRegistry()
    metrics = JetStreamMetrics(registry)
    clock = FakeClock()
    others = OtherWriters(p, "w", DedupIndex(60, 100), metrics, clock, lambda top: None)
    js = FlakyJetStream(fails=3)
    await others.start(
        cast(JetStreamContext, js), 0, OpenRetry(p, metrics, clock=clock, sleep=clock.sleep)
    )
    assert len(js.configs) == 4 and others.ready.is_set()
    assert len({c.deliver_subject for c in js.configs}) == 4
    assert registry.get_sample_value("gravityd_js_open_retries_total", {"stage": "consumer"}) == 3

    stuck = OtherWriters(p, "w", DedupIndex(60, 100), metrics, clock, lambda top: None)
    retry = OpenRetry(p, metrics, clock=clock, sleep=clock.sleep)
    with pytest.raises(LogError) as info:
        await stuck.start(cast(JetStreamContext, FlakyJetStream(fails=10_000)), 0, retry)
    assert str(info.value) == (
        "JetStream stream GRAVITYD_EVENTS: cannot read the duplicate window: "
        "TimeoutError: nats: timeout"
    )


# --------------------------------------------------------------------------- against a cluster


async def test_append_read_high_water_lookup(nats_cluster: NatsCluster) -> None:
    w = await opened(nats_cluster)
    r = await opened(nats_cluster, writer=False)
    try:
        assert isinstance(w, EventLog) and isinstance(r, EventLog)
        assert await r.high_water() == 0 and await r.read_after(0, 10) == ([], [])
        a = valid(with_ids(radio_events(20, seed=1), "a"))
        b = valid(radio_events(5, seed=2))  # no event_ids: the log assigns them
        first = await w.append(a)
        second = await w.append(b)
        ids = [x.id for x in first + second]
        assert ids == sorted(set(ids)), "positions unique and strictly increasing"
        assert not any(x.duplicate for x in first + second)
        assert [x.event_id for x in first] == [e.event_id for e in a]
        assert all(len(x.event_id) == 36 for x in second)
        assert w.last_id == ids[-1] == await r.high_water()
        assert (ids[-1] & (SLOTS - 1)) == SLOTS - 1, "a message's events end at its last slot"
        rows, bad = await r.read_after(0, 10_000)
        assert bad == []
        assert [row[0] for row in rows] == ids
        want = [
            (e.session_id, e.track_id, e.event_type, e.ts, e.elapsed_ms, e.context) for e in a + b
        ]
        assert [tuple(row[1:]) for row in rows] == want
        # Small steps through one message give the same rows as one big read.
        step: list = []
        cursor = 0
        while True:
            part, _ = await r.read_after(cursor, 7)
            if not part:
                break
            assert len(part) <= 7
            step.extend(part)
            cursor = part[-1][0]
        assert step == rows
        assert await w.lookup([a[3].event_id, "nope"]) == {a[3].event_id: first[3].id}
        # The same events folded from this log and from SQLite give the same graph.
        gj = GravityGraph()
        gj.fold(rows)
        sq = SqliteLog(nats_cluster.nodes[0].dir.parent / "same.db")
        await sq.open()
        try:
            await sq.append(a + b)
            srows, _ = await sq.read_after(0, 10_000)
        finally:
            await sq.close()
        gs = GravityGraph()
        gs.fold(srows)
        assert graph_signature(gj)[1:] == graph_signature(gs)[1:]
        assert gj.edge_count > 0
    finally:
        await w.close()
        await r.close()


async def test_large_batches_split_into_messages_below_the_payload_limit(
    nats_cluster: NatsCluster,
) -> None:
    w = await opened(nats_cluster, js_message_max_bytes=64 * 1024)
    try:
        meta = {"elapsed_ms": 10, "pad": "x" * 300}
        events = [
            {
                "session_id": f"big-{i % 50}",
                "track_id": "6f1c1d2e-8b7a-4a52-9a37-0d7d2f6f2a11",
                "event_type": "skip",
                "meta": meta,
                "event_id": f"big-{i}",
            }
            for i in range(3000)
        ]
        out = await w.append(valid(events))
        seqs = {x.id >> SHIFT for x in out}
        assert len(seqs) > 10, "3000 events of ~400 bytes cannot fit one 64 KiB message"
        assert [x.id for x in out] == sorted({x.id for x in out})
        assert len(await stream_event_ids(nats_cluster)) == 3000
    finally:
        await w.close()


async def test_retried_batch_is_a_duplicate_with_the_first_positions(
    nats_cluster: NatsCluster,
) -> None:
    w1 = await opened(nats_cluster)
    try:
        batch = valid(with_ids(radio_events(30, seed=3), "r"))
        first = await w1.append(batch)
        # The client retries, regrouped: halves, reversed, with new events mixed in, and a
        # repeat inside one request.
        fresh = valid(with_ids(radio_events(3, seed=4), "n"))
        retry = batch[::-1][: len(batch) // 2] + fresh + [batch[0]]
        again = await w1.append(retry)
        by_id = {x.event_id: x.id for x in first}
        for e, x in zip(retry, again, strict=True):
            if e.event_id.startswith("r-"):
                assert x.duplicate and x.id == by_id[e.event_id]
            else:
                assert not x.duplicate
        # A second writer (another machine behind the load balancer) knows them too.
        w2 = await opened(nats_cluster)
        try:
            other = await w2.append(batch[len(batch) // 2 :])
            assert all(x.duplicate for x in other)
            assert [x.id for x in other] == [x.id for x in first[len(batch) // 2 :]]
            # ...and what w2 stores reaches w1's index through the stream.
            late = valid(with_ids(radio_events(2, seed=5), "late"))
            stored = await w2.append(late)
            deadline = time.monotonic() + 10
            while len(await w1.lookup([e.event_id for e in late])) < len(late):
                assert time.monotonic() < deadline, "w1 never learnt w2's event_ids"
                await asyncio.sleep(0.01)  # the tail is a push subscription: poll its result
            back = await w1.append(late)
            assert [x.id for x in back] == [x.id for x in stored] and all(x.duplicate for x in back)
        finally:
            await w2.close()
        ids = await stream_event_ids(nats_cluster)
        assert len(ids) == len(set(ids)) == len(batch) + len(fresh) + len(late)
    finally:
        await w1.close()


async def test_a_writer_started_later_knows_the_duplicate_window(nats_cluster: NatsCluster) -> None:
    w1 = await opened(nats_cluster)
    batch = valid(with_ids(radio_events(10, seed=6), "w"))
    first = await w1.append(batch)
    await w1.close()
    w2 = await opened(nats_cluster)
    try:
        again = await w2.append(batch)
        assert all(x.duplicate for x in again)
        assert [x.id for x in again] == [x.id for x in first]
    finally:
        await w2.close()


async def test_stream_created_with_the_settings_and_a_contradicting_one_refused(
    nats_cluster: NatsCluster,
) -> None:
    with pytest.raises(LogMissing, match="does not exist"):
        await opened(nats_cluster, writer=False)
    w = await opened(nats_cluster)
    nc = await nats.connect(nats_cluster.nodes[1].url)
    try:
        info = await nc.jetstream().stream_info("GRAVITYD_EVENTS")
        assert info.config.num_replicas == 3 and info.config.duplicate_window == 120.0
        assert info.config.allow_direct and info.config.subjects == ["gravityd.events"]
        assert info.cluster is not None and len(info.cluster.replicas or []) == 2
    finally:
        await nc.close()
        await w.close()
    for kw, needle in [
        ({"js_replicas": 1}, "replicas"),
        ({"js_duplicate_window_s": 30.0}, "duplicate_window"),
        ({"js_subject": "other.events"}, "js_subject"),
        ({"js_max_age_days": 7.0}, "max_age"),
    ]:
        with pytest.raises(NotALog) as info:
            await opened(nats_cluster, **kw)
        msg = str(info.value)
        assert needle in msg and "\n" not in msg and "GRAVITYD_EVENTS" in msg


async def test_leader_sigkilled_during_appends(nats_cluster: NatsCluster) -> None:
    """Clients retry what failed; every acknowledged event is in the stream exactly once."""
    w = await opened(nats_cluster, js_ack_timeout_s=1.0)
    acked: dict[str, int] = {}
    failures = 0
    rnd = random.Random(7)
    all_events = valid(with_ids(radio_events(400, seed=8), "k"))
    chunks: list[list[ValidEvent]] = []
    while sum(map(len, chunks)) < len(all_events):
        at = sum(map(len, chunks))
        chunks.append(all_events[at : at + rnd.randint(20, 120)])
    killed = asyncio.Event()

    async def client(my: list[list[ValidEvent]]) -> None:
        nonlocal failures
        for chunk in my:
            deadline = time.monotonic() + 60
            while True:
                try:
                    out = await w.append(chunk)
                except LogError:
                    failures += 1
                    assert time.monotonic() < deadline, "never recovered from the leader's death"
                    await asyncio.sleep(0.05)  # a client's back-off before its retry
                    continue
                for x in out:
                    assert acked.setdefault(x.event_id, x.id) == x.id, "an id moved"
                break
            if len(acked) > len(all_events) // 3 and not killed.is_set():
                killed.set()

    leader = nats_cluster.wait_leader("GRAVITYD_EVENTS")
    tasks = [asyncio.create_task(client(chunks[i::4])) for i in range(4)]
    await killed.wait()
    nats_cluster.kill(leader)
    await asyncio.gather(*tasks)
    try:
        assert len(acked) == len(all_events)
        new_leader = nats_cluster.wait_leader("GRAVITYD_EVENTS", not_index=leader)
        assert new_leader != leader
        ids = await stream_event_ids(nats_cluster)
        assert sorted(ids) == sorted(acked), "each acknowledged event once, nothing else"
        rows, _ = await w.read_after(0, 100_000)
        assert sorted(r[0] for r in rows) == sorted(acked.values())
    finally:
        await w.close()
    # The killed node comes back and catches up.
    nats_cluster.start_node(leader)


async def test_a_write_in_flight_when_the_leader_dies_is_acknowledged_by_the_next(
    nats_cluster: NatsCluster,
) -> None:
    """With js_ack_timeout_s past NATS's longest election (9 s), a leader's death fails no
    write (docs/nats-cluster.md): what it dropped is sent again, same message ids, until the
    new leader answers (js_publish_retry_s, or at once on "no responders"), stored once."""
    first = await opened(nats_cluster)  # creates the stream
    await first.close()
    leader = nats_cluster.wait_leader("GRAVITYD_EVENTS")
    follower = next(n for n in nats_cluster.nodes if n.index != leader)
    # Connected to a node that survives: the test is about the stream's leader, not the link.
    w = JetStreamLog([follower.url], params(js_ack_timeout_s=15.0, js_publish_retry_s=0.25))
    await w.open()
    events = valid(with_ids(radio_events(300, seed=9), "r"))
    chunks = [events[i : i + 10] for i in range(0, len(events), 10)]
    acked: dict[str, int] = {}
    half = asyncio.Event()

    async def client(my: list[list[ValidEvent]]) -> None:
        for chunk in my:
            for x in await w.append(chunk):  # a LogError here fails the test
                acked[x.event_id] = x.id
            if len(acked) >= len(events) // 3:
                half.set()

    tasks = [asyncio.create_task(client(chunks[i::3])) for i in range(3)]
    await half.wait()
    nats_cluster.kill(leader)
    try:
        await asyncio.gather(*tasks)
        assert len(acked) == len(events)
        ids = await stream_event_ids(nats_cluster)
        assert sorted(ids) == sorted(acked), "each acknowledged event once, nothing else"
    finally:
        await w.close()


async def test_nats_stopped_entirely_then_back(nats_cluster: NatsCluster) -> None:
    w = await opened(nats_cluster, js_ack_timeout_s=1.0)
    r = await opened(nats_cluster, writer=False, js_ack_timeout_s=1.0)
    try:
        before = await w.append(valid(with_ids(radio_events(5, seed=9), "b")))
        nats_cluster.stop()
        started = time.monotonic()
        with pytest.raises(LogError) as info:
            await w.append(valid(with_ids(radio_events(2, seed=10), "d")))
        assert "\n" not in str(info.value)
        with pytest.raises(LogError):
            await r.high_water()
        assert time.monotonic() - started < 30
        nats_cluster.start()
        down = valid(with_ids(radio_events(2, seed=10), "d"))
        deadline = time.monotonic() + 60
        while True:  # the same client objects reconnect by themselves
            try:
                out = await w.append(down)
                break
            except LogError:
                assert time.monotonic() < deadline, "the writer never recovered"
                await asyncio.sleep(0.1)  # a client's retry interval
        while True:
            try:
                top = await r.high_water()
                break
            except LogError:
                assert time.monotonic() < deadline, "the reader never recovered"
                await asyncio.sleep(0.1)
        assert top >= out[-1].id > before[-1].id
        rows, _ = await r.read_after(0, 10_000)
        assert [x[0] for x in rows][-len(out) :] == [x.id for x in out]
        ids = await stream_event_ids(nats_cluster)
        assert len(ids) == len(set(ids))
    finally:
        await w.close()
        await r.close()


class RetrySeen(logging.Handler):
    """Sets `event` when the backend logs that it asks JetStream again at open."""

    def __init__(self) -> None:
        super().__init__()
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("jetstream not ready at open"):
            self.event.set()


async def test_opening_while_the_cluster_restarts_waits_for_jetstream(
    nats_cluster: NatsCluster,
) -> None:
    """Nodes just started answer no JetStream request until they elect a meta leader, then
    the stream's leader: an open meeting that asks again (logged, counted) and opens once
    JetStream answers, instead of failing on the first timeout. One node of three is started
    first, so there is no quorum, hence no leader, until the test starts the others."""
    w = await opened(nats_cluster)
    before = await w.append(valid(with_ids(radio_events(5, seed=17), "restart")))
    await w.close()
    nats_cluster.stop()
    nats_cluster.start_node(0, ready=False)
    registry = CollectorRegistry()
    log = JetStreamLog(
        parse_log_url(nats_cluster.url), params(js_open_timeout_s=120.0), registry=registry
    )
    seen = RetrySeen()
    logger = logging.getLogger("gravityd.log.jetstream")
    logger.addHandler(seen)
    try:
        opening = asyncio.create_task(log.open())
        retried = asyncio.create_task(seen.event.wait())
        await asyncio.wait({opening, retried}, return_when=asyncio.FIRST_COMPLETED, timeout=60)
        retried.cancel()
        assert not opening.done(), f"open gave up: {opening.exception()!r}"
        assert seen.event.is_set(), "no retry logged while one node of three runs"
        await asyncio.to_thread(nats_cluster.start)  # the other two: a quorum again
        await asyncio.wait_for(opening, timeout=120)
    finally:
        logger.removeHandler(seen)
    try:
        assert log.last_id >= before[-1].id
        retries = registry.get_sample_value(
            "gravityd_js_open_retries_total", {"stage": "stream_info"}
        )
        assert retries is not None and retries >= 1
        after = await log.append(valid(with_ids(radio_events(2, seed=18), "after")))
        assert after[0].id > before[-1].id
        ids = await stream_event_ids(nats_cluster)
        assert sorted(ids) == sorted(x.event_id for x in before + after)
    finally:
        await log.close()


async def test_unreachable_at_start_is_one_clear_line(tmp_path: Path) -> None:
    from .support import free_port

    log = open_jetstream_log(f"nats://127.0.0.1:{free_port()}", params(js_connect_timeout_s=0.5))
    with pytest.raises(LogError) as info:
        await log.open()
    assert "cannot reach NATS" in str(info.value) and "\n" not in str(info.value)


async def test_snapshots_in_the_object_store(nats_cluster: NatsCluster, tmp_path: Path) -> None:
    w = await opened(nats_cluster, js_bucket="snaps", js_snapshot_keep=2)
    try:
        rows_in = valid(with_ids(radio_events(60, seed=11), "o"))
        await w.append(rows_in)
        rows, _ = await w.read_after(0, 10_000)
        gg = GravityGraph()
        gg.fold(rows)
        local = tmp_path / "writer-snaps"
        store = SnapshotStore.for_log(w)  # the [jetstream] bucket settings
        await store.open(create=True)
        assert await store.download_newest(tmp_path / "empty") is None
        good = write_snapshot(gg, local, origin=w.origin)
        await store.upload(good, gg.cursor)
        # A newer object that is corrupt (one flipped byte), and one of another stream.
        data = bytearray(good.read_bytes())
        data[len(data) // 2] ^= 0xFF
        bad = local / good.name.replace("000000000001", "000000000002")
        bad.write_bytes(bytes(data))
        await store.upload(bad, gg.cursor)
        other = SnapshotStore(w.jetstream, "snaps", "ANOTHER@2020", replicas=3, keep=5)
        await other.open(create=False)
        foreign = write_snapshot(gg, tmp_path / "foreign", origin="ANOTHER@2020")
        foreign = foreign.rename(
            foreign.with_name(good.name.replace("000000000001", "000000000003"))
        )
        await other.upload(foreign, gg.cursor)
        replica_dir = tmp_path / "replica-snaps"
        missing = SnapshotStore(w.jetstream, "no-such-bucket", w.origin)
        await missing.open(create=False)
        assert await missing.download_newest(replica_dir) is None
        reader = SnapshotStore(w.jetstream, "snaps", w.origin)
        await reader.open(create=False)
        got = await reader.download_newest(replica_dir)
        assert got is not None
        path, header, loaded = got
        assert path.name == good.name and header["origin"] == w.origin
        assert graph_signature(loaded) == graph_signature(gg)
        assert [s.path.name for s in list_snapshots(replica_dir)] == [good.name]
        assert not [p for p in replica_dir.iterdir() if p.name.endswith(".tmp")]
        # The writer keeps `keep` objects.
        for _ in range(2):
            gg.fold([])
            await store.upload(write_snapshot(gg, local, origin=w.origin), gg.cursor)
        assert len(await store.names()) == 2
    finally:
        await w.close()


def test_stream_config_round_trips_settings() -> None:
    p = dataclasses.replace(params(), js_max_age_days=2.0, js_max_bytes=10_000_000)
    cfg = JetStreamLog(["nats://x:1"], p).stream_config()
    assert cfg.max_age == 2 * 86400 and cfg.max_bytes == 10_000_000 and cfg.num_replicas == 3


async def test_a_replica_is_woken_by_new_messages(nats_cluster: NatsCluster) -> None:
    w = await opened(nats_cluster)
    r = await opened(nats_cluster, writer=False)
    try:
        assert r.readonly and not w.readonly and r.last_id == 0
        r.committed.clear()
        out = await w.append(valid(with_ids(radio_events(3, seed=12), "wake")))
        # The headers-only watch, not a poll, tells the reader: wait on its signal.
        await asyncio.wait_for(r.committed.wait(), timeout=10)
        assert r.last_id == out[-1].id == await r.refresh()
        assert r.lag_seconds(0) >= 0 and r.lag_seconds(r.last_id) == 0
        assert "GRAVITYD_EVENTS" in r.description and "nats://" in r.description
        with pytest.raises(LogError, match="read-only"):
            await r.append(valid(radio_events(1, seed=13)))
    finally:
        await w.close()
        await r.close()


async def test_concurrent_repeats_across_commits_in_flight(nats_cluster: NatsCluster) -> None:
    """Overlapping requests at once (some land in a commit still awaiting its ack): every
    answer for an event_id carries one position, exactly one says it was new, and the stream
    holds each id once."""
    # One request per commit, four commits in flight: repeats meet commits awaiting acks.
    w = await opened(nats_cluster, js_max_inflight_commits=4, js_commit_max_events=300)
    try:
        base = valid(with_ids(radio_events(200, seed=14), "c"))
        rnd = random.Random(15)
        requests = [rnd.sample(base, 300) for _ in range(12)]
        answers = await asyncio.gather(*(w.append(r) for r in requests))
        seen: dict[str, set[int]] = {}
        new: dict[str, int] = {}
        for out in answers:
            for x in out:
                seen.setdefault(x.event_id, set()).add(x.id)
                if not x.duplicate:
                    new[x.event_id] = new.get(x.event_id, 0) + 1
        assert all(len(p) == 1 for p in seen.values())
        assert all(v == 1 for v in new.values()) and set(new) == set(seen)
        ids = await stream_event_ids(nats_cluster)
        assert len(ids) == len(set(ids)) == len(seen)
    finally:
        await w.close()
