"""`gravityd import FILE`: bulk-load listening history with the API's own validation.

The file is NDJSON (one event object of the API per line) or CSV (a header of the event's field
names, `meta` as JSON text, an empty cell for an absent field). Every line goes through
`validate_event`, exactly as `POST /events` would take it; a bad line is reported with its line
number and reason and the good ones are kept.

Reruns add nothing: an event without an `event_id` gets one derived from the file's digest and
its line number (a UUIDv8: digest bits, then the line number), so the same file imported twice,
or an import retried after a crash, repeats only ids the log already holds.

Two targets:

- `--db PATH` (the default: the configured log) appends straight into the SQLite log under the
  daemon's lock (refused while a daemon holds it). A first pass hashes the file and cuts it into
  pieces at record boundaries; worker processes parse and validate pieces while this process
  only inserts, so the import runs close to the speed of SQLite's executemany.
- `--url URL` posts to a running daemon in batches of at most 5,000 events (and 4 MiB) through
  the commands' HTTP client (gravityd.commands.client), which retries on 429/502/503/504 after
  the Retry-After the daemon sends, and on connection errors.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson

from gravityd.commands.client import BlockingClient, DaemonError
from gravityd.config import Config
from gravityd.core.events import EventError, ValidationLimits, validate_event
from gravityd.progress import Progress

FIELDS = (
    "event_id",
    "session_id",
    "track_id",
    "event_type",
    "user_id",
    "timestamp",
    "context",
    "meta",
)
REQUIRED = ("session_id", "track_id", "event_type")
FORMATS = ("ndjson", "csv")
PIECE_BYTES = 1 << 20  # a worker's unit of work: about 5,000 events
_BLOCK = 1 << 20
MAX_BATCH_EVENTS = 5000  # the contract's smallest batch limit: every daemon takes it
MAX_BATCH_BYTES = 4 << 20
_BOM = b"\xef\xbb\xbf"
NDJSON = "application/x-ndjson"
_PERSON = b"gravityd-import"  # BLAKE2b personalisation: these ids are import ids only

LineError = tuple[int, dict[str, str]]  # (line number, the API's error object)


class ImportFailed(Exception):
    """The import cannot go on (no file, a bad CSV header, a daemon refusing): one line."""


# ------------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Piece:
    """A byte range of the file holding whole records; its first physical line number."""

    start: int
    end: int
    first_line: int


@dataclass(frozen=True)
class Plan:
    path: str
    fmt: str
    size: int
    digest: bytes
    pieces: list[Piece]
    columns: tuple[str, ...] | None  # CSV: the header's field names


def detect_format(path: str, given: str | None) -> str:
    if given is not None:
        return given
    return "csv" if path.lower().endswith(".csv") else "ndjson"


def plan(path: str, fmt: str, piece_bytes: int = PIECE_BYTES) -> Plan:
    """One pass over the file: its digest and its cut into pieces.

    A piece ends at a newline that is not inside a quoted CSV field (an even number of quote
    characters since the piece started: CSV escapes a quote by doubling it), so every piece
    parses on its own.
    """
    quoted = fmt == "csv"
    h = hashlib.blake2b(digest_size=16, person=_PERSON)
    pieces: list[Piece] = []
    start, first_line = 0, 1
    off = 0  # file offset of the current block
    lines = 0  # newlines before the current block
    q = 0  # quote characters from the piece's start to off + pos
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ImportFailed(f"cannot read {path}: {exc.strerror or exc}") from None
    with f:
        while block := f.read(_BLOCK):
            h.update(block)
            pos = 0
            while True:
                search = max(start + piece_bytes - off, pos)
                if search >= len(block):
                    break
                if quoted:
                    q += block.count(b'"', pos, search)
                pos = search
                found = -1
                while True:
                    cut = block.find(b"\n", pos)
                    if cut == -1:
                        break
                    if quoted:
                        q += block.count(b'"', pos, cut)
                    pos = cut + 1
                    if q % 2 == 0:
                        found = cut
                        break
                if found == -1:
                    break
                end = off + found + 1
                pieces.append(Piece(start, end, first_line))
                first_line = lines + block.count(b"\n", 0, found + 1) + 1
                start, q = end, 0
            if quoted:
                q += block.count(b'"', pos)
            lines += block.count(b"\n")
            off += len(block)
    if start < off:
        pieces.append(Piece(start, off, first_line))
    columns = _csv_header(path) if fmt == "csv" else None
    return Plan(path, fmt, off, h.digest(), pieces, columns)


def _csv_header(path: str) -> tuple[str, ...]:
    """The header row, checked: only the event's fields, the required ones present."""
    with open(path, encoding="utf-8-sig", newline="", errors="replace") as f:
        try:
            header = next(csv.reader(f))
        except StopIteration:
            raise ImportFailed(f"{path}: empty CSV (no header line)") from None
        except csv.Error as exc:
            raise ImportFailed(f"{path}:1: unreadable CSV header: {exc}") from None
    columns = tuple(c.strip() for c in header)
    unknown = [c for c in columns if c not in FIELDS]
    if unknown:
        raise ImportFailed(
            f"{path}:1: unknown column {unknown[0]!r}: the columns are the event's fields "
            f"({', '.join(FIELDS)})"
        )
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise ImportFailed(f"{path}:1: the header has no {missing[0]!r} column")
    if len(set(columns)) != len(columns):
        raise ImportFailed(f"{path}:1: a column appears twice in the header")
    return columns


