"""Faults the operator must make visible, never hide: Prometheus answering but not with data, an Event it may
not post, another writer of the target's replicas, peering that pauses a shard, credentials in the
Prometheus URL, and command-line TLS flags that cannot work. Against the kmock emulator, with the real
PrometheusClient pointed at a local fake of the Prometheus API where the answer matters."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging

import kmock
import pytest
from typer.testing import CliRunner

from harmony.cli.operator import telemetry_source
from harmony.operator.app import (
    MISSING_OBJECT,
    OTHER_SHARD,
    SAME_PRIORITY,
    OperatorSettings,
    peering_conflict,
)
from harmony.operator.health import Health
from harmony.operator.reconcile import CONFLICTING_WRITER
from harmony.telemetry.prometheus import PrometheusClient, PrometheusConfig
from tests.operator_support import (
    DEPLOYMENTS,
    HA,
    ScriptedTelemetry,
    add_autoscaler,
    add_deployment,
    add_peering,
    cluster,
    condition,
    eventually,
    make_reconciler,
    obj,
    operator,
    operator_thread,
)
from tests.prometheus_server import FakePrometheusAPI, find_free_port

LABELS = {"namespace": "default", "autoscaler": "llm"}
SECRET = "hunter2-s3cret"


def replicas(k8s, name="llm-server"):
    return obj(k8s, DEPLOYMENTS, "default", name)["spec"]["replicas"]


def status(k8s, name="llm"):
    return obj(k8s, HA, "default", name).get("status", {})


def events(k8s) -> list[dict]:
    return [o.raw for (res, _, _), o in k8s.objects.items() if getattr(res, "plural", "") == "events"]


def counted(rec, family: str, reason: str) -> float:
    return rec.metrics.registry.get_sample_value(family, {**LABELS, "reason": reason}) or 0.0


def prometheus_source(url: str, health: Health | None = None):
    source = telemetry_source(PrometheusClient(PrometheusConfig(url, retries=0, timeout_s=2)))
    return health.watch_telemetry(source) if health is not None else source


async def step(rec, k8s, name="llm"):
    """One reconcile step, as the daemon runs it (in a thread: the emulator serves from this loop)."""
    body = obj(k8s, HA, "default", name)
    return await asyncio.to_thread(rec.reconcile, "default", name, body["metadata"]["uid"], 1, body["spec"],
                                   body.get("status"))


# --- 1. Prometheus answering, but not with data --------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.parametrize(("answer", "reason", "tag"), [
    ((200, "<html><body>Please sign in</body></html>"), "BadResponse", "bad-response"),  # a proxy's login page
    ((200, '{"status": "success", "data": {"resultType": "matr'), "BadResponse", "bad-response"),  # garbage JSON
    ((400, {"status": "error", "errorType": "bad_data", "error": "1:5: parse error: unclosed left parenthesis"}),
     "QueryRejected", "query-rejected"),
])
async def test_prometheus_answering_garbage_or_refusing_holds_and_says_why(answer, reason, tag):
    with FakePrometheusAPI([answer]) as prom:
        async with cluster() as (k8s, url):
            add_deployment(k8s, replicas=5)
            add_autoscaler(k8s)
            rec = make_reconciler(url, prometheus_source(prom.url))
            for _ in range(2):
                outcome = await step(rec, k8s)
    st = status(k8s)
    assert outcome.scaled_to is None and replicas(k8s) == 5  # held
    forecast, ready = condition(st, "ForecastReady"), condition(st, "Ready")
    assert forecast["status"] == "False" and forecast["reason"] == reason
    assert ready["status"] == "False" and ready["reason"] == reason
    assert prom.url in forecast["message"]  # names the server that answered so
    assert st["lastDecision"]["reason"] == "hold-telemetry-stale" and st["currentReplicas"] == 5
    assert counted(rec, "harmony_telemetry_errors_total", tag) == 2


@pytest.mark.asyncio
async def test_a_telemetry_source_that_raises_is_reported_on_the_object():
    def broken(spec, now):
        raise RuntimeError("exporter exploded")

    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=3)
        add_autoscaler(k8s)
        rec = make_reconciler(url, broken)
        await step(rec, k8s)
    forecast = condition(status(k8s), "ForecastReady")
    assert forecast["status"] == "False" and forecast["reason"] == "QueryFailed"
    assert "RuntimeError: exporter exploded" in forecast["message"]
    assert counted(rec, "harmony_telemetry_errors_total", "query-failed") == 1


# --- 4. Events forbidden -------------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_a_forbidden_event_is_counted_and_never_stops_the_status_write(caplog):
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s)
        k8s[kmock.method.POST, kmock.resource(plural="events")] << 403 << {
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
            "message": 'events is forbidden: User "system:serviceaccount:harmony:harmony" cannot create resource'}
        rec = make_reconciler(url, ScriptedTelemetry(level=6.5))
        with caplog.at_level(logging.WARNING, logger="harmony.operator"):
            outcome = await step(rec, k8s)
    assert outcome.scaled_to is not None and outcome.scaled_to >= 7 and replicas(k8s) == outcome.scaled_to
    st = status(k8s)
    assert st["currentReplicas"] == outcome.scaled_to and st["lastDecision"]["replicas"] == outcome.scaled_to
    assert condition(st, "Ready")["status"] == "True"
    assert counted(rec, "harmony_reconcile_failures_total", "event-failed") == 1
    assert rec.metrics.registry.get_sample_value("harmony_scale_events_total", {**LABELS, "direction": "up"}) == 1
    assert any("ScaledUp Event" in r.getMessage() and "403" in r.getMessage() for r in caplog.records)


# --- 5. another writer of the target's replicas ----------------------------------------------------------------
async def hpa_like_writer(k8s, stop: asyncio.Event, count: int, every_s: float = 0.3) -> None:
    """Another autoscaler on the same Deployment: whenever spec.replicas is not its count, it writes it."""
    key = (DEPLOYMENTS, "default", "llm-server")
    while not stop.is_set():
        if obj(k8s, *key)["spec"]["replicas"] != count:
            k8s.objects[key].patch({"spec": {"replicas": count}})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


def harmony_scale_writes(k8s) -> int:
    return len(list(k8s[kmock.method.PATCH, kmock.subresource("scale")]))


@pytest.mark.asyncio
async def test_another_writer_is_detected_reported_and_not_fought():
    """harmony wants 7+ replicas, an HPA-like writer sets 3 whenever it sees another count. harmony notices
    the foreign write, says so (condition, Warning Event, metric), writes nothing for its back-off (10
    intervals of 1 s here) and then tries once more, instead of writing every step."""
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s)  # Scale mode, 1 s interval, 5 s stabilisation: a 10 s back-off
        rec = make_reconciler(url, ScriptedTelemetry(level=6.5))
        stop = asyncio.Event()
        writer = asyncio.create_task(hpa_like_writer(k8s, stop, 3))
        try:
            async with operator(rec, url):
                able = await eventually(lambda: (c := condition(status(k8s), "AbleToScale"))
                                        and c["reason"] == CONFLICTING_WRITER and c)
                assert able["status"] == "False" and "another writer" in able["message"]
                first = status(k8s)["conflictingWriter"]
                assert first["replicas"] == 3 and first["backoffUntil"] > first["detected"]
                assert condition(status(k8s), "Ready")["reason"] == CONFLICTING_WRITER
                warnings = [e for e in events(k8s) if e.get("reason") == CONFLICTING_WRITER]
                assert warnings and warnings[0]["type"] == "Warning"
                assert "to 3 by another writer" in warnings[0]["message"]
                assert counted(rec, "harmony_reconcile_failures_total", "conflicting-writer") == 1
                writes = harmony_scale_writes(k8s)
                decided = status(k8s)["posterior"]["decisions"]
                # backing off: steps go on (status, metrics), scale writes do not
                await eventually(lambda: status(k8s)["posterior"]["decisions"] >= decided + 4)
                assert harmony_scale_writes(k8s) == writes and replicas(k8s) == 3
                # after the back-off it tries again, meets the other writer again, and backs off again
                await eventually(lambda: counted(rec, "harmony_reconcile_failures_total", "conflicting-writer") >= 2,
                                 timeout=25)
                assert harmony_scale_writes(k8s) == writes + 1
        finally:
            stop.set()
            await writer


@pytest.mark.asyncio
async def test_the_back_off_ends_and_harmony_takes_the_target_back():
    clock = [dt.datetime(2026, 1, 1, tzinfo=dt.UTC)]
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s)
        rec = make_reconciler(url, ScriptedTelemetry(level=6.5))
        rec.clock = lambda: clock[0]

        async def tick(seconds=1.0):
            clock[0] += dt.timedelta(seconds=seconds)
            return await step(rec, k8s)

        first = await tick()
        assert first.scaled_to >= 7 and status(k8s)["lastScale"]["replicas"] == first.scaled_to
        k8s.objects[DEPLOYMENTS, "default", "llm-server"].patch({"spec": {"replicas": 4}})  # kubectl scale, once
        held = await tick()
        assert held.scaled_to is None and condition(status(k8s), "AbleToScale")["reason"] == CONFLICTING_WRITER
        for _ in range(5):
            assert (await tick()).scaled_to is None and replicas(k8s) == 4
        back = await tick(10.0)  # past the 10 s back-off: nobody wrote since, so harmony acts again
        assert back.scaled_to >= 7 and replicas(k8s) == back.scaled_to
        assert condition(status(k8s), "AbleToScale")["status"] == "True"
        assert not status(k8s).get("conflictingWriter")
        assert counted(rec, "harmony_reconcile_failures_total", "conflicting-writer") == 1


@pytest.mark.asyncio
async def test_recommend_mode_has_no_writer_to_defend():
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s, mode="Recommend")
        rec = make_reconciler(url, ScriptedTelemetry(level=6.5))
        await step(rec, k8s)
        k8s.objects[DEPLOYMENTS, "default", "llm-server"].patch({"spec": {"replicas": 5}})
        await step(rec, k8s)
    assert condition(status(k8s), "AbleToScale")["status"] == "True" and not status(k8s).get("lastScale")
    assert counted(rec, "harmony_reconcile_failures_total", "conflicting-writer") == 0


# --- 7. credentials in the Prometheus URL ---------------------------------------------------------------------
@pytest.mark.asyncio
async def test_prometheus_credentials_reach_no_status_log_or_probe(caplog):
    refused = {"status": "error", "errorType": "bad_data", "error": "parse error"}
    health = Health()
    with FakePrometheusAPI([(400, refused)]) as prom:
        async with cluster() as (k8s, url):
            add_deployment(k8s, replicas=2)
            add_autoscaler(k8s, name="refused")
            add_autoscaler(k8s, name="down")
            with caplog.at_level(logging.DEBUG):
                rec = make_reconciler(url, prometheus_source(prom.url.replace("//", f"//harmony:{SECRET}@"), health))
                await step(rec, k8s, "refused")
                probe = health.telemetry().as_dict()
                refused_messages = [c["message"] for c in status(k8s, "refused")["conditions"]]
                rec.telemetry = prometheus_source(f"http://harmony:{SECRET}@127.0.0.1:{find_free_port()}", health)
                await step(rec, k8s, "down")
                async with operator(rec, url):  # the daemons' own steps and logs too
                    await eventually(lambda: all(status(k8s, n)["posterior"]["decisions"] >= 2
                                                 for n in ("refused", "down")))
    messages = refused_messages + [c["message"] for n in ("refused", "down") for c in status(k8s, n)["conditions"]]
    assert any("***@127.0.0.1" in m and "parse error" in m for m in refused_messages)  # the server is still named
    assert not [m for m in messages if SECRET in m]
    assert not [r.getMessage() for r in caplog.records if SECRET in r.getMessage() or SECRET in (r.exc_text or "")]
    assert SECRET not in str(probe) and SECRET not in str(health.telemetry().as_dict())
    assert condition(status(k8s, "down"), "ForecastReady")["reason"] == "PrometheusUnavailable"


# --- 3. TLS flags that cannot work -----------------------------------------------------------------------------
def run_cli(*args: str):
    from harmony.cli.main import app

    return CliRunner().invoke(app, ["operator", "run", "--kubeconfig", "/nonexistent/kubeconfig", *args])


def test_a_missing_ca_file_is_refused_at_start(tmp_path):
    result = run_cli("--prometheus-url", "https://prom:9090", "--ca-file", str(tmp_path / "ca.crt"))
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert "--ca-file" in line and "ca.crt" in line


def test_ca_file_with_insecure_skip_verify_is_refused(tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    result = run_cli("--prometheus-url", "https://prom:9090", "--ca-file", str(ca), "--insecure-skip-verify")
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert "--ca-file" in line and "--insecure-skip-verify" in line


def test_a_url_with_credentials_in_a_refused_flag_is_redacted():
    result = run_cli("--prometheus-url", f"prom://harmony:{SECRET}@prom:9090")
    assert result.exit_code == 2 and SECRET not in result.output


# --- 6. peering that pauses a shard ----------------------------------------------------------------------------
def test_peering_conflicts_from_the_keep_alives():
    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    fresh = {"lastseen": "2026-01-01T11:59:50+00:00", "lifetime": 60}
    expired = {"lastseen": "2026-01-01T11:00:00+00:00", "lifetime": 60}
    me = "pod-a/1/abc#shard=all"
    assert peering_conflict({me: {"priority": 5, **fresh}}, me, 5, "harmony", now) == (None, "")
    tie = peering_conflict({me: {"priority": 5, **fresh}, "pod-b/1/def#shard=all": {"priority": 5, **fresh}},
                           me, 5, "harmony", now)
    assert tie[0] == SAME_PRIORITY and "pod-b" in tie[1] and "--priority" in tie[1]
    assert peering_conflict({"pod-b/1/def#shard=all": {"priority": 5, **expired}}, me, 5, "harmony", now)[0] is None
    # a higher replica of this shard is an ordinary standby; a higher peer of another shard starves this one
    assert peering_conflict({"pod-b/1/def#shard=all": {"priority": 9, **fresh}}, me, 5, "h", now)[0] is None
    assert peering_conflict({"kopf-dev@laptop": {"priority": 9, **fresh}}, me, 5, "h", now)[0] is None
    other = peering_conflict({"pod-c/1/x#shard=1a2b3c4d5e": {"priority": 9, **fresh}}, me, 5, "harmony", now)
    assert other[0] == OTHER_SHARD and "--peering" in other[1] and "shard all" in other[1]
    assert peering_conflict({"pod-c/1/x#shard=1a2b3c4d5e": {"priority": 2, **fresh}}, me, 5, "h", now)[0] is None


@pytest.mark.asyncio
async def test_peers_tied_at_the_top_priority_are_reported(caplog):
    async with cluster() as (k8s, url):
        add_peering(k8s)
        add_deployment(k8s, replicas=1)
        add_autoscaler(k8s)
        healths = Health(), Health()
        settings = OperatorSettings(peering="harmony", priority=5, peering_check_s=0.3)
        with caplog.at_level(logging.WARNING, logger="harmony.operator"):
            async with operator_thread(make_reconciler(url, ScriptedTelemetry()), url, settings, health=healths[0]), \
                    operator_thread(make_reconciler(url, ScriptedTelemetry()), url, settings, health=healths[1]):
                await eventually(lambda: all(h.peering().conflict == SAME_PRIORITY for h in healths))
                report = healths[0].peering().as_dict()
    assert "priority 5" in report["message"] and report["since_s"] >= 0
    assert any("kopf pauses every operator tied" in r.getMessage() for r in caplog.records)


@pytest.mark.asyncio
async def test_a_peering_name_shared_by_two_shards_is_reported_by_the_starved_one():
    async with cluster() as (k8s, url):
        add_peering(k8s)
        for shard in ("a", "b"):
            add_deployment(k8s, name=f"{shard}-server", replicas=1)
            add_autoscaler(k8s, name=shard, labels={"shard": shard},
                           scaleTargetRef={"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{shard}-server"})
        high, low = Health(), Health()
        a = OperatorSettings(selector={"shard": "a"}, peering="harmony", priority=100, peering_check_s=0.3)
        b = OperatorSettings(selector={"shard": "b"}, peering="harmony", priority=10, peering_check_s=0.3)
        async with operator_thread(make_reconciler(url, ScriptedTelemetry()), url, a, health=high), \
                operator_thread(make_reconciler(url, ScriptedTelemetry()), url, b, health=low):
            report = await eventually(lambda: low.peering().conflict == OTHER_SHARD and low.peering())
            assert high.peering().conflict is None
    assert "give each shard its own --peering name" in report.message


@pytest.mark.asyncio
async def test_a_peering_object_that_does_not_exist_is_reported():
    """kopf waits, paused, for the peering object's first event: without the object nothing is ever served."""
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=1)
        add_autoscaler(k8s)
        health = Health()
        settings = OperatorSettings(peering="nowhere", priority=5, peering_check_s=0.3)
        rec = make_reconciler(url, ScriptedTelemetry())
        async with operator_thread(rec, url, settings, health=health):
            report = await eventually(lambda: health.peering().conflict == MISSING_OBJECT and health.peering())
            assert not rec.forecasters  # paused indeed
            add_peering(k8s, "nowhere")  # created: kopf sees it at its next watch or keep-alive
            await eventually(lambda: health.peering().conflict is None)
    assert "'nowhere'" in report.message and "ClusterKopfPeering" in report.message


