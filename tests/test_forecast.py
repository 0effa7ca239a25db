import numpy as np
import pytest

from harmony.forecasting.forecast import Forecast


def test_mean_quantile_interval_and_exceedance():
    samples = np.arange(101, dtype=float).reshape(101, 1, 1, 1) * np.ones((1, 2, 3, 4))
    fc = Forecast(samples, indicators=["a", "b", "c", "d"])
    assert fc.n_samples == 101 and fc.horizon == 2
    np.testing.assert_allclose(fc.mean, 50.0)
    np.testing.assert_allclose(fc.quantile(0.9), 90.0)
    assert fc.quantile([0.1, 0.5]).shape == (2, 2, 3, 4)
    lo, hi = fc.interval(0.8)
    np.testing.assert_allclose(lo, 10.0)
    np.testing.assert_allclose(hi, 90.0)
    np.testing.assert_allclose(fc.prob_exceeds(89.5), 11 / 101)
    thresholds = np.array([0.0, 200.0]).reshape(2, 1, 1)  # per horizon step
    p = fc.prob_exceeds(thresholds)
    np.testing.assert_allclose(p[0], 100 / 101)
    np.testing.assert_allclose(p[1], 0.0)
    assert fc.indicator("c").shape == (101, 2, 3)
    np.testing.assert_allclose(fc.point_forecast, fc.mean)


def test_validation_and_map():
    with pytest.raises(ValueError, match="n_samples, horizon"):
        Forecast(np.zeros((3, 2, 1)))
    with pytest.raises(ValueError, match="point shape"):
        Forecast(np.zeros((3, 2, 1, 1)), point=np.zeros((1, 1, 1)))
    with pytest.raises(ValueError, match="quantile levels"):
        Forecast(np.zeros((3, 2, 1, 1))).quantile(1.5)
    with pytest.raises(KeyError):
        Forecast(np.zeros((3, 2, 1, 1)), indicators=["a"]).indicator("zz")
    fc = Forecast(np.ones((3, 2, 1, 1)), point=np.ones((2, 1, 1))).map(lambda x: 2 * x + 1)
    np.testing.assert_allclose(fc.samples, 3.0)
    np.testing.assert_allclose(fc.point, 3.0)
