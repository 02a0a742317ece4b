"""The optional track catalogue: titles and artists for track ids, kept in the `tracks` table.

The graph only knows ids; people reading the explorer want song names. `gravityd catalog load`
reads CSV (`track_id,title,artist` header), JSON lines (`{"track_id", "title", "artist"}`) or the
Yes.com `song_hash.txt` of the evaluation data, checks every row first, and writes all of them in
one transaction (a file with one bad row changes nothing). Loading the same file twice is a no-op;
a later file updates titles of ids it repeats.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson

from gravityd.core.events import canonical_uuid
from gravityd.log.sqlite_schema import connect_sync
from gravityd.log.sqlite_tables import upsert_tracks

FORMATS = ("csv", "jsonl", "yes")
MAX_TEXT = 500  # characters of a title or artist; longer ones are refused, not cut
PROGRESS_ROWS = 10_000  # rows between two progress reports (and per executemany)
_EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}

Row = tuple[str, str | None, str | None]


class CatalogError(ValueError):
    """A catalogue file that cannot be loaded; the message names the line."""


def guess_format(path: str | os.PathLike) -> str:
    name = Path(path).name
    if name == "song_hash.txt":
        return "yes"
    fmt = _EXTENSIONS.get(Path(path).suffix.lower())
    if fmt is None:
        raise CatalogError(
            f"cannot tell the format of {name}: name it .csv or .jsonl, or pass --format"
        )
    return fmt


def _text(value: object, what: str, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise CatalogError(f"{where}: {what} must be a string")
    value = value.strip()
    if len(value) > MAX_TEXT:
        raise CatalogError(f"{where}: {what} is longer than {MAX_TEXT} characters")
    return value or None


def _row(track_id: object, title: object, artist: object, where: str) -> Row:
    tid = canonical_uuid(track_id) if isinstance(track_id, str) else None
    if tid is None:
        raise CatalogError(f"{where}: track_id must be a UUID, got {track_id!r}")
    return tid, _text(title, "title", where), _text(artist, "artist", where)


def _csv_rows(text: str, name: str) -> Iterator[Row]:
    # strict: a stray or unterminated quote is an error, not a title with quotes in it.
    reader = csv.DictReader(io.StringIO(text), strict=True)
    try:
        fields = [f.strip().lower() for f in (reader.fieldnames or [])]
        if "track_id" not in fields:
            raise CatalogError(
                f"{name}:1: the CSV needs a header with track_id (and title, artist)"
            )
        reader.fieldnames = fields
        for rec in reader:
            where = f"{name}:{reader.line_num}"
            if None in rec:
                raise CatalogError(f"{where}: more fields than the header names")
            yield _row(rec.get("track_id"), rec.get("title"), rec.get("artist"), where)
    except csv.Error as exc:  # a field past csv's size limit, a bad quote
        raise CatalogError(f"{name}:{reader.line_num}: not valid CSV ({exc})") from None


def _jsonl_rows(text: str, name: str) -> Iterator[Row]:
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{name}:{n}"
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise CatalogError(f"{where}: not valid JSON") from None
        if not isinstance(rec, dict):
            raise CatalogError(f"{where}: each line must be a JSON object")
        yield _row(rec.get("track_id"), rec.get("title"), rec.get("artist"), where)


def _yes_rows(text: str, name: str) -> Iterator[Row]:
    from gravityd.lab.yes import track_uuid  # the replay's ids: one mapping, in one place

    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 3 or not parts[0].strip().isdigit():
            raise CatalogError(f"{name}:{n}: expected index<TAB>title<TAB>artist")
        title, artist = (p.replace("\\/", "/") for p in parts[1:3])
        yield _row(track_uuid(int(parts[0])), title, artist, f"{name}:{n}")


def read_catalog(
    path: str | os.PathLike,
    fmt: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Row]:
    """Every row of the file, checked; raises CatalogError naming the first bad line.

    `progress(rows checked)` every `PROGRESS_ROWS` rows."""
    fmt = fmt or guess_format(path)
    if fmt not in FORMATS:
        raise CatalogError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    name = Path(path).name
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise CatalogError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise CatalogError(f"{path} is a folder, not a catalogue file") from None
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{name}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    parse = {"csv": _csv_rows, "jsonl": _jsonl_rows, "yes": _yes_rows}[fmt]
    rows: list[Row] = []
    for row in parse(text, name):
        rows.append(row)
        if progress and len(rows) % PROGRESS_ROWS == 0:
            progress(len(rows))
    if progress:
        progress(len(rows))
    if not rows:
        raise CatalogError(f"{name}: no tracks in the file")
    return rows


def distinct_rows(rows: list[Row]) -> tuple[list[Row], int]:
    """One row per track id, the last one winning (a later line corrects an earlier one), and
    how many rows were such repeats."""
    last = {r[0]: r for r in rows}
    return list(last.values()), len(rows) - len(last)


def load_catalog(
    db: str | os.PathLike,
    rows: list[Row],
    now: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Upsert the rows in one transaction; safe while the daemon runs (WAL, busy timeout).

    The log must exist: a mistyped --db would otherwise create an empty log nobody reads.
    `progress(rows written)` after each slice of `PROGRESS_ROWS`, all inside the transaction.
    """
    if not Path(db).is_file():
        raise CatalogError(
            f"no event log at {db}: pass --db (or GRAVITYD_DB) naming the daemon's log"
        )
    now = time.time() if now is None else now
    conn = connect_sync(db)
    try:
        total = upsert_tracks(conn, rows, now, progress, PROGRESS_ROWS)
    finally:
        conn.close()
    return total
