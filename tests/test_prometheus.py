"""The Prometheus telemetry source against the real Prometheus scraping the real ReplayExporter (gentd26 at
60 trace-seconds per second), plus a few crafted API responses from a local fake of the HTTP API for edge
cases a real server will not produce on demand (+Inf, 503, a foreign body)."""

from __future__ import annotations

import base64
import dataclasses
import logging
import math
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
import requests

from harmony.errors import HarmonyInputError
from harmony.operator.replay_exporter import ReplayExporter
from harmony.telemetry.datasets import load_dataset
from harmony.telemetry.prometheus import (
    ERROR_REASONS,
    MAX_POINTS_PER_SERIES,
    PrometheusAccess,
    PrometheusClient,
    PrometheusConfig,
    PrometheusError,
    fetch_telemetry,
    redact_url,
)
from tests.prometheus_server import (
    FakePrometheusAPI,
    PrometheusServer,
    SilentServer,
    find_free_port,
    matrix,
    wait_until,
)

START_ROW = 30  # gentd26's first rows lack QPS samples
SPEED = 60.0  # one one-minute row per second


@pytest.fixture(scope="module")
def trace():
    return load_dataset("gentd26")


@pytest.fixture(scope="module")
def replay(trace):
    """Two exporters of the same trace: `main` stays up, `stale` is stopped by the staleness test."""
    main = ReplayExporter(trace, "gentd26", SPEED, start_row=START_ROW)
    stale = ReplayExporter(trace, "gentd26", SPEED, start_row=START_ROW)
    main.start(0)
    stale.start(0)
    yield {"main": main, "stale": stale}
    main.stop()
    stale.stop()


@pytest.fixture(scope="module")
def prometheus(replay):
    targets = [(job, f"127.0.0.1:{exporter.port}") for job, exporter in replay.items()]
    with PrometheusServer(targets, wait_for="count(harmony_replay_row) >= 2") as server:
        yield server


def wait_for_samples(server: PrometheusServer, n: int, job: str = "main") -> None:
    """Poll until Prometheus holds at least n scrapes of `job` (no blind sleeps)."""
    query = f'count_over_time(harmony_replay_row{{job="{job}"}}[1m]) >= {n}'
    wait_until(lambda: server.query(query), 20, f"{n} scrapes of {job}")


def client_for(url: str, **config) -> tuple[PrometheusClient, list[float]]:
    sleeps: list[float] = []
    return PrometheusClient(PrometheusConfig(url, **config), sleep=sleeps.append), sleeps


def now() -> datetime:
    return datetime.now(UTC)


def settled() -> datetime:
    """A second ago: scrapes up to then are ingested, so repeated queries of the window agree."""
    return now() - timedelta(seconds=1)


# --- the real Prometheus ----------------------------------------------------------------------------
def test_query_range_returns_the_replayed_trace_rows(prometheus, trace):
    wait_for_samples(prometheus, 6)
    client, _ = client_for(prometheus.url)
    end = settled()
    start = end - timedelta(seconds=30)
    rows = client.query_range('harmony_replay_row{job="main"}', start, end, 1.0)
    assert len(rows) >= 5 and str(rows.index.tz) == "UTC"
    assert rows.is_monotonic_increasing and rows.nunique() >= 3
    # one row per wall-clock second: rows advance with time (a scrape or two of jitter)
    span_s = (rows.index[-1] - rows.index[0]).total_seconds()
    assert abs((rows.iloc[-1] - rows.iloc[0]) - span_s) <= 2.5
    for pos, name in enumerate(trace.indicator_names):
        served = client.query_range(f'harmony_replay_{name}{{job="main"}}', start, end, 1.0)
        common = rows.index.intersection(served.index)
        assert len(common) >= 5, name
        expected = trace.values[rows[common].to_numpy().astype(int), 0, pos]
        np.testing.assert_allclose(served[common].to_numpy(), expected, rtol=1e-12, err_msg=name)


