"""The kopf operator: one daemon per HarmonyAutoscaler, reconciling every spec.intervalSeconds.

`build_registry` wires the handlers to a Reconciler (its Kubernetes, Prometheus, metrics and clock
boundaries chosen by the caller) and to a Health: each daemon reports the steps it finishes, and two
`kopf.on.probe` handlers answer kopf's liveness endpoint from it (harmony.operator.health: the endpoint
fails when objects are served but no step finished for a while). `run` starts kopf with the sharding,
peering and liveness settings; the CLI starts the metrics server beside it. Several operator processes
share work by sharding (`--namespace`, `--selector`) and, for replicas of one shard, by kopf peering: only
the highest-priority peer runs handlers, so two replicas never scale the same workload.

Peering fails quietly in kopf in three ways, so `watch_peering` reads the peering object's keep-alives and
says so (a warning in the log, the `peering` field of the liveness report): peers tied at the top priority
(kopf pauses all of them: nobody serves the shard), a peer of another shard outranking this one under a
shared peering name (this shard is never served), and a peering object that does not exist (kopf waits for
it, paused, for ever). Each replica's kopf identity ends in `#shard=<shard id>`
so that peers can tell shards apart.

Finalizers. kopf puts a finalizer on every object it runs a daemon for (it must stop the daemon before the
object goes), and removes it from objects its filters do not match. A finalizer nobody removes makes deleting
the object, or its namespace, hang. So the name is one per installation (`finalizer_name`), not per shard: an
installation whose selector changes strips its own name from the objects it no longer serves, and two
installations sharding one namespace never strip each other's. And an operator that exits (an uninstall, a
rollout to other namespaces or another selector) takes its finalizer and kopf's annotations off the objects
it served (`leave`): whoever serves them next puts its own on, and nobody is left waiting for an operator
that is gone. A process killed without a chance to exit leaves them for its successor under the same
installation name.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import functools
import logging
import os
import re
import secrets
import socket
import time
import traceback
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

import kopf

from harmony.errors import HarmonyInputError
from harmony.operator.batching import BatchSettings, ForecastBatcher
from harmony.operator.health import Health, HealthSettings
from harmony.operator.kube import GROUP, PLURAL, VERSION, ApiError
from harmony.operator.ports import METRICS_PORT
from harmony.operator.reconcile import Reconciler
from harmony.operator.state import parse_timestamp
from harmony.telemetry.prometheus import redact_url

log = logging.getLogger("harmony.operator")


@dataclass(frozen=True)
class OperatorSettings:
    """namespaces: served namespaces (empty: cluster-wide). selector: label selector (key -> value) that
    picks this shard's objects. peering: kopf peering name shared by replicas of a shard (None:
    standalone, no peering objects needed). priority: this replica's peering priority (the highest active
    peer works, the others stand by). metrics_addr / metrics_port: the exporter (/metrics), which the
    caller serves (harmony.operator.metrics.serve). liveness_endpoint: kopf's liveness endpoint URL
    (`health.liveness_endpoint()`, e.g. http://0.0.0.0:8080/healthz), None for none (the CLI always sets
    one; tests and embedders choose). health: when the loop counts as wedged. peering_check_s: seconds
    between two reads of the peering object's keep-alives (`watch_peering`). workers: reconcile steps in
    flight at once, each in a thread of its own pool. A step mostly waits on Prometheus and the API server
    (a few ms of CPU against tens to hundreds of ms of round trips), so the pool is sized for I/O, not for
    cores: asyncio's default pool (cores + 4 threads, shared with anything else run in threads) would cap
    500 objects on 2 cores at 6 steps in flight. keda_scaler_addr / keda_scaler_port: KEDA's external scaler
    (harmony.operator.keda), which `run` serves from the reconciler's decisions while the operator runs
    (port 0: not served). installation: the installation's name (the chart passes its
    release's), the same for all its replicas and whatever shard it serves: its finalizer is
    `harmony.dev/<installation>`; empty: one per shard (`finalizer_name`). batching: how the forecasts of
    objects sharing a served model are coalesced into one call (harmony.operator.batching; a window of 0
    forecasts each object alone)."""

    namespaces: tuple[str, ...] = ()
    selector: Mapping[str, str] = field(default_factory=dict)
    peering: str | None = None
    priority: int = 0
    metrics_addr: str = "0.0.0.0"
    metrics_port: int = METRICS_PORT
    liveness_endpoint: str | None = None
    health: HealthSettings = field(default_factory=HealthSettings)
    workers: int = 16
    peering_check_s: float = 15.0
    keda_scaler_addr: str = "0.0.0.0"
    keda_scaler_port: int = 0
    installation: str = ""
    batching: BatchSettings = field(default_factory=BatchSettings)

    def __post_init__(self) -> None:
        if self.installation and not INSTALLATION.fullmatch(self.installation):
            raise HarmonyInputError(f"installation {self.installation!r}: a finalizer name needs 1-63 letters, "
                                    "digits, '-', '_' or '.', starting and ending with a letter or digit")


#: what a finalizer's name after `harmony.dev/` may be (a Kubernetes qualified name's name part)
INSTALLATION = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")


def _interval_s(spec: Mapping) -> float:
    try:
        return max(1.0, float(spec.get("intervalSeconds", 30)))
    except (TypeError, ValueError):
        return 30.0


def _newer(own: dict | None, seen: Mapping | None) -> Mapping | None:
    """The status to continue from: what this daemon wrote last, unless the object's is as new (the watch
    may lag our own write by a moment; after a restart only the object's exists)."""
    if not own:
        return seen
    own_n = (own.get("posterior") or {}).get("decisions", 0)
    seen_n = ((seen or {}).get("posterior") or {}).get("decisions", 0)
    return seen if seen_n >= own_n else own


