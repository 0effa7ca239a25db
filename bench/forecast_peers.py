"""Benchmark: harmony's forecasters beside established peer libraries, measured in the same run.

Runs (`RUNS`), each under one of harmony's evaluation protocols, unchanged (`harmony evaluate` scores the
same way):
- `fisher`: containers 1-7, the HARMONY protocol (per container, horizon 1), lookback 72, with ridge AR(36),
  the HARMONY paper's baseline (`ar:36`).
- `gentd26`, `servegen-m-large`, `servegen-m-mid`, `alibaba-lora`: the rolling protocol, horizon = the
  decision horizon (cold start plus one control interval: gentd26 and alibaba-lora 300 s at 1 minute,
  6 steps; ServeGen 600 s at 10 minutes, 2 steps, the suite's cold starts), lookback 120 steps (the context
  the operator hands a forecaster, `DEFAULT_LOOKBACK_STEPS`) and ridge AR(30), the operator's and backtest's
  baseline (`ar:30`). ServeGen per client: the `--clients` largest clients of each model (20, the suite's
  choice), the request rate only (a client's inter-arrival CV is NaN wherever it sends nothing).
Models: `ar`, `seasonal` (one day; one hour on the 16-hour gentd26 slice), `last`, the peers of
`bench/peers` (statsforecast AutoETS and AutoTheta, LightGBM quantile regression on as many lags as AR
has, GluonTS DeepAR) and, with `--harmony` (every run, or the runs named), the HARMONY model trained as
`bench/harmony_fisher.py` trains it. HARMONY is off by default: trained afresh per Fisher container, per
ServeGen model and on the 16 days of alibaba-lora, it does not fit the bench's 30 minutes on a shared 2-core
machine (one Fisher container had not finished training after 8.5 minutes at nice 10 under a load of 7);
`--harmony gentd26` (957 rows) does.

Every row: CRPS, MSE, the energy score of paths, the CRPS and 90% coverage of the horizon's maximum, per-step
90% coverage, fit and predict seconds (wall time, per series: a run's time shared by its series), and the
ratios of CRPS and of the maximum's CRPS to AR of the same run, per series and for the mean over series,
where a run has several series with a bootstrap interval over series. Prints tables, writes one CSV per run
and the section "Peers, same run" of docs/results/forecasting.md (the rest of that file is left as it is).

    nice -n 10 env PYTHONPATH=src .venv/bin/python bench/forecast_peers.py [--quick] [--harmony]
        [--harmony-options members=3 ...] [--validation] [--runs fisher,gentd26,...] [--clients 20] [--samples 100]
        [--out results/forecast_peers] [--doc docs/results/forecasting.md]
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from peers import LIBRARIES, PEERS
from rich.console import Console
from rich.table import Table

from harmony.decision.step import cold_start_steps_of
from harmony.forecasting.adapter import DEFAULT_LOOKBACK_STEPS
from harmony.forecasting.evaluation import harmony_protocol, rolling_protocol, with_means
from harmony.forecasting.forecast import Forecast
from harmony.forecasting.predictors import PREDICTORS, Context, Predictor
from harmony.telemetry.datasets import load_dataset
from harmony.telemetry.frame import TelemetryFrame

#: gaps interpolated before scoring, as `harmony evaluate` does by default
MAX_GAP_STEPS = 3
#: ServeGen clients per model, as the backtest suite takes them
CLIENTS = 20
BOOTSTRAP_DRAWS = 2000
#: --validation: the share of a run's rows kept, the protocols' training and validation rows (70% + 10%); the
#: protocols' own split of those puts the scored rows at 64-80% of the whole, before any row a run scores
VALIDATION_SHARE = 0.8
COLUMNS = ["series", "model", "crps", "crps_vs_ar", "mse", "energy", "crps_max", "crps_max_vs_ar", "coverage90",
           "coverage90_max", "fit_s", "predict_s", "n_targets"]


@dataclass(frozen=True)
class Run:
    """One dataset under one protocol. `cold_start_s`: sets the rolling horizon (the decision horizon)."""

    key: str
    title: str
    dataset: str
    protocol: str  # "harmony" | "rolling"
    lookback: int
    ar: str
    seasonal: str = "seasonal"
    cold_start_s: float | None = None
    stride: int | None = None  # rolling: steps between origins (None: the horizon)
    options: dict = field(default_factory=dict)
    series: tuple[str, ...] | None = None
    indicators: tuple[str, ...] | None = None

    def frame(self, validation: bool = False) -> TelemetryFrame:
        """The run's data; validation: only its rows before the test rows (`VALIDATION_SHARE`)."""
        frame = load_dataset(self.dataset, **self.options)
        if validation:
            frame = frame.slice(0, int(VALIDATION_SHARE * len(frame)))
        if self.series is not None:
            frame = frame.select(series=list(self.series))
        if self.indicators is not None:
            frame = frame.select(indicators=list(self.indicators))
        return frame.fill_gaps(MAX_GAP_STEPS)[0]

    def horizon(self, frame: TelemetryFrame) -> int:
        if self.protocol == "harmony":
            return 1
        return cold_start_steps_of(self.cold_start_s, frame.interval.total_seconds()) + 1

    def specs(self, frame: TelemetryFrame, peers: Sequence[str], harmony: bool,
              options: Sequence[str] = ("",)) -> list[str]:
        """Model specs of this run: AR first (the ratios' reference), the naive rules, the peers, HARMONY
        once per entry of `options` (extra `harmony:` options joined by '+', such as members=3; "" none)."""
        horizon, lags = self.horizon(frame), self.ar.partition(":")[2]
        peer_specs = {"ets": "ets", "theta": "theta", "lgbm": f"lgbm:lags={lags}+horizon={horizon}",
                      "deepar": f"deepar:context={self.lookback}+horizon={horizon}"}
        specs = [self.ar, self.seasonal, "last", *(peer_specs[p] for p in peers)]
        if harmony:  # as bench/harmony_fisher.py and bench/harmony_gentd26.py build it
            base = f"harmony:lookback={self.lookback}" + (f"+horizon={horizon}" if horizon > 1 else "")
            specs += [base + (f"+{extra}" if extra else "") for extra in dict.fromkeys(options)]
        return specs


