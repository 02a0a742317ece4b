"""The soak's report: per-route figures, the timeline, snapshots, memory, fold lag and the
correctness verdict (printed, optionally written as JSON); exit status 1 on a failure."""

from __future__ import annotations

import argparse
import array
import math
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from .load import Soak
from .probes import log_time, server_quantiles, server_requests
from .world import EVENT, EVENTS, NEIGHBORS, RANK, READYZ, ROUTES


def pct(values: list[float] | array.array, q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))]


def lat_summary(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    n = len(s)
    if not n:
        return {"count": 0, "p50": math.nan, "p99": math.nan, "max": math.nan}
    return {
        "count": n,
        "p50": s[n // 2] * 1e3,
        "p99": s[min(n - 1, int(n * 0.99))] * 1e3,
        "max": s[-1] * 1e3,
    }


def fmt_ms(x: float) -> str:
    return "-" if x != x else (f"{x:.1f}" if x >= 10 else f"{x:.2f}")


def status_str(c: Counter) -> str:
    return " ".join(f"{k}:{v}" for k, v in sorted(c.items(), key=lambda kv: str(kv[0]))) or "-"


def slope_mb_per_h(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return math.nan
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    var = sum((p[0] - mx) ** 2 for p in points)
    if not var:
        return math.nan
    return sum((p[0] - mx) * (p[1] - my) for p in points) / var * 3600


def report(
    soak: Soak,
    args: argparse.Namespace,
    end: dict[str, Any],
    shutdown: dict[str, Any],
    entries: list[dict[str, Any]],
    alerts: list[str],
    check: dict[str, Any],
    db_mb: float,
    window: float,
    started: float,
) -> None:
    """Print every section (and write them as JSON with --json); exit 1 on any failure."""
    load_s = end["load_s"]
    out: dict[str, Any] = {"args": vars(args), "load_s": load_s}
    print()
    print(
        f"== gravityd soak: {load_s:.0f} s of load, catalogue {args.tracks:,} tracks,"
        f" snapshot interval {args.snapshot_interval:g} s, session timeout"
        f" {args.session_timeout:g} s, synchronous={args.synchronous} =="
    )
    routes_table(soak, load_s, out)
    srv_5xx = server_view(soak, end, out)
    snap_rows = snapshot_rows(soak, entries, load_s)
    timeline(soak, load_s, window, snap_rows, out)
    during_snapshots(soak, snap_rows, out)
    snapshots(soak, end, snap_rows, out)
    memory(soak, load_s, out)
    fold_and_shutdown(soak, load_s, end, shutdown, alerts, db_mb, out)
    failures = verdict(soak, check, srv_5xx, out)
    out["total_s"] = time.perf_counter() - started
    print(
        (
            "CORRECTNESS: OK (lost 0, duplicated 0, no 5xx)"
            if not failures
            else "CORRECTNESS: FAILED: " + "; ".join(failures)
        )
        + f"; total {out['total_s']:.0f} s"
    )
    if args.json:
        Path(args.json).write_bytes(
            orjson.dumps(out, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str)
        )
    if failures:
        sys.exit(1)


def routes_table(soak: Soak, load_s: float, out: dict[str, Any]) -> None:
    """Per route: count, rates, latency percentiles, statuses; then the client itself."""
    print(
        f"{'route':<22}{'count':>9}{'req/s':>9}{'events/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'max ms':>9}  status counts"
    )
    routes: dict[str, Any] = {}
    in_load = {}
    for r in ROUTES:
        lat = soak.lat[r]
        if not lat:
            continue
        s = lat_summary(lat)
        in_load[r] = sum(1 for t in soak.start[r] if t <= load_s)
        rps = in_load[r] / load_s
        ev = soak.events_acked.get(r, 0) / load_s if r in (EVENTS, EVENT) else math.nan
        if r in (EVENTS, EVENT):
            ev = (soak.events_acked.get(r, 0) + soak.events_acked.get(r + " retry", 0)) / load_s
        codes = {str(k): v for k, v in soak.status[r].items()}
        routes[r] = {**s, "rps": rps, "events_s": ev, "status": codes}
        evs = f"{ev:>10,.0f}" if ev == ev else f"{'':>10}"
        print(
            f"{r:<22}{s['count']:>9,}{rps:>9.1f}{evs}{fmt_ms(s['p50']):>9}{fmt_ms(s['p99']):>9}"
            f"{fmt_ms(s['max']):>9}  {status_str(soak.status[r])}"
        )
    out["routes"] = routes
    behind = dict(soak.behind)
    lag = lat_summary(soak.loop_lag)
    samples = soak.samples
    if len(samples) >= 2:
        a, b = samples[0], samples[-1]
        dt = b["t"] - a["t"] or 1
        cpu_d = (b["cpu_s"] - a["cpu_s"]) / dt
        cpu_c = (b["client_cpu_s"] - a["client_cpu_s"]) / dt
    else:
        cpu_d = cpu_c = math.nan
    print(
        f"client: loop lag p99 {fmt_ms(lag['p99'])} ms max {fmt_ms(lag['max'])} ms;"
        f" CPU daemon {cpu_d:.0%} client {cpu_c:.0%} of one core;"
        f" slots missed/dropped by the load generator {behind or 0}"
    )
    total_acked = sum(soak.events_acked.values())
    dc = soak.dup_checks
    print(
        f"events acknowledged {total_acked:,} ({total_acked / load_s:,.0f}/s);"
        f" duplicate deliveries answered right: batches {dc['batch_ok']}"
        f"/{dc['batch_ok'] + dc['batch_wrong']}, single"
        f" {dc['single_ok']}/{dc['single_ok'] + dc['single_wrong']}"
    )
    out["client"] = {
        "loop_lag_ms": lag,
        "cpu_daemon": cpu_d,
        "cpu_client": cpu_c,
        "behind": behind,
        "acked": total_acked,
        "dup_checks": dict(soak.dup_checks),
    }


def server_view(soak: Soak, end: dict[str, Any], out: dict[str, Any]) -> dict[str, dict[str, int]]:
    """The daemon's own counts and latency histogram; returns its 5xx by route (the verdict's)."""
    srv = server_requests(end.get("metrics") or soak.last_metrics)
    # The starter polls /readyz until it answers 200: a 503 before that is the wait, not a fault.
    srv_5xx = {
        r: {k: v for k, v in c.items() if k.startswith("5") and not (r == READYZ and k == "503")}
        for r, c in srv.items()
    }
    srv_5xx = {r: c for r, c in srv_5xx.items() if c}
    print(
        "server /metrics request counts: "
        + "; ".join(f"{r} {status_str(c)}" for r, c in sorted(srv.items()))
    )
    out["server_requests"] = {r: dict(c) for r, c in srv.items()}
    sq = server_quantiles(end.get("metrics") or soak.last_metrics)
    print(
        "server-side latency, from its histogram (p50 / p99 bucket bounds, ms): "
        + "; ".join(f"{r} {v['p50']:g} / {v['p99']:g}" for r, v in sorted(sq.items()))
    )
    out["server_latency_ms"] = sq
    return srv_5xx


def snapshot_rows(soak: Soak, entries: list[dict[str, Any]], load_s: float) -> list[dict[str, Any]]:
    """Every snapshot the daemon logged, with its end time in the run and why it was taken."""
    snaps_log = [e for e in entries if e.get("msg") == "snapshot written"]
    admin_paths = {s.get("path") for s in soak.snapshots_admin}
    snap_rows = []
    for e in snaps_log:
        t_end = log_time(e) - soak.wall0
        kind = (
            "admin"
            if e.get("path") in admin_paths
            else ("shutdown" if t_end > load_s + 1 else "periodic")
        )
        snap_rows.append(
            {
                "t_end": t_end,
                "seconds": float(e.get("seconds", math.nan)),
                "kind": kind,
                "bytes": e.get("bytes"),
                "edges": e.get("edges"),
                "cursor": e.get("cursor"),
            }
        )
    return snap_rows


def timeline(
    soak: Soak, load_s: float, window: float, snap_rows: list[dict[str, Any]], out: dict[str, Any]
) -> None:
    """The run in windows: latency, rates, RSS, edges, snapshots, the client's own stalls."""
    samples = soak.samples
    print()
    print(
        f"per {window:g} s window (p99 ms; req/s; ev/s from the samples; cli lag: the load"
        " generator's own worst event-loop stall, which inflates the latencies it measures):"
    )
    head = f"{'t s':>6}{'ev/s':>8}{'/events':>9}{'/event':>8}{'nbr/s':>7}{'nbrs':>7}{'nbr max':>8}"
    head += f"{'rank/s':>7}{'rank':>7}{'rankmax':>8}{'RSS MB':>8}{'edges':>9}{'snaps':>6}"
    head += f"{'cli lag':>8}"
    print(head)
    rows = []
    nwin = max(1, round(load_s / window))
    for w in range(nwin):
        lo, hi = w * window, load_s if w == nwin - 1 else (w + 1) * window
        row: dict[str, Any] = {"t": hi}
        for r in (EVENTS, EVENT, NEIGHBORS, RANK):
            vals = [x for t, x in zip(soak.start[r], soak.lat[r], strict=True) if lo <= t < hi]
            row[r] = {"n": len(vals), "p99": pct(vals, 0.99) * 1e3, "max": max(vals or [0]) * 1e3}
        acked = [s for s in samples if lo <= s["t"] <= hi + 1]
        row["rss_mb"] = acked[-1]["rss_mb"] if acked else math.nan
        row["edges"] = acked[-1]["edges"] if acked else None
        row["snaps"] = sum(1 for s in snap_rows if lo <= s["t_end"] < hi)
        lags = [x for t, x in zip(soak.loop_lag_t, soak.loop_lag, strict=True) if lo <= t < hi]
        row["client_lag_max"] = max(lags or [0]) * 1e3
        ev_in = [s for s in samples if s["t"] <= hi + 0.5]
        ev_lo = [s for s in samples if s["t"] <= lo + 0.5]
        row["ev_s"] = (
            (ev_in[-1]["acked"] - (ev_lo[-1]["acked"] if ev_lo else 0))
            / max(1e-9, (ev_in[-1]["t"] - (ev_lo[-1]["t"] if ev_lo else 0)))
            if ev_in
            else math.nan
        )
        rows.append(row)
        span = hi - lo or 1
        print(
            f"{hi:>6.0f}{row['ev_s']:>8,.0f}{fmt_ms(row[EVENTS]['p99']):>9}"
            f"{fmt_ms(row[EVENT]['p99']):>8}{row[NEIGHBORS]['n'] / span:>7.0f}"
            f"{fmt_ms(row[NEIGHBORS]['p99']):>7}{fmt_ms(row[NEIGHBORS]['max']):>8}"
            f"{row[RANK]['n'] / span:>7.1f}{fmt_ms(row[RANK]['p99']):>7}"
            f"{fmt_ms(row[RANK]['max']):>8}{row['rss_mb']:>8.1f}{row['edges'] or 0:>9,}"
            f"{row['snaps']:>6}{fmt_ms(row['client_lag_max']):>8}"
        )
    out["timeline"] = rows


def during_snapshots(soak: Soak, snap_rows: list[dict[str, Any]], out: dict[str, Any]) -> None:
    """Latency of requests started while a snapshot was being written, against the rest."""
    windows = [(r["t_end"] - r["seconds"] - 0.05, r["t_end"] + 0.05) for r in snap_rows]

    def inside(t: float) -> bool:
        return any(a <= t <= b for a, b in windows)

    print()
    print("latency of requests started during a snapshot vs the rest (p50 / p99 / max ms, count):")
    during = {}
    for r in (EVENTS, EVENT, NEIGHBORS, RANK):
        ins, outs = [], []
        for t, x in zip(soak.start[r], soak.lat[r], strict=True):
            (ins if inside(t) else outs).append(x)
        a, b = lat_summary(ins), lat_summary(outs)
        during[r] = {"during": a, "outside": b}
        print(
            f"  {r:<16} during {fmt_ms(a['p50'])} / {fmt_ms(a['p99'])} / {fmt_ms(a['max'])}"
            f" ({a['count']:,})   outside {fmt_ms(b['p50'])} / {fmt_ms(b['p99'])} /"
            f" {fmt_ms(b['max'])} ({b['count']:,})"
        )
    out["during_snapshots"] = during


def snapshots(
    soak: Soak, end: dict[str, Any], snap_rows: list[dict[str, Any]], out: dict[str, Any]
) -> None:
    """Snapshot count and durations, and the error counters of /metrics."""
    print()
    durs = [s["seconds"] for s in snap_rows if s["kind"] != "shutdown"]
    print(
        f"snapshots during the load: {len(durs)} (periodic"
        f" {sum(1 for s in snap_rows if s['kind'] == 'periodic')}, admin"
        f" {sum(1 for s in snap_rows if s['kind'] == 'admin')}); duration min/median/max"
        f" {min(durs or [math.nan]):.3f} / {pct(durs, 0.5):.3f} / {max(durs or [math.nan]):.3f} s"
    )
    for s in snap_rows:
        mb = (s["bytes"] or 0) / 1e6
        print(
            f"  t={s['t_end']:>7.1f} s  {s['kind']:<8} {s['seconds']:.3f} s  {mb:.1f} MB"
            f"  edges {s['edges'] or 0:,}  cursor {s['cursor'] or 0:,}"
        )
    bad_admin = [s for s in soak.snapshots_admin if s["status"] != 200]
    if bad_admin:
        print(f"  admin snapshot requests that failed: {bad_admin}")
    m = end.get("metrics") or soak.last_metrics
    print(
        f"  /metrics: gravityd_snapshot_seconds count"
        f" {m.get('gravityd_snapshot_seconds_count', 0):.0f}"
        f" sum {m.get('gravityd_snapshot_seconds_sum', 0):.2f} s,"
        f" snapshot errors {m.get('gravityd_snapshot_errors_total', 0):.0f},"
        f" fold errors {m.get('gravityd_fold_errors_total', 0):.0f},"
        f" commit errors {m.get('gravityd_commit_errors_total', 0):.0f}"
    )
    out["snapshots"] = snap_rows
    out["admin_snapshots"] = soak.snapshots_admin


def memory(soak: Soak, load_s: float, out: dict[str, Any]) -> None:
    """The samples table and RSS growth after the first third (what a leak would show)."""
    samples = soak.samples
    print()
    print("samples (daemon):")
    print(
        f"{'t s':>7}{'RSS MB':>8}{'threads':>8}{'fds':>5}{'CPU%':>6}{'last_id':>11}{'lag':>8}"
        f"{'edges':>9}{'nodes':>7}{'sessions':>9}{'load1':>7}"
    )
    prev = None
    for s in samples:
        cpu = ((s["cpu_s"] - prev["cpu_s"]) / max(1e-9, s["t"] - prev["t"])) if prev else math.nan
        prev = s
        print(
            f"{s['t']:>7.0f}{s['rss_mb']:>8.1f}{s['threads']:>8}{s['fds']:>5}"
            f"{cpu * 100:>6.0f}{s['last_id'] or 0:>11,}{s.get('lag', 0):>8,}"
            f"{s['edges'] or 0:>9,}{s['nodes'] or 0:>7,}{int(s['sessions'] or 0):>9,}"
            f"{s['load1']:>7.2f}"
        )
    out["samples"] = samples
    rss_growth: dict[str, Any] = {}
    during_load = [s for s in samples if s["t"] <= load_s + 1]
    if during_load:
        first, last = during_load[0], during_load[-1]
        base = next((s for s in during_load if s["t"] >= load_s / 3), last)
        edges_final = last["edges"] or 0
        plateau = next(
            (s["t"] for s in during_load if (s["edges"] or 0) >= 0.98 * edges_final), math.nan
        )
        after = [(s["t"], s["rss_mb"]) for s in during_load if s["t"] >= base["t"]]
        rss_growth = {
            "start_mb": first["rss_mb"],
            "end_mb": last["rss_mb"],
            "max_mb": max(s["rss_mb"] for s in samples),
            "hwm_mb": samples[-1]["hwm_mb"],
            "base_t": base["t"],
            "base_mb": base["rss_mb"],
            "growth_mb": last["rss_mb"] - base["rss_mb"],
            "slope_mb_per_h": slope_mb_per_h(after),
            "edges_plateau_t": plateau,
            "edges_end": edges_final,
            "sessions_end": last["sessions"],
            "edges_growth": (last["edges"] or 0) - (base["edges"] or 0),
        }
        edge_mb = rss_growth["edges_growth"] * 300 / 1e6
        print(
            f"RSS: start {first['rss_mb']:.1f} MB, end {last['rss_mb']:.1f} MB, max"
            f" {rss_growth['max_mb']:.1f} MB (VmHWM {rss_growth['hwm_mb']:.1f} MB); from"
            f" t={base['t']:.0f} s ({base['rss_mb']:.1f} MB) to the end: growth"
            f" {rss_growth['growth_mb']:+.1f} MB, fit slope {rss_growth['slope_mb_per_h']:+.1f}"
            f" MB/h; edges reached 98 % of their final {edges_final:,} at t={plateau:.0f} s and"
            f" grew {rss_growth['edges_growth']:+,} over the same span (~{edge_mb:.1f} MB at the"
            f" docs/performance.md's 300 B/edge), open sessions {base['sessions'] or 0:,.0f} ->"
            f" {last['sessions'] or 0:,.0f}"
        )
    out["rss"] = rss_growth


def fold_and_shutdown(
    soak: Soak,
    load_s: float,
    end: dict[str, Any],
    shutdown: dict[str, Any],
    alerts: list[str],
    db_mb: float,
    out: dict[str, Any],
) -> None:
    """Fold lag over the run and at its end, the graceful stop, the daemon's warnings."""
    during_load = [s for s in soak.samples if s["t"] <= load_s + 1]
    lags = [s.get("lag", 0) for s in during_load]
    before = end.get("before_fold", {})
    fold = end.get("fold", {})
    end_lag = (before.get("last_id", 0) or 0) - (before.get("cursor", 0) or 0)
    print(
        f"fold lag: max {max(lags or [0]):,} events over the samples; at the end of the load"
        f" {end_lag:,} events; POST /admin/fold -> {end.get('fold_status')} cursor"
        f" {fold.get('cursor', 0):,} in {end.get('fold_client_s', math.nan) * 1e3:.1f} ms"
        f" (last_id {fold.get('last_id', 0):,})"
    )
    killed = " (killed after the wait)" if shutdown.get("killed") else ""
    print(
        f"daemon stopped (SIGTERM) in {shutdown.get('seconds', math.nan):.2f} s, exit code"
        f" {shutdown.get('returncode')}{killed};"
        f" log + WAL {db_mb:.0f} MB; {len(alerts)} daemon log lines at warning or above"
    )
    for line in alerts[:10]:
        print("  | " + line[:300])
    out["fold"] = {
        "end_lag": end_lag,
        "max_lag": max(lags or [0]),
        "fold": fold,
        "fold_status": end.get("fold_status"),
    }
    out["shutdown"] = shutdown
    out["daemon_alerts"] = alerts[:100]


def verdict(
    soak: Soak, check: dict[str, Any], srv_5xx: dict[str, dict[str, int]], out: dict[str, Any]
) -> list[str]:
    """The log check and every failure found; returns the failures (exit status 1 if any)."""
    print()
    if check:
        print(
            f"log check: {check['rows']:,} rows; acknowledged {check['acked']:,}, present once"
            f" {check['acked_present_once']:,}; lost {check['lost']}, duplicated"
            f" {check['duplicated']}; failed requests' events present {check['unknown_present']}"
            f" / absent {check['unknown_absent']}; rejected present {check['rejected_present']};"
            f" never-sent present {check['never_sent_present']}; foreign rows"
            f" {check['foreign_rows']}; single-event id mismatches {check['single_id_mismatch']}"
        )
    out["check"] = check
    client_5xx = {
        r: {str(k): v for k, v in c.items() if isinstance(k, int) and k >= 500}
        for r, c in soak.status.items()
    }
    client_5xx = {r: c for r, c in client_5xx.items() if c}
    failures = []
    if not check:
        failures.append("no log to check")
    else:
        for key in (
            "lost",
            "duplicated",
            "rejected_present",
            "never_sent_present",
            "foreign_rows",
            "single_id_mismatch",
        ):
            if check[key]:
                failures.append(f"{key} {check[key]}")
    if client_5xx:
        failures.append(f"5xx answers {client_5xx}")
    if srv_5xx:
        failures.append(f"5xx in /metrics {srv_5xx}")
    if soak.daemon_died:
        failures.append("the daemon died during the run")
    if soak.dup_checks["batch_wrong"] or soak.dup_checks["single_wrong"]:
        failures.append(f"duplicate deliveries answered wrong {dict(soak.dup_checks)}")
    out["failures"] = failures
    return failures
