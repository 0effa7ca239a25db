"""Shared pieces of the `harmony` commands: the group class, consoles, the one-line error convention, dataset
flags, and the checks every command runs on its flags before any work: numbers (`check_flags`) and outputs
(`check_out`, with the output formats and `write_table`, the one writer of tables).

Every command module imports from here (never from `harmony.cli.main`, which imports the command modules
to register them).
"""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from typer.core import TyperGroup

from harmony.errors import HarmonyInputError
from harmony.forecasting.predictor_names import CHECKPOINT_SUFFIXES
from harmony.telemetry.dataset_names import DATASET_NAMES

console = Console()
if not console.is_terminal:  # piped or captured output: wide enough that names are not cut
    console = Console(width=160)
err_console = Console(stderr=True, width=400)


class CommandGroup(TyperGroup):
    """The `harmony` group and its sub-groups (`datasets`, `operator`): typer's group, with its unset hidden flags
    (`--help`, `--install-completion`, `--show-completion`) defaulting to False instead of None.

    typer (0.29) coerces every parameter's value through a pydantic TypeAdapter, built on first use (importing
    pydantic, tens of milliseconds), unless the value already is a bool. `harmony COMMAND --help` processes the
    groups' own flags on its way to COMMAND's --help, all unset, and None would build adapters for them. Their
    callbacks read None and False alike (`if not value: return`), and they reach no command (`expose_value` off).
    """

    def get_params(self, ctx: typer.Context) -> list:
        params = super().get_params(ctx)
        for param in params:
            descriptor = getattr(param, "type_descriptor", None)
            if (getattr(param, "is_flag", False) and not param.expose_value and param.default is None
                    and getattr(descriptor, "annotation", None) is bool):
                param.default = False
        return params


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
DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help=f"one of: {', '.join(DATASET_NAMES)}")]
PathOpt = Annotated[Path | None, typer.Option(help="a file or folder in the dataset's format (default: bundled)")]
OptionOpt = Annotated[list[str] | None, typer.Option("--option", "-o", help="dataset option KEY=VALUE (repeatable)")]
IntervalOpt = Annotated[str | None, typer.Option(help="resample to this interval, e.g. 10s, 1min")]
TimeColOpt = Annotated[str | None, typer.Option(help="csv/parquet: timestamp column")]
SeriesColOpt = Annotated[str | None, typer.Option(help="csv/parquet: series column")]
IndicatorColOpt = Annotated[str | None, typer.Option(help="csv/parquet long format: indicator-name column")]
ValueColOpt = Annotated[str | None, typer.Option(help="csv/parquet long format: value column")]
FormatOpt = Annotated[str | None, typer.Option("--format", help="csv/parquet: wide or long")]
LevelsOpt = Annotated[str | None, typer.Option(help="csv/parquet: hierarchy levels, name=level,...")]
ForceOpt = Annotated[bool, typer.Option("--force", help="overwrite existing output files")]


# --- numeric flags ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bounds:
    """The values a numeric flag accepts: always a finite number, and within these bounds (None: open).
    at_least / at_most include the bound, above / below exclude it."""

    at_least: float | None = None
    above: float | None = None
    at_most: float | None = None
    below: float | None = None

    def rule(self) -> str:
        """The bounds as the error line words them: 'be positive', 'be >= 0', 'lie in (0, 1)'."""
        low = (f"[{_bound(self.at_least)}" if self.at_least is not None else
               f"({_bound(self.above)}" if self.above is not None else None)
        high = (f"{_bound(self.at_most)}]" if self.at_most is not None else
                f"{_bound(self.below)})" if self.below is not None else None)
        if low and high:
            return f"lie in {low}, {high}"
        if self.above == 0 and not high:
            return "be positive"
        if low:
            return f"be {'>=' if low[0] == '[' else '>'} {low[1:]}"
        if high:
            return f"be {'<=' if high[-1] == ']' else '<'} {high[:-1]}"
        return "be a number"

    def admits(self, value: float) -> bool:
        return ((self.at_least is None or value >= self.at_least) and (self.above is None or value > self.above)
                and (self.at_most is None or value <= self.at_most) and (self.below is None or value < self.below))

    def check(self, flag: str, value: float | None) -> None:
        """Refuse NaN, an infinity, or a value outside the bounds, naming the flag (None: flag not given)."""
        if value is None:
            return
        if not math.isfinite(value):
            raise HarmonyInputError(f"{flag} must be a finite number, got {value}")
        if not self.admits(value):
            shown = value if isinstance(value, int) else f"{value:g}"
            raise HarmonyInputError(f"{flag} must {self.rule()}, got {shown}")


