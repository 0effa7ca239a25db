"""Test support for the operator: the kmock Kubernetes emulator set up as a cluster, a scripted telemetry
source (our own boundary, substituted through the Reconciler's constructor), and a running kopf operator."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Mapping

import kmock
import numpy as np
import pandas as pd

from harmony.operator.app import OperatorSettings, run
from harmony.operator.kube import KubeClient
from harmony.operator.metrics import OperatorMetrics
from harmony.operator.reconcile import Reconciler, ReconcileSettings
from harmony.telemetry.frame import Indicator, TelemetryFrame
from harmony.telemetry.prometheus import TelemetryWindow

VERBS = {"list", "watch", "get", "patch", "update", "create", "delete"}
HA = "harmony.dev/v1alpha1/harmonyautoscalers"
DEPLOYMENTS = "apps/v1/deployments"


def _patch_kmock_namespace_list() -> None:
    """kmock 0.8 cannot parse the cluster-scoped Namespace list: in `/api/v1/namespaces` it takes
    `namespaces` for the start of a namespaced path and fails unpacking the name after it, so every such
    request gets a 500. kopf lists and watches that path to serve glob namespaces (`--namespace 'team-*'`).
    This parses exactly that path as the `namespaces` resource and leaves every other path to kmock."""
    from kmock._internal import parsing

    original = parsing.parse_path
    if getattr(original, "harmony_patched", False):
        return

    def parse_path(path: str) -> parsing.ParsedPath:
        if path.split("?")[0].strip("/") == "api/v1/namespaces":
            return parsing.ParsedPath(group="", version="v1", plural="namespaces")
        return original(path)

    parse_path.harmony_patched = True
    parsing.parse_path = parse_path


_patch_kmock_namespace_list()


def declare_cluster(k8s: kmock.KubernetesEmulator, namespaces=("default",)) -> None:
    """Resources kopf and the operator use; without them kopf waits forever, silently."""
    k8s.resources["v1/namespaces"] = kmock.ResourceInfo(kind="Namespace", namespaced=False, verbs=VERBS)
    k8s.resources["v1/events"] = kmock.ResourceInfo(kind="Event", namespaced=True, verbs=VERBS)
    k8s.resources[HA] = kmock.ResourceInfo(kind="HarmonyAutoscaler", namespaced=True, verbs=VERBS,
                                           subresources={"status"})
    k8s.resources[DEPLOYMENTS] = kmock.ResourceInfo(kind="Deployment", namespaced=True, verbs=VERBS,
                                                    subresources={"scale", "status"})
    k8s.resources["apps/v1/statefulsets"] = kmock.ResourceInfo(kind="StatefulSet", namespaced=True, verbs=VERBS,
                                                               subresources={"scale", "status"})
    k8s.resources["kopf.dev/v1/kopfpeerings"] = kmock.ResourceInfo(kind="KopfPeering", namespaced=True, verbs=VERBS)
    k8s.resources["kopf.dev/v1/clusterkopfpeerings"] = kmock.ResourceInfo(kind="ClusterKopfPeering",
                                                                          namespaced=False, verbs=VERBS)
    for ns in namespaces:
        k8s.objects["v1/namespaces", None, ns] = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}


async def api_create(url: str, path: str, body: dict) -> dict:
    """Create an object through the emulator's HTTP API, as a client would (watchers then see an ADDED
    event; objects put into `k8s.objects` directly are only seen by later lists)."""
    import json
    import urllib.request

    def post() -> dict:
        request = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"{}")

    return await asyncio.to_thread(post)


def add_deployment(k8s, name="llm-server", namespace="default", replicas=2, ready: int | None = None,
                   created: dt.datetime | None = None) -> None:
    """A Deployment with `replicas` pods, `ready` of them Ready (default: all, a fleet in steady state). A
    real Deployment omits status.readyReplicas while it is zero; so does this one. `created`: its
    metadata.creationTimestamp (None: none, as kmock keeps it)."""
    ready = replicas if ready is None else ready
    status = {"replicas": replicas, **({"readyReplicas": ready} if ready else {})}
    stamp = {} if created is None else {"creationTimestamp": created.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    k8s.objects[DEPLOYMENTS, namespace, name] = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": "1", **stamp},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}}},
        "status": status,
    }


async def kubelet(k8s, cold_start_s: float, stop: asyncio.Event, name: str = "llm-server",
                  namespace: str = "default", every_s: float = 0.05) -> None:
    """The Deployment controller and kubelets, as far as a Deployment's status shows them, until `stop`:

    - a scale-up creates pods at once (status.replicas rises) that become Ready `cold_start_s` later
      (status.readyReplicas rises then);
    - a scale-down removes pods at once, starting (not yet Ready) ones first, newest first, as the
      ReplicaSet controller picks not-ready pods before ready ones; both counts fall together.

    The same fleet model as the backtest simulator (harmony.backtest.simulator.Fleet), in wall-clock time."""
    key = (DEPLOYMENTS, namespace, name)
    status = obj(k8s, *key).get("status") or {}
    ready = int(status.get("readyReplicas", 0))
    now = time.monotonic()
    starting = [now + cold_start_s] * max(int(status.get("replicas", 0)) - ready, 0)  # ready-at times, oldest first
    while not stop.is_set():
        want, now = int(obj(k8s, *key)["spec"]["replicas"]), time.monotonic()
        if want > ready + len(starting):
            starting += [now + cold_start_s] * (want - ready - len(starting))
        elif want < ready + len(starting):
            remove = ready + len(starting) - want
            cancel = min(remove, len(starting))
            starting = starting[:len(starting) - cancel]
            ready -= remove - cancel
        ready += sum(1 for t in starting if t <= now)
        starting = [t for t in starting if t > now]
        new = {"replicas": ready + len(starting), "readyReplicas": ready}
        current = obj(k8s, *key).get("status") or {}
        if {k: current.get(k, 0) for k in new} != new:
            k8s.objects[key].patch({"status": new})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


def add_peering(k8s, name="harmony") -> None:
    """The cluster-wide kopf peering object replicas of one shard meet in (the chart's users apply kopf's CRD)."""
    k8s.objects["kopf.dev/v1/clusterkopfpeerings", None, name] = {
        "apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering",
        "metadata": {"name": name, "resourceVersion": "1"}, "status": {}}


def fail_first_write(k8s, subresource: str, code: int, reason: str, message: str, times: int = 1) -> None:
    """The API server answers the next `times` PATCHes of `subresource` (scale, status) with a Status error.
    (kmock slices count requests from the first one logged: the next ones start after those served.)"""
    writes = k8s[kmock.method.PATCH, kmock.subresource(subresource)]
    served = len(list(writes))
    writes[served:served + times] << code << {
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code,
        "message": message}


def autoscaler_spec(**overrides) -> dict:
    spec = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm-server"},
        "minReplicas": 1, "maxReplicas": 40, "mode": "Scale", "intervalSeconds": 1,
        "indicators": [{"name": "demand", "query": "sum(rate(requests_total[1m]))", "level": 1, "demand": True}],
        "capacityPerReplica": 1.0,
        "sla": {"maxBreachProbability": 0.01, "coldStartSeconds": 3},
        # the HPA's default scale-up rate (double or +4 per 15 s) would bind for 15 one-second decisions
        "behavior": {"scaleDownStabilizationSeconds": 5, "maxScaleUpStep": 1000},
        "model": {"baseline": "last"},
        "lookbackSeconds": 10, "historySeconds": 120,
    }
    spec.update(overrides)
    return spec


def add_autoscaler(k8s, name="llm", namespace="default", labels=None, **spec_overrides) -> None:
    k8s.objects[HA, namespace, name] = {
        "apiVersion": "harmony.dev/v1alpha1", "kind": "HarmonyAutoscaler",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}", "generation": 1,
                     "resourceVersion": "1", "labels": labels or {}},
        "spec": autoscaler_spec(**spec_overrides),
    }


class ScriptedTelemetry:
    """A telemetry source whose demand level the test sets; `stale` / `reason` simulate outages."""

    def __init__(self, level: float = 1.5, noise: float = 0.05, seed: int = 0) -> None:
        self.level, self.noise = level, noise
        self.stale_reason: str | None = None
        self.all_nan = False
        self.rng = np.random.default_rng(seed)
        self.calls = 0

    def __call__(self, spec, now: dt.datetime) -> TelemetryWindow:
        self.calls += 1
        if self.stale_reason:
            return TelemetryWindow(None, True, self.stale_reason)
        steps = int(spec.history_s // spec.interval_s)
        index = pd.date_range(end=pd.Timestamp(now).floor("s").tz_localize(None), periods=steps,
                              freq=pd.Timedelta(seconds=spec.interval_s))
        values = self.level + self.noise * self.rng.standard_normal(steps)
        if self.all_nan:
            return TelemetryWindow(None, True, "telemetry-missing: demand")
        frame = TelemetryFrame(index, values[:, None, None], ["0"], [Indicator("demand", 1, "1")])
        return TelemetryWindow(frame, False, "")


def make_reconciler(url: str, telemetry, **settings) -> Reconciler:
    import kubernetes

    api = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=url))
    return Reconciler(KubeClient(api), telemetry, OperatorMetrics(), ReconcileSettings(**settings))


class Emulator(kmock.KubernetesEmulator):
    """The kmock emulator, refusing what it answers as refused, and optionally without its request log.

    Refused writes. kmock 0.8 applies a write (PATCH, PUT) to its stored object, and tells watchers
    MODIFIED, before it looks for the reaction that answers it: a write a test answers with 409 or 500
    is applied all the same, so a test of a refused write passes whether the client retried or not. An API
    server writes nothing it refuses. Here a write is answered first, by the test's reactions or else by
    kmock's own (`_serve_update`, which writes, then returns the written object), and applied only when the
    answer is a success: an error status, or an exception, leaves the object and its watchers untouched.

    Merge patches. A field replaced by a value of another shape (a corrupt scalar by an object) is replaced,
    as RFC 7386 and the API server do; kmock refuses it (`_reshaped`).

    Request log. kmock keeps every request it has served (tests assert on them) and matches each new
    request against its reactions by filtering that whole log, so a request costs time proportional to the
    requests served before it: quadratic over a run (at 500 objects, 90% of the process's time after a
    minute). With `log_requests` False a request leaves the log once served, so only requests in flight
    are scanned.

    kmock has no public hook for either; this reaches its `_lock`, `_objects`, `_buses` and `_requests`."""

    log_requests: bool = True

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._unwritten: set[int] = set()  # ids of write requests answered but not yet applied

    async def _handle(self, request):
        try:
            if request.resource is not None and request.action == kmock.action.UPDATE and request.name is not None:
                return await self._answer_then_write(request)
            return await super()._handle(request)
        finally:
            if not self.log_requests:
                log = self._requests  # kmock has no public way to forget requests
                for i in range(len(log) - 1, -1, -1):
                    if log[i] is request:
                        del log[i]
                        break

    async def _answer_then_write(self, request):
        key = (request.resource, request.namespace, request.name)
        async with self._lock:
            if key not in self._objects or self._objects[key].deleted:
                raise kmock.KubernetesObjectNotFoundError()
        self._unwritten.add(id(request))
        try:
            # the reactions alone, without KubernetesEmulator._handle's write ahead of them
            response = await kmock.RawHandler._handle(self, request)
            if response.status < 400 and id(request) in self._unwritten:
                await self._write(request)  # a test's reaction answered success: the write happens
        finally:
            self._unwritten.discard(id(request))
        await self._release(key)
        return response

    async def _serve_update(self, request):
        """kmock's own answer to a write (no test reaction took it): a success, so write, then answer."""
        if id(request) in self._unwritten:
            await self._write(request)
        return await super()._serve_update(request)

    async def _write(self, request) -> None:
        self._unwritten.discard(id(request))
        key = (request.resource, request.namespace, request.name)
        async with self._lock:
            if key not in self._objects or self._objects[key].deleted:
                raise kmock.KubernetesObjectNotFoundError()
            reshaped = _reshaped(self._objects[key].raw, request.data) if isinstance(request.data, Mapping) else {}
            if reshaped:  # a merge patch (a JSON patch, kopf's, is a list and kmock's own)
                self._objects[key].patch(reshaped)
            self._objects[key].patch(request.data)
            await self._buses[request.resource].put({"type": "MODIFIED", "object": self._objects[key].raw})

    async def _release(self, key) -> None:
        """Delete an object marked for deletion once its last finalizer is gone, as kmock does after a write."""
        async with self._lock:
            if key not in self._objects or self._objects[key].deleted:
                return
            obj = self._objects[key]
            meta = obj.get("metadata", {})
            if meta.get("deletionTimestamp") and not meta.get("finalizers", []):
                raw = obj.raw
                obj.delete()
                await self._buses[key[0]].put({"type": "DELETED", "object": raw})


