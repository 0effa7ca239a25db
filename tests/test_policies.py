"""One contract test over every policy on real bundled data, then each policy's own semantics."""

import math

import numpy as np
import pytest

from harmony.backtest.policies import POLICIES, build_policy, parse_policies
from harmony.backtest.policies.base import Observation, PolicySetup
from harmony.backtest.policies.harmony_via_hpa import HarmonyViaHPA
from harmony.backtest.policies.keda import KEDA
from harmony.backtest.policies.kpa import KPA
from harmony.backtest.policy_names import POLICY_NAMES
from harmony.backtest.runner import Backtest, BacktestSettings, run_policies
from harmony.decision.demand import demand_definition
from harmony.errors import HarmonyInputError
from harmony.telemetry.datasets import load_dataset


@pytest.fixture(scope="module")
def gentd26_backtest():
    frame, _ = load_dataset("gentd26").fill_gaps(5)
    return Backtest(frame, demand_definition("gentd26"), BacktestSettings(min_replicas=1, max_replicas=60))


def test_the_light_names_table_is_the_registry_s_names():
    # what `harmony backtest --help` lists without importing the policies (the registry refuses to import otherwise)
    assert tuple(POLICIES) == POLICY_NAMES


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


def contract_setup(**kw):
    demand = 6.0 + 4.0 * np.sin(np.arange(40) / 5.0)
    base = dict(train_demand=demand[:20], capacity_per_replica=2.0, interval_s=60.0, cold_start_s=180.0,
                min_replicas=1, max_replicas=12, sla=0.01, forecaster=FixedForecaster(np.full((20, 4), 7.0)),
                future_demand=demand[20:], first_tick=20)
    base.update(kw)
    return PolicySetup(**base), demand


@pytest.mark.parametrize("min_replicas", [0, 1])
@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_policy_decides_on_a_normal_and_on_a_missing_tick(name, min_replicas):
    cls = POLICIES[name]
    pol = build_policy(name)
    assert pol.label == (f"{name}({cls.knob}={cls.default:g})" if cls.knob else name)
    setup, demand = contract_setup(min_replicas=min_replicas)
    pol.start(setup)
    history = demand[:20].copy()
    warm = pol.decide(Observation(19, history, min_replicas, min_replicas))
    assert isinstance(warm, int) and min_replicas <= warm <= 12
    normal = pol.decide(Observation(20, demand[:21], warm, warm, False))
    assert isinstance(normal, int) and min_replicas <= normal <= 12
    gap = np.append(demand[:21], np.nan)
    held = pol.decide(Observation(21, gap, normal, normal, False))
    assert isinstance(held, int) and min_replicas <= held <= 12
    if name != "oracle":  # the oracle reads only the future, never the missing tick
        assert held == normal
    again = pol.decide(Observation(22, np.append(gap, np.nan), held, held, False))
    assert isinstance(again, int) and min_replicas <= again <= 12


@pytest.fixture(scope="module")
def gentd26_with_a_gap():
    """gentd26 with every indicator missing for 30 ticks of the evaluated span (a gap over --max-gap)."""
    frame, _ = load_dataset("gentd26").fill_gaps(5)
    first = Backtest(frame, demand_definition("gentd26"), BacktestSettings()).first_tick
    values = frame.values.copy()
    values[first + 100:first + 130] = np.nan
    bt = Backtest(frame.with_values(values), demand_definition("gentd26"),
                  BacktestSettings(min_replicas=1, max_replicas=60))
    return bt, 100


