"""Objects sharing a served checkpoint are forecast together (harmony.operator.batching): one `predict` call
for those due in the same window, the same samples and decisions as forecast one at a time, and one
object's bad window failing that object alone.

A tiny calibrated HARMONY checkpoint (one epoch, lookback 16, trained horizon 2) serves a decision horizon of
4 steps (a 90 s cold start at 30 s), so the recursive path is batched too; the Reconciler runs against the
kmock emulator, the steps as the daemon runs them (`harmony.operator.app._step`).
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt

import numpy as np
import pytest

from harmony.errors import HarmonyInputError
from harmony.forecasting.adapter import fit_scaled, forecast_together
from harmony.operator.app import OperatorSettings, _step
from harmony.operator.batching import BatchSettings, ForecastBatcher
from harmony.operator.spec import parse_spec, served_checkpoint
from harmony.telemetry.frame import TelemetryFrame
from harmony.telemetry.prometheus import TelemetryWindow
from tests.checkpoints import tiny_frame
from tests.operator_support import (
    HA,
    add_autoscaler,
    add_deployment,
    cluster,
    condition,
    eventually,
    make_reconciler,
    obj,
    operator,
)

NAMES, LEVELS = ("requests", "gpu"), (1, 2)
# calibrated (spread and window mixture fitted), unlike tests/checkpoints.TINY_SPEC
SPEC = "harmony:lookback=16+horizon=2+epochs=1+patience=1+d_model=8+heads=2"
OBJECTS = 4
T0 = dt.datetime(2026, 1, 6, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    predictor = fit_scaled(SPEC, tiny_frame(NAMES, LEVELS, rows=300), horizon=2)
    return str(predictor.save(tmp_path_factory.mktemp("batching") / "shared.ckpt"))


def indicators(k: int) -> list[dict]:
    """Object k's indicators: its own queries, which tell the scripted telemetry whose window to answer."""
    return [{"name": "requests", "query": f'sum(rate(requests_total{{app="w{k}"}}[1m]))', "level": 1, "demand": True},
            {"name": "gpu", "query": f'avg(DCGM_FI_DEV_GPU_UTIL{{app="w{k}"}})', "level": 2}]


class Windows:
    """Each object's own telemetry (a level and noise of its own), `bad` objects' with a
    covariate never observed (a gap the forecaster cannot fill)."""

    def __init__(self, bad: tuple[int, ...] = ()) -> None:
        self.frames = {k: tiny_frame(NAMES, LEVELS, rows=240, seed=10 + k, scale=6.0 + 3 * k) for k in range(OBJECTS)}
        for k in bad:
            values = self.frames[k].values.copy()
            values[:, :, 1] = np.nan
            old = self.frames[k]
            self.frames[k] = TelemetryFrame(old.index, values, old.series, old.indicators, interval=old.interval)

    def __call__(self, spec, now):
        k = int(spec.demand_indicator.query.split('app="w')[1].split('"')[0])
        return TelemetryWindow(self.frames[k], False, "")


def populate(k8s, checkpoint: str) -> None:
    for k in range(OBJECTS):
        add_deployment(k8s, name=f"server-{k}", replicas=3)
        add_autoscaler(k8s, name=f"ha-{k}", intervalSeconds=30, indicators=indicators(k), capacityPerReplica=5.0,
                       scaleTargetRef={"apiVersion": "apps/v1", "kind": "Deployment", "name": f"server-{k}"},
                       sla={"maxBreachProbability": 0.05, "coldStartSeconds": 90}, model={"checkpoint": checkpoint},
                       lookbackSeconds=480, historySeconds=7200)


class Calls:
    """Counts the served predictor's `predict` calls and the series of each."""

    def __init__(self, checkpoint: str, spec_body: dict) -> None:
        parse_spec(spec_body)  # loads the file: the served predictor exists from here on
        self.predictor = served_checkpoint(checkpoint)
        self.series: list[int] = []
        inner = type(self.predictor).predict

        def predict(context, *args, **kwargs):
            self.series.append(context.values.shape[1])
            return inner(self.predictor, context, *args, **kwargs)

        self.predictor.predict = predict

    def close(self) -> None:
        del self.predictor.predict


