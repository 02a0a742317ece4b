"""The write path through a real server on a loopback port and a real SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from gravityd.daemon.service import Gravityd
from gravityd.http.app import SERVICE, create_app

from .support import event, make_config, metric, tid


def rows(config: Any, sql: str = "SELECT * FROM events ORDER BY id") -> list[sqlite3.Row]:
    conn = sqlite3.connect(config.db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_post_event_is_committed_before_202(client: Any, config: Any) -> None:
    resp = await client.post(
        "/event",
        json=event(
            track_id=tid(1).upper(),
            user_id=tid("u").upper(),
            event_type="skip",
            meta={"elapsed_ms": 1500},
            context="radio",
            timestamp="2024-05-01T12:00:00Z",
        ),
    )
    assert resp.status == 202
    body = await resp.json()
    assert body["accepted"] == 1 and body["duplicate"] is False
    (row,) = rows(config)  # read by another connection: it is committed
    assert row["id"] == body["id"]
    assert row["event_id"] == body["event_id"]
    assert row["track_id"] == tid(1) and row["user_id"] == tid("u")
    assert row["event_type"] == "skip" and row["elapsed_ms"] == 1500
    assert row["ts"] == 1714564800.0 and row["received_at"] >= row["ts"]
    assert orjson.loads(row["meta"]) == {"elapsed_ms": 1500}
    assert row["context"] == "radio"


@pytest.mark.parametrize(
    ("body", "ctype", "code"),
    [
        (b"", "application/json", "empty_body"),
        (b"   ", "application/json", "empty_body"),
        (b"{not json", "application/json", "invalid_json"),
        (b"[1, 2]", "application/json", "not_an_object"),
        (b'"hello"', "application/json", "not_an_object"),
        (orjson.dumps(event(track="zzz")), "application/json", "invalid_track_id"),
        (
            orjson.dumps({"track_id": tid(1), "event_type": "like"}),
            "application/json",
            "missing_field",
        ),
    ],
)
async def test_post_event_rejects_with_contract_error(
    client: Any, config: Any, body: bytes, ctype: str, code: str
) -> None:
    if code == "invalid_track_id":
        body = orjson.dumps({**event(), "track_id": "zzz"})
    resp = await client.post("/event", data=body, headers={"Content-Type": ctype})
    assert resp.status == 400
    err = (await resp.json())["error"]
    assert err["code"] == code and err["message"]
    assert rows(config) == []


async def test_field_is_named_in_error(client: Any) -> None:
    resp = await client.post("/event", json={**event(), "meta": {"elapsed_ms": -3}})
    assert resp.status == 400
    assert (await resp.json())["error"] == {
        "code": "invalid_elapsed_ms",
        "message": "meta.elapsed_ms must be an integer from 0 to 2147483647",
        "field": "meta.elapsed_ms",
    }


async def test_unsupported_media_type(client: Any, config: Any) -> None:
    resp = await client.post(
        "/event", data=orjson.dumps(event()), headers={"Content-Type": "application/xml"}
    )
    assert resp.status == 415
    assert (await resp.json())["error"]["code"] == "unsupported_media_type"


async def test_send_beacon_text_plain_bodies(client: Any, config: Any) -> None:
    one = await client.post(
        "/event",
        data=orjson.dumps(event(track=1)),
        headers={"Content-Type": "text/plain;charset=UTF-8"},
    )
    assert one.status == 202
    many = await client.post(
        "/events",
        data=orjson.dumps([event(track=2), event(track=3)]),
        headers={"Content-Type": "text/plain;charset=UTF-8"},
    )
    assert many.status == 202 and (await many.json())["accepted"] == 2
    assert [r["track_id"] for r in rows(config)] == [tid(1), tid(2), tid(3)]


async def test_batch_keeps_good_events_and_reports_bad_ones(client: Any, config: Any) -> None:
    batch = [
        event(track=1),
        {**event(), "event_type": "nope"},
        event(track=2),
        "not an object",
        {**event(), "track_id": "bad"},
        event(track=3, extra_field=1),
    ]
    resp = await client.post("/events", json=batch)
    assert resp.status == 202
    body = await resp.json()
    assert body["accepted"] == 3
    assert [(r["index"], r["error"]["code"]) for r in body["rejected"]] == [
        (1, "invalid_event_type"),
        (3, "not_an_object"),
        (4, "invalid_track_id"),
    ]
    assert [r["track_id"] for r in rows(config)] == [tid(1), tid(2), tid(3)]


async def test_batch_all_bad_is_400_with_details(client: Any, config: Any) -> None:
    resp = await client.post("/events", json=[{"x": 1}, {"y": 2}])
    assert resp.status == 400
    body = await resp.json()
    assert body["error"]["code"] == "no_valid_events"
    assert [r["index"] for r in body["rejected"]] == [0, 1]
    assert rows(config) == []


@pytest.mark.parametrize(
    ("body", "code"),
    [(b"[]", "empty_batch"), (b'{"a": 1}', "not_an_array"), (b"[", "invalid_json")],
)
async def test_batch_shape_errors(client: Any, body: bytes, code: str) -> None:
    resp = await client.post("/events", data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == code


async def test_ndjson_batch(client: Any, config: Any) -> None:
    lines = [orjson.dumps(event(track=1)), b"{broken", b"", orjson.dumps(event(track=2))]
    resp = await client.post(
        "/events", data=b"\n".join(lines) + b"\n", headers={"Content-Type": "application/x-ndjson"}
    )
    assert resp.status == 202
    body = await resp.json()
    assert body["accepted"] == 2
    assert [(r["index"], r["error"]["code"]) for r in body["rejected"]] == [(1, "invalid_json")]
    assert [r["track_id"] for r in rows(config)] == [tid(1), tid(2)]


async def test_event_id_makes_retries_idempotent(client: Any, config: Any) -> None:
    first = await client.post("/event", json=event(event_id="retry-1"))
    second = await client.post("/event", json=event(event_id="retry-1"))
    assert first.status == second.status == 202
    a, b = await first.json(), await second.json()
    assert a["duplicate"] is False and b["duplicate"] is True and a["id"] == b["id"]
    # within one batch and across batches
    resp = await client.post(
        "/events",
        json=[event(event_id="retry-1"), event(event_id="b-2"), event(event_id="b-2"), event()],
    )
    body = await resp.json()
    assert body["accepted"] == 4 and body["duplicates"] == 2
    assert [r["event_id"] for r in rows(config)][:3] == ["retry-1", "b-2", rows(config)[2][1]]
    assert len(rows(config)) == 3
    assert len({r["event_id"] for r in rows(config)}) == 3


async def test_concurrent_duplicates_store_once(client: Any, config: Any) -> None:
    import asyncio

    resps = await asyncio.gather(
        *[client.post("/event", json=event(event_id="same")) for _ in range(20)]
    )
    bodies = [await r.json() for r in resps]
    assert sum(1 for b in bodies if not b["duplicate"]) == 1
    assert len(rows(config)) == 1


async def test_size_limits(aiohttp_client: Any, tmp_path: Any) -> None:
    cfg = make_config(
        tmp_path, max_event_bytes=2048, max_batch_events=5000, max_batch_bytes=4 * 1024 * 1024
    )
    client = await aiohttp_client(create_app(Gravityd(cfg)))
    big = event(meta={"pad": "x" * 3000})
    resp = await client.post("/event", json=big)
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "payload_too_large"
    resp = await client.post("/events", json=[event()] * 5001)
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "too_many_events"
    resp = await client.post(
        "/events",
        data=b"[" + b" " * (4 * 1024 * 1024) + b"]",
        headers={"Content-Type": "application/json"},
    )
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "payload_too_large"
    resp = await client.post("/events", json=[event()] * 5000)
    assert resp.status == 202 and (await resp.json())["accepted"] == 5000
    assert len(rows(cfg)) == 5000


async def test_cors_preflight_and_headers(client: Any) -> None:
    pre = await client.options(
        "/events",
        headers={
            "Origin": "https://player.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert pre.status == 204
    assert pre.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in pre.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in pre.headers["Access-Control-Allow-Headers"]
    resp = await client.post("/event", json=event(), headers={"Origin": "https://player.example"})
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    nb = await client.get(
        f"/tracks/{tid(1)}/gravity_neighbors", headers={"Origin": "https://map.example"}
    )
    assert nb.headers["Access-Control-Allow-Origin"] == "*"
    for path in (f"/tracks/{tid(1)}", "/tracks/top", "/stats", "/client.js"):
        read = await client.get(path, headers={"Origin": "https://map.example"})
        assert read.headers["Access-Control-Allow-Origin"] == "*", path
    for path in ("/metrics", "/", "/openapi.json"):
        read = await client.get(path, headers={"Origin": "https://map.example"})
        assert "Access-Control-Allow-Origin" not in read.headers, path
    # bad input still carries CORS headers so the browser can read the error
    bad = await client.post("/event", json={}, headers={"Origin": "https://player.example"})
    assert bad.status == 400 and bad.headers["Access-Control-Allow-Origin"] == "*"
    admin = await client.options(
        "/admin/fold",
        headers={"Origin": "https://player.example", "Access-Control-Request-Method": "POST"},
    )
    assert "Access-Control-Allow-Origin" not in admin.headers
    assert admin.status == 405


async def test_cors_allow_list(aiohttp_client: Any, tmp_path: Any) -> None:
    cfg = make_config(tmp_path, cors_origins=["https://player.example"])
    client = await aiohttp_client(create_app(Gravityd(cfg)))
    ok = await client.options(
        "/event",
        headers={"Origin": "https://player.example", "Access-Control-Request-Method": "POST"},
    )
    assert ok.status == 204
    assert ok.headers["Access-Control-Allow-Origin"] == "https://player.example"
    assert ok.headers["Vary"] == "Origin"
    no = await client.options(
        "/event",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert no.status == 403 and "Access-Control-Allow-Origin" not in no.headers
    post = await client.post("/event", json=event(), headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in post.headers


async def test_admin_token(aiohttp_client: Any, tmp_path: Any) -> None:
    cfg = make_config(tmp_path, admin_token="s3cret")
    client = await aiohttp_client(create_app(Gravityd(cfg)))
    assert (await client.post("/admin/fold")).status == 401
    wrong = await client.post("/admin/fold", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    assert (await wrong.json())["error"]["code"] == "unauthorized"
    ok = await client.post("/admin/fold", headers={"Authorization": "Bearer s3cret"})
    assert ok.status == 200 and "cursor" in await ok.json()


async def test_admin_without_token_answers_loopback_only(client: Any) -> None:
    from gravityd.http.auth import is_loopback as _is_loopback

    assert (await client.post("/admin/fold")).status == 200  # the test client is loopback
    assert _is_loopback("127.0.0.1") and _is_loopback("::1") and _is_loopback("::ffff:127.0.0.1")
    assert not _is_loopback("10.0.0.1") and not _is_loopback(None) and not _is_loopback("x")


async def test_health_ready_metrics(client: Any) -> None:
    assert (await client.get("/healthz")).status == 200
    await client.post("/admin/fold")
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["ready"] is True
    await client.post("/event", json=event())
    await client.post("/event", json={"nope": 1})
    text = await (await client.get("/metrics")).text()
    assert "gravityd_events_accepted_total 1.0" in text
    assert 'gravityd_events_rejected_total{reason="missing_field"} 1.0' in text
    assert "gravityd_commit_batch_events_count" in text
    assert 'gravityd_request_seconds_count{method="POST",route="/event",status="202"} 1.0' in text
    assert 'gravityd_request_seconds_count{method="POST",route="/event",status="400"} 1.0' in text
    assert "gravityd_fold_lag_events" in text and "gravityd_graph_edges" in text


async def test_unknown_route_and_method_are_json_errors(client: Any) -> None:
    resp = await client.get("/nope")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    resp = await client.get("/event")
    assert resp.status == 405 and (await resp.json())["error"]["code"] == "method_not_allowed"


def test_schema_is_versioned_and_a_newer_log_is_refused(tmp_path: Any) -> None:
    from gravityd.log import LogError
    from gravityd.log.sqlite_schema import SCHEMA_VERSION, connect_sync

    db = tmp_path / "v.db"
    conn = connect_sync(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"events", "gravity_cursor", "track_edges"} <= tables
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(LogError) as info:
        connect_sync(db)
    assert "newer" in str(info.value)


async def test_a_row_the_database_refuses_fails_only_its_own_request(tmp_path: Any) -> None:
    """Validation keeps such rows out; if one slips through, the group commit it shares with
    other requests must not take them down with it."""
    import asyncio

    from gravityd.core.events import ValidationLimits, validate_event
    from gravityd.log import LogError
    from gravityd.log.sqlite import SqliteLog

    log = SqliteLog(tmp_path / "iso.db")
    await log.open()
    try:
        good = [validate_event(event(track=i), ValidationLimits()) for i in range(5)]
        bad = good[0]._replace(elapsed_ms=2**70)  # SQLite integers stop at 2**63 - 1
        results = await asyncio.gather(
            *[log.append([g]) for g in good[:3]],
            log.append([bad]),
            *[log.append([g]) for g in good[3:]],
            return_exceptions=True,
        )
        assert isinstance(results[3], LogError)
        assert all(isinstance(r, list) for i, r in enumerate(results) if i != 3)
        assert await log.count() == 5
    finally:
        await log.close()


async def test_admin_forbidden_without_token_off_loopback(client: Any) -> None:
    """Behind a reverse proxy every request arrives from loopback: a forwarded request is
    somebody else's, so without a token the admin surface refuses it."""
    for header in (
        {"X-Forwarded-For": "203.0.113.5"},
        {"Forwarded": "for=203.0.113.5"},
        {"X-Real-IP": "203.0.113.5"},
        # A page on any site can make the browser POST to 127.0.0.1 (CSRF): it sends these.
        {"Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ):
        resp = await client.post("/admin/snapshot", headers=header)
        assert resp.status == 403, header
        assert (await resp.json())["error"]["code"] == "forbidden"
    assert not list(Path(client.server.app[SERVICE].config.snapshot_dir).glob("*.gsnap"))
    assert (await client.post("/admin/fold")).status == 200
    # A tool typed by the operator (curl, gravityd snapshot) sends none, or Sec-Fetch-Site: none.
    assert (await client.post("/admin/fold", headers={"Sec-Fetch-Site": "none"})).status == 200


async def test_readyz_is_503_until_caught_up(aiohttp_client: Any, tmp_path: Any) -> None:
    cfg = make_config(tmp_path, snapshot_on_shutdown=False)  # the restart must fold the log
    first = Gravityd(cfg)
    c1 = await aiohttp_client(create_app(first))
    assert (await c1.post("/events", json=[event("s", i) for i in range(50)])).status == 202
    await c1.close()
    svc = Gravityd(cfg)
    await svc._fold_lock.acquire()  # the start-up fold cannot run yet
    client = await aiohttp_client(create_app(svc))
    resp = await client.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["ready"] is False and body["last_id"] == 50 and body["cursor"] == 0
    svc._fold_lock.release()
    assert (await (await client.post("/admin/fold")).json())["cursor"] == 50
    assert (await client.get("/readyz")).status == 200


async def test_commit_record_stays_short_without_metrics_scrapes(client: Any) -> None:
    """Fold lag is computed from a record of commit times; with nobody scraping /metrics it must
    still shrink as the fold passes, or it grows by one entry per commit forever."""
    svc = client.server.app[SERVICE]
    for i in range(30):
        assert (await client.post("/event", json=event(f"s{i}"))).status == 202
    assert len(svc.event_log.commits) >= 1
    await client.post("/admin/fold")
    assert len(svc.event_log.commits) == 0


async def test_event_loop_lag_is_measured(client: Any) -> None:
    """A handler that holds the loop shows up in gravityd_event_loop_lag_seconds, which the
    per-route histograms (timed inside the handler chain) cannot see."""
    import time as _time

    svc = client.server.app[SERVICE]
    before = svc.metrics.loop_lag._sum.get()
    _time.sleep(0.3)  # the test itself blocks the loop: the stall to be measured
    for _ in range(50):  # the sampler needs one more tick to notice; bounded
        text = await (await client.get("/metrics")).text()
        lag = metric(text, "gravityd_event_loop_lag_seconds_sum") - before
        if lag >= 0.15:
            break
        await asyncio.sleep(0.05)
    assert lag >= 0.15
