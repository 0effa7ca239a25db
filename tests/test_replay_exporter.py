"""ReplayExporter on a fake clock (rows, loop/hold, NaN, names), its HTTP endpoint, and the CLI command."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest
from typer.testing import CliRunner

from harmony.cli.main import app
from harmony.errors import HarmonyInputError
from harmony.operator.replay_exporter import ReplayExporter, metric_name
from harmony.telemetry.frame import Indicator, TelemetryFrame


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def small_frame() -> TelemetryFrame:
    """4 one-minute rows, two series, an indicator with a name Prometheus would reject, one NaN."""
    index = pd.date_range("2024-01-01", periods=4, freq="1min")
    values = np.array([[[1.0, 10.0], [5.0, 50.0]],
                       [[2.0, np.nan], [6.0, 60.0]],
                       [[3.0, 30.0], [7.0, 70.0]],
                       [[4.0, 40.0], [8.0, 80.0]]])
    inds = [Indicator("qps", 1, "requests/s"), Indicator("gpu.busy-ratio", 2, "1")]
    return TelemetryFrame(index, values, ["a", "b"], inds, source="small")


def sample(registry: CollectorRegistry, name: str) -> float:
    return registry.get_sample_value(name)


def test_metric_names_are_sanitised():
    assert metric_name("gpu.busy-ratio") == "harmony_replay_gpu_busy_ratio"
    assert metric_name("QPS") == "harmony_replay_qps"


def test_rows_advance_with_speed_and_loop():
    clock = FakeClock()
    exporter = ReplayExporter(small_frame(), "b", speed=60.0, clock=clock)
    registry = exporter.registry
    assert sample(registry, "harmony_replay_row") == 0 and sample(registry, "harmony_replay_qps") == 5.0
    clock.now += 1.99  # 119.4 trace-seconds: still row 1
    assert sample(registry, "harmony_replay_row") == 1 and sample(registry, "harmony_replay_gpu_busy_ratio") == 60.0
    clock.now += 0.01
    assert sample(registry, "harmony_replay_row") == 2
    clock.now += 2.0  # row 4 of 4: back to the first
    assert sample(registry, "harmony_replay_row") == 0 and sample(registry, "harmony_replay_qps") == 5.0


def test_hold_keeps_the_last_row_and_start_row_offsets():
    clock = FakeClock()
    exporter = ReplayExporter(small_frame(), "a", speed=120.0, loop=False, start_row=1, clock=clock)
    assert exporter.current_row() == 1
    clock.now += 0.5
    assert exporter.current_row() == 2
    clock.now += 100
    assert exporter.current_row() == 3 and sample(exporter.registry, "harmony_replay_qps") == 4.0


def test_missing_samples_are_exported_as_nan():
    clock = FakeClock()
    exporter = ReplayExporter(small_frame(), "a", speed=60.0, clock=clock)
    clock.now += 1.0
    assert math.isnan(sample(exporter.registry, "harmony_replay_gpu_busy_ratio"))
    text = generate_latest(exporter.registry).decode()
    assert "harmony_replay_gpu_busy_ratio NaN" in text
    assert "# HELP harmony_replay_qps qps (requests/s, level 1) replayed from small, series a" in text


def test_uses_the_given_registry():
    registry = CollectorRegistry()
    ReplayExporter(small_frame(), "a", speed=1.0, registry=registry)
    assert registry.get_sample_value("harmony_replay_row") == 0


@pytest.mark.parametrize(
    ("series", "speed", "start_row"), [("nope", 1.0, 0), ("a", 0.0, 0), ("a", float("inf"), 0), ("a", 1.0, 4)]
)
def test_bad_arguments(series, speed, start_row):
    with pytest.raises(HarmonyInputError):
        ReplayExporter(small_frame(), series, speed, start_row=start_row)


def test_serves_metrics_over_http_and_stops():
    exporter = ReplayExporter(small_frame(), "a", speed=60.0)
    exporter.start(0)
    try:
        url = f"http://127.0.0.1:{exporter.port}/metrics"
        text = requests.get(url, timeout=5).text
        assert "harmony_replay_qps 1.0" in text and "harmony_replay_row 0.0" in text
    finally:
        exporter.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=2)
    exporter.stop()  # idempotent


def test_cli_serves_for_a_duration():
    result = CliRunner().invoke(app, ["replay-exporter", "--dataset", "gentd26", "--speed", "60", "--port", "0",
                                      "--duration", "0.3"])
    assert result.exit_code == 0, result.output
    assert "serving 9 indicators of gentd26/gentd26 (957 rows) on http://127.0.0.1:" in result.output
    assert "one row every 1s" in result.output


def test_cli_reports_bad_input_in_one_line():
    result = CliRunner().invoke(app, ["replay-exporter", "--dataset", "gentd26", "--series", "nope", "--port", "0",
                                      "--duration", "0"])
    assert result.exit_code == 2
    assert "error: unknown series 'nope'" in result.output
