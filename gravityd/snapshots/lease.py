"""The snapshotter lease: which one of the processes sharing a snapshot folder writes snapshots.

Exactly one process writes snapshots, `gravity_cursor` and `track_edges`. It is whichever
holds an exclusive advisory lock (flock) on `<snapshot_dir>/.snapshotter.lock`: the first
graph-holding process (`--role all` or a replica) to try gets it, the others keep trying each
snapshot interval. The kernel releases a flock when its process dies, SIGKILL included, so a
dead snapshotter is replaced at the next try of another process, with no timeout to tune and
no stale lease to clear by hand. The lock file holds the holder's pid, for people.
"""

from __future__ import annotations

import os
from pathlib import Path

from gravityd.lockfile import PidLock

LEASE_NAME = ".snapshotter.lock"


class SnapshotLease:
    """Try to become the snapshotter; once held, held until release() or the process ends."""

    def __init__(self, snapshot_dir: str | os.PathLike) -> None:
        self.path = Path(snapshot_dir) / LEASE_NAME
        self._lock = PidLock(self.path)

    @property
    def held(self) -> bool:
        return self._lock.held

    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; never blocks. OSError (folder unusable) -> False."""
        if self._lock.held:
            return True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return self._lock.try_acquire()
        except OSError:
            return False

    def holder(self) -> str:
        """The pid written by the current holder, or "" (for error messages)."""
        return self._lock.holder()

    def release(self) -> None:
        self._lock.release()
