"""The state that travels together: the graph, the takedowns, the radio's scoreboard and the
cursor they all reflect; and the one fold of log rows into it.

The daemon's fold loop and `gravityd build` fold the same rows the same way: each row goes to
the graph, to the takedowns (block and unblock rows) and to the scoreboard; rows the log
flagged as untrustworthy are reported and passed over. A part that raises never stops the fold:
the batch is folded again row by row and what raises is skipped, reported and counted. Pure:
no I/O beyond log lines, no asyncio, so the fold loop can call it slice by slice.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from gravityd.core.events import EVENT_TYPES, FoldEvent
from gravityd.core.graph import FoldParams, GravityGraph
from gravityd.core.scoreboard import (
    ReportParams,
    Scoreboard,
    from_snapshot_parts,
    snapshot_records,
)
from gravityd.core.session_index import SESSIONS_PART, SessionIndex
from gravityd.core.takedowns import Blocks
from gravityd.core.transitions import (
    MODEL_PART,
    ModelParams,
    TransitionModel,
    edge_arrays,
    fit_transitions,
)
from gravityd.snapshots.files import Found

log = logging.getLogger("gravityd.fold")

SKIPPED_LOGGED = 10  # skipped rows logged one by one per batch; the rest in one summary line


@dataclass
class State:
    """What one snapshot holds and one fold advances."""

    graph: GravityGraph
    blocks: Blocks = field(default_factory=Blocks)
    scoreboard: Scoreboard = field(default_factory=Scoreboard)
    sessions: SessionIndex = field(default_factory=SessionIndex)
    model: TransitionModel = field(default_factory=TransitionModel)

    @property
    def cursor(self) -> int:
        return self.graph.cursor

    @classmethod
    def empty(cls, params: FoldParams | None, report: ReportParams | None) -> State:
        """The state before the log's first event."""
        return cls(
            GravityGraph(params),
            Blocks(),
            Scoreboard(report),
            SessionIndex.for_fold(params),
            TransitionModel.for_fold(params),
        )

    @classmethod
    def from_found(cls, found: Found, report: ReportParams | None) -> State:
        """The state a loaded snapshot carries. A scoreboard it lacks, or cannot be read,
        starts empty at its cursor (the graph is still good); its takedowns came checked."""
        header, graph = found.header, found.graph
        try:
            scoreboard = from_snapshot_parts(header.get("parts", {}), graph.cursor, report)
        except ValueError as exc:
            log.error("snapshot scoreboard unreadable: it starts empty", extra={"error": str(exc)})
            scoreboard = from_snapshot_parts({}, graph.cursor, report)
        sessions = sessions_from_header(header, graph.params)
        model = model_from_header(header, graph.params)
        return cls(graph, Blocks.from_header(header), scoreboard, sessions, model)

    def extra_records(self, chunk: int) -> Iterator[tuple[str, Any]]:
        """The records a snapshot writes after the graph's (gravityd.snapshots.files)."""
        return itertools.chain(
            snapshot_records(self.scoreboard, chunk),
            self.sessions.records(),
            self.model.records(),
        )


def sessions_from_header(header: dict[str, Any], params: FoldParams | None) -> SessionIndex:
    """The session index a loaded snapshot carries; one written before the index existed, or
    unreadable, starts empty (the ranking then has no session votes until sessions come in)."""
    payloads = header.get("parts", {}).get(SESSIONS_PART)
    if payloads:
        try:
            return SessionIndex.from_records(payloads)
        except ValueError as exc:
            log.error(
                "snapshot session index unreadable: it starts empty", extra={"error": str(exc)}
            )
    return SessionIndex.for_fold(params)


def model_from_header(header: dict[str, Any], params: FoldParams | None) -> TransitionModel:
    """The transition model a loaded snapshot carries. One written before the model existed,
    with other [graph] model_* settings, or unreadable, is not used: the ranking has neutral
    priors until the first training (a daemon's first comes at once once it is ready)."""
    wanted = ModelParams.from_fold(params if params is not None else FoldParams())
    payloads = header.get("parts", {}).get(MODEL_PART)
    if payloads and wanted.dims:
        try:
            return TransitionModel.from_records(payloads, wanted)
        except ValueError as exc:
            log.warning(
                "snapshot transition model not used: it starts empty", extra={"error": str(exc)}
            )
    return TransitionModel(wanted)


