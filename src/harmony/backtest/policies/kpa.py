"""Knative Serving's pod autoscaler (KPA), as Knative Services and KServe InferenceServices use it.

The decider follows knative/serving pkg/autoscaler/scaling/autoscaler.go (`Scale`), the scale-to-zero
gate pkg/reconciler/autoscaling/kpa/scaler.go (`handleScaleToZero`); defaults are those of the
`config-autoscaler` ConfigMap (pkg/autoscaler/config/config.go), with the per-revision annotation in parentheses.

- Concurrency analogue: demand / capacity_per_replica is the in-flight load in replica units. A
  replica's hard limit (containerConcurrency) is its capacity, and the target per replica is that times
  `container-concurrency-target-percentage` 70 (autoscaling.knative.dev/target-utilization-percentage):
  TargetValue = knob x capacity.
- Windows: the stable value is the average over `stable-window` 60 s (autoscaling.knative.dev/window); the
  panic value over `panic-window-percentage` 10% of it, 6 s (autoscaling.knative.dev/panic-window-percentage).
  At 1-minute telemetry both windows are the last tick: the trace has no finer data, so the stable and
  panic values coincide and panic mode matters only by what it forbids (scaling down).
- desired stable / panic = ceil(value / TargetValue), each kept within [floor(ready / max-scale-down-rate),
  ceil(max-scale-up-rate x ready)], ready = max(1, ready pods); `max-scale-up-rate` 1000,
  `max-scale-down-rate` 2. The decider evaluates every 2 s (multiscaler.go tickInterval), so a telemetry
  tick holds interval / 2 s evaluations of the same value; scale-downs are immediate here, so the bound
  after them is floor(ready / 2^evaluations) (the 2x limit binds only on sub-minute traces).
- Panic: entered or extended when desired panic / ready >= `panic-threshold-percentage` 200%
  (autoscaling.knative.dev/panic-threshold-percentage); while panicking the count is
  max(stable, panic, the highest count of this panic) and never goes down; panic ends at the first
  evaluation without the condition after panicTime + stable window (strict `Before`: at 1-minute ticks,
  two ticks after the last panic tick).
- Scale to zero (`enable-scale-to-zero` true; only with min replicas 0, Knative's min-scale 0): the decider
  wants 0 only after a whole stable window of zero demand. An Active revision keeps 1 replica and is
  marked inactive once it has been active for the stable window; the inactive revision, backed by the
  activator, goes to 0 after `scale-to-zero-grace-period` 30 s (`scale-to-zero-pod-retention-period` 0).
- Activation: at 0 replicas the activator buffers requests and pokes the autoscaler on any load, so any
  demand gives ceil(value / TargetValue) >= 1 replicas at once (ready counted as 1 for the rate bounds).
- No metric (a tick without telemetry): the metric client returns ErrNoData, the scale result is invalid
  and nothing changes: the policy holds, and no timer moves.
Not modelled (defaults off): `scale-down-delay` 0 s, `activation-scale` 1, the activator's
`target-burst-capacity` (routing only, not the count). Knob: target utilisation.
"""

from __future__ import annotations

import math

import numpy as np

from harmony.backtest.policies.base import Observation, Policy, PolicySetup
from harmony.backtest.policies.hpa import HPA

STABLE_WINDOW_S = 60.0  # stable-window
PANIC_WINDOW_PERCENTAGE = 10.0  # panic-window-percentage
PANIC_THRESHOLD_PERCENTAGE = 200.0  # panic-threshold-percentage
MAX_SCALE_UP_RATE = 1000.0  # max-scale-up-rate
MAX_SCALE_DOWN_RATE = 2.0  # max-scale-down-rate
SCALE_TO_ZERO_GRACE_PERIOD_S = 30.0  # scale-to-zero-grace-period
EVALUATION_PERIOD_S = 2.0  # the decider's tickInterval (not configurable)


def window_ticks(window_s: float, interval_s: float) -> int:
    """Telemetry ticks a window of `window_s` spans (at least the last one)."""
    return max(1, math.ceil(window_s / interval_s - 1e-9))


def pods_for(value: float, target: float) -> int:
    """ceil(value / target), the decider's desired pod count: any load at all asks for a pod."""
    ratio = value / target
    return max(math.ceil(ratio - 1e-9), 1) if ratio > 0 else 0


