"""KEDA's external scaler: a real gRPC server on loopback, driven by a gRPC client making KEDA's calls
(GetMetricSpec, GetMetrics, IsActive, StreamIsActive) with the checked-in stubs, over the decisions board;
then through the Reconciler and the kopf operator on the kmock emulator, so the served count is the step's."""

from __future__ import annotations

import asyncio
import datetime as dt
import math

import grpc
import pytest

from harmony.backtest.policies.hpa import per_pod_replicas
from harmony.errors import HarmonyInputError
from harmony.operator.app import OperatorSettings
from harmony.operator.decisions import DecisionBoard, PostedDecision
from harmony.operator.keda import externalscaler_pb2 as pb
from harmony.operator.keda import externalscaler_pb2_grpc as pb_grpc
from harmony.operator.keda.scaler import STALE_INTERVALS, serve
from tests.operator_support import (
    HA,
    ScriptedTelemetry,
    add_autoscaler,
    add_deployment,
    cluster,
    eventually,
    make_reconciler,
    obj,
    operator,
    status,
)
from tests.prometheus_server import find_free_port

T0 = dt.datetime(2026, 1, 5, 12, 0, tzinfo=dt.UTC)
CALL_S = 10  # a deadline on every call: a server that never answers fails the test instead of hanging it


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def keda():
    """(board, clock, stub): a scaler on 127.0.0.1 (a free port) over a fresh board, and KEDA's client."""
    board, clock = DecisionBoard(), Clock()
    server, port = serve(board, 0, "127.0.0.1", clock=clock)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield board, clock, pb_grpc.ExternalScalerStub(channel)
    finally:
        channel.close()
        server.stop(grace=None)


def ref(autoscaler: str | None = "llm", scaled_object_namespace: str = "default", **metadata) -> pb.ScaledObjectRef:
    """The ScaledObjectRef KEDA sends: the ScaledObject's name and namespace, the trigger's metadata."""
    meta = {"scalerAddress": "harmony.harmony.svc:9443", **metadata}
    if autoscaler is not None:
        meta["autoscaler"] = autoscaler
    return pb.ScaledObjectRef(name="llm-server", namespace=scaled_object_namespace, scalerMetadata=meta)


def post(board: DecisionBoard, recommended: int, desired: int | None = None, time: dt.datetime = T0,
         namespace: str = "default", name: str = "llm", interval_s: float = 30.0, mode: str = "Recommend") -> None:
    board.post(namespace, name, PostedDecision(recommended, recommended if desired is None else desired, time,
                                               interval_s, mode))


def metric(stub, so: pb.ScaledObjectRef) -> tuple[str, float]:
    """KEDA's poll: GetMetricSpec for the metric's name and target, then GetMetrics for it; the count the HPA
    computes from them for an AverageValue target (ceil(value / target), outside its tolerance)."""
    specs = stub.GetMetricSpec(so, timeout=CALL_S).metricSpecs
    assert len(specs) == 1
    spec = specs[0]
    assert spec.targetSize == 1 and spec.targetSizeFloat == 1.0
    values = stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=so, metricName=spec.metricName),
                             timeout=CALL_S).metricValues
    assert len(values) == 1 and values[0].metricName == spec.metricName
    assert values[0].metricValue == values[0].metricValueFloat  # KEDA reads either, by release
    return spec.metricName, math.ceil(values[0].metricValueFloat / spec.targetSizeFloat)


def refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


# -- KEDA's calls over the board --------------------------------------------------------------------------
def test_the_metric_is_the_recommended_count_and_activity_follows_it(keda):
    board, _, stub = keda
    post(board, recommended=7, desired=5)
    assert metric(stub, ref()) == ("harmony-recommended-replicas", 7)
    assert stub.IsActive(ref(), timeout=CALL_S).result is True
    # the count after harmony's own step rules, on request
    assert metric(stub, ref(replicas="desired")) == ("harmony-desired-replicas", 5)

    post(board, recommended=0, desired=1)  # minReplicas 0, no demand forecast: KEDA may scale to zero
    assert metric(stub, ref()) == ("harmony-recommended-replicas", 0)
    assert stub.IsActive(ref(), timeout=CALL_S).result is False
    assert stub.IsActive(ref(replicas="desired"), timeout=CALL_S).result is True  # activity follows the served count


def test_the_namespace_is_the_scaled_objects_unless_the_trigger_names_one(keda):
    board, _, stub = keda
    post(board, 3, namespace="team-a")
    post(board, 9, namespace="team-b")
    assert metric(stub, ref(scaled_object_namespace="team-a"))[1] == 3
    assert metric(stub, ref(scaled_object_namespace="team-a", namespace="team-b"))[1] == 9


def test_the_hpa_applies_the_served_count_only_outside_its_tolerance():
    """What KEDA's HPA does with the metric (the backtest's model of the HPA's per-pod rule): the count itself
    once the change exceeds 10%, nothing below that; no target value changes it (docs/operator.md)."""
    assert per_pod_replicas(7.0, 1.0, 4) == 7
    assert per_pod_replicas(21.0, 1.0, 20) == 20  # +1 above 10 replicas: within the tolerance, ignored
    assert per_pod_replicas(21.0 * 1000, 1000.0, 20) == 20  # a scaled encoding changes nothing: same ratio


