"""One reconcile step of one HarmonyAutoscaler, in named stages: observe -> step -> actuate -> report.

- observe: parse the spec, read the target's scale (desired and READY replicas), read the telemetry window and
  forecast demand over the cold-start horizon (the forecasting adapter the backtest uses).
- step: `harmony.decision.step.step`, the control step the backtest's harmony policy runs: it learns from the
  tick just observed and decides.
- actuate: in Scale mode, write the count to the scale subresource; a 409 re-reads it and steps again from
  the fresh count (the step is pure, so stepping again from the same state is exact).
- report: conditions, status (the state survives restarts there), metrics and an event per scaling.

The step is synchronous and takes its boundaries as constructor parameters (Kubernetes, Prometheus, the
metrics registry, the clock), so tests run it against the kmock emulator and a real or fake telemetry source
without patching anything. kopf calls it from a per-object daemon (harmony/operator/app.py).

Faults never lose data or jump the replica count: Prometheus down, stale or all-NaN telemetry hold the current
count (the step's stale rule) with ForecastReady=False; a missing target sets AbleToScale=False; an invalid
spec sets InvalidSpec and touches nothing; a restart restores posteriors and the stabilisation window from
status.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from harmony.decision import step as control
from harmony.decision.decide import LIMITED_MAX, LIMITED_MIN
from harmony.errors import HarmonyInputError
from harmony.forecasting.adapter import DEFAULT_SAMPLES, REFIT_EVERY, DemandForecaster
from harmony.operator import state as st
from harmony.operator.kube import Conflict, Scale, TargetNotFound
from harmony.operator.metrics import OperatorMetrics
from harmony.operator.spec import AutoscalerSpec, InvalidSpec, checkpoint_predictor, parse_spec
from harmony.telemetry.prometheus import TelemetryWindow

log = logging.getLogger("harmony.operator")

FORECAST_QUANTILES = (0.1, 0.5, 0.9, 0.99)
CONFLICT_RETRIES = 3


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
class Observed:
    """What the observe stage saw: the scale, the demand just observed (NaN: missing), the window's peak
    demand, the telemetry age, and demand samples (None with `forecast_error` when there is no forecast)."""

    scale: Scale
    demand: float = float("nan")
    peak: float = float("nan")
    age_s: float | None = None
    samples: np.ndarray | None = None
    forecast_error: str = ""


@dataclass
class Reconciler:
    kube: object  # harmony.operator.kube.KubeClient or anything with its methods
    telemetry: Callable[[AutoscalerSpec, dt.datetime], TelemetryWindow]
    metrics: OperatorMetrics
    settings: ReconcileSettings = field(default_factory=ReconcileSettings)
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    forecasters: dict[str, DemandForecaster] = field(default_factory=dict)

    def forget(self, uid: str, namespace: str, name: str) -> None:
        self.forecasters.pop(uid, None)
        self.metrics.forget(namespace, name)

    def forecaster(self, uid: str, spec: AutoscalerSpec) -> DemandForecaster:
        horizon = spec.cold_start_steps + 1
        lookback = max(1, math.ceil(spec.lookback_s / spec.interval_s))
        predictor = checkpoint_predictor(spec.model_checkpoint) if spec.model_checkpoint else None
        key = (spec.model_baseline, id(predictor), horizon, lookback)
        cached = self.forecasters.get(uid)
        if cached is None or getattr(cached, "key", None) != key:
            cached = DemandForecaster(None if predictor else spec.model_baseline, horizon, lookback,
                                      self.settings.n_samples, self.settings.refit_every, predictor)
            cached.key = key
            self.forecasters[uid] = cached
        return cached

    def reconcile(self, namespace: str, name: str, uid: str, generation: int | None, spec_body: Mapping,
                  status_body: Mapping | None) -> Outcome:
        started = time.perf_counter()
        now = self.clock()
        status_body = dict(status_body or {})
        conditions = list(status_body.get("conditions") or [])
        base = {"observedGeneration": generation}

        try:
            spec = parse_spec(spec_body)
        except InvalidSpec as exc:
            self.metrics.reconcile_failure(namespace, name, "invalid-spec")
            conditions = st.set_condition(conditions, "InvalidSpec", True, "InvalidSpec", str(exc), now)
            conditions = st.set_condition(conditions, st.READY, False, "InvalidSpec", str(exc), now)
            return self._write(namespace, name, Outcome({**base, "conditions": conditions}, error=str(exc)))
        conditions = [c for c in conditions if c.get("type") != "InvalidSpec"]

        target = spec.target
        try:
            scale = self.kube.get_scale(target.api_version, target.kind, namespace, target.name)
        except TargetNotFound as exc:
            self.metrics.reconcile_failure(namespace, name, "target-not-found")
            conditions = st.set_condition(conditions, st.ABLE_TO_SCALE, False, "TargetNotFound", str(exc), now)
            conditions = st.set_condition(conditions, st.READY, False, "TargetNotFound", str(exc), now)
            return self._write(namespace, name, Outcome({**base, "conditions": conditions}, error=str(exc)))

        restored = st.restore(status_body.get("posterior"))
        seen = self._observe(uid, spec, scale, now, restored.decisions if restored else 0)
        conditions = self._forecast_condition(conditions, namespace, name, spec, seen, now)
        settings = spec.control_settings()
        state = restored or self._fresh_state(spec, seen)
        result, scaled_to, current, conflicted = self._step_and_actuate(namespace, name, spec, seen, state, settings)
        if conflicted:
            self.metrics.reconcile_failure(namespace, name, "conflict")
            conditions = st.set_condition(conditions, st.ABLE_TO_SCALE, False, "Conflict",
                                          f"scale changed concurrently {CONFLICT_RETRIES} times", now)
        return self._report(namespace, name, uid, base, conditions, spec, seen, result, scaled_to, current,
                            conflicted, started, now)

    # -- observe -----------------------------------------------------------------------------------------
    def _observe(self, uid: str, spec: AutoscalerSpec, scale: Scale, now: dt.datetime,
                 decisions: int) -> Observed:
        seen = Observed(scale)
        window = self.telemetry(spec, now)
        if window.stale or window.frame is None:
            seen.forecast_error = window.reason or "telemetry-stale"
            return seen
        demand_name = spec.demand_indicator.name
        demand_col = window.frame.values[:, 0, window.frame.indicator_position(demand_name)]
        seen.demand = float(demand_col[-1]) if np.isfinite(demand_col[-1]) else float("nan")
        seen.peak = float(np.nanmax(demand_col)) if np.isfinite(demand_col).any() else float("nan")
        seen.age_s = _age_s(window.frame.index, demand_col, now)
        try:
            seen.samples = self.forecaster(uid, spec).demand_samples(window.frame, (demand_name,),
                                                                     seed=self.settings.seed + decisions)
        except (HarmonyInputError, ValueError, FloatingPointError) as exc:
            seen.forecast_error = f"forecast-failed: {exc}"
        return seen

    def _forecast_condition(self, conditions: list[dict], namespace: str, name: str, spec: AutoscalerSpec,
                            seen: Observed, now: dt.datetime) -> list[dict]:
        if seen.forecast_error:
            self.metrics.telemetry_error(namespace, name, seen.forecast_error.split(":")[0])
            return st.set_condition(conditions, st.FORECAST_READY, False, _reason(seen.forecast_error),
                                    seen.forecast_error, now)
        return st.set_condition(conditions, st.FORECAST_READY, True, "ForecastComputed",
                                f"forecast of {spec.demand_indicator.name} over {spec.cold_start_steps + 1} steps",
                                now)

    # -- step and actuate --------------------------------------------------------------------------------
    @staticmethod
    def _fresh_state(spec: AutoscalerSpec, seen: Observed) -> control.ControllerState:
        """Priors for a new object: the declared capacity, or (learned) a first guess that the fleet as
        provisioned handled the window's peak."""
        if spec.capacity_per_replica is not None:
            return control.ControllerState.fresh(spec.capacity_per_replica, spec.max_breach_probability)
        guess = max((seen.peak if np.isfinite(seen.peak) else 1.0) / max(seen.scale.observed_replicas, 1), 1e-6)
        return control.ControllerState.fresh(guess, spec.max_breach_probability, learned=True)

    def _step_and_actuate(self, namespace: str, name: str, spec: AutoscalerSpec, seen: Observed,
                          state: control.ControllerState, settings: control.ControlSettings):
        """The control step, then (Scale mode) the write; a 409 re-reads the scale and steps again."""
        scale, target = seen.scale, spec.target
        scaled_to, conflicted = None, False
        for attempt in range(CONFLICT_RETRIES):
            observation = _observation(seen.demand, scale)
            result = control.step(state, seen.samples, observation, settings,
                                  control.step_rng(self.settings.seed, state.decisions))
            if spec.mode != "Scale" or result.replicas == scale.replicas:
                break
            try:
                self.kube.set_scale(target.api_version, target.kind, namespace, target.name, result.replicas,
                                    scale.resource_version)
                scaled_to = result.replicas
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
        else:
            conflicted = True
        return result, scaled_to, scale.replicas, conflicted

    # -- report ------------------------------------------------------------------------------------------
    def _report(self, namespace: str, name: str, uid: str, base: dict, conditions: list[dict],
                spec: AutoscalerSpec, seen: Observed, result: control.StepResult, scaled_to: int | None,
                current: int, conflicted: bool, started: float, now: dt.datetime) -> Outcome:
        target = spec.target
        decision = result.decision
        reason, desired = result.reason, result.replicas
        breach_p = float(decision.breach_probability[0])
        if scaled_to is not None:
            direction = "up" if scaled_to > current else "down"
            self.metrics.scale_event(namespace, name, direction)
            self.kube.emit_event(namespace, name, uid, "ScaledUp" if direction == "up" else "ScaledDown",
                                 f"{target.kind} {target.name}: {current} -> {scaled_to} replicas ({reason}; "
                                 f"breach probability {breach_p:.4f})", now=now)
        if not conflicted:
            conditions = st.set_condition(conditions, st.ABLE_TO_SCALE, True, "ScaleSubresourceReachable",
                                          f"{target.kind} {target.name} has {current} replicas", now)
        limited = reason in (LIMITED_MAX, LIMITED_MIN)
        conditions = st.set_condition(conditions, st.SCALING_LIMITED, limited, reason if limited else "WithinBounds",
                                      f"target {result.target} within [{spec.min_replicas}, "
                                      f"{spec.max_replicas}]" if not limited else f"bounded at {desired}", now)
        conditions = st.set_condition(conditions, st.READY, True, "Reconciled", f"{reason}: {desired} replicas", now)

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
            "posterior": st.to_status(result.state),
        }
        return self._write(namespace, name, Outcome(status, scaled_to))

    def _write(self, namespace: str, name: str, outcome: Outcome) -> Outcome:
        self.kube.patch_status(namespace, name, outcome.status)
        return outcome


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
    """A CamelCase condition reason from an error tag like 'prometheus-unavailable: ...'."""
    tag = error.split(":")[0].strip() or "TelemetryStale"
    return "".join(part.capitalize() for part in tag.replace("_", "-").split("-"))
