"""Ingest benchmark: POST /event and POST /events, each beside its ceiling in the same run.

- POST /event req/s against a bare aiohttp handler that only parses the same JSON (wrk).
- POST /events events/s against raw SQLite executemany into the same schema and sync mode.
- The group commit itself, in process, at `--connections` concurrent producers: the log's own
  writer thread (gravityd.log.sqlite.SqliteLog.append) against the same group commit through
  aiosqlite's public API (executemany, then commit), beside raw executemany. Best of 3
  interleaved runs each. This is the measurement behind docs/design.md's choice of the thread
  (aiosqlite comes from the `bench` extra: pip install '.[bench]').

    python -m bench.ingest                     # full run (about two minutes)
    python -m bench.ingest --duration 3        # quicker
    python -m bench.ingest --group-commit-only # the thread against aiosqlite alone
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections import deque
from pathlib import Path

import orjson

from bench.common import bare_server, gravityd, post_script, tempdir, wrk
from gravityd.core.events import ValidEvent
from gravityd.log.event_ids import new_event_id, new_event_ids
from gravityd.log.sqlite import INSERT_EVENT, SqliteLog
from gravityd.log.sqlite_schema import connect_sync

EVENT = {
    "session_id": "bench-session-1",
    "track_id": str(uuid.uuid4()),
    "event_type": "play_10s",
    "context": "radio",
    "meta": {"elapsed_ms": 10000},
}


def batch_body(n: int) -> bytes:
    return orjson.dumps(
        [
            {**EVENT, "session_id": f"s{i % 200}", "track_id": str(uuid.UUID(int=i))}
            for i in range(n)
        ]
    )


def raw_sqlite(workdir: Path, total: int, batch: int, synchronous: str) -> float:
    """The ceiling of /events: executemany + commit of the same rows, no HTTP, no validation."""
    conn = connect_sync(workdir / "raw.db", synchronous)
    now = time.time()
    rows = [
        (
            i,
            new_event_id(),
            f"s{i % 200}",
            str(uuid.UUID(int=i)),
            "play_10s",
            None,
            now,
            now,
            "radio",
            '{"elapsed_ms":10000}',
            10000,
        )
        for i in range(1, total + 1)
    ]
    started = time.perf_counter()
    for i in range(0, total, batch):
        conn.execute("BEGIN")
        conn.executemany(INSERT_EVENT, rows[i : i + batch])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return total / elapsed


def valid_event(i: int) -> ValidEvent:
    return ValidEvent(
        None, f"s{i % 200}", str(uuid.UUID(int=i)), "play_10s", None, time.time(), "radio",
        '{"elapsed_ms":10000}', 10000,
    )


async def _produce(append, producers: int, per_append: int, seconds: float) -> int:
    """`producers` coroutines appending `per_append` events each time, for `seconds`."""
    done = 0
    stop = time.perf_counter() + seconds

    async def one(k: int) -> None:
        nonlocal done
        i = k * 10_000_000
        while time.perf_counter() < stop:
            await append([valid_event(i + j) for j in range(per_append)])
            i += per_append
            done += per_append

    await asyncio.gather(*(one(k) for k in range(producers)))
    return done


async def thread_log(path: Path, producers: int, per_append: int, seconds: float) -> float:
    """The log's own group commit: one writer thread, one hop per commit."""
    log = SqliteLog(path)
    await log.open()
    try:
        t0 = time.perf_counter()
        n = await _produce(log.append, producers, per_append, seconds)
        return n / (time.perf_counter() - t0)
    finally:
        await log.close()