async def _pause(stopped: kopf.DaemonStopped, seconds: float) -> None:
    """Wait `seconds`, or less if the daemon is stopped meanwhile.

    Not `stopped.wait(seconds)`: kopf runs that time limit in a task of its own, and when the limit expires
    just as the daemon is cancelled (a stop aligned with the cadence), that task's TimeoutError is left
    unretrieved and kopf re-raises it when the operator exits. The limit is ours here, inside the daemon's
    own task, and kopf's wait has none."""
    if seconds <= 0 or stopped:
        return
    try:
        await asyncio.wait_for(stopped.wait(), timeout=seconds)
    except TimeoutError:
        pass


def first_delay_s(status: Mapping | None, interval_s: float, now: dt.datetime, uid: str, at_startup: bool) -> float:
    """Seconds an object's daemon waits before its first decision in this process.

    - The status holds a decision less than one interval old (a restart or a peer's failover): wait out the
      rest of that interval. The object keeps its cadence instead of deciding twice within one interval,
      and objects whose decisions were spread stay spread.
    - Otherwise, for objects found while the operator starts (`at_startup`): a stable offset in
      [0, interval) from the object's uid. Hundreds of objects found at once would all be due in the same
      second and queue behind each other (the scale bench's startup burst); spread over one interval, each
      still gets its first decision within one interval.
    - Otherwise (an object created while the operator runs): at once.
    """
    last = parse_timestamp(((status or {}).get("lastDecision") or {}).get("time"))
    if last is not None:  # an unreadable time is not ours to trust: decide on the normal schedule
        elapsed = (now - last).total_seconds()
        if 0 <= elapsed < interval_s:
            return interval_s - elapsed
    if at_startup:
        return interval_s * zlib.crc32(uid.encode()) / 2**32
    return 0.0


def shard_id(settings: OperatorSettings) -> str:
    """A short stable name for the shard (namespaces and selector): the same for every replica of it."""
    import hashlib

    if not settings.namespaces and not settings.selector:
        return "all"
    labels = ",".join(f"{k}={v}" for k, v in sorted(settings.selector.items()))
    key = ",".join(sorted(settings.namespaces)) + "|" + labels
    return hashlib.sha256(key.encode()).hexdigest()[:10]


