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


def _knots(unnormalised: torch.Tensor, low: float, high: float, minimum: float,
           temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(knot positions [..., K + 1] from low to high, bin sizes [..., K]) from unnormalised sizes [..., K]:
    sizes minimum + (1 - minimum K) softmax(unnormalised / temperature), the softmax written out."""
    k = unnormalised.shape[-1]
    e = ((unnormalised - unnormalised.amax(dim=-1, keepdim=True)) / temperature).exp()
    sizes = minimum + (1 - minimum * k) * (e / e.sum(dim=-1, keepdim=True))
    cum = F.pad(torch.cumsum(sizes, dim=-1), pad=(1, 0), value=0.0) * (high - low) + low  # cum[..., 0] == low
    cum[..., -1] = high  # exactly, whatever the rounding of the cumulative sum
    return cum, cum[..., 1:] - cum[..., :-1]


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
) -> tuple[torch.Tensor, torch.Tensor]:
    """(outputs, log |d outputs / d inputs|) elementwise; parameters [..., K], [..., K], [..., K - 1]; the
    unnormalised widths and heights are divided by `temperature` (nflows' coupling layers use sqrt(hidden))."""
    inside = (inputs >= -tail_bound) & (inputs <= tail_bound)
    x = inputs.clamp(-tail_bound, tail_bound)
    # the derivative at both ends is 1, so the spline meets the identity tails smoothly
    constant = math.log(math.exp(1 - min_derivative) - 1)
    derivatives = min_derivative + F.softplus(F.pad(unnormalized_derivatives, pad=(1, 1), value=constant))
    cumwidths, widths = _knots(unnormalized_widths, -tail_bound, tail_bound, min_bin_width, temperature)
    cumheights, heights = _knots(unnormalized_heights, -tail_bound, tail_bound, min_bin_height, temperature)
    knots = cumheights if inverse else cumwidths
    bin_idx = (x[..., None] >= knots[..., 1:-1]).sum(dim=-1, keepdim=True)  # [..., 1], in [0, K - 1]

    def pick(t: torch.Tensor) -> torch.Tensor:
        return t.gather(-1, bin_idx)[..., 0]

    in_cumwidth, in_width = pick(cumwidths), pick(widths)
    in_cumheight, in_height = pick(cumheights), pick(heights)
    in_delta = in_height / in_width
    d0, d1 = pick(derivatives), pick(derivatives[..., 1:])
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
    theta_one_minus_theta = theta * (1 - theta)
    denominator = in_delta + curvature * theta_one_minus_theta
    derivative_numerator = in_delta.pow(2) * (d1 * theta.pow(2) + 2 * in_delta * theta_one_minus_theta
                                              + d0 * (1 - theta).pow(2))
    logabsdet = derivative_numerator.log() - 2 * denominator.log()
    if inverse:
        logabsdet = -logabsdet
    return torch.where(inside, outputs, inputs), torch.where(inside, logabsdet, torch.zeros_like(logabsdet))
