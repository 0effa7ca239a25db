"""The names of the backtest's policies (`--policies NAME,...`), as plain data: no policy, no numpy.

The CLI's help names them on every `--help` and TAB; the registry (`harmony.backtest.policies.POLICIES`)
imports the policies and numpy with them. The registry is the one that builds; at import it refuses to differ
from this table (same names, same order), so the two cannot drift.
"""

from __future__ import annotations

#: Every registered policy, in the registry's order (`--policies all` runs them in this order).
POLICY_NAMES: tuple[str, ...] = (
    "harmony", "harmony-via-hpa", "hpa", "keda", "kpa", "static", "predictive", "quantile", "oracle",
)
