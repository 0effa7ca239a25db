import time

import numpy as np
import pandas as pd
import pytest

from harmony.errors import HarmonyInputError
from harmony.telemetry.datasets import get_source, load_dataset
from harmony.telemetry.datasets.synthetic import simulate

NAMES = ("requests", "gpu_busy", "gpu_memory_bytes", "queue_size", "network_bytes")
DAY_10MIN = 144


@pytest.fixture(scope="module")
def default():
    return load_dataset("synthetic")


@pytest.fixture(scope="module")
def fortnight():
    """40 workloads, two weeks at 10 minutes, with the demand noise kept for checks."""
    return simulate(seed=7, series=40, steps=14 * DAY_10MIN, interval="10min", keep_noise=True)


def autocorr(x, lag):
    x = x - x.mean()
    return float((x[lag:] * x[:-lag]).sum() / (x * x).sum())


def kurtosis(x):
    x = np.asarray(x, dtype=np.float64).ravel()
    x = x - x.mean()
    return float((x**4).mean() / (x**2).mean() ** 2)  # Pearson: 3 for a normal


def test_default_shape_indicators_levels(default):
    assert get_source("synthetic").default_path == ""
    assert default.values.shape == (7 * 24 * 60, 3, 5)
    assert default.series == ("synthetic-000", "synthetic-001", "synthetic-002")
    assert default.indicator_names == NAMES
    assert default.levels == (1, 2, 2, 1, 3)
    assert [ind.unit for ind in default.indicators] == ["requests/s", "gpus", "bytes", "requests", "bytes/s"]
    assert default.interval == pd.Timedelta("1min")
    assert default.start == pd.Timestamp("2024-01-01")
    assert np.isfinite(default.values).all()
    assert (default.values >= 0).all()


def test_same_seed_same_frame_other_seed_differs(default):
    again = load_dataset("synthetic", seed=0)
    np.testing.assert_array_equal(again.values, default.values)
    other = load_dataset("synthetic", seed=1)
    assert other.values.shape == default.values.shape
    assert not np.allclose(other.values, default.values)


def test_options_arrive_as_strings_from_the_cli():
    frame = load_dataset("synthetic", seed="3", series="2", steps="50", interval="5min")
    assert frame.values.shape == (50, 2, 5) and frame.interval == pd.Timedelta("5min")
    np.testing.assert_array_equal(frame.values, load_dataset("synthetic", seed=3, series=2, steps=50,
                                                             interval="5min").values)
    with pytest.raises(HarmonyInputError, match="--series 'many'"):
        load_dataset("synthetic", series="many")
    with pytest.raises(HarmonyInputError, match="--steps 1 must be at least 2"):
        load_dataset("synthetic", steps=1)
    with pytest.raises(HarmonyInputError, match="interval"):
        load_dataset("synthetic", interval="-1min")


def test_daily_cycle(fortnight):
    requests = fortnight.values[:, :, 0]
    day = np.array([autocorr(requests[:, s], DAY_10MIN) for s in range(requests.shape[1])])
    half = np.array([autocorr(requests[:, s], DAY_10MIN // 2) for s in range(requests.shape[1])])
    assert np.median(day) > 0.4
    assert (day > half).mean() >= 0.9  # a daily cycle, not just persistence


def test_weekend_dip(fortnight):
    requests = fortnight.values[:, :, 0]
    weekend = fortnight.index.day_of_week >= 5
    ratio = requests[weekend].mean(axis=0) / requests[~weekend].mean(axis=0)
    assert np.median(ratio) < 0.9
    assert (ratio < 1).mean() >= 0.7


def test_heavy_tailed_noise(fortnight):
    assert kurtosis(fortnight.noise) > 4  # Student-t(5): 9 in theory, a little less after clipping
    steps = np.diff(np.log(fortnight.values[:, :, 0]), axis=0)
    assert np.median([kurtosis(steps[:, s]) for s in range(steps.shape[1])]) > 4


def test_queue_grows_only_above_capacity(fortnight):
    requests, queue = fortnight.values[:, :, 0], fortnight.values[:, :, 3]
    grew = np.diff(queue, axis=0) > 1e-6
    assert grew.any(axis=0).mean() >= 0.5  # bursts overload most workloads at some point
    above = requests[1:] > fortnight.capacity[None, :]
    assert np.all(above[grew])
    assert (queue[1:][~above & (queue[:-1] == 0)] == 0).all()


def test_gpu_busy_saturates_and_follows_requests(fortnight):
    requests, busy = fortnight.values[:, :, 0], fortnight.values[:, :, 1]
    assert np.all(busy <= fortnight.gpus[None, :] + 1e-9)
    corr = [np.corrcoef(requests[:, s], busy[:, s])[0, 1] for s in range(busy.shape[1])]
    assert np.median(corr) > 0.8
    memory = fortnight.values[:, :, 2]
    assert np.median([np.corrcoef(memory[:, s], busy[:, s])[0, 1] for s in range(busy.shape[1])]) > 0.9


def test_scales_to_a_thousand_series():
    start = time.perf_counter()
    frame = load_dataset("synthetic", series=1000, steps=10_000)
    elapsed = time.perf_counter() - start
    assert frame.values.shape == (10_000, 1000, 5)
    assert frame.series[-1] == "synthetic-999"
    assert elapsed < 20  # a few seconds on a laptop; generous for a loaded CI machine
