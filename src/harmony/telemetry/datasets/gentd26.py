"""GenTD26: Alibaba's GenAI (Stable Diffusion) GPU serving trace (cluster-trace-v2026-GenAI), one system.

Six gzipped CSVs of Prometheus-style samples, one row per (timestamp, container) with `timestamp_anon`
(anonymised seconds, read as Unix seconds; samples ~57 s apart), `value` and `container_ip` (an MD5 hash
that joins the files). Column order differs between files, so columns are looked up by name.

Each file is first aggregated per timestamp (over pods / containers), then the per-timestamp aggregates are
averaged within each bin of a regular grid (`interval`, default 1 min). A bin without any sample of a file
is NaN (a gap), never zero.

Aggregation rules (see INDICATORS for levels and units):
- `gpu_busy`: sum over pods of GPU duty cycle / 100 (GPU-equivalents busy); `pods_reporting`: number of
  pods with a duty-cycle sample; `busy_pods`: pods with duty cycle > 0.
- `generative_qps`, `api_qps`: sum over containers of the QPS samples of each `request_type`. The trace
  omits zero-valued QPS rows (its smallest value is 0.09), so at a timestamp where qps.csv.gz has rows but
  none of one request type, that type counts 0; timestamps absent from qps.csv.gz stay missing.
- `queue_size`: sum of the gateway backlog samples at the timestamp (the file has one, with no container).
- `queue_time_ms`: mean queueing time over the containers reporting one.
- `gpu_memory_bytes`: sum over pods; `pod_memory_util`: mean over pods (rows without a pod id are dropped).
Several rows for the same (timestamp, pod) are averaged first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harmony.errors import HarmonyInputError
from harmony.telemetry.datasets.base import DatasetSource, check_values, read_csv, require_columns
from harmony.telemetry.frame import LEVEL_COMPUTE, LEVEL_DEMAND, Indicator, TelemetryFrame

SERIES = "gentd26"
#: Unix seconds pandas can hold as a timestamp (nanoseconds in an int64: years 1677 to 2262).
MAX_UNIX_S = pd.Timestamp.max.value / 1e9
TIME = "timestamp_anon"
VALUE = "value"
POD = "container_ip"
REQUEST_TYPE = "request_type"
GENERATIVE = "Generative Requests"
API = "API Requests"

FILES = {
    "qps": "qps.csv.gz",
    "duty": "pod_gpu_duty_cycle_anon.csv.gz",
    "gpu_memory": "pod_gpu_memory_used_bytes_anon.csv.gz",
    "pod_memory": "pod_memory_util_anon.csv.gz",
    "queue_size": "queue_size_raw_anon.csv.gz",
    "queue_rt": "queue_rt_raw_anon.csv.gz",
}

#: The file each indicator comes from (a key of FILES).
FILE_OF = {
    "generative_qps": "qps", "api_qps": "qps", "queue_size": "queue_size", "queue_time_ms": "queue_rt",
    "gpu_busy": "duty", "pods_reporting": "duty", "busy_pods": "duty", "gpu_memory_bytes": "gpu_memory",
    "pod_memory_util": "pod_memory",
}

INDICATORS: tuple[Indicator, ...] = (
    Indicator("generative_qps", LEVEL_DEMAND, "requests/s"),
    Indicator("api_qps", LEVEL_DEMAND, "requests/s"),
    Indicator("queue_size", LEVEL_DEMAND, "requests"),
    Indicator("queue_time_ms", LEVEL_DEMAND, "ms"),
    Indicator("gpu_busy", LEVEL_COMPUTE, "gpus"),
    Indicator("pods_reporting", LEVEL_COMPUTE, "pods"),
    Indicator("busy_pods", LEVEL_COMPUTE, "pods"),
    Indicator("gpu_memory_bytes", LEVEL_COMPUTE, "bytes"),
    Indicator("pod_memory_util", LEVEL_COMPUTE, "1"),
)


def _file(folder: Path, name: str) -> Path:
    """The file in `folder`; an uncompressed `name.csv` is accepted in place of `name.csv.gz`."""
    path = folder / name
    if path.is_file():
        return path
    plain = folder / name.removesuffix(".gz")
    if plain.is_file():
        return plain
    raise HarmonyInputError(f"{path}: no such file (dataset 'gentd26' expects {name} in --path)")


def _read(folder: Path, key: str, columns: list[str]) -> pd.DataFrame:
    """One file with its required columns; timestamps and values numeric (errors name file and column)."""
    path = _file(folder, FILES[key])
    df = read_csv(path)
    require_columns(df, columns, path)
    out = pd.DataFrame(index=df.index)
    for col in (TIME, VALUE):
        num = pd.to_numeric(df[col], errors="coerce")
        bad = num.isna() & df[col].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise HarmonyInputError(
                f"{path}: column {col!r} has a non-numeric value {df[col].iloc[row]!r} at line {row + 2}"
            )
        out[col] = num.astype("float64")
    if out[TIME].isna().any():
        row = int(np.flatnonzero(out[TIME].isna().to_numpy())[0])
        raise HarmonyInputError(f"{path}: column {TIME!r} is empty at line {row + 2}")
    wild = ~(out[TIME].abs() <= MAX_UNIX_S)  # an infinity too
    if wild.any():
        row = int(np.flatnonzero(wild.to_numpy())[0])
        raise HarmonyInputError(f"{path}: column {TIME!r} has {out[TIME].iloc[row]:g} at line {row + 2}, not Unix "
                                f"seconds a timestamp can hold (|t| <= {MAX_UNIX_S:.4g})")
    check_values(out[VALUE], path, VALUE)
    for col in columns:
        if col not in (TIME, VALUE):
            out[col] = df[col]
    return out.dropna(subset=[VALUE])


def _per_pod(df: pd.DataFrame) -> pd.DataFrame:
    """One value per (timestamp, pod): rows without a pod dropped, repeated rows averaged."""
    df = df.dropna(subset=[POD])
    return df.groupby([TIME, POD], sort=False)[VALUE].mean().reset_index()


def _aggregates(folder: Path) -> pd.DataFrame:
    """Per-timestamp aggregates, one column per indicator, indexed by the union of timestamps (seconds)."""
    cols: dict[str, pd.Series] = {}

    qps = _read(folder, "qps", [TIME, VALUE, REQUEST_TYPE])
    by_type = qps.groupby([TIME, REQUEST_TYPE])[VALUE].sum().unstack(REQUEST_TYPE)
    for name, rtype in (("generative_qps", GENERATIVE), ("api_qps", API)):
        # A timestamp in the file without rows of this type had no such requests (zero rows are omitted).
        cols[name] = by_type[rtype].fillna(0.0) if rtype in by_type else pd.Series(0.0, index=by_type.index)

    queue = _read(folder, "queue_size", [TIME, VALUE])
    cols["queue_size"] = queue.groupby(TIME)[VALUE].sum()

    rt = _read(folder, "queue_rt", [TIME, VALUE, POD])
    cols["queue_time_ms"] = _per_pod(rt).groupby(TIME)[VALUE].mean()

    duty = _read(folder, "duty", [TIME, VALUE, POD])
    duty = _per_pod(duty)
    grouped = duty.groupby(TIME)[VALUE]
    cols["gpu_busy"] = grouped.sum() / 100.0
    cols["pods_reporting"] = grouped.size().astype("float64")
    cols["busy_pods"] = (duty[VALUE] > 0).groupby(duty[TIME]).sum().astype("float64")

    mem = _read(folder, "gpu_memory", [TIME, VALUE, POD])
    cols["gpu_memory_bytes"] = _per_pod(mem).groupby(TIME)[VALUE].sum()

    util = _read(folder, "pod_memory", [TIME, VALUE, POD])
    cols["pod_memory_util"] = _per_pod(util).groupby(TIME)[VALUE].mean()

    wide = pd.DataFrame(cols).sort_index()
    return wide[[ind.name for ind in INDICATORS]]


def load(path: Path | None, interval: str | pd.Timedelta = "1min") -> TelemetryFrame:
    """The system as one series `gentd26` on a regular `interval` grid."""
    if path is None or not path.is_dir():
        raise HarmonyInputError(
            f"{path}: dataset 'gentd26' needs a folder holding {', '.join(FILES.values())} (--path)"
        )
    wide = _aggregates(path)
    if wide.empty:
        raise HarmonyInputError(f"{path}: no samples in {', '.join(FILES.values())}")
    samples = wide.reset_index(names="_seconds")
    samples["timestamp"] = pd.to_datetime(samples["_seconds"].to_numpy(copy=True), unit="s")
    frame = TelemetryFrame.from_samples(
        samples, interval, INDICATORS, series=None, series_name=SERIES, how="mean", source=str(path)
    )
    try:
        return frame.require_observed()
    except HarmonyInputError:
        empty = next(i for i, name in enumerate(frame.indicator_names) if np.isnan(frame.values[:, 0, i]).all())
        name = frame.indicator_names[empty]
        raise HarmonyInputError(
            f"{path / FILES[FILE_OF[name]]}: column {VALUE!r} has no values (indicator {name!r})"
        ) from None


SOURCE = DatasetSource(
    name="gentd26",
    description="Alibaba GenAI GPU serving (GenTD26, 2026): QPS, queue, GPU duty/memory of ~110 pods, ~57 s",
    default_path="gentd26",
    loader=load,
    options={"interval": "grid step, e.g. '1min' (default) or '5min'; per-timestamp aggregates are averaged"},
)
