"""Scoreboard benchmark: what the radio's scoreboard adds to the fold, and what a report costs.

1. Generate a log (default 1M events, bench.common.gen_events: interleaved radio sessions, 60%
   of tracks entered by radio_next, each pick given one of three arms by its session) and fold
   it in batches of 2000 twice in the same run: through GravityGraph.fold (the ceiling: the
   fold the daemon runs anyway) and through Scoreboard.fold. The figure is the scoreboard's
   share of the two together: what feeding it costs the daemon's fold.
2. A scoreboard filled to its bounds at the default settings (100 arms, every hour of the hour
   horizon and every day of the day horizon holding a verdict): GET /radio/report's core,
   Scoreboard.report, for day and hour buckets over everything kept: the median of 20 runs
   beside a 50 ms target, and of its longest step (the daemon serves other requests between
   steps) beside 5 ms; and the size of its snapshot records.

    python -m bench.scoreboard          # full run (well under a minute)
    python -m bench.scoreboard --smoke  # tiny sizes, a few seconds
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import zlib

import msgpack

from bench.common import gen_events
from gravityd.core.events import FoldEvent
from gravityd.core.graph import GravityGraph
from gravityd.core.scoreboard import DAY, HOUR, ReportParams, Scoreboard, snapshot_records

BATCH = 2000
ARMS = ("radio:control", "radio:gravity", "radio:embedding")
REPORT_TARGET_S = 0.050
STEP_TARGET_S = 0.005  # a step holds every other request: no longer than a fold slice


def with_arms(events: list[FoldEvent]) -> list[FoldEvent]:
    """radio_next events get an arm by their session (as a radio assigns them)."""
    out = []
    for ev in events:
        if ev.event_type == "radio_next":
            ev = ev._replace(context=ARMS[zlib.crc32(ev.session_id.encode()) % len(ARMS)])
        out.append(ev)
    return out


def fold_rate(target: object, events: list[FoldEvent]) -> float:
    fold = target.fold  # type: ignore[attr-defined]
    started = time.perf_counter()
    for i in range(0, len(events), BATCH):
        fold(events[i : i + BATCH])
    return len(events) / (time.perf_counter() - started)


def full_scoreboard(params: ReportParams, arms: int) -> tuple[Scoreboard, float]:
    """Every (arm, bucket) the bounds allow holds one kept pick: the largest state there is."""
    end = float(int(time.time()) // DAY * DAY)
    first_day = end - params.report_day_horizon_days * DAY
    hour_from = end - params.report_hour_horizon_days * DAY
    times = [
        first_day + d * DAY
        for d in range(params.report_day_horizon_days - params.report_hour_horizon_days)
    ]
    times += [hour_from + h * HOUR for h in range(24 * (params.report_hour_horizon_days + 1))]
    events = []
    eid = 1
    for t in times:
        for a in range(arms):
            sid = f"s{eid}"
            events.append(FoldEvent(eid, sid, "T", "radio_next", t, None, f"radio:arm-{a}"))
            events.append(FoldEvent(eid + 1, sid, "T", "play_10s", t + 10, None, None))
            eid += 2
    sb = Scoreboard(params)
    sb.fold(events)
    return sb, end + DAY


def timed_report(sb: Scoreboard, until: float, bucket: str, runs: int) -> tuple[float, float]:
    """Median total time of a report, and the median of its longest step (what the daemon's
    event loop waits for at most: it serves other requests between steps)."""
    totals, longest = [], []
    for _ in range(runs):
        steps = sb.report_steps(0, until, bucket)
        worst = 0.0
        started = time.perf_counter()
        while True:
            at = time.perf_counter()
            try:
                next(steps)
            except StopIteration:
                worst = max(worst, time.perf_counter() - at)
                break
            worst = max(worst, time.perf_counter() - at)
        totals.append(time.perf_counter() - started)
        longest.append(worst)
    return statistics.median(totals), statistics.median(longest)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--tracks", type=int, default=100_000)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    args = ap.parse_args()
    n, tracks, arms = (args.events, args.tracks, 100) if not args.smoke else (20_000, 2_000, 10)

    events = with_arms(gen_events(n, tracks))
    picks = sum(1 for e in events if e.event_type == "radio_next")
    graph_rate = fold_rate(GravityGraph(), events)
    sb = Scoreboard()
    board_rate = fold_rate(sb, events)
    share = graph_rate / (graph_rate + board_rate)
    rep = sb.report(0, 4e9)
    counted = sum(a["transitions"] + a["unresolved"] for a in rep["arms"]) + rep["pending"]
    print(f"log: {len(events):,} events, {picks:,} radio picks; {counted:,} counted or open")
    print(
        f"fold: scoreboard {board_rate:,.0f} events/s beside the graph's fold "
        f"{graph_rate:,.0f} events/s (ceiling): the scoreboard takes {share:.1%} of the two "
        f"(ratio graph/scoreboard {graph_rate / board_rate:.2f})"
    )

    del events, sb
    params = ReportParams(report_max_arms=max(arms, 1))
    full, until = full_scoreboard(params, arms)
    gc.collect()
    gc.freeze()  # as the daemon does with long-lived state: no full collection walks it
    buckets = sum(len(b) for b in full.hours.values()) + sum(len(b) for b in full.days.values())
    for bucket in ("day", "hour"):
        total, step = timed_report(full, until, bucket, 20)
        print(
            f"report ({bucket}, {arms} arms, {buckets:,} buckets, everything kept): "
            f"p50 {total * 1000:.1f} ms in all (target {REPORT_TARGET_S * 1000:.0f} ms: ratio "
            f"{total / REPORT_TARGET_S:.2f}); longest step, the loop's wait: "
            f"{step * 1000:.1f} ms (target {STEP_TARGET_S * 1000:.0f} ms: ratio "
            f"{step / STEP_TARGET_S:.2f})"
        )
    packed = sum(len(msgpack.packb(r, use_bin_type=True)) for r in snapshot_records(full))
    print(f"snapshot records of that scoreboard: {packed / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
