"""Block-bootstrap intervals for backtest figures: breach rate and GPU-hours, alone and paired.

Ticks of a trace are not independent (a burst breaches several ticks in a row; a quiet night costs the same
every tick), so intervals resample whole blocks of consecutive ticks (Kunsch 1989's moving-block idea with
non-overlapping blocks): one day per block, or one hour on traces shorter than three days. Each replicate
draws as many blocks as the span holds, with replacement, and recomputes the figure over them. Paired
intervals (harmony minus a rival) draw the same blocks for both, so what the two share (the trace's hard and
easy days) cancels and only their difference varies.

Pure numpy over per-tick arrays: breaches [T] (bool), observed [T] (bool: demand known), provisioned [T]
(replicas paid for during the tick).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DAY_S = 86400.0
HOUR_S = 3600.0
#: traces shorter than this many days are resampled in blocks of one hour instead of one day
SHORT_TRACE_DAYS = 3.0
REPLICATES = 1000
LEVEL = 0.90


def block_ticks(n_ticks: int, interval_s: float) -> int:
    """Ticks per block: one day, or one hour on a span shorter than three days (at least one tick)."""
    span_s = n_ticks * interval_s
    block_s = DAY_S if span_s >= SHORT_TRACE_DAYS * DAY_S else HOUR_S
    return max(1, int(round(block_s / interval_s)))


def block_draws(n_ticks: int, block: int, replicates: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Tick indices of each replicate: blocks drawn with replacement until they cover n ticks, cut to n (the
    last block of a span may be partial)."""
    starts = np.arange(0, n_ticks, block)
    out = []
    for _ in range(replicates):
        parts, total = [], 0
        while total < n_ticks:
            s = int(starts[rng.integers(len(starts))])
            parts.append(np.arange(s, min(s + block, n_ticks)))
            total += len(parts[-1])
        out.append(np.concatenate(parts)[:n_ticks])
    return out


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.estimate:.4g} [{self.low:.4g}, {self.high:.4g}]"


def _interval(estimate: float, replicates: np.ndarray, level: float = LEVEL) -> Interval:
    tail = (1 - level) / 2
    lo, hi = np.nanquantile(replicates, [tail, 1 - tail]) if np.isfinite(replicates).any() else (np.nan, np.nan)
    return Interval(float(estimate), float(lo), float(hi))


def breach_rate(breaches: np.ndarray, observed: np.ndarray, idx: np.ndarray | None = None) -> float:
    b, o = (breaches, observed) if idx is None else (breaches[idx], observed[idx])
    return float(b.sum() / o.sum()) if o.sum() else float("nan")


def gpu_hours(provisioned: np.ndarray, interval_s: float, idx: np.ndarray | None = None) -> float:
    p = provisioned if idx is None else provisioned[idx]
    return float(p.sum() * interval_s / 3600.0)


@dataclass(frozen=True)
class Figures:
    """One policy's breach rate and GPU-hours on a span, with block-bootstrap intervals."""

    breach_rate: Interval
    gpu_hours: Interval


def figures(breaches: np.ndarray, observed: np.ndarray, provisioned: np.ndarray, interval_s: float,
            draws: list[np.ndarray]) -> Figures:
    rates = np.array([breach_rate(breaches, observed, i) for i in draws])
    hours = np.array([gpu_hours(provisioned, interval_s, i) for i in draws])
    return Figures(_interval(breach_rate(breaches, observed), rates),
                   _interval(gpu_hours(provisioned, interval_s), hours))


def paired(a: tuple[np.ndarray, np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray, np.ndarray],
           interval_s: float, draws: list[np.ndarray]) -> Figures:
    """Intervals of a - b (breach rate and GPU-hours), each replicate drawing the same blocks for both."""
    (ba, oa, pa), (bb, ob, pb) = a, b
    rates = np.array([breach_rate(ba, oa, i) - breach_rate(bb, ob, i) for i in draws])
    hours = np.array([gpu_hours(pa, interval_s, i) - gpu_hours(pb, interval_s, i) for i in draws])
    return Figures(_interval(breach_rate(ba, oa) - breach_rate(bb, ob), rates),
                   _interval(gpu_hours(pa, interval_s) - gpu_hours(pb, interval_s), hours))
