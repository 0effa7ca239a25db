"""`--dataset prometheus`: the user's own Prometheus as a dataset, against a real Prometheus backfilled with a
bundled trace (`promtool tsdb create-blocks-from openmetrics`).

The central check: `harmony backtest` on the trace read back from Prometheus and on the same trace read
from its CSV files gives the same figures (summary.csv compared exactly), so nothing is lost, shifted or
duplicated between a user's Prometheus and the backtest. Plus the source's options: an indicators file,
repeatable headers, basic auth, relative times, and bad input as one line.
"""

from __future__ import annotations

import base64
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from harmony.cli.main import app
from harmony.errors import HarmonyInputError
from harmony.telemetry.datasets import DATASETS_ROOT, load_dataset
from harmony.telemetry.datasets import prometheus_range as source
from harmony.telemetry.datasets.gentd26 import FILES as GENTD26_FILES
from harmony.telemetry.datasets.gentd26 import TIME as GENTD26_TIME
from harmony.telemetry.frame import TelemetryFrame
from tests.prometheus_server import FakePrometheusAPI, PrometheusServer, matrix

runner = CliRunner()
HOURS = 6  # the trace's last hours: enough history for the forecasters, a backtest of seconds
POLICIES = "harmony,hpa,static,oracle"


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def trace_slice(folder: Path) -> Path:
    """The bundled gentd26's last HOURS hours, uncompressed (the source's --path accepts `name.csv`)."""
    out = folder / "gentd26"
    out.mkdir()
    for name in GENTD26_FILES.values():
        df = pd.read_csv(DATASETS_ROOT / "gentd26" / name)
        df[df[GENTD26_TIME] > df[GENTD26_TIME].max() - HOURS * 3600].to_csv(out / name.removesuffix(".gz"),
                                                                             index=False)
    return out


def openmetrics(frame: TelemetryFrame, path: Path, prefix: str = "gentd26_") -> Path:
    """Every grid point of every indicator as a gauge sample, NaN written as NaN (a gap stays a gap: left
    out, Prometheus would answer the previous sample for up to its 5-minute lookback)."""
    stamps = frame.index.as_unit("s").asi8
    lines = []
    for k, name in enumerate(frame.indicator_names):
        lines.append(f"# TYPE {prefix}{name} gauge")
        for t, v in zip(stamps, frame.values[:, 0, k], strict=True):
            lines.append(f"{prefix}{name} {'NaN' if math.isnan(v) else repr(float(v))} {int(t)}")
    path.write_text("\n".join(lines) + "\n# EOF\n")
    return path


def autoscaler_yaml(frame: TelemetryFrame, path: Path, url: str | None = None, prefix: str = "gentd26_") -> Path:
    items = "".join(f"    - {{name: {i.name}, query: '{prefix}{i.name}', level: {i.level}"
                    f"{', demand: true' if i.name == 'gpu_busy' else ''}}}\n" for i in frame.indicators)
    prometheus = f"  prometheus: {{url: '{url}'}}\n" if url else ""
    path.write_text("apiVersion: harmony.dev/v1alpha1\nkind: HarmonyAutoscaler\nmetadata: {name: sd-serving}\n"
                    "spec:\n  scaleTargetRef: {kind: Deployment, name: sd}\n  maxReplicas: 200\n"
                    f"  intervalSeconds: 60\n{prometheus}  indicators:\n{items}")
    return path


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory):
    """(Prometheus holding the trace slice, the slice's folder, its frame as read from the CSVs)."""
    root = tmp_path_factory.mktemp("backfill")
    folder = trace_slice(root)
    frame = load_dataset("gentd26", folder)
    with PrometheusServer([], backfill=openmetrics(frame, root / "trace.om")) as server:
        yield server, folder, frame


def span(frame: TelemetryFrame) -> tuple[str, str]:
    return frame.index[0].isoformat() + "Z", frame.index[-1].isoformat() + "Z"


def test_the_trace_read_back_from_prometheus_is_the_csv_frame(backfilled, tmp_path):
    server, _, frame = backfilled
    start, end = span(frame)
    got = source.load(autoscaler_yaml(frame, tmp_path / "ha.yaml", server.url), start=start, end=end)
    assert got.index.equals(frame.index) and got.indicator_names == frame.indicator_names
    assert [i.level for i in got.indicators] == [i.level for i in frame.indicators]
    np.testing.assert_array_equal(got.values, frame.values)  # NaN gaps in the same places too
    assert got.series == ("sd-serving",) and got.interval == pd.Timedelta("60s")


def test_backtest_on_prometheus_gives_the_figures_of_the_same_trace_from_csv(backfilled, tmp_path):
    server, folder, frame = backfilled
    start, end = span(frame)
    flags = ["--policies", POLICIES, "--demand", "gpu_busy", "--capacity", 1, "--cold-start", 300,
             "--lookback-seconds", 1800, "--force"]
    from_csv = run("backtest", "--dataset", "gentd26", "--path", folder, *flags, "--out", tmp_path / "csv")
    assert from_csv.exit_code == 0, from_csv.output
    from_prometheus = run("backtest", "--dataset", "prometheus", "--path", autoscaler_yaml(frame, tmp_path / "a.yaml"),
                          "-o", f"url={server.url}", "-o", f"start={start}", "-o", f"end={end}", *flags,
                          "--out", tmp_path / "prom")
    assert from_prometheus.exit_code == 0, from_prometheus.output
    csv = (tmp_path / "csv" / "summary.csv").read_text()
    assert (tmp_path / "prom" / "summary.csv").read_text() == csv
    assert len(pd.read_csv(tmp_path / "csv" / "summary.csv")) == len(POLICIES.split(","))


