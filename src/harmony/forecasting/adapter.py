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

import numpy as np

from harmony.errors import HarmonyInputError
from harmony.forecasting.predictors import Context, Predictor, build_predictor
from harmony.forecasting.scaling import MinMaxScaler
from harmony.telemetry.frame import TelemetryFrame

#: Decisions between refits of a baseline (1: every decision; a ridge AR fit over a few hundred rows takes
#: milliseconds, and refitting keeps its residuals as recent as the history window).
REFIT_EVERY = 1
#: Telemetry history each decision reads, in control intervals: the CRD's historySeconds default is this many
#: intervals (12 h at 30 s, 24 h at 1 minute, 10 days at 10 minutes), as a baseline needs rows, not seconds.
#: Chosen on validation spans: on gentd26 (1 minute) 12 h of history beat 6 h (harmony at its default:
#: 67.8 GPU-hours at 0% breached against 71.0 at 1.04%), and on ServeGen (10 minutes) 12 h, 72 rows, left
#: ar:30 so narrow that harmony breached 7.1% of ticks on m-large against 1.2% with 7 days.
DEFAULT_HISTORY_STEPS = 1440
#: Context the forecast starts from, in control intervals (the CRD's lookbackSeconds default).
DEFAULT_LOOKBACK_STEPS = 120
#: The CRD's bounds on historySeconds and lookbackSeconds.
MAX_HISTORY_S = 2592000
MAX_LOOKBACK_S = 604800


def default_history_s(interval_s: float) -> int:
    """historySeconds when none is given: DEFAULT_HISTORY_STEPS intervals, within the CRD's bound."""
    return int(min(DEFAULT_HISTORY_STEPS * interval_s, MAX_HISTORY_S))


def default_lookback_s(interval_s: float) -> int:
    """lookbackSeconds when none is given: DEFAULT_LOOKBACK_STEPS intervals, within the CRD's bound."""
    return int(min(DEFAULT_LOOKBACK_STEPS * interval_s, MAX_LOOKBACK_S))
#: Forecast samples per decision.
DEFAULT_SAMPLES = 200


def validation_rows(n: int, horizon: int, validation_fraction: float = 0.15) -> int:
    """Rows at the end of an n-row history held out as validation: the fraction, at least horizon + 1."""
    return max(int(n * validation_fraction), horizon + 1)


def fit_scaled(spec: str, frame: TelemetryFrame, horizon: int, validation_fraction: float = 0.15) -> Predictor:
    """A predictor fitted on `frame` min-max scaled on its own rows (the scaler kept as `predictor.input_scaler`);
    the last `validation_rows` of them are the validation split its residuals come from."""
    n = len(frame)
    n_val = validation_rows(n, horizon, validation_fraction)
    scaler = MinMaxScaler.fit(frame)
    scaled = scaler.transform_frame(frame)
    predictor = build_predictor(spec).fit(scaled.slice(0, n - n_val), scaled.slice(n - n_val, n))
    predictor.input_scaler = scaler
    return predictor


def demand_of_samples(samples: np.ndarray, scaler: MinMaxScaler, positions: list[int]) -> np.ndarray:
    """Scaled predictive samples [..., indicators] back in data units, demand indicators summed (>= 0)."""
    return np.maximum(scaler.inverse(samples)[..., positions].sum(axis=-1), 0.0)


class DemandForecaster:
    """One workload's forecasts of demand, refitted on the telemetry window on a fixed cadence.

    model: a predictor spec (`ar:30`, `seasonal`, ...), or None with `predictor` a fitted one (a checkpoint).
    horizon: steps ahead. lookback: context length in steps. refit_every: decisions between refits of a
    baseline (0: never after the first fit).
    """

    def __init__(self, model: str | None, horizon: int, lookback: int, n_samples: int = DEFAULT_SAMPLES,
                 refit_every: int = REFIT_EVERY, predictor: Predictor | None = None) -> None:
        if model is None and predictor is None:
            raise ValueError("DemandForecaster needs a model spec or a fitted predictor")
        if predictor is not None and predictor.input_scaler is None:
            raise HarmonyInputError(f"{predictor.name}: a fitted predictor must carry the scaler of its training "
                                    "data (input_scaler); this one has none")
        self.spec, self.horizon, self.lookback = model, horizon, lookback
        self.n_samples, self.refit_every = n_samples, refit_every
        self.predictor = predictor
        self.calls_since_fit = 0

    def _due(self) -> bool:
        if self.spec is None:
            return False
        if self.predictor is None:
            return True
        return self.predictor.refit and self.refit_every > 0 and self.calls_since_fit >= self.refit_every

    def fit(self, window: TelemetryFrame) -> None:
        n = len(window)
        if n - validation_rows(n, self.horizon) < 2 * self.lookback:
            raise HarmonyInputError(
                f"{n} rows of history are too few to fit {self.spec} with a lookback of {self.lookback} steps")
        self.predictor = fit_scaled(self.spec, window, self.horizon)
        self.calls_since_fit = 0

    def demand_samples(self, window: TelemetryFrame, demand: tuple[str, ...], seed: int) -> np.ndarray:
        """[n_samples, horizon] demand over the steps after the window's last row (one series)."""
        if len(window.series) != 1:
            raise HarmonyInputError(f"a forecast serves one workload; the window has {len(window.series)} series")
        if self._due():
            self.fit(window)
        self.calls_since_fit += 1
        predictor = self.predictor
        lookback = max(self.lookback, predictor.min_context_steps)
        if len(window) < lookback:
            raise HarmonyInputError(f"{len(window)} rows are fewer than the lookback of {lookback} steps")
        ctx = predictor.input_scaler.transform(window.values[-lookback:])
        end = window.index[-1:]
        end = (end.tz_convert(None) if end.tz is not None else end).to_numpy(dtype="datetime64[ns]")  # UTC
        context = Context(ctx, end, window.interval, window.indicator_names)
        fc = predictor.predict(context, self.horizon, self.n_samples, seed)
        positions = [window.indicator_position(name) for name in demand]
        return demand_of_samples(fc.samples, predictor.input_scaler, positions)[:, :, 0]