# ------------------------------------------------------------------------------- parsing


def id_prefix(digest: bytes) -> str:
    """The file's part of its derived ids: 60 bits of its digest, the UUIDv8 version nibble."""
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-8{h[13:16]}"


def derived_event_id(prefix: str, line: int) -> str:
    """The stable id of line `line` of the file with that id_prefix: a UUIDv8 whose first half
    comes from the file's digest and whose second half (variant bits 10) is the line number,
    so ids of one file never collide and two files' collide only if 60 digest bits do."""
    n = f"{line:015x}"
    return f"{prefix}-8{n[:3]}-{n[3:]}"


@dataclass
class Chunk:
    """What a worker made of one piece: rows to store (or objects to post) and the bad lines."""

    rows: list[Any] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    nbytes: int = 0
    valid: int = 0
    rows_file: str | None = None  # from a worker: the rows are in this scratch file


def parse_piece_to_file(
    plan_: Plan,
    piece: Piece,
    limits: ValidationLimits,
    received: float,
    base_id: int,
    scratch: str,
) -> Chunk:
    """A worker's task: parse_piece, then the rows into a scratch file for the log's copy."""
    from gravityd.log.bulk import write_rows_file

    out = parse_piece(plan_, piece, limits, received, base_id)
    if out.rows:
        out.rows_file = os.path.join(scratch, f"piece-{piece.start}.db")
        write_rows_file(out.rows_file, out.rows)
        out.rows = []
    return out


def _records(plan_: Plan, piece: Piece) -> Iterator[tuple[int, Any]]:
    """(line number, decoded object or EventError) for each non-blank record of a piece."""
    with open(plan_.path, "rb") as f:
        f.seek(piece.start)
        data = f.read(piece.end - piece.start)
    if piece.start == 0 and data.startswith(_BOM):
        data = data[len(_BOM) :]
    if plan_.fmt == "ndjson":
        loads = orjson.loads
        for i, line in enumerate(data.split(b"\n")):
            if not line.strip():
                continue
            try:
                yield piece.first_line + i, loads(line)
            except orjson.JSONDecodeError:
                yield piece.first_line + i, EventError("invalid_json", "line is not valid JSON")
        return
    assert plan_.columns is not None
    columns = plan_.columns
    reader = csv.reader(io.StringIO(data.decode("utf-8", errors="replace"), newline=""))
    at = 0  # physical lines of the piece consumed so far
    if piece.start == 0:
        next(reader, None)  # the header, checked by plan()
        at = reader.line_num
    while True:
        line = piece.first_line + at
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            at = reader.line_num
            yield line, EventError("invalid_csv", f"unreadable CSV record: {exc}")
            continue
        at = reader.line_num
        if not cells or all(not c.strip() for c in cells):
            continue
        yield line, _csv_object(cells, columns)


def _csv_object(cells: list[str], columns: tuple[str, ...]) -> dict[str, Any] | EventError:
    if len(cells) > len(columns):
        return EventError(
            "invalid_csv", f"{len(cells)} cells for the header's {len(columns)} columns"
        )
    obj: dict[str, Any] = {}
    for name, cell in zip(columns, cells, strict=False):
        if cell == "":
            continue  # an empty cell is an absent field
        if "\ufffd" in cell:
            return EventError("invalid_utf8", f"{name} is not valid UTF-8", name)
        if name == "meta":
            try:
                obj["meta"] = orjson.loads(cell)
            except orjson.JSONDecodeError:
                return EventError("invalid_meta", "meta is not valid JSON text", "meta")
        else:
            obj[name] = cell
    return obj