def finalizer_name(settings: OperatorSettings) -> str:
    """The finalizer kopf puts on the objects this operator serves: `harmony.dev/<installation>`, the same
    across the installation's shard changes; without an installation name, one per shard
    (`harmony.dev/daemon-<shard id>`): a name shared by shards would have each strip the other's."""
    return f"harmony.dev/{settings.installation or 'daemon-' + shard_id(settings)}"


def _drop_finalizer(body: dict, finalizer: str) -> None:
    meta = body.setdefault("metadata", {})
    meta["finalizers"] = [f for f in meta.get("finalizers") or [] if f != finalizer]


def leave(patch: kopf.Patch, finalizer: str, prefix: str) -> None:
    """Take this operator's finalizer and kopf's annotations (`prefix`) off an object, in the patch kopf applies
    when the daemon returns. The annotations go by merge patch, which answers with the object as it is now;
    kopf then removes the finalizer by JSON patch checked against that object's resourceVersion, so a
    finalizer another controller added meanwhile is kept."""
    for key in ("last-handled-configuration", "kopf-managed"):
        patch.metadata.annotations[f"{prefix}/{key}"] = None
    patch.fns.append(functools.partial(_drop_finalizer, finalizer=finalizer))


async def _step(reconciler: Reconciler, executor: concurrent.futures.Executor | None,
                batcher: ForecastBatcher | None, finish_executor: concurrent.futures.Executor | None, *args):
    """One reconcile step in the pool. With a batcher, in three parts (harmony.operator.batching): begin in
    the pool, the forecast awaited from the batcher when the object's model is shared (no thread held while
    it waits), finish in `finish_executor` (a pool of its own in `run`: a step whose forecast is back must not
    queue again behind the other objects' begins, which under a CPU shortage made batched steps last longer
    than the interval)."""
    loop = asyncio.get_running_loop()
    if batcher is None:
        return await loop.run_in_executor(executor, reconciler.reconcile, *args)
    begun = await loop.run_in_executor(executor, reconciler.begin, *args)
    forecast = None
    if begun.request is not None and begun.request.shared:
        forecast = await batcher.forecast(begun.request)
    return await loop.run_in_executor(finish_executor or executor, reconciler.finish, begun, forecast)


