"""Bad input, every command: one `error:` line naming the file, field or flag, exit status 2, and no data lost.

By class, not by instance: every numeric flag refuses NaN and infinities and its own out-of-range values;
every --out refuses to overwrite an input or (without --force) an existing file, and is checked before any
work; every dataset reader turns a damaged compressed file, a wild timestamp and an infinite, absurd or
negative value into one line naming the file and column.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from harmony.cli.main import app
from harmony.telemetry.datasets import DATASETS_ROOT
from tests.checkpoints import tiny_checkpoint

runner = CliRunner()
TINY_TRAIN = ["--dataset", "synthetic", "--option", "series=2", "--option", "steps=400", "--lookback", "24",
              "--horizon", "2", "--epochs", "1", "--d-model", "8", "--heads", "2", "--batch-size", "128",
              "--no-progress"]
FAST_FIT = ["--warmup", "50", "--samples", "50"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def refused(result, *needles: str) -> str:
    """The one error line of a refused command, checked to name every needle."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def demand_csv(path: Path, rows: int = 1500, values=None) -> Path:
    """A one-series CSV of 1-minute demand, `qps`, enough rows for a backtest."""
    qps = 5 + np.sin(np.arange(rows) / 10) if values is None else values
    pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=rows, freq="1min"), "qps": qps}).to_csv(
        path, index=False)
    return path


def backtest_csv(path: Path, *args):
    return run("backtest", "--dataset", "csv", "--path", path, "--demand", "qps", "--capacity", 1, *args)


# --- numeric flags ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "flag"), [
    (["backtest", "--cold-start", "nan"], "--cold-start must be a finite number"),
    (["backtest", "--cold-start", "inf"], "--cold-start must be a finite number"),
    (["backtest", "--capacity", "nan"], "--capacity must be a finite number"),
    (["backtest", "--lookback-seconds", "inf"], "--lookback-seconds must be a finite number"),
    (["backtest", "--history-seconds", "nan"], "--history-seconds must be a finite number"),
    (["backtest", "--train-fraction", "nan"], "--train-fraction must be a finite number"),
    (["backtest", "--sla", "nan"], "--sla must be a finite number"),
    (["backtest", "--seed", "-1"], "--seed must lie in [0, 4294967296)"),
    (["backtest", "--max-gap", "-1"], "--max-gap must be >= 0"),
    (["evaluate", "--samples", "0"], "--samples must be >= 1"),
    (["evaluate", "--lookback", "0"], "--lookback must be >= 1"),
    (["calibrate", "--prior-capacity", "inf"], "--prior-capacity must be a finite number"),
    (["calibrate", "--saturation-quantile", "nan"], "--saturation-quantile must be a finite number"),
    (["calibrate", "--samples", "5"], "--samples must be >= 10"),
    (["train", "--batch-size", "0"], "--batch-size must be >= 1"),
    (["train", "--horizon", "0"], "--horizon must be >= 1"),
    (["train", "--dropout", "1.5"], "--dropout must lie in [0, 1)"),
    (["train", "--learning-rate", "nan"], "--learning-rate must be a finite number"),
    (["train", "--epochs", "0"], "--epochs must be >= 1"),
    (["train", "--crps-weight", "inf"], "--crps-weight must be a finite number"),
    (["replay-exporter", "--port", "70000"], "--port must lie in [0, 65535]"),
    (["replay-exporter", "--speed", "nan"], "--speed must be a finite number"),
    (["replay-exporter", "--duration", "-1"], "--duration must be >= 0"),
])
def test_a_numeric_flag_out_of_its_range_is_refused_naming_it(args, flag, tmp_path):
    out = tmp_path / "out"
    result = run(*args, "--out", out) if args[0] in ("train", "evaluate", "calibrate") else run(*args)
    refused(result, flag)
    assert not out.exists()


