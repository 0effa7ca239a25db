"""Predictors behind one registry.

Model specs are `name` or `name:argument`, e.g. `ar`, `ar:12`, `seasonal:144`. One module per family;
add a model by adding a factory below and its name in `harmony.forecasting.predictor_names` (what the CLI's
help reads without importing the models; checked here).
"""

from __future__ import annotations

from collections.abc import Callable

from harmony.errors import HarmonyInputError
from harmony.forecasting.predictor_names import PREDICTOR_NAMES, harmony_options_help
from harmony.forecasting.predictors.autoregressive import AutoRegressive
from harmony.forecasting.predictors.base import Context, Predictor
from harmony.forecasting.predictors.naive import LastValue, RecentWindow, SeasonalNaive


def _int_arg(spec: str, arg: str | None, default: int | None) -> int | None:
    if arg is None or arg == "":
        return default
    try:
        return int(arg)
    except ValueError:
        raise HarmonyInputError(f"model {spec!r} (--models): argument {arg!r} is not an integer") from None


def _harmony(spec: str, arg: str | None, name: str = "harmony", **fixed) -> Predictor:
    # imported on use: torch and Lightning load only when a HARMONY model is asked for
    from harmony.forecasting.predictors.harmony import harmony_from_spec

    return harmony_from_spec(spec, arg, name, **fixed)


#: name -> (factory(spec, argument), help)
PREDICTORS: dict[str, tuple[Callable[[str, str | None], Predictor], str]] = {
    "last": (lambda spec, arg: LastValue(), "last observed value, empirical multi-step errors"),
    "naive": (lambda spec, arg: LastValue(), "alias of 'last'"),
    "window": (
        lambda spec, arg: RecentWindow(_int_arg(spec, arg, None)),
        "recent empirical marginal: draws from the last N context values; argument: N (default: whole context)",
    ),
    "seasonal": (
        lambda spec, arg: SeasonalNaive(_int_arg(spec, arg, None)),
        "seasonal naive; argument: season in steps (default one day)",
    ),
    "ar": (
        lambda spec, arg: AutoRegressive(_int_arg(spec, arg, 36), residuals="empirical"),
        "ridge AR(p) per indicator, empirical validation residuals; argument: p (default 36)",
    ),
    "ar-gauss": (
        lambda spec, arg: AutoRegressive(_int_arg(spec, arg, 36), residuals="gaussian"),
        "ridge AR(p) per indicator, Gaussian residuals; argument: p (default 36)",
    ),
    "harmony": (
        lambda spec, arg: _harmony(spec, arg),
        "HARMONY: hierarchical attention + spline flow, trained in fit; argument: PATH.ckpt (load a trained "
        f"model) or KEY=VALUE joined by '+' ({harmony_options_help()}); "
        "a bare integer is the lookback",
    ),
    "harmony-flat": (
        lambda spec, arg: _harmony(spec, arg, "harmony-flat", hierarchy=False),
        "HARMONY ablation without hierarchy (flat attention); argument as for 'harmony', no checkpoint",
    ),
    "harmony-gauss": (
        lambda spec, arg: _harmony(spec, arg, "harmony-gauss", flow="none"),
        "HARMONY ablation without flow (Gaussian head only); argument as for 'harmony', no checkpoint",
    ),
}
if tuple(PREDICTORS) != PREDICTOR_NAMES:  # the light names table must list exactly these, in this order
    raise ImportError(f"harmony.forecasting.predictor_names.PREDICTOR_NAMES {PREDICTOR_NAMES} differs from the "
                      f"registered predictors {tuple(PREDICTORS)}")


def build_predictor(spec: str, flag: str = "--models") -> Predictor:
    """A fresh, unfitted predictor from a spec such as 'ar:36' (`flag` names the option in errors)."""
    name, _, arg = spec.strip().partition(":")
    if name not in PREDICTORS:
        raise HarmonyInputError(f"unknown model {name!r} ({flag}); known: {', '.join(PREDICTORS)}")
    return PREDICTORS[name][0](spec, arg or None)


def parse_models(specs: str) -> list[str]:
    """Split a comma-separated --models value, rejecting empty and unknown names up front."""
    items = [s.strip() for s in specs.split(",") if s.strip()]
    if not items:
        raise HarmonyInputError("--models is empty")
    for spec in items:
        build_predictor(spec)
    return items


__all__ = ["PREDICTORS", "Context", "Predictor", "build_predictor", "parse_models"]
