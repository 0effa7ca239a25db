"""The operator's Prometheus metrics, and one HTTP server for `/metrics` and `/healthz`.

Conventions (DESIGN.md, "Operator"): names start with `harmony_`, values are in base units (seconds,
replicas, demand units, probabilities), counters end in `_total`. Labels are `namespace` and `autoscaler`
(the HarmonyAutoscaler object) plus small fixed sets: `quantile` in QUANTILES, `direction` in DIRECTIONS,
`reason` in the sets below; a reason outside its set is exported as `other`, so an unexpected error text can
never explode the number of series.

The registry is a parameter (its own by default), so tests and several operators in one process do not
collide on the global one.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

from harmony.decision import decide as dec

log = logging.getLogger("harmony.operator.metrics")

QUANTILES = (0.1, 0.5, 0.9, 0.99)
DIRECTIONS = ("up", "down")
OTHER = "other"
DECISION_REASONS = (dec.STEADY, dec.SCALE_UP, dec.SCALE_DOWN, dec.LIMITED_STEP, dec.LIMITED_MAX, dec.LIMITED_MIN,
                    dec.HOLD_STABILISATION, dec.HOLD_STALE, OTHER)
TELEMETRY_ERROR_REASONS = ("prometheus-unavailable", "query-failed", "telemetry-missing", "telemetry-stale",
                           "forecast-failed", OTHER)
RECONCILE_FAILURE_REASONS = ("invalid-spec", "target-not-found", "conflict", "api-error", OTHER)
# 1 ms .. 10 s: a baseline decision takes milliseconds; a refit or a slow Prometheus takes seconds.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

OBJECT = ("namespace", "autoscaler")


def _quantile_label(q: float) -> str:
    return repr(float(q))  # 0.1 -> "0.1", 0.99 -> "0.99"


def _known(reason: str, allowed: tuple[str, ...]) -> str:
    return reason if reason in allowed else OTHER


class OperatorMetrics:
    """The `harmony_*` metrics of one operator process, in `registry` (a fresh one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.recommended = Gauge("harmony_recommended_replicas",
                                 "Risk-optimal replica count before step and stabilisation rules (for HPA/KEDA).",
                                 OBJECT, registry=r)
        self.desired = Gauge("harmony_desired_replicas", "Replica count decided for now.", OBJECT, registry=r)
        self.current = Gauge("harmony_current_replicas", "Replica count of the scale target after this decision.",
                             OBJECT, registry=r)
        self.forecast = Gauge("harmony_forecast_demand",
                              "Quantiles of forecast peak demand over the cold-start horizon (demand units).",
                              (*OBJECT, "quantile"), registry=r)
        self.observed = Gauge("harmony_observed_demand", "Last observed demand (demand units).", OBJECT, registry=r)
        self.breach = Gauge("harmony_breach_probability",
                            "Forecast probability that demand exceeds capacity at the desired count.", OBJECT,
                            registry=r)
        self.risk = Gauge("harmony_effective_risk", "Breach-probability limit in use (adapted to realised breaches).",
                          OBJECT, registry=r)
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
        self.autoscalers = Gauge("harmony_autoscalers", "HarmonyAutoscaler objects handled by this process.",
                                 registry=r)
        self._objects: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    # per-object metrics and the fixed label values each carries beyond (namespace, autoscaler)
    def _families(self) -> list[tuple[object, tuple[str, ...]]]:
        return [
            (self.recommended, ()), (self.desired, ()), (self.current, ()), (self.observed, ()), (self.breach, ()),
            (self.risk, ()), (self.capacity, ()), (self.duration, ()), (self.telemetry_age, ()),
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


class _Handler(BaseHTTPRequestHandler):
    metrics: OperatorMetrics
    health: Callable[[], bool]

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._reply(200, encoder(self.metrics.registry), content_type)
        elif path == "/healthz":
            try:
                healthy = bool(self.health())
            except Exception:  # a failing check is an unhealthy process, not a crashed endpoint
                log.exception("health check failed")
                healthy = False
            self._reply(200 if healthy else 503, b"ok\n" if healthy else b"unhealthy\n", "text/plain; charset=utf-8")
        else:
            self._reply(404, b"not found: try /metrics or /healthz\n", "text/plain; charset=utf-8")

    def _reply(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's signature)
        log.debug("%s " + format, self.address_string(), *args)


def serve(metrics: OperatorMetrics, port: int, addr: str = "127.0.0.1",
          health: Callable[[], bool] = lambda: True) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Serve `/metrics` (text exposition, OpenMetrics on request) and `/healthz` (200 "ok" when `health()`
    is true, else 503 "unhealthy") from a daemon thread. Port 0 picks a free port (`server.server_address`).
    Stop with `server.shutdown()`, then `server.server_close()` to release the socket."""
    handler = type("HarmonyMetricsHandler", (_Handler,), {"metrics": metrics, "health": staticmethod(health)})
    server = ThreadingHTTPServer((addr, port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="harmony-metrics",
                              daemon=True)
    thread.start()
    return server, thread
