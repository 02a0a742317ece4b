"""Helpers the benchmarks share: start servers as child processes, drive wrk, read figures."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(url)


@contextmanager
def gravityd(
    workdir: Path, *extra: str, env: dict[str, str] | None = None, ready_path: str = "/readyz"
) -> Iterator[str]:
    """A real `gravityd serve` on a free loopback port; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gravityd",
            "serve",
            "--port",
            str(port),
            "--db",
            str(workdir / "bench.db"),
            "--snapshot-dir",
            str(workdir / "snapshots"),
            *extra,
        ],
        cwd=REPO,
        env={**os.environ, "GRAVITYD_LOG_LEVEL": "WARNING", **(env or {})},
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}{ready_path}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(60)


@contextmanager
def bare_server() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "bare_server.py"), str(port)],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/tracks/x/gravity_neighbors")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


def tempdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="gravityd-bench-")


def wrk(
    url: str, *, duration: int, connections: int, threads: int = 1, script: str | None = None
) -> dict[str, float]:
    """Run wrk; return requests/s and latency percentiles in ms."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write((script or "") + _LATENCY_LUA)
        lua = f.name
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t",
                str(threads),
                "-c",
                str(connections),
                "-d",
                f"{duration}s",
                "-s",
                lua,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(lua)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    figures = {"rps": rps}
    for key in ("p50", "p99", "non2xx"):
        m = re.search(rf"^{key} ([\d.]+)$", out, re.M)
        if m:
            figures[key] = float(m.group(1))
    return figures


_LATENCY_LUA = """
done = function(summary, latency, requests)
  io.write(string.format("p50 %.3f\\n", latency:percentile(50) / 1000))
  io.write(string.format("p99 %.3f\\n", latency:percentile(99) / 1000))
  io.write(string.format("non2xx %d\\n", summary.errors.status))
end
"""


def post_script(body: bytes, content_type: str = "application/json") -> str:
    text = body.decode().replace("\\", "\\\\").replace('"', '\\"')
    return (
        f'wrk.method = "POST"\nwrk.body = "{text}"\n'
        f'wrk.headers["Content-Type"] = "{content_type}"\n'
    )
