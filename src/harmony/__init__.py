"""harmony: scale GPU workloads ahead of demand.

Two stages (the HARMONY paper, arXiv 2408.01000): a probabilistic multi-indicator forecast of demand, then a
Bayesian decision that picks the cheapest replica count whose realised breach rate is the SLA. One package,
one subpackage per stage of the data flow; layers point down only (checked by import-linter in `make lint`):

    cli > operator | backtest > decision > forecasting > telemetry

`harmony.errors` sits beside the layers: every layer may raise its one error type.
"""


def __getattr__(name: str) -> str:
    """`harmony.__version__`, read from the package metadata when first asked for: importlib.metadata (email,
    zipfile, csv, ...) costs every `harmony --help` and TAB tens of milliseconds otherwise."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("harmony-autoscaler")
    except PackageNotFoundError:  # running from a source tree that was never installed
        found = "0.0.0+unknown"
    globals()["__version__"] = found  # asked once: later reads find the attribute itself
    return found
