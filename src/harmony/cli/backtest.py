"""`harmony backtest`: replay a trace against harmony and the baseline autoscalers, side by side."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from harmony.backtest.policy_names import POLICY_NAMES
from harmony.cli.common import (
    AT_LEAST_ONE,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    SEED,
    DatasetOpt,
    ForceOpt,
    IntervalOpt,
    OptionOpt,
    PathOpt,
    check_flags,
    check_out,
    console,
    dataset_input,
    dataset_options,
    load_frame,
    model_files,
    user_errors,
)
from harmony.cli.tables import duration, results_table
from harmony.errors import HarmonyInputError
from harmony.forecasting.loop_defaults import (
    DEFAULT_FINE_TUNE_S,
    DEFAULT_FORECASTER,
    DEFAULT_HISTORY_STEPS,
    DEFAULT_LOOKBACK_STEPS,
    DEFAULT_MAX_TRAINING_STEPS,
    DEFAULT_TRAINING_S,
    REFIT_EVERY,
)

if TYPE_CHECKING:
    from harmony.decision.posteriors import CapacityPosterior

AT_SLA_COLUMNS = ["policy", "knob", "value", "gpu_hours", "breach_rate", "oracle_ratio", "meets_sla", "unknown_ticks"]
#: What `write_outputs` writes in --out: always, and with --sweep.
OUT_FILES = ["summary.csv", "capacity.png", "report.html"]
SWEEP_FILES = ["sweep.csv", "at_sla.csv", "cost_breach.png"]


@user_errors
def backtest(
    dataset: DatasetOpt = "gentd26",
    path: PathOpt = None,
    policies: Annotated[str, typer.Option(help=f"all, or comma-separated: {', '.join(POLICY_NAMES)}")] = "all",
    cold_start: Annotated[float, typer.Option(help="seconds before a new replica serves")] = 300.0,
    sla: Annotated[float, typer.Option(help="target breach rate, in (0, 1)")] = 0.01,
    min_replicas: Annotated[int, typer.Option(help="fewest replicas")] = 1,
    max_replicas: Annotated[int, typer.Option(help="most replicas")] = 1000,
    capacity: Annotated[float | None, typer.Option(help="demand one replica serves (default: dataset's)")] = None,
    demand: Annotated[str | None, typer.Option(help="indicators summed as demand (default: dataset's)")] = None,
    series: Annotated[str | None, typer.Option(help="series to replay (default: the first)")] = None,
    model: Annotated[str, typer.Option(
        help="forecaster for forecasting policies: harmony (trained on the trace's history before each "
             "decision, ar:30 standing in until there is enough), or a baseline such as ar:30")
    ] = DEFAULT_FORECASTER,
    lookback_seconds: Annotated[float | None, typer.Option(
        help=f"forecast context, seconds (the CRD's lookbackSeconds; default {DEFAULT_LOOKBACK_STEPS} intervals)")
    ] = None,
    history_seconds: Annotated[float | None, typer.Option(
        help=f"telemetry each decision reads, seconds (historySeconds; default {DEFAULT_HISTORY_STEPS} intervals)")
    ] = None,
    training_seconds: Annotated[float | None, typer.Option(
        help=f"history the harmony model trains on, seconds (spec.model.trainingSeconds; default the history "
             f"window or {DEFAULT_TRAINING_S // 86400} days (at most {DEFAULT_MAX_TRAINING_STEPS:,} intervals), the "
             f"longer)")
    ] = None,
    refit_every: Annotated[int, typer.Option(help="decisions between refits of a baseline (0: fit once)")
                           ] = REFIT_EVERY,
    fine_tune_seconds: Annotated[float, typer.Option(
        help="seconds between fine-tunes of a model that learns in the loop (harmony; 0: never)")
    ] = DEFAULT_FINE_TUNE_S,
    fine_tune_epochs: Annotated[int, typer.Option(help="epochs of each fine-tune")] = 2,
    train_fraction: Annotated[float, typer.Option(help="share of the span used as history")] = 0.7,
    sweep: Annotated[bool, typer.Option(help="trace each policy's cost/breach curve over its knob")] = False,
    max_gap: Annotated[int, typer.Option(help="interpolate telemetry gaps up to this many steps")] = 5,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    capacity_prior: Annotated[Path | None, typer.Option(help="harmony's capacity prior (JSON from calibrate)")] = None,
    out: Annotated[Path | None, typer.Option(help="folder for summary.csv, PNG plots and report.html")] = None,
    option: OptionOpt = None,
    interval: IntervalOpt = None,
    suite: Annotated[bool, typer.Option(help="run the suite instead: every shipped trace, every policy, intervals")
                     ] = False,
    quick: Annotated[bool, typer.Option(help="with --suite: the aggregate traces only, no per-client series")
                     ] = False,
    traces: Annotated[str | None, typer.Option(help="with --suite: only these aggregate traces, comma-separated "
                                                     "(gentd26, servegen-m-large, servegen-m-mid, alibaba-lora, "
                                                     "synthetic)")] = None,
    clients: Annotated[int, typer.Option(help="with --suite: ServeGen's largest clients per model (0: none)")
                       ] = 20,
    force: ForceOpt = False,
) -> None:
    """GPU-hours, breach rate, unserved demand, scaling actions and utilisation per policy."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from harmony.backtest.policies import POLICIES, parse_policies
    from harmony.backtest.runner import SUMMARY_COLUMNS, Backtest, BacktestSettings, run_policies, sweep_policies
    from harmony.decision.demand import demand_definition
    from harmony.forecasting.predictors import build_predictor

    check_flags({"--sla": (sla, FRACTION), "--clients": (clients, NON_NEGATIVE)})
    build_predictor(model, "--model")  # an unknown --model fails before any work
    if suite:
        from harmony.cli import suite as suite_cli
        from harmony.telemetry.datasets import DATASETS_ROOT

        # the suite writes many files whose names follow its traces: any file already in --out needs --force
        check_out(out, force=force, inputs={"--suite": DATASETS_ROOT}, files=["*"])
        suite_cli.run(sla, out, quick, clients, traces, model)
        return
    check_flags({
        "--cold-start": (cold_start, NON_NEGATIVE), "--min-replicas": (min_replicas, NON_NEGATIVE),
        "--max-replicas": (max_replicas, AT_LEAST_ONE), "--capacity": (capacity, POSITIVE),
        "--lookback-seconds": (lookback_seconds, POSITIVE), "--history-seconds": (history_seconds, POSITIVE),
        "--training-seconds": (training_seconds, POSITIVE),
        "--refit-every": (refit_every, NON_NEGATIVE), "--train-fraction": (train_fraction, FRACTION),
        "--fine-tune-seconds": (fine_tune_seconds, NON_NEGATIVE),
        "--fine-tune-epochs": (fine_tune_epochs, AT_LEAST_ONE),
        "--max-gap": (max_gap, NON_NEGATIVE), "--seed": (seed, SEED),
    })
    if demand is not None and not any(n.strip() for n in demand.split(",")):
        raise HarmonyInputError(f"--demand {demand!r} names no indicator")
    check_out(out, force=force, files=OUT_FILES + (SWEEP_FILES if sweep else []),
              inputs={"--path": dataset_input(dataset, path), "--capacity-prior": capacity_prior,
                      "--model": model_files(model)})
    names = parse_policies(policies)
    options = dataset_options(option, interval=interval)
    frame = load_frame(dataset, path, options)
    definition = demand_definition(dataset, demand, capacity, frame, options=options)
    prior = read_capacity_prior(capacity_prior, definition.unit) if capacity_prior else None
    settings = BacktestSettings(cold_start_s=cold_start, sla=sla, min_replicas=min_replicas,
                                max_replicas=max_replicas, train_fraction=train_fraction, model=model,
                                lookback_s=lookback_seconds, history_s=history_seconds, training_s=training_seconds,
                                refit_every=refit_every, fine_tune_s=fine_tune_seconds,
                                fine_tune_epochs=fine_tune_epochs, seed=seed, capacity_prior=prior)
    if series is None:
        series = frame.series[0]
    frame = frame.select(series=[series]).trim()
    frame, _ = frame.fill_gaps(max_gap)
    bt = Backtest(frame, definition, settings)
    span = frame.index[bt.first_tick:]
    console.print(f"{dataset}/{series}: demand = {definition.description} ({definition.unit}), "
                  f"capacity {definition.capacity_per_replica:g} per replica; evaluated span {span[0]} .. "
                  f"{span[-1]} ({duration(span[-1] - span[0] + frame.interval)}, {len(span)} ticks, never used "
                  f"for fitting); cold start {cold_start:g} s, SLA {100 * sla:g}% of ticks")

    grid = sum(len(POLICIES[n].sweep) or 1 for n in names) if sweep else 0
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("backtest", total=len(names) + grid)

        def step(label: str) -> None:
            bar.update(task, description=label)
            bar.advance(task)

        results, rows = run_policies(bt, names, step)
        curve, at_sla = sweep_policies(bt, [n for n in names if n != "oracle"], step) if sweep else ([], [])
    console.print(results_table(f"{dataset}: policies at their defaults (harmony at the SLA)", rows,
                                SUMMARY_COLUMNS))
    if bt.forecaster is not None:
        console.print(forecaster_line(model, bt.forecaster.forecaster))
    unknown = rows[0]["unknown_ticks"] if rows else 0
    if unknown:
        console.print(f"{unknown} of {len(span)} evaluated ticks have no demand (gaps over --max-gap {max_gap}): "
                      "unknown, neither breach nor not; policies reading the tick held their count there")
    if sweep:
        console.print(results_table(
            f"at the SLA: each policy's cheapest setting with breach rate <= {100 * sla:g}% "
            "(meets_sla False: none did; its safest setting shown)", at_sla, AT_SLA_COLUMNS))
    if out is not None:
        write_outputs(out, dataset, definition.unit, sla, results, rows, curve, at_sla)


