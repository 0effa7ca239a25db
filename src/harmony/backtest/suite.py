"""The backtest suite: every shipped trace, every policy, nothing tuned on the evaluated span, with intervals.

Per trace (`TRACES`, each with its documented cold start and capacity per replica):
- the evaluated span is the last 30% of the trace; the validation span the 20% before it, replayed with
  only the first 50% as history (the evaluated span is not read);
- each policy runs on the evaluated span at its default knob (harmony at the SLA) and at the knob that was
  its cheapest within the SLA on the validation span (its safest there when none met it): the main table,
  where nothing was tuned on the evaluated span;
- each policy's cheapest setting within the SLA on the evaluated span itself: the hindsight table, labelled
  as such (what tuning on the answer would buy);
- block-bootstrap 90% intervals of breach rate and GPU-hours (`harmony.backtest.bootstrap`: blocks of a day,
  an hour on traces under three days), and paired intervals of harmony minus each rival.

Per-client traces (ServeGen's 20 largest clients of each model) are reported as the median and the worst
client of their group. `run_suite` returns plain rows; `write_suite` writes CSV, PNG and one HTML page.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harmony.backtest import bootstrap as bs
from harmony.backtest.policies import POLICIES
from harmony.backtest.runner import Backtest, BacktestSettings, takes_sla
from harmony.backtest.simulator import SimulationResult
from harmony.decision.demand import demand_definition
from harmony.errors import HarmonyInputError
from harmony.telemetry.datasets import load_dataset
from harmony.telemetry.frame import TelemetryFrame

EVALUATED_FRACTION = 0.3
VALIDATION_FRACTION = 0.2
MAX_GAP_STEPS = 5  # interpolated as `harmony backtest --max-gap` does by default


@dataclass(frozen=True)
class TraceSpec:
    """One trace of the suite. `group`: per-client traces reported together (median and worst)."""

    key: str
    title: str
    dataset: str
    options: dict = field(default_factory=dict)
    cold_start_s: float = 300.0
    min_replicas: int = 1
    series: str | None = None
    group: str | None = None
    ratio_target: float | None = None  # the oracle-ratio target the suite prints
    indicators: tuple[str, ...] | None = None  # the indicators the workload's telemetry has (None: all)


AGGREGATES: tuple[TraceSpec, ...] = (
    TraceSpec("gentd26", "GenTD26 GPU fleet, 1 min, 16 h", "gentd26", ratio_target=1.6),
    TraceSpec("servegen-m-large", "ServeGen m-large aggregate, 10 min, 14 days", "servegen",
              {"model": "m-large"}, cold_start_s=600.0, ratio_target=1.3),
    TraceSpec("servegen-m-mid", "ServeGen m-mid aggregate, 10 min, 14 days", "servegen",
              {"model": "m-mid"}, cold_start_s=600.0, ratio_target=1.3),
    TraceSpec("alibaba-lora", "Alibaba LoRA serving, busy GPUs, 1 min, 16 days, scale to zero", "alibaba-lora",
              cold_start_s=300.0, min_replicas=0, ratio_target=1.5),
    TraceSpec("synthetic", "synthetic GPU serving, 5 min, 14 days", "synthetic",
              {"series": "1", "interval": "5min", "steps": str(14 * 288), "seed": "0"}, cold_start_s=300.0),
)
CLIENTS_PER_MODEL = 20


def per_client_traces(models: tuple[str, ...] = ("m-large", "m-mid"), top: int = CLIENTS_PER_MODEL) -> list[TraceSpec]:
    traces = []
    for model in models:
        options = {"model": model, "series": "clients", "clients": f"top:{top}"}
        frame = load_dataset("servegen", **options)
        for series in frame.series:
            # the request rate only: a client's inter-arrival CV is undefined (NaN) in every window it sends
            # nothing, which no per-row model can take as an input
            traces.append(TraceSpec(f"servegen-{model}-{series}", f"ServeGen {model} {series}", "servegen",
                                    options, cold_start_s=600.0, series=series, group=f"servegen-{model}-clients",
                                    indicators=("request_rate",)))
    return traces


def suite_traces(quick: bool = False, clients: int = CLIENTS_PER_MODEL, keys: str | None = None) -> list[TraceSpec]:
    """The suite's traces; `quick`: the aggregates without per-client series; `keys`: only these aggregates
    (comma-separated, e.g. what `make demo` shows), refused when one is unknown."""
    if keys:
        wanted = [k.strip() for k in keys.split(",") if k.strip()]
        known = {t.key: t for t in AGGREGATES}
        unknown = [k for k in wanted if k not in known]
        if unknown or not wanted:
            raise HarmonyInputError(f"unknown suite trace {unknown[0] if unknown else keys!r} (--traces); known: "
                                    f"{', '.join(known)}")
        return [known[k] for k in wanted]
    return list(AGGREGATES) + ([] if quick or clients <= 0 else per_client_traces(top=clients))


def policy_names() -> list[str]:
    return [n for n in POLICIES if n != "oracle"]


@dataclass
class Run:
    """One policy's run on the evaluated span: which setting, and the simulation."""

    policy: str
    kind: str  # "default" | "validation" | "hindsight"
    value: float | None
    result: SimulationResult
    meets_sla: bool = True


