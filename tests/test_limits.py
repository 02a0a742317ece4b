"""Abuse limits: per-client rate limits, the concurrency cap, slow clients, long URLs, headers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gravityd.config import ConfigError
from gravityd.http.limits import ClientIdentity, RateLimiter, parse_networks, retry_after

from .support import event, make_config, serve

# ------------------------------------------------------------------------------ pure logic


def test_token_bucket_allows_burst_then_rate() -> None:
    rl = RateLimiter(rate=2.0, burst=3)
    assert [rl.take("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = rl.take("a", now=0.0)
    assert wait == pytest.approx(0.5)  # one token comes back every half second
    assert rl.take("b", now=0.0) == 0.0  # another client has its own bucket
    assert rl.take("a", now=0.5) == 0.0
    assert rl.take("a", now=0.5) > 0.0
    assert rl.take("a", now=100.0) == 0.0  # refilled, but never past the burst:
    assert [rl.take("a", now=100.0) for _ in range(3)][-1] > 0.0


def test_token_bucket_memory_is_bounded_and_zero_rate_is_off() -> None:
    rl = RateLimiter(rate=1.0, burst=1, max_clients=100)
    for i in range(1000):
        rl.take(f"c{i}", now=0.0)
    assert len(rl) == 100
    off = RateLimiter(rate=0.0, burst=1)
    assert not off.enabled and all(off.take("x") == 0.0 for _ in range(10))
    assert retry_after(0.01) == "1" and retry_after(2.2) == "3"


def test_client_identity_trusts_only_configured_proxies() -> None:
    exempt = parse_networks(["127.0.0.0/8", "::1/128"], "x")
    plain = ClientIdentity(exempt, [])
    assert plain.key("127.0.0.1", None) is None
    assert plain.key("::ffff:127.0.0.1", None) is None  # v4-mapped loopback is loopback
    assert plain.key("203.0.113.9", "127.0.0.1") == "203.0.113.9"  # header ignored: no proxy
    proxied = ClientIdentity(exempt, parse_networks(["10.0.0.0/8"], "x"))
    assert proxied.key("10.1.2.3", "198.51.100.7") == "198.51.100.7"
    # A client can prepend anything; only the hop the proxy appended counts.
    assert proxied.key("10.1.2.3", "127.0.0.1, 198.51.100.7") == "198.51.100.7"
    assert proxied.key("10.1.2.3", "198.51.100.7, 10.9.9.9") == "198.51.100.7"
    # An unreadable hop is charged as itself, never to the (maybe exempt) proxy.
    assert proxied.key("10.1.2.3", "garbage") == "hop:garbage"
    assert (
        ClientIdentity(exempt, parse_networks(["127.0.0.1"], "x")).key("127.0.0.1", "unknown")
        == "hop:unknown"
    )
    # Proxies that append a port.
    assert proxied.key("10.1.2.3", "198.51.100.9:5555") == "198.51.100.9"
    assert proxied.key("10.1.2.3", "[2001:db8::1]:443") == "2001:db8::1"
    assert proxied.key("203.0.113.9", "198.51.100.7") == "203.0.113.9"  # not our proxy


def test_bad_networks_in_config_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"trusted_proxies.*'nope'"):
        make_config(tmp_path, trusted_proxies=["nope"])


# ---------------------------------------------------------------------------- on a server


async def test_rate_limit_per_client_with_retry_after(aiohttp_client: Any, tmp_path: Path) -> None:
    client, _ = await serve(
        aiohttp_client, tmp_path, rate_limit_per_s=0.5, rate_limit_burst=3, rate_limit_exempt=[]
    )
    url = str(client.make_url("/event"))
    statuses = []
    for i in range(4):
        resp = await client.post("/event", json=event(f"s{i}"))
        statuses.append(resp.status)
    assert statuses == [202, 202, 202, 429]
    body = await resp.json()
    assert body["error"]["code"] == "rate_limited"
    assert int(resp.headers["Retry-After"]) >= 1
    # Reads are never rate limited.
    assert (await client.get("/healthz")).status == 200
    # Another client address (127.0.0.2 is loopback on Linux too) has its own bucket.
    conn = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with (
        aiohttp.ClientSession(connector=conn) as other,
        other.post(url, json=event("other")) as r,
    ):
        assert r.status == 202
    metrics = await (await client.get("/metrics")).text()
    assert 'gravityd_requests_refused_total{reason="rate_limited"} 1.0' in metrics


async def test_forwarded_for_from_a_trusted_proxy_uses_its_last_line(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    """A proxy appends its own X-Forwarded-For line after whatever the client sent: reading
    only the first line would let a client claim loopback (exempt) or rotate addresses."""
    client, _ = await serve(
        aiohttp_client,
        tmp_path,
        rate_limit_per_s=0.01,
        rate_limit_burst=2,
        trusted_proxies=["127.0.0.1/32"],
    )
    statuses = []
    for i in range(4):
        headers = [("X-Forwarded-For", f"127.0.0.{i + 2}"), ("X-Forwarded-For", "198.51.100.7")]
        resp = await client.post("/event", json=event(f"s{i}"), headers=headers)
        statuses.append(resp.status)
    assert statuses == [202, 202, 429, 429]
    # Another real client behind the same proxy is not affected.
    other = await client.post(
        "/event", json=event("o"), headers={"X-Forwarded-For": "198.51.100.8"}
    )
    assert other.status == 202


async def test_loopback_is_exempt_by_default(aiohttp_client: Any, tmp_path: Path) -> None:
    client, _ = await serve(aiohttp_client, tmp_path, rate_limit_per_s=0.5, rate_limit_burst=1)
    for i in range(10):
        assert (await client.post("/event", json=event(f"s{i}"))).status == 202


async def stalled_body(
    release: asyncio.Event, started: asyncio.Event | None = None
) -> AsyncIterator[bytes]:
    """A request body that stops half-way until the test says go on."""
    if started is not None:
        started.set()  # the request's headers are on the wire
    yield b'{"session_id": "slow", '
    await release.wait()
    yield b'"track_id": "6a1f1a5e-2b6c-4a1e-9d6b-1c3f1e1e1e1e", "event_type": "play_10s"}'


async def test_concurrency_cap_answers_503_and_probes_still_answer(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client, _ = await serve(aiohttp_client, tmp_path, max_concurrent_requests=1)
    release, started = asyncio.Event(), asyncio.Event()
    slow = asyncio.create_task(
        client.post(
            "/event",
            data=stalled_body(release, started),
            headers={"Content-Type": "application/json"},
        )
    )
    await started.wait()
    for _ in range(200):
        busy = await client.post("/event", json=event("x"))
        if busy.status == 503:
            break
        # No signal says the slow request has reached its handler: poll, bounded.
        await asyncio.sleep(0.01)
    assert busy.status == 503
    assert (await busy.json())["error"]["code"] == "overloaded"
    assert busy.headers["Retry-After"] == "1"
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/metrics")).status == 200
    release.set()
    assert (await slow).status == 202
    assert (await client.post("/event", json=event("y"))).status == 202


async def test_slow_body_gets_408_and_nothing_is_stored(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client, _ = await serve(aiohttp_client, tmp_path, body_timeout_s=0.2)
    release = asyncio.Event()
    try:
        resp = await client.post(
            "/event", data=stalled_body(release), headers={"Content-Type": "application/json"}
        )
        assert resp.status == 408
        assert (await resp.json())["error"]["code"] == "request_timeout"
    except aiohttp.ClientError:
        pytest.fail("the server must answer 408, not drop the connection silently")
    finally:
        release.set()
    fold = await (await client.post("/admin/fold")).json()
    assert fold["cursor"] == 0


async def test_idle_connection_is_closed(aiohttp_client: Any, tmp_path: Path) -> None:
    client, _ = await serve(aiohttp_client, tmp_path, keepalive_timeout_s=0.2)
    loop = asyncio.get_running_loop()
    with socket.create_connection((client.host, client.port)) as sock:
        sock.setblocking(False)
        # Half a request line, then silence: the server must hang up, not wait forever.
        await loop.sock_sendall(sock, b"GET /healthz HT")
        data = await asyncio.wait_for(loop.sock_recv(sock, 1024), timeout=10)
        assert data == b""


async def test_long_url_and_headers_are_refused(
    aiohttp_client: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client, _ = await serve(
        aiohttp_client, tmp_path, max_url_bytes=1024, max_header_bytes=2048, max_headers=20
    )
    resp = await client.get("/tracks/x/gravity_neighbors?pad=" + "a" * 1500)
    assert resp.status == 414
    assert (await resp.json())["error"]["code"] == "url_too_long"
    resp = await client.get("/healthz", headers={"X-Big": "b" * 4000})
    assert resp.status == 400
    resp = await client.get("/healthz", headers={f"X-H{i}": "v" for i in range(30)})
    assert resp.status == 400
    assert (await client.get("/healthz")).status == 200  # and the server is fine
    # One warning line per malformed request, no traceback to flood the logs with.
    refused = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(refused) == 2
    assert all(r.levelname == "WARNING" and r.exc_info is None for r in refused)
    assert all(r.getMessage() == "malformed request refused" for r in refused)


async def test_oversized_meta_is_refused_in_batches_too(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client, _ = await serve(aiohttp_client, tmp_path, max_meta_bytes=1000)
    big = event("s", 2, meta={"note": "x" * 2000})
    resp = await client.post("/events", json=[event("s", 1), big])
    body = await resp.json()
    assert resp.status == 202 and body["accepted"] == 1
    assert body["rejected"][0]["index"] == 1
    assert body["rejected"][0]["error"]["code"] == "meta_too_large"
    single = await client.post("/event", json=big)
    assert single.status == 400
    assert (await single.json())["error"] == {
        "code": "meta_too_large",
        "message": "meta is larger than 1000 bytes as JSON",
        "field": "meta",
    }


async def test_cross_origin_pages_can_read_retry_after(aiohttp_client: Any, tmp_path: Path) -> None:
    client, _ = await serve(
        aiohttp_client, tmp_path, rate_limit_per_s=0.01, rate_limit_burst=1, rate_limit_exempt=[]
    )
    origin = {"Origin": "https://player.example"}
    assert (await client.post("/event", json=event("a"), headers=origin)).status == 202
    limited = await client.post("/event", json=event("b"), headers=origin)
    assert limited.status == 429
    assert limited.headers["Access-Control-Allow-Origin"] == "*"
    assert "Retry-After" in limited.headers["Access-Control-Expose-Headers"]


def test_non_finite_settings_are_refused(tmp_path: Path) -> None:
    """nan compares false with everything: GRAVITYD_RATE_LIMIT_PER_S=nan would switch rate
    limiting off without a word."""
    from gravityd.config import load_config

    for key in ("GRAVITYD_RATE_LIMIT_PER_S", "GRAVITYD_KEEPALIVE_TIMEOUT_S"):
        with pytest.raises(ConfigError, match="must be a finite number"):
            load_config(None, env={key: "nan"})
    with pytest.raises(ConfigError, match="must be a finite number"):
        make_config(tmp_path, body_timeout_s=float("inf"))
