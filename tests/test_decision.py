"""Decision math with plain arrays: no fakes needed."""

import numpy as np
import pytest

from harmony.decision import decide as D
from harmony.decision.decide import DecisionSettings, decide, risk_optimal_replicas


def samples_of(values, horizon=3):
    """[1, n, horizon] demand with each sample constant over the horizon."""
    v = np.asarray(values, dtype=float)
    return np.repeat(v[None, :, None], horizon, axis=2)


def test_risk_optimal_count_is_the_exact_empirical_quantile():
    demand = samples_of(np.arange(1, 101))  # needs 1..100 replicas at capacity 1
    cap = np.ones((1, 100))
    assert risk_optimal_replicas(demand, cap, np.array([0.0]))[0] == 100
    assert risk_optimal_replicas(demand, cap, np.array([0.05]))[0] == 95  # 5 samples (96..100) exceed 95
    assert risk_optimal_replicas(demand, cap * 2, np.array([0.05]))[0] == 48  # ceil(95 / 2)
    n = risk_optimal_replicas(demand, cap, np.array([0.05]))
    assert D.breach_probability(demand, cap, n)[0] <= 0.05
    assert D.breach_probability(demand, cap, n - 1)[0] > 0.05


def test_the_peak_over_the_horizon_counts():
    demand = np.zeros((1, 10, 4))
    demand[0, :, 2] = 7.0  # a spike at step 3 of 4
    n = risk_optimal_replicas(demand, np.ones((1, 10)), np.array([0.01]))
    assert n[0] == 7


def test_the_constraint_is_per_tick_not_on_the_peak_of_the_path():
    """Each of 4 steps breaches in a different 5% of the samples: every tick's breach probability is 5%,
    while 20% of the paths breach somewhere. At risk 5% the per-tick count suffices (what an SLA on the
    share of breached ticks counts); a bound on the path's peak would have bought the spikes too."""
    demand = np.full((1, 100, 4), 2.0)
    for h in range(4):
        demand[0, 5 * h:5 * h + 5, h] = 10.0
    cap = np.ones((1, 100))
    assert risk_optimal_replicas(demand, cap, np.array([0.05]))[0] == 2
    assert D.breach_probability(demand, cap, np.array([2]))[0] == pytest.approx(0.05)
    assert risk_optimal_replicas(demand, cap, np.array([0.04]))[0] == 10


def test_scale_up_is_sized_on_the_tick_a_new_replica_starts_to_serve():
    """lead_steps=2: replicas requested now serve from step 3 of 4 (index 2) on; a spike before then cannot
    be helped, and one after it is the next decision's to buy (its own first served tick)."""
    settings = DecisionSettings(min_replicas=1, max_replicas=50, stabilisation_steps=1, lead_steps=2)
    for spike_at, expected, reason in ((0, 3, D.STEADY), (2, 9, D.SCALE_UP), (3, 3, D.STEADY)):
        demand = np.full((1, 20, 4), 3.0)
        demand[0, :, spike_at] = 9.0
        dec, _ = decide(demand, np.ones((1, 20)), np.array([3]), 0.01, settings)
        assert (dec.replicas[0], dec.reason[0]) == (expected, reason), spike_at
    early = np.full((1, 20, 4), 3.0)
    early[0, :, 0] = 9.0
    # without a lead the early spike is bought too (the whole horizon counts for both directions)
    whole = DecisionSettings(min_replicas=1, max_replicas=50, stabilisation_steps=1)
    assert decide(early, np.ones((1, 20)), np.array([3]), 0.01, whole)[0].replicas[0] == 9


def test_scale_down_stays_safe_over_the_whole_horizon_with_a_lead():
    """A removed replica takes a cold start to come back, so the early spike keeps it."""
    settings = DecisionSettings(min_replicas=1, max_replicas=50, stabilisation_steps=1, lead_steps=2)
    early = np.full((1, 20, 4), 3.0)
    early[0, :, 1] = 7.0
    dec, _ = decide(early, np.ones((1, 20)), np.array([10]), 0.01, settings)
    assert dec.replicas[0] == 7 and dec.reason[0] == D.SCALE_DOWN
    dec, _ = decide(early, np.ones((1, 20)), np.array([5]), 0.01, settings)
    assert dec.replicas[0] == 5  # between what a scale-up would buy (3) and what a scale-down needs (7): hold


def test_decide_scales_up_and_reports_breach_probability():
    settings = DecisionSettings(min_replicas=1, max_replicas=50)
    demand = samples_of(np.linspace(10, 20, 200))
    dec, recent = decide(demand, np.ones((1, 200)), np.array([5]), 0.01, settings)
    assert dec.replicas[0] == dec.target[0] == 20
    assert dec.reason[0] == D.SCALE_UP
    assert dec.breach_probability[0] <= 0.01
    assert recent.shape == (1, max(settings.stabilisation_steps - 3, 0) + 1)


def test_bounds_and_step_limits():
    demand = samples_of(np.full(50, 100.0))
    dec, _ = decide(demand, np.ones((1, 50)), np.array([10]), 0.01, DecisionSettings(max_replicas=40))
    assert dec.replicas[0] == 40 and dec.reason[0] == D.LIMITED_MAX
    assert dec.breach_probability[0] == 1.0
    dec, _ = decide(demand, np.ones((1, 50)), np.array([10]), 0.01, DecisionSettings(max_step_up=5))
    assert dec.replicas[0] == 15 and dec.reason[0] == D.LIMITED_STEP
    low = samples_of(np.zeros(50))
    dec, _ = decide(low, np.ones((1, 50)), np.array([0]), 0.01, DecisionSettings(min_replicas=2))
    assert dec.replicas[0] == 2 and dec.reason[0] == D.LIMITED_MIN


