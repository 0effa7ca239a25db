"""A tiny trained HARMONY checkpoint for serving tests (seconds to train: d_model 8, one epoch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harmony.forecasting.adapter import fit_scaled
from harmony.telemetry.frame import Indicator, TelemetryFrame

TINY_SPEC = "harmony:lookback=16+horizon=2+epochs=1+patience=1+d_model=8+heads=2+calibrate=0"


def tiny_frame(names: tuple[str, ...], levels: tuple[int, ...], interval_s: int = 30, rows: int = 240,
               seed: int = 0, scale: float = 10.0) -> TelemetryFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    values = np.stack([scale * (2 + np.sin(t / 12 + k)) + rng.normal(0, 0.1, rows) for k in range(len(names))], -1)
    index = pd.date_range("2026-01-05", periods=rows, freq=f"{interval_s}s")
    return TelemetryFrame(index, values[:, None, :], ["workload"],
                          [Indicator(n, lv) for n, lv in zip(names, levels, strict=True)], interval=f"{interval_s}s")


def tiny_checkpoint(path: Path, names: tuple[str, ...] = ("requests_per_second", "gpu_utilisation"),
                    levels: tuple[int, ...] = (1, 2), interval_s: int = 30) -> Path:
    """Train and save a one-series checkpoint whose input scaler maps the workload's data units."""
    predictor = fit_scaled(TINY_SPEC, tiny_frame(names, levels, interval_s), horizon=2)
    return predictor.save(path)
