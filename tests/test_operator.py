"""The operator against the kmock Kubernetes emulator: scaling, recommending, faults, restart, sharding.

Telemetry comes from a scripted source passed to the Reconciler (the Prometheus path has its own tests
with a real server, and the end-to-end test joins them).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import threading
import time

import kmock
import numpy as np
import pytest

from harmony.errors import HarmonyInputError
from harmony.operator.app import OperatorSettings, first_delay_s
from harmony.operator.kube import ApiError, KubeClient
from tests.operator_support import (
    ScriptedTelemetry,
    add_autoscaler,
    add_deployment,
    add_peering,
    api_create,
    cluster,
    condition,
    events,
    eventually,
    fail_first_write,
    make_reconciler,
    obj,
    operator,
    operator_thread,
    replicas,
    status,
)

pytestmark = pytest.mark.asyncio


async def test_scale_mode_scales_the_deployment_and_reports_status_events_and_metrics():
    telemetry = ScriptedTelemetry(level=6.5)
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s)
        rec = make_reconciler(url, telemetry)
        async with operator(rec, url):
            await eventually(lambda: replicas(k8s) >= 7)
            st = await eventually(lambda: status(k8s).get("lastDecision") and status(k8s))
        assert st["desiredReplicas"] >= 7 and st["observedGeneration"] == 1
        assert condition(st, "Ready")["status"] == "True"
        assert condition(st, "ForecastReady")["status"] == "True"
        assert condition(st, "AbleToScale")["status"] == "True"
        assert st["posterior"]["decisions"] >= 1 and "capacity" in st["posterior"]
        assert 0 <= st["lastDecision"]["breachProbability"] <= 0.01
        scaled = [e for e in events(k8s) if e.get("reason") == "ScaledUp"]
        assert scaled and "llm-server: 2 ->" in scaled[0]["message"]
        assert scaled[0]["involvedObject"]["kind"] == "HarmonyAutoscaler"
        labels = {"autoscaler_namespace": "default", "autoscaler": "llm"}
        assert rec.metrics.registry.get_sample_value("harmony_recommended_replicas", labels) >= 7
        assert rec.metrics.registry.get_sample_value("harmony_scale_events_total", {**labels, "direction": "up"}) >= 1
        assert 0 <= rec.metrics.registry.get_sample_value("harmony_telemetry_age_seconds", labels) < 5


async def test_recommend_mode_writes_status_but_never_touches_the_target():
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s, mode="Recommend")
        rec = make_reconciler(url, ScriptedTelemetry(level=9.5))
        async with operator(rec, url):
            st = await eventually(lambda: status(k8s).get("desiredReplicas", 0) >= 10 and status(k8s))
            await asyncio.sleep(1.5)
        assert st["recommendedReplicas"] >= 10
        assert replicas(k8s) == 2
        assert not k8s[kmock.method.PATCH, kmock.subresource("scale")]  # no write to any scale subresource


async def test_prometheus_down_holds_the_count_with_a_reason():
    telemetry = ScriptedTelemetry(level=0.3)
    telemetry.stale_reason = "prometheus-unavailable: http://prometheus:9090 refused the connection"
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=5)
        add_autoscaler(k8s)
        rec = make_reconciler(url, telemetry)
        async with operator(rec, url):
            st = await eventually(lambda: status(k8s).get("posterior", {}).get("decisions", 0) >= 3 and status(k8s))
        assert replicas(k8s) == 5  # never scaled down on missing data
        forecast = condition(st, "ForecastReady")
        assert forecast["status"] == "False" and forecast["reason"] == "PrometheusUnavailable"
        # holding for want of telemetry is not Ready: the step could not decide
        ready = condition(st, "Ready")
        assert ready["status"] == "False" and ready["reason"] == "PrometheusUnavailable"
        assert st["lastDecision"]["reason"] == "hold-telemetry-stale"
        errors = rec.metrics.registry.get_sample_value(
            "harmony_telemetry_errors_total", {"autoscaler_namespace": "default", "autoscaler": "llm",
                                               "reason": "prometheus-unavailable"})
        assert errors >= 3


async def test_all_nan_telemetry_holds_too():
    telemetry = ScriptedTelemetry(level=0.3)
    telemetry.all_nan = True
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=4)
        add_autoscaler(k8s)
        async with operator(make_reconciler(url, telemetry), url):
            st = await eventually(lambda: status(k8s).get("posterior", {}).get("decisions", 0) >= 2 and status(k8s))
        assert replicas(k8s) == 4
        assert condition(st, "ForecastReady")["reason"] == "TelemetryMissing"


async def test_missing_target_sets_a_condition_and_recovers_when_it_appears():
    async with cluster() as (k8s, url):
        add_autoscaler(k8s)
        async with operator(make_reconciler(url, ScriptedTelemetry(level=3.5)), url):
            st = await eventually(lambda: condition(status(k8s), "AbleToScale"))
            assert st["status"] == "False" and st["reason"] == "TargetNotFound"
            add_deployment(k8s, replicas=1)
            await eventually(lambda: condition(status(k8s), "AbleToScale")["status"] == "True")
            await eventually(lambda: replicas(k8s) >= 4)


async def test_a_409_conflict_is_retried_on_the_fresh_object():
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s)
        # the first scale write loses a race with another writer
        fail_first_write(k8s, "scale", 409, "Conflict", "the object has been modified")
        async with operator(make_reconciler(url, ScriptedTelemetry(level=6.5)), url):
            await eventually(lambda: replicas(k8s) >= 7)
        scale_reads = [r for r in k8s[kmock.method.GET, kmock.subresource("scale")]]
        assert len(scale_reads) >= 2  # read, conflict, read again, write


async def test_restart_continues_from_status_without_a_jump():
    telemetry = ScriptedTelemetry(level=8.5)
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s, behavior={"scaleDownStabilizationSeconds": 30})
        async with operator(make_reconciler(url, telemetry), url):
            await eventually(lambda: replicas(k8s) >= 9)
        before = status(k8s)["posterior"]
        peak = replicas(k8s)
        telemetry.level = 1.0  # demand falls while the operator is down
        restarted = make_reconciler(url, telemetry)  # a new process: empty caches
        async with operator(restarted, url):
            await eventually(lambda: status(k8s)["posterior"]["decisions"] >= before["decisions"] + 3)
        assert replicas(k8s) == peak  # the stabilisation window came back from status: no scale-down yet
        after = status(k8s)["posterior"]
        assert after["capacity"]["kappa"] == pytest.approx(before["capacity"]["kappa"])


async def test_a_quick_restart_waits_out_the_interval_of_the_last_decision():
    telemetry = ScriptedTelemetry(level=4.5)
    interval = 15
    name = "restart-306"  # its uid's startup offset is 0.1% of the interval: the first start decides at once
    assert first_delay_s(None, interval, dt.datetime.now(dt.UTC), f"uid-default-{name}", True) < 0.1
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s, name=name, intervalSeconds=interval)
        async with operator(make_reconciler(url, telemetry), url):
            await eventually(lambda: status(k8s, name)["posterior"]["decisions"] >= 1)
        last = status(k8s, name)["lastDecision"]["time"]
        decided = status(k8s, name)["posterior"]["decisions"]
        async with operator(make_reconciler(url, telemetry), url):
            await eventually(lambda: status(k8s, name)["posterior"]["decisions"] > decided, timeout=2 * interval)
        again = status(k8s, name)["lastDecision"]["time"]
    # The restarted daemon kept the object's cadence: its first decision came a whole interval after the last
    # one (times are written to the second), not as soon as it started (a restart takes a few seconds here).
    gap = (dt.datetime.fromisoformat(again) - dt.datetime.fromisoformat(last)).total_seconds()
    assert gap >= interval - 1


async def test_first_delay_keeps_the_cadence_after_a_restart_and_spreads_a_startup_burst():
    now = dt.datetime(2026, 1, 1, 12, 0, 30, tzinfo=dt.UTC)
    recent = {"lastDecision": {"time": "2026-01-01T12:00:20Z"}}
    assert first_delay_s(recent, 30.0, now, "uid-a", at_startup=True) == pytest.approx(20.0)
    assert first_delay_s(recent, 30.0, now, "uid-a", at_startup=False) == pytest.approx(20.0)
    old = {"lastDecision": {"time": "2026-01-01T11:00:00Z"}}
    assert first_delay_s(old, 30.0, now, "uid-a", at_startup=False) == 0.0  # a new or long-idle object: at once
    for broken in ({"lastDecision": {"time": "yesterday"}}, {"lastDecision": None}, None,
                   {"lastDecision": {"time": "2026-01-01T12:05:00Z"}}):  # unparseable, absent, in the future
        assert first_delay_s(broken, 30.0, now, "uid-a", at_startup=False) == 0.0
    delays = np.array([first_delay_s(old, 30.0, now, f"uid-default-ha-{i}", at_startup=True) for i in range(500)])
    assert delays.min() >= 0.0 and delays.max() < 30.0
    assert first_delay_s(old, 30.0, now, "uid-default-ha-7", True) == delays[7]  # stable per object
    counts, _ = np.histogram(delays, bins=10, range=(0.0, 30.0))
    assert counts.max() <= 80  # spread over the interval: about 50 objects per 3 s, none of it all at once


async def test_invalid_spec_is_reported_and_nothing_is_scaled():
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=3)
        add_autoscaler(k8s, minReplicas=10, maxReplicas=2)
        async with operator(make_reconciler(url, ScriptedTelemetry(level=9.0)), url):
            st = await eventually(lambda: condition(status(k8s), "InvalidSpec") and status(k8s))
        assert condition(st, "Ready")["status"] == "False"
        assert "minReplicas" in condition(st, "InvalidSpec")["message"]
        assert replicas(k8s) == 3


async def test_shards_by_label_selector_share_work_without_overlap():
    async with cluster() as (k8s, url):
        add_deployment(k8s, name="a-server", replicas=1)
        add_deployment(k8s, name="b-server", replicas=1)
        add_autoscaler(k8s, name="a", labels={"shard": "a"},
                       scaleTargetRef={"apiVersion": "apps/v1", "kind": "Deployment", "name": "a-server"})
        add_autoscaler(k8s, name="b", labels={"shard": "b"},
                       scaleTargetRef={"apiVersion": "apps/v1", "kind": "Deployment", "name": "b-server"})
        rec_a = make_reconciler(url, ScriptedTelemetry(level=3.5))
        rec_b = make_reconciler(url, ScriptedTelemetry(level=5.5))
        async with operator_thread(rec_a, url, OperatorSettings(selector={"shard": "a"})), \
                operator_thread(rec_b, url, OperatorSettings(selector={"shard": "b"})):
            await eventually(lambda: replicas(k8s, "a-server") >= 4 and replicas(k8s, "b-server") >= 6)
        assert set(rec_a.forecasters) == {"uid-default-a"}
        assert set(rec_b.forecasters) == {"uid-default-b"}


async def test_a_namespaced_operator_serves_only_its_namespaces_without_listing_namespaces():
    async with cluster(namespaces=("default", "prod", "staging")) as (k8s, url):
        for ns in ("default", "prod", "staging"):
            add_deployment(k8s, namespace=ns, replicas=1)
            add_autoscaler(k8s, namespace=ns)
        rec = make_reconciler(url, ScriptedTelemetry(level=4.5))
        async with operator(rec, url, OperatorSettings(namespaces=("prod", "staging"))):
            await eventually(lambda: replicas(k8s, namespace="prod") >= 5 and replicas(k8s, namespace="staging") >= 5)
        assert replicas(k8s, namespace="default") == 1
        assert set(rec.forecasters) == {"uid-prod-llm", "uid-staging-llm"}
        # exact names need no cluster-wide Namespace list (which a namespaced install's Roles do not grant)
        assert not [r for r in k8s if str(r.url).split("?")[0].endswith("/api/v1/namespaces")]


async def test_a_glob_namespace_serves_matching_namespaces_including_new_ones():
    async with cluster(namespaces=("team-a", "other")) as (k8s, url):
        for ns in ("team-a", "other"):
            add_deployment(k8s, namespace=ns, replicas=1)
            add_autoscaler(k8s, namespace=ns)
        rec = make_reconciler(url, ScriptedTelemetry(level=4.5))
        async with operator(rec, url, OperatorSettings(namespaces=("team-*",))):
            await eventually(lambda: replicas(k8s, namespace="team-a") >= 5)
            # a namespace created while the operator runs is served as soon as it matches. Its objects are put
            # in place first, so that kopf's first list of the new namespace finds them (the emulator sends
            # no watch event for objects stored directly, and none for a creation between a list and a watch)
            add_deployment(k8s, namespace="team-b", replicas=1)
            add_autoscaler(k8s, namespace="team-b")
            await api_create(url, "/api/v1/namespaces",
                             {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-b"}})
            await eventually(lambda: replicas(k8s, namespace="team-b") >= 5)
        assert replicas(k8s, namespace="other") == 1
        assert set(rec.forecasters) == {"uid-team-a-llm", "uid-team-b-llm"}
        # a glob needs the cluster-wide Namespace list and watch (a ClusterRole, unlike exact names)
        assert [r for r in k8s if str(r.url).split("?")[0].endswith("/api/v1/namespaces")]


PEERINGS = "kopf.dev/v1/clusterkopfpeerings"


def peer_priorities(k8s, name="harmony") -> list[int]:
    """Priorities of the operators whose keep-alive is in the peering object (kopf writes one entry each)."""
    peers = obj(k8s, PEERINGS, None, name).get("status") or {}
    return sorted(peer["priority"] for peer in peers.values() if peer)


def decisions(k8s) -> int:
    return status(k8s).get("posterior", {}).get("decisions", 0)


async def test_peered_replicas_never_both_scale():
    async with cluster() as (k8s, url):
        add_peering(k8s)
        add_deployment(k8s, replicas=1)
        add_autoscaler(k8s)
        leader = make_reconciler(url, ScriptedTelemetry(level=4.5))
        standby = make_reconciler(url, ScriptedTelemetry(level=9.5))
        shard = {"peering": "harmony"}
        async with contextlib.AsyncExitStack() as outlives_leader:
            async with operator_thread(leader, url, OperatorSettings(**shard, priority=100)):
                await eventually(lambda: replicas(k8s) >= 5)
                # a second replica of the same shard joins (a rolling update, a scaled operator Deployment) ...
                await outlives_leader.enter_async_context(
                    operator_thread(standby, url, OperatorSettings(**shard, priority=10)))
                await eventually(lambda: peer_priorities(k8s) == [10, 100])  # ... and both keep-alives are in
                # the leader steps 3 more times (1 s interval): an unpaused standby would have stepped as well
                before = decisions(k8s)
                await eventually(lambda: decisions(k8s) >= before + 3)
                assert leader.forecasters and not standby.forecasters  # the standby never reconciled
                assert replicas(k8s) < 10  # the standby's higher demand never reached the Deployment
            # it was paused, not stuck: once the stopped leader has left the peering, the standby takes over
            await eventually(lambda: peer_priorities(k8s) == [10])
            await eventually(lambda: standby.forecasters and replicas(k8s) >= 10)


async def test_peered_replicas_with_default_priorities_keep_one_working():
    """Two replicas of a shard started alike (as a Deployment starts them): kopf pauses every peer tied at the
    top priority, so the default priority is drawn per start and one replica keeps reconciling."""
    from harmony.cli.operator import operator_settings

    async with cluster() as (k8s, url):
        add_peering(k8s)
        add_deployment(k8s, replicas=1)
        add_autoscaler(k8s)
        first, second = (operator_settings(None, None, "harmony", "127.0.0.1", 0, 4) for _ in range(2))
        rec_a = make_reconciler(url, ScriptedTelemetry(level=4.5))
        rec_b = make_reconciler(url, ScriptedTelemetry(level=4.5))
        async with operator_thread(rec_a, url, first):
            await eventually(lambda: decisions(k8s) >= 1)
            async with operator_thread(rec_b, url, second):
                # both keep-alives are in the peering object, so each sees the other, at distinct priorities
                priorities = await eventually(lambda: len(peer_priorities(k8s)) == 2 and peer_priorities(k8s))
                assert priorities == sorted((first.priority, second.priority)) and priorities[0] != priorities[1]
                before = decisions(k8s)
                await eventually(lambda: decisions(k8s) >= before + 3)  # someone still works


async def test_an_api_error_is_counted_as_such_and_the_next_step_recovers():
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s)
        # the first status write fails on the server side
        fail_first_write(k8s, "status", 500, "InternalError", "etcd is sulking")
        rec = make_reconciler(url, ScriptedTelemetry(level=3.5))
        async with operator(rec, url):
            await eventually(lambda: status(k8s).get("posterior", {}).get("decisions", 0) >= 1)
        failures = rec.metrics.registry.get_sample_value(
            "harmony_reconcile_failures_total",
            {"autoscaler_namespace": "default", "autoscaler": "llm", "reason": "api-error"})
        assert failures == 1


async def test_a_hung_api_server_times_out_instead_of_holding_the_step():
    async def hang():
        await asyncio.sleep(30)

    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        k8s[kmock.method.GET, kmock.subresource("scale")] << hang
        kube = make_reconciler(url, ScriptedTelemetry()).kube
        kube.timeout_s = 0.3
        started = asyncio.get_running_loop().time()
        with pytest.raises(ApiError):
            await asyncio.to_thread(kube.get_scale, "apps/v1", "Deployment", "default", "llm-server")
        assert asyncio.get_running_loop().time() - started < 5  # urllib3 retries a GET a few times at most


async def test_the_kubernetes_calls_carry_the_configured_credentials():
    import kubernetes

    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s)
        cfg = kubernetes.client.Configuration(host=url, api_key={"BearerToken": "Bearer secret"})
        kube = KubeClient(kubernetes.client.ApiClient(cfg))
        scale = await asyncio.to_thread(kube.get_scale, "apps/v1", "Deployment", "default", "llm-server")
        await asyncio.to_thread(kube.patch_status, "default", "llm", {"observedGeneration": 1})
    assert scale.replicas == 2 and status(k8s)["observedGeneration"] == 1
    served = list(k8s[kmock.method.GET, kmock.subresource("scale")]) + list(k8s[kmock.method.PATCH])
    assert len(served) == 2 and all(r.headers.get("Authorization") == "Bearer secret" for r in served)


async def test_steps_of_different_objects_overlap_up_to_the_worker_count():
    workers, objects = 4, 7
    telemetry = ScriptedTelemetry(level=1.5)
    lock, in_flight, most = threading.Lock(), [0], [0]

    def slow_telemetry(spec, now):  # a slow Prometheus: the step waits on I/O, not on the CPU
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        try:
            time.sleep(0.5)
            return telemetry(spec, now)
        finally:
            with lock:
                in_flight[0] -= 1

    async with cluster() as (k8s, url):
        for i in range(objects):
            add_deployment(k8s, name=f"server-{i}", replicas=2)
            add_autoscaler(k8s, name=f"ha-{i}", scaleTargetRef={"apiVersion": "apps/v1", "kind": "Deployment",
                                                                "name": f"server-{i}"})
        async with operator(make_reconciler(url, slow_telemetry), url, OperatorSettings(workers=workers)):
            await eventually(lambda: all(status(k8s, f"ha-{i}").get("lastDecision") for i in range(objects)))
    assert most[0] == workers


async def test_an_emulator_without_a_request_log_serves_the_operator_and_retains_nothing():
    async with cluster(log_requests=False) as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s)
        async with operator(make_reconciler(url, ScriptedTelemetry(level=6.5)), url):
            await eventually(lambda: replicas(k8s) >= 7)
            await eventually(lambda: status(k8s).get("posterior", {}).get("decisions", 0) >= 2)
        assert not list(k8s[kmock.method.PATCH])  # served, then forgotten: no request costs more than the last


async def test_command_line_options_reach_the_operator_settings_and_the_kopf_login(tmp_path):
    from harmony.cli.operator import kopf_login, kube_configuration, operator_settings

    settings = operator_settings(["prod"], ["shard=a"], "harmony", "127.0.0.1", 9200, 3, priority=7)
    assert settings.namespaces == ("prod",) and settings.selector == {"shard": "a"}
    assert settings.peering == "harmony" and settings.priority == 7  # a peering priority, not an address
    # by default each start draws its own priority: kopf pauses every peer tied at the top
    drawn = {operator_settings(None, None, "harmony", "0.0.0.0", 9100, 16).priority for _ in range(20)}
    assert len(drawn) == 20 and min(drawn) >= 1
    assert (settings.metrics_addr, settings.metrics_port, settings.workers) == ("127.0.0.1", 9200, 3)
    with pytest.raises(HarmonyInputError, match="KEY=VALUE"):
        operator_settings(None, ["shard"], None, "0.0.0.0", 9100, 16)

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:6443', insecure-skip-tls-verify: true}}]\n"
        "users: [{name: u, user: {token: secret}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n")
    login = kopf_login(kube_configuration(kubeconfig))()
    assert login.server == "https://127.0.0.1:6443" and login.insecure
    assert login.token == "secret"  # kopf's watch authenticates as the client does


async def test_min_replicas_zero_scales_to_zero_when_idle_and_wakes_on_demand():
    """Scale to zero end to end: an idle workload is released to 0 replicas (after the stabilisation
    window), and demand brings it back; the Deployment's missing readyReplicas at zero reads as 0 ready."""
    telemetry = ScriptedTelemetry(level=0.0, noise=0.0)
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s, minReplicas=0, behavior={"scaleDownStabilizationSeconds": 2})
        rec = make_reconciler(url, telemetry)
        async with operator(rec, url):
            await eventually(lambda: replicas(k8s) == 0, timeout=30)
            limited = await eventually(lambda: condition(status(k8s), "ScalingLimited"))
            assert limited["status"] == "False", status(k8s)
            telemetry.level, telemetry.noise = 3.0, 0.05
            await eventually(lambda: replicas(k8s) >= 3, timeout=30)
