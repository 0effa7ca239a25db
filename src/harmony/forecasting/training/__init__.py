"""Training of the HARMONY forecaster with Lightning: windows (`datamodule`), the training and validation
steps (`lightning_module`), and the wiring that seeds, trains with early stopping on validation NLL and
keeps the best weights (`estimator`). The network itself is in `harmony.forecasting.models`.

Layering: imports torch, pytorch_lightning and `forecasting`; never `controller`.
"""

from harmony.forecasting.training.datamodule import WindowDataModule, WindowSet, frame_windows, training_windows
from harmony.forecasting.training.estimator import TrainingReport, TrainingSettings, train_network
from harmony.forecasting.training.lightning_module import HarmonyLightningModule

__all__ = [
    "HarmonyLightningModule", "TrainingReport", "TrainingSettings", "WindowDataModule", "WindowSet",
    "frame_windows", "train_network", "training_windows",
]
