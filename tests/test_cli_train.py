"""`harmony train` end to end: a checkpoint that `harmony evaluate --models harmony:PATH` can use."""

import torch
from typer.testing import CliRunner

from harmony.cli.main import app

runner = CliRunner()
DATA = ["--dataset", "synthetic", "--option", "series=2", "--option", "steps=400", "--option", "seed=3"]
# a tiny network and run (defaults: d_model 32, 4 heads, up to 40 epochs of batch 64): these tests check the
# plumbing (flags reach the checkpoint, evaluate loads it, DDP writes once), not the forecasts
SMALL = ["--lookback", "24", "--horizon", "2", "--epochs", "2", "--d-model", "8", "--heads", "2", "--batch-size", "128",
         "--no-progress"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_train_writes_a_checkpoint_that_evaluate_loads(tmp_path):
    out = tmp_path / "models" / "harmony.ckpt"
    result = run("train", *DATA, *SMALL, "--seed", "4", "--out", out)
    assert result.exit_code == 0, result.output
    assert out.is_file() and f"wrote {out}" in result.output.replace("\n", "")
    assert "best validation NLL" in result.output
    state = torch.load(out, weights_only=True)
    assert state["config"]["lookback"] == 24 and state["config"]["horizon"] == 2
    assert state["config"]["levels"] == (1, 2, 2, 1, 3)  # the synthetic source's indicator levels
    assert state["settings"]["seed"] == 4 and state["metadata"]["dataset"] == "synthetic"
    assert len(state["metadata"]["series_scaler"]["data_min"]) == 2  # per series
    evaluated = run("evaluate", *DATA, "--protocol", "rolling", "--lookback", "24", "--horizon", "4",
                    "--models", f"harmony:{out},last", "--out", tmp_path / "scores.csv")
    assert evaluated.exit_code == 0, evaluated.output
    scores = (tmp_path / "scores.csv").read_text()
    assert f"harmony:{out}" in scores


def test_ablation_flags_reach_the_checkpoint(tmp_path):
    out = tmp_path / "ablation.ckpt"
    result = run("train", *DATA, *SMALL, "--no-hierarchy", "--no-flow", "--out", out)
    assert result.exit_code == 0, result.output
    config = torch.load(out, weights_only=True)["config"]
    assert config["hierarchy"] is False and config["flow"] == "none"


def test_members_train_a_deep_ensemble_into_one_checkpoint(tmp_path):
    out = tmp_path / "ensemble.ckpt"
    result = run("train", *DATA, *SMALL, "--members", "2", "--seed", "5", "--out", out)
    assert result.exit_code == 0, result.output
    assert "the first of 2 members" in result.output
    state = torch.load(out, weights_only=True)
    assert len(state["members"]) == 1 and state["settings"]["seed"] == 5  # member 2 was trained from seed 6
    assert any(not torch.equal(v, state["members"][0][k]) for k, v in state["state_dict"].items())
    refused = run("train", *DATA, *SMALL, "--members", "0", "--out", tmp_path / "none.ckpt")
    assert refused.exit_code == 2 and "--members" in refused.output and not (tmp_path / "none.ckpt").exists()


def test_bad_flags_end_with_one_error_line(tmp_path):
    result = run("train", *DATA, *SMALL, "--flow", "glow", "--out", tmp_path / "x.ckpt")
    assert result.exit_code == 2
    assert "error:" in result.output and "glow" in result.output
    assert not (tmp_path / "x.ckpt").exists()
    missing = run("evaluate", *DATA, "--protocol", "rolling", "--lookback", "24", "--models",
                  f"harmony:{tmp_path / 'nope.ckpt'}")
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_ddp_on_two_cpu_processes_writes_one_checkpoint(tmp_path):
    """`--strategy ddp` is Lightning's: two gloo processes train in step, and only rank 0 writes and reports."""
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "ddp.ckpt"
    harmony = Path(sys.executable).with_name("harmony")
    args = [str(harmony), "train", *DATA, *SMALL, "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp",
            "--out", str(out)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    output = (done.stdout + done.stderr).replace("\n", "")
    assert "GLOBAL_RANK: 1" in output  # a second process really joined
    assert output.count("wrote ") == 1 and output.count("best validation NLL") == 1
    state = torch.load(out, weights_only=True)
    assert state["settings"]["strategy"] == "ddp" and state["settings"]["devices"] == 2


def test_a_model_trained_for_the_decision_forecasts_the_demand_path_alone(tmp_path):
    """--target: the flow models the demand over the horizon, the other indicators are covariates; evaluate
    scores it on its target, and a horizon beyond the trained one (which would need the covariates' future)
    is refused in one line."""
    out = tmp_path / "demand.ckpt"
    result = run("train", *DATA, *SMALL, "--target", "requests", "--out", out)
    assert result.exit_code == 0, result.output
    state = torch.load(out, weights_only=True)
    assert state["config"]["targets"] == (0,) and state["config"]["path_mix"] is True
    scores_csv = tmp_path / "scores.csv"
    evaluated = run("evaluate", *DATA, "--protocol", "rolling", "--lookback", "24", "--horizon", "2",
                    "--models", f"harmony:{out}", "--out", scores_csv)
    assert evaluated.exit_code == 0, evaluated.output
    assert f"harmony:{out}" in scores_csv.read_text()
    beyond = run("evaluate", *DATA, "--protocol", "rolling", "--lookback", "24", "--horizon", "4",
                 "--models", f"harmony:{out}")
    assert beyond.exit_code == 2 and "trained for 2 steps" in beyond.output
    unknown = run("train", *DATA, *SMALL, "--target", "rps", "--out", tmp_path / "x.ckpt")
    assert unknown.exit_code == 2 and "--target 'rps'" in unknown.output