def _reshaped(value: Mapping, patch: Mapping) -> dict:
    """A merge patch removing the fields of `value` that `patch` replaces by a value of another shape (an
    object by a scalar or the reverse). RFC 7386, which the API server follows, replaces them; kmock 0.8
    refuses ("Cannot patch a dict by a scalar"), so a status write over a corrupt field would fail here only."""
    out: dict = {}
    for key, new in patch.items():
        old = value.get(key)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            if inner := _reshaped(old, new):
                out[key] = inner
        elif key in value and old is not None and new is not None and isinstance(old, Mapping) != isinstance(
                new, Mapping):
            out[key] = None
    return out


@contextlib.asynccontextmanager
async def cluster(namespaces=("default",), log_requests: bool = True):
    """A kmock emulator serving on a loopback port, with the resources declared. `log_requests`: keep every
    request served (tests that inspect requests need them; a long benchmark cannot afford them)."""
    k8s = Emulator()
    k8s.log_requests = log_requests
    async with k8s, kmock.Server(k8s) as server:
        declare_cluster(k8s, namespaces)
        yield k8s, str(server.url).rstrip("/")


@contextlib.asynccontextmanager
async def operator(reconciler: Reconciler, url: str, settings: OperatorSettings | None = None):
    """A kopf operator logged in to the emulator, stopped on exit: in a thread with its own event loop, as
    the operator process would run beside a real API server. In the test's loop, kopf would take the
    emulator's connection handlers for tasks of its own and wait 5 s for them at every stop."""
    async with operator_thread(reconciler, url, settings):
        yield


