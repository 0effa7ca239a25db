"""Training windows cut from TelemetryFrame values, and the Lightning DataModule that serves them.

A window is (context x [lookback, indicators], target y [horizon, indicators], calendar features of the
first target step). Windows are cut per series and pooled. Missing context samples are carried forward
(as `Context.filled` does at prediction time); a window whose target, or whose context after filling, still
holds NaN is dropped rather than invented. Validation windows take their context from the end of the
training rows, so every validation row is a target (the AR baseline's residuals are formed the same way).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch.utils.data import DataLoader, TensorDataset

from harmony.errors import HarmonyInputError
from harmony.forecasting.models.tokens import calendar_features

#: share of the training windows held out (the latest ones) when no validation rows are given
FALLBACK_VALIDATION_SHARE = 0.1


@dataclass(frozen=True)
class WindowSet:
    """x [n, lookback, indicators], y [n, horizon, indicators], calendar [n, 4]; float32."""

    x: np.ndarray
    y: np.ndarray
    calendar: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    def take(self, rows: np.ndarray | slice) -> WindowSet:
        return WindowSet(self.x[rows], self.y[rows], self.calendar[rows])

    def torch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x, calendar, y) as tensors, the order the network's methods take them in."""
        return torch.from_numpy(self.x), torch.from_numpy(self.calendar), torch.from_numpy(self.y)

    def tensors(self) -> TensorDataset:
        return TensorDataset(torch.from_numpy(self.x), torch.from_numpy(self.calendar), torch.from_numpy(self.y))


def frame_windows(values: np.ndarray, index: pd.DatetimeIndex, lookback: int, horizon: int,
                  first_target: int = 0) -> WindowSet:
    """Every complete window of values [time, series, indicators] whose first target row is >= first_target."""
    n_time, n_series, n_ind = values.shape
    filled = pd.DataFrame(values.reshape(n_time, -1)).ffill().to_numpy().reshape(values.shape)
    start = max(lookback, first_target)
    origins = np.arange(start, n_time - horizon + 1)
    if origins.size == 0:
        return WindowSet(np.zeros((0, lookback, n_ind), np.float32), np.zeros((0, horizon, n_ind), np.float32),
                         np.zeros((0, 4), np.float32))
    ctx = sliding_window_view(filled, lookback, axis=0)[origins - lookback]  # [O, S, I, L]
    tgt = sliding_window_view(values, horizon, axis=0)[origins]  # [O, S, I, H]
    x = np.moveaxis(ctx, -1, 2).reshape(-1, lookback, n_ind)  # [O * S, L, I]
    y = np.moveaxis(tgt, -1, 2).reshape(-1, horizon, n_ind)
    cal = np.repeat(calendar_features(index.to_numpy()[origins], len(origins)), n_series, axis=0)
    keep = np.isfinite(x).all(axis=(1, 2)) & np.isfinite(y).all(axis=(1, 2))
    return WindowSet(x[keep].astype(np.float32), y[keep].astype(np.float32), cal[keep])


def training_windows(train_values: np.ndarray, train_index: pd.DatetimeIndex,
                     val_values: np.ndarray | None, val_index: pd.DatetimeIndex | None,
                     lookback: int, horizon: int) -> tuple[WindowSet, WindowSet]:
    """(train, validation) windows; without validation rows the latest training windows validate."""
    train = frame_windows(train_values, train_index, lookback, horizon)
    val = None
    if val_values is not None and len(val_values):
        tail = min(lookback, len(train_values))
        values = np.concatenate([train_values[-tail:], val_values], axis=0)
        index = train_index[-tail:].append(val_index)
        val = frame_windows(values, index, lookback, horizon, first_target=tail)
    if val is None or len(val) == 0:
        cut = int(len(train) * (1 - FALLBACK_VALIDATION_SHARE))
        train, val = train.take(slice(0, cut)), train.take(slice(cut, None))
    if len(train) == 0 or len(val) == 0:
        raise HarmonyInputError(
            f"too few complete rows for lookback {lookback} + horizon {horizon}: "
            f"{len(train)} training and {len(val)} validation windows"
        )
    return train, val


class WindowDataModule(pl.LightningDataModule):
    """Shuffled training batches (a seeded generator, so an epoch's order repeats) and validation batches."""

    def __init__(self, train: WindowSet, validation: WindowSet, batch_size: int = 64, seed: int = 0) -> None:
        super().__init__()
        self.train, self.validation = train, validation
        self.batch_size, self.seed = batch_size, seed

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.train.tensors(), batch_size=self.batch_size, shuffle=True, generator=generator)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.validation.tensors(), batch_size=1024, shuffle=False)
