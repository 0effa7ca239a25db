"""One contract test over every registered predictor, plus checks specific to each family."""

import numpy as np
import pandas as pd
import pytest

from harmony.errors import HarmonyInputError
from harmony.forecasting.predictor_names import PREDICTOR_NAMES
from harmony.forecasting.predictors import PREDICTORS, Context, build_predictor, parse_models
from harmony.forecasting.predictors.autoregressive import AutoRegressive
from harmony.forecasting.predictors.naive import SeasonalNaive
from harmony.telemetry.frame import Indicator, TelemetryFrame
from tests.helpers import TINY_HARMONY, make_frame

HORIZON = 6


def context_of(frame: TelemetryFrame, end: int, length: int) -> Context:
    return Context(frame.values[end - length:end], np.repeat(frame.index.to_numpy()[end - 1], len(frame.series)),
                   frame.interval)


@pytest.fixture(scope="module")
def frame():
    return make_frame(steps=900, series=2, indicators=3)


#: registry names trained by gradient descent, given a tiny network and run in the contract (their defaults
#: train for up to a minute; the contract checks shapes, seeding and refusals, not the model's quality)
TINY_ARGS = {"harmony": TINY_HARMONY, "harmony-flat": TINY_HARMONY, "harmony-gauss": TINY_HARMONY}


def contract_spec(name: str) -> str:
    return f"{name}:{TINY_ARGS[name]}" if name in TINY_ARGS else name


def test_the_light_names_table_is_the_registry_s_names():
    # what the CLI's help lists without importing the models (the registry refuses to import otherwise)
    assert tuple(PREDICTORS) == PREDICTOR_NAMES


def test_tiny_arguments_name_registered_predictors_and_take_effect():
    assert set(TINY_ARGS) <= set(PREDICTORS)
    model = build_predictor(contract_spec("harmony"))
    assert (model.lookback, model.horizon, model.settings.max_epochs) == (24, 2, 2)
    assert model.options == {"d_model": 8, "n_heads": 2, "flow_layers": 2, "window_quantiles": 8}


@pytest.mark.parametrize("spec", sorted(PREDICTORS))
def test_predictor_contract(spec, frame):
    split = frame.split()
    model = build_predictor(contract_spec(spec)).fit(split.train, split.validation)
    length = max(72, model.min_context_steps)
    end = len(frame) - len(split.test)
    ctx = context_of(frame, end, length)
    fc = model.predict(ctx, HORIZON, n_samples=50, seed=3)
    assert fc.samples.shape == (50, HORIZON, 2, 3)
    assert fc.point_forecast.shape == (HORIZON, 2, 3)
    assert np.isfinite(fc.samples).all()
    again = model.predict(ctx, HORIZON, n_samples=50, seed=3)
    np.testing.assert_array_equal(fc.samples, again.samples)
    other = model.predict(ctx, HORIZON, n_samples=50, seed=4)
    assert not np.array_equal(fc.samples, other.samples)
    # the forecast lands in the data's range (values ~ 10 +- 5), not somewhere arbitrary
    truth = frame.values[end:end + HORIZON]
    assert np.abs(fc.point_forecast - truth).mean() < 3.0
    # missing samples inside the context are tolerated
    holes = ctx.values.copy()
    holes[-3:-1, 0, 1] = np.nan
    assert np.isfinite(model.predict(Context(holes), HORIZON, n_samples=10, seed=0).samples).all()
    # too short a context is refused with a message naming the model
    if model.min_context_steps > 1:
        with pytest.raises(HarmonyInputError, match="needs a context"):
            model.predict(Context(ctx.values[-(model.min_context_steps - 1):]), HORIZON, 10, 0)
    # a context with a column never observed cannot be forecast from
    empty = ctx.values.copy()
    empty[:, 1, 2] = np.nan
    with pytest.raises(HarmonyInputError, match="no observed value"):
        model.predict(Context(empty), HORIZON, 10, 0)


@pytest.mark.parametrize("spec", sorted(PREDICTORS))
def test_unfitted_predictor_refuses_to_predict(spec):
    with pytest.raises(RuntimeError, match="not fitted"):
        build_predictor(spec).predict(Context(np.ones((200, 1, 1))), 1, 10, 0)


def ar1_frame(phi: float, steps: int = 5000, seed: int = 0) -> TelemetryFrame:
    rng = np.random.default_rng(seed)
    y = np.zeros(steps)
    for t in range(1, steps):
        y[t] = 2.0 + phi * y[t - 1] + rng.normal(0, 1)
    return TelemetryFrame(pd.date_range("2024-01-01", periods=steps, freq="1min"), y[:, None, None], ["x"],
                          [Indicator("y")])


