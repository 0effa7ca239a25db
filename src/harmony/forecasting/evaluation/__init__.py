"""Evaluation protocols (HARMONY per-container, rolling origin) and published reference figures."""

from harmony.forecasting.evaluation.protocols import harmony_protocol, rolling_protocol, with_means

__all__ = ["harmony_protocol", "rolling_protocol", "with_means"]