def build_registry(reconciler: Reconciler, settings: OperatorSettings,
                   login: Callable[..., kopf.ConnectionInfo] | None = None,
                   executor: concurrent.futures.Executor | None = None,
                   health: Health | None = None,
                   finish_executor: concurrent.futures.Executor | None = None,
                   forecast_executor: concurrent.futures.Executor | None = None) -> kopf.OperatorRegistry:
    """The kopf handlers of one operator process, bound to `reconciler`; steps run in `executor` (None:
    asyncio's default pool) and are reported to `health` (None: a fresh one with `settings.health`); the
    forecasts of objects sharing a served model are batched as `settings.batching` says, the batched calls
    run in `forecast_executor` and the steps' last parts in `finish_executor` (None: `executor`)."""
    registry = kopf.OperatorRegistry()
    batcher = (ForecastBatcher(settings.batching, forecast_executor or executor, reconciler.metrics)
               if settings.batching.enabled else None)
    health = health if health is not None else Health(settings.health)
    labels = dict(settings.selector) or None

    if login is not None:
        kopf.on.login(registry=registry)(login)

    shard = shard_id(settings)
    finalizer, prefix = finalizer_name(settings), f"{shard}.harmony.dev"
    literal_namespaces = bool(settings.namespaces) and not any(
        ch in ns for ns in settings.namespaces for ch in "*?![]")

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_) -> None:
        settings.posting.level = logging.WARNING  # our own Events say what scaled; kopf's would be noise
        settings.watching.server_timeout = 60
        settings.persistence.finalizer = finalizer  # one per installation (module docstring, "Finalizers")
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=prefix)
        if literal_namespaces:
            # Named namespaces need no cluster scan: serve exactly them, so a namespaced install's Roles
            # suffice (listing and watching Namespace objects is cluster-scoped); kopf scans only for globs.
            settings.scanning.disabled = True

    # kopf's liveness endpoint answers the handlers' results as JSON; one raising makes it answer 500.
    # PERMANENT: kopf would otherwise retry a failing probe handler after a backoff, holding the probe.
    @kopf.on.probe(id="reconcile", registry=registry, errors=kopf.ErrorsMode.PERMANENT)
    def reconcile_progress(**_) -> dict:
        report = health.loop()
        if not report.healthy:
            raise kopf.PermanentError(
                f"wedged: {report.served_objects} HarmonyAutoscalers served, no reconcile step finished for "
                f"{report.waiting_s:.0f}s (limit {report.stall_after_s:.0f}s, {report.failed_steps} failed)")
        return report.as_dict()

    @kopf.on.probe(id="prometheus", registry=registry, errors=kopf.ErrorsMode.PERMANENT)
    def prometheus_reachability(**_) -> dict:
        return health.telemetry().as_dict()  # reported, never failed: stale telemetry holds, by design

    @kopf.on.probe(id="peering", registry=registry, errors=kopf.ErrorsMode.PERMANENT)
    def peering_state(**_) -> dict:
        return health.peering().as_dict()  # reported, never failed: a restart meets the same peers again

    active: set[str] = set()
    started = time.monotonic()  # a daemon starting within one interval of this belongs to the startup set

    # cancellation_backoff: a stopped daemon gets this long to return before kopf cancels it, so that the patch
    # kopf applies after it returns (`leave`, at the operator's exit) is not cancelled in flight
    @kopf.daemon(GROUP, VERSION, PLURAL, registry=registry, labels=labels, cancellation_backoff=5.0,
                 cancellation_timeout=10.0)
    async def autoscale(stopped: kopf.DaemonStopped, name: str, namespace: str, uid: str, meta: Mapping,
                        spec: Mapping, status: Mapping, patch: kopf.Patch, **_) -> None:
        active.add(uid)
        health.serving(uid, _interval_s(spec))
        reconciler.decisions.serving(namespace, name)
        reconciler.metrics.set_autoscalers(len(active))
        own: dict | None = None
        try:
            interval = _interval_s(spec)
            delay = first_delay_s(status, interval, reconciler.clock(), uid, time.monotonic() - started < interval)
            await _pause(stopped, delay)
            while not stopped:
                began = time.monotonic()
                health.serving(uid, _interval_s(spec))  # the spec may have changed the interval
                current = _newer(own, status)
                try:
                    outcome = await _step(reconciler, executor, batcher, finish_executor, namespace, name, uid,
                                          meta.get("generation"), dict(spec), current,
                                          dict(meta.get("annotations") or {}))  # meta is live
                    own = outcome.status if outcome.error is None else own
                    # progress even with outcome.error: the step ran and put the object's fault on its status
                    health.step_finished()
                except Exception as exc:  # one object's failure must not stop its daemon or others
                    health.step_failed()
                    # formatted here to redact URL credentials an error message may carry
                    log.error("%s/%s: reconcile failed: %s", namespace, name,
                              redact_url("".join(traceback.format_exception(exc)).rstrip()))
                    reconciler.metrics.reconcile_failure(
                        namespace, name, "api-error" if isinstance(exc, ApiError) else type(exc).__name__)
                # a fixed cadence (start to start), not an interval after each step: the step's duration
                # would otherwise add up into drift, and N objects would be decided less than N / interval times
                await _pause(stopped, _interval_s(spec) - (time.monotonic() - began))
        finally:
            active.discard(uid)
            health.stopped(uid)
            reconciler.decisions.stopped(namespace, name)
            reconciler.metrics.set_autoscalers(len(active))
            # the operator exits (not a pause for a peer, which serves under the same finalizer): leave the object
            if stopped.reason is not None and kopf.DaemonStoppingReason.OPERATOR_EXITING in stopped.reason:
                leave(patch, finalizer, prefix)

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, labels=labels, optional=True)
    def forget(name: str, namespace: str, uid: str, **_) -> None:
        reconciler.forget(uid, namespace, name)

    return registry


