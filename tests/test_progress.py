"""Progress bars (gravityd/progress.py): a bar on a terminal, plain lines anywhere else."""

from __future__ import annotations

import io
import os
import pty
import select
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gravityd import progress
from gravityd.commands import cli
from gravityd.progress import Progress, Stages

from .support import REPO, run_cli

YES_SAMPLE = REPO / "tests" / "data" / "yes_sample"


def test_lines_without_a_terminal() -> None:
    out = io.StringIO()
    with Progress(100, "simulate", unit="session", file=out, delay=0, interval=0) as bar:
        for n in (25, 50, 75, 100):
            bar.advance_to(n, postfix=f"{n * 10:,} events")
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert len(lines) >= 4 and all(line.startswith("simulate: ") for line in lines)
    assert "100% 100/100" in lines[-1] and "1,000 events" in lines[-1]
    assert text.endswith("\n") and "\n\n" not in text


def test_an_open_ended_job_counts_and_learns_its_total() -> None:
    out = io.StringIO()
    with Progress(None, "replay", unit="event", file=out, delay=0, interval=0) as bar:
        bar.update(10)
        assert "replay: 10 " in out.getvalue().splitlines()[-1]
        bar.set_total(40)
        bar.advance_to(40)
    assert "100% 40/40" in out.getvalue().splitlines()[-1]
    assert "\r" not in out.getvalue()


def test_short_jobs_print_nothing() -> None:
    out = io.StringIO()
    with Progress(1000, "quick", file=out) as bar:  # the default delay: far longer than this
        bar.update(1000)
    assert out.getvalue() == ""


def test_a_real_terminal_gets_a_bar_redrawn_in_place() -> None:
    master, slave = pty.openpty()
    try:
        with open(slave, "w", closefd=False) as tty:
            bar = Progress(10, "load", file=tty, delay=0, interval=0)
            assert bar.terminal
            for _ in range(10):
                bar.update()
            bar.close()
        data = b""
        while select.select([master], [], [], 0)[0]:  # all written already: read what is there
            data += os.read(master, 65536)
        text = data.decode()
    finally:
        os.close(master)
        os.close(slave)
    assert text.count("\r") >= 2 and "10/10" in text


def test_stages_open_one_meter_per_stage() -> None:
    out = io.StringIO()
    with Stages(file=out, units={"fold": "playlist"}) as stages:
        stages("fold", 5, 10)
        stages("fold", 10, 10)
        stages("score", 3, 3)
    assert out.getvalue() == ""  # both stages shorter than the delay
    progress_out = io.StringIO()
    s = Stages(file=progress_out)
    s.close()  # nothing opened: nothing to close
    assert progress_out.getvalue() == ""


@pytest.mark.process
def test_tqdm_disable_silences_it() -> None:
    """tqdm's own switch, read from the environment when tqdm is imported."""
    code = (
        "from gravityd.progress import Progress\n"
        "with Progress(10, 'job', delay=0, interval=0) as bar:\n"
        "    bar.update(10)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQDM_")}
    shown = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO
    )
    assert shown.returncode == 0 and "job: 100% 10/10" in shown.stderr
    quiet = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**env, "TQDM_DISABLE": "1"},
        cwd=REPO,
    )
    assert quiet.returncode == 0 and quiet.stderr == ""


@pytest.fixture
def every_step_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands' own meters, with no start delay and no interval, so they print."""
    monkeypatch.setattr(progress, "START_DELAY_S", 0.0)
    monkeypatch.setattr(progress, "LINE_INTERVAL_S", 0.0)


def plain_lines(err: str, prefix: str) -> list[str]:
    assert "\r" not in err, "a \\r frame in captured (non-terminal) output"
    return [line for line in err.splitlines() if line.startswith(prefix)]


def test_eval_writes_lines_not_frames(every_step_shown: None, capsys: Any) -> None:
    assert cli.main(["eval", str(YES_SAMPLE), "--max-transitions", "600"]) == 0
    cap = capsys.readouterr()
    assert "HR@10" in cap.out
    assert plain_lines(cap.err, "fold: ")[-1].startswith("fold: 100% 313/313")
    assert plain_lines(cap.err, "score: ")[-1].startswith("score: 100% 600/600")


def test_catalog_load_writes_lines_not_frames(
    every_step_shown: None, capsys: Any, tmp_path: Path
) -> None:
    from gravityd.log.sqlite_schema import connect_sync

    db = tmp_path / "events.db"
    connect_sync(db).close()
    song_hash = str(YES_SAMPLE / "song_hash.txt")
    assert cli.main(["catalog", "load", song_hash, "--db", str(db)]) == 0
    cap = capsys.readouterr()
    assert "loaded 300 tracks" in cap.out
    assert plain_lines(cap.err, "check: ")[-1].startswith("check: 300 ")
    assert plain_lines(cap.err, "write: ")[-1].startswith("write: 100% 300/300")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM tracks").fetchone()[0] == 300


@pytest.mark.process
def test_simulate_and_replay_write_lines_not_frames(
    every_step_shown: None, capsys: Any, daemon_factory: Any
) -> None:
    d = daemon_factory().start()
    assert cli.main(["simulate", "--url", d.url, "--sessions", "30"]) == 0
    cap = capsys.readouterr()
    assert "posted 30 sessions" in cap.out
    last = plain_lines(cap.err, "simulate: ")[-1]
    assert last.startswith("simulate: 100% 30/30") and " events" in last
    replay = ["simulate", "--url", d.url, "--replay", str(YES_SAMPLE), "--playlists", "50"]
    assert cli.main(replay) == 0
    cap = capsys.readouterr()
    with sqlite3.connect(d.db) as conn:
        replayed = conn.execute(
            "SELECT COUNT(*) FROM events WHERE session_id LIKE 'yes-%'"
        ).fetchone()[0]
    assert f"{replayed:,} events accepted" in cap.out
    assert plain_lines(cap.err, "replay: ")[-1].startswith(f"replay: 100% {replayed}/{replayed}")


@pytest.mark.process
def test_a_piped_simulate_has_no_carriage_returns(daemon_factory: Any) -> None:
    """As a user's log or CI sees it: the command's real defaults, stderr a pipe."""
    d = daemon_factory().start()
    res = run_cli("simulate", "--url", d.url, "--sessions", "40")
    assert res.returncode == 0, res.stderr
    assert "posted 40 sessions" in res.stdout
    assert "\r" not in res.stderr and "\r" not in res.stdout
