"""harmony: scale GPU workloads ahead of demand.

Two stages (the HARMONY paper, arXiv 2408.01000): a probabilistic multi-indicator forecast of demand, then a
Bayesian decision that picks the cheapest replica count whose realised breach rate is the SLA. One package,
one subpackage per stage of the data flow; layers point down only (checked by import-linter in `make lint`):

    cli > operator | backtest > decision > forecasting > telemetry

`harmony.errors` sits beside the layers: every layer may raise its one error type.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("harmony-autoscaler")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
