"""GluonTS DeepAR (Salinas et al., "DeepAR: probabilistic forecasting with autoregressive recurrent networks",
2020; the authors' library, its PyTorch model) as a harmony Predictor.

DeepAR is an LSTM over the context that emits a Student-t per step and, at prediction, feeds its own samples
back: its samples are joint paths of its own, not the comonotone paths the other peers are given. Inputs:
each window scaled by its mean absolute value (the paper's scaling), the values 1 to `lags` steps back
and no calendar features: a protocol's context carries no timestamps, and the library's default
lags for minute data (up to a week back) reach far beyond the 72- to 120-step contexts the protocols give,
where the library would pad them with zeros. So the LSTM unrolls over `context - lags` steps and the first
of them reads `lags` steps further back, all inside the context. The frequency handed to the library only
dates the series (lags and calendar features are set here, not derived from it).

Fit: one global model over every (training series, indicator) pair, each a univariate series (gaps carried
forward, as a context's are); `horizon` steps out, fixed at fit time. The validation rows, each series'
last `context` training rows before them as their context, give the library's validation loss: training
stops after `patience` epochs without a better one, at most `epochs` epochs of the library's 50 batches of
32 windows, and the best epoch's weights are kept (the library's own checkpoint, in a temporary directory).
100 epochs (the library's default) and patience 20 were chosen on the peers bench's validation rows
(`forecast_peers.py --validation`'s split; Fisher containers 1-3, ServeGen m-mid, alibaba-lora) over 30
and 5: CRPS 1.173x, 0.929x and 1.019x AR's against 1.228x, 0.980x and 1.043x; lags 1-30 instead of 1-7
scored 1.160x, 0.953x and 1.086x.
Predict: each context column and indicator is one series, its last `context` rows in; `n_samples` paths
out, drawn after seeding torch with `seed`, so a seed repeats a forecast exactly. The point forecast is the
sample mean.
"""

from __future__ import annotations

import logging
import tempfile
import warnings

import numpy as np
import pandas as pd

from harmony.errors import HarmonyInputError
from harmony.forecasting.forecast import Forecast
from harmony.forecasting.predictors import Context, Predictor
from harmony.forecasting.predictors.base import history
from harmony.telemetry.frame import TelemetryFrame

#: the library's defaults otherwise (2 layers of 40 units, dropout 0.1, learning rate 1e-3, Student-t)
PATIENCE = 20
#: dates the series only (see the module's text)
FREQ = "min"
START = pd.Period("2000-01-01 00:00", freq=FREQ)
#: Lightning's per-fit chatter (accelerator, checkpoints, tips) is not the bench's output
QUIET = ("lightning", "lightning.pytorch", "lightning_fabric", "pytorch_lightning", "gluonts")


def _quiet() -> None:
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"(lightning|pytorch_lightning|lightning_fabric|gluonts).*")


def series_entries(values: np.ndarray) -> list[dict]:
    """The library's dataset entries of values [time, columns, indicators]: one univariate series per column
    and indicator, column-major (entry c * indicators + i is column c, indicator i)."""
    steps, n_columns, n_ind = values.shape
    flat = values.reshape(steps, n_columns * n_ind).T
    return [{"start": START, "target": np.array(row, dtype=np.float32)} for row in flat]


class GluonDeepAR(Predictor):
    def __init__(self, context: int = 72, lags: int = 7, horizon: int = 1, epochs: int = 100, patience: int = PATIENCE,
                 seed: int = 0) -> None:
        if lags < 1 or context <= lags or horizon < 1 or epochs < 1 or patience < 1:
            raise HarmonyInputError(f"deepar: context must exceed lags >= 1, horizon, epochs and patience be >= 1; "
                                    f"got context {context}, lags {lags}, horizon {horizon}, epochs {epochs}, "
                                    f"patience {patience}")
        self.context, self.lags, self.horizon, self.epochs, self.seed = context, lags, horizon, epochs, seed
        self.patience = patience
        self.name = "deepar"
        self._predictor = None

    @property
    def min_context_steps(self) -> int:
        return self.context

    def fit(self, train: TelemetryFrame, validation: TelemetryFrame | None = None) -> GluonDeepAR:
        with warnings.catch_warnings():  # gluonts warns on import that orjson is missing
            warnings.simplefilter("ignore")
            import lightning.pytorch as pl
            from gluonts.dataset.common import ListDataset
            from gluonts.torch.model.deepar import DeepAREstimator

        _quiet()  # after the imports: lightning sets its loggers' levels when imported
        self.remember(train)
        names = self.schema.indicators
        if len(train) < self.context + self.horizon:
            raise HarmonyInputError(f"deepar needs at least context + horizon = {self.context + self.horizon} "
                                    "training rows")
        train_values = Context(train.values, indicators=names).filled()
        val_data = None
        joined, val_start = history(train, validation, keep_train=self.context)
        if val_start and len(joined) - val_start >= self.horizon:  # validation rows after their context
            val_data = ListDataset(series_entries(Context(joined, indicators=names).filled()), freq=FREQ)
        pl.seed_everything(self.seed, verbose=False)
        with tempfile.TemporaryDirectory(prefix="deepar-") as root:
            callbacks = [pl.callbacks.EarlyStopping(monitor="val_loss", patience=self.patience)] if val_data else []
            estimator = DeepAREstimator(
                freq=FREQ, prediction_length=self.horizon, context_length=self.context - self.lags,
                lags_seq=list(range(1, self.lags + 1)), time_features=[],
                trainer_kwargs={"max_epochs": self.epochs, "accelerator": "cpu", "devices": 1, "logger": False,
                                "enable_progress_bar": False, "enable_model_summary": False,
                                "default_root_dir": root, "callbacks": callbacks})
            self._predictor = estimator.train(ListDataset(series_entries(train_values), freq=FREQ),
                                              validation_data=val_data)
        return self

    def predict(self, context: Context, horizon: int, n_samples: int = 100, seed: int | None = None) -> Forecast:
        import torch
        from gluonts.dataset.common import ListDataset

        if self._predictor is None:
            raise RuntimeError(f"{self.name} is not fitted")
        if horizon > self.horizon:
            raise HarmonyInputError(f"deepar was fitted for {self.horizon} steps (deepar:horizon=N); asked for "
                                    f"{horizon}")
        ctx = self._check_context(context, len(self.schema.indicators))
        window = Context(ctx[-self.context:], indicators=context.indicators).filled()
        n_columns, n_ind = ctx.shape[1:]
        torch.manual_seed(self.seed if seed is None else seed)
        forecasts = self._predictor.predict(ListDataset(series_entries(window), freq=FREQ), num_samples=n_samples)
        paths = np.stack([f.samples[:n_samples, :horizon] for f in forecasts])  # [columns * indicators, n, h]
        samples = paths.reshape(n_columns, n_ind, n_samples, horizon).transpose(2, 3, 0, 1).astype(np.float64)
        return Forecast(samples, samples.mean(axis=0))
