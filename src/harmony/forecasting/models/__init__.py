"""The HARMONY forecaster's network, one plain `nn.Module` per part (no training loop here).

Reference: "Adaptive Two-Stage Cloud Resource Scaling via Hierarchical Multi-Indicator Forecasting and
Bayesian Decision-Making" (HARMONY). Parts:

- `tokens`: per-window (RevIN-style) normalisation, one token per indicator, calendar tokens;
- `attention`: hierarchical cascading attention over indicator levels (or flat, for the ablation);
- `heads`: the Gaussian projection per target and horizon step, and a sample-CRPS loss term;
- `flows`: every nflows construction (masked autoregressive / rational-quadratic spline), conditional on
  the encoder output; `splines`: the CPU-friendly rational-quadratic spline its coupling layers use;
- `calibration`: the post-hoc spread factor and mixture with the window's recent values, fitted on
  validation windows (minimum CRPS);
- `network`: `HarmonyConfig` and `HarmonyNetwork`, which assemble the parts into an exact log-likelihood and
  a sampler whose samples are returned in the input's space (the normalisation inverted per sample).

Layering: imports torch and nflows only; never `controller`.
"""

from harmony.forecasting.models.network import HarmonyConfig, HarmonyNetwork

__all__ = ["HarmonyConfig", "HarmonyNetwork"]
