"""Faults the decision must survive: unrepresentable numbers, corrupt restored state, bounds edited under a
running controller, absurd observations. Each saturates or holds conservatively, never scales down."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harmony.decision import decide as D
from harmony.decision import step as control
from harmony.decision.decide import DecisionSettings, decide, replica_counts
from harmony.decision.posteriors import CapacityPosterior
from harmony.operator import state as st

# -- 1. unrepresentable needs saturate at max_replicas ---------------------------------------------------------


@pytest.mark.parametrize(("demand", "capacity"), [
    (1e20, 1.0),      # a need beyond the int range: used to cast to INT_MIN and scale down to min
    (1e19, 1.0),
    (1.0, 1e-20),     # the same need from a capacity near zero
    (np.inf, 1.0),    # a demand too large to represent: used to be held as if missing
    (1e308, 1e-308),  # the division overflows to inf
    (5.0, 0.0),       # a replica that serves nothing: used to be sized as if it served 1.0
    (5.0, -1.0),
])
@pytest.mark.parametrize("settings", [
    DecisionSettings(min_replicas=1, max_replicas=50, stabilisation_steps=1),
    DecisionSettings(min_replicas=1, max_replicas=50, stabilisation_steps=1, lead_steps=2),
    DecisionSettings(min_replicas=1, max_replicas=50, stabilisation_steps=1, unserved_penalty=10.0),
], ids=["whole-horizon", "lead", "tie-break"])
def test_a_need_too_large_to_count_saturates_at_max_replicas(demand, capacity, settings):
    with np.errstate(all="raise"):  # no float warning on the way (the old cast warned "invalid value")
        dec, recent = decide(np.full((1, 200, 4), demand), np.full((1, 200), capacity), np.array([10]), 0.01,
                             settings)
    assert (dec.replicas[0], dec.target[0], dec.reason[0]) == (50, 50, D.LIMITED_MAX)
    assert dec.breach_probability[0] == 1.0  # says so: the SLA cannot be met at the bound
    assert recent.max() == 50


def test_replica_counts_clip_in_floats_before_the_int_cast():
    needed = np.array([1e20, np.inf, np.nan, -1e20, -np.inf, 0.0, 2.0, 2.5, 11.0, 12.0])
    assert replica_counts(needed, 11).tolist() == [11, 11, 11, 0, 0, 0, 2, 3, 11, 11]
    per_workload = replica_counts(np.array([[1e30, 1.0], [1e30, 1.0]]), np.array([3, 7]))
    assert per_workload.tolist() == [[3, 1], [7, 1]]
    # the standalone sizing functions saturate too, far above any fleet but inside the int range
    n = D.risk_optimal_replicas(np.full((1, 10, 2), 1e300), np.full((1, 10), 1e-300), np.array([0.01]))
    assert n[0] == D.MAX_COUNT


def test_a_current_count_that_is_not_a_whole_number_is_refused_not_cast():
    demand, cap = np.full((1, 20, 3), 1.0), np.ones((1, 20))
    with pytest.raises(ValueError, match="whole numbers"):
        decide(demand, cap, np.array([np.nan]), 0.01, DecisionSettings())
    dec, _ = decide(demand, cap, np.array([4.0]), 0.01, DecisionSettings(stabilisation_steps=1))
    assert dec.replicas[0] == 1


# -- 2. a restored posterior is validated, and follows the declared capacity ------------------------------------

def _blob(**changes) -> dict:
    state = control.ControllerState.fresh(2.0, 0.05)
    state = control.ControllerState(state.capacity, state.breaches, np.array([[10, 10]]), 7, 0.06)
    blob = st.to_status(state, 2.0)
    for key, value in changes.items():
        part, _, field = key.partition("__")
        if field:
            blob[part] = {**blob[part], field: value}
        else:
            blob[part] = value
    return blob


@pytest.mark.parametrize("changes", [
    {"capacity__mu": [-2.0]}, {"capacity__mu": [0.0]}, {"capacity__mu": [math.inf]}, {"capacity__mu": ["2"]},
    {"capacity__mu": [2.0, 2.0]}, {"capacity__kappa": [0.0]}, {"capacity__alpha": [1.0]},
    {"capacity__beta": [-1.0]}, {"capacity__beta": [math.nan]}, {"capacity__beta": [True]},
    {"breaches__a": [-1.0]}, {"breaches__b": [math.inf]}, {"breaches__a": [0.0], "breaches__b": [0.0]},
    {"breaches__forgetting": 0.0}, {"breaches__forgetting": 1.5}, {"breaches__forgetting": math.nan},
    {"recentTargets": [-1]}, {"recentTargets": [2.5]}, {"recentTargets": [True]}, {"recentTargets": ["3"]},
    {"recentTargets": [10] * (st.MAX_RECENT_TARGETS + 1)}, {"recentTargets": 10},
    {"decisions": -1}, {"decisions": 1.5}, {"decisions": "7"},
    {"risk": 0.0}, {"risk": 1.5}, {"risk": math.nan}, {"risk": "0.06"},
    {"declaredCapacity": -2.0}, {"declaredCapacity": "2.0"},
], ids=lambda changes: ",".join(f"{k}={v!r}"[:40] for k, v in changes.items()))
def test_a_corrupt_but_parseable_posterior_is_not_restored(changes):
    assert st.restore(_blob(), 2.0, 50) is not None
    assert st.restore(_blob(**changes), 2.0, 50) is None


def test_a_corrupt_posterior_does_not_size_the_first_decision():
    """A capacity mean of 0.5 where 2.0 is declared used to be trusted: 10 -> 40 replicas at once."""
    s = control.ControlSettings.build(sla=0.05, interval_s=60.0, cold_start_s=60.0, min_replicas=1,
                                      max_replicas=50, stabilisation_s=60.0)
    corrupt = _blob(capacity__mu=[0.5])
    state = st.restore(corrupt, 2.0, 50) or control.ControllerState.fresh(2.0, 0.05)
    samples = np.full((200, s.horizon), 19.0)
    result = control.step(state, samples, control.Observation(19.0, 10, 10), s, control.step_rng(0, 0))
    assert result.replicas == 10
    assert float(result.state.capacity.mu[0]) == 2.0


def test_editing_the_declared_capacity_discards_the_posterior():
    made = control.ControllerState.fresh(2.0, 0.05)
    declared = st.to_status(made, 2.0)
    assert st.restore(declared, 2.0, 50) is not None
    assert st.restore(declared, 3.0, 50) is None        # capacityPerReplica edited
    assert st.restore(declared, None, 50) is None       # declaration removed: learn from a fresh guess
    learned = st.to_status(control.ControllerState.fresh(2.0, 0.05, learned=True), None)
    assert learned["declaredCapacity"] == 0.0           # a number, never null (a merge patch deletes a null)
    assert st.restore(learned, None, 50) is not None
    assert st.restore(learned, 2.0, 50) is None         # declared where it was learned
    legacy = {k: v for k, v in declared.items() if k != "declaredCapacity"}  # written before the field existed
    assert st.restore(legacy, 2.0, 50) is not None
    assert st.restore(legacy, 2.2, 50) is not None      # within the declared figure's tolerance
    assert st.restore(legacy, 3.0, 50) is None
    assert st.restore(legacy) is not None               # the old call signature still restores


def test_recent_targets_above_a_lowered_max_do_not_keep_the_count_above_it():
    s = control.ControlSettings.build(sla=0.05, interval_s=60.0, cold_start_s=60.0, min_replicas=1,
                                      max_replicas=50, stabilisation_s=600.0)
    blob = _blob(recentTargets=[80] * 9)
    state = st.restore(blob, 2.0, 50)
    assert state.recent_targets.max() == 50
    result = control.step(state, np.full((200, s.horizon), 4.0), control.Observation(4.0, 80, 80), s,
                          control.step_rng(0, state.decisions))
    assert (result.replicas, result.reason) == (50, D.LIMITED_MAX)


# -- 3. the hard bounds override the stabilisation window, the step limits and the stale hold ------------------

@pytest.mark.parametrize("stale", [False, True])
@pytest.mark.parametrize("level", [4.0, 400.0])  # a low forecast (a scale-down held) and a high one (over max)
def test_lowering_max_replicas_below_the_current_count_takes_effect_at_once(level, stale):
    settings = DecisionSettings(min_replicas=1, max_replicas=50, stabilisation_steps=10, max_step_down=2)
    dec, recent = decide(np.full((1, 100, 3), level), np.ones((1, 100)), np.array([80]), 0.01, settings,
                         stale=np.array([stale]))
    assert (dec.replicas[0], dec.reason[0]) == (50, D.LIMITED_MAX)
    assert dec.target[0] <= 50 and recent.max() <= 50


@pytest.mark.parametrize("stale", [False, True])
def test_raising_min_replicas_above_the_current_count_takes_effect_at_once(stale):
    settings = DecisionSettings(min_replicas=10, max_replicas=50, max_step_up=1)
    dec, _ = decide(np.full((1, 100, 3), 1.0), np.ones((1, 100)), np.array([2]), 0.01, settings,
                    stale=np.array([stale]))
    assert (dec.replicas[0], dec.target[0], dec.reason[0]) == (10, 10, D.LIMITED_MIN)


def test_a_stale_hold_within_bounds_is_still_a_hold():
    settings = DecisionSettings(min_replicas=1, max_replicas=50)
    dec, _ = decide(np.full((1, 100, 3), 1.0), np.ones((1, 100)), np.array([30]), 0.01, settings,
                    stale=np.array([True]))
    assert (dec.replicas[0], dec.reason[0]) == (30, D.HOLD_STALE)


# -- 4. absurd observations do not poison the learned state -----------------------------------------------------

def _learning_state() -> control.ControllerState:
    fresh = control.ControllerState.fresh(2.0, 0.05, learned=True)
    return control.ControllerState(fresh.capacity, fresh.breaches, None, 1, 0.05)


def _finite(state: control.ControllerState) -> bool:
    numbers = [*state.capacity.to_dict().values(), state.breaches.a, state.breaches.b]
    return all(np.isfinite(v).all() for v in numbers) and 0 < state.risk < 1


@pytest.mark.parametrize("demand", [1e308, np.inf, 1e200, 1e150])
@pytest.mark.parametrize("learn_capacity", [True, False])
def test_an_absurd_demand_is_a_breach_and_leaves_the_state_finite(demand, learn_capacity):
    s = control.ControlSettings.build(sla=0.05, interval_s=60.0, cold_start_s=60.0, min_replicas=1,
                                      max_replicas=50, learn_capacity=learn_capacity)
    state = _learning_state()
    with np.errstate(all="raise"):
        for _ in range(3):
            state, breached = control.learn(state, control.Observation(demand, 10, 10), s)
            assert breached is True  # demand beyond any capacity the fleet has
    assert _finite(state) and state.risk < 0.05
    # a learned capacity moves by a bounded factor a tick, so the next decision still buys replicas
    assert float(state.capacity.mu[0]) <= 2.0 * control.CAPACITY_MEASUREMENT_MAX_RATIO ** 3
    result = control.step(state, np.full((200, s.horizon), 100.0), control.Observation(100.0, 10, 10), s,
                          control.step_rng(0, state.decisions))
    assert _finite(result.state) and result.replicas > 1


@pytest.mark.parametrize("demand", [-5.0, -np.inf, -1e308])
def test_a_negative_demand_is_missing(demand):
    """A negative demand is a broken reading; taken as a value it would count as no breach and relax the risk."""
    s = control.ControlSettings.build(sla=0.05, interval_s=60.0, cold_start_s=60.0, min_replicas=1,
                                      max_replicas=50, learn_capacity=True)
    state = _learning_state()
    learned, breached = control.learn(state, control.Observation(demand, 10, 10), s)
    assert breached is None and learned == state


def test_a_kept_risk_that_is_not_a_probability_falls_back_to_the_sla():
    s = control.ControlSettings.build(sla=0.05, interval_s=60.0, cold_start_s=60.0, min_replicas=1,
                                      max_replicas=50)
    fresh = control.ControllerState.fresh(2.0, 0.05)
    for risk in (-0.5, 0.0, 1.0, math.inf, math.nan):
        state = control.ControllerState(fresh.capacity, fresh.breaches, None, 1, risk)
        assert state.risk_level(s) == 0.05
        learned, _ = control.learn(state, control.Observation(1.0, 10, 10), s)
        assert 0 < learned.risk < 1


def test_a_capacity_update_that_cannot_be_represented_is_not_applied():
    prior = CapacityPosterior.prior([2.0, 2.0], workloads=2)
    with np.errstate(all="raise"):
        post = prior.update(np.array([[np.inf], [3.0]]))  # inf measures nothing; the other workload learns
        assert post.mu[0] == 2.0 and post.kappa[0] == prior.kappa[0] and post.mu[1] > 2.0
        huge = prior.update(np.array([[1e200], [np.nan]]))  # its squared spread overflows: kept as it was
    np.testing.assert_array_equal(huge.beta, prior.beta)
    assert all(np.isfinite(v).all() for v in huge.to_dict().values())
