"""Health: the pure rules on a hand-moved clock, then kopf's real liveness endpoint in front of them.

The endpoint tests run a kopf operator against the kmock emulator with its liveness endpoint on a free
loopback port; a gate in the telemetry source holds the first reconcile step, so the loop is wedged on
demand and the clock (Health's, not the wall's) moves past the limit without waiting for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import urllib.error
import urllib.request

import pytest

from harmony.operator.app import OperatorSettings
from harmony.operator.health import (
    LIVENESS_PATH,
    Health,
    HealthSettings,
    liveness_endpoint,
)
from harmony.telemetry.prometheus import PrometheusError, TelemetryWindow
from tests.operator_support import (
    ScriptedTelemetry,
    add_autoscaler,
    add_deployment,
    cluster,
    eventually,
    make_reconciler,
    operator_thread,
)
from tests.prometheus_server import find_free_port


class Clock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def health(**settings) -> tuple[Health, Clock]:
    clock = Clock()
    return Health(HealthSettings(**settings), clock=clock), clock


# --- the loop -------------------------------------------------------------------------------------------

def test_nothing_served_is_healthy_however_long_nothing_happens():
    h, clock = health()
    clock.advance(1e6)
    report = h.loop()
    assert report.healthy and report.served_objects == 0 and report.waiting_s is None
    assert report.last_step_age_s is None
    h.serving("a", 30)
    h.step_finished()
    h.stopped("a")  # the last object went away (deleted, or this replica now stands by)
    clock.advance(1e6)
    report = h.loop()
    assert report.healthy and report.served_objects == 0 and report.last_step_age_s == pytest.approx(1e6)


def test_served_objects_without_a_finished_step_fail_after_the_limit():
    h, clock = health()  # defaults: 5 intervals, at least 300 s
    h.serving("a", 30)
    assert h.stall_after_s() == 300  # 5 x 30 s is under the floor
    clock.advance(300)
    assert h.loop().healthy  # at the limit: still healthy
    clock.advance(1)
    report = h.loop()
    assert not report.healthy and report.waiting_s == pytest.approx(301) and report.served_objects == 1
    h.step_finished()  # any object's step
    report = h.loop()
    assert report.healthy and report.waiting_s == 0 and report.last_step_age_s == 0


def test_the_limit_is_a_multiple_of_the_largest_served_interval():
    h, clock = health(stall_intervals=4, stall_min_s=100)
    h.serving("a", 10)
    h.serving("b", 120)
    assert h.stall_after_s() == 480
    h.step_finished()
    clock.advance(479)
    assert h.loop().healthy
    h.stopped("b")  # only the 10 s object left: 4 x 10 s < 100 s floor
    assert h.stall_after_s() == 100
    assert not h.loop().healthy
    h.serving("a", 300)  # its spec changed the interval
    assert h.stall_after_s() == 1200 and h.loop().healthy


def test_failed_steps_are_no_progress():
    h, clock = health(stall_min_s=60)
    h.serving("a", 1)
    h.step_finished()
    for _ in range(3):
        clock.advance(30)
        h.step_failed()
    report = h.loop()
    assert not report.healthy and report.failed_steps == 3 and report.last_step_age_s == 90
    h.step_finished()
    report = h.loop()
    assert report.healthy and report.failed_steps == 0


def test_waiting_counts_from_when_serving_began_not_from_an_old_step():
    h, clock = health(stall_min_s=60)
    h.serving("a", 1)
    h.step_finished()
    h.stopped("a")
    clock.advance(1000)
    h.serving("b", 1)  # a new object, its first step not yet due
    report = h.loop()
    assert report.healthy and report.waiting_s == 0 and report.last_step_age_s == 1000
    clock.advance(61)
    assert not h.loop().healthy
    h.serving("c", 1)  # another object joining does not restart the count
    assert not h.loop().healthy


def test_settings_are_checked():
    for bad in ({"stall_intervals": 0}, {"stall_min_s": -1}, {"stall_intervals": float("nan")}):
        with pytest.raises(ValueError, match="must be > 0"):
            HealthSettings(**bad)


def test_reports_are_json():
    h, clock = health()
    h.serving("a", 30)
    clock.advance(12.34567)
    body = json.loads(json.dumps({"reconcile": h.loop().as_dict(), "prometheus": h.telemetry().as_dict()}))
    assert body["reconcile"] == {"healthy": True, "served_objects": 1, "waiting_s": 12.346, "last_step_age_s": None,
                                 "stall_after_s": 300.0, "failed_steps": 0}
    assert body["prometheus"] == {"reachable": None, "reason": "no telemetry fetched yet", "last_fetch_age_s": None,
                                  "last_reachable_age_s": None}


# --- telemetry ------------------------------------------------------------------------------------------

def test_the_last_fetch_says_whether_prometheus_answered():
    h, clock = health()
    outcomes = iter([
        TelemetryWindow(None, False, "ok"),
        TelemetryWindow(None, True, "telemetry-missing: demand"),  # Prometheus answered: nothing matched
        TelemetryWindow(None, True, "prometheus-unavailable: connection refused"),
    ])
    fetch = h.watch_telemetry(lambda spec, now: next(outcomes))
    window = fetch("spec", "now")
    assert window.reason == "ok" and h.telemetry().reachable is True
    clock.advance(10)
    fetch("spec", "now")
    report = h.telemetry()
    assert (report.reachable, report.reason, report.last_fetch_age_s) == (True, "telemetry-missing: demand", 0)
    clock.advance(10)
    fetch("spec", "now")
    clock.advance(5)
    report = h.telemetry()
    assert report.reachable is False and report.reason.startswith("prometheus-unavailable")
    assert (report.last_fetch_age_s, report.last_reachable_age_s) == (5, 15)


def test_a_fetch_that_raises_is_recorded_and_still_raises():
    h, _ = health()

    def refused(spec, now):
        raise PrometheusError("http://prom/api/v1/query_range: 400 bad PromQL", transient=False)

    with pytest.raises(PrometheusError):
        h.watch_telemetry(refused)("spec", "now")
    assert h.telemetry().reachable is True  # it answered, refusing the query
    assert "400 bad PromQL" in h.telemetry().reason

    def broken(spec, now):
        raise OSError("<html>" + "x" * 5000 + "</html>")

    with pytest.raises(OSError):
        h.watch_telemetry(broken)("spec", "now")
    report = h.telemetry()
    assert report.reachable is False and report.reason.startswith("OSError: <html>") and len(report.reason) <= 200


def test_liveness_endpoint_urls():
    assert liveness_endpoint() == "http://0.0.0.0:8080/healthz"
    assert liveness_endpoint("::", 9000) == "http://[::]:9000/healthz"
    assert liveness_endpoint("127.0.0.1", 8081, "live") == "http://127.0.0.1:8081/live"
    with pytest.raises(ValueError, match="1..65535"):
        liveness_endpoint(port=0)  # kopf would take port 0 for port 80


# --- kopf's liveness endpoint ---------------------------------------------------------------------------

class Gate:
    """A telemetry source that holds every fetch until opened (a Prometheus that never answers)."""

    def __init__(self, source) -> None:
        self.source, self.open, self.entered = source, threading.Event(), threading.Event()

    def __call__(self, spec, now):
        self.entered.set()
        self.open.wait(timeout=60)  # bounded: a failed test must not leave the worker thread behind forever
        return self.source(spec, now)


def probe(url: str) -> tuple[int, dict | str] | None:
    """(status, JSON body or text) of one GET, or None while nothing listens yet."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except (ConnectionError, urllib.error.URLError):
        return None


