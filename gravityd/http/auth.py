"""Who may call /admin/*: a bearer token when one is set, else local operators only.

Applied by the route table (routes marked `admin`) when the router is built, so an admin
handler cannot forget it and the other routes pay nothing for it.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from gravityd.http.errors import ApiError
from gravityd.http.limits import parse_address

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Headers that say a loopback request is not a local operator's: a reverse proxy on the same
# host forwarded it from somebody else, or a web page made the browser send it (CSRF: a page
# on any site can POST to 127.0.0.1 "no-cors" and the browser sends it, answer unread).
PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP", "X-Forwarded-Host")


def is_loopback(remote: str | None) -> bool:
    addr = parse_address(remote)
    return addr is not None and addr.is_loopback


def not_local_operator(request: web.Request) -> bool:
    headers = request.headers
    if any(h in headers for h in PROXY_HEADERS):
        return True
    if "Origin" in headers:
        return True
    site = headers.get("Sec-Fetch-Site")
    return site is not None and site != "none"


def require_admin(request: web.Request, token: str) -> None:
    """Raise 401 (token set, wrong or missing) or 403 (no token: not a local tool)."""
    if token:
        auth = request.headers.get("Authorization", "")
        scheme, _, given = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            raise ApiError(
                401,
                "unauthorized",
                "a valid bearer token is required",
                headers={"WWW-Authenticate": 'Bearer realm="gravityd"'},
            )
    elif not is_loopback(request.remote) or not_local_operator(request):
        raise ApiError(
            403,
            "forbidden",
            "with no admin_token set, admin endpoints answer only local tools, not proxies "
            "or browsers",
        )


def admin_only(handler: Handler, token: str) -> Handler:
    """The handler behind the admin check, which runs before it parses anything."""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        require_admin(request, token)
        return await handler(request)

    return guarded
