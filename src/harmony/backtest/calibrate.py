"""Offline calibration of the per-replica capacity model from history (pyro NUTS), as a NIG prior.

The online controller keeps a conjugate Normal-Inverse-Gamma posterior over the per-replica capacity c
(`harmony.decision.posteriors.CapacityPosterior`, DESIGN.md "Decision"). This module fits that model offline, with
a full Bayesian treatment in pyro, from *capacity observations*, and hands the result back as a
`CapacityPosterior` (W = 1) that the online closed-form updates continue from.

Capacity observations are "demand per ready replica at the SLA boundary": at ticks where a saturation
signal (queueing time, backlog, latency) sits at or above its q-quantile, the workload ran at the limit
its SLA tolerates, so demand / replicas there measures how much one replica serves. Ticks with missing
or non-positive demand or replicas are dropped (zero replicas make no ratio; zero demand while the queue
peaks is not a throughput measurement).

Model (Normal observations, the same likelihood the online NIG updates assume):

    c ~ LogNormal(log c0, 1)       c0: a nominal capacity, by default the median observation
    s ~ HalfNormal(c0)             observation scatter, weakly informative on the scale of c0
    x_i ~ Normal(c, s)             i = 1..n capacity observations

fitted with NUTS (Hoffman & Gelman 2014), seeded by `pyro.set_rng_seed`, so a run is reproducible.

Moment matching to NIG(mu, kappa, alpha, beta), where c | s^2 ~ N(mu, s^2/kappa), s^2 ~ InvGamma(alpha,
beta); from posterior draws of (c, s):

    mu    = E[c]
    beta  = (alpha - 1) E[s^2]                  so that E[s^2] = beta / (alpha - 1)
    alpha = 2 + E[s^2]^2 / Var[s^2]             the InvGamma whose s^2 has the fitted mean and variance
    kappa = E[s^2] / Var[c]                     the Student-t marginal of the mean, t_{2 alpha}(mu,
                                                sqrt(beta / (alpha kappa))), has variance
                                                beta / (kappa (alpha - 1)) = E[s^2] / kappa = Var[c]

so `CapacityPosterior.sample_mean` reproduces the pyro posterior mean and sd of c, and kappa reads as
"worth about kappa observations" (close to n for a weak prior). Reference: Murphy, "Conjugate Bayesian
analysis of the Gaussian distribution" (2007), section 6.

Pure functions over arrays and frames; the only I/O is `read_observations` (a CSV the user names).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harmony.decision.demand import DEMANDS
from harmony.decision.posteriors import CapacityPosterior
from harmony.errors import HarmonyInputError
from harmony.telemetry.frame import TelemetryFrame

#: Fewer observations than this give no usable estimate of the scatter s.
MIN_OBSERVATIONS = 5
#: Observations whose standard deviation is below this share of their median are refused. At zero spread
#: the posterior of s is improper (the likelihood grows without bound as s -> 0) and NUTS never ends; as
#: the spread shrinks towards it NUTS slows without bound (on two cores, 10 observations: 8 s at 1% of the
#: median, 27 s at 0.1%, past 10 minutes at 1e-6). Below 0.1% the capacity is known as well as it will be
#: measured: state it (a CSV prior, `--capacity`) rather than fit it.
MIN_RELATIVE_SPREAD = 1e-3


@dataclass(frozen=True)
class CapacitySignals:
    """Which indicators make capacity observations.

    demand: indicators summed to give demand (all in one unit).
    replicas: the count of replicas serving that demand.
    saturation: a signal that rises as the workload nears its SLA limit (queueing time, backlog, latency).
    description: why these, one line.
    """

    demand: tuple[str, ...]
    replicas: str
    saturation: str
    description: str


#: Calibration defaults per dataset.
#:
#: gentd26 (Stable Diffusion serving, ~110 GPU pods): demand = generative_qps + api_qps (requests/s, all
#: requests the gateway sees); replicas = busy_pods (pods with a non-zero GPU duty cycle); saturation =
#: queue_time_ms (mean queueing time). busy_pods, not pods_reporting: the fleet runs ~9% utilised, so
#: requests/s per *running* pod measures over-provisioning, not what a replica serves, while busy_pods
#: tracks demand (r = 0.97) and counts the pods actually serving it. busy_pods, not gpu_busy: gpu_busy is
#: GPU-equivalents of duty cycle, not a replica count; requests/s per fully busy GPU is throughput at 100%
#: duty with no latency headroom, an upper bound. Caveat: in this trace queueing time barely follows load
#: (r = 0.05), the SLA never binds, so the calibrated c is a conservative (low) capacity: a controller
#: using it over-provisions rather than breaches. The unit is requests/s per replica, not the "gpus"
#: of `harmony.decision.demand.DEMANDS["gentd26"]`: pair this prior with a requests/s demand.
CALIBRATIONS: dict[str, CapacitySignals] = {
    "gentd26": CapacitySignals(
        ("generative_qps", "api_qps"), "busy_pods", "queue_time_ms",
        "gateway requests/s per pod with a busy GPU, at ticks of peak queueing time",
    ),
}


@dataclass(frozen=True)
class CapacityObservations:
    """Capacity measurements [n] in `unit`, with how they were chosen.

    threshold: the saturation value at the chosen quantile; saturated: ticks at or above it;
    dropped: saturated ticks without a usable ratio (missing or non-positive demand or replicas).
    """

    values: np.ndarray
    unit: str
    threshold: float = float("nan")
    saturated: int = 0
    dropped: int = 0


def capacity_signals(dataset: str, demand: str | None = None, replicas: str | None = None,
                     saturation: str | None = None) -> CapacitySignals:
    """The dataset's defaults, overridden flag by flag (`--demand a,b`, `--replicas-indicator`,
    `--saturation-indicator`). A dataset without defaults takes its demand from `DEMANDS` and needs the
    other two flags."""
    base = CALIBRATIONS.get(dataset)
    names = tuple(n.strip() for n in demand.split(",") if n.strip()) if demand else ()
    if demand is not None and not names:
        raise HarmonyInputError(f"--demand {demand!r} names no indicator")
    if not names:
        if base is not None:
            names = base.demand
        elif dataset in DEMANDS:
            names = DEMANDS[dataset].indicators
        else:
            raise HarmonyInputError(f"dataset {dataset!r} has no demand definition; pass --demand INDICATOR[,..]")
    replicas = replicas or (base.replicas if base else None)
    saturation = saturation or (base.saturation if base else None)
    if replicas is None:
        raise HarmonyInputError(f"dataset {dataset!r} has no calibration defaults; pass --replicas-indicator")
    if saturation is None:
        raise HarmonyInputError(f"dataset {dataset!r} has no calibration defaults; pass --saturation-indicator")
    description = base.description if base and (names, replicas, saturation) == (
        base.demand, base.replicas, base.saturation) else f"sum of {', '.join(names)} per {replicas}"
    return CapacitySignals(names, replicas, saturation, description)


def _position(frame: TelemetryFrame, name: str, flag: str) -> int:
    try:
        return frame.indicator_position(name)
    except HarmonyInputError as exc:
        raise HarmonyInputError(f"{flag}: {exc}") from None


def _series_position(frame: TelemetryFrame, series: str | None) -> int:
    if series is None:
        if len(frame.series) > 1:
            raise HarmonyInputError(
                f"{frame.source or 'the dataset'} has {len(frame.series)} series; pick one with --series "
                f"({', '.join(frame.series)})"
            )
        return 0
    if series not in frame.series:
        raise HarmonyInputError(f"unknown series {series!r} (--series); known: {', '.join(frame.series)}")
    return frame.series.index(series)


def capacity_observations(frame: TelemetryFrame, signals: CapacitySignals, quantile: float = 0.9,
                          series: str | None = None) -> CapacityObservations:
    """Demand per replica at ticks where the saturation signal is at or above its `quantile`.

    The quantile is taken over the series' observed saturation values (NaN ignored). Fewer than
    MIN_OBSERVATIONS usable ticks is an error: such a fit would only echo the prior.
    """
    if not 0.0 < quantile < 1.0:
        raise HarmonyInputError(f"--saturation-quantile must lie in (0, 1), got {quantile}")
    s = _series_position(frame, series)
    demand_pos = [_position(frame, name, "--demand") for name in signals.demand]
    units = {frame.indicators[p].unit for p in demand_pos}
    if len(units) > 1:
        raise HarmonyInputError(f"--demand sums indicators in different units ({', '.join(sorted(units))})")
    replicas_pos = _position(frame, signals.replicas, "--replicas-indicator")
    saturation_pos = _position(frame, signals.saturation, "--saturation-indicator")

    values = frame.values[:, s, :]
    demand = values[:, demand_pos].sum(axis=1)  # NaN where any part is missing
    replicas = values[:, replicas_pos]
    saturation = values[:, saturation_pos]
    if np.isnan(saturation).all():
        raise HarmonyInputError(f"--saturation-indicator {signals.saturation!r} has no values")
    threshold = float(np.nanquantile(saturation, quantile))
    saturated = saturation >= threshold  # NaN compares False: ticks without a reading are not saturated
    usable = saturated & (demand > 0) & (replicas > 0)  # NaN compares False here too
    ratio = demand[usable] / replicas[usable]
    unit = f"{frame.indicators[demand_pos[0]].unit} per replica"
    found = CapacityObservations(ratio, unit, threshold, int(saturated.sum()), int((saturated & ~usable).sum()))
    if ratio.size < MIN_OBSERVATIONS:
        raise HarmonyInputError(
            f"only {ratio.size} capacity observations ({found.saturated} ticks with {signals.saturation} >= "
            f"{threshold:.4g}, {found.dropped} without positive {'+'.join(signals.demand)} and "
            f"{signals.replicas}); need at least {MIN_OBSERVATIONS}: lower --saturation-quantile"
        )
    _check_spread(ratio, f"{frame.source}: " if frame.source else "")
    return found


def read_observations(path: Path, column: str, unit: str = "1") -> CapacityObservations:
    """Capacity observations from one column of a CSV (empty cells skipped; all others positive numbers)."""
    from harmony.telemetry.datasets.base import read_csv, require_columns

    path = Path(path)
    if not path.is_file():
        raise HarmonyInputError(f"{path}: no such file (--observations)")
    df = read_csv(path)
    require_columns(df, [column], path)
    raw = df[column]
    num = pd.to_numeric(raw, errors="coerce")
    bad = num.isna() & raw.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise HarmonyInputError(
            f"{path}: column {column!r} has a non-numeric value {raw.iloc[row]!r} at line {row + 2}"
        )
    values = num.to_numpy(dtype=np.float64)
    wrong = ~np.isnan(values) & ~(np.isfinite(values) & (values > 0))
    if wrong.any():
        row = int(np.flatnonzero(wrong)[0])
        raise HarmonyInputError(
            f"{path}: column {column!r} has a non-positive value {values[row]:g} at line {row + 2} "
            f"(a capacity is a positive rate)"
        )
    values = values[~np.isnan(values)]
    if values.size < MIN_OBSERVATIONS:
        raise HarmonyInputError(
            f"{path}: column {column!r} has {values.size} observations; need at least {MIN_OBSERVATIONS}"
        )
    _check_spread(values, f"{path}: column {column!r}: ")
    return CapacityObservations(values, unit)


def _check_spread(x: np.ndarray, where: str = "") -> None:
    """Refuse observations that (barely) vary: see MIN_RELATIVE_SPREAD."""
    median = float(np.median(x))
    sd = float(np.std(x, ddof=1))
    if not sd >= MIN_RELATIVE_SPREAD * median:
        same = "are all" if sd == 0 else "barely vary around"
        raise HarmonyInputError(
            f"{where}the {x.size} capacity observations {same} {median:.6g} (sd {sd:.3g}, under "
            f"{MIN_RELATIVE_SPREAD:g} of the median): the scatter s cannot be fitted (NUTS would not finish); "
            f"give observations that vary, or state the capacity instead of calibrating it")


@dataclass(frozen=True)
class CapacityFit:
    """Posterior draws of the capacity mean c and the observation scatter s, and their NIG match."""

    capacity: np.ndarray  # [samples] draws of c
    scatter: np.ndarray  # [samples] draws of s
    posterior: CapacityPosterior
    prior_capacity: float
    n_observations: int

    def summary(self) -> dict[str, dict[str, float]]:
        """Mean, sd, 5% and 95% quantiles of c and s."""
        out = {}
        for name, draws in (("c", self.capacity), ("s", self.scatter)):
            q05, q95 = np.quantile(draws, [0.05, 0.95])
            out[name] = {"mean": float(draws.mean()), "sd": float(draws.std(ddof=1)), "q05": float(q05),
                         "q95": float(q95)}
        return out


def match_moments(capacity: np.ndarray, scatter: np.ndarray) -> CapacityPosterior:
    """The NIG (W = 1) whose mean marginal has the draws' mean and variance of c, and whose s^2 has the
    draws' mean and variance of s^2 (see the module docstring for the algebra)."""
    c = np.asarray(capacity, dtype=np.float64)
    s2 = np.asarray(scatter, dtype=np.float64) ** 2
    var_c, var_s2, mean_s2 = c.var(ddof=1), s2.var(ddof=1), s2.mean()
    if not (var_c > 0 and var_s2 > 0):
        raise ValueError("posterior draws do not vary; the sampler did not move")
    alpha = 2.0 + mean_s2**2 / var_s2  # > 2: the t marginal of the mean has a finite variance
    beta = (alpha - 1.0) * mean_s2
    kappa = mean_s2 / var_c
    return CapacityPosterior(np.array([c.mean()]), np.array([kappa]), np.array([alpha]), np.array([beta]))


