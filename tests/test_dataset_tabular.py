import numpy as np
import pandas as pd
import pytest

from harmony.errors import HarmonyInputError
from harmony.telemetry.datasets import get_source, load_dataset
from harmony.telemetry.datasets.tabular import infer_interval, parse_levels

T0 = 1_699_999_800  # Unix seconds, a multiple of 120 (bins align with the epoch)


def wide_df(n=30, step=60, series=None, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "timestamp": T0 + step * np.arange(n),
        "requests": rng.uniform(10, 20, n),
        "gpu_busy": rng.uniform(0, 4, n),
        "host": "node-a",  # a label column: never an indicator
    })
    if series is not None:
        df.insert(1, "service", series)
    return df


def write(df, path):
    if path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)
    return path


def test_wide_csv_numeric_seconds(tmp_path):
    df = wide_df()
    frame = load_dataset("csv", write(df, tmp_path / "svc.csv"))
    assert frame.series == ("svc",)
    assert frame.indicator_names == ("requests", "gpu_busy")
    assert frame.levels == (1, 1)
    assert frame.interval == pd.Timedelta("60s")  # inferred
    assert frame.start == pd.Timestamp(T0, unit="s")
    np.testing.assert_allclose(frame.values[:, 0, 0], df["requests"])
    np.testing.assert_allclose(frame.values[:, 0, 1], df["gpu_busy"])


def test_wide_series_column_datetimes_levels_subset_and_binning(tmp_path):
    a = wide_df(series="a")
    b = wide_df(series="b", seed=1)
    df = pd.concat([a, b], ignore_index=True)
    df["timestamp"] = pd.to_datetime(df["timestamp"], unit="s").dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    path = write(df, tmp_path / "all.csv")
    frame = load_dataset("csv", path, series_column="service", indicators="gpu_busy,requests",
                         levels="gpu_busy=2", interval="2min")
    assert frame.series == ("a", "b")
    assert frame.indicator_names == ("gpu_busy", "requests")
    assert frame.levels == (2, 1)
    assert frame.interval == pd.Timedelta("2min") and len(frame) == 15
    np.testing.assert_allclose(frame.values[:, 1, 1], b["requests"].to_numpy().reshape(15, 2).mean(axis=1))


def test_long_format_matches_wide(tmp_path):
    df = pd.concat([wide_df(series="a"), wide_df(series="b", seed=1)], ignore_index=True)
    wide = load_dataset("csv", write(df, tmp_path / "wide.csv"), series_column="service")
    long = df.melt(id_vars=["timestamp", "service"], value_vars=["requests", "gpu_busy"],
                   var_name="metric", value_name="v").sample(frac=1.0, random_state=0)  # any row order
    frame = load_dataset("csv", write(long, tmp_path / "long.csv"), format="long", series_column="service",
                         indicator_column="metric", value_column="v")
    assert frame.series == wide.series
    assert set(frame.indicator_names) == set(wide.indicator_names)
    np.testing.assert_allclose(frame.select(indicators=wide.indicator_names).values, wide.values)


def test_folder_of_files_series_from_stems_and_across_files(tmp_path):
    write(wide_df(seed=0), tmp_path / "alpha.csv")
    write(wide_df(seed=1), tmp_path / "beta.csv")
    frame = load_dataset("csv", tmp_path)
    assert frame.series == ("alpha", "beta")
    day = tmp_path / "days"
    day.mkdir()
    first = wide_df(n=10, series="svc")
    second = wide_df(n=10, series="svc", seed=1).assign(timestamp=lambda d: d.timestamp + 600)
    write(first, day / "day1.csv")
    write(second, day / "day2.csv")
    joined = load_dataset("csv", day, series_column="service")
    assert joined.series == ("svc",) and len(joined) == 20
    np.testing.assert_allclose(joined.values[:, 0, 0], np.concatenate([first.requests, second.requests]))


def test_parquet_file_and_folder_match_csv(tmp_path):
    df = wide_df()
    df["timestamp"] = pd.to_datetime(df["timestamp"], unit="s").dt.tz_localize("UTC")  # typed, zone-aware
    csv = load_dataset("csv", write(wide_df(), tmp_path / "svc.csv"))
    (tmp_path / "pq").mkdir()
    pq = load_dataset("parquet", write(df, tmp_path / "pq" / "svc.parquet"))
    assert pq.index.equals(csv.index) and pq.series == csv.series
    np.testing.assert_allclose(pq.values, csv.values)
    folder = load_dataset("parquet", tmp_path / "pq")
    np.testing.assert_allclose(folder.values, csv.values)


def test_real_fisher_csvs_through_the_generic_source():
    fisher = load_dataset("fisher")
    generic = load_dataset("csv", get_source("fisher").resolve(None), time_column="date")
    assert generic.series == fisher.series
    assert generic.indicator_names == fisher.indicator_names
    assert generic.interval == pd.Timedelta("10min")
    assert generic.index.equals(fisher.index)
    np.testing.assert_array_equal(generic.values, fisher.values)


def test_interval_is_the_most_common_step():
    times = pd.Series(pd.to_datetime(T0 + np.array([0, 60, 120, 240, 300, 360, 1000]), unit="s"))
    assert infer_interval(times, pd.Series(["a"] * 7), "x") == pd.Timedelta("60s")
    with pytest.raises(HarmonyInputError, match="interval"):
        infer_interval(times.iloc[:2], pd.Series(["a", "b"]), "x")


