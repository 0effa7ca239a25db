"""`harmony backtest --suite`: every shipped trace, every policy, intervals, one report (harmony.backtest.suite)."""

from __future__ import annotations

from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from harmony.backtest.suite import MAIN_COLUMNS, main_rows, run_suite, suite_traces, write_suite
from harmony.cli.common import console
from harmony.cli.tables import results_table

SHOWN = ["trace", "policy", "setting", "value", "gpu_hours", "breach_rate", "breach_rate_lo", "breach_rate_hi",
         "oracle_ratio", "meets_sla"]


def run(sla: float, out: Path | None, quick: bool, clients: int, traces_wanted: str | None = None,
        model: str | None = None) -> None:
    traces = suite_traces(quick=quick, clients=clients, keys=traces_wanted)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        from harmony.backtest.suite import policy_names

        task = bar.add_task("suite", total=len(traces) * len(policy_names()))

        seen: list[str] = []

        def step(label: str) -> None:
            trace = label.split(":")[0]
            if not seen or seen[-1] != trace:
                if seen:
                    console.log(f"{seen[-1]} done")
                seen.append(trace)
            bar.update(task, description=label)
            bar.advance(task)

        result = run_suite(traces, sla=sla, progress=step, model=model)
    main = main_rows(result)
    console.print(results_table(f"suite, SLA {100 * sla:g}%: nothing tuned on the evaluated span (defaults, and "
                                "knobs chosen on the validation span); breach rate with its 90% block-bootstrap "
                                "interval", main, SHOWN))
    if result.groups:
        console.print(results_table("per-client traces: the median and the worst client", result.groups,
                                    ["trace", "policy", "setting", "gpu_hours", "breach_rate", "oracle_ratio",
                                     "meets_sla"]))
    console.print(results_table("targets at harmony's default knob", result.targets,
                                ["trace", "target", "measured", "met"]))
    for f in result.failed:
        console.print(f"[red]not replayed[/red] {f['trace']}: {f['reason']}")
    if out is not None:
        written = write_suite(result, out, sla)
        console.print(f"wrote {len(written)} files to {out} (suite.csv: {', '.join(MAIN_COLUMNS[:6])}, ...; "
                      "report.html)")