def test_fetch_telemetry_builds_a_fresh_frame(prometheus, trace):
    wait_for_samples(prometheus, 9)  # the window's 5 steps, a second back, all scraped
    client, _ = client_for(prometheus.url)
    indicators = [
        ("generative_qps", 'harmony_replay_generative_qps{job="main"}', 1),
        ("gpu_busy", 'harmony_replay_gpu_busy{job="main"}', 2),
        ("gpu_memory_bytes", 'harmony_replay_gpu_memory_bytes{job="main"}', 2),
    ]
    end = settled()
    window = fetch_telemetry(client, indicators, end, steps=5, step_s=1.0, stale_after_s=5.0, series="gentd26")
    assert (window.stale, window.reason) == (False, "ok"), window.reason
    frame = window.frame
    assert frame.indicator_names == ("generative_qps", "gpu_busy", "gpu_memory_bytes")
    assert frame.levels == (1, 2, 2) and {ind.unit for ind in frame.indicators} == {"1"}
    assert frame.series == ("gentd26",) and len(frame) == 5
    assert frame.end == end.replace(microsecond=0) and frame.interval.total_seconds() == 1.0
    assert not np.isnan(frame.values).any()
    rows = client.query_range('harmony_replay_row{job="main"}', frame.start, frame.end, 1.0)
    expected = trace.select(indicators=frame.indicator_names).values[rows.to_numpy().astype(int), 0, :]
    np.testing.assert_allclose(frame.values[-len(rows):, 0, :], expected, rtol=1e-12)


def test_unaggregated_query_sums_its_series(prometheus):
    wait_for_samples(prometheus, 8)
    client, _ = client_for(prometheus.url)
    end = settled()
    start = end - timedelta(seconds=5)
    both = client.query_range('{__name__=~"harmony_replay_(row|pods_reporting)", job="main"}', start, end, 1.0)
    row = client.query_range('harmony_replay_row{job="main"}', start, end, 1.0)
    pods = client.query_range('harmony_replay_pods_reporting{job="main"}', start, end, 1.0)
    assert len(both) >= 3
    np.testing.assert_allclose(both.to_numpy(), (row + pods)[both.index].to_numpy())


def test_bad_query_is_fatal_and_not_retried(prometheus):
    client, sleeps = client_for(prometheus.url)
    with pytest.raises(PrometheusError, match=r"query 'sum\(harmony_replay_row'.*HTTP 400.*bad_data") as info:
        client.query_range("sum(harmony_replay_row", now() - timedelta(seconds=10), now(), 1.0)
    assert info.value.transient is False and sleeps == []
    with pytest.raises(PrometheusError, match="HTTP 400"):
        fetch_telemetry(client, [("demand", "sum(", 1)], now(), 5, 1.0, 5.0)
    assert sleeps == []


def test_the_spec_points_limit_is_what_prometheus_enforces(prometheus):
    """parse_spec and the CRD refuse historySeconds / intervalSeconds above MAX_POINTS_PER_SERIES: the real
    server answers a window of that many steps and refuses one query of more, as a rejected query (here a
    client asked for it in one chunk, as a client without chunking would)."""
    client, sleeps = client_for(prometheus.url)
    end = now()
    window = fetch_telemetry(client, [("rows", 'harmony_replay_row{job="main"}', 1)], end, MAX_POINTS_PER_SERIES,
                             1.0, 5.0)
    assert window.frame is not None and window.frame.values.shape[0] == MAX_POINTS_PER_SERIES
    start = end - timedelta(seconds=MAX_POINTS_PER_SERIES + 1)
    refused = requests.get(prometheus.url + "/api/v1/query_range", timeout=5, params={
        "query": "up", "start": start.timestamp(), "end": end.timestamp(), "step": 1})
    assert refused.status_code == 400 and "exceeded maximum resolution" in refused.text
    assert len(client.query_range("vector(1)", start, end, 1.0)) == MAX_POINTS_PER_SERIES + 2  # chunked
    assert sleeps == []


def test_a_span_beyond_the_points_limit_is_asked_in_chunks_without_duplicate_or_missing_rows(prometheus):
    """2.5 times the limit at a 1 s step: three queries (each under the limit), joined into every second of
    the span exactly once (`vector(1)` has a value at every evaluation point)."""
    client, _ = client_for(prometheus.url)
    end = datetime(2026, 1, 1, tzinfo=UTC)
    start = end - timedelta(seconds=int(2.5 * MAX_POINTS_PER_SERIES))
    series = client.query_range("vector(1)", start, end, 1.0)
    assert len(series) == int(2.5 * MAX_POINTS_PER_SERIES) + 1
    assert series.index[0] == start and series.index[-1] == end
    assert series.index.is_unique and (np.diff(series.index.as_unit("ns").asi8) == 1_000_000_000).all()
    assert (series == 1.0).all()


