"""Autoscaling policies behind one registry: harmony and the baselines it is measured against.

One module per policy; `build_policy("hpa", 0.6)` makes one with its knob set.
"""

from __future__ import annotations

from harmony.backtest.policies.base import Observation, Policy, PolicySetup
from harmony.backtest.policies.harmony import Harmony
from harmony.backtest.policies.harmony_via_hpa import HarmonyViaHPA
from harmony.backtest.policies.hpa import HPA
from harmony.backtest.policies.keda import KEDA
from harmony.backtest.policies.kpa import KPA
from harmony.backtest.policies.oracle import Oracle
from harmony.backtest.policies.predictive import Predictive
from harmony.backtest.policies.quantile import Quantile
from harmony.backtest.policies.static import Static
from harmony.backtest.policy_names import POLICY_NAMES
from harmony.errors import HarmonyInputError

POLICIES: dict[str, type[Policy]] = {
    cls.name: cls for cls in (Harmony, HarmonyViaHPA, HPA, KEDA, KPA, Static, Predictive, Quantile, Oracle)
}
if tuple(POLICIES) != POLICY_NAMES:  # the light names table must list exactly these, in this order
    raise ImportError(f"harmony.backtest.policy_names.POLICY_NAMES {POLICY_NAMES} differs from the "
                      f"registered policies {tuple(POLICIES)}")


def build_policy(name: str, value: float | None = None) -> Policy:
    try:
        return POLICIES[name](value)
    except KeyError:
        raise HarmonyInputError(f"unknown policy {name!r} (--policies); known: {', '.join(POLICIES)}") from None


def parse_policies(text: str) -> list[str]:
    """`all` or a comma-separated list; unknown names are refused up front."""
    names = list(POLICIES) if text.strip() == "all" else [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise HarmonyInputError("--policies is empty")
    for name in names:
        if name not in POLICIES:
            raise HarmonyInputError(f"unknown policy {name!r} (--policies); known: all, {', '.join(POLICIES)}")
    return names


__all__ = ["POLICIES", "POLICY_NAMES", "Observation", "Policy", "PolicySetup", "build_policy", "parse_policies"]
