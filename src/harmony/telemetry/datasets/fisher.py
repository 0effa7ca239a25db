"""Fisher: one CSV per Kubernetes container, 11 indicators every 10 minutes (2018).

The dataset on which the HARMONY paper's code reports its numbers. Hierarchy levels are assigned from the
column *names* (the published code took them from positions in a `level.npy` after reordering the
columns, which misaligned them). Several columns are cumulative counters; `difference_counters=True` turns
them into per-step increases (counter resets handled).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from harmony.errors import HarmonyInputError
from harmony.telemetry.datasets.base import DatasetSource, check_values, read_csv, require_columns
from harmony.telemetry.frame import LEVEL_COMPUTE, LEVEL_DEMAND, LEVEL_IO, Indicator, TelemetryFrame

INTERVAL = pd.Timedelta("10min")
TIME_COLUMN = "date"

#: The 11 indicators in file order, with level and unit. Levels: 1 service demand, 2 compute/memory,
#: 3 I/O and network.
INDICATORS: tuple[Indicator, ...] = (
    Indicator("load", LEVEL_DEMAND, "1"),
    Indicator("blkio.throttle.io_service_bytes_Async", LEVEL_IO, "bytes", cumulative=True),
    Indicator("blkio.throttle.io_service_bytes_Read", LEVEL_IO, "bytes", cumulative=True),
    Indicator("container_cpu_usage_seconds_total", LEVEL_COMPUTE, "nanoseconds", cumulative=True),
    Indicator("container_memory_active_file", LEVEL_COMPUTE, "bytes"),
    Indicator("container_memory_hierarchical_memory_limit", LEVEL_COMPUTE, "bytes"),
    Indicator("container_memory_rss", LEVEL_COMPUTE, "bytes"),
    Indicator("container_network_tcp_TimeWait", LEVEL_IO, "connections"),
    Indicator("cpu.busy", LEVEL_COMPUTE, "percent"),
    Indicator("mem.memused", LEVEL_COMPUTE, "percent"),
    Indicator("net.if.in.bytes", LEVEL_IO, "bytes/s"),
)


def _container_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(path.glob("*.csv"), key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.stem)])
    if not files:
        raise HarmonyInputError(f"{path}: no *.csv container files (dataset 'fisher', --path)")
    return files


def read_container(path: Path) -> pd.DataFrame:
    """One container CSV as a DataFrame indexed by timestamp, columns in INDICATORS order."""
    df = read_csv(path)
    require_columns(df, [TIME_COLUMN, *(ind.name for ind in INDICATORS)], path)
    try:
        stamps = pd.to_datetime(df[TIME_COLUMN], errors="raise", format="ISO8601")
    except (ValueError, TypeError):
        raise HarmonyInputError(f"{path}: column {TIME_COLUMN!r} has values that are not timestamps") from None
    if stamps.duplicated().any():
        raise HarmonyInputError(f"{path}: duplicate timestamp {stamps[stamps.duplicated()].iloc[0]}")
    if not stamps.is_monotonic_increasing:
        row = int(np.flatnonzero(np.diff(stamps.to_numpy().astype("int64")) < 0)[0]) + 1
        raise HarmonyInputError(f"{path}: timestamps are not increasing at row {row + 1} ({stamps.iloc[row]})")
    values = df[[ind.name for ind in INDICATORS]].apply(pd.to_numeric, errors="coerce")
    for name in values.columns:
        bad = values[name].isna() & df[name].notna()
        if bad.any():
            raise HarmonyInputError(f"{path}: column {name!r} has a non-numeric value {df[name][bad].iloc[0]!r}")
        check_values(values[name], path, name)
    return values.set_axis(pd.DatetimeIndex(stamps), axis=0)


def load(path: Path, difference_counters: bool = False) -> TelemetryFrame:
    """All containers as series of one frame on the union of their time spans (NaN outside a container's
    span; `TelemetryFrame.series_frame` trims it back)."""
    parts = []
    for file in _container_files(path):
        df = read_container(file)
        long = df.reset_index(names="timestamp")
        long["series"] = file.stem
        parts.append((file, long))
    frames = []
    for file, long in parts:
        frame = TelemetryFrame.from_samples(long, INTERVAL, INDICATORS, how="last", source=str(file))
        frames.append(frame.require_observed())
    frame = _stack_series(frames, source=str(path))
    if difference_counters:
        frame = frame.difference()
    return frame


def _stack_series(frames: list[TelemetryFrame], source: str) -> TelemetryFrame:
    aligned = TelemetryFrame.align(frames, how="outer")
    return TelemetryFrame(
        aligned[0].index,
        np.concatenate([f.values for f in aligned], axis=1),
        [s for f in aligned for s in f.series],
        INDICATORS,
        interval=INTERVAL,
        source=source,
    )


SOURCE = DatasetSource(
    name="fisher",
    description="Kubernetes containers (Fisher, 2018): 11 indicators every 10 min, one CSV per container",
    default_path="fisher",
    loader=load,
    options={"difference_counters": "turn cumulative counter columns into per-step increases"},
)
