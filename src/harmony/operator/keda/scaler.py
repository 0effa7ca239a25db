"""KEDA's external scaler, answered from the operator's decisions board (harmony.operator.decisions).

A ScaledObject with a `type: external` (or `external-push`) trigger whose metadata names a HarmonyAutoscaler
(`autoscaler: NAME`; `namespace:` defaults to the ScaledObject's) gets harmony's count as its only metric:

- GetMetricSpec: one metric, `harmony-recommended-replicas` (or `harmony-desired-replicas`), target 1.
  KEDA makes it an External metric with an AverageValue target, and the HPA computes ceil(value / 1): the
  count itself.
- GetMetrics: the count of the object's latest decision: `recommended` (StepResult.target, the default, what
  `harmony_recommended_replicas` exports) or, with trigger metadata `replicas: desired`, the count after
  harmony's own scale-down and step rules (what Scale mode would write; pair it with an HPA behavior that
  adds no rules of its own, docs/operator.md).
- IsActive: the count is above zero. With minReplicas 0 harmony recommends 0 when no demand is forecast, and
  KEDA scales the target to zero (after its cooldownPeriod) and back to one when a cold start is due.
- StreamIsActive (`external-push` triggers): the current activity at once, then a push on every change.

What it refuses, and why (each a gRPC status with one line naming the object):
- INVALID_ARGUMENT: trigger metadata without `autoscaler`, an unknown `replicas`, a metric name this trigger
  does not serve. A misconfigured ScaledObject, said as such.
- NOT_FOUND: no HarmonyAutoscaler of that name is served by this operator process.
- FAILED_PRECONDITION: it is in `mode: Scale`, so harmony writes the target's count itself; KEDA's HPA acting
  on the same count would be a second writer (harmony would back off from it as a conflicting writer).
- UNAVAILABLE: it is served but has no decision yet (its daemon just started), or its latest decision is
  older than `stale_intervals` of its intervals (its steps stopped finishing). An old count is not served as a
  current one: KEDA's HPA gets an error and holds the replica count (FailedGetExternalMetric), or KEDA applies
  the ScaledObject's `fallback` if one is set. A step that holds on stale telemetry still posts (the count it
  holds), so a telemetry fault holds the count through KEDA as it does in Scale mode.

The HPA's tolerance. An AverageValue metric is compared as ratio = value / (target x current replicas), and
the HPA changes nothing while |ratio - 1| <= its tolerance (0.1 by default). With value N and target t the
ratio is N / current whatever t is, and a Value target's ceil(current x ratio) needs the same ratio to reach
N: no encoding of the count escapes the tolerance. Only the tolerance itself can be lowered, per HPA through
the ScaledObject's `advanced.horizontalPodAutoscalerConfig.behavior.scale{Up,Down}.tolerance` (Kubernetes'
HPAConfigurableTolerance, beta from 1.35), or cluster-wide (`--horizontal-pod-autoscaler-tolerance`).

The server is grpc's synchronous one in threads of its own, apart from kopf's event loop: a busy loop never
delays KEDA's poll. An open stream holds one of its threads (`max_workers`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc

from harmony.errors import HarmonyInputError
from harmony.operator.decisions import DecisionBoard, Entry
from harmony.operator.keda import externalscaler_pb2 as pb
from harmony.operator.keda import externalscaler_pb2_grpc as pb_grpc

#: The metric's target: one replica per replica, so the HPA's ceil(value / target) is the count.
TARGET_REPLICAS = 1
#: Trigger metadata `replicas`: which of a decision's counts is served.
COUNTS = {"recommended": lambda d: d.recommended, "desired": lambda d: d.desired}
DEFAULT_COUNT = "recommended"
#: A decision older than this many of its object's intervals is stale: its steps stopped finishing.
STALE_INTERVALS = 3.0
#: Threads serving calls; each open StreamIsActive holds one.
MAX_WORKERS = 32


class Refused(Exception):
    """A call answered with a gRPC status instead of a value."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Trigger:
    """What a ScaledObject's trigger asks for: the HarmonyAutoscaler and which count."""

    namespace: str
    autoscaler: str
    count: str

    @property
    def metric_name(self) -> str:
        return f"harmony-{self.count}-replicas"

    @classmethod
    def of(cls, ref: pb.ScaledObjectRef) -> Trigger:
        meta = ref.scalerMetadata
        where = f"ScaledObject {ref.namespace}/{ref.name}"
        autoscaler = meta.get("autoscaler", "").strip()
        if not autoscaler:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                          f"{where}: trigger metadata has no `autoscaler` (the HarmonyAutoscaler's name)")
        count = meta.get("replicas", DEFAULT_COUNT).strip() or DEFAULT_COUNT
        if count not in COUNTS:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                          f"{where}: trigger metadata replicas {count!r} is not one of {', '.join(COUNTS)}")
        return cls(meta.get("namespace", "").strip() or ref.namespace, autoscaler, count)


