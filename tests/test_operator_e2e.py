"""End to end with real parts: a real Prometheus scrapes the replay exporter serving the bundled GenTD26
trace (time-compressed), the kopf operator reads it over the HTTP API and scales a Deployment in the kmock
Kubernetes emulator, whose pods become Ready only after the cold start (a kubelet stand-in,
tests/operator_support.kubelet: status.replicas rises at once, status.readyReplicas a cold start later).

As demand rises the operator scales up ahead of it; as it falls it scales down, but only after the
stabilisation window.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from harmony.cli.operator import telemetry_source
from harmony.operator.replay_exporter import ReplayExporter, metric_name
from harmony.telemetry.datasets import load_dataset
from harmony.telemetry.prometheus import PrometheusClient, PrometheusConfig
from tests.operator_support import (
    DEPLOYMENTS,
    HA,
    add_autoscaler,
    add_deployment,
    api_permissions,
    cluster,
    eventually,
    kubelet,
    make_reconciler,
    obj,
    operator,
)
from tests.prometheus_server import PrometheusServer, find_free_port, require_prometheus

pytestmark = pytest.mark.asyncio
ROOT = Path(__file__).resolve().parents[1]

ROWS_PER_S = 4.0  # trace minutes replayed per wall-clock second
FIRST_ROW, LAST_ROW = 20, 292  # GenTD26: ~3-5 GPUs busy until row ~57, 10-20 until ~235, then ~5-6
RISE_ROW, FALL_ROW = 58, 236
INITIAL_REPLICAS = 4
COLD_START_S = 3
STABILISATION_S = 10


async def test_operator_scales_ahead_of_rising_demand_and_down_after_stabilisation():
    require_prometheus()
    frame = load_dataset("gentd26").select(indicators=["gpu_busy", "generative_qps"]).slice(FIRST_ROW, LAST_ROW)
    exporter = ReplayExporter(frame, "gentd26", speed=ROWS_PER_S * 60.0, loop=False)
    exporter.start(find_free_port())
    server = PrometheusServer([("replay", f"127.0.0.1:{exporter.port}")], wait_for=metric_name("gpu_busy"))
    try:
        await asyncio.to_thread(server.__enter__)
        prom = PrometheusClient(PrometheusConfig(url=server.url, timeout_s=2.0, retries=1, backoff_s=0.1))
        async with cluster() as (k8s, url):
            add_deployment(k8s, replicas=INITIAL_REPLICAS)
            add_autoscaler(
                k8s,
                indicators=[
                    {"name": "gpu_busy", "query": metric_name("gpu_busy"), "level": 2, "demand": True},
                    {"name": "qps", "query": metric_name("generative_qps"), "level": 1},
                ],
                capacityPerReplica=1.0, minReplicas=1, maxReplicas=60, intervalSeconds=1,
                sla={"maxBreachProbability": 0.01, "coldStartSeconds": COLD_START_S},
                behavior={"scaleDownStabilizationSeconds": STABILISATION_S, "maxScaleUpStep": 60},
                model={"baseline": "ar:2"}, lookbackSeconds=5, historySeconds=30,
            )
            stop = asyncio.Event()
            kubelet_task = asyncio.create_task(kubelet(k8s, COLD_START_S, stop))
            timeline: list[tuple[float, int, float, int, int, int]] = []  # t, row, demand, desired, ready, target

            async def record() -> None:
                while not stop.is_set():
                    row = exporter.current_row()
                    dep = obj(k8s, DEPLOYMENTS, "default", "llm-server")
                    target = obj(k8s, HA, "default", "llm").get("status", {}).get("recommendedReplicas", -1)
                    timeline.append((time.monotonic(), row, exporter.values_at(row)["gpu_busy"],
                                     dep["spec"]["replicas"], dep["status"].get("readyReplicas", 0), target))
                    await asyncio.sleep(0.2)

            recorder = asyncio.create_task(record())
            rec = make_reconciler(url, telemetry_source(prom))
            started = time.monotonic()
            async with operator(rec, url):
                # one pass through the slice: low, rise, high, fall, ~14 s low
                await eventually(lambda: time.monotonic() - started > (LAST_ROW - FIRST_ROW) / ROWS_PER_S,
                                 timeout=120)
            stop.set()
            await asyncio.gather(kubelet_task, recorder)
            status = obj(k8s, HA, "default", "llm")["status"]
            used = api_permissions(k8s)
    finally:
        exporter.stop()
        await asyncio.to_thread(server.stop)

    t, rows, demand, desired, ready, target = (np.array(c) for c in zip(*timeline, strict=True))
    first_pass = np.concatenate([[True], np.diff(rows) >= 0]).cumprod().astype(bool)  # until the loop wraps
    high = first_pass & (rows + FIRST_ROW >= RISE_ROW) & (rows + FIRST_ROW < FALL_ROW)

    # Up ahead of the peak: pods become ready only cold_start after they are asked for, so capacity ready
    # at the peak was requested at least that long before it.
    # The peak of sustained demand (a 2 s mean: single-row spikes are noise no forecast can call).
    sustained = np.convolve(demand, np.ones(10) / 10, mode="same")
    peak_at = int(np.argmax(np.where(high, sustained, -np.inf)))
    assert ready[peak_at] > 3 * INITIAL_REPLICAS, timeline[peak_at]
    assert ready[peak_at] * 1.0 >= 0.7 * sustained[peak_at], (timeline[peak_at], sustained[peak_at])
    assert (desired[:peak_at] > INITIAL_REPLICAS).any()

    # Down only after the stabilisation window: every scale-down lands on a count that every decision
    # over the part of the window the forecast horizon does not cover (STABILISATION_S - horizon, one
    # decision a second) had already recommended.
    horizon_s = COLD_START_S + 1
    downs = np.flatnonzero(np.diff(desired) < 0) + 1
    assert downs.size, "never scaled down"
    for i in downs:
        window = (t > t[i] - (STABILISATION_S - horizon_s - 1.0)) & (t <= t[i]) & (target >= 0)
        assert (target[window] <= desired[i]).all(), (timeline[i], target[window])
    # ... and after demand fell (to 4-11 GPUs, noisy) it did come down, by more than a replica or two
    fell_at = int(np.argmax(first_pass & (rows + FIRST_ROW >= FALL_ROW)))
    assert desired[-1] <= desired[fell_at] - 3, (desired[fell_at], desired[-1])
    assert status["conditions"][0]["type"] == "Ready" and status["conditions"][0]["status"] == "True"

    # Every API call the operator made here is allowed by the Helm chart's default (cluster-wide) role.
    from tests.test_helm_chart import granted, render

    helm = pytest.importorskip("helm_python")
    docs = render(helm.Chart.load(str(ROOT / "deploy" / "helm" / "harmony")), {})
    allowed = set().union(*granted(docs).values())
    assert used <= allowed, sorted(used - allowed)
    # ... and nothing more than this run used, except what features it does not exercise need:
    not_exercised = {
        ("apps", "statefulsets/scale", "get"), ("apps", "statefulsets/scale", "patch"),  # StatefulSet targets
        ("apps", "statefulsets", "get"),
        ("", "namespaces", "list"), ("", "namespaces", "watch"),  # kopf's observer for --namespace patterns
        ("harmony.dev", "harmonyautoscalers", "get"),  # kopf re-reads an object after a failed patch
        ("harmony.dev", "harmonyautoscalers/status", "get"),
    }
    assert allowed - used <= not_exercised, sorted(allowed - used - not_exercised)
