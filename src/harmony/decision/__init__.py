"""harmony.decision: pure decision math. `decide` (the chance-constrained replica count), the capacity and
breach-rate posteriors, demand definitions, the control step and its state, and the capacity fit.

Values in, values out: no torch, kubernetes, kopf, prometheus_client or requests (import-linter contracts in
pyproject.toml). The backtest and the operator both call the same control step.
"""
