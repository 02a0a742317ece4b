"""Shared helpers: real configs on real files, real servers on loopback ports."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gravityd.config import Config, load_config
from gravityd.daemon.service import Gravityd
from gravityd.http.app import create_app

REPO = Path(__file__).resolve().parent.parent


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


def tid(n: int | str) -> str:
    """A stable track uuid for a small integer or name, so tests read like A->B."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"track:{n}"))


def event(
    session: str = "s1", track: int | str = 1, event_type: str = "play_10s", **extra: Any
) -> dict[str, Any]:
    return {"session_id": session, "track_id": tid(track), "event_type": event_type, **extra}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
async def client(aiohttp_client: Any, config: Config) -> Any:
    """A real aiohttp server on a loopback port around a real service and SQLite file."""
    svc = Gravityd(config)
    return await aiohttp_client(create_app(svc))


async def serve(aiohttp_client: Any, tmp_path: Path, **overrides: Any) -> tuple[Any, Gravityd]:
    """A real server on a loopback port around a service with these config overrides."""
    svc = Gravityd(make_config(tmp_path, **overrides))
    return await aiohttp_client(create_app(svc)), svc


def metric(text: str, name: str) -> float:
    """The value of one sample line of the Prometheus text (0 if absent)."""
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m gravityd ARGS` as a user runs it: exit code, stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "gravityd", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env=env,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """`python -m gravityd serve` as a real child process, for kill and restart tests."""

    def __init__(self, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = tmp_path / "events.db"
        self.args = args
        self.env = {**os.environ, "GRAVITYD_LOG_FORMAT": "json", **(env or {})}
        self.stderr_path = tmp_path / f"daemon-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, wait_ready: bool = True) -> Daemon:
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gravityd",
                    "serve",
                    "--port",
                    str(self.port),
                    "--db",
                    str(self.db),
                    "--snapshot-dir",
                    str(self.db.parent / "snapshots"),
                    *self.args,
                ],
                cwd=REPO,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        self.wait("/readyz" if wait_ready else "/healthz")
        return self

    def wait(self, path: str, timeout: float = 30.0) -> None:
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited: {self.stderr_path.read_text()}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)  # polling a child process's port: no signal exists to wait on
        raise TimeoutError(f"daemon not up on {path}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(30)


def stop_gracefully(daemons: list[Daemon]) -> None:
    """SIGTERM each daemon still running (a supervisor stops its workers), SIGKILL if stuck."""
    for d in daemons:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.send_signal(signal.SIGTERM)
            try:
                d.proc.wait(20)
            except subprocess.TimeoutExpired:
                d.proc.kill()
                d.proc.wait(10)


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Any]:
    """Start real daemons (their files under `folder`, default tmp_path); all stopped after."""
    started: list[Daemon] = []

    def make(*args: str, folder: Path = tmp_path, env: dict[str, str] | None = None) -> Daemon:
        folder.mkdir(parents=True, exist_ok=True)
        d = Daemon(folder, *args, env=env)
        started.append(d)
        return d

    yield make
    stop_gracefully(started)


@pytest.fixture(scope="module")
def drv() -> Iterator[Any]:
    """One headless Chromium per browser test module (skipped without it, outside CI)."""
    from .browser import make_driver

    driver = make_driver(1280, 900)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[Daemon] = []

    def make(*args: str, env: dict[str, str] | None = None) -> Daemon:
        d = Daemon(tmp_path, *args, env=env)
        started.append(d)
        return d

    yield make
    for d in started:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(10)
