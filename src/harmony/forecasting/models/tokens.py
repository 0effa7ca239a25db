"""Tokens of the HARMONY encoder: per-window normalisation, one token per indicator, calendar tokens.

Per-window normalisation follows RevIN (Kim et al., "Reversible Instance Normalization for Accurate
Time-Series Forecasting against Distribution Shift", ICLR 2022): each context window is centred and scaled
per indicator by its own mean and standard deviation, the model works in that space, and the inverse is
applied to every predictive *sample* (`denormalise`), so the whole distribution returns to the input's
space, not only a point. The scale has a floor (`min_scale`) so that a flat window (a memory limit, an idle
disk) does not turn the next small change into hundreds of standard deviations.

Tokens (HARMONY, "Forecaster" in DESIGN.md): an indicator's whole normalised lookback window, plus (option)
evenly spaced quantiles of that window and its mean and log-scale (the level information normalisation
removes), is projected to `d_model`, and a
learned indicator embedding and level embedding are added. Calendar tokens carry time of day and day of week
of the first forecast step (sin/cos pairs), one token per cycle.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

#: calendar features per forecast origin: (sin, cos) of time of day, (sin, cos) of day of week
N_CALENDAR_FEATURES = 4
#: calendar tokens (one per cycle); each reads one (sin, cos) pair
N_CALENDAR_TOKENS = 2
SECONDS_PER_DAY = 86_400.0
SECONDS_PER_WEEK = 7 * SECONDS_PER_DAY


def calendar_features(first_step_time: np.ndarray | None, n: int) -> np.ndarray:
    """[n, 4] float32 calendar features of the first forecast step's timestamp (datetime64), zeros if None.

    The epoch (1970-01-01) was a Thursday; the phase offset is irrelevant to a learned projection."""
    if first_step_time is None:
        return np.zeros((n, N_CALENDAR_FEATURES), dtype=np.float32)
    seconds = pd.DatetimeIndex(np.asarray(first_step_time).reshape(-1)).as_unit("ns").asi8 / 1e9
    day = 2 * np.pi * (seconds % SECONDS_PER_DAY) / SECONDS_PER_DAY
    week = 2 * np.pi * (seconds % SECONDS_PER_WEEK) / SECONDS_PER_WEEK
    return np.stack([np.sin(day), np.cos(day), np.sin(week), np.cos(week)], axis=-1).astype(np.float32)


class WindowNorm(nn.Module):
    """RevIN-style normalisation of windows [batch, lookback, indicators] by their own mean and std."""

    def __init__(self, min_scale: float = 0.02) -> None:
        super().__init__()
        self.min_scale = min_scale

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(normalised x, centre [batch, 1, indicators], scale [batch, 1, indicators])."""
        centre = x.mean(dim=1, keepdim=True)
        scale = x.std(dim=1, keepdim=True, unbiased=False).clamp_min(self.min_scale)
        return (x - centre) / scale, centre, scale

    @staticmethod
    def normalise(y: torch.Tensor, centre: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return (y - centre) / scale

    @staticmethod
    def denormalise(y: torch.Tensor, centre: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return y * scale + centre


class IndicatorTokens(nn.Module):
    """One token per indicator: Linear(normalised window + its `quantiles` empirical quantiles + [mean,
    log-scale]) + indicator and level embeddings.

    The quantiles are the sorted window at evenly spaced ranks: an order-free summary of the window's
    distribution (the share of idle samples of an on/off disk or network indicator, say), which a linear map
    of the time-ordered window cannot form, and which the flow needs to shape a bimodal predictive."""

    def __init__(self, lookback: int, levels: tuple[int, ...], d_model: int, dropout: float = 0.0,
                 quantiles: int = 0) -> None:
        super().__init__()
        ranks = torch.linspace(0, lookback - 1, quantiles).round().long() if quantiles else torch.zeros(0).long()
        self.register_buffer("quantile_ranks", ranks, persistent=False)
        self.project = nn.Linear(lookback + quantiles + 2, d_model)
        self.indicator_embedding = nn.Parameter(torch.randn(len(levels), d_model) * 0.02)
        distinct = sorted(set(levels))
        self.register_buffer("level_ids", torch.tensor([distinct.index(lv) for lv in levels]), persistent=False)
        self.level_embedding = nn.Embedding(len(distinct), d_model)
        nn.init.normal_(self.level_embedding.weight, std=0.02)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x_norm: torch.Tensor, centre: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """[batch, lookback, indicators] -> [batch, indicators, d_model]."""
        stats = torch.cat([centre, scale.log()], dim=1)  # [B, 2, I]
        parts = [x_norm, stats]
        if len(self.quantile_ranks):
            parts.insert(1, x_norm.sort(dim=1).values[:, self.quantile_ranks])  # [B, Q, I]
        feats = torch.cat(parts, dim=1).transpose(1, 2)  # [B, I, L + Q + 2]
        tokens = self.project(feats) + self.indicator_embedding + self.level_embedding(self.level_ids)
        return self.dropout(tokens)


class CalendarTokens(nn.Module):
    """N_CALENDAR_TOKENS tokens from [batch, 4] calendar features, one (sin, cos) pair each."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.project = nn.ModuleList(nn.Linear(2, d_model) for _ in range(N_CALENDAR_TOKENS))

    def forward(self, calendar: torch.Tensor) -> torch.Tensor:
        """[batch, 4] -> [batch, N_CALENDAR_TOKENS, d_model]."""
        pairs = calendar.view(calendar.shape[0], N_CALENDAR_TOKENS, 2)
        return torch.stack([proj(pairs[:, k]) for k, proj in enumerate(self.project)], dim=1)