class ExternalScaler(pb_grpc.ExternalScalerServicer):
    """KEDA's four calls over `board`; `clock` is the reconciler's (the time decisions are stamped with)."""

    def __init__(self, board: DecisionBoard, clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
                 stale_intervals: float = STALE_INTERVALS) -> None:
        if not stale_intervals > 0:
            raise ValueError(f"stale_intervals must be > 0, got {stale_intervals}")
        self.board, self.clock, self.stale_intervals = board, clock, stale_intervals

    # -- the answers, as values ------------------------------------------------------------------------
    def served(self, trigger: Trigger) -> Entry:
        entry = self.board.read(trigger.namespace, trigger.autoscaler)
        if entry is None:
            raise Refused(grpc.StatusCode.NOT_FOUND,
                          f"HarmonyAutoscaler {trigger.namespace}/{trigger.autoscaler} is not served by this "
                          "operator (not created, deleted, another shard's, or this replica is a standby peer)")
        return entry

    def count(self, trigger: Trigger, entry: Entry) -> int:
        """The served count of `entry`, or why there is none."""
        decision = entry.decision
        if decision is None:
            raise Refused(grpc.StatusCode.UNAVAILABLE,
                          f"HarmonyAutoscaler {trigger.namespace}/{trigger.autoscaler}: no decision yet (its first "
                          "step has not finished; see its status conditions)")
        if decision.mode != "Recommend":
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                          f"HarmonyAutoscaler {trigger.namespace}/{trigger.autoscaler} is in mode {decision.mode}: "
                          "harmony scales the target itself; set mode: Recommend for KEDA to act on its count")
        age_s, limit_s = decision.age_s(self.clock()), self.stale_intervals * decision.interval_s
        if age_s > limit_s:
            raise Refused(grpc.StatusCode.UNAVAILABLE,
                          f"HarmonyAutoscaler {trigger.namespace}/{trigger.autoscaler}: latest decision is "
                          f"{age_s:.0f} s old (more than {self.stale_intervals:g} intervals of "
                          f"{decision.interval_s:g} s): its steps are not finishing (see its status conditions)")
        return COUNTS[trigger.count](decision)

    # -- KEDA's calls ----------------------------------------------------------------------------------
    def GetMetricSpec(self, request: pb.ScaledObjectRef, context: grpc.ServicerContext) -> pb.GetMetricSpecResponse:
        with _answering(context):
            trigger = Trigger.of(request)
            self.served(trigger)  # the spec needs no decision, but a name nobody serves is a misconfiguration
            return pb.GetMetricSpecResponse(metricSpecs=[pb.MetricSpec(
                metricName=trigger.metric_name, targetSize=TARGET_REPLICAS, targetSizeFloat=float(TARGET_REPLICAS))])

    def GetMetrics(self, request: pb.GetMetricsRequest, context: grpc.ServicerContext) -> pb.GetMetricsResponse:
        with _answering(context):
            trigger = Trigger.of(request.scaledObjectRef)
            if request.metricName and request.metricName != trigger.metric_name:
                raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                              f"metric {request.metricName!r}: this trigger serves {trigger.metric_name!r}")
            replicas = self.count(trigger, self.served(trigger))
            return pb.GetMetricsResponse(metricValues=[pb.MetricValue(
                metricName=trigger.metric_name, metricValue=replicas, metricValueFloat=float(replicas))])

    def IsActive(self, request: pb.ScaledObjectRef, context: grpc.ServicerContext) -> pb.IsActiveResponse:
        with _answering(context):
            trigger = Trigger.of(request)
            return pb.IsActiveResponse(result=self.count(trigger, self.served(trigger)) > 0)

    def StreamIsActive(self, request: pb.ScaledObjectRef,
                       context: grpc.ServicerContext) -> Iterator[pb.IsActiveResponse]:
        """The activity now, then each change, until the client goes away. A decision is re-read when the
        board changes and at least once per interval (a decision goes stale without any post); a refusal
        ends the stream with its status, and KEDA opens it again after a back-off."""
        context.add_callback(self.board.wake)  # a cancelled stream stops waiting at once
        with _answering(context):
            trigger = Trigger.of(request)
            sent = None
            while context.is_active():
                generation = self.board.generation  # before the read: a change after it ends the wait
                entry = self.served(trigger)
                active = self.count(trigger, entry) > 0
                if active != sent:
                    yield pb.IsActiveResponse(result=active)
                    sent = active
                self.board.wait_for_change(generation, entry.decision.interval_s)


@contextlib.contextmanager
def _answering(context: grpc.ServicerContext) -> Iterator[None]:
    """A `Refused` raised inside a handler becomes the call's gRPC status (`context.abort` raises in turn,
    which ends the call, a stream included)."""
    try:
        yield
    except Refused as exc:
        context.abort(exc.code, exc.message)


def serve(board: DecisionBoard, port: int, addr: str = "0.0.0.0",
          clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
          stale_intervals: float = STALE_INTERVALS, max_workers: int = MAX_WORKERS) -> tuple[grpc.Server, int]:
    """Start the external scaler on addr:port (0: a free port); return the server and the port it listens on.
    Stop it with `server.stop(grace)`. A port it cannot listen on is the caller's input error."""
    # no SO_REUSEPORT (grpc's default on Linux): a second server on the same port must fail, not share it
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers, thread_name_prefix="harmony-keda"),
                         options=[("grpc.so_reuseport", 0)])
    pb_grpc.add_ExternalScalerServicer_to_server(ExternalScaler(board, clock, stale_intervals), server)
    host = f"[{addr}]" if ":" in addr else addr
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:
        bound, reason = 0, str(exc)
    else:
        reason = "in use, or not an address of this host?"
    if not bound:
        raise HarmonyInputError(f"--keda-scaler-port {port}: cannot listen on {addr}:{port} ({reason})")
    server.start()
    return server, bound
