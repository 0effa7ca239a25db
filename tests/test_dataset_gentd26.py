import gzip
import shutil

import numpy as np
import pandas as pd
import pytest

from harmony.errors import HarmonyInputError
from harmony.telemetry.datasets import get_source, load_dataset
from harmony.telemetry.datasets.gentd26 import FILES

NAMES = (
    "generative_qps", "api_qps", "queue_size", "queue_time_ms",
    "gpu_busy", "pods_reporting", "busy_pods", "gpu_memory_bytes", "pod_memory_util",
)


@pytest.fixture(scope="module")
def bundled():
    return get_source("gentd26").resolve(None)


@pytest.fixture(scope="module")
def frame():
    return load_dataset("gentd26")


def col(frame, name):
    return frame.values[:, 0, frame.indicator_position(name)]


@pytest.fixture
def copy(tmp_path, bundled):
    """A writable copy of the bundled folder."""
    for name in FILES.values():
        shutil.copy(bundled / name, tmp_path / name)
    return tmp_path


def test_bundled_shape_indicators_levels(frame):
    assert frame.series == ("gentd26",)
    assert frame.indicator_names == NAMES
    assert frame.interval == pd.Timedelta("1min")
    levels = dict(zip(frame.indicator_names, frame.levels, strict=True))
    assert {n for n, lv in levels.items() if lv == 1} == {"generative_qps", "api_qps", "queue_size", "queue_time_ms"}
    assert {n for n, lv in levels.items() if lv == 2} == {
        "gpu_busy", "pods_reporting", "busy_pods", "gpu_memory_bytes", "pod_memory_util"
    }
    units = {ind.name: ind.unit for ind in frame.indicators}
    assert units["gpu_busy"] == "gpus" and units["generative_qps"] == "requests/s" and units["queue_time_ms"] == "ms"
    # ~57 s samples over the first 70% of 22.8 h: about 16 h of one-minute bins
    assert 950 <= len(frame) <= 965
    assert frame.start == pd.Timestamp("2022-09-11 01:12")


def test_bundled_fleet_figures_are_plausible(frame):
    pods = col(frame, "pods_reporting")
    busy = col(frame, "busy_pods")
    gpu = col(frame, "gpu_busy")
    assert not np.isnan(pods).any()
    assert 100 <= pods.min() and pods.max() <= 115
    assert 100 <= pods.mean() <= 115
    # The bundled 70% slice: ~9.4% mean GPU utilisation, ~49 busy pods (the trace's busier first part).
    assert 0.085 <= np.mean(gpu / pods) <= 0.105
    assert 40 <= busy.mean() <= 60
    assert np.all(busy <= pods)
    assert np.all(gpu <= busy + 1e-9)  # a busy pod adds at most one GPU-equivalent
    assert 0.4 <= np.nanmean(col(frame, "pod_memory_util")) <= 0.6
    mem_per_pod = col(frame, "gpu_memory_bytes") / pods
    assert 15e9 <= np.nanmean(mem_per_pod) <= 35e9  # tens of GB per GPU pod
    assert 1.5 <= np.nanmean(col(frame, "generative_qps")) <= 3.0
    assert 1.0 <= np.nanmean(col(frame, "api_qps")) <= 2.0
    assert 150 <= np.nanmean(col(frame, "queue_time_ms")) <= 350


