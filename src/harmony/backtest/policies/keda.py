"""KEDA ScaledObject with a prometheus trigger (scalers/prometheus_scaler.go, scaling/executor semantics).

Two actors, as in a cluster:
- The HPA that KEDA creates does 1 <-> N. KEDA serves the query as an External metric with target type
  AverageValue `threshold` per replica, so the HPA's External-per-pod calculator applies
  (`hpa.per_pod_replicas`: ratio over the scale's replicas, desired = ceil(value / threshold), 10%
  tolerance), then its behavior defaults (`hpa.Behavior`: 300 s scale-down stabilisation, max(+100%, +4)
  per 15 s up). The HPA's minReplicas is max(minReplicaCount, 1). The HPA syncs every 15 s and KEDA's
  metrics server queries the scaler on each HPA request, so at 1-minute ticks it reads every tick's value.
- KEDA itself does 0 <-> 1, only with minReplicaCount 0 (setup.min_replicas == 0; otherwise the HPA does
  everything and the code below is the HPA's alone). Every pollingInterval (30 s default; at 1-minute
  ticks every tick) it asks the scaler whether it is active: value > activationThreshold (the metric value
  at or below which the workload counts as inactive; 0 by default). Active at 0 replicas: it scales to 1
  (scaleFromZeroOrIdle) and updates lastActiveTime; the HPA's next sync (15 s later, inside the same
  1-minute tick) takes 1 to N. Active above 0: lastActiveTime = now. Inactive above 0: once
  lastActiveTime + cooldownPeriod (300 s default) < now it scales to 0 (scaleToZeroOrIdle, strict
  `Before`), whatever the HPA had; at 0 replicas the HPA is disabled (it does not scale a target from 0).
- No value (a tick without telemetry): the scaler errors; with no fallback configured KEDA neither
  activates nor deactivates (RequestScale's `isError` case keeps the count) and the HPA gets no metric
  (FailedGetExternalMetric) and keeps the count too: the policy holds, and the tick is not an active one.
Knob: threshold per replica, as a fraction of a replica's capacity.
"""

from __future__ import annotations

import math

from harmony.backtest.policies.base import Observation, PolicySetup
from harmony.backtest.policies.hpa import HPA, per_pod_replicas

#: ScaledObject defaults (keda.sh/v1alpha1): pollingInterval 30 s, cooldownPeriod 300 s; the prometheus
#: trigger's activationThreshold 0.
POLLING_INTERVAL_S = 30.0
COOLDOWN_S = 300.0
ACTIVATION_THRESHOLD = 0.0


class KEDA(HPA):
    name = "keda"
    knob = "threshold_fraction"
    default = 0.7
    sweep = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

    def __init__(self, value: float | None = None, activation_threshold: float = ACTIVATION_THRESHOLD,
                 cooldown_s: float = COOLDOWN_S, polling_interval_s: float = POLLING_INTERVAL_S) -> None:
        super().__init__(value)
        self.activation_threshold = float(activation_threshold)
        self.cooldown_s = float(cooldown_s)
        self.polling_interval_s = float(polling_interval_s)

    def start(self, setup: PolicySetup) -> None:
        super().start(setup)
        self.poll_every = max(1, math.ceil(self.polling_interval_s / setup.interval_s - 1e-9))
        self.polled = False
        self.active = False  # the scaler's answer at the last poll
        self.last_active_tick: int | None = None  # lastActiveTime (None: never active since the start)

    def decide(self, obs: Observation) -> int:
        if obs.missing:
            return self.hold(obs)  # the scaler errors: neither KEDA nor its HPA changes the count
        if self.setup.min_replicas > 0:
            return self.hpa_sync(obs.demand, obs.replicas, obs)  # minReplicaCount >= 1: the HPA does all scaling
        if not self.polled or obs.tick % self.poll_every == 0:
            self.polled, self.active = True, obs.demand > self.activation_threshold
        if self.active:
            self.last_active_tick = obs.tick
        if obs.replicas == 0:
            # activation: KEDA sets 1, the HPA's next sync (within this tick) takes 1 -> N; else stay at 0
            return self.hpa_sync(obs.demand, 1, obs) if self.active else 0
        if not self.active and self.cooled_down(obs.tick):
            return 0  # KEDA deactivates the workload: scale to zero after the cooldown period
        return self.hpa_sync(obs.demand, obs.replicas, obs)

    def cooled_down(self, tick: int) -> bool:
        """lastActiveTime + cooldownPeriod < now (a workload never active since the start has no cooldown)."""
        if self.last_active_tick is None:
            return True
        return (tick - self.last_active_tick) * self.setup.interval_s > self.cooldown_s

    def hpa_sync(self, value: float, current: int, obs: Observation) -> int:
        """One sync of KEDA's HPA on the External metric: per-pod calculator, behavior, minReplicas >= 1."""
        threshold = self.value * self.setup.capacity_per_replica
        desired = self.behavior.apply(per_pod_replicas(value, threshold, current), current, warm=obs.warm)
        return self.clamp(max(desired, 1))