class AiosqliteLog:
    """The same group commit (queue, drain, assign ids, one transaction) through aiosqlite's
    public API: rows are built on the loop, then `executemany` and `commit` each hop to its
    thread. Bench-only: it exists to be measured against SqliteLog."""

    def __init__(self, db) -> None:
        self.db = db
        self.queue: deque[tuple[list[ValidEvent], float, asyncio.Future]] = deque()
        self.wake = asyncio.Event()
        self.next_id = 1
        self.task = asyncio.create_task(self.loop())

    async def append(self, events: list[ValidEvent]) -> list[int]:
        fut = asyncio.get_running_loop().create_future()
        self.queue.append((events, time.time(), fut))
        self.wake.set()
        return await fut

    async def loop(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.queue:
                batch = []
                count = 0
                while self.queue and count < 20_000:
                    item = self.queue.popleft()
                    batch.append(item)
                    count += len(item[0])
                fresh = iter(new_event_ids(count))
                rows, ids = [], []
                for events, received_at, _ in batch:
                    out = []
                    for e in events:
                        rows.append(
                            (self.next_id, next(fresh), e.session_id, e.track_id, e.event_type,
                             e.user_id, e.ts, received_at, e.context, e.meta, e.elapsed_ms)
                        )
                        out.append(self.next_id)
                        self.next_id += 1
                    ids.append(out)
                await self.db.executemany(INSERT_EVENT, rows)
                await self.db.commit()
                for (_, _, fut), out in zip(batch, ids, strict=True):
                    fut.set_result(out)


async def aiosqlite_log(path: Path, producers: int, per_append: int, seconds: float) -> float:
    import aiosqlite

    with connect_sync(path):  # the same schema and PRAGMAs (WAL, synchronous=FULL)
        pass
    async with aiosqlite.connect(path) as db:
        await db.execute("PRAGMA synchronous = FULL")
        log = AiosqliteLog(db)
        t0 = time.perf_counter()
        n = await _produce(log.append, producers, per_append, seconds)
        took = time.perf_counter() - t0
        log.task.cancel()
        return n / took


def group_commit(producers: int, seconds: float, runs: int = 3) -> None:
    """Thread against aiosqlite, interleaved, best of `runs`, at 1 and 100 events per append."""
    try:
        import aiosqlite  # noqa: F401
    except ImportError:
        print("group commit: aiosqlite is not installed (pip install '.[bench]')")
        return
    for per_append in (1, 100):
        best = {"thread": 0.0, "aiosqlite": 0.0}
        for _ in range(runs):
            for name, fn in (("thread", thread_log), ("aiosqlite", aiosqlite_log)):
                with tempdir() as d:
                    rate = asyncio.run(fn(Path(d) / "log.db", producers, per_append, seconds))
                best[name] = max(best[name], rate)
        with tempdir() as d:
            raw = raw_sqlite(Path(d), 200_000, 2000, "FULL")
        print(
            f"group commit, {producers} producers x {per_append} event(s)/append:"
            f"  log thread {best['thread']:>9,.0f} events/s"
            f"  | aiosqlite {best['aiosqlite']:>9,.0f} events/s"
            f"  | aiosqlite/thread {best['aiosqlite'] / best['thread']:.2f}"
            f"  | raw executemany {raw:>9,.0f} rows/s (thread/raw {best['thread'] / raw:.2f})"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1000, help="events per POST /events")
    ap.add_argument("--synchronous", default="FULL", choices=("FULL", "NORMAL"))
    ap.add_argument(
        "--group-commit-only", action="store_true", help="only the thread against aiosqlite"
    )
    args = ap.parse_args()
    env = {"GRAVITYD_SYNCHRONOUS": args.synchronous}
    if args.group_commit_only:
        group_commit(args.connections, min(args.duration, 5))
        return

    single = post_script(orjson.dumps(EVENT))
    with bare_server() as url:
        bare = wrk(
            url + "/event", duration=args.duration, connections=args.connections, script=single
        )
    with tempdir() as d, gravityd(Path(d), env=env) as url:
        ours = wrk(
            url + "/event", duration=args.duration, connections=args.connections, script=single
        )
    print(
        f"POST /event     gravityd {ours['rps']:>9,.0f} req/s  p99 {ours['p99']:.2f} ms"
        f"  | bare aiohttp {bare['rps']:>9,.0f} req/s  p99 {bare['p99']:.2f} ms"
        f"  | ratio {ours['rps'] / bare['rps']:.2f}  (target >= 0.70)"
    )

    many = post_script(batch_body(args.batch))
    with tempdir() as d, gravityd(Path(d), env=env) as url:
        batch = wrk(url + "/events", duration=args.duration, connections=4, script=many)
    with tempdir() as d:
        raw = raw_sqlite(Path(d), max(200_000, args.batch * 50), args.batch, args.synchronous)
    events_s = batch["rps"] * args.batch
    print(
        f"POST /events    gravityd {events_s:>9,.0f} events/s ({args.batch}/request)"
        f"  | raw SQLite executemany {raw:>9,.0f} rows/s"
        f"  | ratio {events_s / raw:.2f}  (target >= 250,000 events/s)"
    )
    print(f"synchronous={args.synchronous}, wrk -t1 -c{args.connections} -d{args.duration}s")
    group_commit(args.connections, min(args.duration, 5))


if __name__ == "__main__":
    main()
