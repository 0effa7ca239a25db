"""Tick-by-tick replay of a demand trace against a policy (DESIGN.md, "Backtesting").

Timing, per tick t of the evaluated span:
  1. replicas requested at least `cold_start` ago become ready;
  2. demand D_t is served by the ready replicas: a breach if D_t > ready x capacity, the excess unserved;
  3. the policy sees telemetry up to and including t and sets the replica count;
  4. a scale-up adds replicas that become ready cold_start later (GPU pods take minutes to start);
     a scale-down is immediate, cancelling starting replicas first.
Cost counts every requested replica, starting or ready (a starting GPU pod holds its GPU). Before the first
evaluated tick each policy makes one decision on the training history, served warm (all ready), so every
policy starts from its own steady state.

A tick with missing demand (NaN: a telemetry gap longer than the fill limit) is unknown: neither a breach
nor a tick served, so it is left out of the breach rate, the unserved demand and the utilisation, and
counted in `unknown_ticks`; its replicas still cost GPU-hours. Policies see it as NaN and hold.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from harmony.backtest.policies.base import Observation, Policy, PolicySetup


@dataclass(frozen=True)
class SimulationResult:
    """Per-tick traces of the evaluated span and the summary metrics of one policy."""

    policy: str
    demand: np.ndarray  # [T]
    provisioned: np.ndarray  # [T] requested replicas during each tick (cost)
    ready: np.ndarray  # [T] ready replicas serving each tick
    capacity_per_replica: float
    interval_s: float
    decision_seconds: np.ndarray  # [T] time the policy took per decision

    @property
    def gpu_hours(self) -> float:
        """Replica-hours of provisioned replicas (one GPU per replica)."""
        return float(self.provisioned.sum() * self.interval_s / 3600.0)

    @property
    def observed(self) -> np.ndarray:
        """[T] True where demand is known; the other ticks are unknown (neither breach nor not)."""
        return np.isfinite(self.demand)

    @property
    def unknown_ticks(self) -> int:
        """Ticks of the evaluated span without demand (telemetry gaps): not judged, not in the breach rate."""
        return int((~self.observed).sum())

    @property
    def breaches(self) -> np.ndarray:
        """[T] True where demand exceeded ready capacity (missing demand is no breach and not counted)."""
        known = np.where(self.observed, self.demand, 0.0)
        return self.observed & (known > self.ready * self.capacity_per_replica + 1e-9)

    @property
    def breach_rate(self) -> float:
        return float(self.breaches.sum() / max(self.observed.sum(), 1))

    @property
    def unserved_fraction(self) -> float:
        d = np.where(self.observed, self.demand, 0.0)
        unserved = np.maximum(d - self.ready * self.capacity_per_replica, 0.0).sum()
        return float(unserved / max(d.sum(), 1e-12))

    @property
    def scaling_actions(self) -> int:
        return int((np.diff(self.provisioned) != 0).sum())

    @property
    def mean_utilisation(self) -> float:
        """Served demand over provisioned capacity on the known ticks: how much of what is paid for does work."""
        known = self.observed
        served = np.minimum(self.demand[known], self.ready[known] * self.capacity_per_replica).sum()
        paid = (self.provisioned[known] * self.capacity_per_replica).sum()
        return float(served / paid) if paid > 0 else 0.0

    def summary(self) -> dict:
        return {
            "policy": self.policy,
            "gpu_hours": self.gpu_hours,
            "breach_rate": self.breach_rate,
            "unserved_fraction": self.unserved_fraction,
            "scaling_actions": self.scaling_actions,
            "mean_utilisation": self.mean_utilisation,
            "unknown_ticks": self.unknown_ticks,
            "decision_ms_p50": float(np.median(self.decision_seconds) * 1000),
        }


class Fleet:
    """Requested replicas: those ready and those still starting (each with the tick it becomes ready)."""

    def __init__(self, ready: int) -> None:
        self.ready = ready
        self.starting: list[int] = []  # ready-at ticks, oldest request first

    @property
    def provisioned(self) -> int:
        return self.ready + len(self.starting)

    def advance(self, tick: int) -> None:
        done = [t for t in self.starting if t <= tick]
        self.ready += len(done)
        self.starting = [t for t in self.starting if t > tick]

    def scale_to(self, replicas: int, tick: int, cold_start_ticks: int) -> None:
        if replicas > self.provisioned:
            self.starting += [tick + cold_start_ticks] * (replicas - self.provisioned)
        elif replicas < self.provisioned:
            remove = self.provisioned - replicas
            cancel = min(remove, len(self.starting))
            if cancel:
                self.starting = self.starting[:-cancel]  # newest requests are cancelled first
            self.ready -= remove - cancel


def simulate(
    policy: Policy,
    demand: np.ndarray,
    first_tick: int,
    setup: PolicySetup,
    clock: Callable[[], float] | None = None,
) -> SimulationResult:
    """Replay demand[first_tick:] against `policy` (started here with `setup`)."""
    import time

    clock = clock or time.perf_counter
    if not 0 < first_tick < len(demand):
        raise ValueError(f"first_tick {first_tick} must lie inside the trace of {len(demand)} ticks")
    policy.start(setup)
    cold = setup.cold_start_ticks
    warm = Observation(first_tick - 1, demand[:first_tick], setup.min_replicas, setup.min_replicas)
    fleet = Fleet(ready=policy.decide(warm))  # warm start: the initial count is ready
    n = len(demand) - first_tick
    provisioned, ready, seconds = np.zeros(n, int), np.zeros(n, int), np.zeros(n)
    for k, tick in enumerate(range(first_tick, len(demand))):
        fleet.advance(tick)
        provisioned[k], ready[k] = fleet.provisioned, fleet.ready
        d = demand[tick]
        breached = bool(not math.isnan(d) and d > fleet.ready * setup.capacity_per_replica + 1e-9)
        obs = Observation(tick, demand[:tick + 1], fleet.provisioned, fleet.ready, breached)
        started = clock()
        target = policy.decide(obs)
        seconds[k] = clock() - started
        fleet.scale_to(target, tick, cold)
    return SimulationResult(policy.label, demand[first_tick:].copy(), provisioned, ready,
                            setup.capacity_per_replica, setup.interval_s, seconds)
