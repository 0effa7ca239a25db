"""LightGBM quantile regression on lags as a harmony Predictor: direct multi-horizon models.

Per indicator i, horizon step h and quantile level q one gradient-boosted model (objective `quantile`,
alpha q) maps the context's features to the change y_i[t + h] - y_i[t] from the last observed value: the
last `lags` values of i as differences to y_i[t] (most recent first) and the last value of every indicator.
The change, not the level, because trees cannot extrapolate: a counter that grows past its training range
(Fisher's cumulative CPU seconds) would be forecast at the largest level the trees saw (the level target
scored CRPS 2.3x AR's on Fisher container 1). One model per step (direct, not recursive): recursion would have to feed
sampled values back through the trees, one prediction per sample and step, and a direct model's error at
step h is what it was trained to bound. Rows pool every series of the training frame (one global model,
as ridge AR pools them); boosting stops early on the validation rows (pinball loss), at most `rounds` trees.
`horizon` is fixed at fit time, since the models are per step; a forecast asks for at most that many.
Samples: the quantile function through the QUANTILES predictions (sorted, linear between levels, outer
slopes continued; `sampling.quantile_samples`) along comonotone paths (`sampling.path_ranks`); the point
forecast is the sample mean.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from harmony.errors import HarmonyInputError
from harmony.forecasting.forecast import Forecast
from harmony.forecasting.predictors import Context, Predictor
from harmony.forecasting.predictors.base import history
from harmony.telemetry.frame import TelemetryFrame
from peers.sampling import path_ranks, quantile_samples

QUANTILES = np.array([0.02, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98])
#: small trees, a moderate rate and one thread: the bench shares 2 cores and the rows number thousands
PARAMS = {"learning_rate": 0.1, "num_leaves": 15, "min_data_in_leaf": 20, "feature_fraction": 0.9,
          "max_bin": 63, "num_threads": 1, "verbose": -1}
EARLY_STOPPING_ROUNDS = 20


def features(windows: np.ndarray, i: int) -> np.ndarray:
    """[rows, lags - 1 + indicators] of windows [rows, lags, indicators] (oldest first) for target indicator i:
    the earlier lags of i minus its last value (most recent first), then every indicator's last value."""
    return np.concatenate([windows[:, -2::-1, i] - windows[:, -1:, i], windows[:, -1, :]], axis=1)


def supervised(values: np.ndarray, lags: int, horizon: int, first_origin: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Windows [rows, lags, indicators] and their next `horizon` targets [rows, horizon, indicators] of values
    [time, series, indicators], for origins (first forecast row) from max(first_origin, lags) on."""
    blocks = sliding_window_view(values, lags + horizon, axis=0)  # [T - L - H + 1, S, I, L + H]
    blocks = blocks[max(first_origin - lags, 0):]
    blocks = np.moveaxis(blocks, -1, 2).reshape(-1, lags + horizon, values.shape[2])  # [rows, L + H, I]
    return blocks[:, :lags], blocks[:, lags:]


class LightGBMQuantiles(Predictor):
    def __init__(self, lags: int = 36, horizon: int = 1, rounds: int = 100, seed: int = 0) -> None:
        if lags < 1 or horizon < 1 or rounds < 1:
            raise HarmonyInputError(f"lgbm: lags, horizon and rounds must be >= 1, got {lags}, {horizon}, {rounds}")
        self.lags, self.horizon, self.rounds, self.seed = lags, horizon, rounds, seed
        self.name = "lgbm"
        self._boosters: list[list[list[lgb.Booster]]] | None = None  # [indicator][step][quantile]

    @property
    def min_context_steps(self) -> int:
        return self.lags

    def fit(self, train: TelemetryFrame, validation: TelemetryFrame | None = None) -> LightGBMQuantiles:
        self.remember(train)
        x_train, y_train = supervised(train.values, self.lags, self.horizon)
        values, val_start = history(train, validation, keep_train=self.lags)
        x_val = y_val = None
        if val_start and len(values) - val_start >= self.horizon:  # validation rows to stop on
            x_val, y_val = supervised(values, self.lags, self.horizon, first_origin=val_start)
        if len(x_train) == 0:
            raise HarmonyInputError(f"lgbm needs more than lags + horizon = {self.lags + self.horizon} training rows")
        n_ind = train.values.shape[2]
        self._boosters = [[self._fit_step(features(x_train, i), y_train[:, h, i] - x_train[:, -1, i],
                                          None if x_val is None else features(x_val, i),
                                          None if y_val is None else y_val[:, h, i] - x_val[:, -1, i])
                           for h in range(self.horizon)] for i in range(n_ind)]
        return self

    def _fit_step(self, x: np.ndarray, y: np.ndarray, x_val: np.ndarray | None, y_val: np.ndarray | None) -> list:
        """The QUANTILES models of one indicator and step; rows with a missing target are left out."""
        data = lgb.Dataset(x[np.isfinite(y)], y[np.isfinite(y)], free_raw_data=False)
        valid = None
        if x_val is not None and np.isfinite(y_val).sum() > 0:
            valid = lgb.Dataset(x_val[np.isfinite(y_val)], y_val[np.isfinite(y_val)], reference=data)
        boosters = []
        for q in QUANTILES:
            params = {**PARAMS, "objective": "quantile", "alpha": float(q), "seed": self.seed}
            callbacks = [lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)] if valid is not None else []
            boosters.append(lgb.train(params, data, num_boost_round=self.rounds, callbacks=callbacks,
                                      valid_sets=[valid] if valid is not None else None))
        return boosters

    def predict(self, context: Context, horizon: int, n_samples: int = 100, seed: int | None = None) -> Forecast:
        if self._boosters is None:
            raise RuntimeError(f"{self.name} is not fitted")
        if horizon > self.horizon:
            raise HarmonyInputError(f"lgbm was fitted for {self.horizon} steps (lgbm:horizon=N); asked for {horizon}")
        ctx = self._check_context(context, len(self._boosters))
        window = np.moveaxis(ctx[-self.lags:], 0, 1)  # [columns, lags, indicators]
        n_columns, n_ind = ctx.shape[1:]
        quantiles = np.empty((len(QUANTILES), horizon, n_columns, n_ind))
        for i, steps in enumerate(self._boosters):
            x = features(window, i)
            for h in range(horizon):
                for k, booster in enumerate(steps[h]):
                    change = booster.predict(x, num_iteration=booster.best_iteration or None)
                    quantiles[k, h, :, i] = window[:, -1, i] + change
        ranks = path_ranks(n_samples, (n_columns, n_ind), np.random.default_rng(seed))
        return Forecast(quantile_samples(QUANTILES, quantiles, ranks))
