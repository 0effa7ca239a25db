"""harmony.forecasting: telemetry, datasets, forecasts, metrics, predictors and evaluation protocols.

Layering rule (checked by import-linter in `make lint`): this package never imports `controller`,
kubernetes or prometheus. It turns telemetry into probabilistic forecasts; deciding and acting on
them is the controller's job.
"""
