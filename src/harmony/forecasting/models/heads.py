"""The Gaussian projection of HARMONY's head, and a sample-CRPS loss term.

`GaussianHead` gives a mean and a scale per target indicator and horizon step, in the window-normalised
space (see `tokens.WindowNorm`). The mean is a per-indicator linear map of the normalised lookback window
(an AR model per indicator, as the strong ridge AR baseline is; initialised to persistence, and warm-started
by a closed-form ridge fit on the training windows, `fit_linear`) plus a projection of the indicator's
encoder token, so the attention only has to learn what the window's own past does not explain. The
conditional flow (`flows`) then reshapes the standardised residual (y - mean) / scale into a non-Gaussian
distribution; without a flow (the `--no-flow` ablation) this head is the whole predictive distribution.

`sample_crps` is the ensemble CRPS E|X - y| - 1/2 E|X - X'| over reparameterised samples, an optional
training term beside the exact negative log-likelihood (it is never used to *score* the model).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

#: smallest predictive scale in normalised units, so that the log-likelihood stays bounded
MIN_SCALE = 1e-3


class GaussianHead(nn.Module):
    """Encoder tokens of the targets and their normalised windows -> (mean, scale) [batch, horizon, targets]."""

    def __init__(self, lookback: int, horizon: int, n_targets: int, d_model: int) -> None:
        super().__init__()
        self.horizon = horizon
        skip = torch.zeros(n_targets, lookback, horizon)
        skip[:, -1, :] = 1.0  # persistence: every step starts at the last observed value
        self.skip_weight = nn.Parameter(skip)
        self.skip_bias = nn.Parameter(torch.zeros(n_targets, horizon))
        self.project = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, 2 * horizon))
        nn.init.normal_(self.project[-1].weight, std=1e-3)
        nn.init.zeros_(self.project[-1].bias)

    @torch.no_grad()
    def fit_linear(self, windows: torch.Tensor, targets: torch.Tensor, ridge: float = 1.0) -> None:
        """Warm start: the per-indicator linear map as a ridge regression of normalised targets [N, H, T] on
        normalised windows [N, L, T] (closed form), so training starts from an AR fit rather than persistence."""
        n, lookback, _ = windows.shape
        design = torch.cat([windows, torch.ones(n, 1, windows.shape[2], dtype=windows.dtype)], dim=1)  # [N, L+1, T]
        for t in range(windows.shape[2]):
            a = design[:, :, t].double()
            gram = a.T @ a + ridge * torch.eye(lookback + 1, dtype=torch.float64)
            gram[-1, -1] -= ridge  # the intercept is not penalised
            coef = torch.linalg.lstsq(gram, a.T @ targets[:, :, t].double()).solution  # [L + 1, H]
            self.skip_weight[t] = coef[:-1].to(self.skip_weight.dtype)
            self.skip_bias[t] = coef[-1].to(self.skip_bias.dtype)

    def forward(self, target_tokens: torch.Tensor, target_windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """target_tokens [B, T, d_model], target_windows [B, lookback, T] (normalised) -> mean, scale [B, H, T]."""
        linear = torch.einsum("blt,tlh->bth", target_windows, self.skip_weight) + self.skip_bias
        shift, raw_scale = self.project(target_tokens).split(self.horizon, dim=-1)  # [B, T, H] each
        mean = linear + shift
        scale = F.softplus(raw_scale - 1.0) + MIN_SCALE  # starts near 0.3 normalised units
        return mean.transpose(1, 2), scale.transpose(1, 2)


def sample_crps(observations: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """Mean ensemble CRPS; observations [B, D], samples [m, B, D] (m >= 2), differentiable in the samples."""
    m = samples.shape[0]
    accuracy = (samples - observations[None]).abs().mean(dim=0)
    spread = (samples[:, None] - samples[None, :]).abs().sum(dim=(0, 1)) / (2 * m * (m - 1))
    return (accuracy - spread).mean()
