"""TelemetryFrame: a regular time grid of telemetry, timestamps x series x indicators.

Every dataset source and (later) the Prometheus source produce one. It keeps three things together that
models need and that the published HARMONY code kept apart (and misaligned): the values, the indicator
names, and each indicator's hierarchy level.

Hierarchy levels (DESIGN.md, "Forecaster"): 1 = service demand (requests, load), 2 = compute and memory,
3 = I/O and network. Lower numbers are higher in the hierarchy and condition the levels below them.

Missing data is NaN and stays NaN unless `fill_gaps` is asked to bridge short gaps; longer gaps are
reported, never invented.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from harmony.errors import HarmonyInputError

LEVEL_DEMAND = 1
LEVEL_COMPUTE = 2
LEVEL_IO = 3

#: Most rows a regular grid may have: 10 million steps (19 years of minutes, 4 months of seconds), already
#: gigabytes with a few series and indicators. More is a wild timestamp or an interval too fine for the data,
#: and would end in a MemoryError.
MAX_STEPS = 10_000_000
#: Largest magnitude a telemetry value may have. No rate, count or byte counter comes near 1e30 (the
#: bundled data peaks at 5e16, a nanosecond CPU counter); a value beyond it is a corrupt sample, and a
#: single one would squash a min-max scaled window to zero (and overflow sums and squares near 1e308).
MAX_ABS_VALUE = 1e30


@dataclass(frozen=True)
class Indicator:
    """One telemetry indicator.

    name: the column / metric name as the source spells it.
    level: hierarchy level (1 = service demand, 2 = compute/memory, 3 = I/O/network).
    unit: a base unit ("requests/s", "bytes", "percent", "gpus", "1" for dimensionless).
    cumulative: True for monotone counters (with resets); `TelemetryFrame.difference` turns them into rates.
    """

    name: str
    level: int = LEVEL_DEMAND
    unit: str = "1"
    cumulative: bool = False


@dataclass(frozen=True)
class Gap:
    """A run of consecutive missing steps of one indicator of one series."""

    series: str
    indicator: str
    start: pd.Timestamp
    end: pd.Timestamp  # last missing timestamp (inclusive)
    steps: int
    filled: bool = False


@dataclass(frozen=True)
class Split:
    """Chronological train / validation / test parts of one frame."""

    train: TelemetryFrame
    validation: TelemetryFrame
    test: TelemetryFrame


def parse_interval(interval: str | pd.Timedelta) -> pd.Timedelta:
    try:
        td = pd.Timedelta(interval)
    except (ValueError, TypeError) as exc:
        raise HarmonyInputError(f"interval {interval!r} is not a duration (try '10s', '1min', '10min')") from exc
    if pd.isna(td):
        raise HarmonyInputError(f"interval {interval!r} is not a duration (try '10s', '1min', '10min')")
    if td <= pd.Timedelta(0):
        raise HarmonyInputError(f"interval {interval!r} must be positive")
    return td


def check_steps(start: pd.Timestamp, end: pd.Timestamp, step: pd.Timedelta, source: str = "") -> int:
    """The rows of a regular `step` grid from `start` to `end` (inclusive), refused above MAX_STEPS before
    anything that size is allocated (a wild timestamp, or `--interval 1ns`)."""
    rows = int((pd.Timestamp(end) - pd.Timestamp(start)) // step) + 1
    if rows > MAX_STEPS:
        where = f"{source}: " if source else ""
        raise HarmonyInputError(
            f"{where}a grid of {compact_duration(step)} steps from {start} to {end} has {rows:,} rows, more than "
            f"{MAX_STEPS:,}; pass a coarser --interval, or check the timestamps")
    return rows


def compact_duration(step: pd.Timedelta) -> str:
    """A duration in its largest whole unit: 1ns, 250ms, 10s, 10min, 1h, 7d."""
    for unit, size in (("d", 86_400 * 10**9), ("h", 3_600 * 10**9), ("min", 60 * 10**9), ("s", 10**9),
                       ("ms", 10**6), ("us", 10**3)):
        if step.value % size == 0:
            return f"{step.value // size}{unit}"
    return f"{step.value}ns"


class TelemetryFrame:
    """Telemetry on a regular time grid.

    values: float64 array [time, series, indicators]; NaN marks a missing sample.
    index: the timestamps, strictly increasing with a constant step (`interval`).
    series: names of the workloads / containers. indicators: `Indicator`s in column order.
    source: where the data came from (a file or folder), quoted in error messages.
    """

    def __init__(
        self,
        index: pd.DatetimeIndex,
        values: np.ndarray,
        series: Sequence[str],
        indicators: Sequence[Indicator],
        *,
        interval: str | pd.Timedelta | None = None,
        source: str = "",
    ) -> None:
        index = pd.DatetimeIndex(index).as_unit("ns")  # pandas 3 keeps the parsed unit; step maths needs ns
        values = np.array(values, dtype=np.float64, copy=True)
        self.source = source
        where = f" in {source}" if source else ""
        if values.ndim != 3 or values.shape != (len(index), len(series), len(indicators)):
            raise ValueError(
                f"values shape {values.shape} does not match (time={len(index)}, series={len(series)}, "
                f"indicators={len(indicators)}){where}"
            )
        if index.has_duplicates:
            dup = index[index.duplicated()][0]
            raise HarmonyInputError(f"duplicate timestamp {dup}{where}")
        if not index.is_monotonic_increasing:
            pos = int(np.flatnonzero(np.diff(index.asi8) < 0)[0]) + 1
            raise HarmonyInputError(f"timestamps are not increasing at row {pos} ({index[pos]}){where}")
        if len(set(series)) != len(series):
            raise HarmonyInputError(f"duplicate series names{where}: {list(series)}")
        names = [ind.name for ind in indicators]
        if len(set(names)) != len(names):
            raise HarmonyInputError(f"duplicate indicator names{where}: {names}")
        if interval is None:
            if len(index) < 2:
                raise HarmonyInputError(f"cannot infer the interval of fewer than two timestamps{where}")
            steps = np.diff(index.asi8)
            interval = pd.Timedelta(int(steps.min()), unit="ns")
        self.interval = parse_interval(interval)
        if len(index) > 1:
            steps = np.diff(index.asi8)
            if not np.all(steps == self.interval.value):
                bad = int(np.flatnonzero(steps != self.interval.value)[0]) + 1
                raise ValueError(
                    f"index is not regular at {index[bad]} (step {pd.Timedelta(int(steps[bad - 1]))}, "
                    f"interval {self.interval}){where}; build frames with TelemetryFrame.from_samples"
                )
        self.index = index
        self._values = values
        self._values.flags.writeable = False
        self.series = tuple(str(s) for s in series)
        self.indicators = tuple(indicators)

    # ----------------------------------------------------------------------------------------------
    # construction
    @classmethod
    def from_samples(
        cls,
        samples: pd.DataFrame,
        interval: str | pd.Timedelta,
        indicators: Sequence[Indicator],
        *,
        time: str = "timestamp",
        series: str | None = "series",
        how: str | dict[str, str] = "mean",
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
        series_name: str = "0",
        source: str = "",
    ) -> TelemetryFrame:
        """Bin irregular samples onto a regular grid.

        samples: wide rows (a time column, optionally a series column, one column per indicator).
        Without a series column every row belongs to one series called `series_name`.
        Each sample falls into the bin `floor(t / interval)`; a bin with several samples is aggregated
        with `how` ("mean", "sum", "max", "min", "last", or a dict per indicator); an empty bin is NaN.
        """
        step = parse_interval(interval)
        names = [ind.name for ind in indicators]
        where = f" in {source}" if source else ""
        missing = [c for c in [time, *([series] if series else []), *names] if c not in samples.columns]
        if missing:
            raise HarmonyInputError(f"missing column {missing[0]!r}{where}")
        df = samples[[time, *([series] if series else []), *names]].copy()
        df[time] = pd.to_datetime(df[time])
        df["_bin"] = df[time].dt.floor(step)
        if series is None:
            df["_series"] = series_name
        else:
            df["_series"] = df[series].astype(str)
        hows = how if isinstance(how, dict) else dict.fromkeys(names, how)
        grouped = df.groupby(["_bin", "_series"], sort=True)[names].agg(hows)
        lo = grouped.index.get_level_values(0).min() if start is None else pd.Timestamp(start).floor(step)
        hi = grouped.index.get_level_values(0).max() if end is None else pd.Timestamp(end).floor(step)
        if pd.isna(lo):
            raise HarmonyInputError(f"no samples{where}")
        check_steps(lo, hi, step, source)
        index = pd.date_range(lo, hi, freq=step)
        series_names = sorted(df["_series"].unique())
        values = np.full((len(index), len(series_names), len(names)), np.nan)
        for s_pos, s_name in enumerate(series_names):
            part = grouped.xs(s_name, level="_series").reindex(index)
            values[:, s_pos, :] = part[names].to_numpy(dtype=np.float64, copy=True)
        return cls(index, values, series_names, indicators, interval=step, source=source)

    # ----------------------------------------------------------------------------------------------
    # views
    @property
    def values(self) -> np.ndarray:
        """Read-only [time, series, indicators] array (copy it before writing)."""
        return self._values

    @property
    def indicator_names(self) -> tuple[str, ...]:
        return tuple(ind.name for ind in self.indicators)

    @property
    def levels(self) -> tuple[int, ...]:
        return tuple(ind.level for ind in self.indicators)

    @property
    def start(self) -> pd.Timestamp:
        return self.index[0]

    @property
    def end(self) -> pd.Timestamp:
        return self.index[-1]

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        return (
            f"TelemetryFrame({len(self)} x {self.interval} from {self.start} to {self.end}, "
            f"series={len(self.series)}, indicators={list(self.indicator_names)})"
        )

    def with_values(self, values: np.ndarray, indicators: Sequence[Indicator] | None = None) -> TelemetryFrame:
        """A frame on the same grid and series with new values (e.g. scaled)."""
        return TelemetryFrame(
            self.index,
            values,
            self.series,
            self.indicators if indicators is None else indicators,
            interval=self.interval,
            source=self.source,
        )

    def indicator_position(self, name: str) -> int:
        try:
            return self.indicator_names.index(name)
        except ValueError:
            raise HarmonyInputError(
                f"unknown indicator {name!r}; known: {', '.join(self.indicator_names)}"
            ) from None

    def select(
        self, *, series: Iterable[str] | None = None, indicators: Iterable[str] | None = None
    ) -> TelemetryFrame:
        """A frame with only the named series and/or indicators, in the order given."""
        s_pos = list(range(len(self.series)))
        if series is not None:
            wanted = list(series)
            unknown = [s for s in wanted if s not in self.series]
            if unknown:
                raise HarmonyInputError(f"unknown series {unknown[0]!r}; known: {', '.join(self.series)}")
            s_pos = [self.series.index(s) for s in wanted]
        i_pos = list(range(len(self.indicators)))
        if indicators is not None:
            i_pos = [self.indicator_position(name) for name in indicators]
        return TelemetryFrame(
            self.index,
            self._values[:, s_pos][:, :, i_pos],
            [self.series[p] for p in s_pos],
            [self.indicators[p] for p in i_pos],
            interval=self.interval,
            source=self.source,
        )

    def slice(self, start: int, stop: int) -> TelemetryFrame:
        """Rows [start, stop) by position."""
        return TelemetryFrame(
            self.index[start:stop],
            self._values[start:stop],
            self.series,
            self.indicators,
            interval=self.interval,
            source=self.source,
        )

    def trim(self) -> TelemetryFrame:
        """Drop leading and trailing rows where every value is missing (e.g. a series that starts late)."""
        observed = ~np.all(np.isnan(self._values), axis=(1, 2))
        if not observed.any():
            return self.slice(0, 0)
        rows = np.flatnonzero(observed)
        return self.slice(int(rows[0]), int(rows[-1]) + 1)

    def series_frame(self, name: str) -> TelemetryFrame:
        """One series, trimmed to the span where it has data."""
        return self.select(series=[name]).trim()

    def to_long(self) -> pd.DataFrame:
        """Rows of (timestamp, series, indicator, value), missing samples left out."""
        t, s, i = np.meshgrid(
            np.arange(len(self)), np.arange(len(self.series)), np.arange(len(self.indicators)), indexing="ij"
        )
        flat = self._values.reshape(-1)
        keep = ~np.isnan(flat)
        return pd.DataFrame(
            {
                "timestamp": self.index.to_numpy()[t.reshape(-1)[keep]],
                "series": np.array(self.series, dtype=object)[s.reshape(-1)[keep]],
                "indicator": np.array(self.indicator_names, dtype=object)[i.reshape(-1)[keep]],
                "value": flat[keep],
            }
        )

    # ----------------------------------------------------------------------------------------------
    # checks
    def require_observed(self) -> TelemetryFrame:
        """Raise if any indicator of any series has no observed value at all (an all-NaN column)."""
        observed = ~np.all(np.isnan(self._values), axis=0)  # [series, indicators]
        if not observed.all():
            s, i = (int(v[0]) for v in np.nonzero(~observed))
            where = f" in {self.source}" if self.source else ""
            raise HarmonyInputError(
                f"indicator {self.indicator_names[i]!r} of series {self.series[s]!r} is all NaN{where}"
            )
        return self

    def require_finite(self) -> TelemetryFrame:
        """Raise at the first infinite value, or one beyond MAX_ABS_VALUE, naming the indicator, the series,
        the timestamp and the source; NaN (missing) is allowed."""
        bad = np.isinf(self._values) | (np.abs(np.nan_to_num(self._values)) > MAX_ABS_VALUE)
        if bad.any():
            t, s, i = (int(v[0]) for v in np.nonzero(bad))
            where = f"{self.source}: " if self.source else ""
            raise HarmonyInputError(
                f"{where}indicator {self.indicator_names[i]!r} of series {self.series[s]!r} is "
                f"{self._values[t, s, i]:g} at {self.index[t]}; telemetry values must be finite and within "
                f"+-{MAX_ABS_VALUE:g}")
        return self

    def gaps(self) -> list[Gap]:
        """Every run of consecutive missing samples, per series and indicator.

        Only the span in which a series reports anything counts: rows before a series' first observation
        or after its last (a container that started late, frames aligned on a union of spans) are not
        gaps. A run at the edge of that span, missing in some indicators only, is a gap."""
        found: list[Gap] = []
        missing = np.isnan(self._values)
        for s in range(len(self.series)):
            lo, hi = self._reporting_span(s)
            for i in range(len(self.indicators)):
                for start, stop in _runs(missing[lo:hi, s, i]):
                    start, stop = start + lo, stop + lo
                    found.append(
                        Gap(self.series[s], self.indicator_names[i], self.index[start], self.index[stop - 1],
                            stop - start)
                    )
        return found

    def _reporting_span(self, s: int) -> tuple[int, int]:
        """[first, last + 1) rows in which series s reports any indicator ((0, 0) if never)."""
        rows = np.flatnonzero(~np.isnan(self._values[:, s, :]).all(axis=1))
        return (int(rows[0]), int(rows[-1]) + 1) if rows.size else (0, 0)

    def missing_fraction(self) -> dict[str, float]:
        """Fraction of missing samples per indicator, over every series' reporting span (see `gaps`)."""
        missing = np.zeros(len(self.indicators))
        total = 0
        for s in range(len(self.series)):
            lo, hi = self._reporting_span(s)
            missing += np.isnan(self._values[lo:hi, s, :]).sum(axis=0)
            total += hi - lo
        frac = missing / total if total else missing
        return dict(zip(self.indicator_names, (float(f) for f in frac), strict=True))

    # ----------------------------------------------------------------------------------------------
    # transforms
    def resample(self, interval: str | pd.Timedelta, how: str = "mean") -> TelemetryFrame:
        """Put the frame on another grid.

        A coarser interval must be a whole multiple of the current one; bins aggregate with `how`
        ("mean", "sum", "max", "min", "last"), ignoring NaN, and a bin with nothing observed stays NaN.
        A finer interval places each sample on its own timestamp and leaves the new steps NaN, so that
        `fill_gaps` decides (and reports) what gets interpolated.
        """
        step = parse_interval(interval)
        if step == self.interval:
            return self
        if step > self.interval:
            if step.value % self.interval.value:
                raise HarmonyInputError(
                    f"interval {step} is not a whole multiple of the frame's interval {self.interval}"
                )
            wide = pd.DataFrame(
                self._values.reshape(len(self), -1), index=self.index
            )
            agg = wide.resample(step, origin="epoch").agg(how)
            if how in ("sum",):
                # pandas sums an all-NaN bin to 0; an empty bin is missing, not zero.
                counts = wide.notna().resample(step, origin="epoch").sum()
                agg = agg.where(counts > 0)
            values = agg.to_numpy(dtype=np.float64, copy=True).reshape(len(agg), *self._values.shape[1:])
            return TelemetryFrame(agg.index, values, self.series, self.indicators, interval=step,
                                  source=self.source)
        check_steps(self.start.floor(step), self.end, step, self.source)
        index = pd.date_range(self.start.floor(step), self.end, freq=step)
        values = np.full((len(index), *self._values.shape[1:]), np.nan)
        pos = index.get_indexer(self.index)
        values[pos[pos >= 0]] = self._values[pos >= 0]
        return TelemetryFrame(index, values, self.series, self.indicators, interval=step, source=self.source)

    def fill_gaps(self, max_gap_steps: int) -> tuple[TelemetryFrame, list[Gap]]:
        """Linearly interpolate interior gaps of at most `max_gap_steps` missing steps.

        Returns the new frame and every gap found, each marked `filled` or not. Gaps longer than the bound,
        and gaps at the start or end (nothing to interpolate towards), stay NaN: they are reported, never
        invented.
        """
        if max_gap_steps < 0:
            raise HarmonyInputError(f"max_gap_steps must be >= 0, got {max_gap_steps}")
        values = self._values.copy()
        report: list[Gap] = []
        n = len(self)
        for gap in self.gaps():
            s = self.series.index(gap.series)
            i = self.indicator_names.index(gap.indicator)
            start = self.index.get_loc(gap.start)
            stop = start + gap.steps
            interior = start > 0 and stop < n
            fill = interior and gap.steps <= max_gap_steps
            if fill:
                left, right = values[start - 1, s, i], values[stop, s, i]
                frac = np.arange(1, gap.steps + 1) / (gap.steps + 1)
                values[start:stop, s, i] = left + (right - left) * frac
            report.append(replace(gap, filled=fill))
        return self.with_values(values), report

    def difference(self, indicators: Iterable[str] | None = None) -> TelemetryFrame:
        """Turn cumulative counters into per-step increases.

        A negative step is a counter reset: the increase is then the value after the reset (the counter
        restarted from zero), as Prometheus' `increase()` counts it. The first step has no predecessor and
        becomes NaN. Indicators default to those marked `cumulative`.
        """
        names = (
            [ind.name for ind in self.indicators if ind.cumulative] if indicators is None else list(indicators)
        )
        values = self._values.copy()
        new_inds = list(self.indicators)
        for name in names:
            i = self.indicator_position(name)
            col = self._values[:, :, i]
            inc = np.full_like(col, np.nan)
            if len(col) > 1:
                step = col[1:] - col[:-1]
                inc[1:] = np.where(step < 0, col[1:], step)
            values[:, :, i] = inc
            ind = self.indicators[i]
            new_inds[i] = replace(ind, cumulative=False, unit=f"{ind.unit}/step")
        return self.with_values(values, new_inds)

    def split(self, train: float = 0.7, test: float = 0.2) -> Split:
        """Chronological split: the first `int(n * train)` rows train, the last `int(n * test)` rows test,
        the rest (between them) validation. This is the HARMONY protocol's 70 / 10 / 20 arithmetic."""
        if not (0 < train < 1 and 0 < test < 1 and train + test < 1):
            raise HarmonyInputError(f"split fractions train={train}, test={test} must be in (0, 1) with sum < 1")
        n = len(self)
        n_train, n_test = int(n * train), int(n * test)
        if n_train < 1 or n_test < 1 or n - n_train - n_test < 1:
            raise HarmonyInputError(f"{n} rows are too few to split{' in ' + self.source if self.source else ''}")
        return Split(self.slice(0, n_train), self.slice(n_train, n - n_test), self.slice(n - n_test, n))

    @staticmethod
    def align(frames: Sequence[TelemetryFrame], how: str = "inner") -> list[TelemetryFrame]:
        """Put frames of the same interval on one time index: the shared span (`inner`) or the union
        (`outer`, missing steps NaN)."""
        if not frames:
            return []
        step = frames[0].interval
        if any(f.interval != step for f in frames):
            raise HarmonyInputError("frames to align have different intervals; resample them first")
        if how == "inner":
            lo, hi = max(f.start for f in frames), min(f.end for f in frames)
        elif how == "outer":
            lo, hi = min(f.start for f in frames), max(f.end for f in frames)
        else:
            raise HarmonyInputError(f"align how={how!r} must be 'inner' or 'outer'")
        index = pd.date_range(lo, hi, freq=step) if lo <= hi else pd.DatetimeIndex([])
        out = []
        for f in frames:
            values = np.full((len(index), *f.values.shape[1:]), np.nan)
            pos = f.index.get_indexer(index)
            values[pos >= 0] = f.values[pos[pos >= 0]]
            out.append(TelemetryFrame(index, values, f.series, f.indicators, interval=step, source=f.source))
        return out

    @staticmethod
    def concat_indicators(frames: Sequence[TelemetryFrame], how: str = "outer") -> TelemetryFrame:
        """Join frames with the same series side by side (their indicators concatenated)."""
        aligned = TelemetryFrame.align(frames, how=how)
        series = aligned[0].series
        if any(f.series != series for f in aligned):
            raise HarmonyInputError("frames to join side by side must have the same series")
        return TelemetryFrame(
            aligned[0].index,
            np.concatenate([f.values for f in aligned], axis=2),
            series,
            [ind for f in aligned for ind in f.indicators],
            interval=aligned[0].interval,
            source=aligned[0].source,
        )


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True in a 1-d boolean array."""
    if not mask.any():
        return []
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.diff(padded)
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))
