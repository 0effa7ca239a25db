"""What stops or replaces harmony's writes, against the kmock emulator: the pause annotations, spec.fallback
after failing telemetry, and a target another autoscaler (an HPA, a KEDA ScaledObject) already scales."""

from __future__ import annotations

import kmock
import pytest

from harmony.operator.reconcile import (
    FALLBACK,
    FALLBACK_REASON,
    MANAGED_ELSEWHERE,
    PAUSED,
    PAUSED_ANNOTATION,
    PAUSED_REASON,
    PAUSED_REPLICAS_ANNOTATION,
)
from tests.operator_support import (
    DEPLOYMENTS,
    HA,
    VERBS,
    ScriptedTelemetry,
    add_autoscaler,
    add_deployment,
    cluster,
    condition,
    events,
    make_reconciler,
    replicas,
    status,
    step,
)

HPAS = "autoscaling/v2/horizontalpodautoscalers"
SCALED_OBJECTS = "keda.sh/v1alpha1/scaledobjects"


def annotate(k8s, annotations: dict | None) -> None:
    k8s.objects[HA, "default", "llm"].raw["metadata"]["annotations"] = annotations or {}


# --- pause -----------------------------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_the_paused_annotation_stops_writes_until_removed():
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s)
        annotate(k8s, {PAUSED_ANNOTATION: "true"})
        rec = make_reconciler(url, ScriptedTelemetry(level=20.0))  # demand for ~20 replicas
        for _ in range(3):
            outcome = await step(rec, k8s)
            assert outcome.scaled_to is None and replicas(k8s) == 2
        able = condition(status(k8s), "AbleToScale")
        assert (able["status"], able["reason"]) == ("False", PAUSED)
        assert condition(status(k8s), "Ready")["reason"] == PAUSED
        assert status(k8s)["lastDecision"]["reason"] == PAUSED_REASON
        assert status(k8s)["desiredReplicas"] > 2  # the decision is still made (and learned from)
        annotate(k8s, {PAUSED_ANNOTATION: "false"})
        await step(rec, k8s)
        assert replicas(k8s) > 2
        assert condition(status(k8s), "AbleToScale")["status"] == "True"


@pytest.mark.asyncio
async def test_paused_replicas_sets_the_count_once_then_holds_it():
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s)
        annotate(k8s, {PAUSED_REPLICAS_ANNOTATION: "5"})
        telemetry = ScriptedTelemetry(level=20.0)
        rec = make_reconciler(url, telemetry)
        assert (await step(rec, k8s)).scaled_to == 5 and replicas(k8s) == 5
        telemetry.level = 0.5
        for _ in range(3):
            assert (await step(rec, k8s)).scaled_to is None and replicas(k8s) == 5
        able = condition(status(k8s), "AbleToScale")
        assert (able["status"], able["reason"]) == ("False", PAUSED) and "5 replicas" in able["message"]
        # a person's change while paused is not fought, and not taken for another writer afterwards
        k8s.objects[DEPLOYMENTS, "default", "llm-server"].patch({"spec": {"replicas": 7}})
        annotate(k8s, {PAUSED_REPLICAS_ANNOTATION: "seven"})
        await step(rec, k8s)
        assert replicas(k8s) == 7 and "not a replica count" in condition(status(k8s), "AbleToScale")["message"]
        assert status(k8s).get("conflictingWriter") is None


# --- fallback --------------------------------------------------------------------------------------------------
class FailingTelemetry(ScriptedTelemetry):
    """Raises while `failing` (a telemetry source's own fault), else the scripted window."""

    failing = True

    def __call__(self, spec, now):
        if self.failing:
            raise RuntimeError("the metrics backend is down")
        return super().__call__(spec, now)


@pytest.mark.asyncio
async def test_fallback_replicas_after_failure_threshold_steps_without_telemetry():
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s, fallback={"failureThreshold": 3, "replicas": 6})
        telemetry = FailingTelemetry(level=1.5)
        rec = make_reconciler(url, telemetry)
        for failures in (1, 2):
            await step(rec, k8s)
            assert replicas(k8s) == 2  # held while under the threshold
            assert status(k8s)["posterior"]["forecastFailures"] == failures
            assert condition(status(k8s), "Ready")["reason"] == "QueryFailed"
        outcome = await step(rec, k8s)
        assert outcome.scaled_to == 6 and replicas(k8s) == 6
        assert status(k8s)["lastDecision"]["reason"] == FALLBACK_REASON
        ready = condition(status(k8s), "Ready")
        assert (ready["status"], ready["reason"]) == ("False", FALLBACK) and "RuntimeError" in ready["message"]
        assert condition(status(k8s), "ForecastReady")["status"] == "False"
        await step(rec, k8s)
        assert replicas(k8s) == 6  # stays while telemetry fails
        telemetry.failing = False
        await step(rec, k8s)
        assert status(k8s)["posterior"]["forecastFailures"] == 0
        assert status(k8s)["lastDecision"]["reason"] != FALLBACK_REASON
        assert condition(status(k8s), "Ready")["status"] == "True"


