"""The operator's health: is the reconcile loop making progress, and does Prometheus answer?

kopf serves it: its liveness endpoint (`kopf.operator(liveness_endpoint=...)`, `--liveness-port`) answers
one JSON object of the `kopf.on.probe` handlers' results, and 500 when any handler raises. app.py registers
three handlers over one `Health`: `reconcile` raises when the loop is wedged, `prometheus` and `peering`
only report.

`Health` is the pure part. app.py tells it which objects are served (with their intervals) and when a
reconcile step finished; `watch_telemetry` wraps the telemetry source and keeps what the last fetch saw;
`loop()` and `telemetry()` return reports. The clock is a parameter (monotonic seconds), so tests move time
by hand instead of sleeping.

What counts as wedged (why each rule):
- Objects are served but no step finished for `stall_after_s` = max(stall_min_s, stall_intervals x the
  largest served interval). Steps run every interval; several missed in a row mean the steps hang (a
  Prometheus or API call without an answer, a worker pool full of such calls) or keep failing, which a
  restart may clear. The floor keeps short intervals from restarting a process over one slow refit.
- A step that returns counts as progress even when its Outcome carries an error (invalid spec, missing
  target): the loop ran and reported the object's own fault on its status; a restart cannot fix that and
  would only drop the in-memory forecasters. A step that raises is no progress.
- No objects served (none exist, or this replica stands by under peering): healthy, nothing is due.
- Prometheus being unreachable is reported, never failed: decisions hold the current count on stale
  telemetry by design, and restarting the operator does not bring Prometheus back.
- A peering problem is reported, never failed: kopf pausing this replica (another peer has the same
  priority, so kopf pauses both; a peer of a *different* shard has a higher one, because two shards share
  a peering name; the peering object does not exist) leaves objects unserved, but a restart would meet the
  same peers again. app.py's `watch_peering` reads the peering object and reports here
  (`peering_conflict`, `peering_resolved`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TypeVar

# harmony.telemetry.prometheus (pandas, requests) is imported where it is used: `harmony operator run --help`
# reads this module's defaults and should not pay for it

LIVENESS_ADDR = "0.0.0.0"
LIVENESS_PORT = 8080
LIVENESS_PATH = "/healthz"
UNAVAILABLE = "prometheus-unavailable"  # the TelemetryWindow reason prefix of a Prometheus that did not answer

F = TypeVar("F", bound=Callable)


@dataclass(frozen=True)
class HealthSettings:
    """stall_intervals: served objects' steps may all miss this many of the largest served interval
    before the loop counts as wedged. stall_min_s: and never fewer seconds than this (a refit, a slow
    Prometheus or a queue of objects due at once after a start can hold steps up for a minute or two)."""

    stall_intervals: float = 5.0
    stall_min_s: float = 300.0

    def __post_init__(self) -> None:
        if not self.stall_intervals > 0 or not self.stall_min_s > 0:
            raise ValueError(f"stall_intervals and stall_min_s must be > 0, got {self.stall_intervals}, "
                             f"{self.stall_min_s}")


@dataclass(frozen=True)
class LoopReport:
    """healthy: False when wedged. served_objects: objects whose daemons run here. waiting_s: seconds since
    the last finished step, or since serving began if none finished since (None: nothing served).
    last_step_age_s: seconds since the last finished step of any object (None: none yet). stall_after_s:
    the limit on waiting_s. failed_steps: steps that raised since the last finished one."""

    healthy: bool
    served_objects: int
    waiting_s: float | None
    last_step_age_s: float | None
    stall_after_s: float
    failed_steps: int

    def as_dict(self) -> dict:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class TelemetryReport:
    """reachable: whether Prometheus answered the last fetch (None: no fetch yet). reason: that fetch's
    outcome ("ok", or why its window was stale or the fetch raised). last_fetch_age_s,
    last_reachable_age_s: seconds since the last fetch and since the last one Prometheus answered."""

    reachable: bool | None
    reason: str
    last_fetch_age_s: float | None
    last_reachable_age_s: float | None

    def as_dict(self) -> dict:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class PeeringReport:
    """conflict: kopf paused this replica for a reason that will not pass by itself: "same-priority" (a peer
    with this replica's priority: kopf pauses every one of them), "other-shard" (a peer serving another
    shard outranks this one under a shared peering name, so this shard is never served) or "missing-object"
    (the peering object does not exist: kopf waits for it, paused), None when there is none. message:
    what is wrong, and what to change. since_s: seconds since it was first reported."""

    conflict: str | None
    message: str
    since_s: float | None

    def as_dict(self) -> dict:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


class Health:
    """The loop's progress and the last telemetry fetch, as the probes see them. Thread-safe: steps are
    recorded from the event loop, fetches from the reconcile worker threads."""

    def __init__(self, settings: HealthSettings | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings if settings is not None else HealthSettings()
        self.clock = clock
        self._lock = threading.Lock()
        self._intervals: dict[str, float] = {}  # uid -> interval (s) of each served object
        self._serving_since: float | None = None
        self._last_step: float | None = None
        self._failed = 0
        self._fetch: tuple[float, bool, str] | None = None  # (time, reachable, reason)
        self._last_reachable: float | None = None
        self._peering: tuple[float, str, str] | None = None  # (since, conflict, message)

    # --- the loop ------------------------------------------------------------------------------------
    def serving(self, uid: str, interval_s: float) -> None:
        """An object's daemon runs here with this interval (call again when the interval changes)."""
        with self._lock:
            if not self._intervals:
                self._serving_since = self.clock()
            self._intervals[uid] = float(interval_s)

    def stopped(self, uid: str) -> None:
        with self._lock:
            self._intervals.pop(uid, None)

    def step_finished(self) -> None:
        """A reconcile step returned (its Outcome, error or not, is on the object's status)."""
        with self._lock:
            self._last_step = self.clock()
            self._failed = 0

    def step_failed(self) -> None:
        """A reconcile step raised."""
        with self._lock:
            self._failed += 1

    def stall_after_s(self) -> float:
        with self._lock:
            return self._stall_after_s()

    def _stall_after_s(self) -> float:
        largest = max(self._intervals.values(), default=0.0)
        return max(self.settings.stall_min_s, self.settings.stall_intervals * largest)

    def loop(self) -> LoopReport:
        with self._lock:
            now = self.clock()
            limit = self._stall_after_s()
            age = None if self._last_step is None else now - self._last_step
            if not self._intervals:
                return LoopReport(True, 0, None, age, limit, self._failed)
            since = max(t for t in (self._last_step, self._serving_since) if t is not None)
            waiting = now - since
            return LoopReport(waiting <= limit, len(self._intervals), waiting, age, limit, self._failed)

    # --- telemetry -----------------------------------------------------------------------------------
    def fetched(self, reachable: bool, reason: str) -> None:
        """The outcome of one telemetry fetch."""
        with self._lock:
            now = self.clock()
            self._fetch = (now, reachable, reason)
            if reachable:
                self._last_reachable = now

    def watch_telemetry(self, source: F) -> F:
        """`source` (spec, now) -> TelemetryWindow, recording each fetch's outcome here. Costs no request:
        the probe reports what the reconcile steps' own fetches saw."""
        from harmony.telemetry.prometheus import PrometheusError

        def fetch(*args, **kwargs):
            try:
                window = source(*args, **kwargs)
            except PrometheusError as exc:  # not transient: Prometheus answered, refusing the query or credentials
                self.fetched(not exc.transient, _short(f"{type(exc).__name__}: {exc}"))
                raise
            except Exception as exc:
                self.fetched(False, _short(f"{type(exc).__name__}: {exc}"))
                raise
            reason = str(getattr(window, "reason", "") or "ok")
            self.fetched(not reason.startswith(UNAVAILABLE), _short(reason))
            return window

        return fetch  # type: ignore[return-value]

    # --- peering -------------------------------------------------------------------------------------
    def peering_conflict(self, conflict: str, message: str) -> None:
        """kopf paused this replica for `conflict` ("same-priority", "other-shard" or "missing-object")."""
        with self._lock:
            since = self._peering[0] if self._peering and self._peering[1] == conflict else self.clock()
            self._peering = (since, conflict, _short(message, 500))

    def peering_resolved(self) -> None:
        """kopf resumed (the conflicting peers are gone) or this replica works normally."""
        with self._lock:
            self._peering = None

    def peering(self) -> PeeringReport:
        with self._lock:
            if self._peering is None:
                return PeeringReport(None, "no peering conflict reported", None)
            since, conflict, message = self._peering
            return PeeringReport(conflict, message, self.clock() - since)

    def telemetry(self) -> TelemetryReport:
        with self._lock:
            now = self.clock()
            reachable_age = None if self._last_reachable is None else now - self._last_reachable
            if self._fetch is None:
                return TelemetryReport(None, "no telemetry fetched yet", None, None)
            at, reachable, reason = self._fetch
            return TelemetryReport(reachable, reason, now - at, reachable_age)


def _short(text: str, limit: int = 200) -> str:
    """One line of at most `limit` characters (an error may carry a whole HTML page), URL credentials redacted."""
    from harmony.telemetry.prometheus import redact_url

    line = " ".join(redact_url(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def liveness_endpoint(addr: str = LIVENESS_ADDR, port: int = LIVENESS_PORT, path: str = LIVENESS_PATH) -> str:
    """kopf's liveness endpoint URL for an address (IPv4, IPv6 or host name), port and path."""
    if not 1 <= port <= 65535:
        raise ValueError(f"liveness port must be in 1..65535, got {port}")  # kopf reads port 0 as port 80
    host = f"[{addr}]" if ":" in addr and not addr.startswith("[") else addr
    return f"http://{host}:{port}{path if path.startswith('/') else '/' + path}"
