"""The Kubernetes side of the operator: scale subresources, status writes and Events, via the official client.

One small wrapper (`KubeClient`) so the reconciler depends on four operations, not on the client's API
surface; tests point it at the kmock emulator. The scale subresource is reached generically
(`/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}/scale`), so Deployments, StatefulSets and any
custom resource with a scale subresource work alike; the plural comes from API discovery.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from kubernetes import client
from kubernetes.client.rest import ApiException

GROUP = "harmony.dev"
VERSION = "v1alpha1"
PLURAL = "harmonyautoscalers"
KIND = "HarmonyAutoscaler"


class TargetNotFound(Exception):
    """The scale target (or its scale subresource) does not exist."""


class Conflict(Exception):
    """The object changed since it was read (HTTP 409): read it again and retry."""


@dataclass(frozen=True)
class Scale:
    """A target's scale subresource: desired replicas (spec), observed replicas (status), version."""

    replicas: int
    observed_replicas: int
    resource_version: str | None


class KubeClient:
    """Operations the reconciler needs, over a kubernetes ApiClient (configured by the caller)."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api = api_client
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self._plurals: dict[tuple[str, str], str] = {}

    # --- scale subresource ---------------------------------------------------------------------------
    def _plural(self, api_version: str, kind: str) -> tuple[str, str, str]:
        group, _, version = api_version.rpartition("/")
        if not group:
            raise TargetNotFound(
                f"scaleTargetRef apiVersion {api_version!r}: core-group kinds have no scale support here")
        key = (api_version, kind)
        if key not in self._plurals:
            try:
                found = self.custom.get_api_resources(group, version)
            except ApiException as exc:
                raise TargetNotFound(f"API {api_version} is not served ({exc.status})") from None
            for res in found.resources or []:
                if res.kind == kind and "/" not in res.name:
                    self._plurals[key] = res.name
                    break
            else:
                raise TargetNotFound(f"kind {kind} is not served by {api_version}")
        return group, version, self._plurals[key]

    def get_scale(self, api_version: str, kind: str, namespace: str, name: str) -> Scale:
        group, version, plural = self._plural(api_version, kind)
        try:
            obj = self.custom.get_namespaced_custom_object_scale(group, version, namespace, plural, name)
        except ApiException as exc:
            if exc.status == 404:
                raise TargetNotFound(f"{kind} {namespace}/{name} not found") from None
            raise
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        replicas = int(spec.get("replicas", 0) or 0)
        version_tag = (obj.get("metadata") or {}).get("resourceVersion")
        return Scale(replicas, int(status.get("replicas", replicas) or 0), version_tag)

    def set_scale(self, api_version: str, kind: str, namespace: str, name: str, replicas: int,
                  resource_version: str | None) -> None:
        """Set spec.replicas, conditional on `resource_version` (optimistic concurrency, like the HPA's
        UpdateScale): a patch that carries metadata.resourceVersion is a precondition, so a concurrent
        writer makes this raise Conflict instead of being overwritten."""
        group, version, plural = self._plural(api_version, kind)
        body: dict = {"spec": {"replicas": int(replicas)}}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            self.custom.patch_namespaced_custom_object_scale(group, version, namespace, plural, name, body)
        except ApiException as exc:
            if exc.status == 409:
                raise Conflict(f"{kind} {namespace}/{name} changed concurrently") from None
            if exc.status == 404:
                raise TargetNotFound(f"{kind} {namespace}/{name} not found") from None
            raise

    # --- the HarmonyAutoscaler ------------------------------------------------------------------------
    def patch_status(self, namespace: str, name: str, status: dict) -> None:
        self.custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, {"status": status})

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
        self.core.create_namespaced_event(namespace, body)
