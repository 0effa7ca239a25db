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
    """

    values: np.ndarray
    end_time: np.ndarray | None = None
    interval: pd.Timedelta | None = None

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
            raise HarmonyInputError(f"context window of series {s} has no observed value of indicator {i}")
        flat = pd.DataFrame(v.reshape(v.shape[0], -1))
        return flat.ffill().bfill().to_numpy(copy=True).reshape(v.shape)


class Predictor(ABC):
    """fit(train, validation) then predict(context, horizon, n_samples, seed) -> Forecast."""

    #: short registry name, e.g. "ar"
    name: str = "predictor"

    @property
    def min_context_steps(self) -> int:
        """The shortest context window this predictor can forecast from."""
        return 1

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
        if context.values.shape[2] != n_indicators:
            raise ValueError(f"context has {context.values.shape[2]} indicators, model was fitted on {n_indicators}")
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