def _bound(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


POSITIVE = Bounds(above=0)
NON_NEGATIVE = Bounds(at_least=0)
AT_LEAST_ONE = Bounds(at_least=1)
FRACTION = Bounds(above=0, below=1)  # a share or a probability strictly between 0 and 1
SEED = Bounds(at_least=0, below=2**32)  # numpy's and torch's seeds are unsigned 32-bit
PORT = Bounds(at_least=0, at_most=65535)


def check_flags(flags: Mapping[str, tuple[float | None, Bounds]]) -> None:
    """Check every numeric flag of a command up front: `{"--sla": (sla, FRACTION), ...}`, in the order given."""
    for flag, (value, bounds) in flags.items():
        bounds.check(flag, value)


# --- outputs ---------------------------------------------------------------------------------------
def _json_records(table, path: Path) -> None:
    """A list of records, one per row, missing values as null. Python's json writes each float as its
    shortest exact repr (pandas' to_json rounds to 10 decimals, which loses a small CRPS's digits)."""
    records = table.astype(object).where(table.notna(), None).to_dict(orient="records")
    path.write_text(json.dumps(records, indent=2, default=str) + "\n")


#: The formats a table --out may name, by how its file name ends (any case), each with its writer: the same
#: columns and rows, no index; `.csv.gz` is gzip-compressed CSV.
TABLE_WRITERS = {
    ".csv": lambda table, path: table.to_csv(path, index=False),
    ".csv.gz": lambda table, path: table.to_csv(path, index=False, compression="gzip"),
    ".parquet": lambda table, path: table.to_parquet(path, index=False),
    ".json": _json_records,
}
TABLE_FORMATS = tuple(TABLE_WRITERS)
JSON_FORMAT = (".json",)  # a record (calibrate's prior), not a table
#: What a `harmony:PATH` model spec reads as a checkpoint, so a trained file is always loadable by its name.
CHECKPOINT_FORMATS = CHECKPOINT_SUFFIXES
#: Every ending a file --out may have: a folder --out named so is refused (it would be a folder called x.csv).
FILE_FORMATS = TABLE_FORMATS + CHECKPOINT_FORMATS


def format_of(out: Path, formats: Sequence[str]) -> str | None:
    """The one of `formats` that `out`'s name ends with (case-insensitive), or None."""
    name = out.name.lower()
    return next((f for f in formats if name.endswith(f)), None)


def write_table(table, out: Path) -> None:
    """Write a pandas DataFrame to `out` in the format its extension names (check_out(..., formats=TABLE_FORMATS)
    has refused any other before the command did its work)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    TABLE_WRITERS[format_of(out, TABLE_FORMATS)](table, out)


def dataset_input(dataset: str, path: Path | None) -> Path | None:
    """The file or folder a dataset command reads: --path, or the bundled copy when it is not given."""
    if path is not None:
        return path
    from harmony.telemetry.datasets import DATASETS_ROOT, SOURCES  # the loaders, pandas with them

    source = SOURCES.get(dataset)
    return DATASETS_ROOT / source.default_path if source is not None and source.default_path else None


def model_files(models: str) -> list[Path]:
    """Files a --model/--models value reads (checkpoints, as in `harmony:PATH`)."""
    found = []
    for spec in models.split(","):
        _, _, arg = spec.strip().partition(":")
        if arg and Path(arg).is_file():
            found.append(Path(arg))
    return found


def check_out(out: Path | None, *, force: bool, inputs: Mapping[str, Path | Sequence[Path] | None] | None = None,
              files: Sequence[str] | None = None, formats: Sequence[str] | None = None, flag: str = "--out") -> None:
    """Refuse, before any work, an output that would destroy data or that could not be written at the end.

    out: the file to write; with `files`, a folder and the names written in it (glob patterns allowed).
    formats: the endings a file `out` may have (TABLE_FORMATS, ...): the writer follows the extension, so any
    other name is refused rather than written in a format it does not name. A folder `out` may not end like a
    file (FILE_FORMATS) unless that folder exists.
    inputs: flag -> the file(s) or folder that flag makes the command read. No output may be an input, and
    none may land inside an input folder (a dataset folder would read it back as data next time); this
    holds with --force too. An existing output file needs `force`. The folder that will hold the outputs
    must be a folder, or creatable, and writable: probed with a temporary file, so permissions, read-only
    mounts and root are as the final write will find them.
    """
    if out is None:
        return
    if files is None:
        if out.is_dir():
            raise HarmonyInputError(f"{flag} {out} is a folder; name the file to write")
        if formats is not None and format_of(out, formats) is None:
            accepted = formats[0] if len(formats) == 1 else f"one of {', '.join(formats)}"
            raise HarmonyInputError(f"{flag} {out}: the extension names the format written; end the name in "
                                    f"{accepted}")
        targets = [out]
    else:
        if out.exists() and not out.is_dir():
            raise HarmonyInputError(f"{flag} {out} exists and is not a folder")
        if not out.exists() and (ending := format_of(out, FILE_FORMATS)) is not None:
            raise HarmonyInputError(f"{flag} {out} is named like a {ending} file, but this command writes a "
                                    "folder of files there: name a folder")
        targets = [t for name in files for t in (sorted(out.glob(name)) if any(c in name for c in "*?[")
                                                 else [out / name])]
    for input_flag, paths in (inputs or {}).items():
        for path in [paths] if isinstance(paths, Path) else (paths or []):
            source = path.resolve()
            for target in [out, *targets]:
                where = target.resolve()
                if where == source and not source.is_dir():
                    raise HarmonyInputError(f"{flag} {target} is the input {path} ({input_flag}); writing it "
                                            "would destroy it: write elsewhere")
                if source.is_dir() and where.is_relative_to(source):  # the folder itself too
                    raise HarmonyInputError(f"{flag} {target} is in the input folder {path} ({input_flag}), which "
                                            "would read it back as data: write elsewhere")
    existing = [t for t in targets if t.exists()]
    if existing and not force:
        raise HarmonyInputError(f"{flag} {existing[0]} exists; pass --force to overwrite it")
    holder = out if files is not None else out.parent
    while not holder.exists():
        holder = holder.parent
    if not holder.is_dir():
        raise HarmonyInputError(f"{flag} {out}: {holder} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=holder):
            pass
    except OSError as exc:
        raise HarmonyInputError(f"{flag} {out}: cannot write in {holder} ({exc.strerror or exc})") from None
    for target in existing:
        if not os.access(target, os.W_OK):
            raise HarmonyInputError(f"{flag} {target} exists and is read-only")


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
    """--option KEY=VALUE items as keywords (`token-file` -> token_file); a key given several times gets
    the list of its values (the source refuses that unless the option is repeatable, e.g. `header`)."""
    options: dict = {}
    for item in option or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HarmonyInputError(f"--option {item!r} is not KEY=VALUE")
        key, parsed = key.strip().replace("-", "_"), parse_value(value.strip())
        if key in options:
            before = options[key]
            options[key] = [*(before if isinstance(before, list) else [before]), parsed]
        else:
            options[key] = parsed
    options.update({k: v for k, v in flags.items() if v not in (None, False)})
    return options


def load_frame(dataset: str, path: Path | None, options: dict):
    from harmony.telemetry.datasets import get_source

    return get_source(dataset).load(path, **options)
