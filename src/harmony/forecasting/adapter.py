"""The forecasting adapter: a predictor turned into samples of demand over the decision's horizon.

One adapter serves the operator and the backtest alike. At every decision it receives the telemetry window
the operator reads from Prometheus (`historySeconds` of rows ending at the decision tick; the backtest
replays the same window from the trace) and returns joint samples of demand over the next `horizon` steps,
in demand units. A baseline is refitted on that window every `refit_every` decisions (its residuals, hence
its uncertainty, stay as recent as the window); a model that is costly to fit (`Predictor.refit` False,
HARMONY) is fitted once, on its first window, or comes fitted from a checkpoint.

The predictor sees its inputs min-max scaled by its own scaler (`Predictor.input_scaler`, fitted with it
and saved in a checkpoint), never one refitted on whatever window arrives; the context carries the indicator
names (checked against the predictor's schema), its end time and interval (calendar features).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass

import numpy as np

from harmony.errors import HarmonyInputError
from harmony.forecasting.loop_defaults import (  # defined there, plain numbers the CLI's help reads
    DEFAULT_HISTORY_STEPS,
    DEFAULT_LOOKBACK_STEPS,
    DEFAULT_MAX_TRAINING_STEPS,
    DEFAULT_TRAINING_S,
    FALLBACK_MODEL,
    MAX_HISTORY_S,
    MAX_LOOKBACK_S,
    REFIT_EVERY,
)
from harmony.forecasting.predictors import Context, Predictor, build_predictor
from harmony.forecasting.scaling import MinMaxScaler
from harmony.telemetry.frame import TelemetryFrame


def default_history_s(interval_s: float) -> int:
    """historySeconds when none is given: DEFAULT_HISTORY_STEPS intervals, within the CRD's bound."""
    return int(min(DEFAULT_HISTORY_STEPS * interval_s, MAX_HISTORY_S))


def default_training_s(history_s: float, interval_s: float) -> int:
    """The history a model that learns from the workload's telemetry trains on when none is given:
    DEFAULT_TRAINING_S, or DEFAULT_MAX_TRAINING_STEPS intervals where that is shorter (fine intervals), but
    never less than the decision's window (`history_s`), within the CRD's bound."""
    capped = min(DEFAULT_TRAINING_S, DEFAULT_MAX_TRAINING_STEPS * interval_s)
    return int(min(max(history_s, capped), MAX_HISTORY_S))


def training_steps(training_s: float | None, history_s: float, interval_s: float) -> int:
    """Rows a model trains on (`DemandForecaster.training_steps`): `training_s` (None: the window) in
    intervals, rounded up, and never fewer than the decision's window holds."""
    return max(math.ceil(history_s / interval_s), math.ceil((training_s or history_s) / interval_s))


def default_lookback_s(interval_s: float) -> int:
    """lookbackSeconds when none is given: DEFAULT_LOOKBACK_STEPS intervals, within the CRD's bound."""
    return int(min(DEFAULT_LOOKBACK_STEPS * interval_s, MAX_LOOKBACK_S))
#: Forecast samples per decision.
DEFAULT_SAMPLES = 200


def validation_rows(n: int, horizon: int, validation_fraction: float = 0.15) -> int:
    """Rows at the end of an n-row history held out as validation: the fraction, at least horizon + 1."""
    return max(int(n * validation_fraction), horizon + 1)


def fit_scaled(spec: str, frame: TelemetryFrame, horizon: int, validation_fraction: float = 0.15,
               demand: tuple[str, ...] | None = None) -> Predictor:
    """A predictor fitted on `frame` min-max scaled on its own rows (the scaler kept as `predictor.input_scaler`);
    the last `validation_rows` of them are the validation split its residuals come from. demand: fit it for
    the decision (`Predictor.for_decision`: the HARMONY model then learns the demand path over `horizon`)."""
    n = len(frame)
    n_val = validation_rows(n, horizon, validation_fraction)
    scaler = MinMaxScaler.fit(frame)
    scaled = scaler.transform_frame(frame)
    predictor = build_predictor(spec)
    if demand is not None:
        predictor = predictor.for_decision(horizon, tuple(demand))
    predictor = predictor.fit(scaled.slice(0, n - n_val), scaled.slice(n - n_val, n))
    predictor.input_scaler = scaler
    return predictor


