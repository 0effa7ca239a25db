"""The operator's metrics, scraped from the real HTTP server (prometheus_client's) over loopback and parsed as
Prometheus would."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from harmony import __version__
from harmony.operator.metrics import (
    DECISION_REASONS,
    DIRECTIONS,
    QUANTILES,
    RECONCILE_FAILURE_REASONS,
    TELEMETRY_ERROR_REASONS,
    OperatorMetrics,
    serve,
)
from harmony.operator.ports import METRICS_PORT
from harmony.operator.replay_exporter import ReplayExporter
from harmony.telemetry.datasets import SOURCES, get_source
from tests.prometheus_server import require_prometheus

# name -> (type, label names beyond namespace/autoscaler)
EXPECTED = {
    "harmony_recommended_replicas": ("gauge", set()),
    "harmony_desired_replicas": ("gauge", set()),
    "harmony_current_replicas": ("gauge", set()),
    "harmony_forecast_demand": ("gauge", {"quantile_level"}),
    "harmony_observed_demand": ("gauge", set()),
    "harmony_breach_probability_ratio": ("gauge", set()),
    "harmony_effective_risk_ratio": ("gauge", set()),
    "harmony_capacity_per_replica": ("gauge", set()),
    "harmony_decision_duration_seconds": ("histogram", set()),
    "harmony_decisions": ("counter", {"reason"}),
    "harmony_scale_events": ("counter", {"direction"}),
    "harmony_telemetry_errors": ("counter", {"reason"}),
    "harmony_reconcile_failures": ("counter", {"reason"}),
    "harmony_telemetry_age_seconds": ("gauge", set()),
    "harmony_forecaster_fallback": ("gauge", set()),
    "harmony_forecaster_fine_tunes": ("gauge", set()),
}
# the forecast batcher's (harmony.operator.batching), without object labels
BATCHES = {"harmony_forecast_batches", "harmony_forecast_batch_workloads"}
OBJECT_LABELS = {"autoscaler_namespace", "autoscaler"}
KEY = {"autoscaler_namespace": "prod", "autoscaler": "llm-server"}
# families of the process, platform and GC collectors (prometheus_client's names)
PROCESS = {"process_cpu_seconds", "process_resident_memory_bytes", "process_virtual_memory_bytes",
           "process_start_time_seconds", "process_open_fds", "process_max_fds", "python_info",
           "python_gc_objects_collected", "python_gc_objects_uncollectable", "python_gc_collections"}


@pytest.fixture
def served():
    metrics = OperatorMetrics()
    server, thread = serve(metrics, 0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield metrics, base
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
    assert not thread.is_alive()


def get(url: str, accept: str | None = None) -> tuple[int, str, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def scrape(base: str) -> dict:
    status, content_type, body = get(f"{base}/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    # the text format exposes each counter's and histogram's `_created` timestamp as a gauge family of its own
    return {family.name: family for family in text_string_to_metric_families(body)
            if not family.name.endswith("_created")}


def samples(families: dict, name: str, **labels) -> list:
    """Samples named `name` (a family's `harmony_x` or a sample's `harmony_x_total`, `_bucket`...) with `labels`."""
    found = [s for family in families.values() for s in family.samples
             if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert found or name not in families, name
    return found


def record(metrics: OperatorMetrics, namespace: str = "prod", autoscaler: str = "llm-server", **overrides) -> None:
    values = dict(recommended=6, desired=5, current=4, breach_probability=0.004, effective_risk=0.01, capacity=25.0,
                  observed_demand=90.0, forecast_quantiles={0.1: 80.0, 0.5: 100.0, 0.9: 130.0, 0.99: 160.0},
                  duration_s=0.02, reason="limited-by-max-step")
    metrics.record_decision(namespace, autoscaler, **{**values, **overrides})
    metrics.forecaster(namespace, autoscaler, fallback=True, fine_tunes=3)


def test_every_metric_is_exported_with_its_labels(served):
    metrics, base = served
    record(metrics)
    metrics.scale_event("prod", "llm-server", "up")
    metrics.telemetry_error("prod", "llm-server", "prometheus-unavailable")
    metrics.reconcile_failure("prod", "llm-server", "target-not-found")
    metrics.set_telemetry_age("prod", "llm-server", 12.5)
    metrics.set_autoscalers(3)
    families = scrape(base)

    for name, (kind, extra) in EXPECTED.items():
        assert families[name].type == kind, name
        for sample in families[name].samples:
            allowed = OBJECT_LABELS | extra | ({"le"} if sample.name.endswith("_bucket") else set())
            assert set(sample.labels) == allowed, (name, sample.labels)
    (autoscalers,) = samples(families, "harmony_autoscalers")
    assert (autoscalers.value, autoscalers.labels) == (3, {})
    metrics.forecast_batched(40)
    metrics.forecast_batched(24)
    families = scrape(base)
    assert samples(families, "harmony_forecast_batches_total")[0].value == 2  # mean batch: 64 / 2 workloads
    assert samples(families, "harmony_forecast_batch_workloads_total")[0].value == 64

    key = KEY
    values = {name: samples(families, name, **key)[0].value for name in (
        "harmony_recommended_replicas", "harmony_desired_replicas", "harmony_current_replicas",
        "harmony_observed_demand", "harmony_breach_probability_ratio", "harmony_effective_risk_ratio",
        "harmony_capacity_per_replica", "harmony_telemetry_age_seconds")}
    assert values == {"harmony_recommended_replicas": 6, "harmony_desired_replicas": 5, "harmony_current_replicas": 4,
                      "harmony_observed_demand": 90.0, "harmony_breach_probability_ratio": 0.004,
                      "harmony_effective_risk_ratio": 0.01, "harmony_capacity_per_replica": 25.0,
                      "harmony_telemetry_age_seconds": 12.5}
    quantiles = {s.labels["quantile_level"]: s.value for s in samples(families, "harmony_forecast_demand", **key)}
    assert quantiles == {"0.1": 80.0, "0.5": 100.0, "0.9": 130.0, "0.99": 160.0}

    def total(name: str, **labels) -> float:
        return samples(families, name, **key, **labels)[0].value

    assert total("harmony_decisions_total", reason="limited-by-max-step") == 1
    assert total("harmony_decisions_total", reason="steady") == 0  # created at 0, so rate() sees the first one
    assert total("harmony_scale_events_total", direction="up") == 1
    assert total("harmony_scale_events_total", direction="down") == 0
    assert total("harmony_telemetry_errors_total", reason="prometheus-unavailable") == 1
    assert total("harmony_reconcile_failures_total", reason="target-not-found") == 1
    assert total("harmony_decision_duration_seconds_count") == 1
    assert total("harmony_decision_duration_seconds_sum") == pytest.approx(0.02)
    assert total("harmony_decision_duration_seconds_bucket", le="0.025") == 1
    assert total("harmony_decision_duration_seconds_bucket", le="0.01") == 0


def test_label_values_come_from_small_fixed_sets(served):
    metrics, base = served
    record(metrics, reason="some new reason")
    metrics.telemetry_error("prod", "llm-server", "HTTP 500: <html>... a whole error page ...</html>")
    metrics.reconcile_failure("prod", "llm-server", "kaboom")
    with pytest.raises(ValueError, match="direction"):
        metrics.scale_event("prod", "llm-server", "sideways")
    families = scrape(base)
    for name, allowed in (("harmony_decisions_total", DECISION_REASONS),
                          ("harmony_telemetry_errors_total", TELEMETRY_ERROR_REASONS),
                          ("harmony_reconcile_failures_total", RECONCILE_FAILURE_REASONS)):
        seen = {s.labels["reason"] for s in samples(families, name)}
        assert seen == set(allowed), name
        assert samples(families, name, reason="other")[0].value == 1, name
    assert {s.labels["direction"] for s in samples(families, "harmony_scale_events_total")} == set(DIRECTIONS)
    levels = {s.labels["quantile_level"] for s in samples(families, "harmony_forecast_demand")}
    assert levels == {str(q) for q in QUANTILES}


def test_every_prometheus_failure_reason_has_its_own_label_value():
    """The reconciler counts a Prometheus failure under the client's reason tag: each must be a value of its
    own, not `other`; and the operator's own faults (a forbidden Event, another writer) are named too."""
    from harmony.telemetry.prometheus import ERROR_REASONS

    assert set(ERROR_REASONS) <= set(TELEMETRY_ERROR_REASONS)
    assert {"event-failed", "conflicting-writer"} <= set(RECONCILE_FAILURE_REASONS)


