"""One reconcile step of one HarmonyAutoscaler: telemetry -> forecast -> decision -> scale -> status.

The step is synchronous and takes its boundaries as constructor parameters (Kubernetes, Prometheus, the
metrics registry, the clock), so tests run it against the kmock emulator and a real or fake telemetry
source without patching anything. kopf calls it from a per-object daemon (harmony/operator/app.py).

Faults never lose data or jump the replica count: Prometheus down, stale or all-NaN telemetry hold the
current count (decide's stale rule) with ForecastReady=False; a missing target sets AbleToScale=False;
a 409 on the scale write re-reads the target and decides again from the fresh count; an invalid spec
sets InvalidSpec and touches nothing; a restart restores posteriors and the stabilisation window from
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

from harmony.decision.decide import LIMITED_MAX, LIMITED_MIN, decide
from harmony.errors import HarmonyInputError
from harmony.forecasting.adapter import OnlineForecaster
from harmony.operator import state as st
from harmony.operator.kube import Conflict, TargetNotFound
from harmony.operator.metrics import OperatorMetrics
from harmony.operator.spec import AutoscalerSpec, InvalidSpec, parse_spec
from harmony.telemetry.prometheus import TelemetryWindow

log = logging.getLogger("harmony.operator")

FORECAST_QUANTILES = (0.1, 0.5, 0.9, 0.99)
CONFLICT_RETRIES = 3


@dataclass(frozen=True)
class ReconcileSettings:
    """n_samples: forecast samples per decision. refit_every: decisions between refits of a baseline model
    (1: every decision; a ridge AR fit over a few hundred points takes milliseconds, and refitting keeps its
    residuals, hence its uncertainty, as recent as the history window). capacity_relative_sd: prior
    spread of a declared capacityPerReplica. seed: sampling seed."""

    n_samples: int = 200
    refit_every: int = 1
    capacity_relative_sd: float = 0.05
    seed: int = 0


@dataclass
class Outcome:
    """What one step did: the status written, and the scale written (None if none)."""

    status: dict
    scaled_to: int | None = None
    error: str | None = None


@dataclass
class Reconciler:
    kube: object  # harmony.operator.kube.KubeClient or anything with its four methods
    telemetry: Callable[[AutoscalerSpec, dt.datetime], TelemetryWindow]
    metrics: OperatorMetrics
    settings: ReconcileSettings = field(default_factory=ReconcileSettings)
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    forecasters: dict[str, OnlineForecaster] = field(default_factory=dict)

    def forget(self, uid: str, namespace: str, name: str) -> None:
        self.forecasters.pop(uid, None)
        self.metrics.forget(namespace, name)

    def forecaster(self, uid: str, spec: AutoscalerSpec) -> OnlineForecaster:
        horizon = spec.cold_start_steps + 1
        lookback = max(1, math.ceil(spec.lookback_s / spec.interval_s))
        key = (spec.model_baseline, spec.model_checkpoint, horizon, lookback)
        cached = self.forecasters.get(uid)
        if cached is None or getattr(cached, "key", None) != key:
            predictor = None
            if spec.model_checkpoint:
                from harmony.forecasting.predictors.harmony import HarmonyPredictor  # the checkpointed model (issue 3)

                predictor = HarmonyPredictor.load(spec.model_checkpoint)
            cached = OnlineForecaster(None if predictor else spec.model_baseline, horizon, lookback,
                                      self.settings.n_samples, self.settings.seed,
                                      self.settings.refit_every, predictor)
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

        window = self.telemetry(spec, now)
        demand_name = spec.demand_indicator.name
        decisions = int((status_body.get("posterior") or {}).get("decisions", 0))
        samples, observed, peak, forecast_error = None, float("nan"), float("nan"), ""
        age_s = None
        if window.stale or window.frame is None:
            forecast_error = window.reason or "telemetry-stale"
        else:
            demand_col = window.frame.values[:, 0, window.frame.indicator_position(demand_name)]
            observed = float(demand_col[-1]) if np.isfinite(demand_col[-1]) else float("nan")
            peak = float(np.nanmax(demand_col)) if np.isfinite(demand_col).any() else float("nan")
            age_s = _age_s(window.frame.index, demand_col, now)
            try:
                samples = self.forecaster(uid, spec).demand_samples(window.frame, (demand_name,),
                                                                    seed=self.settings.seed + decisions)
            except (HarmonyInputError, ValueError, FloatingPointError) as exc:
                forecast_error = f"forecast-failed: {exc}"
        if forecast_error:
            self.metrics.telemetry_error(namespace, name, forecast_error.split(":")[0])
            conditions = st.set_condition(conditions, st.FORECAST_READY, False,
                                          _reason(forecast_error), forecast_error, now)
        else:
            conditions = st.set_condition(conditions, st.FORECAST_READY, True, "ForecastComputed",
                                          f"forecast of {demand_name} over {spec.cold_start_steps + 1} steps", now)

        capacity = spec.capacity_per_replica
        if capacity is None:  # learned; first guess: the fleet as provisioned handled the window's peak
            capacity = max((peak if np.isfinite(peak) else 1.0) / max(scale.observed_replicas, 1), 1e-6)
        state = st.AutoscalerState.restore(status_body.get("posterior"), capacity,
                                           self.settings.capacity_relative_sd if spec.capacity_per_replica else 0.5,
                                           spec.max_breach_probability)
        state = self._learn(state, spec, observed, scale.observed_replicas)

        rng = np.random.default_rng(self.settings.seed + state.decisions)
        stale = samples is None
        demand = np.full((1, 2, spec.cold_start_steps + 1), np.nan) if stale else samples[None]
        capacity_samples = state.capacity.sample_mean(demand.shape[1], rng)
        risk = state.breaches.effective_risk(spec.max_breach_probability)
        settings = spec.decision_settings()

        scaled_to, current, conflicted = None, scale.replicas, False
        for attempt in range(CONFLICT_RETRIES):
            decision, recent = decide(demand, capacity_samples, np.array([current]), risk, settings,
                                      state.recent_targets, np.array([stale]))
            desired = int(decision.replicas[0])
            if spec.mode != "Scale" or desired == current:
                break
            try:
                self.kube.set_scale(target.api_version, target.kind, namespace, target.name, desired,
                                    scale.resource_version)
                scaled_to = desired
                break
            except Conflict:
                # someone else wrote the scale since we read it: decide again from the fresh count
                log.info("%s/%s: scale conflict, retrying on the fresh object (%d)", namespace, name, attempt + 1)
                try:
                    scale = self.kube.get_scale(target.api_version, target.kind, namespace, target.name)
                except TargetNotFound:
                    break  # deleted meanwhile: the next step reports it
                current = scale.replicas
            except TargetNotFound:
                break  # deleted between the read and the write: the next step reports it
        else:
            conflicted = True
            self.metrics.reconcile_failure(namespace, name, "conflict")
            conditions = st.set_condition(conditions, st.ABLE_TO_SCALE, False, "Conflict",
                                          f"scale changed concurrently {CONFLICT_RETRIES} times", now)

        reason = str(decision.reason[0])
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
                                      f"target {int(decision.target[0])} within [{spec.min_replicas}, "
                                      f"{spec.max_replicas}]" if not limited else f"bounded at {desired}", now)
        conditions = st.set_condition(conditions, st.READY, True, "Reconciled", f"{reason}: {desired} replicas", now)

        state = st.AutoscalerState(state.capacity, state.breaches, recent, state.decisions + 1)
        quantiles = {} if stale else dict(zip(
            FORECAST_QUANTILES, np.quantile(samples.max(axis=1), FORECAST_QUANTILES).tolist(), strict=True))
        duration = time.perf_counter() - started
        self.metrics.record_decision(
            namespace, name, recommended=int(decision.target[0]), desired=desired,
            current=scaled_to if scaled_to is not None else current,
            breach_probability=breach_p, effective_risk=float(risk[0]),
            capacity=float(state.capacity.mu[0]), observed_demand=observed,
            forecast_quantiles=quantiles, duration_s=duration, reason=reason, telemetry_age_s=age_s)
        status = {
            **base,
            "currentReplicas": scaled_to if scaled_to is not None else current,
            "desiredReplicas": desired,
            "recommendedReplicas": int(decision.target[0]),
            "conditions": conditions,
            "lastDecision": {"time": st.timestamp(now), "replicas": desired,
                             "breachProbability": None if math.isnan(breach_p) else round(breach_p, 6),
                             "reason": reason},
            "posterior": state.to_status(),
        }
        return self._write(namespace, name, Outcome(status, scaled_to))

    def _learn(self, state: st.AutoscalerState, spec: AutoscalerSpec, observed: float,
               ready: int) -> st.AutoscalerState:
        """Update the posteriors with the tick just observed (nothing when demand is missing)."""
        if not np.isfinite(observed) or state.decisions == 0:
            return state
        capacity_mean = float(state.capacity.mu[0])
        breached = observed > ready * capacity_mean
        breaches = state.breaches.update(np.array([float(breached)]))
        capacity = state.capacity
        if spec.capacity_per_replica is None and ready > 0 and observed / ready > capacity_mean:
            # learned capacity: replicas evidently served more per replica than believed
            capacity = capacity.update(np.array([[observed / ready]]))
        return st.AutoscalerState(capacity, breaches, state.recent_targets, state.decisions)

    def _write(self, namespace: str, name: str, outcome: Outcome) -> Outcome:
        self.kube.patch_status(namespace, name, outcome.status)
        return outcome


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
