"""The control step: one function from (state, demand samples, observation, settings, rng) to (decision, state).

The backtest's harmony policy and the operator's reconcile both call `step`, so a backtest figure describes
the loop the operator runs: the same learning rule, the same stale-telemetry rule, the same sizing.

Per decision:
  1. learn from the tick just observed (`learn`): a breach or not, judged as the SLA counts it (observed
     demand above READY replicas x the capacity believed per replica), updates the breach-rate posterior
     (Beta, the estimate reported in status and metrics) and the effective risk level; a learned capacity
     (none declared) moves up when the ready replicas evidently served more per replica than believed.
     Nothing is learned before the first decision (no count of ours was in force) nor from missing demand
     (NaN, or negative: no demand is; see `observed_demand`).
  2. decide (`harmony.decision.decide.decide`): capacity samples from the Normal-Inverse-Gamma posterior, the
     effective risk level, and the conservative rules. No demand samples (telemetry missing or stale, or the
     forecast failed) hold the current count.

The effective risk level alpha follows the realised breaches by adaptive conformal inference (Gibbs and
Candes, "Adaptive conformal inference under distribution shift", NeurIPS 2021), in log space:

    log alpha <- log alpha + gain * (sla - breached) / sla        clipped to [sla * MIN, MAX]

Every tick without a breach raises alpha by the factor e^gain, every breach lowers it by e^(gain (1 - sla) /
sla); the two balance exactly when breaches happen at the rate `sla`, and since log alpha stays bounded the
long-run share of breached ticks converges to the SLA whatever the forecaster's calibration: over T ticks it
lies within sla * log(MAX / (sla * MIN)) / (gain T) of it. A forecast that is too wide (over-safe) is relaxed,
one too narrow tightened, without a model of why.
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
#: Step size of the risk adaptation (log space, per tick; see the module docstring).
RISK_GAIN = 0.01
#: The effective risk level stays within [RISK_MIN_FACTOR x SLA, RISK_MAX]: never certainty (a forecast's
#: tail cannot justify it), never a coin flip per tick.
RISK_MIN_FACTOR = 0.05
RISK_MAX = 0.5
#: A learned capacity's measurement from one tick counts at most this multiple of the capacity believed: a real
#: capacity far above the first guess is still reached within a few ticks (the believed mean rises by about
#: 80% a tick at first), while one corrupt reading (1e308, a unit changed in the query) cannot make the
#: workload look served by no replicas at all, which would scale it to its minimum from the next decision on.
#: An underestimate errs on the safe side: more replicas.
CAPACITY_MEASUREMENT_MAX_RATIO = 10.0


@dataclass(frozen=True)
class ControlSettings:
    """What one workload's control step needs besides its state.

    decision: bounds, steps, costs, stabilisation window and lead steps for `decide`.
    sla: the target breach rate (the share of ticks with demand above ready capacity), epsilon.
    horizon: forecast steps a decision covers (the cold start in steps plus one control interval).
    learn_capacity: True when no capacity per replica is declared, so the step learns it.
    adapt_risk: move the risk level with the realised breaches (adaptive conformal inference), else `sla`.
    risk_gain: the adaptation's step size in log space per tick.
    """

    decision: DecisionSettings
    sla: float
    horizon: int
    learn_capacity: bool = False
    adapt_risk: bool = True
    risk_gain: float = RISK_GAIN

    @classmethod
    def build(cls, *, sla: float, interval_s: float, cold_start_s: float, min_replicas: int, max_replicas: int,
              stabilisation_s: float = DEFAULT_STABILISATION_S, max_step_up: int | None = None,
              max_step_down: int | None = None, cost_per_replica_hour: float = 1.0,
              learn_capacity: bool = False, adapt_risk: bool = True,
              risk_gain: float = RISK_GAIN) -> ControlSettings:
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
        return cls(decision, float(sla), cold_start_steps + 1, learn_capacity, adapt_risk, float(risk_gain))


def cold_start_steps_of(cold_start_s: float, interval_s: float) -> int:
    """Control intervals before a replica requested now serves (rounded up: a partial interval is not served)."""
    return math.ceil(cold_start_s / interval_s - 1e-9)


@dataclass(frozen=True)
class ControllerState:
    """Capacity (NIG) and breach-rate (Beta) posteriors, the stabilisation window's recent targets
    ([1, k]; None: fresh start), the number of decisions made and the effective risk level (None: the SLA)."""

    capacity: CapacityPosterior
    breaches: BreachPosterior
    recent_targets: np.ndarray | None = None
    decisions: int = 0
    risk: float | None = None

    def risk_level(self, settings: ControlSettings) -> float:
        """The effective risk level; the SLA when not adapted, or when the kept one is not a probability."""
        if not settings.adapt_risk or self.risk is None or not 0 < self.risk < 1:  # NaN fails the test too
            return settings.sla
        return self.risk

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
    """The single learning rule (see the module docstring); returns the new state and the breach judged.

    Absurd observations cannot poison the state: a negative demand is missing (see `observed_demand`); an
    infinite one is a breach (no finite capacity serves it) but no capacity measurement; a finite but huge one
    moves a learned capacity by a bounded factor (CAPACITY_MEASUREMENT_MAX_RATIO)."""
    demand = observed_demand(obs.demand)
    if state.decisions == 0 or math.isnan(demand):
        return state, None  # no decision of ours was in force yet, or nothing observed: nothing to learn
    capacity_mean = float(state.capacity.mu[0])
    ready = max(int(obs.ready_replicas), 0)
    breached = demand > ready * capacity_mean + 1e-9
    breaches = state.breaches.update(np.array([float(breached)]))
    capacity = state.capacity
    if settings.learn_capacity and ready > 0 and math.isfinite(demand) and demand / ready > capacity_mean:
        # replicas evidently served more per replica than believed (a declared capacity is never moved)
        measured = min(demand / ready, CAPACITY_MEASUREMENT_MAX_RATIO * capacity_mean)
        capacity = capacity.update(np.array([[measured]]))
    risk = adapt_risk(state.risk_level(settings), breached, settings)
    return ControllerState(capacity, breaches, state.recent_targets, state.decisions, risk), breached


def observed_demand(value: float) -> float:
    """The demand of an observation as the learning rule uses it: NaN (missing) for anything that is not a
    number, or is negative. Demand (requests, tokens, queue length per second) cannot be negative; a negative
    reading is a broken query or a mis-rated counter reset, and taken as a value it would be judged "no breach",
    relaxing the risk level on data we do not have. +inf stays: demand beyond any capacity."""
    try:
        demand = float(value)
    except (TypeError, ValueError):
        return math.nan
    return math.nan if demand < 0 else demand


def adapt_risk(risk: float, breached: bool, settings: ControlSettings) -> float:
    """One step of the log-space adaptive conformal update (module docstring)."""
    if not settings.adapt_risk:
        return settings.sla
    step = settings.risk_gain * (settings.sla - float(breached)) / settings.sla
    bounded = math.exp(min(max(math.log(risk) + step, math.log(settings.sla * RISK_MIN_FACTOR)), math.log(RISK_MAX)))
    return float(bounded)


def step(state: ControllerState, demand_samples: np.ndarray | None, obs: Observation, settings: ControlSettings,
         rng: np.random.Generator) -> StepResult:
    """Learn from `obs`, then decide from `demand_samples` ([n_samples, horizon] demand over the next
    steps, or None when there is no forecast to trust: the current count is held)."""
    state, breached = learn(state, obs, settings)
    stale = demand_samples is None
    samples = np.full((2, settings.horizon), np.nan) if stale else np.asarray(demand_samples, dtype=np.float64)
    capacity = state.capacity.sample_mean(samples.shape[0], rng)
    risk = state.risk_level(settings)
    decision, recent = decide(samples[None], capacity, np.array([obs.replicas]), np.array([risk]),
                              settings.decision, state.recent_targets, np.array([stale]))
    new_state = ControllerState(state.capacity, state.breaches, recent, state.decisions + 1, risk)
    return StepResult(decision, new_state, risk, stale, breached)
