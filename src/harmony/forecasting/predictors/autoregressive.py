"""Ridge AR(p) per indicator, with empirical or Gaussian residual samples.

For each indicator i: y_t = b0 + sum_k b_k y_{t-k} + e_t, fitted by ridge regression (intercept not
penalised) on the training rows of every series. The residuals e are one-step errors on the validation
split. Multi-step samples are simulated recursively: each step draws a residual and feeds the sampled
value back as a lag, so the spread grows with the horizon as it should.

`residuals="empirical"` bootstraps whole residual vectors (all indicators of one validation step together,
which keeps their correlation); `residuals="gaussian"` draws N(mean, std) per indicator independently.
The HARMONY paper's data shows AR(36) with empirical residuals is a strong baseline on Fisher.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from harmony.errors import HarmonyInputError
from harmony.forecasting.forecast import Forecast
from harmony.forecasting.predictors.base import Context, Predictor, draw_rows, history
from harmony.telemetry.frame import TelemetryFrame


def _lagged(values: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    """Lag matrices of [time, series, indicators]: X [rows, series, indicators, p] (most recent lag first)
    and targets y [rows, series, indicators]."""
    windows = sliding_window_view(values[:-1], p, axis=0)  # [T-p, S, I, p], oldest first
    return windows[..., ::-1], values[p:]


class AutoRegressive(Predictor):
    def __init__(self, p: int = 36, residuals: str = "empirical", alpha: float = 1.0) -> None:
        if p < 1:
            raise HarmonyInputError(f"AR order p must be >= 1, got {p}")
        if residuals not in ("empirical", "gaussian"):
            raise HarmonyInputError(f"residuals must be 'empirical' or 'gaussian', got {residuals!r}")
        self.p, self.residuals, self.alpha = p, residuals, alpha
        self.name = f"ar({p})" if residuals == "empirical" else f"ar-gauss({p})"
        self.coef: np.ndarray | None = None  # [indicators, p]
        self.intercept: np.ndarray | None = None  # [indicators]
        self.residual_pool: np.ndarray | None = None  # [n, indicators], complete rows only

    @property
    def min_context_steps(self) -> int:
        return self.p

    def fit(self, train: TelemetryFrame, validation: TelemetryFrame | None = None) -> AutoRegressive:
        self.remember(train)
        if len(train) <= self.p + 1:
            raise HarmonyInputError(f"{self.name} needs more than {self.p + 1} training rows, got {len(train)}")
        X, y = _lagged(train.values, self.p)
        n_ind = train.values.shape[2]
        self.coef = np.zeros((n_ind, self.p))
        self.intercept = np.zeros(n_ind)
        for i in range(n_ind):
            xi = X[:, :, i, :].reshape(-1, self.p)
            yi = y[:, :, i].reshape(-1)
            ok = np.isfinite(yi) & np.isfinite(xi).all(axis=1)
            if ok.sum() < self.p + 1:
                raise HarmonyInputError(f"{self.name}: too few complete training rows for indicator {i}")
            xi, yi = xi[ok], yi[ok]
            x_mean, y_mean = xi.mean(axis=0), yi.mean()
            xc, yc = xi - x_mean, yi - y_mean
            gram = xc.T @ xc + self.alpha * np.eye(self.p)
            # lstsq, not solve: a constant column (a memory limit) makes the system singular at alpha=0
            self.coef[i] = np.linalg.lstsq(gram, xc.T @ yc, rcond=None)[0]
            self.intercept[i] = y_mean - x_mean @ self.coef[i]
        values, val_start = history(train, validation, keep_train=self.p)
        Xv, yv = _lagged(values, self.p)
        first = max(val_start - self.p, 0)  # rows whose target is a validation row
        residual = yv[first:] - self._step(Xv[first:])
        pool = residual.reshape(-1, n_ind)
        self.residual_pool = pool[np.isfinite(pool).all(axis=1)]
        if len(self.residual_pool) < 2:
            raise HarmonyInputError(f"{self.name}: fewer than 2 complete validation residuals")
        return self

    def _step(self, lags: np.ndarray) -> np.ndarray:
        """One-step prediction from lags [..., indicators, p] (most recent first)."""
        return np.einsum("...ip,ip->...i", lags, self.coef) + self.intercept

    def predict(self, context: Context, horizon: int, n_samples: int = 100, seed: int | None = None) -> Forecast:
        if self.coef is None:
            raise RuntimeError(f"{self.name} is not fitted")
        ctx = self._check_context(context, len(self.intercept))
        rng = np.random.default_rng(seed)
        lags = np.moveaxis(ctx[-self.p:][::-1], 0, -1)  # [S, I, p], most recent first
        n_series, n_ind = lags.shape[:2]
        point = np.empty((horizon, n_series, n_ind))
        state = lags.copy()
        for h in range(horizon):
            point[h] = self._step(state)
            state = np.concatenate([point[h][..., None], state[..., :-1]], axis=-1)
        samples = np.empty((n_samples, horizon, n_series, n_ind))
        state = np.broadcast_to(lags, (n_samples, *lags.shape)).copy()
        if self.residuals == "gaussian":
            mu, sd = self.residual_pool.mean(axis=0), self.residual_pool.std(axis=0, ddof=1)
        for h in range(horizon):
            if self.residuals == "empirical":
                noise = draw_rows(self.residual_pool, (n_samples, n_series), rng)
            else:
                noise = rng.normal(mu, sd, size=(n_samples, n_series, n_ind))
            samples[:, h] = self._step(state) + noise
            state = np.concatenate([samples[:, h][..., None], state[..., :-1]], axis=-1)
        return Forecast(samples, point)