def runs(quick: bool = False, clients: int = CLIENTS) -> list[Run]:
    """The runs; `quick`: 2 Fisher containers, 5 clients per ServeGen model, stride = horizon everywhere."""
    rolling = {"protocol": "rolling", "lookback": DEFAULT_LOOKBACK_STEPS, "ar": "ar:30"}
    top = min(clients, 5) if quick else clients
    return [
        Run("fisher", "Fisher, HARMONY protocol (per container, horizon 1)", "fisher", "harmony", 72, "ar:36",
            series=("container1", "container2") if quick else tuple(f"container{i}" for i in range(1, 8))),
        Run("gentd26", "gentd26 at 1 min, rolling, decision horizon", "gentd26", seasonal="seasonal:60",
            cold_start_s=300.0, stride=None if quick else 1, **rolling),
        *(Run(f"servegen-{model}", f"ServeGen {model}, {top} largest clients, rolling, decision horizon",
              "servegen", cold_start_s=600.0, stride=None if quick else 1, indicators=("request_rate",),
              options={"model": model, "series": "clients", "clients": f"top:{top}"}, **rolling)
          for model in ("m-large", "m-mid")),
        Run("alibaba-lora", "Alibaba LoRA busy GPUs at 1 min, rolling, decision horizon", "alibaba-lora",
            cold_start_s=300.0, **rolling),
    ]


class Timed(Predictor):
    """A predictor whose fit and predict wall times are logged: the protocols report only their sum."""

    def __init__(self, inner: Predictor, spec: str, log: list[dict]) -> None:
        self.inner, self.spec, self.log = inner, spec, log
        self.name, self.refit = inner.name, inner.refit
        self._fit: tuple[tuple[str, ...], float] | None = None

    @property
    def min_context_steps(self) -> int:
        return self.inner.min_context_steps

    def fit(self, train: TelemetryFrame, validation: TelemetryFrame | None = None) -> Timed:
        started = time.perf_counter()
        self.inner.fit(train, validation)
        self._fit = (tuple(train.series), time.perf_counter() - started)
        return self

    def predict(self, context: Context, horizon: int, n_samples: int = 100, seed: int | None = None) -> Forecast:
        started = time.perf_counter()
        forecast = self.inner.predict(context, horizon, n_samples, seed)
        series, fit_s = self._fit
        self.log.append({"model": self.spec, "series": series, "fit_s": fit_s,
                         "predict_s": time.perf_counter() - started})
        return forecast


