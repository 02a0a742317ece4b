"""The background worker processes of a daemon (galaxies, the learned model): one pool each,
spawned, at the lowest CPU priority, and gone with the daemon.

Why a watchdog: a pool's worker holds both ends of its task queue's pipe, so when the daemon
dies without shutting the pool down (SIGKILL, OOM), the worker never sees end-of-file and would
idle forever with its numpy heap. Each worker checks once a second that its parent is still the
process that started it, and exits when it is not.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

PARENT_CHECK_S = 1.0


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(PARENT_CHECK_S)
        if os.getppid() != parent:
            os._exit(0)  # the daemon is gone: nothing to hand a result to


def _init_worker(parent: int) -> None:
    os.nice(19)  # requests come first: the worker may take seconds of a core
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def worker_pool() -> ProcessPoolExecutor:
    """One spawned worker (a fork would copy the daemon's whole graph for a list of inputs)."""
    return ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(os.getpid(),),
    )


class Worker:
    """One worker, spawned at its first call and kept; `close` lets it go (after a failure the
    next call spawns a fresh one)."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._pool is None:
            self._pool = worker_pool()
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
