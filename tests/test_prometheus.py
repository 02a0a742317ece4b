"""The alerts and the dashboard against a real Prometheus scraping a real daemon.

Debian's `prometheus` package (`prometheus` and `promtool`; `.ci/run` installs it). Without it
these tests skip with that reason, except under CI (CI=true), where a missing binary fails.
The dashboard's shape is checked without Prometheus.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from .support import REPO, Daemon, event, free_port, tid

pytestmark = [pytest.mark.prometheus, pytest.mark.process]

ALERTS = REPO / "config" / "prometheus" / "alerts.yml"
DASHBOARD = REPO / "config" / "grafana" / "gravityd.json"
# Metrics a dashboard panel may name before the daemon exports them (a change adding them is
# under way); once /metrics carries one, its query must return data like every other. None now:
# gravityd_radio_transitions_total came with the radio's scoreboard.
PENDING_METRICS: set[str] = set()
# Grafana's variables, as Grafana would fill them with "All" instances over a short range.
GRAFANA_VARS = {"$__rate_interval": "30s", "$instance": ".+"}
T = TypeVar("T")


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        reason = f"no {name}: apt-get install prometheus"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def dashboard_panels(model: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those folded inside rows."""
    for panel in model["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs(model: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of the dashboard."""
    return [(p["title"], t["expr"]) for p in dashboard_panels(model) for t in p.get("targets", [])]


def grafana_to_promql(expr: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"a Grafana variable the test does not fill: {expr}"
    return expr


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bgravityd_[a-z0-9_]+", expr))


def exported_families() -> set[str]:
    """Sample names the daemon can export: each metric of gravityd/daemon/metrics.py, its series."""
    from gravityd.daemon.metrics import Metrics

    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        names.update(f"{family.name}{s}" for s in ("_total", "_bucket", "_count", "_sum"))
    return names


# ------------------------------------------------------------------- without Prometheus


def test_dashboard_is_a_grafana_model_of_the_real_metrics() -> None:
    model = json.loads(DASHBOARD.read_text())
    assert model["uid"] == "gravityd" and model["schemaVersion"] >= 36
    assert {v["name"] for v in model["templating"]["list"]} == {"datasource", "instance"}
    panels = list(dashboard_panels(model))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in panels:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        pos = p["gridPos"]
        assert pos["x"] + pos["w"] <= 24 and pos["w"] > 0 and pos["h"] > 0, p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
    known = exported_families() | PENDING_METRICS
    exprs = dashboard_exprs(model)
    for title, expr in exprs:
        unknown = metric_names(expr) - known
        assert not unknown, f"{title}: no such metric {unknown}"
    every = " ".join(e for _, e in exprs)
    for needed in (
        "gravityd_events_accepted_total",  # ingest rate
        "gravityd_events_rejected_total",  # rejects by reason
        "gravityd_fold_lag_seconds",
        "gravityd_graph_edges",
        "gravityd_snapshot_age_seconds",
        "gravityd_request_seconds_bucket",  # latency quantiles by route
        "gravityd_event_loop_lag_seconds_bucket",
        "gravityd_radio_transitions_total",  # the radio's skip rate
    ):
        assert needed in every, needed


def test_alerts_name_real_metrics() -> None:
    rules = alert_rules()
    names = {r["alert"] for r in rules}
    assert {
        "GravitydNotReady",
        "GravitydFoldLagging",
        "GravitydSnapshotStale",
        "GravitydCommitErrors",
        "GravitydFoldErrors",
        "GravitydRequestsSlow",
    } <= names
    known = exported_families()
    for rule in rules:
        assert not metric_names(rule["expr"]) - known, rule["alert"]
        assert rule["labels"]["severity"] and rule["annotations"]["summary"], rule["alert"]


async def test_metrics_have_no_created_series(client: Any) -> None:
    await client.post("/events", json=[event("s1", 1), event("s1", 2)])
    await client.post("/admin/fold")
    resp = await client.get("/metrics")
    text = await resp.text()
    assert resp.status == 200 and "gravityd_events_accepted_total 2.0" in text
    assert "gravityd_request_seconds_count{" in text  # histograms and counters are there...
    assert "_created" not in text  # ...without their _created twins


def test_promtool_accepts_the_rules() -> None:
    res = subprocess.run(
        [binary("promtool"), "check", "rules", str(ALERTS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in res.stdout


# ---------------------------------------------------------------------- with Prometheus


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    """Poll one of Prometheus's own APIs until `probe` returns something, within a deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            got = probe()
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            got, last = None, exc
        if got is not None:
            return got
        time.sleep(0.2)  # polling another process's HTTP API: there is no signal to wait on
    raise TimeoutError(f"{what} within {timeout:.0f} s (last error: {last})")


class Prometheus:
    """A real Prometheus on a loopback port, with its own data folder, scraping one daemon."""

    def __init__(self, tmp_path: Path, target: str, rules: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.folder = tmp_path / "prometheus"
        self.folder.mkdir()
        self.config = self.folder / "prometheus.yml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(rules)],
                    "scrape_configs": [
                        {"job_name": "gravityd", "static_configs": [{"targets": [target]}]}
                    ],
                }
            )
        )
        self.log = self.folder / "prometheus.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Prometheus:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    binary("prometheus"),
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.folder / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=log,
            )
        wait_for("Prometheus ready", self._ready)
        return self

    def _ready(self) -> bool | None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"prometheus exited: {self.log.read_text()}")
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                return True if r.status == 200 else None
        except urllib.error.HTTPError:
            return None  # 503 while it starts

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/PATH; the `data` of a success, AssertionError with Prometheus's error."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read())
        assert body["status"] == "success", f"{params}: {body.get('error')}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.api("query", query=expr)["result"]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def call(url: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def little_load(url: str) -> int:
    """Every stage once or more: ingest (with rejects), fold, reads, rank, a snapshot; returns
    the events accepted."""
    events = []
    for i in range(20):
        for t in (1, 2, 3):
            events += [event(f"s{i}", t, "play_start"), event(f"s{i}", t, "play_10s")]
    for i, arm in enumerate(("radio:control", "radio:gravity") * 2):  # the radio's scoreboard
        events.append(event(f"r{i}", 9, "radio_next", context=arm))
        verdict = {"meta": {"elapsed_ms": 1500}} if i < 2 else {}
        events.append(event(f"r{i}", 9, "skip" if i < 2 else "play_10s", **verdict))
    status, body = call(url + "/events", "POST", events)
    assert status == 202 and body["accepted"] == len(events), body
    bad = [event("s-bad", 1), {**event("s-bad", 2), "track_id": "not-a-uuid"}]
    status, body = call(url + "/events", "POST", bad)
    assert status == 202 and body["rejected"][0]["error"]["code"] == "invalid_track_id", body
    assert call(url + "/event", "POST", event("s-one", 4))[0] == 202
    accepted = len(events) + 2
    assert call(url + "/admin/fold", "POST")[0] == 200
    for _ in range(5):
        assert call(f"{url}/tracks/{tid(1)}/gravity_neighbors")[0] == 200
    scores = {tid(2): 0.5, tid(3): 0.4}
    rank = {"current_track_id": tid(1), "candidate_track_ids": list(scores)}
    rank["embeddings_scores"] = scores
    assert call(url + "/rank", "POST", rank)[0] == 200
    assert call(url + "/stats")[0] == 200
    status, body = call(url + "/admin/snapshot", "POST")
    assert status == 200, body
    return accepted


@pytest.fixture
def scraped(daemon_factory: Any, tmp_path: Path) -> Iterator[tuple[Daemon, Prometheus]]:
    binary("prometheus")
    daemon = daemon_factory().start()
    prom = Prometheus(tmp_path, f"127.0.0.1:{daemon.port}", ALERTS)
    try:
        prom.start()
        yield daemon, prom
    finally:
        prom.stop()


def test_dashboard_and_alerts_on_a_real_prometheus(scraped: tuple[Daemon, Prometheus]) -> None:
    daemon, prom = scraped

    def target_up() -> dict[str, Any] | None:
        active = prom.api("targets")["activeTargets"]
        return next((t for t in active if t["health"] == "up"), None)

    target = wait_for("the daemon's target up", target_up)
    assert target["labels"]["job"] == "gravityd"
    rules_loaded = prom.api("rules")["groups"]
    assert {r["name"] for g in rules_loaded for r in g["rules"]} == {
        r["alert"] for r in alert_rules()
    }
    accepted = little_load(daemon.url)
    loaded_at = datetime.now(UTC)

    # Every dashboard query returns data once Prometheus has scraped the load.
    model = json.loads(DASHBOARD.read_text())
    with urllib.request.urlopen(daemon.url + "/metrics") as r:
        exposition = r.read().decode()
    for title, expr in dashboard_exprs(model):
        promql = grafana_to_promql(expr)
        pending = {m for m in metric_names(expr) & PENDING_METRICS if m not in exposition}
        if pending:
            prom.query(promql)  # must still parse and evaluate
            continue
        wait_for(f"data for {title!r}: {promql}", lambda q=promql: prom.query(q) or None)
    variable = model["templating"]["list"][1]["definition"]  # label_values(METRIC, instance)
    metric = re.fullmatch(r"label_values\((\w+), instance\)", variable)
    assert metric is not None and prom.query(metric.group(1))

    # prometheus-client's _created series are switched off.
    assert prom.query('{__name__=~"gravityd_.*_created"}') == []
    counted = "gravityd_events_accepted_total == bool " + str(accepted)
    wait_for("the load scraped", lambda: prom.query(counted)[0]["value"][1] == "1" or None)

    # Every alert expression evaluates; nothing fires on a healthy daemon.
    for rule in alert_rules():
        prom.query(rule["expr"])

    def evaluated_after_load() -> bool | None:
        groups = prom.api("rules")["groups"]
        return all(datetime.fromisoformat(g["lastEvaluation"]) > loaded_at for g in groups) or None

    wait_for("a rule evaluation after the load", evaluated_after_load)
    firing = [a["labels"]["alertname"] for a in prom.api("alerts")["alerts"]]
    assert firing == []  # none firing, none pending: no rule's condition holds

    # A snapshot folder that cannot be written: the write fails, the counter rises, and the
    # real rule fires.
    snaps = daemon.db.parent / "snapshots"
    shutil.rmtree(snaps)
    snaps.write_text("not a folder")
    status, body = call(daemon.url + "/admin/snapshot", "POST")
    assert status == 503 and body["error"]["code"] == "snapshot_failed", body

    def snapshot_alert() -> dict[str, Any] | None:
        alerts = prom.api("alerts")["alerts"]
        return next(
            (
                a
                for a in alerts
                if a["labels"]["alertname"] == "GravitydSnapshotFailing" and a["state"] == "firing"
            ),
            None,
        )

    alert = wait_for("GravitydSnapshotFailing firing", snapshot_alert)
    assert alert["labels"]["severity"] == "warning"
    assert alert["labels"]["instance"] == f"127.0.0.1:{daemon.port}"
    assert "failed to write a snapshot" in alert["annotations"]["summary"]
