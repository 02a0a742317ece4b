"""The operator's offline tools: the cron builder and restore. No daemon, no event loop.

Both take the same lock file as the daemon, so they can never write beside it. Both pick and
fold snapshots the way every process does (gravityd.snapshots.files.load_newest,
gravityd.snapshots.state.fold_rows): a snapshot of another log is never used, except the one
`restore` adopts explicitly.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from gravityd.config import Config
from gravityd.log.sqlite import read_after_sync
from gravityd.log.sqlite_schema import (
    ProcessLock,
    connect_sync,
    read_identity,
    record_adoption,
    transaction,
)
from gravityd.log.sqlite_tables import set_cursor, write_track_edges
from gravityd.snapshots.files import (
    fsync_dir,
    list_snapshots,
    load_newest,
    load_snapshot,
    next_path,
    prune,
    write_snapshot,
)
from gravityd.snapshots.state import State, fold_rows, train_model

log = logging.getLogger("gravityd.build")


@dataclass
class BuildResult:
    """What a build did; `path` is None when there was nothing new to fold.

    `folded` counts listening events, not positions: block changes, skipped rows and the
    positions nobody wrote (ids reserved after a restore) are not events.
    """

    cursor: int
    folded: int
    path: Path | None
    edges: int
    seconds: float
    skipped: int = 0  # stored rows the fold could not trust (logged, never folded)
    start: int = 0  # the cursor of the snapshot it started from (0: the whole log)
    block_changes: int = 0


def build(cfg: Config, batch: int = 50_000) -> BuildResult:
    """Newest usable snapshot + the log after its cursor -> a new snapshot, the cursor,
    track_edges."""
    started = time.perf_counter()
    lock = ProcessLock(cfg.db)
    lock.acquire()
    try:
        conn = connect_sync(cfg.db, cfg.synchronous)
        try:
            identity = read_identity(conn)
            found = load_newest(cfg.snapshot_dir, cfg.graph, identity, identity.claimed)
            state = (
                State.from_found(found, cfg.report) if found else State.empty(cfg.graph, cfg.report)
            )
            start = state.cursor
            events = skipped = block_changes = 0
            while True:
                rows, bad = read_after_sync(conn, state.cursor, batch)
                if not rows:
                    break
                done = fold_rows(state, rows, bad)
                events += done.events
                skipped += len(done.skipped)
                block_changes += done.block_changes
            graph = state.graph
            if found and graph.cursor == start:
                return BuildResult(
                    graph.cursor,
                    0,
                    None,
                    graph.edge_count,
                    time.perf_counter() - started,
                    skipped,
                    start,
                )
            if cfg.graph.model_dims:
                state.model = train_model(graph)  # the snapshot carries the model of its cursor
            path = write_snapshot(
                graph,
                cfg.snapshot_dir,
                cfg.snapshot_chunk,
                state.blocks,
                state.extra_records(cfg.snapshot_chunk),
                origin=identity.id,
            )
            with transaction(conn, "BEGIN IMMEDIATE"):
                set_cursor(conn, graph.cursor, path.name)
            now = time.time()
            write_track_edges(conn, graph.edge_rows(now, cfg.snapshot_chunk), now)
            prune(cfg.snapshot_dir, cfg.snapshot_keep)
        finally:
            conn.close()
    finally:
        lock.release()
    return BuildResult(
        graph.cursor,
        events,
        path,
        graph.edge_count,
        time.perf_counter() - started,
        skipped,
        start,
        block_changes,
    )


class Restored(NamedTuple):
    """What `restore` did, for its message: the installed file, the snapshot's log and cursor,
    this log's identity, and whether the snapshot was adopted from another log."""

    path: Path
    source: str
    cursor: int
    origin: str | None  # None: written before snapshots recorded their log
    log_id: str
    adopted: bool

    def message(self) -> str:
        """Plain words for the operator."""
        if self.adopted:
            whose = (
                f"a snapshot of another log ({self.origin}), now adopted by this log"
                f" ({self.log_id}); the adoption is recorded in the log"
            )
        elif self.origin is None:
            whose = "a snapshot that does not record its log (written before 0.6)"
        else:
            whose = f"a snapshot of this log ({self.log_id})"
        return (
            f"restored {self.source} as {self.path}: {whose}, cursor {self.cursor}. The next"
            f" start (or build) loads it and replays the log after position {self.cursor}."
        )


def restore_snapshot(cfg: Config, source: str | os.PathLike) -> Restored:
    """Verify a snapshot and install it as the newest, so the next start loads it.

    The one explicit way to use a snapshot of another log (after losing the log, say): the
    adoption is recorded in this log, and its new positions come after the snapshot's cursor.
    """
    header, gg = load_snapshot(source, cfg.graph)  # raises SnapshotError if it does not verify
    lock = ProcessLock(cfg.db)
    lock.acquire()
    try:
        folder = Path(cfg.snapshot_dir)
        folder.mkdir(parents=True, exist_ok=True)
        final = next_path(folder, gg.cursor)
        tmp = folder / f".{final.name}.{os.getpid()}.tmp"
        conn = connect_sync(cfg.db, cfg.synchronous)
        try:
            identity = read_identity(conn)
            origin = header.get("origin")
            adopted = origin is not None and origin != identity.id
            try:
                with open(source, "rb") as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                    dst.flush()
                    os.fsync(dst.fileno())
                os.replace(tmp, final)
                fsync_dir(folder)
            finally:
                tmp.unlink(missing_ok=True)
            with transaction(conn, "BEGIN IMMEDIATE"):
                if adopted:
                    record_adoption(conn, origin, gg.cursor, final.name)
                set_cursor(conn, gg.cursor, final.name)
        finally:
            conn.close()
        done = Restored(final, str(source), gg.cursor, origin, identity.id, adopted)
        log.info(
            "snapshot restored",
            extra={
                "source": str(source),
                "path": str(final),
                "cursor": gg.cursor,
                "origin": origin,
                "log_id": identity.id,
                "adopted": adopted,
                "newer_kept": len(list_snapshots(folder)) - 1,
            },
        )
        return done
    finally:
        lock.release()


def restore(cfg: Config, source: str | os.PathLike) -> Path:
    """restore_snapshot, answering only the installed file's path."""
    return restore_snapshot(cfg, source).path