def test_a_30_tick_gap_never_raises_is_unknown_and_held(gentd26_with_a_gap):
    bt, start = gentd26_with_a_gap
    results, rows = run_policies(bt, list(POLICIES))
    for res, row in zip(results, rows, strict=True):
        assert row["unknown_ticks"] == 30 and res.unknown_ticks == 30
        assert not res.breaches[start:start + 30].any()  # unknown ticks are no breaches
        assert res.breach_rate == pytest.approx(res.breaches.sum() / (len(res.demand) - 30))
        if res.policy.startswith("harmony("):
            # the operator's staleness rule: a forecast while the newest demand is at most 3 intervals old,
            # then hold; constant once the decisions of the 4th missing tick on are in force
            assert len(set(res.provisioned[start + 5:start + 31])) == 1, res.policy
        elif not res.policy.startswith("oracle"):
            # every count decided on a missing tick is the one in force: constant from the gap's 2nd tick on
            assert len(set(res.provisioned[start + 1:start + 31])) == 1, res.policy


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
    # the simulator's warm decision sizes the steady state: an HPA that has been running sits at its count
    assert hpa.decide(Observation(0, np.array([100.0]), 2, 2)) == 100
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
    for tick in range(1, 5):  # inactive, cooling down: the HPA keeps 7 (its 300 s stabilisation), KEDA waits
        assert keda.decide(obs(tick, 0.0, 7)) == 7
    assert keda.decide(obs(5, 0.0, 7)) == 1  # the HPA's window has passed: down to its minReplicas 1
    # lastActiveTime (0 s) + 300 s < now only at 360 s: KEDA scales to zero
    assert keda.decide(obs(6, 0.0, 1)) == 0
    assert keda.decide(obs(7, 0.0, 0)) == 0  # stays at zero: the HPA is disabled at 0 replicas
    assert keda.decide(obs(8, 3.0, 0)) == 3  # activation: KEDA sets 1, the HPA's next sync takes it to 3
    assert keda.decide(obs(9, 90.0, 0)) == 5  # from 1, the HPA's scale-up policy: max(2 x 1, 1 + 4)


def test_keda_activation_threshold_and_missing_ticks():
    keda = KEDA(0.5, activation_threshold=0.5)  # at or below 0.5 the workload is inactive
    keda.start(setup(min_replicas=0))
    assert keda.decide(obs(0, 0.5, 0)) == 0  # not above the activation threshold: stays at zero
    assert keda.decide(obs(1, 0.6, 0)) == 1  # active: 0 -> 1 -> ceil(0.6 / 1)
    assert keda.decide(obs(2, math.nan, 1)) == 1  # the scaler errors: held, and not an active tick
    for tick in range(3, 7):
        assert keda.decide(obs(tick, 0.4, 1)) == 1  # last active at tick 1: cooling down
    assert keda.decide(obs(7, 0.4, 1)) == 0  # 360 s after the last active tick: scaled to zero
    keda = build_policy("keda", 0.5)
    keda.start(setup(min_replicas=1))  # minReplicaCount 1: KEDA never scales to zero, the HPA does all
    for tick in range(20):
        assert keda.decide(obs(tick, 0.0, 1)) == 1


def test_kpa_panic_mode_never_scales_down_until_a_stable_window_without_panic():
    kpa = build_policy("kpa", 0.5)  # TargetValue = 0.5 x capacity 2 = 1 per replica
    kpa.start(setup())
    assert kpa.decide(obs(0, 4.0, 4)) == 4  # stable mode: ceil(4 / 1)
    assert not kpa.panicking
    assert kpa.decide(obs(1, 3.0, 4)) == 3  # stable mode scales down at once
    # 10 wanted against 3 ready: 333% >= the 200% panic threshold
    assert kpa.decide(obs(2, 10.0, 3)) == 10 and kpa.panicking
    # panicking: no scale-down; panicTime (120 s) + the 60 s stable window is not before 180 s
    assert kpa.decide(obs(3, 2.0, 10, ready=3)) == 10 and kpa.panicking
    assert kpa.decide(obs(4, 2.0, 10, ready=3)) == 2 and not kpa.panicking  # 180 s < 240 s: back to stable
    # the threshold counts ready pods: 7 wanted with 4 of 7 pods still starting is a panic
    assert kpa.decide(obs(5, 7.0, 7, ready=3)) == 7 and kpa.panicking


def test_kpa_scales_to_zero_only_after_the_stable_window_and_the_grace_period():
    kpa = build_policy("kpa", 0.5)
    kpa.start(setup(min_replicas=0))
    assert kpa.decide(obs(0, 3.0, 3)) == 3
    assert kpa.decide(obs(1, 0.0, 3)) == 1  # a stable window of zero demand: marked inactive, one pod kept
    assert kpa.decide(obs(2, 0.0, 1)) == 0  # inactive for 60 s > the 30 s grace period: scaled to zero
    assert kpa.decide(obs(3, 0.0, 0)) == 0
    assert kpa.decide(obs(4, 0.01, 0)) == 1  # any demand activates from zero
    assert kpa.decide(obs(5, 0.0, 1, ready=0)) == 1  # activating (pod not ready yet): no decision to zero
    kpa.start(setup(min_replicas=1))
    assert [kpa.decide(obs(t, 0.0, 1)) for t in range(5)] == [1] * 5  # min-scale 1: never zero


