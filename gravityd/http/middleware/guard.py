"""Guard: the limits a request passes before its handler: URL length, requests in flight,
and a per-client rate on the table's `rate_limited` routes."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from gravityd.config import Config
from gravityd.daemon.metrics import Metrics
from gravityd.http.errors import ApiError
from gravityd.http.limits import ClientIdentity, RateLimiter, parse_networks, retry_after
from gravityd.http.routes import Handler, PathSet, Route

REFUSALS = ("rate_limited", "overloaded", "url_too_long")


class Guard:
    """Probes (routes not `capped`) pass untouched, so a saturated daemon still answers them;
    a refusal is an ApiError with Retry-After where waiting helps."""

    __middleware_version__ = 1  # aiohttp: a new-style middleware (request, handler)

    def __init__(self, cfg: Config, metrics: Metrics, routes: Iterable[Route]) -> None:
        routes = list(routes)
        self.max_url = cfg.max_url_bytes
        self.max_inflight = cfg.max_concurrent_requests
        self.inflight = 0
        self.uncapped = PathSet(r.path for r in routes if not r.capped)
        methods = {r.method for r in routes if r.rate_limited}
        self.rate_limited = {
            m: PathSet(r.path for r in routes if r.rate_limited and r.method == m) for m in methods
        }
        self.limiter = RateLimiter(
            cfg.rate_limit_per_s, cfg.rate_limit_burst, cfg.rate_limit_max_clients
        )
        self.identity = ClientIdentity(
            parse_networks(cfg.rate_limit_exempt, "rate_limit_exempt"),
            parse_networks(cfg.trusted_proxies, "trusted_proxies"),
        )
        # peer address -> exempt; used only when no proxy is trusted (then the peer is the client)
        self._exempt_peers: dict[str, bool] = {}
        self._refused = {r: metrics.requests_refused.labels(r) for r in REFUSALS}

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in self.uncapped:
            return await handler(request)
        self.inflight += 1
        try:
            self.check(request)
            return await handler(request)
        finally:
            self.inflight -= 1

    def check(self, request: web.Request) -> None:
        if len(request.raw_path) > self.max_url:
            raise self.refuse(
                "url_too_long", 414, f"the path and query are longer than {self.max_url} bytes"
            )
        if self.inflight > self.max_inflight:
            raise self.refuse("overloaded", 503, "too many requests in flight; retry", 1.0)
        paths = self.rate_limited.get(request.method)
        if paths is not None and self.limiter.enabled and request.path in paths:
            key = self.rate_key(request)
            if key is not None:
                wait = self.limiter.take(key)
                if wait > 0.0:
                    raise self.refuse(
                        "rate_limited", 429, "too many requests from this client; slow down", wait
                    )

    def refuse(self, reason: str, status: int, message: str, wait: float = 0.0) -> ApiError:
        self._refused[reason].inc()
        headers = {"Retry-After": retry_after(wait)} if status in (429, 503) else None
        return ApiError(status, reason, message, headers=headers)

    def rate_key(self, request: web.Request) -> str | None:
        remote = request.remote
        if not self.identity.trusted:
            exempt = self._exempt_peers.get(remote or "")
            if exempt is None:
                if len(self._exempt_peers) > 10_000:
                    self._exempt_peers.clear()
                exempt = self.identity.key(remote, None) is None
                self._exempt_peers[remote or ""] = exempt
            return None if exempt else (remote or "unknown")
        # Every X-Forwarded-For line, in order: a proxy appends its own line after the client's.
        forwarded = ", ".join(request.headers.getall("X-Forwarded-For", ()))
        return self.identity.key(remote, forwarded or None)
