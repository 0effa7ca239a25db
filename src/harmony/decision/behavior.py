"""The HPA's `behavior` (autoscaling/v2), applied to harmony's decision: stabilisation windows, then rate policies.

Users know how an HPA moves a workload; `spec.behavior` takes the same shape and means the same thing, so
the HPA's rules are reproduced here as pure functions of counts (Kubernetes pkg/controller/podautoscaler/
horizontal.go: `stabilizeRecommendationWithBehaviors`, then `convertDesiredReplicasWithBehaviorRate` with
`calculateScaleUpLimitWithScalingRules` / `calculateScaleDownLimitWithBehaviors`):

1. Stabilisation over past recommendations (the risk-optimal targets of `decide`): the scale-up one is the
   lowest of those of the last scaleUp.stabilizationWindowSeconds, the scale-down one the highest of those of
   the last scaleDown.stabilizationWindowSeconds, this decision's included; the count moves from the current
   one towards the first when it is above, towards the second when it is below, and no further.
2. Rate policies: each policy bounds the change over its periodSeconds, counted from the replicas in force
   at the start of the period (Pods: that count plus or minus `value`; Percent: times 1 +- value / 100,
   rounded up for a scale-up, down for a scale-down); selectPolicy Max takes the policy allowing the largest
   change, Min the smallest, Disabled forbids scaling in that direction.

Defaults are the HPA's: scale-up window 0 s, policies max(+100%, +4 pods) per 15 s; scale-down window 300 s,
policy 100% per 15 s (no limit beyond the window); selectPolicy Max.

In control intervals (the step has no clock), with each choice made where harmony's loop differs:
- A window of W s holds the decisions made less than W s ago: ceil(W / interval) - 1 before this one (the
  HPA keeps recommendations newer than now - W).
- The scale-down window is shortened by the forecast: decide's target already keeps the horizon's steps
  within the risk (a smaller count is safe until a removed replica could be back), so the forecast vouches
  for the first horizon - 1 steps past the next tick, and only the rest of the window is taken from past
  decisions. A fresh or restarted controller without that memory counts the missing decisions at the
  current count: it waits out the window before scaling down, never drops capacity on its first forecast.
- The scale-up window counts only decisions actually made (a fresh controller is not held back from
  adding capacity by recommendations it never made).
- The period's starting count is the count in force at the oldest decision within the period, from the
  counts the state remembers (the HPA counts its own scale events; the net change is the same when harmony
  is the only writer). The first decision of a fresh controller is not rate-limited: it has no count of
  its own to limit, and it sizes the workload it adopts at once (the backtest's warm decision on the
  training history, as the HPA baseline's warm decision).
- A Percent scale-up policy from zero replicas allows one (the HPA never starts from zero: its proposal
  ceil(0 x (1 + p)) would keep a scaled-to-zero workload asleep for ever).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

PODS, PERCENT = "Pods", "Percent"
MAX_CHANGE, MIN_CHANGE, DISABLED = "Max", "Min", "Disabled"
POLICY_TYPES = (PODS, PERCENT)
SELECT_POLICIES = (MAX_CHANGE, MIN_CHANGE, DISABLED)
#: The HPA's ranges (autoscaling/v2 validation): periodSeconds in (0, 1800], windows in [0, 3600].
MAX_PERIOD_S = 1800
MAX_WINDOW_S = 3600


@dataclass(frozen=True)
class ScalingPolicy:
    """One rate policy: at most `value` pods (Pods) or `value` percent (Percent) of change per `period_s`."""

    type: str
    value: int
    period_s: float

    def __post_init__(self) -> None:
        if self.type not in POLICY_TYPES:
            raise ValueError(f"policy type must be one of {', '.join(POLICY_TYPES)}, got {self.type!r}")
        if self.value < 1:
            raise ValueError(f"policy value must be >= 1, got {self.value}")
        if not 0 < self.period_s <= MAX_PERIOD_S:
            raise ValueError(f"periodSeconds must lie in (0, {MAX_PERIOD_S}], got {self.period_s}")


@dataclass(frozen=True)
class ScalingRules:
    """One direction's rules: its stabilisation window (seconds), how its policies combine, the policies."""

    stabilization_window_s: float
    select_policy: str = MAX_CHANGE
    policies: tuple[ScalingPolicy, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.stabilization_window_s <= MAX_WINDOW_S:
            raise ValueError(f"stabilizationWindowSeconds must lie in [0, {MAX_WINDOW_S}], got "
                             f"{self.stabilization_window_s}")
        if self.select_policy not in SELECT_POLICIES:
            raise ValueError(f"selectPolicy must be one of {', '.join(SELECT_POLICIES)}, got {self.select_policy!r}")
        if not self.policies:
            raise ValueError("at least one policy is needed (the HPA's defaults fill absent ones)")


DEFAULT_SCALE_UP = ScalingRules(0.0, MAX_CHANGE, (ScalingPolicy(PERCENT, 100, 15.0), ScalingPolicy(PODS, 4, 15.0)))
DEFAULT_SCALE_DOWN = ScalingRules(300.0, MAX_CHANGE, (ScalingPolicy(PERCENT, 100, 15.0),))


@dataclass(frozen=True)
class Behavior:
    """`spec.behavior`: the rules of each direction (the HPA's defaults where not given)."""

    scale_up: ScalingRules = field(default=DEFAULT_SCALE_UP)
    scale_down: ScalingRules = field(default=DEFAULT_SCALE_DOWN)

    def memory(self, interval_s: float, horizon: int) -> tuple[int, int]:
        """(past recommendations, past replica counts) the rules need, in decisions."""
        windows = (up_window_decisions(self.scale_up.stabilization_window_s, interval_s),
                   down_window_decisions(self.scale_down.stabilization_window_s, interval_s, horizon))
        periods = [period_decisions(p.period_s, interval_s)
                   for p in (*self.scale_up.policies, *self.scale_down.policies)]
        return max(windows), max(periods)


def with_step_limits(behavior: Behavior, interval_s: float, scale_down_window_s: float | None = None,
                     max_step_up: int | None = None, max_step_down: int | None = None) -> Behavior:
    """`behavior` with the short forms of earlier versions (and of `ControlSettings.build`) folded in: a
    scale-down window, and at most N replicas added / removed per decision (a Pods policy of N per control
    interval, alone, so that no default policy allows more; the direction's selectPolicy is kept)."""
    up, down = behavior.scale_up, behavior.scale_down
    per_decision = min(float(interval_s), MAX_PERIOD_S)  # any period within one interval counts this decision alone
    if scale_down_window_s is not None:
        down = ScalingRules(float(scale_down_window_s), down.select_policy, down.policies)
    if max_step_up is not None:
        up = ScalingRules(up.stabilization_window_s, up.select_policy,
                          (ScalingPolicy(PODS, max_step_up, per_decision),))
    if max_step_down is not None:
        down = ScalingRules(down.stabilization_window_s, down.select_policy,
                            (ScalingPolicy(PODS, max_step_down, per_decision),))
    return Behavior(up, down)


def up_window_decisions(window_s: float, interval_s: float) -> int:
    """Past decisions within a scale-up window of `window_s`: those made less than `window_s` ago."""
    return max(math.ceil(window_s / interval_s) - 1, 0)


def down_window_decisions(window_s: float, interval_s: float, horizon: int) -> int:
    """Past decisions within a scale-down window: the window's decisions less those the forecast's horizon
    vouches for (module docstring)."""
    return max(math.ceil(window_s / interval_s) - max(int(horizon), 1), 0)


def period_decisions(period_s: float, interval_s: float) -> int:
    """Past decisions within a policy's period (made less than `period_s` ago)."""
    return max(math.ceil(period_s / interval_s) - 1, 0)


def stabilise(current: int, recommendation: int, up_window: Sequence[int], down_window: Sequence[int]) -> int:
    """The count stabilisation allows (the HPA's `stabilizeRecommendationWithBehaviors`): at least the lowest
    recommendation of the scale-up window, at most the highest of the scale-down window, else `current`.
    The windows hold past recommendations; this one is included in both."""
    up = min([*up_window, recommendation])
    down = max([*down_window, recommendation])
    return min(max(current, up), down)


def period_start(current: int, past_counts: Sequence[int], period: int) -> int:
    """Replicas in force at the start of a period of `period` past decisions: the count before the oldest
    decision within it (`past_counts` newest last; `current` for a period within this decision; the
    oldest count remembered when the memory is shorter)."""
    if period == 0 or not past_counts:
        return current
    return int(past_counts[-min(period, len(past_counts))])


def scale_up_limit(current: int, past_counts: Sequence[int], rules: ScalingRules, interval_s: float) -> int:
    """The most replicas the scale-up rules allow now (`calculateScaleUpLimitWithScalingRules`), never
    below `current` (a limit already exceeded holds the count until the period moves on)."""
    if rules.select_policy == DISABLED:
        return current
    proposals = []
    for policy in rules.policies:
        start = period_start(current, past_counts, period_decisions(policy.period_s, interval_s))
        if policy.type == PODS:
            proposals.append(start + policy.value)
        else:  # rounded up, else a small count never grows; from zero, one (module docstring)
            proposals.append(max(math.ceil(start * (1 + policy.value / 100) - 1e-9), start + 1))
    limit = max(proposals) if rules.select_policy == MAX_CHANGE else min(proposals)
    return max(limit, current)


def scale_down_limit(current: int, past_counts: Sequence[int], rules: ScalingRules, interval_s: float) -> int:
    """The fewest replicas the scale-down rules allow now (`calculateScaleDownLimitWithBehaviors`), never
    above `current`."""
    if rules.select_policy == DISABLED:
        return current
    proposals = []
    for policy in rules.policies:
        start = period_start(current, past_counts, period_decisions(policy.period_s, interval_s))
        if policy.type == PODS:
            proposals.append(start - policy.value)
        else:  # rounded down, as the HPA's int32 conversion
            proposals.append(math.floor(start * (1 - policy.value / 100) + 1e-9))
    limit = min(proposals) if rules.select_policy == MAX_CHANGE else max(proposals)
    return max(min(limit, current), 0)


@dataclass(frozen=True)
class Behaved:
    """What the behaviour made of a decision: the count, whether stabilisation held it at the current count
    (`held`) or a rate policy limited it (`limited`), and the memory to keep (newest last)."""

    replicas: int
    held: bool
    limited: bool
    recommendations: tuple[int, ...]
    counts: tuple[int, ...]


def apply(behavior: Behavior, current: int, recommendation: int, decided: int, past_recommendations: Sequence[int],
          past_counts: Sequence[int], decisions: int, interval_s: float, horizon: int) -> Behaved:
    """The behaviour applied to one decision.

    current: the count in force; recommendation: this decision's target (`Decision.target`); decided: the
    count `decide` set (the target, or `current` on a stale hold); past_recommendations / past_counts: the
    memory (newest last), already within today's bounds; decisions: decisions made before this one.
    """
    up_n = up_window_decisions(behavior.scale_up.stabilization_window_s, interval_s)
    down_n = down_window_decisions(behavior.scale_down.stabilization_window_s, interval_s, horizon)
    rec_n, count_n = behavior.memory(interval_s, horizon)
    past = list(past_recommendations)[-rec_n:] if rec_n else []
    past = [current] * (down_n - len(past)) + past  # decisions not remembered count at the current count
    made = min(up_n, decisions, len(past))
    stabilised = stabilise(current, decided, past[len(past) - made:], past[len(past) - down_n:] if down_n else [])
    held = stabilised == current != decided
    count = stabilised
    if decisions > 0 and stabilised > current:
        count = min(stabilised, scale_up_limit(current, past_counts, behavior.scale_up, interval_s))
    elif decisions > 0 and stabilised < current:
        count = max(stabilised, scale_down_limit(current, past_counts, behavior.scale_down, interval_s))
    kept_recs = tuple([*past, recommendation][-rec_n:]) if rec_n else ()
    kept_counts = tuple([*past_counts, current][-count_n:]) if count_n else ()
    return Behaved(int(count), held, count != stabilised, kept_recs, kept_counts)
