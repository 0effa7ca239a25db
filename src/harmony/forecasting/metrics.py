"""Forecast metrics: CRPS (ensemble and Gaussian closed form), MSE, MAE, pinball loss, interval coverage,
and path scores over the horizon: the energy score of whole paths and the CRPS and coverage of the path's
maximum (the quantity that sets replicas when a decision covers the horizon).

All functions are elementwise over the observation shape and leave reduction to the caller, except the
`mean_*` helpers, which average over observed (non-NaN) targets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import special

from harmony.forecasting.forecast import Forecast


def crps_ensemble(observations: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """CRPS of an ensemble per observation, the estimator `properscoring.crps_ensemble` computes:

        CRPS = E|X - y| - 1/2 E|X - X'|,

    with both expectations over the empirical distribution of the n samples (all n^2 pairs, i = j
    included). samples: [n_samples, *observations.shape]. The pair term uses sorted samples:
    sum_{i,j} |x_i - x_j| = 2 sum_k (2k - n - 1) x_(k).
    NaN observations give NaN.
    """
    obs = np.asarray(observations, dtype=np.float64)
    ens = np.asarray(samples, dtype=np.float64)
    if ens.shape[1:] != obs.shape:
        raise ValueError(f"samples shape {ens.shape} must be [n_samples, *{obs.shape}]")
    n = ens.shape[0]
    abs_err = np.abs(ens - obs[None]).mean(axis=0)
    ordered = np.sort(ens, axis=0)
    weights = (2.0 * np.arange(1, n + 1) - n - 1).reshape((n,) + (1,) * obs.ndim)
    spread = (weights * ordered).sum(axis=0) / n**2
    return abs_err - spread


def crps_gaussian(observations: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Closed-form CRPS of N(mu, sigma^2) (Gneiting et al. 2005):
    sigma * (z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)), z = (y - mu) / sigma."""
    sigma = np.asarray(sigma, dtype=np.float64)
    z = (np.asarray(observations, dtype=np.float64) - mu) / sigma
    pdf = np.exp(-0.5 * z**2) / np.sqrt(2 * np.pi)
    cdf = 0.5 * (1 + special.erf(z / np.sqrt(2)))
    return sigma * (z * (2 * cdf - 1) + 2 * pdf - 1 / np.sqrt(np.pi))


def squared_error(observations: np.ndarray, point: np.ndarray) -> np.ndarray:
    return (np.asarray(point, dtype=np.float64) - observations) ** 2


def absolute_error(observations: np.ndarray, point: np.ndarray) -> np.ndarray:
    return np.abs(np.asarray(point, dtype=np.float64) - observations)


def pinball_loss(observations: np.ndarray, quantile_forecast: np.ndarray, q: float) -> np.ndarray:
    """Quantile (pinball) loss of a q-quantile forecast: q (y - f) if y >= f else (1 - q)(f - y)."""
    if not 0 < q < 1:
        raise ValueError(f"quantile level q={q} must lie in (0, 1)")
    diff = np.asarray(observations, dtype=np.float64) - quantile_forecast
    return np.maximum(q * diff, (q - 1) * diff)


def interval_hit(observations: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """1.0 where lower <= y <= upper, 0.0 outside, NaN where y is missing."""
    obs = np.asarray(observations, dtype=np.float64)
    hit = ((obs >= lower) & (obs <= upper)).astype(np.float64)
    return np.where(np.isnan(obs), np.nan, hit)


def energy_score(observations: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Energy score of joint paths (Gneiting and Raftery 2007), per path: E||X - y|| - 1/2 E||X - X'||, the
    norm over the horizon (axis 0 of observations, axis 1 of samples [n, horizon, ...]). The second term
    pairs each sample with the next one (an O(n) unbiased estimate; all n^2 pairs cost too much for long
    evaluations). A path with any NaN observation gives NaN. It rewards getting the co-movement of the
    steps right, which per-step CRPS cannot see."""
    obs = np.asarray(observations, dtype=np.float64)
    ens = np.asarray(samples, dtype=np.float64)
    if ens.shape[1:] != obs.shape:
        raise ValueError(f"samples shape {ens.shape} must be [n_samples, *{obs.shape}]")
    to_obs = np.sqrt(((ens - obs[None]) ** 2).sum(axis=1)).mean(axis=0)
    pairs = np.sqrt(((ens - np.roll(ens, 1, axis=0)) ** 2).sum(axis=1)).mean(axis=0)
    return to_obs - 0.5 * pairs


def path_scores(observations: np.ndarray, forecast: Forecast, coverage: float = 0.9) -> dict[str, float]:
    """Scores of whole paths over the horizon (axis 0): the energy score, and the CRPS and central-interval
    coverage of the path's maximum, averaged over fully observed paths."""
    obs = np.asarray(observations, dtype=np.float64)
    samples = forecast.samples
    peak_obs = obs.max(axis=0)  # NaN if any step is missing
    peak = samples.max(axis=1)
    tail = (1 - coverage) / 2
    lo, hi = np.quantile(peak, [tail, 1 - tail], axis=0)
    name = f"coverage{int(round(coverage * 100))}_max"
    return {
        "energy": _nanmean(energy_score(obs, samples)),
        "crps_max": _nanmean(crps_ensemble(peak_obs, peak)),
        name: _nanmean(interval_hit(peak_obs, lo, hi)),
    }


def _nanmean(x: np.ndarray) -> float:
    finite = ~np.isnan(x)
    return float(x[finite].mean()) if finite.any() else float("nan")


def score(
    observations: np.ndarray,
    forecast: Forecast,
    quantiles: Sequence[float] = (0.1, 0.5, 0.9),
    coverage: float = 0.9,
) -> dict[str, float]:
    """Every metric of one forecast against observations [horizon, series, indicators], averaged over
    observed targets: mse and mae of the point forecast, crps of the samples, mean pinball loss over
    `quantiles`, the empirical coverage of the central `coverage` interval, and the path scores over the
    horizon (`path_scores`: energy, crps_max, coverage90_max)."""
    obs = np.asarray(observations, dtype=np.float64)
    point = forecast.point_forecast
    qf = forecast.quantile(list(quantiles))
    lo, hi = forecast.interval(coverage)
    pinball = np.mean([pinball_loss(obs, qf[k], q) for k, q in enumerate(quantiles)], axis=0)
    return {
        "mse": _nanmean(squared_error(obs, point)),
        "mae": _nanmean(absolute_error(obs, point)),
        "crps": _nanmean(crps_ensemble(obs, forecast.samples)),
        "pinball": _nanmean(pinball),
        f"coverage{int(round(coverage * 100))}": _nanmean(interval_hit(obs, lo, hi)),
        **path_scores(obs, forecast, coverage),
        "n_targets": int((~np.isnan(obs)).sum()),
    }
