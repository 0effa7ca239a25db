"""The Grafana dashboards in deploy/helm/harmony/dashboards: provisioning-ready JSON, and every panel's PromQL
run against a real Prometheus scraping the real operator exporter.

Structure: a fixed, unique uid; `id: null`; no `__inputs` (that is the export-for-sharing format, which
file provisioning does not resolve); a `datasource` template variable of type datasource, used by every
panel and target as `${datasource}`.

Live: a kopf operator session against the kmock emulator with scripted telemetry (a scale-up, a telemetry
outage, an autoscaler capped below its demand, an invalid spec and a missing target, so every counter the
dashboards chart moves), its OperatorMetrics served by `serve()` and scraped every second by a real
Prometheus as the chart's ServiceMonitor has it scraped: `honor_labels: false`, with the target labels
prometheus-operator attaches (`namespace` the operator's own, `pod`, `service`, `container`, `endpoint`), so a
query selecting on a label a target overwrites would find nothing. Each target's query, with Grafana's
variables substituted, must parse and return at least one series with a finite value, and a positive one
unless MAY_BE_ZERO says zero is the right answer.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from pathlib import Path

import pytest
import requests

from harmony.operator.metrics import serve
from tests.helpers import poll_in_thread
from tests.operator_support import (
    ScriptedTelemetry,
    add_autoscaler,
    add_deployment,
    cluster,
    eventually,
    make_reconciler,
    operator,
    replicas,
)
from tests.prometheus_server import PrometheusServer, require_prometheus

DASHBOARDS = Path(__file__).resolve().parents[1] / "deploy" / "helm" / "harmony" / "dashboards"
NAMES = ("harmony-fleet.json", "harmony-autoscaler.json", "harmony-operator.json")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# Grafana's variables as a short test window sets them ($datasource is not part of a query).
VARIABLES = {
    "namespace": "default", "autoscaler": "llm",
    "__range": "1m", "__range_s": "60", "__range_ms": "60000",
    "__rate_interval": "30s", "__interval": "5s", "__interval_ms": "5000",
}
# Targets whose value is legitimately 0 at the end of the session (all others must show a positive value,
# so a panel that only ever charts counters created at 0 fails).
MAY_BE_ZERO = {
    ("harmony-fleet.json", "Desired - current replicas per autoscaler", "A"),  # settled: desired == current
    ("harmony-autoscaler.json", "Breach probability", "A"),  # default/llm gets all the capacity it asks for
    ("harmony-autoscaler.json", "Breach probability vs effective risk", "A"),
    ("harmony-autoscaler.json", "Telemetry errors and reconcile failures", "B"),  # default/llm never fails
}
VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
LABEL_VALUES = re.compile(r"^label_values\((.+),\s*(\w+)\)$")


def load(name: str) -> dict:
    return json.loads((DASHBOARDS / name).read_text())


def substitute(expr: str) -> str:
    def one(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in VARIABLES:
            raise AssertionError(f"unknown variable ${name} in {expr!r}")
        return VARIABLES[name]

    return VARIABLE.sub(one, expr)


def targets(board: dict):
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            yield panel, target


# ---------------------------------------------------------------------------------------- structure
def test_the_folder_holds_exactly_the_three_dashboards():
    assert sorted(p.name for p in DASHBOARDS.glob("*.json")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_dashboard_is_provisioning_ready(name):
    board = load(name)
    assert board["uid"] == name.removesuffix(".json")  # fixed: links and provisioning updates rely on it
    assert board["id"] is None
    assert "__inputs" not in board and "__requires" not in board
    assert 36 <= board["schemaVersion"] <= 41
    variables = {v["name"]: v for v in board["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    for v in variables.values():
        if v["type"] == "query":
            assert v["datasource"] == DATASOURCE, v["name"]
    assert board["panels"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["type"] in ("timeseries", "stat"), panel["title"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"] and panel.get("description"), panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]
            substitute(target["expr"])  # no variable the dashboard does not define
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24 and g["w"] > 0 and g["h"] > 0
    text = json.dumps(board)
    assert "${DS_" not in text  # no export-for-sharing placeholders


def test_uids_are_unique():
    uids = [load(n)["uid"] for n in NAMES]
    assert len(uids) == len(set(uids))


def test_per_autoscaler_dashboard_is_templated_on_namespace_and_autoscaler():
    variables = {v["name"]: v for v in load("harmony-autoscaler.json")["templating"]["list"]}
    assert variables["namespace"]["definition"].startswith("label_values(")
    assert variables["autoscaler"]["definition"].startswith("label_values(")
    assert "$namespace" in variables["autoscaler"]["definition"]
    for panel, target in targets(load("harmony-autoscaler.json")):
        assert 'autoscaler_namespace="$namespace"' in target["expr"] and 'autoscaler="$autoscaler"' in target["expr"], \
            panel["title"]
    fan = " ".join(t["expr"] for p, t in targets(load("harmony-autoscaler.json")) if "fan" in p["title"].lower())
    for q in ("0.1", "0.5", "0.9", "0.99"):
        assert f'quantile_level="{q}"' in fan
    assert "harmony_observed_demand" in fan


# --------------------------------------------------------------------------------------------- live
#: the target labels prometheus-operator gives the chart's ServiceMonitor target (its `namespace` is the operator's)
TARGET_LABELS = {"namespace": "harmony-system", "pod": "harmony-7d9f8-abcde", "service": "harmony-metrics",
                 "container": "operator", "endpoint": "metrics"}


class ServiceMonitorScrape(PrometheusServer):
    """The real Prometheus, scraping as prometheus-operator configures it for the chart's ServiceMonitor."""

    def config_text(self) -> str:
        lines = ["global:", f"  scrape_interval: {self.scrape_interval}",
                 f"  evaluation_interval: {self.scrape_interval}", "scrape_configs:"]
        for job, target in self.targets:
            lines += [f"  - job_name: {json.dumps(job)}", f"    scrape_timeout: {self.scrape_interval}",
                      "    honor_labels: false", "    static_configs:", f"      - targets: [{json.dumps(target)}]",
                      f"        labels: {json.dumps(TARGET_LABELS)}"]
        return "\n".join(lines) + "\n"


