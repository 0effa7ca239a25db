"""The policy interface every autoscaler in a backtest implements (KEDA's small Scaler interface, in spirit).

`start(setup)` once with what a policy may know before the evaluated span; `decide(observation)` once per
tick with only the past, returning the replica count to set. One knob per policy (its own sensitivity
parameter) is what a sweep varies to trace the policy's cost/breach curve.

A tick whose demand is missing (NaN: a gap in the telemetry longer than the fill limit) never raises: a
policy that reads the current tick holds the count in force (`Policy.hold`), as its original does when its
metric query returns nothing.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from harmony.errors import HarmonyInputError

if TYPE_CHECKING:
    from harmony.backtest.forecasts import ReplayForecasts


@dataclass(frozen=True)
class PolicySetup:
    """What a policy knows before the evaluated span.

    train_demand: demand over the training rows (before the evaluated span), in demand units.
    capacity_per_replica: demand one ready replica serves. interval_s: tick length. cold_start_s: delay
    before a requested replica is ready. sla: target breach rate. forecaster: the operator's forecasts replayed
    (policies that forecast use it). future_demand: demand from the first evaluated tick on, given ONLY
    to the oracle (perfect foresight, the lower bound).
    """

    train_demand: np.ndarray
    capacity_per_replica: float
    interval_s: float
    cold_start_s: float
    min_replicas: int
    max_replicas: int
    sla: float
    forecaster: ReplayForecasts | None = None
    future_demand: np.ndarray | None = None
    first_tick: int = 0

    @property
    def cold_start_ticks(self) -> int:
        return math.ceil(self.cold_start_s / self.interval_s)

    @property
    def horizon(self) -> int:
        """Forecast steps a decision must cover: the cold-start lead time plus one control interval."""
        return self.cold_start_ticks + 1


@dataclass(frozen=True)
class Observation:
    """One tick as the policy sees it after the tick's telemetry arrived.

    tick: row index in the dataset. demand_history: demand of every row up to and including `tick`.
    replicas: provisioned (requested) replicas; ready: those serving. breached: demand at `tick` exceeded
    ready capacity (None before the first evaluated tick).
    """

    tick: int
    demand_history: np.ndarray
    replicas: int
    ready: int
    breached: bool | None = None

    @property
    def demand(self) -> float:
        return float(self.demand_history[-1])

    @property
    def warm(self) -> bool:
        """The simulator's warm decision on the training history (no evaluated tick yet): it sizes the
        steady state the run starts from, served warm."""
        return self.breached is None

    @property
    def missing(self) -> bool:
        """No usable demand at this tick (NaN or infinite): the policy's metric is unavailable."""
        return not math.isfinite(self.demand)


class Policy(ABC):
    """An autoscaling policy. Subclasses set `name`, `knob` (the swept parameter), `default` and `sweep`."""

    name: str = "policy"
    knob: str = ""
    default: float = 0.0
    sweep: tuple[float, ...] = ()
    needs_forecaster: bool = False
    needs_future: bool = False

    def __init__(self, value: float | None = None) -> None:
        self.value = self.default if value is None else float(value)
        self.setup: PolicySetup | None = None

    @property
    def label(self) -> str:
        return f"{self.name}({self.knob}={self.value:g})" if self.knob else self.name

    def start(self, setup: PolicySetup) -> None:
        self.setup = setup

    @abstractmethod
    def decide(self, obs: Observation) -> int:
        """Replicas to set after this tick."""

    def clamp(self, replicas: float) -> int:
        return int(np.clip(replicas, self.setup.min_replicas, self.setup.max_replicas))

    def hold(self, obs: Observation) -> int:
        """The count in force, kept on a tick without telemetry (never scale on data one does not have)."""
        return self.clamp(obs.replicas)


def require_forecaster(setup: PolicySetup, name: str) -> ReplayForecasts:
    if setup.forecaster is None:
        raise HarmonyInputError(f"policy {name!r} needs a forecaster (--model)")
    return setup.forecaster
