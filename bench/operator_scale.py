"""Benchmark: one operator process handling N HarmonyAutoscalers at a 30 s interval (target: 500 objects).

The kopf operator runs against the kmock Kubernetes emulator with a scripted telemetry source standing in
for Prometheus (720-point histories, one demand indicator; the HTTP round trips to a real Prometheus are not
included). Each object uses the CRD's defaults but the forecaster: the ar:30 baseline refitted every decision
on 6 h of history (`--model ar`; the CRD's default, `harmony`, would train one model per object, which this
bench does not measure; `--model harmony` serves one shared checkpoint), 200 samples, 5-minute cold start,
`Scale` mode (so a decision that changes the count also writes the scale subresource and an Event).

`--emulator process` (the default) serves the emulator from a child process, as a real API server is a
process of its own: the operator's CPU and RSS are then the operator's alone, and the emulator's are
reported on their own row. `--emulator inline` runs it in the operator's event loop (one process, one GIL),
whose figures include the emulator's work. The emulator keeps no request log here (see
tests/operator_support.Emulator: kmock's log makes each request cost time proportional to all requests
served before it).

Prints, over the run: decisions, and decisions per second over the whole intervals after the first (500
objects at 30 s need 16.7/s); the duration of one reconcile step (scale read, telemetry, forecast, decision,
scale write and Event when the count changes, status write), whole run and steady state (steps that start
after the first interval, which holds the objects' first decisions, spread over it by the operator); the
lateness of each object's next decision (start-to-start gap minus the interval: the daemon keeps a fixed
cadence, so this is scheduling delay alone); CPU (percent of one core) and RSS per process; and the operator's
CPU per decision, split into the reconcile step's own thread and the rest (kopf, its watch stream, the event
loop).

    .venv/bin/python bench/operator_scale.py [--objects 500] [--interval 30] [--seconds 95] \
        [--emulator process|inline] [--workers 16] [--prometheus-latency-ms 0] \
        [--model ar|harmony] [--batch-window 0] [--torch-threads 1]

`--model harmony` puts every object on one HARMONY checkpoint, trained first in the bench (one epoch on
gentd26's demand taken as rows at the interval, for the 11-step decision horizon, lookback 120), so that with
`--batch-window 0.5` the operator batches their forecasts (harmony.operator.batching; the default, 0, as the
operator's: each alone). Quiet reruns of both: docs/benchmarks.md, "Operator scale".

Figures (2 cores, load average 0.4-0.5; two runs): `--objects 500 --seconds 95` keeps up at 16.7 decisions/s;
step p50 14 ms, p99 0.11-0.16 s (steady state p50 14 ms, p99 42-57 ms); lateness p50 1 ms, p99 4-5 ms; the
operator process 13-14% of one core (8.2-8.7 ms of CPU per decision, 5.7-5.9 ms of it in the reconcile step)
and 197 MiB RSS, the emulator 13-14% and 225 MiB. `--emulator inline`: 16.7/s, steady p99 42 ms, lateness
p99 12 ms, 26% of one core for both, 271 MiB. `--objects 1000`: 33.3/s, steady p50 19 ms, p99 0.29 s,
operator 25%, 240 MiB. Before the staggered start and the fixed cadence (same session): step p50 84 ms, p99
0.53 s, lateness p50 0.14 s, p99 1.46 s. Before the emulator lost its request log, the typed kubernetes API
and asyncio's 6-thread pool (in one process): 2.0/s, p50 3.1 s, p99 5.4 s, 99% of one core, 86-90% of it in
kmock filtering its request log.

HARMONY (`nice -n 5 ... --model harmony --objects 1000 --seconds 95`, 2026-12-02, 2 cores at load average
3.6-5.1 with other jobs running): not kept up, 10.1 decisions/s of 33.3; step p50 37 s, p99 51 s (steady
p50 42 s, p99 51 s), lateness p50 and p99 13.6 s; 96 batched calls for 1,324 forecasts (13.8 a call); the
operator 41% of one core (47 ms of CPU per decision, 18.6 ms in the step's threads), 801 MiB RSS, the
emulator 58%. `--batch-window 0` (each alone), same session: 10.1/s, 59.9 ms per decision (41.3 ms in the
step), step p50 1.6 s, steady p99 2.9 s, no object decided twice. Both starved of CPU (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harmony.operator.app import OperatorSettings  # noqa: E402
from harmony.operator.batching import BatchSettings  # noqa: E402
from harmony.operator.metrics import OperatorMetrics  # noqa: E402
from tests.operator_support import (  # noqa: E402
    ScriptedTelemetry,
    add_autoscaler,
    add_deployment,
    cluster,
    make_reconciler,
    operator,
)

COLD_START_S = 300
LOOKBACK_S = 3600


def populate(k8s, objects: int, interval: int, checkpoint: str | None = None) -> None:
    """`objects` autoscalers on ar:30, or all on the HARMONY model at `checkpoint`."""
    model = {"checkpoint": checkpoint} if checkpoint else {"baseline": "ar:30"}
    for i in range(objects):
        add_deployment(k8s, name=f"server-{i}", replicas=3)
        add_autoscaler(k8s, name=f"ha-{i}", intervalSeconds=interval,
                       scaleTargetRef={"apiVersion": "apps/v1", "kind": "Deployment", "name": f"server-{i}"},
                       sla={"maxBreachProbability": 0.01, "coldStartSeconds": COLD_START_S},
                       behavior={"scaleDownStabilizationSeconds": 300},
                       model=model, lookbackSeconds=LOOKBACK_S, historySeconds=21600)


def train_checkpoint(path: Path, interval: int) -> Path:
    """A HARMONY model for the scripted telemetry's one indicator ("demand", level 1, at `interval`), trained
    for one epoch on gentd26's demand (1-minute rows, taken as rows at `interval` and rescaled to the scripted
    level 5 +- 1) for the decision: its demand path over the cold start plus one interval, from the objects'
    lookback. Its weights do not change its speed."""
    import pandas as pd

    from harmony.decision.demand import demand_definition
    from harmony.forecasting.adapter import fit_scaled
    from harmony.telemetry.datasets import load_dataset
    from harmony.telemetry.frame import Indicator, TelemetryFrame

    frame, _ = load_dataset("gentd26").fill_gaps(5)
    names = demand_definition("gentd26", frame=frame).indicators
    demand = sum(frame.values[:, 0, frame.indicator_position(n)] for n in names)
    demand = 5.0 + (demand - np.nanmean(demand)) / np.nanstd(demand)
    index = pd.date_range("2026-01-05", periods=len(demand), freq=f"{interval}s")
    ours = TelemetryFrame(index, demand[:, None, None], ["0"], [Indicator("demand", 1, "1")], interval=f"{interval}s")
    lookback, horizon = LOOKBACK_S // interval, COLD_START_S // interval + 1
    spec = f"harmony:lookback={lookback}+epochs=1+patience=1"
    return fit_scaled(spec, ours, horizon, demand=("demand",)).save(path)


def cpu_s(usage) -> float:
    return usage.ru_utime + usage.ru_stime


def rss_mib() -> float:
    """Resident set size now (the peak is ru_maxrss)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def serve_emulator(objects: int, interval: int, checkpoint: str | None, conn) -> None:
    """Child process: serve the emulator; send its URL; on 'start' and 'stop' answer its CPU seconds and RSS."""

    async def main() -> None:
        async with cluster(log_requests=False) as (k8s, url):
            populate(k8s, objects, interval, checkpoint)
            conn.send(url)
            while (message := await asyncio.to_thread(conn.recv)) != "exit":
                usage = resource.getrusage(resource.RUSAGE_SELF)
                conn.send((message, cpu_s(usage), rss_mib(), usage.ru_maxrss / 1024))

    asyncio.run(main())


