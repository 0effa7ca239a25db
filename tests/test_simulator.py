"""The replay loop with scripted policies: timing of cold starts, immediate scale-downs, cost and metrics."""

import numpy as np
import pytest

from harmony.backtest.policies.base import Observation, Policy, PolicySetup
from harmony.backtest.simulator import Fleet, simulate


class Scripted(Policy):
    """Returns replicas from a script keyed by tick (holds otherwise); records what it saw."""

    name = "scripted"

    def __init__(self, script, initial=2):
        super().__init__()
        self.script, self.initial, self.seen = script, initial, []

    def decide(self, obs: Observation) -> int:
        self.seen.append(obs)
        if obs.breached is None:
            return self.initial
        return self.script.get(obs.tick, obs.replicas)


def setup(cold_s=180.0, interval_s=60.0):
    return PolicySetup(train_demand=np.ones(10), capacity_per_replica=1.0, interval_s=interval_s,
                       cold_start_s=cold_s, min_replicas=0, max_replicas=100, sla=0.01, first_tick=10)


def test_scale_up_is_ready_after_the_cold_start_and_scale_down_is_immediate():
    demand = np.full(20, 1.5)
    demand[13:] = 4.5
    policy = Scripted({10: 5, 16: 3})  # ask for 5 at tick 10 (ready at 13), drop to 3 at tick 16
    res = simulate(policy, demand, 10, setup(cold_s=180))
    np.testing.assert_array_equal(res.provisioned, [2, 5, 5, 5, 5, 5, 5, 3, 3, 3])
    np.testing.assert_array_equal(res.ready, [2, 2, 2, 5, 5, 5, 5, 3, 3, 3])
    # breaches: ticks 17.. have demand 4.5 > 3 ready
    np.testing.assert_array_equal(res.breaches, [False] * 7 + [True] * 3)
    assert res.breach_rate == pytest.approx(0.3)
    assert res.gpu_hours == pytest.approx(res.provisioned.sum() / 60)
    assert res.scaling_actions == 2
    assert res.unserved_fraction == pytest.approx(3 * 1.5 / demand[10:].sum())


def test_policy_sees_only_the_past():
    demand = np.arange(20, dtype=float)
    policy = Scripted({})
    simulate(policy, demand, 10, setup())
    for obs in policy.seen:
        assert len(obs.demand_history) == obs.tick + 1
        assert obs.demand == demand[obs.tick]


def test_fleet_cancels_starting_replicas_before_ready_ones():
    fleet = Fleet(ready=3)
    fleet.scale_to(6, tick=0, cold_start_ticks=5)
    assert (fleet.ready, len(fleet.starting)) == (3, 3)
    fleet.scale_to(4, tick=1, cold_start_ticks=5)
    assert (fleet.ready, len(fleet.starting)) == (3, 1)
    fleet.scale_to(1, tick=2, cold_start_ticks=5)
    assert (fleet.ready, len(fleet.starting)) == (1, 0)
    fleet.scale_to(2, tick=3, cold_start_ticks=2)
    fleet.advance(4)
    assert fleet.ready == 1
    fleet.advance(5)
    assert fleet.ready == 2


def test_missing_demand_is_neither_a_breach_nor_counted():
    demand = np.full(20, 5.0)
    demand[12] = np.nan
    res = simulate(Scripted({}, initial=1), demand, 10, setup())
    assert res.breaches.sum() == 9 and res.breach_rate == pytest.approx(1.0)
    with pytest.raises(ValueError, match="first_tick"):
        simulate(Scripted({}), demand, 0, setup())


def test_a_30_tick_gap_is_unknown_not_a_breach_and_counted():
    demand = np.full(80, 3.0)
    demand[40:70] = np.nan  # a gap longer than any fill limit, inside the evaluated span
    res = simulate(Scripted({}, initial=2), demand, 10, setup())
    assert res.unknown_ticks == 30 and res.summary()["unknown_ticks"] == 30
    assert res.observed.sum() == 40
    assert res.breaches.sum() == 40 and res.breach_rate == pytest.approx(1.0)  # 3 > 2 ready on every known tick
    assert res.gpu_hours == pytest.approx(70 * 2 / 60)  # unknown ticks still cost their replicas
    assert res.mean_utilisation == pytest.approx(2.0 / 2.0)  # served over paid on the known ticks only
    assert res.unserved_fraction == pytest.approx(40 * 1.0 / (40 * 3.0))
