"""The HARMONY forecaster in the loop: trained for the decision's demand path, its calibration keeping whole
paths, the AR fallback until it can be trained, and fine-tunes on a schedule."""

import numpy as np
import pytest
import torch

from harmony.forecasting.adapter import FALLBACK_MODEL, DemandForecaster, FineTune
from harmony.forecasting.models.calibration import fit_window_mix, mix_with_window
from harmony.telemetry.datasets import load_dataset

TINY = "harmony:lookback=16+epochs=1+d_model=8+heads=2+flow_layers=1+quantiles=0"


def frame(steps: int):
    return load_dataset("synthetic", series=1, steps=steps, seed=5)


def test_a_mixture_drawn_per_path_replaces_whole_paths_by_one_recent_step():
    samples = torch.randn(400, 3, 5, 2)  # [n, windows, horizon, targets]
    window = torch.arange(3 * 10 * 2, dtype=torch.float32).reshape(3, 10, 2)  # distinct values everywhere
    mixed = mix_with_window(samples, window, torch.ones(5, 2), torch.full((5, 2), 4.0),
                            torch.Generator().manual_seed(1), per_path=True)
    # every path is constant over the horizon, both targets from the same recent step of their own window
    assert torch.equal(mixed, mixed[:, :, :1].expand_as(mixed))
    step = (mixed[..., 0] - window[:, :1, 0].T.unsqueeze(-1)) / 2  # window[b, l, 0] = b * 20 + 2 l
    assert torch.equal(mixed[..., 1], mixed[..., 0] + 1)
    assert set(step[:, :, 0].unique().tolist()) == {6.0, 7.0, 8.0, 9.0}  # the last 4 steps, all drawn
    per_step = mix_with_window(samples, window, torch.ones(5, 2), torch.full((5, 2), 4.0),
                               torch.Generator().manual_seed(1))
    assert not torch.equal(per_step, per_step[:, :, :1].expand_as(per_step))  # per step: paths broken


def test_the_path_mixture_is_fitted_per_target_and_shared_by_the_steps():
    rng = torch.Generator().manual_seed(0)
    windows = torch.randn(300, 12, 2, generator=rng)
    # target 0 repeats a recent value (the mixture helps), target 1 is what the model says
    observed = torch.stack([windows[:, -1, 0].repeat(3, 1).T, torch.zeros(300, 3)], dim=-1)  # [N, H=3, T=2]
    model = torch.randn(200, 300, 3, 2, generator=rng)
    model[..., 1] *= 0.1
    weight, recent = fit_window_mix(model.flatten(2), windows, observed.flatten(1), seed=1, steps=3)
    weight, recent = weight.view(3, 2), recent.view(3, 2)
    assert torch.equal(weight, weight[:1].expand_as(weight)) and torch.equal(recent, recent[:1].expand_as(recent))
    assert weight[0, 0] > 0.5 and recent[0, 0] <= 2 and weight[0, 1] == 0


def test_until_the_history_suffices_the_baseline_stands_in_and_says_so():
    forecaster = DemandForecaster(TINY, horizon=2, lookback=16)
    short = frame(200)
    samples = forecaster.demand_samples(short, ("requests",), seed=0)
    assert samples.shape == (200, 2) and np.isfinite(samples).all()
    assert forecaster.status.fallback and forecaster.status.model == FALLBACK_MODEL
    assert "training windows" in forecaster.status.reason and forecaster.predictor is None
    forecaster.demand_samples(frame(420), ("requests",), seed=1)  # now enough rows: the model is trained
    assert not forecaster.status.fallback and forecaster.status.model == TINY
    assert forecaster.predictor.target_names == ("requests",)  # trained for the decision's demand path
    assert forecaster.predictor.network.config.horizon == 2


def test_the_model_trains_on_the_training_history_read_only_when_it_trains():
    data = frame(1200)
    asked = []

    def training(t):
        def read():
            asked.append(t)
            return data.slice(max(0, t - 1000), t)
        return read

    forecaster = DemandForecaster(TINY, horizon=2, lookback=16, training_steps=1000)
    forecaster.demand_samples(data.slice(800, 1000), ("requests",), seed=0, training=training(1000))
    assert asked == [1000] and forecaster.trained_rows == 1000  # trained on the 1,000 rows, not the window's 200
    assert not forecaster.status.fallback
    trained = forecaster.predictor
    for t in range(1001, 1010):  # a full training window: not read again, not trained again
        forecaster.demand_samples(data.slice(t - 200, t), ("requests",), seed=t, training=training(t))
    assert asked == [1000] and forecaster.predictor is trained


