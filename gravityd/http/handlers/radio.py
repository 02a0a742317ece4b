"""GET /radio/report and GET /stats: the figures the radio's team and the explorer watch."""

from __future__ import annotations

import time

from aiohttp import web

from gravityd.core.events import EventError
from gravityd.core.scoreboard import parse_report_query
from gravityd.http.errors import event_error, json_response
from gravityd.http.keys import SERVICE
from gravityd.http.params import read_gate


async def get_radio_report(request: web.Request) -> web.Response:
    """The radio's scoreboard; `until` defaults to the server's clock."""
    svc = request.app[SERVICE]
    try:
        query = parse_report_query(
            request.query, time.time(), svc.config.report, svc.config.max_context_len
        )
    except EventError as exc:
        raise event_error(exc) from None
    cursor = await read_gate(request)
    return json_response(await svc.radio_report(query), headers=cursor)


async def get_stats(request: web.Request) -> web.Response:
    cursor = await read_gate(request)
    return json_response(await request.app[SERVICE].stats(), headers=cursor)
