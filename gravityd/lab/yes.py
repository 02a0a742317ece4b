"""Yes.com radio playlists (Chen et al., KDD 2012): loading a folder, and replaying it.

One replay, two destinations: `gravityd eval` folds the playlists into a graph in this process
(`replay`), `gravityd simulate --replay` posts them to a daemon (`post_replay`). Both play each
playlist the same way (`plays`: every song a `play_start`, then a `play_10s` 10 s later, songs
`SONG_GAP_S` apart, song i the track `track_uuid(i)`); they differ only in where the clock
starts:

- the offline replay plays the playlists one after another on a made-up clock (`BASE_TS`, an
  hour between playlists) and gives the fold its own increasing log ids;
- the replay to a daemon starts playlist k k seconds after the first, all ending in the past, so
  the daemon's decay stays meaningful however many playlists there are; its event ids are derived
  from the folder, the playlist and the song, so replaying the same data twice adds nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gravityd.commands.client import Client
from gravityd.core.events import FoldEvent
from gravityd.core.graph import FoldParams, GravityGraph
from gravityd.core.session_index import SessionIndex

YES_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/gravityd/eval/yes.com")
REPLAY_NAMESPACE = uuid.UUID("0b8e3c52-5f0e-4a53-8d3c-6b1d1f6c2a77")  # the posted events' ids
SONG_GAP_S = 200.0  # seconds between two songs of a replayed playlist (no session timeout)
PLAYLIST_GAP_S = 3600.0  # offline: seconds between two replayed playlists
BASE_TS = 1_600_000_000.0  # offline: the made-up clock starts here (2020-09-13)
POST_BATCH = 2000  # events per POST /events
FOLD_BATCH = 5000  # events per fold call offline


@dataclass(frozen=True)
class Dataset:
    """A Yes.com folder: playlists as (line number, song indices) and each song's tag set."""

    path: str
    n_songs: int
    playlists: list[tuple[int, list[int]]]  # (1-based line number in train.txt, songs)
    tags: list[frozenset[int]]

    @property
    def tag(self) -> str:
        """The folder's name: part of the posted events' ids and session ids."""
        return self.path.rstrip("/").rsplit("/", 1)[-1]


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise FileNotFoundError(f"{path}: {exc.strerror}") from None


