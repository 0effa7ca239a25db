"""A seeded generator of GPU-serving demand (`--dataset synthetic`): no files, any size, reproducible.

Per series (a GPU-served workload), on a regular grid starting Monday 2024-01-01 00:00:
- `requests` (level 1, requests/s): base rate x daily cycle (random amplitude, second harmonic and phase,
  i.e. a random time zone) x weekly cycle (a weekend dip of random depth, ramped over 4 hours) x regime
  shifts (lasting level changes at random times, about one per four days) x bursts (short spikes that jump
  by 20-200% and decay linearly over ~15 minutes, about three a day) x heavy-tailed noise (exp of a
  scaled Student-t with 5 degrees of freedom, clipped at +-8).
- `gpu_busy` (level 2, gpus): a fleet of G GPUs sized for the series' noise-free peak with 10-50% headroom;
  busy GPUs = G * tanh(lagged requests / capacity), a saturating function of the request rate averaged
  over 3 steps and delayed by 30-180 s, plus noise.
- `gpu_memory_bytes` (level 2, bytes): model weights on every GPU plus KV cache growing with busy GPUs.
- `queue_size` (level 1, requests): the backlog of a fluid queue served at the fleet capacity, which grows
  while requests exceed capacity (during bursts) and drains afterwards (Lindley recursion).
- `network_bytes` (level 3, bytes/s): request payloads plus background traffic.

Everything is vectorised over [time, series]; 1,000 series x 10,000 steps take a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harmony.errors import HarmonyInputError
from harmony.telemetry.datasets.base import DatasetSource
from harmony.telemetry.frame import (
    LEVEL_COMPUTE,
    LEVEL_DEMAND,
    LEVEL_IO,
    MAX_STEPS,
    Indicator,
    TelemetryFrame,
    compact_duration,
    parse_interval,
)

START = pd.Timestamp("2024-01-01 00:00")  # a Monday
DAY = 86_400.0
WEEK_HOURS = 168.0
NOISE_DF = 5.0  # Student-t degrees of freedom of the demand noise (excess kurtosis 6)
GIB = 2.0**30

INDICATORS: tuple[Indicator, ...] = (
    Indicator("requests", LEVEL_DEMAND, "requests/s"),
    Indicator("gpu_busy", LEVEL_COMPUTE, "gpus"),
    Indicator("gpu_memory_bytes", LEVEL_COMPUTE, "bytes"),
    Indicator("queue_size", LEVEL_DEMAND, "requests"),
    Indicator("network_bytes", LEVEL_IO, "bytes/s"),
)


@dataclass(frozen=True)
class Simulation:
    """Generated values and, for checks, the demand noise and per-series fleet."""

    index: pd.DatetimeIndex
    values: np.ndarray  # [time, series, indicators] in INDICATORS order
    series: tuple[str, ...]
    interval: pd.Timedelta
    noise: np.ndarray | None  # [time, series] Student-t draws in the demand (None unless asked)
    gpus: np.ndarray  # [series] provisioned GPUs
    capacity: np.ndarray  # [series] requests/s the fleet serves


def _int_option(value: object, name: str, minimum: int) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise HarmonyInputError(f"--{name} {value!r} is not an integer") from None
    if number < minimum:
        raise HarmonyInputError(f"--{name} {number} must be at least {minimum}")
    return number


def _weekend(hours: np.ndarray) -> np.ndarray:
    """1 on Saturday and Sunday, 0 on weekdays, linear ramps of 4 h around midnight; periodic.

    `hours` counts from Monday 00:00 and is overwritten (the arrays are large; no copies)."""
    # distance (hours) from the weekend's centre, Sunday 00:00 = hour 144 of the week
    hours -= 144.0 - WEEK_HOURS / 2
    np.mod(hours, WEEK_HOURS, out=hours)
    hours -= WEEK_HOURS / 2
    np.abs(hours, out=hours)
    np.subtract(26.0, hours, out=hours)
    hours /= 4.0
    return np.clip(hours, 0.0, 1.0, out=hours)


def _student_t(rng: np.random.Generator, df: float, shape: tuple[int, int]) -> np.ndarray:
    """Student-t draws as normal / sqrt(chi2 / df), in float32 for speed (about 3x numpy's standard_t)."""
    chi = rng.standard_gamma(df / 2, size=shape, dtype=np.float32)
    chi *= 2.0 / df
    np.sqrt(chi, out=chi)
    out = rng.standard_normal(size=shape, dtype=np.float32)
    out /= chi
    return out


def _impulses(rng: np.random.Generator, steps: int, n: int, per_step: float) -> tuple[np.ndarray, np.ndarray]:
    """Random event times: (step, series) arrays, a Poisson number of events per series."""
    counts = rng.poisson(per_step * steps, size=n)
    series = np.repeat(np.arange(n), counts)
    times = rng.integers(0, steps, size=series.size)
    return times, series


def simulate(
    seed: int = 0,
    series: int = 3,
    steps: int | None = None,
    interval: str | pd.Timedelta = "1min",
    keep_noise: bool = False,
) -> Simulation:
    """Generate `series` workloads over `steps` steps of `interval` (default: 7 days' worth)."""
    step = parse_interval(interval)
    dt = step.total_seconds()
    n_s = series
    n_t = steps if steps is not None else max(2, int(pd.Timedelta(days=7) // step))
    if n_t * n_s > MAX_STEPS:  # each series-step takes a few hundred bytes in the arrays below
        raise HarmonyInputError(
            f"synthetic: {n_s:,} series x {n_t:,} steps of {compact_duration(step)} is more than {MAX_STEPS:,} "
            f"series-steps; pass a coarser --interval, or fewer steps or series (--option steps=N, series=N)")
    rng = np.random.default_rng(seed)

    # per-series parameters
    base = 20.0 * np.exp(rng.normal(0.0, 0.8, n_s))  # requests/s
    tz = rng.uniform(0.0, DAY, n_s)  # phase of both cycles (seconds)
    amp1 = rng.uniform(0.3, 0.75, n_s)
    amp2 = rng.uniform(0.0, 0.15, n_s)
    phase2 = rng.uniform(0.0, 2 * np.pi, n_s)
    dip = rng.uniform(0.1, 0.5, n_s)
    noise_scale = rng.uniform(0.04, 0.12, n_s)
    per_gpu = rng.uniform(2.0, 6.0, n_s)  # requests/s one GPU serves
    headroom = rng.uniform(1.1, 1.5, n_s)
    lag_steps = np.rint(rng.uniform(30.0, 180.0, n_s) / dt).astype(np.int64)
    weights_bytes = rng.uniform(16.0, 40.0, n_s) * GIB  # per GPU
    kv_bytes = rng.uniform(2.0, 20.0, n_s) * GIB  # per busy GPU
    payload = 200e3 * np.exp(rng.normal(0.0, 0.7, n_s))  # bytes per request
    background = rng.uniform(0.02, 0.1, n_s) * base * payload  # bytes/s

    # seasonal profile [T, S]: daily harmonics by angle addition (outer products, no [T, S] sine)
    t_sec = np.arange(n_t, dtype=np.float64) * dt
    angle_t, angle_s = t_sec * (2 * np.pi / DAY), tz * (2 * np.pi / DAY)
    clean = np.multiply.outer(np.sin(angle_t), amp1 * np.cos(angle_s))
    clean += np.multiply.outer(np.cos(angle_t), amp1 * np.sin(angle_s))
    clean += np.multiply.outer(np.sin(2 * angle_t), amp2 * np.cos(2 * angle_s + phase2))
    clean += np.multiply.outer(np.cos(2 * angle_t), amp2 * np.sin(2 * angle_s + phase2))
    clean += 1.0
    weekly = np.add.outer(t_sec / 3600.0, tz / 3600.0)
    weekly = _weekend(weekly)
    weekly *= -dip
    weekly += 1.0
    clean *= weekly
    clean *= base
    del weekly

    # regime shifts: lasting multiplicative level changes
    times, which = _impulses(rng, n_t, n_s, dt / (4 * DAY))
    log_level = np.zeros((n_t, n_s))
    np.add.at(log_level, (times, which), rng.normal(0.0, 0.25, times.size))
    np.cumsum(log_level, axis=0, out=log_level)
    clean *= np.exp(log_level, out=log_level)
    del log_level

    # fleet sized for the noise-free peak
    gpus = np.ceil(clean.max(axis=0) / per_gpu * headroom)
    capacity = gpus * per_gpu

    # bursts: jump by h, decay linearly to 0 over d steps (double cumulative sum of 3 impulses each)
    times, which = _impulses(rng, n_t, n_s, dt / (8 * 3600.0))
    height = rng.uniform(0.2, 2.0, times.size)
    length = np.maximum(1, np.rint(np.exp(rng.normal(np.log(900.0), 0.5, times.size)) / dt)).astype(np.int64)
    kicks = np.zeros((n_t + 2, n_s))
    np.add.at(kicks, (times, which), height)
    np.add.at(kicks, (times + 1, which), -height - height / length)
    end = times + length + 1
    inside = end < n_t + 2
    np.add.at(kicks, (end[inside], which[inside]), height[inside] / length[inside])
    np.cumsum(kicks, axis=0, out=kicks)
    np.cumsum(kicks, axis=0, out=kicks)
    burst = kicks[:n_t]
    np.clip(burst, 0.0, None, out=burst)
    burst += 1.0

    # heavy-tailed multiplicative noise
    noise = _student_t(rng, NOISE_DF, (n_t, n_s))
    np.clip(noise, -8.0, 8.0, out=noise)
    requests = np.exp(noise * noise_scale)
    if not keep_noise:
        del noise
        noise = None
    requests *= burst
    requests *= clean
    del burst, kicks, clean

    values = np.empty((n_t, n_s, len(INDICATORS)))
    values[:, :, 0] = requests

    # gpu_busy: saturating function of the lagged, smoothed request rate
    window = 3
    total = np.zeros((n_t + 1, n_s))
    np.cumsum(requests, axis=0, out=total[1:])
    lagged = np.empty((n_t, n_s))
    t = np.arange(n_t)
    for lag in np.unique(lag_steps):
        cols = np.flatnonzero(lag_steps == lag)
        hi = np.clip(t - lag + 1, 1, n_t)  # window (lo, hi] of rows in `total`, at least the first sample
        lo = np.clip(hi - window, 0, None)
        lagged[:, cols] = (total[np.ix_(hi, cols)] - total[np.ix_(lo, cols)]) / (hi - lo)[:, None]
    del total
    busy = np.tanh(lagged / capacity, out=lagged)
    busy *= gpus
    busy *= 1.0 + 0.03 * rng.standard_normal((n_t, n_s), dtype=np.float32)
    np.clip(busy, 0.0, gpus, out=busy)
    values[:, :, 1] = busy

    # memory: weights on every GPU + KV cache with load
    memory = busy * kv_bytes
    memory *= 1.0 + 0.02 * rng.standard_normal((n_t, n_s), dtype=np.float32)
    memory += gpus * weights_bytes
    values[:, :, 2] = memory
    del busy, memory

    # queue: Lindley recursion q_t = max(0, q_{t-1} + (arrivals - capacity) * dt), vectorised
    drift = (requests - capacity) * dt
    np.cumsum(drift, axis=0, out=drift)
    floor = np.minimum.accumulate(np.minimum(drift, 0.0), axis=0)
    drift -= floor
    values[:, :, 3] = drift
    del drift, floor

    # network: payloads + background
    net = requests * payload
    net *= np.exp(0.1 * rng.standard_normal((n_t, n_s), dtype=np.float32))
    net += background
    values[:, :, 4] = net
    del net, requests

    width = max(3, len(str(n_s - 1)))
    names = tuple(f"synthetic-{i:0{width}d}" for i in range(n_s))
    index = pd.date_range(START, periods=n_t, freq=step)
    return Simulation(index, values, names, step, noise, gpus, capacity)


def load(
    path: Path | None = None,
    seed: int | str = 0,
    series: int | str = 3,
    steps: int | str | None = None,
    interval: str | pd.Timedelta = "1min",
) -> TelemetryFrame:
    """The generated workloads as a TelemetryFrame (`path` is ignored: nothing is read)."""
    sim = simulate(
        seed=_int_option(seed, "seed", 0),
        series=_int_option(series, "series", 1),
        steps=None if steps is None else _int_option(steps, "steps", 2),
        interval=interval,
    )
    return TelemetryFrame(
        sim.index, sim.values, sim.series, INDICATORS, interval=sim.interval,
        source=f"synthetic(seed={seed}, series={len(sim.series)}, steps={len(sim.index)})",
    )


SOURCE = DatasetSource(
    name="synthetic",
    description="seeded GPU-serving demand: daily/weekly cycles, bursts, regime shifts, heavy-tailed noise",
    default_path="",
    loader=load,
    options={
        "seed": "random seed (default 0); the same seed gives the same data",
        "series": "number of workloads (default 3)",
        "steps": "number of time steps (default: 7 days at the interval)",
        "interval": "grid step (default '1min')",
    },
)
