"""Wiring: seed, build the network, train it with Lightning, stop early on validation NLL, keep the best weights.

`TrainingSettings` is the one settings object for a run (epochs, batch, optimiser, seed, and the Lightning
`accelerator` / `devices` / `strategy`, passed through untouched, so `strategy="ddp"` runs data-parallel
over GPUs or nodes). CPU is the default; nothing assumes CUDA. The same seed, data and settings give the same
weights: Lightning's `seed_everything` seeds torch, numpy and Python before the network is built, and the
training batches are shuffled by a seeded generator.

The best weights (lowest `val_nll`) are kept in memory by a small callback and loaded back after training,
so the returned network is the best checkpoint, not the last epoch's. Its spread is then calibrated on the
same validation windows (`TrainingSettings.calibrate`); the test rows are never seen.
"""

from __future__ import annotations

import copy
import logging
import math
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import timedelta

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, EarlyStopping
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from harmony.errors import HarmonyInputError
from harmony.forecasting.models.network import HarmonyConfig, HarmonyNetwork
from harmony.forecasting.training.datamodule import WindowDataModule, WindowSet
from harmony.forecasting.training.lightning_module import HarmonyLightningModule


@dataclass(frozen=True)
class TrainingSettings:
    """One training run.

    max_epochs: upper bound on epochs; patience: epochs without a better val_nll before stopping.
    batch_size, learning_rate, weight_decay: AdamW on shuffled windows. crps_weight: weight of the sample-CRPS
        term beside the NLL (0 = NLL only). gradient_clip: max gradient norm.
    target_noise: std of Gaussian jitter added to training targets, in input units (dequantisation: a constant
        or few-valued indicator would otherwise let the likelihood grow without bound on a spike of density).
    warm_start: fit the head's per-indicator linear (AR) part by ridge regression before training.
    calibrate: after training, fit the network's spread factor per horizon step and target on the validation
        windows (minimum validation CRPS, `harmony.forecasting.models.calibration`); False keeps the trained spread.
    window_mix: with calibrate, also fit the probability of drawing a sample from the window's own recent
        values and how many recent steps to draw from (per step and target, minimum validation CRPS; 0 where
        the model alone is better).
    seed: seeds weights, dropout and batch order. accelerator, devices, strategy: Lightning's, as given.
    progress_bar: show Lightning's progress bar (the CLI does; library calls stay quiet).
    """

    max_epochs: int = 40
    patience: int = 5
    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    crps_weight: float = 0.0
    target_noise: float = 0.005
    gradient_clip: float = 1.0
    warm_start: bool = True
    calibrate: bool = True
    window_mix: bool = True
    seed: int = 0
    accelerator: str = "cpu"
    devices: int | str = 1
    strategy: str = "auto"
    progress_bar: bool = False

    def __post_init__(self) -> None:
        """Refuse settings no run can use, naming the field (NaN fails every comparison, so it is refused)."""
        for name, low, inclusive in (("max_epochs", 1, True), ("patience", 0, True), ("batch_size", 1, True),
                                     ("learning_rate", 0, False), ("weight_decay", 0, True),
                                     ("crps_weight", 0, True), ("target_noise", 0, True),
                                     ("gradient_clip", 0, False)):
            value = getattr(self, name)
            ok = value >= low if inclusive else value > low
            if not (ok and math.isfinite(value)):
                raise HarmonyInputError(f"training setting {name} must be {'>=' if inclusive else '>'} {low} "
                                        f"and finite, got {value}")


@dataclass(frozen=True)
class TrainingReport:
    best_val_nll: float
    best_epoch: int
    epochs_run: int
    seconds: float
    seconds_to_best: float
    train_windows: int
    validation_windows: int
    parameters: int
    mean_spread: float = 1.0  # mean calibrated spread factor (1: not calibrated)
    mean_window_mix: float = 0.0  # mean probability of a sample drawn from the window's recent values

    def to_dict(self) -> dict:
        return asdict(self)