def load_yes(path: str | Path) -> Dataset:
    """Load a Yes.com folder; FileNotFoundError / ValueError with a one-line message if bad.

    ``train.txt``: line 1 the song ids, line 2 play counts, then one playlist per line as 0-based
    song indices; ``tags.txt``: line i the tag indices of song i (``#`` for none);
    ``song_hash.txt``, if present, is only checked for its song count.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder not found: {folder}")
    lines = _read_lines(folder / "train.txt")
    if len(lines) < 2:
        raise ValueError(f"{folder / 'train.txt'}: expected song ids, play counts, playlists")
    n_songs = len(lines[0].split())
    if n_songs == 0:
        raise ValueError(f"{folder / 'train.txt'}: line 1 lists no songs")
    playlists: list[tuple[int, list[int]]] = []
    for lineno, line in enumerate(lines[2:], start=3):
        try:
            songs = [int(tok) for tok in line.split()]
        except ValueError:
            raise ValueError(
                f"{folder / 'train.txt'} line {lineno}: not a list of song indices"
            ) from None
        if songs and (min(songs) < 0 or max(songs) >= n_songs):
            raise ValueError(
                f"{folder / 'train.txt'} line {lineno}: song index outside 0..{n_songs - 1}"
            )
        if songs:
            playlists.append((lineno, songs))
    tag_lines = _read_lines(folder / "tags.txt")
    while tag_lines and not tag_lines[-1].strip():
        tag_lines.pop()
    if len(tag_lines) != n_songs:
        raise ValueError(
            f"{folder / 'tags.txt'}: {len(tag_lines)} lines for {n_songs} songs in train.txt"
        )
    tags: list[frozenset[int]] = []
    for i, line in enumerate(tag_lines, start=1):
        toks = [t for t in line.split() if t != "#"]
        try:
            tags.append(frozenset(int(t) for t in toks))
        except ValueError:
            raise ValueError(f"{folder / 'tags.txt'} line {i}: not a list of tag indices") from None
    song_hash = folder / "song_hash.txt"
    if song_hash.exists():
        names = [ln for ln in _read_lines(song_hash) if ln.strip()]
        if len(names) != n_songs:
            raise ValueError(f"{song_hash}: {len(names)} songs, train.txt has {n_songs}")
    return Dataset(str(folder), n_songs, playlists, tags)


def track_uuid(index: int) -> str:
    """The deterministic track id of song `index`: uuid5 of the index in YES_NAMESPACE."""
    return str(uuid.uuid5(YES_NAMESPACE, str(index)))


# --------------------------------------------------------------------------- the replay


def plays(songs: Sequence[int], start: float) -> Iterator[tuple[int, int, str, float]]:
    """A playlist as the replay plays it: (position, song, event type, time), in order."""
    t = start
    for j, song in enumerate(songs):
        yield j, song, "play_start", t
        yield j, song, "play_10s", t + 10.0
        t += SONG_GAP_S


def session_index(params: FoldParams) -> SessionIndex:
    """The session index a daemon with these [graph] settings keeps."""
    return SessionIndex.for_fold(params)


def fold_events(
    playlists: Iterable[Sequence[int]], uuids: Sequence[str], *, first_id: int = 1
) -> Iterator[list[FoldEvent]]:
    """Offline: the playlists as fold events, one list per playlist, one after another on the
    made-up clock, log ids increasing."""
    eid = first_id
    start = BASE_TS
    for k, songs in enumerate(playlists):
        sid = f"yes-{k}"
        batch = []
        for _, song, kind, t in plays(songs, start):
            batch.append(FoldEvent(eid, sid, uuids[song], kind, t, None))
            eid += 1
        start += len(songs) * SONG_GAP_S + PLAYLIST_GAP_S
        yield batch


def replay(
    playlists: Sequence[Sequence[int]],
    uuids: Sequence[str],
    params: FoldParams,
    progress: Callable[[int, int], None] | None = None,
    sessions: SessionIndex | None = None,
) -> tuple[GravityGraph, int, float]:
    """Fold the playlists into a fresh graph; returns (graph, events folded, fold seconds).

    `progress(playlists replayed, playlists in all)` after each folded batch; `sessions`, when
    given, is fed the same events (its time is counted in the fold seconds)."""
    graph = GravityGraph(params)

    def fold(batch: list[FoldEvent]) -> int:
        n = graph.fold(batch)
        if sessions is not None:
            sessions.fold(batch)
        return n

    n_events = 0
    fold_s = 0.0
    pending: list[FoldEvent] = []
    for k, batch in enumerate(fold_events(playlists, uuids), start=1):
        pending.extend(batch)
        if len(pending) >= FOLD_BATCH:
            t0 = time.perf_counter()
            n_events += fold(pending)
            fold_s += time.perf_counter() - t0
            pending = []
            if progress:
                progress(k, len(playlists))
    if pending:
        t0 = time.perf_counter()
        n_events += fold(pending)
        fold_s += time.perf_counter() - t0
    if progress:
        progress(len(playlists), len(playlists))
    return graph, n_events, fold_s


def iso_time(ts: float) -> str:
    """An event timestamp as the API takes it (UTC, milliseconds)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def api_events(ds: Dataset, playlists: int | None, now: float) -> list[list[dict[str, Any]]]:
    """To a daemon: the first `playlists` playlists (all: None) as one list of API events per
    playlist. Playlist k starts k seconds after the first; the last ends a minute before `now`."""
    chosen = ds.playlists if playlists is None else ds.playlists[:playlists]
    span = max((len(songs) for _, songs in chosen), default=0) * SONG_GAP_S
    base = now - len(chosen) - span - 60.0
    tag = ds.tag
    return [
        [
            {
                "event_id": str(uuid.uuid5(REPLAY_NAMESPACE, f"{tag}:{line}:{j}:{kind}")),
                "session_id": f"yes-{tag}-{line}",
                "track_id": track_uuid(song),
                "event_type": kind,
                "timestamp": iso_time(t),
                "context": "radio",
            }
            for j, song, kind, t in plays(songs, base + k)
        ]
        for k, (line, songs) in enumerate(chosen)
    ]


@dataclass(frozen=True)
class Posted:
    """What a replay to a daemon did: playlists, events accepted, of which already there."""

    playlists: int
    accepted: int
    duplicates: int

    @property
    def new(self) -> int:
        return self.accepted - self.duplicates


async def post_replay(
    client: Client,
    ds: Dataset,
    *,
    playlists: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Posted:
    """Post Yes.com playlists through a `gravityd.commands.client.Client`.

    One batch at a time: the log then holds the playlists in file order, so two replays of the
    same data build the same graph (per-track edge trimming depends on the order).
    `progress(events posted, events in all)` after each batch.
    """
    sessions = api_events(ds, playlists, time.time())
    batches: list[list[dict[str, Any]]] = [[]]
    for events in sessions:
        if len(batches[-1]) + len(events) > POST_BATCH:
            batches.append([])
        batches[-1].extend(events)
    total = sum(len(b) for b in batches)
    done = accepted = duplicates = 0
    for batch in batches:
        if not batch:
            continue
        answer = await client.post_events(batch)
        done += len(batch)
        accepted += answer.accepted
        duplicates += answer.duplicates
        if progress:
            progress(done, total)
    return Posted(len(sessions), accepted, duplicates)
