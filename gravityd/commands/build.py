"""The operator's offline tools: the cron builder and restore. No daemon, no event loop.

Both take the same lock file as the daemon, so they can never write beside it.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from gravityd.config import Config
from gravityd.core.graph import GravityGraph
from gravityd.core.scoreboard import from_snapshot_parts, snapshot_records
from gravityd.core.takedowns import Blocks
from gravityd.log import (
    ProcessLock,
    connect_sync,
    read_after_sync,
    set_cursor,
    write_track_edges,
)
from gravityd.snapshots.files import (
    fsync_dir,
    list_snapshots,
    load_newest,
    load_snapshot,
    next_path,
    prune,
    write_snapshot,
)

log = logging.getLogger("gravityd.build")


@dataclass
class BuildResult:
    """What a build did; `path` is None when there was nothing new to fold."""

    cursor: int
    folded: int
    path: Path | None
    edges: int
    seconds: float
    skipped: int = 0  # stored rows the fold could not trust (logged, never folded)


def build(cfg: Config, batch: int = 50_000) -> BuildResult:
    """Newest snapshot + the log after its cursor -> a new snapshot, the cursor, track_edges."""
    started = time.perf_counter()
    lock = ProcessLock(cfg.db)
    lock.acquire()
    try:
        conn = connect_sync(cfg.db, cfg.synchronous)
        try:
            found = load_newest(cfg.snapshot_dir, cfg.graph)
            gg = found[2] if found else GravityGraph(cfg.graph)
            blocks = Blocks.from_header(found[1]) if found else Blocks()
            start = gg.cursor
            radio = from_snapshot_parts(found[1]["parts"] if found else {}, start, cfg.report)
            skipped = 0
            while True:
                events, bad = read_after_sync(conn, gg.cursor, batch)
                if not events:
                    break
                gg.fold(events)  # rows in `bad` come back as no-ops: the cursor passes them
                blocks.fold(events)
                radio.fold(events)
                skipped += len(bad)
                for eid, problem in bad[:10]:
                    log.error(
                        "stored event skipped by the fold", extra={"id": eid, "problem": problem}
                    )
            folded = gg.cursor - start
            if found and gg.cursor == start:
                return BuildResult(
                    gg.cursor, 0, None, gg.edge_count, time.perf_counter() - started, skipped
                )
            path = write_snapshot(
                gg,
                cfg.snapshot_dir,
                cfg.snapshot_chunk,
                blocks,
                snapshot_records(radio, cfg.snapshot_chunk),
            )
            conn.execute("BEGIN IMMEDIATE")
            set_cursor(conn, gg.cursor, path.name)
            conn.execute("COMMIT")
            now = time.time()
            write_track_edges(conn, gg.edge_rows(now, cfg.snapshot_chunk), now)
            prune(cfg.snapshot_dir, cfg.snapshot_keep)
        finally:
            conn.close()
    finally:
        lock.release()
    return BuildResult(
        gg.cursor, folded, path, gg.edge_count, time.perf_counter() - started, skipped
    )


def restore(cfg: Config, source: str | os.PathLike) -> Path:
    """Verify a snapshot and install it as the newest, so the next start loads it."""
    _, gg = load_snapshot(source, cfg.graph)  # raises SnapshotError if it does not verify
    lock = ProcessLock(cfg.db)
    lock.acquire()
    try:
        folder = Path(cfg.snapshot_dir)
        folder.mkdir(parents=True, exist_ok=True)
        final = next_path(folder, gg.cursor)
        tmp = folder / f".{final.name}.{os.getpid()}.tmp"
        try:
            with open(source, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(tmp, final)
            fsync_dir(folder)
        finally:
            tmp.unlink(missing_ok=True)
        conn = connect_sync(cfg.db, cfg.synchronous)
        try:
            conn.execute("BEGIN IMMEDIATE")
            set_cursor(conn, gg.cursor, final.name)
            conn.execute("COMMIT")
        finally:
            conn.close()
        log.info(
            "snapshot restored",
            extra={
                "source": str(source),
                "path": str(final),
                "cursor": gg.cursor,
                "newer_kept": len(list_snapshots(folder)) - 1,
            },
        )
        return final
    finally:
        lock.release()
