"""An exclusive advisory lock on a file, with the holder's pid written in it for people.

One helper for the two "only one process may" rules: the log's writer lock
(`gravityd.log.sqlite`) and the snapshotter lease (`gravityd.snapshots.lease`). The kernel drops
a flock when its process dies, SIGKILL included, so a stale lock never needs clearing by hand.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class PidLock:
    """flock(LOCK_EX | LOCK_NB) on `path`; held until release() or the process ends."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; never blocks. False when another process holds
        it; OSError when the file cannot be opened at all."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass  # the pid is for people; the lock is what counts
        self._fd = fd
        return True

    def holder(self) -> str:
        """The pid written by the current holder, or "" (for error messages)."""
        try:
            return self.path.read_text().strip()
        except OSError:
            return ""

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
