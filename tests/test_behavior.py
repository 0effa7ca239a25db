"""The HPA's behavior (harmony.decision.behavior) against examples worked by hand from the HPA's algorithm
(horizontal.go: stabilizeRecommendationWithBehaviors, calculateScaleUpLimitWithScalingRules,
calculateScaleDownLimitWithBehaviors) and the Kubernetes documentation's examples."""

from __future__ import annotations

import pytest

from harmony.decision import behavior as bh
from harmony.decision.behavior import Behavior, ScalingPolicy, ScalingRules

UP_DEFAULT, DOWN_DEFAULT = bh.DEFAULT_SCALE_UP, bh.DEFAULT_SCALE_DOWN


def rules(window_s=0.0, select=bh.MAX_CHANGE, *policies):
    return ScalingRules(window_s, select, tuple(ScalingPolicy(*p) for p in policies))


def test_the_defaults_are_the_hpas():
    """kubernetes.io, "Default Behavior": scaleDown 300 s, 100% per 15 s; scaleUp 0 s, max(100%, 4 pods) / 15 s."""
    assert Behavior() == Behavior(rules(0, "Max", ("Percent", 100, 15), ("Pods", 4, 15)),
                                  rules(300, "Max", ("Percent", 100, 15)))


@pytest.mark.parametrize(("current", "select", "limit"), [
    (1, "Max", 5),     # max(ceil(1 x 2), 1 + 4)
    (3, "Max", 7),     # max(6, 7)
    (10, "Max", 20),   # max(20, 14)
    (10, "Min", 14),   # min(20, 14)
    (10, "Disabled", 10),
])
def test_percent_100_and_pods_4_per_15_s(current, select, limit):
    up = rules(0, select, ("Percent", 100, 15), ("Pods", 4, 15))
    assert bh.scale_up_limit(current, [], up, 15.0) == limit


def test_a_period_counts_from_the_replicas_in_force_at_its_start():
    """Pods 4 per 60 s at a 15 s interval: the period holds the last 3 decisions. 2 -> 4 -> 6 -> 8 over them
    added 6 already (start 2): the limit 2 + 4 = 6 is below the current 8, so the count holds at 8."""
    up = rules(0, "Max", ("Pods", 4, 60))
    assert bh.period_decisions(60, 15) == 3
    assert bh.scale_up_limit(8, [1, 2, 4, 6], up, 15.0) == 8
    assert bh.scale_up_limit(8, [6, 6, 7], up, 15.0) == 10  # start 6: 6 + 4
    # a period within one interval starts at the current count, whatever came before
    assert bh.scale_up_limit(8, [1, 2, 4, 6], up, 60.0) == 12


def test_percent_rounds_up_for_scale_up_and_down_for_scale_down():
    assert bh.scale_up_limit(3, [], rules(0, "Max", ("Percent", 10, 15)), 15.0) == 4    # ceil(3.3)
    assert bh.scale_up_limit(10, [], rules(0, "Max", ("Percent", 10, 15)), 15.0) == 11  # 10% of 10 is 1
    assert bh.scale_down_limit(7, [], rules(0, "Max", ("Percent", 50, 15)), 15.0) == 3  # floor(3.5)
    # from zero a Percent policy allows one replica (the HPA's would stay at ceil(0) = 0 for ever)
    assert bh.scale_up_limit(0, [], rules(0, "Max", ("Percent", 100, 15)), 15.0) == 1


def test_scale_down_policies_and_select_policy():
    """The documentation's example: Percent 10 and Pods 5 per 60 s; Max picks the larger change."""
    down = rules(300, "Max", ("Percent", 10, 60), ("Pods", 5, 60))
    assert bh.scale_down_limit(80, [], down, 60.0) == 72       # 10% of 80 = 8 > 5 pods
    assert bh.scale_down_limit(40, [], down, 60.0) == 35       # 5 pods > 10% of 40 = 4
    assert bh.scale_down_limit(40, [], rules(300, "Min", ("Percent", 10, 60), ("Pods", 5, 60)), 60.0) == 36
    assert bh.scale_down_limit(40, [], rules(300, "Disabled", ("Percent", 10, 60)), 60.0) == 40
    assert bh.scale_down_limit(3, [], rules(0, "Max", ("Pods", 5, 60)), 60.0) == 0  # never below zero


