"""Forecasts for the backtest's policies, made as the operator makes them.

At tick t the operator reads `historySeconds` of telemetry ending at t from Prometheus and hands that window
to its forecasting adapter (refitting a baseline every `refit_every` decisions), seeded with the decision
count; a model trained on the workload's own telemetry trains on `spec.model.trainingSeconds` of it, read
only when it trains. `ReplayForecasts` replays exactly that from the trace: the same adapter class, the same window, the
same cadence and seeds, so a backtest figure describes the loop the operator runs. Forecasts are cached per
tick and shared by every policy and sweep setting of one backtest (all see the same telemetry).

The operator's staleness rule applies too (`harmony.telemetry.prometheus.stale_after_s`): a window whose
newest demand sample is older than three intervals gives no forecast, and the step holds.
"""

from __future__ import annotations

import numpy as np

from harmony.errors import HarmonyInputError
from harmony.forecasting.adapter import DemandForecaster
from harmony.telemetry.frame import TelemetryFrame
from harmony.telemetry.prometheus import stale_after_s


class ReplayForecasts:
    """Demand samples at any tick of `frame` (one series) from the window the operator would have read.

    forecaster: the adapter (fresh: it is refitted on the windows as in the operator). demand: indicators
    summed as demand. history_steps: rows per window (historySeconds / interval). first_tick: the first
    evaluated tick; the decision made after tick t is decision number t - first_tick + 1 (the warm decision
    on the history, at first_tick - 1, is number 0), which seeds its forecast as the operator seeds it.
    """

    def __init__(self, frame: TelemetryFrame, demand: tuple[str, ...], forecaster: DemandForecaster,
                 history_steps: int, first_tick: int, seed: int = 0) -> None:
        if len(frame.series) != 1:
            raise HarmonyInputError(f"backtests run one workload at a time; the frame has {len(frame.series)} series")
        self.frame, self.demand, self.forecaster = frame, tuple(demand), forecaster
        self.history_steps, self.first_tick, self.seed = int(history_steps), int(first_tick), int(seed)
        self.failures: dict[int, str] = {}  # tick -> why no forecast (the policy held, as the operator would)
        self._cache: dict[int, np.ndarray | None] = {}
        positions = [frame.indicator_position(name) for name in self.demand]
        self._seen = np.isfinite(frame.values[:, 0, positions]).all(axis=1)  # [T] demand known at the row
        self._stale_steps = stale_after_s(frame.interval.total_seconds()) / frame.interval.total_seconds()

    def window(self, tick: int) -> TelemetryFrame:
        return self.frame.slice(max(0, tick + 1 - self.history_steps), tick + 1)

    def training(self, tick: int) -> TelemetryFrame | None:
        """The history a model trains on at `tick` (the forecaster's training_steps ending there), as the
        operator's training query reads it; None where it asks for no more than the window."""
        steps = self.forecaster.training_steps
        if steps is None or steps <= self.history_steps:
            return None
        return self.frame.slice(max(0, tick + 1 - steps), tick + 1)

    def demand_samples(self, tick: int) -> np.ndarray | None:
        """[n_samples, horizon] demand over ticks tick+1 .. tick+horizon, or None where the operator would
        have had no forecast (too little history, a window with an indicator never observed)."""
        if tick not in self._cache:
            self._compute_through(tick)
        return self._cache[tick]

    def _compute_through(self, tick: int) -> None:
        # forecasts are made in tick order from the first one asked for: a refit cadence counts decisions
        start = max(self._cache, default=self.first_tick - 2) + 1
        for t in range(min(start, tick), tick + 1):
            if t in self._cache:
                continue
            decision = t - self.first_tick + 1
            seen = np.flatnonzero(self._seen[max(0, t + 1 - self.history_steps):t + 1])
            newest = seen[-1] + max(0, t + 1 - self.history_steps) if seen.size else None
            if newest is None or t - newest > self._stale_steps:
                self.failures[t] = "telemetry-stale: no recent demand sample"
                self._cache[t] = None
                continue
            try:
                self._cache[t] = self.forecaster.demand_samples(self.window(t), self.demand, self.seed + decision,
                                                                training=lambda t=t: self.training(t))
            except HarmonyInputError as exc:
                self.failures[t] = str(exc)
                self._cache[t] = None
