"""Helpers the tests share; conftest.py holds only fixtures and the marker guard.

Import from here (`from .support import event, tid, Daemon`) or from a topical module:
support.sessions (events, track ids, times near now), support.service (in-process server,
configs, metrics), support.procs (CLI runs, daemon child processes), support.browser,
support.replicas, support.jetstream. A test module never imports another test module; what two
of them share moves here. Benches and scripts never import tests/: what they share with the
tests lives in bench/ (ports, the NATS cluster, Chromium), which the tests import.
"""

from bench.ports import free_port

from .procs import Daemon, run_cli, stop_gracefully
from .service import REPO, make_config, metric, post_and_fold, serve
from .sessions import day, event, iso, recent, session, tid

__all__ = [
    "REPO",
    "Daemon",
    "day",
    "event",
    "free_port",
    "iso",
    "make_config",
    "metric",
    "post_and_fold",
    "recent",
    "run_cli",
    "serve",
    "session",
    "stop_gracefully",
    "tid",
]
