"""What "demand" means for each dataset, in which unit, and how much one replica serves.

A backtest compares demand against ready replicas x capacity per replica; a breach is a tick in which
demand exceeds that capacity. Definitions live in one table so that a dataset without one is refused
with a clear error instead of an arbitrary column being guessed.

A dataset whose demand depends on a load option has entries keyed `dataset:option=value` beside its plain
`dataset` entry (the option's default): ServeGen's models differ in capacity per replica, so
`servegen:model=m-mid` applies to `load_dataset("servegen", model="m-mid")`. `demand_definition` picks
them from the `options` the frame was loaded with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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


SERVEGEN_M_LARGE = DemandDefinition(
    ("request_rate",), "requests/s", 16.0,
    "requests per second to model m-large; a replica (a 70B-class model on 4 H100s, tensor-parallel) serves "
    "~16 requests/s",
)

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
    # ServeGen capacities (derivation in harmony.telemetry.datasets.servegen and data/README.md): vLLM v0.6.0
    # output throughput on H100s (Lambda's vLLM benchmark) / 211 output tokens per request (the mean of the
    # bundled Azure LLM conversation trace).
    "servegen": SERVEGEN_M_LARGE,
    "servegen:model=m-large": SERVEGEN_M_LARGE,
    "servegen:model=m-mid": DemandDefinition(
        ("request_rate",), "requests/s", 38.0,
        "requests per second to model m-mid; a replica (a 7-13B-class model on one H100) serves ~38 requests/s",
    ),
    "alibaba-lora": DemandDefinition(
        ("busy_executors",), "gpus", 1.0,
        "time-weighted mean busy GPU executors (each request holds one GPU for its execution time); one GPU "
        "per replica",
    ),
}


def demand_key(dataset: str, options: Mapping[str, Any] | None = None,
               capacity: float | None = None) -> str:
    """The DEMANDS key for a dataset loaded with `options`: `dataset:option=value` where DEMANDS has one.

    An option value without an entry, for an option that has entries (e.g. a held-back ServeGen model read
    with --path), is refused unless `capacity` is given: the default's capacity would be a guess."""
    for name, value in sorted((options or {}).items()):
        prefix = f"{dataset}:{name}="
        if f"{prefix}{value}" in DEMANDS:
            return f"{prefix}{value}"
        known = [k.removeprefix(prefix) for k in DEMANDS if k.startswith(prefix)]
        if known and capacity is None:
            raise HarmonyInputError(
                f"dataset {dataset!r} has no demand definition for {name}={value!r} (known: {', '.join(known)}); "
                f"pass --capacity (demand one replica serves)"
            )
    return dataset


def demand_definition(dataset: str, indicators: str | None = None, capacity: float | None = None,
                      frame: TelemetryFrame | None = None,
                      options: Mapping[str, Any] | None = None) -> DemandDefinition:
    """The dataset's definition, or one built from `--demand a,b` (and `--capacity`) for any dataset.

    options: the dataset options the frame was loaded with; they pick a per-option entry (`demand_key`).
    Without them a dataset's plain entry applies, i.e. the definition of its default options."""
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
                f"and --capacity, or use one of: {', '.join(k for k in DEMANDS if ':' not in k)}"
            )
        base = DEMANDS[demand_key(dataset, options, capacity)]
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
