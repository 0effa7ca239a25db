"""Forecasts of objects that share a served model, made together: one `predict` call over the series axis.

HarmonyAutoscalers whose `spec.model.checkpoint` names one file are served one predictor object
(`harmony.operator.spec.served_checkpoint`). Forecast one at a time, each pays the model's whole fixed cost
(a few hundred small tensor operations) for one window; forecast together, one pass of the encoder and the
flow serves them all. So a daemon's step runs in three parts (harmony.operator.app): `Reconciler.begin` in
the reconcile pool (the spec, the scale and the telemetry read, the forecast prepared), then, for a
request that may be shared, `await ForecastBatcher.forecast` (no thread is held while it waits), then
`Reconciler.finish` in the pool (the control step, the writes, the report).

A batch is the shared requests of one `ForecastRequest.batch_key` (the same predictor object, horizon,
samples, lookback, indicators and interval) that arrive within `BatchSettings.window_s` of its first; it is
forecast at the end of that window, or at once when it holds `max_batch`. Objects are decided at staggered
offsets within their interval (`harmony.operator.app.first_delay_s`), so a batch holds the objects due in
that window, about objects x window / interval of them. The wait is bounded by the window, and a step's
duration (`harmony_decision_duration_seconds`) includes it.

What does not change: an object's samples. Each series is drawn from its own generator, seeded as it is
alone (`HarmonyPredictor.predict` with a seed per series), so its forecast, hence its decision, is the one
it would get forecast alone or in a backtest, whoever shares its batch. Faults stay per object:
`harmony.forecasting.adapter.forecast_together` splits a failing call until the object at fault fails
alone, and a bad window is reported on that object only (forecast-failed). Objects with a model of their
own (a baseline refitted on their own window, a checkpoint fine-tuned into a copy of their own) are not
shared and forecast alone in `finish`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass, field

import numpy as np

from harmony.errors import HarmonyInputError
from harmony.forecasting.adapter import ForecastRequest, forecast_together
from harmony.operator.metrics import OperatorMetrics


@dataclass(frozen=True)
class BatchSettings:
    """window_s: seconds the first request of a batch waits for others due meanwhile (0: no batching,
    each object forecasts alone in its own step, as a baseline does). max_batch: the most workloads one call
    forecasts; a full batch is forecast at once. Defaults: no batching, since on 2 quiet cores
    (`bench/operator_scale.py --model harmony --objects 1000`) a 0.5 s window cost less CPU per decision
    (30.9 ms against 46.1) but made fewer decisions per second (13.0 against 19.6) and steps of 28 s median
    (0.79 s alone); 1,024 windows x 200 samples keep one call's memory under a few hundred MiB."""

    window_s: float = 0.0
    max_batch: int = 1024

    def __post_init__(self) -> None:
        if not self.window_s >= 0 or self.max_batch < 1:  # NaN too
            raise HarmonyInputError(f"forecast batching needs a window >= 0 s and a maximum batch >= 1, got {self}")

    @property
    def enabled(self) -> bool:
        return self.window_s > 0 and self.max_batch > 1


@dataclass
class _Batch:
    requests: list[ForecastRequest] = field(default_factory=list)
    waiting: list[asyncio.Future] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class ForecastBatcher:
    """Coalesces the shared forecast requests of one event loop into `forecast_together` calls, run in
    `executor` (None: asyncio's default pool); each call is counted in `metrics` (if any)."""

    def __init__(self, settings: BatchSettings | None = None, executor: concurrent.futures.Executor | None = None,
                 metrics: OperatorMetrics | None = None) -> None:
        self.settings = settings or BatchSettings()
        self.executor, self.metrics = executor, metrics
        self._open: dict[tuple, _Batch] = {}
        self._running: set[asyncio.Task] = set()  # kept so that a running call is not garbage-collected

    async def forecast(self, request: ForecastRequest) -> np.ndarray | Exception:
        """The request's demand samples, or the exception its forecast raised (returned, not raised: the
        step reports it as its own), from a call shared with the requests due within the window."""
        loop = asyncio.get_running_loop()
        key = request.batch_key
        batch = self._open.get(key)
        if batch is None:
            batch = self._open[key] = _Batch()
            batch.timer = loop.call_later(self.settings.window_s, self._flush, key, batch)
        waiting = loop.create_future()
        batch.requests.append(request)
        batch.waiting.append(waiting)
        if len(batch.requests) >= self.settings.max_batch:
            self._flush(key, batch)
        return await waiting

    def _flush(self, key: tuple, batch: _Batch) -> None:
        """Close `batch` (if still open) and forecast it in the pool."""
        if self._open.get(key) is not batch:
            return  # flushed already (full before its window ended)
        del self._open[key]
        batch.timer.cancel()
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, batch: _Batch) -> None:
        try:
            results = await asyncio.get_running_loop().run_in_executor(self.executor, forecast_together,
                                                                       batch.requests)
        except Exception as exc:  # the pool refused the work (shut down at exit): every waiter hears it
            results = [exc] * len(batch.requests)
        if self.metrics is not None:
            self.metrics.forecast_batched(len(batch.requests))
        for waiting, result in zip(batch.waiting, results, strict=True):
            if not waiting.done():  # a waiter cancelled meanwhile (its daemon stopped) takes nothing
                waiting.set_result(result)
