"""`gravityd report`: the radio's scoreboard of a running daemon, as a table for people.

It asks `GET /radio/report` and prints what it answers, so the table and the API never disagree.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import orjson

from gravityd.commands.client import BlockingClient, DaemonError
from gravityd.core.events import EventError
from gravityd.core.scoreboard import NULL_ARM, ReportParams, parse_report_query

ALPHA = 0.05  # the significance level the plain words use
LOOSE = ReportParams(report_max_arms=10000)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default="http://127.0.0.1:8080", help="the daemon (or a replica)")
    p.add_argument("--since", metavar="ISO", help="from (ISO 8601; default: what is kept)")
    p.add_argument("--until", metavar="ISO", help="to, exclusive (ISO 8601; default: now)")
    p.add_argument("--bucket", choices=("day", "hour"), default="day", help="default: day")
    p.add_argument(
        "--arms",
        metavar="A,B",
        help="contexts to report, in the comparison's order (null: picks without a context)",
    )
    p.add_argument("--json", action="store_true", help="print the API's JSON instead")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait")


def arm_name(context: str | None) -> str:
    return NULL_ARM if context is None else context


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _interval(ci: list[float] | None, signed: bool = False) -> str:
    if ci is None:
        return "-"
    fmt = "{:+.3f}" if signed else "{:.3f}"
    return f"[{fmt.format(ci[0])}, {fmt.format(ci[1])}]"


def verdict_words(cmp: dict[str, Any]) -> str:
    """The comparison in plain words: who skips less, and whether it could be chance."""
    a, b = arm_name(cmp["a"]), arm_name(cmp["b"])
    if cmp["difference"] is None:
        return f"{b} vs {a}: not comparable yet (an arm has no verdicts in this range)"
    diff, p = cmp["difference"], cmp["p_value"]
    lo, hi = cmp["ci95"]
    shown = "< 1e-300" if p == 0 else f"= {p:.2g}"  # below a float's range: no exact zero
    what = f"{b} minus {a}: {diff:+.3f} skip rate (95% CI {lo:+.3f} to {hi:+.3f}), p {shown}"
    if p < ALPHA and diff != 0:
        who = f"{b} skips less than {a}" if diff < 0 else f"{b} skips more than {a}"
        return f"{what}: {who}, significant at the 5% level"
    return f"{what}: not significant at the 5% level, no evidence of a difference yet"


def format_report(rep: dict[str, Any]) -> str:
    """The summary per arm, the comparison in words, then the skip rate per bucket."""
    arms = rep["arms"]
    lines = [
        f"radio report by {rep['bucket']}, {rep['since']} to {rep['until']}"
        + (f" (cursor {rep['cursor']})" if "cursor" in rep else "")
        + (f"; {rep['pending']} picks await a verdict" if rep.get("pending") else "")
    ]
    if not arms:
        lines.append("no radio transitions in this range")
        return "\n".join(lines)
    width = max(12, *(len(arm_name(a["context"])) for a in arms))
    lines.append("")
    lines.append(
        f"{'arm':<{width}}  {'transitions':>11}  {'skipped':>8}  {'kept':>8}  "
        f"{'unresolved':>10}  {'skip rate':>9}  95% CI"
    )
    for a in arms:
        lines.append(
            f"{arm_name(a['context']):<{width}}  {a['transitions']:>11}  {a['skipped']:>8}  "
            f"{a['kept']:>8}  {a.get('unresolved', 0):>10}  {_rate(a['skip_rate']):>9}  "
            f"{_interval(a['ci95'])}"
        )
    if rep.get("comparison"):
        lines.append("")
        lines.append(verdict_words(rep["comparison"]))
    starts = sorted({pt["start"] for a in arms for pt in a["series"]})
    if starts:
        cells = {
            (i, pt["start"]): f"{_rate(pt['skip_rate'])} ({pt['skipped'] + pt['kept']})"
            for i, a in enumerate(arms)
            for pt in a["series"]
        }
        col = max(16, *(len(arm_name(a["context"])) for a in arms))
        lines.append("")
        lines.append(
            f"{'skip rate (n) by ' + rep['bucket']:<22}"
            + "".join(f"  {arm_name(a['context']):>{col}}" for a in arms)
        )
        for start in starts:
            row = "".join(f"  {cells.get((i, start), '-'):>{col}}" for i in range(len(arms)))
            lines.append(f"{start:<22}{row}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Returns the exit code: 2 for bad input (ours or the daemon's 400), 1 if unreachable."""
    query = {
        k: v
        for k, v in (
            ("since", args.since),
            ("until", args.until),
            ("bucket", args.bucket),
            ("arms", args.arms),
        )
        if v is not None
    }
    try:  # the daemon's checks, so a typo needs no round trip (its own limits judge arms)
        parse_report_query(query, time.time(), LOOSE, max_context_len=1 << 20)
    except EventError as exc:
        print(f"gravityd: error: --{exc.field}: {exc.message}", file=sys.stderr)
        return 2
    try:
        with BlockingClient(args.url, timeout_s=args.timeout) as client:
            answer = client.request("GET", "/radio/report", query=query)
    except ValueError as exc:  # not a URL
        print(f"gravityd: error: --url: {exc}", file=sys.stderr)
        return 2
    except DaemonError as exc:
        print(f"gravityd: error: {exc}", file=sys.stderr)
        return 1
    if not answer.ok:
        err = answer.error()
        detail = err.get("message", "") + (f" ({err['field']})" if err.get("field") else "")
        print(f"gravityd: error: report refused ({answer.status}): {detail}", file=sys.stderr)
        return 2 if 400 <= answer.status < 500 else 1
    if args.json:
        sys.stdout.write(answer.raw.decode() + "\n")
    else:
        print(format_report(orjson.loads(answer.raw)))
    return 0