def test_kpa_windows_span_several_ticks_on_finer_telemetry():
    kpa = build_policy("kpa", 0.5)
    kpa.start(setup(interval_s=10.0))
    assert (kpa.stable_ticks, kpa.panic_ticks) == (6, 1)  # 60 s stable window, 6 s panic window
    history = np.array([1.0] * 5 + [4.0])
    assert kpa.decide(Observation(4, history[:5], 1, 1)) == 1  # the warm decision
    # stable average 1.5 -> 2 pods; panic window (the last tick) 4 -> 4 pods, 400% of 1 ready: panic
    assert kpa.decide(Observation(5, history, 1, 1, False)) == 4 and kpa.panicking
    longer = KPA(0.5, stable_window_s=120.0)  # autoscaling.knative.dev/window: 120s
    longer.start(setup(interval_s=10.0))
    assert (longer.stable_ticks, longer.panic_ticks) == (12, 2)


class ScriptedRecommendation(HarmonyViaHPA):
    """harmony-via-hpa with the operator's recommendation scripted per tick (the HPA side under test)."""

    def __init__(self, script, **kw):
        super().__init__(**kw)
        self.script = script

    def recommend(self, obs):
        return self.script[obs.tick]


def test_harmony_via_hpa_tolerance_ignores_one_replica_above_ten():
    pol = ScriptedRecommendation({0: 12, 1: 10, 2: 13, 3: 11}, metric_delay_ticks=0)
    pol.start(setup())
    assert pol.decide(obs(0, 1.0, 11)) == 11  # 12 / 11: within the 10% tolerance
    assert pol.decide(obs(1, 1.0, 11)) == 11  # 10 / 11: within
    assert pol.decide(obs(2, 1.0, 11)) == 13  # 13 / 11 = 1.18: applied
    pol = ScriptedRecommendation({0: 4}, metric_delay_ticks=0)
    pol.start(setup())
    assert pol.decide(obs(0, 1.0, 3)) == 4  # below ten replicas one replica is more than 10%


def test_harmony_via_hpa_delay_and_scale_down_stabilisation():
    script = {0: 20, 1: 20, **{t: 5 for t in range(2, 12)}}
    pol = ScriptedRecommendation(script)  # one tick of Prometheus round trip
    pol.start(setup())
    assert pol.decide(obs(0, 1.0, 20)) == 20  # warm start: the metric has read 20
    assert pol.decide(obs(1, 1.0, 20)) == 20
    assert pol.decide(obs(2, 1.0, 20)) == 20  # 5 exported now, read next tick
    # 5 read from tick 3 on; 20 was the HPA's recommendation up to tick 2, inside the 300 s window until tick 7
    assert [pol.decide(obs(t, 1.0, 20)) for t in range(3, 8)] == [20, 20, 20, 20, 5]
    assert pol.decide(obs(8, math.nan, 5)) == 5  # no metric through Prometheus: held


def test_harmony_via_hpa_applies_the_operators_exported_target():
    pol = build_policy("harmony-via-hpa", 0.01)
    pol.start(setup(forecaster=FixedForecaster(np.full((50, 6), 10.0))))
    first = pol.decide(obs(0, 10.0, 1))
    exported = pol.operator.last.target  # harmony_recommended_replicas of this tick
    assert exported >= 5 and first == min(exported, 5)  # from 1: the HPA's max(+100%, +4) scale-up policy
    assert pol.decide(obs(1, 10.0, first)) == pol.exported[0] == exported  # read one tick later


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
    for name in ("quantile", "harmony", "harmony-via-hpa"):
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
    assert pol.state.risk < 0.01 and pol.state.breaches.mean[0] > 0.01  # tightened after breaches


def test_policy_names_are_checked():
    assert parse_policies("all") == list(POLICIES)
    with pytest.raises(HarmonyInputError, match="unknown policy 'vpa' \\(--policies\\)"):
        parse_policies("hpa,vpa")
    with pytest.raises(HarmonyInputError, match="unknown policy"):
        build_policy("nope")
