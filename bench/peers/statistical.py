"""statsforecast's AutoETS and AutoTheta (Nixtla) as harmony Predictors.

Fit: one model per (training series, indicator) on the last FIT_ROWS training rows, gaps carried forward
as a context's are (the cap: AutoTheta's fit grows faster than the rows, 0.13 s at 1,000 and 2.4 s at 3,124
on one Fisher indicator, and a local smoothing model's parameters describe the recent dynamics); the
library selects the model (AutoETS: error, trend and season components by AICc; AutoTheta: the theta
variant by in-sample MSE). `season` defaults to 1 step (no seasonal component): the contexts the
protocols give (72 to 120 steps) hold no whole day at a 1- or 10-minute interval, and `forward` re-filters
the states on the context, which a seasonal component cannot start from in less than two seasons.
Predict: `forward` applies each fitted model to every context window (parameters kept, states filtered on
the window: statsforecast's own cross-validation without refit), returning the mean and the central
intervals at LEVELS for every step of the horizon.
Samples: the two-piece normal through those intervals (`sampling.two_piece_scales`; exact for AutoETS,
whose intervals are normal) along comonotone paths (`sampling.path_ranks`); the point forecast is the
library's mean.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from statsforecast.models import AutoETS, AutoTheta

from harmony.forecasting.forecast import Forecast
from harmony.forecasting.predictors import Context, Predictor
from harmony.telemetry.frame import TelemetryFrame
from peers.sampling import column_series, path_ranks, two_piece_samples, two_piece_scales

#: central interval levels (percent) asked of statsforecast: from the interquartile range to the 98% tails
LEVELS = (50, 80, 90, 95, 98)
FIT_ROWS = 1000


class StatsForecastPeer(Predictor):
    def __init__(self, name: str, make_model: Callable[[], object]) -> None:
        self.name = name
        self._make_model = make_model
        self._models: list[list] | None = None  # [series][indicator]

    def fit(self, train: TelemetryFrame, validation: TelemetryFrame | None = None) -> StatsForecastPeer:
        self.remember(train)
        values = Context(train.values[-FIT_ROWS:], indicators=tuple(train.indicator_names)).filled()
        self._models = [[self._make_model().fit(values[:, s, i]) for i in range(values.shape[2])]
                        for s in range(values.shape[1])]
        return self

    def predict(self, context: Context, horizon: int, n_samples: int = 100, seed: int | None = None) -> Forecast:
        if self._models is None:
            raise RuntimeError(f"{self.name} is not fitted")
        ctx = self._check_context(context, len(self._models[0]))
        n_columns, n_ind = ctx.shape[1:]
        series_of = column_series(n_columns, len(self._models), self.name)
        mean, below, above = (np.empty((horizon, n_columns, n_ind)) for _ in range(3))
        for c in range(n_columns):
            for i in range(n_ind):
                out = self._models[series_of[c]][i].forward(y=ctx[:, c, i], h=horizon, level=list(LEVELS))
                mean[:, c, i] = out["mean"]
                below[:, c, i], above[:, c, i] = two_piece_scales(LEVELS, mean[:, c, i], out)
        ranks = path_ranks(n_samples, (n_columns, n_ind), np.random.default_rng(seed))
        return Forecast(two_piece_samples(mean, below, above, ranks), mean)


def auto_ets(season: int = 1) -> StatsForecastPeer:
    return StatsForecastPeer("ets", lambda: AutoETS(season_length=season))


def auto_theta(season: int = 1) -> StatsForecastPeer:
    return StatsForecastPeer("theta", lambda: AutoTheta(season_length=season))
