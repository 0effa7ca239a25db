"""Kubernetes HorizontalPodAutoscaler (autoscaling/v2), resource-utilisation target.

Faithful to the controller's algorithm (pkg/controller/podautoscaler, replica_calculator.go):
- ratio = utilisation / target over ready pods, utilisation = demand / (ready x capacity);
  desired = ceil(ratio x ready).
- Tolerance: |ratio - 1| <= 0.1 changes nothing.
- Unready (starting) pods count as 0% utilisation when scaling up; if that flips the direction or lands
  within tolerance, nothing changes (this stops repeated scale-ups while pods start).
- Scale-down stabilisation: the recommendation is the highest of the last 300 s.
- Default scale-up policies: per 15 s period, add at most max(100%, 4 pods). The controller syncs every
  15 s; one tick of telemetry gives one new metric value, and the unready-pod rule blocks further
  scale-ups on the same value, so one rate-limited step per tick is what the HPA does here.
Knob: target utilisation.
"""

from __future__ import annotations

import math
from collections import deque

from harmony.backtest.policies.base import Observation, Policy, PolicySetup

TOLERANCE = 0.1
STABILISATION_S = 300.0


def rate_limited_up(current: int, desired: int) -> int:
    """Default HPA scale-up policies: max(+100%, +4 pods) per period."""
    return min(desired, max(2 * current, current + 4))


class HPA(Policy):
    name = "hpa"
    knob = "target_utilisation"
    default = 0.7
    sweep = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

    def start(self, setup: PolicySetup) -> None:
        super().start(setup)
        window = max(1, math.ceil(STABILISATION_S / setup.interval_s))
        self.recommendations: deque[int] = deque(maxlen=window)

    def recommend(self, usage_total: float, obs: Observation, per_pod_target: float) -> int:
        """The replica calculator for a total usage and a per-pod target (same units)."""
        current = obs.replicas
        ready = max(obs.ready, 0)
        unready = max(current - ready, 0)
        if ready == 0:
            # nothing serving: the HPA scales towards the usage, no ratio to take
            return max(math.ceil(usage_total / per_pod_target), current)
        ratio = usage_total / (ready * per_pod_target)
        if abs(ratio - 1.0) <= TOLERANCE:
            return current
        if ratio > 1.0 and unready > 0:
            # unready pods count as 0% usage for a scale-up
            ratio_all = usage_total / ((ready + unready) * per_pod_target)
            if ratio_all <= 1.0 + TOLERANCE:
                return current
            return math.ceil(ratio_all * (ready + unready))
        return math.ceil(ratio * ready)

    def decide(self, obs: Observation) -> int:
        setup = self.setup
        return self.clamp(self.behave(self.recommend(obs.demand, obs, self.value * setup.capacity_per_replica), obs))

    def behave(self, desired: int, obs: Observation) -> int:
        """The HPA's behavior section: scale-down stabilisation, then the scale-up rate limit."""
        self.recommendations.append(desired)
        if desired < obs.replicas:
            return min(max(self.recommendations), obs.replicas)  # highest recommendation of the window
        if desired > obs.replicas:
            return rate_limited_up(obs.replicas, desired)
        return desired