def test_bins_average_per_timestamp_aggregates(frame, bundled):
    duty = pd.read_csv(bundled / FILES["duty"])
    qps = pd.read_csv(bundled / FILES["qps"])
    # pick a bin in the middle; recompute it straight from the raw rows
    row = len(frame) // 2
    lo = frame.index[row].timestamp()
    hi = lo + 60
    in_bin = duty[(duty.timestamp_anon >= lo) & (duty.timestamp_anon < hi)]
    per_t = in_bin.groupby("timestamp_anon").value.sum() / 100
    assert len(per_t) >= 1
    assert col(frame, "gpu_busy")[row] == pytest.approx(per_t.mean())
    count = in_bin.groupby("timestamp_anon").container_ip.nunique()
    assert col(frame, "pods_reporting")[row] == pytest.approx(count.mean())
    gen = qps[(qps.timestamp_anon >= lo) & (qps.timestamp_anon < hi)]
    stamps = sorted(gen.timestamp_anon.unique())
    expected = np.mean([gen[(gen.timestamp_anon == t) & (gen.request_type == "Generative Requests")].value.sum()
                        for t in stamps])
    assert col(frame, "generative_qps")[row] == pytest.approx(expected)


def test_empty_bins_are_gaps_not_zeros(frame):
    # qps.csv starts ~8 minutes after the GPU files: those bins are missing, not zero demand
    gen = col(frame, "generative_qps")
    assert np.isnan(gen[:5]).all()
    assert not np.isnan(col(frame, "gpu_busy")[:5]).any()
    gaps = [g for g in frame.gaps() if g.indicator == "queue_time_ms"]
    assert gaps and all(not g.filled for g in gaps)


def test_interval_option_resamples(frame):
    five = load_dataset("gentd26", interval="5min")
    assert five.interval == pd.Timedelta("5min")
    assert 185 <= len(five) <= 200
    assert np.nanmean(col(five, "pods_reporting")) == pytest.approx(np.mean(col(frame, "pods_reporting")), rel=0.01)


def test_path_to_a_copy_loads_the_same_and_accepts_plain_csv(copy, frame):
    name = FILES["queue_size"]
    with gzip.open(copy / name, "rb") as src, open(copy / name.removesuffix(".gz"), "wb") as dst:
        dst.write(src.read())
    (copy / name).unlink()
    again = load_dataset("gentd26", copy)
    assert again.source == str(copy)
    np.testing.assert_array_equal(again.values, frame.values)
    assert again.index.equals(frame.index)


def _rewrite(path, mutate):
    df = pd.read_csv(path)
    mutate(df).to_csv(path, index=False)


@pytest.mark.parametrize(
    ("file", "mutate", "column"),
    [
        ("queue_size", lambda df: df.rename(columns={"value": "val"}), "value"),
        ("qps", lambda df: df.drop(columns=["request_type"]), "request_type"),
        ("duty", lambda df: df.drop(columns=["container_ip"]), "container_ip"),
        ("pod_memory", lambda df: df.drop(columns=["timestamp_anon"]), "timestamp_anon"),
        ("queue_rt", lambda df: df.assign(value=df.value.astype(object).where(df.index != 3, "busy")), "value"),
        ("queue_size", lambda df: df.assign(value=np.nan), "value"),  # an indicator without any value
    ],
)
def test_bad_files_name_file_and_column(copy, file, mutate, column):
    _rewrite(copy / FILES[file], mutate)
    with pytest.raises(HarmonyInputError) as err:
        load_dataset("gentd26", copy)
    message = str(err.value)
    assert FILES[file] in message and repr(column) in message
    assert "\n" not in message


def test_missing_file_is_named(copy):
    (copy / FILES["pod_memory"]).unlink()
    with pytest.raises(HarmonyInputError, match=r"pod_memory_util_anon\.csv\.gz"):
        load_dataset("gentd26", copy)


def test_path_must_be_a_folder_and_options_are_checked(copy):
    with pytest.raises(HarmonyInputError, match="qps.csv.gz"):
        load_dataset("gentd26", copy / FILES["qps"])
    with pytest.raises(HarmonyInputError, match="nope"):
        load_dataset("gentd26", copy / "nope")
    with pytest.raises(HarmonyInputError, match="interval"):
        load_dataset("gentd26", copy, interval="often")
    with pytest.raises(HarmonyInputError, match="seed"):
        load_dataset("gentd26", copy, seed=1)
