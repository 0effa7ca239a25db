"""`harmony backtest` end to end on bundled gentd26, and its bad-input errors."""

import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from harmony.cli.main import app

runner = CliRunner()
SUMMARY = ["policy", "gpu_hours", "breach_rate", "unserved_fraction", "scaling_actions", "mean_utilisation",
           "oracle_ratio", "unknown_ticks"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_backtest_writes_summary_plots_and_a_self_contained_report(tmp_path):
    out = tmp_path / "bt"
    result = run("backtest", "--dataset", "gentd26", "--policies", "all", "--cold-start", 300, "--sla", 0.01,
                 "--sweep", "--out", out)
    assert result.exit_code == 0, result.output
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns) == SUMMARY
    assert len(summary) == 9 and (summary["unknown_ticks"] == 0).all()
    oracle = summary[summary["policy"] == "oracle"].iloc[0]
    assert oracle["oracle_ratio"] == 1.0 and oracle["breach_rate"] == 0.0
    static = summary[summary["policy"].str.startswith("static")].iloc[0]
    assert static["scaling_actions"] == 0 and static["oracle_ratio"] > 1.0
    for png in ("capacity.png", "cost_breach.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "http" not in page
    sweep = pd.read_csv(out / "sweep.csv")
    assert set(sweep["policy"]) == {"harmony", "harmony-via-hpa", "hpa", "keda", "kpa", "static", "predictive",
                                    "quantile"}
    assert "unknown_ticks" in page
    assert "at the SLA" in result.output
    assert re.search(r"forecaster: harmony, trained on \d{3} rows of history", result.output)  # the default


def test_a_gap_longer_than_max_gap_is_held_and_reported_as_unknown(tmp_path):
    qps = [50.0 + 30.0 * ((i // 20) % 2) for i in range(400)]
    qps[300:330] = [float("nan")] * 30  # in the evaluated span (the last 30%), longer than --max-gap 5
    csv = tmp_path / "gappy.csv"
    pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=400, freq="1min"), "qps": qps}).to_csv(
        csv, index=False)
    out = tmp_path / "bt"
    result = run("backtest", "--dataset", "csv", "--path", csv, "--demand", "qps", "--capacity", 10,
                 "--policies", "hpa,keda,kpa,static,oracle", "--max-gap", 5, "--out", out)
    assert result.exit_code == 0, result.output
    assert "30 of 120 evaluated ticks have no demand" in result.output
    summary = pd.read_csv(out / "summary.csv")
    assert (summary["unknown_ticks"] == 30).all()
    assert "30 evaluated ticks have no demand" in (out / "report.html").read_text()


def test_backtest_on_another_dataset_with_explicit_demand(tmp_path):
    result = run("backtest", "--dataset", "synthetic", "--option", "series=1", "--option", "steps=3000",
                 "--policies", "hpa,oracle", "--demand", "gpu_busy", "--capacity", 2, "--cold-start", 120)
    assert result.exit_code == 0, result.output
    assert "capacity 2 per replica" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sla", "1.5"], "--sla must lie in (0, 1)"),
        (["--sla", "0"], "--sla must lie in (0, 1)"),
        (["--min-replicas", "5", "--max-replicas", "2"], "--min-replicas 5 is above --max-replicas 2"),
        (["--cold-start", "-1"], "--cold-start must be >= 0"),
        (["--policies", "hpa,vpa"], "unknown policy 'vpa' (--policies)"),
        (["--model", "prophet"], "unknown model 'prophet' (--model)"),
        (["--dataset", "synthetic", "--demand", "gpu_busy"], "--demand needs --capacity"),
        (["--dataset", "gentd26", "--demand", "nope", "--capacity", "1"], "unknown indicator 'nope'"),
        (["--capacity", "-2"], "--capacity must be positive"),
    ],
)
def test_bad_backtest_flags_exit_2_with_one_line(args, message):
    result = run("backtest", *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_a_dataset_without_a_demand_definition_is_refused(tmp_path):
    csv = tmp_path / "mine.csv"
    pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=100, freq="1min"),
                  "qps": range(100)}).to_csv(csv, index=False)
    result = run("backtest", "--dataset", "csv", "--path", csv)
    assert result.exit_code == 2
    assert "dataset 'csv' has no demand definition (--dataset)" in result.stderr


def test_capacity_prior_from_calibrate_must_match_the_demand_unit(tmp_path):
    import json

    from harmony.decision.posteriors import CapacityPosterior

    prior = tmp_path / "prior.json"
    record = {"capacity_posterior": CapacityPosterior.prior(0.05).to_dict(), "unit": "requests/s per replica"}
    prior.write_text(json.dumps(record))
    ok = run("backtest", "--demand", "generative_qps,api_qps", "--capacity", 0.05, "--capacity-prior", prior,
             "--policies", "harmony,oracle", "--model", "ar:30")  # the prior is the point, not the forecaster
    assert ok.exit_code == 0, ok.output
    wrong = run("backtest", "--capacity-prior", prior, "--policies", "harmony", "--model", "ar:30")
    assert wrong.exit_code == 2
    assert "capacity unit 'requests/s per replica' does not match the demand unit 'gpus'" in wrong.stderr
    missing = run("backtest", "--capacity-prior", tmp_path / "nope.json")
    assert missing.exit_code == 2 and "no such file (--capacity-prior)" in missing.stderr