def test_a_model_trained_on_less_than_its_window_is_trained_again_when_its_history_has_doubled():
    data = frame(1000)
    forecaster = DemandForecaster(TINY, horizon=2, lookback=16, training_steps=2000)
    forecaster.demand_samples(data.slice(0, 420), ("requests",), seed=0)  # a new workload: 420 rows
    first = forecaster.predictor
    assert forecaster.trained_rows == 420
    for t in range(421, 840):  # 419 more decisions: the history has not doubled yet
        forecaster.request(data.slice(0, t), ("requests",), seed=t)
    assert forecaster.predictor is first
    forecaster.request(data.slice(0, 840), ("requests",), seed=840)  # the 420th since: doubled
    assert forecaster.predictor is not first and forecaster.trained_rows == 840
    assert not forecaster.status.fallback and forecaster.status.model == TINY


def test_a_window_that_starts_empty_trains_on_its_rows_with_data_only():
    data = frame(600)
    padded = data.slice(0, 600)
    values = padded.values.copy()
    values[:400] = np.nan  # Prometheus' window of a workload newer than it: 400 empty rows, then 200
    empty_start = type(padded)(padded.index, values, padded.series, padded.indicators, interval=padded.interval)
    forecaster = DemandForecaster(TINY, horizon=2, lookback=16, training_steps=600)
    forecaster.demand_samples(empty_start, ("requests",), seed=0)
    assert forecaster.status.fallback and "200 rows of history" in forecaster.status.reason


def test_with_a_trainer_the_model_trains_aside_while_the_baseline_stands_in():
    """The operator's training pool: the step that finds the model due hands the fit over and forecasts with
    ar:30, saying a training is under way; the first step after it is done serves the model."""
    from concurrent.futures import ThreadPoolExecutor

    data = frame(600)
    with ThreadPoolExecutor(1) as pool:
        forecaster = DemandForecaster(TINY, horizon=2, lookback=16, training_steps=600, trainer=pool)
        samples = forecaster.demand_samples(data.slice(0, 500), ("requests",), seed=0)
        assert samples.shape == (200, 2) and np.isfinite(samples).all()
        assert forecaster.status.fallback and forecaster.status.model == FALLBACK_MODEL
        assert "training " + TINY + " on 500 rows" in forecaster.status.reason
        forecaster._training[0].result()  # the training, done (no sleeping: wait on its future)
        forecaster.demand_samples(data.slice(0, 501), ("requests",), seed=1)
    assert not forecaster.status.fallback and forecaster.status.model == TINY
    assert forecaster.trained_rows == 500 and forecaster.predictor.target_names == ("requests",)


def test_a_training_that_fails_is_reported_and_tried_again_later():
    from concurrent.futures import Future

    class Failing:
        def submit(self, *args, **kwargs):
            done = Future()
            done.set_exception(RuntimeError("out of memory"))
            return done

    data = frame(900)
    forecaster = DemandForecaster(TINY, horizon=2, lookback=16, training_steps=900, trainer=Failing())
    forecaster.demand_samples(data.slice(0, 500), ("requests",), seed=0)  # submitted
    forecaster.demand_samples(data.slice(0, 501), ("requests",), seed=1)  # collected: failed
    assert forecaster.status.fallback and "failed (RuntimeError: out of memory)" in forecaster.status.reason
    assert forecaster._training is None
    for t in range(502, 700):  # not tried again at every step: 256 decisions later
        forecaster.demand_samples(data.slice(0, t), ("requests",), seed=t)
        assert forecaster._training is None and forecaster.status.fallback


def test_the_model_fine_tunes_on_its_schedule_from_its_own_weights():
    forecaster = DemandForecaster(TINY, horizon=2, lookback=16, fine_tune=FineTune(every=2, epochs=1))
    data = frame(500)
    forecaster.demand_samples(data.slice(0, 420), ("requests",), seed=0)
    trained = forecaster.predictor
    before = {k: v.clone() for k, v in trained.network.state_dict().items()}
    for t in range(421, 424):  # decisions 1, 2 (due: a fine-tune), 3
        forecaster.demand_samples(data.slice(t - 420, t), ("requests",), seed=t)
    assert forecaster.status.fine_tunes == 1 and forecaster.predictor is trained  # warm: the same model
    assert forecaster.predictor.input_scaler is not None
    after = trained.network.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it learned (or recalibrated)


def test_the_path_spread_is_fitted_on_the_maximum_of_whole_paths():
    """One factor per target on whole paths about their centre, chosen by the CRPS of the horizon's maximum:
    paths half as wide as the data's get about 2, paths as wide as the data's about 1, and paths of
    independent steps (whose maximum sits too high) are drawn in below 1."""
    from harmony.forecasting.models.calibration import fit_path_spread

    rng = np.random.default_rng(0)
    steps, windows = 6, 400
    observed = torch.from_numpy(np.repeat(rng.normal(size=(windows, 1)), steps, axis=1))  # [N, H * T], T = 1
    centre = torch.zeros(windows, steps, dtype=torch.float64)
    joint = np.repeat(rng.normal(size=(300, windows, 1)), steps, axis=2)  # each path one level, as the data
    narrow = fit_path_spread(torch.from_numpy(0.5 * joint), centre, observed, steps)
    assert narrow.shape == (steps,) and torch.all(narrow == narrow[0]) and 1.7 <= float(narrow[0]) <= 2.3
    assert 0.85 <= float(fit_path_spread(torch.from_numpy(joint), centre, observed, steps)[0]) <= 1.15
    independent = torch.from_numpy(rng.normal(size=(300, windows, steps)))
    assert float(fit_path_spread(independent, centre, observed, steps)[0]) < 1.0


