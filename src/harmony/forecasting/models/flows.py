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
from dataclasses import dataclass

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
from torch.nn import functional as F

from harmony.forecasting.models.splines import rational_quadratic_spline

FLOW_KINDS = ("spline", "spline-ar", "maf")
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@dataclass(frozen=True)
class SharedContext:
    """The context of `repeats` x B rows in which row k * B + b belongs to window b (many samples of each
    window): the coupling networks compute their context terms once per window instead of once per row."""

    windows: torch.Tensor  # [B, context_features]
    repeats: int


class RQCoupling(PiecewiseRationalQuadraticCouplingTransform):
    """nflows' rational-quadratic coupling layer (same parameters, same function) whose spline is the
    CPU-friendly `splines.rational_quadratic_spline` (linear tails only)."""

    def _piecewise_cdf(self, inputs: torch.Tensor, transform_params: torch.Tensor, inverse: bool = False,
                       with_logabsdet: bool = True):
        k, norm = self.num_bins, math.sqrt(self.transform_net.hidden_features)  # nflows' softmax input scaling
        return rational_quadratic_spline(
            inputs, transform_params[..., :k], transform_params[..., k:2 * k], transform_params[..., 2 * k:],
            inverse=inverse, tail_bound=self.tail_bound, min_bin_width=self.min_bin_width,
            min_bin_height=self.min_bin_height, min_derivative=self.min_derivative, temperature=norm,
            with_logabsdet=with_logabsdet)

    def sample_inverse(self, inputs: torch.Tensor, context) -> torch.Tensor:
        """`inverse(inputs, context)[0]` without the log-determinant, which sampling never reads (the same
        outputs; nflows' generic split and merge by index tensors replaced by slices of the alternating mask)."""
        rows, features = inputs.shape
        identity, transform = self._slices
        params = self.transform_net(inputs[:, identity], context).view(rows, -1, self._transform_dim_multiplier())
        outputs = torch.empty_like(inputs)
        outputs[:, identity] = inputs[:, identity]
        outputs[:, transform], _ = self._piecewise_cdf(inputs[:, transform], params, inverse=True, with_logabsdet=False)
        return outputs

    @property
    def _slices(self) -> tuple[slice | torch.Tensor, slice | torch.Tensor]:
        """The identity and transformed features as slices when they alternate (every mask here), else indices."""
        features = self.features
        for start in (0, 1):
            if (self.identity_features.tolist() == list(range(start, features, 2))
                    and self.transform_features.tolist() == list(range(1 - start, features, 2))):
                return slice(start, None, 2), slice(1 - start, None, 2)
        return self.identity_features, self.transform_features


class CouplingNet(ResidualNet):
    """nflows' ResidualNet (same parameters, same result) that also takes a `SharedContext`.

    The context enters a ResidualNet only through the initial layer (concatenated with the inputs) and
    through each block's gate sigmoid(context_layer(context)) (its GLU), both affine in the context, so
    with a shared context they are computed for B windows and broadcast over the samples: about a fifth
    of the multiply-adds and the row-wise concatenations of a sampling pass are saved."""

    def forward(self, inputs: torch.Tensor, context=None) -> torch.Tensor:
        if not isinstance(context, SharedContext):
            return super().forward(inputs, context)
        windows, n = context.windows, context.repeats
        k, b = inputs.shape[1], len(windows)
        weight = self.initial_layer.weight
        per_window = windows @ weight[:, k:].T + self.initial_layer.bias  # [B, hidden]
        temps = (inputs @ weight[:, :k].T).view(n, b, -1)
        if not torch.is_grad_enabled() and self.blocks[0].activation is F.relu:  # sampling: the same sums, in place
            temps.add_(per_window)
            temps = temps.view(n * b, -1)
            for block in self.blocks:
                h = block.linear_layers[1](block.linear_layers[0](block.activation(temps)).relu_())
                temps.view(n, b, -1).addcmul_(h.view(n, b, -1), torch.sigmoid(block.context_layer(windows)))
            return _linear_padded(temps, self.final_layer)
        temps = (temps + per_window).view(n * b, -1)
        for block in self.blocks:
            h = block.linear_layers[0](block.activation(temps))
            h = block.linear_layers[1](block.dropout(block.activation(h)))
            gate = torch.sigmoid(block.context_layer(windows))  # the GLU's gate, once per window
            temps = temps + (h.view(n, b, -1) * gate).view(n * b, -1)
        return _linear_padded(temps, self.final_layer)


def _linear_padded(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """`layer(x)` computed with the output features padded by zero rows to a multiple of 8, then cut back: the
    same values (each output is the same dot product), and MKL's kernels for an odd width such as a coupling
    layer's 3 x 23 = 69 outputs take about twice as long as for 72."""
    out = layer.out_features
    pad = -out % 8
    if not pad or x.shape[0] < 1024:
        return layer(x)
    weight = torch.cat([layer.weight, layer.weight.new_zeros(pad, layer.in_features)])
    bias = None if layer.bias is None else torch.cat([layer.bias, layer.bias.new_zeros(pad)])
    return nn.functional.linear(x, weight, bias)[:, :out]


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
            parts.append(RQCoupling(
                mask=create_alternating_binary_mask(features, even=k % 2 == 0),
                transform_net_create_fn=lambda n_in, n_out: CouplingNet(
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
        # coupling layers pass the context to their CouplingNet untouched; autoregressive ones need a tensor
        self.shares_context = all(isinstance(t, PiecewiseRationalQuadraticCouplingTransform)
                                  for t in self.transform._transforms)

    def log_prob(self, z: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        u, log_det = self.transform(z, context=context)
        return standard_normal_log_prob(u) + log_det

    def inverse(self, u: torch.Tensor, context: torch.Tensor, repeats: int = 1) -> torch.Tensor:
        """z for u [repeats * B, features] whose row k * B + b is conditioned on context[b] ([B, C])."""
        if repeats == 1:
            shared = context
        elif self.shares_context:
            shared = SharedContext(context, repeats)
        else:
            shared = context.repeat(repeats, 1)
        if not self.shares_context:
            z, _ = self.transform.inverse(u, context=shared)
            return z
        z = u
        for layer in reversed(self.transform._transforms):  # what CompositeTransform.inverse runs, less log-dets
            z = layer.sample_inverse(z, shared)
        return z
