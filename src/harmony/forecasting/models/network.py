"""HarmonyNetwork: window normalisation -> tokens -> hierarchical attention -> Gaussian projection -> flow.

The assembled HARMONY forecaster (see the package docstring for the paper). Inputs are context windows
x [batch, lookback, indicators] and calendar features [batch, 4]; targets y [batch, horizon, indicators].
`log_prob` is the exact log-density of the targets in the input's space (the change of variables through
the flow, the Gaussian projection's affine map and the window normalisation are all accounted for), so the
negative log-likelihood is the training loss; `sample` draws predictive samples from the flow and inverts
the Gaussian affine map and the window normalisation per sample.

After training, `calibrate` fits one spread factor per horizon step and target on the validation windows
(minimum CRPS, see `calibration`); `sample` applies it about the window's centre (a buffer, so checkpoints
carry it). It then fits the mixture with the window's own recent values: per step and target, the
probability of drawing a sample from the last k window steps, and k (buffers too); for a path forecast, a
factor on the spread of whole paths fitted on the upper tail of the horizon's maximum follows (folded into
the spread buffer). The log-density is that of the trained, uncalibrated model.

Unlike the published code: the loss is the exact NLL (optionally plus sample CRPS), never MSE only; samples
and therefore CRPS come from the flow, not from the pre-flow Gaussian; levels come with the indicators, not
from positions; nothing assumes CUDA (tensors follow the module's device).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from harmony.forecasting.models.attention import HierarchicalEncoder
from harmony.forecasting.models.calibration import (
    apply_spread,
    fit_path_spread,
    fit_spread,
    fit_window_mix,
    mix_with_window,
)
from harmony.forecasting.models.flows import FLOW_KINDS, ConditionalFlow, standard_normal_log_prob
from harmony.forecasting.models.heads import GaussianHead, sample_crps
from harmony.forecasting.models.tokens import N_CALENDAR_TOKENS, CalendarTokens, IndicatorTokens, WindowNorm

#: sample rows (samples x windows) per flow pass: bounds the spline's memory for many samples of many windows,
#: and keeps a pass's [rows, hidden] activations near the core's cache: 1,000 windows x 200 samples forecast
#: in 2.25 s of one core at 2**13 rows, 2.6-2.7 s at 2**12 or 2**14, 3.0 s at 2**16 (bench/forecast_decide_batch.py)
FLOW_ROWS = 2**13


@dataclass(frozen=True)
class HarmonyConfig:
    """Shape and size of a HarmonyNetwork (stored in checkpoints, so everything here is plain data).

    levels: hierarchy level of each input indicator, in column order (1 = demand, 2 = compute, 3 = I/O).
    lookback, horizon: context and forecast lengths in steps.
    targets: positions of the indicators to forecast (None: all of them).
    d_model, n_heads, layers_per_level, dropout: encoder width, heads, blocks per level stage, dropout.
    hierarchy: cascading level-by-level attention (False: flat attention, the `--no-hierarchy` ablation).
    flow: "spline" (coupling), "spline-ar", "maf" or "none" (Gaussian head only, the `--no-flow` ablation).
    flow_layers, flow_hidden: autoregressive layers and their hidden width; context_features: size of the
        encoder summary that conditions the flow.
    min_scale: floor of the per-window scale, in the (globally scaled) input units.
    calendar: add time-of-day and day-of-week tokens.
    window_quantiles: empirical quantiles of each normalised window added to its token (0: none).
    path_mix: the calibration's mixture with recent values draws per sample path (whole paths replaced, one
        probability per target shared by the steps), so samples stay joint paths; False: per step and target
        independently (checkpoints from before the option).
    """

    levels: tuple[int, ...]
    lookback: int = 72
    horizon: int = 1
    targets: tuple[int, ...] | None = None
    d_model: int = 32
    n_heads: int = 4
    layers_per_level: int = 1
    dropout: float = 0.1
    hierarchy: bool = True
    flow: str = "spline"
    flow_layers: int = 4
    flow_hidden: int = 64
    context_features: int = 32
    min_scale: float = 0.02
    calendar: bool = True
    window_quantiles: int = 16
    path_mix: bool = True

    def __post_init__(self) -> None:
        if self.flow not in (*FLOW_KINDS, "none"):
            raise ValueError(f"flow {self.flow!r} must be one of {(*FLOW_KINDS, 'none')}")
        if self.window_quantiles < 0 or self.window_quantiles > self.lookback:
            raise ValueError(f"window_quantiles must lie in [0, lookback], got {self.window_quantiles}")
        if self.lookback < 2 or self.horizon < 1 or not self.levels:
            raise ValueError(f"need lookback >= 2, horizon >= 1 and levels, got {self}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} must be a multiple of n_heads {self.n_heads}")

    @property
    def target_positions(self) -> tuple[int, ...]:
        return tuple(range(len(self.levels))) if self.targets is None else tuple(self.targets)

    @property
    def event_features(self) -> int:
        """Dimension of the flow's vector: horizon x targets."""
        return self.horizon * len(self.target_positions)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, state: dict) -> HarmonyConfig:
        known = {f.name for f in fields(cls)}
        state = {k: v for k, v in state.items() if k in known}
        state.setdefault("window_quantiles", 0)  # checkpoints from before the option had none
        state.setdefault("path_mix", False)  # ... and mixed per step
        state["levels"] = tuple(state["levels"])
        if state.get("targets") is not None:
            state["targets"] = tuple(state["targets"])
        return cls(**state)


