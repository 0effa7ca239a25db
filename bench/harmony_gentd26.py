"""Benchmark: the HARMONY forecaster on bundled GenTD26 (Alibaba GenAI serving) at 1 minute, horizon 10.

Rolling-origin protocol (`rolling_protocol`): 70/10/20 chronological split, min-max scaler fitted on the
training rows, a forecast of the next `--horizon` minutes from every test origin (`--stride`, default 1), all
9 indicators. Baselines measured in the same run: last value, seasonal naive with a one-hour season (the
bundled slice spans 16 hours, too short for the default one-day season), and ridge AR(36). HARMONY models
the 10-step horizon jointly (flow over horizon x indicators). Prints MSE, CRPS, pinball and the coverage of
the central 90% interval (target: 0.88-0.92). Not a timed test (about a minute on 2 CPU cores).

    .venv/bin/python bench/harmony_gentd26.py [--lookback 60] [--horizon 10] [--options epochs=40]
"""

from __future__ import annotations

import argparse
import time

from rich.console import Console
from rich.table import Table

from harmony.forecasting.evaluation import rolling_protocol
from harmony.telemetry.datasets import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lookback", type=int, default=60)
    parser.add_argument("--horizon", type=int, default=10)
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--options", default="", help="extra harmony options joined by '+'")
    parser.add_argument("--ablations", action="store_true", help="also harmony-flat and harmony-gauss")
    parser.add_argument("--path", default=None)
    args = parser.parse_args()
    frame, _ = load_dataset("gentd26", args.path).fill_gaps(3)
    extra = f"+{args.options}" if args.options else ""
    names = ["harmony", *(["harmony-flat", "harmony-gauss"] if args.ablations else [])]
    specs = ["last", "seasonal:60", "ar", *(f"{n}:lookback={args.lookback}+horizon={args.horizon}{extra}"
                                             for n in names)]
    started = time.perf_counter()
    rows = rolling_protocol(frame, specs, lookback=args.lookback, horizon=args.horizon, stride=args.stride)
    console = Console(width=160)
    console.log(f"{time.perf_counter() - started:.0f} s")
    table = Table(title=f"gentd26 at 1 min, rolling protocol, lookback {args.lookback}, horizon {args.horizon}, "
                        f"stride {args.stride} (scaled space, 100 samples, seed 0)", title_justify="left")
    for col in ("model", "MSE", "CRPS", "pinball", "coverage90", "targets", "seconds"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        table.add_row(r["model"], f"{r['mse']:.4f}", f"{r['crps']:.4f}", f"{r['pinball']:.4f}",
                      f"{r['coverage90']:.3f}", str(r["n_targets"]), f"{r['seconds']:.1f}")
    console.print(table)


if __name__ == "__main__":
    main()
