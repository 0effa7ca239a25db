"""Faults the operator must make visible, never hide: Prometheus answering but not with data, or slowly; API
writes refused; an Event it may not post; another writer of the target's replicas; the target deleted and
created again; spec edits mid-run; a restart over a corrupt status; peering that pauses a shard; credentials
in the Prometheus URL; and command-line TLS flags that cannot work. Against the kmock emulator (which
refuses what it answers as refused), with the real PrometheusClient pointed at a local fake of the
Prometheus API where the answer matters. Each asserts the replica count step by step and the conditions;
docs/operator.md ("Faults and how they show") lists them."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math

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
from harmony.operator.kube import ApiError
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
    events,
    eventually,
    fail_first_write,
    make_reconciler,
    obj,
    operator,
    operator_thread,
    replicas,
    status,
    step,
)
from tests.prometheus_server import FakePrometheusAPI, find_free_port, range_answer

LABELS = {"autoscaler_namespace": "default", "autoscaler": "llm"}
SECRET = "hunter2-s3cret"


def counted(rec, family: str, reason: str) -> float:
    return rec.metrics.registry.get_sample_value(family, {**LABELS, "reason": reason}) or 0.0


def prometheus_source(url: str, health: Health | None = None, timeout_s: float = 2):
    source = telemetry_source(PrometheusClient(PrometheusConfig(url, retries=0, timeout_s=timeout_s)))
    return health.watch_telemetry(source) if health is not None else source


# --- 1. Prometheus answering, but not with data --------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.parametrize(("answer", "reason", "tag"), [
    ((200, "<html><body>Please sign in</body></html>"), "BadResponse", "bad-response"),  # a proxy's login page
    ((200, '{"status": "success", "data": {"resultType": "matr'), "BadResponse", "bad-response"),  # garbage JSON
    ((400, {"status": "error", "errorType": "bad_data", "error": "1:5: parse error: unclosed left parenthesis"}),
     "QueryRejected", "query-rejected"),
    ((500, {"status": "error", "errorType": "internal", "error": "unexpected error"}),  # transient: next step
     "PrometheusUnavailable", "prometheus-unavailable"),
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
        assert "made for capacityPerReplica 1, declared now 0.25" in status["posterior"]["discarded"]["reason"]
        assert replicas() == 8 and condition(status, "Ready")["status"] == "True"
        telemetry.level = 6.0  # 24 replicas' worth at 0.25
        status = await step(mode="Recommend")
        assert replicas() == 8  # Recommend writes nothing to the target
        assert status["recommendedReplicas"] >= 24 and status["desiredReplicas"] >= 24
        assert condition(status, "Ready")["status"] == "True" and status["lastScale"] is None
    assert [e["type"] for e in events(k8s) if e.get("reason") == "PosteriorDiscarded"] == ["Warning"]


# --- 2. Prometheus answering slowly ----------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_prometheus_slower_than_the_client_timeout_holds_and_the_step_after_it_recovers_decides():
    """The server holds its answers (until the test releases them) past the client's timeout, 0.3 s here:
    each step holds the count and says it timed out; once the server answers again, the next step decides."""
    with FakePrometheusAPI([(200, range_answer(6.5))]) as prom:
        prom.release.clear()  # slow from now on
        async with cluster() as (k8s, url):
            add_deployment(k8s, replicas=2)
            add_autoscaler(k8s)
            rec = make_reconciler(url, prometheus_source(prom.url, timeout_s=0.3))
            for n in (1, 2):
                held = await step(rec, k8s)
                assert held.scaled_to is None and replicas(k8s) == 2
                assert counted(rec, "harmony_telemetry_errors_total", "prometheus-unavailable") == n
                assert len(prom.requests) == n  # asked once a step (no retries configured), never answered
            st = status(k8s)
            forecast, ready = condition(st, "ForecastReady"), condition(st, "Ready")
            assert forecast["status"] == "False" and forecast["reason"] == "PrometheusUnavailable"
            assert "timed out after 0.3s" in forecast["message"] and prom.url in forecast["message"]
            assert ready["status"] == "False" and ready["reason"] == "PrometheusUnavailable"
            assert ready["message"].startswith("holding 2 replicas: ") and "timed out" in ready["message"]
            assert st["lastDecision"]["reason"] == "hold-telemetry-stale" and st["currentReplicas"] == 2
            prom.release.set()  # the server recovers
            back = await step(rec, k8s)
    assert back.scaled_to is not None and back.scaled_to >= 7 and replicas(k8s) == back.scaled_to
    st = status(k8s)
    assert condition(st, "ForecastReady")["status"] == "True" and condition(st, "Ready")["status"] == "True"
    assert st["lastDecision"]["reason"] != "hold-telemetry-stale" and st["currentReplicas"] == back.scaled_to
    assert counted(rec, "harmony_telemetry_errors_total", "prometheus-unavailable") == 2


@pytest.mark.asyncio
async def test_prometheus_slow_but_within_the_client_timeout_is_waited_for():
    with FakePrometheusAPI([(200, range_answer(6.5))]) as prom:
        prom.release.clear()
        async with cluster() as (k8s, url):
            add_deployment(k8s, replicas=2)
            add_autoscaler(k8s)
            rec = make_reconciler(url, prometheus_source(prom.url, timeout_s=60))
            stepping = asyncio.create_task(step(rec, k8s))
            await eventually(lambda: prom.requests)  # the query arrived, and its answer is held
            assert not stepping.done() and replicas(k8s) == 2  # the step waits for it
            prom.release.set()
            outcome = await stepping
    assert outcome.scaled_to is not None and outcome.scaled_to >= 7 and replicas(k8s) == outcome.scaled_to
    st = status(k8s)
    assert condition(st, "ForecastReady")["status"] == "True" and condition(st, "Ready")["status"] == "True"
    assert counted(rec, "harmony_telemetry_errors_total", "prometheus-unavailable") == 0


# --- 3. API writes refused (the emulator refuses for real: a refused write changes nothing) ------------------
CONFLICT = 409, "Conflict", "the object has been modified"
INTERNAL = 500, "InternalError", "etcdserver: request timed out"


@pytest.mark.asyncio
async def test_a_409_on_the_scale_write_is_retried_on_the_fresh_count_and_three_are_reported():
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s)
        rec = make_reconciler(url, ScriptedTelemetry(level=6.5, noise=0.0))
        fail_first_write(k8s, "scale", *CONFLICT)  # one lost race: read again, step again, write
        first = await step(rec, k8s)
        assert first.scaled_to is not None and first.scaled_to >= 7 and replicas(k8s) == first.scaled_to
        assert len(list(k8s[kmock.method.GET, kmock.subresource("scale")])) == 2
        assert condition(status(k8s), "AbleToScale")["status"] == "True"
        assert condition(status(k8s), "Ready")["status"] == "True"
        rec.telemetry.level = 12.5
        fail_first_write(k8s, "scale", *CONFLICT, times=3)  # every try of the step loses: it holds and says so
        lost = await step(rec, k8s)
        assert lost.scaled_to is None and replicas(k8s) == first.scaled_to
        st = status(k8s)
        able = condition(st, "AbleToScale")
        assert able["status"] == "False" and able["reason"] == "Conflict"
        assert condition(st, "Ready")["reason"] == "Conflict" and st["currentReplicas"] == first.scaled_to
        assert counted(rec, "harmony_reconcile_failures_total", "conflict") == 1
        again = await step(rec, k8s)  # the races are over: the next step writes
    assert again.scaled_to is not None and again.scaled_to >= 13 and replicas(k8s) == again.scaled_to
    assert condition(status(k8s), "AbleToScale")["status"] == "True"
    assert counted(rec, "harmony_reconcile_failures_total", "conflicting-writer") == 0


@pytest.mark.asyncio
async def test_a_500_on_the_scale_write_holds_says_so_and_the_next_step_writes():
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s)
        rec = make_reconciler(url, ScriptedTelemetry(level=6.5, noise=0.0))
        fail_first_write(k8s, "scale", *INTERNAL)
        refused = await step(rec, k8s)
        assert refused.scaled_to is None and replicas(k8s) == 2
        st = status(k8s)
        able, ready = condition(st, "AbleToScale"), condition(st, "Ready")
        assert able["status"] == "False" and able["reason"] == "FailedUpdateScale"
        assert "500" in able["message"] and "etcdserver: request timed out" in able["message"]
        assert ready["status"] == "False" and ready["reason"] == "FailedUpdateScale"
        assert st["currentReplicas"] == 2 and st["lastScale"]["replicas"] == 2
        assert counted(rec, "harmony_reconcile_failures_total", "api-error") == 1
        written = await step(rec, k8s)
    assert written.scaled_to is not None and written.scaled_to >= 7 and replicas(k8s) == written.scaled_to
    assert condition(status(k8s), "AbleToScale")["status"] == "True"
    assert condition(status(k8s), "Ready")["status"] == "True"
    assert counted(rec, "harmony_reconcile_failures_total", "conflicting-writer") == 0


@pytest.mark.asyncio
async def test_a_500_on_the_status_write_after_a_scale_is_not_taken_for_another_writer():
    """The step scaled, then its status write (recording the count it left) failed: the next step finds
    the target at harmony's own count, not the one the status last recorded, and must not back off from
    itself."""
    telemetry = ScriptedTelemetry(level=1.5, noise=0.0)
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s)
        rec = make_reconciler(url, telemetry)
        steady = await step(rec, k8s)
        assert steady.scaled_to is None and status(k8s)["lastScale"]["replicas"] == 2
        telemetry.level = 6.5
        fail_first_write(k8s, "status", *INTERNAL)
        with pytest.raises(ApiError, match="500"):
            await step(rec, k8s)  # the daemon logs and counts it (api-error) and steps again next interval
        scaled = replicas(k8s)
        assert scaled >= 7 and status(k8s)["lastScale"]["replicas"] == 2  # scaled; the status did not say so
        after = await step(rec, k8s)
    st = status(k8s)
    assert after.scaled_to is None and replicas(k8s) == scaled and st["currentReplicas"] == scaled
    assert condition(st, "AbleToScale")["status"] == "True" and condition(st, "Ready")["status"] == "True"
    assert not st.get("conflictingWriter") and st["lastScale"]["replicas"] == scaled
    assert counted(rec, "harmony_reconcile_failures_total", "conflicting-writer") == 0


# --- 8. the target deleted and re-created ----------------------------------------------------------------------
@pytest.mark.asyncio
async def test_a_deleted_target_is_not_written_and_a_recreated_one_is_scaled_from_its_own_count():
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s)
        rec = make_reconciler(url, ScriptedTelemetry(level=6.5, noise=0.0))
        first = await step(rec, k8s)
        assert first.scaled_to is not None and first.scaled_to >= 7
        k8s.objects[DEPLOYMENTS, "default", "llm-server"].delete()  # kubectl delete deployment llm-server
        writes = harmony_scale_writes(k8s)
        for n in (1, 2):
            gone = await step(rec, k8s)
            assert gone.scaled_to is None and harmony_scale_writes(k8s) == writes
            st = status(k8s)
            for kind in ("AbleToScale", "Ready"):
                assert condition(st, kind)["status"] == "False" and condition(st, kind)["reason"] == "TargetNotFound"
            assert "llm-server not found" in condition(st, "AbleToScale")["message"]
            assert not st.get("lastScale") and counted(rec, "harmony_reconcile_failures_total", "target-not-found") == n
        add_deployment(k8s, replicas=3)  # re-created from its manifest, with its own count
        back = await step(rec, k8s)
        scaled_up = [e["message"] for e in events(k8s) if e.get("reason") == "ScaledUp"]
    assert back.scaled_to == first.scaled_to and replicas(k8s) == back.scaled_to
    assert scaled_up[-1].startswith(f"Deployment llm-server: 3 -> {back.scaled_to} replicas")  # from its count
    st = status(k8s)
    assert condition(st, "AbleToScale")["status"] == "True" and condition(st, "Ready")["status"] == "True"
    assert not st.get("conflictingWriter") and st["lastScale"]["replicas"] == back.scaled_to
    assert counted(rec, "harmony_reconcile_failures_total", "conflicting-writer") == 0


@pytest.mark.asyncio
async def test_a_target_recreated_between_two_steps_is_a_new_target_not_another_writer():
    """Deleted and created again between two steps (`kubectl replace --force`, a reinstalled chart): the step
    never sees it missing, but the target's creationTimestamp is after harmony's last step, so its count is
    its own. A later foreign write to that same target is still another writer's."""
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    clock = [start]
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2, created=start - dt.timedelta(days=30))
        add_autoscaler(k8s)
        rec = make_reconciler(url, ScriptedTelemetry(level=6.5, noise=0.0))
        rec.clock = lambda: clock[0]

        async def step_at(seconds: float):
            clock[0] = start + dt.timedelta(seconds=seconds)
            return await step(rec, k8s)

        first = await step_at(1)
        assert first.scaled_to is not None and first.scaled_to >= 7
        k8s.objects[DEPLOYMENTS, "default", "llm-server"].delete()
        add_deployment(k8s, replicas=3, created=start + dt.timedelta(seconds=2))
        back = await step_at(3)
        assert back.scaled_to == first.scaled_to and replicas(k8s) == back.scaled_to
        assert condition(status(k8s), "AbleToScale")["status"] == "True" and not status(k8s).get("conflictingWriter")
        assert counted(rec, "harmony_reconcile_failures_total", "conflicting-writer") == 0
        k8s.objects[DEPLOYMENTS, "default", "llm-server"].patch({"spec": {"replicas": 4}})  # kubectl scale
        held = await step_at(4)
    assert held.scaled_to is None and replicas(k8s) == 4
    assert condition(status(k8s), "AbleToScale")["reason"] == CONFLICTING_WRITER
    assert counted(rec, "harmony_reconcile_failures_total", "conflicting-writer") == 1


