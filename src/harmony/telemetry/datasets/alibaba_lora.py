"""Alibaba Stable Diffusion LoRA serving requests (GenTD26's request log): busy GPU executors over time.

The file `lora_request_trace.csv` of Alibaba's `cluster-trace-v2026-GenAI` (research use) has one row per
request: `gmt_create` (arrival, shifted to anonymise, e.g. "2024-11-15 16:57:50"), `exec_time_seconds`
(how long one GPU executor served it), `num_inference_steps`, `num_images_per_prompt`, and columns harmony
does not use (`predict_type`, `predict_status`, `groupId`, prompt lengths, base model, `num_lora`). Every
row counts, whatever its status: a failed request held its executor for its `exec_time_seconds` too (a
pending one has 0).

On a regular grid (`interval`, default 1 min, bins aligned to the Unix epoch), one series named after the
file:
- `busy_executors` (level 1, gpus): the demand. Each request holds one GPU from its arrival for
  `exec_time_seconds`; the value of a bin is the *time-weighted mean* number of busy executors over the bin,
  i.e. the busy GPU-seconds that fall inside it divided by its length (a 90 s request arriving at 00:00:30
  gives 0.5 in minute 0 and 1.0 in minute 1). Not the count at the bin's start, nor its peak: mean busy
  GPUs is what GPU-time and one-GPU-per-replica capacity are measured in.
- `arrivals` (level 1, requests): requests that arrived in the bin.
- `mean_inference_steps` (level 2, steps), `mean_images_per_prompt` (level 2, images): the mean over the
  bin's arrivals (those that state it) of the diffusion steps and images per request, the per-request GPU
  work that turns arrivals into busy time (hence level 2). A bin without arrivals carries the previous
  bin's value (the mix of the latest requests; bins before the first stated value take that first value),
  so these columns are never NaN; read them together with `arrivals`.

An idle bin is real zero demand here (the log lists every request), unlike ServeGen's collection gaps: no
column is NaN inside the span, which runs from the first arrival's bin to the last arrival's bin. Busy time
of requests still running after that bin is cut off; busy time of requests that arrived before the log
starts is unknown (not in the log).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harmony.errors import HarmonyInputError
from harmony.telemetry.datasets.base import DatasetSource, check_values, read_csv, require_columns
from harmony.telemetry.frame import (
    LEVEL_COMPUTE,
    LEVEL_DEMAND,
    Indicator,
    TelemetryFrame,
    check_steps,
    parse_interval,
)

FILE_NAME = "lora_request_trace.csv"
ARRIVAL = "gmt_create"
EXEC = "exec_time_seconds"
STEPS = "num_inference_steps"
IMAGES = "num_images_per_prompt"

INDICATORS: tuple[Indicator, ...] = (
    Indicator("busy_executors", LEVEL_DEMAND, "gpus"),
    Indicator("arrivals", LEVEL_DEMAND, "requests"),
    Indicator("mean_inference_steps", LEVEL_COMPUTE, "steps"),
    Indicator("mean_images_per_prompt", LEVEL_COMPUTE, "images"),
)


def _file(path: Path | None) -> Path:
    if path is None:
        raise HarmonyInputError(f"dataset 'alibaba-lora' needs --path (a CSV file or a folder holding {FILE_NAME})")
    if not path.is_dir():
        return path
    for name in (f"{FILE_NAME}.gz", FILE_NAME):
        if (path / name).is_file():
            return path / name
    raise HarmonyInputError(f"{path / FILE_NAME}: no such file (dataset 'alibaba-lora', --path folder must hold it"
                            f" or {FILE_NAME}.gz)")


def _numbers(df: pd.DataFrame, col: str, path: Path, *, required: bool) -> np.ndarray:
    """A column as float64: non-numeric or negative values refused (naming file, column, line); missing
    values refused where `required`, NaN otherwise."""
    num = pd.to_numeric(df[col], errors="coerce")
    bad = num.isna() & (df[col].notna() | required)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        value = df[col].iloc[row]
        what = "a missing value" if pd.isna(value) else f"a non-numeric value {str(value)!r}"
        raise HarmonyInputError(f"{path}: column {col!r} has {what} (line {row + 2})")
    neg = num < 0
    if neg.any():
        row = int(np.flatnonzero(neg.to_numpy())[0])
        raise HarmonyInputError(f"{path}: column {col!r} has a negative value {num.iloc[row]} (line {row + 2})")
    check_values(num, path, col)
    return num.to_numpy(dtype=np.float64, copy=True)


def read_requests(path: Path) -> pd.DataFrame:
    """The request log: `arrival` (datetime64[ns]), `exec_s`, `steps`, `images` (float64; the last two NaN
    where the log leaves them empty)."""
    df = read_csv(path)
    require_columns(df, [ARRIVAL, EXEC, STEPS, IMAGES], path)
    raw = df[ARRIVAL]
    stamps = pd.to_datetime(raw, errors="coerce", format="ISO8601")
    if stamps.isna().any():
        row = int(np.flatnonzero(stamps.isna().to_numpy())[0])
        raise HarmonyInputError(f"{path}: column {ARRIVAL!r} has a value that is not a timestamp "
                                f"({raw.iloc[row]!r}, line {row + 2})")
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    return pd.DataFrame({
        "arrival": stamps.dt.as_unit("ns"),
        "exec_s": _numbers(df, EXEC, path, required=True),
        "steps": _numbers(df, STEPS, path, required=False),
        "images": _numbers(df, IMAGES, path, required=False),
    })


def busy_executors(arrival_s: np.ndarray, exec_s: np.ndarray, step_s: float, bins: int) -> np.ndarray:
    """Time-weighted mean busy executors per bin [k*step, (k+1)*step), k < bins; times in seconds from the
    first bin's start. Each request adds its overlap with a bin; bins it covers fully get a whole step
    (a difference array), so the sum is exact and a bin no request touches is exactly 0. Busy time past the
    last bin is cut off before any array is sized (an absurd exec time must not size one)."""
    end_s = np.minimum(arrival_s + exec_s, bins * step_s)
    first = np.floor(arrival_s / step_s).astype(np.int64)
    last = np.floor(end_s / step_s).astype(np.int64)
    size = max(bins, int(last.max()) + 2 if len(last) else bins)
    partial = np.zeros(size)
    full = np.zeros(size + 1, dtype=np.int64)
    same = first == last
    np.add.at(partial, first[same], end_s[same] - arrival_s[same])
    span = ~same
    np.add.at(partial, first[span], (first[span] + 1) * step_s - arrival_s[span])
    np.add.at(partial, last[span], end_s[span] - last[span] * step_s)
    np.add.at(full, first[span] + 1, 1)
    np.add.at(full, last[span], -1)
    covered = np.cumsum(full)[:size]
    return (partial + covered * step_s)[:bins] / step_s


def _carried_mean(values: np.ndarray, pos: np.ndarray, bins: int, path: Path, column: str) -> np.ndarray:
    """Mean of the stated values per bin; bins without one carry the previous bin's mean forward."""
    stated = ~np.isnan(values)
    if not stated.any():
        raise HarmonyInputError(f"{path}: column {column!r} has no values")
    total = np.bincount(pos[stated], weights=values[stated], minlength=bins)
    count = np.bincount(pos[stated], minlength=bins)
    mean = pd.Series(np.where(count > 0, total / np.maximum(count, 1), np.nan))
    return mean.ffill().bfill().to_numpy()


