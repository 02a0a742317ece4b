"""The commands' one HTTP client: the token, retries after Retry-After or a back-off, one-line
errors, and no other HTTP client among the commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gravityd.commands.client import BlockingClient, Client, DaemonError, retry_delay

from .support import REPO, free_port

SEEN = web.AppKey("seen", list)


def flaky_app(
    failures: int, status: int = 503, retry_after: str | None = "0.25"
) -> web.Application:
    """Answers `status` `failures` times, then 202 with what it saw."""
    seen: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append({"auth": request.headers.get("Authorization"), "body": await request.read()})
        if len(seen) <= failures:
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            return web.json_response(
                {"error": {"code": "busy", "message": "later"}}, status=status, headers=headers
            )
        return web.json_response({"accepted": 1, "duplicates": 0, "last_id": 7}, status=202)

    app = web.Application()
    app.router.add_post("/events", handle)
    app[SEEN] = seen
    return app


async def test_retries_after_retry_after_and_sends_the_token(aiohttp_server: Any) -> None:
    server = await aiohttp_server(flaky_app(2))
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    async with Client(str(server.make_url("/")), token="t0k", sleep=sleep) as client:
        answer = await client.post_events([{"x": 1}])
    assert (answer.accepted, answer.new, answer.last_id) == (1, 1, 7)
    assert waits == [0.25, 0.25] and client.retried == 2
    seen = server.app[SEEN]
    assert [s["auth"] for s in seen] == ["Bearer t0k"] * 3
    assert all(s["body"] == b'[{"x":1}]' for s in seen)


async def test_gives_up_with_the_last_answer_as_one_line(aiohttp_server: Any) -> None:
    server = await aiohttp_server(flaky_app(10, retry_after=None))
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    client = Client(str(server.make_url("/")), token="", retries=3, backoff_s=0.5, sleep=sleep)
    with pytest.raises(DaemonError) as err:
        await client.post_events([{"x": 1}])
    await client.close()
    assert waits == [0.5, 1.0, 2.0]  # no Retry-After: the back-off doubles
    assert err.value.status == 503 and err.value.code == "busy"
    assert str(err.value) == "POST /events refused (503 busy): later"
    assert server.app[SEEN][0]["auth"] is None  # no token, no header


async def test_a_client_error_is_not_retried(aiohttp_server: Any) -> None:
    server = await aiohttp_server(flaky_app(1, status=400))
    async with Client(str(server.make_url("/")), token="") as client:
        answer = await client.request("POST", "/events", json=[])
    assert answer.status == 400 and client.retried == 0


def test_unreachable_is_retried_then_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with BlockingClient(url, retries=2, backoff_s=0.01) as client:
        with pytest.raises(DaemonError) as err:
            client.call("GET", "/readyz")
        assert client.retried == 2
    assert str(err.value).startswith(f"cannot reach {url}: ")
    assert err.value.status is None and "\n" not in str(err.value)


def test_retry_delay_honours_the_daemon_then_backs_off() -> None:
    assert retry_delay({"Retry-After": "3"}, 0, 0.5) == 3.0
    assert retry_delay({"Retry-After": "soon"}, 2, 0.5) == 2.0
    assert retry_delay({"Retry-After": "100000"}, 0, 0.5) == 60.0
    assert retry_delay({}, 10, 0.5) == 10.0


def test_not_a_url_is_a_usage_error() -> None:
    with pytest.raises(ValueError, match="not a daemon URL"):
        Client("localhost:8080")


def test_the_commands_have_one_http_client() -> None:
    """Only commands/client.py opens HTTP connections among the commands and the lab."""
    others = []
    for folder in ("commands", "lab"):
        for path in sorted((REPO / "gravityd" / folder).glob("*.py")):
            if path.name == "client.py":
                continue
            text = Path(path).read_text()
            if any(s in text for s in ("urllib.request", "ClientSession(", "http.client")):
                others.append(path.name)
    assert others == []
