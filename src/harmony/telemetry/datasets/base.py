"""The dataset-source interface: a name, a default bundled path, and a loader returning a TelemetryFrame.

Every source accepts `path` pointing at a file or folder of the same format as the bundled copy, so users
and evaluators can run the same commands on their own (or held-back) data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from harmony.errors import HarmonyInputError
from harmony.telemetry.frame import MAX_ABS_VALUE, TelemetryFrame

#: The bundled real slices, package data of `harmony.telemetry.datasets` (provenance in data/README.md).
DATASETS_ROOT = Path(str(files("harmony.telemetry.datasets") / "data"))


@dataclass(frozen=True)
class DatasetSource:
    """One dataset format.

    name: registry key (`--dataset NAME`).
    description: one line for `harmony datasets list`.
    default_path: bundled copy, relative to DATASETS_ROOT ("" when the source needs no files).
    loader: `loader(path, **options) -> TelemetryFrame`; options are source-specific keywords.
    options: the keywords the loader accepts, each with a line of help.
    repeatable: options that may be given several times (the loader gets a list); any other given twice is
    refused rather than one of its values silently winning.
    """

    name: str
    description: str
    default_path: str
    loader: Callable[..., TelemetryFrame]
    options: dict[str, str] = field(default_factory=dict)  # option name -> help text
    repeatable: frozenset[str] = frozenset()

    def resolve(self, path: str | Path | None) -> Path | None:
        if path is None:
            if not self.default_path:
                return None
            path = DATASETS_ROOT / self.default_path
        path = Path(path)
        if not path.exists():
            raise HarmonyInputError(f"{path}: no such file or directory (dataset {self.name!r}, --path)")
        return path

    def load(self, path: str | Path | None = None, **options: Any) -> TelemetryFrame:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            flag = "--" + unknown[0].replace("_", "-")
            raise HarmonyInputError(f"dataset {self.name!r} has no option {unknown[0]!r} ({flag}); options: {known}")
        for name, value in options.items():
            if isinstance(value, list) and name not in self.repeatable:
                raise HarmonyInputError(f"dataset {self.name!r}: option {name!r} given {len(value)} times; "
                                        "give it once")
        # every reader refuses infinities in the files it reads, naming file and column; this is the net
        return self.loader(self.resolve(path), **options).require_finite()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_csv(path: Path, **kwargs: Any):
    """pandas.read_csv with one-line errors that name the file, a damaged compressed file included (a
    truncated gzip raises EOFError, which click would turn into a bare "Aborted.")."""
    import lzma
    import zipfile
    import zlib

    import pandas as pd

    try:
        return pd.read_csv(path, **kwargs)
    except FileNotFoundError:
        raise HarmonyInputError(f"{path}: no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise HarmonyInputError(f"{path}: malformed CSV ({_first_line(exc)})") from None
    except (EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile) as exc:
        raise HarmonyInputError(f"{path}: corrupt or truncated compressed file ({_first_line(exc)})") from None
    except OSError as exc:  # gzip.BadGzipFile and bz2's "Invalid data stream" are OSErrors too
        if exc.strerror:  # a system error: permissions, a folder, ...
            raise HarmonyInputError(f"{path}: cannot read ({exc.strerror})") from None
        raise HarmonyInputError(f"{path}: corrupt or truncated compressed file ({_first_line(exc)})") from None


def check_values(values, path: Path, column: str, *, first_line: int = 2, position: str = "line",
                 allow_negative: bool = False) -> None:
    """Refuse, naming file, column and line, a telemetry value that is infinite, beyond MAX_ABS_VALUE or
    (unless `allow_negative`) below zero: rates, counts, bytes and shares never are, so such a sample is corrupt,
    and one of them would skew every decision made on it. NaN (missing) passes. `values` is array-like in
    file order; `first_line` is the number of its first element, a `position` ("line" of the file, or "row"
    of the table)."""
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    bad = np.isinf(v) | (np.abs(np.nan_to_num(v)) > MAX_ABS_VALUE)
    if not allow_negative:
        bad |= v < 0  # NaN compares False
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        what = ("a negative value" if np.isfinite(v[row]) and v[row] < 0 and abs(v[row]) <= MAX_ABS_VALUE
                else "an infinite or absurd value")
        raise HarmonyInputError(f"{path}: column {column!r} has {what} {v[row]:g} ({position} {row + first_line}); "
                                f"telemetry values must be finite, >= 0 and within {MAX_ABS_VALUE:g}")


def require_columns(df, columns: list[str], path: Path) -> None:
    """Raise naming the first required column the file lacks."""
    for col in columns:
        if col not in df.columns:
            raise HarmonyInputError(f"{path}: missing column {col!r}")
