"""The one place that turns a log URL into a backend (and the small objects beside the log).

`log_url` (or `--db`) names the log: `sqlite:///PATH` or a bare file is the SQLite backend,
`nats://HOST:PORT[,...]` the JetStream one (nats-py is imported only then). Besides the log
itself a backend brings what is not the log's job: the catalogue, the takedowns in force for a
writer, where the snapshotter publishes, retention, and (JetStream) the object store replicas
fetch snapshots from. `gravityd serve` checks the URL here before it starts anything, and the
daemon opens its log here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gravityd.config import Config
from gravityd.log import (
    BlocksInForce,
    Catalog,
    EventLog,
    GraphPublisher,
    LogError,
    LogMissing,
    NoBlocksInForce,
    NoCatalog,
    NoRetention,
    Retention,
)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from gravityd.core.graph import FoldParams, GravityGraph


class BadLogUrl(ValueError):
    """A log URL no backend of this build takes (one line, for the CLI's exit 2)."""


class RemoteSnapshots(Protocol):
    """Snapshots kept beside the log for machines that have none (JetStream's object store)."""

    async def fetch_newest(
        self, folder: str, params: FoldParams | None, accept: Any
    ) -> tuple[Path, dict[str, Any], GravityGraph] | None:
        """Download into `folder` and load the newest snapshot `accept(header)` has no reason
        against: (path, header, graph), or None."""
        ...


@dataclass
class OpenedLog:
    """The log and what comes with its backend; nothing is connected until `log.open()`."""

    log: EventLog
    catalog: Catalog
    blocks_in_force: BlocksInForce
    publisher: GraphPublisher
    retention: Retention
    remote_snapshots: RemoteSnapshots | None = None
    remote: bool = False  # a log over the network: unreachable is retried, not fatal


def log_target(config: Config) -> tuple[str, str]:
    """("sqlite", path) or ("nats", url), checked; BadLogUrl (one line) for anything else."""
    kind, where = config.log_backend
    if kind == "nats":
        from gravityd.log.jetstream import parse_log_url

        try:
            parse_log_url(where)
        except ValueError as exc:
            raise BadLogUrl(str(exc)) from None
    elif kind != "sqlite":
        raise BadLogUrl(f"log_url {where}: no backend for it in this build")
    return kind, where


def preflight(config: Config) -> None:
    """What `gravityd serve` checks before it starts: the URL, and for a SQLite replica that
    an existing file is a gravityd log (a missing one is waited for). Raises BadLogUrl or
    LogError, each one line."""
    kind, where = log_target(config)
    if config.role == "replica" and kind == "sqlite":
        from gravityd.log.sqlite_schema import check_log_file

        try:
            check_log_file(where)
        except LogMissing:
            pass
        except LogError as exc:
            raise LogError(f"cannot use {where} as the log: {exc}") from None


def open_log(config: Config, registry: CollectorRegistry | None = None) -> OpenedLog:
    """The log backend this process's role and log_url ask for (not yet open)."""
    kind, where = log_target(config)
    writer = config.role != "replica"
    if kind == "nats":
        from gravityd.log.jetstream import open_jetstream_log as open_jetstream
        from gravityd.snapshots.object_store import LogSnapshots

        js = open_jetstream(where, config, writer=writer, registry=registry)
        snaps = LogSnapshots(js, config.snapshot_dir)
        return OpenedLog(js, NoCatalog(), NoBlocksInForce(), snaps, NoRetention(), snaps, True)
    from gravityd.log.sqlite import SqliteLog

    log = SqliteLog(
        where,
        synchronous=config.synchronous,
        max_commit_events=config.commit_max_events,
        busy_timeout_ms=config.busy_timeout_ms,
        readonly=not writer,
        poll_ms=config.log_poll_ms,
    )
    return OpenedLog(log, log, log, log, log)


__all__ = ["BadLogUrl", "OpenedLog", "RemoteSnapshots", "log_target", "open_log"]
