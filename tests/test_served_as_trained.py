"""Models are served as they were trained: schema and scaler travel with the predictor, contexts carry their
time, and nothing touches torch's global random state."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from harmony.errors import HarmonyInputError
from harmony.forecasting.adapter import DemandForecaster, fit_scaled
from harmony.forecasting.models.tokens import calendar_features
from harmony.forecasting.predictors import Context
from harmony.forecasting.predictors.harmony import HarmonyPredictor
from harmony.telemetry.prometheus import TelemetryWindow
from tests.checkpoints import tiny_checkpoint, tiny_frame
from tests.operator_support import HA, add_autoscaler, add_deployment, cluster, condition, make_reconciler, obj

NAMES, LEVELS = ("requests", "gpu"), (1, 2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt", NAMES, LEVELS, interval_s=30)


def test_a_fitted_predictor_refuses_a_context_with_other_indicators():
    frame = tiny_frame(NAMES, LEVELS)
    model = fit_scaled("ar:4", frame, horizon=2)
    assert model.schema.indicators == NAMES and model.schema.levels == LEVELS
    ctx = model.input_scaler.transform(frame.values[-20:])
    model.predict(Context(ctx, None, frame.interval, NAMES), 2, 10, seed=0)  # as trained: fine
    with pytest.raises(HarmonyInputError, match="indicator 1 is 'gpu' where 'requests' was trained"):
        model.predict(Context(ctx[:, :, ::-1], None, frame.interval, NAMES[::-1]), 2, 10, seed=0)
    with pytest.raises(HarmonyInputError, match="interval"):
        model.predict(Context(ctx, None, frame.interval * 2, NAMES), 2, 10, seed=0)


def test_the_checkpoint_keeps_its_scaler_and_refuses_swapped_or_renamed_columns(checkpoint):
    model = HarmonyPredictor.load(checkpoint)
    assert model.schema.indicators == NAMES and model.input_scaler is not None
    frame = tiny_frame(NAMES, LEVELS, seed=1)
    adapter = DemandForecaster(None, 2, model.lookback, 20, predictor=model)
    samples = adapter.demand_samples(frame, ("requests",), seed=0)
    assert samples.shape == (20, 2)
    # data units in, data units out: the tiny trace's demand lies around 10-30, not in [0, 1]
    assert 2.0 < float(np.median(samples)) < 60.0
    # the same data under other names (or swapped and scaled x100) is refused, never guessed
    renamed = frame.with_values(frame.values, [type(i)(n, i.level) for i, n in zip(frame.indicators, ("foo", "bar"),
                                                                                    strict=True)])
    with pytest.raises(HarmonyInputError, match="'foo' where 'requests' was trained"):
        adapter.demand_samples(renamed, ("foo",), seed=0)


def test_contexts_carry_their_time_so_calendar_features_are_real():
    seen = []
    frame = tiny_frame(NAMES, LEVELS)
    model = fit_scaled("last", frame, horizon=2)
    original = model.predict

    def spy(context, *args, **kwargs):
        seen.append(context)
        return original(context, *args, **kwargs)

    model.predict = spy
    DemandForecaster(None, 2, 8, 10, predictor=model).demand_samples(frame, ("requests",), seed=0)
    (context,) = seen
    assert context.end_time[0] == frame.index.values[-1]
    assert context.interval == frame.interval and context.indicators == NAMES
    features = calendar_features(context.end_time + context.interval.to_timedelta64(), 1)
    assert np.abs(features).sum() > 0  # time of day and day of week, not the all-zero placeholder


def test_predict_without_a_seed_leaves_torchs_global_generator_alone(checkpoint):
    model = HarmonyPredictor.load(checkpoint)
    frame = tiny_frame(NAMES, LEVELS)
    ctx = model.input_scaler.transform(frame.values[-model.lookback:])
    torch.manual_seed(1234)
    before = torch.random.get_rng_state().clone()
    model.predict(Context(ctx, frame.index.values[-1:], frame.interval, NAMES), 2, 10, seed=None)
    assert torch.equal(torch.random.get_rng_state(), before)


@pytest.mark.asyncio
async def test_the_operator_serves_a_tiny_trained_checkpoint_end_to_end(checkpoint):
    frame = tiny_frame(NAMES, LEVELS, seed=2)

    def telemetry(spec, now):
        return TelemetryWindow(frame, False, "")

    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        indicators = [{"name": "requests", "query": "sum(rate(requests_total[1m]))", "level": 1, "demand": True},
                      {"name": "gpu", "query": "avg(DCGM_FI_DEV_GPU_UTIL)", "level": 2}]
        add_autoscaler(k8s, intervalSeconds=30, indicators=indicators, capacityPerReplica=5.0,
                       model={"checkpoint": str(checkpoint)}, sla={"maxBreachProbability": 0.05,
                                                                  "coldStartSeconds": 30})
        reconciler = make_reconciler(url, telemetry)
        ha = obj(k8s, HA, "default", "llm")
        outcome = await asyncio.to_thread(reconciler.reconcile, "default", "llm", ha["metadata"]["uid"], 1,
                                          ha["spec"], None)
        assert outcome.error is None
        assert condition(outcome.status, "ForecastReady")["status"] == "True"
        assert outcome.status["desiredReplicas"] >= 1
        # indicators listed in another order than the checkpoint's: refused at parse time, naming the field
        swapped = dict(ha["spec"], indicators=indicators[::-1])
        outcome = await asyncio.to_thread(reconciler.reconcile, "default", "llm", ha["metadata"]["uid"], 1,
                                          swapped, None)
        assert outcome.error and outcome.error.startswith("spec.indicators")
        assert condition(outcome.status, "InvalidSpec")["status"] == "True"