def test_chunks_join_to_what_one_query_answers(prometheus, trace):
    """Real samples over a span split into 4-point chunks: the joined series is the one-query series."""
    wait_for_samples(prometheus, 14)
    whole, _ = client_for(prometheus.url)
    small = PrometheusClient(PrometheusConfig(prometheus.url, retries=0, max_points=4))
    end = settled()
    query = 'harmony_replay_gpu_busy{job="main"}'
    expected = whole.query_range(query, end - timedelta(seconds=13), end, 1.0)
    got = small.query_range(query, end - timedelta(seconds=13), end, 1.0)
    assert len(expected) >= 10
    assert got.index.equals(expected.index) and np.array_equal(got.to_numpy(), expected.to_numpy())


def test_healthy(prometheus):
    assert PrometheusClient(PrometheusConfig(prometheus.url)).healthy()
    assert not PrometheusClient(PrometheusConfig(f"http://127.0.0.1:{find_free_port()}", timeout_s=1)).healthy()


def test_stopped_exporter_turns_the_window_stale(prometheus, replay):
    wait_for_samples(prometheus, 3, job="stale")
    client, _ = client_for(prometheus.url)
    indicators = [("gpu_busy", 'harmony_replay_gpu_busy{job="stale"}', 2)]
    fresh = fetch_telemetry(client, indicators, now(), steps=20, step_s=1.0, stale_after_s=3.0)
    assert not fresh.stale, fresh.reason
    replay["stale"].stop()
    stopped = time.monotonic()
    window = wait_until(
        lambda: (w := fetch_telemetry(client, indicators, now(), steps=20, step_s=1.0, stale_after_s=2.0)).stale
        and w,
        15, "a stale window",
    )
    assert window.reason.startswith("telemetry-stale: newest gpu_busy sample is"), window.reason
    assert window.frame is not None and np.isnan(window.frame.values[-1, 0, 0])
    assert time.monotonic() - stopped < 8


# --- Prometheus unreachable or misbehaving -----------------------------------------------------------
def test_prometheus_down_gives_an_unavailable_window_after_growing_backoff():
    client, sleeps = client_for(f"http://127.0.0.1:{find_free_port()}", retries=4, backoff_s=0.5, backoff_max_s=3)
    window = fetch_telemetry(client, [("demand", "up", 1), ("gpu", "up", 2)], now(), 10, 1.0, 5.0)
    assert window.stale and window.frame is None
    assert window.reason.startswith("prometheus-unavailable: ") and "connection refused" in window.reason
    assert "after 5 tries" in window.reason
    assert sleeps == [0.5, 1.0, 2.0, 3.0]  # doubling, capped; one query only: the first failure decides


def test_a_server_that_never_answers_times_out():
    with SilentServer() as silent:
        client, sleeps = client_for(silent.url, timeout_s=0.3, retries=1)
        began = time.monotonic()
        with pytest.raises(PrometheusError, match=r"query 'up': timed out after 0.3s \(after 2 tries\)") as info:
            client.query_range("up", now() - timedelta(seconds=10), now(), 1.0)
        assert time.monotonic() - began < 2.0
        assert info.value.transient and sleeps == [0.5]
        window = fetch_telemetry(client, [("demand", "up", 1)], now(), 5, 1.0, 5.0)
        assert window.stale and window.reason.startswith("prometheus-unavailable: ")


def test_5xx_is_retried_then_succeeds():
    error = {"status": "error", "errorType": "unavailable", "error": "too many queries"}
    with FakePrometheusAPI([(503, error), (503, error), (200, matrix([(1700000000, "4")]))]) as fake:
        client, sleeps = client_for(fake.url)
        series = client.query_range("up", datetime(2023, 11, 14, 22, 13, 20), datetime(2023, 11, 14, 22, 14), 15)
    assert series.tolist() == [4.0] and sleeps == [0.5, 1.0] and len(fake.requests) == 3


