"""Ready replicas as Kubernetes means them (KubeClient.get_scale's `ready_replicas`), against the kmock emulator.

apps/v1 kinds report status.readyReplicas on the object (absent: none ready); any other kind's Ready pods are
counted through its scale subresource's status.selector, as the HPA counts them. The emulator here answers two
requests as a real API server does where kmock's generic storage does not: a scale GET returns an
autoscaling/v1 Scale (never the target's readyReplicas), and a pod list honours labelSelector. Last, the
e2e kubelet stand-in: pods Ready a cold start after a scale-up, removed at once on a scale-down.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time

import kmock
import pytest

from harmony.operator.kube import KubeClient
from tests.operator_support import (
    DEPLOYMENTS,
    VERBS,
    Emulator,
    add_deployment,
    declare_cluster,
    eventually,
    kubelet,
    obj,
)

pytestmark = pytest.mark.asyncio

PODS = "v1/pods"
REPLICASETS = "apps/v1/replicasets"
STATEFULSETS = "apps/v1/statefulsets"
SERVICES = "serving.example.com/v1/inferenceservices"  # a custom resource with a scale subresource


def selector_matches(selector: str, labels: dict) -> bool:
    """Kubernetes' label-selector string (`k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`;
    comma-separated requirements, all of which must hold)."""
    for req in (r.strip() for r in re.split(r",(?![^()]*\))", selector)):
        if m := re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", req):
            values = {v.strip() for v in m[3].split(",")}
            ok = (labels.get(m[1]) in values) == (m[2] == "in")
        elif m := re.fullmatch(r"([^=!\s]+)\s*(==|=|!=)\s*(\S*)", req):
            ok = (labels.get(m[1]) == m[3]) == (m[2] != "!=")
        elif m := re.fullmatch(r"!\s*(\S+)", req):
            ok = m[1] not in labels
        elif re.fullmatch(r"\S+", req):
            ok = req in labels
        else:
            raise ValueError(f"unparseable label selector requirement {req!r}")
        if not ok:
            return False
    return True


class ApiServer(Emulator):
    """The emulator with a real API server's scale subresource and label-selected lists."""

    async def _serve_fetch(self, request):
        raw = await super()._serve_fetch(request)
        if request.subresource != "scale":
            return raw
        meta, spec, status = raw.get("metadata", {}), raw.get("spec", {}), raw.get("status", {})
        if raw["apiVersion"].startswith("apps/"):  # the workload's spec.selector, serialised
            labels = spec.get("selector", {}).get("matchLabels", {})
            selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        else:  # a CRD's scale subresource, labelSelectorPath: .status.selector
            selector = status.get("selector")
        return {"apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace"),
                             "resourceVersion": meta.get("resourceVersion")},
                "spec": {"replicas": spec.get("replicas", 0)},
                "status": {"replicas": status.get("replicas", 0), **({"selector": selector} if selector else {})}}

    async def _serve_list(self, request):
        found = await super()._serve_list(request)
        selector = request.params.get("labelSelector")
        if selector:
            found["items"] = [o for o in found["items"]
                              if selector_matches(selector, o.get("metadata", {}).get("labels") or {})]
        return found


@contextlib.asynccontextmanager
async def api_server():
    k8s = ApiServer()
    async with k8s, kmock.Server(k8s) as server:
        declare_cluster(k8s, ("default", "other"))
        k8s.resources[REPLICASETS] = kmock.ResourceInfo(kind="ReplicaSet", namespaced=True, verbs=VERBS,
                                                        subresources={"scale", "status"})
        k8s.resources[PODS] = kmock.ResourceInfo(kind="Pod", namespaced=True, verbs=VERBS)
        k8s.resources[SERVICES] = kmock.ResourceInfo(kind="InferenceService", namespaced=True, verbs=VERBS,
                                                     subresources={"scale", "status"})
        yield k8s, str(server.url).rstrip("/")


