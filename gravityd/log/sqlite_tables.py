"""The SQLite log's tables beside the events: the track catalogue, the graph tables the
snapshotter publishes (track_edges, gravity_cursor), the takedowns in force, and retention.
The daemon (from a worker thread, with its own connection) and the CLI tools share them."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

from gravityd.log import EdgeRow, GalaxyRow

_CURRENT_BLOCKS = (
    "SELECT track_id, id, at FROM blocks WHERE id IN (SELECT MAX(id) FROM blocks GROUP BY"
    " track_id) AND blocked = 1 ORDER BY id"
)


def catalog_size(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM tracks").fetchone()[0]


def track_meta(
    conn: sqlite3.Connection, ids: list[str]
) -> dict[str, tuple[str | None, str | None]]:
    out: dict[str, tuple[str | None, str | None]] = {}
    for i in range(0, len(ids), 500):  # SQLite's bound-parameter limit is far above 500
        part = ids[i : i + 500]
        sql = (
            "SELECT track_id, title, artist FROM tracks WHERE track_id IN"
            f" ({','.join('?' * len(part))})"
        )
        for tid, title, artist in conn.execute(sql, part).fetchall():
            out[tid] = (title, artist)
    return out


def upsert_tracks(
    conn: sqlite3.Connection,
    rows: list[tuple[str, str | None, str | None]],
    now: float,
    progress: Callable[[int], None] | None = None,
    chunk: int = 10_000,
) -> int:
    """The catalogue load: upsert (track_id, title, artist) rows in one transaction, telling
    `progress` the rows written after each chunk; return the catalogue's size."""
    conn.execute("BEGIN IMMEDIATE")
    for start in range(0, len(rows), chunk):
        conn.executemany(
            "INSERT INTO tracks (track_id, title, artist, updated_at) VALUES (?,?,?,?)"
            " ON CONFLICT(track_id) DO UPDATE SET title = excluded.title,"
            " artist = excluded.artist, updated_at = excluded.updated_at",
            [(t, title, artist, now) for t, title, artist in rows[start : start + chunk]],
        )
        if progress:
            progress(min(len(rows), start + chunk))
    conn.execute("COMMIT")
    return conn.execute("SELECT COUNT(*) FROM tracks").fetchone()[0]


def _replace_stamped(
    conn: sqlite3.Connection, upsert: str, chunks: Iterator[list[Any]], stamp: float, stale: str
) -> int:
    """Upsert rows stamped with `stamp` chunk by chunk, then delete the rows `stale` names
    (those this pass did not stamp). Short transactions per chunk keep the log's writer from
    waiting behind one long one; readers see whole chunks."""
    total = 0
    for rows in chunks:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(upsert, [(*r, stamp) for r in rows])
        conn.execute("COMMIT")
        total += len(rows)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(stale, (stamp,))
    conn.execute("COMMIT")
    return total


def write_track_edges(
    conn: sqlite3.Connection, chunks: Iterator[list[EdgeRow]], stamp: float
) -> int:
    """The graph's edges into track_edges. With decay on, every weight moves between two
    snapshots, so every row is rewritten; rows not stamped this time are edges since pruned."""
    return _replace_stamped(
        conn,
        "INSERT INTO track_edges (src, dst, weight, pos, neg, n, updated_at)"
        " VALUES (?,?,?,?,?,?,?) ON CONFLICT(src, dst) DO UPDATE SET weight=excluded.weight,"
        " pos=excluded.pos, neg=excluded.neg, n=excluded.n, updated_at=excluded.updated_at",
        chunks,
        stamp,
        "DELETE FROM track_edges WHERE updated_at < ?",
    )


def write_track_galaxies(
    conn: sqlite3.Connection, chunks: Iterator[list[GalaxyRow]], cursor: int
) -> int:
    """(track_id, galaxy, centrality) rows stamped with the galaxies' cursor; rows of another
    cursor are tracks no galaxy holds any more."""
    return _replace_stamped(
        conn,
        "INSERT INTO track_galaxies (track_id, galaxy, centrality, cursor) VALUES (?,?,?,?)"
        " ON CONFLICT(track_id) DO UPDATE SET galaxy=excluded.galaxy,"
        " centrality=excluded.centrality, cursor=excluded.cursor",
        chunks,
        cursor,
        "DELETE FROM track_galaxies WHERE cursor != ?",
    )


def set_cursor(conn: sqlite3.Connection, cursor: int, snapshot: str) -> None:
    """Record the cursor of the newest durable snapshot (what a cron build resumes from)."""
    conn.execute(
        "INSERT INTO gravity_cursor (id, cursor, snapshot, updated_at) VALUES (1, ?, ?, ?)"
        " ON CONFLICT(id) DO UPDATE SET cursor=excluded.cursor, snapshot=excluded.snapshot,"
        " updated_at=excluded.updated_at",
        (cursor, snapshot, time.time()),
    )


def get_cursor(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT cursor FROM gravity_cursor WHERE id = 1").fetchone()
    return row[0] if row else 0


def current_blocks(conn: sqlite3.Connection) -> list[tuple[str, int, float]]:
    """(track_id, position, at) of every blocked track, from the blocks table: for SQL
    consumers and checks; processes keep the state by folding the log (gravityd.core.takedowns)."""
    return conn.execute(_CURRENT_BLOCKS).fetchall()


def delete_folded_before(
    conn: sqlite3.Connection, cursor: int, older_than: float, chunk: int = 10_000
) -> int:
    """Log retention: delete events already inside every retained snapshot and older than a
    cut-off, in short transactions. The newest id always stays so ids never go back."""
    deleted = 0
    top = conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
    limit_id = min(cursor, top - 1)
    while True:
        conn.execute("BEGIN IMMEDIATE")
        cur = conn.execute(
            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id <= ? AND"
            " received_at < ? ORDER BY id LIMIT ?)",
            (limit_id, older_than, chunk),
        )
        conn.execute("COMMIT")
        deleted += cur.rowcount
        if cur.rowcount < chunk:
            return deleted
