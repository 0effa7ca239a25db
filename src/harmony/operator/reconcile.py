"""One reconcile step of one HarmonyAutoscaler, in named stages: observe -> step -> actuate -> report.

- observe: parse the spec, read the target's scale (desired and READY replicas), read the telemetry window and
  forecast demand over the cold-start horizon (the forecasting adapter the backtest uses).
- step: `harmony.decision.step.step`, the control step the backtest's harmony policy runs: it learns from the
  tick just observed and decides.
- actuate: in Scale mode, write the count to the scale subresource; a 409 re-reads it and steps again from
  the fresh count (the step is pure, so stepping again from the same state is exact); a write the API
  server fails otherwise holds the count (AbleToScale=False, FailedUpdateScale) until the next step.
  Another writer of the target's replicas (an HPA, KEDA, a person) is detected from `status.lastScale`, the
  count the target had when harmony's last step ended: a different count now means someone else wrote it
  (unless harmony wrote it itself and failed to record it, or the target was created again since). harmony
  then backs off (AbleToScale=False, reason ConflictingWriter, a Warning Event,
  `harmony_reconcile_failures_total{reason="conflicting-writer"}`) and writes no scale for max(the
  stabilisation window, CONFLICT_BACKOFF_INTERVALS intervals), then tries again, instead of fighting the
  other writer every step.
- gate (`_gate`, before actuate): the annotation `harmony.dev/paused: "true"` stops writes (AbleToScale=False,
  reason Paused; the decision is still made and learned from, and reported with reason `paused`);
  `harmony.dev/paused-replicas: "N"` sets the target to N once, then holds it. In Scale mode a target that an
  autoscaling/v2 HPA or a KEDA ScaledObject of the namespace already scales is reported (AbleToScale=False,
  reason TargetManagedElsewhere, a Warning Event when it starts) and never written: two autoscalers on one
  target fight. Recommend mode is exempt, since an HPA or KEDA reading harmony's metric is its intended setup.
- fallback (`_fallback_replicas`): after spec.fallback.failureThreshold consecutive steps without a forecast
  (telemetry missing, stale or failing, or the forecaster failing), the count is spec.fallback.replicas
  instead of the held one (reason `fallback`, Ready=False reason Fallback), until a forecast is back.
- report: conditions, status (the state survives restarts there), metrics, the decisions board (what the KEDA
  external scaler serves, harmony.operator.decisions) and an event per scaling. An Event that cannot be
  posted (events forbidden, say) is logged and counted ("event-failed"), never allowed to stop the status
  write.

The step is synchronous and takes its boundaries as constructor parameters (Kubernetes, Prometheus, the
metrics registry, the clock), so tests run it against the kmock emulator and a real or fake telemetry source
without patching anything. kopf calls it from a per-object daemon (harmony/operator/app.py).

Faults never lose data or jump the replica count: Prometheus down, refusing the query or the credentials,
answering something that is not its API, stale or all-NaN telemetry hold the current count (the step's stale
rule) with ForecastReady=False and Ready=False, a reason naming the cause and the telemetry error counted;
a missing target sets AbleToScale=False; an invalid spec sets InvalidSpec and touches nothing; a restart
restores posteriors and the stabilisation window from status, and one it cannot trust is discarded and
said so (a log line, a Warning Event, `status.posterior.discarded`). Messages pass through `redact_url`, so
credentials in a Prometheus URL never reach a condition or a log line.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import re
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from harmony.decision import step as control
from harmony.decision.decide import LIMITED_MAX, LIMITED_MIN, Decision
from harmony.errors import HarmonyInputError
from harmony.forecasting.adapter import (
    DEFAULT_SAMPLES,
    REFIT_EVERY,
    DemandForecaster,
    ForecastRequest,
    training_steps,
)
from harmony.operator import state as st
from harmony.operator.decisions import DecisionBoard, PostedDecision
from harmony.operator.kube import ApiError, Conflict, Scale, TargetNotFound
from harmony.operator.metrics import FALLBACK_REASON, PAUSED_REASON, OperatorMetrics
from harmony.operator.spec import AutoscalerSpec, InvalidSpec, parse_spec, served_checkpoint
from harmony.telemetry.prometheus import (
    AUTH_FAILED,
    UNAVAILABLE,
    PrometheusAccess,
    PrometheusError,
    TelemetryWindow,
    redact_url,
)

if TYPE_CHECKING:
    from harmony.telemetry.frame import TelemetryFrame

log = logging.getLogger("harmony.operator")

FORECAST_QUANTILES = (0.1, 0.5, 0.9, 0.99)
CONFLICT_RETRIES = 3
# Intervals harmony writes no scale after another writer changed the target's replicas (at least the
# scale-down stabilisation window): long enough that an HPA or a person is not fought every step, short
# enough that harmony takes the target back soon after the other writer is removed.
CONFLICT_BACKOFF_INTERVALS = 10
CONFLICTING_WRITER = "ConflictingWriter"
CHECKPOINT_CURRENT = "CheckpointCurrent"
CHECKPOINT_REJECTED = "CheckpointRejected"
PAUSED = "Paused"
MANAGED_ELSEWHERE = "TargetManagedElsewhere"
FALLBACK = "Fallback"
PAUSED_ANNOTATION = "harmony.dev/paused"
PAUSED_REPLICAS_ANNOTATION = "harmony.dev/paused-replicas"


@dataclass(frozen=True)
class ReconcileSettings:
    """n_samples: forecast samples per decision. refit_every: decisions between refits of a baseline (the
    adapter's default, which the backtest uses too). seed: sampling seed."""

    n_samples: int = DEFAULT_SAMPLES
    refit_every: int = REFIT_EVERY
    seed: int = 0


@dataclass
class Outcome:
    """What one step did: the status written, and the scale written (None if none)."""

    status: dict
    scaled_to: int | None = None
    error: str | None = None


@dataclass
class Writer:
    """What the actuate stage may do about other writers: `hold` (back off: write no scale this step),
    `conflict` (`status.conflictingWriter`, None when there is none) and the condition message while holding;
    `last_scale` (`status.lastScale`) is set once the step knows the count it leaves the target at."""

    hold: bool = False
    conflict: dict | None = None
    message: str = ""
    last_scale: dict | None = None


@dataclass
class Gate:
    """Why this step writes no scale of its own (`reason`: PAUSED or MANAGED_ELSEWHERE; "" for none), the
    condition message, and with paused-replicas the count to set (`set_to`) before holding it."""

    reason: str = ""
    message: str = ""
    set_to: int | None = None


@dataclass
class Observed:
    """What the observe stage saw: the scale, the demand just observed (NaN: missing), the window's peak
    demand, the telemetry age, and demand samples (None with `forecast_error` when there is no forecast)."""

    scale: Scale
    demand: float = float("nan")
    peak: float = float("nan")
    age_s: float | None = None
    samples: np.ndarray | None = None
    forecast_error: str = ""
    discarded: str = ""  # why the posterior in status was not trusted ("": restored, or there was none)


#: what a forecaster raises for an object's own inputs (a window it cannot forecast from): that object's
#: forecast failure, reported on it (forecast-failed), never the step's crash
FORECAST_FAULTS = (HarmonyInputError, ValueError, FloatingPointError)


@dataclass
class Begun:
    """A step `Reconciler.begin` took up to its forecast: what `finish` needs to go on, and the forecast to
    make (`request`, None when there is none: `seen.forecast_error` says why); or, for a step that ended
    before it (an invalid spec, a missing target), its `outcome`."""

    namespace: str
    name: str
    uid: str
    generation: int | None = None
    started: float = 0.0
    now: dt.datetime | None = None
    status_body: dict = field(default_factory=dict)
    annotations: dict = field(default_factory=dict)
    spec: AutoscalerSpec | None = None
    conditions: list[dict] = field(default_factory=list)
    restored: control.ControllerState | None = None
    seen: Observed | None = None
    request: ForecastRequest | None = None
    outcome: Outcome | None = None


@dataclass
class Reconciler:
    kube: object  # harmony.operator.kube.KubeClient or anything with its methods
    telemetry: Callable[[AutoscalerSpec, dt.datetime], TelemetryWindow]
    metrics: OperatorMetrics
    settings: ReconcileSettings = field(default_factory=ReconcileSettings)
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    forecasters: dict[str, DemandForecaster] = field(default_factory=dict)
    decisions: DecisionBoard = field(default_factory=DecisionBoard)
    #: uid -> the count this process wrote to the object's target while the status write recording it in
    #: `lastScale` has not yet succeeded
    unrecorded_scales: dict[str, int] = field(default_factory=dict)
    # (namespace, name) -> a Secret's `data`, for spec.prometheus.secretRef (harmony.operator.app.read_secret)
    secrets: Callable[[str, str], Mapping[str, str]] | None = None
    #: where HARMONY models train (`DemandForecaster.trainer`); None: in the object's step
    trainer: Executor | None = None

    def forget(self, uid: str, namespace: str, name: str) -> None:
        self.forecasters.pop(uid, None)
        self.unrecorded_scales.pop(uid, None)
        self.metrics.forget(namespace, name)

    def forecaster(self, uid: str, spec: AutoscalerSpec) -> DemandForecaster:
        """The object's forecaster, built again when its model changes: another baseline, horizon or
        lookback, or a new checkpoint version accepted by parse_spec (a file replaced at the same path is
        taken up at the next step, without a restart; `served_checkpoint`)."""
        horizon = spec.cold_start_steps + 1
        lookback = max(1, math.ceil(spec.lookback_s / spec.interval_s))
        predictor = served_checkpoint(spec.model_checkpoint) if spec.model_checkpoint else None
        training = training_steps(spec.training_s, spec.history_s, spec.interval_s)
        key = (spec.model_baseline, id(predictor), horizon, lookback, spec.fine_tune, training)
        cached = self.forecasters.get(uid)
        if cached is None or getattr(cached, "key", None) != key:
            cached = DemandForecaster(None if predictor else spec.model_baseline, horizon, lookback,
                                      self.settings.n_samples, self.settings.refit_every, predictor,
                                      fine_tune=spec.fine_tune, training_steps=training, trainer=self.trainer)
            cached.key = key
            self.forecasters[uid] = cached
        return cached

    def _checkpoint_condition(self, conditions: list[dict], namespace: str, name: str, uid: str,
                              spec: AutoscalerSpec, now: dt.datetime, generation: int | None) -> list[dict]:
        """CheckpointCurrent: whether the file now at spec.model.checkpoint is the version served. A new file
        that fails to load or to fit the spec is not taken up: the version accepted before keeps serving,
        and a Warning Event says why, once per problem (the condition's message remembers it)."""
        if spec.model_checkpoint is None:
            return [c for c in conditions if c.get("type") != CHECKPOINT_CURRENT]
        if spec.checkpoint_problem is None:
            return st.set_condition(conditions, CHECKPOINT_CURRENT, True, "CheckpointServed",
                                    f"serving {spec.model_checkpoint}", now, generation)
        before = next((c for c in conditions if c.get("type") == CHECKPOINT_CURRENT), {})
        if before.get("message") != spec.checkpoint_problem:
            log.warning("%s/%s: %s", namespace, name, spec.checkpoint_problem)
            self._event(namespace, name, uid, CHECKPOINT_REJECTED, spec.checkpoint_problem, now, type_="Warning")
        return st.set_condition(conditions, CHECKPOINT_CURRENT, False, CHECKPOINT_REJECTED, spec.checkpoint_problem,
                                now, generation)

    def reconcile(self, namespace: str, name: str, uid: str, generation: int | None, spec_body: Mapping,
                  status_body: Mapping | None, annotations: Mapping | None = None) -> Outcome:
        """One step for the object's spec, status and metadata.annotations (the pause annotations), its
        forecast made alone: `finish(begin(...))`."""
        return self.finish(self.begin(namespace, name, uid, generation, spec_body, status_body, annotations))

    def begin(self, namespace: str, name: str, uid: str, generation: int | None, spec_body: Mapping,
              status_body: Mapping | None, annotations: Mapping | None = None) -> Begun:
        """A step up to its forecast: the spec, the scale and the telemetry read, the forecast prepared
        (`Begun.request`) but not made. A step that ends before (an invalid spec, a missing target) is
        finished here (`Begun.outcome`). Run the forecast alone or with other objects' (the operator's
        `ForecastBatcher`), then `finish`."""
        started = time.perf_counter()
        now = self.clock()
        status_body = dict(status_body or {})
        conditions = list(status_body.get("conditions") or [])
        base = {"observedGeneration": generation}

        try:
            spec = parse_spec(spec_body)
        except InvalidSpec as exc:
            self.metrics.reconcile_failure(namespace, name, "invalid-spec")
            message = redact_url(str(exc))
            conditions = st.set_condition(conditions, "InvalidSpec", True, "InvalidSpec", message, now, generation)
            conditions = st.set_condition(conditions, st.READY, False, "InvalidSpec", message, now, generation)
            # harmony acts on nothing meanwhile: whatever count the target gets is nobody's conflict
            return Begun(namespace, name, uid, outcome=self._write(namespace, name, Outcome(
                {**base, "conditions": conditions, **_NO_WRITER}, error=message)))
        conditions = [c for c in conditions if c.get("type") != "InvalidSpec"]
        conditions = self._checkpoint_condition(conditions, namespace, name, uid, spec, now, generation)

        target = spec.target
        try:
            scale = self.kube.get_scale(target.api_version, target.kind, namespace, target.name)
        except TargetNotFound as exc:
            self.metrics.reconcile_failure(namespace, name, "target-not-found")
            conditions = st.set_condition(conditions, st.ABLE_TO_SCALE, False, "TargetNotFound", str(exc), now,
                                          generation)
            conditions = st.set_condition(conditions, st.READY, False, "TargetNotFound", str(exc), now, generation)
            # a target created again starts from its own count, not a conflict with the old one's
            return Begun(namespace, name, uid, outcome=self._write(namespace, name, Outcome(
                {**base, "conditions": conditions, **_NO_WRITER}, error=str(exc))))

        restored, discarded = st.read_posterior(status_body.get("posterior"), spec.capacity_per_replica,
                                                spec.max_replicas)
        if discarded:
            self._posterior_discarded(namespace, name, uid, discarded, now)
        seen, request = self._observe(namespace, name, uid, spec, scale, now, restored.decisions if restored else 0)
        seen.discarded = discarded
        return Begun(namespace, name, uid, generation, started, now, status_body, dict(annotations or {}), spec,
                     conditions, restored, seen, request)

    def finish(self, begun: Begun, forecast: np.ndarray | BaseException | None = None) -> Outcome:
        """The rest of a step `begin` began, from its forecast: the demand samples, or the exception making
        them raised (None: made here, alone). A forecaster's input fault (a bad window) is this object's
        forecast failure (ForecastReady=False, the count held); anything else is raised, as `reconcile` does."""
        if begun.outcome is not None:
            return begun.outcome
        namespace, name, uid, generation, spec = begun.namespace, begun.name, begun.uid, begun.generation, begun.spec
        started, now, status_body, annotations = begun.started, begun.now, begun.status_body, begun.annotations
        seen = self._forecast(begun, forecast)
        restored, conditions, scale = begun.restored, begun.conditions, seen.scale
        base = {"observedGeneration": generation}
        conditions = self._forecast_condition(conditions, namespace, name, uid, spec, seen, now, generation)
        settings = spec.control_settings()
        state = restored or self._fresh_state(spec, seen)
        gate = self._gate(namespace, name, uid, spec, annotations or {}, conditions, now)
        # paused or managed elsewhere, the count is not harmony's: nobody else's write is a conflict
        writer = Writer() if gate.reason else self._other_writer(namespace, name, uid, spec, scale, status_body, now)
        failures = 0 if seen.samples is not None else st.forecast_failures(status_body.get("posterior")) + 1
        fallback_to = self._fallback_replicas(spec, failures)
        result, scaled_to, current, unable = self._step_and_actuate(
            namespace, name, uid, spec, seen, state, settings, writer.hold or bool(gate.reason), fallback_to)
        if gate.set_to is not None and spec.mode == "Scale":
            scaled_to = self._set_paused_replicas(namespace, name, spec, seen.scale, gate.set_to)
        if unable:
            conditions = st.set_condition(conditions, st.ABLE_TO_SCALE, False, *unable, now, generation)
        if spec.mode == "Scale" and not gate.reason:
            # the count the target has as this step ends: the next step tells another writer's by it
            writer.last_scale = {"replicas": scaled_to if scaled_to is not None else current,
                                 "time": st.timestamp(now)}
        if writer.hold:
            conditions = st.set_condition(conditions, st.ABLE_TO_SCALE, False, CONFLICTING_WRITER, writer.message,
                                          now, generation)
        if gate.reason:
            conditions = st.set_condition(conditions, st.ABLE_TO_SCALE, False, gate.reason, gate.message, now,
                                          generation)
            if gate.reason == PAUSED:
                result = _replace_reason(result, PAUSED_REASON)
        outcome = self._report(namespace, name, uid, base, conditions, spec, seen, result, scaled_to, current,
                               unable, writer, started, now, gate, failures)
        self.unrecorded_scales.pop(uid, None)  # recorded: status.lastScale holds the count
        return outcome

    # -- gate and fallback ---------------------------------------------------------------------------------
    def _gate(self, namespace: str, name: str, uid: str, spec: AutoscalerSpec, annotations: Mapping,
              conditions: list[dict], now: dt.datetime) -> Gate:
        """Whether harmony may write the target's scale this step (see the module docstring)."""
        replicas = annotations.get(PAUSED_REPLICAS_ANNOTATION)
        if replicas is not None:
            count = _count(replicas)
            if count is None:
                return Gate(PAUSED, f"annotation {PAUSED_REPLICAS_ANNOTATION}: {str(replicas)[:64]!r} is not a "
                                    "replica count (a whole number >= 0); paused without one: no scale writes")
            return Gate(PAUSED, f"paused at {count} replicas by annotation {PAUSED_REPLICAS_ANNOTATION}",
                        set_to=count)
        if str(annotations.get(PAUSED_ANNOTATION, "")).strip().lower() == "true":
            return Gate(PAUSED, f"paused by annotation {PAUSED_ANNOTATION}: no scale writes")
        if spec.mode != "Scale":
            return Gate()  # an HPA or KEDA reading harmony's recommendation is Recommend mode's intended setup
        other = self._managed_elsewhere(namespace, name, spec)
        if other is None:
            return Gate()
        target = spec.target
        message = (f"{target.kind} {target.name} is scaled by {other.kind} {other.name}: harmony writes no scale "
                   "(two autoscalers on one target fight); delete it, or use mode: Recommend and let it read "
                   "harmony's metric")
        previous = next((c for c in conditions if c.get("type") == st.ABLE_TO_SCALE), {})
        if previous.get("reason") != MANAGED_ELSEWHERE or previous.get("status") != "False":
            log.warning("%s/%s: %s", namespace, name, message)
            self._event(namespace, name, uid, MANAGED_ELSEWHERE, message, now, type_="Warning")
        return Gate(MANAGED_ELSEWHERE, message)

    def _managed_elsewhere(self, namespace: str, name: str, spec: AutoscalerSpec):
        """The namespace's HPA or ScaledObject that scales the target, or None. A list that fails (the API
        server busy, RBAC without the chart's rules) is logged and counted, and the step goes on: the other
        writer check still backs off from any autoscaler that does write the target."""
        target = spec.target
        try:
            others = self.kube.other_autoscalers(namespace)
        except ApiError as exc:
            log.warning("%s/%s: could not list the namespace's HPAs and ScaledObjects: %s", namespace, name,
                        redact_url(str(exc)))
            self.metrics.reconcile_failure(namespace, name, "api-error")
            return None
        return next((o for o in others if o.scales(target.api_version, target.kind, target.name)), None)

    def _set_paused_replicas(self, namespace: str, name: str, spec: AutoscalerSpec, scale: Scale,
                             replicas: int) -> int | None:
        """paused-replicas: the target set to `replicas` when it has another count (once: then it holds);
        a write that loses a race is tried again next step."""
        if scale.replicas == replicas:
            return None
        target = spec.target
        try:
            self.kube.set_scale(target.api_version, target.kind, namespace, target.name, replicas,
                                scale.resource_version)
        except (Conflict, TargetNotFound) as exc:
            log.info("%s/%s: paused-replicas write not done (%s); next step tries again", namespace, name, exc)
            return None
        return replicas

    @staticmethod
    def _fallback_replicas(spec: AutoscalerSpec, failures: int) -> int | None:
        """spec.fallback's count once `failures` consecutive steps had no forecast, else None (hold)."""
        if spec.fallback is None or failures < spec.fallback.failure_threshold:
            return None
        return min(max(spec.fallback.replicas, spec.min_replicas), spec.max_replicas)

    # -- observe -----------------------------------------------------------------------------------------
    def _observe(self, namespace: str, name: str, uid: str, spec: AutoscalerSpec, scale: Scale, now: dt.datetime,
                 decisions: int) -> tuple[Observed, ForecastRequest | None]:
        """What the telemetry shows, and the forecast to make from it (None: no forecast, `forecast_error`
        says why)."""
        seen = Observed(scale)
        try:
            access = self._prometheus_access(namespace, spec)
            # a spec without spec.prometheus reads the operator's own Prometheus: the source's two-argument form
            window = self.telemetry(spec, now) if access is None else self.telemetry(spec, now, access)
        except PrometheusError as exc:
            # Prometheus answered, but not with data (the query or the credentials refused, HTML from a proxy,
            # garbage): it repeats until someone fixes it, so it is reported on the object, not raised
            seen.forecast_error = f"{exc.reason}: {exc}"
            log.warning("%s/%s: no telemetry: %s", namespace, name, seen.forecast_error)
            return seen, None
        except Exception as exc:  # a telemetry source's own fault: the step holds and says so
            seen.forecast_error = redact_url(f"query-failed: {type(exc).__name__}: {exc}")
            log.warning("%s/%s: telemetry source failed: %s", namespace, name,
                        redact_url("".join(traceback.format_exception(exc)).rstrip()))
            return seen, None
        if window.stale or window.frame is None:
            seen.forecast_error = redact_url(window.reason or "telemetry-stale")
            return seen, None
        demand_name = spec.demand_indicator.name
        demand_col = window.frame.values[:, 0, window.frame.indicator_position(demand_name)]
        seen.demand = float(demand_col[-1]) if np.isfinite(demand_col[-1]) else float("nan")
        seen.peak = float(np.nanmax(demand_col)) if np.isfinite(demand_col).any() else float("nan")
        seen.age_s = _age_s(window.frame.index, demand_col, now)
        try:
            return seen, self.forecaster(uid, spec).request(window.frame, (demand_name,),
                                                            seed=self.settings.seed + decisions,
                                                            training=self._training(namespace, name, spec, now,
                                                                                    access, window.frame))
        except FORECAST_FAULTS as exc:  # a fit that cannot be made, too few rows
            seen.forecast_error = f"forecast-failed: {exc}"
            return seen, None

    def _training(self, namespace: str, name: str, spec: AutoscalerSpec, now: dt.datetime,
                  access: PrometheusAccess | None, window: TelemetryFrame):
        """The training history (spec.model.trainingSeconds ending now), read only when a model trains on it
        (the adapter calls it), in range queries chunked under Prometheus' points per series; None where the
        decision's window already holds all there is (its first row has no data: the workload is newer than
        it) or the query fails (the model then trains on the window; the next training tries again)."""
        if spec.training_s is None or spec.training_s <= spec.history_s or np.isnan(window.values[0]).all():
            return None
        longer = dataclasses.replace(spec, history_s=spec.training_s)

        def fetch() -> TelemetryFrame | None:
            try:
                got = self.telemetry(longer, now) if access is None else self.telemetry(longer, now, access)
            except Exception as exc:  # noqa: BLE001 - any source fault: train on the window instead
                log.warning("%s/%s: training history not read (%s); training on the window",
                            namespace, name, redact_url(f"{type(exc).__name__}: {exc}"))
                return None
            return None if got.frame is None or got.stale else got.frame
        return fetch

    @staticmethod
    def _forecast(begun: Begun, forecast: np.ndarray | BaseException | None) -> Observed:
        """The observation with the step's forecast in it (made here when `forecast` is None)."""
        seen = begun.seen
        if begun.request is None:
            return seen
        if forecast is None:
            try:
                forecast = begun.request.run()
            except FORECAST_FAULTS as exc:
                forecast = exc
        if isinstance(forecast, FORECAST_FAULTS):
            seen.forecast_error = f"forecast-failed: {forecast}"
        elif isinstance(forecast, BaseException):
            raise forecast
        else:
            seen.samples = forecast
        return seen

    def _prometheus_access(self, namespace: str, spec: AutoscalerSpec) -> PrometheusAccess | None:
        """The credentials of spec.prometheus: its Secret, read in the object's own namespace at every step
        (a rotated Secret is used at once), or none (an own URL only); None without spec.prometheus. A
        Secret that cannot be read or is malformed is an auth failure, reported on the object, never its
        contents."""
        wanted = spec.prometheus
        if wanted is None:
            return None
        if wanted.secret_name is None:
            return PrometheusAccess()
        where = f"spec.prometheus.secretRef: Secret {namespace}/{wanted.secret_name}"
        if self.secrets is None:
            raise PrometheusError(f"{where}: this operator reads no Secrets", transient=False, reason=AUTH_FAILED)
        try:
            data = self.secrets(namespace, wanted.secret_name)
            return PrometheusAccess.from_secret_data(data, where)
        except HarmonyInputError as exc:
            raise PrometheusError(str(exc), transient=False, reason=AUTH_FAILED) from None
        except ApiError as exc:
            why = {404: "not found", 403: "forbidden (the operator's RBAC does not grant get on secrets here)"}
            raise PrometheusError(f"{where}: {why.get(exc.status, exc)}", transient=exc.status not in why,
                                  reason=AUTH_FAILED if exc.status in why else UNAVAILABLE) from None

    def _forecast_condition(self, conditions: list[dict], namespace: str, name: str, uid: str, spec: AutoscalerSpec,
                            seen: Observed, now: dt.datetime, generation: int | None) -> list[dict]:
        if seen.forecast_error:
            self.metrics.telemetry_error(namespace, name, seen.forecast_error.split(":")[0])
            return st.set_condition(conditions, st.FORECAST_READY, False, _reason(seen.forecast_error),
                                    seen.forecast_error, now, generation)
        model = self.forecasters[uid].status if uid in self.forecasters else None  # it made the samples
        self.metrics.forecaster(namespace, name, fallback=bool(model and model.fallback),
                                fine_tunes=model.fine_tunes if model else 0)
        if model is not None and model.fallback:  # a new workload: its model cannot be trained yet
            return st.set_condition(conditions, st.FORECAST_READY, True, "BaselineFallback", model.reason, now,
                                    generation)
        return st.set_condition(conditions, st.FORECAST_READY, True, "ForecastComputed",
                                f"forecast of {spec.demand_indicator.name} over {spec.cold_start_steps + 1} steps"
                                + (f" by {model.model}" if model else ""), now, generation)

    # -- step and actuate --------------------------------------------------------------------------------
    @staticmethod
    def _fresh_state(spec: AutoscalerSpec, seen: Observed) -> control.ControllerState:
        """Priors for a new object: the declared capacity, or (learned) the calibrated prior of
        spec.capacity.prior, else a first guess that the fleet as provisioned handled the window's peak."""
        if spec.capacity_per_replica is not None:
            return control.ControllerState.fresh(spec.capacity_per_replica, spec.max_breach_probability)
        if spec.capacity_prior is not None:  # calibrated offline (spec.capacity.prior): better than a guess
            fresh = control.ControllerState.fresh(spec.capacity_prior.mu[0], spec.max_breach_probability)
            return dataclasses.replace(fresh, capacity=spec.capacity_prior)
        guess = max((seen.peak if np.isfinite(seen.peak) else 1.0) / max(seen.scale.observed_replicas, 1), 1e-6)
        return control.ControllerState.fresh(guess, spec.max_breach_probability, learned=True)

    def _other_writer(self, namespace: str, name: str, uid: str, spec: AutoscalerSpec, scale: Scale,
                      status_body: Mapping, now: dt.datetime) -> Writer:
        """Whether another writer changed the target's replicas since harmony's last step, and so whether to
        back off. Only in Scale mode: in Recommend mode harmony writes nothing and has nothing to defend."""
        if spec.mode != "Scale":
            return Writer()
        last = status_body.get("lastScale") or {}
        conflict = dict(status_body.get("conflictingWriter") or {})
        expected = last.get("replicas") if isinstance(last.get("replicas"), int) else None
        until = st.parse_timestamp(conflict.get("backoffUntil"))
        backing_off = until is not None and now < until
        target = spec.target
        created, recorded = st.parse_timestamp(scale.created), st.parse_timestamp(last.get("time"))
        if created is not None and recorded is not None and created >= recorded:
            expected = None  # the target was created again since: its count is its own, nobody else's
        # a count this process wrote but whose status write failed is its own, not another writer's
        if expected is None or scale.replicas in (expected, self.unrecorded_scales.get(uid)):
            if backing_off:  # the other writer is quiet now, but the back-off runs its course
                return Writer(True, conflict, _backoff_message(target.kind, target.name, conflict))
            return Writer()  # nobody else wrote (or the back-off is over): act
        # spec.replicas is not what the target had when harmony's last step ended: someone else wrote it
        if backing_off:  # still writing while harmony backs off: keep the deadline, remember the count
            conflict["replicas"] = scale.replicas
            return Writer(True, conflict, _backoff_message(target.kind, target.name, conflict))
        backoff_s = max(int(spec.behavior.scale_down.stabilization_window_s),
                        CONFLICT_BACKOFF_INTERVALS * spec.interval_s)
        conflict = {"replicas": scale.replicas, "detected": st.timestamp(now),
                    "backoffUntil": st.timestamp(now + dt.timedelta(seconds=backoff_s))}
        message = (f"{target.kind} {target.name}: spec.replicas changed from {expected} to {scale.replicas} by "
                   f"another writer (an HPA, KEDA, a person?); harmony writes no scale for {backoff_s} s, then "
                   "tries again (to serve another autoscaler, use mode: Recommend and its metrics)")
        log.warning("%s/%s: %s", namespace, name, message)
        self.metrics.reconcile_failure(namespace, name, "conflicting-writer")
        self._event(namespace, name, uid, CONFLICTING_WRITER, message, now, type_="Warning")
        return Writer(True, conflict, _backoff_message(target.kind, target.name, conflict))

    def _step_and_actuate(self, namespace: str, name: str, uid: str, spec: AutoscalerSpec, seen: Observed,
                          state: control.ControllerState, settings: control.ControlSettings, hold: bool = False,
                          fallback_to: int | None = None):
        """The control step (its count replaced by `fallback_to` when set), then (Scale mode, unless backing
        off or gated: `hold`) the write; a 409 re-reads the scale and steps again. `unable`: (reason, message)
        of a write that did not happen, for AbleToScale, else None."""
        scale, target = seen.scale, spec.target
        scaled_to, unable = None, None
        for attempt in range(CONFLICT_RETRIES):
            observation = _observation(seen.demand, scale)
            result = control.step(state, seen.samples, observation, settings,
                                  control.step_rng(self.settings.seed, state.decisions))
            if fallback_to is not None:
                result = _fall_back(result, fallback_to)
            if spec.mode != "Scale" or hold or result.replicas == scale.replicas:
                break
            try:
                self.kube.set_scale(target.api_version, target.kind, namespace, target.name, result.replicas,
                                    scale.resource_version)
                scaled_to = self.unrecorded_scales[uid] = result.replicas  # until the status write records it
                break
            except Conflict:
                # someone else wrote the scale since we read it: step again from the fresh count
                log.info("%s/%s: scale conflict, retrying on the fresh object (%d)", namespace, name, attempt + 1)
                try:
                    scale = self.kube.get_scale(target.api_version, target.kind, namespace, target.name)
                except TargetNotFound:
                    break  # deleted meanwhile: the next step reports it
            except TargetNotFound:
                break  # deleted between the read and the write: the next step reports it
            except ApiError as exc:
                # the API server failed the write (a 500, a timeout): nothing changed; hold, say so, try next step
                unable = ("FailedUpdateScale", f"{target.kind} {target.name}: writing {result.replicas} replicas "
                                               f"failed: {exc}")
                log.warning("%s/%s: %s", namespace, name, unable[1])
                self.metrics.reconcile_failure(namespace, name, "api-error")
                break
        else:
            unable = ("Conflict", f"scale changed concurrently {CONFLICT_RETRIES} times")
            self.metrics.reconcile_failure(namespace, name, "conflict")
        return result, scaled_to, scale.replicas, unable

    # -- report ------------------------------------------------------------------------------------------
    def _report(self, namespace: str, name: str, uid: str, base: dict, conditions: list[dict],
                spec: AutoscalerSpec, seen: Observed, result: control.StepResult, scaled_to: int | None,
                current: int, unable: tuple[str, str] | None, writer: Writer, started: float,
                now: dt.datetime, gate: Gate | None = None, failures: int = 0) -> Outcome:
        target = spec.target
        gate = gate or Gate()
        generation = base["observedGeneration"]
        decision = result.decision
        reason, desired = result.reason, result.replicas
        breach_p = float(decision.breach_probability[0])
        if scaled_to is not None:
            direction = "up" if scaled_to > current else "down"
            self.metrics.scale_event(namespace, name, direction)
            self._event(namespace, name, uid, "ScaledUp" if direction == "up" else "ScaledDown",
                        f"{target.kind} {target.name}: {current} -> {scaled_to} replicas ({reason}; "
                        f"breach probability {breach_p:.4f})", now)
        if not unable and not writer.hold and not gate.reason:
            conditions = st.set_condition(conditions, st.ABLE_TO_SCALE, True, "ScaleSubresourceReachable",
                                          f"{target.kind} {target.name} has {current} replicas", now, generation)
        limited = reason in (LIMITED_MAX, LIMITED_MIN)
        conditions = st.set_condition(conditions, st.SCALING_LIMITED, limited,
                                      _reason(reason) if limited else "WithinBounds",  # CamelCase, as metav1's
                                      f"target {result.target} within [{spec.min_replicas}, "
                                      f"{spec.max_replicas}]" if not limited else f"bounded at {desired}", now,
                                      generation)
        conditions = self._ready(conditions, seen, reason, desired, current, unable, writer, now, generation, gate)

        samples = seen.samples
        quantiles = {} if samples is None else dict(zip(
            FORECAST_QUANTILES, np.quantile(samples.max(axis=1), FORECAST_QUANTILES).tolist(), strict=True))
        self.metrics.record_decision(
            namespace, name, recommended=result.target, desired=desired,
            current=scaled_to if scaled_to is not None else current,
            breach_probability=breach_p, effective_risk=result.risk,
            capacity=float(result.state.capacity.mu[0]), observed_demand=seen.demand,
            forecast_quantiles=quantiles, duration_s=time.perf_counter() - started, reason=reason,
            telemetry_age_s=seen.age_s)
        self.decisions.post(namespace, name, PostedDecision(result.target, desired, now, float(spec.interval_s),
                                                            spec.mode))
        status = {
            **base,
            "currentReplicas": scaled_to if scaled_to is not None else current,
            "desiredReplicas": desired,
            "recommendedReplicas": result.target,
            **({} if seen.scale.ready_replicas is None else {"readyReplicas": seen.scale.ready_replicas}),
            "conditions": conditions,
            "lastDecision": {"time": st.timestamp(now), "replicas": desired,
                             "breachProbability": None if math.isnan(breach_p) else round(breach_p, 6),
                             "reason": reason},
            "posterior": {**st.to_status(result.state, spec.capacity_per_replica), st.FORECAST_FAILURES: failures,
                          # kept until the next discard (a merge patch leaves what it does not name)
                          **({"discarded": {"time": st.timestamp(now), "reason": seen.discarded}}
                             if seen.discarded else {})},
            # null removes a field in a merge patch: no back-off (or Recommend mode) leaves no stale record
            "lastScale": writer.last_scale,
            # what forecasts: the model, or the baseline standing in for it until it can be trained
            "forecaster": self.forecasters[uid].status.to_dict() if uid in self.forecasters else None,
            "conflictingWriter": writer.conflict,
        }
        return self._write(namespace, name, Outcome(status, scaled_to))

    @staticmethod
    def _ready(conditions: list[dict], seen: Observed, reason: str, desired: int, current: int,
               unable: tuple[str, str] | None, writer: Writer, now: dt.datetime,
               generation: int | None, gate: Gate | None = None) -> list[dict]:
        """Ready: the step decided on a forecast and could act on it. A fallback, a hold for want of telemetry,
        a pause, a target managed elsewhere, a back-off from another writer and a scale write that kept losing
        races or failed are not Ready, and say why."""
        if reason == FALLBACK_REASON:
            return st.set_condition(conditions, st.READY, False, FALLBACK,
                                    f"no forecast for several steps: fallback to {desired} replicas "
                                    f"({seen.forecast_error})", now, generation)
        if seen.forecast_error:
            return st.set_condition(conditions, st.READY, False, _reason(seen.forecast_error),
                                    f"holding {current} replicas: {seen.forecast_error}", now, generation)
        if gate is not None and gate.reason:
            return st.set_condition(conditions, st.READY, False, gate.reason, gate.message, now, generation)
        if writer.hold:
            return st.set_condition(conditions, st.READY, False, CONFLICTING_WRITER, writer.message, now, generation)
        if unable:
            return st.set_condition(conditions, st.READY, False, *unable, now, generation)
        return st.set_condition(conditions, st.READY, True, "Reconciled", f"{reason}: {desired} replicas", now,
                                generation)

    def _posterior_discarded(self, namespace: str, name: str, uid: str, why: str, now: dt.datetime) -> None:
        """Say that the step starts from priors, and why: a restart (or a peer taking over) that silently
        forgot what was learned would look like a jump nobody can explain."""
        message = f"status.posterior discarded ({why}): starting from priors"
        log.warning("%s/%s: %s", namespace, name, message)
        self._event(namespace, name, uid, "PosteriorDiscarded", message, now, type_="Warning")

    def _event(self, namespace: str, name: str, uid: str, reason: str, message: str, now: dt.datetime,
               type_: str = "Normal") -> None:
        """An Event on the object; one that cannot be posted (events forbidden, the API server busy) is
        logged and counted, never raised: the step's scale write and status matter more than its Event."""
        try:
            self.kube.emit_event(namespace, name, uid, reason, message, type_=type_, now=now)
        except Exception as exc:
            log.warning("%s/%s: could not post the %s Event (%s): %s", namespace, name, reason, message,
                        redact_url(f"{type(exc).__name__}: {exc}"))
            self.metrics.reconcile_failure(namespace, name, "event-failed")

    def _write(self, namespace: str, name: str, outcome: Outcome) -> Outcome:
        self.kube.patch_status(namespace, name, outcome.status)
        return outcome


# status fields of the other-writer check, cleared where harmony does not act on the target
_NO_WRITER = {"lastScale": None, "conflictingWriter": None}


def _backoff_message(kind: str, target: str, conflict: Mapping) -> str:
    return (f"{kind} {target}: another writer set spec.replicas to {conflict.get('replicas')} "
            f"(detected {conflict.get('detected')}); harmony writes no scale until {conflict.get('backoffUntil')}, "
            "then tries again")


def _count(value: object) -> int | None:
    """An annotation's replica count ("3"), or None when it is not a whole number >= 0."""
    text = str(value).strip()
    return int(text) if text.isdecimal() and len(text) <= 9 else None


def _replace_reason(result: control.StepResult, reason: str) -> control.StepResult:
    decision = dataclasses.replace(result.decision, reason=np.array([reason], dtype=object))
    return dataclasses.replace(result, decision=decision)


def _fall_back(result: control.StepResult, replicas: int) -> control.StepResult:
    """The step's result with `replicas` (spec.fallback's) as its count and target: no forecast judged it,
    so no breach probability."""
    count = np.array([replicas], dtype=np.int64)
    decision = Decision(count, count.copy(), np.array([np.nan]), np.array([np.nan]),
                                np.array([FALLBACK_REASON], dtype=object))
    return dataclasses.replace(result, decision=decision)


def _observation(demand: float, scale: Scale) -> control.Observation:
    """The step's view of the tick: breaches count against READY replicas; a target that cannot tell how
    many are ready (no readyReplicas, no selector) teaches nothing this tick rather than a guess."""
    if scale.ready_replicas is None:
        return control.Observation(float("nan"), scale.replicas, 0)
    return control.Observation(demand, scale.replicas, scale.ready_replicas)


def _age_s(index, demand: np.ndarray, now: dt.datetime) -> float | None:
    """Seconds between `now` and the newest observed demand sample (index timestamps are UTC)."""
    seen = np.flatnonzero(np.isfinite(demand))
    if seen.size == 0:
        return None
    newest = index[seen[-1]]
    newest = newest.tz_localize("UTC") if newest.tzinfo is None else newest
    return max((now - newest.to_pydatetime()).total_seconds(), 0.0)


def _reason(error: str) -> str:
    """A CamelCase condition reason (metav1.Condition's pattern) from a tag like 'prometheus-unavailable: ...'."""
    parts = re.split(r"[^A-Za-z0-9]+", error.split(":")[0])
    return "".join(part.capitalize() for part in parts if part).lstrip("0123456789") or "TelemetryStale"
