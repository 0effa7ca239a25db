"""Block-bootstrap intervals: block sizes, coverage of the estimate, pairing."""

import numpy as np

from harmony.backtest import bootstrap as bs


def test_blocks_are_a_day_or_an_hour_on_short_traces():
    assert bs.block_ticks(14 * 144, 600.0) == 144  # 14 days at 10 minutes: one day
    assert bs.block_ticks(2 * 1440, 60.0) == 60  # two days at 1 minute: one hour
    draws = bs.block_draws(1000, 144, 20, np.random.default_rng(0))
    assert all(len(d) == 1000 and d.min() >= 0 and d.max() < 1000 for d in draws)


def test_intervals_contain_the_estimate_and_widen_with_clustered_breaches():
    rng = np.random.default_rng(1)
    n = 20 * 144
    observed = np.ones(n, bool)
    provisioned = rng.integers(5, 10, n)
    spread = np.zeros(n, bool)
    spread[rng.choice(n, 29, replace=False)] = True
    clustered = np.zeros(n, bool)
    clustered[144 * 3:144 * 3 + 29] = True  # the same 29 breaches, all in one day
    draws = bs.block_draws(n, 144, 400, rng)
    a = bs.figures(spread, observed, provisioned, 600.0, draws)
    b = bs.figures(clustered, observed, provisioned, 600.0, draws)
    assert a.breach_rate.estimate == b.breach_rate.estimate == 29 / n
    for f in (a.breach_rate, a.gpu_hours, b.breach_rate):
        assert f.low <= f.estimate <= f.high
    assert b.breach_rate.high - b.breach_rate.low > 2 * (a.breach_rate.high - a.breach_rate.low)


def test_paired_differences_cancel_what_two_policies_share():
    rng = np.random.default_rng(2)
    n = 10 * 144
    base = rng.integers(1, 40, n) * (1 + (np.arange(n) // 144) % 3)  # some days much busier than others
    observed = np.ones(n, bool)
    none = np.zeros(n, bool)
    draws = bs.block_draws(n, 144, 300, rng)
    diff = bs.paired((none, observed, base + 1), (none, observed, base), 600.0, draws)
    assert diff.gpu_hours.estimate == n * 600.0 / 3600.0
    assert diff.gpu_hours.high - diff.gpu_hours.low < 1e-9  # one extra replica every tick: no spread at all
    alone = bs.figures(none, observed, base, 600.0, draws)
    assert alone.gpu_hours.high - alone.gpu_hours.low > 10
