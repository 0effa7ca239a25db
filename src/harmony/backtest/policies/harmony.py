"""harmony: forecast the demand distribution, then choose the cheapest SLA-safe count (harmony.decision.decide).

Per tick: demand samples over the cold-start horizon from the forecaster, capacity samples from the
Normal-Inverse-Gamma posterior, the effective risk level from the Beta posterior of the realised breach
rate, then `decide` with its conservative rules (scale-down stabilisation, bounded steps, hold on stale
telemetry). A scale-up is sized on the steps from the end of the cold start on (a replica requested now
serves no earlier); a scale-down must be safe over the whole horizon. After each tick the posteriors learn:
a breach or not, and, when demand saturated the ready replicas, the capacity they delivered. Knob: the
target breach probability (epsilon).
"""

from __future__ import annotations

import math

import numpy as np

from harmony.backtest.policies.base import Observation, Policy, PolicySetup, require_forecaster
from harmony.decision.decide import DecisionSettings, decide
from harmony.decision.posteriors import BreachPosterior, CapacityPosterior

STABILISATION_S = 300.0


class Harmony(Policy):
    name = "harmony"
    knob = "epsilon"
    default = 0.01
    sweep = tuple(float(v) for v in np.round(np.geomspace(0.002, 0.2, 21), 4))
    needs_forecaster = True

    def __init__(self, value: float | None = None, capacity_prior: CapacityPosterior | None = None,
                 adapt_risk: bool = True, seed: int = 0) -> None:
        super().__init__(value)
        self.capacity_prior = capacity_prior
        self.adapt_risk = adapt_risk
        self.seed = seed

    def start(self, setup: PolicySetup) -> None:
        super().start(setup)
        self.capacity = self.capacity_prior or CapacityPosterior.prior(setup.capacity_per_replica, relative_sd=0.02)
        self.breaches = BreachPosterior.prior(self.value)
        self.settings = DecisionSettings(
            min_replicas=setup.min_replicas,
            max_replicas=setup.max_replicas,
            stabilisation_steps=max(1, math.ceil(STABILISATION_S / setup.interval_s)),
            interval_s=setup.interval_s,
            lead_steps=max(setup.cold_start_ticks - 1, 0),  # sample step 0 is the next tick
        )
        self.recent: np.ndarray | None = None
        self.rng = np.random.default_rng(self.seed)
        self.last_decision = None

    def learn(self, obs: Observation) -> None:
        if obs.breached is None:
            return
        self.breaches = self.breaches.update(np.array([float(obs.breached)]))
        if obs.breached and obs.ready > 0:
            # demand exceeded what the ready replicas serve: at the SLA boundary they delivered capacity c each
            served_per_replica = min(obs.demand, obs.ready * self.setup.capacity_per_replica) / obs.ready
            self.capacity = self.capacity.update(np.array([[served_per_replica]]))

    def decide(self, obs: Observation) -> int:
        self.learn(obs)
        samples = require_forecaster(self.setup, self.name).demand_samples(obs.tick)
        stale = samples is None
        if stale:
            samples = np.full((2, self.setup.horizon), np.nan)
        capacity = self.capacity.sample_mean(samples.shape[0], self.rng)
        risk = self.breaches.effective_risk(self.value) if self.adapt_risk else np.array([self.value])
        decision, self.recent = decide(samples[None], capacity, np.array([obs.replicas]), risk, self.settings,
                                       self.recent, np.array([stale]))
        self.last_decision = decision
        return int(decision.replicas[0])
