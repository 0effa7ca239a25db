import numpy as np
import properscoring as ps
import pytest

from harmony.forecasting.forecast import Forecast
from harmony.forecasting.metrics import (
    crps_ensemble,
    crps_gaussian,
    interval_hit,
    pinball_loss,
    score,
    squared_error,
)


def test_crps_ensemble_hand_computed():
    # samples {1, 2, 3}, y = 2: E|X - y| = 2/3, E|X - X'| = 8/9, CRPS = 2/3 - 4/9 = 2/9
    assert crps_ensemble(np.array(2.0), np.array([1.0, 2.0, 3.0])) == pytest.approx(2 / 9)
    # a point mass is the absolute error
    assert crps_ensemble(np.array(5.0), np.full(10, 3.0)) == pytest.approx(2.0)


def test_crps_ensemble_matches_properscoring():
    rng = np.random.default_rng(1)
    samples = rng.gamma(2.0, size=(57, 4, 3))
    obs = rng.gamma(2.0, size=(4, 3))
    expected = ps.crps_ensemble(obs, np.moveaxis(samples, 0, -1))
    np.testing.assert_allclose(crps_ensemble(obs, samples), expected, rtol=1e-12)


def test_crps_of_a_large_gaussian_ensemble_approaches_the_closed_form():
    rng = np.random.default_rng(2)
    mu, sigma = 1.5, 0.7
    obs = np.array([-1.0, 1.5, 2.0, 4.0])
    samples = rng.normal(mu, sigma, size=(40000, 4))
    np.testing.assert_allclose(crps_ensemble(obs, samples), crps_gaussian(obs, mu, sigma), rtol=0.02)


def test_crps_gaussian_closed_form_values():
    # at the mean: sigma * (2 phi(0) - 1/sqrt(pi)) = sigma * (sqrt(2/pi) - 1/sqrt(pi))
    assert crps_gaussian(0.0, 0.0, 2.0) == pytest.approx(2 * (np.sqrt(2 / np.pi) - 1 / np.sqrt(np.pi)))
    np.testing.assert_allclose(crps_gaussian(np.array([0.3]), 0.1, 1.2), ps.crps_gaussian(0.3, 0.1, 1.2))


def test_pinball_and_coverage_hand_computed():
    assert pinball_loss(10.0, 8.0, 0.9) == pytest.approx(1.8)
    assert pinball_loss(10.0, 12.0, 0.9) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        pinball_loss(1.0, 1.0, 1.0)
    hits = interval_hit(np.array([1.0, 5.0, np.nan]), np.array([0.0, 0.0, 0.0]), np.array([2.0, 2.0, 2.0]))
    np.testing.assert_array_equal(hits[:2], [1.0, 0.0])
    assert np.isnan(hits[2])
    assert squared_error(np.array([1.0]), np.array([3.0]))[0] == 4.0


def test_score_uses_the_point_forecast_and_skips_missing_targets():
    samples = np.stack([np.full((1, 2, 1), v) for v in (0.0, 1.0, 2.0, 3.0, 4.0)])  # [5, 1, 2, 1]
    fc = Forecast(samples, point=np.full((1, 2, 1), 1.0))
    obs = np.array([[[2.0], [np.nan]]])
    m = score(obs, fc)
    assert m["mse"] == pytest.approx(1.0)  # (1 - 2)^2, the NaN target skipped
    assert m["mae"] == pytest.approx(1.0)
    assert m["n_targets"] == 1
    assert m["crps"] == pytest.approx(crps_ensemble(np.array(2.0), np.arange(5.0)))
    assert m["coverage90"] == 1.0


def test_energy_score_sees_the_joint_paths_that_per_step_crps_cannot():
    """Paths that move together, scored against a path that moves together: the forecast with the same
    per-step marginals but steps shuffled independently across samples scores worse on energy, equal on CRPS."""
    from harmony.forecasting.metrics import crps_ensemble, energy_score

    rng = np.random.default_rng(0)
    level = rng.normal(0, 1, 2000)
    joint = np.repeat(level[:, None, None], 6, axis=1)  # [n, H=6, 1]: each path flat at its own level
    broken = joint.copy()
    for h in range(6):
        broken[:, h, 0] = rng.permutation(broken[:, h, 0])
    truth = np.full((6, 1), 0.8)  # a flat path, as the joint forecast says paths are
    assert energy_score(truth, joint)[0] < energy_score(truth, broken)[0] - 0.05
    np.testing.assert_allclose(crps_ensemble(truth, joint).mean(), crps_ensemble(truth, broken).mean())
    assert energy_score(truth, np.repeat(truth[None], 5, axis=0))[0] == 0.0  # a perfect, certain forecast


def test_path_scores_score_the_horizon_maximum():
    from harmony.forecasting.forecast import Forecast
    from harmony.forecasting.metrics import path_scores

    samples = np.zeros((50, 4, 3, 1))
    samples[:, 2] = 5.0  # every path peaks at 5 at step 3
    obs = np.zeros((4, 3, 1))
    obs[2] = 5.0
    exact = path_scores(obs, Forecast(samples))
    assert exact["crps_max"] == 0.0 and exact["coverage90_max"] == 1.0
    obs[1, 0, 0] = 9.0  # one path peaks above every sample
    missed = path_scores(obs, Forecast(samples))
    assert missed["coverage90_max"] == 2 / 3 and missed["crps_max"] == 4 / 3