def test_missing_forecast_is_nan_not_the_last_value(served):
    metrics, base = served
    record(metrics)
    record(metrics, forecast_quantiles={}, breach_probability=math.nan, observed_demand=math.nan,
           reason="hold-telemetry-stale")
    families = scrape(base)
    assert all(math.isnan(s.value) for s in samples(families, "harmony_forecast_demand"))
    assert math.isnan(samples(families, "harmony_breach_probability_ratio")[0].value)
    assert math.isnan(samples(families, "harmony_observed_demand")[0].value)
    assert samples(families, "harmony_decisions_total", reason="hold-telemetry-stale")[0].value == 1


def test_forget_removes_only_that_objects_series(served):
    metrics, base = served
    for name in ("a", "b"):
        record(metrics, autoscaler=name)
        metrics.scale_event("prod", name, "down")
        metrics.telemetry_error("prod", name, "telemetry-stale")
        metrics.reconcile_failure("prod", name, "conflict")
        metrics.set_telemetry_age("prod", name, 1.0)
    metrics.forget("prod", "a")
    families = scrape(base)
    for name in EXPECTED:
        owners = {s.labels.get("autoscaler") for s in families[name].samples}
        assert owners == {"b"}, name
    # a forgotten object that comes back starts afresh
    metrics.scale_event("prod", "a", "down")
    families = scrape(base)
    assert samples(families, "harmony_scale_events_total", autoscaler="a", direction="down")[0].value == 1
    metrics.forget("prod", "never-seen")  # harmless


