"""Galaxies and routes through a real server: planted neighbourhoods come back as galaxies, a
route is a playable path of warp lanes, both survive a restart through the snapshot, and every
bad input is a 4xx naming its field.

`POST /admin/snapshot` is the explicit signal: it brings the galaxies up to the lanes before it
writes, so no test waits on the background interval.
"""

from __future__ import annotations

import itertools
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gravityd.core.galaxies import GalaxyParams
from gravityd.daemon.service import Gravityd
from gravityd.gravity import route as route_in_process
from gravityd.http.app import create_app

from .support import event, make_config, tid

# A worker process computes the galaxies.
pytestmark = pytest.mark.process

GROUPS, SIZE = 3, 8


def track(group: int, i: int) -> str:
    return tid(f"g{group}-{i}")


def planted_sessions(seed: int = 1) -> list[dict[str, Any]]:
    """Listeners who wander inside one group of tracks, and rarely step to another."""
    rnd = random.Random(seed)
    out: list[dict[str, Any]] = []
    for s in range(120):
        g = s % GROUPS
        here = rnd.randrange(SIZE)
        for step in range(8):
            if step == 4 and s % 20 == 0:
                g = (g + 1) % GROUPS  # a rare crossing
            here = (here + rnd.choice((1, 2, 3))) % SIZE
            out.append(event(f"s{s}", f"g{g}-{here}", "play_10s"))
    return out


async def start(aiohttp_client: Any, folder: Path, **galaxies: Any) -> tuple[Any, Gravityd]:
    cfg = make_config(folder)
    cfg.galaxies = GalaxyParams(**{"galaxies_interval_s": 3600.0, **galaxies})
    svc = Gravityd(cfg)
    return await aiohttp_client(create_app(svc)), svc


async def fold_and_snapshot(client: Any) -> None:
    assert (await client.post("/admin/fold")).status == 200
    assert (await client.post("/admin/snapshot")).status == 200


async def test_planted_neighbourhoods_are_galaxies(aiohttp_client: Any, tmp_path: Path) -> None:
    client, _ = await start(aiohttp_client, tmp_path)
    assert (await client.post("/events", json=planted_sessions())).status == 202
    await fold_and_snapshot(client)

    page = await (await client.get("/galaxies")).json()
    assert page["count"] == GROUPS and len(page["galaxies"]) == GROUPS
    group_of = {track(g, i): g for g in range(GROUPS) for i in range(SIZE)}
    for gal in page["galaxies"]:
        detail = await (await client.get(f"/galaxies/{gal['galaxy']}?limit=100")).json()
        members = [t["track_id"] for t in detail["tracks"]]
        assert len({group_of[t] for t in members}) == 1, members  # one planted group each
        assert detail["size"] == gal["size"] == SIZE
        cents = [t["centrality"] for t in detail["tracks"]]
        assert cents == sorted(cents, reverse=True)
        assert gal["tracks"] == members[:10]

    one = await (await client.get(f"/tracks/{track(0, 0)}")).json()
    assert isinstance(one["galaxy"], int) and one["centrality"] > 0
    top = await (await client.get("/tracks/top?by=centrality&limit=5")).json()
    assert [t["centrality"] for t in top] == sorted((t["centrality"] for t in top), reverse=True)
    assert (await client.get("/tracks/top?by=fame")).status == 400


async def test_a_route_is_a_path_of_lanes(aiohttp_client: Any, tmp_path: Path) -> None:
    client, _ = await start(aiohttp_client, tmp_path)
    assert (await client.post("/events", json=planted_sessions())).status == 202
    await fold_and_snapshot(client)
    a, b = track(0, 0), track(0, 5)
    resp = await client.get(f"/route?from={a}&to={b}")
    assert resp.status == 200 and "Gravityd-Cursor" in resp.headers
    got = await resp.json()
    path = got["path"]
    assert path[0] == a and path[-1] == b and len(set(path)) == len(path) == got["hops"] + 1
    product = 1.0
    for x, y in itertools.pairwise(path):
        lanes = await (await client.get(f"/tracks/{x}/gravity_neighbors?limit=100")).json()
        score = {lane["track_id"]: lane["normalized_score"] for lane in lanes}
        assert y in score  # every hop is a warp lane
        product *= score[y]
    assert got["score"] == pytest.approx(product)

    # A blocked track is never on a route; max_len is honoured; none within it is no_route.
    if got["hops"] > 1:
        middle = path[1]
        assert (await client.put(f"/admin/tracks/{middle}/block")).status == 200
        again = await (await client.get(f"/route?from={a}&to={b}")).json()
        assert middle not in again["path"]
        assert (await client.delete(f"/admin/tracks/{middle}/block")).status == 200
    for hops in (1, 2):
        resp = await client.get(f"/route?from={a}&to={b}&max_len={hops}")
        if resp.status == 200:
            assert (await resp.json())["hops"] <= hops
        else:
            assert resp.status == 404
            assert (await resp.json())["error"]["code"] == "no_route"
    unknown = tid("nowhere")
    resp = await client.get(f"/route?from={a}&to={unknown}")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "no_route"


