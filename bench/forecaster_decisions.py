"""Which forecaster should the harmony policy decide with? GPU-hours at the SLA on the suite's validation spans.

For each aggregate trace of the suite (`harmony.backtest.suite.AGGREGATES`) this replays the validation span
(the 20% before the evaluated 30%, with the first 50% as history; the evaluated span is never read) with the
harmony policy deciding on each forecaster variant through the one control step: `ar:30` (today's default),
the HARMONY model trained for the decision (the demand path over the cold start, `harmony`), HARMONY
fine-tuned in the loop (`--fine-tune` seconds between fine-tunes), and HARMONY trained on a 7-day telemetry
window (`harmony+7d`: historySeconds of 7 days, where the operator's default of 1,440 intervals is one day at
1-minute rows), and a deep ensemble of three HARMONY networks (`harmony+3`: `harmony:members=3`, each sample
path drawn from one member). Each variant runs at the default knob (the
SLA) and over the policy's sweep; the table gives the default run's GPU-hours and breach rate with
block-bootstrap 95% intervals, the cheapest swept setting within the SLA ("at the SLA"), and the paired
GPU-hour difference against `ar:30` at the default knob.

    .venv/bin/python bench/forecaster_decisions.py                       # every aggregate trace
    .venv/bin/python bench/forecaster_decisions.py --traces gentd26 --out results/forecaster_decisions.csv
    .venv/bin/python bench/forecaster_decisions.py --traces none --clients 10    # the per-client ServeGen kind

Verdict per trace (`verdict`): a variant wins when its cheapest swept setting within the SLA costs less than
`ar:30`'s, or when it has one and `ar:30` has none (`ar:30` cannot hold the SLA there at any setting); it
loses in the opposite cases; "tie" at equal cost, "neither" when no setting of either holds the SLA. A group
of per-client traces (`--clients`) is one trace kind, won when its clients' wins outnumber their losses.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from harmony.backtest import bootstrap as bs
from harmony.backtest.policies import POLICIES
from harmony.backtest.runner import Backtest, BacktestSettings
from harmony.backtest.suite import AGGREGATES, load_trace, per_client_traces, result_arrays, split_frame

#: (label, forecaster spec, seconds between fine-tunes (None: --fine-tune), telemetry window in seconds (None:
#: the operator's default historySeconds, which is also what HARMONY trains on))
VARIANTS = (("ar:30", "ar:30", 0.0, None), ("harmony", "harmony", 0.0, None), ("harmony+tune", "harmony", None, None),
            ("harmony+7d", "harmony", 0.0, 7 * 86400.0), ("harmony+3", "harmony:members=3", 0.0, None))


def run_trace(trace, variants, sla: float, fine_tune_s: float, replicates: int = 1000) -> list[dict]:
    frame, definition = load_trace(trace)
    val_frame, val_history, _ = split_frame(frame)
    results, rows = {}, []
    for label, spec, tune_s, history_s in variants:
        settings = BacktestSettings(cold_start_s=trace.cold_start_s, sla=sla, min_replicas=trace.min_replicas,
                                    train_fraction=val_history, model=spec, history_s=history_s,
                                    fine_tune_s=fine_tune_s if tune_s is None else tune_s)
        started = time.perf_counter()
        backtest = Backtest(val_frame, definition, settings)
        default = backtest.run("harmony", sla)
        swept = [backtest.run("harmony", v) for v in POLICIES["harmony"].sweep]
        within = [r for r in swept if r.breach_rate <= sla]
        at_sla = min(within, key=lambda r: r.gpu_hours) if within else None
        results[label] = default
        rows.append({"trace": trace.key, "forecaster": label, "default": default, "at_sla": at_sla,
                     "seconds": time.perf_counter() - started,
                     "status": backtest.forecaster.forecaster.status.to_dict()})
        print(f"  {trace.key} {label}: {default.gpu_hours:.1f} GPU-h at {100 * default.breach_rate:.2f}% "
              f"({rows[-1]['seconds']:.0f} s)", flush=True)
    interval_s = frame.interval.total_seconds()
    ticks = len(results[variants[0][0]].demand)
    draws = bs.block_draws(ticks, bs.block_ticks(ticks, interval_s), replicates, np.random.default_rng(0))
    out = []
    for row in rows:
        f = bs.figures(*result_arrays(row["default"]), interval_s, draws)
        d = bs.paired(result_arrays(row["default"]), result_arrays(results[variants[0][0]]), interval_s, draws)
        out.append({
            "trace": row["trace"], "forecaster": row["forecaster"],
            "gpu_hours": f.gpu_hours.estimate, "gpu_hours_lo": f.gpu_hours.low, "gpu_hours_hi": f.gpu_hours.high,
            "breach_rate": f.breach_rate.estimate, "breach_rate_lo": f.breach_rate.low,
            "breach_rate_hi": f.breach_rate.high,
            "d_gpu_hours_vs_ar": d.gpu_hours.estimate, "d_lo": d.gpu_hours.low, "d_hi": d.gpu_hours.high,
            "gpu_hours_at_sla": row["at_sla"].gpu_hours if row["at_sla"] else float("nan"),
            "breach_at_sla": row["at_sla"].breach_rate if row["at_sla"] else float("nan"),
            "seconds": row["seconds"], "fine_tunes": row["status"]["fineTunes"],
            "fallback": row["status"]["fallback"], "group": trace.group or trace.key,
        })
    base = out[0]["gpu_hours_at_sla"]
    for row in out:
        row["verdict"] = "" if row is out[0] else verdict(row["gpu_hours_at_sla"], base)
    return out


def verdict(at_sla: float, base_at_sla: float) -> str:
    """win / loss / tie / neither of a variant's cheapest setting within the SLA against the baseline's (NaN: none)."""
    ours, theirs = np.isfinite(at_sla), np.isfinite(base_at_sla)
    if ours and theirs:
        return "win" if at_sla < base_at_sla else "loss" if at_sla > base_at_sla else "tie"
    return "win" if ours else "loss" if theirs else "neither"


def kinds(rows: list[dict]) -> list[tuple[str, str, str, str]]:
    """(trace kind, variant, verdict, detail) per group of traces (an aggregate is a group of one)."""
    out = []
    for group in dict.fromkeys(r["group"] for r in rows):
        for variant in dict.fromkeys(r["forecaster"] for r in rows if r["group"] == group and r["verdict"]):
            got = [r["verdict"] for r in rows if r["group"] == group and r["forecaster"] == variant]
            wins, losses = got.count("win"), got.count("loss")
            kind = "win" if wins > losses else "loss" if losses > wins else "tie"
            out.append((group, variant, kind, f"{wins} won, {losses} lost, {got.count('tie')} tied, "
                                              f"{got.count('neither')} neither"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", default=",".join(t.key for t in AGGREGATES))
    parser.add_argument("--variants", default=",".join(v[0] for v in VARIANTS))
    parser.add_argument("--sla", type=float, default=0.01)
    parser.add_argument("--fine-tune", type=float, default=6 * 3600.0, help="seconds between fine-tunes")
    parser.add_argument("--clients", type=int, default=0,
                        help="also the N largest ServeGen clients of m-large and m-mid (the per-client kind)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    keys = args.traces.split(",")
    variants = [v for v in VARIANTS if v[0] in args.variants.split(",")]
    rows = []
    traces = [t for t in AGGREGATES if t.key in keys] + (per_client_traces(top=args.clients) if args.clients else [])
    for trace in traces:
        rows += run_trace(trace, variants, args.sla, args.fine_tune)
    head = f"{'trace':<18}{'forecaster':<14}{'GPU-h [95%]':>26}{'breach % [95%]':>22}{'d vs ar [95%]':>24}" \
           f"{'at SLA':>10}{'s':>7}"
    print(head)
    for r in rows:
        print(f"{r['trace']:<18}{r['forecaster']:<14}"
              f"{r['gpu_hours']:>10.1f} [{r['gpu_hours_lo']:.1f}, {r['gpu_hours_hi']:.1f}]"
              f"{100 * r['breach_rate']:>8.2f} [{100 * r['breach_rate_lo']:.2f}, {100 * r['breach_rate_hi']:.2f}]"
              f"{r['d_gpu_hours_vs_ar']:>10.1f} [{r['d_lo']:.1f}, {r['d_hi']:.1f}]"
              f"{r['gpu_hours_at_sla']:>10.1f}{r['seconds']:>7.0f}  {r['verdict']}")
    print(f"{'trace kind':<28}{'forecaster':<14}{'verdict':<9}clients / traces")
    for group, variant, kind, detail in kinds(rows):
        print(f"{group:<28}{variant:<14}{kind:<9}{detail}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