def test_5xx_message_names_status_and_payload():
    error = {"status": "error", "errorType": "timeout", "error": "query timed out in expression evaluation"}
    with FakePrometheusAPI([(503, error)]) as fake:
        client, sleeps = client_for(fake.url, retries=2)
        with pytest.raises(PrometheusError, match=r"HTTP 503: timeout: query timed out .*\(after 3 tries\)"):
            client.query_range("up", now(), now(), 1.0)
    assert len(fake.requests) == 3 and sleeps == [0.5, 1.0]


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (200, "<html>login</html>", "not Prometheus API JSON"),
        (422, {"status": "error", "errorType": "execution", "error": "many-to-many matching"}, "HTTP 422: execution"),
        (200, {"status": "success", "data": {"resultType": "vector", "result": []}}, "expected a matrix"),
    ],
)
def test_foreign_or_failed_responses_are_fatal(status, body, message):
    with FakePrometheusAPI([(status, body)]) as fake:
        client, sleeps = client_for(fake.url)
        with pytest.raises(PrometheusError, match=message) as info:
            client.query_range("up", now(), now(), 1.0)
    assert not info.value.transient and sleeps == [] and len(fake.requests) == 1


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (200, "<html><body>Sign in</body></html>", "bad-response"),  # a login page or proxy, answering 200
        (200, '{"status": "success", "data": [1, 2', "bad-response"),  # garbage JSON
        (200, {"status": "error", "error": "?"}, "bad-response"),
        (200, {"status": "success", "data": {"resultType": "scalar", "result": [0, "1"]}}, "bad-response"),
        (400, {"status": "error", "errorType": "bad_data", "error": "parse error"}, "query-rejected"),
        (422, {"status": "error", "errorType": "execution", "error": "many-to-many"}, "query-rejected"),
        (401, "Unauthorized", "auth-failed"),
        (403, "Forbidden", "auth-failed"),
        (404, "Not Found", "query-failed"),
        (503, {"status": "error", "errorType": "unavailable", "error": "busy"}, "prometheus-unavailable"),
    ],
)
def test_each_failure_carries_a_bounded_reason(status, body, reason):
    """The operator's condition reason and metric label come from `reason`, one of a fixed set."""
    with FakePrometheusAPI([(status, body)]) as fake:
        client, _ = client_for(fake.url, retries=0)
        with pytest.raises(PrometheusError) as info:
            fetch_telemetry(client, [("demand", "up", 1)], now(), 5, 1.0, 5.0) if status != 503 else \
                client.query_range("up", now(), now(), 1.0)
    assert info.value.reason == reason and reason in ERROR_REASONS


def test_credentials_in_the_url_are_used_but_never_shown():
    secret = "s3cr3t-pass"
    assert redact_url(f"GET http://harmony:{secret}@prom:9090/api/v1/query") == "GET http://***@prom:9090/api/v1/query"
    assert redact_url(f"https://user:p@ss:{secret}@prom/x and http://other:9090/y") == \
        "https://***@prom/x and http://other:9090/y"  # an unescaped @ in the password, a URL without any
    assert redact_url("http://prom:9090/api?q=a@b") == "http://prom:9090/api?q=a@b"
    with FakePrometheusAPI([(400, {"status": "error", "errorType": "bad_data", "error": "parse error"})]) as fake:
        url = fake.url.replace("http://", f"http://harmony:{secret}@")
        client, _ = client_for(url)
        with pytest.raises(PrometheusError) as info:
            client.query_range("sum(", now(), now(), 1.0)
        down, _ = client_for(f"http://harmony:{secret}@127.0.0.1:{find_free_port()}", retries=0)
        window = fetch_telemetry(down, [("demand", "up", 1)], now(), 5, 1.0, 5.0)
    assert secret not in str(info.value) and "http://***@127.0.0.1" in str(info.value)
    assert window.stale and secret not in window.reason and "***@" in window.reason
    assert fake.requests[0][2].get("Authorization", "").startswith("Basic ")  # still sent, as basic auth
    with pytest.raises(HarmonyInputError) as bad:
        PrometheusConfig(f"ftp://harmony:{secret}@prom")
    assert secret not in str(bad.value)


def test_a_ca_bundle_that_is_gone_is_a_fatal_error_not_a_crash(tmp_path):
    client, _ = client_for("https://127.0.0.1:1", verify_tls=str(tmp_path / "absent-ca.crt"))
    with pytest.raises(PrometheusError, match="absent-ca.crt") as info:
        client.query_range("up", now(), now(), 1.0)
    assert not info.value.transient and info.value.reason == "query-failed"


def test_a_bearer_token_over_plain_http_is_warned_about_once(tmp_path, caplog):
    token = tmp_path / "token"
    token.write_text("t")
    with caplog.at_level(logging.WARNING, logger="harmony.telemetry"):
        client, _ = client_for("http://prom:9090", bearer_token_file=str(token))
        PrometheusClient(PrometheusConfig("https://prom:9090", bearer_token_file=str(token)))
        PrometheusClient(PrometheusConfig("http://prom:9090"))
    warned = [r for r in caplog.records if "plain http" in r.getMessage()]
    assert len(warned) == 1 and "http://prom:9090" in warned[0].getMessage()


