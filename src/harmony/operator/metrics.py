"""The operator's Prometheus metrics, and their HTTP server (prometheus_client's own).

Conventions (DESIGN.md, "Operator"; `promtool check metrics` passes): names start with `harmony_`, values
are in base units (seconds, replicas, demand units), counters end in `_total`, values between 0 and 1
(probabilities) in `_ratio`. Labels are `autoscaler_namespace` and `autoscaler` (the HarmonyAutoscaler
object), named so that no target label a scrape attaches (`namespace`, `pod`, `service`, `job`, `instance`,
`container`, `endpoint`) collides with them: a ServiceMonitor with `honorLabels: false` (the safe default,
which lets no target overwrite its own labels) keeps both as they are, where a `namespace` label would come
out as `exported_namespace` and every dashboard, alert and KEDA query selecting on it would go empty. Beyond
them, small fixed sets: `quantile_level` in QUANTILES (not `quantile`, which Prometheus reserves for
summaries), `direction` in DIRECTIONS, `reason` in the sets below; a reason outside its set is exported as
`other`, so an unexpected error text can never explode the number of series.

Beside them the registry holds the process collectors (`process_*`: CPU, memory, open files, start time;
`python_info`; `python_gc_*`) and `harmony_build_info{version, python}` = 1, so a dashboard can tell which
release runs and whether it leaks.

The registry is a parameter (its own by default), so tests and several operators in one process do not
collide on the global one. The exporter's default port, METRICS_PORT, is in `harmony.operator.ports` (plain
data: the CLI's help shows it without importing prometheus_client).
"""

from __future__ import annotations

import math
import platform
import threading
from collections.abc import Mapping
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

from harmony import __version__
from harmony.decision import decide as dec

QUANTILES = (0.1, 0.5, 0.9, 0.99)
DIRECTIONS = ("up", "down")
OTHER = "other"
#: decision reasons of a count the operator set instead of the step's: paused, or the spec's fallback after
#: failing steps (status lastDecision and harmony_decisions_total)
PAUSED_REASON, FALLBACK_REASON = "paused", "fallback"
DECISION_REASONS = (dec.STEADY, dec.SCALE_UP, dec.SCALE_DOWN, dec.LIMITED_STEP, dec.LIMITED_MAX, dec.LIMITED_MIN,
                    dec.HOLD_STABILISATION, dec.HOLD_STALE, PAUSED_REASON, FALLBACK_REASON, OTHER)
# why a decision had no usable forecast: Prometheus' own failures (harmony.telemetry.prometheus.ERROR_REASONS:
# unreachable, the query refused, the credentials refused, an answer that is not its API, anything else), then
# the telemetry's (missing, stale) and the forecaster's
TELEMETRY_ERROR_REASONS = ("prometheus-unavailable", "query-rejected", "auth-failed", "bad-response", "query-failed",
                           "telemetry-missing", "telemetry-stale", "forecast-failed", OTHER)
# why a reconcile step failed or could not act: the spec, the target, a 409 that kept losing, the API server;
# an Event that could not be posted (the step still scaled and wrote status); another writer changing the
# target's replicas (harmony backs off instead of fighting it)
RECONCILE_FAILURE_REASONS = ("invalid-spec", "target-not-found", "conflict", "api-error", "event-failed",
                             "conflicting-writer", OTHER)
# 1 ms .. 10 s: a baseline decision takes milliseconds; a refit or a slow Prometheus takes seconds.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

OBJECT = ("autoscaler_namespace", "autoscaler")


def _quantile_label(q: float) -> str:
    return repr(float(q))  # 0.1 -> "0.1", 0.99 -> "0.99"


def _known(reason: str, allowed: tuple[str, ...]) -> str:
    return reason if reason in allowed else OTHER