def forecaster_line(spec: str, adapter) -> str:
    """What forecast at the last decision, as the operator's status.forecaster says it: the model, the rows
    it was trained on and its fine-tunes, or the baseline standing in for it and why."""
    status = adapter.status
    if status.fallback:
        return f"forecaster: {status.model} stood in for {spec} to the end ({status.reason})"
    trained = f", trained on {adapter.trained_rows:,} rows of history" if adapter.trained_rows else ""
    tunes = f", fine-tuned {status.fine_tunes} times" if status.fine_tunes else ""
    return f"forecaster: {status.model}{trained}{tunes}"


def read_capacity_prior(path: Path, demand_unit: str) -> CapacityPosterior:
    """The `capacity_posterior` of a `harmony calibrate` JSON, refused if its unit is not the demand's."""
    from harmony.decision.posteriors import CapacityPosterior

    try:
        record = json.loads(path.read_text())
        prior = CapacityPosterior.from_dict(record["capacity_posterior"])
    except FileNotFoundError:
        raise HarmonyInputError(f"{path}: no such file (--capacity-prior)") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise HarmonyInputError(
            f"{path}: not a calibrate JSON with capacity_posterior (--capacity-prior): {exc}") from None
    _check_prior(prior, path)
    unit = str(record.get("unit", ""))
    if unit.removesuffix(" per replica") != demand_unit:
        raise HarmonyInputError(
            f"{path}: capacity unit {unit!r} does not match the demand unit {demand_unit!r} (--capacity-prior)")
    return prior


