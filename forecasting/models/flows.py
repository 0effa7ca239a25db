"""Every nflows construction of the HARMONY head lives here: a conditional flow over the horizon x targets
vector of standardised residuals z = (y - mean) / scale of the Gaussian projection.

The flow T(z; c) maps z to a standard normal u, conditioned on the encoder summary c, so that
log p(z | c) = log N(T(z; c)) + log |det dT/dz| is exact (Papamakarios et al., "Masked Autoregressive Flow
for Density Estimation", 2017; Durkan et al., "Neural Spline Flows", 2019). Samples are z = T^-1(u; c) with
u drawn by the caller (so a torch.Generator controls them).

Kinds:
- "spline" (default): rational-quadratic spline *coupling* layers with alternating masks (linear tails beyond
  +-`tail_bound`); density and sampling both take one network pass per layer, so sampling 1,000 series x 100
  samples stays well under a second. A one-feature vector (one target, one step) cannot be split, so it
  falls back to the autoregressive spline.
- "spline-ar": masked rational-quadratic *autoregressive* layers (more expressive per layer, but sampling
  needs one pass per feature, i.e. horizon x targets passes per layer).
- "maf": masked affine autoregressive layers (same sampling cost as "spline-ar").
Autoregressive layers alternate with reverse permutations. nflows 0.14's NaiveLinear (broken inverse) and
LULinear (warnings) are deliberately not used. With one feature the first autoregressive layer depends on
the context only, as it should.
"""

from __future__ import annotations

import math

import torch
from nflows.nn.nets import ResidualNet
from nflows.transforms import (
    CompositeTransform,
    MaskedAffineAutoregressiveTransform,
    MaskedPiecewiseRationalQuadraticAutoregressiveTransform,
    PiecewiseRationalQuadraticCouplingTransform,
    ReversePermutation,
    Transform,
)
from nflows.utils import create_alternating_binary_mask
from torch import nn

FLOW_KINDS = ("spline", "spline-ar", "maf")
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def build_transform(
    kind: str, features: int, context_features: int, layers: int, hidden_features: int,
    num_bins: int = 8, tail_bound: float = 5.0,
) -> Transform:
    """A conditional nflows transform z -> u of `layers` autoregressive layers."""
    if kind not in FLOW_KINDS:
        raise ValueError(f"flow kind {kind!r} must be one of {FLOW_KINDS}")
    parts: list[Transform] = []
    coupling = kind == "spline" and features > 1
    for k in range(layers):
        if coupling:
            parts.append(PiecewiseRationalQuadraticCouplingTransform(
                mask=create_alternating_binary_mask(features, even=k % 2 == 0),
                transform_net_create_fn=lambda n_in, n_out: ResidualNet(
                    n_in, n_out, hidden_features=hidden_features, context_features=context_features, num_blocks=2),
                num_bins=num_bins, tails="linear", tail_bound=tail_bound))
            continue
        if k > 0:
            parts.append(ReversePermutation(features))
        if kind == "maf":
            parts.append(MaskedAffineAutoregressiveTransform(
                features=features, hidden_features=hidden_features, context_features=context_features,
                num_blocks=2, use_residual_blocks=True))
        else:
            parts.append(MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                features=features, hidden_features=hidden_features, context_features=context_features,
                num_bins=num_bins, tails="linear", tail_bound=tail_bound, num_blocks=2, use_residual_blocks=True))
    return CompositeTransform(parts)


def standard_normal_log_prob(u: torch.Tensor) -> torch.Tensor:
    """Sum over the last axis of log N(u; 0, 1)."""
    return (-0.5 * u.pow(2) - HALF_LOG_2PI).sum(dim=-1)


class ConditionalFlow(nn.Module):
    """log_prob(z, context) and inverse(u, context) of a conditional flow on [batch, features]."""

    def __init__(self, kind: str, features: int, context_features: int, layers: int, hidden_features: int) -> None:
        super().__init__()
        self.transform = build_transform(kind, features, context_features, layers, hidden_features)

    def log_prob(self, z: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        u, log_det = self.transform(z, context=context)
        return standard_normal_log_prob(u) + log_det

    def inverse(self, u: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        z, _ = self.transform.inverse(u, context=context)
        return z