def test_an_indicators_file_and_the_step_option(backfilled, tmp_path):
    """Without an autoscaler file: a YAML list of spec-shaped indicators, the URL and the step as options."""
    server, _, frame = backfilled
    start, end = span(frame)
    indicators = tmp_path / "indicators.yaml"
    indicators.write_text("- {name: gpu_busy, query: gentd26_gpu_busy, demand: true}\n"
                          "- {name: queue, query: 'sum(gentd26_queue_size)', level: 2}\n")
    got = source.load(None, url=server.url, indicators=str(indicators), start=start, end=end, step=120)
    assert got.indicator_names == ("gpu_busy", "queue") and got.interval == pd.Timedelta("120s")
    on_grid = frame.index.as_unit("s").asi8 % 120 == 0  # the grid is aligned to the step
    np.testing.assert_array_equal(got.values[:, 0, 0], frame.values[on_grid, 0, frame.indicator_position("gpu_busy")])


def test_headers_basic_auth_and_a_token_file_are_sent(tmp_path):
    """Repeatable `header` options, basic auth from a password file, through the CLI's --option parsing."""
    (tmp_path / "pw").write_text("hunter2\n")
    indicators = tmp_path / "i.yaml"
    indicators.write_text("- {name: qps, query: up, demand: true}\n")
    with FakePrometheusAPI([(200, matrix([(1767571200.0, "1"), (1767571230.0, "2")]))]) as api:
        result = run("backtest", "--dataset", "prometheus", "-o", f"url={api.url}", "-o", f"indicators={indicators}",
                     "-o", "start=2026-01-05T00:00:00Z", "-o", "end=2026-01-05T00:00:30Z",
                     "-o", "header=X-Scope-OrgID: t1", "-o", "header=X-Team: a", "-o", "username=ops",
                     "-o", f"password-file={tmp_path / 'pw'}", "--demand", "qps", "--capacity", 1)
        sent = {k.lower(): v for k, v in api.requests[0][2].items()}
    assert sent["x-scope-orgid"] == "t1" and sent["x-team"] == "a"
    assert sent["authorization"] == "Basic " + base64.b64encode(b"ops:hunter2").decode()
    assert "hunter2" not in result.output


def test_relative_times_and_rfc3339():
    now = pd.Timestamp("2026-01-05T12:00:00Z")
    assert source.parse_time("now", "end", now) == now
    assert source.parse_time("-14d", "start", now) == pd.Timestamp("2025-12-22T12:00:00Z")
    assert source.parse_time("-90m", "start", now) == pd.Timestamp("2026-01-05T10:30:00Z")
    assert source.parse_time("2026-01-05T01:00:00+01:00", "start", now) == pd.Timestamp("2026-01-05T00:00:00Z")
    assert source.parse_time(1767571200, "start", now) == pd.Timestamp("2026-01-05T00:00:00Z")


@pytest.mark.parametrize(("options", "message"), [
    ({}, "needs --path FILE or --option autoscaler=FILE"),
    ({"indicators": "i.yaml"}, "needs --option url="),
    ({"indicators": "i.yaml", "url": "http://x", "start": "yesterday"}, "start='yesterday': not a time"),
    ({"indicators": "i.yaml", "url": "http://x", "header": "NoColon"}, "header='NoColon' is not 'Name: value'"),
    ({"indicators": "i.yaml", "url": "http://x", "step": 0}, "step=0: must be a positive number"),
    ({"indicators": "i.yaml", "url": "http://x", "ca_file": "ca.pem", "insecure_skip_verify": True},
     "ca-file and --option insecure-skip-verify contradict"),
    ({"indicators": "bad.yaml", "url": "http://x"}, r"bad.yaml: indicators\[0\].demand: must be true or false"),
])
def test_bad_options_are_one_line_naming_the_option(tmp_path, monkeypatch, options, message):
    monkeypatch.chdir(tmp_path)
    Path("i.yaml").write_text("- {name: qps, query: up, demand: true}\n")
    Path("bad.yaml").write_text("- {name: qps, query: up, demand: maybe}\n")
    Path("ca.pem").write_text("PEM")
    with pytest.raises(HarmonyInputError, match=message):
        source.load(None, **options)


def test_an_unreachable_prometheus_is_an_input_error_naming_it(tmp_path):
    from tests.prometheus_server import find_free_port

    indicators = tmp_path / "i.yaml"
    indicators.write_text("- {name: qps, query: up, demand: true}\n")
    url = f"http://user:pw@127.0.0.1:{find_free_port()}"
    result = run("backtest", "--dataset", "prometheus", "-o", f"url={url}", "-o", f"indicators={indicators}",
                 "-o", "start=-1h", "--demand", "qps", "--capacity", 1)
    assert result.exit_code == 2
    assert "connection" in result.output and "127.0.0.1" in result.output and "pw@" not in result.output
