"""Prometheus access per autoscaler: spec.prometheus names a URL and a Secret in the object's own namespace;
the operator reads that Secret (one `get`, nothing listed or watched) and sends its token and headers to
that URL, never showing them; a Secret that is missing, elsewhere or malformed holds the count with an
auth failure on the object.

The kmock emulator for the API (Secrets included), a local fake of the Prometheus HTTP API that records the
headers it receives, and the operator's real telemetry source (`harmony.cli.operator.telemetry_source`).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import functools
import logging

import kmock
import pytest

from harmony.cli.operator import telemetry_source
from harmony.operator.app import read_secret
from harmony.telemetry.prometheus import PrometheusClient, PrometheusConfig
from tests.operator_support import (
    HA,
    VERBS,
    add_autoscaler,
    add_deployment,
    api_permissions,
    cluster,
    condition,
    make_reconciler,
    obj,
)
from tests.prometheus_server import FakePrometheusAPI, find_free_port, matrix

TOKEN = "team-a-token-0123"
INDICATORS = [{"name": "requests", "query": "sum(rate(requests_total[1m]))", "demand": True}]
AT_30_S = {"intervalSeconds": 30, "lookbackSeconds": 300, "historySeconds": 1200, "indicators": INDICATORS,
           "capacityPerReplica": 5.0, "sla": {"maxBreachProbability": 0.01, "coldStartSeconds": 30}}
NOW = dt.datetime(2026, 1, 5, 12, 0, tzinfo=dt.UTC)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def add_secret(k8s, namespace: str, name: str, data: dict[str, str]) -> None:
    k8s.objects["v1/secrets", namespace, name] = {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
        "data": {k: b64(v) for k, v in data.items()}}


def fresh_matrix() -> dict:
    """30 s samples up to NOW: a window fit to decide on."""
    end = NOW.timestamp()
    return matrix([(end - 30 * k, "12") for k in range(40, -1, -1)])


async def step(reconciler, k8s, namespace: str) -> dict:
    ha = obj(k8s, HA, namespace, "llm")
    outcome = await asyncio.to_thread(reconciler.reconcile, namespace, "llm", ha["metadata"]["uid"], 1, ha["spec"],
                                      None)
    return outcome.status


@pytest.mark.asyncio
async def test_the_autoscalers_secret_and_url_are_used_for_its_queries_and_never_shown(caplog):
    own = f"http://127.0.0.1:{find_free_port()}"  # the operator's own Prometheus: down, and not to be asked
    with FakePrometheusAPI([(200, fresh_matrix())]) as team:
        async with cluster(namespaces=("default", "team-a")) as (k8s, url):
            k8s.resources["v1/secrets"] = kmock.ResourceInfo(kind="Secret", namespaced=True, verbs=VERBS)
            add_secret(k8s, "team-a", "prom", {"token": TOKEN, "headers": "X-Scope-OrgID: team-a\n"})
            add_deployment(k8s, namespace="team-a", replicas=2)
            add_autoscaler(k8s, namespace="team-a", **AT_30_S,
                           prometheus={"url": team.url, "secretRef": {"name": "prom"}})
            source = telemetry_source(PrometheusClient(PrometheusConfig(own, retries=0, timeout_s=1)))
            reconciler = make_reconciler(url, source)
            reconciler.clock = lambda: NOW
            reconciler.secrets = functools.partial(read_secret, reconciler.kube)
            with caplog.at_level(logging.DEBUG):
                status = await step(reconciler, k8s, "team-a")
            assert condition(status, "ForecastReady")["status"] == "True", status["conditions"]
            sent = {k.lower(): v for k, v in team.requests[0][2].items()}
            assert sent["authorization"] == f"Bearer {TOKEN}" and sent["x-scope-orgid"] == "team-a"
            secrets = {p for p in api_permissions(k8s) if p[1] == "secrets"}
            assert secrets == {("", "secrets", "get")}  # one Secret, by name: nothing listed or watched
            assert TOKEN not in caplog.text and TOKEN not in str(status)


@pytest.mark.asyncio
@pytest.mark.parametrize(("where", "data", "message"), [
    ("default", {"token": TOKEN}, "Secret team-a/prom: not found"),  # in another namespace: not this object's
    ("team-a", {"headers": "[not, a, map]", "token": TOKEN}, "key 'headers' must be a YAML or JSON map"),
    ("team-a", {"username": "ops"}, "basic auth needs both keys"),
])
async def test_a_missing_foreign_or_malformed_secret_holds_with_an_auth_failure(where, data, message):
    with FakePrometheusAPI([(200, fresh_matrix())]) as team:
        async with cluster(namespaces=("default", "team-a")) as (k8s, url):
            k8s.resources["v1/secrets"] = kmock.ResourceInfo(kind="Secret", namespaced=True, verbs=VERBS)
            add_secret(k8s, where, "prom", data)
            add_deployment(k8s, namespace="team-a", replicas=3)
            add_autoscaler(k8s, namespace="team-a", **AT_30_S, mode="Scale",
                           prometheus={"url": team.url, "secretRef": {"name": "prom"}})
            reconciler = make_reconciler(url, telemetry_source(PrometheusClient(PrometheusConfig(team.url))))
            reconciler.clock = lambda: NOW
            reconciler.secrets = functools.partial(read_secret, reconciler.kube)
            status = await step(reconciler, k8s, "team-a")
            forecast = condition(status, "ForecastReady")
            assert forecast["status"] == "False" and forecast["reason"] == "AuthFailed"
            assert message in forecast["message"] and TOKEN not in str(status)
            assert status["currentReplicas"] == 3 and status["desiredReplicas"] == 3  # held
            assert team.requests == []  # no query without its credentials


@pytest.mark.asyncio
async def test_the_running_operator_reads_the_secret_through_its_own_api_client():
    """`harmony.operator.app.run` wires the Secret reader (the operator's API client): kopf on kmock."""
    import time

    from tests.operator_support import eventually, operator

    now = int(time.time())
    body = matrix([(float(t), "3") for t in range(now - 300, now + 300)])  # fresh for the test's minutes
    with FakePrometheusAPI([(200, body)]) as team:
        async with cluster(namespaces=("default", "team-a")) as (k8s, url):
            k8s.resources["v1/secrets"] = kmock.ResourceInfo(kind="Secret", namespaced=True, verbs=VERBS)
            add_secret(k8s, "team-a", "prom", {"token": TOKEN})
            add_deployment(k8s, namespace="team-a", replicas=2)
            add_autoscaler(k8s, namespace="team-a", mode="Recommend",
                           prometheus={"url": team.url, "secretRef": {"name": "prom"}})
            own = f"http://127.0.0.1:{find_free_port()}"
            reconciler = make_reconciler(url, telemetry_source(PrometheusClient(PrometheusConfig(own, retries=0))))
            assert reconciler.secrets is None
            async with operator(reconciler, url):
                sent = await eventually(lambda: team.requests and {k.lower(): v
                                                                   for k, v in team.requests[0][2].items()})
                ready = await eventually(lambda: condition(obj(k8s, HA, "team-a", "llm").get("status", {}),
                                                           "ForecastReady"))
            assert sent["authorization"] == f"Bearer {TOKEN}"
            assert ready["status"] == "True", ready