def kube_client(url: str) -> KubeClient:
    import kubernetes

    return KubeClient(kubernetes.client.ApiClient(kubernetes.client.Configuration(host=url)))


def add_workload(k8s, resource: str, kind: str, replicas: int, ready: int | None, name="llm-server") -> None:
    api_version = resource.rsplit("/", 1)[0]
    k8s.objects[resource, "default", name] = {
        "apiVersion": api_version, "kind": kind,
        "metadata": {"name": name, "namespace": "default", "resourceVersion": "7"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}},
        "status": {"replicas": replicas, **({"readyReplicas": ready} if ready is not None else {})},
    }


def pod(name: str, labels: dict, ready: bool | None, namespace="default", phase="Running", deleting=False) -> dict:
    """A pod; `ready` None: no conditions yet (just scheduled)."""
    meta = {"name": name, "namespace": namespace, "labels": labels}
    if deleting:
        meta |= {"deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["example.com/drain"]}
    status = {"phase": phase}
    if ready is not None:
        status["conditions"] = [{"type": "PodScheduled", "status": "True"},
                                {"type": "Ready", "status": "True" if ready else "False"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "status": status}


def requests_to(k8s, method, path_suffix: str) -> list:
    return [r for r in k8s[method] if r.url.path.endswith(path_suffix)]


@pytest.mark.parametrize(("resource", "kind"), [(DEPLOYMENTS, "Deployment"), (STATEFULSETS, "StatefulSet"),
                                                (REPLICASETS, "ReplicaSet")])
async def test_apps_kinds_report_ready_replicas_from_the_object(resource, kind):
    async with api_server() as (k8s, url):
        add_workload(k8s, resource, kind, replicas=5, ready=2)
        scale = await asyncio.to_thread(kube_client(url).get_scale, "apps/v1", kind, "default", "llm-server")
    assert (scale.replicas, scale.observed_replicas, scale.ready_replicas) == (5, 5, 2)
    assert scale.resource_version == "7"
    plural = resource.rsplit("/", 1)[1]
    assert requests_to(k8s, kmock.method.GET, f"/{plural}/llm-server")  # the object itself: the scale has no count
    assert not requests_to(k8s, kmock.method.GET, "/pods")  # no pod list (nor its permission) for apps kinds


@pytest.mark.parametrize("with_status", [True, False], ids=["no-readyReplicas", "no-status"])
async def test_a_deployment_without_ready_replicas_has_none_ready(with_status):
    async with api_server() as (k8s, url):
        add_deployment(k8s, replicas=5, ready=0)
        if not with_status:  # just created: no controller has written a status yet
            raw = dict(obj(k8s, DEPLOYMENTS, "default", "llm-server"))
            k8s.objects[DEPLOYMENTS, "default", "llm-server"] = {k: v for k, v in raw.items() if k != "status"}
        assert "readyReplicas" not in (obj(k8s, DEPLOYMENTS, "default", "llm-server").get("status") or {})
        scale = await asyncio.to_thread(kube_client(url).get_scale, "apps/v1", "Deployment", "default",
                                        "llm-server")
    assert scale.replicas == 5 and scale.ready_replicas == 0
    assert scale.observed_replicas == (5 if with_status else 0)


async def test_other_kinds_count_ready_pods_matching_the_scale_selector():
    selector = "app=llm,tier in (gpu, gpu-large)"
    serving = {"app": "llm", "tier": "gpu"}
    async with api_server() as (k8s, url):
        k8s.objects[SERVICES, "default", "llm"] = {
            "apiVersion": "serving.example.com/v1", "kind": "InferenceService",
            "metadata": {"name": "llm", "namespace": "default", "resourceVersion": "3"},
            "spec": {"replicas": 6}, "status": {"replicas": 6, "selector": selector}}
        for p in (
            pod("ready-a", serving, True),
            pod("ready-b", {"app": "llm", "tier": "gpu-large"}, True),
            pod("starting", serving, False),
            pod("scheduled", serving, None, phase="Pending"),
            pod("terminating", serving, True, deleting=True),
            pod("finished", serving, True, phase="Succeeded"),  # stale conditions of a finished pod
            pod("other-tier", {"app": "llm", "tier": "cpu"}, True),
            pod("other-app", {"app": "embedder", "tier": "gpu"}, True),
            pod("other-namespace", serving, True, namespace="other"),
        ):
            k8s.objects[PODS, p["metadata"]["namespace"], p["metadata"]["name"]] = p
        scale = await asyncio.to_thread(kube_client(url).get_scale, "serving.example.com/v1", "InferenceService",
                                        "default", "llm")
    assert (scale.replicas, scale.observed_replicas, scale.ready_replicas) == (6, 6, 2)
    (listed,) = requests_to(k8s, kmock.method.GET, "/namespaces/default/pods")
    assert listed.params["labelSelector"] == selector  # the scale's selector, sent intact
    assert not requests_to(k8s, kmock.method.GET, "/inferenceservices/llm")  # the object is never read


async def test_a_kind_without_ready_replicas_or_selector_has_unknown_readiness():
    async with api_server() as (k8s, url):
        k8s.objects[SERVICES, "default", "llm"] = {
            "apiVersion": "serving.example.com/v1", "kind": "InferenceService",
            "metadata": {"name": "llm", "namespace": "default", "resourceVersion": "3"},
            "spec": {"replicas": 3}, "status": {"replicas": 3}}
        k8s.objects[PODS, "default", "p"] = pod("p", {"app": "llm"}, True)
        scale = await asyncio.to_thread(kube_client(url).get_scale, "serving.example.com/v1", "InferenceService",
                                        "default", "llm")
    assert scale.replicas == 3 and scale.ready_replicas is None  # not every pod of the namespace
    assert not requests_to(k8s, kmock.method.GET, "/pods")


# --- the e2e kubelet stand-in ---------------------------------------------------------------------------------

async def test_the_kubelet_makes_new_pods_ready_after_the_cold_start_and_removes_pods_at_once():
    cold_start_s = 1.5
    async with api_server() as (k8s, _):
        add_deployment(k8s, replicas=2)
        dep = k8s.objects[DEPLOYMENTS, "default", "llm-server"]

        def counts():
            status = obj(k8s, DEPLOYMENTS, "default", "llm-server")["status"]
            return status["replicas"], status.get("readyReplicas", 0)

        stop = asyncio.Event()
        task = asyncio.create_task(kubelet(k8s, cold_start_s, stop, every_s=0.01))
        try:
            # up 2 -> 5: three pods exist at once, none of them Ready before the cold start
            asked = time.monotonic()
            dep.patch({"spec": {"replicas": 5}})
            await eventually(lambda: counts()[0] == 5, timeout=cold_start_s, every=0.01)
            assert counts() == (5, 2)
            await eventually(lambda: counts() == (5, 5), timeout=cold_start_s + 5, every=0.01)
            assert time.monotonic() - asked >= cold_start_s

            # up 5 -> 8, then down to 6 before they start: starting pods go first, the Ready ones stay
            asked = time.monotonic()
            dep.patch({"spec": {"replicas": 8}})
            await eventually(lambda: counts() == (8, 5), timeout=cold_start_s, every=0.01)
            dep.patch({"spec": {"replicas": 6}})
            await eventually(lambda: counts()[0] == 6, timeout=cold_start_s, every=0.01)
            assert counts() == (6, 5)
            await eventually(lambda: counts() == (6, 6), timeout=cold_start_s + 5, every=0.01)
            assert time.monotonic() - asked >= cold_start_s  # the survivor kept its own start time

            # down 6 -> 1: removed at once, Ready ones included
            asked = time.monotonic()
            dep.patch({"spec": {"replicas": 1}})
            await eventually(lambda: counts() == (1, 1), timeout=cold_start_s, every=0.01)
            assert time.monotonic() - asked < cold_start_s
        finally:
            stop.set()
            await task
