"""Scalers: min-max fitted on the training split (the HARMONY protocol) and a per-window robust scaler.

Both work on arrays whose last two axes are [series, indicators] and invert forecasts sample by sample,
so a predictive distribution (not just a point) returns to the data's units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harmony.telemetry.frame import TelemetryFrame


@dataclass(frozen=True)
class MinMaxScaler:
    """x -> (x - min) / (max - min) per series and indicator, min and max from the training rows.

    A constant column (max == min) gets a range of 1, as scikit-learn's MinMaxScaler does, so it maps
    to 0 instead of dividing by zero. Test data may fall outside [0, 1]; that is kept, not clipped.
    """

    data_min: np.ndarray  # [series, indicators]
    data_range: np.ndarray  # [series, indicators]

    @classmethod
    def fit(cls, train: TelemetryFrame | np.ndarray) -> MinMaxScaler:
        values = train.values if isinstance(train, TelemetryFrame) else np.asarray(train, dtype=np.float64)
        lo = np.nanmin(values, axis=0)
        hi = np.nanmax(values, axis=0)
        rng = hi - lo
        return cls(lo, np.where(rng > 0, rng, 1.0))

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (np.asarray(values, dtype=np.float64) - self.data_min) / self.data_range

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float64) * self.data_range + self.data_min

    def select(self, positions: list[int] | tuple[int, ...]) -> MinMaxScaler:
        """The scaler of some indicators only (a forecast of a model's targets), in the given order."""
        positions = list(positions)
        return MinMaxScaler(self.data_min[..., positions], self.data_range[..., positions])

    def transform_frame(self, frame: TelemetryFrame) -> TelemetryFrame:
        return frame.with_values(self.transform(frame.values))

    def to_dict(self) -> dict[str, list]:
        return {"data_min": self.data_min.tolist(), "data_range": self.data_range.tolist()}

    @classmethod
    def from_dict(cls, state: dict[str, list]) -> MinMaxScaler:
        return cls(np.asarray(state["data_min"], dtype=np.float64), np.asarray(state["data_range"], dtype=np.float64))


@dataclass(frozen=True)
class RobustWindowScaler:
    """Per-window robust scaling: x -> (x - median) / IQR, statistics of each context window alone.

    Suits series whose level drifts (regime shifts) so that a scaler fitted on old data misplaces new
    windows. `fit_window` returns the statistics of windows [..., lookback, series, indicators] along the
    lookback axis; an IQR of zero (a flat window) becomes 1.
    """

    axis: int = -3

    def fit_window(self, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = np.asarray(window, dtype=np.float64)
        q25, med, q75 = np.nanquantile(w, [0.25, 0.5, 0.75], axis=self.axis, keepdims=True)
        iqr = q75 - q25
        return med, np.where(iqr > 0, iqr, 1.0)

    @staticmethod
    def transform(values: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
        return (np.asarray(values, dtype=np.float64) - center) / scale

    @staticmethod
    def inverse(values: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float64) * scale + center
