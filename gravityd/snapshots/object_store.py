"""Snapshots in a JetStream object store, so a replica on an empty machine can start.

The snapshot writer uploads every snapshot file it writes (streamed from the file in chunks,
never read whole into memory); a replica with no usable local snapshot downloads the newest
object that verifies: streamed into a temporary file of the snapshot folder, checked by
`gravityd.snapshots.files.load_snapshot` (the same checksum and framing as a local file),
then renamed into place, where it is the local cache from then on. A corrupt object is skipped
like a corrupt file, and so is one from another log: each object records the stream it came
from (its `origin`: stream name and creation time) in its metadata, and the snapshot file in
its header.
See docs/jetstream.md, "Snapshots in the object store".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext, api
from nats.js.object_store import ObjectStore

from gravityd.core.graph import FoldParams, GravityGraph
from gravityd.log import LogError
from gravityd.log.jetstream import JetStreamLog
from gravityd.snapshots.files import SnapshotError, fsync_dir, load_snapshot, parse_name

log = logging.getLogger("gravityd.snapshot_store")

ORIGIN_HEADER = "Gravityd-Origin"
CURSOR_HEADER = "Gravityd-Cursor"
_ERRORS = (nats.errors.Error, asyncio.TimeoutError, OSError)


class OriginMismatch(SnapshotError):
    """A snapshot of another log: its cursor counts positions of another stream."""


def check_origin(header: dict[str, Any], origin: str, where: str) -> None:
    """Refuse a snapshot whose header names another log (one without the field is accepted:
    snapshots of the SQLite log carry none)."""
    found = header.get("origin")
    if found is not None and found != origin:
        raise OriginMismatch(f"{where}: snapshot of log {found}, this log is {origin}")


def _header_value(headers: dict | None, name: str) -> str | None:
    """Object headers as NATS stores them (a list of values per name) or plain strings."""
    if not headers:
        return None
    value = headers.get(name)
    if isinstance(value, list):
        return value[0] if value else None
    return value


class SnapshotStore:
    """The object-store bucket of one log's snapshots."""

    def __init__(
        self,
        js: JetStreamContext,
        bucket: str,
        origin: str,
        *,
        replicas: int = 3,
        storage: str = "file",
        keep: int = 3,
    ) -> None:
        self.js = js
        self.bucket = bucket
        self.origin = origin
        self.replicas = replicas
        self.storage = storage
        self.keep = keep
        self._obs: ObjectStore | None = None
        self._opened = False

    @classmethod
    def for_log(cls, log: JetStreamLog) -> SnapshotStore:
        """The bucket of an open JetStream log, with its settings ([jetstream] js_bucket,
        js_replicas, js_storage, js_snapshot_keep) and its origin; then `await open()`."""
        p = log.params
        return cls(
            log.jetstream,
            p.js_bucket,
            log.origin,
            replicas=p.js_replicas,
            storage=p.js_storage,
            keep=p.js_snapshot_keep,
        )

    async def open(self, create: bool = True) -> None:
        """Bind the bucket; the snapshot writer creates it when missing (a replica does not:
        a missing bucket simply holds no snapshot)."""
        self._opened = True
        try:
            self._obs = await self.js.object_store(self.bucket)
            return
        except nats.js.errors.BucketNotFoundError:
            if not create:
                self._obs = None
                return
        except nats.js.errors.NotFoundError:
            if not create:
                self._obs = None
                return
        except _ERRORS as exc:
            raise LogError(f"object store {self.bucket}: {type(exc).__name__}: {exc}") from None
        try:
            self._obs = await self.js.create_object_store(
                self.bucket,
                config=api.ObjectStoreConfig(
                    description="gravityd snapshots (docs/jetstream.md)",
                    replicas=self.replicas,
                    storage=api.StorageType.FILE
                    if self.storage == "file"
                    else api.StorageType.MEMORY,
                ),
            )
        except _ERRORS as exc:
            raise LogError(
                f"cannot create object store {self.bucket}: {type(exc).__name__}: {exc}"
            ) from None
        log.info("object store created", extra={"bucket": self.bucket})

    def _store(self) -> ObjectStore:
        if self._obs is None:
            raise LogError(f"object store {self.bucket} is not open (or does not exist)")
        return self._obs

    async def upload(self, path: str | os.PathLike, cursor: int) -> str:
        """Upload one snapshot file under its own name (streamed), then drop the oldest."""
        obs = self._store()
        p = Path(path)
        meta = api.ObjectMeta(
            name=p.name,
            description=f"gravityd snapshot, cursor {cursor}",
            headers={ORIGIN_HEADER: [self.origin], CURSOR_HEADER: [str(cursor)]},
        )
        try:
            with open(p, "rb") as f:
                await obs.put(p.name, f, meta=meta)
        except _ERRORS as exc:
            raise LogError(f"upload of {p.name} to {self.bucket} failed: {exc}") from None
        log.info("snapshot uploaded", extra={"bucket": self.bucket, "object": p.name})
        await self.prune()
        return p.name

    async def names(self) -> list[tuple[int, str, api.ObjectInfo]]:
        """(sequence, name, info) of the bucket's snapshots, newest first."""
        obs = self._store()
        try:
            infos = await obs.list(ignore_deletes=True)
        except nats.js.errors.NotFoundError:
            return []
        except _ERRORS as exc:
            raise LogError(f"listing {self.bucket} failed: {exc}") from None
        out = []
        for info in infos:
            parsed = parse_name(info.name or "")
            if parsed is not None and not info.deleted:
                out.append((parsed[0], info.name, info))
        out.sort(key=lambda t: t[0], reverse=True)
        return out

    async def prune(self) -> list[str]:
        obs = self._store()
        removed = []
        for _, name, _ in (await self.names())[self.keep :]:
            with contextlib.suppress(*_ERRORS, nats.js.errors.NotFoundError):
                await obs.delete(name)
                removed.append(name)
        return removed

    async def download_newest(
        self,
        folder: str | os.PathLike,
        params: FoldParams | None = None,
        accept: Callable[[dict[str, Any]], str | None] | None = None,
    ) -> tuple[Path, dict[str, Any], GravityGraph] | None:
        """The newest object that verifies, streamed into `folder` and loaded; None if none.

        Objects of another log, corrupt ones (digest or checksum) and unreadable ones are
        reported and skipped, the next older one tried; so is one whose header `accept`
        gives a reason against (gravityd.snapshots.files.skip_reason: a cursor past the end).
        """
        if self._opened and self._obs is None:
            return None  # no bucket yet: no writer has uploaded anything
        obs = self._store()
        d = Path(folder)
        d.mkdir(parents=True, exist_ok=True)
        for _, name, info in await self.names():
            found = _header_value(info.headers, ORIGIN_HEADER)
            if found is not None and found != self.origin:
                log.error(
                    "snapshot object of another log skipped",
                    extra={"object": name, "origin": found, "expected": self.origin},
                )
                continue
            tmp = d / f".{name}.{os.getpid()}.download.tmp"
            try:
                with open(tmp, "wb") as f:
                    await obs.get(name, writeinto=f)
                    f.flush()
                    os.fsync(f.fileno())
                header, gg = await asyncio.to_thread(load_snapshot, tmp, params)
                check_origin(header, self.origin, f"{self.bucket}/{name}")
                reason = accept(header) if accept is not None else None
                if reason is not None:
                    raise SnapshotError(f"{self.bucket}/{name}: {reason}")
            except (SnapshotError, nats.js.errors.DigestMismatchError) as exc:
                tmp.unlink(missing_ok=True)
                log.error("snapshot object skipped", extra={"object": name, "error": str(exc)})
                continue
            except _ERRORS as exc:
                tmp.unlink(missing_ok=True)
                raise LogError(f"download of {name} from {self.bucket} failed: {exc}") from None
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            final = d / name
            os.replace(tmp, final)  # verified: it replaces a local file of that name
            fsync_dir(d)
            log.info("snapshot downloaded", extra={"object": name, "cursor": header["cursor"]})
            return final, header, gg
        return None