@dataclass
class TraceOutcome:
    trace: TraceSpec
    oracle: SimulationResult
    runs: list[Run]
    curve: list[dict]  # every swept setting on the evaluated span (the hindsight curve)
    interval_s: float
    ticks: int


def split_frame(frame: TelemetryFrame) -> tuple[TelemetryFrame, float, float]:
    """(validation frame, its history fraction, the full trace's history fraction)."""
    n = len(frame)
    test_start = 1.0 - EVALUATED_FRACTION
    cut = int(round(n * test_start))
    history = (test_start - VALIDATION_FRACTION) / test_start
    return frame.slice(0, cut), history, test_start


def load_trace(trace: TraceSpec):
    frame = load_dataset(trace.dataset, **trace.options)
    if trace.series is not None:
        frame = frame.select(series=[trace.series])
    elif len(frame.series) > 1:
        frame = frame.select(series=[frame.series[0]])
    if trace.indicators is not None:
        frame = frame.select(indicators=list(trace.indicators))
    frame, _ = frame.trim().fill_gaps(MAX_GAP_STEPS)
    definition = demand_definition(trace.dataset, frame=frame, options=trace.options)
    return frame, definition


def _cheapest_within(rows: list[tuple[float | None, SimulationResult]], sla: float):
    within = [(v, r) for v, r in rows if r.breach_rate <= sla]
    if within:
        return (*min(within, key=lambda vr: vr[1].gpu_hours), True)
    return (*min(rows, key=lambda vr: (vr[1].breach_rate, vr[1].gpu_hours)), False)


def full_grid(name: str) -> tuple:
    return POLICIES[name].sweep or (None,)


def coarse_grid(name: str) -> tuple:
    """Every other setting of a policy's sweep (per-client traces: forty of them must fit the time budget)."""
    sweep = POLICIES[name].sweep
    return tuple(sweep[::2]) if sweep else (None,)


def run_trace(trace: TraceSpec, names: list[str], sla: float, grid: Callable[[str], tuple] | None = None,
              progress: Callable[[str], None] | None = None, model: str | None = None) -> TraceOutcome:
    """Every policy on one trace: default, validation-chosen and (aggregate traces) hindsight settings.
    Per-client traces (a `group`) use the coarse grid and skip the hindsight sweep: they are reported as the
    median and worst client of the main table. model: the forecasting policies' forecaster (None: the
    backtest's default)."""
    grid = grid or (coarse_grid if trace.group else full_grid)
    frame, definition = load_trace(trace)
    val_frame, val_history, test_history = split_frame(frame)

    def settings(history: float) -> BacktestSettings:
        forecaster = {} if model is None else {"model": model}
        return BacktestSettings(cold_start_s=trace.cold_start_s, sla=sla, min_replicas=trace.min_replicas,
                                train_fraction=history, **forecaster)

    test = Backtest(frame, definition, settings(test_history))
    val = Backtest(val_frame, definition, settings(val_history))
    oracle = test.run("oracle")
    runs, curve = [], []
    for name in names:
        if progress:
            progress(f"{trace.key}: {name}")
        default_value = sla if takes_sla(name) else None
        default = test.run(name, default_value)
        runs.append(Run(name, "default", POLICIES[name].default if default_value is None else default_value,
                        default, default.breach_rate <= sla))
        values = grid(name)
        on_val = [(v, val.run(name, v)) for v in values]
        chosen, _, _ = _cheapest_within(on_val, sla)
        chosen_run = test.run(name, chosen)
        runs.append(Run(name, "validation", chosen, chosen_run, chosen_run.breach_rate <= sla))
        if trace.group:
            continue
        on_test = [(v, test.run(name, v)) for v in values]
        best_v, best, met = _cheapest_within(on_test, sla)
        runs.append(Run(name, "hindsight", best_v, best, met))
        for v, r in on_test:
            row = r.summary()
            row.update(policy=name, value=v, trace=trace.key)
            curve.append(row)
    return TraceOutcome(trace, oracle, runs, curve, frame.interval.total_seconds(), len(oracle.demand))