# --- 9. the operator killed and restarted over a corrupt status ------------------------------------------------
def corrupt_posterior(k8s, posterior: dict, name: str = "llm") -> None:
    """Replace `status.posterior` whole, as a hand edit or a broken writer could (the CRD keeps it as unknown
    fields: the API server checks nothing in it)."""
    k8s.objects[HA, "default", name].patch({"status": {"posterior": None}})
    k8s.objects[HA, "default", name].patch({"status": {"posterior": posterior}})


def corrupted(posterior: dict, **parts) -> dict:
    return {**posterior, **{k: ({**posterior[k], **v} if isinstance(v, dict) else v) for k, v in parts.items()}}


@pytest.mark.asyncio
@pytest.mark.parametrize(("parts", "said"), [
    # each would size the first decision on nonsense if trusted (a quarter of the capacity: 4x the replicas)
    ({"capacity": {"mu": ["0.25"]}}, "capacity.mu ['0.25'] is not one finite number"),  # wrong types
    ({"capacity": "garbage"}, "unreadable"),
    ({"capacity": {"mu": [0.25], "kappa": [math.nan]}}, "capacity.kappa [nan] is not one finite number"),
    ({"recentTargets": [40, -1, 40], "decisions": -3}, "recentTargets must be a list of at most"),  # negative counts
    ({"decisions": -3}, "decisions -3 must be a count >= 0"),
    ({"capacity": {"mu": [0.25]}, "declaredCapacity": 0.25},  # a posterior from another capacity
     "made for capacityPerReplica 0.25, declared now 1"),
], ids=["wrong-type", "not-an-object", "nan", "negative-targets", "negative-decisions", "other-capacity"])
async def test_a_restarted_operator_discards_a_corrupt_posterior_says_so_and_does_not_jump(parts, said, caplog):
    telemetry = ScriptedTelemetry(level=6.5, noise=0.0)
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s)
        rec = make_reconciler(url, telemetry)
        for _ in range(3):
            await step(rec, k8s)
        before = replicas(k8s)
        assert before >= 7 and status(k8s)["posterior"]["decisions"] == 3
        corrupt_posterior(k8s, corrupted(status(k8s)["posterior"], **parts))  # while no operator runs
        restarted = make_reconciler(url, telemetry)  # a new process: nothing in memory
        with caplog.at_level(logging.WARNING, logger="harmony.operator"):
            first = await step(restarted, k8s)
            second = await step(restarted, k8s)
        warnings = [e["message"] for e in events(k8s) if e.get("reason") == "PosteriorDiscarded"]
    assert first.scaled_to is None and second.scaled_to is None and replicas(k8s) == before  # no jump
    st = status(k8s)
    assert st["posterior"]["decisions"] == 2 and st["posterior"]["capacity"]["mu"] == [1.0]  # from priors
    assert said in st["posterior"]["discarded"]["reason"]
    assert condition(st, "Ready")["status"] == "True" and st["currentReplicas"] == before
    assert len(warnings) == 1 and said in warnings[0] and "starting from priors" in warnings[0]
    assert [r.getMessage() for r in caplog.records if "status.posterior discarded" in r.getMessage()] == [
        f"default/llm: {warnings[0]}"]


