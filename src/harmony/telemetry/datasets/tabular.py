"""Generic CSV and Parquet telemetry, in wide or long layout (`--dataset csv` / `--dataset parquet`).

wide: one row per (timestamp[, series]), one column per indicator:
    timestamp,series,requests,gpu_busy
long: one row per (timestamp[, series], indicator):
    timestamp,series,indicator,value

Timestamps are datetimes (strings or typed; time-zone-aware ones are converted to UTC) or numbers read as
Unix seconds. Without a series column every file is one series named after its stem. `path` is a file, or
a folder whose `*.csv` (`*.csv.gz`) / `*.parquet` files are read in name order and stacked; a series may
continue across files (e.g. one file per day). Samples are binned onto a regular grid with
`TelemetryFrame.from_samples` (mean per bin; an empty bin is NaN). The interval defaults to the most common
positive step between consecutive timestamps of a series.

Every problem is a one-line `HarmonyInputError` naming the file and the column: a missing file or column,
a damaged (e.g. truncated gzip) file, an unparsable timestamp, a non-numeric value, an infinite, absurd
(beyond 1e30) or negative value (telemetry is rates, counts, bytes and shares), duplicate rows, timestamps
that go backwards within a series (wide layout, where rows are expected in time order), a span too long
for the interval, and an indicator without a single value.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harmony.errors import HarmonyInputError
from harmony.telemetry.datasets.base import DatasetSource, check_values, read_csv, require_columns
from harmony.telemetry.frame import LEVEL_DEMAND, Indicator, TelemetryFrame, parse_interval

_TIME = "__harmony_time__"
_SERIES = "__harmony_series__"
_FILE = "__harmony_file__"
_INDICATOR = "__harmony_indicator__"
_VALUE = "__harmony_value__"

OPTIONS = {
    "format": "'wide' (default: one column per indicator) or 'long' (indicator and value columns)",
    "time_column": "column holding timestamps: datetimes or Unix seconds (default 'timestamp')",
    "series_column": "column naming the series (default: none, each file is one series named after its stem)",
    "indicator_column": "long format: column naming the indicator (default 'indicator')",
    "value_column": "long format: column holding the value (default 'value')",
    "indicators": "comma-separated indicators to keep (default: every numeric column besides the keys)",
    "levels": "comma-separated name=level pairs, e.g. 'requests=1,gpu_busy=2' (default level 1 for all)",
    "interval": "grid step, e.g. '1min' (default: the most common step between timestamps)",
}


# ------------------------------------------------------------------------------------------------------
# option parsing
def _names(value: str | Sequence[str] | None, option: str) -> list[str] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    names = [item.strip() for item in items if item.strip()]
    if not names:
        raise HarmonyInputError(f"--{option.replace('_', '-')} {value!r} names no indicator")
    if len(set(names)) != len(names):
        raise HarmonyInputError(f"--{option.replace('_', '-')} {value!r} names an indicator twice")
    return names


def parse_levels(value: str | Mapping[str, Any] | None) -> dict[str, int]:
    """`'a=1,b=2'` (or a mapping) -> {'a': 1, 'b': 2}; levels are integers >= 1."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        pairs = [(str(k), v) for k, v in value.items()]
    else:
        pairs = []
        for item in str(value).split(","):
            if not item.strip():
                continue
            name, sep, level = item.partition("=")
            if not sep or not name.strip():
                raise HarmonyInputError(
                    f"--levels item {item.strip()!r} is not NAME=LEVEL (e.g. 'gpu_busy=2')"
                )
            pairs.append((name.strip(), level.strip()))
    levels: dict[str, int] = {}
    for name, level in pairs:
        try:
            number = int(str(level).strip())
        except ValueError:
            raise HarmonyInputError(f"--levels {name}={level}: the level is not an integer") from None
        if number < 1:
            raise HarmonyInputError(f"--levels {name}={level}: the level must be an integer >= 1")
        levels[name] = number
    return levels


