"""Static peak provisioning: the training history's peak demand times a headroom, never changed.

What an over-provisioned GPU fleet does today (the GenTD26 trace: ~109 pods for ~10 GPUs busy).
It reads no telemetry after the start, so a tick without telemetry changes nothing. Knob: headroom.
"""

from __future__ import annotations

import math

import numpy as np

from harmony.backtest.policies.base import Observation, Policy, PolicySetup


class Static(Policy):
    name = "static"
    knob = "headroom"
    default = 1.0
    sweep = (0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5)

    def start(self, setup: PolicySetup) -> None:
        super().start(setup)
        finite = np.asarray(setup.train_demand, dtype=float)
        finite = finite[np.isfinite(finite)]
        peak = float(finite.max()) if finite.size else 0.0  # no training demand at all: the fewest replicas
        self.replicas = self.clamp(math.ceil(peak * self.value / setup.capacity_per_replica))

    def decide(self, obs: Observation) -> int:
        return self.replicas
