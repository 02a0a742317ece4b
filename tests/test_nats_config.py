"""The JetStream tests' cluster is config/nats/'s, the one docs/nats-cluster.md documents.

If the test launcher wrote its own configuration again (or the files changed without the
docs), these fail: the running servers must report the files' names and settings, and each
must say it was started from its file in config/nats/.
"""

from __future__ import annotations

import re
from pathlib import Path

from bench.nats_nodes import CONFIG_DIR, NatsCluster, node_configs

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "nats-cluster.md"


def duration_ns(text: str) -> int:
    """A nats-server duration such as "2m" or "30s" in nanoseconds, as /varz reports it."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", text)
    assert m is not None, text
    unit = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}[m.group(2)]
    return int(m.group(1)) * unit


def test_the_files_describe_three_nodes_on_distinct_ports() -> None:
    configs = node_configs()
    assert [c.server_name for c in configs] == ["n1", "n2", "n3"]
    assert len({c.cluster_name for c in configs}) == 1
    ports = [p for c in configs for p in (c.port, c.http_port, c.cluster_port)]
    assert len(set(ports)) == len(ports), "two nodes on one host need distinct ports"
    cluster_ports = sorted(c.cluster_port for c in configs)
    for c in configs:
        assert sorted(c.routes) == cluster_ports, f"{c.path.name}: routes to every node"
    assert len({c.store_dir for c in configs}) == len(configs), "one store_dir per node"


def test_the_docs_give_the_files_ports_and_names() -> None:
    """The ports table and the commands of docs/nats-cluster.md are the files' values."""
    text = DOC.read_text()
    for c in node_configs():
        row = re.search(rf"^\|\s*{c.server_name}\s*\|.*$", text, re.M)
        assert row is not None, f"no row for {c.server_name} in the docs' ports table"
        for port in (c.port, c.cluster_port, c.http_port):
            assert str(port) in row.group(0), f"{c.server_name}: port {port} not in the docs"
        assert f"nats-server -c config/nats/{c.path.name}" in text
        assert f"`{c.cluster_name}`" in text


def test_the_test_cluster_runs_the_repo_files(nats_cluster: NatsCluster) -> None:
    configs = {c.server_name: c for c in node_configs()}
    assert len(nats_cluster.nodes) == len(configs)
    for node in nats_cluster.nodes:
        varz = node.varz()
        want = configs[varz["server_name"]]
        assert node.conf == want.path and want.path.parent == CONFIG_DIR
        assert varz["cluster"]["name"] == want.cluster_name
        assert varz["host"] == want.host
        js = varz["jetstream"]["config"]
        assert js["sync_interval"] == duration_ns(want.sync_interval)
        # The server's own word for which file it read (first lines of its log).
        assert f"Using configuration file: {want.path}" in node.log.read_text()
        # The file's relative store_dir, under the node's tmp dir (its working directory).
        assert js["store_dir"] == f"{want.store_dir}/jetstream"
        assert (node.dir / want.store_dir / "jetstream").is_dir()
        # Only the ports differ from the file: routed to the other nodes' free ports.
        assert sorted(varz["cluster"]["urls"]) == sorted(
            f"{want.host}:{n.cluster_port}" for n in nats_cluster.nodes
        )
