"""Fixtures only (the helpers are in tests/support/), and the guard that keeps markers honest.

Markers (registered in pyproject.toml): `process` starts a child process (a daemon, the CLI,
a bench script), `browser` drives Chromium, `cluster` starts NATS, `prometheus` starts
Prometheus, `slow` is a unit test too slow for the fast subset. The fast subset
(`pytest -m "not process and not browser and not cluster and not prometheus and not slow"`)
must start nothing, so a test without one of the first four markers that starts a child
process fails here, naming the marker it lacks.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.nats_nodes import NatsCluster
from gravityd.config import Config
from gravityd.daemon.service import Gravityd
from gravityd.http.app import create_app

from .support.browser import make_driver
from .support.jetstream import running_cluster
from .support.procs import Daemon, stop_gracefully
from .support.service import make_config

CHILD_MARKERS = ("process", "browser", "cluster", "prometheus")
# A test on one of these fixtures carries its marker without writing it (whole modules say
# theirs with pytestmark); the guard below catches what starts a process any other way.
FIXTURE_MARKERS = {"daemon_factory": "process", "drv": "browser", "nats_cluster": "cluster"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture in getattr(item, "fixturenames", ()):
            marker = FIXTURE_MARKERS.get(fixture)
            if marker is not None and item.get_closest_marker(marker) is None:
                item.add_marker(marker)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """Refuse subprocess.Popen (run, asyncio's subprocesses, Selenium's driver) to a test that
    carries none of the child-process markers, through its setup (module fixtures included),
    call and teardown: the fast subset would start it otherwise."""
    if any(item.get_closest_marker(m) for m in CHILD_MARKERS):
        return (yield)
    real = subprocess.Popen

    class Refused(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            command = args[0] if args else kwargs.get("args")
            pytest.fail(
                f"{item.nodeid} starts a child process ({command!r}): mark it process"
                " (or browser, cluster, prometheus)",
                pytrace=False,
            )

    subprocess.Popen = Refused  # type: ignore[misc]
    try:
        return (yield)
    finally:
        subprocess.Popen = real  # type: ignore[misc]


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
async def client(aiohttp_client: Any, config: Config) -> Any:
    """A real aiohttp server on a loopback port around a real service and SQLite file."""
    svc = Gravityd(config)
    return await aiohttp_client(create_app(svc))


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Any]:
    """Make real daemons (files under `folder`, default tmp_path; call .start()); each still
    running after the test gets SIGTERM (a supervisor stops its workers), SIGKILL if stuck."""
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
    """One headless Chromium per browser test module (starting one costs about a second);
    skipped without it, failed under CI."""
    driver = make_driver(1280, 900)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """A fresh 3-node cluster per test: the fault tests kill and restart its nodes."""
    with running_cluster(tmp_path / "nats") as cluster:
        yield cluster