# --- tables ---------------------------------------------------------------------------------------------
MAIN_COLUMNS = ["trace", "policy", "setting", "value", "gpu_hours", "gpu_hours_lo", "gpu_hours_hi", "breach_rate",
                "breach_rate_lo", "breach_rate_hi", "oracle_ratio", "meets_sla", "unknown_ticks"]
PAIRED_COLUMNS = ["trace", "setting", "rival", "d_gpu_hours", "d_gpu_hours_lo", "d_gpu_hours_hi", "d_breach_rate",
                  "d_breach_rate_lo", "d_breach_rate_hi"]


def result_arrays(res: SimulationResult):
    """(breaches, observed, provisioned) per tick: what the block bootstrap resamples."""
    return res.breaches, res.observed, res.provisioned


def trace_rows(out: TraceOutcome, seed: int = 0, replicates: int = bs.REPLICATES) -> tuple[list[dict], list[dict]]:
    """Main and hindsight rows with bootstrap intervals, and paired rows (harmony minus each rival)."""
    draws = bs.block_draws(out.ticks, bs.block_ticks(out.ticks, out.interval_s), replicates,
                           np.random.default_rng(seed))
    rows = []
    for run in out.runs:
        f = bs.figures(*result_arrays(run.result), out.interval_s, draws)
        rows.append({
            "trace": out.trace.key, "policy": run.policy, "setting": run.kind, "value": run.value,
            "gpu_hours": f.gpu_hours.estimate, "gpu_hours_lo": f.gpu_hours.low, "gpu_hours_hi": f.gpu_hours.high,
            "breach_rate": f.breach_rate.estimate, "breach_rate_lo": f.breach_rate.low,
            "breach_rate_hi": f.breach_rate.high,
            "oracle_ratio": run.result.gpu_hours / out.oracle.gpu_hours if out.oracle.gpu_hours else math.nan,
            "meets_sla": run.meets_sla, "unknown_ticks": run.result.unknown_ticks,
        })
    rows.append({"trace": out.trace.key, "policy": "oracle", "setting": "perfect foresight", "value": None,
                 "gpu_hours": out.oracle.gpu_hours, "breach_rate": out.oracle.breach_rate, "oracle_ratio": 1.0,
                 "meets_sla": True, "unknown_ticks": out.oracle.unknown_ticks})
    paired = []
    for kind in ("default", "validation"):
        mine = next((r for r in out.runs if r.policy == "harmony" and r.kind == kind), None)
        if mine is None:
            continue
        for run in out.runs:
            if run.kind != kind or run.policy == "harmony":
                continue
            d = bs.paired(result_arrays(mine.result), result_arrays(run.result), out.interval_s, draws)
            paired.append({"trace": out.trace.key, "setting": kind, "rival": run.policy,
                           "d_gpu_hours": d.gpu_hours.estimate, "d_gpu_hours_lo": d.gpu_hours.low,
                           "d_gpu_hours_hi": d.gpu_hours.high, "d_breach_rate": d.breach_rate.estimate,
                           "d_breach_rate_lo": d.breach_rate.low, "d_breach_rate_hi": d.breach_rate.high})
    return rows, paired