def load(path: Path | None, interval: str | pd.Timedelta = "1min") -> TelemetryFrame:
    """Busy executors, arrivals and the requests' mean steps / images per `interval`, one series."""
    file = _file(path)
    step = parse_interval(interval)
    requests = read_requests(file)
    if requests.empty:
        raise HarmonyInputError(f"{file}: no requests (column {ARRIVAL!r} is empty)")
    ns = requests["arrival"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    check_steps(pd.Timestamp(int(ns.min()), unit="ns"), pd.Timestamp(int(ns.max()), unit="ns"), step, str(file))
    origin = int(np.floor_divide(ns.min(), step.value)) * step.value
    pos = np.floor_divide(ns - origin, step.value)
    bins = int(pos.max()) + 1
    step_s = step.total_seconds()
    arrival_s = (ns - origin) / 1e9
    values = np.empty((bins, 1, len(INDICATORS)))
    values[:, 0, 0] = busy_executors(arrival_s, requests["exec_s"].to_numpy(), step_s, bins)
    values[:, 0, 1] = np.bincount(pos, minlength=bins)
    values[:, 0, 2] = _carried_mean(requests["steps"].to_numpy(), pos, bins, file, STEPS)
    values[:, 0, 3] = _carried_mean(requests["images"].to_numpy(), pos, bins, file, IMAGES)
    index = pd.date_range(pd.Timestamp(origin, unit="ns"), periods=bins, freq=step)
    name = file.name.removesuffix(".gz").removesuffix(".csv")
    return TelemetryFrame(index, values, [name], INDICATORS, interval=step, source=str(file))


SOURCE = DatasetSource(
    name="alibaba-lora",
    description="Alibaba Stable Diffusion LoRA requests (GenTD26 log, 2026): busy GPU executors, ~16 days",
    default_path="alibaba-lora",
    loader=load,
    options={"interval": "bin length, e.g. '1min' (default) or '10min'; busy executors are time-weighted means"},
)
