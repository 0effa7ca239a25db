"""Terminal tables (rich) for the CLI: evaluation results and dataset summaries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:  # pandas comes with it: not for `--help`
    from harmony.telemetry.frame import TelemetryFrame


def _fmt(value, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def duration(td) -> str:
    """A compact duration: 10min, 1h30min, 31d."""
    total = int(td.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if total >= size:
            parts.append(f"{total // size}{unit}")
            total %= size
    return "".join(parts) or "0s"


def results_table(title: str, rows: Sequence[dict], columns: Sequence[str]) -> Table:
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, justify="left" if col in ("series", "model", "source") else "right")
    for row in rows:
        published = row.get("source") == "published"
        mean = str(row.get("series", "")).startswith("mean")
        style = "dim" if published else ("bold" if mean else None)
        table.add_row(*(_fmt(row.get(c, "")) for c in columns), style=style)
    return table


def frame_summary(name: str, frame: TelemetryFrame, console: Console) -> None:
    """Span, interval, series, indicators with levels and units, and missing data of a frame."""
    span = frame.end - frame.start + frame.interval
    console.print(f"[bold]{name}[/bold]  source: {frame.source}")
    console.print(f"span: {frame.start} .. {frame.end} ({duration(span)}), interval {duration(frame.interval)}, "
                  f"{len(frame)} steps")
    shown = ", ".join(frame.series[:8]) + (" ..." if len(frame.series) > 8 else "")
    console.print(f"series ({len(frame.series)}): {shown}")
    gaps = frame.gaps()
    missing = frame.missing_fraction()
    table = Table(title="indicators", title_justify="left")
    for col in ("indicator", "level", "unit", "counter", "missing", "gaps", "longest gap (steps)"):
        table.add_column(col, justify="left" if col in ("indicator", "unit") else "right")
    for ind in frame.indicators:
        own = [g.steps for g in gaps if g.indicator == ind.name]
        table.add_row(
            ind.name, str(ind.level), ind.unit, "yes" if ind.cumulative else "",
            f"{100 * missing[ind.name]:.2f}%", str(len(own)), str(max(own, default=0)),
        )
    console.print(table)
