"""Benchmark: harmony against the baseline autoscalers on bundled GenTD26 (issue 4's targets).

Cold start 5 minutes, SLA 1% of ticks breached, evaluated on the last 30% of the shipped span (never used
for fitting or tuning). Prints the defaults table, each policy at the SLA (cheapest sweep setting within
it), and the targets: harmony's GPU-hours at most 1.3x the oracle's, below every baseline's at a matched
breach rate, and harmony's realised breach rate in [0.5%, 1.5%].

`--span validation` runs the same on the span where design choices are made instead: history is the first
50% of the trace and the evaluated span the next 20% (the last 30% is not read at all).

    .venv/bin/python bench/backtest_gentd26.py [--span test|validation] [--model ar:30] [--cold-start 300]
        [--sla 0.01] [--path DIR]
"""

from __future__ import annotations

import argparse

from rich.console import Console

from controller.backtest import SUMMARY_COLUMNS, Backtest, BacktestSettings, run_policies, sweep_policies
from controller.demand import demand_definition
from controller.policies import POLICIES
from controller.tables import results_table
from forecasting.datasets import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ar:30")
    parser.add_argument("--cold-start", type=float, default=300.0)
    parser.add_argument("--sla", type=float, default=0.01)
    parser.add_argument("--path", default=None)
    parser.add_argument("--span", choices=("test", "validation"), default="test")
    args = parser.parse_args()
    console = Console(width=150)
    frame, _ = load_dataset("gentd26", args.path).fill_gaps(5)
    train_fraction = 0.7
    if args.span == "validation":
        frame = frame.slice(0, int(len(frame) * 0.7))
        train_fraction = 0.5 / 0.7
    settings = BacktestSettings(cold_start_s=args.cold_start, sla=args.sla, model=args.model,
                                train_fraction=train_fraction)
    bt = Backtest(frame, demand_definition("gentd26"), settings)
    names = list(POLICIES)
    _, rows = run_policies(bt, names)
    span = f"{args.span} span: ticks {bt.first_tick}-{len(bt.demand) - 1}"
    console.print(results_table(f"gentd26 {span}, cold start {args.cold_start:g} s, forecaster {args.model}: "
                                "defaults", rows, SUMMARY_COLUMNS))
    _, at_sla = sweep_policies(bt, [n for n in names if n != "oracle"])
    console.print(results_table(f"at the SLA ({100 * args.sla:g}%)", at_sla,
                                ["policy", "knob", "value", "gpu_hours", "breach_rate", "oracle_ratio", "meets_sla"]))
    harmony_default = next(r for r in rows if r["policy"].startswith("harmony"))
    harmony_sla = next(r for r in at_sla if r["policy"] == "harmony")
    baselines = [r for r in at_sla if r["policy"] not in ("harmony",) and r["meets_sla"]]
    cheapest = min(baselines, key=lambda r: r["gpu_hours"]) if baselines else None
    checks = [
        ("harmony GPU-hours <= 1.3x oracle (at the SLA)", f"{harmony_sla['oracle_ratio']:.2f}x",
         harmony_sla["oracle_ratio"] <= 1.3),
        ("harmony below every baseline meeting the SLA",
         f"{harmony_sla['gpu_hours']:.1f} vs {cheapest['policy']} {cheapest['gpu_hours']:.1f}" if cheapest else "-",
         cheapest is None or harmony_sla["gpu_hours"] < cheapest["gpu_hours"]),
        ("harmony realised breach rate in [0.5%, 1.5%] (default epsilon = SLA)",
         f"{100 * harmony_default['breach_rate']:.2f}%", 0.005 <= harmony_default["breach_rate"] <= 0.015),
    ]
    for text, value, ok in checks:
        console.print(f"{'MET ' if ok else 'MISS'}  {text}: {value}")


if __name__ == "__main__":
    main()
