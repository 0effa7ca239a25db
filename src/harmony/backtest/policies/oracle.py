"""Perfect foresight: the lower bound on replica-hours with no breach.

Knowing the future demand, it requests at tick t what the next cold-start window needs at most:
desired(t) = max over s in (t, t + cold_start] of ceil(D_s / c). Replicas requested at t are ready at
t + cold_start, and a scale-down at t never undercuts a need before then, so ready capacity always covers
demand once the run has warmed up.

It never reads the current tick, so a tick without telemetry changes nothing (holding there would make
the lower bound breach after every gap); a future window without any observed demand holds the count.
"""

from __future__ import annotations

import math

import numpy as np

from harmony.backtest.policies.base import Observation, Policy


class Oracle(Policy):
    name = "oracle"
    needs_future = True

    def decide(self, obs: Observation) -> int:
        setup = self.setup
        start = obs.tick + 1 - setup.first_tick  # first future row, relative to future_demand
        window = setup.future_demand[max(start, 0):max(start, 0) + setup.cold_start_ticks]
        known = window[np.isfinite(window)]
        if known.size == 0:
            return self.hold(obs)  # nothing known ahead (the end of the trace, or a gap): hold
        return self.clamp(math.ceil(float(known.max()) / setup.capacity_per_replica - 1e-9))