def _check_prior(prior: CapacityPosterior, path: Path) -> None:
    """A NIG prior for one workload: mu (the capacity) and kappa, alpha, beta finite and positive."""
    sizes = {name: getattr(prior, name).size for name in ("mu", "kappa", "alpha", "beta")}
    if set(sizes.values()) != {1}:
        raise HarmonyInputError(f"{path}: capacity_posterior must hold one workload, has sizes {sizes} "
                                "(--capacity-prior)")
    for name in ("mu", "kappa", "alpha", "beta"):
        value = float(getattr(prior, name)[0])
        if not (math.isfinite(value) and value > 0):
            raise HarmonyInputError(f"{path}: capacity_posterior.{name} must be a finite positive number, got "
                                    f"{value:g} (--capacity-prior)")


def write_outputs(out: Path, dataset: str, unit: str, sla: float, results, rows, curve, at_sla) -> None:
    import pandas as pd

    from harmony.backtest.report import plot_capacity, plot_cost_breach, write_html
    from harmony.backtest.runner import SUMMARY_COLUMNS

    if out.exists() and not out.is_dir():
        raise HarmonyInputError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows)[SUMMARY_COLUMNS].to_csv(out / "summary.csv", index=False)
    images = [plot_capacity(results, out / "capacity.png", unit)]
    sections = [("Policies at their defaults", rows, SUMMARY_COLUMNS)]
    if curve:
        pd.DataFrame(curve).to_csv(out / "sweep.csv", index=False)
        pd.DataFrame(at_sla).to_csv(out / "at_sla.csv", index=False)
        oracle = [r for r in rows if r["policy"] == "oracle"]
        images.append(plot_cost_breach(curve + oracle, sla, out / "cost_breach.png"))
        sections.append(("At the SLA target", at_sla, AT_SLA_COLUMNS))
    unknown = rows[0]["unknown_ticks"] if rows else 0
    write_html(out / "report.html", f"harmony backtest: {dataset}",
               f"SLA {100 * sla:g}% of ticks; GPU-hours count every requested replica. {unknown} evaluated "
               f"ticks have no demand (unknown_ticks: telemetry gaps, neither breach nor not, left out of the "
               f"breach rate; policies reading the tick held their count there).", sections, images)
    console.print(f"wrote {out}/summary.csv, {', '.join(p.name for p in images)}, report.html")
