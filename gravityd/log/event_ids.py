"""Server-made event ids (UUIDv7), for events a client sent without one; both backends use them."""

from __future__ import annotations

import os
import time


def new_event_id() -> str:
    """A UUIDv7 (time-ordered), so server-assigned ids append at the right of the index."""
    return new_event_ids(1)[0]


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def new_event_ids(n: int) -> list[str]:
    """n UUIDv7s (RFC 9562: 48-bit Unix ms, version 7, 74 random bits, variant 0b10).

    Made in bulk for a group commit: one clock read, one urandom call and a few slices per id
    (about a sixth of the cost of building each from integers, which was a third of the
    writer's own work per event).
    """
    ms = time.time_ns() // 1_000_000
    t = f"{ms & 0xFFFF_FFFF_FFFF:012x}"
    head = f"{t[:8]}-{t[8:]}-7"
    rnd = os.urandom(10 * n).hex()  # 20 hex digits per id, 19 of them used (74 random bits + 2)
    var = _VARIANT
    return [
        f"{head}{r[:3]}-{var[r[3]]}{r[4:7]}-{r[7:19]}"
        for r in (rnd[i : i + 20] for i in range(0, 20 * n, 20))
    ]
