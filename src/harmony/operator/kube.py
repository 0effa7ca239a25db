"""The Kubernetes side of the operator: scale subresources, readiness, status writes and Events, as plain JSON
requests.

One small wrapper (`KubeClient`) so the reconciler depends on a few operations (the scale, status writes,
Events, the namespace's other autoscalers), not on a client's API surface (app.py's peering check reads
kopf's peering objects through it too); tests point it at the kmock emulator. The scale subresource is
reached generically (`/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}/scale`), so Deployments,
StatefulSets and any custom resource with a scale subresource work alike; the plural comes from API discovery.

Ready replicas are counted as the HPA counts them, not taken from the scale's status.replicas (which
includes pods still starting): apps/v1 workloads report status.readyReplicas on the object itself; any
other kind's pods are found by the scale's status.selector and counted by their Ready condition.

Connection, TLS and credentials (refreshed tokens included) come from the official client's ApiClient, but
requests go through its REST layer as plain JSON, not its typed API classes: those validate every call's
arguments with pydantic and (de)serialise through the model layer (10-25% of the client's CPU per call
here), and building CoreV1Api imports the core models, 0.45 s and 21 MiB of RSS at start, for one call
(Events).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from urllib.parse import quote

import urllib3
from kubernetes import client
from kubernetes.client.rest import ApiException

GROUP = "harmony.dev"
VERSION = "v1alpha1"
PLURAL = "harmonyautoscalers"
KIND = "HarmonyAutoscaler"
MERGE_PATCH = "application/merge-patch+json"

# Kinds whose own status carries readyReplicas (kept by their controller from the pods' Ready condition).
# Read from the object, one GET; any other kind costs a pod list.
READY_REPLICAS_KINDS = frozenset({("apps", "Deployment"), ("apps", "StatefulSet"), ("apps", "ReplicaSet")})


class ApiError(Exception):
    """The API server answered with an error status (or not at all)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class TargetNotFound(Exception):
    """The scale target (or its scale subresource) does not exist."""


class Conflict(Exception):
    """The object changed since it was read (HTTP 409): read it again and retry."""


@dataclass(frozen=True)
class Scale:
    """A target's replica counts, read together by `KubeClient.get_scale`.

    replicas: desired (the scale's spec.replicas): what a scale write compares against.
    observed_replicas: pods that exist (the scale's status.replicas), starting ones included.
    resource_version: the scale's, the precondition of the next write.
    ready_replicas: pods Ready now (status.readyReplicas, or Ready pods matching status.selector): the
    capacity actually serving, the count breaches and capacity are learned from. None when the target
    offers no way to tell (no readyReplicas and no selector in its scale subresource).
    created: the target's metadata.creationTimestamp (a Scale carries its object's), None when absent: a
    target deleted and created again is a new object with a count of its own, not another writer's."""

    replicas: int
    observed_replicas: int
    resource_version: str | None
    ready_replicas: int | None = None
    created: str | None = None


@dataclass(frozen=True)
class OtherAutoscaler:
    """An HPA or a KEDA ScaledObject and the target it scales (target_api_version None: not stated)."""

    kind: str
    name: str
    target_api_version: str | None
    target_kind: str
    target_name: str

    def scales(self, api_version: str, kind: str, name: str) -> bool:
        """Whether it scales the workload `kind` `name` of `api_version`: same kind and name, and the same API
        group when it states one (apps/v1 and apps/v1beta1 name one Deployment)."""
        if (self.target_kind, self.target_name) != (kind, name):
            return False
        return self.target_api_version is None or (
            self.target_api_version.rpartition("/")[0] == api_version.rpartition("/")[0])


