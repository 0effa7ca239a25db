"""`harmony operator run`: the Kubernetes operator (kopf) with its Prometheus source, its metrics exporter
(`--metrics-port`, /metrics) and kopf's liveness endpoint (`--liveness-port`, /healthz).

Prometheus TLS is checked at start, not at the first step: a `--ca-file` that is not a readable file, or
`--ca-file` together with `--insecure-skip-verify` (which would silently win), is refused with one line
(exit 2). A bearer token sent to an http:// URL is allowed (an in-cluster Prometheus over plain http is a
deliberate, common setup) but logged as a warning once at start (`PrometheusClient`)."""

from __future__ import annotations

import datetime as dt
import logging
import random
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from harmony.cli.common import CommandGroup, user_errors
from harmony.errors import HarmonyInputError
from harmony.operator.health import (  # the flags' defaults; kopf, kubernetes and the loop load in the command
    LIVENESS_ADDR,
    LIVENESS_PATH,
    LIVENESS_PORT,
    Health,
    HealthSettings,
    liveness_endpoint,
)
from harmony.operator.ports import METRICS_PORT

if TYPE_CHECKING:  # harmony.telemetry.prometheus brings pandas and requests: imported where it is used
    import kopf
    from kubernetes import client

    from harmony.operator.app import OperatorSettings
    from harmony.operator.spec import AutoscalerSpec
    from harmony.telemetry.prometheus import PrometheusAccess, PrometheusClient

operator_app = typer.Typer(help="The Kubernetes operator.", no_args_is_help=True, cls=CommandGroup)
log = logging.getLogger("harmony.operator")


def prometheus_tls(ca_file: Path | None, insecure_skip_verify: bool) -> bool | str:
    """`PrometheusConfig.verify_tls` from --ca-file and --insecure-skip-verify (`tls_verify`)."""
    from harmony.telemetry.prometheus import tls_verify

    return tls_verify(ca_file, insecure_skip_verify)


def kube_configuration(kubeconfig: Path | None) -> client.Configuration:
    """In-cluster service account, else a kubeconfig file (--kubeconfig, else the default locations)."""
    from kubernetes import client, config

    cfg = client.Configuration()
    try:
        if kubeconfig is None:
            try:
                config.load_incluster_config(client_configuration=cfg)
                return cfg
            except config.ConfigException:
                pass
        config.load_kube_config(config_file=str(kubeconfig) if kubeconfig else None, client_configuration=cfg)
    except (config.ConfigException, FileNotFoundError, OSError) as exc:
        raise HarmonyInputError(f"no usable Kubernetes credentials (--kubeconfig {kubeconfig}): {exc}") from None
    return cfg


def kopf_login(cfg: client.Configuration):
    """A kopf login handler that uses exactly the credentials the kubernetes client uses."""
    import kopf

    def login(**_) -> kopf.ConnectionInfo:
        # the client keeps a token under "BearerToken" (kubeconfig and in-cluster loaders; older releases used
        # "authorization"), with its "Bearer " prefix; this also runs the loaders' refresh hook for expiring tokens
        token = cfg.get_api_key_with_prefix("BearerToken", alias="authorization") or ""
        return kopf.ConnectionInfo(
            server=cfg.host, ca_path=cfg.ssl_ca_cert, insecure=not cfg.verify_ssl,
            username=cfg.username or None, password=cfg.password or None,
            token=token.removeprefix("Bearer ").strip() or None,
            certificate_path=cfg.cert_file, private_key_path=cfg.key_file,
        )

    return login


def operator_settings(namespace: list[str] | None, selector: list[str] | None, peering: str | None,
                      metrics_addr: str, metrics_port: int, workers: int,
                      priority: int | None = None, liveness: str | None = None,
                      health: HealthSettings | None = None, keda_scaler_port: int = 0,
                      installation: str = "", batch_window_s: float = 0.0, batch_max: int = 1024) -> OperatorSettings:
    """The operator's settings from the command line's options (--selector items are KEY=VALUE; liveness:
    kopf's liveness endpoint URL, None for none).

    priority None: a random peering priority for this start. kopf pauses every peer that shares the highest
    priority (it cannot tell which should work), so replicas of one shard started with the same default
    would all stand by; random priorities elect one and leave the others ready to take over."""
    from harmony.operator.app import OperatorSettings
    from harmony.operator.batching import BatchSettings

    if priority is None:
        priority = random.SystemRandom().randint(1, 2**31 - 1)
    labels = {}
    for item in selector or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HarmonyInputError(f"--selector {item!r} is not KEY=VALUE")
        labels[key] = value
    return OperatorSettings(namespaces=tuple(namespace or ()), selector=labels, peering=peering, priority=priority,
                            metrics_addr=metrics_addr, metrics_port=metrics_port, liveness_endpoint=liveness,
                            health=health if health is not None else HealthSettings(), workers=workers,
                            keda_scaler_port=keda_scaler_port, installation=installation,
                            batching=BatchSettings(batch_window_s, batch_max))


