import numpy as np
import pandas as pd
import pytest

from harmony.errors import HarmonyInputError
from harmony.telemetry.frame import Indicator, TelemetryFrame
from tests.helpers import make_frame

IND = [Indicator("a", 1, "1"), Indicator("b", 2, "bytes")]


def frame_of(values, start="2024-01-01", freq="1min", series=("x",), inds=IND):
    values = np.asarray(values, dtype=float)
    index = pd.date_range(start, periods=len(values), freq=freq)
    return TelemetryFrame(index, values, list(series), inds)


def test_rejects_duplicate_and_unordered_timestamps():
    v = np.zeros((3, 1, 2))
    idx = pd.DatetimeIndex(["2024-01-01 00:00", "2024-01-01 00:01", "2024-01-01 00:01"])
    with pytest.raises(HarmonyInputError, match="duplicate timestamp"):
        TelemetryFrame(idx, v, ["x"], IND, source="f.csv")
    idx = pd.DatetimeIndex(["2024-01-01 00:00", "2024-01-01 00:02", "2024-01-01 00:01"])
    with pytest.raises(HarmonyInputError, match="not increasing .* in f.csv"):
        TelemetryFrame(idx, v, ["x"], IND, source="f.csv")


def test_rejects_irregular_index_and_shape_mismatch():
    idx = pd.DatetimeIndex(["2024-01-01 00:00", "2024-01-01 00:01", "2024-01-01 00:03"])
    with pytest.raises(ValueError, match="not regular"):
        TelemetryFrame(idx, np.zeros((3, 1, 2)), ["x"], IND)
    with pytest.raises(ValueError, match="does not match"):
        TelemetryFrame(idx[:2], np.zeros((3, 1, 2)), ["x"], IND)


def test_values_are_read_only_copies():
    src = np.ones((4, 1, 2))
    f = frame_of(src)
    src[0, 0, 0] = 99
    assert f.values[0, 0, 0] == 1
    with pytest.raises(ValueError):
        f.values[0, 0, 0] = 5


def test_from_samples_bins_irregular_samples_and_leaves_empty_bins_missing():
    samples = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(["2024-01-01 00:00:05", "2024-01-01 00:00:50", "2024-01-01 00:02:10"]),
            "series": ["x", "x", "x"],
            "a": [1.0, 3.0, 7.0],
            "b": [10.0, 20.0, 5.0],
        }
    )
    f = TelemetryFrame.from_samples(samples, "1min", IND, how={"a": "mean", "b": "sum"})
    assert list(f.index) == list(pd.date_range("2024-01-01", periods=3, freq="1min"))
    np.testing.assert_allclose(f.values[:, 0, 0], [2.0, np.nan, 7.0])
    np.testing.assert_allclose(f.values[:, 0, 1], [30.0, np.nan, 5.0])
    with pytest.raises(HarmonyInputError, match="missing column 'b'"):
        TelemetryFrame.from_samples(samples.drop(columns="b"), "1min", IND)


def test_resample_coarser_aggregates_and_keeps_empty_bins_missing():
    v = np.arange(12, dtype=float).reshape(6, 1, 2)
    v[2:4, 0, 1] = np.nan
    f = frame_of(v)
    mean = f.resample("2min")
    np.testing.assert_allclose(mean.values[:, 0, 0], [1, 5, 9])
    summed = f.resample("2min", how="sum")
    np.testing.assert_allclose(summed.values[:, 0, 1], [4, np.nan, 20])
    with pytest.raises(HarmonyInputError, match="whole multiple"):
        f.resample("90s")


def test_resample_finer_leaves_new_steps_missing():
    f = frame_of(np.ones((3, 1, 2)), freq="2min")
    fine = f.resample("1min")
    assert len(fine) == 5
    assert np.isnan(fine.values[1::2]).all() and (fine.values[::2] == 1).all()


