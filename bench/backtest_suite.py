"""Benchmark: the backtest suite (harmony.backtest.suite), every shipped trace and every policy, SLA 1%.

Traces: gentd26 (1 min, cold start 5 min); ServeGen m-large and m-mid aggregates (10 min, cold start 10 min);
ServeGen's 20 largest clients of each model (median and worst client); the Alibaba LoRA request log as busy
GPUs at 1 minute with scale to zero (cold start 5 min); synthetic (5 min, 14 days). Evaluated span: the last
30% of each trace; each policy at its default knob and at the knob chosen on the 20% before it (nothing
tuned on the evaluated span), then hindsight (each policy's cheapest setting within the SLA on the evaluated
span itself, labelled as such). Breach rates and GPU-hours with 90% block-bootstrap intervals; paired
intervals of harmony minus each rival; the targets at harmony's default knob. Also reachable as
`harmony backtest --suite`.

    .venv/bin/python bench/backtest_suite.py [--quick] [--clients 20] [--traces gentd26,...] [--sla 0.01]
        [--out docs/results]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from harmony.cli import suite as suite_cli
from harmony.cli.common import console


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="aggregate traces only")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--sla", type=float, default=0.01)
    parser.add_argument("--out", type=Path, default=Path("results/suite"))
    parser.add_argument("--traces", default=None, help="only these aggregate traces, comma-separated")
    parser.add_argument("--model", default=None, help="the forecasting policies' forecaster (default: harmony)")
    args = parser.parse_args()
    started = time.perf_counter()
    suite_cli.run(args.sla, args.out, args.quick, args.clients, args.traces, args.model)
    console.print(f"suite took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
