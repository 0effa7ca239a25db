"""One loop: the backtest's harmony policy and the operator's Reconciler make the same decisions.

The same demand trace drives both. The backtest replays it through the simulator; the operator reconciles a
HarmonyAutoscaler on the kmock emulator tick by tick, reading the same telemetry windows, while the test plays
the Deployment controller and kubelets with the simulator's own fleet model (scale-ups Ready one cold start
later, scale-downs at once). The replica counts in force at every tick must be identical, with the default
behaviour and with an HPA-shaped `behavior` that binds (the backtest takes it as the operator parses it).
"""

from __future__ import annotations

import asyncio
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from harmony.backtest.runner import Backtest, BacktestSettings
from harmony.backtest.simulator import Fleet
from harmony.decision.demand import DemandDefinition
from harmony.operator.spec import parse_spec
from harmony.telemetry.frame import Indicator, TelemetryFrame
from harmony.telemetry.prometheus import TelemetryWindow
from tests.operator_support import (
    DEPLOYMENTS,
    HA,
    add_autoscaler,
    add_deployment,
    autoscaler_spec,
    cluster,
    make_reconciler,
    obj,
)

INTERVAL_S, COLD_START_S, CAPACITY, SLA = 60, 180, 2.0, 0.05
LOOKBACK_S, HISTORY_S = 1200, 7200
ROWS, TRAIN_FRACTION = 320, 0.75
SHORT_FORM = {"scaleDownStabilizationSeconds": 300}  # the default window, in the short form
# slow scale-ups (2 pods per 2 min, the lowest target of 2 min), a slow scale-down (the smaller of 20% per
# 3 min and 1 pod per minute, after a 10 min window): rules that bind on the trace's bursts
BINDING = {
    "scaleUp": {"stabilizationWindowSeconds": 120, "policies": [{"type": "Pods", "value": 2, "periodSeconds": 120}]},
    "scaleDown": {"stabilizationWindowSeconds": 600, "selectPolicy": "Min",
                  "policies": [{"type": "Percent", "value": 20, "periodSeconds": 180},
                               {"type": "Pods", "value": 1, "periodSeconds": 60}]},
}


def trace() -> TelemetryFrame:
    """Demand with a daily-like swell, bursts and noise (deterministic), one indicator, one workload."""
    rng = np.random.default_rng(7)
    t = np.arange(ROWS)
    demand = 8 + 5 * np.sin(t / 25) + rng.gamma(2.0, 0.8, ROWS) + np.where((t % 70) < 6, 9.0, 0.0)
    index = pd.date_range("2026-03-02 08:00", periods=ROWS, freq=f"{INTERVAL_S}s")
    return TelemetryFrame(index, demand[:, None, None], ["workload"], [Indicator("demand", 1, "requests/s")],
                          interval=f"{INTERVAL_S}s")


def backtest_replicas(frame: TelemetryFrame, behavior: dict) -> tuple[np.ndarray, int]:
    parsed = parse_spec(autoscaler_spec(intervalSeconds=INTERVAL_S, behavior=behavior)).behavior
    settings = BacktestSettings(cold_start_s=COLD_START_S, sla=SLA, min_replicas=1, max_replicas=40,
                                train_fraction=TRAIN_FRACTION, model="ar:4", lookback_s=LOOKBACK_S,
                                history_s=HISTORY_S, behavior=parsed)
    bt = Backtest(frame, DemandDefinition(("demand",), "requests/s", CAPACITY, "demand"), settings)
    return bt.run("harmony", SLA).provisioned, bt.first_tick


async def operator_replicas(frame: TelemetryFrame, first_tick: int, behavior: dict) -> np.ndarray:
    history = HISTORY_S // INTERVAL_S
    tick = first_tick - 1

    def telemetry(spec, now):
        return TelemetryWindow(frame.slice(max(0, tick + 1 - history), tick + 1), False, "")

    def clock() -> dt.datetime:
        return frame.index[tick].to_pydatetime().replace(tzinfo=dt.UTC)

    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=1, ready=1)
        add_autoscaler(k8s, intervalSeconds=INTERVAL_S, capacityPerReplica=CAPACITY, minReplicas=1, maxReplicas=40,
                       sla={"maxBreachProbability": SLA, "coldStartSeconds": COLD_START_S},
                       behavior=behavior, model={"baseline": "ar:4"},
                       lookbackSeconds=LOOKBACK_S, historySeconds=HISTORY_S)
        reconciler = make_reconciler(url, telemetry)
        reconciler.clock = clock

        def deployment() -> dict:
            return obj(k8s, DEPLOYMENTS, "default", "llm-server")

        def kubelet(fleet: Fleet) -> None:
            k8s.objects[DEPLOYMENTS, "default", "llm-server"].patch(
                {"status": {"replicas": fleet.provisioned, "readyReplicas": fleet.ready}})

        async def reconcile() -> int:
            ha = obj(k8s, HA, "default", "llm")
            outcome = await asyncio.to_thread(reconciler.reconcile, "default", "llm", ha["metadata"]["uid"], 1,
                                              ha["spec"], ha.get("status"))
            assert outcome.error is None, outcome.error
            return int(deployment()["spec"]["replicas"])

        fleet = Fleet(ready=await reconcile())  # the warm decision on the history: its count is ready
        kubelet(fleet)
        provisioned = []
        for tick in range(first_tick, len(frame)):
            fleet.advance(tick)
            kubelet(fleet)
            provisioned.append(fleet.provisioned)
            fleet.scale_to(await reconcile(), tick, COLD_START_S // INTERVAL_S)
        return np.array(provisioned)


@pytest.mark.asyncio
@pytest.mark.parametrize("behavior", [SHORT_FORM, BINDING], ids=["default", "binding-behavior"])
async def test_the_backtest_policy_and_the_reconciler_make_the_same_decisions(behavior):
    frame = trace()
    expected, first_tick = backtest_replicas(frame, behavior)
    assert len(set(expected.tolist())) >= 4  # the trace makes the policy scale both ways, not hold one count
    if behavior is BINDING:  # the rules change what the policy does, so the comparison covers them
        assert expected.tolist() != backtest_replicas(frame, SHORT_FORM)[0].tolist()
        assert np.diff(expected).max() <= 2
    got = await operator_replicas(frame, first_tick, behavior)
    assert got.tolist() == expected.tolist()