def parse_piece(
    plan_: Plan,
    piece: Piece,
    limits: ValidationLimits,
    received: float,
    base_id: int | None,
) -> Chunk:
    """Validate one piece. With `base_id`, rows are the log's insert tuples, the id of line n
    being base_id + n (ids increase in file order; bad lines leave holes); without it, rows
    are (line, object with its event_id) for POST /events."""
    out = Chunk(nbytes=piece.end - piece.start)
    prefix = id_prefix(plan_.digest)
    rows, errors = out.rows, out.errors
    for line, obj in _records(plan_, piece):
        if isinstance(obj, EventError):
            errors.append((line, obj.to_dict()))
            continue
        try:
            ev = validate_event(obj, limits, received)
        except EventError as exc:
            errors.append((line, exc.to_dict()))
            continue
        eid = ev.event_id or derived_event_id(prefix, line)
        if base_id is None:
            obj["event_id"] = eid
            rows.append((line, obj))
        else:
            rows.append(
                (
                    base_id + line,
                    eid,
                    ev.session_id,
                    ev.track_id,
                    ev.event_type,
                    ev.user_id,
                    ev.ts,
                    received,
                    ev.context,
                    ev.meta,
                    ev.elapsed_ms,
                )
            )
    out.valid = len(rows)
    return out


def iter_chunks(
    plan_: Plan,
    limits: ValidationLimits,
    received: float,
    base_id: int | None,
    jobs: int,
    scratch: str | None = None,
) -> Iterator[Chunk]:
    """Chunks in file order. With jobs > 0 (and a scratch folder) that many worker processes
    parse pieces into scratch files, at most two pieces each ahead of the consumer, so memory
    and scratch space stay bounded whatever the file's size."""
    if jobs <= 0 or scratch is None or base_id is None or len(plan_.pieces) <= 1:
        for piece in plan_.pieces:
            yield parse_piece(plan_, piece, limits, received, base_id)
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        todo = iter(plan_.pieces)
        pending: deque[Future[Chunk]] = deque()

        def submit() -> None:
            piece = next(todo, None)
            if piece is not None:
                pending.append(
                    pool.submit(
                        parse_piece_to_file, plan_, piece, limits, received, base_id, scratch
                    )
                )

        for _ in range(2 * jobs):
            submit()
        while pending:
            chunk = pending.popleft().result()
            submit()
            yield chunk


# ------------------------------------------------------------------------------- progress


class ImportProgress:
    """The bytes of the file read so far and the valid events among them, on the commands'
    meter (gravityd.progress: a tqdm bar on a terminal, plain lines elsewhere); error lines go
    out without breaking a bar."""

    def __init__(
        self,
        total: int,
        stream: TextIO,
        delay: float | None = None,
        interval: float | None = None,
    ) -> None:
        self.events = 0
        self._meter = Progress(
            total, "import", unit="B", file=stream, delay=delay, interval=interval
        )

    def update(self, nbytes: int, events: int) -> None:
        self.events += events
        self._meter.advance_to(self._meter.n + nbytes, postfix=f"{self.events} valid events")

    def write(self, line: str) -> None:
        self._meter.write(line)

    def close(self) -> None:
        self._meter.close()


# ------------------------------------------------------------------------------- targets


@dataclass
class Summary:
    lines_bad: int = 0
    valid: int = 0
    added: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    retries: int = 0  # --url: batches sent again (429/503 after Retry-After, network errors)


def _report(progress: ImportProgress, path: str, errors: list[LineError]) -> None:
    for line, err in sorted(errors, key=lambda e: e[0]):
        where = f" ({err['field']})" if err.get("field") else ""
        progress.write(f"{path}:{line}: {err['message']}{where} [{err['code']}]")


def import_db(
    plan_: Plan, cfg: Config, progress: ImportProgress, jobs: int, snapshot_floor: int = 0
) -> Summary:
    """Validate in workers, insert here, one transaction per piece."""
    from gravityd.log.bulk import BulkLog

    out = Summary()
    started = time.perf_counter()
    log = BulkLog(cfg.db, cfg.synchronous)
    log.open()
    try:
        base = log.first_free_id(snapshot_floor) - 1
        received = time.time()
        with tempfile.TemporaryDirectory(prefix="gravityd-import-") as scratch:
            for chunk in iter_chunks(plan_, cfg.limits, received, base, jobs, scratch):
                _report(progress, plan_.path, chunk.errors)
                out.lines_bad += len(chunk.errors)
                out.valid += chunk.valid
                if chunk.rows_file is not None:
                    out.added += log.insert_file(chunk.rows_file)
                    os.unlink(chunk.rows_file)
                elif chunk.rows:
                    out.added += log.insert(chunk.rows)
                progress.update(chunk.nbytes, chunk.valid)
    finally:
        log.close()
    out.duplicates = out.valid - out.added
    out.seconds = time.perf_counter() - started
    return out


