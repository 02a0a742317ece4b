"""Events as the API takes them: track ids, single events, sessions, and times near now.

Times that go through a daemon (whose validation and report defaults read the wall clock) are
relative to when the suite started, never fixed dates: the suite passes on any day, and under
`faketime`. Pure code gets an explicit clock in its own test instead.
"""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any

DAY = 86400
# Three whole hours before the suite started: an hour of events after it is still in the past.
SUITE_HOUR = int(time.time()) // 3600 * 3600 - 3 * 3600
# Midnight (UTC) of the day the suite started: report days are counted back from it.
SUITE_DAY = int(time.time()) // DAY * DAY


def iso(ts: float) -> str:
    """A Unix time as the API's RFC 3339 UTC timestamp, to the second."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def recent(seconds: float = 0) -> str:
    """The timestamp `seconds` after SUITE_HOUR: the same string for the whole run."""
    return iso(SUITE_HOUR + seconds)


def day(offset: int) -> str:
    """'YYYY-MM-DDT' of the day `offset` days from the suite's day (negative: before it)."""
    return iso(SUITE_DAY + offset * DAY)[:11]


def tid(n: int | str) -> str:
    """A stable track uuid for a small integer or name, so tests read like A->B."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"track:{n}"))


def event(
    session: str = "s1", track: int | str = 1, event_type: str = "play_10s", **extra: Any
) -> dict[str, Any]:
    return {"session_id": session, "track_id": tid(track), "event_type": event_type, **extra}


def session(sid: str, tracks: list[int], verdict: str = "play_10s", **meta: Any) -> list[dict]:
    """A radio session: each track starts and then gets the verdict."""
    out = []
    for t in tracks:
        out.append(event(sid, t, "play_start"))
        if verdict == "skip":
            out.append(event(sid, t, "skip", meta={"elapsed_ms": meta.get("elapsed_ms", 1000)}))
        else:
            out.append(event(sid, t, verdict))
    return out


TRACKS = 40  # radio_events' catalogue: small, so edges repeat


def radio_events(n_sessions: int, seed: int, prefix: str = "s") -> list[dict]:
    """Plausible radio sessions over a small catalogue, so edges repeat and sessions stay open."""
    rnd = random.Random(seed)
    out = []
    clock = 1_790_000_000.0 + seed * 3600  # explicit times: the same log folds the same way

    def at(**kw: Any) -> dict:
        nonlocal clock
        clock += rnd.uniform(1, 40)
        ts = datetime.fromtimestamp(clock, UTC).isoformat()
        return event(**kw, timestamp=ts)

    for s in range(n_sessions):
        sid = f"{prefix}{seed}-{s}"
        for _ in range(rnd.randint(2, 8)):
            t = rnd.randrange(TRACKS)
            out.append(at(session=sid, track=t, event_type="radio_next"))
            out.append(at(session=sid, track=t, event_type="play_start"))
            r = rnd.random()
            if r < 0.6:
                out.append(at(session=sid, track=t, event_type="play_10s"))
                if r < 0.1:
                    out.append(at(session=sid, track=t, event_type="like"))
            else:
                elapsed = rnd.randint(0, 40000)
                out.append(
                    at(session=sid, track=t, event_type="skip", meta={"elapsed_ms": elapsed})
                )
    return out
