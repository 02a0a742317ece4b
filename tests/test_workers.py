"""A daemon's background worker (galaxies, the learned model) goes away with the daemon, even
when the daemon is SIGKILLed and never shuts its pool down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.process

REPO = Path(__file__).resolve().parents[1]
PARENT = """
import os, time
from gravityd.daemon.workers import worker_pool
pool = worker_pool()
print(pool.submit(os.getpid).result(), pool.submit(os.nice, 0).result(), flush=True)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purpose: it holds no memory and runs nothing
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_the_worker_exits_when_its_daemon_is_killed() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        worker, niceness = (int(x) for x in parent.stdout.readline().split())
        assert worker != parent.pid and alive(worker)
        assert niceness == 19  # the lowest CPU priority: requests come first
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        # The worker notices within its check interval (1 s); polling a process that is not
        # our child is the only way to see it go.
        deadline = time.monotonic() + 15.0
        while alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(worker), "the worker outlived its killed daemon"
    finally:
        if parent.poll() is None:
            parent.kill()
