"""Benchmark: decision latency of harmony.decision.decide.decide, one workload and 1,000 at once.

Targets: one workload under 5 ms, 1,000 workloads under 1 s, on 2 cores. Inputs are what the
operator passes: 200 joint demand samples over a 6-step horizon (5-minute cold start at 1-minute steps)
and capacity samples from the posterior, with the Beta-adapted risk level.

    .venv/bin/python bench/decision_speed.py [--samples 200] [--horizon 6] [--repeats 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from harmony.decision.decide import DecisionSettings, decide
from harmony.decision.posteriors import BreachPosterior, CapacityPosterior


def time_decide(workloads: int, samples: int, horizon: int, repeats: int, rng: np.random.Generator) -> np.ndarray:
    demand = rng.lognormal(2.0, 0.6, size=(workloads, samples, horizon))
    capacity_post = CapacityPosterior.prior(1.0, workloads=workloads)
    breach_post = BreachPosterior.prior(0.01, workloads=workloads)
    current = rng.integers(1, 60, size=workloads)
    settings = DecisionSettings(min_replicas=1, max_replicas=200, stabilisation_steps=5, max_step_down=4)
    recent = None
    risk = np.full(workloads, 0.01)  # the step's adapted level, one per workload
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        capacity = capacity_post.sample_mean(samples, rng)
        breach_post = breach_post.update(np.zeros(workloads))  # the step's learning, as in each decision
        decision, recent = decide(demand, capacity, current, risk, settings, recent)
        times.append(time.perf_counter() - started)
    return np.array(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--horizon", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    table = Table(title=f"decide(): {args.samples} samples x {args.horizon} steps, {args.repeats} repeats",
                  title_justify="left")
    for col in ("workloads", "p50 ms", "p99 ms", "target ms", "per workload us"):
        table.add_column(col, justify="right")
    for workloads, target in ((1, 5.0), (100, None), (1000, 1000.0)):
        t = time_decide(workloads, args.samples, args.horizon, args.repeats, rng) * 1000
        table.add_row(str(workloads), f"{np.median(t):.2f}", f"{np.quantile(t, 0.99):.2f}",
                      "" if target is None else f"< {target:g}", f"{1000 * np.median(t) / workloads:.1f}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
