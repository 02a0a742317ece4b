"""The one HTTP client of the commands that talk to a running daemon (simulate, report, import,
snapshot), so each of them sends the admin token, retries and words its errors the same way.

- The token: `GRAVITYD_ADMIN_TOKEN`, sent as `Authorization: Bearer` when set (the daemon
  ignores it on routes that need none).
- Retries: a connection refused or dropped, and a `429`/`502`/`503`/`504` answer, are tried again
  after the `Retry-After` the daemon sends, else after an exponential back-off. Every request
  the commands make is safe to repeat: events carry their `event_id`, folds and ranks are
  idempotent. A timeout is not retried: the daemon is busy with the request.
- Errors: `DaemonError`, one line a command prints as it is ("cannot reach URL: reason",
  "POST /rank refused (400 invalid_track_id): ... (field)").

`Client` is for asyncio code (the simulator runs many sessions at once over one connection
pool); `BlockingClient` is the same client for commands that do one request at a time.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

RETRY_STATUSES = frozenset({429, 502, 503, 504})
DEFAULT_RETRIES = 3
DEFAULT_TIMEOUT_S = 30.0
MAX_BACKOFF_S = 10.0
MAX_RETRY_AFTER_S = 60.0


class DaemonError(Exception):
    """A request that failed, in one line; `status` is None when the daemon was not reached."""

    def __init__(self, message: str, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Answer:
    """A daemon's answer: status, headers and the body as sent."""

    status: int
    headers: Mapping[str, str]
    raw: bytes

    @property
    def ok(self) -> bool:
        return self.status < 400

    def json(self) -> Any:
        try:
            return orjson.loads(self.raw)
        except orjson.JSONDecodeError:
            return None

    def error(self) -> dict[str, str]:
        """The contract's error object, or one made from a body that is not one (a proxy's)."""
        body = self.json()
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            return body["error"]
        text = self.raw[:200].decode(errors="replace").strip()
        return {"code": "http_error", "message": text or f"HTTP {self.status}"}


@dataclass(frozen=True)
class Accepted:
    """A POST /events answer: events accepted, of which already in the log, the last position."""

    accepted: int
    duplicates: int
    last_id: int

    @property
    def new(self) -> int:
        return self.accepted - self.duplicates


def admin_token() -> str:
    return os.environ.get("GRAVITYD_ADMIN_TOKEN", "")


def retry_delay(headers: Mapping[str, str], attempt: int, backoff_s: float) -> float:
    """The daemon's Retry-After when it sends one, else backoff_s doubling per attempt."""
    fallback = min(backoff_s * 2**attempt, MAX_BACKOFF_S)
    raw = headers.get("Retry-After")
    try:
        wait = float(raw) if raw is not None else fallback
    except ValueError:
        wait = fallback
    return min(max(wait, 0.0), MAX_RETRY_AFTER_S)


def check_url(url: str) -> str:
    """The base URL without a trailing slash; ValueError (a usage error) if it is not http(s)."""
    if not url.startswith(("http://", "https://")) or len(url.rstrip("/")) <= len("https://"):
        raise ValueError(f"not a daemon URL: {url!r} (expected http://HOST:PORT)")
    return url.rstrip("/")


class Client:
    """The daemon's HTTP API for asyncio code: one connection pool, made on first use."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        retries: int = DEFAULT_RETRIES,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        backoff_s: float = 0.25,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.url = check_url(url)
        self.token = admin_token() if token is None else token
        self.retries = retries
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.retried = 0  # requests sent again (the daemon asked to wait, or was unreachable)
        self._http: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            self._http = aiohttp.ClientSession(
                headers=headers, timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            )
        return self._http

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        body: bytes | None = None,
        content_type: str = "application/json",
        query: Mapping[str, str] | None = None,
    ) -> Answer:
        """Send with retries; the last answer whatever its status, DaemonError if unreachable."""
        if json is not None:
            body = orjson.dumps(json)
        headers = {"Content-Type": content_type} if body is not None else {}
        where = self.url + path
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                async with self._session().request(
                    method, where, data=body, params=query, headers=headers
                ) as r:
                    answer = Answer(r.status, dict(r.headers), await r.read())
            except TimeoutError:
                raise DaemonError(
                    f"no answer from {self.url} to {method} {path} within {self.timeout_s:g} s"
                ) from None
            except (aiohttp.ClientConnectionError, OSError) as exc:
                if last:
                    raise DaemonError(f"cannot reach {self.url}: {_reason(exc)}") from None
                self.retried += 1
                await self.sleep(min(self.backoff_s * 2**attempt, MAX_BACKOFF_S))
                continue
            if answer.status in RETRY_STATUSES and not last:
                self.retried += 1
                await self.sleep(retry_delay(answer.headers, attempt, self.backoff_s))
                continue
            return answer
        raise AssertionError("unreachable")

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """`request`, then the JSON body; DaemonError for an error answer."""
        answer = await self.request(method, path, **kwargs)
        if not answer.ok:
            raise refused(method, path, answer)
        return answer.json()

    async def post_events(self, events: list[dict[str, Any]]) -> Accepted:
        """POST /events for callers whose every event must be valid (a rejected one is a bug)."""
        answer = await self.request("POST", "/events", json=events)
        body = answer.json()
        if answer.status != 202 or not isinstance(body, dict) or body.get("rejected"):
            if answer.ok and isinstance(body, dict):
                first = body["rejected"][0]
                raise DaemonError(f"the daemon refused event {first['index']}: {first['error']}")
            raise refused("POST", "/events", answer)
        return Accepted(body["accepted"], body.get("duplicates", 0), body.get("last_id", 0))

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class BlockingClient:
    """`Client` for commands that do one request at a time: it runs its own event loop."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.client = Client(url, **kwargs)
        self._runner = asyncio.Runner()

    @property
    def url(self) -> str:
        return self.client.url

    @property
    def retried(self) -> int:
        return self.client.retried

    def request(self, method: str, path: str, **kwargs: Any) -> Answer:
        return self._runner.run(self.client.request(method, path, **kwargs))

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._runner.run(self.client.call(method, path, **kwargs))

    def close(self) -> None:
        try:
            self._runner.run(self.client.close())
        finally:
            self._runner.close()

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def refused(method: str, path: str, answer: Answer) -> DaemonError:
    """An error answer as one line: what was asked, the status, the code, the message."""
    err = answer.error()
    field = f" ({err['field']})" if err.get("field") else ""
    code = err.get("code", "")
    return DaemonError(
        f"{method} {path} refused ({answer.status} {code}): {err.get('message', '')}{field}",
        answer.status,
        code,
    )


def _reason(exc: BaseException) -> str:
    os_error = getattr(exc, "os_error", None)  # aiohttp's connector errors wrap the OSError
    if isinstance(os_error, OSError) and os_error.strerror:
        return os_error.strerror
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
