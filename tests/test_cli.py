"""The `harmony` CLI end to end (typer's runner, real bundled data)."""

import gzip
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from harmony.cli.main import app
from tests.helpers import write_fisher_csv

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def one_container(tmp_path_factory):
    from harmony.telemetry.datasets import DATASETS_ROOT

    folder = tmp_path_factory.mktemp("fisher")
    (folder / "container2.csv").write_bytes((DATASETS_ROOT / "fisher" / "container2.csv").read_bytes())
    return folder


def test_evaluate_writes_the_results_table(one_container, tmp_path):
    out = tmp_path / "sub" / "results.csv"
    result = run("evaluate", "--dataset", "fisher", "--path", one_container, "--protocol", "harmony",
                 "--lookback", 72, "--models", "ar,last", "--out", out)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert list(table.columns[:6]) == ["series", "model", "lookback", "horizon", "mse", "crps"]
    measured = table[table["source"] == "measured"]
    assert set(measured["model"]) == {"ar", "last"}
    assert set(measured["series"]) == {"container2", "mean"}
    published = table[table["source"] == "published"]
    assert "container2" in set(published["series"])
    assert "harmony (published)" in result.output and "container2" in result.output
    ar = measured[(measured["model"] == "ar") & (measured["series"] == "container2")].iloc[0]
    assert 0 < ar["crps"] < 0.2 and 0 < ar["mse"] < 0.2


def test_rolling_evaluation_on_a_user_file(tmp_path):
    write_fisher_csv(tmp_path / "mine.csv", rows=700)
    result = run("evaluate", "--dataset", "fisher", "--path", tmp_path / "mine.csv", "--protocol", "rolling",
                 "--lookback", 36, "--horizon", 3, "--models", "ar:6,last", "--out", tmp_path / "r.csv")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "r.csv")
    assert set(table["horizon"]) == {3} and set(table["series"]) == {"mine", "mean"}


#: How a user reads each table format back: JSON is a list of records, one per row.
READERS = {"csv": pd.read_csv, "csv.gz": pd.read_csv, "parquet": pd.read_parquet,
           "json": lambda path: pd.DataFrame(json.loads(path.read_text()))}


@pytest.fixture(scope="module")
def parquet_results(one_container, tmp_path_factory):
    out = tmp_path_factory.mktemp("results") / "results.parquet"
    result = run("evaluate", "--dataset", "fisher", "--path", one_container, "--models", "last", "--out", out)
    assert result.exit_code == 0, result.output
    return pd.read_parquet(out)


@pytest.mark.parametrize(("name", "kind"), [("r.csv", "csv"), ("r.csv.gz", "csv.gz"), ("r.json", "json"),
                                            ("R.JSON", "json"), ("r.parquet", "parquet")])
def test_evaluate_out_writes_the_format_its_extension_names(one_container, parquet_results, tmp_path, name, kind):
    """Read back with its format's reader, each file holds the table Parquet holds (typed, exact): the same
    columns in order, the same values to the last bit, the published rows' missing scores missing."""
    out = tmp_path / name
    result = run("evaluate", "--dataset", "fisher", "--path", one_container, "--models", "last", "--out", out)
    assert result.exit_code == 0, result.output
    if kind == "csv.gz":
        assert gzip.open(out).read(6) == b"series"
    table = READERS[kind](out)
    assert parquet_results["mae"].isna().any() and (parquet_results["source"] == "published").any()
    pd.testing.assert_frame_equal(table.drop(columns="seconds"), parquet_results.drop(columns="seconds"),
                                  check_dtype=False, check_exact=True)  # seconds: the run's own timing


def test_datasets_list_and_show():
    listed = run("datasets", "list")
    assert listed.exit_code == 0 and "fisher" in listed.output
    shown = run("datasets", "show", "fisher")
    assert shown.exit_code == 0, shown.output
    assert "container7" in shown.output and "net.if.in.bytes" in shown.output and "10min" in shown.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["evaluate", "--dataset", "nope"], "unknown dataset 'nope' (--dataset)"),
        (["evaluate", "--models", "ar,magic"], "unknown model 'magic' (--models)"),
        (["evaluate", "--protocol", "weekly"], "--protocol 'weekly'"),
        (["evaluate", "--horizon", "3"], "--horizon must be 1 with --protocol harmony"),
        (["evaluate", "--path", "/nonexistent/x.csv"], "/nonexistent/x.csv: no such file or directory"),
        (["datasets", "show", "fisher", "--option", "novalue"], "--option 'novalue' is not KEY=VALUE"),
        (["datasets", "show", "fisher", "--time-column", "ts"], "has no option 'time_column' (--time-column)"),
    ],
)
def test_bad_flags_exit_2_with_one_line(args, message):
    result = run(*args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda df: df.drop(columns=["mem.memused"]), "c.csv: missing column 'mem.memused'"),
        (lambda df: pd.concat([df.iloc[:3], df.iloc[2:3], df.iloc[3:]]), "c.csv: duplicate timestamp"),
        (lambda df: df.iloc[::-1], "c.csv: timestamps are not increasing"),
        (lambda df: df.assign(**{"cpu.busy": float("nan")}), "indicator 'cpu.busy' of series 'c' is all NaN"),
    ],
)
def test_bad_files_exit_2_naming_file_and_column(tmp_path, mutate, message):
    df = write_fisher_csv(tmp_path / "orig.csv")
    mutate(df).to_csv(tmp_path / "c.csv", index=False)
    result = run("evaluate", "--path", tmp_path / "c.csv", "--models", "last")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
