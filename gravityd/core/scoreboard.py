"""The radio's scoreboard: how often listeners skip what the radio picked, per arm and hour.

A radio transition is a track a session entered through a ``radio_next`` event; its arm is that
event's ``context`` (None when absent). Its verdict (the contract's rule):

- **skipped**: a ``skip`` of that track in that session with ``elapsed_ms`` below
  ``report_skip_ms`` (30 s) before any ``play_10s`` or ``like`` of it (a skip that does not say
  how far in counts as early: a skip is an early one by the event's definition);
- **kept**: a ``play_10s`` or ``like`` came first (a later skip changes nothing);
- **unresolved** (never in a skip rate): no verdict before the session fell silent for
  ``report_pending_timeout_s``, or the session held more than ``report_pending_per_session``
  open transitions (the oldest goes). A skip at or past ``report_skip_ms`` is no verdict.

A ``radio_next`` of the track the session is on, or of one already waiting for its verdict, is
the same transition (a retried event), not a new one. A transition is counted in the bucket of
its ``radio_next`` event's own time (``ts``), so hours are event time, never arrival time.

Memory is bounded: hour buckets older than ``report_hour_horizon_days`` whole days before the log
clock's day (the latest event time folded) are merged into day buckets, days older than
``report_day_horizon_days`` are dropped; at most ``report_max_arms`` arms are held (transitions of
arms past that are tallied together as ``overflow``); open transitions live only as long as their
session is not silent past the timeout. Every one of these steps happens at an event the log
decides (the clock entering a new hour or day), never at batch ends or on a timer, so folding the
log in one batch or any split gives the same state. Pure: no I/O, no wall clock.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from gravityd.core.checks import check_fields
from gravityd.core.events import EVENT_TYPES, EventError, FoldEvent, parse_timestamp

__all__ = [
    "BUCKETS",
    "ReportParams",
    "ReportQuery",
    "Scoreboard",
    "compare",
    "format_time",
    "parse_report_query",
    "wilson",
]

STATE_VERSION = 1
HOUR = 3600
DAY = 86400
BUCKETS = {"hour": HOUR, "day": DAY}
Z95 = 1.959963984540054  # the standard normal's 97.5th percentile
SKIPPED, KEPT, UNRESOLVED = 0, 1, 2
ZERO = (0, 0, 0)
VERDICTS = ("skipped", "kept", "unresolved")
NULL_ARM = "null"  # how `arms=` names the arm of radio_next events without a context
_MIN_TS = datetime(1, 1, 2, tzinfo=UTC).timestamp()  # keeps every rounded time printable
_MAX_TS = datetime(9999, 12, 30, tzinfo=UTC).timestamp()

Arm = str | None


@dataclass(frozen=True, slots=True)
class ReportParams:
    """Every knob of the scoreboard; the [report] section of the config maps onto these 1:1."""

    # A skip of a radio pick earlier than this (ms) makes it "skipped"; a later one is no verdict.
    report_skip_ms: int = 30000
    # Seconds a session may stay silent before its radio picks still waiting for a verdict are
    # dropped as unresolved.
    report_pending_timeout_s: float = 1800.0
    # Radio picks one session may hold waiting for a verdict; past it the oldest is unresolved.
    report_pending_per_session: int = 16
    # Whole days (before the log clock's day) kept in hour buckets; older hours merge into days.
    report_hour_horizon_days: int = 7
    # Whole days kept in day buckets; older days are dropped. At least the hour horizon.
    report_day_horizon_days: int = 400
    # Arms (distinct radio_next contexts) held at once; picks of arms past it count as overflow.
    report_max_arms: int = 100
    # Arms with their own label in gravityd_radio_transitions_total; the rest are "other".
    report_metric_arms: int = 20

    def __post_init__(self) -> None:
        check_fields(self)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError("<field>: reason") for the first out-of-range value."""
        if self.report_skip_ms < 1:
            raise ValueError("report_skip_ms: must be >= 1")
        if self.report_pending_timeout_s <= 0:
            raise ValueError("report_pending_timeout_s: must be > 0")
        if not 1 <= self.report_pending_per_session <= 1000:
            raise ValueError("report_pending_per_session: must be between 1 and 1000")
        if not 0 <= self.report_hour_horizon_days <= 366:
            raise ValueError("report_hour_horizon_days: must be between 0 and 366")
        if not self.report_hour_horizon_days <= self.report_day_horizon_days <= 36600:
            raise ValueError(
                "report_day_horizon_days: must be at least report_hour_horizon_days "
                "and at most 36600"
            )
        if not 1 <= self.report_max_arms <= 10000:
            raise ValueError("report_max_arms: must be between 1 and 10000")
        if not 0 <= self.report_metric_arms <= 1000:
            raise ValueError("report_metric_arms: must be between 0 and 1000")