async def run_ticks(checkpoint: str, telemetry, batched: bool, ticks: int = 3) -> tuple[list[list[dict]], list[int]]:
    """`ticks` steps of every object, all due together; per tick the objects' statuses, and the series of
    each predict call."""
    clock = [T0]
    async with cluster() as (k8s, url):
        populate(k8s, checkpoint)
        reconciler = make_reconciler(url, telemetry)
        reconciler.clock = lambda: clock[0]
        calls = Calls(checkpoint, obj(k8s, HA, "default", "ha-0")["spec"])
        batcher = ForecastBatcher(BatchSettings(window_s=2.0)) if batched else None
        statuses: dict[int, dict | None] = dict.fromkeys(range(OBJECTS))
        history = []

        async def one(k: int, status: dict | None):
            body = obj(k8s, HA, "default", f"ha-{k}")
            args = ("default", f"ha-{k}", body["metadata"]["uid"], 1, body["spec"], status, {})
            if batcher is None:  # one at a time, as `reconcile` forecasts alone
                return await asyncio.to_thread(reconciler.reconcile, *args)
            return await _step(reconciler, None, batcher, None, *args)

        try:
            for _ in range(ticks):
                if batched:
                    outcomes = await asyncio.gather(*(one(k, statuses[k]) for k in range(OBJECTS)))
                else:
                    outcomes = [await one(k, statuses[k]) for k in range(OBJECTS)]
                statuses = {k: o.status for k, o in enumerate(outcomes)}
                history.append([{**statuses[k], "forecastQuantiles": forecast_quantiles(reconciler, k)}
                                for k in range(OBJECTS)])
                clock[0] += dt.timedelta(seconds=30)
        finally:
            calls.close()
        return history, calls.series


def forecast_quantiles(reconciler, k: int) -> list[float]:
    """The exported quantiles of object k's forecast peak demand (harmony_forecast_demand)."""
    return [reconciler.metrics.registry.get_sample_value("harmony_forecast_demand", {
        "autoscaler_namespace": "default", "autoscaler": f"ha-{k}", "quantile_level": repr(q)})
        for q in (0.1, 0.5, 0.9, 0.99)]


def decided(status: dict) -> tuple:
    return (status["desiredReplicas"], status["recommendedReplicas"], status["currentReplicas"],
            status["lastDecision"]["reason"])


@pytest.mark.asyncio
async def test_objects_sharing_a_checkpoint_are_forecast_in_one_call_and_decide_as_alone(checkpoint):
    batched, batched_calls = await run_ticks(checkpoint, Windows(), batched=True)
    alone, alone_calls = await run_ticks(checkpoint, Windows(), batched=False)
    assert len({decided(s) for s in batched[0]}) == OBJECTS  # each object decides its own count
    assert batched_calls == [OBJECTS] * 3  # one call a tick, every object in it
    assert alone_calls == [1] * (3 * OBJECTS)
    for tick_batched, tick_alone in zip(batched, alone, strict=True):
        for b, a in zip(tick_batched, tick_alone, strict=True):
            assert condition(b, "ForecastReady")["status"] == "True"
            assert decided(b) == decided(a)  # the decided counts: exactly
            np.testing.assert_allclose(b["forecastQuantiles"], a["forecastQuantiles"], rtol=1e-4)
            assert b["lastDecision"]["breachProbability"] == pytest.approx(a["lastDecision"]["breachProbability"],
                                                                           rel=1e-3, abs=1e-5)
            assert b["posterior"]["decisions"] == a["posterior"]["decisions"]


@pytest.mark.asyncio
async def test_one_objects_bad_window_fails_that_object_alone(checkpoint):
    history, calls = await run_ticks(checkpoint, Windows(bad=(1,)), batched=True, ticks=1)
    statuses = history[0]
    bad = condition(statuses[1], "ForecastReady")
    assert bad["status"] == "False" and bad["reason"] == "ForecastFailed"
    assert "no observed value of indicator 'gpu'" in bad["message"]
    assert statuses[1]["desiredReplicas"] == 3  # held
    for k in (0, 2, 3):
        assert condition(statuses[k], "ForecastReady")["status"] == "True", statuses[k]
        assert condition(statuses[k], "Ready")["status"] == "True"
    # the whole batch, then halves until the bad window is alone: 4 -> 2 + 2 -> 1 + 1 (the bad half) and 2
    assert calls[0] == OBJECTS and calls.count(1) == 2 and sorted(calls) == [1, 1, 2, 2, 4]
    alone, _ = await run_ticks(checkpoint, Windows(bad=(1,)), batched=False, ticks=1)
    assert [decided(s) for s in statuses] == [decided(s) for s in alone[0]]


