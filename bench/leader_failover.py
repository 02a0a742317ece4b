"""Write outage when the JetStream stream leader is SIGKILLed, as an ingest client sees it.

Starts config/nats/'s three nodes (bench/nats_nodes.py: the repo's files, free ports), one
`gravityd serve --role writer --log-url nats://...`, and clients posting /events batches
without pause (each retries a 503 with the same event_ids after a 0.1 s back-off). Then, `--kills`
times: wait for a quiet period of 202s, SIGKILL the stream's leader, and measure

- outage: from the kill to the first 202 of a request sent after the kill;
- longest: the longest single request that was in flight around the kill (a client's wait);
- 503s: log_unavailable answers in between;
- election: from the kill to a surviving node reporting a new leader in /jsz (the servers' own
  part: NATS raft's election timeout, 4 to 9 s after the last heartbeat, is not configurable).

The killed node is restarted and the stream's replicas caught up before the next kill. At the
end the stream is read back: every event that got a 202 must be in it exactly once.

    python -m bench.leader_failover                    # 5 kills, about a minute and a half
    python -m bench.leader_failover --kills 10
    python -m bench.leader_failover --env GRAVITYD_JS_PUBLISH_RETRY_S=0  # any writer setting
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import nats
import nats.js.errors

from bench.common import REPO, free_port, wait_http
from bench.nats_nodes import NatsCluster
from gravityd.log.jetstream.messages import decode_ids

STREAM = "GRAVITYD_EVENTS"
BACKOFF_S = 0.1
BATCH = 20


@dataclass
class Request:
    sent: float
    done: float
    status: int


@dataclass
class Clients:
    """Posting clients: every request's times and status, and each acknowledged event_id."""

    url: str
    requests: list[Request] = field(default_factory=list)
    acked: Counter[str] = field(default_factory=Counter)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, name: str, session: aiohttp.ClientSession) -> None:
        n = 0
        while not self.stop.is_set():
            batch = [
                {
                    "event_id": f"{name}-{n}-{i}",
                    "session_id": f"{name}-s{n % 50}",
                    "track_id": f"00000000-0000-4000-8000-{(n * BATCH + i) % 997:012d}",
                    "event_type": "play_10s",
                }
                for i in range(BATCH)
            ]
            n += 1
            while True:  # the same batch until a 202: what a well-behaved client does
                sent = time.monotonic()
                try:
                    async with session.post(self.url + "/events", json=batch) as r:
                        status = r.status
                        await r.read()
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                self.requests.append(Request(sent, time.monotonic(), status))
                if status == 202:
                    self.acked.update(e["event_id"] for e in batch)
                    break
                await asyncio.sleep(BACKOFF_S)


@dataclass
class Kill:
    at: float
    election_s: float
    outage_s: float = 0.0
    longest_s: float = 0.0
    unavailable: int = 0


def measure(kill: Kill, requests: list[Request]) -> None:
    """Fill in the client's view of one kill from the requests recorded around it."""
    after = [r for r in requests if r.sent >= kill.at and r.status == 202]
    first = min(after, key=lambda r: r.done)
    kill.outage_s = first.done - kill.at
    around = [r for r in requests if r.done >= kill.at and r.sent <= first.done]
    kill.longest_s = max(r.done - r.sent for r in around)
    kill.unavailable = sum(1 for r in around if r.status == 503)


async def stream_event_ids(url: str) -> list[str]:
    """Every event_id stored in the stream, repeats included (read from the leader)."""
    nc = await nats.connect(url.replace("nats://", "").split(","))
    try:
        js = nc.jetstream(timeout=10)
        info = await js.stream_info(STREAM)
        out: list[str] = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                msg = await js.get_msg(STREAM, seq=seq)
            except nats.js.errors.NotFoundError:
                continue
            decoded = decode_ids(msg.data or b"")
            if decoded is not None:
                out.extend(decoded[0])
        return out
    finally:
        await nc.close()


