"""gravityd/http/static/client.js in a real headless Chromium against a real daemon.

The page under test comes from one loopback origin and loads client.js from another: a small
fault-injecting reverse proxy in front of the daemon, so every request the client makes crosses
origins as it does in production (CORS preflight included) and the proxy can fail the ones a
test chooses. What counts is read back from the daemon's SQLite log.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from selenium.webdriver.support.ui import WebDriverWait

from .support import free_port, tid

pytestmark = [pytest.mark.browser, pytest.mark.process]

UUID4_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z")
PAGE = (
    b'<!doctype html><html><head><meta charset="utf-8"><title>client.js test</title></head>'
    b"<body>client.js test page</body></html>"
)
HOP_BY_HOP = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}
)
FAULT_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Retry-After",
    "Content-Type": "application/json",
}


@dataclass
class Post:
    """One POST /events as the proxy saw it, and what it did with it."""

    content_type: str
    size: int
    event_ids: list[str]
    at: float  # time.monotonic() on arrival
    action: str
    upstream: dict[str, Any] | None = None  # the daemon's answer, when forwarded


@dataclass
class Edge:
    """The test page's origin and the proxy's origin, served from one background event loop.

    `plan` lists what to do with successive POST /events: "forward"; "refuse" (503 with
    Retry-After, never forwarded); "timeout" (408, never forwarded); "lose" (forwarded, so the
    daemon stores it, but the browser gets a 503: a success whose answer was lost); "reset"
    (forwarded, then the connection is cut before any answer: a network error). Once the plan
    runs out, everything is forwarded.

    Every answer closes its connection: Chromium silently resends a request cut on a reused
    keep-alive connection, which would hide a "reset" from the client under test.
    """

    upstream: str
    retry_after: str = "0"
    plan: list[str] = field(default_factory=list)
    posts: list[Post] = field(default_factory=list)
    page_port: int = field(default_factory=free_port)
    proxy_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._runners: list[web.AppRunner] = []
        self._call(self._start())

    @property
    def page_url(self) -> str:
        return f"http://127.0.0.1:{self.page_port}/"

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(15)

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        page = web.Application()
        page.router.add_get("/", self._page)
        proxy = web.Application(client_max_size=8 * 1024 * 1024)
        proxy.router.add_route("*", "/{tail:.*}", self._proxy)
        for app, port in ((page, self.page_port), (proxy, self.proxy_port)):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            self._runners.append(runner)

    async def _stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        await self._session.close()

    def close(self) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(body=PAGE, content_type="text/html")

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=body or None
        ) as up:
            payload = await up.read()
            out = {k: v for k, v in up.headers.items() if k.lower() not in HOP_BY_HOP}
            return web.Response(status=up.status, headers=out, body=payload)

    async def _proxy(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.method != "POST" or request.path != "/events":
            response = await self._forward(request, body)
            response.force_close()
            return response
        with self._cond:
            action = self.plan.pop(0) if self.plan else "forward"
        try:
            ids = [e.get("event_id") for e in json.loads(body)]
        except (ValueError, AttributeError, TypeError):
            ids = []
        post = Post(request.content_type, len(body), ids, time.monotonic(), action)
        with self._cond:  # recorded before the daemon sees it, so it is seen before it is logged
            self.posts.append(post)
            self._cond.notify_all()
        if action in ("refuse", "timeout"):
            response = self._fault(408 if action == "timeout" else 503)
        else:
            response = await self._forward(request, body)
            assert response.body is not None
            post.upstream = json.loads(bytes(response.body))
            if action == "lose":
                response = self._fault()
        if action == "reset":
            assert request.transport is not None
            request.transport.abort()
        response.force_close()
        return response

    def _fault(self, status: int = 503) -> web.Response:
        headers = {**FAULT_HEADERS, "Retry-After": self.retry_after}
        body = b'{"error": {"code": "injected", "message": "injected by the test proxy"}}'
        return web.Response(status=status, headers=headers, body=body)

    def seen(self) -> list[Post]:
        with self._cond:
            return list(self.posts)

    def wait_posts(self, n: int, timeout: float = 10.0) -> list[Post]:
        """The first n POSTs, once they have arrived (a beacon's only trace on our side)."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.posts) >= n, timeout):
                raise TimeoutError(f"{len(self.posts)} POST /events seen, waited for {n}")
            return list(self.posts)


@dataclass
class Stack:
    """What a test talks to: the daemon's SQLite file (the truth) and the edge in front."""

    db: Path
    edge: Edge


@pytest.fixture
def stack(daemon_factory: Any, drv: Any) -> Iterator[Stack]:
    """A fresh daemon (so its log holds only this test's events) behind a fresh proxy."""
    drv.set_script_timeout(20)
    daemon = daemon_factory().start()
    edge = Edge(daemon.url)
    try:
        yield Stack(daemon.db, edge)
    finally:
        for handle in drv.window_handles[1:]:
            drv.switch_to.window(handle)
            drv.close()
        drv.switch_to.window(drv.window_handles[0])
        drv.get("about:blank")  # the page's last beacons and stored copies happen here
        # A later test's page may get this port again: it must not adopt this test's events.
        drv.execute_cdp_cmd(
            "Storage.clearDataForOrigin",
            {"origin": edge.page_url.rstrip("/"), "storageTypes": "local_storage"},
        )
        edge.close()


OPEN_JS = """
const [src, opts, done] = arguments;
window.gravityErrors = [];
window.gravityFetches = 0;
const realFetch = window.fetch;
window.fetch = (input, init) => {
  if (init && init.method === "POST") window.gravityFetches += 1;
  return realFetch(input, init);
};
import(src).then(
  (m) => {
    window.gravity = m.createGravityClient({
      ...opts,
      onError: (e) => window.gravityErrors.push(e),
    });
    // Taken at once, so events adopted from earlier pages are still outstanding: see adopted().
    window.adoptedReport = window.gravity.flush();
    done({sessionId: window.gravity.sessionId});
  },
  (e) => done({error: String(e)}),
);
"""
TRACK_JS = """
return arguments[0].map(([type, track, opts]) => window.gravity.track(type, track, opts || {}));
"""
FLUSH_JS = """
const done = arguments[arguments.length - 1];
window.gravity.flush().then(done, (e) => done({thrown: String(e)}));
"""
ADOPTED_JS = """
const done = arguments[arguments.length - 1];
window.adoptedReport.then(done, (e) => done({thrown: String(e)}));
"""


def open_client(drv: Any, edge: Edge, *, before: str = "", **opts: Any) -> str:
    """Load the page, import client.js from the proxy's origin, create a client: its session.

    The client's url is the proxy unless the test passes url=None (then client.js's default,
    the origin it was loaded from, which is the proxy too)."""
    drv.get(edge.page_url)
    if before:
        drv.execute_script(before)
    opts = {"url": edge.proxy_url, **opts}
    if opts["url"] is None:
        del opts["url"]
    out = drv.execute_async_script(OPEN_JS, f"{edge.proxy_url}/client.js", opts)
    assert "error" not in out, out
    return out["sessionId"]


def track(drv: Any, items: list[tuple[str, str, dict[str, Any] | None]]) -> list[str]:
    """client.track() for each (event_type, track_id, options) in the page: the event_ids."""
    return drv.execute_script(TRACK_JS, [list(i) for i in items])


def plays(n: int, start: int = 0) -> list[tuple[str, str, dict[str, Any] | None]]:
    """n play_10s events on distinct tracks, for track()."""
    return [("play_10s", tid(start + i), None) for i in range(n)]


def flush(drv: Any) -> dict[str, Any]:
    """Await client.flush() in the page: the signal that everything tracked is settled."""
    report = drv.execute_async_script(FLUSH_JS)
    assert "thrown" not in report, report
    return report


STORED_JS = """
const out = {};
for (const key of Object.keys(localStorage)) {
  out[key] = JSON.parse(localStorage.getItem(key)).map((e) => e.event_id);
}
return out;
"""


def stored(drv: Any, edge: Edge) -> dict[str, list[str]]:
    """The event_ids kept in the page origin's localStorage, by key. Opens the bare test page
    (no client on it) unless a page of that origin is already open."""
    if not drv.current_url.startswith(edge.page_url):
        drv.get(edge.page_url)
    return drv.execute_script(STORED_JS)


def adopted(drv: Any) -> dict[str, Any]:
    """The report of a flush() made as the client was created: what became of the events it
    adopted from earlier pages (a later flush() may find them settled already)."""
    report = drv.execute_async_script(ADOPTED_JS)
    assert "thrown" not in report, report
    assert drv.execute_script("return window.gravity.pending") == 0
    return report


def log_rows(db: Path) -> list[tuple[str, str, str]]:
    """(event_id, session_id, track_id) of every logged event, in log order."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT event_id, session_id, track_id FROM events ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


def wait_rows(db: Path, n: int, timeout: float = 10.0) -> list[tuple[str, str, str]]:
    """Poll the log until it holds n events: a closed page leaves no other signal to wait on."""
    deadline = time.monotonic() + timeout
    while True:
        rows = log_rows(db)
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_exactly_once_through_a_503_and_in_order(stack: Stack, drv: Any) -> None:
    """A refused first batch is retried after Retry-After with the same ids; nothing is lost,
    nothing doubled, and the log holds the events in the order they were tracked."""
    edge = stack.edge
    edge.retry_after = "1"
    edge.plan = ["refuse"]
    # backoffBaseMs 5: a second's gap before the retry can only come from Retry-After.
    open_client(drv, edge, batchSize=50, flushIntervalMs=60_000, backoffBaseMs=5)
    ids = track(drv, plays(120))
    report = flush(drv)

    assert report == {"delivered": 120, "beaconed": 0, "rejected": [], "failed": [], "ok": True}
    posts = edge.seen()
    assert [p.action for p in posts] == ["refuse", "forward", "forward", "forward"]
    assert [len(p.event_ids) for p in posts] == [50, 50, 50, 20]
    assert posts[1].event_ids == posts[0].event_ids  # the retry resends the same events
    assert posts[1].at - posts[0].at >= 0.9  # Retry-After: 1 honoured
    assert {p.content_type for p in posts} == {"application/json"}
    rows = log_rows(stack.db)
    assert [r[0] for r in rows] == ids  # each once, in tracking order
    assert drv.execute_script("return window.gravity.pending") == 0


def test_request_timeout_is_retried(stack: Stack, drv: Any) -> None:
    """A 408 (the daemon's body timeout: a slow upload) refused nothing, so unlike other 4xx
    it is retried with the same events."""
    edge = stack.edge
    edge.plan = ["timeout"]
    open_client(drv, edge, flushIntervalMs=60_000, backoffBaseMs=5)
    ids = track(drv, plays(3))
    assert flush(drv)["delivered"] == 3
    assert [(p.action, p.event_ids) for p in edge.seen()] == [("timeout", ids), ("forward", ids)]
    assert [r[0] for r in log_rows(stack.db)] == ids


@pytest.mark.parametrize("fault", ["lose", "reset"])
def test_late_success_is_stored_once(stack: Stack, drv: Any, fault: str) -> None:
    """The daemon stores a batch but its 202 never reaches the browser (a 503 instead, or a cut
    connection): the client retries and the daemon recognises the retry as duplicates."""
    edge = stack.edge
    edge.plan = [fault]
    open_client(drv, edge, batchSize=50, flushIntervalMs=60_000, backoffBaseMs=5)
    ids = track(drv, plays(30))
    report = flush(drv)

    assert report["ok"] and report["delivered"] == 30
    first, retry = edge.seen()
    assert first.upstream is not None and first.upstream["accepted"] == 30
    assert first.upstream["duplicates"] == 0
    assert retry.event_ids == first.event_ids == ids
    assert retry.upstream is not None and retry.upstream["duplicates"] == 30
    assert drv.execute_script("return window.gravityFetches") == 2  # the client's own retry
    assert Counter(r[0] for r in log_rows(stack.db)) == Counter(ids)  # each exactly once


def test_refused_events_are_reported_never_retried(stack: Stack, drv: Any) -> None:
    """4xx answers are final: refused events are reported and dropped at once, valid ones of the
    same batch are stored, and an unknown event type never leaves the page."""
    edge = stack.edge
    open_client(drv, edge, batchSize=50, flushIntervalMs=60_000, backoffBaseMs=5, maxRetries=3)
    thrown = drv.execute_script(
        "try { window.gravity.track('rewind', arguments[0]); } catch (e) { return e.name; }",
        tid(1),
    )
    assert thrown == "TypeError"
    assert drv.execute_script("return window.gravity.pending") == 0

    # One batch, one bad event in it: a 202 that names it.
    mixed = [*plays(2), ("play_10s", "not-a-uuid", None), *plays(1, start=2)]
    ids = track(drv, mixed)
    report = flush(drv)
    assert report["delivered"] == 3 and not report["ok"]
    (bad,) = report["rejected"]
    assert bad["code"] == "invalid_track_id" and bad["field"] == "track_id"
    assert bad["status"] == 202 and bad["event"]["event_id"] == ids[2]

    # A batch with nothing valid: a 400, which must not be retried.
    bad_ids = track(drv, [("like", "nope", None), ("skip", tid(9), {"meta": {"elapsed_ms": -1}})])
    report = flush(drv)
    assert report["delivered"] == 0
    assert [(r["code"], r["status"]) for r in report["rejected"]] == [
        ("invalid_track_id", 400),
        ("invalid_elapsed_ms", 400),
    ]
    assert [r["event"]["event_id"] for r in report["rejected"]] == bad_ids
    assert len(edge.seen()) == 2  # one request per batch: neither was retried
    errors = drv.execute_script("return window.gravityErrors")
    assert [e["code"] for e in errors] == [
        "invalid_track_id",
        "invalid_track_id",
        "invalid_elapsed_ms",
    ]
    assert [r[0] for r in log_rows(stack.db)] == [ids[0], ids[1], ids[3]]


def test_gives_up_after_max_retries_and_keeps_going(stack: Stack, drv: Any) -> None:
    """An outage longer than maxRetries drops that batch with a report instead of blocking the
    queue for ever; the timer sends without any flush() call."""
    edge = stack.edge
    edge.plan = ["refuse"] * 3
    open_client(drv, edge, url=None, flushIntervalMs=50, backoffBaseMs=1, maxRetries=2)
    track(drv, plays(5))
    edge.wait_posts(3)  # the first try and two retries, all refused
    WebDriverWait(drv, 10).until(
        lambda d: len(d.execute_script("return window.gravityErrors")) == 5
    )
    errors = drv.execute_script("return window.gravityErrors")
    assert {(e["code"], e["status"]) for e in errors} == {("retries_exhausted", 503)}

    (kept,) = track(drv, plays(1, start=5))
    fourth = edge.wait_posts(4)[3]
    assert fourth.event_ids == [kept]
    assert [r[0] for r in wait_rows(stack.db, 1)] == [kept]
    assert len(edge.seen()) == 4  # the given-up batch was not sent again
    assert drv.execute_script("return window.gravity.pending") == 0


@pytest.mark.parametrize("leave", ["navigate", "pagehide"])
def test_pagehide_hands_everything_to_beacons(stack: Stack, drv: Any, leave: str) -> None:
    """Nothing is sent before the timer; leaving the page beacons the queue as text/plain
    chunks under the size limit, and each event lands in the log exactly once.

    A real navigation also fires visibilitychange, so "pagehide" dispatches that event alone to
    prove the client listens to it (a bfcache-able page gets no unload)."""
    edge = stack.edge
    open_client(drv, edge, batchSize=100, flushIntervalMs=60_000, beaconMaxBytes=8000)
    pad = "x" * 200  # about 450 bytes an event: 60 events need four beacons of 8,000 bytes
    ids = track(drv, [("play_10s", tid(i), {"meta": {"note": pad}}) for i in range(60)])
    assert drv.execute_script("return window.gravity.pending") == 60
    assert edge.seen() == []  # the flush interval has not passed: nothing was sent yet

    if leave == "navigate":
        drv.get("about:blank")
    else:
        drv.execute_script(
            "window.dispatchEvent(new PageTransitionEvent('pagehide', {persisted: true}));"
        )
        assert drv.execute_script("return window.gravity.pending") == 0
        assert drv.execute_script("return window.gravityFetches") == 0  # beacons only
    rows = wait_rows(stack.db, len(ids))
    assert Counter(r[0] for r in rows) == Counter(ids)
    posts = edge.seen()
    assert len(posts) >= 4
    assert {p.content_type for p in posts} == {"text/plain"}
    assert max(p.size for p in posts) <= 8000
    assert sorted(i for p in posts for i in p.event_ids) == sorted(ids)


def test_beacon_takes_a_batch_waiting_for_its_retry(stack: Stack, drv: Any) -> None:
    """A batch refused by a 503 and waiting out a long Retry-After is not lost when the page
    goes: it leaves with the beacon, and flush() counts it as delivered."""
    edge = stack.edge
    edge.retry_after = "120"
    edge.plan = ["refuse"]
    open_client(drv, edge, flushIntervalMs=60_000)
    ids = track(drv, plays(5))
    drv.execute_script(
        "window.flushed = null; window.gravity.flush().then((r) => { window.flushed = r; });"
    )
    edge.wait_posts(1)  # refused; the retry is two minutes away
    # A hidden page is the last moment mobile browsers promise; headless Chromium never hides a
    # tab on its own, so dispatch the event it would send.
    drv.execute_script(
        "Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true});"
        "document.dispatchEvent(new Event('visibilitychange'));"
    )
    report = drv.execute_async_script(
        "const done = arguments[0];"
        "const check = () => window.flushed ? done(window.flushed) : setTimeout(check, 10);"
        "check();"
    )
    assert report["beaconed"] == 5 and report["delivered"] == 0 and report["ok"]
    rows = wait_rows(stack.db, len(ids))
    assert Counter(r[0] for r in rows) == Counter(ids)
    beacon = edge.seen()[1]
    assert beacon.content_type == "text/plain" and beacon.event_ids == ids


def test_beacon_overflow_is_sent_by_the_next_page(stack: Stack, drv: Any) -> None:
    """Chromium takes at most 64 KiB of beacons in flight from a page: what does not fit is kept
    in localStorage (with what the beacon took) and sent by the next page of the origin, still
    exactly once."""
    edge = stack.edge
    open_client(drv, edge, batchSize=5000, flushIntervalMs=60_000)
    pad = "y" * 1000
    ids = track(drv, [("play_10s", tid(i), {"meta": {"note": pad}}) for i in range(150)])
    drv.get("about:blank")  # pagehide: one 60 KB beacon fits, the rest is refused
    (beacon,) = edge.wait_posts(1)
    assert beacon.content_type == "text/plain"
    assert 0 < len(beacon.event_ids) < len(ids), "the browser took every beacon: no overflow"
    assert beacon.event_ids == ids[: len(beacon.event_ids)]

    open_client(drv, edge)  # a later page of the same origin adopts the leftovers
    report = adopted(drv)
    # every stored event is sent again, the beaconed ones too: nothing confirmed them
    assert report["ok"] and report["delivered"] == len(ids)
    resent = edge.seen()[1:]
    assert {p.content_type for p in resent} == {"application/json"}
    assert [i for p in resent for i in p.event_ids] == ids  # first, in tracking order
    rows = wait_rows(stack.db, len(ids))
    assert Counter(r[0] for r in rows) == Counter(ids)
    assert drv.execute_script("return Object.keys(localStorage)") == []


def test_refused_beacon_is_resent_by_the_next_page(stack: Stack, drv: Any) -> None:
    """The beacon is answered 503 (never forwarded) and the page cannot see it: the events it
    carried stay in localStorage and the next page of the origin sends them, exactly once."""
    edge = stack.edge
    edge.plan = ["refuse"]
    open_client(drv, edge, flushIntervalMs=60_000)
    ids = track(drv, plays(20))
    drv.get("about:blank")  # pagehide: one beacon, which the proxy refuses
    (beacon,) = edge.wait_posts(1)
    assert (beacon.action, beacon.content_type, beacon.event_ids) == ("refuse", "text/plain", ids)
    assert log_rows(stack.db) == []  # the daemon never saw them
    ((key, kept),) = stored(drv, edge).items()
    assert key.startswith("gravityd.unsent:") and kept == ids

    open_client(drv, edge)  # a later page of the same origin
    report = adopted(drv)
    assert report == {"delivered": 20, "beaconed": 0, "rejected": [], "failed": [], "ok": True}
    (resend,) = edge.seen()[1:]
    assert resend.content_type == "application/json" and resend.event_ids == ids
    assert resend.upstream is not None
    assert (resend.upstream["accepted"], resend.upstream["duplicates"]) == (20, 0)
    assert [r[0] for r in log_rows(stack.db)] == ids  # each once, in tracking order
    assert drv.execute_script("return Object.keys(localStorage)") == []
    assert drv.execute_script("return window.gravityErrors") == []


def test_delivered_beacon_is_confirmed_by_the_next_page(stack: Stack, drv: Any) -> None:
    """A beacon that did reach the daemon looks the same to the page as a refused one: the next
    page sends its events again, the daemon answers them as duplicates, storage ends empty."""
    edge = stack.edge
    open_client(drv, edge, flushIntervalMs=60_000)
    ids = track(drv, plays(20))
    drv.get("about:blank")
    (beacon,) = edge.wait_posts(1)
    assert beacon.action == "forward" and beacon.event_ids == ids
    assert [r[0] for r in wait_rows(stack.db, len(ids))] == ids  # the beacon stored them
    assert list(stored(drv, edge).values()) == [ids]  # but the page could not know

    open_client(drv, edge)
    assert adopted(drv) == {
        "delivered": 20,
        "beaconed": 0,
        "rejected": [],
        "failed": [],
        "ok": True,
    }
    (resend,) = edge.seen()[1:]
    assert resend.event_ids == ids
    assert resend.upstream is not None
    assert resend.upstream["duplicates"] == 20  # "accepted" counts them too: they are logged
    assert [r[0] for r in log_rows(stack.db)] == ids  # still exactly once
    assert drv.execute_script("return Object.keys(localStorage)") == []


def test_stored_copies_are_bounded_confirmed_on_return_or_off(stack: Stack, drv: Any) -> None:
    """Past persistMaxEvents the oldest stored copies are dropped and reported; a page back
    from the bfcache confirms its own stored events; persistKey null keeps nothing."""
    edge = stack.edge
    open_client(drv, edge, flushIntervalMs=60_000, persistMaxEvents=5)
    ids = track(drv, plays(8))
    drv.execute_script(
        "window.dispatchEvent(new PageTransitionEvent('pagehide', {persisted: true}));"
    )
    errors = drv.execute_script("return window.gravityErrors")
    assert [(e["code"], e["status"]) for e in errors] == [("persist_dropped", 0)] * 3
    assert [e["event"]["event_id"] for e in errors] == ids[:3]  # the oldest
    assert list(stored(drv, edge).values()) == [ids[3:]]
    assert [r[0] for r in wait_rows(stack.db, 8)] == ids  # the beacon itself went through

    # Back from the bfcache: the five stored events are sent again and confirmed.
    report = drv.execute_async_script(
        "window.dispatchEvent(new PageTransitionEvent('pageshow', {persisted: true}));"
        "window.gravity.flush().then(arguments[0]);"
    )
    assert report == {
        "delivered": 5,
        "beaconed": 0,
        "rejected": [],
        "failed": [],
        "ok": True,
    }
    confirm = edge.seen()[1]
    assert confirm.content_type == "application/json" and confirm.event_ids == ids[3:]
    assert confirm.upstream is not None and confirm.upstream["duplicates"] == 5
    assert stored(drv, edge) == {}

    # persistKey null: a refused beacon is simply lost, and nothing is left to adopt.
    edge.plan = ["refuse"]
    open_client(drv, edge, flushIntervalMs=60_000, persistKey=None)
    track(drv, plays(3, start=8))
    drv.get("about:blank")
    assert edge.wait_posts(3)[2].action == "refuse"
    assert stored(drv, edge) == {}
    open_client(drv, edge)
    assert adopted(drv)["delivered"] == 0
    assert len(edge.seen()) == 3
    assert [r[0] for r in log_rows(stack.db)] == ids


def test_session_survives_reload_and_event_ids_are_unique(stack: Stack, drv: Any) -> None:
    """A reload keeps the tab's session (the graph needs one session per listening run), a new
    tab starts another, and ids are unique UUIDv4s with or without crypto.randomUUID."""
    edge = stack.edge
    session = open_client(drv, edge)
    assert drv.execute_script("return sessionStorage.getItem('gravityd.session_id')") == session
    ids = track(drv, plays(200))

    drv.refresh()  # a pending queue is beaconed; the session goes on
    # Without randomUUID (an insecure context has none), the fallback on getRandomValues.
    no_random_uuid = (
        "delete Crypto.prototype.randomUUID; window.randomCalls = 0;"
        "const g = crypto.getRandomValues.bind(crypto);"
        "crypto.getRandomValues = (a) => { window.randomCalls += 1; return g(a); };"
    )
    assert open_client(drv, edge, before=no_random_uuid) == session
    drv.execute_script("window.randomCalls = 0;")
    ids += track(drv, plays(200, start=200))
    assert drv.execute_script("return window.randomCalls") == 200
    assert flush(drv)["ok"]

    drv.switch_to.new_window("tab")
    other = open_client(drv, edge)
    assert other != session
    ids += track(drv, plays(1))
    assert flush(drv)["delivered"] == 1

    assert len(set(ids)) == len(ids) == 401
    assert all(UUID4_RE.match(i) for i in ids)
    rows = wait_rows(stack.db, len(ids))  # the reload's beacon may still be on its way
    assert Counter(r[0] for r in rows) == Counter(ids)
    assert Counter(r[1] for r in rows) == {session: 400, other: 1}