# --- result handling (crafted payloads of the documented API) ---------------------------------------
T0 = 1_700_000_000  # 2023-11-14T22:13:20Z


def test_nan_stays_nan_and_infinities_become_nan():
    payload = matrix([(T0, "1.5"), (T0 + 1, "NaN"), (T0 + 2, "+Inf"), (T0 + 3, "-Inf"), (T0 + 4, "2e3")])
    with FakePrometheusAPI([(200, payload)]) as fake:
        client, _ = client_for(fake.url)
        series = client.query_range("up", datetime.fromtimestamp(T0, UTC), datetime.fromtimestamp(T0 + 4, UTC), 1)
    assert list(series.index) == [datetime.fromtimestamp(T0 + k, UTC) for k in range(5)]
    values = series.tolist()
    assert values[0] == 1.5 and values[4] == 2000.0 and all(math.isnan(v) for v in values[1:4])


def test_several_series_are_summed_per_timestamp():
    payload = matrix([(T0, "1"), (T0 + 1, "2"), (T0 + 2, "NaN")], [(T0 + 1, "10"), (T0 + 2, "5"), (T0 + 3, "7")])
    with FakePrometheusAPI([(200, payload)]) as fake:
        client, _ = client_for(fake.url)
        series = client.query_range("up", datetime.fromtimestamp(T0, UTC), datetime.fromtimestamp(T0 + 3, UTC), 1)
    # a missing sample adds nothing; a NaN makes the sum NaN (as PromQL's sum)
    assert series.iloc[[0, 1, 3]].tolist() == [1.0, 12.0, 7.0] and math.isnan(series.iloc[2])


def test_empty_result_is_an_empty_series_and_a_missing_indicator():
    with FakePrometheusAPI([(200, matrix())]) as fake:
        client, _ = client_for(fake.url)
        series = client.query_range("nothing", now(), now(), 1.0)
        window = fetch_telemetry(client, [("demand", "nothing", 1)], now(), 5, 1.0, 5.0)
    assert series.empty and series.dtype == np.float64 and str(series.index.tz) == "UTC"
    assert window.stale and window.reason == "telemetry-missing: demand" and window.frame is not None


def test_fetch_telemetry_aligns_the_grid_fills_short_gaps_and_detects_staleness():
    end = datetime.fromtimestamp(T0 + 10.6, UTC)
    demand = matrix([(T0 + k, str(k)) for k in (1, 2, 3, 5, 6, 7, 8, 9, 10)])  # T0+4 missing
    late = matrix([(T0 + k, str(k)) for k in (1, 2, 3, 4, 5, 6)])
    with FakePrometheusAPI([(200, demand), (200, demand), (200, late)]) as fake:
        client, _ = client_for(fake.url)
        window = fetch_telemetry(client, [("demand", "d", 1), ("gpu", "g", 2)], end, 10, 1.0, 3.0, series="w")
        stale = fetch_telemetry(client, [("demand", "late", 1)], end, 10, 1.0, 3.0)
    assert not window.stale and window.reason == "ok"
    frame = window.frame
    assert frame.start == datetime.fromtimestamp(T0 + 1, UTC) and frame.end == datetime.fromtimestamp(T0 + 10, UTC)
    np.testing.assert_allclose(frame.values[:, 0, 0], np.arange(1, 11))  # the 1-step gap interpolated
    assert [(g.indicator, g.steps, g.filled) for g in window.gaps] == [("demand", 1, True), ("gpu", 1, True)]
    params = parse_qs(urlsplit(fake.requests[0][1]).query)
    assert params["start"] == [f"{T0 + 1}.000"] and params["end"] == [f"{T0 + 10}.000"] and params["step"] == ["1.0"]
    assert stale.stale and stale.reason == "telemetry-stale: newest demand sample is 4.6s old (limit 3s)"
    assert np.isnan(stale.frame.values[-4:, 0, 0]).all()  # trailing gap: reported, never invented


