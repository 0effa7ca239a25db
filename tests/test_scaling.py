import numpy as np

from harmony.forecasting.scaling import MinMaxScaler, RobustWindowScaler
from tests.helpers import make_frame


def test_minmax_maps_train_to_unit_interval_and_inverts():
    f = make_frame(steps=200, series=2, indicators=3)
    split = f.split()
    scaler = MinMaxScaler.fit(split.train)
    scaled = scaler.transform(split.train.values)
    np.testing.assert_allclose(scaled.min(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(scaled.max(axis=0), 1.0, atol=1e-12)
    np.testing.assert_allclose(scaler.inverse(scaler.transform(f.values)), f.values)
    restored = MinMaxScaler.from_dict(scaler.to_dict())
    np.testing.assert_allclose(restored.transform(f.values), scaler.transform(f.values))


def test_minmax_constant_column_maps_to_zero_and_test_values_are_not_clipped():
    train = np.ones((10, 1, 2))
    train[:, 0, 1] = np.linspace(0, 1, 10)
    scaler = MinMaxScaler.fit(train)
    out = scaler.transform(np.array([[[1.0, 2.0]]]))
    np.testing.assert_allclose(out, [[[0.0, 2.0]]])


def test_robust_window_scaler_uses_each_window_alone():
    rng = np.random.default_rng(0)
    windows = rng.normal(size=(4, 50, 1, 2)) * np.array([1, 100])[None, None, None, :] + 7
    scaler = RobustWindowScaler(axis=1)
    center, scale = scaler.fit_window(windows)
    assert center.shape == (4, 1, 1, 2)
    z = scaler.transform(windows, center, scale)
    np.testing.assert_allclose(np.median(z, axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(scaler.inverse(z, center, scale), windows)
    flat = np.full((1, 10, 1, 1), 3.0)
    c, s = scaler.fit_window(flat)
    assert s.item() == 1.0 and c.item() == 3.0
