"""The radio's scoreboard as a pure state: verdict rules, buckets, horizons, statistics, state."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gravityd.core.events import EventError, FoldEvent
from gravityd.core.scoreboard import (
    ReportParams,
    Scoreboard,
    compare,
    from_snapshot_parts,
    parse_report_query,
    snapshot_records,
    wilson,
)

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC).timestamp()
DAY = 86400.0


class Log:
    """Hand-made sessions as fold rows, ids in log order."""

    def __init__(self) -> None:
        self.rows: list[FoldEvent] = []

    def add(
        self,
        sid: str,
        track: str,
        kind: str,
        t: float,
        elapsed: int | None = None,
        context: str | None = None,
    ) -> Log:
        self.rows.append(FoldEvent(len(self.rows) + 1, sid, track, kind, t, elapsed, context))
        return self

    def pick(self, sid: str, track: str, t: float, arm: str | None = "radio:gravity") -> Log:
        return self.add(sid, track, "radio_next", t, context=arm)


def board(log: Log, params: ReportParams | None = None) -> Scoreboard:
    sb = Scoreboard(params)
    sb.fold(log.rows)
    return sb


def arm_row(report: dict[str, Any], context: str | None) -> dict[str, Any]:
    return next(a for a in report["arms"] if a["context"] == context)


def everything(sb: Scoreboard, bucket: str = "day", arms: Any = None) -> dict[str, Any]:
    return sb.report(T0 - 30 * DAY, T0 + 30 * DAY, bucket, arms)


# ------------------------------------------------------------------------- verdict rules


def test_early_skip_is_skipped_and_play_10s_is_kept() -> None:
    log = Log().add("s", "A", "play_start", T0)
    log.pick("s", "B", T0 + 1).add("s", "B", "play_start", T0 + 2)
    log.add("s", "B", "skip", T0 + 5, elapsed=2500)
    log.pick("s", "C", T0 + 6).add("s", "C", "play_10s", T0 + 16)
    log.pick("s", "D", T0 + 200).add("s", "D", "like", T0 + 205)
    row = arm_row(everything(board(log)), "radio:gravity")
    assert (row["skipped"], row["kept"], row["transitions"]) == (1, 2, 3)
    assert row["skip_rate"] == pytest.approx(1 / 3)


def test_skip_after_play_10s_does_not_count_as_skipped() -> None:
    log = Log().pick("s", "B", T0).add("s", "B", "play_10s", T0 + 10)
    log.add("s", "B", "skip", T0 + 12, elapsed=12000)
    row = arm_row(everything(board(log)), "radio:gravity")
    assert (row["skipped"], row["kept"]) == (0, 1)


def test_a_skip_at_45_s_is_not_early() -> None:
    log = Log().pick("s", "B", T0).add("s", "B", "skip", T0 + 45, elapsed=45000)
    # the threshold itself is not early either: "below report_skip_ms"
    log.pick("t", "B", T0).add("t", "B", "skip", T0 + 30, elapsed=30000)
    sb = board(log)
    assert everything(sb)["arms"] == []  # no verdict yet: nothing counted
    assert sb.pending_count == 2
    # a late skip is no verdict, so a play_10s after it still keeps the track
    log.add("s", "B", "play_10s", T0 + 46)
    row = arm_row(everything(board(log)), "radio:gravity")
    assert (row["skipped"], row["kept"]) == (0, 1)


def test_the_skip_threshold_is_a_setting() -> None:
    log = Log().pick("s", "B", T0).add("s", "B", "skip", T0 + 45, elapsed=45000)
    row = arm_row(everything(board(log, ReportParams(report_skip_ms=60000))), "radio:gravity")
    assert row["skipped"] == 1


def test_a_skip_without_elapsed_ms_is_early() -> None:
    log = Log().pick("s", "B", T0).add("s", "B", "skip", T0 + 3)
    assert arm_row(everything(board(log)), "radio:gravity")["skipped"] == 1


def test_a_session_with_no_verdict_is_unresolved() -> None:
    log = Log().pick("s", "B", T0).add("s", "B", "play_start", T0 + 1)
    sb = board(log)
    assert everything(sb)["arms"] == [] and everything(sb)["pending"] == 1
    # another session moves the log clock past the pending timeout: s is dropped, unresolved
    log.pick("other", "X", T0 + 1801 + 3600)
    sb = board(log)
    row = arm_row(everything(sb), "radio:gravity")
    assert (row["transitions"], row["skipped"], row["kept"], row["unresolved"]) == (0, 0, 0, 1)
    assert row["skip_rate"] is None and row["ci95"] is None
    assert "s" not in sb.sessions


def test_a_verdict_after_the_session_fell_silent_counts_nothing() -> None:
    log = Log().pick("s", "B", T0).add("s", "B", "play_10s", T0 + 1801)
    row = arm_row(everything(board(log)), "radio:gravity")
    assert (row["kept"], row["unresolved"]) == (0, 1)


def test_plays_outside_the_radio_are_not_transitions() -> None:
    log = Log().add("s", "A", "play_start", T0).add("s", "A", "play_10s", T0 + 10)
    log.add("s", "B", "play_start", T0 + 200).add("s", "B", "skip", T0 + 201, elapsed=1000)
    sb = board(log)
    assert everything(sb)["arms"] == [] and sb.sessions == {}


def test_verdicts_are_per_session_and_per_track() -> None:
    log = Log().pick("s", "B", T0).pick("t", "B", T0)
    log.add("t", "B", "skip", T0 + 2, elapsed=2000)  # t's skip is not s's
    log.add("s", "C", "play_10s", T0 + 3)  # a verdict on a track s was never given
    sb = board(log)
    row = arm_row(everything(sb), "radio:gravity")
    assert (row["skipped"], row["kept"]) == (1, 0)
    assert sb.pending_count == 1


def test_a_late_verdict_on_an_earlier_pick_still_counts() -> None:
    log = Log().pick("s", "B", T0).pick("s", "C", T0 + 1)
    log.add("s", "C", "skip", T0 + 2, elapsed=500).add("s", "B", "play_10s", T0 + 3)
    row = arm_row(everything(board(log)), "radio:gravity")
    assert (row["skipped"], row["kept"]) == (1, 1)


def test_a_repeated_radio_next_is_the_same_transition() -> None:
    log = Log().pick("s", "B", T0).pick("s", "B", T0 + 1)  # a retry without event_id
    log.add("s", "B", "play_10s", T0 + 11).pick("s", "B", T0 + 12)  # still on B
    log.add("s", "B", "play_10s", T0 + 13)
    sb = board(log)
    row = arm_row(everything(sb), "radio:gravity")
    assert (row["kept"], row["transitions"]) == (1, 1)
    assert sb.pending_count == 0
    # once the session moved on, the radio picking B again is a new transition
    log.pick("s", "C", T0 + 200).pick("s", "B", T0 + 400)
    log.add("s", "B", "skip", T0 + 401, elapsed=100)
    row = arm_row(everything(board(log)), "radio:gravity")
    assert (row["kept"], row["skipped"]) == (1, 1)


def test_open_picks_per_session_are_bounded() -> None:
    log = Log()
    for i in range(5):
        log.pick("s", f"T{i}", T0 + i)
    sb = board(log, ReportParams(report_pending_per_session=3))
    assert sb.pending_count == 3
    assert arm_row(everything(sb), "radio:gravity")["unresolved"] == 2


def test_arms_by_context() -> None:
    log = Log()
    for i in range(4):
        log.pick(f"g{i}", "B", T0, "radio:gravity")
        log.add(f"g{i}", "B", "skip" if i == 0 else "play_10s", T0 + 5, elapsed=1000)
        log.pick(f"c{i}", "B", T0, "radio:control")
        log.add(f"c{i}", "B", "skip" if i < 3 else "play_10s", T0 + 5, elapsed=1000)
    log.pick("n", "B", T0, None).add("n", "B", "skip", T0 + 1, elapsed=10)
    rep = everything(board(log))
    assert [a["context"] for a in rep["arms"]] == [None, "radio:control", "radio:gravity"]
    assert "comparison" not in rep  # three arms: no comparison
    g, c, n = (arm_row(rep, x) for x in ("radio:gravity", "radio:control", None))
    assert (g["skipped"], g["kept"], c["skipped"], c["kept"], n["skipped"]) == (1, 3, 3, 1, 1)
    two = everything(board(log), arms=["radio:control", "radio:gravity"])
    cmp = two["comparison"]
    assert (cmp["a"], cmp["b"]) == ("radio:control", "radio:gravity")
    assert cmp["difference"] == pytest.approx(0.25 - 0.75)
    swapped = everything(board(log), arms=["radio:gravity", "radio:control"])["comparison"]
    assert swapped["difference"] == pytest.approx(0.5)
    # an arm asked for that has no data is listed with zeros, and compares to nothing
    empty = everything(board(log), arms=["radio:gravity", "radio:new"])
    assert arm_row(empty, "radio:new")["transitions"] == 0
    assert empty["comparison"]["p_value"] is None


def test_buckets_by_event_time_not_log_order() -> None:
    log = Log()
    # posted first but played the next day; a pick at 10:59:58 judged at 11:00:05 stays at 10:00
    log.pick("late", "B", T0 + DAY + 7200).add("late", "B", "play_10s", T0 + DAY + 7210)
    log.pick("s", "B", T0 + 3598).add("s", "B", "skip", T0 + 3605, elapsed=7000)
    log.pick("t", "C", T0 + 3601).add("t", "C", "play_10s", T0 + 3611)
    sb = board(log)
    hours = arm_row(everything(sb, "hour"), "radio:gravity")["series"]
    assert [(p["start"], p["skipped"], p["kept"]) for p in hours] == [
        ("2026-11-24T10:00:00Z", 1, 0),
        ("2026-11-24T11:00:00Z", 0, 1),
        ("2026-11-25T12:00:00Z", 0, 1),
    ]
    days = arm_row(everything(sb, "day"), "radio:gravity")["series"]
    assert [(p["start"], p["skipped"], p["kept"]) for p in days] == [
        ("2026-11-24T00:00:00Z", 1, 1),
        ("2026-11-25T00:00:00Z", 0, 1),
    ]
    # since rounds down to its bucket; until is exclusive
    rep = sb.report(T0 + 3600 + 60, T0 + DAY, "hour")
    assert rep["since"] == "2026-11-24T11:00:00Z"
    assert [p["start"] for p in rep["arms"][0]["series"]] == ["2026-11-24T11:00:00Z"]


# ------------------------------------------------------------------------- horizons


def test_old_hours_merge_into_days_and_old_days_are_dropped() -> None:
    params = ReportParams(report_hour_horizon_days=1, report_day_horizon_days=3)
    log = Log()
    for d in range(6):  # one skipped and one kept pick at 10:00 and 15:00 of six days
        for h, kind in ((0, "skip"), (5 * 3600, "play_10s")):
            t = T0 + d * DAY + h
            log.pick(f"s{d}{h}", "B", t).add(f"s{d}{h}", "B", kind, t + 1, elapsed=100)
    sb = board(log, params)
    # the clock is on day 5: hours kept for day 4 and day 5, days 2 and 3 merged, 0 and 1 gone
    assert sorted(sb.hours["radio:gravity"]) == [
        T0 + d * DAY + h for d in (4, 5) for h in (0, 5 * 3600)
    ]
    day_start = T0 - 10 * 3600
    assert sorted(sb.days["radio:gravity"]) == [day_start + 2 * DAY, day_start + 3 * DAY]
    days = arm_row(everything(sb), "radio:gravity")
    assert [p["start"][:10] for p in days["series"]] == [
        "2026-11-26",
        "2026-11-27",
        "2026-11-28",
        "2026-11-29",
    ]
    assert (days["skipped"], days["kept"]) == (4, 4)
    hours = arm_row(everything(sb, "hour"), "radio:gravity")["series"]
    assert [p.get("span") for p in hours] == ["day", "day", None, None, None, None]
    # a verdict on a pick older than everything kept is counted nowhere
    log.pick("old", "B", T0).add("old", "B", "play_10s", T0 + 10)
    sb = board(log, params)
    assert arm_row(everything(sb), "radio:gravity")["kept"] == 4
    assert sb.expired == [2, 3, 0]  # days 0 and 1 dropped (2 + 2), and the late one


def test_arms_beyond_the_cap_count_as_overflow() -> None:
    log = Log()
    for i in range(5):
        log.pick(f"s{i}", "B", T0, f"radio:{i}").add(f"s{i}", "B", "play_10s", T0 + 10)
    sb = board(log, ReportParams(report_max_arms=3))
    rep = everything(sb)
    assert [a["context"] for a in rep["arms"]] == ["radio:0", "radio:1", "radio:2"]
    assert rep["overflow"] == {"skipped": 0, "kept": 2, "unresolved": 0}


def test_idle_sessions_are_forgotten() -> None:
    log = Log()
    for i in range(50):
        log.pick(f"s{i}", "B", T0 + i).add(f"s{i}", "B", "play_10s", T0 + i + 10)
    assert len(board(log).sessions) == 50
    log.pick("later", "C", T0 + 4 * 3600)
    assert list(board(log).sessions) == ["later"]


# ------------------------------------------------------------------------- statistics


def test_wilson_interval_against_published_values() -> None:
    # Newcombe (1998), Statistics in Medicine 17:857, table I, method 3 (Wilson score)
    lo, hi = wilson(81, 263)
    assert (round(lo, 4), round(hi, 4)) == (0.2553, 0.3662)
    lo, hi = wilson(15, 148)
    assert (round(lo, 4), round(hi, 4)) == (0.0624, 0.1605)
    lo, hi = wilson(0, 20)
    assert (round(lo, 4), round(hi, 4)) == (0.0, 0.1611)
    lo, hi = wilson(1, 29)
    assert (round(lo, 4), round(hi, 4)) == (0.0061, 0.1718)
    assert wilson(0, 0) is None


def test_two_proportion_comparison_against_a_hand_computation() -> None:
    # a: 30 skips of 100, b: 20 of 100. Pooled p = 0.25, se0 = sqrt(.25 * .75 * .02) = 0.061237,
    # z = -0.1 / 0.061237 = -1.63299, two-sided p = 2 * (1 - Phi(1.63299)) = 0.10247.
    # Unpooled se = sqrt(.3 * .7 / 100 + .2 * .8 / 100) = 0.060828: -0.1 +- 1.96 * 0.060828.
    diff, (lo, hi), p = compare(30, 100, 20, 100)
    assert diff == pytest.approx(-0.1)
    assert (round(lo, 4), round(hi, 4)) == (-0.2192, 0.0192)
    assert round(p, 4) == 0.1025
    # same rates: no evidence of a difference
    assert compare(10, 50, 20, 100)[2] == pytest.approx(1.0)
    # both arms all skipped: the rates cannot differ
    assert compare(5, 5, 7, 7) == (0.0, (0.0, 0.0), 1.0)
    assert compare(0, 0, 1, 2) is None
    # a large sample of a real difference is very significant
    assert compare(600, 1200, 300, 1200)[2] < 1e-12


def test_the_report_carries_the_statistics() -> None:
    log = Log()
    for i in range(263):
        log.pick(f"a{i}", "B", T0, "radio:a")
        log.add(f"a{i}", "B", "skip" if i < 81 else "play_10s", T0 + 5, elapsed=100)
    for i in range(148):
        log.pick(f"b{i}", "B", T0, "radio:b")
        log.add(f"b{i}", "B", "skip" if i < 15 else "play_10s", T0 + 5, elapsed=100)
    rep = everything(board(log))
    a, b = rep["arms"]
    assert [round(x, 4) for x in a["ci95"]] == [0.2553, 0.3662]
    assert [round(x, 4) for x in b["ci95"]] == [0.0624, 0.1605]
    diff, ci, p = compare(81, 263, 15, 148)
    assert rep["comparison"] == {
        "a": "radio:a",
        "b": "radio:b",
        "difference": diff,
        "ci95": list(ci),
        "p_value": p,
    }
    assert diff == pytest.approx(15 / 148 - 81 / 263)


# ------------------------------------------------------------------------- the query


def test_query_parsing_names_the_field() -> None:
    p = ReportParams()
    now = T0
    q = parse_report_query({}, now, p)
    assert (q.until, q.bucket, q.arms) == (now, "day", None)
    assert q.since == T0 - 10 * 3600 - 400 * DAY
    q = parse_report_query({"bucket": "hour", "arms": "radio:a,null"}, now, p)
    assert q.arms == ("radio:a", None) and q.since == T0 - 10 * 3600 - 7 * DAY
    q = parse_report_query({"since": "2026-11-01", "until": "2026-11-02T00:00:00+01:00"}, now, p)
    assert q.until - q.since == 23 * 3600
    bad = [
        ({"bucket": "week"}, "bucket"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-13-01T00:00:00Z"}, "since"),
        ({"until": ""}, "until"),
        ({"until": "99999-01-01T00:00:00Z"}, "until"),
        ({"since": "2026-11-02", "until": "2026-11-01"}, "until"),
        ({"arms": ""}, "arms"),
        ({"arms": "a,,b"}, "arms"),
        ({"arms": "a,a"}, "arms"),
        ({"arms": "x" * 65}, "arms"),
    ]
    for query, field in bad:
        with pytest.raises(EventError) as err:
            parse_report_query(query, now, p)
        assert err.value.field == field, query
        assert err.value.code == f"invalid_{field}"


def test_report_params_are_checked() -> None:
    with pytest.raises(ValueError, match="report_day_horizon_days"):
        ReportParams(report_hour_horizon_days=10, report_day_horizon_days=5)
    with pytest.raises(ValueError, match="report_skip_ms"):
        ReportParams(report_skip_ms=0)


# ------------------------------------------------------------------------- state

KINDS = ["radio_next", "radio_next", "play_start", "play_10s", "like", "skip", "skip"]


@st.composite
def logs(draw: st.DrawFn) -> list[FoldEvent]:
    n = draw(st.integers(0, 120))
    rows = []
    t = T0
    for i in range(n):
        t += draw(st.sampled_from([0, 1, 30, 600, 2000, 4000, 40000, 3 * DAY]))
        back = draw(st.sampled_from([0, 0, 0, 50, 5000]))  # some late events
        rows.append(
            FoldEvent(
                i + 1,
                draw(st.sampled_from(["s1", "s2", "s3"])),
                draw(st.sampled_from(["A", "B", "C", "D"])),
                draw(st.sampled_from(KINDS)),
                t - back,
                draw(st.sampled_from([None, 100, 29999, 30000, 45000])),
                draw(st.sampled_from([None, "radio:a", "radio:b"])),
            )
        )
    return rows


SMALL = ReportParams(
    report_hour_horizon_days=2,
    report_day_horizon_days=6,
    report_pending_per_session=3,
    report_max_arms=2,
)


@settings(max_examples=150, deadline=None)
@given(rows=logs(), cuts=st.lists(st.integers(0, 120), max_size=6))
def test_any_batch_split_and_any_save_point_give_the_same_state(
    rows: list[FoldEvent], cuts: list[int]
) -> None:
    whole = Scoreboard(SMALL)
    whole.fold(rows)
    split = Scoreboard(SMALL)
    at = 0
    for cut in sorted(set(cuts)):
        split.fold(rows[at:cut])
        # a save and load at every batch end, through msgpack as a snapshot stores it
        packed = msgpack.packb(list(snapshot_records(split, chunk=2)), use_bin_type=True)
        records = msgpack.unpackb(packed, raw=False, strict_map_key=False)
        split = from_snapshot_parts({"radio": [r for _, r in records]}, 0, SMALL)
        at = max(at, cut)
    split.fold(rows[at:])
    split.fold(rows)  # a replay of what was folded is a no-op
    assert split.signature() == whole.signature()
    open_picks = sum(len(st[2]) for st in whole.sessions.values())
    assert split.pending_count == whole.pending_count == open_picks
    for bucket in ("day", "hour"):
        assert split.report(0, 4e9, bucket) == whole.report(0, 4e9, bucket)
    # every verdict lands somewhere: counted, overflowing, expired or still open
    rep = whole.report(0, 4e9)
    counted = sum(a["skipped"] + a["kept"] + a["unresolved"] for a in rep["arms"])
    total = counted + sum(whole.overflow) + sum(whole.expired) + whole.pending_count
    opened = _transitions_opened(rows, SMALL)
    assert total == opened


def _transitions_opened(rows: list[FoldEvent], params: ReportParams) -> int:
    """An independent count of radio picks that started a transition (the dedup rules)."""
    sessions: dict[str, list[Any]] = {}
    opened = 0
    clock = -math.inf
    hour = -math.inf
    for _, sid, tid, kind, t, elapsed, _ in rows:
        if t > clock:
            clock = t
            if math.floor(t / 3600) > hour:
                hour = math.floor(t / 3600)
                for s in [s for s, v in sessions.items() if t - v[0] > 1800]:
                    del sessions[s]
        v = sessions.get(sid)
        if v is not None and t - v[0] > 1800:
            v = None
            del sessions[sid]
        if v is None:
            if kind != "radio_next":
                continue
            v = sessions[sid] = [t, None, []]
        v[0] = max(v[0], t)
        if kind == "radio_next" and tid != v[1] and tid not in v[2]:
            opened += 1
            v[2].append(tid)
            if len(v[2]) > params.report_pending_per_session:
                v[2].pop(0)
        elif tid in v[2] and (
            kind in ("play_10s", "like") or (kind == "skip" and (elapsed or 0) < 30000)
        ):
            v[2].remove(tid)
        v[1] = tid
    return opened


def test_a_snapshot_without_a_scoreboard_gives_an_empty_one_at_its_cursor() -> None:
    sb = from_snapshot_parts({}, 42, None)
    assert sb.cursor == 42 and sb.report(0, 4e9)["arms"] == []
    log = Log().pick("s", "B", T0).add("s", "B", "play_10s", T0 + 10)
    sb.fold(log.rows)  # ids 1 and 2 are at or below the cursor: already in the graph
    assert sb.report(0, 4e9)["arms"] == []
    with pytest.raises(ValueError, match="radio scoreboard records"):
        from_snapshot_parts({"radio": [{"version": 1}]}, 0, None)


def test_rows_the_log_marks_unreadable_only_move_the_cursor() -> None:
    """The log hands back a row it cannot trust with event_type None and its raw values."""
    log = Log().pick("s", "B", T0)
    log.rows.append(FoldEvent(2, "s", "B", None, "yesterday", -40, None))  # type: ignore[arg-type]
    log.rows.append(FoldEvent(3, "s", b"\x00blob", None, T0, None, None))  # type: ignore[arg-type]
    log.add("s", "B", "play_10s", T0 + 10)
    sb = board(log)
    assert sb.cursor == 4
    assert arm_row(everything(sb), "radio:gravity")["kept"] == 1