def test_fill_gaps_interpolates_short_interior_gaps_and_reports_the_rest():
    a = np.array([0, np.nan, 2, 3, np.nan, np.nan, np.nan, 7, np.nan], dtype=float)
    b = np.array([np.nan, 1, 2, 3, 4, 5, 6, 7, 8], dtype=float)
    f = frame_of(np.stack([a, b], axis=1)[:, None, :])
    filled, report = f.fill_gaps(max_gap_steps=2)
    np.testing.assert_allclose(filled.values[:, 0, 0], [0, 1, 2, 3, np.nan, np.nan, np.nan, 7, np.nan])
    assert np.isnan(filled.values[0, 0, 1])  # a leading gap has nothing to interpolate from
    by_start = {(g.indicator, g.start.minute): g for g in report}
    assert by_start[("a", 1)].filled and by_start[("a", 1)].steps == 1
    assert not by_start[("a", 4)].filled and by_start[("a", 4)].steps == 3
    assert not by_start[("a", 8)].filled
    assert not by_start[("b", 0)].filled
    # the original frame is untouched
    assert np.isnan(f.values[1, 0, 0])


def test_gaps_ignore_rows_outside_a_series_reporting_span():
    v = np.ones((6, 2, 2))
    v[:3, 1, :] = np.nan  # series y starts late: not a gap
    v[4, 1, 0] = np.nan  # a real gap
    f = frame_of(v, series=("x", "y"))
    gaps = f.gaps()
    assert [(g.series, g.indicator, g.steps) for g in gaps] == [("y", "a", 1)]
    assert f.missing_fraction()["a"] == pytest.approx(1 / 9)


def test_difference_handles_counter_resets():
    counter = np.array([10, 15, 30, 4, 9], dtype=float)
    v = np.stack([counter, counter], axis=1)[:, None, :]
    inds = [Indicator("a", 1, "bytes", cumulative=True), Indicator("b", 2, "1")]
    d = frame_of(v, inds=inds).difference()
    np.testing.assert_allclose(d.values[:, 0, 0], [np.nan, 5, 15, 4, 5])
    np.testing.assert_allclose(d.values[:, 0, 1], counter)  # not a counter: untouched
    assert not d.indicators[0].cumulative and d.indicators[0].unit == "bytes/step"


def test_split_follows_the_harmony_arithmetic():
    f = make_frame(steps=4464, series=1)
    split = f.split(train=0.7, test=0.2)
    assert (len(split.train), len(split.validation), len(split.test)) == (3124, 448, 892)
    assert split.train.end < split.validation.start and split.validation.end < split.test.start
    with pytest.raises(HarmonyInputError, match="too few"):
        make_frame(steps=3, series=1).split()


def test_align_inner_and_outer():
    f1 = frame_of(np.ones((5, 1, 2)), start="2024-01-01 00:00")
    f2 = frame_of(2 * np.ones((5, 1, 2)), start="2024-01-01 00:02", series=("y",))
    inner = TelemetryFrame.align([f1, f2], how="inner")
    assert [len(f) for f in inner] == [3, 3] and inner[0].start == f2.start
    outer = TelemetryFrame.align([f1, f2], how="outer")
    assert len(outer[0]) == 7 and np.isnan(outer[0].values[-1]).all() and np.isnan(outer[1].values[0]).all()
    joined = TelemetryFrame.concat_indicators([f1, frame_of(np.ones((5, 1, 2)), inds=[Indicator("c"), Indicator("d")])])
    assert joined.indicator_names == ("a", "b", "c", "d")


def test_select_trim_and_require_observed():
    v = np.ones((5, 2, 2))
    v[:2, 1] = np.nan
    f = frame_of(v, series=("x", "y"))
    y = f.series_frame("y")
    assert len(y) == 3 and y.series == ("y",)
    assert f.select(indicators=["b"]).indicator_names == ("b",)
    with pytest.raises(HarmonyInputError, match="unknown series 'z'"):
        f.select(series=["z"])
    with pytest.raises(HarmonyInputError, match="unknown indicator 'q'"):
        f.select(indicators=["q"])
    v[:, 0, 1] = np.nan
    with pytest.raises(HarmonyInputError, match="indicator 'b' of series 'x' is all NaN"):
        frame_of(v, series=("x", "y")).require_observed()


def test_to_long_round_trips_observed_values():
    f = make_frame(steps=10, series=2, indicators=2)
    long = f.to_long()
    assert len(long) == 10 * 2 * 2
    back = long.pivot_table(index="timestamp", columns=["series", "indicator"], values="value")
    np.testing.assert_allclose(back[("s1", "ind0")].to_numpy(), f.values[:, 1, 0])