@pytest.mark.asyncio
async def test_the_kopf_operator_killed_and_restarted_over_a_corrupt_status_keeps_the_count(caplog):
    """The whole operator stopped (its kopf thread ends), the status corrupted meanwhile and demand fallen:
    the operator started again on the same cluster state neither crashes nor trusts the corrupt posterior,
    and holds the count through the stabilisation window instead of dropping at its first decision."""
    telemetry = ScriptedTelemetry(level=8.5, noise=0.0)
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s, behavior={"scaleDownStabilizationSeconds": 30})
        async with operator(make_reconciler(url, telemetry), url):
            await eventually(lambda: replicas(k8s) >= 9 and status(k8s)["posterior"]["decisions"] >= 2)
        peak = replicas(k8s)
        broken = corrupted(status(k8s)["posterior"], capacity={"mu": [math.nan]}, recentTargets=[peak, -peak])
        corrupt_posterior(k8s, broken)
        telemetry.level = 1.0  # demand falls while the operator is down
        restarted = make_reconciler(url, telemetry)
        with caplog.at_level(logging.WARNING, logger="harmony.operator"):
            async with operator(restarted, url):
                await eventually(lambda: status(k8s)["posterior"]["decisions"] >= 3)
                assert replicas(k8s) == peak  # the first decisions hold: no jump down
        st = status(k8s)
    assert "capacity.mu [nan] is not one finite number" in st["posterior"]["discarded"]["reason"]
    assert st["lastDecision"]["reason"] == "hold-stabilisation-window" and st["currentReplicas"] == peak
    assert condition(st, "Ready")["status"] == "True"
    assert any("status.posterior discarded" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if "reconcile failed" in r.getMessage()]