def demand_of_samples(samples: np.ndarray, scaler: MinMaxScaler, positions: list[int]) -> np.ndarray:
    """Scaled predictive samples [..., indicators] back in data units, demand indicators summed (>= 0)."""
    return np.maximum(scaler.inverse(samples)[..., positions].sum(axis=-1), 0.0)


def forecast_demand(forecast, indicators: tuple[str, ...], scaler: MinMaxScaler, demand: tuple[str, ...]) -> np.ndarray:
    """Demand samples [n, horizon, series] in data units from a forecast in the scaled space of a context with
    `indicators` (the scaler's, in order): of every indicator (a baseline) or of some (a model trained for
    the decision forecasts the demand alone)."""
    names = tuple(forecast.indicators or indicators)
    missing = [d for d in demand if d not in names]
    if missing:
        raise HarmonyInputError(f"the forecaster forecasts {list(names)}, not the demand indicator {missing[0]!r}")
    scaler = scaler.select([indicators.index(n) for n in names])
    return demand_of_samples(forecast.samples, scaler, [names.index(d) for d in demand])


@dataclass(frozen=True)
class FineTune:
    """The schedule and budget of a model's learning in the loop (a model that is not refitted at every
    decision: HARMONY). every: decisions between fine-tunes (0: never). epochs, max_seconds: the most one
    fine-tune may train (epochs bound it on any machine; max_seconds caps its wall time on a slow one, and
    when it bites a replay on another machine may differ)."""

    every: int = 0
    epochs: int = 2
    max_seconds: float | None = 60.0

    def __post_init__(self) -> None:
        if self.every < 0 or self.epochs < 1 or (self.max_seconds is not None and not self.max_seconds > 0):
            raise HarmonyInputError(f"fine-tune needs every >= 0, epochs >= 1 and max_seconds > 0, got {self}")

    @classmethod
    def every_seconds(cls, seconds: float, interval_s: float, **budget) -> FineTune:
        """The schedule of a fine-tune every `seconds` (0: never) at a control interval, in decisions (rounded
        up), as the CRD's fineTune.intervalSeconds and the backtest's --fine-tune-seconds give it."""
        return cls(every=math.ceil(seconds / interval_s), **budget)


#: Training windows a model that learns from the workload's own history needs before it replaces the fallback.
MIN_TRAINING_WINDOWS = 256


@dataclass
class ForecasterStatus:
    """What forecasts now, as status and metrics say it: the model's name, whether the fallback baseline
    stands in for it (and why), and how often it has learned since it was fitted."""

    model: str
    fallback: bool = False
    reason: str = ""
    fine_tunes: int = 0

    def to_dict(self) -> dict:
        return {"model": self.model, "fallback": self.fallback, "reason": self.reason, "fineTunes": self.fine_tunes}