def test_metric_names_follow_prometheus_conventions(served):
    metrics, base = served
    record(metrics)
    metrics.set_autoscalers(1)
    families = scrape(base)
    harmony = {name: family for name, family in families.items() if name.startswith("harmony_")}
    assert set(EXPECTED) | {"harmony_autoscalers", "harmony_build_info", *BATCHES} == set(harmony)
    assert set(families) - set(harmony) == PROCESS  # nothing else beside them
    for name, family in harmony.items():
        if family.type == "counter":
            assert {s.name for s in family.samples} <= {f"{name}_total", f"{name}_created"}, name
        else:
            assert not name.endswith("_total"), name
        if family.type == "histogram" or any(word in name for word in ("duration", "age", "latency")):
            assert name.endswith("_seconds"), name
        allowed = {"version", "python"} if name == "harmony_build_info" else {
            "autoscaler_namespace", "autoscaler", "quantile_level", "direction", "reason", "le"}
        for sample in family.samples:
            assert set(sample.labels) <= allowed, name
    buckets = [float(s.labels["le"]) for s in samples(families, "harmony_decision_duration_seconds_bucket")]
    assert buckets[0] == 0.001 and buckets[-2] == 10.0 and math.isinf(buckets[-1])


def test_process_metrics_and_build_info(served):
    _, base = served
    families = scrape(base)
    (info,) = samples(families, "harmony_build_info")
    assert (info.value, info.labels) == (1, {"version": __version__, "python": platform.python_version()})
    assert families["harmony_build_info"].type == "gauge"
    assert PROCESS <= set(families)
    (rss,) = samples(families, "process_resident_memory_bytes")
    assert rss.value > 1e6  # this process's memory, read from /proc
    (fds,) = samples(families, "process_open_fds")
    assert fds.value == pytest.approx(len(os.listdir("/proc/self/fd")), abs=10)
    (python,) = samples(families, "python_info")
    assert python.labels["version"] == platform.python_version()


