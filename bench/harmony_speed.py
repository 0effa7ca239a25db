"""Benchmark: HARMONY training and inference speed, and peak memory, on this machine's CPUs.

1. Trains on one Fisher container (HARMONY protocol preparation: min-max scaled on its training rows,
   early stopping on its validation rows) and reports the wall time to the best checkpoint and in total.
2. Batched inference: one `predict` call for `--series` context windows (72 x 11, taken from the
   container's test part) at horizon 1 with 100 samples; median of `--repeats` calls after a warm-up.
   Also a horizon-10 model (trained for 3 epochs only; speed does not depend on accuracy) on
   `--series-long` windows: its flow vector is 10 x 11 = 110 wide, so it costs far more per series.
3. Peak resident memory of the process (ru_maxrss) after each part.

    .venv/bin/python bench/harmony_speed.py [--container container1] [--series 1000] [--threads 2]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from harmony.forecasting.predictors.base import Context
from harmony.forecasting.predictors.harmony import HarmonyPredictor
from harmony.forecasting.scaling import MinMaxScaler
from harmony.forecasting.training import TrainingSettings
from harmony.telemetry.datasets import load_dataset


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def contexts(values: np.ndarray, lookback: int, n_series: int, rng: np.random.Generator) -> np.ndarray:
    ends = rng.integers(lookback, len(values), size=n_series)
    return np.stack([values[e - lookback:e, 0] for e in ends], axis=1)  # [L, series, I]


def time_predict(model: HarmonyPredictor, ctx: Context, horizon: int, repeats: int) -> float:
    model.predict(ctx, horizon, 100, seed=0)  # warm-up
    runs = []
    for k in range(repeats):
        started = time.perf_counter()
        model.predict(ctx, horizon, 100, seed=k)
        runs.append(time.perf_counter() - started)
    return float(np.median(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--container", default="container1")
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--series-long", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--path", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sub = load_dataset("fisher", args.path).series_frame(args.container)
    split = sub.split(0.7, 0.2)
    scaler = MinMaxScaler.fit(split.train)
    table = Table(title=f"HARMONY speed on {args.threads} CPU threads ({args.container}, lookback 72)",
                  title_justify="left")
    for col in ("measure", "value"):
        table.add_column(col, justify="left" if col == "measure" else "right")

    model = HarmonyPredictor(72, 1, TrainingSettings())
    model.fit(scaler.transform_frame(split.train), scaler.transform_frame(split.validation))
    r = model.report
    table.add_row("training windows / parameters", f"{r.train_windows} / {r.parameters}")
    table.add_row("epochs: best / run", f"{r.best_epoch + 1} / {r.epochs_run}")
    table.add_row("seconds to the best checkpoint", f"{r.seconds_to_best:.1f}")
    table.add_row("seconds training in total (incl. patience epochs)", f"{r.seconds:.1f}")
    table.add_row("peak RSS after training (MiB)", f"{peak_rss_mib():.0f}")

    rng = np.random.default_rng(0)
    values = scaler.transform(split.test.values)
    ctx = Context(contexts(values, 72, args.series, rng))
    seconds = time_predict(model, ctx, 1, args.repeats)
    table.add_row(f"predict {args.series} series, horizon 1, 100 samples (s, median)", f"{seconds:.3f}")
    table.add_row("peak RSS after inference (MiB)", f"{peak_rss_mib():.0f}")

    long = HarmonyPredictor(72, 10, TrainingSettings(max_epochs=3))
    long.fit(scaler.transform_frame(split.train), scaler.transform_frame(split.validation))
    ctx_long = Context(ctx.values[:, : args.series_long])
    seconds = time_predict(long, ctx_long, 10, max(1, args.repeats // 2))
    table.add_row(f"predict {args.series_long} series, horizon 10 (joint flow), 100 samples (s, median)",
                  f"{seconds:.3f}")
    table.add_row("peak RSS at the end (MiB)", f"{peak_rss_mib():.0f}")
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
