"""What the daemon shows of itself during the soak: /proc figures, /metrics samples, its log."""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson


def parse_metrics(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        key, _, value = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            out[key] = float(value)
    return out


_LABELS = re.compile(r'(\w+)="([^"]*)"')


def server_requests(metrics: dict[str, float]) -> dict[str, Counter]:
    """gravityd_request_seconds_count by route: {route: Counter(status: count)}."""
    out: dict[str, Counter] = {}
    for key, value in metrics.items():
        if key.startswith("gravityd_request_seconds_count{"):
            labels = dict(_LABELS.findall(key))
            route = f"{labels.get('method')} {labels.get('route')}"
            out.setdefault(route, Counter())[labels.get("status", "?")] += int(value)
    return out


def server_quantiles(metrics: dict[str, float], qs: tuple[float, ...] = (0.5, 0.99)) -> dict:
    """Server-side latency by route from gravityd_request_seconds buckets (all statuses): the
    upper bound (ms) of the bucket holding each quantile; time spent inside the daemon only."""
    buckets: dict[str, Counter] = {}
    for key, value in metrics.items():
        if key.startswith("gravityd_request_seconds_bucket{"):
            labels = dict(_LABELS.findall(key))
            route = f"{labels.get('method')} {labels.get('route')}"
            le = labels.get("le", "+Inf")
            buckets.setdefault(route, Counter())[float(le)] += value
    out = {}
    for route, cum in buckets.items():
        bounds = sorted(cum)
        total = cum[bounds[-1]] if bounds else 0
        if not total:
            continue
        out[route] = {
            f"p{q * 100:g}": next(b for b in bounds if cum[b] >= q * total) * 1e3 for q in qs
        }
    return out


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS/VmHWM (kB) and Threads of a process, from /proc/PID/status."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[key] = int(rest.split()[0])
    return out


def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


@contextlib.contextmanager
def child_stderr_to(path: Path) -> Iterator[None]:
    """While inside, fd 2 is the file: a child started here inherits it (its log goes there)."""
    sys.stderr.flush()
    saved = os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)


def read_daemon_log(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The daemon's JSON log lines, and the lines at warning level or above (or not JSON)."""
    entries, alerts = [], []
    with contextlib.suppress(OSError), open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                alerts.append(line)
                continue
            if not isinstance(obj, dict):
                alerts.append(line)
                continue
            entries.append(obj)
            if obj.get("level") not in ("info", "debug"):
                alerts.append(line)
    return entries, alerts


def log_time(entry: dict[str, Any]) -> float:
    ts = str(entry.get("ts", ""))
    try:
        return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return math.nan