def group_rows(rows: list[dict], traces: list[TraceSpec]) -> list[dict]:
    """Per-client groups as two rows per policy and setting: the median client and the worst (highest breach
    rate; ties by the highest oracle ratio)."""
    groups: dict[str, list[str]] = {}
    for t in traces:
        if t.group:
            groups.setdefault(t.group, []).append(t.key)
    out = []
    for group, keys in groups.items():
        members = [r for r in rows if r["trace"] in keys]
        for policy in dict.fromkeys(r["policy"] for r in members):
            for setting in dict.fromkeys(r["setting"] for r in members if r["policy"] == policy):
                sel = [r for r in members if r["policy"] == policy and r["setting"] == setting]
                worst = max(sel, key=lambda r: (r["breach_rate"], r["oracle_ratio"]))
                out.append({"trace": f"{group} (median of {len(sel)})", "policy": policy, "setting": setting,
                            "gpu_hours": float(np.median([r["gpu_hours"] for r in sel])),
                            "breach_rate": float(np.median([r["breach_rate"] for r in sel])),
                            "oracle_ratio": float(np.median([r["oracle_ratio"] for r in sel])),
                            "meets_sla": f"{sum(bool(r['meets_sla']) for r in sel)}/{len(sel)}",
                            "unknown_ticks": int(np.median([r["unknown_ticks"] for r in sel]))})
                out.append({"trace": f"{group} (worst: {worst['trace'].rsplit('-', 1)[-1]})", "policy": policy,
                            "setting": setting, "gpu_hours": worst["gpu_hours"], "breach_rate": worst["breach_rate"],
                            "oracle_ratio": worst["oracle_ratio"], "meets_sla": worst["meets_sla"],
                            "unknown_ticks": worst["unknown_ticks"]})
    return out


def targets(rows: list[dict], traces: list[TraceSpec], sla: float) -> list[dict]:
    """The suite's targets at harmony's default knob, per aggregate trace: measured figure and met or not."""
    out = []
    for t in traces:
        if t.group:
            continue
        mine = [r for r in rows if r["trace"] == t.key]
        h = next((r for r in mine if r["policy"] == "harmony" and r["setting"] == "default"), None)
        if h is None:
            continue
        rate = h["breach_rate"]
        interval = f"[{100 * h['breach_rate_lo']:.2f}, {100 * h['breach_rate_hi']:.2f}]"
        out.append({"trace": t.key, "target": f"breach rate in [{50 * sla:g}%, {150 * sla:g}%]",
                    "measured": f"{100 * rate:.2f}% {interval}", "met": 0.5 * sla <= rate <= 1.5 * sla})
        rivals = [r for r in mine if r["setting"] == "validation" and r["policy"] not in ("harmony", "oracle")
                  and r["meets_sla"]]
        cheaper = [r for r in rivals if r["gpu_hours"] <= h["gpu_hours"]]
        beaten_by = ", ".join(f"{r['policy']} {r['gpu_hours']:.1f}" for r in cheaper)
        measured = f"{h['gpu_hours']:.1f} vs {beaten_by}" if cheaper else (
            f"{h['gpu_hours']:.1f} ({len(rivals)} rivals within the SLA)")
        out.append({"trace": t.key, "target": "fewer GPU-hours than every validation-tuned rival within the SLA",
                    "measured": measured, "met": not cheaper})
        hpa = next((r for r in mine if r["policy"] == "hpa" and r["setting"] == "hindsight"), None)
        if hpa is not None and hpa["meets_sla"]:
            saving = 1 - h["gpu_hours"] / hpa["gpu_hours"]
            out.append({"trace": t.key, "target": "at least 30% fewer GPU-hours than the HPA's cheapest in the SLA",
                        "measured": f"{100 * saving:.0f}% ({h['gpu_hours']:.1f} vs {hpa['gpu_hours']:.1f})",
                        "met": saving >= 0.3})
        if t.ratio_target:
            out.append({"trace": t.key, "target": f"oracle ratio <= {t.ratio_target:g}",
                        "measured": f"{h['oracle_ratio']:.2f}", "met": h["oracle_ratio"] <= t.ratio_target})
    return out


@dataclass
class SuiteResult:
    """Rows of every table; `failed`: traces that could not be replayed, with the reason (one line each)."""

    traces: list[TraceSpec]
    outcomes: list[TraceOutcome]
    rows: list[dict]
    paired: list[dict]
    groups: list[dict]
    targets: list[dict]
    curve: list[dict]
    failed: list[dict] = field(default_factory=list)


