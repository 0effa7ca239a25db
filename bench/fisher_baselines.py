"""Benchmark: baselines on bundled Fisher under the HARMONY protocol, lookback 72 / 144 / 288.

Prints, per lookback, the mean over containers of MSE and CRPS (scaled space) for every baseline,
measured in this run, beside the published HARMONY figures for the same containers and the published
ridge AR(36) reference (mean of all 10 containers, 3 of which are held back from this repository).

    .venv/bin/python bench/fisher_baselines.py [--models ar,ar-gauss,last,seasonal] [--path DIR]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from harmony.forecasting.evaluation import harmony_protocol
from harmony.forecasting.evaluation.published import AR36_FISHER_MEAN, HARMONY_FISHER, HARMONY_FISHER_MEAN
from harmony.telemetry.datasets import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="ar,ar-gauss,last,seasonal")
    parser.add_argument("--lookbacks", default="72,144,288")
    parser.add_argument("--path", default=None)
    args = parser.parse_args()
    frame = load_dataset("fisher", args.path)
    specs = args.models.split(",")
    console = Console(width=140)
    table = Table(title=f"Fisher, HARMONY protocol, horizon 1, mean over {len(frame.series)} containers",
                  title_justify="left")
    for col in ("lookback", "model", "MSE", "CRPS", "coverage90", "seconds"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for lookback in (int(x) for x in args.lookbacks.split(",")):
        started = time.perf_counter()
        rows = harmony_protocol(frame, specs, lookback=lookback)
        elapsed = time.perf_counter() - started
        for spec in specs:
            mine = [r for r in rows if r["model"] == spec]
            table.add_row(str(lookback), spec, f"{np.mean([r['mse'] for r in mine]):.4f}",
                          f"{np.mean([r['crps'] for r in mine]):.4f}",
                          f"{np.mean([r['coverage90'] for r in mine]):.3f}",
                          f"{sum(r['seconds'] for r in mine):.2f}")
        pub = [HARMONY_FISHER[(s, lookback)] for s in frame.series if (s, lookback) in HARMONY_FISHER]
        if pub:
            table.add_row(str(lookback), "HARMONY, published, same containers", f"{np.mean([m for m, _ in pub]):.4f}",
                          f"{np.mean([c for _, c in pub]):.4f}", "", "", style="dim")
        if lookback in HARMONY_FISHER_MEAN:
            mse, crps = HARMONY_FISHER_MEAN[lookback]
            table.add_row(str(lookback), "HARMONY, published, 10 containers", f"{mse:.4f}", f"{crps:.4f}", "", "",
                          style="dim")
        table.add_row(str(lookback), "ridge AR(36), published, 10 containers", f"{AR36_FISHER_MEAN[0]:.4f}",
                      f"{AR36_FISHER_MEAN[1]:.4f}", "", "", style="dim", end_section=True)
        console.log(f"lookback {lookback}: {elapsed:.1f} s")
    console.print(table)


if __name__ == "__main__":
    main()
