"""`serve --role replica --workers N`: N replica processes on one port, kept alive.

Each worker is a whole `gravityd serve --role replica` process (its own interpreter, so reads
scale with cores: a thread per worker would share one interpreter lock) that binds the same
port with SO_REUSEPORT; the kernel spreads new connections across them. The supervisor binds
nothing and serves nothing: it starts the workers, restarts one that dies (after 0.5 s,
doubling while it keeps dying within a minute, up to worker_restart_max_s), and on SIGTERM or
SIGINT stops them all (SIGTERM, then SIGKILL past shutdown_timeout_s) and exits 0. A worker that
exits with the usage code 2 (its log is not a gravityd log, a bad setting) is not restarted:
the supervisor stops the others and exits 2 too. Workers get SIGTERM if the supervisor dies
(Linux's parent-death signal), so a SIGKILLed supervisor leaves no orphan serving the port.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from gravityd.config import Config

log = logging.getLogger("gravityd.supervisor")

EXIT_USAGE = 2
STABLE_S = 60.0  # a worker that ran this long has its restart delay reset
FIRST_DELAY_S = 0.5
PR_SET_PDEATHSIG = 1


@dataclass
class Worker:
    index: int
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    starts: int = 0
    delay: float = FIRST_DELAY_S
    due: float = 0.0  # when a dead worker is started again


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM when the supervisor goes, however it goes."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def worker_argv(argv: list[str], index: int) -> list[str]:
    """The supervisor's own serve arguments for one worker: one process, marked with its index."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--workers":
            skip = True
            continue
        if arg.startswith("--workers="):
            continue
        out.append(arg)
    return [sys.executable, "-m", "gravityd", *out, "--workers", "1", "--worker-index", str(index)]


class Supervisor:
    def __init__(self, cfg: Config, argv: list[str]) -> None:
        self.cfg = cfg
        self.argv = argv
        self.workers = [Worker(i) for i in range(1, cfg.workers + 1)]
        self.stopping = threading.Event()
        self.exit_code = 0

    def _start(self, w: Worker) -> None:
        w.starts += 1
        env = {**os.environ, "GRAVITYD_WORKER_STARTS": str(w.starts)}
        w.proc = subprocess.Popen(
            worker_argv(self.argv, w.index), env=env, preexec_fn=_die_with_parent
        )
        w.started_at = time.monotonic()
        log.info("worker started", extra={"worker": w.index, "pid": w.proc.pid, "starts": w.starts})

    def _reap(self, w: Worker, now: float) -> None:
        assert w.proc is not None
        code = w.proc.returncode
        ran = now - w.started_at
        w.proc = None
        if code == EXIT_USAGE:
            log.error("worker refused to start (exit 2): stopping", extra={"worker": w.index})
            self.exit_code = EXIT_USAGE
            self.stopping.set()
            return
        w.delay = (
            FIRST_DELAY_S
            if ran > STABLE_S
            else min(self.cfg.worker_restart_max_s, w.delay * 2 if w.starts > 1 else w.delay)
        )
        w.due = now + w.delay
        log.error(
            "worker died; restarting",
            extra={
                "worker": w.index,
                "exit_code": code,
                "ran_s": round(ran, 2),
                "restart_in_s": round(w.delay, 2),
            },
        )

    def run(self) -> int:
        def stop(signum: int, frame: object) -> None:
            self.stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        log.info(
            "supervisor started",
            extra={"workers": len(self.workers), "host": self.cfg.host, "port": self.cfg.port},
        )
        for w in self.workers:
            self._start(w)
        while not self.stopping.is_set():
            # A plain sleep, not Event.wait(timeout): a timed condition wait never returns under a
            # shifted clock (libfaketime), and the signal handlers set `stopping` within 0.1 s.
            time.sleep(0.1)
            now = time.monotonic()
            for w in self.workers:
                if w.proc is not None and w.proc.poll() is not None:
                    self._reap(w, now)
                elif w.proc is None and now >= w.due and not self.stopping.is_set():
                    self._start(w)
        self._stop_all()
        log.info("supervisor stopped", extra={"exit_code": self.exit_code})
        return self.exit_code

    def _stop_all(self) -> None:
        live = [w.proc for w in self.workers if w.proc is not None and w.proc.poll() is None]
        for p in live:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.cfg.shutdown_timeout_s + 5
        for p in live:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker did not stop in time: killed", extra={"pid": p.pid})
                p.kill()
                p.wait()
