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
  3. behave (`harmony.decision.behavior`): the HPA-shaped `behavior` (stabilisation windows over past
     targets, then the rate policies over the replica counts of each period) turns the decided count into
     the one to set, and the hard bounds then win over it (a count outside [min, max] is corrected at once).
  4. the new state: the posteriors, the behaviour's memory (recent targets and replica counts) and the
     decision count.

Pure: arrays and dataclasses in and out, no clock, no I/O; the caller passes the random generator
(`step_rng` derives it from a seed and the decision count, so a restarted operator draws what an
uninterrupted one would have).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harmony.decision import behavior as bh
from harmony.decision.decide import (
    HOLD_STABILISATION,
    HOLD_STALE,
    LIMITED_STEP,
    TINY_CAPACITY,
    Decision,
    DecisionSettings,
    _enforce_bounds,
    breach_probability,
    decide,
    expected_unserved,
    replica_counts,
)
from harmony.decision.posteriors import BreachPosterior, CapacityPosterior

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

    decision: bounds, costs and lead steps for `decide` (its own window and step limits unused: the
    behaviour applies them, `behavior`).
    sla: the target breach rate (the share of ticks with demand above ready capacity), epsilon.
    horizon: forecast steps a decision covers (the cold start in steps plus one control interval).
    learn_capacity: True when no capacity per replica is declared, so the step learns it.
    adapt_risk: move the risk level with the realised breaches (adaptive conformal inference), else `sla`.
    risk_gain: the adaptation's step size in log space per tick.
    behavior: the HPA-shaped scaling behaviour applied after the decision (the HPA's defaults).
    """

    decision: DecisionSettings
    sla: float
    horizon: int
    learn_capacity: bool = False
    adapt_risk: bool = True
    risk_gain: float = RISK_GAIN
    behavior: bh.Behavior = bh.Behavior()

    @classmethod
    def build(cls, *, sla: float, interval_s: float, cold_start_s: float, min_replicas: int, max_replicas: int,
              behavior: bh.Behavior | None = None, stabilisation_s: float | None = None,
              max_step_up: int | None = None, max_step_down: int | None = None, cost_per_replica_hour: float = 1.0,
              learn_capacity: bool = False, adapt_risk: bool = True,
              risk_gain: float = RISK_GAIN) -> ControlSettings:
        """Settings from the quantities a user states (seconds, counts), converted to control intervals once.

        A scale-up is sized on the forecast steps a replica requested now can serve, from the end of its
        cold start on (sample step 0 is the next tick, so the lead is the cold start in steps less one);
        a scale-down must stay safe over the whole horizon, since a removed replica takes a cold start to
        come back (on the gentd26 validation span, sizing both on the whole horizon cost 69.7 GPU-hours at
        the SLA against 65.1).

        behavior: the scaling behaviour (None: the HPA's defaults); stabilisation_s, max_step_up and
        max_step_down are its short forms (a scale-down window; at most N replicas added / removed per
        decision), folded in by `behavior.with_step_limits`."""
        cold_start_steps = cold_start_steps_of(cold_start_s, interval_s)
        decision = DecisionSettings(
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            cost_per_replica_hour=cost_per_replica_hour,
            interval_s=float(interval_s),
            lead_steps=max(cold_start_steps - 1, 0),
            stabilisation_steps=1,
        )
        behaves = bh.with_step_limits(behavior or bh.Behavior(), float(interval_s), stabilisation_s, max_step_up,
                                      max_step_down)
        return cls(decision, float(sla), cold_start_steps + 1, learn_capacity, adapt_risk, float(risk_gain), behaves)


def cold_start_steps_of(cold_start_s: float, interval_s: float) -> int:
    """Control intervals before a replica requested now serves (rounded up: a partial interval is not served)."""
    return math.ceil(cold_start_s / interval_s - 1e-9)


@dataclass(frozen=True)
class ControllerState:
    """Capacity (NIG) and breach-rate (Beta) posteriors, the behaviour's recent targets (the stabilisation
    windows', [1, k], newest last; None: fresh start), the number of decisions made, the effective risk level
    (None: the SLA) and the behaviour's recent replica counts (the rate policies' periods, [1, m], newest
    last: the count in force at each past decision; None: none remembered)."""

    capacity: CapacityPosterior
    breaches: BreachPosterior
    recent_targets: np.ndarray | None = None
    decisions: int = 0
    risk: float | None = None
    recent_replicas: np.ndarray | None = None

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
    return ControllerState(capacity, breaches, state.recent_targets, state.decisions, risk,
                           state.recent_replicas), breached


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
    steps, or None when there is no forecast to trust: the current count is held), then behave."""
    state, breached = learn(state, obs, settings)
    stale = demand_samples is None
    samples = np.full((2, settings.horizon), np.nan) if stale else np.asarray(demand_samples, dtype=np.float64)
    capacity = state.capacity.sample_mean(samples.shape[0], rng)
    risk = state.risk_level(settings)
    decided, _ = decide(samples[None], capacity, np.array([obs.replicas]), np.array([risk]), settings.decision,
                        None, np.array([stale]))
    decision, behaved = behave(decided, state, int(obs.replicas), settings, samples, capacity)
    new_state = ControllerState(state.capacity, state.breaches, _row(behaved.recommendations), state.decisions + 1,
                                risk, _row(behaved.counts))
    return StepResult(decision, new_state, risk, stale, breached)


def behave(decided: Decision, state: ControllerState, current: int, settings: ControlSettings, samples: np.ndarray,
           capacity: np.ndarray) -> tuple[Decision, bh.Behaved]:
    """`decided` through the behaviour (`harmony.decision.behavior.apply`), then the hard bounds, which win
    over it; the reason names the rule that set the count, and the breach probability and unserved demand
    are those of the count set."""
    low, high = settings.decision.min_replicas, settings.decision.max_replicas
    # remembered targets are read within today's bounds (a target above a since-lowered maxReplicas must not
    # hold the count above it); an unknown one counts as the most replicas allowed, never as a reason to drop
    recent = [] if state.recent_targets is None else np.maximum(replica_counts(state.recent_targets, high), low)
    counts = [] if state.recent_replicas is None else replica_counts(state.recent_replicas)
    behaved = bh.apply(settings.behavior, current, int(decided.target[0]), int(decided.replicas[0]),
                       [int(v) for v in np.ravel(recent)], [int(v) for v in np.ravel(counts)], state.decisions,
                       settings.decision.interval_s, settings.horizon)
    reason = decided.reason.copy()
    if behaved.held:
        reason[0] = HOLD_STABILISATION
    if behaved.limited:
        reason[0] = LIMITED_STEP
    replicas = _enforce_bounds(np.array([behaved.replicas]), np.array([current]), reason, settings.decision)
    if replicas[0] == decided.replicas[0] or reason[0] == HOLD_STALE:
        return Decision(decided.replicas, decided.target, decided.breach_probability, decided.expected_unserved,
                        reason), behaved
    demand, capacity = samples[None], np.maximum(capacity, TINY_CAPACITY)  # not stale: both finite
    return Decision(replicas, decided.target, breach_probability(demand, capacity, replicas),
                    expected_unserved(demand, capacity, replicas), reason), behaved


def _row(values: tuple[int, ...]) -> np.ndarray | None:
    return np.asarray([values], dtype=np.int64) if values else None
