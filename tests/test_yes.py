"""The Yes.com replay is one: the offline fold and the replay to a daemon play the same songs,
in the same order, with the same events and the same spacing; only the clock's start differs."""

from __future__ import annotations

from pathlib import Path

from gravityd.core.events import ValidationLimits, validate_event
from gravityd.lab.yes import api_events, fold_events, load_yes, track_uuid

YES_SAMPLE = Path(__file__).parent / "data" / "yes_sample"
NOW = 1_900_000_000.0


def test_offline_and_posted_replays_play_the_same() -> None:
    ds = load_yes(YES_SAMPLE)
    posted = api_events(ds, 40, NOW)
    uuids = [track_uuid(i) for i in range(ds.n_songs)]
    offline = list(fold_events([songs for _, songs in ds.playlists[:40]], uuids))
    assert len(posted) == len(offline) == 40
    for api, fold in zip(posted, offline, strict=True):
        assert [(e["track_id"], e["event_type"]) for e in api] == [
            (e.track_id, e.event_type) for e in fold
        ]
        starts = [validate_event(e, ValidationLimits(), NOW).ts for e in api]
        assert [round(t - starts[0], 3) for t in starts] == [
            round(e.ts - fold[0].ts, 3) for e in fold
        ]
        assert max(starts) < NOW  # posted playlists end in the past
    assert len({e["event_id"] for p in posted for e in p}) == sum(len(p) for p in posted)
    assert api_events(ds, 40, NOW + 99)[0][0]["event_id"] == posted[0][0]["event_id"]
