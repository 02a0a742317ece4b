"""Write and read loads for bench/replicas.py: today's generator, shuffle and Zipf-hot.

Writes are 1,000-event POST /events bodies (wrk rotates them, with fresh session ids per
request); reads are an open-loop paced client at a fixed rate, so a slow server shows as
latency rather than as fewer requests asked. Latency is measured from each request's send.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass, field

import aiohttp
import orjson

from bench.ingest import batch_body

LOADS = ("today", "shuffle", "hot")


def zipf_weights(n: int, exponent: float = 1.0) -> list[float]:
    return [1.0 / (r + 1) ** exponent for r in range(n)]


def write_bodies(load: str, tracks: list[str], count: int = 40, seed: int = 7) -> list[bytes]:
    """1,000-event bodies: today's (bench/ingest.py's batch), shuffle (uniform tracks,
    sessions of 10 kept plays) or hot (Zipf-popular tracks, exponent 1, sessions of 10)."""
    if load == "today":
        return [batch_body(1000)]
    rng = random.Random(seed)
    weights = zipf_weights(len(tracks)) if load == "hot" else None
    bodies = []
    for b in range(count):
        events = []
        for s in range(50):  # 50 sessions of 10 tracks, 2 events each
            sid = f"{load}-@@-{b}-{s}"
            for t in rng.choices(tracks, weights, k=10):
                events.append({"session_id": sid, "track_id": t, "event_type": "play_start"})
                events.append({"session_id": sid, "track_id": t, "event_type": "play_10s"})
        bodies.append(orjson.dumps(events))
    return bodies


@dataclass
class Paced:
    """What a paced run saw: latencies (ms) of the 2xx answers, errors, seconds taken."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        values = sorted(self.latencies)
        return values[min(len(values) - 1, int(q / 100 * len(values)))]

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


async def _paced(
    base: str,
    paths: list[str],
    weights: list[float] | None,
    rate: float,
    seconds: float,
    bodies: list[bytes] | None,
) -> Paced:
    rng = random.Random(3)
    out = Paced()
    conn = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=conn) as session:
        loop = asyncio.get_running_loop()

        async def one(path: str, body: bytes | None) -> None:
            sent = time.perf_counter()
            try:
                if body is None:
                    async with session.get(base + path) as r:
                        await r.read()
                        ok = r.status == 200
                else:
                    headers = {"Content-Type": "application/json"}
                    async with session.post(base + path, data=body, headers=headers) as r:
                        await r.read()
                        ok = r.status in (200, 202)
            except aiohttp.ClientError:
                ok = False
            if ok:
                out.latencies.append((time.perf_counter() - sent) * 1000)
            else:
                out.errors += 1

        start = loop.time()
        tasks = []
        for i in range(int(rate * seconds)):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            path = rng.choices(paths, weights)[0]
            body = None if bodies is None else bodies[i % len(bodies)].replace(b"@@", b"%d" % i)
            tasks.append(asyncio.create_task(one(path, body)))
        await asyncio.gather(*tasks)
        out.seconds = loop.time() - start
    return out


def paced(
    base: str,
    paths: list[str],
    *,
    rate: float,
    seconds: float,
    weights: list[float] | None = None,
    bodies: list[bytes] | None = None,
) -> Paced:
    """Requests at a fixed rate (GET paths, or POST bodies to paths) from this process."""
    return asyncio.run(_paced(base, paths, weights, rate, seconds, bodies))


def paced_thread(result: list[Paced], *args: object, **kwargs: object) -> threading.Thread:
    """paced() in a thread (its own event loop); the Paced lands in `result`."""
    return threading.Thread(target=lambda: result.append(paced(*args, **kwargs)))  # type: ignore[arg-type]