# ------------------------------------------------------------------------------------------------------
# files
def _stem(file: Path) -> str:
    name = file.name
    for suffix in (".csv.gz", ".csv", ".parquet"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return file.stem


def _files(path: Path | None, kind: str) -> list[Path]:
    if path is None:
        raise HarmonyInputError(f"dataset {kind!r} needs --path (a {kind} file or a folder of them)")
    if path.is_file():
        return [path]
    patterns = ("*.csv", "*.csv.gz") if kind == "csv" else ("*.parquet",)
    files = sorted({f for pattern in patterns for f in path.glob(pattern) if f.is_file()})
    if not files:
        raise HarmonyInputError(f"{path}: no {' or '.join(patterns)} files (dataset {kind!r}, --path)")
    return files


def _read(file: Path, kind: str) -> pd.DataFrame:
    if kind == "csv":
        df = read_csv(file)
    else:
        try:
            df = pd.read_parquet(file)
        except FileNotFoundError:
            raise HarmonyInputError(f"{file}: no such file") from None
        except (OSError, ValueError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise HarmonyInputError(f"{file}: unreadable Parquet ({first})") from None
    df.columns = [str(c) for c in df.columns]
    if df.empty:
        raise HarmonyInputError(f"{file}: no rows")
    return df


# ------------------------------------------------------------------------------------------------------
# columns
def _row(mask: pd.Series | np.ndarray) -> int:
    """Position of the first True."""
    return int(np.flatnonzero(np.asarray(mask))[0])


def _times(col: pd.Series, file: Path, name: str) -> pd.Series:
    """A timestamp column as naive datetime64[ns] (UTC where the source had a zone)."""
    missing = col.isna()
    if missing.any():
        raise HarmonyInputError(f"{file}: column {name!r} is empty at row {_row(missing) + 1}")
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        out = col.dt.tz_convert("UTC").dt.tz_localize(None)
    elif pd.api.types.is_datetime64_any_dtype(col.dtype):
        out = col
    elif pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        out = _from_seconds(col, file, name)
    else:
        numbers = pd.to_numeric(col, errors="coerce")
        if numbers.notna().all():
            out = _from_seconds(numbers, file, name)
        else:
            try:
                with warnings.catch_warnings():  # "could not infer format": each value parsed on its own
                    warnings.simplefilter("ignore", UserWarning)
                    out = pd.to_datetime(col, errors="coerce", utc=True)
            except (ValueError, TypeError):
                out = pd.Series(pd.NaT, index=col.index, dtype="datetime64[ns, UTC]")
            bad = out.isna()
            if bad.any():
                row = _row(bad)
                raise HarmonyInputError(
                    f"{file}: column {name!r} has a value that is not a timestamp "
                    f"({col.iloc[row]!r}, row {row + 1})"
                )
            out = out.dt.tz_localize(None)
    return out.dt.as_unit("ns")


def _from_seconds(numbers: pd.Series, file: Path, name: str) -> pd.Series:
    try:
        return pd.to_datetime(numbers.astype("float64"), unit="s")
    except (ValueError, OverflowError, pd.errors.OutOfBoundsDatetime):
        raise HarmonyInputError(f"{file}: column {name!r} has numbers that are not Unix seconds") from None


def _numbers(col: pd.Series, file: Path, name: str) -> pd.Series:
    """A value column as float64; a value that is present but not a number is an error, and so is an
    infinite, absurd or negative one (`check_values`: telemetry counts, rates and bytes are none of those)."""
    if pd.api.types.is_bool_dtype(col.dtype) or pd.api.types.is_numeric_dtype(col.dtype):
        numbers = col.astype("float64")
    else:
        numbers = pd.to_numeric(col, errors="coerce")
        bad = numbers.isna() & col.notna()
        if bad.any():
            row = _row(bad)
            raise HarmonyInputError(
                f"{file}: column {name!r} has a non-numeric value {col.iloc[row]!r} (row {row + 1})"
            )
        numbers = numbers.astype("float64")
    check_values(numbers, file, name, first_line=1, position="row")
    return numbers


def _looks_numeric(col: pd.Series) -> bool:
    """A column is an indicator unless none of its values is a number (a label column)."""
    if pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype):
        return True
    if pd.api.types.is_datetime64_any_dtype(col.dtype) or isinstance(col.dtype, pd.DatetimeTZDtype):
        return False
    if col.isna().all():
        return True
    return bool(pd.to_numeric(col, errors="coerce").notna().any())


def _series_names(df: pd.DataFrame, file: Path, series_column: str | None) -> pd.Series:
    if series_column is None:
        return pd.Series(_stem(file), index=df.index, dtype=object)
    col = df[series_column]
    missing = col.isna()
    if missing.any():
        raise HarmonyInputError(f"{file}: column {series_column!r} is empty at row {_row(missing) + 1}")
    return col.astype(str).astype(object)


# ------------------------------------------------------------------------------------------------------
# checks across rows
def _check_duplicates(samples: pd.DataFrame, keys: dict[str, str | None]) -> None:
    """Raise on rows sharing every key; `keys` maps internal key -> user column (None: not a column)."""
    names = list(keys)
    dup = samples.duplicated(names, keep=False)
    if not dup.any():
        return
    same = samples.loc[dup]
    first = same.iloc[0]
    for key in names:
        same = same[same[key] == first[key]]
    files = sorted(set(same[_FILE]))
    columns = [col for col in keys.values() if col]
    what = ", ".join(f"{col}={first[key]}" for key, col in keys.items() if col)
    raise HarmonyInputError(f"{' and '.join(files)}: duplicate rows for ({what}) in columns {columns}")


def _check_increasing(samples: pd.DataFrame, file: Path, time_column: str) -> None:
    step = samples.groupby(_SERIES, sort=False)[_TIME].diff()
    back = step < pd.Timedelta(0)
    if back.any():
        row = _row(back)
        raise HarmonyInputError(
            f"{file}: column {time_column!r} goes back in time at row {row + 1} "
            f"({samples[_TIME].iloc[row]} after a later timestamp of series {samples[_SERIES].iloc[row]!r})"
        )


def infer_interval(times: pd.Series, series: pd.Series, where: str) -> pd.Timedelta:
    """The most common positive step between consecutive distinct timestamps of a series."""
    t = times.to_numpy(dtype="datetime64[ns]").astype("int64")
    codes = pd.factorize(series)[0]
    order = np.lexsort((t, codes))
    t, codes = t[order], codes[order]
    steps = np.diff(t)[np.diff(codes) == 0]
    steps = steps[steps > 0]
    if steps.size == 0:
        raise HarmonyInputError(
            f"{where}: cannot infer the interval (no series has two timestamps); pass --interval"
        )
    values, counts = np.unique(steps, return_counts=True)
    return pd.Timedelta(int(values[np.argmax(counts)]), unit="ns")


# ------------------------------------------------------------------------------------------------------
# layouts
def _wide_file(
    df: pd.DataFrame, file: Path, time_column: str, series_column: str | None, wanted: list[str] | None
) -> tuple[pd.DataFrame, list[str]]:
    keys = [time_column, *([series_column] if series_column else [])]
    require_columns(df, keys, file)
    if wanted is None:
        wanted = [c for c in df.columns if c not in keys and _looks_numeric(df[c])]
        if not wanted:
            raise HarmonyInputError(f"{file}: no numeric columns besides {keys}; nothing to load")
    require_columns(df, wanted, file)
    samples = pd.DataFrame({_TIME: _times(df[time_column], file, time_column)})
    samples[_SERIES] = _series_names(df, file, series_column)
    samples[_FILE] = str(file)
    for name in wanted:
        samples[name] = _numbers(df[name], file, name)
    _check_increasing(samples, file, time_column)
    return samples, wanted


def _long_file(
    df: pd.DataFrame, file: Path, time_column: str, series_column: str | None, indicator_column: str,
    value_column: str,
) -> pd.DataFrame:
    require_columns(df, [time_column, *([series_column] if series_column else []), indicator_column,
                         value_column], file)
    samples = pd.DataFrame({_TIME: _times(df[time_column], file, time_column)})
    samples[_SERIES] = _series_names(df, file, series_column)
    names = df[indicator_column]
    missing = names.isna()
    if missing.any():
        raise HarmonyInputError(f"{file}: column {indicator_column!r} is empty at row {_row(missing) + 1}")
    samples[_INDICATOR] = names.astype(str).astype(object)
    samples[_VALUE] = _numbers(df[value_column], file, value_column)
    samples[_FILE] = str(file)
    return samples


# ------------------------------------------------------------------------------------------------------
def load_table(
    path: Path | None,
    *,
    kind: str,
    format: str = "wide",
    time_column: str = "timestamp",
    series_column: str | None = None,
    indicator_column: str = "indicator",
    value_column: str = "value",
    indicators: str | Sequence[str] | None = None,
    levels: str | Mapping[str, Any] | None = None,
    interval: str | pd.Timedelta | None = None,
) -> TelemetryFrame:
    """Load a `kind` ('csv' or 'parquet') file or folder into a TelemetryFrame (see the module docstring)."""
    layout = str(format).strip().lower()
    if layout not in ("wide", "long"):
        raise HarmonyInputError(f"--format {format!r} must be 'wide' or 'long'")
    series_column = series_column or None
    wanted = _names(indicators, "indicators")
    level_of = parse_levels(levels)
    files = _files(path, kind)
    where = str(path)

    parts = []
    if layout == "wide":
        for file in files:
            samples, found = _wide_file(_read(file, kind), file, time_column, series_column, wanted)
            wanted = found  # the first file fixes the indicators; later files must have the same columns
            parts.append(samples)
        samples = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        _check_duplicates(samples, {_TIME: time_column, _SERIES: series_column})  # within and across files
        files_of = samples.groupby(_SERIES)[_FILE].unique()
        names = list(wanted)
    else:
        for file in files:
            parts.append(_long_file(_read(file, kind), file, time_column, series_column, indicator_column,
                                    value_column))
        rows = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        if wanted is not None:
            present = set(rows[_INDICATOR])
            absent = [name for name in wanted if name not in present]
            if absent:
                raise HarmonyInputError(
                    f"{where}: column {indicator_column!r} never names indicator {absent[0]!r} (--indicators)"
                )
            rows = rows[rows[_INDICATOR].isin(wanted)]
        _check_duplicates(rows, {_TIME: time_column, _SERIES: series_column, _INDICATOR: indicator_column})
        names = list(wanted) if wanted is not None else list(pd.unique(rows[_INDICATOR]))
        samples = rows.pivot(index=[_TIME, _SERIES], columns=_INDICATOR, values=_VALUE)
        samples = samples.reindex(columns=names).reset_index()
        files_of = rows.groupby(_SERIES)[_FILE].unique()

    unknown = [name for name in level_of if name not in names]
    if unknown:
        raise HarmonyInputError(f"--levels names {unknown[0]!r}, which is not an indicator of {where} "
                                f"(indicators: {', '.join(names)})")
    inds = [Indicator(name, level_of.get(name, LEVEL_DEMAND), "1") for name in names]
    if interval is None:
        step = infer_interval(samples[_TIME], samples[_SERIES], where)
    else:
        step = parse_interval(interval)
    frame = TelemetryFrame.from_samples(
        samples, step, inds, time=_TIME, series=_SERIES, how="mean", source=where
    )
    try:
        return frame.require_observed()
    except HarmonyInputError:
        observed = ~np.all(np.isnan(frame.values), axis=0)
        s, i = (int(v[0]) for v in np.nonzero(~observed))
        series = frame.series[s]
        files = " and ".join(sorted(files_of[series]))
        if layout == "wide":
            what = f"column {names[i]!r} has no values"
        else:
            what = f"column {value_column!r} has no values for indicator {names[i]!r}"
        raise HarmonyInputError(f"{files}: {what} (series {series!r})") from None


def _loader(kind: str):
    return partial(load_table, kind=kind)


SOURCE_CSV = DatasetSource(
    name="csv",
    description="your own CSV telemetry (file or folder), wide or long layout",
    default_path="",
    loader=_loader("csv"),
    options=dict(OPTIONS),
)

SOURCE_PARQUET = DatasetSource(
    name="parquet",
    description="your own Parquet telemetry (file or folder), wide or long layout",
    default_path="",
    loader=_loader("parquet"),
    options=dict(OPTIONS),
)

#: This module defines two sources (the registry lists both); SOURCE is the CSV one, by the usual name.
SOURCE = SOURCE_CSV