class KubeClient:
    """Operations the reconciler needs, over a kubernetes ApiClient (configured by the caller).

    timeout_s bounds each request, so a hung API server cannot hold a reconcile (and its worker thread)
    forever."""

    def __init__(self, api_client: client.ApiClient, timeout_s: float = 10.0) -> None:
        self.api = api_client
        self.timeout_s = timeout_s
        self._plurals: dict[tuple[str, str], str] = {}

    def _request(self, method: str, path: str, body: dict | None = None, content_type: str = MERGE_PATCH) -> dict:
        """One request; the decoded JSON answer. Raises ApiError on a non-2xx status."""
        headers = {"Accept": "application/json", "User-Agent": "harmony-operator"}
        if body is not None:
            headers["Content-Type"] = content_type
        self.api.update_params_for_auth(headers, [], ["BearerToken"], path, method, body)
        try:
            response = self.api.rest_client.request(method, self.api.configuration.host + path, headers=headers,
                                                    body=body, _request_timeout=self.timeout_s)
            data = response.read()
        except (ApiException, urllib3.exceptions.HTTPError) as exc:  # unreachable, TLS, timeout, Retry-After
            raise ApiError(getattr(exc, "status", 0) or 0, f"{method} {path}: {exc}") from None
        if not 200 <= response.status <= 299:
            try:
                message = json.loads(data).get("message", "")
            except (ValueError, AttributeError):
                message = data[:200].decode("utf-8", "replace")
            raise ApiError(response.status, message or str(response.reason))
        return json.loads(data) if data else {}

    # --- scale subresource ---------------------------------------------------------------------------
    def _plural(self, api_version: str, kind: str) -> tuple[str, str, str]:
        group, _, version = api_version.rpartition("/")
        if not group:
            raise TargetNotFound(
                f"scaleTargetRef apiVersion {api_version!r}: core-group kinds have no scale support here")
        key = (api_version, kind)
        if key not in self._plurals:
            try:
                found = self._request("GET", f"/apis/{_q(group)}/{_q(version)}")
            except ApiError as exc:
                raise TargetNotFound(f"API {api_version} is not served ({exc.status})") from None
            for res in found.get("resources") or []:
                if res.get("kind") == kind and "/" not in res.get("name", "/"):
                    self._plurals[key] = res["name"]
                    break
            else:
                raise TargetNotFound(f"kind {kind} is not served by {api_version}")
        return group, version, self._plurals[key]

    def _object_path(self, api_version: str, kind: str, namespace: str, name: str) -> str:
        group, version, plural = self._plural(api_version, kind)
        return f"/apis/{_q(group)}/{_q(version)}/namespaces/{_q(namespace)}/{_q(plural)}/{_q(name)}"

    def _scale_path(self, api_version: str, kind: str, namespace: str, name: str) -> str:
        return self._object_path(api_version, kind, namespace, name) + "/scale"

    def _get_target(self, path: str, kind: str, namespace: str, name: str) -> dict:
        try:
            return self._request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                raise TargetNotFound(f"{kind} {namespace}/{name} not found") from None
            raise

    def get_scale(self, api_version: str, kind: str, namespace: str, name: str) -> Scale:
        """The target's scale subresource, and its ready replicas (`ready_replicas`)."""
        obj = self._get_target(self._scale_path(api_version, kind, namespace, name), kind, namespace, name)
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        replicas = int(spec.get("replicas", 0) or 0)
        meta = obj.get("metadata") or {}
        ready = self.get_ready_replicas(api_version, kind, namespace, name, status.get("selector"))
        return Scale(replicas, int(status.get("replicas", replicas) or 0), meta.get("resourceVersion"), ready,
                     meta.get("creationTimestamp"))

    def get_ready_replicas(self, api_version: str, kind: str, namespace: str, name: str,
                           selector: str | None) -> int | None:
        """Ready replicas of the target, as the HPA counts them: status.readyReplicas of an apps/v1
        Deployment, StatefulSet or ReplicaSet; for any other kind, its Ready pods, found by `selector` (the
        scale subresource's status.selector). None when neither exists."""
        group = api_version.rpartition("/")[0]
        if (group, kind) in READY_REPLICAS_KINDS:
            target = self._get_target(self._object_path(api_version, kind, namespace, name), kind, namespace, name)
            # readyReplicas is omitted while it is zero (omitempty): absent means none ready
            return int((target.get("status") or {}).get("readyReplicas", 0) or 0)
        if not selector:
            # An empty selector would match every pod in the namespace: readiness is unknown, not everything.
            return None
        return self.count_ready_pods(namespace, selector)

    def count_ready_pods(self, namespace: str, selector: str) -> int:
        """Pods in `namespace` matching the label selector `selector` (its string form, as a scale's
        status.selector holds it) whose Ready condition is True, not being deleted and not finished: the
        pods the HPA counts as ready (replica_calculator.go, groupPods)."""
        found = self._request("GET", f"/api/v1/namespaces/{_q(namespace)}/pods?labelSelector={_q(selector)}")
        return sum(1 for pod in found.get("items") or [] if _pod_ready(pod))

    def set_scale(self, api_version: str, kind: str, namespace: str, name: str, replicas: int,
                  resource_version: str | None) -> None:
        """Set spec.replicas, conditional on `resource_version` (optimistic concurrency, like the HPA's
        UpdateScale): a patch that carries metadata.resourceVersion is a precondition, so a concurrent
        writer makes this raise Conflict instead of being overwritten."""
        body: dict = {"spec": {"replicas": int(replicas)}}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            self._request("PATCH", self._scale_path(api_version, kind, namespace, name), body)
        except ApiError as exc:
            if exc.status == 409:
                raise Conflict(f"{kind} {namespace}/{name} changed concurrently") from None
            if exc.status == 404:
                raise TargetNotFound(f"{kind} {namespace}/{name} not found") from None
            raise

    # --- the HarmonyAutoscaler ------------------------------------------------------------------------
    def patch_status(self, namespace: str, name: str, status: dict) -> None:
        """A merge patch of the status subresource (lists, such as conditions, are replaced whole)."""
        self._request("PATCH", f"/apis/{GROUP}/{VERSION}/namespaces/{_q(namespace)}/{PLURAL}/{_q(name)}/status",
                      {"status": status})

    def emit_event(self, namespace: str, name: str, uid: str | None, reason: str, message: str,
                   type_: str = "Normal", now: dt.datetime | None = None) -> None:
        """A core/v1 Event on the HarmonyAutoscaler (what `kubectl describe` shows)."""
        now = now or dt.datetime.now(dt.UTC)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{name}.{uuid.uuid4().hex[:12]}", "namespace": namespace},
            "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": name,
                               "namespace": namespace, "uid": uid},
            "reason": reason, "message": message, "type": type_,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
            "source": {"component": "harmony-operator"},
        }
        self._request("POST", f"/api/v1/namespaces/{_q(namespace)}/events", body, "application/json")


    # --- other autoscalers of the namespace --------------------------------------------------------------
    def other_autoscalers(self, namespace: str) -> list[OtherAutoscaler]:
        """The autoscaling/v2 HorizontalPodAutoscalers and KEDA (keda.sh/v1alpha1) ScaledObjects of
        `namespace`, each with the target it scales. A 404 on a list means the API is not served (KEDA not
        installed; an API server without autoscaling/v2): none of that kind."""
        found = []
        for path, kind, defaults in (
                (f"/apis/autoscaling/v2/namespaces/{_q(namespace)}/horizontalpodautoscalers",
                 "HorizontalPodAutoscaler", {}),
                # KEDA defaults an omitted target to an apps/v1 Deployment
                (f"/apis/keda.sh/v1alpha1/namespaces/{_q(namespace)}/scaledobjects", "ScaledObject",
                 {"apiVersion": "apps/v1", "kind": "Deployment"})):
            try:
                items = self._request("GET", path).get("items") or []
            except ApiError as exc:
                if exc.status == 404:
                    continue
                raise
            for item in items:
                ref = {**defaults, **((item.get("spec") or {}).get("scaleTargetRef") or {})}
                found.append(OtherAutoscaler(kind, str((item.get("metadata") or {}).get("name", "")),
                                             ref.get("apiVersion"), str(ref.get("kind", "")),
                                             str(ref.get("name", ""))))
        return found

    # --- kopf peering ----------------------------------------------------------------------------------
    def get_peers(self, peering: str, namespace: str | None = None) -> dict[str, dict] | None:
        """The keep-alives in kopf's peering object `peering` (a ClusterKopfPeering, or with `namespace` that
        namespace's KopfPeering): operator identity -> {priority, lastseen, lifetime}. None when the object
        does not exist."""
        path = (f"/apis/kopf.dev/v1/clusterkopfpeerings/{_q(peering)}" if namespace is None else
                f"/apis/kopf.dev/v1/namespaces/{_q(namespace)}/kopfpeerings/{_q(peering)}")
        try:
            found = self._request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return {k: v for k, v in (found.get("status") or {}).items() if isinstance(v, dict)}


def _pod_ready(pod: dict) -> bool:
    """A pod serving now: Ready condition True; neither terminating (deletionTimestamp set: it is draining
    and leaves the endpoints) nor finished (Succeeded/Failed: it serves nothing, whatever its conditions
    last said)."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    status = pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def _q(segment: str) -> str:
    """One URL path segment or query value, percent-encoded."""
    return quote(str(segment), safe="")