def run_suite(traces: list[TraceSpec], sla: float = 0.01, names: list[str] | None = None,
              grid: Callable[[str], tuple] | None = None, progress: Callable[[str], None] | None = None,
              replicates: int = bs.REPLICATES, model: str | None = None) -> SuiteResult:
    if not 0 < sla < 1:
        raise HarmonyInputError(f"--sla must lie in (0, 1), got {sla}")
    names = names or policy_names()
    outcomes, rows, paired, curve, failed = [], [], [], [], []
    for trace in traces:
        try:
            out = run_trace(trace, names, sla, grid, progress, model)
        except HarmonyInputError as exc:  # reported, never hidden: the trace is listed with the reason
            failed.append({"trace": trace.key, "reason": str(exc)})
            continue
        r, p = trace_rows(out, replicates=0 if trace.group else replicates)
        outcomes.append(out)
        rows += r
        paired += [] if trace.group else p
        curve += out.curve
    return SuiteResult(traces, outcomes, rows, paired, group_rows(rows, traces), targets(rows, traces, sla), curve,
                       failed)


def write_suite(result: SuiteResult, out: Path, sla: float) -> list[Path]:
    """suite.csv (main and hindsight rows), paired.csv, groups.csv, targets.csv, curve.csv, one capacity PNG
    and one cost/breach PNG per aggregate trace, and report.html embedding them all."""
    import pandas as pd

    from harmony.backtest.report import plot_capacity, plot_cost_breach, write_html

    if out.exists() and not out.is_dir():
        raise HarmonyInputError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rows, columns in (("suite.csv", result.rows, MAIN_COLUMNS), ("paired.csv", result.paired, PAIRED_COLUMNS),
                                ("groups.csv", result.groups, None), ("targets.csv", result.targets, None),
                                ("failed.csv", result.failed, None),
                                ("curve.csv", result.curve, None)):
        frame = pd.DataFrame(rows)
        if columns is not None and not frame.empty:
            frame = frame.reindex(columns=columns)
        frame.to_csv(out / name, index=False)
        written.append(out / name)
    images = []
    for outcome in result.outcomes:
        if outcome.trace.group:
            continue
        key = outcome.trace.key
        shown = [r.result for r in outcome.runs if r.kind == "default"] + [outcome.oracle]
        images.append(plot_capacity(shown, out / f"{key}-capacity.png", "demand"))
        oracle_row = {"policy": "oracle", "gpu_hours": outcome.oracle.gpu_hours, "breach_rate": 0.0}
        images.append(plot_cost_breach(list(outcome.curve) + [oracle_row], sla, out / f"{key}-cost_breach.png"))
    main = main_rows(result)
    hindsight = [r for r in aggregate_rows(result) if r["setting"] == "hindsight"]
    sections = [
        ("Targets at harmony's default knob", result.targets, ["trace", "target", "measured", "met"]),
        ("Nothing tuned on the evaluated span: defaults, and knobs chosen on the validation span", main,
         MAIN_COLUMNS),
        ("Harmony minus each rival, paired block bootstrap (90%)", result.paired, PAIRED_COLUMNS),
        ("Per-client traces: median and worst client", result.groups,
         ["trace", "policy", "setting", "gpu_hours", "breach_rate", "oracle_ratio", "meets_sla", "unknown_ticks"]),
        ("Hindsight (tuned on the evaluated span itself): each policy's cheapest setting within the SLA",
         hindsight, MAIN_COLUMNS),
        ("Traces that could not be replayed", result.failed, ["trace", "reason"]),
    ]
    intro = (f"SLA {100 * sla:g}% of ticks with demand above ready capacity. Evaluated span: the last "
             f"{100 * EVALUATED_FRACTION:g}% of each trace; knobs chosen on the {100 * VALIDATION_FRACTION:g}% "
             "before it. Intervals: 90% block bootstrap (blocks of one day; one hour under three days).")
    written.append(write_html(out / "report.html", "harmony backtest suite", intro, sections, images))
    return written + images


def aggregate_rows(result: SuiteResult) -> list[dict]:
    """Rows of the aggregate traces (per-client traces are shown through `groups`)."""
    members = {t.key for t in result.traces if t.group}
    return [r for r in result.rows if r["trace"] not in members]


def main_rows(result: SuiteResult) -> list[dict]:
    """The main table: aggregate traces, nothing tuned on the evaluated span (defaults, validation knobs,
    the oracle)."""
    return [r for r in aggregate_rows(result) if r["setting"] in ("default", "validation", "perfect foresight")]