async def probed(url: str, status: int, timeout: float = 20.0):
    """Poll the endpoint until it answers `status` (the GET in a thread: the emulator serves from this loop);
    that answer's body."""
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while asyncio.get_running_loop().time() < deadline:
        last = await asyncio.to_thread(probe, url)
        if last is not None and last[0] == status:
            return last[1]
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not answer {status} within {timeout} s; last: {last!r}")


@pytest.mark.asyncio
async def test_with_nothing_to_serve_the_endpoint_answers_200_with_its_report():
    port = find_free_port()
    url = f"http://127.0.0.1:{port}{LIVENESS_PATH}"
    h, clock = health()
    async with cluster() as (_k8s, api):
        rec = make_reconciler(api, ScriptedTelemetry())
        settings = OperatorSettings(liveness_endpoint=liveness_endpoint("127.0.0.1", port))
        async with operator_thread(rec, api, settings, health=h):
            clock.advance(1e6)
            body = await probed(url, 200)
    assert body["reconcile"]["healthy"] is True and body["reconcile"]["served_objects"] == 0
    assert body["prometheus"]["reachable"] is None


@pytest.mark.asyncio
async def test_a_wedged_loop_fails_the_endpoint_and_a_finished_step_heals_it(caplog):
    port = find_free_port()
    url = f"http://127.0.0.1:{port}{LIVENESS_PATH}"
    h, clock = health(stall_intervals=5, stall_min_s=300)
    gate = Gate(ScriptedTelemetry(level=4.5))
    async with cluster() as (k8s, api):
        add_deployment(k8s, replicas=1)
        add_autoscaler(k8s)  # intervalSeconds 1: the limit is the 300 s floor
        rec = make_reconciler(api, h.watch_telemetry(gate))
        settings = OperatorSettings(liveness_endpoint=liveness_endpoint("127.0.0.1", port))
        try:
            with caplog.at_level(logging.ERROR, logger="kopf"):
                async with operator_thread(rec, api, settings, health=h):
                    # the first step hangs in its telemetry fetch: the loop serves one object, finishes nothing
                    await eventually(lambda: gate.entered.is_set() and h.loop().served_objects == 1)
                    clock.advance(301)
                    text = await probed(url, 500)
                    assert "served_objects" not in text  # kopf's error page, not a report
                    assert any("wedged: 1 HarmonyAutoscalers served" in r.getMessage() and "limit 300s" in
                               r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
                    gate.open.set()  # Prometheus answers: the step finishes
                    body = await probed(url, 200)
        finally:
            gate.open.set()
    loop, prometheus = body["reconcile"], body["prometheus"]
    assert loop["healthy"] is True and loop["served_objects"] == 1 and loop["stall_after_s"] == 300
    assert loop["last_step_age_s"] is not None and loop["last_step_age_s"] < 300
    assert prometheus["reachable"] is True and prometheus["reason"] == "ok"


@pytest.mark.asyncio
async def test_steps_that_report_the_objects_own_fault_are_progress():
    """An invalid spec or a missing target is put on the object's status each step: the loop is alive, and a
    restart would not fix the object."""
    port = find_free_port()
    url = f"http://127.0.0.1:{port}{LIVENESS_PATH}"
    h, clock = health()
    async with cluster() as (k8s, api):
        add_autoscaler(k8s, name="broken", minReplicas=10, maxReplicas=2)
        add_autoscaler(k8s, name="orphan", scaleTargetRef={"apiVersion": "apps/v1", "kind": "Deployment",
                                                           "name": "missing"})
        rec = make_reconciler(api, ScriptedTelemetry())
        settings = OperatorSettings(liveness_endpoint=liveness_endpoint("127.0.0.1", port))
        async with operator_thread(rec, api, settings, health=h):
            await eventually(lambda: h.loop().served_objects == 2)
            clock.advance(301)
            await eventually(lambda: h.loop().last_step_age_s == 0)  # a step finished at the new time
            body = await probed(url, 200)
    assert body["reconcile"]["healthy"] is True and body["reconcile"]["failed_steps"] == 0


# --- the command line (here, beside the settings it builds) ---------------------------------------------

def test_operator_options_build_the_liveness_settings():
    from harmony.cli.operator import operator_settings

    settings = operator_settings(None, None, None, "127.0.0.1", 9100, 4, priority=1,
                                 liveness=liveness_endpoint("127.0.0.1", 8181),
                                 health=HealthSettings(stall_intervals=7, stall_min_s=60))
    assert settings.liveness_endpoint == "http://127.0.0.1:8181/healthz"
    assert settings.health == HealthSettings(7, 60)
    plain = operator_settings(None, None, None, "127.0.0.1", 9100, 4, priority=1)
    assert plain.liveness_endpoint is None and plain.health == HealthSettings()  # embedders opt in


def test_out_of_range_liveness_options_are_refused():
    from typer.testing import CliRunner

    from harmony.cli.main import app

    runner = CliRunner()
    for args in (["--liveness-port", "0"], ["--liveness-port", "70000"], ["--stall-intervals", "0.5"],
                 ["--stall-min-seconds", "0"]):
        result = runner.invoke(app, ["operator", "run", *args])
        assert result.exit_code == 2, (args, result.output)


def test_version():
    from typer.testing import CliRunner

    from harmony import __version__
    from harmony.cli.main import app

    result = CliRunner().invoke(app, ["--version"])
    assert (result.exit_code, result.output) == (0, f"harmony {__version__}\n")
    result = CliRunner().invoke(app, ["--version", "evaluate", "--models", "no-such-model"])
    assert (result.exit_code, result.output) == (0, f"harmony {__version__}\n")  # eager: nothing else runs
