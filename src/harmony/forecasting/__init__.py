"""harmony.forecasting: Forecast objects, metrics, scaling, predictors (baselines and HARMONY) with their input
schema, the network, its training and the evaluation protocols; `adapter` turns a fitted predictor into demand
samples for the control step.

Imports `harmony.telemetry` only, never kubernetes, kopf, prometheus_client, requests, typer or rich
(import-linter contracts in pyproject.toml).
"""
