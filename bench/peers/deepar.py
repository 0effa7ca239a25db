"""DeepAR (Salinas et al., "DeepAR: probabilistic forecasting with autoregressive recurrent networks", 2020)
as a harmony Predictor, from Nixtla's neuralforecast (built on PyTorch Lightning, as harmony's trainer is).

GluonTS, the authors' own library, conflicts with the project's pins (`peers/__init__.py`); neuralforecast's
DeepAR is the same model: an LSTM over the context that, fed its own samples back, emits a Student-t per
step, trained by maximum likelihood on windows drawn from every series, each window scaled by its own
mean and standard deviation (`scaler_type="standard"`).

Fit: one global model over every (training series, indicator) pair, each a univariate series of the
library's long frame (gaps carried forward, as a context's are), `context` steps in, `horizon` steps out;
the validation rows, appended after the training rows, stop training early on their loss (checked every
VAL_CHECK_STEPS, patience PATIENCE checks), at most `steps` optimiser steps. `horizon` is fixed at fit
time, as the library's model is built for it; a forecast asks for at most that many.
Predict: each context column and indicator is one series of the library's `predict(df=...)`: its last
`context` rows in, the library's quantiles at QUANTILES out (it takes them from its own sampled
trajectories). Samples: the quantile function through them (`sampling.quantile_samples`) along comonotone
paths (`sampling.path_ranks`), as the other peers' are; the point forecast is the library's mean.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from harmony.errors import HarmonyInputError
from harmony.forecasting.forecast import Forecast
from harmony.forecasting.predictors import Context, Predictor
from harmony.telemetry.frame import TelemetryFrame
from peers.sampling import path_ranks, quantile_samples

QUANTILES = np.array([0.02, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98])
#: the library's defaults, except a smaller network and batch: the bench shares 2 CPU cores
NETWORK = {"lstm_n_layers": 2, "lstm_hidden_size": 64, "batch_size": 32, "windows_batch_size": 256,
           "trajectory_samples": 100, "learning_rate": 1e-3}
VAL_CHECK_STEPS = 50
PATIENCE = 4
#: Lightning's per-fit chatter (seed, accelerator, summaries) is not the bench's output
QUIET = ("lightning", "lightning.pytorch", "lightning_fabric", "pytorch_lightning", "neuralforecast")


def _quiet() -> None:
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"(lightning|pytorch_lightning|lightning_fabric|neuralforecast).*")


def long_frame(values: np.ndarray) -> pd.DataFrame:
    """neuralforecast's long frame (unique_id, ds, y) of values [time, columns, indicators]: one series per
    column and indicator, id column * indicators + indicator, ds the step index."""
    steps, n_columns, n_ind = values.shape
    ids = np.arange(n_columns * n_ind)
    return pd.DataFrame({"unique_id": np.repeat(ids, steps), "ds": np.tile(np.arange(steps), len(ids)),
                         "y": values.reshape(steps, -1).T.reshape(-1)})


def output_levels(columns: list[str], alias: str) -> list[tuple[float, str]]:
    """(quantile level, column) of the library's output: `alias-median`, `alias-lo-L` and `alias-hi-L` (L a
    central interval in percent), in increasing level."""
    out = []
    for column in columns:
        rest = column[len(alias) + 1:] if column.startswith(alias + "-") else None
        if rest == "median":
            out.append((0.5, column))
        elif rest and rest[:3] in ("lo-", "hi-"):
            half = float(rest[3:]) / 200
            out.append((round(0.5 - half if rest[:2] == "lo" else 0.5 + half, 6), column))
    return sorted(out)


class DeepARPeer(Predictor):
    def __init__(self, context: int = 72, horizon: int = 1, steps: int = 500, seed: int = 0) -> None:
        if context < 2 or horizon < 1 or steps < 1:
            raise HarmonyInputError(f"deepar: context must be >= 2, horizon and steps >= 1, got {context}, "
                                    f"{horizon}, {steps}")
        self.context, self.horizon, self.steps, self.seed = context, horizon, steps, seed
        self.name = "deepar"
        self._nf = None
        self._n_ind: int | None = None

    @property
    def min_context_steps(self) -> int:
        return self.context

    def fit(self, train: TelemetryFrame, validation: TelemetryFrame | None = None) -> DeepARPeer:
        from neuralforecast import NeuralForecast
        from neuralforecast.losses.pytorch import DistributionLoss
        from neuralforecast.models import DeepAR

        _quiet()
        self.remember(train)
        names = tuple(train.indicator_names)
        values = train.values
        val_size = 0
        if validation is not None and len(validation) >= self.horizon:
            values = np.concatenate([values, validation.values], axis=0)
            val_size = len(validation)
        if len(values) - val_size < self.context + self.horizon:
            raise HarmonyInputError(f"deepar needs more than context + horizon = {self.context + self.horizon} "
                                    "training rows")
        filled = Context(values, indicators=names).filled()
        early = {"early_stop_patience_steps": PATIENCE, "val_check_steps": VAL_CHECK_STEPS} if val_size else {}
        model = DeepAR(h=self.horizon, input_size=self.context, max_steps=self.steps, random_seed=self.seed,
                       loss=DistributionLoss("StudentT", quantiles=list(QUANTILES)), scaler_type="standard",
                       accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                       enable_checkpointing=False, enable_model_summary=False, **NETWORK, **early)
        self._nf = NeuralForecast(models=[model], freq=1)
        self._nf.fit(long_frame(filled), val_size=val_size)
        self._n_ind = values.shape[2]
        return self

    def predict(self, context: Context, horizon: int, n_samples: int = 100, seed: int | None = None) -> Forecast:
        if self._nf is None:
            raise RuntimeError(f"{self.name} is not fitted")
        if horizon > self.horizon:
            raise HarmonyInputError(f"deepar was fitted for {self.horizon} steps (deepar:horizon=N); asked for "
                                    f"{horizon}")
        ctx = self._check_context(context, self._n_ind)
        window = Context(ctx[-self.context:], indicators=context.indicators).filled()
        n_columns, n_ind = ctx.shape[1:]
        _quiet()
        out = self._nf.predict(df=long_frame(window)).sort_values(["unique_id", "ds"])
        levels = output_levels(list(out.columns), "DeepAR")
        if len(levels) != len(QUANTILES) or len(out) != n_columns * n_ind * self.horizon:
            raise RuntimeError(f"deepar: the library returned {len(out)} rows and levels {levels}")

        def grid(column: str) -> np.ndarray:  # [horizon, columns, indicators] of one output column
            return out[column].to_numpy(dtype=np.float64).reshape(n_columns, n_ind, self.horizon)\
                .transpose(2, 0, 1)[:horizon]

        quantiles = np.stack([grid(column) for _, column in levels])
        ranks = path_ranks(n_samples, (n_columns, n_ind), np.random.default_rng(seed))
        return Forecast(quantile_samples(np.array([q for q, _ in levels]), quantiles, ranks), grid("DeepAR"))