def test_stream_pushes_the_activity_then_each_change_until_cancelled(keda):
    board, _, stub = keda
    post(board, 3)
    stream = stub.StreamIsActive(ref(), timeout=CALL_S)
    assert next(stream).result is True  # the current activity, at once
    post(board, 4)  # a new count, the same activity: nothing to push
    post(board, 0)
    assert next(stream).result is False  # the next push is the change, not the repeat
    post(board, 2)
    assert next(stream).result is True
    stream.cancel()
    assert refused(lambda: next(stream)).code() == grpc.StatusCode.CANCELLED


def test_stream_ends_when_the_autoscaler_stops_being_served_or_its_decision_goes_stale(keda):
    board, clock, stub = keda
    post(board, 3)
    stream = stub.StreamIsActive(ref(), timeout=CALL_S)
    assert next(stream).result is True
    board.stopped("default", "llm")
    assert refused(lambda: next(stream)).code() == grpc.StatusCode.NOT_FOUND

    post(board, 3, interval_s=30.0)
    stream = stub.StreamIsActive(ref(), timeout=CALL_S)
    assert next(stream).result is True
    clock.now = T0 + dt.timedelta(seconds=STALE_INTERVALS * 30 + 1)
    board.wake()  # the stream re-reads at once instead of at its next interval
    error = refused(lambda: next(stream))
    assert error.code() == grpc.StatusCode.UNAVAILABLE and "old" in error.details()


def test_unknown_autoscaler_is_not_found_in_every_call(keda):
    board, _, stub = keda
    post(board, 3, name="other")
    so = ref("llm")
    calls = {
        "GetMetricSpec": lambda: stub.GetMetricSpec(so, timeout=CALL_S),
        "GetMetrics": lambda: stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=so,
                                                                   metricName="harmony-recommended-replicas"),
                                              timeout=CALL_S),
        "IsActive": lambda: stub.IsActive(so, timeout=CALL_S),
        "StreamIsActive": lambda: next(stub.StreamIsActive(so, timeout=CALL_S)),
    }
    for call in calls.values():
        error = refused(call)
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert "HarmonyAutoscaler default/llm is not served" in error.details()


def test_served_without_a_decision_yet_is_unavailable_but_has_a_metric_spec(keda):
    board, _, stub = keda
    board.serving("default", "llm")
    assert stub.GetMetricSpec(ref(), timeout=CALL_S).metricSpecs[0].metricName == "harmony-recommended-replicas"
    for call in (lambda: stub.IsActive(ref(), timeout=CALL_S),
                 lambda: stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref()), timeout=CALL_S),
                 lambda: next(stub.StreamIsActive(ref(), timeout=CALL_S))):
        error = refused(call)
        assert error.code() == grpc.StatusCode.UNAVAILABLE and "no decision yet" in error.details()


def test_a_stale_decision_is_unavailable_not_an_old_count(keda):
    board, clock, stub = keda
    post(board, 6, interval_s=10.0)
    clock.now = T0 + dt.timedelta(seconds=STALE_INTERVALS * 10)  # at the limit: still served
    assert metric(stub, ref())[1] == 6
    clock.now += dt.timedelta(seconds=1)
    for call in (lambda: stub.IsActive(ref(), timeout=CALL_S),
                 lambda: stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref()), timeout=CALL_S)):
        error = refused(call)
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "default/llm: latest decision is 31 s old" in error.details()


def test_scale_mode_is_not_served_to_a_second_writer(keda):
    board, _, stub = keda
    post(board, 4, mode="Scale")
    for call in (lambda: stub.IsActive(ref(), timeout=CALL_S),
                 lambda: stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref()), timeout=CALL_S)):
        error = refused(call)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "default/llm is in mode Scale" in error.details()


@pytest.mark.parametrize(("so", "metric_name", "says"), [
    (ref(None), "", "trigger metadata has no `autoscaler`"),
    (ref(replicas="maximum"), "", "replicas 'maximum' is not one of recommended, desired"),
    (ref(), "s0-cpu", "metric 's0-cpu': this trigger serves 'harmony-recommended-replicas'"),
])
def test_misconfigured_triggers_are_invalid_arguments(keda, so, metric_name, says):
    board, _, stub = keda
    post(board, 3)
    error = refused(lambda: stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=so, metricName=metric_name),
                                            timeout=CALL_S))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and says in error.details()


def test_a_port_in_use_is_refused_with_one_line():
    board = DecisionBoard()
    server, port = serve(board, 0, "127.0.0.1")
    try:
        with pytest.raises(HarmonyInputError, match=f"--keda-scaler-port {port}: cannot listen on 127.0.0.1"):
            serve(board, port, "127.0.0.1")
    finally:
        server.stop(grace=None)


# -- through the reconciler and the operator ------------------------------------------------------------


