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
from harmony.telemetry.frame import TelemetryFrame

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
    """

    name: str
    description: str
    default_path: str
    loader: Callable[..., TelemetryFrame]
    options: dict[str, str] = field(default_factory=dict)  # option name -> help text

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
        return self.loader(self.resolve(path), **options)


def read_csv(path: Path, **kwargs: Any):
    """pandas.read_csv with one-line errors that name the file."""
    import pandas as pd

    try:
        return pd.read_csv(path, **kwargs)
    except FileNotFoundError:
        raise HarmonyInputError(f"{path}: no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HarmonyInputError(f"{path}: malformed CSV ({first})") from None


def require_columns(df, columns: list[str], path: Path) -> None:
    """Raise naming the first required column the file lacks."""
    for col in columns:
        if col not in df.columns:
            raise HarmonyInputError(f"{path}: missing column {col!r}")
