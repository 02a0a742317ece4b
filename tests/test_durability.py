"""Durable before acknowledged: SIGKILL right after the last 202 loses nothing."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from .support import event

pytestmark = [pytest.mark.process]


def stored(db: Path) -> list[tuple[int, str]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT id, event_id FROM events ORDER BY id").fetchall()
    finally:
        conn.close()


async def post_many(url: str, n: int, prefix: str, concurrency: int = 32) -> list[str]:
    acked: list[str] = []
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as http:

        async def one(i: int) -> None:
            async with sem:
                ev = event(session=f"s{i % 50}", track=i % 97, event_id=f"{prefix}-{i}")
                async with http.post(url + "/event", json=ev) as r:
                    if r.status == 202:
                        acked.append(ev["event_id"])

        async def batch(i: int) -> None:
            async with sem:
                evs = [
                    event(session=f"b{i}", track=j, event_id=f"{prefix}-b{i}-{j}")
                    for j in range(20)
                ]
                async with http.post(url + "/events", json=evs) as r:
                    if r.status == 202:
                        acked.extend(e["event_id"] for e in evs)

        await asyncio.gather(*[one(i) for i in range(n)], *[batch(i) for i in range(n // 20)])
    return acked


async def test_sigkill_after_last_ack_loses_nothing(daemon_factory) -> None:
    d = daemon_factory().start()
    acked = await post_many(d.url, 600, "k")
    d.kill()  # SIGKILL: no flush, no shutdown hooks
    assert len(acked) == 600 + 30 * 20
    rows = stored(d.db)
    ids = [eid for _, eid in rows]
    assert sorted(ids) == sorted(acked)  # every acknowledged event exactly once
    # restart on the same files: the log is intact and keeps taking events
    d.start()
    again = await post_many(d.url, 40, "k")  # retried ids are duplicates, not new rows
    assert len(again) == 40 + 2 * 20
    assert len(stored(d.db)) == len(rows)
    assert d.terminate() == 0


async def test_sigterm_under_load_keeps_every_acknowledged_event(daemon_factory) -> None:
    """SIGTERM while requests are in flight: every 202 is in the log, then a clean exit."""
    d = daemon_factory().start()
    acked: list[str] = []
    refused = 0

    async def client(http: aiohttp.ClientSession, c: int) -> None:
        nonlocal refused
        for i in range(10_000):
            ev = event(session=f"t{c}", track=i % 31, event_id=f"t-{c}-{i}")
            try:
                async with http.post(d.url + "/event", json=ev) as r:
                    if r.status == 202:
                        acked.append(ev["event_id"])
                    else:
                        refused += 1
            except aiohttp.ClientError:
                return  # the server has gone away

    async with aiohttp.ClientSession() as http:
        tasks = [asyncio.create_task(client(http, c)) for c in range(16)]
        while len(acked) < 300:  # wait on real progress before signalling
            await asyncio.sleep(0.01)
        d.proc.send_signal(signal.SIGTERM)
        await asyncio.gather(*tasks)
    assert d.proc.wait(30) == 0
    stored_ids = {eid for _, eid in stored(d.db)}
    assert set(acked) <= stored_ids  # nothing acknowledged is lost
    assert len(stored_ids) == len(stored(d.db))  # and nothing is stored twice
    log = d.stderr_path.read_text()
    assert '"msg":"stopped"' in log
    assert '"msg":"snapshot written"' in log  # the shutdown snapshot