@pytest.mark.asyncio
async def test_served_counts_are_the_reconcilers_decision_and_a_hold_serves_the_held_count():
    telemetry = ScriptedTelemetry(level=9.5)
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s, mode="Recommend")
        rec = make_reconciler(url, telemetry)
        server, port = serve(rec.decisions, 0, "127.0.0.1", clock=rec.clock)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = pb_grpc.ExternalScalerStub(channel)
        try:
            async def step() -> dict:
                body = obj(k8s, HA, "default", "llm")
                outcome = await asyncio.to_thread(rec.reconcile, "default", "llm", "uid-default-llm", 1,
                                                  body["spec"], body.get("status"))
                return outcome.status

            decided = await step()
            assert decided["recommendedReplicas"] >= 10 and decided["recommendedReplicas"] != 2
            assert (await asyncio.to_thread(metric, stub, ref()))[1] == decided["recommendedReplicas"]
            assert (await asyncio.to_thread(metric, stub, ref(replicas="desired")))[1] == decided["desiredReplicas"]

            telemetry.stale_reason = "prometheus-unavailable: refused"
            held = await step()
            assert held["lastDecision"]["reason"] == "hold-telemetry-stale"
            assert (await asyncio.to_thread(metric, stub, ref()))[1] == held["recommendedReplicas"]
        finally:
            channel.close()
            server.stop(grace=None)


@pytest.mark.asyncio
async def test_the_operator_serves_keda_while_it_runs():
    port = find_free_port()
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s, mode="Recommend")
        rec = make_reconciler(url, ScriptedTelemetry(level=9.5))
        settings = OperatorSettings(keda_scaler_addr="127.0.0.1", keda_scaler_port=port)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = pb_grpc.ExternalScalerStub(channel)

        def served_and_decided():
            try:
                served = metric(stub, ref())[1]
            except grpc.RpcError:
                return None  # not listening yet, or no decision yet
            decided = status(k8s).get("recommendedReplicas")
            return served == decided and served

        try:
            async with operator(rec, url, settings):
                # a call to the scaler's own threads: the emulator, in this loop, is not needed to answer it
                assert await eventually(served_and_decided) >= 10
                assert (await asyncio.to_thread(stub.IsActive, ref(), timeout=CALL_S)).result is True
            # the operator stopped: its daemons and the scaler with it
            error = await asyncio.to_thread(refused, lambda: stub.IsActive(ref(), timeout=CALL_S))
            assert error.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            channel.close()


# -- the command line, the chart and the example ----------------------------------------------------------
def test_a_keda_port_shared_with_another_server_is_refused_at_start():
    from typer.testing import CliRunner

    from harmony.cli.main import app
    from harmony.operator.ports import METRICS_PORT

    result = CliRunner().invoke(app, ["operator", "run", "--keda-scaler-port", str(METRICS_PORT)])
    assert result.exit_code == 2, result.output
    assert f"--keda-scaler-port {METRICS_PORT}: already the metrics or liveness port" in result.output


def test_chart_serves_the_scaler_at_the_examples_address():
    pytest.importorskip("helm_python", reason="helm-python-sdk (test extra) renders the chart offline")
    import helm_python as helm

    from tests.test_helm_chart import CHART, NAMESPACE, RELEASE, container, load_example, of_kind, render

    chart = helm.Chart.load(str(CHART))
    _, c = container(render(chart, {}))
    assert not any(a.startswith("--keda-scaler-port") for a in c["args"])  # off unless asked for

    docs = render(chart, {"keda": {"scaler": {"enabled": True}}})
    pod, c = container(docs)
    assert "--keda-scaler-port=6000" in c["args"]
    assert {"name": "keda-scaler", "containerPort": 6000, "protocol": "TCP"} in c["ports"]
    (svc,) = [s for s in of_kind(docs, "Service") if s["metadata"]["name"].endswith("-keda-scaler")]
    assert svc["spec"]["ports"] == [{"name": "keda-scaler", "port": 6000, "targetPort": "keda-scaler",
                                     "protocol": "TCP", "appProtocol": "grpc"}]
    (dep,) = of_kind(docs, "Deployment")
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()

    (scaled,) = load_example("keda-external-scaledobject.yaml")
    (autoscaler,) = load_example("harmonyautoscaler.yaml")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "external"
    assert trigger["metadata"]["scalerAddress"] == f"{svc['metadata']['name']}.{NAMESPACE}.svc:6000"
    assert trigger["metadata"]["autoscaler"] == autoscaler["metadata"]["name"]
    assert scaled["spec"]["scaleTargetRef"] == autoscaler["spec"]["scaleTargetRef"]
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (
        autoscaler["spec"]["minReplicas"], autoscaler["spec"]["maxReplicas"])

    for values, says in (({"keda": {"scaler": {"enabled": True, "port": 8095}}}, "keda.scaler.port must differ"),
                         ({"keda": {"scaler": {"enabled": True}}, "replicaCount": 2, "peering": {"enabled": True}},
                          "keda.scaler.enabled needs replicaCount 1")):
        with pytest.raises(helm.HelmError, match=says):
            chart.render(values, name=RELEASE, namespace=NAMESPACE)