def test_process_collectors_can_be_left_to_a_registry_that_has_them():
    registry = CollectorRegistry()
    metrics = OperatorMetrics(registry, process_collectors=False)
    record(metrics)
    names = {m.name for m in registry.collect()}
    assert not {n for n in names if n.startswith(("process_", "python_"))}
    assert registry.get_sample_value("harmony_build_info", {"version": __version__,
                                                            "python": platform.python_version()}) == 1
    assert registry.get_sample_value("harmony_desired_replicas", KEY) == 5


def test_name_filters_and_any_path_are_prometheus_clients_server(served):
    metrics, base = served
    record(metrics)
    status, _, body = get(f"{base}/metrics?name[]=harmony_desired_replicas")
    assert status == 200
    names = {f.name for f in text_string_to_metric_families(body)}
    assert names == {"harmony_desired_replicas"}
    # health is not served here any more (kopf's liveness endpoint is): /healthz is just another scrape
    status, _, body = get(f"{base}/healthz")
    assert status == 200 and "harmony_build_info" in body and "unhealthy" not in body


def test_openmetrics_on_request(served):
    metrics, base = served
    record(metrics)
    status, content_type, body = get(f"{base}/metrics", accept="application/openmetrics-text; version=1.0.0")
    assert status == 200 and content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith("# EOF") and "harmony_decisions_total" in body


def test_registries_are_separate_unless_shared():
    first, second = OperatorMetrics(), OperatorMetrics()  # no "Duplicated timeseries" from the global registry
    record(first)
    assert first.registry is not second.registry
    assert second.registry.get_sample_value("harmony_desired_replicas",
                                            KEY) is None
    registry = CollectorRegistry()
    shared = OperatorMetrics(registry)
    record(shared)
    assert registry.get_sample_value("harmony_desired_replicas", KEY) == 5


# ----------------------------------------------------------------------------------------- promtool
def promtool_check(exposition: str) -> subprocess.CompletedProcess:
    """`promtool check metrics` (installed beside the prometheus binary) over an exposition."""
    promtool = Path(require_prometheus()).with_name("promtool")
    return subprocess.run([str(promtool), "check", "metrics"], input=exposition, capture_output=True, text=True,
                          timeout=30)


def test_the_exporter_passes_promtool_check_metrics(served):
    """Every family with samples (each reason and direction, NaN forecasts, the histogram), scraped over HTTP."""
    metrics, base = served
    record(metrics)
    record(metrics, autoscaler="held", forecast_quantiles={}, breach_probability=math.nan,
           reason="hold-telemetry-stale")
    metrics.scale_event("prod", "llm-server", "up")
    metrics.telemetry_error("prod", "llm-server", "prometheus-unavailable")
    metrics.reconcile_failure("prod", "llm-server", "conflict")
    metrics.set_telemetry_age("prod", "llm-server", 3.0)
    metrics.set_autoscalers(2)
    status, _, body = get(f"{base}/metrics")
    assert status == 200 and "harmony_forecast_demand{" in body
    checked = promtool_check(body)
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")


#: bundled datasets (those that load without a --path) whose indicator names promtool refuses, and why
PROMTOOL_REFUSES = {"gentd26": "its queue_time_ms indicator: promtool refuses a unit abbreviation in a name"}


@pytest.mark.parametrize("dataset", [
    pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=PROMTOOL_REFUSES[name]))
    if name in PROMTOOL_REFUSES else name
    for name in SOURCES if name not in ("csv", "parquet", "prometheus")])  # those read a file or a server
def test_the_replay_exporter_passes_promtool_check_metrics(dataset):
    frame = get_source(dataset).load(None)
    exporter = ReplayExporter(frame, frame.series[0], speed=60.0)
    exporter.start(0)
    try:
        status, _, body = get(f"http://127.0.0.1:{exporter.port}/metrics")
    finally:
        exporter.stop()
    assert status == 200 and "harmony_replay_row" in body
    checked = promtool_check(body)
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")


def test_the_default_port_is_not_node_exporters():
    """node_exporter's 9100 is taken on every node that runs it, and matched by scrape configs written for it."""
    from harmony.operator.app import OperatorSettings

    assert OperatorSettings().metrics_port == METRICS_PORT != 9100
