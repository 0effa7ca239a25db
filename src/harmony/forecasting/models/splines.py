"""Rational-quadratic spline with linear tails (Durkan et al., "Neural Spline Flows", NeurIPS 2019), the
same function as nflows' `unconstrained_rational_quadratic_spline`, written for speed on the CPU.

nflows selects the inside-the-bound entries with boolean indexing (nonzero, gathers, index_put: copies of
every parameter tensor) and calls `F.softmax` over 8-bin rows, which is slow on the CPU for so short a last
axis. Here every entry is computed at its input clamped into [-tail_bound, tail_bound] and the tails are
chosen with `torch.where` (the identity with log-det 0 outside, as nflows does), and the softmax is written
out (max-shifted, so it cannot overflow). `tests/test_models.py` checks it against nflows, forward and
inverse. Used by the coupling layers of `flows` (the default "spline" flow).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

DEFAULT_MIN_BIN_WIDTH = 1e-3
DEFAULT_MIN_BIN_HEIGHT = 1e-3
DEFAULT_MIN_DERIVATIVE = 1e-3


def _interior_knots(unnormalised: torch.Tensor, low: float, high: float, minimum: float,
                    temperature: float = 1.0) -> torch.Tensor:
    """The K - 1 knots [..., K - 1] between `low` and `high` (the edges of K bins) from unnormalised sizes
    [..., K]: sizes minimum + (1 - minimum K) softmax(unnormalised / temperature), the softmax written out."""
    k = unnormalised.shape[-1]
    e = ((unnormalised - unnormalised.amax(dim=-1, keepdim=True)) / temperature).exp()
    sizes = minimum + (1 - minimum * k) * (e / e.sum(dim=-1, keepdim=True))
    return torch.cumsum(sizes, dim=-1)[..., :-1] * (high - low) + low


def _bin(interior: torch.Tensor, index: torch.Tensor, low: float, high: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(left edge, width) of bin `index` [..., 1] among the bins `interior` [..., K - 1] cuts [low, high] into:
    the first starts at low and the last ends at high exactly, whatever the rounding of the cumulative sum.
    Only the picked entries are formed, not every bin's edge and width (as many copies of the parameters)."""
    last = interior.shape[-1]  # K - 1
    if last == 0:
        return torch.full_like(index[..., 0], low, dtype=interior.dtype), torch.full_like(
            index[..., 0], high - low, dtype=interior.dtype)
    left = torch.where(index == 0, low, interior.gather(-1, (index - 1).clamp_min(0)))[..., 0]
    right = torch.where(index == last, high, interior.gather(-1, index.clamp_max(last - 1)))[..., 0]
    return left, right - left


def rational_quadratic_spline(
    inputs: torch.Tensor,
    unnormalized_widths: torch.Tensor,
    unnormalized_heights: torch.Tensor,
    unnormalized_derivatives: torch.Tensor,
    inverse: bool = False,
    tail_bound: float = 1.0,
    min_bin_width: float = DEFAULT_MIN_BIN_WIDTH,
    min_bin_height: float = DEFAULT_MIN_BIN_HEIGHT,
    min_derivative: float = DEFAULT_MIN_DERIVATIVE,
    temperature: float = 1.0,
    with_logabsdet: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(outputs, log |d outputs / d inputs|) elementwise; parameters [..., K], [..., K], [..., K - 1]; the
    unnormalised widths and heights are divided by `temperature` (nflows' coupling layers use sqrt(hidden)).
    with_logabsdet False: (outputs, None), the log-determinant not computed (sampling needs none)."""
    inside = (inputs >= -tail_bound) & (inputs <= tail_bound)
    x = inputs.clamp(-tail_bound, tail_bound)
    widths = _interior_knots(unnormalized_widths, -tail_bound, tail_bound, min_bin_width, temperature)
    heights = _interior_knots(unnormalized_heights, -tail_bound, tail_bound, min_bin_height, temperature)
    bin_idx = (x[..., None] >= (heights if inverse else widths)).sum(dim=-1, keepdim=True)  # [..., 1], in [0, K - 1]
    in_cumwidth, in_width = _bin(widths, bin_idx, -tail_bound, tail_bound)
    in_cumheight, in_height = _bin(heights, bin_idx, -tail_bound, tail_bound)
    in_delta = in_height / in_width
    # the derivative at both ends is 1, so the spline meets the identity tails smoothly (the softplus of the
    # unnormalised interior derivatives, taken at the two picked knots only)
    constant = math.log(math.exp(1 - min_derivative) - 1)
    last = unnormalized_derivatives.shape[-1]  # K - 1
    if last == 0:
        d0 = d1 = min_derivative + F.softplus(torch.full_like(x, constant))
    else:
        raw0 = torch.where(bin_idx == 0, constant, unnormalized_derivatives.gather(-1, (bin_idx - 1).clamp_min(0)))
        raw1 = torch.where(bin_idx == last, constant, unnormalized_derivatives.gather(-1, bin_idx.clamp_max(last - 1)))
        d0, d1 = min_derivative + F.softplus(raw0[..., 0]), min_derivative + F.softplus(raw1[..., 0])
    curvature = d0 + d1 - 2 * in_delta
    if inverse:
        offset = x - in_cumheight
        a = offset * curvature + in_height * (in_delta - d0)
        b = in_height * d0 - offset * curvature
        c = -in_delta * offset
        discriminant = (b.pow(2) - 4 * a * c).clamp_min(0.0)
        theta = (2 * c) / (-b - discriminant.sqrt())
        outputs = theta * in_width + in_cumwidth
    else:
        theta = (x - in_cumwidth) / in_width
        theta_one_minus_theta = theta * (1 - theta)
        numerator = in_height * (in_delta * theta.pow(2) + d0 * theta_one_minus_theta)
        outputs = in_cumheight + numerator / (in_delta + curvature * theta_one_minus_theta)
    if not with_logabsdet:
        return torch.where(inside, outputs, inputs), None
    theta_one_minus_theta = theta * (1 - theta)
    denominator = in_delta + curvature * theta_one_minus_theta
    derivative_numerator = in_delta.pow(2) * (d1 * theta.pow(2) + 2 * in_delta * theta_one_minus_theta
                                              + d0 * (1 - theta).pow(2))
    logabsdet = derivative_numerator.log() - 2 * denominator.log()
    if inverse:
        logabsdet = -logabsdet
    return torch.where(inside, outputs, inputs), torch.where(inside, logabsdet, torch.zeros_like(logabsdet))
