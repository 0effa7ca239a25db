"""Demand forecasts for policies: a fitted Predictor turned into samples of demand over the next steps.

The predictor sees the dataset's indicators min-max scaled on the training rows (as in evaluation); its
samples are scaled back and the demand indicators summed per sample, so the decision sees a joint
distribution of demand over the horizon, in demand units. Forecasts only ever use rows at or before the
decision tick; computing them for many ticks at once (folded into the predictor's series axis) changes
nothing but the speed.
"""

from __future__ import annotations

import numpy as np

from harmony.errors import HarmonyInputError
from harmony.forecasting.predictors import Context, Predictor, build_predictor
from harmony.forecasting.scaling import MinMaxScaler
from harmony.telemetry.frame import TelemetryFrame


def validation_rows(n: int, horizon: int, validation_fraction: float = 0.15) -> int:
    """Rows at the end of an n-row history held out as validation: the fraction, at least horizon + 1."""
    return max(int(n * validation_fraction), horizon + 1)


def fit_scaled(spec: str, frame: TelemetryFrame, horizon: int,
               validation_fraction: float = 0.15) -> tuple[Predictor, MinMaxScaler]:
    """A predictor fitted on `frame` min-max scaled on its own rows; the last `validation_rows` of them are
    the validation split its residuals come from."""
    n = len(frame)
    n_val = validation_rows(n, horizon, validation_fraction)
    scaler = MinMaxScaler.fit(frame)
    scaled = scaler.transform_frame(frame)
    return build_predictor(spec).fit(scaled.slice(0, n - n_val), scaled.slice(n - n_val, n)), scaler


def demand_of_samples(samples: np.ndarray, scaler: MinMaxScaler, positions: list[int]) -> np.ndarray:
    """Scaled predictive samples [..., indicators] back in data units, demand indicators summed (>= 0)."""
    return np.maximum(scaler.inverse(samples)[..., positions].sum(axis=-1), 0.0)


class DemandForecaster:
    """Fit once on the training part of a single-series frame, then forecast demand at any tick.

    model: a predictor spec (`ar:30`, `seasonal`, ...). horizon: steps ahead. lookback: context length.
    """

    def __init__(self, model: str, horizon: int, lookback: int = 120, n_samples: int = 200, seed: int = 0,
                 validation_fraction: float = 0.15) -> None:
        self.spec, self.horizon, self.lookback = model, horizon, lookback
        self.n_samples, self.seed = n_samples, seed
        self.validation_fraction = validation_fraction
        self.predictor: Predictor | None = None
        self._scaled: np.ndarray | None = None
        self._cache: dict[int, np.ndarray | None] = {}

    def fit(self, frame: TelemetryFrame, train_rows: int, demand: tuple[str, ...]) -> DemandForecaster:
        """Fit on rows [0, train_rows) of `frame` (one series); later rows are only ever used as context.
        `demand`: the indicators summed into demand."""
        if len(frame.series) != 1:
            raise HarmonyInputError(f"backtests run one workload at a time; the frame has {len(frame.series)} series")
        self.predictor, self._scaler = fit_scaled(self.spec, frame.slice(0, train_rows), self.horizon,
                                                  self.validation_fraction)
        self.lookback = max(self.lookback, self.predictor.min_context_steps)
        self._scaled = self._scaler.transform(frame.values)
        self._demand_pos = [frame.indicator_position(n) for n in demand]
        self._cache = {}
        return self

    def precompute(self, ticks: np.ndarray) -> None:
        """Forecast from every tick in `ticks` in one batched call (contexts end at each tick, inclusive)."""
        todo = [int(t) for t in ticks if int(t) not in self._cache and t + 1 >= self.lookback]
        for t in ticks:
            if t + 1 < self.lookback:
                self._cache[int(t)] = None  # not enough history: the policy treats it as stale telemetry
        if not todo:
            return
        rows = np.asarray(todo)[None, :] + np.arange(-self.lookback + 1, 1)[:, None]  # [L, B]
        ctx = self._scaled[rows][:, :, 0, :]  # [L, B, I]
        usable = ~np.all(np.isnan(ctx), axis=0).any(axis=1)  # [B] every indicator seen at least once
        batch = [t for t, ok in zip(todo, usable, strict=True) if ok]
        for t, ok in zip(todo, usable, strict=True):
            if not ok:
                self._cache[t] = None
        if batch:
            fc = self.predictor.predict(Context(ctx[:, usable]), self.horizon, self.n_samples, self.seed)
            # [n, H, B]; the one series' scaler broadcasts over the B folded ticks
            demand = demand_of_samples(fc.samples, self._scaler, self._demand_pos)
            for j, t in enumerate(batch):
                self._cache[t] = demand[:, :, j]

    def demand_samples(self, tick: int) -> np.ndarray | None:
        """[n_samples, horizon] demand over ticks tick+1 .. tick+horizon, or None if it cannot be forecast."""
        if tick not in self._cache:
            self.precompute(np.array([tick]))
        return self._cache[tick]


class OnlineForecaster:
    """Forecasts for a live workload: refit on the recent history every `refit_every` calls, forecast
    from the newest `lookback` rows.

    The predictor sees the window min-max scaled on the rows it was fitted on (the scaler is refitted
    with it); samples are scaled back and the demand indicator(s) summed. A checkpointed model (a
    Predictor already fitted) is used as is: pass it as `predictor` and `refit_every=0`.
    """

    def __init__(self, model: str | None, horizon: int, lookback: int, n_samples: int = 200, seed: int = 0,
                 refit_every: int = 20, predictor: Predictor | None = None) -> None:
        if model is None and predictor is None:
            raise ValueError("OnlineForecaster needs a model spec or a fitted predictor")
        self.spec, self.horizon, self.lookback = model, horizon, lookback
        self.n_samples, self.seed, self.refit_every = n_samples, seed, refit_every
        self.predictor = predictor
        self.scaler: MinMaxScaler | None = None
        self.calls_since_fit = 0

    def _fit(self, frame: TelemetryFrame) -> None:
        n = len(frame)
        if n - validation_rows(n, self.horizon) < 2 * self.lookback:
            raise HarmonyInputError(f"{n} rows of history are too few to fit {self.spec} with lookback {self.lookback}")
        self.predictor, self.scaler = fit_scaled(self.spec, frame, self.horizon)
        self.calls_since_fit = 0

    def demand_samples(self, frame: TelemetryFrame, demand: tuple[str, ...], seed: int | None = None) -> np.ndarray:
        """[n_samples, horizon] demand over the steps after the frame's last row."""
        if self.spec is not None and (self.predictor is None or self.calls_since_fit >= self.refit_every):
            self._fit(frame)
        if self.scaler is None:
            self.scaler = MinMaxScaler.fit(frame)
        self.calls_since_fit += 1
        lookback = max(self.lookback, self.predictor.min_context_steps)
        ctx = self.scaler.transform(frame.values[-lookback:])
        fc = self.predictor.predict(Context(ctx), self.horizon, self.n_samples, self.seed if seed is None else seed)
        pos = [frame.indicator_position(name) for name in demand]
        return demand_of_samples(fc.samples, self.scaler, pos)[:, :, 0]
