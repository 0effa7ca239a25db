"""Backtest reports: PNG plots and one self-contained HTML page (images embedded, no external assets).

- `capacity.png`: demand against ready capacity over the evaluated span, one panel per policy, breaches
  marked, unknown ticks (no demand: telemetry gaps) shaded and counted in the panel's title.
- `cost_breach.png` (with a sweep): each policy's GPU-hours against its breach rate over its knob, the SLA
  target as a vertical line.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from harmony.backtest.simulator import SimulationResult  # noqa: E402


def plot_capacity(results: list[SimulationResult], path: Path, unit: str) -> Path:
    fig, axes = plt.subplots(len(results), 1, figsize=(11, 2.1 * len(results) + 0.6), sharex=True, squeeze=False)
    for ax, res in zip(axes[:, 0], results, strict=True):
        t = np.arange(len(res.demand)) * res.interval_s / 3600.0
        ax.plot(t, res.demand, color="black", lw=0.8, label=f"demand ({unit})")
        ax.step(t, res.ready * res.capacity_per_replica, where="post", color="tab:blue", lw=1.0,
                label="ready capacity")
        ax.step(t, res.provisioned * res.capacity_per_replica, where="post", color="tab:blue", lw=0.6, ls=":",
                label="provisioned")
        breach = res.breaches
        ax.scatter(t[breach], res.demand[breach], color="tab:red", s=10, zorder=3, label="breach")
        unknown = ~res.observed
        if unknown.any():
            ax.fill_between(t, 0, 1, where=unknown, step="post", color="grey", alpha=0.25, lw=0,
                            transform=ax.get_xaxis_transform(), label="unknown (no demand)")
        gaps = f", {res.unknown_ticks} unknown ticks" if res.unknown_ticks else ""
        ax.set_title(f"{res.policy}: {res.gpu_hours:.1f} GPU-h, breach rate {100 * res.breach_rate:.2f}%{gaps}",
                     fontsize=9, loc="left")
        ax.set_ylabel(unit, fontsize=8)
    axes[0, 0].legend(fontsize=7, loc="upper right", ncols=4)
    axes[-1, 0].set_xlabel("hours into the evaluated span")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_cost_breach(curve: list[dict], sla: float, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    oracle = [r for r in curve if r["policy"] == "oracle"]
    for name in dict.fromkeys(r["policy"] for r in curve if r["policy"] != "oracle"):
        rows = sorted((r for r in curve if r["policy"] == name), key=lambda r: r["breach_rate"])
        ax.plot([100 * r["breach_rate"] for r in rows], [r["gpu_hours"] for r in rows], marker="o", ms=3,
                label=name)
    for r in oracle:
        ax.scatter([100 * r["breach_rate"]], [r["gpu_hours"]], marker="*", s=80, color="black", label="oracle")
    ax.axvline(100 * sla, color="grey", ls="--", lw=0.8, label=f"SLA {100 * sla:g}%")
    ax.set_xscale("symlog", linthresh=0.5)
    ax.set_xlim(left=0)
    ax.set_xlabel("breach rate (% of ticks)")
    ax.set_ylabel("GPU-hours")
    ax.legend(fontsize=8)
    ax.set_title("cost against breach rate, each policy over its own knob", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _table(rows: list[dict], columns: list[str]) -> str:
    def cell(v) -> str:
        return f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c, ''))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def write_html(path: Path, title: str, intro: str, sections: list[tuple[str, list[dict], list[str]]],
               images: list[Path]) -> Path:
    """One page: intro, tables (heading, rows, columns), then the plots embedded as data URIs."""
    parts = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(intro)}</p>"]
    for heading, rows, columns in sections:
        parts += [f"<h2>{html.escape(heading)}</h2>", _table(rows, columns)]
    parts += [_img(p) for p in images]
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right}th{background:#f3f3f3}img{max-width:100%;display:block;margin:1em 0}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
    path.write_text(page, encoding="utf-8")
    return path