def test_train_with_a_gpu_accelerator_and_no_gpu_is_refused_up_front(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    refused(run("train", *TINY_TRAIN, "--accelerator", "gpu", "--out", tmp_path / "m.ckpt"), "--accelerator gpu")
    assert not (tmp_path / "m.ckpt").exists()


def test_train_with_an_impossible_device_count_is_one_line_naming_the_flags(tmp_path):
    refused(run("train", *TINY_TRAIN, "--devices", "0", "--out", tmp_path / "m.ckpt"), "--devices")


def test_an_empty_demand_list_is_refused():
    refused(run("backtest", "--demand", ","), "--demand ',' names no indicator")


def test_an_absurd_cold_start_is_blamed_on_the_cold_start(tmp_path):
    line = refused(backtest_csv(demand_csv(tmp_path / "d.csv"), "--cold-start", "1e12", "--policies", "harmony"),
                   "--cold-start 1e+12 s", "intervals of history")
    assert "ar:30" not in line


def test_a_lookback_longer_than_the_history_is_refused_naming_the_flag(tmp_path):
    """At 1-minute data 100000 s is 1667 intervals, past the 1440 of the default history: the run would hold
    its count all along for want of a forecast."""
    refused(backtest_csv(demand_csv(tmp_path / "d.csv"), "--lookback-seconds", 100000, "--policies", "harmony"),
            "--lookback-seconds 100000", "--history-seconds")


def test_a_lookback_the_history_before_the_span_cannot_fit_is_refused_naming_the_flags(tmp_path):
    refused(backtest_csv(demand_csv(tmp_path / "d.csv"), "--lookback-seconds", 30000, "--history-seconds", 100000,
                         "--policies", "harmony"), "--lookback-seconds 30000", "--train-fraction")


def test_a_too_fine_interval_is_refused_before_allocating_the_grid():
    refused(run("backtest", "--interval", "1ns", "--policies", "harmony"), "1ns steps", "--interval")
    refused(run("datasets", "show", "synthetic", "--interval", "1ns"), "--interval")
    refused(run("datasets", "show", "azure-llm", "--interval", "1ns"), "--interval")


@pytest.mark.parametrize(("posterior", "field"), [
    ({"mu": [-1.0], "kappa": [10.0], "alpha": [3.0], "beta": [1.0]}, "capacity_posterior.mu"),
    ({"mu": [float("nan")], "kappa": [10.0], "alpha": [3.0], "beta": [1.0]}, "capacity_posterior.mu"),
    ({"mu": [2.0], "kappa": [-1.0], "alpha": [3.0], "beta": [1.0]}, "capacity_posterior.kappa"),
    ({"mu": [2.0], "kappa": [10.0], "alpha": [3.0], "beta": [float("inf")]}, "capacity_posterior.beta"),
])
def test_an_impossible_capacity_prior_is_refused_naming_the_field(tmp_path, posterior, field):
    prior = tmp_path / "prior.json"
    prior.write_text(json.dumps({"capacity_posterior": posterior, "unit": "1 per replica"}))
    refused(backtest_csv(demand_csv(tmp_path / "d.csv"), "--capacity-prior", prior, "--policies", "harmony"),
            str(prior), field, "--capacity-prior")


# --- dataset files ---------------------------------------------------------------------------------
def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _flipped(data: bytes) -> bytes:
    damaged = bytearray(data)
    for i in range(len(damaged) // 3, len(damaged) // 3 + 64):
        damaged[i] ^= 0xFF
    return bytes(damaged)


def _not_gzip(data: bytes) -> bytes:
    return b"this is not gzip\n"


def _gentd26(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "gentd26"
    shutil.copytree(DATASETS_ROOT / "gentd26", folder)
    return folder, folder / "qps.csv.gz"


def _servegen(tmp_path: Path) -> tuple[Path, Path]:
    file = tmp_path / "m-large.csv.gz"
    shutil.copy(DATASETS_ROOT / "servegen" / "m-large.csv.gz", file)
    return file, file


def _alibaba(tmp_path: Path) -> tuple[Path, Path]:
    file = tmp_path / "lora_request_trace.csv.gz"
    shutil.copy(DATASETS_ROOT / "alibaba-lora" / "lora_request_trace.csv.gz", file)
    return file, file


def _azure(tmp_path: Path) -> tuple[Path, Path]:
    file = tmp_path / "azure.csv.gz"
    file.write_bytes(gzip.compress((DATASETS_ROOT / "azure-llm" / "AzureLLMInferenceTrace_conv.csv").read_bytes()))
    return file, file


def _csv_folder(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "csvs"
    folder.mkdir()
    plain = demand_csv(tmp_path / "day.csv", rows=200)
    (folder / "day.csv.gz").write_bytes(gzip.compress(plain.read_bytes()))
    return folder, folder / "day.csv.gz"


@pytest.mark.parametrize(("dataset", "build"), [
    ("gentd26", _gentd26), ("servegen", _servegen), ("alibaba-lora", _alibaba), ("azure-llm", _azure),
    ("csv", _csv_folder),
])
@pytest.mark.parametrize("damage", [_truncated, _flipped, _not_gzip])
def test_a_damaged_compressed_file_is_one_line_naming_it(tmp_path, dataset, build, damage):
    path, victim = build(tmp_path)
    victim.write_bytes(damage(victim.read_bytes()))
    line = refused(run("datasets", "show", dataset, "--path", path), str(victim))
    assert "Aborted" not in line


def test_a_wild_unix_timestamp_is_refused_naming_file_and_column(tmp_path):
    folder, _ = _gentd26(tmp_path)
    file = folder / "queue_size_raw_anon.csv.gz"
    df = pd.read_csv(file)
    df.loc[len(df)] = {"value": 5.0, "container_ip": None, "timestamp_anon": 1e20}
    df.to_csv(file, index=False, compression="gzip")
    refused(run("datasets", "show", "gentd26", "--path", folder), str(file), "'timestamp_anon'", "1e+20")


def test_timestamps_too_far_apart_for_the_grid_are_refused_before_allocating_it(tmp_path):
    file = tmp_path / "far.csv"
    pd.DataFrame({"timestamp": [0, 1, 9e9], "qps": [1.0, 1.0, 3.0]}).to_csv(file, index=False)
    refused(run("datasets", "show", "csv", "--path", file), str(file), "--interval")


@pytest.mark.parametrize(("value", "what"), [
    (-2.0, "a negative value -2"), (np.inf, "inf"), (1e308, "1e+308"),
])
def test_a_corrupt_value_in_a_csv_is_refused_naming_file_and_column(tmp_path, value, what):
    values = 5 + np.sin(np.arange(1500) / 10)
    values[700] = value
    csv = demand_csv(tmp_path / "d.csv", values=values)
    line = refused(backtest_csv(csv, "--policies", "harmony"), str(csv), "column 'qps'", what)
    assert "series 0" not in line and "indicator 0" not in line
    refused(run("evaluate", "--dataset", "csv", "--path", csv, "--models", "last"), str(csv), "column 'qps'")


def test_a_checkpoint_of_the_right_format_but_missing_keys_is_one_line_naming_it(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "tiny.ckpt")
    state = torch.load(ckpt, weights_only=True)
    del state["config"]
    torch.save(state, tmp_path / "lacks.ckpt")
    state = torch.load(ckpt, weights_only=True)
    state["state_dict"] = dict(list(state["state_dict"].items())[:-2])
    torch.save(state, tmp_path / "weights.ckpt")
    for name, needle in (("lacks.ckpt", "lacks 'config'"), ("weights.ckpt", "Missing key")):
        refused(run("evaluate", "--dataset", "synthetic", "--protocol", "rolling", "--lookback", 16, "--models",
                    f"harmony:{tmp_path / name}"), str(tmp_path / name), "damaged harmony checkpoint", needle)


# --- outputs ---------------------------------------------------------------------------------------
def test_evaluate_never_overwrites_its_own_input(tmp_path):
    csv = demand_csv(tmp_path / "d.csv", rows=400)
    before = csv.read_bytes()
    for force in ([], ["--force"]):
        refused(run("evaluate", "--dataset", "csv", "--path", csv, "--models", "last", "--out", csv, *force),
                f"--out {csv} is the input", "--path")
        assert csv.read_bytes() == before
    refused(run("evaluate", "--dataset", "csv", "--path", tmp_path, "--models", "last", "--out", tmp_path / "r.csv"),
            "is in the input folder")


def test_an_existing_output_needs_force_for_every_command(tmp_path):
    obs = tmp_path / "obs.csv"
    pd.DataFrame({"c": 5 + np.random.default_rng(0).normal(0, 0.3, 20)}).to_csv(obs, index=False)
    csv = demand_csv(tmp_path / "d.csv", rows=400)
    for args, name in ((["train", *TINY_TRAIN], "taken.ckpt"),
                       (["calibrate", "--observations", obs, "--column", "c", *FAST_FIT], "taken.json"),
                       (["evaluate", "--dataset", "csv", "--path", csv, "--models", "last"], "taken.csv")):
        existing = tmp_path / name
        existing.write_text("keep me\n")
        refused(run(*args, "--out", existing), f"--out {existing} exists; pass --force")
        assert existing.read_text() == "keep me\n"
    existing = tmp_path / "taken.json"
    forced = run("calibrate", "--observations", obs, "--column", "c", *FAST_FIT, "--out", existing, "--force")
    assert forced.exit_code == 0, forced.output
    assert "capacity_posterior" in json.loads(existing.read_text())


def test_an_out_whose_extension_names_no_format_it_writes_is_refused_before_any_work(tmp_path):
    """The writer follows the extension, so a name it cannot honour (a spreadsheet, a typo, none) is refused
    naming --out and what it accepts, with nothing written; a folder output named like a file likewise."""
    obs = tmp_path / "obs.csv"
    pd.DataFrame({"c": 5 + np.random.default_rng(0).normal(0, 0.3, 20)}).to_csv(obs, index=False)
    csv = demand_csv(tmp_path / "d.csv", rows=400)
    commands = {"evaluate": (["evaluate", "--dataset", "csv", "--path", csv, "--models", "last"],
                             ["results.xlsx", "results.gz", "results"], ".csv, .csv.gz, .parquet, .json"),
                "calibrate": (["calibrate", "--observations", obs, "--column", "c", *FAST_FIT],
                              ["prior.yaml", "prior.csv"], "in .json"),
                "train": (["train", *TINY_TRAIN], ["model.bin", "model"], ".ckpt, .pt")}
    for args, names, accepted in commands.values():
        for name in names:
            result = run(*args, "--out", tmp_path / name)
            refused(result, f"--out {tmp_path / name}: the extension names the format", accepted)
            assert "wrote" not in result.stdout and not (tmp_path / name).exists()
    for name in ("report.csv", "report.parquet", "report.json"):
        result = backtest_csv(csv, "--out", tmp_path / name)
        refused(result, f"--out {tmp_path / name} is named like a", "writes a folder")
        assert "evaluated span" not in result.stdout and not (tmp_path / name).exists()


def test_train_with_force_overwrites_its_checkpoint(tmp_path):
    out = tmp_path / "m.ckpt"
    out.write_text("an old checkpoint\n")
    result = run("train", *TINY_TRAIN, "--out", out, "--force")
    assert result.exit_code == 0, result.output
    assert torch.load(out, weights_only=True)["format"] == "harmony-forecaster/1"


def test_backtest_out_is_checked_before_any_work(tmp_path):
    csv = demand_csv(tmp_path / "d.csv")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    line = refused(backtest_csv(csv, "--out", a_file), f"--out {a_file} exists and is not a folder")
    assert "evaluated span" not in line
    refused(backtest_csv(csv, "--out", a_file / "sub"), f"{a_file} is not a folder")
    refused(backtest_csv(tmp_path, "--out", tmp_path / "report"), "is in the input folder", "--path")
    folder = tmp_path / "report"
    first = backtest_csv(csv, "--policies", "harmony,oracle", "--out", folder)
    assert first.exit_code == 0, first.output
    summary = (folder / "summary.csv").read_bytes()
    again = backtest_csv(csv, "--policies", "hpa,oracle", "--out", folder)
    refused(again, f"--out {folder / 'summary.csv'} exists; pass --force")
    assert "evaluated span" not in again.stdout  # refused before loading the trace
    assert (folder / "summary.csv").read_bytes() == summary
    forced = backtest_csv(csv, "--policies", "hpa,oracle", "--out", folder, "--force")
    assert forced.exit_code == 0, forced.output
    assert "hpa" in (folder / "summary.csv").read_text()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_an_unwritable_out_is_refused_before_any_work(tmp_path):
    """/proc/self takes no new files, for root too (a chmod'ed folder would not stop root)."""
    result = backtest_csv(demand_csv(tmp_path / "d.csv"), "--out", "/proc/self/harmony-report")
    refused(result, "--out /proc/self/harmony-report: cannot write in /proc/self")
    assert "evaluated span" not in result.stdout


def test_a_read_only_folder_is_refused_before_any_work(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):
        folder.chmod(0o755)
        pytest.skip("permissions do not bind this user (root); the /proc test covers it")
    try:
        refused(run("train", *TINY_TRAIN, "--out", folder / "m.ckpt"), f"cannot write in {folder}")
    finally:
        folder.chmod(0o755)


# --- calibrate: degenerate observations ------------------------------------------------------------
def test_calibrate_on_identical_observations_is_refused_instead_of_running_forever(tmp_path):
    """NUTS on observations without spread never finishes (the posterior of the scatter is improper): the
    command must return, refused, without sampling at all."""
    obs = tmp_path / "same.csv"
    pd.DataFrame({"c": [5.0] * 10}).to_csv(obs, index=False)
    refused(run("calibrate", "--observations", obs, "--column", "c"), str(obs), "'c'", "are all 5")
    pd.DataFrame({"c": [5.0] * 9 + [5.000001]}).to_csv(obs, index=False)
    refused(run("calibrate", "--observations", obs, "--column", "c"), str(obs), "barely vary")


def test_calibrate_with_too_few_iterations_to_move_is_one_line_naming_the_flags(tmp_path):
    obs = tmp_path / "obs.csv"
    pd.DataFrame({"c": 5 + np.random.default_rng(0).normal(0, 0.3, 20)}).to_csv(obs, index=False)
    refused(run("calibrate", "--observations", obs, "--column", "c", "--warmup", 20, "--samples", 20),
            "NUTS did not move", "--warmup", "--samples")