def import_url(
    plan_: Plan,
    cfg: Config,
    progress: ImportProgress,
    url: str,
    batch: int,
    retries: int,
    timeout: float,
) -> Summary:
    """Validate here (for line numbers), post valid events with their ids, in order."""
    out = Summary()
    started = time.perf_counter()
    try:
        client = BlockingClient(url, retries=retries, timeout_s=timeout, backoff_s=0.5)
    except ValueError as exc:
        raise ImportFailed(f"--url: {exc}") from None
    pending: list[tuple[int, bytes]] = []
    size = 0

    def flush() -> None:
        nonlocal size
        if not pending:
            return
        body = b"\n".join(b for _, b in pending)
        try:
            answer = client.request("POST", "/events", body=body, content_type=NDJSON)
        except DaemonError as exc:
            raise ImportFailed(str(exc)) from None
        status, data = answer.status, answer.json()
        if not isinstance(data, dict):
            data = {"error": answer.error()}
        rejected = data.get("rejected", []) if isinstance(data, dict) else []
        if status == 202:
            out.added += data["accepted"] - data.get("duplicates", 0)
            out.duplicates += data.get("duplicates", 0)
        elif not (status == 400 and data.get("error", {}).get("code") == "no_valid_events"):
            err = data.get("error", {}) if isinstance(data, dict) else {}
            raise ImportFailed(
                f"{url} refused a batch ({status} {err.get('code', '')}): {err.get('message', '')}"
            )
        errors = [(pending[r["index"]][0], r["error"]) for r in rejected]
        _report(progress, plan_.path, errors)
        out.lines_bad += len(errors)
        out.valid -= len(errors)
        pending.clear()
        size = 0

    with client:
        for chunk in iter_chunks(plan_, cfg.limits, time.time(), None, 0):
            _report(progress, plan_.path, chunk.errors)
            out.lines_bad += len(chunk.errors)
            for line, obj in chunk.rows:
                data = orjson.dumps(obj)
                if pending and (len(pending) >= batch or size + len(data) + 1 > MAX_BATCH_BYTES):
                    flush()
                pending.append((line, data))
                size += len(data) + 1
                out.valid += 1
            progress.update(chunk.nbytes, len(chunk.rows))
        flush()
    out.retries = client.retried
    out.seconds = time.perf_counter() - started
    return out


# ------------------------------------------------------------------------------- command


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="NDJSON (one event per line) or CSV")
    p.add_argument("--format", choices=FORMATS, help="default: csv for a .csv name, else ndjson")
    p.add_argument(
        "--url",
        metavar="URL",
        help="post to a running daemon instead of writing the log file (--db)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="--db: worker processes that parse and validate (default: CPUs; 0: none)",
    )
    p.add_argument(
        "--batch",
        type=int,
        default=MAX_BATCH_EVENTS,
        metavar="N",
        help=f"--url: events per POST /events (at most {MAX_BATCH_EVENTS})",
    )
    p.add_argument("--retries", type=int, default=8, help="--url: retries of one batch")
    p.add_argument("--timeout", type=float, default=60.0, help="--url: seconds per request")


def _snapshot_floor(cfg: Config) -> int:
    """Imported ids must come after every snapshot's cursor, as the daemon's own do."""
    from gravityd.snapshots.files import list_snapshots

    return max((s.cursor for s in list_snapshots(cfg.snapshot_dir)), default=0)


def run(args: argparse.Namespace, cfg: Config, err: TextIO = sys.stderr) -> int:
    """The command; ImportFailed and LogError are for the caller to print (exit code 2)."""
    path = args.file
    if args.url and args.db:
        raise ImportFailed("give --db or --url, not both")
    if not 1 <= args.batch <= MAX_BATCH_EVENTS:
        raise ImportFailed(f"--batch must be from 1 to {MAX_BATCH_EVENTS}")
    if args.jobs is not None and args.jobs < 0:
        raise ImportFailed("--jobs must be 0 or more")
    if args.retries < 0 or not args.timeout > 0:
        raise ImportFailed("--retries must be 0 or more and --timeout positive")
    if not Path(path).is_file():
        raise ImportFailed(f"no such file: {path}")
    fmt = detect_format(path, args.format)
    plan_ = plan(path, fmt)
    progress = ImportProgress(plan_.size, err)
    try:
        if args.url:
            target = args.url
            res = import_url(plan_, cfg, progress, args.url, args.batch, args.retries, args.timeout)
        else:
            target = cfg.db
            jobs = (os.cpu_count() or 1) if args.jobs is None else args.jobs
            res = import_db(plan_, cfg, progress, jobs, _snapshot_floor(cfg))
    finally:
        progress.close()
    if res.valid == 0:
        print(f"gravityd: error: no valid event in {path} ({res.lines_bad} bad lines)", file=err)
        return 2
    rate = res.valid / res.seconds if res.seconds > 0 else 0.0
    bad = f"; {res.lines_bad} bad lines reported above" if res.lines_bad else ""
    if res.retries:
        bad += f"; retried {res.retries} times (the daemon asked to wait, or was unreachable)"
    print(
        f"imported {res.valid} valid events from {path} into {target}: {res.added} added,"
        f" {res.duplicates} already there{bad}; {res.seconds:.2f} s, {rate:.0f} events/s"
    )
    return 0
