"""The Kubernetes side of the operator: scale subresources, status writes and Events, as plain JSON requests.

One small wrapper (`KubeClient`) so the reconciler depends on four operations, not on a client's API
surface; tests point it at the kmock emulator. The scale subresource is reached generically
(`/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}/scale`), so Deployments, StatefulSets and any
custom resource with a scale subresource work alike; the plural comes from API discovery.

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
    """A target's scale subresource: desired replicas (spec), observed replicas (status), version."""

    replicas: int
    observed_replicas: int
    resource_version: str | None


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

    def _scale_path(self, api_version: str, kind: str, namespace: str, name: str) -> str:
        group, version, plural = self._plural(api_version, kind)
        return f"/apis/{_q(group)}/{_q(version)}/namespaces/{_q(namespace)}/{_q(plural)}/{_q(name)}/scale"

    def get_scale(self, api_version: str, kind: str, namespace: str, name: str) -> Scale:
        try:
            obj = self._request("GET", self._scale_path(api_version, kind, namespace, name))
        except ApiError as exc:
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


def _q(segment: str) -> str:
    """One URL path segment, percent-encoded."""
    return quote(str(segment), safe="")
