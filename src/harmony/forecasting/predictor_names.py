"""The names of the predictors (`--models NAME[:ARG]`), of checkpoint files and of the HARMONY model's spec
options, as plain data: no model, no pandas, no torch.

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


def _flag(text: str) -> bool:
    return text.lower() in ("1", "true", "yes")


#: `harmony:KEY=VALUE+...` spec option -> (target, field, cast): "predictor" options go to HarmonyPredictor,
#: "config" ones to HarmonyConfig, "settings" ones to TrainingSettings (`harmony_from_spec` reads them; the
#: registry's help lists them)
HARMONY_OPTIONS: dict[str, tuple[str, str, type]] = {
    "lookback": ("predictor", "lookback", int),
    "horizon": ("predictor", "horizon", int),
    "target": ("predictor", "targets", lambda text: tuple(text.split("/"))),  # target=a/b: several
    "d_model": ("config", "d_model", int),
    "heads": ("config", "n_heads", int),
    "layers": ("config", "layers_per_level", int),
    "dropout": ("config", "dropout", float),
    "flow": ("config", "flow", str),
    "flow_layers": ("config", "flow_layers", int),
    "min_scale": ("config", "min_scale", float),
    "calendar": ("config", "calendar", _flag),
    "quantiles": ("config", "window_quantiles", int),
    "epochs": ("settings", "max_epochs", int),
    "patience": ("settings", "patience", int),
    "batch": ("settings", "batch_size", int),
    "lr": ("settings", "learning_rate", float),
    "crps": ("settings", "crps_weight", float),
    "noise": ("settings", "target_noise", float),
    "seed": ("settings", "seed", int),
    "members": ("predictor", "members", int),
    "calibrate": ("settings", "calibrate", _flag),
    "mix": ("settings", "window_mix", _flag),
}

#: the value the help shows beside an option (its default, or the values it takes)
HARMONY_OPTION_EXAMPLES = {"lookback": "72", "horizon": "1", "target": "a/b", "flow": "spline|spline-ar|maf"}


def harmony_options_help() -> str:
    """The HARMONY spec options as the registry's help names them: `lookback=72, horizon=1, ...`."""
    return ", ".join(f"{key}={HARMONY_OPTION_EXAMPLES[key]}" if key in HARMONY_OPTION_EXAMPLES else key
                     for key in HARMONY_OPTIONS)
