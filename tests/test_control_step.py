"""The control step (harmony.decision.step): one learning rule, one stale rule, restart-safe state."""

from __future__ import annotations

import numpy as np
import pytest

from harmony.decision import behavior as bh
from harmony.decision import step as control
from harmony.decision.decide import HOLD_STALE, LIMITED_STEP, SCALE_UP
from harmony.operator import state as st


def settings(**changes) -> control.ControlSettings:
    base = dict(sla=0.05, interval_s=60.0, cold_start_s=180.0, min_replicas=1, max_replicas=50)
    return control.ControlSettings.build(**{**base, **changes})


def test_settings_convert_seconds_once():
    s = settings(stabilisation_s=301.0)
    assert s.horizon == 4 and s.decision.lead_steps == 2
    # a 301 s window is 6 intervals of 60 s, the forecast's 4 steps vouch for 4: 2 past targets; 15 s periods
    # end within one interval: no past count
    assert s.behavior.scale_down.stabilization_window_s == 301.0 and s.behavior.memory(60.0, s.horizon) == (2, 0)
    assert control.cold_start_steps_of(0, 60) == 0 and control.cold_start_steps_of(61, 60) == 2


def test_nothing_is_learned_before_the_first_decision_nor_from_missing_demand():
    state = control.ControllerState.fresh(2.0, 0.05)
    learned, breached = control.learn(state, control.Observation(100.0, 1, 1), settings())
    assert breached is None and learned == state
    later = control.ControllerState(state.capacity, state.breaches, None, 3)
    learned, breached = control.learn(later, control.Observation(float("nan"), 1, 1), settings())
    assert breached is None and learned == later


def test_breaches_count_against_ready_replicas_not_requested_ones():
    fresh = control.ControllerState.fresh(2.0, 0.05)
    state = control.ControllerState(fresh.capacity, fresh.breaches, None, 1)
    # 10 replicas requested, 2 ready: 6 demand exceeds 2 x 2, a breach, though 10 x 2 would serve it
    _, breached = control.learn(state, control.Observation(6.0, 10, 2), settings())
    assert breached is True
    _, breached = control.learn(state, control.Observation(3.9, 10, 2), settings())
    assert breached is False


def test_a_learned_capacity_moves_up_and_a_declared_one_never_moves():
    fresh = control.ControllerState.fresh(1.0, 0.05, learned=True)
    state = control.ControllerState(fresh.capacity, fresh.breaches, None, 1)
    seen = control.Observation(30.0, 10, 10)  # 3 per ready replica, believed 1
    moved, _ = control.learn(state, seen, settings(learn_capacity=True))
    assert moved.capacity.mu[0] > state.capacity.mu[0]
    kept, _ = control.learn(state, seen, settings(learn_capacity=False))
    assert kept.capacity == state.capacity


def test_no_forecast_holds_the_current_count():
    state = control.ControllerState.fresh(2.0, 0.05)
    result = control.step(state, None, control.Observation(50.0, 7, 7), settings(), control.step_rng(0, 0))
    assert (result.replicas, result.reason, result.stale) == (7, HOLD_STALE, True)
    assert result.state.decisions == 1


def test_a_rising_forecast_scales_up_on_the_steps_a_new_replica_can_serve():
    state = control.ControllerState.fresh(2.0, 0.05)
    samples = np.tile(np.array([2.0, 2.0, 20.0, 20.0]), (200, 1))  # the rise comes after the lead of 2 steps
    result = control.step(state, samples, control.Observation(2.0, 1, 1), settings(), control.step_rng(0, 0))
    assert result.reason == SCALE_UP and result.replicas >= 10


SLOW = bh.Behavior(bh.ScalingRules(120, "Max", (bh.ScalingPolicy("Pods", 2, 180),)),
                   bh.ScalingRules(600, "Min", (bh.ScalingPolicy("Percent", 20, 240), bh.ScalingPolicy("Pods", 1, 60))))


@pytest.mark.parametrize("behavior", [None, SLOW], ids=["default", "slow"])
def test_a_restart_from_status_decides_exactly_as_an_uninterrupted_run(behavior):
    rng = np.random.default_rng(3)
    s = settings(behavior=behavior)
    kept = control.ControllerState.fresh(2.0, 0.05)
    restarted = kept
    replicas = 1
    for _ in range(25):
        samples = rng.gamma(3.0, 2.0, (200, s.horizon))
        seen = control.Observation(float(rng.gamma(3.0, 2.0)), replicas, replicas)
        a = control.step(kept, samples, seen, s, control.step_rng(0, kept.decisions))
        restored = st.restore(st.to_status(restarted, 2.0), 2.0, 50)  # every step through the object's status
        b = control.step(restored, samples, seen, s, control.step_rng(0, restored.decisions))
        assert (a.replicas, a.target, a.reason) == (b.replicas, b.target, b.reason)
        kept, restarted, replicas = a.state, b.state, a.replicas
    assert kept.decisions == 25
    if behavior is SLOW:  # the memory of the periods came back from status too
        assert restarted.recent_replicas.shape == (1, 3) and restarted.recent_targets.shape == (1, 6)


def test_the_behaviour_limits_the_decided_count_and_says_so():
    """Pods 2 per 180 s at 60 s: the period holds the last 2 decisions; from 4 (4 before them) at most 6.
    The reason names the limit, and the breach probability is that of the count set, not the target's. (The
    last target, 20, is what the 120 s scale-up window lets through.)"""
    s = settings(behavior=SLOW)
    fresh = control.ControllerState.fresh(2.0, 0.05)
    state = control.ControllerState(fresh.capacity, fresh.breaches, np.array([[20] * 6]), 10, None,
                                    np.array([[4, 4, 4]]))
    samples = np.tile(np.array([8.0, 8.0, 40.0, 40.0]), (200, 1))  # 20 replicas from the lead on
    result = control.step(state, samples, control.Observation(8.0, 4, 4), s, control.step_rng(0, 10))
    assert result.target >= 20 and (result.replicas, result.reason) == (6, LIMITED_STEP)
    assert result.decision.breach_probability[0] == 1.0  # 6 x 2 < 40 at every sample
    assert result.state.recent_replicas.tolist() == [[4, 4, 4]]
    assert result.state.recent_targets[0, -1] == result.target
    # a fresh controller sizes the workload it adopts at once; scale-up stabilisation waits for its own targets
    first = control.step(fresh, samples, control.Observation(8.0, 4, 4), s, control.step_rng(0, 0))
    assert first.replicas == first.target >= 20 and first.reason == SCALE_UP