def train_model(graph: GravityGraph) -> TransitionModel:
    """The transition model of this graph as of its cursor, its evidence decayed to the graph's
    own clock (not the wall's): a pure function of the folded log, so a replay to the same
    cursor trains the same model (a daemon does it in the background: daemon/models.py)."""
    params = ModelParams.from_fold(graph.params)
    if not params.dims:
        return TransitionModel(params)
    rows = graph.direct_evidence(graph.tracks(), graph.clock or None)
    return fit_transitions(edge_arrays(rows), params, graph.cursor)


class FoldResult(NamedTuple):
    """What one fold did. `events`: listening events folded (not positions: block changes,
    skipped rows and holes in the positions are not events); `block_changes`: block and
    unblock rows; `skipped`: (position, field) of stored rows the fold could not trust;
    `errors`: rows a part raised on (skipped, logged); `radio`: the scoreboard's verdicts, for
    the metrics; `cursor`: where the state is now."""

    events: int
    block_changes: int
    skipped: list[tuple[int, str]]
    errors: int
    radio: Counter
    cursor: int


def fold_rows(
    state: State, rows: Sequence[FoldEvent], bad: Sequence[tuple[int, str]] = ()
) -> FoldResult:
    """Fold log rows (in position order, as `EventLog.read_after` returns them, with its bad
    rows) into the state. Rows at or below the cursor are no-ops, so a replay changes nothing."""
    start = state.graph.cursor
    if bad:
        report_skipped(bad)
    events = sum(1 for r in rows if r[0] > start and r[3] in EVENT_TYPES)
    block_changes = state.blocks.fold(rows)
    errors = 0
    try:
        state.sessions.fold([r for r in rows if r[0] > start])
    except Exception:  # the index is a ranking aid: the graph's fold goes on without it
        log.exception("session index fold failed", extra={"first_id": rows[0][0]})
    try:
        state.graph.fold(rows)
    except Exception:
        log.exception("fold failed", extra={"first_id": rows[0][0]})
        errors += _graph_one_by_one(state.graph, rows)
    try:
        radio = state.scoreboard.fold(rows)
    except Exception:
        log.exception("scoreboard fold failed", extra={"first_id": rows[0][0]})
        radio, failed = _scoreboard_one_by_one(state.scoreboard, rows)
        errors += failed
    return FoldResult(events, block_changes, list(bad), errors, radio, state.graph.cursor)


def report_skipped(bad: Sequence[tuple[int, str]]) -> None:
    """Stored rows the fold cannot trust: the first few logged by position, then a summary."""
    for eid, problem in bad[:SKIPPED_LOGGED]:
        log.error("stored event skipped by the fold", extra={"id": eid, "problem": problem})
    if len(bad) > SKIPPED_LOGGED:
        log.error(
            "stored events skipped by the fold",
            extra={"count": len(bad), "first_id": bad[0][0], "last_id": bad[-1][0]},
        )


def _graph_one_by_one(graph: GravityGraph, rows: Sequence[FoldEvent]) -> int:
    """Fold a failed batch row by row, skipping (and reporting) the rows that raise."""
    failed = 0
    for ev in rows:
        pos = ev[0]
        if pos <= graph.cursor:
            continue
        try:
            graph.fold([ev])
        except Exception:
            failed += 1
            log.error("event skipped by the fold", extra={"position": pos})
            graph.advance_cursor(pos)
    return failed


def _scoreboard_one_by_one(sb: Scoreboard, rows: Sequence[FoldEvent]) -> tuple[Counter, int]:
    tally: Counter = Counter()
    failed = 0
    for ev in rows:
        try:
            tally.update(sb.fold([ev]))
        except Exception:
            failed += 1
            log.error("event skipped by the scoreboard", extra={"position": ev[0]})
    return tally, failed
