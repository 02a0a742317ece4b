"""Simulation runs on one daemon: each run its own ids and arms, new and duplicate events
counted, and reads sent to a reader when the daemon is a writer (issue 22, item 2)."""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from collections import Counter
from typing import Any

import pytest

from gravityd.lab.simulate import (
    RADIOS,
    Run,
    World,
    embedding_order,
    oracle_order,
    run_session,
    verdicts,
)

from .support import run_cli

RANGE = "since=2000-01-01T00:00:00Z&until=9000-01-01T00:00:00Z"
SUMMARY = re.compile(r"(\d[\d,]*) events posted, (\d[\d,]*) new, (\d[\d,]*) duplicates")


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def fold(url: str) -> int:
    req = urllib.request.Request(url + "/admin/fold", method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())["cursor"]


def summary(stdout: str) -> tuple[int, int, int]:
    m = SUMMARY.search(stdout)
    assert m, stdout
    posted, new, dups = (int(g.replace(",", "")) for g in m.groups())
    return posted, new, dups


def label_of(stdout: str) -> str:
    m = re.search(r"--run (\S+)", stdout)
    assert m, stdout
    return m.group(1)


def report_arms(stdout: str) -> list[str]:
    """The arms of the `gravityd report` line the closed loop prints."""
    m = re.search(r"gravityd report --url (\S+) --arms (\S+)", stdout)
    assert m, stdout
    return m.group(2).split(",")


def simulated_verdicts(seed: int, sessions: int, radio: str) -> Counter[str]:
    """The skips and keeps of an in-process radio, as the simulator's listeners give them."""
    w = World(seed)
    order = embedding_order(w) if radio == "embedding" else oracle_order(w)
    return verdicts([run_session(w, seed, i, order, 0.0, radio) for i in range(sessions)])


def test_a_run_namespaces_its_ids_and_arms() -> None:
    w = World(0)
    a = run_session(w, 0, 3, embedding_order(w), 0.0, "embedding", Run("a").prefix("open"))
    b = run_session(w, 0, 3, embedding_order(w), 0.0, "embedding", Run("b").prefix("open"))
    a2 = run_session(w, 0, 3, embedding_order(w), 0.0, "embedding", Run("a").prefix("open"))
    ids = [e["event_id"] for s in a for e in s.events]
    assert ids == [e["event_id"] for s in a2 for e in s.events]  # same seed and label: same ids
    assert not set(ids) & {e["event_id"] for s in b for e in s.events}  # another label: new ones
    closed = Run("a").prefix("embedding")
    same_listeners = run_session(w, 0, 3, embedding_order(w), 0.0, "embedding", closed)
    assert not set(ids) & {e["event_id"] for s in same_listeners for e in s.events}
    assert {Run("a").arm(r) for r in RADIOS} == {f"radio:{r}@a" for r in RADIOS}


