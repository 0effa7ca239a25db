"""Azure LLM inference trace 2023 (conversation service): one row per request, aggregated into rates.

The CSV has `TIMESTAMP` (arrival time, e.g. "2023-11-16 18:15:46.6805900"), `ContextTokens` (prompt
length) and `GeneratedTokens` (output length). Requests are counted per bin of a regular grid (`interval`,
default 10 s, bins aligned to the Unix epoch as everywhere in harmony) and divided by the bin length:
`request_rate` (requests/s), `context_token_rate` and `generated_token_rate` (tokens/s), all level 1
(service demand). A bin without requests is a true zero, not a gap: the trace lists every request. The
first and last bins may be only partly covered by the trace, so their rates read low.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harmony.errors import HarmonyInputError
from harmony.telemetry.datasets.base import DatasetSource, check_values, read_csv, require_columns
from harmony.telemetry.frame import LEVEL_DEMAND, Indicator, TelemetryFrame, check_steps, parse_interval

FILE_NAME = "AzureLLMInferenceTrace_conv.csv"
TIME_COLUMN = "TIMESTAMP"
CONTEXT = "ContextTokens"
GENERATED = "GeneratedTokens"

INDICATORS: tuple[Indicator, ...] = (
    Indicator("request_rate", LEVEL_DEMAND, "requests/s"),
    Indicator("context_token_rate", LEVEL_DEMAND, "tokens/s"),
    Indicator("generated_token_rate", LEVEL_DEMAND, "tokens/s"),
)


def _csv_file(path: Path | None) -> Path:
    if path is None:
        raise HarmonyInputError(
            f"dataset 'azure-llm' needs --path (a CSV file or a folder holding {FILE_NAME})"
        )
    if path.is_dir():
        file = path / FILE_NAME
        if not file.is_file():
            raise HarmonyInputError(f"{file}: no such file (dataset 'azure-llm', --path folder must hold it)")
        return file
    return path


def read_requests(path: Path) -> pd.DataFrame:
    """The per-request table: `timestamp` (datetime64[ns]), `context`, `generated` (float64 token counts)."""
    df = read_csv(path)
    require_columns(df, [TIME_COLUMN, CONTEXT, GENERATED], path)
    raw = df[TIME_COLUMN]
    stamps = pd.to_datetime(raw, errors="coerce", format="ISO8601")
    bad = stamps.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise HarmonyInputError(
            f"{path}: column {TIME_COLUMN!r} has a value that is not a timestamp "
            f"({raw.iloc[row]!r}, line {row + 2})"
        )
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    out = pd.DataFrame({"timestamp": stamps.dt.as_unit("ns")})
    for col, name in ((CONTEXT, "context"), (GENERATED, "generated")):
        num = pd.to_numeric(df[col], errors="coerce")
        bad = num.isna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise HarmonyInputError(
                f"{path}: column {col!r} has a missing or non-numeric value {df[col].iloc[row]!r} "
                f"(line {row + 2})"
            )
        neg = num < 0
        if neg.any():
            row = int(np.flatnonzero(neg.to_numpy())[0])
            raise HarmonyInputError(
                f"{path}: column {col!r} has a negative token count {num.iloc[row]} (line {row + 2})"
            )
        check_values(num, path, col)
        out[name] = num.astype("float64")
    return out


def load(path: Path | None, interval: str | pd.Timedelta = "10s") -> TelemetryFrame:
    """Request and token rates per `interval` as one series named after the file stem."""
    file = _csv_file(path)
    step = parse_interval(interval)
    requests = read_requests(file)
    if requests.empty:
        raise HarmonyInputError(f"{file}: no requests (column {TIME_COLUMN!r} is empty)")
    ns = requests["timestamp"].to_numpy(dtype="datetime64[ns]").astype("int64")
    check_steps(pd.Timestamp(int(ns.min()), unit="ns"), pd.Timestamp(int(ns.max()), unit="ns"), step, str(file))
    bins = np.floor_divide(ns, step.value)
    first = int(bins.min())
    pos = bins - first
    n = int(pos.max()) + 1
    seconds = step.total_seconds()
    values = np.empty((n, 1, len(INDICATORS)))
    values[:, 0, 0] = np.bincount(pos, minlength=n) / seconds
    for i, column in ((1, "context"), (2, "generated")):
        weights = requests[column].to_numpy(dtype=np.float64, copy=True)
        values[:, 0, i] = np.bincount(pos, weights=weights, minlength=n) / seconds
    index = pd.date_range(pd.Timestamp(first * step.value, unit="ns"), periods=n, freq=step)
    return TelemetryFrame(index, values, [file.stem], INDICATORS, interval=step, source=str(file))


SOURCE = DatasetSource(
    name="azure-llm",
    description="Azure LLM inference trace 2023 (conversation): request and token rates, one hour",
    default_path="azure-llm",
    loader=load,
    options={"interval": "bin length for the rates, e.g. '10s' (default) or '1min'"},
)