class KeepBestWeights(Callback):
    """Copies the weights whenever val_nll improves (in memory, no checkpoint files)."""

    def __init__(self) -> None:
        self.best = float("inf")
        self.state: dict[str, torch.Tensor] | None = None
        self.epoch = -1
        self.started = time.perf_counter()
        self.seconds_to_best = 0.0

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or "val_nll" not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics["val_nll"])
        if value < self.best:
            self.best, self.epoch = value, trainer.current_epoch
            self.state = copy.deepcopy({k: v.detach().cpu() for k, v in pl_module.network.state_dict().items()})
            self.seconds_to_best = time.perf_counter() - self.started


@contextmanager
def quiet_lightning(enabled: bool):
    """Silence Lightning's start-up notices and data-loader hints for library (non-CLI) runs."""
    logger = logging.getLogger("pytorch_lightning")
    level = logger.level
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*number of training batches.*")
        warnings.filterwarnings("ignore", message=".*treespec.*")  # Lightning internals vs newer torch
        if enabled:
            logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            logger.setLevel(level)


def train_network(config: HarmonyConfig, train: WindowSet, validation: WindowSet,
                  settings: TrainingSettings | None = None, initial: dict[str, torch.Tensor] | None = None,
                  max_seconds: float | None = None) -> tuple[HarmonyNetwork, TrainingReport]:
    """Train a HarmonyNetwork, fresh or (fine-tuning) from `initial` weights; returns it with its best
    validation weights, on the CPU, in eval mode. max_seconds: stop training after that much wall time
    (Lightning's max_time; a budget, so a run it cuts short depends on the machine's speed)."""
    settings = settings or TrainingSettings()
    started = time.perf_counter()
    with quiet_lightning(not settings.progress_bar):
        pl.seed_everything(settings.seed, verbose=False)
        network = HarmonyNetwork(config)
        if initial is not None:
            network.load_state_dict(initial)
        elif settings.warm_start:
            network.warm_start(torch.from_numpy(train.x), torch.from_numpy(train.y))
        module = HarmonyLightningModule(network, settings.learning_rate, settings.weight_decay, settings.crps_weight,
                                        settings.target_noise)
        data = WindowDataModule(train, validation, settings.batch_size, settings.seed)
        best = KeepBestWeights()
        try:
            trainer = pl.Trainer(
                max_epochs=settings.max_epochs, accelerator=settings.accelerator, devices=settings.devices,
                strategy=settings.strategy, logger=False, enable_checkpointing=False, enable_model_summary=False,
                enable_progress_bar=settings.progress_bar, num_sanity_val_steps=0,
                gradient_clip_val=settings.gradient_clip,
                max_time=None if max_seconds is None else timedelta(seconds=max_seconds),
                callbacks=[EarlyStopping("val_nll", patience=settings.patience, mode="min"), best],
            )
        except (MisconfigurationException, ValueError, RuntimeError) as exc:  # Lightning's word on the hardware
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise HarmonyInputError(
                f"Lightning refused accelerator={settings.accelerator!r}, devices={settings.devices!r}, "
                f"strategy={settings.strategy!r} (--accelerator, --devices, --strategy): {first}") from None
        trainer.fit(module, datamodule=data)
    network = module.network.cpu()
    if best.state is not None:
        network.load_state_dict(best.state)
    network.eval()
    if settings.calibrate:
        network.calibrate(torch.from_numpy(validation.x), torch.from_numpy(validation.calendar),
                          torch.from_numpy(validation.y), seed=settings.seed, window_mix=settings.window_mix)
    report = TrainingReport(
        best_val_nll=best.best, best_epoch=best.epoch, epochs_run=trainer.current_epoch,
        seconds=time.perf_counter() - started, seconds_to_best=best.seconds_to_best, train_windows=len(train),
        validation_windows=len(validation), parameters=sum(p.numel() for p in network.parameters()),
        mean_spread=float(network.spread.mean()), mean_window_mix=float(network.window_mix.mean()),
    )
    return network, report