def test_levels_option_parsing():
    assert parse_levels("a=1, b=3") == {"a": 1, "b": 3}
    assert parse_levels({"a": 2}) == {"a": 2}
    for bad in ("a", "a=x", "a=0", "=2"):
        with pytest.raises(HarmonyInputError, match="--levels"):
            parse_levels(bad)


def dup_row(df):
    return pd.concat([df.iloc[:5], df.iloc[4:5], df.iloc[5:]], ignore_index=True)


def swap_rows(df):
    return pd.concat([df.iloc[:5], df.iloc[6:7], df.iloc[5:6], df.iloc[7:]], ignore_index=True)


def set_cell(column, value, row=3):
    def mutate(df):
        df = df.copy()
        df[column] = df[column].astype(object)
        df.loc[row, column] = value
        return df
    return mutate


@pytest.mark.parametrize(
    ("mutate", "options", "column", "what"),
    [
        (lambda df: df.drop(columns=["timestamp"]), {}, "timestamp", "missing column"),
        (lambda df: df, {"series_column": "tenant"}, "tenant", "missing column"),
        (lambda df: df, {"indicators": "requests,latency"}, "latency", "missing column"),
        (dup_row, {}, "timestamp", "duplicate"),
        (swap_rows, {}, "timestamp", "back in time"),
        (set_cell("requests", "lots"), {}, "requests", "non-numeric"),
        (set_cell("timestamp", "tuesday"), {}, "timestamp", "not a timestamp"),
        (lambda df: df.assign(gpu_busy=np.nan), {}, "gpu_busy", "no values"),
        (set_cell("requests", -3.0), {}, "requests", "a negative value -3 (row 4)"),
        (set_cell("requests", np.inf), {}, "requests", "infinite or absurd value inf (row 4)"),
        (set_cell("gpu_busy", 1e308), {}, "gpu_busy", "infinite or absurd value 1e+308 (row 4)"),
    ],
)
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_wide_errors_name_file_and_column(tmp_path, mutate, options, column, what, suffix):
    df = mutate(wide_df())
    if suffix == ".parquet":
        df = df.astype({c: str for c in df.columns if df[c].dtype == object})
    path = write(df, tmp_path / f"bad{suffix}")
    with pytest.raises(HarmonyInputError) as err:
        load_dataset(suffix[1:], path, **options)
    message = str(err.value)
    assert f"bad{suffix}" in message and repr(column) in message and what in message
    assert "\n" not in message


def long_df():
    df = wide_df(n=10, series="a")
    return df.melt(id_vars=["timestamp", "service"], value_vars=["requests", "gpu_busy"], var_name="indicator")


@pytest.mark.parametrize(
    ("mutate", "column", "what"),
    [
        (lambda df: df.drop(columns=["indicator"]), "indicator", "missing column"),
        (lambda df: pd.concat([df, df.iloc[[2]]], ignore_index=True), "indicator", "duplicate"),
        (set_cell("value", "high"), "value", "non-numeric"),
        (lambda df: df.assign(value=df.value.where(df.indicator != "gpu_busy")), "value", "no values"),
    ],
)
def test_long_errors_name_file_and_column(tmp_path, mutate, column, what):
    path = write(mutate(long_df()), tmp_path / "bad_long.csv")
    with pytest.raises(HarmonyInputError) as err:
        load_dataset("csv", path, format="long", series_column="service")
    message = str(err.value)
    assert "bad_long.csv" in message and repr(column) in message and what in message


def test_duplicates_across_files_name_both_files(tmp_path):
    write(wide_df(n=10, series="svc"), tmp_path / "one.csv")
    write(wide_df(n=10, series="svc", seed=1), tmp_path / "two.csv")
    with pytest.raises(HarmonyInputError, match=r"one\.csv and .*two\.csv: duplicate rows .*'service'"):
        load_dataset("csv", tmp_path, series_column="service")


def test_path_and_option_errors(tmp_path):
    with pytest.raises(HarmonyInputError, match="missing.csv"):
        load_dataset("csv", tmp_path / "missing.csv")
    with pytest.raises(HarmonyInputError, match="--path"):
        load_dataset("parquet")
    with pytest.raises(HarmonyInputError, match=r"\*\.parquet"):
        load_dataset("parquet", tmp_path)
    path = write(wide_df(), tmp_path / "svc.csv")
    with pytest.raises(HarmonyInputError, match="--format"):
        load_dataset("csv", path, format="tall")
    with pytest.raises(HarmonyInputError, match="--levels names 'latency'"):
        load_dataset("csv", path, levels="latency=2")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(HarmonyInputError, match="junk.parquet"):
        load_dataset("parquet", tmp_path / "junk.parquet")


def test_a_truncated_gzip_in_a_folder_is_one_error_naming_it(tmp_path):
    import gzip

    good = tmp_path / "a.csv.gz"
    good.write_bytes(gzip.compress(wide_df(n=20).to_csv(index=False).encode()))
    bad = tmp_path / "b.csv.gz"
    bad.write_bytes(good.read_bytes()[:-20])
    with pytest.raises(HarmonyInputError, match=r"b\.csv\.gz: corrupt or truncated compressed file"):
        load_dataset("csv", tmp_path)


def test_a_wild_timestamp_is_refused_before_the_grid_is_allocated(tmp_path):
    path = write(pd.DataFrame({"timestamp": [0.0, 60.0, 9e9], "requests": [1.0, 2.0, 3.0]}), tmp_path / "far.csv")
    with pytest.raises(HarmonyInputError, match=r"far\.csv: a grid of 1min steps .* rows, more than 10,000,000"):
        load_dataset("csv", path)
