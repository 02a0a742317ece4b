"""The `gravityd` command: serve, build, simulate, snapshot, restore, eval, catalog, import.

Every failure a user can cause (a bad flag, a missing file, a bad setting, a busy port) ends in
one clear line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from typing import Any, NoReturn

from gravityd import __version__
from gravityd.commands import report
from gravityd.config import Config, ConfigError, load_config
from gravityd.lab import evaluate

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _fail(message: str) -> int:
    print(f"gravityd: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _add_store_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="F",
        help="TOML config file (default: GRAVITYD_CONFIG, "
        "else config/gravityd.toml of the install, else built-in defaults)",
    )
    p.add_argument("--db", metavar="PATH", help="SQLite event log file")
    p.add_argument("--snapshot-dir", metavar="DIR", help="folder of msgpack snapshots")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gravityd", description="The gravity layer of the Live Radio.")
    parser.add_argument("--version", action="version", version=f"gravityd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser(
        "serve",
        help="run the daemon",
        description="all (the default): one process ingests, folds, snapshots and serves. "
        "writer: ingest only. replica: tails the log read-only and serves every read; "
        "--workers N runs N replicas on one port. See docs/replicas.md.",
    )
    _add_store_flags(p)
    p.add_argument("--host", metavar="H", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", metavar="P", type=int, help="port to bind (default 8080)")
    p.add_argument("--role", choices=("all", "writer", "replica"), help="default: all")
    p.add_argument("--workers", metavar="N", type=_positive, help="replica processes on one port")
    p.add_argument(
        "--log-url",
        metavar="URL",
        help="sqlite:///PATH (default: the --db file) or nats://HOST:PORT[,HOST:PORT...]",
    )
    p.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)

    p = sub.add_parser("build", help="one-shot batch build for cron")
    _add_store_flags(p)

    p = sub.add_parser(
        "simulate",
        help="post fake but plausible sessions to a running daemon",
        description="Open loop: post embedding-radio sessions of a simulated world. "
        "--closed-loop: three radios (embedding only, the gravity blend over POST /rank, an "
        "oracle) over the same listeners; prints the skip rate per block. Sends "
        "GRAVITYD_ADMIN_TOKEN to /admin/fold if set.",
    )
    p.add_argument(
        "--url", default="http://127.0.0.1:8080", help="the daemon that takes the events"
    )
    p.add_argument(
        "--read-url",
        metavar="URL",
        help="a reader (replica) on the same log, when --url is a writer: the closed loop ranks "
        "and folds there, and the printed links point there",
    )
    p.add_argument("--sessions", type=_positive, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--run",
        metavar="LABEL",
        help="the run's label, in its session ids, event ids and arms (default: a fresh one, "
        "printed); the same --seed and --run repeat a run's ids exactly",
    )
    p.add_argument("--concurrency", type=_positive, default=8, help="sessions posted at once")
    p.add_argument("--tracks", type=_positive, default=200, help="tracks in the catalogue")
    p.add_argument("--closed-loop", action="store_true", help="compare three radios")
    p.add_argument(
        "--only-gravity",
        action="store_true",
        help="closed loop: post only the gravity radio's sessions (default: every radio's, "
        "each with its arm as the radio_next context)",
    )
    p.add_argument("--block", type=_positive, default=50, help="sessions per block (closed loop)")
    p.add_argument("--plot", metavar="PNG", help="write the learning curve (needs matplotlib)")
    p.add_argument(
        "--replay",
        metavar="DIR",
        help="post the real radio playlists of a Yes.com folder (yes_small from the data page "
        "of Chen et al., KDD 2012: see docs/evaluation.md; tests/data/yes_sample is a small "
        "generated one) instead of simulated sessions; replaying twice adds nothing",
    )
    p.add_argument("--playlists", type=_positive, help="with --replay: only the first N")

    p = sub.add_parser(
        "snapshot",
        help="ask a running daemon for a snapshot now",
        description="POST /admin/snapshot; sends GRAVITYD_ADMIN_TOKEN if set.",
    )
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait")

    p = sub.add_parser(
        "report",
        help="print the radio's scoreboard of a running daemon",
        description="GET /radio/report as a table: skip rate per arm (the radio_next context) "
        "with its 95% interval, the comparison of two arms in plain words, and the skip rate "
        "per day or hour.",
    )
    report.add_arguments(p)

    p = sub.add_parser(
        "eval",
        help="measure next-track prediction on Yes.com playlists",
        description="Replay the training playlists through the real fold, then rank every "
        "held-out transition: hit rate and MRR at 10 and 20 for the graph and the baselines.",
    )
    evaluate.add_arguments(p)

    p = sub.add_parser(
        "catalog",
        help="load track titles and artists (for the explorer and ?with=meta)",
        description="gravityd catalog load FILE: CSV with a header track_id,title,artist, JSON "
        "lines {track_id, title, artist}, or a Yes.com song_hash.txt (--format yes). Every row is "
        "checked first; one bad row loads nothing. Safe while the daemon runs.",
    )
    csub = p.add_subparsers(dest="catalog_command", metavar="ACTION", parser_class=_Parser)
    p = csub.add_parser("load", help="upsert a catalogue file into the tracks table")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--format", choices=("csv", "jsonl", "yes"), help="default: from the name")
    _add_store_flags(p)

    p = sub.add_parser(
        "import",
        help="bulk-load events from an NDJSON or CSV file",
        description="Every line validated as POST /events would; bad lines reported by line "
        "number, good ones kept; a rerun adds nothing (event_id, else an id derived from the "
        "file and line). --db (default) writes the log directly, refused while a daemon holds "
        "it; --url posts to a running daemon.",
    )
    _add_import_arguments(p)
    _add_store_flags(p)

    p = sub.add_parser("restore", help="make a snapshot the one the next start loads")
    p.add_argument("snapshot_file", metavar="SNAPSHOT_FILE")
    _add_store_flags(p)
    return parser


def _add_import_arguments(p: argparse.ArgumentParser) -> None:
    from gravityd.commands.importer import add_arguments

    add_arguments(p)


def _config(args: argparse.Namespace, **flags: object) -> Config:
    overrides = {"db": args.db, "snapshot_dir": args.snapshot_dir, **flags}
    return load_config(args.config, overrides=overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio
    import os
    import signal

    from aiohttp import web

    from gravityd.daemon.service import Gravityd
    from gravityd.http.app import create_app
    from gravityd.log import LogError
    from gravityd.log.open import BadLogUrl, preflight
    from gravityd.structured_logs import setup_logging

    cfg = _config(
        args,
        host=args.host,
        port=args.port,
        role=args.role,
        workers=args.workers,
        log_url=args.log_url,
    )
    try:  # a bad URL, or a file that is not a gravityd log, is one line now
        preflight(cfg)
    except (BadLogUrl, LogError) as exc:
        return _fail(str(exc))
    setup_logging(cfg.log_level, cfg.log_format)
    if cfg.workers > 1:
        from gravityd.daemon.supervisor import Supervisor

        try:  # the port must be ours to share: a busy one is one clear line, not N
            probe = socket.create_server((cfg.host, cfg.port), reuse_port=True)
        except OSError as exc:
            return _fail(f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}")
        probe.close()
        return Supervisor(cfg, args.argv).run()
    shared = args.worker_index > 0
    try:
        # Bind before anything else starts, so a busy port is one clear line, not a traceback.
        sock = socket.create_server((cfg.host, cfg.port), reuse_port=shared)
    except OSError as exc:
        return _fail(f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}")
    # The log's writer and snapshot threads hold the interpreter lock while they build rows;
    # the default 5 ms switch interval would let each of them stall the event loop that long.
    sys.setswitchinterval(0.0005)
    loop_name = install_event_loop(cfg.event_loop)
    if loop_name is None:
        return _fail("setting event_loop: uvloop is not installed (pip install 'gravityd[fast]')")
    svc = Gravityd(cfg, worker=args.worker_index)
    svc.metrics.worker_starts.set(int(os.environ.get("GRAVITYD_WORKER_STARTS", "1") or 1))
    app = create_app(svc)
    host, port = sock.getsockname()[:2]

    async def _listening(app: web.Application) -> None:
        logging.getLogger("gravityd").info(
            "listening",
            extra={
                "host": host,
                "port": port,
                "role": cfg.role,
                "worker": args.worker_index,
                "log": svc.event_log.description,
                "version": __version__,
                "event_loop": loop_name,
            },
        )

        async def stop_on_failure() -> None:
            await svc.failed.wait()  # the log turned out not to be ours: stop, exit 2
            signal.raise_signal(signal.SIGTERM)

        watch.append(asyncio.create_task(stop_on_failure()))

    async def _unwatch(app: web.Application) -> None:
        for task in watch:
            task.cancel()

    watch: list[asyncio.Task] = []
    app.on_startup.append(_listening)
    app.on_cleanup.append(_unwatch)
    if shared:
        try:
            asyncio.run(_serve_when_ready(app, svc, sock, cfg.shutdown_timeout_s))
        finally:
            sock.close()
        return _fail(svc.fatal) if svc.fatal else 0
    try:
        web.run_app(
            app,
            sock=sock,
            print=None,
            access_log=None,
            shutdown_timeout=cfg.shutdown_timeout_s,
            handle_signals=True,
        )
    except LogError as exc:
        return _fail(str(exc))
    finally:
        sock.close()
    if svc.fatal:
        return _fail(svc.fatal)
    return 0


def install_event_loop(choice: str) -> str | None:
    """Install the event loop `event_loop` asks for; its name, or None when uvloop is asked for
    and missing. uvloop answers the same requests with less CPU (docs/performance.md)."""
    import asyncio

    if choice == "asyncio":
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        return None if choice == "uvloop" else "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


async def _serve_when_ready(app: Any, svc: Any, sock: socket.socket, timeout_s: float) -> None:
    """A supervised worker accepts connections only once its graph is caught up: the port is
    shared, so a loading worker that listened would answer reads from a half-loaded graph (or
    503s) for whoever the kernel sent to it. SIGTERM/SIGINT stop it as web.run_app would."""
    import asyncio
    import signal

    from aiohttp import web

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=timeout_s)
    await runner.setup()  # starts the service: snapshot, log, fold
    try:
        ready = asyncio.create_task(svc.wait_ready())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if not stop.is_set():
            await web.SockSite(runner, sock).start()
            await stopped
        stopped.cancel()
    finally:
        await runner.cleanup()


def cmd_build(args: argparse.Namespace) -> int:
    from gravityd.commands.build import build
    from gravityd.log import LogError
    from gravityd.snapshots.files import SnapshotError
    from gravityd.structured_logs import setup_logging

    cfg = _config(args)
    if cfg.log_backend[0] == "nats":
        return _fail(
            "build folds a SQLite log; with a JetStream log (log_url nats://...) the snapshotter"
            " replica writes and uploads snapshots itself (docs/jetstream.md)"
        )
    setup_logging("WARNING", cfg.log_format)
    try:
        res = build(cfg)
    except (LogError, SnapshotError, OSError) as exc:
        return _fail(str(exc))
    if res.path is None:
        print(f"up to date: cursor {res.cursor}, {res.edges} edges, nothing new to fold")
    else:
        since = f"snapshot at cursor {res.start}" if res.start else "the start of the log"
        changes = f" and {res.block_changes} block changes" if res.block_changes else ""
        print(
            f"{res.path} cursor {res.cursor}: folded {res.folded} events{changes} from {since}"
            f" through position {res.cursor}, {res.edges} edges, in {res.seconds:.2f} s"
        )
    if res.skipped:
        print(f"skipped {res.skipped} unreadable stored events (see the log lines above)")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from gravityd.commands.build import restore_snapshot
    from gravityd.log import LogError
    from gravityd.snapshots.files import SnapshotError
    from gravityd.structured_logs import setup_logging

    cfg = _config(args)
    if cfg.log_backend[0] == "nats":
        return _fail(
            "restore installs a snapshot beside a SQLite log; with a JetStream log, stop the"
            " replicas, put the file in each one's snapshot folder, and remove the newer"
            " objects from the bucket (docs/jetstream.md)"
        )
    setup_logging("WARNING", cfg.log_format)
    try:
        done = restore_snapshot(cfg, args.snapshot_file)
    except (LogError, SnapshotError, OSError) as exc:
        return _fail(f"cannot restore: {exc}")
    print(done.message())
    return 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    from gravityd.commands.client import BlockingClient, DaemonError

    try:
        with BlockingClient(args.url, timeout_s=args.timeout) as client:
            answer = client.request("POST", "/admin/snapshot")
    except ValueError as exc:  # not a URL
        return _fail(str(exc))
    except DaemonError as exc:
        print(f"gravityd: error: {exc}", file=sys.stderr)
        return 1
    if not answer.ok:
        detail = answer.error().get("message", "")
        print(f"gravityd: error: snapshot refused ({answer.status}): {detail}", file=sys.stderr)
        return 1
    print(answer.json()["path"])
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from gravityd.commands.client import DaemonError
    from gravityd.lab import simulate

    try:
        return simulate.run(args)
    except (FileNotFoundError, ValueError) as exc:  # a bad --run, --url or --replay folder
        return _fail(str(exc))
    except (DaemonError, RuntimeError, OSError) as exc:  # unreachable, refusing, no matplotlib
        print(f"gravityd: error: {exc}", file=sys.stderr)
        return 1


def cmd_catalog(args: argparse.Namespace) -> int:
    import sqlite3

    from gravityd.commands.catalog import CatalogError, distinct_rows, load_catalog, read_catalog
    from gravityd.log import LogError
    from gravityd.progress import Stages

    if args.catalog_command != "load":
        return _fail("say what to do: gravityd catalog load FILE")
    cfg = _config(args)
    try:
        with Stages(units={"check": "row", "write": "row"}) as bar:
            checked = read_catalog(args.file, args.format, lambda n: bar("check", n, None))
            rows, repeats = distinct_rows(checked)
            total = load_catalog(cfg.db, rows, progress=lambda n: bar("write", n, len(rows)))
    except CatalogError as exc:
        return _fail(str(exc))
    except (LogError, sqlite3.Error, OSError) as exc:
        return _fail(f"cannot write the catalogue to {cfg.db}: {exc}")
    again = f" ({repeats} repeated ids: the last row of each won)" if repeats else ""
    print(f"loaded {len(rows)} tracks from {args.file}{again}; the catalogue holds {total}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    import sqlite3

    from gravityd.commands.importer import ImportFailed, run
    from gravityd.log import LogError

    cfg = _config(args)
    try:
        return run(args, cfg)
    except ImportFailed as exc:
        return _fail(str(exc))
    except LogError as exc:
        return _fail(f"cannot import into {cfg.db}: {exc}")
    except (sqlite3.Error, OSError) as exc:
        return _fail(f"cannot import {args.file}: {exc}")


def cmd_eval(args: argparse.Namespace) -> int:
    try:
        return evaluate.run(args)
    except (FileNotFoundError, ValueError) as exc:
        return _fail(str(exc))


def cmd_report(args: argparse.Namespace) -> int:
    return report.run(args)


COMMANDS = {
    "serve": cmd_serve,
    "build": cmd_build,
    "restore": cmd_restore,
    "snapshot": cmd_snapshot,
    "simulate": cmd_simulate,
    "eval": cmd_eval,
    "catalog": cmd_catalog,
    "report": cmd_report,
    "import": cmd_import,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what a supervisor re-runs
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
