import numpy as np
import pytest

from harmony.errors import HarmonyInputError
from harmony.forecasting.evaluation import harmony_protocol, rolling_protocol, with_means
from harmony.forecasting.evaluation.published import HARMONY_FISHER, published_rows
from harmony.telemetry.datasets import load_dataset
from tests.helpers import make_frame


@pytest.fixture(scope="module")
def container1():
    return load_dataset("fisher").select(series=["container1"])


def test_harmony_protocol_scores_the_published_test_rows(container1):
    rows = harmony_protocol(container1, ["ar", "last"], lookback=72, n_samples=100, seed=0)
    assert [r["model"] for r in rows] == ["ar", "last"]
    n_test = int(4464 * 0.2)  # 892
    assert all(r["n_targets"] == (n_test // 32) * 32 * 11 for r in rows)
    ar, last = rows
    # on real Fisher data the AR model beats last value on both scores
    assert ar["mse"] < last["mse"] and ar["crps"] < last["crps"]
    assert 0 < ar["crps"] < ar["mae"]  # CRPS of a spread ensemble is below the point's absolute error
    again = harmony_protocol(container1, ["ar"], lookback=72, n_samples=100, seed=0)
    assert again[0]["crps"] == ar["crps"]


def test_lookback_changes_only_the_context(container1):
    short = harmony_protocol(container1, ["last"], lookback=72)[0]
    long = harmony_protocol(container1, ["last"], lookback=288)[0]
    assert short["n_targets"] == long["n_targets"]
    assert short["mse"] == pytest.approx(long["mse"])  # last value ignores all but the final row


def test_rolling_protocol_scores_every_series_and_horizon():
    frame = make_frame(steps=1500, series=3, indicators=2, seed=4)
    rows = rolling_protocol(frame, ["ar:12", "seasonal"], lookback=48, horizon=6, n_samples=50)
    expected = {(s, m) for s in ("s0", "s1", "s2") for m in ("ar:12", "seasonal")}
    assert {(r["series"], r["model"]) for r in rows} == expected
    n_origins = len(range(1500 - 300, 1500 - 6 + 1, 6))
    assert all(r["n_targets"] == n_origins * 6 * 2 for r in rows)
    assert all(0.0 <= r["coverage90"] <= 1.0 and r["horizon"] == 6 for r in rows)
    means = [r for r in with_means(rows) if r["series"] == "mean"]
    assert len(means) == 2
    ar_rows = [r for r in rows if r["model"] == "ar:12"]
    ar_mean = [m for m in means if m["model"] == "ar:12"][0]
    assert ar_mean["crps"] == pytest.approx(np.mean([r["crps"] for r in ar_rows]))


def test_protocol_rejects_bad_arguments():
    frame = make_frame(steps=600, series=1)
    with pytest.raises(HarmonyInputError, match="--lookback"):
        harmony_protocol(frame, ["ar"], lookback=0)
    with pytest.raises(HarmonyInputError, match="--horizon"):
        rolling_protocol(frame, ["ar"], lookback=10, horizon=0)
    with pytest.raises(HarmonyInputError, match="--stride"):
        rolling_protocol(frame, ["ar"], lookback=10, horizon=2, stride=0)
    with pytest.raises(HarmonyInputError, match="shorter --lookback"):
        rolling_protocol(frame, ["last"], lookback=590, horizon=1)


def test_published_rows_are_labelled_and_averaged():
    rows = published_rows(["container1", "container2", "containerX"], 72)
    assert [r["series"] for r in rows] == ["container1", "container2", "mean", "mean of 10 (published)"]
    assert all(r["model"] == "harmony (published)" for r in rows)
    expected = (HARMONY_FISHER[("container1", 72)][1] + HARMONY_FISHER[("container2", 72)][1]) / 2
    assert rows[2]["crps"] == pytest.approx(expected)
    all10 = [HARMONY_FISHER[(f"container{i}", 72)] for i in range(1, 11)]
    assert rows[3]["mse"] == pytest.approx(np.mean([m for m, _ in all10]), abs=1e-4)
