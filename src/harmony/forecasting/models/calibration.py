"""Post-hoc spread calibration of predictive samples, fitted on validation windows (never on test rows).

A network trained by likelihood on the training windows is often under-dispersed on later data (its fit
to the training windows is tighter than the error it makes out of sample). The fix is the one-parameter
spread (temperature) recalibration of an ensemble forecast: the samples x_k of one window become

    c + s (x_k - c),

where c is the window's centre (the network's sample at zero base noise: the median of a one-dimensional
flow or of the Gaussian head, so it needs no other samples and works for a single recursive path) and s
is one factor per horizon step and target indicator, chosen to minimise the mean ensemble CRPS on the
validation windows (the estimator `harmony.forecasting.metrics.crps_ensemble` uses). That CRPS is convex in s
(a mean of |s d - e| minus s times the pair term), so a fine grid finds its minimum: s < 1 tightens an
over-dispersed indicator (a flat one), s > 1 widens an under-dispersed one. Ranks of the samples are
kept. References: Gneiting et al., "Calibrated probabilistic forecasting using ensemble model output
statistics and minimum CRPS estimation", Monthly Weather Review 2005; conformal practice of fitting one
scale on a held-out split.

A second step mixes in the window's own recent values: with probability w a sample is replaced by a
value drawn uniformly from that indicator's last k window steps. Both w and k (one pair per horizon step
and target) are chosen on the validation windows like s: w on a grid of 0.05, k from `RECENT_GRID` (the
whole lookback included). For an indicator that is close to i.i.d. noise (Fisher's two-valued block-I/O
counters) the recent empirical marginal is the forecast a model can hardly beat, and a mixture of the two
predictive distributions scores better than either; an indicator that moves in regimes prefers a short k
(its last few values); for a smooth indicator the fit keeps w = 0. A shorter span must beat the longer
ones by `SPAN_MARGIN` (1%) of validation CRPS: short spans narrow the predictive distribution, and on a few
hundred validation windows a smaller gain is noise. The mixture's CRPS is estimated with common random
numbers across the grid.

Both steps keep whole sample paths intact when the forecast is a path (a horizon of several steps, one or
more targets, as the decision reads it): the spread is a monotone affine map of each coordinate about the
window's centre path, so the ranks of every step, and the dependence between steps, are those of the flow;
and with `per_path` the mixture draws once per sample path: with probability w the whole path becomes a
persistence path at one of the window's recent values (the same recent step for every target), and w and k
are fitted per target, shared by the steps. Mixing per step would replace late steps by independent draws,
which breaks the joint paths (the maximum over the horizon, which sets replicas, becomes the maximum of
independent draws).

A path forecast then gets a third step, for the quantity the decision reads: one factor per target on the
spread of whole paths (`fit_path_spread`), fitted on the upper quantiles of the horizon's maximum (the mean
quantile score at `TAIL_LEVELS`) of the samples as they are drawn, persistence paths mixed in. Per-step
calibration leaves that maximum's tail too narrow when the flow's steps are less dependent than the data's;
on gentd26 (the rolling protocol at the decision horizon, `bench/forecast_peers.py`) the 90% interval of the
maximum covered 0.729 with per-step factors and a factor fitted on the maximum's CRPS, and 0.923 with this
one (AR(30): 0.827).
"""

from __future__ import annotations

import numpy as np
import torch

from harmony.forecasting.metrics import crps_ensemble

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


#: candidate factors on the spread of whole paths, fitted on the horizon's maximum (1: as the per-step fit left it)
PATH_SPREAD_GRID = np.round(np.arange(0.5, 4.0001, 0.05), 4)
#: upper quantile levels of the horizon's maximum the path factor is fitted on: a decision sizes replicas on
#: that maximum's quantile at one minus its risk level (0.99 at a 1% SLA, further out as the risk adapts), so
#: the factor is chosen for the tail, not for the whole distribution (the CRPS weighs every level alike, and
#: on gentd26 the CRPS-fitted factor left the maximum's 90% interval covering 0.73)
TAIL_LEVELS = (0.9, 0.95, 0.98, 0.99)


def quantile_score(observations: np.ndarray, samples: np.ndarray,
                   levels: tuple[float, ...] = TAIL_LEVELS) -> np.ndarray:
    """[N] mean quantile (pinball) score over `levels` of the empirical quantiles of samples [n, N] against
    observations [N]; a proper score of each quantile, lowest when that quantile is calibrated."""
    q = np.quantile(samples, levels, axis=0)  # [Q, N]
    tau = np.asarray(levels, dtype=np.float64)[:, None]
    diff = observations[None] - q
    return np.maximum(tau * diff, (tau - 1.0) * diff).mean(axis=0)