@pytest.mark.parametrize(
    ("query", "field", "code"),
    [
        ("from=x&to={b}", "from", "invalid_track_id"),
        ("to={b}", "from", "invalid_track_id"),
        ("from={a}&to=12", "to", "invalid_track_id"),
        ("from={a}&to={b}&max_len=0", "max_len", "invalid_max_len"),
        ("from={a}&to={b}&max_len=33", "max_len", "invalid_max_len"),
        ("from={a}&to={b}&max_len=two", "max_len", "invalid_max_len"),
    ],
)
async def test_bad_route_input_names_the_field(
    aiohttp_client: Any, tmp_path: Path, query: str, field: str, code: str
) -> None:
    client, _ = await start(aiohttp_client, tmp_path)
    resp = await client.get("/route?" + query.format(a=tid(1), b=tid(2)))
    assert resp.status == 400
    err = (await resp.json())["error"]
    assert (err["code"], err["field"]) == (code, field)


async def test_galaxy_ids_and_limits_are_checked(aiohttp_client: Any, tmp_path: Path) -> None:
    client, _ = await start(aiohttp_client, tmp_path)
    empty = await (await client.get("/galaxies")).json()
    assert (empty["count"], empty["galaxies"], empty["computed_at"]) == (0, [], None)
    for bad, status, code in (
        ("/galaxies/abc", 400, "invalid_galaxy"),
        ("/galaxies/-1", 400, "invalid_galaxy"),
        ("/galaxies/0", 404, "unknown_galaxy"),
        ("/galaxies?limit=0", 400, "invalid_limit"),
        ("/galaxies/0?limit=5000", 400, "invalid_limit"),
    ):
        resp = await client.get(bad)
        assert resp.status == status, bad
        assert (await resp.json())["error"]["code"] == code


def computations(svc: Gravityd) -> float:
    (family,) = svc.metrics.galaxies_seconds.collect()
    return next(s.value for s in family.samples if s.name.endswith("_count"))


async def test_galaxies_survive_a_restart_and_fill_the_table(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client, first = await start(aiohttp_client, tmp_path)
    assert (await client.post("/events", json=planted_sessions())).status == 202
    await fold_and_snapshot(client)
    before = await (await client.get("/galaxies")).json()
    assert before["count"] == GROUPS
    with sqlite3.connect(first.config.db) as db:
        rows = db.execute("SELECT track_id, galaxy, centrality, cursor FROM track_galaxies")
        table = {r[0]: r[1:] for r in rows}
    assert len(table) == GROUPS * SIZE
    assert {c for _, _, c in table.values()} == {before["cursor"]}
    await client.close()

    # A new process on the same files serves the snapshot's galaxies before computing any:
    # its interval is an hour, and the lanes are where the snapshot left them.
    again, second = await start(aiohttp_client, tmp_path)
    await second.wait_ready()
    after = await (await again.get("/galaxies")).json()
    assert after == before
    assert computations(first) == 1 and computations(second) == 0


async def test_two_replicas_of_one_graph_state_agree(aiohttp_client: Any, tmp_path: Path) -> None:
    writer, _ = await start(aiohttp_client, tmp_path / "w")
    assert (await writer.post("/events", json=planted_sessions(seed=5))).status == 202
    db = str(tmp_path / "w" / "events.db")
    pages = []
    for name in ("r1", "r2"):
        cfg = make_config(tmp_path / name, db=db, role="replica")
        cfg.galaxies = GalaxyParams(galaxies_interval_s=3600.0)
        client = await aiohttp_client(create_app(Gravityd(cfg)))
        await fold_and_snapshot(client)
        pages.append(await (await client.get("/galaxies?limit=100")).json())
    assert pages[0]["count"] == GROUPS
    assert pages[0] == {**pages[1], "computed_at": pages[0]["computed_at"]}


async def test_route_in_process_matches_the_api(aiohttp_client: Any, tmp_path: Path) -> None:
    client, svc = await start(aiohttp_client, tmp_path)
    assert (await client.post("/events", json=planted_sessions())).status == 202
    await fold_and_snapshot(client)
    a, b = track(1, 0), track(1, 6)
    api = await (await client.get(f"/route?from={a}&to={b}")).json()
    assert route_in_process(a, b, graph=svc.graph) == api["path"]
    assert route_in_process(a.upper(), b, graph=svc.graph) == api["path"]
    assert route_in_process(a, tid("nowhere"), graph=svc.graph) == []
    with pytest.raises(ValueError, match="max_len"):
        route_in_process(a, b, 0, graph=svc.graph)
