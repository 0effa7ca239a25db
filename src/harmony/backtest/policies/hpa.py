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
- No metric (a tick without telemetry): the controller cannot compute a proposal (ScalingActive False,
  FailedGetResourceMetric), records no recommendation and leaves the scale alone.
Knob: target utilisation.

The rules shared with the HPA-driven baselines live here once: `within_tolerance`, `per_pod_replicas`
(the calculator of External and Object metrics with an AverageValue target, used by keda and
harmony-via-hpa) and `Behavior` (stabilisation window and scale-up policies).
"""

from __future__ import annotations

import math
from collections import deque

from harmony.backtest.policies.base import Observation, Policy, PolicySetup

TOLERANCE = 0.1
STABILISATION_S = 300.0


def within_tolerance(ratio: float) -> bool:
    """The HPA's tolerance band (`--horizontal-pod-autoscaler-tolerance`, 0.1): a usage ratio this close to
    1 changes nothing, so metric noise does not flap the count. Same float test as the controller's
    `math.Abs(1.0-usageRatio) > c.tolerance`."""
    return abs(1.0 - ratio) <= TOLERANCE


def per_pod_replicas(usage_total: float, target_per_pod: float, current: int) -> int:
    """GetExternalPerPodMetricReplicas / GetObjectPerPodMetricReplicas: an External or Object metric with an
    AverageValue target. ratio = usage / (target x current), current being the scale's status replicas
    (every pod, ready or not); outside the tolerance desired = ceil(usage / target), whatever `current` is."""
    if current > 0 and within_tolerance(usage_total / (target_per_pod * current)):
        return current
    return math.ceil(usage_total / target_per_pod - 1e-9)


def rate_limited_up(current: int, desired: int) -> int:
    """Default HPA scale-up policies: max(+100%, +4 pods) per period."""
    return min(desired, max(2 * current, current + 4))


class Behavior:
    """The HPA's `behavior` at its defaults, for one HPA (it keeps the recommendations of the window).

    Scale-down: stabilizationWindowSeconds 300, the count is the highest recommendation of the window
    (stabilizeRecommendationWithBehaviors); scale-down policy 100% per 15 s, so no further limit.
    Scale-up: stabilizationWindowSeconds 0; policies max(100%, 4 pods) per 15 s (selectPolicy Max).
    """

    def __init__(self, interval_s: float, stabilisation_s: float = STABILISATION_S) -> None:
        # recommendations newer than now - window: the current one and those of the ticks before it
        window = max(1, math.ceil(stabilisation_s / interval_s - 1e-9))
        self.recommendations: deque[int] = deque(maxlen=window)

    def apply(self, desired: int, current: int, warm: bool = False) -> int:
        """The count the HPA sets for the replica calculator's `desired` with `current` in force.

        warm: the simulator's warm decision on the training history, which sizes the steady state the run
        starts from. An HPA that has been running on the workload sits at its recommendation, so neither
        the rate limit nor the window applies to it (from min replicas, max(+100%, +4) would start every
        HPA-driven policy several replicas short: breaches that belong to no policy)."""
        self.recommendations.append(desired)
        if warm:
            return desired
        if desired < current:
            return min(max(self.recommendations), current)  # highest recommendation of the window
        if desired > current:
            return rate_limited_up(current, desired)
        return desired


class HPA(Policy):
    name = "hpa"
    knob = "target_utilisation"
    default = 0.7
    sweep = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

    def start(self, setup: PolicySetup) -> None:
        super().start(setup)
        self.behavior = Behavior(setup.interval_s)

    @property
    def recommendations(self) -> deque[int]:
        return self.behavior.recommendations

    def recommend(self, usage_total: float, obs: Observation, per_pod_target: float) -> int:
        """The replica calculator for a total usage and a per-pod target (same units)."""
        current = obs.replicas
        ready = max(obs.ready, 0)
        unready = max(current - ready, 0)
        if ready == 0:
            # nothing serving: the HPA scales towards the usage, no ratio to take
            return max(math.ceil(usage_total / per_pod_target), current)
        ratio = usage_total / (ready * per_pod_target)
        if within_tolerance(ratio):
            return current
        if ratio > 1.0 and unready > 0:
            # unready pods count as 0% usage for a scale-up
            ratio_all = usage_total / ((ready + unready) * per_pod_target)
            if ratio_all <= 1.0 + TOLERANCE:
                return current
            return math.ceil(ratio_all * (ready + unready))
        return math.ceil(ratio * ready)

    def decide(self, obs: Observation) -> int:
        if obs.missing:
            return self.hold(obs)  # no metric: no proposal, no recommendation recorded, the scale is left alone
        setup = self.setup
        return self.clamp(self.behave(self.recommend(obs.demand, obs, self.value * setup.capacity_per_replica), obs))

    def behave(self, desired: int, obs: Observation) -> int:
        """The HPA's behavior section: scale-down stabilisation, then the scale-up rate limit."""
        return self.behavior.apply(desired, obs.replicas, warm=obs.warm)
