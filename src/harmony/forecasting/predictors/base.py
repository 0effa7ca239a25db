"""The Predictor interface every forecaster implements, baselines and the HARMONY model alike.

A predictor is fitted on a training frame (and a validation frame, e.g. for residuals or early
stopping), then maps a context window of recent telemetry to a `Forecast` of the next `horizon` steps.
Predictors work in whatever space they are given (the evaluation protocols hand them scaled data).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harmony.errors import HarmonyInputError
from harmony.forecasting.forecast import Forecast
from harmony.telemetry.frame import TelemetryFrame


@dataclass(frozen=True)
class Context:
    """Recent telemetry to forecast from.

    values: [lookback, series, indicators], oldest first; NaN marks missing samples.
    end_time: [series] datetime64[ns], the timestamp of each series' last row (models with calendar
        features use it; evaluation folds many windows into the series axis, each with its own end).
    interval: the step between rows.
    indicators: the indicator names of the last axis, in order (checked against the predictor's schema).
    """

    values: np.ndarray
    end_time: np.ndarray | None = None
    interval: pd.Timedelta | None = None
    indicators: tuple[str, ...] | None = None

    @property
    def lookback(self) -> int:
        return self.values.shape[0]

    def filled(self) -> np.ndarray:
        """Values with missing samples carried forward (then backward at the start of the window).

        A column with nothing observed in the whole window cannot be forecast from and raises."""
        v = np.array(self.values, dtype=np.float64, copy=True)
        if not np.isnan(v).any():
            return v
        empty = np.all(np.isnan(v), axis=0)
        if empty.any():
            s, i = (int(x[0]) for x in np.nonzero(empty))
            name = repr(self.indicators[i]) if self.indicators is not None and i < len(self.indicators) else i
            raise HarmonyInputError(
                f"context window of series {s} has no observed value of indicator {name} (missing, or made "
                f"NaN by scaling an infinite value)")
        flat = pd.DataFrame(v.reshape(v.shape[0], -1))
        return flat.ffill().bfill().to_numpy(copy=True).reshape(v.shape)


@dataclass(frozen=True)
class InputSchema:
    """What a predictor was fitted on: indicator names in order, their levels, and the interval."""

    indicators: tuple[str, ...]
    levels: tuple[int, ...]
    interval: pd.Timedelta | None

    @classmethod
    def of(cls, frame: TelemetryFrame) -> InputSchema:
        return cls(tuple(frame.indicator_names), tuple(frame.levels), frame.interval)

    def check(self, context: Context, who: str) -> None:
        """Refuse a context whose indicators or interval differ from the training ones, naming the first."""
        if context.indicators is not None and tuple(context.indicators) != self.indicators:
            given = tuple(context.indicators)
            for i in range(max(len(given), len(self.indicators))):
                want = self.indicators[i] if i < len(self.indicators) else None
                got = given[i] if i < len(given) else None
                if want != got:
                    raise HarmonyInputError(
                        f"{who} was trained on indicators {list(self.indicators)}; the context's indicator "
                        f"{i + 1} is {got!r} where {want!r} was trained")
        if (context.interval is not None and self.interval is not None
                and pd.Timedelta(context.interval) != pd.Timedelta(self.interval)):
            raise HarmonyInputError(
                f"{who} was trained at an interval of {self.interval}; the context's interval is {context.interval}")


class Predictor(ABC):
    """fit(train, validation) then predict(context, horizon, n_samples, seed) -> Forecast.

    A fitted predictor carries what it was trained with: `schema` (indicator names in order, levels,
    interval; set by `remember`) and `input_scaler`, the scaler from data units into the space it was
    fitted in (set by whoever scaled its training data; a checkpoint saves it).
    `refit`: whether refitting at every decision is cheap (baselines) or not (HARMONY: fitted once, or
    loaded from a checkpoint). `seeds_per_series`: whether `predict` also takes one seed per series, each
    series then sampled as it would be alone (so workloads sharing the predictor can share one call).
    """

    #: short registry name, e.g. "ar"
    name: str = "predictor"
    refit: bool = True
    seeds_per_series: bool = False
    schema: InputSchema | None = None
    input_scaler = None  # harmony.forecasting.scaling.MinMaxScaler: data units -> the fitted space

    def remember(self, train: TelemetryFrame) -> None:
        """Record the training frame's schema (every `fit` calls this)."""
        self.schema = InputSchema.of(train)

    @property
    def min_context_steps(self) -> int:
        """The shortest context window this predictor can forecast from."""
        return 1

    def for_decision(self, horizon: int, demand: tuple[str, ...]) -> Predictor:
        """This predictor, made (before `fit`) to forecast what a decision reads: the `demand` indicators over
        `horizon` steps. Baselines forecast every indicator at any horizon and need nothing."""
        return self

    @abstractmethod
    def fit(self, train: TelemetryFrame, validation: TelemetryFrame | None = None) -> Predictor:
        """Learn from the training frame; `validation` (the rows right after train) may be used for
        residuals or early stopping, never the test rows."""

    @abstractmethod
    def predict(self, context: Context, horizon: int, n_samples: int = 100, seed: int | None = None) -> Forecast:
        """Samples [n_samples, horizon, series, indicators]; the same seed gives the same samples."""

    def _check_context(self, context: Context, n_indicators: int) -> np.ndarray:
        if context.values.ndim != 3:
            raise ValueError(f"context must be [lookback, series, indicators], got {context.values.shape}")
        if self.schema is not None:
            self.schema.check(context, self.name)
        if context.values.shape[2] != n_indicators:
            raise HarmonyInputError(
                f"{self.name}: the context has {context.values.shape[2]} indicators, the model was fitted on "
                f"{n_indicators}")
        if context.lookback < self.min_context_steps:
            raise HarmonyInputError(
                f"{self.name} needs a context of at least {self.min_context_steps} steps, got {context.lookback}"
            )
        return context.filled()


def history(train: TelemetryFrame, validation: TelemetryFrame | None, keep_train: int) -> tuple[np.ndarray, int]:
    """The last `keep_train` training rows followed by the validation rows, and where validation starts.

    Validation residuals need the rows just before each validation target as their context."""
    if validation is None or len(validation) == 0:
        return np.array(train.values, copy=True), 0
    tail = train.values[-keep_train:] if keep_train > 0 else train.values[:0]
    return np.concatenate([tail, validation.values], axis=0), len(tail)


def draw_rows(pool: np.ndarray, size: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Bootstrap whole rows of `pool` ([n_rows, ...]); the result has shape size + pool.shape[1:]."""
    if len(pool) == 0:
        raise HarmonyInputError("no complete residuals to sample from (validation data all missing?)")
    return pool[rng.integers(0, len(pool), size=size)]