def instant(url: str, promql: str) -> dict:
    body = requests.get(url + "/api/v1/query", params={"query": promql}, timeout=5).json()
    assert body["status"] == "success", (promql, body)
    return body["data"]


@pytest.mark.asyncio
async def test_every_panel_query_returns_data_from_a_real_prometheus_scraping_the_operator():
    require_prometheus()
    telemetry = ScriptedTelemetry(level=6.5)
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s)  # default/llm: scales llm-server up
        add_deployment(k8s, name="capped-server", replicas=2)  # default/capped: held at maxReplicas, so its
        add_autoscaler(k8s, name="capped", maxReplicas=2,     # breach probability exceeds the risk limit
                       scaleTargetRef={"apiVersion": "apps/v1", "kind": "Deployment", "name": "capped-server"})
        add_autoscaler(k8s, name="broken", minReplicas=10, maxReplicas=2)  # invalid-spec failures
        add_autoscaler(k8s, name="orphan", scaleTargetRef={"apiVersion": "apps/v1", "kind": "Deployment",
                                                           "name": "missing"})  # target-not-found failures
        rec = make_reconciler(url, telemetry)
        http, _ = serve(rec.metrics, 0)
        prom = ServiceMonitorScrape([("harmony-operator", f"127.0.0.1:{http.server_address[1]}")],
                                    wait_for="harmony_autoscalers")
        try:
            await asyncio.to_thread(prom.__enter__)  # the emulator serves from this loop: never block it
            async with operator(rec, url):
                await eventually(lambda: replicas(k8s) >= 7)
                telemetry.stale_reason = "prometheus-unavailable: scripted outage"
                # the outage lasts until Prometheus has scraped the telemetry error it causes
                errors = await poll_in_thread(lambda: prom.query(OUTAGE_SCRAPED), timeout_s=30)
                assert errors, f"no scrape of {OUTAGE_SCRAPED!r} within 30 s of the outage"
                telemetry.stale_reason = None
                telemetry.level = 3.5  # demand falls: the last decisions go back to having a forecast
                # until every scraped family has samples and every query has data (rates and increases need
                # scrapes after the counters moved): polled, with the last survey reported on timeout
                missing, results = await poll_in_thread(lambda: survey(prom), timeout_s=60,
                                                        done=lambda got: not got[0] and not failures_of(got[1]))
                # the target's labels won (honor_labels false), and the object's own survived beside them
                collided = prom.query('harmony_desired_replicas{namespace="harmony-system", '
                                      'autoscaler_namespace="default", autoscaler="llm"}')
        finally:
            await asyncio.to_thread(prom.stop)
            http.shutdown()
            http.server_close()

    assert not missing, f"families without a positive sample: {missing}"
    assert collided, "no series showed the target's namespace beside the object's autoscaler_namespace"
    failures = failures_of(results)
    assert not failures, "\n".join(failures)
    assert len(results) >= 30


OUTAGE_SCRAPED = 'harmony_telemetry_errors_total{autoscaler_namespace="default", autoscaler="llm"} > 0'
#: families the session must move (each to a positive sample) before the dashboards' queries are judged
FAMILIES = ("harmony_telemetry_errors_total", "harmony_reconcile_failures_total", "harmony_scale_events_total",
            "harmony_forecast_demand")


def survey(prom: PrometheusServer) -> tuple[list[str], list[tuple[str, str, str, str]]]:
    """(families in FAMILIES without a positive sample, `run_all`'s results)."""
    return [f for f in FAMILIES if not prom.query(f"{f} > 0")], run_all(prom.url)


def failures_of(results: list[tuple[str, str, str, str]]) -> list[str]:
    return [f"{name} / {title} / {expr}: {why}" for name, title, expr, why in results if why]


def run_all(url: str) -> list[tuple[str, str, str, str]]:
    """Every dashboard's variable and panel queries: (dashboard, panel, query, failure or '')."""
    results = []
    for name in NAMES:
        board = load(name)
        for var in board["templating"]["list"]:
            if var["type"] != "query":
                continue
            metric, label = LABEL_VALUES.match(var["definition"]).groups()
            body = requests.get(f"{url}/api/v1/label/{label}/values", params={"match[]": substitute(metric)},
                                timeout=5).json()
            ok = body["status"] == "success" and VARIABLES[var["name"]] in body["data"]
            results.append((name, f"variable {var['name']}", var["definition"], "" if ok else json.dumps(body)))
        for panel, target in targets(board):
            expr = substitute(target["expr"])
            data = instant(url, expr)
            values = [float(r["value"][1]) for r in data["result"]] if data["resultType"] == "vector" else \
                [float(data["result"][1])]
            why = "" if any(math.isfinite(v) for v in values) else f"no finite value: {data['result']}"
            if not why and (name, panel["title"], target["refId"]) not in MAY_BE_ZERO and max(values) <= 0:
                why = f"all zero: {data['result']}"
            results.append((name, panel["title"], expr, why))
    return results
