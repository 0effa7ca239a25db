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


# ------------------------------------------------------------------------------------------- finalizers
FINALIZER = "harmony.dev/harmony"  # the installation "harmony"'s


def path_of(namespace: str, name: str) -> str:
    return f"/apis/harmony.dev/v1alpha1/namespaces/{namespace}/harmonyautoscalers/{name}"


async def delete(url: str, namespace: str, name: str) -> int:
    def send() -> int:
        request = urllib.request.Request(url + path_of(namespace, name), method="DELETE")
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status

    return await asyncio.to_thread(send)


def finalizers(k8s, namespace: str, name: str) -> list[str]:
    return obj(k8s, HA, namespace, name)["metadata"].get("finalizers") or []


def gone(k8s, namespace: str, name: str) -> bool:
    return k8s.objects[HA, namespace, name].deleted


async def serve_until_finalized(k8s, url, settings, served):
    """Run an operator with `settings` until every (namespace, name) in `served` carries its finalizer and
    a status its daemon wrote."""
    from harmony.operator.app import finalizer_name
    from tests.operator_support import ScriptedTelemetry, eventually, make_reconciler, operator

    async with operator(make_reconciler(url, ScriptedTelemetry()), url, settings):
        await eventually(lambda: all(finalizer_name(settings) in finalizers(k8s, *key)
                                     and obj(k8s, HA, *key).get("status", {}).get("conditions") for key in served))


async def test_an_operator_that_exits_leaves_no_finalizer_and_deleting_completes():
    """An uninstall: the operator's last act takes its finalizer (and kopf's annotations) off what it served,
    so deleting an object, or its namespace, does not wait for an operator that is gone."""
    from harmony.operator.app import OperatorSettings

    async with cluster(namespaces=("team-a", "team-b")) as (k8s, url):
        add_deployment(k8s, namespace="team-a")
        add_deployment(k8s, namespace="team-b")
        add_autoscaler(k8s, namespace="team-a")
        add_autoscaler(k8s, namespace="team-b")
        served = [("team-a", "llm"), ("team-b", "llm")]
        await serve_until_finalized(k8s, url, OperatorSettings(installation="harmony"), served)
        for key in served:
            meta = obj(k8s, HA, *key)["metadata"]
            assert not meta.get("finalizers") and not meta.get("annotations"), meta
            assert await delete(url, *key) == 200 and gone(k8s, *key)


@pytest.mark.parametrize("change", ["selector", "namespaces"])
async def test_a_shard_change_leaves_no_finalizer_nobody_removes(change):
    """An upgrade to another selector or other namespaces: the objects left behind carry no finalizer, those
    served now carry exactly one, which the operator removes when they are deleted."""
    from harmony.operator.app import OperatorSettings
    from tests.operator_support import ScriptedTelemetry, eventually, make_reconciler, operator

    before, after = {"selector": ({"selector": {"shard": "a"}}, {"selector": {"shard": "b"}}),
                     "namespaces": ({"namespaces": ("team-a",)}, {"namespaces": ("team-b",)})}[change]
    async with cluster(namespaces=("team-a", "team-b")) as (k8s, url):
        for ns, shard in (("team-a", "a"), ("team-b", "b")):
            add_deployment(k8s, namespace=ns)
            add_autoscaler(k8s, namespace=ns, labels={"shard": shard})
        left, kept = ("team-a", "llm"), ("team-b", "llm")
        await serve_until_finalized(k8s, url, OperatorSettings(installation="harmony", **before), [left])
        settings = OperatorSettings(installation="harmony", **after)
        async with operator(make_reconciler(url, ScriptedTelemetry()), url, settings):
            await eventually(lambda: finalizers(k8s, *kept) == [FINALIZER])
            assert finalizers(k8s, *left) == []
            assert await delete(url, *left) == 200 and gone(k8s, *left)  # at once: nothing holds it
            assert await delete(url, *kept) == 200
            await eventually(lambda: gone(k8s, *kept))  # the operator stops its daemon, then lets it go


async def test_an_installation_strips_its_finalizer_from_what_it_no_longer_serves_and_no_one_elses():
    """An operator killed before it could leave, then started with another selector: its installation's
    finalizer comes off the objects it no longer matches; another installation's (a shard beside it) stays."""
    from harmony.operator.app import OperatorSettings
    from tests.operator_support import ScriptedTelemetry, eventually, make_reconciler, operator

    async with cluster() as (k8s, url):
        for name, shard, finalizer in (("was-ours", "a", FINALIZER), ("theirs", "c", "harmony.dev/other")):
            add_deployment(k8s, name=f"{name}-server")
            add_autoscaler(k8s, name=name, labels={"shard": shard},
                           scaleTargetRef={"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{name}-server"})
            k8s.objects[HA, "default", name].patch({"metadata": {"finalizers": [finalizer]}})
        add_deployment(k8s)
        add_autoscaler(k8s, labels={"shard": "b"})
        settings = OperatorSettings(installation="harmony", selector={"shard": "b"})
        async with operator(make_reconciler(url, ScriptedTelemetry()), url, settings):
            await eventually(lambda: finalizers(k8s, "default", "llm") == [FINALIZER])
            await eventually(lambda: finalizers(k8s, "default", "was-ours") == [])
            assert finalizers(k8s, "default", "theirs") == ["harmony.dev/other"]


async def test_the_finalizer_is_the_installations_and_a_bad_name_is_refused():
    from harmony.errors import HarmonyInputError
    from harmony.operator.app import OperatorSettings, finalizer_name

    assert {finalizer_name(OperatorSettings(installation="harmony", **shard)) for shard in (
        {}, {"selector": {"shard": "a"}}, {"namespaces": ("team-a",)})} == {FINALIZER}
    # without an installation name: one per shard, so shards beside each other never strip each other's
    assert finalizer_name(OperatorSettings(selector={"shard": "a"})) != finalizer_name(OperatorSettings())
    with pytest.raises(HarmonyInputError, match="installation"):
        OperatorSettings(installation="my release/1")