def test_two_runs_then_the_closed_loops_report_equals_the_simulators(daemon_factory: Any) -> None:
    """The quick start's open loop, then the closed loop, both with the default seed: nothing of
    the closed loop is a duplicate, and the report of its arms counts its sessions alone."""
    d = daemon_factory().start()
    first = run_cli("simulate", "--url", d.url, "--sessions", "24")
    assert first.returncode == 0, first.stderr
    posted, new, dups = summary(first.stdout)
    assert posted == new > 0 and dups == 0
    # the same seed and label again: every event is a duplicate, and the line says so
    again = run_cli("simulate", "--url", d.url, "--sessions", "24", "--run", label_of(first.stdout))
    assert again.returncode == 0, again.stderr
    assert summary(again.stdout) == (posted, 0, posted)
    loop = run_cli("simulate", "--url", d.url, "--closed-loop", "--sessions", "24", "--block", "12")
    assert loop.returncode == 0, loop.stderr
    posted, new, dups = summary(loop.stdout)
    assert posted == new > 0 and dups == 0
    run = label_of(loop.stdout)
    assert run != label_of(first.stdout)  # a fresh label per run
    fold(d.url)
    arms = [f"radio:{r}@{run}" for r in RADIOS]
    assert report_arms(loop.stdout) == arms[:2]
    q = urllib.parse.urlencode({"arms": ",".join(arms)})
    status, rep = get(f"{d.url}/radio/report?{RANGE}&{q}")
    assert status == 200, rep
    got = {a["context"]: a for a in rep["arms"]}
    for radio in RADIOS:
        assert got[f"radio:{radio}@{run}"]["transitions"] == 24 * 9, radio
    for radio in ("embedding", "oracle"):  # the in-process radios: the exact verdicts
        expect = simulated_verdicts(0, 24, radio)
        arm = got[f"radio:{radio}@{run}"]
        assert (arm["skipped"], arm["kept"]) == (expect["skipped"], expect["kept"]), radio
    # and every arm's counts are the ones the simulator printed
    printed = re.search(r"picks posted \(skipped/kept\): (.*)", loop.stdout)
    assert printed, loop.stdout
    counts = dict(item.split(" ") for item in printed.group(1).split(", "))
    assert counts == {arm: f"{got[arm]['skipped']}/{got[arm]['kept']}" for arm in arms}
    # the open loop's picks are under its own run's arm, not the closed loop's
    status, rep = get(f"{d.url}/radio/report?{RANGE}")
    contexts = {a["context"]: a["transitions"] for a in rep["arms"]}
    assert contexts[f"radio:embedding@{label_of(first.stdout)}"] == 24 * 9
    assert sum(contexts.values()) == 24 * 9 * 4


def test_simulate_at_a_writer_points_reads_at_a_reader(daemon_factory: Any, tmp_path: Any) -> None:
    writer = daemon_factory("--role", "writer").start()
    reader = daemon_factory("--role", "replica").start()
    alone = run_cli("simulate", "--url", writer.url, "--sessions", "5")
    assert alone.returncode == 0, alone.stderr
    assert "curl" not in alone.stdout
    assert "is a writer" in alone.stdout and "--read-url" in alone.stdout
    res = run_cli("simulate", "--url", writer.url, "--read-url", reader.url, "--sessions", "5")
    assert res.returncode == 0, res.stderr
    links = re.findall(r"curl -s (\S+/gravity_neighbors)", res.stdout)
    assert len(links) == 3 and all(u.startswith(reader.url + "/") for u in links)
    assert f"-XPOST {reader.url}/admin/fold" in res.stdout
    fold(reader.url)
    for link in links:  # every printed link answers, with the lanes of what was posted
        status, lanes = get(link)
        assert status == 200 and lanes, link
    # the closed loop needs a reader; with one, it ranks there and its report is exact
    no = run_cli(
        "simulate", "--url", writer.url, "--closed-loop", "--sessions", "4", "--block", "4"
    )
    assert no.returncode == 2 and len(no.stderr.strip().splitlines()) == 1, no.stderr
    assert "--read-url" in no.stderr and "Traceback" not in no.stderr
    args = ["--closed-loop", "--sessions", "8", "--block", "4", "--run", "ab"]
    loop = run_cli("simulate", "--url", writer.url, "--read-url", reader.url, *args)
    assert loop.returncode == 0, loop.stderr
    assert f"gravityd report --url {reader.url} --arms radio:embedding@ab,radio:gravity@ab" in (
        loop.stdout
    )
    fold(reader.url)
    status, rep = get(f"{reader.url}/radio/report?{RANGE}&arms=radio:oracle@ab")
    expect = simulated_verdicts(0, 8, "oracle")
    assert status == 200
    assert (rep["arms"][0]["skipped"], rep["arms"][0]["kept"]) == (
        expect["skipped"],
        expect["kept"],
    )
    # a replica takes no events: one line, exit 2, pointing at the writer's role
    bad = run_cli("simulate", "--url", reader.url, "--sessions", "1")
    assert bad.returncode == 2 and "is a replica" in bad.stderr, bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.process
def test_a_bad_run_label_or_url_is_one_line() -> None:
    for args in (["--run", "no spaces"], ["--run", "x" * 33], ["--url", "localhost:8080"]):
        res = run_cli("simulate", "--sessions", "1", *args)
        assert res.returncode == 2, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