@pytest.mark.asyncio
async def test_spec_edits_mid_run_take_effect_at_the_next_step():
    """max below the current count, min above it, a new declared capacity and a switch to Recommend, each
    edited between two steps: the next step obeys the edit (bounds at once, the posterior of the old
    capacity discarded, Recommend writing nothing) and says so in status."""

    telemetry = ScriptedTelemetry(level=12.0, noise=0.0)
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s, maxReplicas=40)
        rec = make_reconciler(url, telemetry)

        async def step(**spec_changes) -> dict:
            ha = obj(k8s, HA, "default", "llm")
            spec = {**ha["spec"], **spec_changes}
            k8s.objects[HA, "default", "llm"].patch({"spec": spec_changes} if spec_changes else {})
            outcome = await asyncio.to_thread(rec.reconcile, "default", "llm", ha["metadata"]["uid"], 1, spec,
                                              obj(k8s, HA, "default", "llm").get("status"))
            return outcome.status

        def replicas() -> int:
            return obj(k8s, DEPLOYMENTS, "default", "llm-server")["spec"]["replicas"]

        status = await step()
        assert replicas() >= 12  # 12 demand at capacity 1
        status = await step(maxReplicas=5)
        assert replicas() == 5
        assert condition(status, "ScalingLimited")["status"] == "True"
        telemetry.level = 1.0
        status = await step(minReplicas=8, maxReplicas=40)
        assert replicas() == 8  # up to the new minimum at once, though 1 demand needs one replica
        assert condition(status, "ScalingLimited")["status"] == "True"
        before = status["posterior"]["capacity"]["mu"][0]
        status = await step(capacityPerReplica=0.25)  # each replica now serves a quarter: 1 demand needs 4
        assert status["posterior"]["capacity"]["mu"][0] != before and status["posterior"]["declaredCapacity"] == 0.25
        assert replicas() == 8
        telemetry.level = 6.0  # 24 replicas' worth at 0.25
        status = await step(mode="Recommend")
        assert replicas() == 8  # Recommend writes nothing to the target
        assert status["recommendedReplicas"] >= 24 and status["desiredReplicas"] >= 24