class DemandForecaster:
    """One workload's forecasts of demand, refitted on the telemetry window on a fixed cadence.

    model: a predictor spec (`ar:30`, `seasonal`, `harmony`, ...), or None with `predictor` a fitted one (a
    checkpoint). horizon: steps ahead. lookback: context length in steps. refit_every: decisions between
    refits of a baseline (0: never after the first fit). fine_tune: the schedule on which a model that is not
    refitted (HARMONY, from a spec or a checkpoint) keeps learning from the window, warm-started from its
    current weights. A spec'd model that cannot be trained yet (too little history) is stood in for by
    FALLBACK_MODEL, refitted as a baseline, until the history suffices; `status` says so.

    training_steps: the rows such a model trains on (the CRD's spec.model.trainingSeconds), when the caller
    offers them beyond the decision's window (`request`'s `training`). A model trained on fewer rows than that
    (a new workload, or a Prometheus keeping less) is trained again, from scratch, once as many decisions have
    passed as it was trained on rows: each time its history has doubled, until the training window is full
    (about 5 trainings from 256 windows to 7 days), then every training window's worth of decisions where the
    history never fills it.

    trainer: where such a model trains (the operator's training pool: a fit takes tens of seconds of a core,
    which a reconcile worker must not wait for); None trains it in the call (the backtest, whose replay
    then has the model from the decision it was due at). While it trains, the model it replaces keeps
    serving, or, before the first, FALLBACK_MODEL stands in and `status` says the training is under way.
    """

    def __init__(self, model: str | None, horizon: int, lookback: int, n_samples: int = DEFAULT_SAMPLES,
                 refit_every: int = REFIT_EVERY, predictor: Predictor | None = None,
                 fine_tune: FineTune | None = None, training_steps: int | None = None,
                 trainer: Executor | None = None) -> None:
        if model is None and predictor is None:
            raise ValueError("DemandForecaster needs a model spec or a fitted predictor")
        if predictor is not None and predictor.input_scaler is None:
            raise HarmonyInputError(f"{predictor.name}: a fitted predictor must carry the scaler of its training "
                                    "data (input_scaler); this one has none")
        self.spec, self.horizon, self.lookback = model, horizon, lookback
        self.n_samples, self.refit_every = n_samples, refit_every
        self.fine_tune = fine_tune or FineTune()
        self.predictor = predictor
        self.owned = predictor is None  # a shared checkpoint is copied before it learns
        self.fallback: Predictor | None = None
        self.status = ForecasterStatus(model or getattr(predictor, "name", "checkpoint"))
        self.calls_since_fit = 0
        self.calls_since_tune = 0
        self.training_steps = training_steps
        self.trained_rows = 0  # rows the spec'd model was last trained on
        self.trainer = trainer
        self._training: tuple[Future, int] | None = None  # a training under way: its future and rows
        self._retry_at = 0  # after a training failed: the calls since the fit before another is tried

    def _due(self) -> bool:
        if self.spec is None:
            return False
        if self.predictor is None:
            return True
        if self.predictor.refit:
            return self.refit_every > 0 and self.calls_since_fit >= self.refit_every
        if self._training is not None:
            return True  # a training under way: see whether it is done
        # a model trained on less history than it wants: again once that history has doubled
        return (self.training_steps is not None and self.trained_rows < self.training_steps
                and self.calls_since_fit >= self.trained_rows)

    def _tune_due(self) -> bool:
        return (self.predictor is not None and not self.predictor.refit and hasattr(self.predictor, "fine_tune")
                and self.fine_tune.every > 0 and self.calls_since_tune >= self.fine_tune.every)

    def fit(self, window: TelemetryFrame, demand: tuple[str, ...] | None = None,
            training: Callable[[], TelemetryFrame | None] | None = None) -> None:
        """Fit the spec'd predictor on `window` (a baseline) or on the training history (a model trained on the
        workload's own telemetry: `training()`'s frame where it is longer than the window)."""
        if self._training is not None:
            self._collect(window)
            return
        if self.calls_since_fit < self._retry_at:  # a training failed not long ago: serve as before
            if self.predictor is None:
                self._refit_fallback(window)  # the status keeps saying why
            return
        candidate = build_predictor(self.spec)
        decision_window = window
        if not candidate.refit:  # trained on the rows with data (a new workload's window starts empty)
            window = self._training_window(window, training).trim()
        n = len(window)
        if n - validation_rows(n, self.horizon) < 2 * self.lookback:
            raise HarmonyInputError(
                f"{n} rows of history are too few to fit {self.spec} with a lookback of {self.lookback} steps")
        if not candidate.refit:  # a model trained on the workload's own history: enough of it yet?
            windows = n - validation_rows(n, self.horizon) - candidate.min_context_steps - self.horizon + 1
            if windows < MIN_TRAINING_WINDOWS:
                self._stand_in(decision_window, f"{n} rows of history give {max(windows, 0)} training windows; "
                                                f"{self.spec} trains from {MIN_TRAINING_WINDOWS}")
                return
        if self.trainer is not None and not candidate.refit:
            self._training = (self.trainer.submit(fit_scaled, self.spec, window, self.horizon, demand=demand), n)
            self._serve_while_training(decision_window)
            return
        self._install(fit_scaled(self.spec, window, self.horizon, demand=demand), n)

    def _install(self, predictor: Predictor, rows: int) -> None:
        fine_tunes = self.status.fine_tunes if self.predictor is not None else 0
        self.predictor, self.owned = predictor, True
        self.fallback = None
        self.status = ForecasterStatus(self.spec, fine_tunes=fine_tunes)
        self.calls_since_fit = self.calls_since_tune = 0
        self.trained_rows, self._retry_at = rows, 0

    def _serve_while_training(self, window: TelemetryFrame) -> None:
        """A training under way: the model it replaces serves on; before the first, the fallback stands in."""
        rows = self._training[1]
        if self.predictor is None:
            self._stand_in(window, f"training {self.spec} on {rows} rows of history")

    def _collect(self, window: TelemetryFrame) -> None:
        """The training under way, taken up when done; a failed one is reported and tried again after
        MIN_TRAINING_WINDOWS more decisions (the history has grown by that many rows)."""
        future, rows = self._training
        if not future.done():
            self._serve_while_training(window)
            return
        self._training = None
        try:
            self._install(future.result(), rows)
        except Exception as exc:  # noqa: BLE001 - the training's own fault: reported, the step goes on
            self._retry_at = self.calls_since_fit + MIN_TRAINING_WINDOWS
            reason = f"training {self.spec} on {rows} rows failed ({type(exc).__name__}: {exc})"
            if self.predictor is None:
                self._stand_in(window, reason)
            else:
                self.status.reason = reason

    def _training_window(self, window: TelemetryFrame,
                         training: Callable[[], TelemetryFrame | None] | None) -> TelemetryFrame:
        """The rows a model trains on: the caller's training history where it offers more than the window."""
        if training is None or self.training_steps is None or len(window) >= self.training_steps:
            return window
        frame = training()
        return frame if frame is not None and len(frame) > len(window) else window

    def _refit_fallback(self, window: TelemetryFrame) -> None:
        self.fallback = fit_scaled(FALLBACK_MODEL, window, self.horizon)

    def _stand_in(self, window: TelemetryFrame, reason: str) -> None:
        self._refit_fallback(window)
        self.status = ForecasterStatus(FALLBACK_MODEL, fallback=True, reason=f"{reason}: {FALLBACK_MODEL} stands in")

    def _learn(self, window: TelemetryFrame) -> None:
        """One fine-tune on the window, scaled by the model's own input scaler (never refitted: the weights
        are tied to it); its last `validation_rows` validate."""
        if not self.owned:
            self.predictor, self.owned = copy.deepcopy(self.predictor), True
        n = len(window)
        scaled = self.predictor.input_scaler.transform_frame(window)
        n_val = validation_rows(n, self.horizon)
        try:
            self.predictor.fine_tune(scaled.slice(0, n - n_val), scaled.slice(n - n_val, n), self.fine_tune.epochs,
                                     self.fine_tune.max_seconds)
            self.status.fine_tunes += 1
        except HarmonyInputError as exc:  # e.g. a window with too few complete rows: keep serving as is
            self.status.reason = f"fine-tune skipped: {exc}"
        self.calls_since_tune = 0

    def demand_samples(self, window: TelemetryFrame, demand: tuple[str, ...], seed: int,
                       training: Callable[[], TelemetryFrame | None] | None = None) -> np.ndarray:
        """[n_samples, horizon] demand over the steps after the window's last row (one series)."""
        return self.request(window, demand, seed, training).run()

    def request(self, window: TelemetryFrame, demand: tuple[str, ...], seed: int,
                training: Callable[[], TelemetryFrame | None] | None = None) -> ForecastRequest:
        """The forecast `demand_samples` makes, ready to run alone or together with other workloads' (the
        fit, fine-tune and schedule bookkeeping of this decision done, the context cut and scaled).
        training: the history ending with the window's last row, up to `training_steps` rows (or None where
        there is none), called only when a model that trains on it is due to (the operator's range query
        of spec.model.trainingSeconds; the backtest's slice of the trace)."""
        if len(window.series) != 1:
            raise HarmonyInputError(f"a forecast serves one workload; the window has {len(window.series)} series")
        if self._due():
            self.fit(window, tuple(demand), training)
        elif self._tune_due():
            self._learn(window)
        self.calls_since_fit += 1
        self.calls_since_tune += 1
        predictor = self.predictor if self.predictor is not None else self.fallback  # refitted above while it stands in
        lookback = max(self.lookback, predictor.min_context_steps)
        if len(window) < lookback:
            raise HarmonyInputError(f"{len(window)} rows are fewer than the lookback of {lookback} steps")
        ctx = predictor.input_scaler.transform(window.values[-lookback:])
        end = window.index[-1:]
        end = (end.tz_convert(None) if end.tz is not None else end).to_numpy(dtype="datetime64[ns]")  # UTC
        context = Context(ctx, end, window.interval, tuple(window.indicator_names))
        # a model served to many workloads (a checkpoint not yet fine-tuned into a copy of this workload's own)
        shared = self.spec is None and not self.owned and predictor.seeds_per_series
        return ForecastRequest(predictor, context, self.horizon, self.n_samples, int(seed), tuple(demand), shared)

