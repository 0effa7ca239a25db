"""Peer forecasters from established libraries, behind harmony's Predictor interface, for the bench only.

They live here and not in `harmony.forecasting.predictors` on purpose: statsforecast, LightGBM and
GluonTS are the `bench` extra (`pip install -e '.[bench]'`), never runtime dependencies of the
operator or the CLI. Each factory imports its library on use, so this table loads without the extra and a
missing library fails only the peer that needs it. Specs read as harmony's do, `name` or
`name:KEY=VALUE+...`; `forecast_peers.py` puts these factories beside harmony's own for the length of one
run, so the protocols build them by spec.

GluonTS 0.17.0 declares pandas < 3, and installing the extra takes pandas down to 2.3 (statsforecast 2.0.1
already did); the project allows pandas >= 2.2, and the peer runs on pandas 3.1 as well.
"""

from __future__ import annotations

from collections.abc import Callable

from harmony.errors import HarmonyInputError
from harmony.forecasting.predictors import Predictor


def options(spec: str, arg: str | None, known: dict[str, type]) -> dict:
    """`KEY=VALUE+KEY=VALUE` of a spec's argument, each converted by its type in `known`."""
    out: dict = {}
    for item in (arg or "").split("+"):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise HarmonyInputError(f"model {spec!r}: option {item!r} is not KEY=VALUE with KEY one of "
                                    f"{', '.join(known)}")
        try:
            out[key] = known[key](value)
        except ValueError:
            raise HarmonyInputError(f"model {spec!r}: {key}={value!r} is not a {known[key].__name__}") from None
    return out


def _ets(spec: str, arg: str | None) -> Predictor:
    from peers.statistical import auto_ets

    return auto_ets(**options(spec, arg, {"season": int}))


def _theta(spec: str, arg: str | None) -> Predictor:
    from peers.statistical import auto_theta

    return auto_theta(**options(spec, arg, {"season": int}))


def _lgbm(spec: str, arg: str | None) -> Predictor:
    from peers.lgbm import LightGBMQuantiles

    return LightGBMQuantiles(**options(spec, arg, {"lags": int, "horizon": int, "rounds": int, "seed": int}))


def _deepar(spec: str, arg: str | None) -> Predictor:
    from peers.deepar import GluonDeepAR

    return GluonDeepAR(**options(spec, arg, {"context": int, "lags": int, "horizon": int, "epochs": int,
                                             "patience": int, "seed": int}))


#: name -> (factory(spec, argument), help), shaped as `harmony.forecasting.predictors.PREDICTORS`
PEERS: dict[str, tuple[Callable[[str, str | None], Predictor], str]] = {
    "ets": (_ets, "statsforecast AutoETS per series and indicator; option: season (steps, default 1)"),
    "theta": (_theta, "statsforecast AutoTheta per series and indicator; option: season (steps, default 1)"),
    "lgbm": (_lgbm, "LightGBM quantile regression on lags, one direct model per step and quantile; options: "
                    "lags (36), horizon (1: the longest horizon it forecasts), rounds (100), seed (0)"),
    "deepar": (_deepar, "GluonTS DeepAR (LSTM, Student-t, its own sample paths), one global model over series "
                        "and indicators; options: context (72 steps read), lags (7), horizon (1: the longest it "
                        "forecasts), epochs (100), patience (20 epochs without a better validation loss), "
                        "seed (0)"),
}

#: the library each peer needs, for a clear skip when the bench extra is missing
LIBRARIES = {"ets": "statsforecast", "theta": "statsforecast", "lgbm": "lightgbm", "deepar": "gluonts"}

__all__ = ["LIBRARIES", "PEERS", "options"]
