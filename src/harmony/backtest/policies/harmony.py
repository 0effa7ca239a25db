"""harmony: the operator's control step (`harmony.decision.step`), replayed tick by tick.

Per tick the forecaster adapter forecasts demand over the cold-start horizon from the telemetry window the
operator would read at that tick (`harmony.backtest.forecasts`), and `step` learns from the tick just observed, then
picks the cheapest count whose breach probability is within the effective risk level. Nothing here decides:
the policy only translates the simulator's observation into the step's and keeps the state. Knob: the
target breach probability (epsilon). `behavior`: the CRD's spec.behavior (None: the HPA's defaults, as the
operator's).
"""

from __future__ import annotations

import numpy as np

from harmony.backtest.policies.base import Observation, Policy, PolicySetup, require_forecaster
from harmony.decision import step as control
from harmony.decision.behavior import Behavior
from harmony.decision.posteriors import CapacityPosterior


class Harmony(Policy):
    name = "harmony"
    knob = "epsilon"
    default = 0.01
    sweep = tuple(float(v) for v in np.round(np.geomspace(0.002, 0.2, 21), 4))
    needs_forecaster = True

    def __init__(self, value: float | None = None, capacity_prior: CapacityPosterior | None = None,
                 adapt_risk: bool = True, seed: int = 0, behavior: Behavior | None = None) -> None:
        super().__init__(value)
        self.capacity_prior = capacity_prior
        self.behavior = behavior
        self.adapt_risk = adapt_risk
        self.seed = seed

    def start(self, setup: PolicySetup) -> None:
        super().start(setup)
        self.settings = control.ControlSettings.build(
            sla=self.value, interval_s=setup.interval_s, cold_start_s=setup.cold_start_s,
            min_replicas=setup.min_replicas, max_replicas=setup.max_replicas, adapt_risk=self.adapt_risk,
            behavior=self.behavior)
        self.state = control.ControllerState.fresh(setup.capacity_per_replica, self.value)
        if self.capacity_prior is not None:
            self.state = control.ControllerState(self.capacity_prior, self.state.breaches)
        self.last: control.StepResult | None = None

    def decide(self, obs: Observation) -> int:
        samples = require_forecaster(self.setup, self.name).demand_samples(obs.tick)
        seen = control.Observation(obs.demand, obs.replicas, obs.ready)
        self.last = control.step(self.state, samples, seen, self.settings,
                                 control.step_rng(self.seed, self.state.decisions))
        self.state = self.last.state
        return self.last.replicas
