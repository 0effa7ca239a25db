"""Offline capacity calibration: observation extraction, the pyro fit, its NIG match, `harmony calibrate`."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from harmony.backtest.calibrate import (
    CapacitySignals,
    capacity_observations,
    capacity_signals,
    fit_capacity,
    match_moments,
)
from harmony.cli.main import app
from harmony.decision.posteriors import CapacityPosterior
from harmony.telemetry.frame import Indicator, TelemetryFrame

runner = CliRunner()
TRUE_CAPACITY, TRUE_SCATTER = 2.0, 0.3


def synthetic(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(TRUE_CAPACITY, TRUE_SCATTER, n)


@pytest.fixture(scope="module")
def fits():
    """Fits on 25 and 400 observations with known capacity (the slow part, shared)."""
    return {n: (synthetic(n), fit_capacity(synthetic(n), warmup=200, samples=300, seed=0)) for n in (25, 400)}


def test_recovers_a_known_capacity_and_narrows_with_data(fits):
    (x_small, small), (x_large, large) = fits[25], fits[400]
    assert abs(large.capacity.mean() / TRUE_CAPACITY - 1) < 0.02
    assert abs(large.scatter.mean() / TRUE_SCATTER - 1) < 0.1
    # A weak prior: the posterior sd of c is close to the standard error of the mean.
    for x, fit in ((x_small, small), (x_large, large)):
        assert fit.capacity.std() == pytest.approx(x.std(ddof=1) / np.sqrt(x.size), rel=0.25)
    assert small.capacity.std() / large.capacity.std() > 2.5  # sqrt(16) = 4 expected
    summary = large.summary()["c"]
    assert summary["q05"] < TRUE_CAPACITY < summary["q95"]


def test_nig_reproduces_the_pyro_posterior_of_c(fits):
    x, fit = fits[400]
    post = fit.posterior
    draws = post.sample_mean(200_000, np.random.default_rng(0))[0]
    sd_c = fit.capacity.std(ddof=1)
    assert abs(draws.mean() - fit.capacity.mean()) < 0.02 * sd_c
    assert draws.std() == pytest.approx(sd_c, rel=0.02)
    assert post.beta[0] / (post.alpha[0] - 1) == pytest.approx(np.mean(fit.scatter**2), rel=1e-9)
    # Read as pseudo-observations: close to the conjugate posterior on the same data.
    assert 0.6 * x.size < post.kappa[0] < 1.5 * x.size
    assert 0.6 * x.size / 2 < post.alpha[0] < 1.5 * x.size / 2


def test_match_moments_recovers_a_known_nig():
    rng = np.random.default_rng(3)
    mu, kappa, alpha, beta = 5.0, 40.0, 12.0, 2.0
    s2 = beta / rng.gamma(alpha, 1.0, 200_000)  # InvGamma(alpha, beta)
    c = rng.normal(mu, np.sqrt(s2 / kappa))
    got = match_moments(c, np.sqrt(s2))
    assert got.mu[0] == pytest.approx(mu, rel=1e-3)
    assert got.kappa[0] == pytest.approx(kappa, rel=0.05)
    assert got.alpha[0] == pytest.approx(alpha, rel=0.1)
    assert got.beta[0] == pytest.approx(beta, rel=0.1)


def test_the_seed_makes_a_fit_reproducible():
    x = synthetic(30, seed=5)
    a, b = (fit_capacity(x, warmup=50, samples=50, seed=7) for _ in range(2))
    other = fit_capacity(x, warmup=50, samples=50, seed=8)
    np.testing.assert_array_equal(a.capacity, b.capacity)
    assert a.posterior.to_dict() == b.posterior.to_dict()
    assert not np.array_equal(a.capacity, other.capacity)


def hand_built_frame() -> TelemetryFrame:
    """20 ticks; queue rises 0..19 (tick 3 unread), so the 0.5-quantile keeps ticks 10-19."""
    n = 20
    queue = np.arange(n, dtype=float)
    queue[3] = np.nan
    gen = np.full(n, 6.0)
    api = np.full(n, 2.0)
    pods = np.full(n, 4.0)  # ratio 2.0 everywhere unless changed
    gen[:10] = 100.0  # unsaturated ticks with a huge ratio: must not appear
    pods[10] = 0.0  # no replicas: dropped
    pods[11] = np.nan  # unread replicas: dropped
    gen[12] = np.nan  # demand missing: dropped
    gen[13], api[13] = 0.0, 0.0  # no demand while the queue peaks: dropped
    gen[15], pods[15] = 18.0, 5.0  # (18 + 2) / 5 = 4
    pods[19] = 8.0  # 8 / 8 = 1
    values = np.stack([gen, api, pods, queue], axis=1)[:, None, :]
    inds = [Indicator("gen", unit="requests/s"), Indicator("api", unit="requests/s"),
            Indicator("pods", unit="pods"), Indicator("queue", unit="ms")]
    return TelemetryFrame(pd.date_range("2024-01-01", periods=n, freq="1min"), values, ["w"], inds)


def test_observations_come_only_from_saturated_ticks():
    signals = CapacitySignals(("gen", "api"), "pods", "queue", "test")
    found = capacity_observations(hand_built_frame(), signals, quantile=0.5)
    assert found.threshold == pytest.approx(np.nanquantile(np.r_[0, 1, 2, 4:20], 0.5))
    assert found.saturated == 10 and found.dropped == 4
    np.testing.assert_allclose(found.values, [2.0, 4.0, 2.0, 2.0, 2.0, 1.0])
    assert found.unit == "requests/s per replica"
    with pytest.raises(ValueError, match="only 3 capacity observations"):
        capacity_observations(hand_built_frame(), signals, quantile=0.85)


def test_gentd26_defaults_and_overrides():
    default = capacity_signals("gentd26")
    assert default == capacity_signals("gentd26", "generative_qps,api_qps", "busy_pods", "queue_time_ms")
    assert capacity_signals("gentd26", demand="generative_qps").demand == ("generative_qps",)
    assert capacity_signals("fisher", replicas="a", saturation="b").demand == ("load",)


def test_cli_calibrates_gentd26_into_a_loadable_prior(tmp_path):
    out = tmp_path / "sub" / "prior.json"
    result = runner.invoke(app, ["calibrate", "--dataset", "gentd26", "--warmup", "150", "--samples", "200",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    post = CapacityPosterior.from_dict(record["capacity_posterior"])
    assert post.workloads == 1
    assert record["unit"] == "requests/s per replica"
    assert record["source"]["demand"] == ["generative_qps", "api_qps"]
    assert record["source"]["replicas_indicator"] == "busy_pods"
    n = record["n_observations"]
    assert 20 <= n <= record["source"]["saturated_ticks"]
    summary = record["fit"]["summary"]["c"]
    assert summary["q05"] < post.mu[0] < summary["q95"]
    assert 0.01 < post.mu[0] < 0.2  # requests/s one busy Stable Diffusion pod serves
    assert "capacity c (requests/s per replica)" in result.output and "kappa" in result.output


def test_cli_calibrates_from_an_observations_csv(tmp_path):
    values = synthetic(40, seed=2)
    pd.DataFrame({"capacity": np.r_[values[:20], np.nan, values[20:]]}).to_csv(tmp_path / "obs.csv", index=False)
    out = tmp_path / "prior.json"
    result = runner.invoke(app, ["calibrate", "--observations", str(tmp_path / "obs.csv"), "--column", "capacity",
                                 "--unit", "gpus per replica", "--warmup", "100", "--samples", "100",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert record["n_observations"] == 40 and record["unit"] == "gpus per replica"
    assert CapacityPosterior.from_dict(record["capacity_posterior"]).mu[0] == pytest.approx(values.mean(), rel=0.03)


def write_column(path, values, name="c"):
    pd.DataFrame({name: values}).to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--replicas-indicator", "pods"], "--replicas-indicator: unknown indicator 'pods'"),
        (["--saturation-indicator", "latency"], "--saturation-indicator: unknown indicator 'latency'"),
        (["--saturation-quantile", "1.5"], "--saturation-quantile must lie in (0, 1), got 1.5"),
        (["--saturation-quantile", "0.999"], "need at least 5: lower --saturation-quantile"),
        (["--dataset", "fisher"], "dataset 'fisher' has no calibration defaults; pass --replicas-indicator"),
        (["--observations", "/nonexistent/obs.csv", "--column", "c"], "/nonexistent/obs.csv: no such file"),
        (["--observations", "{tmp}/ok.csv"], "--observations and --column go together"),
        (["--observations", "{tmp}/ok.csv", "--column", "capacity"], "ok.csv: missing column 'capacity'"),
        (["--observations", "{tmp}/zero.csv", "--column", "c"], "zero.csv: column 'c' has a non-positive value 0"),
        (["--observations", "{tmp}/text.csv", "--column", "c"], "text.csv: column 'c' has a non-numeric value"),
        (["--observations", "{tmp}/few.csv", "--column", "c"], "few.csv: column 'c' has 3 observations"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, args, message):
    write_column(tmp_path / "ok.csv", [1.0, 2.0, 1.5, 1.2, 1.8, 1.1])
    write_column(tmp_path / "zero.csv", [1.0, 2.0, 0.0, 1.2, 1.8, 1.1])
    write_column(tmp_path / "text.csv", [1.0, "fast", 1.5, 1.2, 1.8, 1.1])
    write_column(tmp_path / "few.csv", [1.0, 2.0, 1.5])
    result = runner.invoke(app, ["calibrate", *(a.replace("{tmp}", str(tmp_path)) for a in args)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


@pytest.mark.parametrize("values", [np.full(10, 5.0), 5.0 + 1e-7 * np.arange(10)])
def test_observations_without_spread_are_refused_before_sampling(values):
    """NUTS never finishes on them (the scatter's posterior is improper at zero spread): refused, not run."""
    from harmony.errors import HarmonyInputError

    with pytest.raises(HarmonyInputError, match="the 10 capacity observations (are all|barely vary around) 5"):
        fit_capacity(values)