SAME_PRIORITY = "same-priority"
OTHER_SHARD = "other-shard"
MISSING_OBJECT = "missing-object"
SHARD_TAG = "#shard="


def peer_identity(shard: str) -> str:
    """This process's kopf peering identity: who runs it (kopf's POD_ID convention, else the host name, the
    pod's name in a cluster), the process, a random tag (a restarted container may reuse both), and its
    shard, which lets `peering_conflict` tell a peer of another shard from a replica of this one."""
    who = os.environ.get("POD_ID") or socket.gethostname()
    return f"{who}/{os.getpid()}/{secrets.token_hex(3)}{SHARD_TAG}{shard}"


def _alive(info: Mapping, now: dt.datetime) -> bool:
    """A keep-alive not yet expired (kopf's rule: lastseen + lifetime in the future)."""
    try:
        seen = dt.datetime.fromisoformat(str(info["lastseen"]))
        seen = seen if seen.tzinfo else seen.replace(tzinfo=dt.UTC)
        return seen + dt.timedelta(seconds=int(info.get("lifetime", 60))) > now
    except (KeyError, TypeError, ValueError):
        return False


def _priority(info: Mapping) -> int | None:
    try:
        return int(info.get("priority", 0))
    except (TypeError, ValueError):
        return None


def _shard_of(identity: str) -> str | None:
    return identity.rpartition(SHARD_TAG)[2] if SHARD_TAG in identity else None


def peering_conflict(peers: Mapping[str, Mapping], identity: str, priority: int, peering: str,
                     now: dt.datetime) -> tuple[str | None, str]:
    """(conflict, message) from the keep-alives of a peering object, for the operator `identity` at
    `priority`: SAME_PRIORITY when a live peer has the same priority (kopf pauses every peer tied at the top,
    so nobody works), OTHER_SHARD when a live peer of another shard has a higher one (kopf pauses this
    replica in its favour, so this shard is never served); (None, "") otherwise. Peers that do not say their
    shard (not harmony's, or older) count as replicas of this shard."""
    shard = _shard_of(identity)
    live = {k: v for k, v in peers.items() if k != identity and _alive(v, now)}
    tied = sorted(k for k, v in live.items() if _priority(v) == priority)
    if tied:
        return SAME_PRIORITY, (f"peering {peering!r}: {', '.join(tied)} run(s) at this replica's priority {priority}; "
                               "kopf pauses every operator tied at the top, so none serves this shard: give each "
                               "replica its own --priority, or leave it unset (drawn at random per start)")
    above = sorted(k for k, v in live.items() if (_priority(v) or 0) > priority
                   and _shard_of(k) not in (None, shard))
    if above and shard is not None:
        return OTHER_SHARD, (f"peering {peering!r} is shared with another shard ({', '.join(above)}, at a higher "
                             f"priority than {priority}): kopf pauses this replica in its favour, so shard {shard} "
                             "is never served: give each shard its own --peering name (the chart derives one per "
                             "release and shard)")
    return None, ""