class KPA(Policy):
    name = "kpa"
    knob = "target_utilisation"
    default = 0.7
    sweep = HPA.sweep

    def __init__(self, value: float | None = None, stable_window_s: float = STABLE_WINDOW_S) -> None:
        super().__init__(value)
        self.stable_window_s = float(stable_window_s)

    def start(self, setup: PolicySetup) -> None:
        super().start(setup)
        self.stable_ticks = window_ticks(self.stable_window_s, setup.interval_s)
        self.panic_ticks = window_ticks(self.stable_window_s * PANIC_WINDOW_PERCENTAGE / 100.0, setup.interval_s)
        self.evaluations = max(1, round(setup.interval_s / EVALUATION_PERIOD_S))
        self.panic_since_s: float | None = None  # panicTime of the last evaluation over the threshold
        self.max_panic_pods = 0
        # the PA's Active condition: "active" (serving), "activating" (scaled from zero, no pod ready yet) or
        # "inactive" (activator in the path); it has served steadily before the evaluated span
        self.activity, self.activity_since_s = "active", -math.inf

    @property
    def panicking(self) -> bool:
        return self.panic_since_s is not None

    def decide(self, obs: Observation) -> int:
        if obs.missing:
            return self.hold(obs)  # ErrNoData: invalid scale result, nothing changes
        now_s = obs.tick * self.setup.interval_s
        desired = self.decider(obs, now_s)
        if obs.warm:
            # the warm decision on the training history sizes the steady state the run starts from; a
            # steady state has no surge in progress (the warm start's min replicas would look like one)
            self.panic_since_s, self.max_panic_pods = None, 0
        if self.setup.min_replicas == 0:
            desired = self.scale_to_zero_gate(desired, obs, now_s)
        return self.clamp(desired)

    def decider(self, obs: Observation, now_s: float) -> int:
        """autoscaler.go `Scale`: stable and panic counts, rate bounds, panic mode."""
        target = self.value * self.setup.capacity_per_replica  # TargetValue per replica
        history = obs.demand_history
        stable = float(np.nanmean(history[-self.stable_ticks:]))
        panic = float(np.nanmean(history[-self.panic_ticks:]))
        ready = max(1.0, float(obs.ready))  # the decider counts zero ready pods as one
        max_up = math.ceil(MAX_SCALE_UP_RATE * ready)
        max_down = math.floor(ready / MAX_SCALE_DOWN_RATE ** self.evaluations)
        dspc, dppc = pods_for(stable, target), pods_for(panic, target)
        desired_stable = min(max(dspc, max_down), max_up)
        desired_panic = min(max(dppc, max_down), max_up)

        over = dppc / ready >= PANIC_THRESHOLD_PERCENTAGE / 100.0
        if over:
            self.panic_since_s = now_s  # begin panicking, or extend the panic
        elif self.panicking and self.panic_since_s + self.stable_window_s < now_s:
            # the surge has made its way into the stable window: back to stable mode
            self.panic_since_s, self.max_panic_pods = None, 0
        if not self.panicking:
            return desired_stable
        # in panic mode only increases apply: a burst is not followed by a premature scale-down
        self.max_panic_pods = max(self.max_panic_pods, desired_stable, desired_panic)
        return self.max_panic_pods

    def scale_to_zero_gate(self, desired: int, obs: Observation, now_s: float) -> int:
        """scaler.go `handleScaleToZero` and the PA's Active condition (kpa.go), with min-scale 0."""
        if self.activity == "activating" and obs.ready > 0:
            self.activity, self.activity_since_s = "active", now_s  # the first pod is ready
        if desired > 0:
            if self.activity == "inactive":
                # traffic through the activator: a retained pod serves at once, else wait for one
                self.activity = "active" if obs.ready > 0 else "activating"
                self.activity_since_s = now_s
            return desired
        if self.activity == "activating":
            return obs.replicas  # no decision while activating (scaleUnknown)
        if self.activity == "active":
            # keep one replica; once active for the stable window, mark the PA inactive (activator in path)
            if now_s - self.activity_since_s >= self.stable_window_s:
                self.activity, self.activity_since_s = "inactive", now_s
            return 1
        if now_s - self.activity_since_s > SCALE_TO_ZERO_GRACE_PERIOD_S:
            return 0  # inactive and backed by the activator for the grace period: scale to zero
        return min(obs.replicas, 1)
