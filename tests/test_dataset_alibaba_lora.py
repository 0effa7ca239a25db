"""Alibaba LoRA request log: busy-executor arithmetic, bundled figures, carried means, path, bad input."""

import gzip
import shutil

import numpy as np
import pandas as pd
import pytest

from harmony.decision.demand import demand_definition
from harmony.errors import HarmonyInputError
from harmony.telemetry.datasets import get_source, load_dataset
from harmony.telemetry.datasets.alibaba_lora import FILE_NAME, busy_executors

NAMES = ("busy_executors", "arrivals", "mean_inference_steps", "mean_images_per_prompt")


@pytest.fixture(scope="module")
def bundled_file():
    return get_source("alibaba-lora").resolve(None) / f"{FILE_NAME}.gz"


@pytest.fixture(scope="module")
def raw(bundled_file):
    return pd.read_csv(bundled_file)


@pytest.fixture(scope="module")
def frame():
    return load_dataset("alibaba-lora")


def col(frame, name):
    return frame.values[:, 0, frame.indicator_position(name)]


def write_log(path, rows):
    """rows: (gmt_create, exec_time_seconds, num_inference_steps, num_images_per_prompt)."""
    df = pd.DataFrame(rows, columns=["gmt_create", "exec_time_seconds", "num_inference_steps",
                                     "num_images_per_prompt"])
    df.insert(1, "predict_type", "TXT_2_IMG")
    df.to_csv(path, index=False)
    return path


# ------------------------------------------------------------------------------------------------ arithmetic
def test_busy_executors_are_time_weighted_means_per_bin(tmp_path):
    log = write_log(tmp_path / "tiny.csv", [
        ("2024-11-15 00:00:30", 90.0, 30, 1),   # 00:00:30 .. 00:02:00: half of minute 0, all of minute 1
        ("2024-11-15 00:02:10", 10.0, 50, 4),   # inside minute 2
        ("2024-11-15 00:02:20", 0.0, None, None),  # a pending request: an arrival, no GPU time, no steps
        ("2024-11-15 00:03:00", 150.0, 20, 2),  # minutes 3 and 4 in full, half of minute 5
    ])
    frame = load_dataset("alibaba-lora", log)
    assert frame.series == ("tiny",) and frame.indicator_names == NAMES
    assert frame.start == pd.Timestamp("2024-11-15 00:00") and len(frame) == 4  # to the last arrival's minute
    np.testing.assert_allclose(col(frame, "busy_executors"), [0.5, 1.0, 10 / 60, 1.0])
    np.testing.assert_array_equal(col(frame, "arrivals"), [1, 0, 2, 1])
    # means over the minute's arrivals that state a value; a minute without arrivals carries the last one
    np.testing.assert_array_equal(col(frame, "mean_inference_steps"), [30, 30, 50, 20])
    np.testing.assert_array_equal(col(frame, "mean_images_per_prompt"), [1, 1, 4, 2])
    assert not np.isnan(frame.values).any() and frame.gaps() == []

    ten = load_dataset("alibaba-lora", log, interval="10min")
    assert len(ten) == 1 and col(ten, "busy_executors")[0] == pytest.approx((90 + 10 + 150) / 600)
    np.testing.assert_array_equal(col(ten, "mean_inference_steps"), [(30 + 50 + 20) / 3])


def test_overlapping_requests_add_and_idle_bins_are_exactly_zero():
    arrival = np.array([0.0, 15.0, 200.0, 200.0])
    exec_s = np.array([45.0, 30.0, 60.0, 400.0])
    busy = busy_executors(arrival, exec_s, 60.0, 12)
    expected = np.zeros(12)
    expected[0] = (45 + 30) / 60
    expected[3] = (40 + 40) / 60  # both requests from 200 s to 240 s
    expected[4] = (20 + 60) / 60
    expected[5:10] = 1.0  # the long request alone, to 600 s
    np.testing.assert_allclose(busy, expected)
    assert (busy[[1, 2, 10, 11]] == 0).all()
    assert busy.sum() * 60 == pytest.approx(exec_s.sum())


def test_the_first_value_fills_the_minutes_before_it(tmp_path):
    log = write_log(tmp_path / "late.csv", [
        ("2024-11-15 00:00:05", 5.0, None, None),
        ("2024-11-15 00:02:05", 5.0, 40, 8),
    ])
    frame = load_dataset("alibaba-lora", log)
    np.testing.assert_array_equal(col(frame, "mean_inference_steps"), [40, 40, 40])
    np.testing.assert_array_equal(col(frame, "mean_images_per_prompt"), [8, 8, 8])


