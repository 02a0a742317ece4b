"""The browser side's files (explorer page, client.js), shipped inside the package.

Served from memory: a handful of small files read once at start (so an edited file shows
after a restart), with an ETag so a reload costs a 304. Only files that exist in
`gravityd/http/static/` at start are served; names never touch the filesystem at request time, so
no path can escape the folder.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import NamedTuple

from aiohttp import web

STATIC_PACKAGE = "gravityd.http"
STATIC_DIR = "static"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}
# The explorer loads nothing from anywhere else; the policy makes that a browser-enforced fact.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)


class Asset(NamedTuple):
    body: bytes
    content_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """Every servable file of the static folder, by name."""
    out: dict[str, Asset] = {}
    folder = resources.files(STATIC_PACKAGE) / STATIC_DIR
    if not folder.is_dir():
        return out
    for item in folder.iterdir():
        suffix = "." + item.name.rsplit(".", 1)[-1] if "." in item.name else ""
        if not item.is_file() or suffix not in TYPES:
            continue
        body = item.read_bytes()
        etag = '"' + hashlib.blake2b(body, digest_size=8).hexdigest() + '"'
        out[item.name] = Asset(body, TYPES[suffix], etag)
    return out


def _etag_matches(header: str | None, etag: str) -> bool:
    """If-None-Match may list several tags, weak (W/) ones included, or be "*"."""
    if not header:
        return False
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


def _respond(request: web.Request, asset: Asset) -> web.Response:
    headers = {
        "Content-Type": asset.content_type,
        "ETag": asset.etag,
        "Cache-Control": "no-cache",  # revalidate: a new release must show at once
        "X-Content-Type-Options": "nosniff",
    }
    if asset.content_type.startswith("text/html"):
        headers["Content-Security-Policy"] = PAGE_POLICY
        headers["Referrer-Policy"] = "no-referrer"
    if _etag_matches(request.headers.get("If-None-Match"), asset.etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, headers=headers)


ASSETS: web.AppKey[dict[str, Asset]] = web.AppKey("assets", dict)


def install_assets(app: web.Application) -> None:
    """Read the static folder once, for the handlers below (the route table routes them)."""
    app[ASSETS] = load_assets()


def _serve(request: web.Request, name: str) -> web.Response:
    asset = request.app[ASSETS].get(name)
    if asset is None:
        raise web.HTTPNotFound(reason=f"no such file: {name}")
    return _respond(request, asset)


async def index(request: web.Request) -> web.Response:
    """GET /: the explorer."""
    return _serve(request, "index.html")


async def client_js(request: web.Request) -> web.Response:
    """GET /client.js: the browser client, for pages of other origins too."""
    return _serve(request, "client.js")


async def static_file(request: web.Request) -> web.Response:
    """GET /static/{name}: the explorer's files."""
    return _serve(request, request.match_info["name"])