def test_the_path_spread_corrects_the_tail_of_the_samples_as_drawn_mixture_included():
    """The factor is fitted on the samples as `sample` draws them: with half the paths replaced by persistence
    paths at the window's (zero) recent values, the maximum's upper quantiles sit too low unless the model's
    own paths widen, so the factor rises above the one fitted without the mixture."""
    from harmony.forecasting.models.calibration import fit_path_spread

    rng = np.random.default_rng(1)
    steps, windows = 6, 400
    observed = torch.from_numpy(np.repeat(rng.normal(size=(windows, 1)), steps, axis=1))
    centre = torch.zeros(windows, steps, dtype=torch.float64)
    joint = torch.from_numpy(np.repeat(rng.normal(size=(300, windows, 1)), steps, axis=2))
    alone = float(fit_path_spread(joint, centre, observed, steps)[0])
    window = torch.zeros(windows, 16, 1, dtype=torch.float64)
    mixed = float(fit_path_spread(joint, centre, observed, steps, window=window,
                                  mix=torch.full((steps,), 0.5, dtype=torch.float64))[0])
    assert 0.85 <= alone <= 1.15 and mixed >= alone + 0.1


@pytest.mark.asyncio
async def test_the_operator_reads_the_training_history_only_when_the_model_trains():
    """spec.model.trainingSeconds is a range query of its own (chunked by the client), made when the model
    trains, not at every step; the decision's window stays historySeconds."""
    from tests.operator_support import ScriptedTelemetry, add_autoscaler, add_deployment, cluster, make_reconciler
    from tests.operator_support import status as status_of
    from tests.operator_support import step as reconcile_step

    class Recording(ScriptedTelemetry):
        def __init__(self):
            super().__init__(level=3.0, noise=0.3)
            self.windows: list[int] = []

        def __call__(self, spec, now):
            self.windows.append(spec.history_s)
            return super().__call__(spec, now)

    telemetry = Recording()
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s, model={"forecaster": TINY, "trainingSeconds": 600})
        rec = make_reconciler(url, telemetry)
        await reconcile_step(rec, k8s)
        await reconcile_step(rec, k8s)
        assert telemetry.windows == [120, 600, 120]  # the window, the training history once, the window
        forecaster = rec.forecasters["uid-default-llm"]
        assert forecaster.trained_rows == 600 and not forecaster.status.fallback
        assert status_of(k8s)["forecaster"]["model"] == TINY and not status_of(k8s)["forecaster"]["fallback"]


@pytest.mark.asyncio
async def test_the_operator_trains_in_its_training_pool_and_says_so_in_status_meanwhile():
    from concurrent.futures import ThreadPoolExecutor

    from tests.operator_support import ScriptedTelemetry, add_autoscaler, add_deployment, cluster, make_reconciler
    from tests.operator_support import status as status_of
    from tests.operator_support import step as reconcile_step

    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s, model={"forecaster": TINY, "trainingSeconds": 600}, historySeconds=600)
        rec = make_reconciler(url, ScriptedTelemetry(level=3.0, noise=0.3))
        with ThreadPoolExecutor(1) as pool:
            rec.trainer = pool
            await reconcile_step(rec, k8s)
            during = status_of(k8s)["forecaster"]
            assert during["fallback"] and during["model"] == FALLBACK_MODEL and "training" in during["reason"]
            rec.forecasters["uid-default-llm"]._training[0].result()
            await reconcile_step(rec, k8s)
        after = status_of(k8s)["forecaster"]
        assert after["model"] == TINY and not after["fallback"]


def test_every_member_of_an_ensemble_fine_tunes_from_its_own_weights():
    forecaster = DemandForecaster(TINY + "+members=2", horizon=2, lookback=16, fine_tune=FineTune(every=1, epochs=1))
    data = frame(500)
    forecaster.demand_samples(data.slice(0, 420), ("requests",), seed=0)
    trained = forecaster.predictor
    before = [{k: v.clone() for k, v in network.state_dict().items()} for network in trained.networks]
    forecaster.demand_samples(data.slice(1, 421), ("requests",), seed=1)  # due: a fine-tune
    assert forecaster.status.fine_tunes == 1 and len(trained.networks) == 2
    for old, network in zip(before, trained.networks, strict=True):
        assert any(not torch.equal(old[k], v) for k, v in network.state_dict().items())
