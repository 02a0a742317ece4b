"""Snapshots: the graph, the open sessions and the cursor they reflect, in one msgpack file.

File layout (all integers big-endian):

    b"GRAVSNAP"  magic
    u32 n, n bytes   header: msgpack map (format version, created_at, cursor, graph params,
                     counts, the scalars of the graph state; since 0.3 `blocks`, the blocked
                     tracks as of the cursor: optional, older files load without it; since
                     0.6 `origin`, the identity of the log the cursor counts in, e.g.
                     "sqlite:<32 hex>" or "<stream>@<creation time>": optional, a file
                     without it is accepted wherever its cursor fits in the log)
    repeated:
    u32 n, n bytes   one record: msgpack [part, payload], part in tracks | edges | sessions;
                     lists of the same part concatenate in order; after the graph's records,
                     the records of extra parts (``radio``: the scoreboard, see
                     gravityd/core/scoreboard.py), which a loader hands back by name
    u32 0            end of records
    32 bytes         BLAKE2b-256 of everything before it

The graph is written record by record from a generator, so a large graph never needs a second
full copy in memory and the daemon can yield to requests between records. Files are written to
a temporary name, fsynced, renamed into place and the folder fsynced, so a crash leaves either
the old set of snapshots or the new one, never a half file under a snapshot name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import os
import re
import struct
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import msgpack

from gravityd.core.graph import (
    STATE_VERSION,
    FoldParams,
    GravityGraph,
    forward_decay_factor,
    state_from_records,
)
from gravityd.core.takedowns import HEADER_KEY as BLOCKS_KEY
from gravityd.core.takedowns import Blocks
from gravityd.log import LogIdentity

log = logging.getLogger("gravityd.snapshot")

MAGIC = b"GRAVSNAP"
FORMAT_VERSION = 1
SUFFIX = ".gsnap"
_NAME_RE = re.compile(r"^gravity-(\d{12})-c(\d+)\.gsnap$")
_U32 = struct.Struct(">I")
_DIGEST = 32
GRAPH_PARTS = frozenset({"meta", "tracks", "edges", "sessions"})


class SnapshotError(Exception):
    """A snapshot file that cannot be used: missing, truncated, corrupt or of another version."""


@dataclasses.dataclass(frozen=True)
class SnapshotInfo:
    """A snapshot file in the folder, ordered by its sequence number (newest = highest)."""

    path: Path
    seq: int
    cursor: int


def list_snapshots(folder: str | os.PathLike) -> list[SnapshotInfo]:
    """Snapshot files of a folder, newest first; temporary and foreign files are ignored."""
    d = Path(folder)
    if not d.is_dir():
        return []
    out = []
    for p in d.iterdir():
        m = _NAME_RE.match(p.name)
        if m:
            out.append(SnapshotInfo(p, int(m.group(1)), int(m.group(2))))
    out.sort(key=lambda s: s.seq, reverse=True)
    return out


def parse_name(name: str) -> tuple[int, int] | None:
    """(sequence, cursor) of a snapshot file name, or None for any other name."""
    m = _NAME_RE.match(name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def next_path(folder: str | os.PathLike, cursor: int) -> Path:
    snaps = list_snapshots(folder)
    seq = snaps[0].seq + 1 if snaps else 1
    return Path(folder) / f"gravity-{seq:012d}-c{cursor}{SUFFIX}"


class SnapshotWriter:
    """Writes one snapshot in steps: `step()` packs and writes one record, `finish()` seals it."""

    def __init__(
        self,
        gg: GravityGraph,
        folder: str | os.PathLike,
        chunk: int = 50_000,
        blocks: Blocks | None = None,
        extra: Iterable[tuple[str, Any]] = (),
        origin: str | None = None,
    ) -> None:
        """`extra`: (part, payload) records written after the graph's, e.g. the scoreboard's;
        like the graph they must not change until the last step. `origin`: the identity of the
        log the cursor counts in (gravityd.log.LogIdentity.id), kept in the header."""
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.cursor = gg.cursor
        self.final = next_path(self.folder, gg.cursor)
        self.tmp = self.folder / f".{self.final.name}.{os.getpid()}.tmp"
        self._hash = hashlib.blake2b(digest_size=_DIGEST)
        self._file = open(self.tmp, "wb")  # noqa: SIM115 - closed in finish()/abort()
        self._records = itertools.chain(gg.iter_state(chunk), _extra_records(extra))
        self._packer = msgpack.Packer(use_bin_type=True)
        self.bytes = 0
        meta = next(self._records)  # the scalars come first
        assert meta[0] == "meta"
        header = {
            "format": FORMAT_VERSION,
            "state_version": STATE_VERSION,
            "created_at": time.time(),
            "cursor": gg.cursor,
            "params": dataclasses.asdict(gg.params),
            "counts": {
                "nodes": gg.node_count,
                "edges": gg.edge_count,
                "sessions": gg.session_count,
            },
            "state": meta[1],
        }
        if blocks is not None:
            header[BLOCKS_KEY] = blocks.to_record()
        if origin is not None:
            # Which log the cursor counts in: a snapshot of another log is skipped (skip_reason).
            header["origin"] = origin
        self._write_raw(MAGIC)
        self._write_block(self._packer.pack(header))

    def _write_raw(self, data: bytes) -> None:
        self._hash.update(data)
        self._file.write(data)
        self.bytes += len(data)

    def _write_block(self, payload: bytes) -> None:
        self._write_raw(_U32.pack(len(payload)))
        self._write_raw(payload)

    def step(self) -> bool:
        """Write the next record; False once every record is written."""
        try:
            part, payload = next(self._records)
        except StopIteration:
            return False
        self._write_block(self._packer.pack([part, payload]))
        return True

    def seal(self) -> None:
        """Terminate, checksum and fsync the temporary file (slow part: run it off the loop)."""
        self._write_raw(_U32.pack(0))
        self._file.write(self._hash.digest())
        self.bytes += _DIGEST
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def publish(self) -> Path:
        """Rename into place and fsync the folder: from here on the snapshot exists."""
        os.replace(self.tmp, self.final)
        fsync_dir(self.folder)
        return self.final

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.tmp.unlink(missing_ok=True)


def _extra_records(extra: Iterable[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    for part, payload in extra:
        if part in GRAPH_PARTS:
            raise ValueError(f"extra snapshot part {part!r} is one of the graph's")
        yield part, payload


def write_snapshot(
    gg: GravityGraph,
    folder: str | os.PathLike,
    chunk: int = 50_000,
    blocks: Blocks | None = None,
    extra: Iterable[tuple[str, Any]] = (),
    origin: str | None = None,
) -> Path:
    """Write a snapshot in one go (the CLI's form; the daemon steps a SnapshotWriter)."""
    w = SnapshotWriter(gg, folder, chunk, blocks, extra, origin)
    try:
        while w.step():
            pass
        w.seal()
        return w.publish()
    except BaseException:
        w.abort()
        raise


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_blocks(path: Path) -> Iterator[bytes]:
    """Yield the header then each record, checking magic, framing and the checksum."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SnapshotError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SnapshotError(f"{path}: is a directory") from None
    except OSError as exc:
        raise SnapshotError(f"{path}: {exc.strerror}") from None
    if len(data) < len(MAGIC) + 4 + _DIGEST:
        raise SnapshotError(f"{path}: too short to be a snapshot ({len(data)} bytes)")
    if not data.startswith(MAGIC):
        raise SnapshotError(f"{path}: not a gravityd snapshot")
    body, digest = data[:-_DIGEST], data[-_DIGEST:]
    if hashlib.blake2b(body, digest_size=_DIGEST).digest() != digest:
        raise SnapshotError(f"{path}: checksum mismatch (truncated or corrupt)")
    view = memoryview(body)
    at = len(MAGIC)
    while True:
        if at + 4 > len(view):
            raise SnapshotError(f"{path}: truncated")
        (n,) = _U32.unpack_from(view, at)
        at += 4
        if n == 0:
            break
        if at + n > len(view):
            raise SnapshotError(f"{path}: truncated record")
        yield bytes(view[at : at + n])
        at += n
    if at != len(view):
        raise SnapshotError(f"{path}: trailing bytes after the end marker")


def _unpack_header(path: Path, block: bytes) -> dict[str, Any]:
    try:
        header = msgpack.unpackb(block, raw=False, strict_map_key=False)
    except Exception as exc:
        raise SnapshotError(f"{path}: unreadable header ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION:
        fmt = header.get("format") if isinstance(header, dict) else None
        raise SnapshotError(f"{path}: format version {fmt!r}, this gravityd reads {FORMAT_VERSION}")
    return header


def load_snapshot(
    path: str | os.PathLike, params: FoldParams | None = None
) -> tuple[dict[str, Any], GravityGraph]:
    """Verify and load one snapshot; raise SnapshotError if it cannot be used.

    The payloads of parts other than the graph's come back in ``header["parts"]``, a dict of
    part name -> list of payloads in file order (empty for a snapshot written without them).
    """
    p = Path(path)
    blocks = _read_blocks(p)
    header = _unpack_header(p, next(blocks))
    parts: dict[str, list[Any]] = {}
    header["parts"] = parts

    def graph_records() -> Iterator[tuple[str, Any]]:
        for block in blocks:
            part, payload = msgpack.unpackb(block, raw=False, strict_map_key=False)
            if part in GRAPH_PARTS:
                yield part, payload
            else:
                parts.setdefault(part, []).append(payload)

    try:
        state = state_from_records(itertools.chain([("meta", header["state"])], graph_records()))
        state["cursor"] = header["cursor"]
        gg = GravityGraph.from_state(state, params)
        Blocks.from_header(header)  # malformed blocks make the file unusable, like the graph
    except SnapshotError:
        raise
    except Exception as exc:
        raise SnapshotError(f"{p}: malformed content ({type(exc).__name__}: {exc})") from None
    saved = header.get("params") or {}
    if params is not None and saved != dataclasses.asdict(params):
        changed = sorted(k for k, v in dataclasses.asdict(params).items() if saved.get(k) != v)
        log.warning(
            "snapshot built with other graph settings; new events use the current ones",
            extra={"path": str(p), "changed": changed},
        )
    return header, gg


def iter_edge_rows(
    path: str | os.PathLike, now: float, chunk: int = 10_000
) -> Iterator[list[tuple[str, str, float, float, float, int]]]:
    """A snapshot's edges as (src, dst, w, pos, neg, n) decayed to `now`, read from the file.

    The daemon refreshes track_edges from the file it has just written, in a thread, so the
    live graph is free to fold meanwhile.
    """
    p = Path(path)
    blocks = _read_blocks(p)
    header = _unpack_header(p, next(blocks))
    half_life = header["params"]["half_life_days"]
    f = forward_decay_factor(header["state"]["t0"], half_life * 86400 if half_life > 0 else 0, now)
    tracks: list[str] = []
    rows: list[tuple[str, str, float, float, float, int]] = []
    for block in blocks:
        part, payload = msgpack.unpackb(block, raw=False, strict_map_key=False)
        if part == "tracks":
            tracks.extend(payload)
        elif part == "edges":
            cols = (payload["src"], payload["dst"], payload["pos"], payload["neg"], payload["n"])
            for s, d, pos, neg, n in zip(*cols, strict=True):
                rows.append((tracks[s], tracks[d], (pos - neg) * f, pos * f, neg * f, n))
                if len(rows) >= chunk:
                    yield rows
                    rows = []
    if rows:
        yield rows


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """Only the header of a snapshot file (origin, cursor, ...), without reading the rest: to
    skip a snapshot of another log cheaply. The checksum is verified when it is loaded."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(len(MAGIC) + 4)
            if len(head) < len(MAGIC) + 4 or not head.startswith(MAGIC):
                raise SnapshotError(f"{p}: not a gravityd snapshot")
            (n,) = _U32.unpack_from(head, len(MAGIC))
            block = f.read(n)
    except OSError as exc:
        raise SnapshotError(f"{p}: {exc.strerror or exc}") from None
    if len(block) != n:
        raise SnapshotError(f"{p}: truncated header")
    return _unpack_header(p, block)


def skip_reason(
    header: dict[str, Any], identity: LogIdentity | None, end: int | None
) -> str | None:
    """Why a snapshot must not be loaded beside this log, or None when it may.

    A snapshot of another log counts its cursor in positions of that log: loading it would
    serve a foreign graph and skip this log's events up to that cursor. So is one whose cursor
    lies beyond this log's end (the log was replaced or lost events). A snapshot without an
    origin (written before 0.6) is accepted where its cursor fits; `gravityd restore` adopts
    one of another log explicitly (LogIdentity.adopted).
    """
    cursor = header.get("cursor", 0)
    origin = header.get("origin")
    foreign = identity is not None and origin is not None and origin != identity.id
    if foreign and (origin, cursor) not in identity.adopted:
        return f"it is a snapshot of another log ({origin}); this log is {identity.id}"
    if end is not None and cursor > end:
        return f"its cursor {cursor} lies beyond the log's end ({end})"
    return None


class Found(NamedTuple):
    """The snapshot a process starts from: its file, its header (with `parts`), its graph."""

    info: SnapshotInfo
    header: dict[str, Any]
    graph: GravityGraph


def load_newest(
    folder: str | os.PathLike,
    params: FoldParams | None = None,
    identity: LogIdentity | None = None,
    end: int | None = None,
) -> Found | None:
    """The one way every process picks its snapshot: the newest that belongs to this log
    (`identity`), whose cursor lies within the log (`end`) and that verifies. The others are
    skipped, each with one log line saying why, and the next older one is tried. Without
    `identity` and `end` (the in-process ranker, which has no log) the newest that verifies."""
    for info in list_snapshots(folder):
        try:
            if identity is not None or end is not None:
                reason = skip_reason(read_header(info.path), identity, end)
                if reason is not None:
                    log.warning(
                        "snapshot skipped: not of this log",
                        extra={"path": str(info.path), "reason": reason},
                    )
                    continue
            header, gg = load_snapshot(info.path, params)
        except SnapshotError as exc:
            log.error("snapshot skipped", extra={"path": str(info.path), "error": str(exc)})
            continue
        return Found(info, header, gg)
    return None


def prune(folder: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the newest `keep` snapshots (and stale temporary files)."""
    removed = []
    for info in list_snapshots(folder)[keep:]:
        info.path.unlink(missing_ok=True)
        removed.append(info.path)
    d = Path(folder)
    if d.is_dir():
        for p in d.glob(".gravity-*.tmp"):
            pid = p.name.rsplit(".", 2)[-2]
            if pid != str(os.getpid()):
                p.unlink(missing_ok=True)
    return removed