# ---------------------------------------------------------------------------- statistics


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion; None without trials.

    Unlike p ± z·se it stays inside [0, 1] and is honest for small n and rates near 0 or 1.
    """
    if n <= 0:
        return None
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def compare(
    skipped_a: int, n_a: int, skipped_b: int, n_b: int, z: float = Z95
) -> tuple[float, tuple[float, float], float] | None:
    """b's skip rate minus a's, its 95% interval (unpooled normal) and the two-sided p-value of
    the pooled two-proportion z-test; None when either arm has no trials.

    When both arms are all skips or all keeps the rates cannot differ: p-value 1.
    """
    if n_a <= 0 or n_b <= 0:
        return None
    pa, pb = skipped_a / n_a, skipped_b / n_b
    diff = pb - pa
    se = math.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b)
    pooled = (skipped_a + skipped_b) / (n_a + n_b)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    p_value = 1.0 if se0 == 0.0 else math.erfc(abs(diff / se0) / math.sqrt(2.0))
    return diff, (diff - z * se, diff + z * se), p_value


# ---------------------------------------------------------------------------- the query


class ReportQuery(NamedTuple):
    """A checked report request: [since, until) in Unix seconds, the bucket, the arms asked."""

    since: float
    until: float
    bucket: str
    arms: tuple[Arm, ...] | None  # None: every arm with data in the range


def format_time(ts: float) -> str:
    """Unix seconds as ISO 8601 UTC with a Z, as the report prints every time."""
    if ts == int(ts):
        return _format_whole(int(ts))
    text = datetime.fromtimestamp(ts, UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


@functools.lru_cache(maxsize=1 << 16)
def _format_whole(ts: int) -> str:
    """Bucket starts: a few thousand distinct values, formatted once (a report has many)."""
    return datetime.fromtimestamp(ts, UTC).isoformat().removesuffix("+00:00") + "Z"


def _time_param(raw: str, name: str) -> float:
    try:
        ts = parse_timestamp(raw)
    except (ValueError, OverflowError):
        ts = None
    if ts is None or not _MIN_TS <= ts <= _MAX_TS:
        raise EventError(
            f"invalid_{name}", f"{name} must be an ISO 8601 date-time (years 1 to 9999)", name
        )
    return ts


def parse_report_query(
    query: Mapping[str, str], now: float, params: ReportParams, max_context_len: int = 64
) -> ReportQuery:
    """Check `since`, `until`, `bucket` and `arms`; raise EventError naming the field at fault.

    `until` defaults to `now` (the caller's clock), `since` to `until` minus what the bucket
    keeps (the hour or the day horizon). In `arms` (comma-separated contexts, in the order the
    comparison uses) the item ``null`` stands for picks without a context.
    """
    bucket = query.get("bucket", "day")
    if bucket not in BUCKETS:
        raise EventError("invalid_bucket", "bucket must be day or hour", "bucket")
    raw_until = query.get("until")
    until = now if raw_until is None else _time_param(raw_until, "until")
    raw_since = query.get("since")
    if raw_since is None:
        horizon = (
            params.report_hour_horizon_days if bucket == "hour" else params.report_day_horizon_days
        )
        since = max(_MIN_TS, floor_to(until, DAY) - horizon * DAY)
    else:
        since = _time_param(raw_since, "since")
    if until <= since:
        raise EventError("invalid_until", "until must be later than since", "until")
    arms: tuple[Arm, ...] | None = None
    raw_arms = query.get("arms")
    if raw_arms is not None:
        items = raw_arms.split(",")
        if len(items) > params.report_max_arms:
            raise EventError(
                "invalid_arms", f"arms lists at most {params.report_max_arms} arms", "arms"
            )
        out: list[Arm] = []
        for item in items:
            if not item or len(item) > max_context_len:
                raise EventError(
                    "invalid_arms",
                    f"arms must be contexts of 1 to {max_context_len} characters, "
                    "separated by commas (null: picks without a context)",
                    "arms",
                )
            arm = None if item == NULL_ARM else item
            if arm in out:
                raise EventError("invalid_arms", f"arm {item!r} is listed twice", "arms")
            out.append(arm)
        arms = tuple(out)
    return ReportQuery(since, until, bucket, arms)


def floor_to(ts: float, size: int) -> int:
    return math.floor(ts / size) * size


# ---------------------------------------------------------------------------- the state


class Scoreboard:
    """Skipped / kept / unresolved counts per (arm, hour or day), and the open radio picks.

    ``hours`` and ``days`` map arm -> bucket start (Unix seconds) -> (skipped, kept,
    unresolved), tuples replaced on each count so that a shallow copy is a consistent view.
    ``sessions`` map a session id to [latest ts, the track it is on, open picks], an open pick
    being [track id, arm, ts of its radio_next].
    """

    def __init__(self, params: ReportParams | None = None) -> None:
        self.params = params if params is not None else ReportParams()
        self.cursor = 0
        self.clock = -math.inf  # latest event time folded: the log's notion of now
        self.day_mark = -(1 << 62)  # the clock's day when buckets were last compacted
        self.hour_mark = -(1 << 62)  # the clock's hour when idle sessions were last swept
        self.hours: dict[Arm, dict[int, tuple[int, int, int]]] = {}
        self.days: dict[Arm, dict[int, tuple[int, int, int]]] = {}
        self.sessions: dict[str, list[Any]] = {}
        self.overflow = [0, 0, 0]  # picks of arms past report_max_arms
        self.expired = [0, 0, 0]  # verdicts that fell past the day horizon (dropped), by kind
        self._tally: Counter[tuple[Arm, str]] = Counter()
        self._open = 0  # picks waiting for a verdict, over every session

    # ------------------------------------------------------------------- folding

    def fold(self, events: Iterable[FoldEvent]) -> Counter[tuple[Arm, str]]:
        """Apply events in log order (ids at or below the cursor are skipped: replay is a no-op).

        Returns how many verdicts each (arm, verdict) got from this batch, for the metrics.
        """
        self._tally = tally = Counter()
        p = self.params
        sessions = self.sessions
        timeout = p.report_pending_timeout_s
        skip_ms = p.report_skip_ms
        cap = p.report_pending_per_session
        cursor, clock = self.cursor, self.clock
        next_hour = self.hour_mark + HOUR  # the clock entering it sweeps (and maybe compacts)
        try:
            for ev in events:
                eid, sid, tid, etype, t, elapsed, context = ev
                if eid <= cursor:
                    continue
                cursor = eid
                if etype not in EVENT_TYPES:  # a stored row the log marks as unreadable
                    continue
                if t > clock:
                    clock = t
                    if t >= next_hour:
                        self._advance(t)
                        next_hour = self.hour_mark + HOUR
                st = sessions.get(sid)
                if st is not None and t - st[0] > timeout:
                    self._close_session(sid, st)
                    st = None
                if st is None:
                    if etype != "radio_next":
                        continue  # only sessions the radio is in are followed
                    st = sessions[sid] = [t, None, []]
                elif t > st[0]:
                    st[0] = t
                pending: list[list[Any]] = st[2]
                if etype == "radio_next":
                    if tid != st[1] and all(pk[0] != tid for pk in pending):
                        pending.append([tid, context, t])
                        self._open += 1
                        if len(pending) > cap:
                            old = pending.pop(0)
                            self._open -= 1
                            self._count(old[1], old[2], UNRESOLVED)
                elif pending and (
                    etype in ("play_10s", "like")
                    or (etype == "skip" and (elapsed is None or elapsed < skip_ms))
                ):
                    for i, pk in enumerate(pending):
                        if pk[0] == tid:
                            del pending[i]
                            self._open -= 1
                            self._count(pk[1], pk[2], SKIPPED if etype == "skip" else KEPT)
                            break
                st[1] = tid
        finally:
            self.cursor, self.clock = cursor, clock
        self._tally = Counter()
        return tally

    def _advance(self, t: float) -> None:
        """The log clock enters a new hour at t: sweep idle sessions, compact on a new day."""
        self.clock = t
        hour = floor_to(t, HOUR)
        if hour > self.hour_mark:
            self.hour_mark = hour
            timeout = self.params.report_pending_timeout_s
            idle = [sid for sid, st in self.sessions.items() if t - st[0] > timeout]
            for sid in idle:
                self._close_session(sid, self.sessions[sid])
        day = floor_to(t, DAY)
        if day > self.day_mark:
            self.day_mark = day
            self._compact()

    def _close_session(self, sid: str, st: list[Any]) -> None:
        for pk in st[2]:
            self._count(pk[1], pk[2], UNRESOLVED)
        self._open -= len(st[2])
        del self.sessions[sid]

    def _frontiers(self) -> tuple[int, int]:
        """(first hour kept in hour buckets, first day kept at all) at the current day mark."""
        p = self.params
        return (
            self.day_mark - p.report_hour_horizon_days * DAY,
            self.day_mark - p.report_day_horizon_days * DAY,
        )

    def _compact(self) -> None:
        hour_frontier, day_cutoff = self._frontiers()
        for arm in list(self.hours):
            hours = self.hours[arm]
            for start in [s for s in hours if s < hour_frontier]:
                c = hours.pop(start)
                day = floor_to(start, DAY)
                days = self.days.setdefault(arm, {})
                d = days.get(day, ZERO)
                days[day] = (d[0] + c[0], d[1] + c[1], d[2] + c[2])
            if not hours:
                del self.hours[arm]
        for arm in list(self.days):
            days = self.days[arm]
            for start in [s for s in days if s < day_cutoff]:
                for i, n in enumerate(days.pop(start)):
                    self.expired[i] += n
            if not days:
                del self.days[arm]

    def _count(self, arm: Arm, ts: float, verdict: int) -> None:
        self._tally[(arm, VERDICTS[verdict])] += 1
        hour_frontier, day_cutoff = self._frontiers()
        day = floor_to(ts, DAY)
        if day < day_cutoff:
            self.expired[verdict] += 1
            return
        if (
            arm not in self.hours
            and arm not in self.days
            and len(self.hours.keys() | self.days.keys()) >= self.params.report_max_arms
        ):
            self.overflow[verdict] += 1
            return
        if ts >= hour_frontier:
            table, start = self.hours, floor_to(ts, HOUR)
        else:
            table, start = self.days, day
        rows = table.setdefault(arm, {})
        c = rows.get(start, ZERO)
        rows[start] = (
            c[0] + (verdict == SKIPPED),
            c[1] + (verdict == KEPT),
            c[2] + (verdict == UNRESOLVED),
        )

    @property
    def pending_count(self) -> int:
        """Radio picks waiting for their verdict (kept as a running count: reports read it)."""
        return self._open

    # ------------------------------------------------------------------- reading

    def arms(self) -> list[Arm]:
        """Every arm held, by name (picks without a context first)."""
        return sorted(self.hours.keys() | self.days.keys(), key=_arm_key)

    def report(
        self,
        since: float,
        until: float,
        bucket: str = "day",
        arms: Sequence[Arm] | None = None,
    ) -> dict[str, Any]:
        """The contract's JSON for [since, until): per arm and bucket, and a comparison when
        exactly two arms are reported (a and b in the order asked, else by name).

        `since` rounds down to its bucket's start; a stored bucket counts when its start is in
        [since, until). In an hour report, days already merged show as points with
        ``"span": "day"``.
        """
        steps = self.report_steps(since, until, bucket, arms)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value

    def report_steps(
        self,
        since: float,
        until: float,
        bucket: str = "day",
        arms: Sequence[Arm] | None = None,
    ) -> Generator[None, None, dict[str, Any]]:
        """report() in steps of one arm, for a caller that serves others in between.

        The first step copies what the report reads (the buckets in range and the scalars), so
        the state may change between steps and the answer is still the state of one cursor.
        """
        size = BUCKETS[bucket]
        lo = floor_to(since, size)
        names = list(arms) if arms is not None else self.arms()
        # shallow copies (the counts are immutable tuples): cheap, and a view of one cursor
        empty: dict[int, tuple[int, int, int]] = {}
        frozen = [
            (arm, self.hours.get(arm, empty).copy(), self.days.get(arm, empty).copy())
            for arm in names
        ]
        tail = {
            "pending": self.pending_count,
            "overflow": dict(zip(VERDICTS, self.overflow, strict=True)),
            "clock": format_time(self.clock) if math.isfinite(self.clock) else None,
            "cursor": self.cursor,
        }
        yield
        rows = []
        for arm, hours, days in frozen:
            items = [
                (start, span, c)
                for table, span in ((hours, HOUR), (days, DAY))
                for start, c in table.items()
                if lo <= start < until
            ]
            if arms is None and not items:
                continue
            rows.append(_arm_row(arm, items, size))
            yield
        out: dict[str, Any] = {
            "bucket": bucket,
            "since": format_time(lo),
            "until": format_time(until),
            "arms": rows,
        }
        if len(rows) == 2:
            a, b = rows
            cmp = compare(a["skipped"], a["transitions"], b["skipped"], b["transitions"])
            out["comparison"] = {
                "a": a["context"],
                "b": b["context"],
                "difference": cmp[0] if cmp else None,
                "ci95": list(cmp[1]) if cmp else None,
                "p_value": cmp[2] if cmp else None,
            }
        out.update(tail)
        return out

    # ------------------------------------------------------------------- state

    def iter_records(self, chunk: int = 2000) -> Iterator[dict[str, Any]]:
        """The state as msgpack-friendly pieces: the scalars and buckets first, then the open
        sessions `chunk` at a time, so a snapshot writer packs one small record per step."""
        buckets = []
        for kind, table in ((0, self.hours), (1, self.days)):
            for arm, rows in table.items():
                for start, c in rows.items():
                    buckets.append([arm, kind, start, c[0], c[1], c[2]])
        yield {
            "version": STATE_VERSION,
            "cursor": self.cursor,
            "clock": self.clock if math.isfinite(self.clock) else None,
            "day_mark": self.day_mark,
            "hour_mark": self.hour_mark,
            "overflow": list(self.overflow),
            "expired": list(self.expired),
            "buckets": buckets,
        }
        rows: list[list[Any]] = []
        for sid, (last_ts, track, pending) in self.sessions.items():
            rows.append([sid, last_ts, track, [list(pk) for pk in pending]])
            if len(rows) >= chunk:
                yield {"sessions": rows}
                rows = []
        if rows:
            yield {"sessions": rows}

    def export_state(self) -> dict[str, Any]:
        """Everything needed to resume, as one msgpack-friendly dict."""
        return _join(self.iter_records(chunk=1 << 62))

    @classmethod
    def from_records(
        cls, records: Iterable[Mapping[str, Any]], params: ReportParams | None = None
    ) -> Scoreboard:
        return cls.from_state(_join(records), params)

    @classmethod
    def from_state(cls, state: Mapping[str, Any], params: ReportParams | None = None) -> Scoreboard:
        """Rebuild from export_state(); folding continues exactly as if never saved.

        With other horizons than the saved state's, buckets are compacted to the new ones at once.
        """
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"scoreboard state version {state.get('version')!r}")
        sb = cls(params)
        sb.cursor = int(state["cursor"])
        clock = state["clock"]
        sb.clock = -math.inf if clock is None else float(clock)
        sb.day_mark = int(state["day_mark"])
        sb.hour_mark = int(state["hour_mark"])
        sb.overflow = [int(x) for x in state["overflow"]]
        sb.expired = [int(x) for x in state["expired"]]
        for arm, kind, start, s, k, u in state["buckets"]:
            if arm is not None and not isinstance(arm, str):
                raise ValueError("buckets: an arm must be a string or null")
            table = sb.days if kind else sb.hours
            table.setdefault(arm, {})[int(start)] = (int(s), int(k), int(u))
        for sid, last_ts, track, pending in state["sessions"]:
            sb.sessions[sid] = [float(last_ts), track, [[t, a, float(ts)] for t, a, ts in pending]]
            sb._open += len(pending)
        sb._compact()
        return sb

    def signature(self) -> tuple[Any, ...]:
        """Everything that determines future behaviour, canonically ordered, for equality."""
        buckets = sorted(
            (_arm_key(arm), kind, start, tuple(c))
            for kind, table in ((0, self.hours), (1, self.days))
            for arm, rows in table.items()
            for start, c in rows.items()
        )
        sessions = sorted(
            (sid, st[0], st[1] or "", tuple(tuple(map(str, pk)) for pk in st[2]))
            for sid, st in self.sessions.items()
        )
        return (
            self.cursor,
            self.clock,
            self.day_mark,
            self.hour_mark,
            tuple(self.overflow),
            tuple(self.expired),
            buckets,
            sessions,
        )


def _join(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    state: dict[str, Any] = {"sessions": []}
    for rec in records:
        for key, value in rec.items():
            if key == "sessions":
                state["sessions"].extend(value)
            else:
                state[key] = value
    return state


def _arm_key(arm: Arm) -> tuple[int, str]:
    return (0, "") if arm is None else (1, arm)


def _arm_row(
    arm: Arm, items: list[tuple[int, int, tuple[int, int, int]]], size: int
) -> dict[str, Any]:
    """One arm of a report from its buckets in range: totals, interval and the series."""
    points: dict[int, list[Any]] = {}
    for start, span, (sk, kp, un) in items:
        key = start - start % size if span < size else start
        pt = points.get(key)
        if pt is None:
            points[key] = [sk, kp, un, span > size]
        else:
            pt[0] += sk
            pt[1] += kp
            pt[2] += un
            pt[3] = pt[3] or span > size
    skipped = kept = unresolved = 0
    series = []
    for start in sorted(points):
        sk, kp, un, merged = points[start]
        skipped += sk
        kept += kp
        unresolved += un
        n = sk + kp
        point: dict[str, Any] = {
            "start": _format_whole(start),
            "skipped": sk,
            "kept": kp,
            "unresolved": un,
            "skip_rate": sk / n if n else None,
        }
        if merged:
            point["span"] = "day"
        series.append(point)
    n = skipped + kept
    ci = wilson(skipped, n)
    return {
        "context": arm,
        "transitions": n,
        "skipped": skipped,
        "kept": kept,
        "unresolved": unresolved,
        "skip_rate": skipped / n if n else None,
        "ci95": list(ci) if ci else None,
        "series": series,
    }


# ---------------------------------------------------------------------------- snapshots

SNAPSHOT_PART = "radio"  # the scoreboard's records in a snapshot, after the graph's


def snapshot_records(sb: Scoreboard, chunk: int = 2000) -> Iterator[tuple[str, Any]]:
    """The scoreboard as extra snapshot records, read lazily while the snapshot is written."""
    for rec in sb.iter_records(chunk):
        yield SNAPSHOT_PART, rec


def from_snapshot_parts(
    parts: Mapping[str, list[Any]], cursor: int, params: ReportParams | None = None
) -> Scoreboard:
    """The scoreboard a snapshot carries; an empty one at the graph's cursor if it has none
    (a snapshot written before the scoreboard existed: its history starts after that cursor).

    Raises ValueError if the records are malformed.
    """
    records = parts.get(SNAPSHOT_PART)
    if not records:
        sb = Scoreboard(params)
        sb.cursor = cursor
        return sb
    try:
        return Scoreboard.from_records(records, params)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"radio scoreboard records: {type(exc).__name__}: {exc}") from None