@pytest.mark.asyncio
async def test_without_fallback_failing_telemetry_holds():
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s)
        rec = make_reconciler(url, FailingTelemetry())
        for _ in range(4):
            await step(rec, k8s)
        assert replicas(k8s) == 2 and status(k8s)["lastDecision"]["reason"] == "hold-telemetry-stale"


# --- another autoscaler on the target -----------------------------------------------------------------------------
def add_hpa(k8s, name="llm-hpa", target="llm-server", kind="Deployment", api_version="apps/v1"):
    k8s.resources[HPAS] = kmock.ResourceInfo(kind="HorizontalPodAutoscaler", namespaced=True, verbs=VERBS)
    k8s.objects[HPAS, "default", name] = {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"scaleTargetRef": {"apiVersion": api_version, "kind": kind, "name": target},
                 "minReplicas": 1, "maxReplicas": 10}}


def add_scaled_object(k8s, name="llm-keda", target="llm-server"):
    k8s.resources[SCALED_OBJECTS] = kmock.ResourceInfo(kind="ScaledObject", namespaced=True, verbs=VERBS)
    k8s.objects[SCALED_OBJECTS, "default", name] = {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"scaleTargetRef": {"name": target}, "triggers": []}}  # KEDA's defaults: an apps/v1 Deployment


@pytest.mark.asyncio
@pytest.mark.parametrize(("add", "kind", "owner"), [(add_hpa, "HorizontalPodAutoscaler", "llm-hpa"),
                                                    (add_scaled_object, "ScaledObject", "llm-keda")])
async def test_a_target_scaled_by_another_autoscaler_is_reported_and_not_written(add, kind, owner):
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s)
        add(k8s)
        rec = make_reconciler(url, ScriptedTelemetry(level=20.0))
        for _ in range(3):
            assert (await step(rec, k8s)).scaled_to is None
        assert replicas(k8s) == 2
        able = condition(status(k8s), "AbleToScale")
        assert (able["status"], able["reason"]) == ("False", MANAGED_ELSEWHERE)
        assert f"{kind} {owner}" in able["message"]
        (event,) = events(k8s, MANAGED_ELSEWHERE)  # once, when it starts: not one per step
        assert event["type"] == "Warning" and owner in event["message"]


@pytest.mark.asyncio
async def test_an_hpa_of_another_target_does_not_stop_harmony():
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s)
        add_hpa(k8s, target="other-server")
        add_hpa(k8s, name="same-name-other-kind", kind="StatefulSet")
        rec = make_reconciler(url, ScriptedTelemetry(level=20.0))
        await step(rec, k8s)
        assert replicas(k8s) > 2 and condition(status(k8s), "AbleToScale")["status"] == "True"


@pytest.mark.asyncio
async def test_recommend_mode_is_the_intended_setup_with_an_hpa_reading_harmonys_metric():
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s, mode="Recommend")
        add_hpa(k8s)
        add_scaled_object(k8s)
        rec = make_reconciler(url, ScriptedTelemetry(level=20.0))
        await step(rec, k8s)
        assert replicas(k8s) == 2  # Recommend mode writes nothing anyway
        assert condition(status(k8s), "AbleToScale")["status"] == "True"
        assert status(k8s)["recommendedReplicas"] > 2 and not events(k8s, MANAGED_ELSEWHERE)


@pytest.mark.asyncio
async def test_a_list_harmony_may_not_make_is_counted_and_the_step_goes_on():
    """RBAC without the chart's rules: the HPA list is forbidden. The step still scales (the other-writer
    check remains the backstop) and counts the API error."""
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s)
        add_hpa(k8s, target="other-server")
        k8s[kmock.method.GET, kmock.resource(HPAS)] << 403 << {
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
            "message": "horizontalpodautoscalers.autoscaling is forbidden"}
        rec = make_reconciler(url, ScriptedTelemetry(level=20.0))
        await step(rec, k8s)
        assert replicas(k8s) > 2
        labels = {"autoscaler_namespace": "default", "autoscaler": "llm", "reason": "api-error"}
        assert rec.metrics.registry.get_sample_value("harmony_reconcile_failures_total", labels) == 1.0
