"""KEDA ScaledObject with a prometheus trigger (scalers/prometheus_scaler.go semantics).

KEDA polls the query every `pollingInterval` (30 s) and exposes it to an HPA as an External metric of
type AverageValue with `threshold` per replica: desired = ceil(value / threshold), with the HPA's 10%
tolerance, 300 s scale-down stabilisation and default scale-up policies. KEDA itself only handles 0 <-> 1:
it activates above `activationThreshold` and scales to `minReplicaCount` 0 after `cooldownPeriod` (300 s)
without activity. Knob: threshold per replica, as a fraction of a replica's capacity.
"""

from __future__ import annotations

import math

from harmony.backtest.policies.base import Observation, PolicySetup
from harmony.backtest.policies.hpa import HPA

POLLING_INTERVAL_S = 30.0
COOLDOWN_S = 300.0
ACTIVATION_THRESHOLD = 0.0


class KEDA(HPA):
    name = "keda"
    knob = "threshold_fraction"
    default = 0.7
    sweep = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

    def start(self, setup: PolicySetup) -> None:
        super().start(setup)
        self.poll_every = max(1, math.ceil(POLLING_INTERVAL_S / setup.interval_s))
        self.cooldown_ticks = max(1, math.ceil(COOLDOWN_S / setup.interval_s))
        self.last_value: float | None = None
        self.last_active_tick: int | None = None

    def decide(self, obs: Observation) -> int:
        setup = self.setup
        if self.last_value is None or obs.tick % self.poll_every == 0:
            self.last_value = obs.demand  # the metric as of the last poll
        value = self.last_value
        if value > ACTIVATION_THRESHOLD:
            self.last_active_tick = obs.tick
        inactive_for = math.inf if self.last_active_tick is None else obs.tick - self.last_active_tick
        if setup.min_replicas == 0 and inactive_for >= self.cooldown_ticks:
            return 0  # KEDA deactivates the workload after the cooldown period
        threshold = self.value * setup.capacity_per_replica
        if obs.replicas == 0:
            return self.clamp(max(1, math.ceil(value / threshold)))  # activation: 0 -> n via the HPA's first sync
        # AverageValue target: usage per pod = value / current; the HPA's replica calculator does the rest.
        return self.clamp(max(self.behave(self.recommend(value, obs, threshold), obs), 1))
