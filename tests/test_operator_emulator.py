"""The test emulator (tests/operator_support.Emulator) refuses what it answers as refused: a write answered
with an error leaves the stored object as it was, as an API server would; a write answered with success
is applied. Without this, tests of conflicts and server errors pass whether or not the client retried.

And what the reconciler writes through it is what the CRD's schema accepts (an API server would refuse the
rest): the status of each fault, its conditions shaped like metav1.Condition."""

from __future__ import annotations

import asyncio
import copy
import json
import urllib.error
import urllib.request

import pytest

from tests.operator_support import DEPLOYMENTS, HA, add_autoscaler, add_deployment, cluster, fail_first_write, obj

pytestmark = pytest.mark.asyncio

SCALE = "/apis/apps/v1/namespaces/default/deployments/llm-server/scale"
STATUS = "/apis/harmony.dev/v1alpha1/namespaces/default/harmonyautoscalers/llm/status"


async def patch(url: str, path: str, body: dict) -> tuple[int, dict]:
    """PATCH through the emulator's HTTP API, as a client would: (status code, answer)."""

    def send() -> tuple[int, dict]:
        request = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="PATCH",
                                         headers={"Content-Type": "application/merge-patch+json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    return await asyncio.to_thread(send)


@pytest.mark.parametrize(("subresource", "path", "key", "body", "code"), [
    ("scale", SCALE, (DEPLOYMENTS, "default", "llm-server"), {"spec": {"replicas": 7}}, 409),
    ("status", STATUS, (HA, "default", "llm"), {"status": {"decisions": 3}}, 500),
])
async def test_a_refused_write_leaves_the_object_unchanged_and_the_next_one_applies(subresource, path, key, body,
                                                                                   code):
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s)
        fail_first_write(k8s, subresource, code, "Refused", "refused by the test")
        before = copy.deepcopy(obj(k8s, *key))
        versions = len(k8s.objects[key].history)

        answered, answer = await patch(url, path, body)
        assert answered == code and answer["code"] == code
        assert obj(k8s, *key) == before  # nothing written ...
        assert len(k8s.objects[key].history) == versions  # ... not even a version watchers were told of

        answered, answer = await patch(url, path, body)  # the reaction is spent: kmock's own answer, a success
        assert answered == 200
        field, value = next(iter(body.items()))
        assert obj(k8s, *key)[field] == before.get(field, {}) | value  # written, and answered as written
        assert answer[field] == obj(k8s, *key)[field]
        assert len(k8s.objects[key].history) == versions + 1


async def test_a_write_to_a_missing_object_is_refused_and_creates_nothing():
    async with cluster() as (k8s, url):
        answered, _ = await patch(url, SCALE, {"spec": {"replicas": 7}})
        assert answered == 404
        assert (DEPLOYMENTS, "default", "llm-server") not in k8s.objects


@pytest.mark.parametrize("case", ["scaled", "capped", "invalid-spec", "missing-target", "telemetry-down"])
async def test_the_status_the_reconciler_writes_is_what_the_crd_accepts(case):
    """Each fault's conditions as the API server would take them: metav1.Condition's shape (CamelCase reasons,
    every required field), each with the generation it was set from."""
    from tests.crd_helpers import load_example, violations
    from tests.operator_support import ScriptedTelemetry, autoscaler_spec, make_reconciler

    spec = autoscaler_spec(**{"scaled": {}, "capped": {"maxReplicas": 2}, "invalid-spec": {"minReplicas": 9,
                                                                                           "maxReplicas": 2},
                              "missing-target": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                                                    "name": "missing"}},
                              "telemetry-down": {}}[case])
    telemetry = ScriptedTelemetry(level=6.5)
    telemetry.stale_reason = "prometheus-unavailable: scripted outage" if case == "telemetry-down" else None
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s)
        rec = make_reconciler(url, telemetry)
        await asyncio.to_thread(rec.reconcile, "default", "llm", "uid-default-llm", 7, spec, None)
        status = obj(k8s, HA, "default", "llm")["status"]
    assert violations({**load_example(), "status": status}) == []
    conditions = {c["type"]: c for c in status["conditions"]}
    assert {c["observedGeneration"] for c in conditions.values()} == {7}
    expected = {"scaled": ("Ready", "True", "Reconciled"),
                "capped": ("ScalingLimited", "True", "LimitedByMaxReplicas"),
                "invalid-spec": ("InvalidSpec", "True", "InvalidSpec"),
                "missing-target": ("AbleToScale", "False", "TargetNotFound"),
                "telemetry-down": ("ForecastReady", "False", "PrometheusUnavailable")}[case]
    type_, value, reason = expected
    assert (conditions[type_]["status"], conditions[type_]["reason"]) == (value, reason)


async def test_a_condition_follows_the_generation_and_keeps_its_transition_time_until_the_status_flips():
    import datetime as dt

    from harmony.operator.state import READY, set_condition

    t0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    first = set_condition([], READY, True, "Reconciled", "", t0, 1)
    later = set_condition(first, READY, True, "Reconciled", "", t0 + dt.timedelta(minutes=5), 2)
    flipped = set_condition(later, READY, False, "Conflict", "", t0 + dt.timedelta(minutes=9), 2)
    assert [(c["observedGeneration"], c["lastTransitionTime"]) for c in (*first, *later, *flipped)] == [
        (1, "2025-01-01T00:00:00Z"), (2, "2025-01-01T00:00:00Z"), (2, "2025-01-01T00:09:00Z")]
    assert "observedGeneration" not in set_condition([], READY, True, "Reconciled", "", t0, None)[0]
    with pytest.raises(ValueError, match="CamelCase"):
        set_condition([], READY, True, "limited-by-max-replicas", "", t0, 1)