# ------------------------------------------------------------------------------------------------ bundled
def test_bundled_shape_units_levels(frame):
    assert frame.series == ("lora_request_trace",) and frame.indicator_names == NAMES
    assert frame.levels == (1, 1, 2, 2)
    assert [i.unit for i in frame.indicators] == ["gpus", "requests", "steps", "images"]
    assert frame.interval == pd.Timedelta("1min")
    assert frame.start == pd.Timestamp("2024-11-15 16:57") and frame.end == pd.Timestamp("2024-12-01 23:59")
    assert len(frame) == 23_463
    assert not np.isnan(frame.values).any()  # an idle minute is zero demand, never a gap


def test_bundled_figures(frame, raw):
    assert len(raw) == 15_630 and col(frame, "arrivals").sum() == 15_630
    stamps = pd.to_datetime(raw["gmt_create"])
    assert (stamps.max() - stamps.min()) / pd.Timedelta("1D") == pytest.approx(16.29, abs=0.01)  # ~16.3 days
    assert stamps.max() < pd.Timestamp("2024-12-02")  # the held-back rest starts there
    busy = col(frame, "busy_executors")
    assert (busy == 0).mean() == pytest.approx(0.706, abs=0.002)  # 70.6% of minutes with no busy executor
    assert (col(frame, "arrivals") == 0).mean() == pytest.approx(0.739, abs=0.002)  # 73.9% without arrivals
    # every busy GPU-second is in some minute, but for the 20 s run past the last arrival's minute
    end = stamps + pd.to_timedelta(raw["exec_time_seconds"], unit="s")
    cut = (end - pd.Timestamp("2024-12-02")).dt.total_seconds().clip(lower=0).sum()
    assert cut == 20.0
    assert busy.sum() * 60 == pytest.approx(raw["exec_time_seconds"].sum() - cut)
    assert busy.max() == pytest.approx(10.2)
    steps = col(frame, "mean_inference_steps")
    assert steps.min() >= 1 and steps.max() <= 100


def test_interval_option_keeps_the_busy_seconds(frame):
    ten = load_dataset("alibaba-lora", interval="10min")
    assert ten.interval == pd.Timedelta("10min") and ten.start == pd.Timestamp("2024-11-15 16:50")
    assert col(ten, "busy_executors").sum() * 600 == pytest.approx(col(frame, "busy_executors").sum() * 60)
    assert col(ten, "arrivals").sum() == 15_630


def test_path_folder_and_file(tmp_path, bundled_file, frame):
    with gzip.open(bundled_file, "rb") as src, open(tmp_path / FILE_NAME, "wb") as out:
        shutil.copyfileobj(src, out)  # an uncompressed copy in a folder
    again = load_dataset("alibaba-lora", tmp_path)
    np.testing.assert_array_equal(again.values, frame.values)
    assert again.source == str(tmp_path / FILE_NAME)
    (tmp_path / FILE_NAME).rename(tmp_path / "other.csv")
    assert load_dataset("alibaba-lora", tmp_path / "other.csv").series == ("other",)
    with pytest.raises(HarmonyInputError, match=FILE_NAME):
        load_dataset("alibaba-lora", tmp_path)


@pytest.mark.parametrize(
    ("mutate", "column", "what"),
    [
        (lambda df: df.drop(columns=["exec_time_seconds"]), "exec_time_seconds", "missing column"),
        (lambda df: df.assign(gmt_create=df.gmt_create.where(df.index != 3, "soon")), "gmt_create", "not a timestamp"),
        (lambda df: df.assign(exec_time_seconds=df.exec_time_seconds.where(df.index != 4, -1.0)),
         "exec_time_seconds", "negative value -1.0 (line 6)"),
        (lambda df: df.assign(exec_time_seconds=df.exec_time_seconds.where(df.index != 2)),
         "exec_time_seconds", "missing value (line 4)"),
        (lambda df: df.assign(num_inference_steps=df.num_inference_steps.astype(object).where(df.index != 5, "many")),
         "num_inference_steps", "non-numeric value 'many' (line 7)"),
    ],
)
def test_bad_input_names_file_and_column(tmp_path, raw, mutate, column, what):
    file = tmp_path / "broken.csv"
    mutate(raw.head(20).copy()).to_csv(file, index=False)
    with pytest.raises(HarmonyInputError) as err:
        load_dataset("alibaba-lora", file)
    message = str(err.value)
    assert "broken.csv" in message and repr(column) in message and what in message
    assert "\n" not in message


def test_bad_options_are_refused():
    with pytest.raises(HarmonyInputError, match=r"has no option 'model' \(--model\)"):
        load_dataset("alibaba-lora", model="x")
    with pytest.raises(HarmonyInputError, match="is not a duration"):
        load_dataset("alibaba-lora", interval="soon")


def test_demand_is_busy_executors_one_gpu_per_replica(frame):
    definition = demand_definition("alibaba-lora", frame=frame)
    assert definition.indicators == ("busy_executors",) and definition.unit == "gpus"
    assert definition.capacity_per_replica == 1.0