def requests(checkpoint: str, n: int, mix: bool = True):
    """n forecast requests of one predictor (a copy of the served one, its window mixture forced on so that
    the per-series mixture draws are exercised whatever calibration fitted)."""
    from harmony.forecasting.adapter import DemandForecaster
    from harmony.forecasting.predictors.harmony import HarmonyPredictor

    predictor = HarmonyPredictor.load(checkpoint)
    if mix:
        predictor.network.window_mix.fill_(0.3)
        predictor.network.window_recent.fill_(4.0)
    out = []
    for k in range(n):
        forecaster = DemandForecaster(None, 4, 16, n_samples=64, predictor=predictor)
        out.append(forecaster.request(tiny_frame(NAMES, LEVELS, rows=240, seed=30 + k), ("requests",), seed=k))
    return out


def test_a_series_samples_do_not_depend_on_its_batch(checkpoint):
    reqs = requests(checkpoint, 6)
    assert all(r.shared for r in reqs) and len({r.batch_key for r in reqs}) == 1
    together = forecast_together(reqs)
    reordered = forecast_together(reqs[3:] + reqs[:3])
    for k, r in enumerate(reqs):
        alone = r.run()
        assert together[k].shape == (64, 4)
        np.testing.assert_allclose(together[k], alone, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(reordered[(k - 3) % 6], alone, rtol=1e-4, atol=1e-6)
    assert not np.allclose(together[0], together[1])  # each its own draws


def test_a_model_of_its_own_is_not_shared(checkpoint):
    (request,) = requests(checkpoint, 1, mix=False)
    from harmony.forecasting.adapter import DemandForecaster

    baseline = DemandForecaster("ar:5", 4, 16, n_samples=64).request(tiny_frame(NAMES, LEVELS, rows=240), ("requests",),
                                                                    seed=0)
    assert request.shared and not baseline.shared
    tuned = DemandForecaster(None, 4, 16, n_samples=64, predictor=copy.deepcopy(request.predictor))
    tuned.owned = True  # what a fine-tune leaves: a copy of the model for this workload alone
    assert not tuned.request(tiny_frame(NAMES, LEVELS, rows=240), ("requests",), seed=0).shared


@pytest.mark.asyncio
async def test_a_full_batch_is_forecast_at_once_and_the_window_bounds_the_wait(checkpoint):
    reqs = requests(checkpoint, 5, mix=False)
    seen: list[int] = []
    predictor = reqs[0].predictor
    inner = type(predictor).predict
    predictor.predict = lambda context, *a, **kw: seen.append(context.values.shape[1]) or inner(predictor, context,
                                                                                                  *a, **kw)
    batcher = ForecastBatcher(BatchSettings(window_s=30.0, max_batch=2))
    loop = asyncio.get_running_loop()
    started = loop.time()
    first = await asyncio.gather(*(batcher.forecast(r) for r in reqs[:4]))  # two full batches: no waiting
    assert loop.time() - started < 20 and seen == [2, 2]
    short = ForecastBatcher(BatchSettings(window_s=0.2, max_batch=64))
    (last,) = await asyncio.gather(short.forecast(reqs[4]))  # alone in its window: forecast when it closes
    assert seen == [2, 2, 1] and last.shape == (64, 4)
    assert all(np.isfinite(f).all() for f in first)


def test_batch_settings_are_validated():
    for bad in ({"window_s": -1.0}, {"window_s": float("nan")}, {"max_batch": 0}):
        with pytest.raises(HarmonyInputError):
            BatchSettings(**bad)
    assert not BatchSettings(window_s=0).enabled and BatchSettings(window_s=0.5).enabled


@pytest.mark.asyncio
async def test_the_operator_batches_the_objects_due_together(checkpoint):
    """The daemons under kopf: objects whose last decision was one interval ago are due at once, and their
    forecasts are one call (the metrics count it)."""
    now = dt.datetime.now(dt.UTC)
    async with cluster() as (k8s, url):
        populate(k8s, checkpoint)
        for k in range(OBJECTS):  # decided 28 s ago: due again in 2 s, all of them
            k8s.objects[HA, "default", f"ha-{k}"].patch({"status": {"lastDecision": {
                "time": (now - dt.timedelta(seconds=28)).strftime("%Y-%m-%dT%H:%M:%SZ")}}})
        reconciler = make_reconciler(url, Windows())
        calls = Calls(checkpoint, obj(k8s, HA, "default", "ha-0")["spec"])
        try:
            async with operator(reconciler, url, OperatorSettings(batching=BatchSettings(window_s=3.0))):
                await eventually(lambda: all(condition(obj(k8s, HA, "default", f"ha-{k}").get("status", {}),
                                                       "ForecastReady") for k in range(OBJECTS)), timeout=60)
        finally:
            calls.close()
        registry = reconciler.metrics.registry
        assert registry.get_sample_value("harmony_forecast_batch_workloads_total") == OBJECTS
        assert registry.get_sample_value("harmony_forecast_batches_total") == 1 and calls.series == [OBJECTS]
