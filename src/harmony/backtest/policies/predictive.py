"""Point-forecast predictive scaling with headroom, in the manner of AWS predictive scaling.

The forecast (the model's point forecast of peak demand over the cold-start horizon, times a headroom)
only ever raises capacity; scale-in comes from a reactive target-tracking companion at the same
headroom (AWS: "predictive scaling does not scale in; pair it with dynamic scaling"). Knob: headroom.
"""

from __future__ import annotations

import math

from harmony.backtest.policies.base import Observation, Policy, require_forecaster


class Predictive(Policy):
    name = "predictive"
    knob = "headroom"
    default = 1.2
    sweep = (1.0, 1.1, 1.2, 1.3, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0)
    needs_forecaster = True

    def decide(self, obs: Observation) -> int:
        if obs.missing:
            return self.hold(obs)  # no current demand: target tracking has no metric, and scale-in needs it
        setup = self.setup
        cap = setup.capacity_per_replica
        reactive = math.ceil(obs.demand * self.value / cap)  # target tracking on current demand
        samples = require_forecaster(setup, self.name).demand_samples(obs.tick)
        # point forecast of the peak over the horizon
        forecast_peak = float(samples.mean(axis=0).max()) if samples is not None else math.nan
        if not math.isfinite(forecast_peak):
            return self.clamp(max(reactive, obs.replicas))  # no forecast: never scale in on missing data
        return self.clamp(max(reactive, math.ceil(forecast_peak * self.value / cap)))