@contextlib.asynccontextmanager
async def operator_thread(reconciler: Reconciler, url: str, settings: OperatorSettings | None = None,
                          health=None):
    """A kopf operator in a thread with its own event loop, as a second process would run it (kopf keeps
    per-loop state, so two operators in one loop are not what production does). `health`: the operator's
    `harmony.operator.health.Health`, for tests that read it (None: a fresh one)."""
    import threading

    import kopf

    def login(**_):
        return kopf.ConnectionInfo(server=url, insecure=True)

    loop = asyncio.new_event_loop()
    stop, ready = asyncio.Event(), threading.Event()
    errors: list[BaseException] = []

    def main() -> None:
        asyncio.set_event_loop(loop)

        async def go() -> None:
            flag = asyncio.Event()
            task = asyncio.create_task(run(reconciler, settings or OperatorSettings(), login=login,
                                           stop_flag=stop, ready_flag=flag, health=health))
            await flag.wait()
            ready.set()
            await task

        try:
            loop.run_until_complete(go())
        except BaseException as exc:  # reported to the test
            errors.append(exc)
        finally:
            ready.set()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    await asyncio.to_thread(ready.wait, 20)  # the emulator serves from this loop: never block it
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        await asyncio.to_thread(thread.join, 30)
        if thread.is_alive():
            raise AssertionError("the operator did not stop within 30 s")
        loop.close()
        if errors:
            raise errors[0]


