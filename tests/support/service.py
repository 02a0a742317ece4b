"""The daemon in-process: real configs on real files, a real aiohttp server on a loopback port."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from gravityd.config import Config, load_config
from gravityd.daemon.service import Gravityd
from gravityd.http.app import create_app

REPO = Path(__file__).resolve().parents[2]


def make_config(tmp_path: Path, **overrides: Any) -> Config:
    """A config with only built-in defaults and the test's overrides, files under tmp_path."""
    graph = overrides.pop("graph", None)
    overrides.setdefault("db", str(tmp_path / "events.db"))
    overrides.setdefault("snapshot_dir", str(tmp_path / "snapshots"))
    overrides.setdefault("fold_interval_ms", 0.0)
    cfg = load_config(REPO / "config" / "gravityd.toml", env={}, overrides=overrides)
    if graph is not None:
        cfg.graph = graph
    return cfg


async def serve(aiohttp_client: Any, tmp_path: Path, **overrides: Any) -> tuple[Any, Gravityd]:
    """A real server on a loopback port around a service with these config overrides."""
    svc = Gravityd(make_config(tmp_path, **overrides))
    return await aiohttp_client(create_app(svc)), svc


async def post_and_fold(client: Any, events: list[dict]) -> dict:
    resp = await client.post("/events", json=events)
    assert resp.status == 202, await resp.text()
    fold = await client.post("/admin/fold")
    assert fold.status == 200
    return await fold.json()


def metric(text: str, name: str) -> float:
    """The value of one sample line of the Prometheus text (0 if absent)."""
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0
