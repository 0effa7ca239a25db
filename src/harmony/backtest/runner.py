"""Backtests: every policy replayed on the same trace, the same split and the same forecasts.

The first `train_fraction` of the span comes before the evaluated span (the static policy takes its peak from
it; the forecasts of its last rows start the run); the rest is the evaluated span, never used for tuning.
Forecasting policies see what the operator would see: at each tick the telemetry window of `history_s`
ending there, through the operator's forecasting adapter and refit cadence (`harmony.backtest.forecasts`).
Sweeps vary each policy's own knob to trace its cost/breach curve, so policies are compared at a matched
breach rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from harmony.backtest.forecasts import ReplayForecasts
from harmony.backtest.policies import POLICIES, build_policy
from harmony.backtest.policies.base import PolicySetup
from harmony.backtest.policies.harmony import Harmony
from harmony.backtest.simulator import SimulationResult, simulate
from harmony.decision.behavior import Behavior
from harmony.decision.demand import DemandDefinition, demand_of
from harmony.decision.posteriors import CapacityPosterior
from harmony.errors import HarmonyInputError
from harmony.forecasting.adapter import (
    DEFAULT_SAMPLES,
    REFIT_EVERY,
    DemandForecaster,
    FineTune,
    default_history_s,
    default_lookback_s,
    default_training_s,
    training_steps,
    validation_rows,
)
from harmony.forecasting.loop_defaults import DEFAULT_FINE_TUNE_S, DEFAULT_FORECASTER
from harmony.telemetry.frame import TelemetryFrame

SUMMARY_COLUMNS = ["policy", "gpu_hours", "breach_rate", "unserved_fraction", "scaling_actions",
                   "mean_utilisation", "oracle_ratio", "unknown_ticks"]


@dataclass(frozen=True)
class BacktestSettings:
    """cold_start_s: seconds before a requested replica serves. sla: target breach rate in (0, 1).
    train_fraction: share of the span before the evaluated one. model: forecaster spec for forecasting
    policies. lookback_s / history_s: the forecast's context and the telemetry window each decision reads
    (the CRD's lookbackSeconds / historySeconds; None: their defaults for the trace's interval). training_s:
    the history a model trained on the workload's telemetry (HARMONY) learns from (spec.model.trainingSeconds;
    None: its default, `default_training_s`).
    refit_every: decisions between refits of a baseline (the operator's cadence). n_samples: forecast
    samples per decision. fine_tune_s: seconds between fine-tunes of a model that learns in the loop (HARMONY;
    0: never), fine_tune_epochs its epochs each time (the CRD's spec.model.fineTune).
    capacity_prior: harmony's prior over the per-replica capacity (default: centred on
    the definition's capacity). behavior: the harmony policy's scaling behaviour, the CRD's spec.behavior
    (None: the HPA's defaults, as the operator's)."""

    cold_start_s: float = 300.0
    sla: float = 0.01
    min_replicas: int = 1
    max_replicas: int = 1000
    train_fraction: float = 0.7
    model: str = DEFAULT_FORECASTER
    lookback_s: float | None = None  # None: the operator's default for the trace's interval
    history_s: float | None = None
    training_s: float | None = None  # None: the operator's default (the history window or 7 days, the longer)
    refit_every: int = REFIT_EVERY
    n_samples: int = DEFAULT_SAMPLES
    fine_tune_s: float = DEFAULT_FINE_TUNE_S
    fine_tune_epochs: int = FineTune.epochs
    seed: int = 0
    capacity_prior: CapacityPosterior | None = None  # harmony's prior belief (e.g. from `harmony calibrate`)
    behavior: Behavior | None = None

    def __post_init__(self) -> None:
        for flag, value in (("--cold-start", self.cold_start_s), ("--lookback-seconds", self.lookback_s),
                            ("--history-seconds", self.history_s), ("--training-seconds", self.training_s)):
            if value is not None and not math.isfinite(value):  # NaN passes every comparison below
                raise HarmonyInputError(f"{flag} must be a finite number of seconds, got {value}")
        if not 0 < self.sla < 1:
            raise HarmonyInputError(f"--sla must lie in (0, 1), got {self.sla}")
        if self.cold_start_s < 0:
            raise HarmonyInputError(f"--cold-start must be >= 0 seconds, got {self.cold_start_s}")
        if self.min_replicas < 0:
            raise HarmonyInputError(f"--min-replicas must be >= 0, got {self.min_replicas}")
        if self.min_replicas > self.max_replicas:
            raise HarmonyInputError(
                f"--min-replicas {self.min_replicas} is above --max-replicas {self.max_replicas}")
        if self.lookback_s is not None and not self.lookback_s > 0:
            raise HarmonyInputError(f"--lookback-seconds must be positive, got {self.lookback_s}")
        if self.history_s is not None and not self.history_s > 0:
            raise HarmonyInputError(f"--history-seconds must be positive, got {self.history_s}")
        if self.training_s is not None and not self.training_s > 0:
            raise HarmonyInputError(f"--training-seconds must be positive, got {self.training_s}")
        if self.lookback_s is not None and self.history_s is not None and self.lookback_s > self.history_s:
            raise HarmonyInputError(f"--lookback-seconds {self.lookback_s:g} exceeds --history-seconds "
                                    f"{self.history_s:g}")
        if not (math.isfinite(self.fine_tune_s) and self.fine_tune_s >= 0):
            raise HarmonyInputError(f"--fine-tune-seconds must be >= 0 and finite, got {self.fine_tune_s}")
        if self.fine_tune_epochs < 1:
            raise HarmonyInputError(f"--fine-tune-epochs must be >= 1, got {self.fine_tune_epochs}")
        if self.refit_every < 0:
            raise HarmonyInputError(f"--refit-every must be >= 0, got {self.refit_every}")
        if not 0 < self.train_fraction < 1:
            raise HarmonyInputError(f"--train-fraction must lie in (0, 1), got {self.train_fraction}")
        if self.n_samples < 1:
            raise HarmonyInputError(f"n_samples must be >= 1, got {self.n_samples}")


@dataclass
class Backtest:
    """A prepared trace: demand, split, shared setup and forecaster; run policies on it."""

    frame: TelemetryFrame
    definition: DemandDefinition
    settings: BacktestSettings
    demand: np.ndarray = field(init=False)
    first_tick: int = field(init=False)
    forecaster: ReplayForecasts | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if len(self.frame.series) != 1:
            raise HarmonyInputError(f"a backtest replays one series; got {len(self.frame.series)} (use --series)")
        self.demand = demand_of(self.frame, self.definition)[:, 0]
        self.first_tick = int(len(self.demand) * self.settings.train_fraction)
        if self.first_tick < 10 or len(self.demand) - self.first_tick < 10:
            raise HarmonyInputError(f"{len(self.demand)} ticks are too few to split for a backtest")
        if np.all(np.isnan(self.demand[: self.first_tick])):
            raise HarmonyInputError("demand is missing throughout the training part")
        self._check_demand()
        self._check_cold_start()

    def _check_demand(self) -> None:
        """Demand is a rate or a count: an infinity or a negative value is a corrupt sample, not a load
        (one of them would scale, or starve, every decision). Missing (NaN) ticks are gaps, allowed."""
        bad = np.isinf(self.demand) | (self.demand < 0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            where = f"{self.frame.source}: " if self.frame.source else ""
            raise HarmonyInputError(
                f"{where}demand ({'+'.join(self.definition.indicators)}) is {self.demand[row]:g} at "
                f"{self.frame.index[row]}; demand must be finite and >= 0")

    def _check_cold_start(self) -> None:
        """A replica that serves only after more intervals than the trace holds before the evaluated span is
        no cold start this trace can replay: no forecast reaches that far, and nothing could be learnt."""
        ticks = self.setup().cold_start_ticks
        if ticks > self.first_tick:
            raise HarmonyInputError(
                f"--cold-start {self.settings.cold_start_s:g} s is {ticks:,} intervals of {self.interval_s:g} s, "
                f"more than the {self.first_tick} intervals of history before the evaluated span")

    @property
    def interval_s(self) -> float:
        return self.frame.interval.total_seconds()

    def setup(self, future: bool = False) -> PolicySetup:
        return PolicySetup(
            train_demand=self.demand[: self.first_tick],
            capacity_per_replica=self.definition.capacity_per_replica,
            interval_s=self.interval_s,
            cold_start_s=self.settings.cold_start_s,
            min_replicas=self.settings.min_replicas,
            max_replicas=self.settings.max_replicas,
            sla=self.settings.sla,
            forecaster=self.forecaster,
            future_demand=self.demand[self.first_tick:] if future else None,
            first_tick=self.first_tick,
        )

    def ensure_forecaster(self) -> ReplayForecasts:
        """The operator's forecasts, replayed: the same adapter over the same telemetry windows."""
        if self.forecaster is None:
            step_s = self.frame.interval.total_seconds()
            history_s = self.settings.history_s or default_history_s(step_s)
            lookback_s = self.settings.lookback_s or min(default_lookback_s(step_s), history_s)
            lookback = max(1, math.ceil(lookback_s / step_s))
            history = max(1, math.ceil(history_s / step_s))
            self._check_window(lookback, history, lookback_s, history_s)
            tune = FineTune.every_seconds(self.settings.fine_tune_s, step_s, epochs=self.settings.fine_tune_epochs)
            training_s = self.settings.training_s or default_training_s(history_s, step_s)
            adapter = DemandForecaster(self.settings.model, self.setup().horizon, lookback, self.settings.n_samples,
                                       self.settings.refit_every, fine_tune=tune,
                                       training_steps=training_steps(training_s, history_s, step_s))
            self.forecaster = ReplayForecasts(self.frame, self.definition.indicators, adapter, history,
                                              self.first_tick, self.settings.seed)
            if self.forecaster.demand_samples(self.first_tick - 1) is None:
                raise HarmonyInputError(
                    f"no forecast from the history before the evaluated span: "
                    f"{self.forecaster.failures[self.first_tick - 1]} (--history-seconds, --lookback-seconds)")
        return self.forecaster

    def _check_window(self, lookback: int, history: int, lookback_s: float, history_s: float) -> None:
        """Refuse, naming the flags, a forecast window the trace cannot serve: a lookback longer than the
        telemetry each decision reads, or a first fit (on the rows before the evaluated span) that lacks the
        rows the forecaster needs: two lookbacks to fit on, plus the validation rows held out for the
        forecast's horizon (`DemandForecaster.fit`). Without this the policy would hold its count all run."""
        given = "" if self.settings.history_s else ", its default"
        if lookback > history:
            raise HarmonyInputError(
                f"--lookback-seconds {lookback_s:g} ({lookback} intervals) is longer than the history each "
                f"decision reads (--history-seconds {history_s:g}{given}, {history} intervals)")
        rows = min(history, self.first_tick)
        horizon = self.setup().horizon
        held_out = validation_rows(rows, horizon)
        if rows - held_out < 2 * lookback:
            raise HarmonyInputError(
                f"{rows} rows of history before the evaluated span cannot fit {self.settings.model}: a lookback "
                f"of {lookback} intervals (--lookback-seconds {lookback_s:g}) needs {2 * lookback} rows, and a "
                f"forecast {horizon} intervals ahead (--cold-start {self.settings.cold_start_s:g} s) holds out "
                f"{held_out} more; shorten them, or raise --history-seconds or --train-fraction")

    def run(self, name: str, value: float | None = None) -> SimulationResult:
        policy = build_policy(name, value)
        if takes_sla(name) and self.settings.capacity_prior is not None:
            policy.capacity_prior = self.settings.capacity_prior  # harmony's step, alone or through the HPA
        if isinstance(policy, Harmony) and self.settings.behavior is not None:
            policy.behavior = self.settings.behavior  # the count harmony sets itself (not through an HPA)
        if policy.needs_forecaster:
            self.ensure_forecaster()
        return simulate(policy, self.demand, self.first_tick, self.setup(future=policy.needs_future))


def takes_sla(name: str) -> bool:
    """Policies whose knob is the target breach probability (harmony's step): run at the SLA by default."""
    return POLICIES[name].knob == "epsilon"


def summarise(results: list[SimulationResult], oracle: SimulationResult) -> list[dict]:
    rows = []
    for res in results:
        row = res.summary()
        row["oracle_ratio"] = row["gpu_hours"] / oracle.gpu_hours if oracle.gpu_hours > 0 else float("nan")
        rows.append(row)
    return rows


def run_policies(backtest: Backtest, names: list[str],
                 progress: Callable[[str], None] | None = None) -> tuple[list[SimulationResult], list[dict]]:
    """Each named policy at its default knob (harmony and harmony-via-hpa at the SLA), plus the oracle for
    the ratio."""
    results = []
    oracle = None
    for name in names:
        if progress:
            progress(name)
        value = backtest.settings.sla if takes_sla(name) else None
        res = backtest.run(name, value)
        results.append(res)
        if name == "oracle":
            oracle = res
    oracle = oracle or backtest.run("oracle")
    return results, summarise(results, oracle)


def sweep_policies(backtest: Backtest, names: list[str],
                   progress: Callable[[str], None] | None = None) -> tuple[list[dict], list[dict]]:
    """Every policy over its knob grid: (curve rows, one row per policy at the SLA target).

    At the SLA a policy's figure is its cheapest setting whose breach rate is within the target (no
    interpolation between settings); a policy with no such setting reports its safest one, flagged."""
    oracle = backtest.run("oracle")
    curve = []
    for name in names:
        cls = POLICIES[name]
        for value in cls.sweep or (None,):
            if progress:
                progress(f"{name} {cls.knob}={value}")
            res = backtest.run(name, value)
            row = summarise([res], oracle)[0]
            row.update({"policy": name, "knob": cls.knob, "value": value})
            curve.append(row)
    at_sla = []
    for name in names:
        rows = [r for r in curve if r["policy"] == name]
        within = [r for r in rows if r["breach_rate"] <= backtest.settings.sla]
        best = min(within, key=lambda r: r["gpu_hours"]) if within else min(rows, key=lambda r: r["breach_rate"])
        at_sla.append(dict(best, meets_sla=bool(within)))
    return curve, at_sla