class HarmonyNetwork(nn.Module):
    def __init__(self, config: HarmonyConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        n_extra = N_CALENDAR_TOKENS if c.calendar else 0
        self.register_buffer("targets", torch.tensor(c.target_positions), persistent=False)
        self.norm = WindowNorm(c.min_scale)
        self.tokens = IndicatorTokens(c.lookback, c.levels, c.d_model, c.dropout, c.window_quantiles)
        self.calendar_tokens = CalendarTokens(c.d_model) if c.calendar else None
        self.encoder = HierarchicalEncoder(c.levels, n_extra, c.d_model, c.n_heads, c.layers_per_level, c.dropout,
                                           hierarchy=c.hierarchy)
        self.head = GaussianHead(c.lookback, c.horizon, len(c.target_positions), c.d_model)
        # post-hoc spread factor per horizon step and target (1 = as trained), fitted by `calibrate`
        self.register_buffer("spread", torch.ones(c.horizon, len(c.target_positions)))
        # post-hoc probability per horizon step and target of drawing a sample from the window's own recent
        # values instead (0 = the model alone), fitted by `calibrate`
        self.register_buffer("window_mix", torch.zeros(c.horizon, len(c.target_positions)))
        # ... and how many of the window's most recent steps such a sample is drawn from (lookback = all)
        self.register_buffer("window_recent", torch.full((c.horizon, len(c.target_positions)), float(c.lookback)))
        self.flow = None
        if c.flow != "none":
            self.summary = nn.Sequential(nn.Linear(len(c.levels) * c.d_model, c.context_features), nn.GELU())
            self.flow = ConditionalFlow(c.flow, c.event_features, c.context_features, c.flow_layers, c.flow_hidden)

    # -- encoder -------------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor, calendar: torch.Tensor) -> dict[str, torch.Tensor]:
        """Distribution parameters for windows x [B, L, I] and calendar [B, 4]."""
        x_norm, centre, scale = self.norm(x)
        tokens = self.tokens(x_norm, centre, scale)
        if self.calendar_tokens is not None:
            tokens = torch.cat([tokens, self.calendar_tokens(calendar)], dim=1)
        encoded = self.encoder(tokens)[:, : len(self.config.levels)]  # indicator tokens only
        mean, sd = self.head(encoded[:, self.targets], x_norm[:, :, self.targets])
        out = {"mean": mean, "scale": sd, "centre": centre[:, :, self.targets],
               "window_scale": scale[:, :, self.targets]}
        if self.flow is not None:
            out["context"] = self.summary(encoded.flatten(1))
        return out

    @torch.no_grad()
    def warm_start(self, x: torch.Tensor, y: torch.Tensor, ridge: float = 1.0) -> None:
        """Fit the head's linear (AR) part in closed form on training windows x [N, L, I], y [N, H, I]."""
        x_norm, centre, scale = self.norm(x)
        t = self.targets
        y_norm = WindowNorm.normalise(y[:, :, t], centre[:, :, t], scale[:, :, t])
        self.head.fit_linear(x_norm[:, :, t], y_norm, ridge)

    # -- density -------------------------------------------------------------------------------------
    def log_prob(self, x: torch.Tensor, calendar: torch.Tensor, y: torch.Tensor,
                 params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """[B] exact log-density of targets y [B, H, I] (all indicators; the targets are picked here)."""
        p = self.encode(x, calendar) if params is None else params
        y_norm = WindowNorm.normalise(y[:, :, self.targets], p["centre"], p["window_scale"])
        z = ((y_norm - p["mean"]) / p["scale"]).flatten(1)
        log_det = -p["scale"].log().sum(dim=(1, 2)) - p["window_scale"].log().sum(dim=(1, 2)) * self.config.horizon
        if self.flow is None:
            return standard_normal_log_prob(z) + log_det
        return self.flow.log_prob(z, p["context"]) + log_det

    # -- sampling ------------------------------------------------------------------------------------
    def sample_from(self, p: dict[str, torch.Tensor], noise: torch.Tensor) -> torch.Tensor:
        """Samples [n, B, H, T] in the input space from standard-normal noise [n, B, H * T] (the flow runs on at
        most FLOW_ROWS rows at a time)."""
        n, batch = noise.shape[:2]
        rows = max(1, FLOW_ROWS // n)  # windows per flow pass
        if self.flow is not None and batch > rows:
            return torch.cat([self.sample_from({k: v[j:j + rows] for k, v in p.items()}, noise[:, j:j + rows])
                              for j in range(0, batch, rows)], dim=1)
        u = noise.reshape(n * batch, -1)
        if self.flow is None:
            z = u
        else:
            z = self.flow.inverse(u, p["context"], repeats=n)  # row k * B + b belongs to window b
        z = z.reshape(n, batch, self.config.horizon, -1)
        y_norm = p["mean"] + p["scale"] * z
        return WindowNorm.denormalise(y_norm, p["centre"], p["window_scale"])

    def centre_from(self, p: dict[str, torch.Tensor]) -> torch.Tensor:
        """[1, B, H, T] the sample at zero base noise: the centre the spread calibration scales about."""
        return self.sample_from(p, torch.zeros((1, p["mean"].shape[0], self.config.event_features),
                                               device=p["mean"].device, dtype=p["mean"].dtype))

    @torch.no_grad()
    def sample(self, x: torch.Tensor, calendar: torch.Tensor, n_samples: int,
               generator: torch.Generator | Sequence[torch.Generator] | None = None,
               calibrated: bool = True) -> torch.Tensor:
        """[n_samples, B, H, T] predictive samples in the input space (spread-calibrated unless told not to).

        generator: one for the whole batch, or one per series: the B rows are then as many equal blocks of
        consecutive rows (a series' windows), and each block draws its noise and its mixture from its own
        generator, the same numbers in the same shapes as the block sampled alone, so a series' samples do
        not depend on the others it shares the batch with (up to the rounding of batched arithmetic)."""
        p = self.encode(x, calendar)
        draws = list(generator) if isinstance(generator, Sequence) else [generator]
        rows = x.shape[0] // len(draws)  # per generator
        if rows * len(draws) != x.shape[0]:
            raise ValueError(f"{len(draws)} generators for {x.shape[0]} rows: need equal blocks of rows")
        shape = (n_samples, rows, self.config.event_features)
        noise = [torch.randn(shape, generator=g, device=x.device, dtype=x.dtype) for g in draws]
        samples = self.sample_from(p, noise[0] if len(noise) == 1 else torch.cat(noise, dim=1))
        if calibrated and not bool((self.spread == 1).all()):
            samples = apply_spread(samples, self.centre_from(p), self.spread)
        if calibrated and bool((self.window_mix > 0).any()):
            window = x[:, :, self.targets]
            mixed = [mix_with_window(samples[:, k * rows:(k + 1) * rows], window[k * rows:(k + 1) * rows],
                                     self.window_mix, self.window_recent, g, per_path=self.config.path_mix)
                     for k, g in enumerate(draws)]
            samples = mixed[0] if len(mixed) == 1 else torch.cat(mixed, dim=1)
        return samples

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor, calendar: torch.Tensor, y: torch.Tensor, n_samples: int = 300,
                  seed: int = 0, batch: int = 2048, window_mix: bool = True) -> torch.Tensor:
        """Fit `spread` [H, T], then (if `window_mix`) `window_mix` and `window_recent` [H, T], on validation
        windows x [N, L, I], calendar [N, 4], y [N, H, I] (see `calibration`); returns the spread.
        Deterministic for a seed.
        n_samples per window: more than a forecast draws (100 by default), since the few hundred validation
        windows of a short trace leave the fitted factors noisy (on Fisher, 300 rather than 100 lowered the
        test CRPS by about 0.2%)."""
        generator = torch.Generator(device=x.device).manual_seed(seed)
        samples, centres = [], []
        for i in range(0, len(x), batch):
            p = self.encode(x[i:i + batch], calendar[i:i + batch])
            noise = torch.randn((n_samples, p["mean"].shape[0], self.config.event_features), generator=generator,
                                device=x.device, dtype=x.dtype)
            samples.append(self.sample_from(p, noise).flatten(2))
            centres.append(self.centre_from(p)[0].flatten(1))
        observed = y[:, :, self.targets].flatten(1)
        samples, centres = torch.cat(samples, dim=1), torch.cat(centres)
        spread = fit_spread(samples, centres, observed)
        self.window_mix.zero_()
        self.window_recent.fill_(float(self.config.lookback))
        calibrated = apply_spread(samples, centres[None], spread)
        horizon = self.config.horizon
        if window_mix:
            if self.config.path_mix:  # one draw per path, one probability per target: [N, L, T]
                weight, recent = fit_window_mix(calibrated, x[:, :, self.targets], observed, seed, steps=horizon)
            else:
                window = x[:, :, self.targets].unsqueeze(2).expand(-1, -1, horizon, -1).flatten(2)  # [N, L, H * T]
                weight, recent = fit_window_mix(calibrated, window, observed, seed)
            self.window_mix.copy_(weight.view_as(self.window_mix))
            self.window_recent.copy_(recent.view_as(self.window_recent))
        if self.config.path_mix and horizon > 1:  # then whole paths: a factor for the tail of their maximum
            spread = spread * fit_path_spread(calibrated, centres, observed, horizon, window=x[:, :, self.targets],
                                              mix=self.window_mix.flatten(), recent=self.window_recent.flatten(),
                                              seed=seed + 1)
        self.spread.copy_(spread.view_as(self.spread))
        return self.spread

    @torch.no_grad()
    def validation_nll(self, x: torch.Tensor, calendar: torch.Tensor, y: torch.Tensor, batch: int = 2048) -> float:
        """Mean NLL per target value over windows (the quantity early stopping compares), in eval mode."""
        was_training = self.training
        self.eval()
        total = sum(float(-self.log_prob(x[i:i + batch], calendar[i:i + batch], y[i:i + batch]).sum())
                    for i in range(0, len(x), batch))
        self.train(was_training)
        return total / (len(x) * self.config.event_features)

    # -- training objective --------------------------------------------------------------------------
    def loss(self, x: torch.Tensor, calendar: torch.Tensor, y: torch.Tensor, crps_weight: float = 0.0,
             crps_samples: int = 8) -> dict[str, torch.Tensor]:
        """NLL per target value (mean over windows), plus `crps_weight` x sample CRPS of the flow."""
        p = self.encode(x, calendar)
        nll = -self.log_prob(x, calendar, y, params=p).mean() / self.config.event_features
        out = {"nll": nll, "loss": nll}
        if crps_weight > 0:
            noise = torch.randn((crps_samples, x.shape[0], self.config.event_features), device=x.device, dtype=x.dtype)
            samples = self.sample_from(p, noise).flatten(2)  # [m, B, H * T]
            crps = sample_crps(y[:, :, self.targets].flatten(1), samples)
            out["crps"] = crps
            out["loss"] = nll + crps_weight * crps
        return out
