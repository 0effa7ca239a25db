"""Benchmark: the HARMONY forecaster on bundled Fisher, HARMONY protocol, horizon 1, beside AR(36).

Per lookback (72, 144, 288 by default) every container is min-max scaled on its training rows and a fresh
model is trained on it (early stopping on its validation rows), as `harmony_protocol` does for any model;
ridge AR(36) with empirical residuals is measured in the same run. The ablations (`harmony-flat`: no
hierarchy, `harmony-gauss`: no flow) run at the lookbacks in `--ablation-lookbacks`. Prints the mean over
containers (MSE, CRPS, 90% coverage, seconds), CRPS relative to AR(36), and per-container CRPS, beside the
published HARMONY figures. Not a timed test: a full run takes about 15-20 minutes on 2 CPU cores.

    .venv/bin/python bench/harmony_fisher.py [--lookbacks 72,144,288] [--ablation-lookbacks 72] [--path DIR]
        [--options epochs=40+patience=5]  (extra `harmony:` options, joined by '+')
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from harmony.forecasting.evaluation import harmony_protocol
from harmony.forecasting.evaluation.published import HARMONY_FISHER, HARMONY_FISHER_MEAN
from harmony.telemetry.datasets import load_dataset


def spec_for(name: str, lookback: int, options: str) -> str:
    return f"{name}:lookback={lookback}" + (f"+{options}" if options else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lookbacks", default="72,144,288")
    parser.add_argument("--ablation-lookbacks", default="72")
    parser.add_argument("--containers", default=None, help="comma-separated subset (default: all)")
    parser.add_argument("--options", default="", help="extra harmony options, e.g. epochs=40+seed=1")
    parser.add_argument("--path", default=None)
    args = parser.parse_args()
    frame = load_dataset("fisher", args.path)
    if args.containers:
        frame = frame.select(series=args.containers.split(","))
    ablations = {int(x) for x in args.ablation_lookbacks.split(",") if x}
    console = Console(width=160)
    summary = Table(title=f"Fisher, HARMONY protocol, horizon 1, mean over {len(frame.series)} containers "
                          "(scaled space, 100 samples, seed 0)", title_justify="left")
    for col in ("lookback", "model", "MSE", "CRPS", "CRPS vs AR(36)", "coverage90", "seconds"):
        summary.add_column(col, justify="left" if col == "model" else "right")
    detail = Table(title="CRPS per container", title_justify="left")
    detail.add_column("lookback / model", justify="left")
    for name in frame.series:
        detail.add_column(name.replace("container", "c"), justify="right")
    for lookback in (int(x) for x in args.lookbacks.split(",")):
        names = ["harmony"] + (["harmony-flat", "harmony-gauss"] if lookback in ablations else [])
        specs = ["ar", *(spec_for(n, lookback, args.options) for n in names)]
        started = time.perf_counter()
        rows = harmony_protocol(frame, specs, lookback=lookback)
        console.log(f"lookback {lookback}: {time.perf_counter() - started:.0f} s")
        ar_crps = np.mean([r["crps"] for r in rows if r["model"] == "ar"])
        for spec, label in zip(specs, ["ar (AR(36), empirical)", *names], strict=True):
            mine = [r for r in rows if r["model"] == spec]
            crps = np.mean([r["crps"] for r in mine])
            summary.add_row(str(lookback), label, f"{np.mean([r['mse'] for r in mine]):.4f}", f"{crps:.4f}",
                            f"{100 * (crps / ar_crps - 1):+.1f}%", f"{np.mean([r['coverage90'] for r in mine]):.3f}",
                            f"{sum(r['seconds'] for r in mine):.0f}")
            detail.add_row(f"{lookback} {label}", *(f"{r['crps']:.4f}" for r in mine))
        pub = [HARMONY_FISHER[(s, lookback)] for s in frame.series if (s, lookback) in HARMONY_FISHER]
        if pub:
            summary.add_row(str(lookback), "HARMONY, published, same containers", f"{np.mean([m for m, _ in pub]):.4f}",
                            f"{np.mean([c for _, c in pub]):.4f}", "", "", "", style="dim")
        if lookback in HARMONY_FISHER_MEAN:
            mse, crps = HARMONY_FISHER_MEAN[lookback]
            summary.add_row(str(lookback), "HARMONY, published, 10 containers", f"{mse:.4f}", f"{crps:.4f}", "", "",
                            "", style="dim", end_section=True)
    console.print(summary)
    console.print(detail)


if __name__ == "__main__":
    main()
