"""Evaluation protocols: the HARMONY paper's per-container protocol and a rolling-origin protocol.

HARMONY protocol (datasets/README.md), per series:
  - chronological split: first int(0.7 n) rows train, last int(0.2 n) rows test, the rest validation;
  - a min-max scaler fitted on the training rows, applied to every indicator;
  - one-step-ahead forecasts from a `lookback` window for each test row; the published code's test
    loader has batch size 32 with drop_last=True, so only the first floor(n_test / 32) * 32 test rows
    are scored, and so do we;
  - MSE of the point forecast and CRPS of `n_samples` samples, in the scaled space, averaged over all
    indicators and scored rows.
Rolling-origin protocol: the same split and scaler over the whole frame (all series at once); forecast
origins every `stride` steps through the test part, `horizon` steps each, scored per series.

Models may need a longer context than `lookback` (seasonal naive needs a whole season); they get the
rows before the window too, never rows at or after the forecast origin.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from harmony.errors import HarmonyInputError
from harmony.forecasting.forecast import Forecast
from harmony.forecasting.metrics import score
from harmony.forecasting.predictors import Context, build_predictor
from harmony.forecasting.scaling import MinMaxScaler
from harmony.telemetry.frame import TelemetryFrame

#: published HARMONY code: DataLoader(test, batch_size=32, drop_last=True)
HARMONY_TEST_BATCH = 32

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Windows:
    """Forecast origins of one scaled frame: contexts folded into the series axis, targets kept apart."""

    contexts: np.ndarray  # [context_len, origins * series, indicators]
    targets: np.ndarray  # [horizon, origins, series, indicators]
    end_time: np.ndarray  # [origins * series]


def make_windows(frame: TelemetryFrame, values: np.ndarray, origins: np.ndarray, context_len: int,
                 horizon: int) -> Windows:
    """Windows ending just before each origin row (the first forecast row)."""
    if origins.size == 0:
        raise HarmonyInputError(f"no forecast origins in {frame.source or 'the frame'} (test split too short?)")
    if origins.min() < context_len:
        raise HarmonyInputError(
            f"context of {context_len} steps does not fit before row {int(origins.min())} "
            f"of {frame.source or 'the frame'}; use a shorter --lookback"
        )
    offsets = np.arange(-context_len, 0)
    ctx = values[origins[None, :] + offsets[:, None]]  # [L, O, S, I]
    tgt = values[origins[None, :] + np.arange(horizon)[:, None]]  # [H, O, S, I]
    n_series = values.shape[1]
    end = np.repeat(frame.index.to_numpy()[origins - 1], n_series)
    return Windows(ctx.reshape(context_len, -1, values.shape[2]), tgt, end)


def _score_models(
    frame: TelemetryFrame,
    model_specs: Sequence[str],
    train: TelemetryFrame,
    validation: TelemetryFrame,
    values: np.ndarray,
    origins: np.ndarray,
    lookback: int,
    horizon: int,
    n_samples: int,
    seed: int,
    progress: Progress | None,
) -> list[dict]:
    rows = []
    for spec in model_specs:
        if progress:
            progress(f"{spec} on {', '.join(frame.series) if len(frame.series) < 4 else len(frame.series)}")
        started = time.perf_counter()
        model = build_predictor(spec).fit(train, validation)
        context_len = max(lookback, model.min_context_steps)
        win = make_windows(frame, values, origins, context_len, horizon)
        context = Context(win.contexts, win.end_time, frame.interval, frame.indicator_names)
        forecast = model.predict(context, horizon, n_samples, seed)
        n_origins, n_series = win.targets.shape[1:3]
        samples = forecast.samples.reshape(n_samples, horizon, n_origins, n_series, -1)
        point = forecast.point_forecast.reshape(horizon, n_origins, n_series, -1)
        seconds = time.perf_counter() - started
        # a model trained for some targets (the demand) forecasts those alone: it is scored on them
        scored = [frame.indicator_position(n) for n in (forecast.indicators or frame.indicator_names)]
        for s, name in enumerate(frame.series):
            per_series = Forecast(samples[:, :, :, s], point[:, :, s])
            metrics = score(win.targets[:, :, s][..., scored], per_series)
            rows.append({"series": name, "model": spec, "lookback": lookback, "horizon": horizon, **metrics,
                         "seconds": seconds / n_series})
    return rows


def harmony_protocol(
    frame: TelemetryFrame,
    model_specs: Sequence[str],
    lookback: int = 72,
    n_samples: int = 100,
    seed: int = 0,
    progress: Progress | None = None,
) -> list[dict]:
    """Per-series rows of series, model, lookback, horizon (=1), mse, crps, mae, pinball, coverage90, ..."""
    _check_common(lookback, 1, n_samples)
    rows = []
    for name in frame.series:
        sub = frame.series_frame(name)
        split = harmony_split(sub)
        rows += _score_models(sub, model_specs, split.train, split.validation, split.values, split.origins,
                              lookback, 1, n_samples, seed, progress)
    return rows


@dataclass(frozen=True)
class HarmonySplit:
    """One series under the HARMONY protocol: its training and validation rows and all its values, min-max
    scaled on the training rows, and the scored test rows (origins of one-step forecasts)."""

    train: TelemetryFrame
    validation: TelemetryFrame
    values: np.ndarray  # [T, 1, indicators]
    origins: np.ndarray  # row positions scored: the first floor(n_test / 32) * 32 test rows


def harmony_split(sub: TelemetryFrame) -> HarmonySplit:
    """The HARMONY protocol's split, scaling and scored rows of one series (`frame.series_frame(name)`)."""
    split = sub.split(train=0.7, test=0.2)
    scaler = MinMaxScaler.fit(split.train)
    n_test = len(split.test)
    n_scored = (n_test // HARMONY_TEST_BATCH) * HARMONY_TEST_BATCH
    if n_scored == 0:
        raise HarmonyInputError(f"series {sub.series[0]!r}: test split of {n_test} rows is shorter than one batch")
    return HarmonySplit(scaler.transform_frame(split.train), scaler.transform_frame(split.validation),
                        scaler.transform(sub.values), len(sub) - n_test + np.arange(n_scored))


def rolling_protocol(
    frame: TelemetryFrame,
    model_specs: Sequence[str],
    lookback: int,
    horizon: int,
    stride: int | None = None,
    n_samples: int = 100,
    seed: int = 0,
    progress: Progress | None = None,
) -> list[dict]:
    """Rolling-origin evaluation over the test part of the whole frame (all series together)."""
    _check_common(lookback, horizon, n_samples)
    stride = horizon if stride is None else stride
    if stride < 1:
        raise HarmonyInputError(f"--stride must be >= 1, got {stride}")
    split = frame.split(train=0.7, test=0.2)
    scaler = MinMaxScaler.fit(split.train)
    values = scaler.transform(frame.values)
    test_start = len(frame) - len(split.test)
    origins = np.arange(test_start, len(frame) - horizon + 1, stride)
    return _score_models(
        frame, model_specs, scaler.transform_frame(split.train), scaler.transform_frame(split.validation),
        values, origins, lookback, horizon, n_samples, seed, progress,
    )


def with_means(rows: list[dict]) -> list[dict]:
    """Rows plus one `series="mean"` row per (model, lookback, horizon): the unweighted mean over series."""
    out = list(rows)
    keys = sorted({(r["model"], r["lookback"], r["horizon"]) for r in rows}, key=lambda k: [str(x) for x in k])
    for model, lookback, horizon in keys:
        group = [r for r in rows if (r["model"], r["lookback"], r["horizon"]) == (model, lookback, horizon)]
        mean = {"series": "mean", "model": model, "lookback": lookback, "horizon": horizon}
        for col, val in group[0].items():
            if col not in mean and isinstance(val, int | float):
                mean[col] = float(np.nanmean([g[col] for g in group]))
        mean["n_targets"] = int(sum(g["n_targets"] for g in group))
        out.append(mean)
    return out


def _check_common(lookback: int, horizon: int, n_samples: int) -> None:
    if lookback < 1:
        raise HarmonyInputError(f"--lookback must be >= 1, got {lookback}")
    if horizon < 1:
        raise HarmonyInputError(f"--horizon must be >= 1, got {horizon}")
    if n_samples < 2:
        raise HarmonyInputError(f"--samples must be >= 2, got {n_samples}")
