"""`harmony calibrate`: fit the per-replica capacity model offline and write it as a NIG prior (JSON).

Thin: parses flags, calls `harmony.backtest.calibrate`, prints a table, writes the file. Registered on the app
at the end of `harmony.cli.main`; import it through `harmony.cli.main`, not directly (the two modules import
each other).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from harmony.cli.common import (
    AT_LEAST_ONE,
    FRACTION,
    JSON_FORMAT,
    POSITIVE,
    SEED,
    Bounds,
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
    user_errors,
)
from harmony.errors import HarmonyInputError

if TYPE_CHECKING:
    from harmony.backtest.calibrate import CapacityFit, CapacityObservations


def fit_table(title: str, observations: CapacityObservations, fit: CapacityFit) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("quantity", "mean", "sd", "5%", "95%"):
        table.add_column(col, justify="left" if col == "quantity" else "right")
    summary = fit.summary()
    for name, label in (("c", "capacity c"), ("s", "scatter s")):
        row = summary[name]
        table.add_row(f"{label} ({observations.unit})", *(f"{row[k]:.4g}" for k in ("mean", "sd", "q05", "q95")))
    return table


@user_errors
def calibrate(
    dataset: DatasetOpt = "gentd26",
    path: PathOpt = None,
    option: OptionOpt = None,
    interval: IntervalOpt = None,
    series: Annotated[str | None, typer.Option(help="the series to calibrate (needed when there are several)")] = None,
    demand: Annotated[str | None, typer.Option(
        help="demand indicators to sum, a,b (default: the dataset's; gentd26: generative_qps,api_qps)")] = None,
    replicas_indicator: Annotated[str | None, typer.Option(
        help="replica count indicator (gentd26 default: busy_pods)")] = None,
    saturation_indicator: Annotated[str | None, typer.Option(
        help="signal that peaks at the SLA limit (gentd26 default: queue_time_ms)")] = None,
    saturation_quantile: Annotated[float, typer.Option(
        help="ticks with saturation at or above this quantile count as at the SLA boundary")] = 0.9,
    observations: Annotated[Path | None, typer.Option(
        help="CSV of capacity observations instead of a dataset (with --column)")] = None,
    column: Annotated[str | None, typer.Option(help="the --observations column")] = None,
    unit: Annotated[str, typer.Option(help="unit of the --observations values")] = "demand per replica",
    prior_capacity: Annotated[float | None, typer.Option(
        help="prior centre of c (default: the median observation)")] = None,
    warmup: Annotated[int, typer.Option(help="NUTS warm-up iterations")] = 300,
    samples: Annotated[int, typer.Option(help="NUTS posterior draws")] = 500,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    out: Annotated[Path | None, typer.Option(help="write the fitted prior (a .json file)")] = None,
    force: ForceOpt = False,
) -> None:
    """Fit per-replica capacity (demand one replica serves at the SLA limit) from history with pyro NUTS.

    Observations are demand / replicas at ticks where the saturation signal is at or above its quantile,
    or a column of a CSV. The result is a Normal-Inverse-Gamma capacity posterior, moment-matched to the
    NUTS draws, for the controller to start from.
    """
    from harmony.backtest.calibrate import capacity_observations, capacity_signals, fit_capacity, read_observations

    check_flags({"--saturation-quantile": (saturation_quantile, FRACTION),
                 "--prior-capacity": (prior_capacity, POSITIVE), "--warmup": (warmup, AT_LEAST_ONE),
                 "--samples": (samples, Bounds(at_least=10)), "--seed": (seed, SEED)})
    if observations is not None or column is not None:
        if observations is None or column is None:
            raise HarmonyInputError("--observations and --column go together")
    inputs = {"--observations": observations} if observations is not None else {
        "--path": dataset_input(dataset, path)}
    check_out(out, force=force, inputs=inputs, formats=JSON_FORMAT)
    if observations is not None:
        found = read_observations(observations, column, unit)
        source = {"observations": str(observations), "column": column}
        title = f"capacity from {observations} ({column})"
    else:
        signals = capacity_signals(dataset, demand, replicas_indicator, saturation_indicator)
        frame = load_frame(dataset, path, dataset_options(option, interval=interval))
        found = capacity_observations(frame, signals, saturation_quantile, series)
        source = {"dataset": dataset, "path": frame.source, "series": series or frame.series[0],
                  "demand": list(signals.demand), "replicas_indicator": signals.replicas,
                  "saturation_indicator": signals.saturation, "saturation_quantile": saturation_quantile,
                  "saturation_threshold": found.threshold, "saturated_ticks": found.saturated}
        title = (f"{dataset}: {'+'.join(signals.demand)} per {signals.replicas}, at {signals.saturation} >= "
                 f"{found.threshold:.4g} (q{saturation_quantile:g})")
    fit = fit_capacity(found.values, prior_capacity, warmup=warmup, samples=samples, seed=seed)
    posterior = fit.posterior
    console.print(fit_table(title, found, fit))
    console.print(f"observations: {fit.n_observations}" + (
        f" ({found.saturated} saturated ticks, {found.dropped} without positive demand and replicas)"
        if found.saturated else "") + f"; prior centre {fit.prior_capacity:.4g}")
    console.print(f"NIG prior: mu {posterior.mu[0]:.4g}, kappa {posterior.kappa[0]:.4g}, "
                  f"alpha {posterior.alpha[0]:.4g}, beta {posterior.beta[0]:.4g}")
    if out is not None:
        record = {"capacity_posterior": posterior.to_dict(), "unit": found.unit,
                  "n_observations": fit.n_observations, "source": source,
                  "fit": {"model": "x ~ Normal(c, s), c ~ LogNormal(log c0, 1), s ~ HalfNormal(c0)",
                          "prior_capacity": fit.prior_capacity, "warmup": warmup, "samples": samples,
                          "seed": seed, "summary": fit.summary()}}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2) + "\n")
        console.print(f"wrote {out}")
