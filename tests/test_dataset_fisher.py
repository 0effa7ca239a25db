import numpy as np
import pandas as pd
import pytest

from harmony.errors import HarmonyInputError
from harmony.telemetry.datasets import SOURCES, get_source, load_dataset
from harmony.telemetry.datasets.fisher import INDICATORS
from tests.helpers import fisher_columns, write_fisher_csv


@pytest.fixture(scope="module")
def fisher():
    return load_dataset("fisher")


def test_bundled_fisher_has_seven_containers_with_named_levels(fisher):
    assert fisher.series == tuple(f"container{i}" for i in range(1, 8))
    assert len(fisher.indicators) == 11
    assert fisher.interval == pd.Timedelta("10min")
    levels = dict(zip(fisher.indicator_names, fisher.levels, strict=True))
    assert levels["load"] == 1
    assert levels["cpu.busy"] == 2 and levels["container_memory_rss"] == 2
    assert levels["net.if.in.bytes"] == 3 and levels["blkio.throttle.io_service_bytes_Read"] == 3
    c1 = fisher.series_frame("container1")
    assert len(c1) == 4464 and not np.isnan(c1.values).any()
    c3 = fisher.series_frame("container3")
    assert c3.start == pd.Timestamp("2018-07-27 15:10") and len(c3) == 3941
    raw = pd.read_csv(get_source("fisher").resolve(None) / "container1.csv")
    np.testing.assert_allclose(c1.values[:, 0, fisher.indicator_position("cpu.busy")], raw["cpu.busy"])


def test_levels_follow_column_names_not_positions(tmp_path):
    cols = fisher_columns()
    shuffled = [cols[0], *reversed(cols[1:])]
    df = write_fisher_csv(tmp_path / "c.csv", columns=shuffled)
    frame = load_dataset("fisher", tmp_path / "c.csv")
    assert frame.indicator_names == tuple(ind.name for ind in INDICATORS)
    np.testing.assert_allclose(frame.values[:, 0, frame.indicator_position("load")], df["load"])
    assert frame.indicators[frame.indicator_position("net.if.in.bytes")].level == 3
    assert frame.series == ("c",)


def test_counters_can_be_differenced(tmp_path):
    df = write_fisher_csv(tmp_path / "c.csv")
    frame = load_dataset("fisher", tmp_path, difference_counters=True)
    pos = frame.indicator_position("container_cpu_usage_seconds_total")
    raw = df["container_cpu_usage_seconds_total"].to_numpy()
    expected = np.where(np.diff(raw) < 0, raw[1:], np.diff(raw))
    np.testing.assert_allclose(frame.values[1:, 0, pos], expected)
    assert not frame.indicators[pos].cumulative
    np.testing.assert_allclose(frame.values[:, 0, 0], df["load"])  # gauges untouched


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda df: df.drop(columns=["cpu.busy"]), r"c\.csv: missing column 'cpu\.busy'"),
        (lambda df: df.drop(columns=["date"]), r"c\.csv: missing column 'date'"),
        (lambda df: pd.concat([df.iloc[:5], df.iloc[4:5], df.iloc[5:]]), r"c\.csv: duplicate timestamp"),
        (lambda df: pd.concat([df.iloc[:5], df.iloc[6:7], df.iloc[5:6], df.iloc[7:]]),
         r"c\.csv: timestamps are not increasing at row"),
        (lambda df: df.assign(load=np.nan), r"indicator 'load' of series 'c' is all NaN in .*c\.csv"),
        (lambda df: df.assign(load=["x"] + list(df["load"][1:])), r"c\.csv: column 'load' has a non-numeric"),
        (lambda df: df.assign(date=["not a date"] + list(df["date"][1:])), r"c\.csv: column 'date' has values"),
    ],
)
def test_bad_container_files_fail_with_one_line_naming_file_and_column(tmp_path, mutate, message):
    df = write_fisher_csv(tmp_path / "good.csv")
    mutate(df).to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(HarmonyInputError, match=message) as info:
        load_dataset("fisher", tmp_path / "c.csv")
    assert "\n" not in str(info.value)


def test_missing_and_empty_paths_and_unknown_names(tmp_path):
    with pytest.raises(HarmonyInputError, match="nope: no such file or directory .*--path"):
        load_dataset("fisher", tmp_path / "nope")
    with pytest.raises(HarmonyInputError, match="no \\*.csv container files"):
        load_dataset("fisher", tmp_path)
    (tmp_path / "bad.csv").write_bytes(b'date,load\n"2018-01-01,1\n')
    with pytest.raises(HarmonyInputError, match="bad.csv"):
        load_dataset("fisher", tmp_path / "bad.csv")
    with pytest.raises(HarmonyInputError, match="unknown dataset 'nope' \\(--dataset\\)"):
        load_dataset("nope")
    with pytest.raises(HarmonyInputError, match="has no option 'bogus' \\(--bogus\\)"):
        load_dataset("fisher", bogus=1)
    assert "fisher" in SOURCES