@contextmanager
def timed_predictors(log: list[dict]) -> Iterator[None]:
    """harmony's predictor registry with the peers added and every factory timed, for one run only.

    The protocols build models by spec from that registry; putting the peers there (and taking them out
    afterwards) scores them by exactly the code that scores harmony's own models."""
    saved = dict(PREDICTORS)
    clash = set(PEERS) & set(saved)
    if clash:
        raise RuntimeError(f"peer names {sorted(clash)} are harmony predictors already")

    def timed(factory: Callable) -> Callable:
        return lambda spec, arg: Timed(factory(spec, arg), spec.strip(), log)

    PREDICTORS.update({name: (timed(factory), text) for name, (factory, text) in {**saved, **PEERS}.items()})
    try:
        yield
    finally:
        PREDICTORS.clear()
        PREDICTORS.update(saved)


def measure(run: Run, frame: TelemetryFrame, specs: Sequence[str], n_samples: int = 100, seed: int = 0,
            progress: Callable[[str], None] | None = None) -> list[dict]:
    """Rows per series and model plus the mean over series, with fit/predict seconds and ratios to AR."""
    log: list[dict] = []
    with timed_predictors(log):
        if run.protocol == "harmony":
            rows = harmony_protocol(frame, specs, lookback=run.lookback, n_samples=n_samples, seed=seed,
                                    progress=progress)
        else:
            rows = rolling_protocol(frame, specs, lookback=run.lookback, horizon=run.horizon(frame),
                                    stride=run.stride, n_samples=n_samples, seed=seed, progress=progress)
    for row in rows:
        entry = next(e for e in log if e["model"] == row["model"] and row["series"] in e["series"])
        row["fit_s"] = entry["fit_s"] / len(entry["series"])
        row["predict_s"] = entry["predict_s"] / len(entry["series"])
    return with_ratios(with_means(rows), run.ar)


def with_ratios(rows: list[dict], ar: str) -> list[dict]:
    """`crps_vs_ar` and `crps_max_vs_ar`: each row's score over AR's on the same series (the mean row: over
    AR's mean)."""
    reference = {r["series"]: r for r in rows if r["model"] == ar}
    return [dict(r, crps_vs_ar=r["crps"] / reference[r["series"]]["crps"],
                 crps_max_vs_ar=r["crps_max"] / reference[r["series"]]["crps_max"]) for r in rows]


