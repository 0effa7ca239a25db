"""A thin LightningModule around HarmonyNetwork: the training and validation steps and the optimiser.

Training minimises the exact negative log-likelihood per target value (optionally plus a sample-CRPS
term, `crps_weight`) on targets jittered by `target_noise`; validation logs `val_nll` (no jitter), the
quantity early stopping and best-weight selection watch. Batches are (x [B, lookback, I], calendar [B, 4],
y [B, horizon, I]). Devices come from the Trainer (no `.cuda()` anywhere).
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from harmony.forecasting.models.network import HarmonyNetwork


class HarmonyLightningModule(pl.LightningModule):
    def __init__(self, network: HarmonyNetwork, learning_rate: float = 2e-3, weight_decay: float = 1e-4,
                 crps_weight: float = 0.0, target_noise: float = 0.0) -> None:
        super().__init__()
        self.network = network
        self.learning_rate, self.weight_decay, self.crps_weight = learning_rate, weight_decay, crps_weight
        self.target_noise = target_noise

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, calendar, y = batch
        if self.target_noise > 0:  # dequantisation jitter (see TrainingSettings.target_noise)
            y = y + self.target_noise * torch.randn_like(y)
        out = self.network.loss(x, calendar, y, crps_weight=self.crps_weight)
        self.log("train_nll", out["nll"], prog_bar=True, batch_size=len(x))
        return out["loss"]

    def validation_step(self, batch, batch_idx: int) -> None:
        x, calendar, y = batch
        nll = -self.network.log_prob(x, calendar, y).mean() / self.network.config.event_features
        self.log("val_nll", nll, prog_bar=True, sync_dist=True, batch_size=len(x))

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
