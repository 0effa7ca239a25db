"""Forecast: a predictive distribution of future telemetry, carried as samples.

Any model or baseline returns one; the decision engine and the metrics see only this interface
(mean, quantile, prob_exceeds), so every predictor plugs in (GluonTS' SampleForecast has the same shape
of interface).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Forecast:
    """Predictive samples of `horizon` future steps.

    samples: [n_samples, horizon, series, indicators], in the units of the data the model saw.
    point: optional [horizon, series, indicators] point forecast of the model (e.g. the conditional mean
        of an AR model); `point_forecast` falls back to the sample mean.
    series, indicators: names along those axes (optional; evaluation folds many windows into "series").
    """

    samples: np.ndarray
    point: np.ndarray | None = None
    series: Sequence[str] | None = None
    indicators: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if self.samples.ndim != 4:
            raise ValueError(f"samples must be [n_samples, horizon, series, indicators], got {self.samples.shape}")
        if self.point is not None and self.point.shape != self.samples.shape[1:]:
            raise ValueError(f"point shape {self.point.shape} != samples shape {self.samples.shape[1:]}")

    @property
    def n_samples(self) -> int:
        return self.samples.shape[0]

    @property
    def horizon(self) -> int:
        return self.samples.shape[1]

    @property
    def mean(self) -> np.ndarray:
        """[horizon, series, indicators] sample mean."""
        return self.samples.mean(axis=0)

    @property
    def point_forecast(self) -> np.ndarray:
        """The model's point forecast if it has one, else the sample mean."""
        return self.mean if self.point is None else self.point

    def quantile(self, q: float | Sequence[float]) -> np.ndarray:
        """[horizon, series, indicators] for a scalar q, [len(q), horizon, ...] for a sequence (linear
        interpolation between order statistics, numpy's default)."""
        qs = np.asarray(q, dtype=np.float64)
        if np.any((qs < 0) | (qs > 1)):
            raise ValueError(f"quantile levels must lie in [0, 1], got {q}")
        return np.quantile(self.samples, qs, axis=0)

    def interval(self, coverage: float) -> tuple[np.ndarray, np.ndarray]:
        """Central prediction interval holding `coverage` of the mass: (lower, upper)."""
        alpha = (1.0 - coverage) / 2.0
        lo, hi = self.quantile([alpha, 1.0 - alpha])
        return lo, hi

    def prob_exceeds(self, threshold: float | np.ndarray) -> np.ndarray:
        """P(value > threshold) per [horizon, series, indicators]; threshold broadcasts against that shape."""
        return (self.samples > np.asarray(threshold)).mean(axis=0)

    def indicator(self, name_or_pos: str | int) -> np.ndarray:
        """[n_samples, horizon, series] samples of one indicator."""
        pos = name_or_pos
        if isinstance(name_or_pos, str):
            if self.indicators is None or name_or_pos not in self.indicators:
                raise KeyError(f"forecast has no indicator {name_or_pos!r}")
            pos = list(self.indicators).index(name_or_pos)
        return self.samples[..., pos]

    def map(self, fn) -> Forecast:
        """Apply an elementwise transform (e.g. an inverse scaler) to samples and point."""
        return Forecast(
            fn(self.samples),
            None if self.point is None else fn(self.point),
            self.series,
            self.indicators,
        )
