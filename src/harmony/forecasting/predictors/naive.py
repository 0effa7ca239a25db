"""Naive baselines: last value and seasonal naive, with empirical multi-step errors.

Point rule: y_hat[t + h] = y[t + h - m * ceil(h / m)] with season m (m = 1 is "last value").
Uncertainty: whole error trajectories e[1..H] (all indicators together) of the same rule on the validation
split are bootstrapped and added to the point path, so samples keep the error's growth with h and its
correlation across steps and indicators.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harmony.errors import HarmonyInputError
from harmony.forecasting.forecast import Forecast
from harmony.forecasting.predictors.base import Context, Predictor, draw_rows, history
from harmony.telemetry.frame import TelemetryFrame

#: fewest validation error trajectories worth sampling from before training rows are used as well
MIN_TRAJECTORIES = 30


def seasonal_point(ctx: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """[horizon, ...] from a context [lookback, ...] (lookback >= season)."""
    h = np.arange(1, horizon + 1)
    back = season * np.ceil(h / season).astype(int) - h  # steps before the last row
    return ctx[len(ctx) - 1 - back]


class SeasonalNaive(Predictor):
    def __init__(self, season_steps: int | None = None, name: str = "seasonal") -> None:
        if season_steps is not None and season_steps < 1:
            raise HarmonyInputError(f"season must be >= 1 step, got {season_steps}")
        self.season_steps = season_steps
        self.name = name
        self._history: np.ndarray | None = None
        self._val_start = 0
        self._pools: dict[int, np.ndarray] = {}

    @property
    def min_context_steps(self) -> int:
        return self.season_steps or 1

    def fit(self, train: TelemetryFrame, validation: TelemetryFrame | None = None) -> SeasonalNaive:
        self.remember(train)
        if self.season_steps is None:  # one day of steps
            self.season_steps = max(1, int(pd.Timedelta("1D") / train.interval))
        if len(train) < self.season_steps:
            raise HarmonyInputError(
                f"{self.name} needs at least one season ({self.season_steps} steps) of training rows, "
                f"got {len(train)}"
            )
        # The rules have no fitted parameters, so errors on training rows are honest too; keep them as a
        # fallback for horizons the validation split is too short to score.
        self._history, self._val_start = history(train, validation, keep_train=len(train))
        self._pools = {}
        return self

    def _error_pool(self, horizon: int) -> np.ndarray:
        """[n, horizon, indicators] complete error trajectories of origins whose targets are validation rows,
        or of every origin in train and validation when validation holds fewer than MIN_TRAJECTORIES."""
        if horizon not in self._pools:
            values, m = self._history, self.season_steps
            first_origin = max(self._val_start - 1, m - 1)
            if len(values) - horizon - first_origin < MIN_TRAJECTORIES:
                first_origin = m - 1
            origins = np.arange(first_origin, len(values) - horizon)
            if len(origins) == 0:
                raise HarmonyInputError(f"{self.name}: history too short for the horizon {horizon}")
            h = np.arange(1, horizon + 1)
            back = m * np.ceil(h / m).astype(int) - h
            truth = values[origins[:, None] + h[None]]  # [n, H, S, I]
            pred = values[origins[:, None] - back[None]]
            err = np.moveaxis(truth - pred, 2, 1).reshape(-1, horizon, values.shape[2])  # [n*S, H, I]
            self._pools[horizon] = err[np.isfinite(err).all(axis=(1, 2))]
        return self._pools[horizon]

    def predict(self, context: Context, horizon: int, n_samples: int = 100, seed: int | None = None) -> Forecast:
        if self._history is None:
            raise RuntimeError(f"{self.name} is not fitted")
        ctx = self._check_context(context, self._history.shape[2])
        point = seasonal_point(ctx, horizon, self.season_steps)  # [H, S, I]
        errors = draw_rows(self._error_pool(horizon), (n_samples, point.shape[1]), np.random.default_rng(seed))
        samples = point[None] + np.moveaxis(errors, 2, 1)  # [n, S, H, I] -> [n, H, S, I]
        return Forecast(samples, point)


class LastValue(SeasonalNaive):
    def __init__(self) -> None:
        super().__init__(season_steps=1, name="last")


class RecentWindow(Predictor):
    """The recent empirical marginal: every future step is a uniform draw from the last `steps` values of
    its indicator (the whole context when None). No dynamics at all; for indicators that are close to
    i.i.d. noise it is the forecast a model can hardly beat, so it is the baseline that shows what the
    HARMONY forecaster's validation-fitted mixture with these same values (`harmony.forecasting.models.calibration`)
    owes to them."""

    def __init__(self, steps: int | None = None) -> None:
        if steps is not None and steps < 1:
            raise HarmonyInputError(f"window steps must be >= 1, got {steps}")
        self.steps = steps
        self.name = "window" if steps is None else f"window({steps})"
        self._indicators: int | None = None

    @property
    def min_context_steps(self) -> int:
        return self.steps or 1

    def fit(self, train: TelemetryFrame, validation: TelemetryFrame | None = None) -> RecentWindow:
        self.remember(train)
        self._indicators = train.values.shape[2]
        return self

    def predict(self, context: Context, horizon: int, n_samples: int = 100, seed: int | None = None) -> Forecast:
        if self._indicators is None:
            raise RuntimeError(f"{self.name} is not fitted")
        ctx = self._check_context(context, self._indicators)  # gaps carried forward
        if self.steps is not None:
            ctx = ctx[-self.steps:]
        n_steps, n_series, n_ind = ctx.shape
        rows = np.random.default_rng(seed).integers(0, n_steps, size=(n_samples, horizon, n_series, n_ind))
        samples = ctx[rows, np.arange(n_series)[:, None], np.arange(n_ind)]  # [n, H, S, I]
        point = np.repeat(np.median(ctx, axis=0)[None], horizon, axis=0)
        return Forecast(samples, point)