class LogSnapshots:
    """A JetStream log's snapshots beyond the local folder: the snapshotter uploads each one it
    writes (its GraphPublisher: the stream has no `track_edges` or `gravity_cursor` tables,
    docs/jetstream.md), and a replica with no usable local snapshot fetches the newest
    usable object (gravityd.log.open.RemoteSnapshots)."""

    def __init__(self, log: JetStreamLog, snapshot_dir: str | None) -> None:
        self.log = log
        self.snapshot_dir = snapshot_dir

    async def publish_galaxies(self, cursor: int, rows: Callable[[], Iterator[Any]]) -> None:
        """The stream has no tables: track_galaxies is SQLite's (docs/jetstream.md)."""
        return None

    async def publish_graph(
        self, cursor: int, snapshot: str, rows: Callable[[], Any] | None
    ) -> None:
        """Upload the snapshot file just written (streamed), where replicas on other machines
        find it."""
        if not self.snapshot_dir:
            return
        store = SnapshotStore.for_log(self.log)
        await store.open(create=True)
        await store.upload(os.path.join(self.snapshot_dir, snapshot), cursor)

    async def fetch_newest(
        self,
        folder: str,
        params: FoldParams | None,
        accept: Callable[[dict[str, Any]], str | None] | None,
    ) -> tuple[Path, dict[str, Any], GravityGraph] | None:
        """Download the newest usable object into `folder` (the local copy from then on) and
        load it: (path, header, graph); None when the bucket holds none."""
        store = SnapshotStore.for_log(self.log)
        await store.open(create=False)
        got = await store.download_newest(folder, params, accept)
        if got is None:
            return None
        log.info("snapshot bootstrapped from the object store", extra={"path": str(got[0])})
        return got
