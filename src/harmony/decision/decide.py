"""SLA-constrained replica decisions from forecast samples: pure functions, vectorised over workloads.

Stage 2 of HARMONY (DESIGN.md, "Decision"; the derivation is in docs/decision.md). For each workload w, with
joint samples of demand over the next horizon D[w, i, h] (the cold start in steps plus one control interval)
and of the per-replica capacity c[w, i]:

    breach_probability(n, steps) = max over h in steps of P(D_h > n * c)

the per-tick breach probability at the ticks a decision controls, which is what an SLA on the share of
breached ticks counts. A scale-up requested now serves from the end of its cold start (step `lead_steps`),
and that tick is the one this decision alone controls (the next decision controls the one after), so a
scale-up is sized on that step; a scale-down takes effect at once and a removed replica is back only a cold
start after the next decision asks for it, so a smaller count must keep every step of the horizon within the
risk level. The risk-optimal count is the smallest n meeting that; among it and a few above it, the cheapest
by expected cost (replica-hours) plus a penalty on expected unserved demand wins (with no penalty, the
smallest). Conservative rules then turn the target into the count to set now, each commented where applied.

No I/O, no clock, no Kubernetes: arrays and dataclasses in, arrays and dataclasses out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Reasons, as written to status conditions and metrics labels (a small fixed set: low cardinality).
STEADY = "steady"
SCALE_UP = "scale-up"
SCALE_DOWN = "scale-down"
LIMITED_STEP = "limited-by-max-step"
LIMITED_MAX = "limited-by-max-replicas"
LIMITED_MIN = "raised-to-min-replicas"
HOLD_STABILISATION = "hold-stabilisation-window"
HOLD_STALE = "hold-telemetry-stale"


@dataclass(frozen=True)
class DecisionSettings:
    """Bounds and costs shared by the workloads of one call (per-workload arrays broadcast too).

    min_replicas, max_replicas: hard bounds. max_step_up / max_step_down: most replicas added / removed in
    one decision (None: unbounded). stabilisation_steps: decisions a scale-down target must have held for
    (the HPA's scale-down stabilisation window, in control intervals). cost_per_replica_hour and
    unserved_penalty (cost of one demand unit left unserved for one hour) set the tie-break; interval_s is
    the control interval (and forecast step) in seconds. tie_break_candidates: counts above the risk-optimal
    one considered by the tie-break. lead_steps: forecast steps before a replica requested now serves (the
    cold start in steps, less one: sample step 0 is the next tick); a scale-up is sized on the steps from
    then on, since no count chosen now can serve the steps before it, while a scale-down must stay safe
    over the whole horizon (0: both use the whole horizon).
    """

    min_replicas: int = 0
    max_replicas: int = 1000
    max_step_up: int | None = None
    max_step_down: int | None = None
    stabilisation_steps: int = 5
    cost_per_replica_hour: float = 1.0
    unserved_penalty: float = 0.0
    interval_s: float = 60.0
    tie_break_candidates: int = 8
    lead_steps: int = 0

    def __post_init__(self) -> None:
        if self.min_replicas < 0 or self.max_replicas < self.min_replicas:
            raise ValueError(f"need 0 <= min_replicas <= max_replicas, got {self.min_replicas}, {self.max_replicas}")
        for name in ("max_step_up", "max_step_down"):
            step = getattr(self, name)
            if step is not None and step < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {step}")
        if self.stabilisation_steps < 1:
            raise ValueError(f"stabilisation_steps must be >= 1, got {self.stabilisation_steps}")
        if self.lead_steps < 0:
            raise ValueError(f"lead_steps must be >= 0, got {self.lead_steps}")


@dataclass(frozen=True)
class Decision:
    """Per workload [W]: the count to set, the risk-optimal target behind it, its breach probability
    (at `replicas`), expected unserved demand (demand-units x steps over the horizon) and the reason."""

    replicas: np.ndarray
    target: np.ndarray
    breach_probability: np.ndarray
    expected_unserved: np.ndarray
    reason: np.ndarray  # of str


#: The largest count the standalone sizing functions return (no ceiling given): far above any fleet, and an
#: integer a float64 holds exactly, so the float-to-int cast after clipping is exact.
MAX_COUNT = 2**53
#: Floor of a capacity per replica in `decide`: a capacity of zero or below serves nothing, so its need
#: overflows to inf and saturates at max_replicas (it used to be replaced by 1.0, which sized it as if served).
TINY_CAPACITY = float(np.finfo(np.float64).tiny)


def replicas_needed(demand: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """[W, n, H] replicas each joint sample needs at each step: D_h / c (inf where it overflows: a need that
    large saturates in `replica_counts`)."""
    with np.errstate(over="ignore"):
        return demand / capacity[:, :, None]


def replica_counts(needed: np.ndarray, ceiling: int | np.ndarray = MAX_COUNT) -> np.ndarray:
    """Integer counts ceil(needed) within [0, ceiling] from replicas-needed floats of any size: the one
    float-to-count conversion of the decision. `ceiling` is a scalar or per workload (the leading axis).

    Unrepresentable numbers saturate at the ceiling, never at zero: a need above it (a huge demand, a capacity
    near zero, inf) or unknown (NaN) buys the most replicas allowed. The clip happens in floats, before the
    int cast, because a float beyond the int range casts to garbage (INT_MIN on x86: a demand of 1e20 per
    replica used to become a scale-down to min_replicas). The 1e-9 slack keeps a need of n, up to rounding, n.
    """
    needed = np.asarray(needed, dtype=np.float64)
    top = np.asarray(ceiling, dtype=np.float64)
    top = top.reshape(top.shape + (1,) * max(needed.ndim - top.ndim, 0))
    bounded = np.clip(np.where(np.isnan(needed), top, needed), 0.0, top)
    return np.maximum(np.ceil(bounded - 1e-9), 0.0).astype(np.int64)


def breach_probability(demand: np.ndarray, capacity: np.ndarray, replicas: np.ndarray) -> np.ndarray:
    """[W] the largest per-step breach probability max_h P(D_h > replicas * c) over the given steps."""
    exceed = replicas_needed(demand, capacity) > np.asarray(replicas)[:, None, None]
    return exceed.mean(axis=1).max(axis=1)


def step_replicas(demand: np.ndarray, capacity: np.ndarray, risk: np.ndarray,
                  ceiling: int | np.ndarray = MAX_COUNT) -> np.ndarray:
    """[W, H] per step h, the smallest integer n >= 0 with P(D_h > n c) <= risk, saturated at `ceiling`.

    With N samples at most k = floor(risk * N) may exceed n, so n must reach the (k+1)-th largest need at
    that step: n = ceil(need_desc[k]). Exact for the empirical distribution, O(N) per workload and step.
    """
    need = replicas_needed(demand, capacity)
    n_samples = need.shape[1]
    # an unknown risk level (NaN) is the strictest one; clipped in floats so that the cast is exact
    risk = np.clip(np.nan_to_num(np.asarray(risk, dtype=np.float64), nan=0.0), 0.0, 1.0)
    k = np.clip(np.floor(risk * n_samples + 1e-9), 0, n_samples - 1).astype(np.int64)
    order = n_samples - 1 - k  # the (k+1)-th largest is the (N-1-k)-th smallest
    part = np.partition(need, np.unique(order), axis=1)
    kth = part[np.arange(need.shape[0]), order]  # [W, H]
    return replica_counts(kth, ceiling)


def risk_optimal_replicas(demand: np.ndarray, capacity: np.ndarray, risk: np.ndarray,
                          ceiling: int | np.ndarray = MAX_COUNT) -> np.ndarray:
    """[W] the smallest integer n >= 0 whose per-tick breach probability is at most `risk` at every step
    (`ceiling` where no count up to it suffices)."""
    return step_replicas(demand, capacity, risk, ceiling).max(axis=1)


def expected_unserved(demand: np.ndarray, capacity: np.ndarray, replicas: np.ndarray) -> np.ndarray:
    """[W] E[sum_h max(D_h - n c, 0)] in demand units x steps."""
    served = np.asarray(replicas, dtype=np.float64)[:, None, None] * capacity[:, :, None]
    with np.errstate(over="ignore", invalid="ignore"):  # demand near the float limit sums to inf: honest
        return np.maximum(demand - served, 0.0).sum(axis=2).mean(axis=1)


def tie_break(demand: np.ndarray, capacity: np.ndarray, lowest: np.ndarray, settings: DecisionSettings) -> np.ndarray:
    """Among `lowest` .. lowest + K - 1 (all safe: breach probability only falls as n grows), the count with
    the least expected cost of replicas plus penalised unserved demand over the horizon; the smallest wins
    ties. Without a penalty the smallest safe count is always cheapest, so the search is skipped."""
    if settings.unserved_penalty <= 0 or settings.tie_break_candidates <= 1:
        return lowest
    horizon_h = demand.shape[2] * settings.interval_s / 3600.0
    step_h = settings.interval_s / 3600.0
    best, best_cost = lowest.copy(), np.full(lowest.shape, np.inf)
    # candidates stop at max_replicas, except a `lowest` already above it (no allowed count meets the risk):
    # it stays, so that the caller still sees the SLA cannot be met and reports the bound
    top = np.maximum(lowest, settings.max_replicas)
    for extra in range(settings.tie_break_candidates):
        n = np.minimum(lowest + extra, top)
        cost = (n * settings.cost_per_replica_hour * horizon_h
                + settings.unserved_penalty * expected_unserved(demand, capacity, n) * step_h)
        better = cost < best_cost - 1e-12
        best = np.where(better, n, best)
        best_cost = np.where(better, cost, best_cost)
    return best


def decide(
    demand: np.ndarray,
    capacity: np.ndarray,
    current: np.ndarray,
    risk: np.ndarray | float,
    settings: DecisionSettings,
    recent_targets: np.ndarray | None = None,
    stale: np.ndarray | None = None,
) -> tuple[Decision, np.ndarray]:
    """Decide replica counts for W workloads at once.

    demand: [W, n_samples, horizon] forecast samples; capacity: [W, n_samples] capacity samples (paired with
    demand samples); current: [W] replicas now; risk: [W] (or scalar) effective breach-probability limit;
    recent_targets: [W, k] targets of the last decisions, k = max(stabilisation_steps - horizon, 0) + 1 (None:
    start of a run, filled with `current`, so that a fresh or restarted controller waits out the part of the
    window its forecast does not cover before scaling down);
    stale: [W] True where telemetry is missing or stale.

    Returns the decision and the new recent_targets (pass it to the next call).
    """
    demand = np.asarray(demand, dtype=np.float64)
    capacity = np.asarray(capacity, dtype=np.float64)
    current = _current_counts(current)
    n_workloads = current.shape[0]
    if demand.ndim != 3 or demand.shape[0] != n_workloads or capacity.shape != demand.shape[:2]:
        raise ValueError(
            f"demand {demand.shape} must be [W, n, H] and capacity {capacity.shape} [W, n], W={n_workloads}")
    low, high = settings.min_replicas, settings.max_replicas
    risk = np.broadcast_to(np.asarray(risk, dtype=np.float64), (n_workloads,))
    stale = np.zeros(n_workloads, bool) if stale is None else np.asarray(stale, bool)
    backward_steps = max(settings.stabilisation_steps - demand.shape[2], 0) + 1  # this decision included
    if recent_targets is None or np.shape(recent_targets) != (n_workloads, backward_steps):
        recent_targets = np.repeat(current[:, None], backward_steps, axis=1)
    # Past targets are read within today's bounds (a target above a since-lowered maxReplicas must not hold the
    # count above it); an unknown one (NaN) counts as the most replicas allowed, never as a reason to drop.
    recent_targets = np.maximum(replica_counts(recent_targets, high), low)

    # Missing samples (NaN demand, or -inf, which no demand is) count as stale: never decide on data we do not
    # have. +inf demand is a demand too large to represent, not a missing one: it saturates at max_replicas.
    missing = np.isnan(demand) | np.isneginf(demand)
    stale = stale | missing.any(axis=(1, 2)) | ~np.isfinite(capacity).all(axis=1)
    safe_demand = np.where(missing, 0.0, demand)
    safe_capacity = np.where(np.isfinite(capacity), np.maximum(capacity, TINY_CAPACITY), 1.0)
    # Needs are counted up to max_replicas + 1: one above the bound still says "the SLA cannot be met here".
    ceiling = high + 1

    # Two risk-optimal counts: `whole` keeps the per-tick breach probability within the risk at every step of
    # the horizon (what a scale-down must satisfy: a removed replica is back only a cold start after the next
    # decision asks for it); `served` at the step a replica requested now starts to serve, the one tick this
    # decision alone controls (what a scale-up can change: later ticks are the next decisions').
    lead = min(settings.lead_steps, demand.shape[2] - 1)
    whole = tie_break(safe_demand, safe_capacity,
                      risk_optimal_replicas(safe_demand, safe_capacity, risk, ceiling), settings)
    if lead > 0:
        late = safe_demand[:, :, lead:lead + 1]
        served = tie_break(late, safe_capacity, risk_optimal_replicas(late, safe_capacity, risk, ceiling), settings)
        # up to `served` when short of it; down to `whole` when above it; in between, the current count
        target = np.where(served > current, served, np.where(whole < current, whole, current))
    else:
        target = whole
    reason = np.full(n_workloads, STEADY, dtype=object)

    # Hard bounds first: the target itself never leaves [min, max]; hitting max means the SLA cannot be met.
    over = target > high
    under = target < low
    target = np.clip(target, low, high)

    # Scale-down only when the smaller count stays safe for the whole stabilisation window: the forecast
    # vouches for its first `horizon` steps (the target is safe over the whole horizon by construction);
    # for a window longer than the forecast, every decision over the remaining steps must have judged the
    # smaller count safe too (the HPA's rule). One optimistic forecast must not drop capacity that a cold
    # start takes minutes to restore.
    window = np.concatenate([recent_targets[:, 1:], target[:, None]], axis=1)
    floor_down = window.max(axis=1)

    new = current.copy()
    up = target > current
    limit_up = target if settings.max_step_up is None else current + settings.max_step_up
    new[up] = np.minimum(target, limit_up)[up]
    reason[up] = np.where(new[up] < target[up], LIMITED_STEP, SCALE_UP)

    down = target < current
    # Bounded step size: remove at most max_step_down at once, so a wrong forecast costs one step, not all.
    limit_down = target if settings.max_step_down is None else current - settings.max_step_down
    allowed = np.maximum(np.maximum(floor_down, target), limit_down)
    new[down] = np.minimum(allowed, current)[down]
    reason[down] = np.where(new[down] == current[down], HOLD_STABILISATION,
                            np.where(new[down] > floor_down[down], LIMITED_STEP, SCALE_DOWN))

    reason[over & (new == high)] = LIMITED_MAX
    reason[under & (new == low) & ~down] = LIMITED_MIN

    # Missing or stale telemetry: hold the current count. Scaling down on missing data is how reactive
    # autoscalers drop capacity during outages; scaling up on it would be a guess.
    hold = stale
    new[hold] = current[hold]
    reason[hold] = HOLD_STALE
    target = np.where(hold, np.clip(current, low, high), target)

    new = _enforce_bounds(new, current, reason, settings)
    new_recent = np.concatenate([recent_targets[:, 1:], target[:, None]], axis=1)
    decision = Decision(
        replicas=new,
        target=target,
        breach_probability=np.where(hold, np.nan, breach_probability(safe_demand, safe_capacity, new)),
        expected_unserved=np.where(hold, np.nan, expected_unserved(safe_demand, safe_capacity, new)),
        reason=reason,
    )
    return decision, new_recent


def _current_counts(current: np.ndarray) -> np.ndarray:
    """[W] the replica counts now as integers; a count that is not a whole number is a caller's bug, refused
    rather than cast (a NaN casts to INT_MIN)."""
    values = np.atleast_1d(np.asarray(current))
    if not np.issubdtype(values.dtype, np.integer):
        as_float = values.astype(np.float64)
        if not (np.isfinite(as_float).all() and (as_float == np.round(as_float)).all()
                and (np.abs(as_float) <= MAX_COUNT).all()):
            raise ValueError(f"current replica counts must be whole numbers, got {current}")
        values = as_float
    return values.astype(np.int64)


def _enforce_bounds(new: np.ndarray, current: np.ndarray, reason: np.ndarray,
                    settings: DecisionSettings) -> np.ndarray:
    """The count within [min_replicas, max_replicas], over every rule above it (stabilisation window, step
    limits, the stale hold); `reason` names the bound where it acted, or where it is what moved a current
    count that was outside it (down to max, or up to min).

    The bounds are the user's statement of what the workload may run at (a quota or budget above, availability
    below), not a cost the controller trades off, so a count outside them (maxReplicas lowered below the
    current count, minReplicas raised above it) is corrected at once, as the HPA does (`reconcileAutoscaler`
    sets the desired count to maxReplicas when the current one is above it), rather than walked back over a
    stabilisation window or a step at a time while the workload runs out of bounds."""
    above = (new > settings.max_replicas) | ((current > settings.max_replicas) & (new == settings.max_replicas))
    below = (new < settings.min_replicas) | ((current < settings.min_replicas) & (new == settings.min_replicas))
    reason[above] = LIMITED_MAX
    reason[below] = LIMITED_MIN
    return np.clip(new, settings.min_replicas, settings.max_replicas)