def fit_capacity(observations: np.ndarray, prior_capacity: float | None = None, warmup: int = 300,
                 samples: int = 500, seed: int = 0) -> CapacityFit:
    """NUTS fit of x_i ~ Normal(c, s), c ~ LogNormal(log c0, 1), s ~ HalfNormal(c0); c0 = `prior_capacity`
    or the median observation. A few seconds for a few hundred observations on two cores.

    Seeds pyro's (torch, numpy, random) global generators with `seed`: the same call gives the same draws.
    """
    import pyro
    import pyro.distributions as dist
    import torch
    from pyro.infer import MCMC, NUTS

    x = np.asarray(observations, dtype=np.float64).ravel()
    if x.size < MIN_OBSERVATIONS:
        raise HarmonyInputError(f"{x.size} capacity observations; need at least {MIN_OBSERVATIONS}")
    if not np.all(np.isfinite(x) & (x > 0)):
        raise HarmonyInputError("capacity observations must be positive and finite")
    _check_spread(x)
    centre = float(np.median(x)) if prior_capacity is None else float(prior_capacity)
    if not (math.isfinite(centre) and centre > 0):
        raise HarmonyInputError(f"--prior-capacity must be a finite positive number, got {prior_capacity}")
    if warmup < 1 or samples < 10:
        raise HarmonyInputError(f"--warmup must be >= 1 and --samples >= 10, got {warmup} and {samples}")

    data = torch.as_tensor(x, dtype=torch.float64)
    loc = torch.tensor(np.log(centre), dtype=torch.float64)
    one = torch.tensor(1.0, dtype=torch.float64)
    scale = torch.tensor(centre, dtype=torch.float64)

    def model(obs: torch.Tensor) -> None:
        c = pyro.sample("c", dist.LogNormal(loc, one))
        s = pyro.sample("s", dist.HalfNormal(scale))
        with pyro.plate("observations", obs.shape[0]):
            pyro.sample("x", dist.Normal(c, s), obs=obs)

    pyro.set_rng_seed(seed)
    mcmc = MCMC(NUTS(model), num_samples=samples, warmup_steps=warmup, disable_progbar=True)
    mcmc.run(data)
    draws = mcmc.get_samples()
    c = draws["c"].numpy().astype(np.float64)
    s = draws["s"].numpy().astype(np.float64)
    try:
        posterior = match_moments(c, s)
    except ValueError:  # too few iterations for NUTS to adapt its step: every draw is the starting point
        raise HarmonyInputError(f"NUTS did not move in {warmup} warm-up iterations and {samples} draws; raise "
                                "--warmup and --samples") from None
    return CapacityFit(c, s, posterior, centre, int(x.size))
