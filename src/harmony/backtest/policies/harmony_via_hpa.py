"""harmony through the HPA: the operator's Recommend mode, with an autoscaling/v2 HPA as the only writer.

In a cluster (docs/operator.md, deploy/examples/hpa-external-metric.yaml): the operator runs its control
step every interval and exports `harmony_recommended_replicas` (the step's risk-optimal target before its
own step and stabilisation rules, `StepResult.target`); Prometheus scrapes it, prometheus-adapter serves
it as an External metric, and the HPA targets AverageValue 1 per replica. So the HPA applies its own
algorithm to harmony's count:
- External per-pod calculator (`hpa.per_pod_replicas`): ratio = recommended / current replicas; within the
  10% tolerance nothing changes (above 10 replicas a +-1 recommendation is ignored), else desired =
  the recommendation. (Target type Value would compute ceil(ready x recommended), not the count.)
- Behavior at the example's settings, which are the defaults (`hpa.Behavior`): scale-down stabilisation
  300 s (the highest recommendation of the window), scale-up max(+100%, +4 pods) per 15 s.
- The sync period is 15 s, so at 1-minute ticks the HPA acts every tick on the latest value it can read.
- The metric reaches the HPA one Prometheus round trip late (the scrape interval, then the adapter's
  query): `metric_delay_ticks` ticks, one by default.
- A tick without telemetry: a gap in the trace is a gap in Prometheus, and the HPA reads harmony's
  metric through the same Prometheus, so it gets no metric (FailedGetExternalMetric) and holds. The
  operator still reconciles (its step holds on stale telemetry and its state moves on).
The operator's step is the harmony policy's (`harmony.backtest.policies.harmony.Harmony`), unchanged; its
own count (the Scale-mode count) is discarded, as Recommend mode never writes the scale. Knob: the
target breach probability (epsilon), as for harmony.
"""

from __future__ import annotations

from collections import deque

from harmony.backtest.policies.base import Observation, Policy, PolicySetup
from harmony.backtest.policies.harmony import Harmony
from harmony.backtest.policies.hpa import Behavior, per_pod_replicas
from harmony.decision.posteriors import CapacityPosterior

#: Ticks from the operator's export to the HPA's read (scrape interval + adapter), at 1-minute telemetry.
METRIC_DELAY_TICKS = 1


class HarmonyViaHPA(Policy):
    name = "harmony-via-hpa"
    knob = Harmony.knob
    default = Harmony.default
    sweep = Harmony.sweep
    needs_forecaster = True

    def __init__(self, value: float | None = None, capacity_prior: CapacityPosterior | None = None,
                 metric_delay_ticks: int = METRIC_DELAY_TICKS) -> None:
        super().__init__(value)
        if metric_delay_ticks < 0:
            raise ValueError(f"metric_delay_ticks must be >= 0, got {metric_delay_ticks}")
        self.capacity_prior = capacity_prior
        self.metric_delay_ticks = int(metric_delay_ticks)

    def start(self, setup: PolicySetup) -> None:
        super().start(setup)
        self.operator = Harmony(self.value)  # the operator's step, exactly as the harmony policy runs it
        if self.capacity_prior is not None:
            self.operator.capacity_prior = self.capacity_prior
        self.operator.start(setup)
        self.behavior = Behavior(setup.interval_s)
        self.exported: deque[int] = deque(maxlen=self.metric_delay_ticks + 1)  # recommendations, oldest first

    def recommend(self, obs: Observation) -> int:
        """The operator's step on this tick: the `harmony_recommended_replicas` value it exports."""
        self.operator.decide(obs)
        return self.operator.last.target

    def decide(self, obs: Observation) -> int:
        recommended = self.recommend(obs)
        if not self.exported:
            # warm start: the metric has read this value for as long as the delay (a steady state)
            self.exported.extend([recommended] * self.metric_delay_ticks)
        self.exported.append(recommended)
        if obs.missing:
            return self.hold(obs)  # no metric through Prometheus: the HPA leaves the scale alone
        seen = self.exported[0]  # what the HPA reads now: exported metric_delay_ticks ago
        desired = per_pod_replicas(float(seen), 1.0, obs.replicas)
        return self.clamp(max(self.behavior.apply(desired, obs.replicas, warm=obs.warm), 1))
