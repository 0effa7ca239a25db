"""Shared pieces of the `harmony` commands: consoles, the one-line error convention, dataset flags.

Every command module imports from here (never from `harmony.cli.main`, which imports the command modules
to register them).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from harmony.errors import HarmonyInputError
from harmony.telemetry.datasets import SOURCES, get_source

console = Console()
if not console.is_terminal:  # piped or captured output: wide enough that names are not cut
    console = Console(width=160)
err_console = Console(stderr=True, width=400)


def user_errors(fn):
    """Print HarmonyInputError as one line and exit 2 (the status typer uses for bad flags)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except HarmonyInputError as exc:
            err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


# --- shared dataset flags --------------------------------------------------------------------------
DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help=f"one of: {', '.join(SOURCES)}")]
PathOpt = Annotated[Path | None, typer.Option(help="a file or folder in the dataset's format (default: bundled)")]
OptionOpt = Annotated[list[str] | None, typer.Option("--option", "-o", help="dataset option KEY=VALUE (repeatable)")]
IntervalOpt = Annotated[str | None, typer.Option(help="resample to this interval, e.g. 10s, 1min")]
TimeColOpt = Annotated[str | None, typer.Option(help="csv/parquet: timestamp column")]
SeriesColOpt = Annotated[str | None, typer.Option(help="csv/parquet: series column")]
IndicatorColOpt = Annotated[str | None, typer.Option(help="csv/parquet long format: indicator-name column")]
ValueColOpt = Annotated[str | None, typer.Option(help="csv/parquet long format: value column")]
FormatOpt = Annotated[str | None, typer.Option("--format", help="csv/parquet: wide or long")]
LevelsOpt = Annotated[str | None, typer.Option(help="csv/parquet: hierarchy levels, name=level,...")]


def parse_value(text: str):
    """CLI option values: integers, floats and true/false become typed, the rest stay strings."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def dataset_options(option: list[str] | None, **flags) -> dict:
    options = {}
    for item in option or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HarmonyInputError(f"--option {item!r} is not KEY=VALUE")
        options[key.strip().replace("-", "_")] = parse_value(value.strip())
    options.update({k: v for k, v in flags.items() if v not in (None, False)})
    return options


def load_frame(dataset: str, path: Path | None, options: dict):
    return get_source(dataset).load(path, **options)