async def eventually(check, timeout: float = 20.0, every: float = 0.1):
    """Poll `check()` (sync) until it returns a truthy value; fail with the last value after `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while asyncio.get_running_loop().time() < deadline:
        try:
            last = check()
        except (KeyError, IndexError, TypeError) as exc:
            last = exc
        else:
            if last:
                return last
        await asyncio.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s; last: {last!r}")


def obj(k8s, resource, namespace, name) -> dict:
    return k8s.objects[resource, namespace, name].raw


def condition(status: dict, type_: str) -> dict | None:
    return next((c for c in status.get("conditions", []) if c["type"] == type_), None)


def replicas(k8s, name="llm-server", namespace="default") -> int:
    """The target Deployment's replica count as stored."""
    return obj(k8s, DEPLOYMENTS, namespace, name)["spec"]["replicas"]


def status(k8s, name="llm", namespace="default") -> dict:
    """The HarmonyAutoscaler's status as stored ({} before the first write)."""
    return obj(k8s, HA, namespace, name).get("status", {})


def events(k8s, reason: str | None = None) -> list[dict]:
    """The Events posted, those with `reason` only when given."""
    return [o.raw for (res, _, _), o in k8s.objects.items()
            if getattr(res, "plural", "") == "events" and reason in (None, o.raw.get("reason"))]


async def step(rec: Reconciler, k8s, name="llm", namespace="default"):
    """One reconcile step as the daemon runs it, in a thread (the emulator serves from this loop): the
    object's spec, status and annotations as stored."""
    body = obj(k8s, HA, namespace, name)
    return await asyncio.to_thread(rec.reconcile, namespace, name, body["metadata"]["uid"], 1, body["spec"],
                                   body.get("status"), body["metadata"].get("annotations"))


def api_permissions(k8s) -> set[tuple[str, str, str]]:
    """(apiGroup, resource[/subresource], verb) of every request the emulator served, discovery excluded
    (GET /api, /apis, /apis/{group}/{version}, /version: the default system:discovery role grants those)."""
    import kmock

    seen = set()
    for method in ("GET", "PATCH", "POST", "PUT", "DELETE"):
        for request in k8s[getattr(kmock.method, method)]:
            parts = [p for p in request.url.path.split("/") if p]
            if parts[:1] == ["api"] and len(parts) >= 2:
                group, rest = "", parts[2:]
            elif parts[:1] == ["apis"] and len(parts) >= 3:
                group, rest = parts[1], parts[3:]
            else:
                continue
            if not rest:
                continue  # discovery of a group version
            if rest[0] == "namespaces" and len(rest) >= 3:
                rest = rest[2:]  # namespaced resource path
            resource = rest[0] + (f"/{rest[2]}" if len(rest) >= 3 else "")
            named = len(rest) >= 2
            verb = {"PATCH": "patch", "POST": "create", "PUT": "update", "DELETE": "delete"}.get(method)
            if verb is None:
                verb = "get" if named else ("watch" if request.params.get("watch") in ("true", "1") else "list")
            seen.add((group, resource, verb))
    return seen