def test_bearer_token_is_read_from_file_on_every_request(tmp_path):
    token = tmp_path / "token"
    token.write_text("first-token\n")
    with FakePrometheusAPI([(200, matrix())]) as fake:
        client, _ = client_for(fake.url, bearer_token_file=str(token))
        client.query_range("up", now(), now(), 1.0)
        token.write_text("rotated-token")
        client.query_range("up", now(), now(), 1.0)
        assert client.healthy()
    auth = [headers.get("Authorization") for _method, _path, headers in fake.requests]
    assert auth == ["Bearer first-token", "Bearer rotated-token", "Bearer rotated-token"]


def test_missing_token_file_is_fatal(tmp_path):
    client, _ = client_for("http://127.0.0.1:1", bearer_token_file=str(tmp_path / "absent"))
    with pytest.raises(PrometheusError, match="bearer token file .*absent: No such file") as info:
        client.query_range("up", now(), now(), 1.0)
    assert not info.value.transient and info.value.reason == "auth-failed"


@pytest.mark.parametrize(
    "fields",
    [{"url": "prometheus:9090"}, {"timeout_s": 0}, {"retries": -1}, {"backoff_s": -1}],
)
def test_config_is_validated(fields):
    with pytest.raises(HarmonyInputError):
        PrometheusConfig(**({"url": "http://p:9090"} | fields))


def test_bad_fetch_arguments_are_rejected():
    client, _ = client_for("http://127.0.0.1:1")
    with pytest.raises(HarmonyInputError):
        fetch_telemetry(client, [], now(), 5, 1.0, 5.0)
    with pytest.raises(HarmonyInputError):
        fetch_telemetry(client, [("d", "up", 1)], now(), 0, 1.0, 5.0)


def _auth_requests(config: PrometheusConfig) -> dict[str, str]:
    with FakePrometheusAPI([(200, matrix([(1.0, "1")]))]) as api:
        PrometheusClient(dataclasses.replace(config, url=api.url)).query_range(
            "up", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 1, tzinfo=UTC), 30.0)
        return {k.lower(): v for k, v in api.requests[0][2].items()}


def test_basic_auth_custom_headers_and_a_token_reach_prometheus(tmp_path):
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    sent = _auth_requests(PrometheusConfig("http://x", username="ops", password_file=str(password),
                                           headers=(("X-Scope-OrgID", "t1"),)))
    assert sent["authorization"] == "Basic " + base64.b64encode(b"ops:s3cret").decode()
    assert sent["x-scope-orgid"] == "t1"
    assert _auth_requests(PrometheusConfig("http://x", bearer_token="abc"))["authorization"] == "Bearer abc"
    assert "s3cret" not in repr(PrometheusConfig("http://x", username="ops", password="s3cret"))


def test_contradicting_or_malformed_credentials_are_refused():
    with pytest.raises(HarmonyInputError, match="username and one password"):
        PrometheusConfig("http://x", password="p")
    with pytest.raises(HarmonyInputError, match="header 'Bad Name'"):
        PrometheusConfig("http://x", headers=(("Bad Name", "v"),))
    with pytest.raises(HarmonyInputError, match="max_points"):
        PrometheusConfig("http://x", max_points=MAX_POINTS_PER_SERIES + 1)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_a_secrets_access_replaces_the_operators_credentials_and_adds_its_headers():
    access = PrometheusAccess.from_secret_data(
        {"token": _b64("tok\n"), "headers": _b64('{"X-Scope-OrgID": "team-a"}'), "ca.crt": _b64("PEM")}, "secret x")
    base = PrometheusConfig("http://operator:9090", bearer_token_file="/var/run/token", headers=(("A", "1"),))
    config = access.config(base, "https://team-a:9090")
    assert config.url == "https://team-a:9090" and config.bearer_token == "tok" and config.bearer_token_file is None
    assert dict(config.headers) == {"A": "1", "X-Scope-OrgID": "team-a"}
    assert open(config.verify_tls).read() == "PEM"
    assert "tok" not in repr(access) and "team-a" not in repr(access)
    with pytest.raises(HarmonyInputError, match="secret x: key 'headers' must be a YAML or JSON map"):
        PrometheusAccess.from_secret_data({"headers": _b64("[1, 2]")}, "secret x")
    with pytest.raises(HarmonyInputError, match="secret x: unknown key 'tokn'"):
        PrometheusAccess.from_secret_data({"tokn": _b64("x")}, "secret x")
    with pytest.raises(HarmonyInputError, match="both keys 'username' and 'password'"):
        PrometheusAccess.from_secret_data({"username": _b64("u")}, "secret x")
