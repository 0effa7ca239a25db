"""Small builders shared by tests (not fixtures, so tests call them with the parameters they need)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from harmony.telemetry.frame import Indicator, TelemetryFrame


def make_frame(
    steps: int = 600,
    series: int = 2,
    indicators: int = 3,
    interval: str = "10min",
    seed: int = 0,
    period: int = 144,
) -> TelemetryFrame:
    """Daily sine plus AR(1) noise, positive, one level per indicator (1, 2, 3, 1, ...)."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, size=(1, series, indicators))
    base = 10 + 3 * np.sin(2 * np.pi * t / period + phase)
    noise = np.zeros((steps, series, indicators))
    eps = rng.normal(0, 0.5, size=noise.shape)
    for k in range(1, steps):
        noise[k] = 0.7 * noise[k - 1] + eps[k]
    index = pd.date_range("2024-01-01", periods=steps, freq=interval)
    inds = [Indicator(f"ind{i}", level=1 + i % 3, unit="1") for i in range(indicators)]
    return TelemetryFrame(index, base + noise, [f"s{s}" for s in range(series)], inds)


def fisher_columns() -> list[str]:
    from harmony.telemetry.datasets.fisher import INDICATORS

    return ["date", *(ind.name for ind in INDICATORS)]


def write_fisher_csv(path, rows: int = 400, seed: int = 0, columns: list[str] | None = None) -> pd.DataFrame:
    """A small container CSV in the Fisher format (optionally with columns in another order)."""
    rng = np.random.default_rng(seed)
    cols = fisher_columns()
    df = pd.DataFrame(rng.uniform(1, 100, size=(rows, len(cols) - 1)), columns=cols[1:])
    df.insert(0, "date", pd.date_range("2018-07-24", periods=rows, freq="10min").strftime("%Y-%m-%d %H:%M:%S"))
    df = df[columns] if columns else df
    df.to_csv(path, index=False)
    return df
