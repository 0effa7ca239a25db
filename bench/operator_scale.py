"""Benchmark: one operator process handling N HarmonyAutoscalers at a 30 s interval (issue 5: 500 objects).

The kopf operator runs against the kmock Kubernetes emulator (in the same process, so CPU figures include
the emulator's work) with a scripted telemetry source standing in for Prometheus (720-point histories, one
demand indicator; the HTTP round trips to a real Prometheus are not included). Each object uses the CRD
defaults: ar:30 baseline refitted every decision on 6 h of history, 200 samples, 5-minute cold start.
Prints decision latency p50 / p99, decisions per second, process CPU (percent of one core) and peak RSS.

    .venv/bin/python bench/operator_scale.py [--objects 500] [--interval 30] [--seconds 95]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.operator_support import (  # noqa: E402
    ScriptedTelemetry,
    add_autoscaler,
    add_deployment,
    cluster,
    make_reconciler,
    operator,
)


async def main(objects: int, interval: int, seconds: float) -> None:
    durations: list[float] = []
    async with cluster() as (k8s, url):
        for i in range(objects):
            add_deployment(k8s, name=f"server-{i}", replicas=3)
            add_autoscaler(k8s, name=f"ha-{i}", intervalSeconds=interval,
                           scaleTargetRef={"apiVersion": "apps/v1", "kind": "Deployment", "name": f"server-{i}"},
                           sla={"maxBreachProbability": 0.01, "coldStartSeconds": 300},
                           behavior={"scaleDownStabilizationSeconds": 300},
                           model={"baseline": "ar:30"}, lookbackSeconds=3600, historySeconds=21600)
        rec = make_reconciler(url, ScriptedTelemetry(level=5.0, noise=1.0))
        inner = rec.reconcile

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                durations.append(time.perf_counter() - started)

        rec.reconcile = timed
        usage0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        try:
            async with operator(rec, url, stop_timeout=120):
                await asyncio.sleep(seconds)
                report(list(durations), objects, interval, seconds, usage0, wall0)
        except (TimeoutError, RuntimeError) as exc:  # stopping 500 daemons at once; figures are printed
            Console().print(f"(operator shutdown: {type(exc).__name__})")


def report(durations: list[float], objects: int, interval: int, seconds: float, usage0, wall0: float) -> None:
    usage1, wall1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    d = np.array(durations) * 1000
    table = Table(title=f"{objects} HarmonyAutoscalers, interval {interval} s, {seconds:g} s run", title_justify="left")
    for col in ("decisions", "per second", "p50 ms", "p99 ms", "max ms", "CPU % of one core", "peak RSS MiB"):
        table.add_column(col, justify="right")
    table.add_row(str(len(d)), f"{len(d) / (wall1 - wall0):.1f}", f"{np.median(d):.1f}", f"{np.quantile(d, 0.99):.1f}",
                  f"{d.max():.1f}", f"{100 * cpu / (wall1 - wall0):.0f}",
                  f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
    Console(width=140).print(table)
    Console().print(f"a decision per object per {interval} s would be {objects / interval:.1f} per second")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=500)
    parser.add_argument("--interval", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=95.0)
    args = parser.parse_args()
    asyncio.run(main(args.objects, args.interval, args.seconds))
