"""The end of the soak: the SQLite log against the ledger, every acknowledged event once."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

from .world import ACKED, REJECTED, UNKNOWN, UNSENT, Ledger


def check_log(db: Path, ledger: Ledger) -> dict[str, Any]:
    """Every acknowledged event_id exactly once, nothing we never sent, ids as answered."""
    counts = bytearray(len(ledger.state))
    prefix = ledger.prefix
    plen = len(prefix)
    foreign = rows = id_mismatch = 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        for row_id, event_id in conn.execute("SELECT id, event_id FROM events"):
            rows += 1
            if not event_id.startswith(prefix):
                foreign += 1
                continue
            try:
                n = int(event_id[plen:])
            except ValueError:
                foreign += 1
                continue
            if not 0 <= n < len(counts):
                foreign += 1
                continue
            if counts[n] < 255:
                counts[n] += 1
            want = ledger.ids[n]
            if want and want != row_id:
                id_mismatch += 1
    finally:
        conn.close()
    fate: Counter = Counter()
    for state, count in zip(ledger.state, counts, strict=True):
        fate[(state, min(count, 2))] += 1
    out = {
        "rows": rows,
        "generated": len(ledger.state),
        "acked": sum(v for (s, _), v in fate.items() if s == ACKED),
        "acked_present_once": fate[(ACKED, 1)],
        "lost": fate[(ACKED, 0)],
        "duplicated": sum(v for (_, c), v in fate.items() if c >= 2),
        "unknown_present": fate[(UNKNOWN, 1)] + fate[(UNKNOWN, 2)],
        "unknown_absent": fate[(UNKNOWN, 0)],
        "rejected_present": fate[(REJECTED, 1)] + fate[(REJECTED, 2)],
        "rejected_absent": fate[(REJECTED, 0)],
        "never_sent_present": fate[(UNSENT, 1)] + fate[(UNSENT, 2)],
        "never_sent": fate[(UNSENT, 0)],
        "foreign_rows": foreign,
        "single_id_mismatch": id_mismatch,
    }
    return out