def test_scale_down_waits_for_the_part_of_the_window_the_forecast_does_not_cover():
    settings = DecisionSettings(stabilisation_steps=6, max_replicas=100)  # forecast covers 3 of 6 steps
    low = samples_of(np.full(20, 4.0))
    current, recent, replicas = np.array([10]), None, []
    for _ in range(5):
        dec, recent = decide(low, np.ones((1, 20)), current, 0.01, settings, recent)
        replicas.append(int(dec.replicas[0]))
        current = dec.replicas
    # the first decisions hold (a fresh controller waits 6 - 3 = 3 more decisions), then it scales down
    assert replicas[:3] == [10, 10, 10] and replicas[3] == 4
    settings_short = DecisionSettings(stabilisation_steps=2, max_replicas=100)  # window inside the forecast
    dec, _ = decide(low, np.ones((1, 20)), np.array([10]), 0.01, settings_short)
    assert dec.replicas[0] == 4 and dec.reason[0] == D.SCALE_DOWN


def test_bounded_scale_down_step():
    low = samples_of(np.full(20, 1.0))
    settings = DecisionSettings(stabilisation_steps=1, max_step_down=3)
    dec, _ = decide(low, np.ones((1, 20)), np.array([10]), 0.01, settings)
    assert dec.replicas[0] == 7 and dec.reason[0] == D.LIMITED_STEP


def test_stale_or_missing_telemetry_holds_the_current_count():
    demand = samples_of(np.full(20, 1.0))
    settings = DecisionSettings(stabilisation_steps=1)
    dec, _ = decide(demand, np.ones((1, 20)), np.array([9]), 0.01, settings, stale=np.array([True]))
    assert dec.replicas[0] == 9 and dec.reason[0] == D.HOLD_STALE and np.isnan(dec.breach_probability[0])
    demand[0, 3, 1] = np.nan
    dec, _ = decide(demand, np.ones((1, 20)), np.array([9]), 0.01, settings)
    assert dec.replicas[0] == 9 and dec.reason[0] == D.HOLD_STALE


def test_tie_break_pays_for_spare_capacity_only_when_unserved_demand_is_penalised():
    rng = np.random.default_rng(0)
    demand = rng.gamma(4.0, 2.5, size=(1, 400, 4))
    cap = np.ones((1, 400))
    cheap = DecisionSettings(stabilisation_steps=1, unserved_penalty=0.0)
    costly = DecisionSettings(stabilisation_steps=1, unserved_penalty=1e4, tie_break_candidates=8)
    a, _ = decide(demand, cap, np.array([0]), 0.05, cheap)
    b, _ = decide(demand, cap, np.array([0]), 0.05, costly)
    assert b.target[0] > a.target[0]
    assert b.expected_unserved[0] < a.expected_unserved[0]


def test_vectorised_over_workloads_matches_one_by_one():
    rng = np.random.default_rng(1)
    demand = rng.lognormal(2.0, 0.5, size=(30, 200, 6))
    cap = rng.uniform(0.8, 1.2, size=(30, 200))
    current = rng.integers(1, 40, size=30)
    risk = rng.uniform(0.005, 0.1, size=30)
    settings = DecisionSettings(stabilisation_steps=1, max_step_down=4)
    together, _ = decide(demand, cap, current, risk, settings)
    for w in range(30):
        alone, _ = decide(demand[w:w + 1], cap[w:w + 1], current[w:w + 1], risk[w:w + 1], settings)
        assert alone.replicas[0] == together.replicas[w]
        assert alone.reason[0] == together.reason[w]


def test_settings_are_validated():
    with pytest.raises(ValueError, match="lead_steps"):
        DecisionSettings(lead_steps=-1)
    with pytest.raises(ValueError, match="min_replicas <= max_replicas"):
        DecisionSettings(min_replicas=5, max_replicas=2)
    with pytest.raises(ValueError, match="max_step_up"):
        DecisionSettings(max_step_up=0)
    with pytest.raises(ValueError, match=r"must be \[W, n, H\]"):
        decide(np.ones((2, 3)), np.ones((1, 3)), np.array([1]), 0.01, DecisionSettings())


def test_scale_to_zero_and_wake_a_cold_start_ahead_of_forecast_demand():
    """min_replicas 0: an idle forecast releases every replica (once the stabilisation window allows), and
    demand forecast for the first tick a replica requested now could serve wakes the workload now."""
    settings = DecisionSettings(min_replicas=0, max_replicas=20, stabilisation_steps=1, lead_steps=3)
    idle = np.zeros((1, 100, 5))
    dec, _ = decide(idle, np.ones((1, 100)), np.array([2]), 0.01, settings)
    assert (dec.replicas[0], dec.reason[0]) == (0, D.SCALE_DOWN)
    rising = np.zeros((1, 100, 5))
    rising[0, :, 3:] = 1.5  # demand arrives exactly when a replica requested now is ready
    dec, _ = decide(rising, np.ones((1, 100)), np.array([0]), 0.01, settings)
    assert (dec.replicas[0], dec.reason[0]) == (2, D.SCALE_UP)
    later = np.zeros((1, 100, 5))
    later[0, :, 4:] = 1.5  # one tick later: the next decision wakes it, in time
    dec, _ = decide(later, np.ones((1, 100)), np.array([0]), 0.01, settings)
    assert dec.replicas[0] == 0
