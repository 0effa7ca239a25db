"""What "demand" means for each dataset, in which unit, and how much one replica serves.

A backtest compares demand against ready replicas x capacity per replica; a breach is a tick in which
demand exceeds that capacity. Definitions live in one table so that a dataset without one is refused
with a clear error instead of an arbitrary column being guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harmony.errors import HarmonyInputError
from harmony.telemetry.frame import TelemetryFrame


@dataclass(frozen=True)
class DemandDefinition:
    """indicators: summed to give demand. capacity_per_replica: demand one ready replica serves, in `unit`."""

    indicators: tuple[str, ...]
    unit: str
    capacity_per_replica: float
    description: str


DEMANDS: dict[str, DemandDefinition] = {
    "gentd26": DemandDefinition(
        ("gpu_busy",), "gpus", 1.0,
        "total GPU busy in GPU-equivalents (sum of pod duty cycles / 100); one GPU per pod",
    ),
    "azure-llm": DemandDefinition(
        ("context_token_rate", "generated_token_rate"), "tokens/s", 2000.0,
        "prompt plus generated tokens per second; a replica serves about 2,000 tokens/s",
    ),
    "fisher": DemandDefinition(("load",), "load", 0.5, "the container's load indicator; 0.5 load units a replica"),
    "synthetic": DemandDefinition(("gpu_busy",), "gpus", 1.0, "busy GPUs of the generated fleet; one GPU per pod"),
}


def demand_definition(dataset: str, indicators: str | None = None, capacity: float | None = None,
                      frame: TelemetryFrame | None = None) -> DemandDefinition:
    """The dataset's definition, or one built from `--demand a,b` (and `--capacity`) for any dataset."""
    if indicators:
        names = tuple(n.strip() for n in indicators.split(",") if n.strip())
        unit = frame.indicators[frame.indicator_position(names[0])].unit if frame is not None else "1"
        if capacity is None:
            raise HarmonyInputError("--demand needs --capacity (demand one replica serves)")
        base = DemandDefinition(names, unit, capacity, f"sum of {', '.join(names)}")
    else:
        if dataset not in DEMANDS:
            raise HarmonyInputError(
                f"dataset {dataset!r} has no demand definition (--dataset); pass --demand INDICATOR[,..] "
                f"and --capacity, or use one of: {', '.join(DEMANDS)}"
            )
        base = DEMANDS[dataset]
    if capacity is not None:
        if capacity <= 0:
            raise HarmonyInputError(f"--capacity must be positive, got {capacity}")
        base = DemandDefinition(base.indicators, base.unit, float(capacity), base.description)
    if frame is not None:
        for name in base.indicators:
            frame.indicator_position(name)  # raises naming the unknown indicator
    return base


def demand_of(frame: TelemetryFrame, definition: DemandDefinition) -> np.ndarray:
    """[time, series] demand: the sum of the definition's indicators (NaN where any is missing)."""
    pos = [frame.indicator_position(n) for n in definition.indicators]
    return frame.values[:, :, pos].sum(axis=2)
