"""The control step: one function from (state, demand samples, observation, settings, rng) to (decision, state).

The backtest's harmony policy and the operator's reconcile both call `step`, so a backtest figure describes
the loop the operator runs: the same learning rule, the same stale-telemetry rule, the same sizing.

Per decision:
  1. learn from the tick just observed (`learn`): a breach or not, judged as the SLA counts it (observed
     demand above READY replicas x the capacity believed per replica), updates the breach-rate posterior;
     a learned capacity (none declared) moves up when the ready replicas evidently served more per replica
     than believed. Nothing is learned before the first decision (no count of ours was in force) nor from
     missing demand.
  2. decide (`harmony.decision.decide.decide`): capacity samples from the Normal-Inverse-Gamma posterior, the
     effective risk level from the Beta posterior of the realised breach rate, and the conservative rules.
     No demand samples (telemetry missing or stale, or the forecast failed) hold the current count.
  3. the new state: the posteriors, the stabilisation window's recent targets and the decision count.

Pure: arrays and dataclasses in and out, no clock, no I/O; the caller passes the random generator
(`step_rng` derives it from a seed and the decision count, so a restarted operator draws what an
uninterrupted one would have).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harmony.decision.decide import Decision, DecisionSettings, decide
from harmony.decision.posteriors import BreachPosterior, CapacityPosterior

#: The HPA's default scale-down stabilisation window, shared by the backtest and the operator.
DEFAULT_STABILISATION_S = 300.0
#: Prior spread of a declared capacity per replica, relative to it (a declared figure is trusted).
DECLARED_CAPACITY_RELATIVE_SD = 0.05
#: Prior spread of a learned capacity's first guess, relative to it (a guess from the fleet's peak).
LEARNED_CAPACITY_RELATIVE_SD = 0.5


@dataclass(frozen=True)
class ControlSettings:
    """What one workload's control step needs besides its state.

    decision: bounds, steps, costs, stabilisation window and lead steps for `decide`.
    sla: the target breach rate (the share of ticks with demand above ready capacity), epsilon.
    horizon: forecast steps a decision covers (the cold start in steps plus one control interval).
    learn_capacity: True when no capacity per replica is declared, so the step learns it.
    adapt_risk: move the risk level with the realised breach rate (the Beta posterior), else use `sla`.
    """

    decision: DecisionSettings
    sla: float
    horizon: int
    learn_capacity: bool = False
    adapt_risk: bool = True

    @classmethod
    def build(cls, *, sla: float, interval_s: float, cold_start_s: float, min_replicas: int, max_replicas: int,
              stabilisation_s: float = DEFAULT_STABILISATION_S, max_step_up: int | None = None,
              max_step_down: int | None = None, cost_per_replica_hour: float = 1.0,
              learn_capacity: bool = False, adapt_risk: bool = True) -> ControlSettings:
        """Settings from the quantities a user states (seconds, counts), converted to control intervals once.

        A scale-up is sized on the forecast steps a replica requested now can serve, from the end of its
        cold start on (sample step 0 is the next tick, so the lead is the cold start in steps less one);
        a scale-down must stay safe over the whole horizon, since a removed replica takes a cold start to
        come back (on the gentd26 validation span, sizing both on the whole horizon cost 69.7 GPU-hours at
        the SLA against 65.1)."""
        cold_start_steps = cold_start_steps_of(cold_start_s, interval_s)
        decision = DecisionSettings(
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            max_step_up=max_step_up,
            max_step_down=max_step_down,
            stabilisation_steps=max(1, math.ceil(stabilisation_s / interval_s)),
            cost_per_replica_hour=cost_per_replica_hour,
            interval_s=float(interval_s),
            lead_steps=max(cold_start_steps - 1, 0),
        )
        return cls(decision, float(sla), cold_start_steps + 1, learn_capacity, adapt_risk)


def cold_start_steps_of(cold_start_s: float, interval_s: float) -> int:
    """Control intervals before a replica requested now serves (rounded up: a partial interval is not served)."""
    return math.ceil(cold_start_s / interval_s - 1e-9)


@dataclass(frozen=True)
class ControllerState:
    """Capacity (NIG) and breach-rate (Beta) posteriors, the stabilisation window's recent targets
    ([1, k]; None: fresh start) and the number of decisions made."""

    capacity: CapacityPosterior
    breaches: BreachPosterior
    recent_targets: np.ndarray | None = None
    decisions: int = 0

    @classmethod
    def fresh(cls, capacity: float, sla: float, learned: bool = False) -> ControllerState:
        """Priors centred on `capacity` (declared, or a first guess when `learned`) and on the SLA."""
        spread = LEARNED_CAPACITY_RELATIVE_SD if learned else DECLARED_CAPACITY_RELATIVE_SD
        return cls(CapacityPosterior.prior(capacity, relative_sd=spread), BreachPosterior.prior(sla))


@dataclass(frozen=True)
class Observation:
    """The tick just observed: demand (NaN when missing), the replica count in force now (the target's
    desired count) and the replicas READY to serve (what the SLA counts; starting pods serve nothing)."""

    demand: float
    replicas: int
    ready_replicas: int


@dataclass(frozen=True)
class StepResult:
    """The decision for the workload, the state to keep, the effective risk level used, whether the step
    held on stale telemetry, and whether the observed tick was a breach (None: nothing was learned)."""

    decision: Decision
    state: ControllerState
    risk: float
    stale: bool
    breached: bool | None

    @property
    def replicas(self) -> int:
        return int(self.decision.replicas[0])

    @property
    def target(self) -> int:
        return int(self.decision.target[0])

    @property
    def reason(self) -> str:
        return str(self.decision.reason[0])


def step_rng(seed: int, decisions: int) -> np.random.Generator:
    """The generator of decision number `decisions` (independent of how the run was interrupted)."""
    return np.random.default_rng((int(seed), int(decisions)))


def learn(state: ControllerState, obs: Observation, settings: ControlSettings) -> tuple[ControllerState, bool | None]:
    """The single learning rule (see the module docstring); returns the new state and the breach judged."""
    if state.decisions == 0 or not math.isfinite(obs.demand):
        return state, None  # no decision of ours was in force yet, or nothing observed: nothing to learn
    capacity_mean = float(state.capacity.mu[0])
    ready = max(int(obs.ready_replicas), 0)
    breached = obs.demand > ready * capacity_mean + 1e-9
    breaches = state.breaches.update(np.array([float(breached)]))
    capacity = state.capacity
    if settings.learn_capacity and ready > 0 and obs.demand / ready > capacity_mean:
        # replicas evidently served more per replica than believed (a declared capacity is never moved)
        capacity = capacity.update(np.array([[obs.demand / ready]]))
    return ControllerState(capacity, breaches, state.recent_targets, state.decisions), breached


def step(state: ControllerState, demand_samples: np.ndarray | None, obs: Observation, settings: ControlSettings,
         rng: np.random.Generator) -> StepResult:
    """Learn from `obs`, then decide from `demand_samples` ([n_samples, horizon] demand over the next
    steps, or None when there is no forecast to trust: the current count is held)."""
    state, breached = learn(state, obs, settings)
    stale = demand_samples is None
    samples = np.full((2, settings.horizon), np.nan) if stale else np.asarray(demand_samples, dtype=np.float64)
    capacity = state.capacity.sample_mean(samples.shape[0], rng)
    risk = (state.breaches.effective_risk(settings.sla) if settings.adapt_risk
            else np.array([settings.sla], dtype=np.float64))
    decision, recent = decide(samples[None], capacity, np.array([obs.replicas]), risk, settings.decision,
                              state.recent_targets, np.array([stale]))
    new_state = ControllerState(state.capacity, state.breaches, recent, state.decisions + 1)
    return StepResult(decision, new_state, float(risk[0]), stale, breached)
