"""Small builders shared by tests (not fixtures, so tests call them with the parameters they need)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import pandas as pd

from harmony.telemetry.frame import Indicator, TelemetryFrame

T = TypeVar("T")

#: Arguments of a `harmony:` model spec for contract tests: a network and a training run a few hundred times
#: smaller than the defaults (d_model 32, 4 heads, 4 flow layers, 40 epochs of batch 128), about a second
#: on a CPU, yet a real train / calibrate / predict path (horizon 2, so longer horizons run recursively).
TINY_HARMONY = "lookback=24+horizon=2+d_model=8+heads=2+flow_layers=2+quantiles=8+epochs=2+batch=128"


async def poll_in_thread(check: Callable[[], T], timeout_s: float, done: Callable[[T], bool] = bool,
                         every_s: float = 0.2) -> T:
    """Call the blocking `check()` in a worker thread (the test's event loop keeps serving, e.g. the kmock
    emulator) until `done(value)`, at most `timeout_s` seconds; returns that value, or the last one at the
    deadline, for the caller's assertion to report. A wait on a condition, never on a fixed time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = await asyncio.to_thread(check)
        if done(value) or loop.time() > deadline:
            return value
        await asyncio.sleep(every_s)


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