@dataclass
class ForecastRequest:
    """One workload's forecast, ready to run: its predictor, its context (one series, gaps filled), the
    horizon, samples and seed, and the demand indicators to read from the forecast. `shared`: the predictor
    serves other workloads too and takes a seed per series, so the forecast may run in one `predict` call
    with theirs (`forecast_together`) and give the same samples as alone."""

    predictor: Predictor
    context: Context
    horizon: int
    n_samples: int
    seed: int
    demand: tuple[str, ...]
    shared: bool = False

    @property
    def batch_key(self) -> tuple:
        """Requests with equal keys can share a `predict` call: one predictor object, one shape of forecast."""
        return (id(self.predictor), self.horizon, self.n_samples, self.context.lookback, self.context.indicators,
                str(self.context.interval))

    def demand_of(self, forecast, series: int = 0) -> np.ndarray:
        """[n_samples, horizon] demand samples in data units of one series of a forecast."""
        one = dataclasses.replace(forecast, samples=forecast.samples[:, :, series:series + 1], point=None, series=None)
        return forecast_demand(one, self.context.indicators, self.predictor.input_scaler, self.demand)[:, :, 0]

    def run(self) -> np.ndarray:
        """[n_samples, horizon] demand samples, forecast alone."""
        return self.demand_of(self.predictor.predict(self.context, self.horizon, self.n_samples, self.seed))