class OperatorMetrics:
    """The `harmony_*` metrics of one operator process, in `registry` (a fresh one by default), and with
    `process_collectors` the process, platform and GC collectors (leave them out on a registry that has
    them already, such as prometheus_client's global one)."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process_collectors: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        if process_collectors:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)
        self.build_info = Gauge("harmony_build_info", "The running harmony release (value 1).", ("version", "python"),
                                registry=r)
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.recommended = Gauge("harmony_recommended_replicas",
                                 "Risk-optimal replica count before step and stabilisation rules (for HPA/KEDA).",
                                 OBJECT, registry=r)
        self.desired = Gauge("harmony_desired_replicas", "Replica count decided for now.", OBJECT, registry=r)
        self.current = Gauge("harmony_current_replicas", "Replica count of the scale target after this decision.",
                             OBJECT, registry=r)
        self.forecast = Gauge("harmony_forecast_demand",
                              "Quantiles of forecast peak demand over the cold-start horizon (demand units), by "
                              "quantile level.", (*OBJECT, "quantile_level"), registry=r)
        self.observed = Gauge("harmony_observed_demand", "Last observed demand (demand units).", OBJECT, registry=r)
        self.breach = Gauge("harmony_breach_probability_ratio",
                            "Forecast probability that demand exceeds capacity at the desired count.", OBJECT,
                            registry=r)
        self.risk = Gauge("harmony_effective_risk_ratio",
                          "Breach-probability limit in use (adapted to realised breaches).", OBJECT, registry=r)
        self.capacity = Gauge("harmony_capacity_per_replica",
                              "Posterior mean of the demand one ready replica serves (demand units).", OBJECT,
                              registry=r)
        self.duration = Histogram("harmony_decision_duration_seconds", "Time taken by one reconcile decision.",
                                  OBJECT, buckets=DURATION_BUCKETS, registry=r)
        self.decisions = Counter("harmony_decisions_total", "Decisions, by reason.", (*OBJECT, "reason"), registry=r)
        self.scale_events = Counter("harmony_scale_events_total", "Writes of the target's replica count.",
                                    (*OBJECT, "direction"), registry=r)
        self.telemetry_errors = Counter("harmony_telemetry_errors_total",
                                        "Decisions without a usable forecast, by reason.", (*OBJECT, "reason"),
                                        registry=r)
        self.reconcile_failures = Counter("harmony_reconcile_failures_total", "Reconciles that failed, by reason.",
                                          (*OBJECT, "reason"), registry=r)
        self.telemetry_age = Gauge("harmony_telemetry_age_seconds", "Age of the newest telemetry sample used.",
                                   OBJECT, registry=r)
        self.fallback = Gauge("harmony_forecaster_fallback",
                              "1 while the baseline stands in for the model (too little history to train it yet), "
                              "else 0.", OBJECT, registry=r)
        self.fine_tunes = Gauge("harmony_forecaster_fine_tunes",
                                "Fine-tunes of the forecasting model since it was trained or loaded.", OBJECT,
                                registry=r)
        self.autoscalers = Gauge("harmony_autoscalers", "HarmonyAutoscaler objects handled by this process.",
                                 registry=r)
        # their ratio is the mean batch size: counters, not a histogram of a count (histograms here are durations)
        self.forecast_batches = Counter("harmony_forecast_batches",
                                        "Forecast calls of a model shared by workloads, each for those due together.",
                                        registry=r)
        self.forecast_batch_workloads = Counter("harmony_forecast_batch_workloads",
                                                "Workloads forecast in those calls.", registry=r)
        self._objects: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    # per-object metrics and the fixed label values each carries beyond OBJECT
    def _families(self) -> list[tuple[object, tuple[str, ...]]]:
        return [
            (self.recommended, ()), (self.desired, ()), (self.current, ()), (self.observed, ()), (self.breach, ()),
            (self.risk, ()), (self.capacity, ()), (self.duration, ()), (self.telemetry_age, ()),
            (self.fallback, ()), (self.fine_tunes, ()),
            *((self.forecast, (_quantile_label(q),)) for q in QUANTILES),
            *((self.decisions, (r,)) for r in DECISION_REASONS),
            *((self.scale_events, (d,)) for d in DIRECTIONS),
            *((self.telemetry_errors, (r,)) for r in TELEMETRY_ERROR_REASONS),
            *((self.reconcile_failures, (r,)) for r in RECONCILE_FAILURE_REASONS),
        ]

    def _touch(self, namespace: str, autoscaler: str) -> None:
        """Create an object's counters at 0 on first sight, so `rate()` and `increase()` see the first event."""
        with self._lock:
            if (namespace, autoscaler) in self._objects:
                return
            self._objects.add((namespace, autoscaler))
        for counter, values in (*((self.decisions, (r,)) for r in DECISION_REASONS),
                                *((self.scale_events, (d,)) for d in DIRECTIONS),
                                *((self.telemetry_errors, (r,)) for r in TELEMETRY_ERROR_REASONS),
                                *((self.reconcile_failures, (r,)) for r in RECONCILE_FAILURE_REASONS)):
            counter.labels(namespace, autoscaler, *values)

    def record_decision(self, namespace: str, autoscaler: str, *, recommended: int, desired: int, current: int,
                        breach_probability: float, effective_risk: float, capacity: float, observed_demand: float,
                        forecast_quantiles: Mapping[float, float], duration_s: float, reason: str,
                        telemetry_age_s: float | None = None) -> None:
        """One decision. NaN (breach probability while holding on stale telemetry, missing demand) is exported
        as NaN; forecast quantiles absent from `forecast_quantiles` (no forecast) become NaN, so a stale
        forecast never lingers on a dashboard. Quantiles outside QUANTILES are not exported."""
        self._touch(namespace, autoscaler)
        key = (namespace, autoscaler)
        self.recommended.labels(*key).set(recommended)
        self.desired.labels(*key).set(desired)
        self.current.labels(*key).set(current)
        self.breach.labels(*key).set(breach_probability)
        self.risk.labels(*key).set(effective_risk)
        self.capacity.labels(*key).set(capacity)
        self.observed.labels(*key).set(observed_demand)
        given = {_quantile_label(q): v for q, v in forecast_quantiles.items()}
        for q in QUANTILES:
            self.forecast.labels(*key, _quantile_label(q)).set(given.get(_quantile_label(q), math.nan))
        self.duration.labels(*key).observe(duration_s)
        self.decisions.labels(*key, _known(reason, DECISION_REASONS)).inc()
        if telemetry_age_s is not None:
            self.telemetry_age.labels(*key).set(telemetry_age_s)

    def forecaster(self, namespace: str, autoscaler: str, *, fallback: bool, fine_tunes: int) -> None:
        """What forecasts: whether the fallback baseline stands in for the model, and its fine-tunes."""
        self._touch(namespace, autoscaler)
        self.fallback.labels(namespace, autoscaler).set(1.0 if fallback else 0.0)
        self.fine_tunes.labels(namespace, autoscaler).set(fine_tunes)

    def set_telemetry_age(self, namespace: str, autoscaler: str, age_s: float) -> None:
        """Seconds between now and the newest telemetry sample (grows while Prometheus is unreachable)."""
        self._touch(namespace, autoscaler)
        self.telemetry_age.labels(namespace, autoscaler).set(age_s)

    def scale_event(self, namespace: str, autoscaler: str, direction: str) -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        self._touch(namespace, autoscaler)
        self.scale_events.labels(namespace, autoscaler, direction).inc()

    def telemetry_error(self, namespace: str, autoscaler: str, reason: str) -> None:
        self._touch(namespace, autoscaler)
        self.telemetry_errors.labels(namespace, autoscaler, _known(reason, TELEMETRY_ERROR_REASONS)).inc()

    def reconcile_failure(self, namespace: str, autoscaler: str, reason: str) -> None:
        self._touch(namespace, autoscaler)
        self.reconcile_failures.labels(namespace, autoscaler, _known(reason, RECONCILE_FAILURE_REASONS)).inc()

    def forget(self, namespace: str, autoscaler: str) -> None:
        """Drop every series of a deleted object (a gone object must not keep reporting its last values)."""
        with self._lock:
            self._objects.discard((namespace, autoscaler))
        for metric, values in self._families():
            metric.remove(namespace, autoscaler, *values)

    def set_autoscalers(self, n: int) -> None:
        self.autoscalers.set(n)

    def forecast_batched(self, workloads: int) -> None:
        """One forecast call of a shared model, for `workloads` objects (harmony.operator.batching)."""
        self.forecast_batches.inc()
        self.forecast_batch_workloads.inc(workloads)


def serve(metrics: OperatorMetrics, port: int, addr: str = "127.0.0.1") -> tuple[WSGIServer, threading.Thread]:
    """Serve `metrics.registry` with prometheus_client's own server (text exposition; OpenMetrics on request;
    `?name[]=` filters) from a daemon thread. Port 0 picks a free port (`server.server_address`). Stop with
    `server.shutdown()`, then `server.server_close()` to release the socket. Health is not served here: it
    is kopf's liveness endpoint (harmony.operator.health)."""
    return start_http_server(port, addr, registry=metrics.registry)
