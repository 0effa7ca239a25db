"""The backtest suite's tables as Markdown, from a folder the suite wrote (docs/results/README.md's tables).

    .venv/bin/python bench/suite_tables.py DIR [--baseline DIR2 --baseline-label ar:30]

DIR holds `suite.csv`, `paired.csv`, `targets.csv` and `groups.csv` (`bench/backtest_suite.py --out DIR`).
With --baseline, a table of harmony's default run beside the same policy's in DIR2 (another forecaster,
`bench/backtest_suite.py --model ar:30 --out DIR2`), on the same evaluated spans.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

AGGREGATES = ("gentd26", "servegen-m-large", "servegen-m-mid", "alibaba-lora", "synthetic")


def rows(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def num(value: str) -> float:
    return float(value) if value not in ("", "nan", "None") else float("nan")


def pct(row: dict, key: str = "breach_rate") -> str:
    lo, hi = num(row.get(f"{key}_lo", "")), num(row.get(f"{key}_hi", ""))
    over = " (over)" if row.get("meets_sla") == "False" else ""
    interval = f" [{100 * lo:.2f}%, {100 * hi:.2f}%]" if lo == lo else ""
    return f"{100 * num(row[key]):.2f}%{interval}{over}"


def hours(row: dict) -> str:
    lo, hi = num(row.get("gpu_hours_lo", "")), num(row.get("gpu_hours_hi", ""))
    interval = f" [{lo:,.1f}, {hi:,.1f}]" if lo == lo else ""
    return f"{num(row['gpu_hours']):,.1f}{interval}"


def targets(folder: Path) -> list[str]:
    out = ["| trace | target | measured | met |", "| --- | --- | --- | --- |"]
    out += [f"| {r['trace']} | {r['target']} | {r['measured']} | {'yes' if r['met'] == 'True' else 'no'} |"
            for r in rows(folder / "targets.csv")]
    return out


def main_tables(folder: Path) -> list[str]:
    suite = rows(folder / "suite.csv")
    out = []
    for trace in AGGREGATES:
        mine = [r for r in suite if r["trace"] == trace]
        if not mine:
            continue
        out += [f"### {trace}", "", "| policy | default: GPU-hours [90%] | breach rate [90%] | validation knob: value "
                "| GPU-hours | breach rate [90%] | oracle ratio (default / validation) |",
                "| --- | --- | --- | --- | --- | --- | --- |"]
        for policy in dict.fromkeys(r["policy"] for r in mine):
            by = {r["setting"]: r for r in mine if r["policy"] == policy}
            if policy == "oracle":
                oracle = next(iter(by.values()))
                out.append(f"| oracle | {num(oracle['gpu_hours']):,.1f} | 0% | | | | 1.00 |")
                continue
            d, v = by["default"], by["validation"]
            out.append(f"| {policy} | {hours(d)} | {pct(d)} | {num(v['value']):g} | {num(v['gpu_hours']):,.1f} | "
                       f"{pct(v)} | {num(d['oracle_ratio']):.2f} / {num(v['oracle_ratio']):.2f} |")
        out.append("")
    return out


def paired(folder: Path) -> list[str]:
    out = ["| trace | rival | harmony minus rival: GPU-hours [90%] | breach rate [90%] |", "| --- | --- | --- | --- |"]
    for r in rows(folder / "paired.csv"):
        if r["setting"] != "validation":
            continue
        out.append(f"| {r['trace']} | {r['rival']} (validation knob) | {num(r['d_gpu_hours']):+,.1f} "
                   f"[{num(r['d_gpu_hours_lo']):+,.1f}, {num(r['d_gpu_hours_hi']):+,.1f}] | "
                   f"{100 * num(r['d_breach_rate']):+.2f} [{100 * num(r['d_breach_rate_lo']):+.2f}, "
                   f"{100 * num(r['d_breach_rate_hi']):+.2f}] pp |")
    return out


def groups(folder: Path) -> list[str]:
    out = ["| group | policy | setting | GPU-hours | breach rate | oracle ratio | clients within the SLA / worst "
           "within |", "| --- | --- | --- | --- | --- | --- | --- |"]
    out += [f"| {r['group'] if 'group' in r else r['trace']} | {r['policy']} | {r['setting']} | "
            f"{num(r['gpu_hours']):,.1f} | {100 * num(r['breach_rate']):.2f}% | {num(r['oracle_ratio']):.2f} | "
            f"{r['meets_sla']} |" for r in rows(folder / "groups.csv")]
    return out


def beside(folder: Path, baseline: Path, label: str) -> list[str]:
    def harmony(f: Path) -> dict:
        return {r["trace"]: r for r in rows(f / "suite.csv") if r["policy"] == "harmony" and r["setting"] == "default"}

    new, old = harmony(folder), harmony(baseline)
    out = [f"| trace | harmony with harmony: GPU-hours [90%] | breach rate [90%] | harmony with {label}: GPU-hours "
           "[90%] | breach rate [90%] |", "| --- | --- | --- | --- | --- |"]
    for trace in AGGREGATES:
        if trace in new and trace in old:
            out.append(f"| {trace} | {hours(new[trace])} | {pct(new[trace])} | {hours(old[trace])} | "
                       f"{pct(old[trace])} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--baseline", type=Path, default=None)
    parser.add_argument("--baseline-label", default="ar:30")
    args = parser.parse_args()
    parts = [("## Targets", targets(args.folder)), ("## Main tables", main_tables(args.folder)),
             ("## Paired", paired(args.folder)), ("## Per client", groups(args.folder))]
    if args.baseline:
        parts.append(("## Beside the baseline", beside(args.folder, args.baseline, args.baseline_label)))
    for title, lines in parts:
        print(title, "", *lines, "", sep="\n")


if __name__ == "__main__":
    main()
