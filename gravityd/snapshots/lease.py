"""The snapshotter lease: which one of the processes sharing a snapshot folder writes snapshots.

Exactly one process writes snapshots, `gravity_cursor` and `track_edges`. It is whichever
holds an exclusive advisory lock (flock) on `<snapshot_dir>/.snapshotter.lock`: the first
graph-holding process (`--role all` or a replica) to try gets it, the others keep trying each
snapshot interval. The kernel releases a flock when its process dies, SIGKILL included, so a
dead snapshotter is replaced at the next try of another process, with no timeout to tune and
no stale lease to clear by hand. The lock file holds the holder's pid, for people.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LEASE_NAME = ".snapshotter.lock"


class SnapshotLease:
    """Try to become the snapshotter; once held, held until release() or the process ends."""

    def __init__(self, snapshot_dir: str | os.PathLike) -> None:
        self.path = Path(snapshot_dir) / LEASE_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; never blocks. OSError (folder unusable) -> False."""
        if self._fd is not None:
            return True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return False
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
