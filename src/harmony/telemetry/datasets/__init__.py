"""Dataset sources behind one registry: `load_dataset(name, path=None, **options) -> TelemetryFrame`.

One module per source; each defines `SOURCE`. Add a source by adding a module, a line below and its name in
`harmony.telemetry.dataset_names` (what the CLI's help reads without importing the loaders; checked here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harmony.errors import HarmonyInputError
from harmony.telemetry.dataset_names import DATASET_NAMES
from harmony.telemetry.datasets import (
    alibaba_lora,
    azure_llm,
    fisher,
    gentd26,
    prometheus_range,
    servegen,
    synthetic,
    tabular,
)
from harmony.telemetry.datasets.base import DATASETS_ROOT, DatasetSource
from harmony.telemetry.frame import TelemetryFrame

SOURCES: dict[str, DatasetSource] = {
    source.name: source
    for source in (
        fisher.SOURCE, gentd26.SOURCE, azure_llm.SOURCE, servegen.SOURCE, alibaba_lora.SOURCE,
        tabular.SOURCE_CSV, tabular.SOURCE_PARQUET, synthetic.SOURCE, prometheus_range.SOURCE,
    )
}
if tuple(SOURCES) != DATASET_NAMES:  # the light names table must list exactly these, in this order
    raise ImportError(f"harmony.telemetry.dataset_names.DATASET_NAMES {DATASET_NAMES} differs from the "
                      f"registered sources {tuple(SOURCES)}")


def get_source(name: str) -> DatasetSource:
    try:
        return SOURCES[name]
    except KeyError:
        raise HarmonyInputError(f"unknown dataset {name!r} (--dataset); known: {', '.join(SOURCES)}") from None


def load_dataset(name: str, path: str | Path | None = None, **options: Any) -> TelemetryFrame:
    return get_source(name).load(path, **options)


__all__ = ["DATASETS_ROOT", "DATASET_NAMES", "SOURCES", "DatasetSource", "get_source", "load_dataset"]