async def watch_peering(kube, settings: OperatorSettings, identity: str, health: Health,
                        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
    """Every `settings.peering_check_s`, read this shard's peering object(s) and report a conflict
    (`peering_conflict`) to `health`, with a warning in the log when one starts and a line when it ends.
    Runs beside kopf, not as a kopf handler: kopf pauses its handlers exactly when this matters. Namespaced
    peering is read in each literal --namespace (a glob's namespaces are kopf's to discover)."""
    places = [None] if not settings.namespaces else [
        ns for ns in settings.namespaces if not any(ch in ns for ch in "*?![]")]
    loop = asyncio.get_running_loop()
    reported: str | None = None
    while True:
        await asyncio.sleep(settings.peering_check_s)
        peers: dict = {}
        missing: list[str] = []
        try:
            for namespace in places:
                found = await loop.run_in_executor(None, kube.get_peers, settings.peering, namespace)
                if found is None:
                    missing.append("a ClusterKopfPeering" if namespace is None else f"a KopfPeering in {namespace}")
                else:
                    peers.update(found)
        except Exception as exc:  # the API server may be briefly unavailable: keep the last report
            log.debug("peering %r: could not read the keep-alives: %s", settings.peering, exc)
            continue
        if missing:
            # kopf waits for the object's first event before it unpauses, so without one it never works
            conflict, message = MISSING_OBJECT, (
                f"peering {settings.peering!r}: there is no such object ({', '.join(missing)}); kopf pauses this "
                "operator until it exists: create it (kopf's peering.yaml; the chart's peering.createObject)")
        else:
            conflict, message = peering_conflict(peers, identity, settings.priority, settings.peering, clock())
        if conflict is None:
            if reported is not None:
                log.info("peering %r: the %s conflict is over", settings.peering, reported)
            health.peering_resolved()
        else:
            if conflict != reported:
                log.warning("%s", message)
            health.peering_conflict(conflict, message)
        reported = conflict


def read_secret(kube, namespace: str, name: str) -> Mapping[str, str]:
    """The `data` of a Secret (base64 values, decoded by `PrometheusAccess`): one GET on that Secret in the
    autoscaler's own namespace, so the operator needs `get` on secrets there and nothing more (no list, no
    watch: it never learns what other Secrets exist). Raises ApiError (404, 403, ...)."""
    body = kube._request("GET", f"/api/v1/namespaces/{quote(namespace, safe='')}/secrets/{quote(name, safe='')}")
    return body.get("data") or {}


async def run(reconciler: Reconciler, settings: OperatorSettings, login: Callable | None = None,
              stop_flag: asyncio.Event | None = None, ready_flag: asyncio.Event | None = None,
              health: Health | None = None) -> None:
    """Run the operator until `stop_flag` is set (or forever), with kopf's liveness endpoint at
    `settings.liveness_endpoint` (if any) answering from `health` (None: a fresh one), with peering
    `watch_peering` beside it, and with `settings.keda_scaler_port` KEDA's external scaler, listening before
    kopf starts (a port it cannot have is refused at once) and stopped after kopf."""
    health = health if health is not None else Health(settings.health)
    if reconciler.secrets is None:  # spec.prometheus.secretRef: read through the operator's own API client
        reconciler.secrets = functools.partial(read_secret, reconciler.kube)
    scaler = None
    if settings.keda_scaler_port:
        from harmony.operator.keda.scaler import serve  # grpc is loaded only when KEDA is served

        scaler, port = serve(reconciler.decisions, settings.keda_scaler_port, settings.keda_scaler_addr,
                             clock=reconciler.clock)
        log.info("KEDA external scaler on %s:%d", settings.keda_scaler_addr, port)
    executor = concurrent.futures.ThreadPoolExecutor(max(1, settings.workers), thread_name_prefix="harmony-reconcile")
    pools = [executor]
    if settings.batching.enabled:  # finishes never queue behind begins; one batched forward pass at a time
        pools += [concurrent.futures.ThreadPoolExecutor(max(1, settings.workers), thread_name_prefix="harmony-finish"),
                  concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="harmony-forecast")]
    registry = build_registry(reconciler, settings, login, executor, health, *pools[1:])
    identity, watcher = None, None
    if settings.peering is not None:
        identity = peer_identity(shard_id(settings))
        if hasattr(reconciler.kube, "get_peers"):
            watcher = asyncio.create_task(watch_peering(reconciler.kube, settings, identity, health))
    try:
        await kopf.operator(
            registry=registry,
            clusterwide=not settings.namespaces,
            namespaces=list(settings.namespaces),
            standalone=settings.peering is None,
            peering_name=settings.peering,
            priority=settings.priority,
            identity=identity,
            liveness_endpoint=settings.liveness_endpoint,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    finally:
        if watcher is not None:
            watcher.cancel()
        if scaler is not None:
            scaler.stop(grace=1.0)  # open streams end at once; KEDA reconnects to whichever operator serves next
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)  # a step still running finishes on its own
