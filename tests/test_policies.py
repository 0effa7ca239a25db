"""One contract test over every policy on real bundled data, then each policy's own semantics."""

import math

import numpy as np
import pytest

from harmony.backtest.policies import POLICIES, build_policy, parse_policies
from harmony.backtest.policies.base import Observation, PolicySetup
from harmony.backtest.runner import Backtest, BacktestSettings, run_policies
from harmony.decision.demand import demand_definition
from harmony.errors import HarmonyInputError
from harmony.telemetry.datasets import load_dataset


@pytest.fixture(scope="module")
def gentd26_backtest():
    frame, _ = load_dataset("gentd26").fill_gaps(5)
    return Backtest(frame, demand_definition("gentd26"), BacktestSettings(min_replicas=1, max_replicas=60))


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_policy_contract(name, gentd26_backtest):
    bt = gentd26_backtest
    res = bt.run(name)
    assert len(res.provisioned) == len(bt.demand) - bt.first_tick
    assert res.provisioned.min() >= 1 and res.provisioned.max() <= 60
    assert (res.ready <= res.provisioned).all()
    summary = res.summary()
    assert summary["gpu_hours"] > 0 and 0 <= summary["breach_rate"] <= 1 and 0 < summary["mean_utilisation"] <= 1
    again = bt.run(name)
    np.testing.assert_array_equal(res.provisioned, again.provisioned)  # repeatable
    cls = POLICIES[name]
    if cls.sweep:
        assert cls.default in cls.sweep and cls.knob


def test_oracle_is_the_lower_bound_of_breach_free_policies(gentd26_backtest):
    _, rows = run_policies(gentd26_backtest, list(POLICIES))
    oracle = next(r for r in rows if r["policy"] == "oracle")
    assert oracle["breach_rate"] == 0 and oracle["oracle_ratio"] == 1
    for row in rows:
        if row["breach_rate"] == 0:
            assert row["oracle_ratio"] >= 1.0


def setup(**kw):
    base = dict(train_demand=np.array([1.0, 8.0, 3.0]), capacity_per_replica=2.0, interval_s=60.0,
                cold_start_s=300.0, min_replicas=1, max_replicas=100, sla=0.01)
    base.update(kw)
    return PolicySetup(**base)


def obs(tick, demand, replicas, ready=None):
    return Observation(tick, np.array([demand]), replicas, replicas if ready is None else ready, False)


def test_hpa_ratio_rule_tolerance_and_unready_pods():
    hpa = build_policy("hpa", 0.5)
    hpa.start(setup())
    assert hpa.decide(obs(0, 10.5, 10)) == 10  # usage 0.525 vs 0.5: within 10% tolerance
    assert hpa.decide(obs(1, 16.0, 10)) == 16  # ratio 1.6 -> ceil(1.6 * 10)
    # 6 of 16 pods still starting: counted as idle, 16 / (16 * 1.0) = 1.0 -> no further scale-up
    assert hpa.decide(obs(2, 16.0, 16, ready=10)) == 16


def test_hpa_rate_limits_scale_up_and_stabilises_scale_down():
    hpa = build_policy("hpa", 0.5)
    hpa.start(setup())
    assert hpa.decide(obs(0, 100.0, 2)) == 6  # wants 100, default policy: max(+100%, +4)
    hpa.start(setup())
    hpa.decide(obs(0, 20.0, 20))  # recommendation 20
    for tick in range(1, 5):
        assert hpa.decide(obs(tick, 2.0, 20)) == 20  # wants 2, but 20 was recommended within 300 s
    assert hpa.decide(obs(5, 2.0, 20)) == 2


def test_keda_average_value_and_cooldown_to_zero():
    keda = build_policy("keda", 0.5)  # threshold 1.0 per replica
    keda.start(setup(min_replicas=0))
    assert keda.decide(obs(0, 9.0, 3)) == 7  # ceil(9 / 1) = 9, rate limited from 3 to max(2 x 3, 3 + 4) = 7
    keda.start(setup(min_replicas=0))
    assert keda.decide(obs(0, 7.0, 7)) == 7
    for tick in range(1, 6):
        keda.decide(obs(tick, 0.0, 7))
    assert keda.decide(obs(6, 0.0, 7)) == 0  # inactive for the 300 s cooldown: scaled to zero
    assert keda.decide(obs(7, 3.0, 0)) == 3  # activation from zero


def test_static_uses_the_training_peak():
    static = build_policy("static", 1.5)
    static.start(setup())
    assert static.decide(obs(0, 50.0, 1)) == math.ceil(8.0 * 1.5 / 2.0)


class FixedForecaster:
    def __init__(self, samples):
        self.samples = samples

    def demand_samples(self, tick):
        return self.samples


def test_predictive_never_scales_in_on_the_forecast_alone():
    pol = build_policy("predictive", 1.0)
    pol.start(setup(forecaster=FixedForecaster(np.full((10, 6), 2.0))))
    assert pol.decide(obs(0, 12.0, 10)) == 6  # reactive target tracking: ceil(12 / 2)
    pol.start(setup(forecaster=FixedForecaster(np.full((10, 6), 20.0))))
    assert pol.decide(obs(0, 2.0, 1)) == 10  # the forecast raises capacity ahead of demand
    pol.start(setup(forecaster=FixedForecaster(None)))
    assert pol.decide(obs(0, 2.0, 7)) == 7  # no forecast: hold, never scale in on missing data


def test_quantile_and_harmony_hold_without_a_forecast():
    for name in ("quantile", "harmony"):
        pol = build_policy(name)
        pol.start(setup(forecaster=FixedForecaster(None)))
        assert pol.decide(obs(0, 2.0, 9)) == 9
    q = build_policy("quantile", 0.9)
    q.start(setup(forecaster=FixedForecaster(np.arange(1.0, 101.0)[:, None].repeat(6, axis=1))))
    assert q.decide(obs(0, 1.0, 1)) == math.ceil(np.quantile(np.arange(1.0, 101.0), 0.9) / 2.0)


def test_harmony_tightens_after_breaches_and_keeps_the_declared_capacity():
    pol = build_policy("harmony", 0.01)
    pol.start(setup(forecaster=FixedForecaster(np.full((50, 6), 10.0))))
    before = pol.state.capacity
    for tick in range(20):
        pol.decide(Observation(tick, np.array([30.0]), 5, 5, True))  # 30 demand on 5 ready x 2: breached
    assert pol.state.decisions == 20 and pol.last.breached is True
    assert pol.state.capacity == before  # a declared capacity is never moved by breaches
    assert pol.state.breaches.effective_risk(0.01)[0] < 0.01


def test_policy_names_are_checked():
    assert parse_policies("all") == list(POLICIES)
    with pytest.raises(HarmonyInputError, match="unknown policy 'vpa' \\(--policies\\)"):
        parse_policies("hpa,vpa")
    with pytest.raises(HarmonyInputError, match="unknown policy"):
        build_policy("nope")