def series_interval(rows: list[dict], model: str, ar: str, column: str = "crps", coverage: float = 0.9,
                    draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> tuple[float, float] | None:
    """Bootstrap interval over series of mean(model) / mean(AR); None with fewer than 3 series."""
    per = {r["series"]: r for r in rows if r["model"] == model and r["series"] != "mean"}
    base = {r["series"]: r for r in rows if r["model"] == ar and r["series"] != "mean"}
    names = sorted(per)
    if len(names) < 3:
        return None
    mine = np.array([per[s][column] for s in names])
    theirs = np.array([base[s][column] for s in names])
    pick = np.random.default_rng(seed).integers(0, len(names), size=(draws, len(names)))
    ratios = mine[pick].mean(axis=1) / theirs[pick].mean(axis=1)
    tail = (1 - coverage) / 2
    lo, hi = np.quantile(ratios, [tail, 1 - tail])
    return float(lo), float(hi)


# --- targets ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    run: str
    text: str
    check: Callable[[list[dict]], tuple[str, bool]]  # the run's rows -> (measured, met)


def _mean(rows: list[dict], prefix: str) -> dict | None:
    """The mean row of the (last, for HARMONY given several --harmony-options) model named `prefix`."""
    return next((r for r in reversed(rows) if r["series"] == "mean" and r["model"].partition(":")[0] == prefix), None)


def _peer_means(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["series"] == "mean" and r["model"].partition(":")[0] in PEERS]


def _ratio_at_most(limit: float, column: str) -> Callable[[list[dict]], tuple[str, bool]]:
    def check(rows: list[dict]) -> tuple[str, bool]:
        mine = _mean(rows, "harmony")
        return f"{mine[column]:.3f}x", mine[column] <= limit
    return check


def _below_peers(rows: list[dict]) -> tuple[str, bool]:
    mine, peers = _mean(rows, "harmony"), _peer_means(rows)
    if not peers:
        return "no peer measured", False
    best = min(peers, key=lambda r: r["crps"])
    return f"{mine['crps']:.4f} vs best peer {best['model'].partition(':')[0]} {best['crps']:.4f}", \
        mine["crps"] < best["crps"]


def _coverage_in(lo: float, hi: float) -> Callable[[list[dict]], tuple[str, bool]]:
    def check(rows: list[dict]) -> tuple[str, bool]:
        value = _mean(rows, "harmony")["coverage90"]
        return f"{value:.3f}", lo <= value <= hi
    return check


TARGETS = (
    Target("fisher", "HARMONY CRPS at most 0.85x AR(36)", _ratio_at_most(0.85, "crps_vs_ar")),
    Target("fisher", "HARMONY CRPS below every peer", _below_peers),
    Target("fisher", "HARMONY 90% coverage in [0.88, 0.92]", _coverage_in(0.88, 0.92)),
    Target("gentd26", "HARMONY CRPS of the horizon maximum at most 0.9x AR's", _ratio_at_most(0.9, "crps_max_vs_ar")),
    *(t for key in ("servegen-m-large", "servegen-m-mid", "alibaba-lora") for t in (
        Target(key, "HARMONY mean CRPS at most 0.85x AR's", _ratio_at_most(0.85, "crps_vs_ar")),
        Target(key, "HARMONY mean CRPS below every peer", _below_peers))),
)


def target_rows(results: dict[str, list[dict]]) -> list[dict]:
    """Each target: measured value and met / missed, or why it was not measured; beside it the run's best
    model by mean CRPS, whatever it is."""
    out = []
    for target in TARGETS:
        rows = results.get(target.run)
        if rows is None:
            out.append({"run": target.run, "target": target.text, "measured": "run not made", "met": "not measured"})
            continue
        best = min((r for r in rows if r["series"] == "mean"), key=lambda r: r["crps"])
        best_text = f"{best['model']} ({best['crps_vs_ar']:.3f}x AR)"
        if _mean(rows, "harmony") is None:
            out.append({"run": target.run, "target": target.text, "measured": "HARMONY not run (--harmony)",
                        "met": "not measured", "best": best_text})
            continue
        value, met = target.check(rows)
        out.append({"run": target.run, "target": target.text, "measured": value, "met": "met" if met else "missed",
                    "best": best_text})
    return out


# --- output ---------------------------------------------------------------------------------------------
def _fmt(value, digits: int = 4) -> str:
    if isinstance(value, float):
        return "" if np.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def summary_rows(rows: list[dict], run: Run) -> list[list[str]]:
    """The mean row of each model as text: model, CRPS, ratio [interval], MSE, energy, CRPS of the max, its
    ratio [interval], 90% coverage per step and of the max, fit and predict seconds summed over series."""
    out = []
    n_series = len({r["series"] for r in rows if r["series"] != "mean"})
    order = list(dict.fromkeys(r["model"] for r in rows))  # the run's order: AR, naive rules, peers, HARMONY
    for r in sorted((r for r in rows if r["series"] == "mean"), key=lambda r: order.index(r["model"])):
        cells = [r["model"], _fmt(r["crps"])]
        for column, ratio in (("crps", "crps_vs_ar"), ("crps_max", "crps_max_vs_ar")):
            spread = series_interval(rows, r["model"], run.ar, column) if r["model"] != run.ar else None
            cells.append(_fmt(r[ratio], 3) + (f" [{spread[0]:.3f}, {spread[1]:.3f}]" if spread else ""))
        cells[3:3] = [_fmt(r["mse"]), _fmt(r["energy"]), _fmt(r["crps_max"])]
        cells += [_fmt(r["coverage90"], 3), _fmt(r["coverage90_max"], 3), f"{r['fit_s'] * n_series:.1f}",
                  f"{r['predict_s'] * n_series:.1f}"]
        out.append(cells)
    return out


SUMMARY_HEADER = ["model", "CRPS", "CRPS / AR", "MSE", "energy", "CRPS max", "CRPS max / AR", "cov90",
                  "cov90 max", "fit s", "predict s"]


def per_series(rows: list[dict], column: str = "crps") -> tuple[list[str], list[list[str]]]:
    """Series x model table of one column (models in run order)."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    names = list(dict.fromkeys(r["series"] for r in rows if r["series"] != "mean"))
    cell = {(r["series"], r["model"]): r[column] for r in rows}
    return models, [[s, *(_fmt(cell[(s, m)]) for m in models)] for s in names]


def print_run(console: Console, run: Run, rows: list[dict], title: str) -> None:
    table = Table(title=title, title_justify="left")
    for i, col in enumerate(SUMMARY_HEADER):
        table.add_column(col, justify="left" if i == 0 else "right")
    for cells in summary_rows(rows, run):
        table.add_row(*cells)
    console.print(table)
    models, body = per_series(rows)
    if len(body) > 1:
        detail = Table(title=f"{run.key}: CRPS per series", title_justify="left")
        for col in ["series", *models]:
            detail.add_column(col, justify="left" if col == "series" else "right")
        for cells in body:
            detail.add_row(*cells)
        console.print(detail)


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(rows)
    table[COLUMNS + [c for c in table.columns if c not in COLUMNS]].to_csv(path, index=False)


def _md_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header),
            *("| " + " | ".join(str(c) for c in cells) + " |" for cells in body)]


SECTION = "## Peers, same run"


def markdown_section(results: dict[str, list[dict]], titles: dict[str, str], by_key: dict[str, Run], command: str,
                     csv_dir: Path, minutes: float, notes: Sequence[str] = ()) -> str:
    lines = [SECTION, "", f"Measured {datetime.date.today().isoformat()} by `{command}` ({minutes:.0f} minutes "
             "wall time on 2 shared CPU cores at nice 10); every number of a run comes from that one run. Scaled "
             "space (min-max on each run's training rows), 100 samples, seed 0. Protocols, models and how the "
             "peers' samples are drawn: `bench/forecast_peers.py`, `bench/peers/`. CSV per run in "
             f"`{csv_dir}/`.", "",
             "Peers: `ets` and `theta` are statsforecast's AutoETS and AutoTheta, fitted per series and "
             "indicator on the last 1,000 training rows and run forward over each context window, without "
             "season; samples from a two-piece normal fitted through their central intervals at "
             "50/80/90/95/98% (exact for ETS, whose intervals are normal). `lgbm` is LightGBM quantile "
             "regression (9 levels, 0.02-0.98) of the change from the last value, on as many lags as AR has "
             "plus every indicator's last value, one direct model per horizon step, pooled over series, samples "
             "by interpolating the quantile function. The peers' paths are comonotone over the horizon (one "
             "rank per path), except `deepar`'s: GluonTS DeepAR (an LSTM emitting a Student-t per step, fed "
             "its own samples), one global model over series and indicators, lags 1-7 and no calendar features "
             "inside the run's lookback, at most 100 epochs early-stopped on the validation rows, draws its own "
             "paths. `harmony` is trained per run as `bench/harmony_fisher.py` trains it.", "",
             "Ratios are to AR of the same run (`ar:36` on Fisher, `ar:30` elsewhere); `[a, b]`: 90% bootstrap "
             "interval over series of the ratio of means (runs with 3 or more series). Fit and predict seconds "
             "are summed over a run's series; per-step 90% coverage is `cov90`, that of the horizon's maximum "
             "`cov90 max`.", ""]
    lines += [*(f"{note}\n" for note in notes), "### Targets", ""]
    lines += _md_table(["run", "target", "measured", "met", "best model of the run by CRPS"],
                       [[t["run"], t["target"], t["measured"], t["met"], t.get("best", "")]
                        for t in target_rows(results)])
    for key, rows in results.items():
        run = by_key[key]
        lines += ["", f"### {titles[key]}", ""] + _md_table(SUMMARY_HEADER, summary_rows(rows, run))
        models, body = per_series(rows)
        if 1 < len(body) <= 10:
            lines += ["", "CRPS per series:", ""] + _md_table(["series", *models], body)
        elif len(body) > 10:
            ratios = {m: [r["crps_vs_ar"] for r in rows if r["model"] == m and r["series"] != "mean"]
                      for m in models if m != run.ar}
            lines += ["", f"CRPS / AR per series over the {len(body)} series (median, worst):", ""]
            lines += _md_table(["model", "median", "worst"],
                               [[m, f"{np.median(v):.3f}", f"{np.max(v):.3f}"] for m, v in ratios.items()])
    return "\n".join(lines) + "\n"


def write_section(doc: Path, section: str) -> None:
    """Put `section` in place of the file's "Peers, same run" section (up to the next `## ` heading), or at
    its end; other sections stay as they are."""
    text = doc.read_text() if doc.exists() else "# Forecasting results\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == SECTION), None)
    if start is None:
        doc.parent.mkdir(parents=True, exist_ok=True)
        doc.write_text(text.rstrip("\n") + "\n\n" + section)
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    rest = "".join(lines[end:])
    doc.write_text("".join(lines[:start]) + section + ("\n" + rest if rest else ""))


def available_peers(names: Sequence[str], console: Console) -> list[str]:
    found = []
    for name in names:
        try:
            __import__(LIBRARIES[name])
            found.append(name)
        except ImportError:
            console.print(f"[yellow]peer {name} skipped: {LIBRARIES[name]} is not installed (pip install -e "
                          "'.\\[bench]')[/]")  # \\[: a literal bracket, not rich markup
    return found


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 Fisher containers, 5 clients, stride = horizon")
    parser.add_argument("--harmony", nargs="?", const="all", default="",
                        help="also train and score the HARMONY model: in every run, or in these (comma-separated)")
    parser.add_argument("--harmony-options", action="append", default=None,
                        help="extra options of the HARMONY model, joined by '+' (members=3: a deep ensemble); "
                             "repeated: one HARMONY model each (\"\" for none), the targets judge the last")
    parser.add_argument("--validation", action="store_true",
                        help="every run on its rows before the test rows (the first 80%%), for design choices; "
                             "CSVs under OUT/validation, no doc section")
    parser.add_argument("--runs", default=None, help="comma-separated run keys (default: all)")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated peers (default: all)")
    parser.add_argument("--clients", type=int, default=CLIENTS, help="ServeGen clients per model")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("results/forecast_peers"))
    parser.add_argument("--doc", type=Path, default=Path("docs/results/forecasting.md"))
    args = parser.parse_args(argv)
    console = Console(width=170)
    all_runs = runs(args.quick, args.clients)
    by_key = {r.key: r for r in all_runs}
    wanted = [k.strip() for k in args.runs.split(",")] if args.runs else list(by_key)
    unknown = [k for k in wanted if k not in by_key]
    if unknown:
        parser.error(f"--runs: unknown run {unknown[0]!r}; known: {', '.join(by_key)}")
    bad = [p for p in args.peers.split(",") if p and p not in PEERS]
    if bad:
        parser.error(f"--peers: unknown peer {bad[0]!r}; known: {', '.join(PEERS)}")
    with_harmony = set(by_key) if args.harmony == "all" else {k.strip() for k in args.harmony.split(",") if k}
    if with_harmony - set(by_key):
        parser.error(f"--harmony: unknown run {sorted(with_harmony - set(by_key))[0]!r}; known: {', '.join(by_key)}")
    peers = available_peers([p for p in args.peers.split(",") if p], console)
    command = ("nice -n 10 env PYTHONPATH=src .venv/bin/python bench/forecast_peers.py "
               + shlex.join(sys.argv[1:] if argv is None else argv)).strip()
    out = args.out / "validation" if args.validation else args.out
    started = time.perf_counter()
    results, titles, notes = {}, {}, []
    for n, key in enumerate(wanted, 1):
        run = by_key[key]
        frame = run.frame(args.validation)
        specs = run.specs(frame, peers, key in with_harmony, args.harmony_options or [""])
        run_started = time.perf_counter()
        try:
            results[key] = measure(run, frame, specs, n_samples=args.samples, progress=lambda s: console.log(s))
        except Exception as error:  # one failed run must not cost the others of a long bench
            console.print_exception()
            notes.append(f"Run `{key}` failed: {type(error).__name__}: {error}")
            continue
        finally:
            seconds = time.perf_counter() - run_started
        rows_note = ", validation rows" if args.validation else ""
        titles[key] = (f"{run.title}{rows_note}: {len(frame.series)} series, lookback {run.lookback}, horizon "
                       f"{run.horizon(frame)}, stride {run.stride or run.horizon(frame)} ({seconds / 60:.1f} min)")
        print_run(console, run, results[key], titles[key])
        write_csv(results[key], out / f"{key}.csv")
        progress_note = [] if n == len(wanted) else [f"Partial: {n} of {len(wanted)} runs done so far."]
        if not args.validation:  # the doc's section reports the evaluated runs only
            write_section(args.doc, markdown_section(results, titles, by_key, command, args.out,
                                                     (time.perf_counter() - started) / 60, notes + progress_note))
    table = Table(title="Targets", title_justify="left")
    for col in ("run", "target", "measured", "met", "best"):
        table.add_column(col)
    for t in target_rows(results):
        table.add_row(t["run"], t["target"], t["measured"], t["met"], t.get("best", ""))
    console.print(table)
    if args.validation:
        console.print(f"wrote {out}/*.csv (validation rows: no doc section)")
        return
    write_section(args.doc, markdown_section(results, titles, by_key, command, args.out,
                                             (time.perf_counter() - started) / 60, notes))
    console.print(f"wrote {out}/*.csv and the section {SECTION!r} of {args.doc}")


if __name__ == "__main__":
    main()
