"""The names of the dataset sources (`--dataset NAME`), as plain data: no loader, no pandas.

The CLI's help and shell completion name the datasets on every `--help` and TAB; reading them from the
registry (`harmony.telemetry.datasets.SOURCES`) would import every loader and pandas with it. The registry
is the one that loads; at import it refuses to differ from this table (same names, same order), so the two
cannot drift.
"""

from __future__ import annotations

#: Every registered dataset source, in the registry's order (`harmony datasets list`, `--dataset` help).
DATASET_NAMES: tuple[str, ...] = (
    "fisher", "gentd26", "azure-llm", "servegen", "alibaba-lora", "csv", "parquet", "synthetic", "prometheus",
)
