"""A fixed forecast quantile of peak demand over the cold-start horizon, no Bayesian adaptation.

The ablation of harmony's decision stage: the same forecasts, but a fixed quantile, a known capacity, no
risk adaptation and no stabilisation. Knob: the quantile.
"""

from __future__ import annotations

import math

import numpy as np

from harmony.backtest.policies.base import Observation, Policy, require_forecaster


class Quantile(Policy):
    name = "quantile"
    knob = "quantile"
    default = 0.99
    sweep = tuple(sorted({0.99, *(float(v) for v in np.round(1 - np.geomspace(0.001, 0.5, 21), 4))}))
    needs_forecaster = True

    def decide(self, obs: Observation) -> int:
        samples = require_forecaster(self.setup, self.name).demand_samples(obs.tick)
        if samples is None:
            return obs.replicas  # hold on missing data
        peak = float(np.quantile(samples.max(axis=1), self.value))
        return self.clamp(math.ceil(peak / self.setup.capacity_per_replica))
