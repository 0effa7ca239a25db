"""The peers bench's plumbing (bench/forecast_peers.py) on a tiny synthetic frame, and the peers' sampling.

The plumbing runs with harmony's own baselines only; the peers themselves need the `bench` extra, which CI
does not install, so their contract test skips without it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import forecast_peers as fp  # noqa: E402
from peers.deepar import series_entries  # noqa: E402
from peers.sampling import column_series, quantile_samples, two_piece_samples, two_piece_scales  # noqa: E402

from harmony.errors import HarmonyInputError  # noqa: E402
from harmony.forecasting.predictors import PREDICTORS, Context, build_predictor  # noqa: E402
from harmony.telemetry.datasets import load_dataset  # noqa: E402

ROLLING = fp.Run("tiny", "synthetic, rolling", "synthetic", "rolling", lookback=24, ar="ar:6",
                 seasonal="seasonal:12", cold_start_s=600.0, stride=3)
PER_SERIES = fp.Run("tiny-harmony", "synthetic, HARMONY protocol", "synthetic", "harmony", lookback=24, ar="ar:6",
                    seasonal="seasonal:12")


@pytest.fixture(scope="module")
def frame():
    return load_dataset("synthetic", series="2", interval="5min", steps="400", seed="0")


@pytest.fixture(scope="module")
def rolling_rows(frame):
    return fp.measure(ROLLING, frame, ROLLING.specs(frame, [], harmony=False), n_samples=20)


def test_rows_have_the_columns_and_ratios_are_crps_over_ar(frame, rolling_rows, tmp_path):
    assert ROLLING.horizon(frame) == 3  # the decision horizon: a 600 s cold start at 5 minutes, plus one interval
    fp.write_csv(rolling_rows, tmp_path / "tiny.csv")
    table = pd.read_csv(tmp_path / "tiny.csv")
    assert list(table.columns[:len(fp.COLUMNS)]) == fp.COLUMNS
    assert set(table["model"]) == {"ar:6", "seasonal:12", "last"}
    assert set(table["series"]) == {"synthetic-000", "synthetic-001", "mean"}
    ar = {r["series"]: r for r in rolling_rows if r["model"] == "ar:6"}
    for row in rolling_rows:
        assert row["crps_vs_ar"] == row["crps"] / ar[row["series"]]["crps"]
        assert row["crps_max_vs_ar"] == row["crps_max"] / ar[row["series"]]["crps_max"]
        assert row["fit_s"] >= 0 and row["predict_s"] > 0
    assert {r["crps_vs_ar"] for r in ar.values()} == {1.0}
    seasonal = [r for r in rolling_rows if r["model"] == "seasonal:12"]
    assert len({r["crps_vs_ar"] for r in seasonal}) > 1  # a ratio per series, not one copied


def test_the_registry_is_restored_after_a_run(rolling_rows):
    assert not set(fp.PEERS) & set(PREDICTORS)
    assert type(build_predictor("ar:6")).__name__ == "AutoRegressive"  # no timing wrapper left behind


def test_per_series_protocol_times_each_series_apart(frame):
    rows = fp.measure(PER_SERIES, frame, ["ar:6", "last"], n_samples=20)
    ar = [r for r in rows if r["model"] == "ar:6" and r["series"] != "mean"]
    assert len(ar) == 2 and ar[0]["fit_s"] != ar[1]["fit_s"]  # one fit per series, each its own time
    mean = next(r for r in rows if r["model"] == "ar:6" and r["series"] == "mean")
    assert mean["fit_s"] == pytest.approx((ar[0]["fit_s"] + ar[1]["fit_s"]) / 2)


def test_targets_say_not_measured_without_harmony(rolling_rows):
    results = {"gentd26": rolling_rows}
    rows = fp.target_rows(results)
    gentd = [t for t in rows if t["run"] == "gentd26"]
    assert gentd and all(t["met"] == "not measured" for t in gentd)
    assert {t["measured"] for t in rows if t["run"] == "fisher"} == {"run not made"}


def test_targets_met_and_missed_from_the_numbers():
    def row(model, series, crps, crps_max, coverage=0.9):
        return {"model": model, "series": series, "crps": crps, "crps_max": crps_max, "coverage90": coverage}

    rows = fp.with_ratios([row("ar:30", "mean", 1.0, 1.0), row("harmony:lookback=120", "mean", 0.8, 0.95),
                           row("ets", "mean", 0.7, 0.7)], "ar:30")
    by_run = {"alibaba-lora": rows, "gentd26": rows}
    out = {(t["run"], t["target"]): t for t in fp.target_rows(by_run)}
    assert out[("alibaba-lora", "HARMONY mean CRPS at most 0.85x AR's")]["met"] == "met"
    assert out[("alibaba-lora", "HARMONY mean CRPS below every peer")]["met"] == "missed"
    assert out[("gentd26", "HARMONY CRPS of the horizon maximum at most 0.9x AR's")]["met"] == "missed"


def test_the_section_replaces_only_itself(tmp_path, rolling_rows):
    doc = tmp_path / "forecasting.md"
    doc.write_text("# Forecasting results\n\n## Before\n\nkept\n\n## Peers, same run\n\nold\n\n## After\n\nkept too\n")
    section = fp.markdown_section({"tiny": rolling_rows}, {"tiny": "tiny run"}, {"tiny": ROLLING}, "cmd --quick",
                                  Path("results/x"), 1.0)
    fp.write_section(doc, section)
    fp.write_section(doc, section)
    text = doc.read_text()
    assert text.count(fp.SECTION) == 1 and "old" not in text
    assert text.index("## Before") < text.index(fp.SECTION) < text.index("## After")
    assert "kept\n" in text and "kept too" in text and "`cmd --quick`" in text and "### tiny run" in text


def test_quantile_samples_pass_through_the_quantiles_and_continue_the_outer_slopes():
    levels = np.array([0.1, 0.5, 0.9])
    quantiles = np.array([[3.0], [1.0], [0.0]])  # crossing: sorted to 0, 1, 3
    ranks = np.array([[0.1], [0.5], [0.9], [0.3], [0.0], [1.0]])
    out = quantile_samples(levels, quantiles, ranks)[:, 0]
    np.testing.assert_allclose(out, [0.0, 1.0, 3.0, 0.5, -0.25, 3.5])


def test_two_piece_normal_reproduces_normal_intervals():
    levels = (50, 80, 90)
    mean, sigma = np.array([1.0, 2.0]), np.array([0.5, 2.0])
    bounds = {}
    for level in levels:
        z = stats.norm.ppf((1 + level / 100) / 2)
        bounds[f"lo-{level}"], bounds[f"hi-{level}"] = mean - z * sigma, mean + z * sigma
    below, above = two_piece_scales(levels, mean, bounds)
    np.testing.assert_allclose(below, sigma)
    np.testing.assert_allclose(above, sigma)
    np.testing.assert_allclose(two_piece_samples(mean, below, above, np.full((1, 2), 0.95)),
                               [mean + stats.norm.ppf(0.95) * sigma])


def test_deepar_entries_are_one_series_per_column_and_indicator():
    values = np.arange(4 * 3 * 2, dtype=float).reshape(4, 3, 2)  # [time, columns, indicators]
    entries = series_entries(values)
    assert len(entries) == 6
    for k, entry in enumerate(entries):  # column-major: entry c * indicators + i
        np.testing.assert_array_equal(entry["target"], values[:, k // 2, k % 2])


def test_a_context_that_is_not_origins_by_series_is_refused():
    np.testing.assert_array_equal(column_series(6, 2, "ets"), [0, 1, 0, 1, 0, 1])
    with pytest.raises(HarmonyInputError, match="not origins x series"):
        column_series(5, 2, "ets")


@pytest.mark.parametrize("spec", ["ets", "theta", "lgbm:lags=6+horizon=3+rounds=5",
                                  "deepar:context=12+lags=3+horizon=3+epochs=1"])
def test_peer_contract(spec, frame):
    name = spec.partition(":")[0]
    pytest.importorskip(fp.LIBRARIES[name])
    model = fp.PEERS[name][0](spec, spec.partition(":")[2] or None)
    split = frame.split(train=0.7, test=0.2)
    model.fit(split.train, split.validation)
    ctx = Context(np.concatenate([frame.values[-24:]] * 2, axis=1), indicators=tuple(frame.indicator_names))
    forecast = model.predict(ctx, 3, n_samples=16, seed=1)
    assert forecast.samples.shape == (16, 3, 4, len(frame.indicator_names))
    assert np.isfinite(forecast.samples).all()
    np.testing.assert_array_equal(forecast.samples, model.predict(ctx, 3, n_samples=16, seed=1).samples)
    if name != "deepar":  # DeepAR draws its own paths
        first, last = forecast.samples[:, 0], forecast.samples[:, 2]
        order = (first[:, None] - first[None]) * (last[:, None] - last[None])
        assert (order >= 0).all()  # comonotone paths: no two samples swap order between steps


def test_validation_rows_end_before_the_test_rows_and_harmony_variants_are_all_run():
    run = next(r for r in fp.runs(quick=True) if r.key == "gentd26")
    whole, before = run.frame(), run.frame(validation=True)
    assert len(before) == int(fp.VALIDATION_SHARE * len(whole))
    assert before.index[-1] < whole.index[len(whole) - len(whole.split(train=0.7, test=0.2).test)]
    specs = run.specs(before, [], True, ["", "members=3", ""])
    assert [s for s in specs if s.startswith("harmony")] == ["harmony:lookback=120+horizon=6",
                                                             "harmony:lookback=120+horizon=6+members=3"]

    def row(model, crps):
        return {"model": model, "series": "mean", "crps": crps, "crps_max": crps, "coverage90": 0.9}

    rows = fp.with_ratios([row("ar:30", 1.0), row(specs[-2], 0.95), row(specs[-1], 0.8)], "ar:30")
    out = {t["target"]: t for t in fp.target_rows({"alibaba-lora": rows})}
    assert out["HARMONY mean CRPS at most 0.85x AR's"]["measured"] == "0.800x"  # the last HARMONY model
