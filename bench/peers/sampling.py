"""Samples from what peer libraries return: central intervals (statsforecast) and quantiles (LightGBM).

Neither library returns joint sample paths, and harmony's metrics score samples and paths, so each peer's
marginals per step are turned into paths the same way: one uniform draw per path sets its rank at every
step of the horizon (comonotone paths). The h-step error of a recursive or state-space forecast contains
the errors of the steps before it, so consecutive steps are strongly positively correlated; comonotone
paths are that correlation's limit, and they leave every per-step marginal, hence CRPS, MSE and per-step
coverage, exactly as the library returned it. Path scores (energy, CRPS and coverage of the maximum)
depend on this choice; the peers are scored under it.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from harmony.errors import HarmonyInputError


def column_series(n_columns: int, n_series: int, who: str) -> np.ndarray:
    """The training series of each context column, for models fitted per series.

    The protocols fold forecast origins into the context's series axis as [origins, series], series
    fastest (`harmony.forecasting.evaluation.protocols.make_windows`); a context whose width is not a
    multiple of the training series cannot be read that way and is refused."""
    if n_columns % n_series:
        raise HarmonyInputError(f"{who} was fitted on {n_series} series; a context of {n_columns} columns is not "
                                "origins x series")
    return np.arange(n_columns) % n_series


def path_ranks(n_samples: int, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """[n_samples, 1, *shape] uniform ranks in (0, 1), shared by every horizon step (comonotone paths)."""
    return rng.uniform(size=(n_samples, 1, *shape))


def two_piece_scales(levels: tuple[int, ...], mean: np.ndarray, bounds: dict[str, np.ndarray]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Scales below and above the mean of a two-piece normal through central intervals.

    `bounds` holds statsforecast's `lo-L` and `hi-L` for every level L (percent). With z_L the normal
    quantile of (1 + L/100) / 2, each scale is the least-squares fit of (bound - mean) = +-scale * z_L over
    the levels. Normal intervals (AutoETS) give two equal scales that reproduce every bound; simulated ones
    (AutoTheta) are asymmetric and noisy, which two scales follow and the fit smooths."""
    z = stats.norm.ppf((1 + np.asarray(levels, dtype=np.float64) / 100) / 2)
    lo = np.stack([mean - np.asarray(bounds[f"lo-{level}"], dtype=np.float64) for level in levels])
    hi = np.stack([np.asarray(bounds[f"hi-{level}"], dtype=np.float64) - mean for level in levels])
    shape = (-1,) + (1,) * mean.ndim
    weights = z.reshape(shape) / (z**2).sum()
    return np.maximum((weights * lo).sum(axis=0), 0.0), np.maximum((weights * hi).sum(axis=0), 0.0)


def two_piece_samples(mean: np.ndarray, below: np.ndarray, above: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Quantile function of the two-piece normal at `ranks`: mean + scale * z(u), the scale below or above the
    median (the mean) as u is below or above 1/2. Shapes broadcast ([horizon, ...] against [n, 1, ...])."""
    z = stats.norm.ppf(ranks)
    return mean + np.where(z < 0, below, above) * z


def quantile_samples(levels: np.ndarray, quantiles: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """The quantile function through predicted quantiles, evaluated at `ranks`.

    levels: [K] increasing in (0, 1); quantiles: [K, *shape] predictions at those levels, sorted along K
    first (quantile regressions fitted apart can cross; sorting is the monotone rearrangement of Chernozhukov,
    Fernandez-Val and Galichon 2010, which never raises the pinball loss); ranks: [n, *shape] or broadcastable.
    Linear between levels, and beyond the outermost ones the outer segment's slope continued: the tails get
    the spread the model saw last instead of a point mass at its outermost quantile."""
    q = np.sort(quantiles, axis=0)
    u = np.broadcast_to(ranks, np.broadcast_shapes(ranks.shape, (1, *q.shape[1:])))
    k = np.clip(np.searchsorted(levels, u, side="right") - 1, 0, len(levels) - 2)
    lo_level, hi_level = levels[k], levels[k + 1]
    lo_q, hi_q = _at(q, k), _at(q, k + 1)
    return lo_q + (u - lo_level) * (hi_q - lo_q) / (hi_level - lo_level)


def _at(q: np.ndarray, k: np.ndarray) -> np.ndarray:
    """q[k[n, ...], ...] for every leading n: the quantile of index k at each position."""
    return np.take_along_axis(np.broadcast_to(q, (k.shape[0], *q.shape)), k[:, None], axis=1)[:, 0]
