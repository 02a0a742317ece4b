"""The soak benchmark at smoke size: it checks correctness, not speed, so it can run in CI.

Twenty seconds of mixed load (ingest with duplicates, neighbors, rank, snapshots) on a real
daemon, then every acknowledged event_id must be in the log exactly once and no answer a 5xx.
No timing is asserted.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from .support import REPO

pytestmark = [pytest.mark.process]


def smoke(name: str) -> subprocess.CompletedProcess:
    """`python -m bench.NAME --smoke`: a bench at its smoke size; it must exit 0."""
    res = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--smoke"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def test_soak_smoke_loses_and_doubles_nothing() -> None:
    res = smoke("soak")
    assert "CORRECTNESS: OK (lost 0, duplicated 0, no 5xx)" in res.stdout
    assert "acknowledged" in res.stdout


def test_import_bench_smoke_prints_both_rates_and_checks_the_log() -> None:
    res = smoke("import")
    assert "CORRECTNESS: OK" in res.stdout
    assert "gravityd import --db:" in res.stdout and "raw executemany:" in res.stdout
    assert "ratio import/raw:" in res.stdout


def test_lanes_bench_smoke_prints_its_figures() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "bench.lanes", "--smoke"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "read, limit 10: kept" in res.stdout
    assert "after gc.freeze()" in res.stdout and "kept lanes" in res.stdout
