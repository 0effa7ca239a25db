"""Benchmark: one tick of forecast plus decision for many workloads sharing a HARMONY model, batched.

A model trained for the decision (the demand path over the cold start, `targets`) forecasts every
workload's context window in one `predict` call (the series axis), each series from its own seed as the
operator's forecast batcher calls it (harmony.operator.batching), then `decide` takes all their demand paths
at once. This is the cost per tick of objects sharing a served checkpoint, all due in one window.

    .venv/bin/python bench/forecast_decide_batch.py [--workloads 1000] [--samples 200] [--threads 1]

The model's weights do not change its speed: it is trained for one epoch on gentd26 (1-minute rows), with
the decision horizon of a 300 s cold start (6 steps) and a 120-step lookback, the operator's defaults.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from harmony.decision.decide import DecisionSettings, decide
from harmony.decision.demand import demand_definition
from harmony.decision.posteriors import CapacityPosterior
from harmony.forecasting.predictors.base import Context
from harmony.forecasting.predictors.harmony import HarmonyPredictor
from harmony.forecasting.scaling import MinMaxScaler
from harmony.forecasting.training import TrainingSettings
from harmony.telemetry.datasets import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--horizon", type=int, default=6)
    parser.add_argument("--lookback", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the operator's --torch-threads)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    frame, _ = load_dataset("gentd26").fill_gaps(5)
    scaled = MinMaxScaler.fit(frame).transform_frame(frame)
    n = len(scaled)
    demand = demand_definition("gentd26", frame=frame).indicators
    model = HarmonyPredictor(args.lookback, args.horizon, TrainingSettings(max_epochs=1, calibrate=True),
                             targets=demand)
    started = time.perf_counter()
    model.fit(scaled.slice(0, int(n * 0.8)), scaled.slice(int(n * 0.8), n))
    train_s = time.perf_counter() - started

    rng = np.random.default_rng(0)
    ends = rng.integers(args.lookback, n, size=args.workloads)
    values = np.stack([scaled.values[e - args.lookback:e, 0] for e in ends], axis=1)  # [L, W, I]
    context = Context(values, np.repeat(frame.index.to_numpy()[-1:], args.workloads), frame.interval,
                      frame.indicator_names)
    capacity = CapacityPosterior.prior(0.05, workloads=args.workloads)
    current = rng.integers(1, 60, size=args.workloads)
    settings = DecisionSettings(min_replicas=1, max_replicas=1000, stabilisation_steps=5)
    risk = np.full(args.workloads, 0.01)
    forecast_s, decide_s, forecast_cpu = [], [], []
    for r in range(args.repeats + 1):  # the first is a warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        seeds = [r * args.workloads + w for w in range(args.workloads)]  # one per workload, as the operator's
        fc = model.predict(context, args.horizon, args.samples, seed=seeds)
        paths = np.moveaxis(fc.samples[..., 0], 2, 0)  # [W, n, H]
        t1, c1 = time.perf_counter(), time.process_time()
        decide(paths, capacity.sample_mean(args.samples, rng), current, risk, settings, None)
        t2 = time.perf_counter()
        if r:
            forecast_s.append(t1 - t0)
            forecast_cpu.append(c1 - c0)
            decide_s.append(t2 - t1)

    table = Table(title=f"one tick: {args.workloads} workloads x {args.samples} samples x {args.horizon} steps, "
                        f"{args.threads} threads (median of {args.repeats})")
    for col in ("forecast s", "forecast CPU s", "decide s", "total s", "per workload ms", "training s (1 epoch)"):
        table.add_column(col, justify="right")
    f, d = float(np.median(forecast_s)), float(np.median(decide_s))
    table.add_row(f"{f:.3f}", f"{float(np.median(forecast_cpu)):.3f}", f"{d:.3f}", f"{f + d:.3f}",
                  f"{1000 * (f + d) / args.workloads:.2f}", f"{train_s:.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