def fit_path_spread(samples: torch.Tensor, centre: torch.Tensor, observations: torch.Tensor, steps: int,
                    grid: np.ndarray = PATH_SPREAD_GRID, window: torch.Tensor | None = None,
                    mix: torch.Tensor | None = None, recent: torch.Tensor | None = None, seed: int = 0,
                    levels: tuple[float, ...] = TAIL_LEVELS) -> torch.Tensor:
    """Per-target factor [T] on samples [n, N, steps * T] (step-major) about their centre [N, steps * T],
    minimising the validation quantile score (`quantile_score`, the upper `levels`) of the horizon's maximum
    against observations [N, steps * T]: the quantity a decision's replicas follow, which per-step
    calibration leaves too narrow when the flow's steps are less dependent than the data's.

    window [N, L, T], mix and recent [steps * T] (the fitted per-path mixture, `fit_window_mix`): the factor is
    fitted on the samples as `HarmonyNetwork.sample` draws them, the persistence paths mixed in after the
    spread (one set of draws for every candidate), so it corrects the tail of the mixture, not of the flow
    alone."""
    n, windows, features = samples.shape
    targets = features // steps
    x = samples.double().numpy().reshape(n, windows, steps, targets)
    c = centre.double().numpy().reshape(1, windows, steps, targets)
    y = observations.double().numpy().reshape(windows, steps, targets).max(axis=1)  # [N, T]
    mixed = drawn = None
    if window is not None and mix is not None and bool((mix > 0).any()):
        span = (recent if recent is not None else torch.full_like(mix, float(window.shape[1]))).view(steps, targets)
        u, values = _window_draws(torch.Size((n, windows, steps, targets)), window, span,
                                  torch.Generator().manual_seed(seed), per_path=True)
        mixed = (u < mix.view(steps, targets).to(torch.float64)).numpy()
        drawn = values.double().numpy()
    factor = np.ones(targets)
    for t in range(targets):
        ok = np.isfinite(y[:, t])
        if not ok.any():
            continue
        xt, ct = x[..., t][:, ok], c[..., t][:, ok]  # [n, N_ok, steps]
        scores = []
        for g in grid:
            paths = ct + g * (xt - ct)
            if mixed is not None:
                paths = np.where(mixed[..., t][:, ok], drawn[..., t][:, ok], paths)
            scores.append(float(quantile_score(y[ok, t], paths.max(axis=2), levels).mean()))
        factor[t] = grid[int(np.argmin(scores))]
    return torch.from_numpy(np.tile(factor, steps)).to(samples.dtype)


#: candidate probabilities of drawing a sample from the window's own recent values instead of the model
MIX_GRID = torch.linspace(0.0, 1.0, 21, dtype=torch.float64)
#: candidate numbers of most recent window steps the mixture draws from (capped at the lookback, which is
#: always a candidate)
RECENT_GRID = (1, 2, 3, 4, 6, 9, 12, 24, 48)
#: relative validation-CRPS gain a shorter span must bring over the best longer one to be chosen: the
#: fit is made on a few hundred windows, and a short span narrows the predictive distribution
SPAN_MARGIN = 0.01
#: sample values (n x windows x features) scored at once while fitting the mixture: bounds its memory
SCORE_CHUNK = 2**22


def mix_with_window(samples: torch.Tensor, window: torch.Tensor, weight: torch.Tensor,
                    recent: torch.Tensor | None = None, generator: torch.Generator | None = None,
                    per_path: bool = False) -> torch.Tensor:
    """Samples [n, B, ..., F] where each entry is, with probability weight [..., F], replaced by a value drawn
    uniformly from the last `recent` [..., F] steps of its window [B, L, F] (the same feature; None: all L).
    per_path: one draw per sample path [n, B], shared by every step and feature (whole paths kept)."""
    if not bool((weight > 0).any()):
        return samples
    u, drawn = _window_draws(samples.shape, window, recent, generator, per_path)
    return torch.where(u < weight.to(torch.float64), drawn.to(samples.dtype), samples)