def test_scale_down_stabilisation_takes_the_highest_target_of_the_window():
    """300 s at 30 s with a one-step horizon: the 9 past targets and this one. A spike of 12 four decisions
    ago holds the count at 12 until it leaves the window, then the count falls to the window's highest."""
    behavior = Behavior()
    past = [6, 6, 6, 6, 6, 12, 5, 5, 5]
    out = bh.apply(behavior, 12, 4, 4, past, [], decisions=20, interval_s=30.0, horizon=1)
    assert (out.replicas, out.held, out.limited) == (12, True, False)
    later = bh.apply(behavior, 12, 4, 4, [5] * 9, [], decisions=30, interval_s=30.0, horizon=1)
    assert (later.replicas, later.held) == (5, False)  # down to the window's highest, not to 4
    assert later.recommendations == (5,) * 8 + (4,)


def test_the_forecast_vouches_for_its_horizon_in_the_scale_down_window():
    """A 300 s window at 60 s is 5 intervals; a 4-step horizon leaves one past decision to consult."""
    assert bh.down_window_decisions(300, 60, 4) == 1 and bh.down_window_decisions(300, 60, 1) == 4
    out = bh.apply(Behavior(), 10, 3, 3, [9, 9, 9, 7], [], decisions=10, interval_s=60.0, horizon=4)
    assert out.replicas == 7  # only the newest past target counts


def test_scale_up_stabilisation_takes_the_lowest_target_of_the_window():
    behavior = Behavior(rules(60, "Max", ("Pods", 100, 15)), DOWN_DEFAULT)
    out = bh.apply(behavior, 4, 9, 9, [5, 8, 6], [], decisions=10, interval_s=15.0, horizon=1)
    assert (out.replicas, out.held) == (5, False)  # min(5, 8, 6, 9): the lowest of the last 60 s
    held = bh.apply(behavior, 5, 9, 9, [4, 8, 6], [], decisions=10, interval_s=15.0, horizon=1)
    assert (held.replicas, held.held) == (5, True)


def test_a_fresh_controller_waits_out_the_scale_down_window_but_is_not_rate_limited():
    fresh = bh.apply(Behavior(), 10, 2, 2, [], [], decisions=0, interval_s=30.0, horizon=1)
    assert (fresh.replicas, fresh.held) == (10, True)  # the window's missing decisions count at 10
    assert fresh.recommendations == (10,) * 8 + (2,)
    adopt = bh.apply(Behavior(), 1, 40, 40, [], [], decisions=0, interval_s=30.0, horizon=1)
    assert (adopt.replicas, adopt.limited) == (40, False)  # the first decision sizes the workload it adopts
    second = bh.apply(Behavior(), 1, 40, 40, [], [], decisions=1, interval_s=30.0, horizon=1)
    assert (second.replicas, second.limited) == (5, True)  # from then on max(+100%, +4) per 15 s


def test_the_memory_keeps_what_the_longest_window_and_period_need():
    behavior = Behavior(rules(120, "Max", ("Pods", 2, 90)), rules(300, "Max", ("Percent", 20, 240)))
    assert behavior.memory(30.0, horizon=3) == (7, 7)  # down: 10 - 3; up: 4 - 1; periods: 2 and 7
    out = bh.apply(behavior, 6, 6, 6, [6] * 7, [1, 2, 3, 4, 5, 6, 6], decisions=50, interval_s=30.0, horizon=3)
    assert len(out.recommendations) == 7 and out.counts == (2, 3, 4, 5, 6, 6, 6)


def test_step_limits_fold_into_pods_policies_per_interval():
    folded = bh.with_step_limits(Behavior(), 30.0, scale_down_window_s=60, max_step_up=3, max_step_down=1)
    assert folded.scale_up == rules(0, "Max", ("Pods", 3, 30.0))
    assert folded.scale_down == rules(60, "Max", ("Pods", 1, 30.0))
    assert bh.scale_up_limit(10, [2, 5], folded.scale_up, 30.0) == 13  # per decision, whatever came before


@pytest.mark.parametrize(("make", "message"), [
    (lambda: ScalingPolicy("Replicas", 1, 15), "policy type"),
    (lambda: ScalingPolicy("Pods", 0, 15), "value"),
    (lambda: ScalingPolicy("Pods", 1, 1801), "periodSeconds"),
    (lambda: ScalingRules(3601, "Max", (ScalingPolicy("Pods", 1, 15),)), "stabilizationWindowSeconds"),
    (lambda: ScalingRules(0, "Largest", (ScalingPolicy("Pods", 1, 15),)), "selectPolicy"),
    (lambda: ScalingRules(0, "Max", ()), "at least one policy"),
])
def test_out_of_range_rules_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()