def test_ar_recovers_an_ar1_process_and_its_residual_spread():
    f = ar1_frame(0.8)
    split = f.split()
    model = AutoRegressive(p=3, alpha=1e-6).fit(split.train, split.validation)
    assert model.coef[0, 0] == pytest.approx(0.8, abs=0.03)
    assert np.abs(model.coef[0, 1:]).max() < 0.05
    assert model.intercept[0] == pytest.approx(2.0, abs=0.25)
    assert model.residual_pool.std() == pytest.approx(1.0, abs=0.08)
    fc = model.predict(Context(f.values[-10:]), horizon=20, n_samples=4000, seed=0)
    spread = fc.samples[:, :, 0, 0].std(axis=0)
    # recursive simulation: variance grows towards the stationary 1 / (1 - phi^2)
    assert spread[0] == pytest.approx(1.0, abs=0.08)
    assert spread[-1] == pytest.approx(np.sqrt(1 / (1 - 0.64)), rel=0.1)
    # the point path decays geometrically to the process mean 2 / (1 - phi) = 10
    assert fc.point[-1, 0, 0] == pytest.approx(10.0, abs=0.5)


def test_gaussian_residuals_are_normal_and_empirical_ones_keep_skew():
    rng = np.random.default_rng(1)
    steps = 4000
    y = np.zeros(steps)
    shocks = rng.exponential(1.0, size=steps) - 1.0  # skewed
    for t in range(1, steps):
        y[t] = 0.5 * y[t - 1] + shocks[t]
    f = TelemetryFrame(pd.date_range("2024-01-01", periods=steps, freq="1min"), y[:, None, None], ["x"],
                       [Indicator("y")])
    split = f.split()
    ctx = Context(f.values[-5:])
    emp = AutoRegressive(p=2, residuals="empirical").fit(split.train, split.validation).predict(ctx, 1, 20000, 0)
    gau = AutoRegressive(p=2, residuals="gaussian").fit(split.train, split.validation).predict(ctx, 1, 20000, 0)

    def skew(x):
        x = x.ravel()
        return ((x - x.mean()) ** 3).mean() / x.std() ** 3

    assert skew(emp.samples) > 1.0
    assert abs(skew(gau.samples)) < 0.1


def test_seasonal_naive_is_exact_on_a_periodic_series_and_defaults_to_one_day():
    steps, period = 1000, 144
    y = np.tile(np.arange(period, dtype=float), steps // period + 1)[:steps]
    f = TelemetryFrame(pd.date_range("2024-01-01", periods=steps, freq="10min"), y[:, None, None], ["x"],
                       [Indicator("y")])
    split = f.split()
    model = SeasonalNaive().fit(split.train, split.validation)
    assert model.season_steps == 144  # one day of 10-minute steps
    end = 800
    fc = model.predict(Context(f.values[end - period:end]), horizon=200, n_samples=20, seed=0)
    np.testing.assert_allclose(fc.point[:, 0, 0], f.values[end:end + 200, 0, 0])
    assert (fc.samples == fc.samples[:1]).all()  # validation errors were all zero: every sample is the point


def test_last_value_errors_grow_with_the_horizon():
    f = ar1_frame(0.99, steps=4000)
    split = f.split()
    model = build_predictor("last").fit(split.train, split.validation)
    fc = model.predict(Context(f.values[-5:]), horizon=30, n_samples=3000, seed=0)
    np.testing.assert_allclose(fc.point[:, 0, 0], f.values[-1, 0, 0])
    spread = fc.samples[:, :, 0, 0].std(axis=0)
    assert spread[-1] > 2 * spread[0]


def test_recent_window_draws_each_indicator_from_its_own_last_values(frame):
    split = frame.split()
    ctx = context_of(frame, 800, 72)
    fc = build_predictor("window:24").fit(split.train, split.validation).predict(ctx, HORIZON, 500, seed=1)
    assert fc.samples.shape == (500, HORIZON, 2, 3)
    for s in range(2):
        for i in range(3):
            recent = set(ctx.values[-24:, s, i].tolist())
            assert set(np.unique(fc.samples[:, :, s, i]).tolist()) <= recent  # nothing older, nothing invented
            assert len(np.unique(fc.samples[:, :, s, i])) > 12  # and most of them are drawn
    np.testing.assert_allclose(fc.point[0], np.median(ctx.values[-24:], axis=0))
    again = build_predictor("window:24").fit(split.train).predict(ctx, HORIZON, 500, seed=1)
    np.testing.assert_array_equal(again.samples, fc.samples)
    with pytest.raises(HarmonyInputError, match="at least 24 steps"):
        build_predictor("window:24").fit(split.train).predict(context_of(frame, 800, 10), HORIZON)


def test_model_specs_are_parsed_and_checked():
    assert parse_models("ar, ar:12 ,seasonal:24") == ["ar", "ar:12", "seasonal:24"]
    assert build_predictor("ar:12").p == 12
    with pytest.raises(HarmonyInputError, match="unknown model 'prophet' \\(--models\\)"):
        parse_models("ar,prophet")
    with pytest.raises(HarmonyInputError, match="argument 'x' is not an integer"):
        build_predictor("ar:x")
    with pytest.raises(HarmonyInputError, match="--models is empty"):
        parse_models(" , ")
    with pytest.raises(HarmonyInputError, match="p must be >= 1"):
        build_predictor("ar:0")