async def wait_quiet(clients: Clients, seconds: float) -> None:
    """Until every request of the last `seconds` got a 202 (the writer is past the last kill)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        now = time.monotonic()
        recent = [r for r in clients.requests if r.sent >= now - seconds]
        if len(recent) > 10 and all(r.status == 202 for r in recent):
            return
        await asyncio.sleep(0.2)  # the clients' own requests are the signal: look at them
    raise TimeoutError("the writer never answered 202s steadily")


async def run(cluster: NatsCluster, writer_url: str, kills: int, concurrency: int) -> list[Kill]:
    clients = Clients(writer_url)
    results: list[Kill] = []
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        tasks = [asyncio.create_task(clients.run(f"c{i}", session)) for i in range(concurrency)]
        try:
            for k in range(kills):
                await wait_quiet(clients, 2.0)
                leader = await asyncio.to_thread(cluster.wait_leader, STREAM)
                at = time.monotonic()
                cluster.kill(leader)
                await asyncio.to_thread(cluster.wait_leader, STREAM, 60.0, leader)
                kill = Kill(at, time.monotonic() - at)
                while not any(r.sent >= at and r.status == 202 for r in clients.requests):
                    await asyncio.sleep(0.05)  # the clients' answers are the signal
                measure(kill, clients.requests)
                results.append(kill)
                print(
                    f"kill {k + 1}/{kills} ({cluster.nodes[leader].name}): "
                    f"outage {kill.outage_s:.2f} s, longest request {kill.longest_s:.2f} s, "
                    f"{kill.unavailable} x 503, election {kill.election_s:.2f} s",
                    flush=True,
                )
                await asyncio.to_thread(cluster.start_node, leader)
                await asyncio.to_thread(cluster.wait_stream_current, STREAM)
        finally:
            clients.stop.set()
            await asyncio.gather(*tasks)
    stored = Counter(await stream_event_ids(cluster.url))
    missing = sum(1 for e in clients.acked if e not in stored)
    repeated = sum(1 for n in stored.values() if n > 1)
    print(
        f"{sum(clients.acked.values())} events acknowledged, {len(stored)} distinct in the "
        f"stream: {missing} acknowledged but missing, {repeated} stored more than once",
        flush=True,
    )
    if missing or repeated:
        raise SystemExit("FAILED: an acknowledged event was lost or stored twice")
    return results


def summary(results: list[Kill]) -> None:
    def line(name: str, values: list[float]) -> str:
        return f"{name}: p50 {statistics.median(values):.2f} s, max {max(values):.2f} s"

    print(f"over {len(results)} kills of the stream leader:")
    print("  " + line("write outage (kill -> first 202)", [k.outage_s for k in results]))
    print("  " + line("longest single request", [k.longest_s for k in results]))
    print("  " + line("election (kill -> new leader in /jsz)", [k.election_s for k in results]))
    print("  " + line("outage past the election", [k.outage_s - k.election_s for k in results]))
    print(f"  503 answers per kill: {[k.unavailable for k in results]}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--clients", type=int, default=4, help="concurrent posting clients")
    ap.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="writer environment"
    )
    args = ap.parse_args(argv)
    env = {**os.environ, "GRAVITYD_SNAPSHOT_ON_SHUTDOWN": "0"}
    env.update(kv.split("=", 1) for kv in args.env)
    with tempfile.TemporaryDirectory(prefix="gravityd-failover-") as tmp:
        root = Path(tmp)
        cluster = NatsCluster(root / "nats")
        port = free_port()
        cmd = [
            sys.executable, "-m", "gravityd", "serve", "--role", "writer", "--port", str(port),
            "--log-url", cluster.url, "--db", str(root / "w.db"),
            "--snapshot-dir", str(root / "snapshots"),
        ]  # fmt: skip
        writer: subprocess.Popen | None = None
        try:
            cluster.start()
            with open(root / "writer.log", "wb") as log:
                writer = subprocess.Popen(
                    cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
                )
            wait_http(f"http://127.0.0.1:{port}/readyz", timeout=120)
            results = asyncio.run(
                run(cluster, f"http://127.0.0.1:{port}", args.kills, args.clients)
            )
        finally:
            if writer is not None:
                writer.terminate()
                writer.wait(60)
            cluster.stop()
    summary(results)


if __name__ == "__main__":
    main()
