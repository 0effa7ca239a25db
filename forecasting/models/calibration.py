"""Post-hoc spread calibration of predictive samples, fitted on validation windows (never on test rows).

A network trained by likelihood on the training windows is often under-dispersed on later data (its fit
to the training windows is tighter than the error it makes out of sample). The fix is the one-parameter
spread (temperature) recalibration of an ensemble forecast: the samples x_k of one window become

    c + s (x_k - c),

where c is the window's centre (the network's sample at zero base noise: the median of a one-dimensional
flow or of the Gaussian head, so it needs no other samples and works for a single recursive path) and s
is one factor per horizon step and target indicator, chosen to minimise the mean ensemble CRPS on the
validation windows (the estimator `forecasting.metrics.crps_ensemble` uses). That CRPS is convex in s
(a mean of |s d - e| minus s times the pair term), so a fine grid finds its minimum: s < 1 tightens an
over-dispersed indicator (a flat one), s > 1 widens an under-dispersed one. Ranks of the samples are
kept. References: Gneiting et al., "Calibrated probabilistic forecasting using ensemble model output
statistics and minimum CRPS estimation", Monthly Weather Review 2005; conformal practice of fitting one
scale on a held-out split.

A second step mixes in the window's own recent values: with probability w (one per horizon step and
target, chosen on the validation windows like s) a sample is replaced by a value drawn uniformly from that
indicator's lookback window. For an indicator that is close to i.i.d. noise (Fisher's two-valued
block-I/O counters) the recent empirical marginal is the forecast a model can hardly beat, and a mixture
of the two predictive distributions scores better than either; for a smooth indicator the fit keeps w = 0.
With N samples the mixture's CRPS is estimated with common random numbers across the grid of w.
"""

from __future__ import annotations

import numpy as np
import torch

from forecasting.metrics import crps_ensemble

#: candidate spread factors: 0 (a point mass at the centre) to 4x the network's spread, in steps of 0.025
SPREAD_GRID = torch.linspace(0.0, 4.0, 161, dtype=torch.float64)


def apply_spread(samples: torch.Tensor, centre: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
    """Samples [n, ..., F] scaled about their window's centre [1 or n, ..., F] by spread [F] (broadcast)."""
    return centre + spread * (samples - centre)


def fit_spread(samples: torch.Tensor, centre: torch.Tensor, observations: torch.Tensor,
               grid: torch.Tensor = SPREAD_GRID) -> torch.Tensor:
    """Per-feature factor [F] minimising the mean ensemble CRPS of `apply_spread(samples, centre, s)` for
    samples [n, N, F], centre [N, F] and observations [N, F]; a feature with no finite observation keeps 1."""
    n = samples.shape[0]
    deviation = samples.double() - centre.double()[None]  # [n, N, F]
    error = observations.double() - centre.double()  # [N, F]
    weights = (2.0 * torch.arange(1, n + 1, dtype=torch.float64) - n - 1).view(n, 1, 1)
    pair = (weights * deviation.sort(dim=0).values).sum(dim=0) / n**2  # [N, F]: 1/2 E|X - X'| at s = 1
    spread = torch.ones(samples.shape[-1], dtype=torch.float64)
    for f in range(samples.shape[-1]):
        ok = torch.isfinite(error[:, f])
        if not ok.any():
            continue
        d, e, p = deviation[:, ok, f], error[ok, f], pair[ok, f].mean()
        crps = torch.stack([(s * d - e).abs().mean() - s * p for s in grid])
        spread[f] = grid[int(crps.argmin())]
    return spread.to(samples.dtype)


#: candidate probabilities of drawing a sample from the window's own recent values instead of the model
MIX_GRID = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)


def mix_with_window(samples: torch.Tensor, window: torch.Tensor, weight: torch.Tensor,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Samples [n, B, ..., F] where each entry is, with probability weight [..., F], replaced by a value drawn
    uniformly from its window's recent values window [B, L, F] (the same feature)."""
    if not bool((weight > 0).any()):
        return samples
    u, drawn = _window_draws(samples.shape, window, generator)
    return torch.where(u < weight.to(torch.float64), drawn.to(samples.dtype), samples)


def _window_draws(shape: torch.Size, window: torch.Tensor,
                  generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(uniform numbers, window values) of `shape` [n, B, ..., F]: for each sample, window and feature a
    uniform in [0, 1) to compare with the mixing probability, and a value drawn uniformly from window [B, L, F]
    (the same feature)."""
    u = torch.rand(shape, generator=generator, dtype=torch.float64, device=window.device)
    pick = torch.randint(0, window.shape[1], shape, generator=generator, device=window.device)
    n, b, f = shape[0], shape[1], shape[-1]
    flat = pick.reshape(n, b, -1, f)  # [n, B, M, F]
    source = window.unsqueeze(0).unsqueeze(2).expand(n, b, flat.shape[2], window.shape[1], f)
    return u, source.gather(3, flat.unsqueeze(3)).squeeze(3).reshape(shape)


def fit_window_mix(samples: torch.Tensor, window: torch.Tensor, observations: torch.Tensor, seed: int = 0,
                   grid: torch.Tensor = MIX_GRID) -> torch.Tensor:
    """Per-feature mixing probability [F] minimising the mean ensemble CRPS (`forecasting.metrics`, over the
    finite observations) of `mix_with_window` for samples [n, N, F], windows [N, L, F] and observations
    [N, F]; the same random draws serve every candidate."""
    u, drawn = _window_draws(samples.shape, window, torch.Generator().manual_seed(seed))
    model, drawn, u = samples.double().numpy(), drawn.double().numpy(), u.numpy()
    observed = observations.double().numpy()
    seen = np.isfinite(observed)  # [N, F]
    scores = [np.where(seen, crps_ensemble(observed, np.where(u < float(w), drawn, model)), 0.0).sum(axis=0)
              / np.maximum(seen.sum(axis=0), 1) for w in grid]  # each [F]
    return grid[torch.from_numpy(np.stack(scores).argmin(axis=0))].to(samples.dtype)
