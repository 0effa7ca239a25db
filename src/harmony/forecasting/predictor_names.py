"""The names of the predictors (`--models NAME[:ARG]`) and of checkpoint files, as plain data: no model, no
pandas, no torch.

The CLI's help names them on every `--help` and TAB; the registry (`harmony.forecasting.predictors.PREDICTORS`)
imports the models and pandas with them. The registry is the one that builds; at import it refuses to differ
from this table (same names, same order), so the two cannot drift.
"""

from __future__ import annotations

#: Every registered predictor, in the registry's order.
PREDICTOR_NAMES: tuple[str, ...] = (
    "last", "naive", "window", "seasonal", "ar", "ar-gauss", "harmony", "harmony-flat", "harmony-gauss",
)

#: File endings a `harmony:PATH` model spec reads as a checkpoint (HarmonyPredictor.load), so the CLI can name
#: them without loading the model's module.
CHECKPOINT_SUFFIXES = (".ckpt", ".pt")