def limit_torch_threads(threads: int) -> None:
    """Run torch's forecasts (a served HARMONY model's batched `predict`, a fine-tune) on `threads` threads
    (0: torch's default, one per core). Without importing torch when nothing has yet (an operator serving
    baselines only never loads it): then through OMP_NUM_THREADS, which torch reads when it loads.

    Why the operator's default is 1: torch's OpenMP threads wait for each other at every operation by
    spinning, so on cores shared with the reconcile pool and other processes they spin while descheduled.
    Forecasting 1,000 windows x 200 samples on 2 cores at load average 5 took 2.4 s on one thread and 7.2 s
    (2 cores' worth of CPU) on two (bench/forecast_decide_batch.py --threads)."""
    import os
    import sys

    if threads <= 0:
        return
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    else:
        os.environ["OMP_NUM_THREADS"] = str(threads)


def telemetry_source(prometheus: PrometheusClient):
    """Range queries for a spec's indicators over its history window, ending now; with `access` (the
    spec.prometheus of the autoscaler: its URL, its Secret's credentials), through a client of its own."""
    from harmony.telemetry.prometheus import ClientPool, fetch_telemetry, stale_after_s

    pool = ClientPool(prometheus)

    def fetch(spec: AutoscalerSpec, now: dt.datetime, access: PrometheusAccess | None = None):
        steps = max(int(spec.history_s // spec.interval_s), 2)
        client = prometheus if access is None else pool.client(spec.prometheus and spec.prometheus.url, access)
        # in the spec's order (a trained model's order, checked when the spec is parsed); the demand
        # indicator's freshness decides staleness
        return fetch_telemetry(client, [(i.name, i.query, i.level) for i in spec.indicators], end=now,
                               steps=steps, step_s=spec.interval_s, stale_after_s=stale_after_s(spec.interval_s),
                               demand=spec.demand_indicator.name)

    return fetch


@operator_app.command("run")
@user_errors
def operator_run(
    namespace: Annotated[list[str] | None, typer.Option(
        help="serve only these namespaces (repeatable); a glob such as 'team-*' also serves matching "
             "namespaces created later (it lists and watches Namespaces cluster-wide, exact names do not)")] = None,
    selector: Annotated[list[str] | None, typer.Option(help="shard by label KEY=VALUE (repeatable)")] = None,
    peering: Annotated[str | None, typer.Option(help="kopf peering name shared by replicas of a shard")] = None,
    installation: Annotated[str, typer.Option(
        help="this installation's name (the chart's release): its finalizer is harmony.dev/NAME whatever shard "
             "it serves, so a shard change orphans none (empty: one per shard)")] = "",
    priority: Annotated[int | None, typer.Option(
        help="peering priority: the highest live replica works (default: random per start, so none tie)")] = None,
    kubeconfig: Annotated[Path | None, typer.Option(help="kubeconfig file (default: in-cluster, then ~/.kube)")] = None,
    prometheus_url: Annotated[str, typer.Option(help="Prometheus HTTP API base URL")] = "http://prometheus:9090",
    bearer_token_file: Annotated[Path | None, typer.Option(
        help="bearer token for Prometheus (sent to an http:// URL too, with a warning at start: prefer https)")
    ] = None,
    ca_file: Annotated[Path | None, typer.Option(
        help="CA bundle to verify Prometheus TLS (must exist at start)")] = None,
    insecure_skip_verify: Annotated[bool, typer.Option(
        help="do not verify Prometheus TLS (not with --ca-file)")] = False,
    metrics_addr: Annotated[str, typer.Option(help="address of the Prometheus exporter (/metrics)")] = "0.0.0.0",
    metrics_port: Annotated[int, typer.Option(help="port of the Prometheus exporter (/metrics)")] = METRICS_PORT,
    liveness_addr: Annotated[str, typer.Option(
        help=f"address of kopf's liveness endpoint (GET {LIVENESS_PATH}: 200 and a JSON report of the "
             "reconcile loop and Prometheus while steps progress, 500 when the loop is wedged)")] = LIVENESS_ADDR,
    liveness_port: Annotated[int, typer.Option(
        min=1, max=65535, help=f"port of the liveness endpoint ({LIVENESS_PATH})")] = LIVENESS_PORT,
    stall_intervals: Annotated[float, typer.Option(
        min=1.0, help="liveness fails once HarmonyAutoscalers are served and no reconcile step has finished for "
                      "this many times their largest intervalSeconds (and at least --stall-min-seconds)")
    ] = HealthSettings.stall_intervals,
    stall_min_seconds: Annotated[float, typer.Option(
        min=1.0, help="the least time without a finished step that fails liveness (seconds)")
    ] = HealthSettings.stall_min_s,
    samples: Annotated[int, typer.Option(help="forecast samples per decision")] = 200,
    workers: Annotated[int, typer.Option(help="reconcile steps in flight at once (threads; steps wait on I/O)")] = 16,
    forecast_batch_window: Annotated[float, typer.Option(
        min=0.0, help="seconds the forecast of an object whose spec.model.checkpoint others share waits for theirs, "
                      "to make them in one call (0: each object forecasts alone)")] = 0.0,
    forecast_batch_max: Annotated[int, typer.Option(
        min=1, help="the most objects one such call forecasts")] = 1024,
    torch_threads: Annotated[int, typer.Option(
        min=0, help="threads of a HARMONY model's forecasts and fine-tunes (0: one per core; on cores the "
                    "reconcile pool and other processes share, one is faster)")] = 1,
    training_workers: Annotated[int, typer.Option(
        min=0, help="HARMONY models (spec.model.forecaster: harmony) training at once, in threads of their own, "
                    "while ar:30 stands in (0: a training runs in its object's reconcile step)")] = 1,
    keda_scaler_port: Annotated[int, typer.Option(
        min=0, max=65535, help="serve KEDA's external scaler (gRPC) on this port from the current decisions, for "
                               "ScaledObjects with `type: external` triggers (0: off)")] = 0,
    verbose: Annotated[bool, typer.Option(help="debug logging")] = False,
) -> None:
    """Reconcile HarmonyAutoscalers: forecast from Prometheus, decide, scale (or recommend), report."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from kubernetes import client

    from harmony.operator.app import run
    from harmony.operator.kube import KubeClient
    from harmony.operator.metrics import OperatorMetrics, serve
    from harmony.operator.reconcile import Reconciler, ReconcileSettings
    from harmony.telemetry.prometheus import PrometheusClient, PrometheusConfig, redact_url

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:  # a line or three per liveness/readiness probe otherwise; a failing probe still logs an error
        for quiet in ("aiohttp.access", "kopf.activities.probe"):
            logging.getLogger(quiet).setLevel(logging.WARNING)
    if keda_scaler_port and keda_scaler_port in (metrics_port, liveness_port):
        raise HarmonyInputError(f"--keda-scaler-port {keda_scaler_port}: already the metrics or liveness port")
    limit_torch_threads(torch_threads)
    health_settings = HealthSettings(stall_intervals=stall_intervals, stall_min_s=stall_min_seconds)
    settings = operator_settings(namespace, selector, peering, metrics_addr, metrics_port, workers, priority,
                                 liveness=liveness_endpoint(liveness_addr, liveness_port), health=health_settings,
                                 keda_scaler_port=keda_scaler_port, installation=installation,
                                 batch_window_s=forecast_batch_window, batch_max=forecast_batch_max)
    if bearer_token_file is not None and not bearer_token_file.is_file():
        raise HarmonyInputError(f"{bearer_token_file}: no such file (--bearer-token-file)")
    verify = prometheus_tls(ca_file, insecure_skip_verify)
    prom = PrometheusClient(PrometheusConfig(url=prometheus_url,
                                             bearer_token_file=str(bearer_token_file) if bearer_token_file else None,
                                             verify_tls=verify))
    log.info("telemetry from Prometheus at %s", redact_url(prometheus_url))
    cfg = kube_configuration(kubeconfig)
    metrics = OperatorMetrics()
    health = Health(health_settings)
    trainer = ThreadPoolExecutor(training_workers, thread_name_prefix="harmony-train") if training_workers else None
    reconciler = Reconciler(KubeClient(client.ApiClient(cfg)), health.watch_telemetry(telemetry_source(prom)),
                            metrics, ReconcileSettings(n_samples=samples), trainer=trainer)
    server, _ = serve(metrics, metrics_port, metrics_addr)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run(reconciler, settings, login=kopf_login(cfg), stop_flag=stop, health=health)

    try:
        asyncio.run(main())
    finally:
        server.shutdown()
        server.server_close()
        if trainer is not None:  # a training under way is not waited for: its result would be thrown away
            trainer.shutdown(wait=False, cancel_futures=True)
