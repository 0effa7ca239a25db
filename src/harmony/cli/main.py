"""The `harmony` command line: a thin typer layer that parses flags and calls the library.

Bad input ends with a one-line `error: ...` naming the file, column or flag, and exit status 2.

`harmony --help`, `harmony COMMAND --help` and shell completion (which runs this module on every TAB) import
this module and the command modules only: what a command's flags need is imported at the top, the names of
datasets, models and policies, the adapter's defaults and the exporter's port from plain-data tables
(`harmony.telemetry.dataset_names`, `harmony.forecasting.predictor_names`, `harmony.backtest.policy_names`,
`harmony.forecasting.loop_defaults`, `harmony.operator.ports`) rather than their registries; everything heavy
(pandas, pyarrow, requests, torch, Lightning, pyro, matplotlib, kopf, kubernetes, scipy, numpy,
prometheus_client) inside the command that uses it. The groups are `CommandGroup`s, so that `--help` builds
none of typer's pydantic value adapters.
`tests/test_cli_startup.py` holds that line; `bench/cli_startup.py` times it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harmony.cli.common import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    SEED,
    TABLE_FORMATS,
    CommandGroup,
    DatasetOpt,
    ForceOpt,
    FormatOpt,
    IndicatorColOpt,
    IntervalOpt,
    LevelsOpt,
    OptionOpt,
    PathOpt,
    SeriesColOpt,
    TimeColOpt,
    ValueColOpt,
    check_flags,
    check_out,
    console,
    dataset_input,
    dataset_options,
    load_frame,
    model_files,
    user_errors,
    write_table,
)
from harmony.cli.tables import frame_summary, results_table
from harmony.errors import HarmonyInputError
from harmony.forecasting.predictor_names import PREDICTOR_NAMES

app = typer.Typer(help="harmony: forecast GPU demand as a distribution and scale ahead of it.",
                  no_args_is_help=True, add_completion=True, cls=CommandGroup)
datasets_app = typer.Typer(help="Bundled and user-supplied telemetry datasets.", no_args_is_help=True,
                           cls=CommandGroup)
app.add_typer(datasets_app, name="datasets")


def _print_version(value: bool) -> None:
    if value:
        from harmony import __version__  # package metadata only: nothing heavy for --version

        typer.echo(f"harmony {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                          help="print the version and exit")] = False,
) -> None:
    """harmony: forecast GPU demand as a distribution and scale ahead of it."""


# --- datasets ---------------------------------------------------------------------------------------
@datasets_app.command("list")
def datasets_list() -> None:
    """List dataset sources, their bundled copies and options."""
    from rich.table import Table

    from harmony.telemetry.datasets import SOURCES

    table = Table(title="datasets", title_justify="left")
    for col in ("name", "description", "bundled", "options"):
        table.add_column(col)
    for source in SOURCES.values():
        table.add_row(source.name, source.description, source.default_path or "(generated)",
                      ", ".join(source.options))
    console.print(table)


@datasets_app.command("show")
@user_errors
def datasets_show(
    name: Annotated[str, typer.Argument(help="dataset name")],
    path: PathOpt = None,
    option: OptionOpt = None,
    interval: IntervalOpt = None,
    time_column: TimeColOpt = None,
    series_column: SeriesColOpt = None,
    indicator_column: IndicatorColOpt = None,
    value_column: ValueColOpt = None,
    format: FormatOpt = None,
    levels: LevelsOpt = None,
) -> None:
    """Span, interval, series, indicators with levels, and missing data of a dataset."""
    options = dataset_options(option, interval=interval, time_column=time_column, series_column=series_column,
                              indicator_column=indicator_column, value_column=value_column, format=format,
                              levels=levels)
    frame = load_frame(name, path, options)
    frame_summary(name, frame, console)


# --- evaluate ---------------------------------------------------------------------------------------
@app.command()
@user_errors
def evaluate(
    dataset: DatasetOpt = "fisher",
    path: PathOpt = None,
    protocol: Annotated[str, typer.Option(help="harmony (per series, horizon 1) or rolling")] = "harmony",
    lookback: Annotated[int, typer.Option(help="context window in steps")] = 72,
    horizon: Annotated[int, typer.Option(help="steps ahead (rolling protocol)")] = 1,
    stride: Annotated[int | None, typer.Option(help="steps between origins (rolling; default horizon)")] = None,
    models: Annotated[str, typer.Option(help=f"comma-separated: {', '.join(PREDICTOR_NAMES)} (name:arg)")] = "ar,last",
    samples: Annotated[int, typer.Option(help="predictive samples per forecast")] = 100,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    max_gap: Annotated[int, typer.Option(help="interpolate gaps up to this many steps")] = 3,
    out: Annotated[Path | None, typer.Option(
        help=f"write the results table; its extension names the format: {', '.join(TABLE_FORMATS)}")] = None,
    option: OptionOpt = None,
    interval: IntervalOpt = None,
    time_column: TimeColOpt = None,
    series_column: SeriesColOpt = None,
    indicator_column: IndicatorColOpt = None,
    value_column: ValueColOpt = None,
    format: FormatOpt = None,
    levels: LevelsOpt = None,
    force: ForceOpt = False,
) -> None:
    """Score forecasters on a dataset: MSE, CRPS, MAE, pinball, coverage per series and their mean."""
    import pandas as pd
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from harmony.forecasting.evaluation import harmony_protocol, rolling_protocol, with_means
    from harmony.forecasting.evaluation.published import AR36_FISHER_MEAN, published_rows
    from harmony.forecasting.evaluation.published import SOURCE as PUBLISHED_SOURCE
    from harmony.forecasting.predictors import parse_models

    check_flags({"--lookback": (lookback, AT_LEAST_ONE), "--horizon": (horizon, AT_LEAST_ONE),
                 "--stride": (stride, AT_LEAST_ONE), "--samples": (samples, AT_LEAST_ONE), "--seed": (seed, SEED),
                 "--max-gap": (max_gap, NON_NEGATIVE)})
    check_out(out, force=force, inputs={"--path": dataset_input(dataset, path), "--models": model_files(models)},
              formats=TABLE_FORMATS)
    if protocol not in ("harmony", "rolling"):
        raise HarmonyInputError(f"--protocol {protocol!r} must be 'harmony' or 'rolling'")
    if protocol == "harmony" and horizon != 1:
        raise HarmonyInputError("--horizon must be 1 with --protocol harmony (use --protocol rolling)")
    specs = parse_models(models)
    options = dataset_options(option, interval=interval, time_column=time_column, series_column=series_column,
                              indicator_column=indicator_column, value_column=value_column, format=format,
                              levels=levels)
    frame = load_frame(dataset, path, options)
    frame, gaps = frame.fill_gaps(max_gap)
    unfilled = [g for g in gaps if not g.filled]
    if gaps:
        console.print(f"gaps: {len(gaps) - len(unfilled)} interpolated (<= {max_gap} steps), "
                      f"{len(unfilled)} left missing ({sum(g.steps for g in unfilled)} samples)")
    n_jobs = len(specs) * (len(frame.series) if protocol == "harmony" else 1)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("evaluating", total=n_jobs)

        def step(label: str) -> None:
            bar.update(task, description=label)
            bar.advance(task)

        if protocol == "harmony":
            rows = harmony_protocol(frame, specs, lookback=lookback, n_samples=samples, seed=seed, progress=step)
        else:
            rows = rolling_protocol(frame, specs, lookback=lookback, horizon=horizon, stride=stride,
                                    n_samples=samples, seed=seed, progress=step)
    rows = [dict(r, source="measured") for r in with_means(rows)]
    columns = ["series", "model", "mse", "crps", "mae", "pinball", "coverage90", "energy", "crps_max", "n_targets"]
    title = f"{dataset} / {protocol} protocol, lookback {lookback}, horizon {horizon} (scaled space)"
    console.print(results_table(title, rows, columns))
    published = []
    if dataset == "fisher" and protocol == "harmony":
        published = [dict(r, lookback=lookback, horizon=1, source="published")
                     for r in published_rows(list(frame.series), lookback)]
        if published:
            console.print(results_table(f"published, not measured here ({PUBLISHED_SOURCE})", published,
                                        ["series", "model", "mse", "crps", "source"]))
            console.print(f"reference (published): ridge AR(36), empirical residuals, mean of 10 containers: "
                          f"MSE {AR36_FISHER_MEAN[0]}, CRPS {AR36_FISHER_MEAN[1]}")
    if out is not None:
        table = pd.DataFrame(rows + published)
        first = ["series", "model", "lookback", "horizon", "mse", "crps"]
        table = table[first + [c for c in table.columns if c not in first]]
        table["n_targets"] = table["n_targets"].astype("Int64")
        write_table(table, out)
        console.print(f"wrote {out}")


def main() -> None:  # pragma: no cover - console-script entry
    app()

from harmony.cli.calibrate import calibrate  # noqa: E402

app.command("calibrate")(calibrate)

from harmony.cli.backtest import backtest  # noqa: E402  (commands in their own modules import from here)

app.command("backtest")(backtest)

from harmony.cli.train import train  # noqa: E402

app.command("train")(train)

from harmony.cli.replay import replay_exporter  # noqa: E402

app.command("replay-exporter")(replay_exporter)

from harmony.cli.operator import operator_app  # noqa: E402

app.add_typer(operator_app, name="operator")
