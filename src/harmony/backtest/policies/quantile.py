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
        if obs.missing:
            return self.hold(obs)  # missing telemetry: hold, as harmony's stale rule does
        samples = require_forecaster(self.setup, self.name).demand_samples(obs.tick)
        if samples is None:
            return self.hold(obs)  # no forecast: hold
        peak = float(np.quantile(samples.max(axis=1), self.value))
        if not math.isfinite(peak):
            return self.hold(obs)  # a forecast with missing values: hold
        return self.clamp(math.ceil(peak / self.setup.capacity_per_replica))