class Recorder:
    """Wraps a Reconciler's `begin` and `finish` (a step's two parts in the pool; `reconcile` runs both):
    (object, start, duration, CPU seconds of its threads) of every step, from the start of `begin` to the end
    of `finish`. A batched forecast runs in a pool thread of its own, so it is not in a step's CPU."""

    def __init__(self, reconciler) -> None:
        self.steps: list = []
        begin, finish = reconciler.begin, reconciler.finish

        def timed_begin(namespace, name, *args, **kwargs):
            started, cpu0 = time.monotonic(), time.thread_time()
            begun = begin(namespace, name, *args, **kwargs)
            begun.bench = (started, time.thread_time() - cpu0)
            return begun

        def timed_finish(begun, forecast=None):
            cpu0 = time.thread_time()
            try:
                return finish(begun, forecast)
            finally:
                started, cpu = begun.bench
                self.steps.append((begun.name, started, time.monotonic() - started, cpu + time.thread_time() - cpu0))

        reconciler.begin, reconciler.finish = timed_begin, timed_finish


class SlowTelemetry(ScriptedTelemetry):
    """Scripted telemetry that answers after `latency_s`, as a Prometheus range query would (the thread waits,
    holding no GIL)."""

    def __init__(self, latency_s: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.latency_s = latency_s

    def __call__(self, spec, now):
        time.sleep(self.latency_s)
        return super().__call__(spec, now)


async def measure(url: str, seconds: float, settings: OperatorSettings, latency_s: float,
                  emulator_usage) -> tuple[list, dict, float, OperatorMetrics]:
    """Run the operator for `seconds`: its steps, the CPU / RSS figures per process, when measuring began, and
    the operator's metrics."""
    rec = make_reconciler(url, SlowTelemetry(latency_s, level=5.0, noise=1.0))
    recorder = Recorder(rec)
    steps, usage, wall0 = [], {}, time.monotonic()
    try:
        async with operator(rec, url, settings):
            own0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
            emu0 = await emulator_usage("start")
            await asyncio.sleep(seconds)
            own1, wall1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
            emu1 = await emulator_usage("stop")
            wall = wall1 - wall0
            usage["operator"] = (100 * (cpu_s(own1) - cpu_s(own0)) / wall, rss_mib(), own1.ru_maxrss / 1024)
            if emu1 is not None:
                usage["emulator"] = (100 * (emu1[1] - emu0[1]) / wall, emu1[2], emu1[3])
            usage["wall"] = wall
            steps = [s for s in recorder.steps if s[1] >= wall0]
    except (TimeoutError, RuntimeError) as exc:  # stopping 500 daemons at once; figures are in hand
        Console().print(f"(operator shutdown: {type(exc).__name__})")
    return steps, usage, wall0, rec.metrics


async def main(objects: int, interval: int, seconds: float, emulator: str, settings: OperatorSettings,
               latency_s: float, checkpoint: str | None) -> None:
    if emulator == "inline":
        async with cluster(log_requests=False) as (k8s, url):
            populate(k8s, objects, interval, checkpoint)

            async def no_child(_message):
                return None

            steps, usage, t0, metrics = await measure(url, seconds, settings, latency_s, no_child)
    else:
        ctx = mp.get_context("spawn")
        ours, theirs = ctx.Pipe()
        child = ctx.Process(target=serve_emulator, args=(objects, interval, checkpoint, theirs), daemon=True)
        child.start()
        try:
            url = await asyncio.to_thread(ours.recv)

            async def child_usage(message):
                ours.send(message)
                return await asyncio.to_thread(ours.recv)

            steps, usage, t0, metrics = await measure(url, seconds, settings, latency_s, child_usage)
        finally:
            ours.send("exit")
            await asyncio.to_thread(child.join, 30)
    report(steps, usage, t0, objects, interval, seconds, emulator, settings.workers, latency_s)
    if checkpoint:
        calls = metrics.registry.get_sample_value("harmony_forecast_batches_total") or 0
        batched = metrics.registry.get_sample_value("harmony_forecast_batch_workloads_total") or 0
        Console().print(f"HARMONY: {int(calls)} batched forecast calls for {int(batched)} forecasts "
                        f"({batched / max(calls, 1):.1f} objects per call; window {settings.batching.window_s:g} s)")


def lateness_ms(steps: list, interval: int) -> np.ndarray:
    starts = defaultdict(list)
    for name, start, *_ in steps:
        starts[name].append(start)
    gaps = [np.diff(sorted(s)) for s in starts.values() if len(s) > 1]
    return (np.concatenate(gaps) - interval) * 1000 if gaps else np.array([np.nan])


def report(steps: list, usage: dict, t0: float, objects: int, interval: int, seconds: float, emulator: str,
           workers: int, latency_s: float) -> None:
    console = Console(width=160)
    d = np.array([s[2] for s in steps]) * 1000
    steady = np.array([s[2] for s in steps if s[1] >= t0 + interval]) * 1000
    steady = steady if steady.size else np.array([np.nan])
    late = lateness_ms(steps, interval)
    # decisions per second over the whole intervals after the first: each object is due once per interval,
    # so an operator that keeps up makes N / interval (a partial interval would over- or under-count; the
    # first holds the objects' staggered first decisions)
    cycles = int((usage["wall"] - interval) // interval)
    begin, span = (t0 + interval, cycles * interval) if cycles else (t0, usage["wall"])
    rate = sum(1 for s in steps if begin <= s[1] < begin + span) / span
    where = "child process" if emulator == "process" else "same process"
    table = Table(title=f"{objects} HarmonyAutoscalers, interval {interval} s, {seconds:g} s run, {workers} workers, "
                        f"telemetry latency {1000 * latency_s:g} ms, emulator in the {where}", title_justify="left")
    for col in ("decisions", f"per second (need {objects / interval:.1f})", "step p50 ms", "step p99 ms",
                "steady p50 ms", "steady p99 ms", "max ms", "lateness p50 ms", "lateness p99 ms"):
        table.add_column(col, justify="right")
    table.add_row(str(len(d)), f"{rate:.1f}", f"{np.median(d):.1f}", f"{np.quantile(d, 0.99):.1f}",
                  f"{np.median(steady):.1f}", f"{np.quantile(steady, 0.99):.1f}", f"{d.max():.1f}",
                  f"{np.median(late):.0f}", f"{np.quantile(late, 0.99):.0f}")
    console.print(table)
    cpu = Table(title="CPU and memory", title_justify="left")
    for col in ("process", "CPU % of one core", "RSS MiB at end", "peak RSS MiB"):
        cpu.add_column(col, justify="right")
    for process, (percent, rss, peak) in ((k, v) for k, v in usage.items() if k != "wall"):
        label = process if emulator == "process" else "operator + emulator"
        cpu.add_row(label, f"{percent:.0f}", f"{rss:.0f}", f"{peak:.0f}")
    console.print(cpu)
    if emulator == "process":
        step_cpu = sum(s[3] for s in steps)
        percent = usage["operator"][0]
        n = max(len(steps), 1)
        console.print(f"operator CPU per decision {10 * percent * usage['wall'] / n:.1f} ms, of which the reconcile "
                      f"step's own thread {1000 * step_cpu / n:.1f} ms (Kubernetes calls, forecast, decision, "
                      "metrics); the rest is kopf, its watch stream and the event loop")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=500)
    parser.add_argument("--interval", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=95.0)
    parser.add_argument("--emulator", choices=("process", "inline"), default="process")
    parser.add_argument("--workers", type=int, default=OperatorSettings.workers, help="reconcile steps in flight")
    parser.add_argument("--prometheus-latency-ms", type=float, default=0.0,
                        help="delay of each scripted telemetry answer, standing in for a range query's round trip")
    parser.add_argument("--model", choices=("ar", "harmony"), default="ar",
                        help="every object on ar:30, or all on one HARMONY checkpoint trained here first")
    parser.add_argument("--batch-window", type=float, default=BatchSettings.window_s,
                        help="the operator's --forecast-batch-window (0: each object forecasts alone)")
    parser.add_argument("--torch-threads", type=int, default=1, help="the operator's --torch-threads")
    args = parser.parse_args()
    checkpoint = None
    if args.model == "harmony":
        import tempfile

        import torch

        torch.set_num_threads(args.torch_threads)
        started = time.perf_counter()
        checkpoint = str(train_checkpoint(Path(tempfile.mkdtemp()) / "harmony.ckpt", args.interval))
        Console().print(f"HARMONY checkpoint trained in {time.perf_counter() - started:.0f} s: {checkpoint}")
    settings = OperatorSettings(workers=args.workers, batching=BatchSettings(window_s=args.batch_window))
    asyncio.run(main(args.objects, args.interval, args.seconds, args.emulator, settings,
                     args.prometheus_latency_ms / 1000, checkpoint))
