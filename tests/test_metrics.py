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