def forecast_together(requests: list[ForecastRequest]) -> list[np.ndarray | Exception]:
    """Each request's demand samples, or the exception its forecast raised, in order: one `predict` call over
    the series axis for the `shared` requests of one `batch_key`, the others alone. A request's samples are
    those it gets alone (`ForecastRequest.run`), up to the rounding of batched arithmetic.

    A call that fails is split in halves and each half tried again, down to single requests, so one
    workload's bad context fails that workload alone while the others are still forecast together (a fault
    among n costs about 2 log2(n) calls, not n)."""
    results: list[np.ndarray | Exception | None] = [None] * len(requests)
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(requests):
        groups.setdefault(r.batch_key if r.shared else ("alone", i), []).append(i)
    for members in groups.values():
        for i, result in zip(members, _together([requests[i] for i in members]), strict=True):
            results[i] = result
    return results


def _together(requests: list[ForecastRequest]) -> list[np.ndarray | Exception]:
    """forecast_together for requests of one batch key."""
    if len(requests) == 1:
        try:
            return [requests[0].run()]
        except Exception as exc:  # noqa: BLE001 - this request's own fault, returned to its caller
            return [exc]
    first = requests[0]
    try:
        context = Context(np.concatenate([r.context.values for r in requests], axis=1),
                          np.concatenate([r.context.end_time for r in requests]), first.context.interval,
                          first.context.indicators)
        forecast = first.predictor.predict(context, first.horizon, first.n_samples, [r.seed for r in requests])
        return [r.demand_of(forecast, k) for k, r in enumerate(requests)]
    except Exception:  # noqa: BLE001 - whose fault it was, the halves tell
        half = len(requests) // 2
        return _together(requests[:half]) + _together(requests[half:])