def _window_draws(shape: torch.Size, window: torch.Tensor, recent: torch.Tensor | None,
                  generator: torch.Generator | None, per_path: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(uniform numbers, window values) of `shape` [n, B, ..., F]: for each sample, window and feature a
    uniform in [0, 1) to compare with the mixing probability, and a value drawn uniformly from the last
    `recent` [..., F] steps (None: all) of window [B, L, F] (the same feature). per_path: one uniform and one
    position per [n, B], shared by the other axes (a persistence path at one recent step)."""
    lookback = window.shape[1]
    span = torch.as_tensor(lookback if recent is None else recent, dtype=torch.float64,
                           device=window.device).clamp(1, lookback)  # broadcasts over [n, B, ..., F]
    drawn_shape = (*shape[:2], *([1] * (len(shape) - 2))) if per_path else shape
    u = torch.rand(drawn_shape, generator=generator, dtype=torch.float64, device=window.device).expand(shape)
    position = torch.rand(drawn_shape, generator=generator, dtype=torch.float64, device=window.device).expand(shape)
    pick = (lookback - span + (position * span).floor()).long().clamp(0, lookback - 1)  # in the last `span` steps
    n, b, f = shape[0], shape[1], shape[-1]
    flat = pick.reshape(n, b, -1, f)  # [n, B, M, F]
    source = window.unsqueeze(0).unsqueeze(2).expand(n, b, flat.shape[2], lookback, f)
    return u, source.gather(3, flat.unsqueeze(3)).squeeze(3).reshape(shape)


def fit_window_mix(samples: torch.Tensor, window: torch.Tensor, observations: torch.Tensor, seed: int = 0,
                   grid: torch.Tensor = MIX_GRID, recent_grid: tuple[int, ...] = RECENT_GRID,
                   span_margin: float = SPAN_MARGIN, steps: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature (mixing probability [F], recent steps [F]) minimising the mean ensemble CRPS
    (`harmony.forecasting.metrics`, over the finite observations) of `mix_with_window` for samples [n, N, F], windows
    [N, L, F] and observations [N, F]. The same random draws serve every candidate; a feature the mixture
    does not help keeps probability 0 (and all L steps). Spans are tried from the whole window down, and a
    shorter one is taken only when it lowers the CRPS by more than `span_margin` (relative).

    steps: the features are sample paths, F = steps x T laid out step-major, with windows [N, L, T]; the
    draws are made per path (`mix_with_window(..., per_path=True)`) and one (probability, span) is chosen per
    target from its CRPS averaged over the steps (returned tiled over the steps, [F])."""
    lookback = window.shape[1]
    spans = sorted({min(k, lookback) for k in recent_grid} | {lookback})
    model = samples.double().numpy()
    observed = observations.double().numpy()
    seen = np.isfinite(observed)  # [N, F]
    chosen_per = observed.shape[1] if steps is None else observed.shape[1] // steps  # features or targets
    draw_shape = samples.shape if steps is None else torch.Size((*samples.shape[:2], steps, chosen_per))
    best = np.full(chosen_per, np.inf)
    weight = torch.zeros(chosen_per, dtype=torch.float64)
    recent = torch.full((chosen_per,), float(lookback), dtype=torch.float64)
    for span in reversed(spans):  # the whole window first: ties keep the longest span
        u, drawn = _window_draws(draw_shape, window, torch.tensor(float(span)), torch.Generator().manual_seed(seed),
                                 per_path=steps is not None)
        drawn, u = drawn.reshape(samples.shape).double().numpy(), u.reshape(samples.shape).numpy()
        scores = np.concatenate([_mix_scores(model[..., part], drawn[..., part], u[..., part], observed[:, part],
                                             seen[:, part], grid)
                                 for part in _feature_chunks(samples.shape)], axis=1)  # [G, F]
        if steps is not None:
            scores = scores.reshape(len(grid), steps, chosen_per).mean(axis=1)  # [G, T]: a path's mean CRPS
        margin = 0.0 if span == lookback else span_margin
        lowest = scores.min(axis=0)
        better = lowest < best * (1 - margin) - 1e-12
        best = np.where(better, lowest, best)
        chosen = grid[torch.from_numpy(scores.argmin(axis=0))]
        weight = torch.where(torch.from_numpy(better), chosen, weight)
        recent = torch.where(torch.from_numpy(better) & (chosen > 0), torch.tensor(float(span), dtype=torch.float64),
                             recent)
    if steps is not None:
        weight, recent = weight.repeat(steps), recent.repeat(steps)
    return weight.to(samples.dtype), recent.to(samples.dtype)


def _feature_chunks(shape: torch.Size) -> list[slice]:
    """Slices of the feature axis of samples [n, N, F] holding at most SCORE_CHUNK values each (at least one
    feature)."""
    per_feature = int(np.prod(shape[:-1]))
    step = max(1, SCORE_CHUNK // max(per_feature, 1))
    return [slice(i, i + step) for i in range(0, shape[-1], step)]


def _mix_scores(model: np.ndarray, drawn: np.ndarray, u: np.ndarray, observed: np.ndarray, seen: np.ndarray,
                grid: torch.Tensor) -> np.ndarray:
    """[G, F] mean ensemble CRPS over the finite observations of each mixing probability in the grid."""
    return np.stack([np.where(seen, crps_ensemble(observed, np.where(u < float(w), drawn, model)), 0.0)
                     .sum(axis=0) / np.maximum(seen.sum(axis=0), 1) for w in grid])
