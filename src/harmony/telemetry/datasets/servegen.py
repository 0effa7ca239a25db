"""ServeGen: Alibaba Cloud Model Studio (Bailian) LLM serving, per client, 10-minute windows over 14 days.

The workload characterisation behind "ServeGen" (Xiang et al., arXiv 2505.09999; GitHub alibaba/ServeGen,
Apache-2.0). Each client of a model has one row per 10-minute window: its mean request rate (requests/s),
the coefficient of variation (CV) of its inter-arrival times, and a fitted inter-arrival distribution.
Two language models are bundled, `m-large` (162 clients) and `m-mid` (109 clients); other models of the
same source are held back and can be read with `path`.

Files. The bundled copy is one gzipped CSV per model, `<model>.csv.gz`, with header
`client,t_seconds,rate,cv` (the upstream columns' text unchanged; the fitted distribution's name and
parameters are left out). `path` may also point at the upstream layout: a folder holding
`<model>/chunk-<client>-trace.csv` (ServeGen's `data/language/`), or `language/<model>/...` below it, or the
model folder itself; those files have no header and six columns `t_seconds, rate, cv, pattern, param1,
param2`. A `.csv` may be gzipped (`.csv.gz`) and vice versa. A file `path` is one model in the bundled
format.

Time. `t_seconds` counts from t=0, midnight of an unnamed day. harmony puts t=0 at EPOCH, 2024-01-01 00:00
UTC (a Monday; only the time of day is real, the weekday is arbitrary), on a 10-minute grid.

Options. `model`: m-large (default) or m-mid; with `path`, a folder of chunk files or a file is one model,
named by this option or else after the folder / file. `series`: `aggregate` (default: one series named
after the model, the sum of the selected clients' rates) or `clients` (one series per client,
`client-<id>`). `clients`: `all` (default), `top:N` (the N largest by total volume, i.e. the sum of their
rates over the trace) or comma-separated ids; `all` and `top:N` skip clients that never send a request
(m-mid's client 97). Series come largest first for `all` and `top:N`, in the given order for ids.

Indicators:
- `request_rate` (level 1, requests/s): the demand. Aggregate: sum over the selected clients.
- `active_clients` (level 1, clients; aggregate only): selected clients with a non-zero rate.
- `interarrival_cv` (level 2, 1): burstiness. Per client, the trace's CV where the client sent requests
  (NaN where it sent none: the trace writes 0 there, which would read as perfectly regular arrivals).
  Aggregate: the rate-weighted mean of the active clients' CVs, i.e. the burstiness of the client stream a
  typical request belongs to. It is not the CV of the merged stream, which the windows cannot give. Level 2,
  not 1: it is a second-order statistic of the same requests, not demand (summing it means nothing), and it
  sets how much transient batch/queue pressure a given rate puts on the GPUs within a window, the role
  compute indicators play; level 3 is I/O and network, which this trace does not measure.

Gaps. A window in which every client of the model reads 0 (or has no row) is a collection gap: all
indicators NaN, never zero demand (m-mid has 84 such windows, m-large none). A window in which only the
selected clients read 0 is real zero demand; a selected client without a row counts 0 in the aggregate.
Sub-10-minute arrivals are not measured.

Capacity per replica (`harmony.decision.demand.DEMANDS["servegen:model=..."]`, demand = `request_rate`).
ServeGen does not name its models or hardware, so a replica is sized from public vLLM figures: Lambda's
vLLM benchmark (github.com/LambdaLabsML/vllm-benchmark, benchmark_v0.md, the vLLM v0.6.0 table with
multi-step scheduling `num-scheduler-steps=10`, request rate inf, max-num-seq 256, max-seq-len 2048, on
H100-80GB SXM) reports 3,543 output tokens/s for Llama 3.1 70B on 4 GPUs (tensor parallel 4) and 8,088
output tokens/s for Llama 3.1 8B on one GPU. At 211 output tokens per request (the mean of the bundled
Azure LLM conversation trace, prompts ~1,150 tokens) that is 16.8 and 38.3 requests/s. Assuming m-large is
a 70B-class model served by 4-GPU replicas and m-mid a 7-13B-class model served by single-GPU replicas:
- m-large: 16 requests/s per replica; the aggregate (mean 196, peak 583 requests/s) needs 12.7 replicas on
  average (4 at the trough, 37 at peak; 51 and 148 GPUs);
- m-mid: 38 requests/s per replica; the aggregate (mean 1,868, peak 3,445 requests/s outside gaps) needs
  49.7 replicas on average and 91 at peak.
These are saturation throughputs (no latency-SLO derating) under decode-bound chat requests; a backtest's
GPU-hours count replicas, so multiply m-large's by 4. Pass `--capacity` to use your own figure.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from harmony.errors import HarmonyInputError
from harmony.telemetry.datasets.base import DatasetSource, check_values, read_csv, require_columns
from harmony.telemetry.frame import LEVEL_COMPUTE, LEVEL_DEMAND, Indicator, TelemetryFrame, check_steps

#: Where t_seconds = 0 lands (documented choice: the trace names no day).
EPOCH = pd.Timestamp("2024-01-01 00:00")
WINDOW = pd.Timedelta("10min")
DEFAULT_MODEL = "m-large"
COLUMNS = ["client", "t_seconds", "rate", "cv"]
UPSTREAM_COLUMNS = ["t_seconds", "rate", "cv", "pattern", "param1", "param2"]
CHUNK = re.compile(r"chunk-(\d+)-trace\.csv(\.gz)?$")

RATE = Indicator("request_rate", LEVEL_DEMAND, "requests/s")
ACTIVE = Indicator("active_clients", LEVEL_DEMAND, "clients")
CV = Indicator("interarrival_cv", LEVEL_COMPUTE, "1")
AGGREGATE_INDICATORS: tuple[Indicator, ...] = (RATE, ACTIVE, CV)
CLIENT_INDICATORS: tuple[Indicator, ...] = (RATE, CV)


# ------------------------------------------------------------------------------------------------ reading
def _describe(value) -> str:
    return "a missing value" if pd.isna(value) else f"a non-numeric value {str(value)!r}"


def _numeric(df: pd.DataFrame, path: Path, columns: list[str], line_offset: int) -> pd.DataFrame:
    """The columns as float64; a missing, non-numeric or negative (rate, cv) value names file, column, line."""
    out = pd.DataFrame(index=df.index)
    for col in columns:
        num = pd.to_numeric(df[col], errors="coerce")
        bad = num.isna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise HarmonyInputError(f"{path}: column {col!r} has {_describe(df[col].iloc[row])} "
                                    f"(line {row + line_offset})")
        if col in ("rate", "cv") and (num < 0).any():
            row = int(np.flatnonzero((num < 0).to_numpy())[0])
            raise HarmonyInputError(f"{path}: column {col!r} has a negative value {num.iloc[row]} "
                                    f"(line {row + line_offset})")
        # rates and CVs are >= 0 (above); t_seconds may start before t=0, but must be a finite time
        check_values(num, path, col, first_line=line_offset, allow_negative=col == "t_seconds")
        out[col] = num.astype("float64")
    return out


def read_bundled(path: Path) -> pd.DataFrame:
    """One model in the bundled format: `client` (str), `t_seconds`, `rate`, `cv` (float64)."""
    df = read_csv(path, dtype={"client": str})
    require_columns(df, COLUMNS, path)
    out = _numeric(df, path, COLUMNS[1:], line_offset=2)
    clients = df["client"].astype("string").str.strip()
    if clients.isna().any() or (clients == "").any():
        row = int(np.flatnonzero((clients.isna() | (clients == "")).to_numpy())[0])
        raise HarmonyInputError(f"{path}: column 'client' is empty at line {row + 2}")
    out.insert(0, "client", clients.astype(str).to_numpy())
    return out


def read_upstream(folder: Path, files: list[Path]) -> pd.DataFrame:
    """Upstream chunk files (no header, six columns) of one model, concatenated in the bundled layout."""
    parts = []
    for file in files:
        df = read_csv(file, header=None)
        if df.shape[1] != len(UPSTREAM_COLUMNS):
            raise HarmonyInputError(f"{file}: expected {len(UPSTREAM_COLUMNS)} columns "
                                    f"({', '.join(UPSTREAM_COLUMNS)}), found {df.shape[1]}")
        df.columns = UPSTREAM_COLUMNS
        part = _numeric(df, file, COLUMNS[1:], line_offset=1)
        part.insert(0, "client", CHUNK.search(file.name).group(1))
        parts.append(part)
    if not parts:
        raise HarmonyInputError(f"{folder}: no chunk-<client>-trace.csv files")
    return pd.concat(parts, ignore_index=True)


def _chunks(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if CHUNK.search(p.name)),
                  key=lambda p: int(CHUNK.search(p.name).group(1)))


def _stem(path: Path) -> str:
    return path.name.removesuffix(".gz").removesuffix(".csv")


def read_model(path: Path | None, model: str | None) -> tuple[pd.DataFrame, Path, str]:
    """The model's rows (bundled layout), the file or folder they came from, and the model's name.

    A file is one model (named `model`, else after the file); a folder holding chunk files is one model
    (named `model`, else after the folder); otherwise the folder holds `<model>.csv.gz` or `<model>/`."""
    if path is None:
        raise HarmonyInputError("dataset 'servegen' needs --path (a folder or a <model>.csv.gz file)")
    if path.is_file():
        return read_bundled(path), path, model or _stem(path)
    if _chunks(path):
        return read_upstream(path, _chunks(path)), path, model or path.name
    model = model or DEFAULT_MODEL
    for name in (f"{model}.csv.gz", f"{model}.csv"):
        if (path / name).is_file():
            return read_bundled(path / name), path / name, model
    for folder in (path / model, path / "language" / model):
        if folder.is_dir():
            return read_upstream(folder, _chunks(folder)), folder, model
    raise HarmonyInputError(
        f"{path}: no model {model!r} (--option model=...): expected {model}.csv.gz or "
        f"{model}/chunk-<client>-trace.csv there")


# ------------------------------------------------------------------------------------------------ grid
def to_grid(rows: pd.DataFrame, source: Path) -> tuple[pd.DatetimeIndex, list[str], np.ndarray, np.ndarray]:
    """Rates and CVs as [window, client] arrays (NaN where a client has no row); clients in id order."""
    step = WINDOW.total_seconds()
    windows = rows["t_seconds"] / step
    if not np.allclose(windows, np.round(windows)):
        row = int(np.flatnonzero(~np.isclose(windows, np.round(windows)))[0])
        raise HarmonyInputError(f"{source}: column 't_seconds' has {rows['t_seconds'].iloc[row]:g}, "
                                f"not a multiple of {step:g} s (10-minute windows)")
    # a span the grid can hold (which also keeps EPOCH + t_seconds a timestamp pandas represents)
    span = pd.Timedelta(seconds=float(np.ptp(rows["t_seconds"].to_numpy())))
    check_steps(EPOCH, EPOCH + span, WINDOW, str(source))
    pos = np.round(windows.to_numpy()).astype(np.int64)
    first = int(pos.min())
    pos -= first
    clients = sorted(rows["client"].unique(), key=lambda c: (not c.isdigit(), int(c) if c.isdigit() else 0, c))
    col = pd.Index(clients).get_indexer(rows["client"])
    flat = pos * len(clients) + col
    if len(np.unique(flat)) != len(flat):
        dup = rows[pd.Series(flat).duplicated().to_numpy()].iloc[0]
        raise HarmonyInputError(f"{source}: client {dup['client']} has two rows for t_seconds "
                                f"{dup['t_seconds']:g} (column 't_seconds')")
    n = int(pos.max()) + 1
    rate = np.full((n, len(clients)), np.nan)
    cv = np.full((n, len(clients)), np.nan)
    rate[pos, col] = rows["rate"].to_numpy()
    cv[pos, col] = rows["cv"].to_numpy()
    index = pd.date_range(EPOCH + first * WINDOW, periods=n, freq=WINDOW)
    return index, clients, rate, cv


def select_clients(clients: list[str], rate: np.ndarray, selection: str | int) -> list[int]:
    """Column positions of the `clients` option: all / top:N (largest total volume first) / ids.

    `all` and `top:N` skip clients that never send a request (m-mid's client 97): no workload to model,
    and their CV would be NaN throughout. Named ids are taken as given."""
    volume = np.nansum(rate, axis=0)
    by_volume = sorted((i for i in range(len(clients)) if volume[i] > 0), key=lambda i: (-volume[i], i))
    text = str(selection).strip()
    if text == "all":
        return by_volume
    if text.startswith("top:"):
        count = text.removeprefix("top:").strip()
        if not count.isdigit() or int(count) < 1:
            raise HarmonyInputError(f"clients={text!r}: top:N needs a positive integer N (--option clients=top:N)")
        return by_volume[: int(count)]
    wanted = [c.strip().removeprefix("client-") for c in text.split(",") if c.strip()]  # ids or series names
    if not wanted:
        raise HarmonyInputError(f"clients={text!r}: expected all, top:N or comma-separated client ids")
    known = {c: i for i, c in enumerate(clients)}
    for c in wanted:
        if c not in known:
            raise HarmonyInputError(f"clients={text!r}: no client {c!r} in this model (--option clients=...)")
    if len(set(wanted)) != len(wanted):
        raise HarmonyInputError(f"clients={text!r}: a client id is repeated")
    return [known[c] for c in wanted]


def load(path: Path | None, model: str | None = None, series: str = "aggregate",
         clients: str | int = "all") -> TelemetryFrame:
    """The model's clients as one aggregate series or one series per client, on the 10-minute grid."""
    if series not in ("aggregate", "clients"):
        raise HarmonyInputError(f"series={series!r}: expected aggregate or clients (--option series=...)")
    rows, source, model = read_model(path, None if model is None else str(model))
    if rows.empty:
        raise HarmonyInputError(f"{source}: no rows")
    index, ids, rate, cv = to_grid(rows, source)
    # A window where no client of the model sent anything is a collection gap, not zero demand.
    gap = ~(np.nan_to_num(rate) > 0).any(axis=1)
    chosen = select_clients(ids, rate, clients)
    rate, cv = rate[:, chosen], cv[:, chosen]
    # The trace writes cv 0 where a client sent nothing; undefined, so NaN.
    cv = np.where(rate > 0, cv, np.nan)
    if series == "clients":
        values = np.stack([rate, cv], axis=2)
        values[gap] = np.nan
        names = [f"client-{ids[i]}" for i in chosen]
        frame = TelemetryFrame(index, values, names, CLIENT_INDICATORS, interval=WINDOW, source=str(source))
    else:
        total = np.nansum(rate, axis=1)
        active = (rate > 0).sum(axis=1).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_cv = np.nansum(rate * np.nan_to_num(cv), axis=1) / total
        values = np.stack([total, active, np.where(total > 0, mean_cv, np.nan)], axis=1)[:, None, :]
        values[gap] = np.nan
        frame = TelemetryFrame(index, values, [model], AGGREGATE_INDICATORS, interval=WINDOW, source=str(source))
    return frame


SOURCE = DatasetSource(
    name="servegen",
    description="Alibaba Model Studio LLM serving (ServeGen, 2025): per-client request rates, 14 days, 10 min",
    default_path="servegen",
    loader=load,
    options={
        "model": "m-large (default) or m-mid; with --path, any model folder or <model>.csv.gz there",
        "series": "aggregate (default: one series, the sum of the clients' rates) or clients (one per client)",
        "clients": "all (default), top:N (the N largest by total volume) or comma-separated client ids",
    },
)
