"""Prometheus as a telemetry source: range queries over the HTTP API, assembled into a TelemetryFrame.

Two layers, as STYLE.md asks (boundaries are parameters, the wrapper is what tests fake):
- `PrometheusClient` speaks the HTTP API (`/api/v1/query_range`, `/-/ready`) with `requests`, retrying only
  what may pass by itself (connection errors, timeouts, 5xx, 429) with capped exponential backoff.
- `fetch_telemetry` turns one query per indicator into a one-series `TelemetryFrame` on a regular grid and
  says whether the window is fit to decide on. It never raises for an unavailable Prometheus or stale or
  missing telemetry: it returns a `TelemetryWindow` with `stale=True` and a reason, and the operator holds
  the replica count (scaling on old or absent numbers is worse than not scaling).

Credentials in the URL (`http://user:pass@prometheus:9090`) are used for the requests (requests sends
them as basic auth) but never shown: every message built here names the server by `redact_url`, the one
redaction used wherever a URL can reach a status condition, a log line or the health probe.

Reference: https://prometheus.io/docs/prometheus/latest/querying/api/ (result format, "NaN"/"+Inf" values,
error payloads, status codes: 400 bad parameters, 422 expression cannot be executed, 503 timeout/abort).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import requests

from harmony.errors import HarmonyInputError
from harmony.telemetry.frame import Gap, Indicator, TelemetryFrame

#: Statuses worth another try: the server is overloaded, restarting or behind a failing proxy.
#: Other 4xx (400 bad_data, 422 execution error, 401/403 auth) fail the same way every time.
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
#: Statuses of a refused query (PromQL syntax, bad parameters, too many points, an expression that cannot run).
REJECTED_STATUS = frozenset({400, 422})
#: Statuses of refused credentials.
AUTH_STATUS = frozenset({401, 403})

#: Points one range query may return per series: Prometheus refuses `(end - start) / step > 11000` with a 400
#: ("exceeded maximum resolution of 11,000 points per timeseries"). A spec must stay within it.
MAX_POINTS_PER_SERIES = 11_000

#: Why a request failed, as a short stable tag (condition reasons and metric labels are built from it, so the
#: set is fixed): the server did not answer or answered 5xx/429 (transient); it refused the query (400/422);
#: it refused the credentials (401/403, or the token file is unreadable); it answered something that is not
#: the Prometheus API (HTML from a proxy or login page, garbage JSON, another result type); anything else.
UNAVAILABLE, QUERY_REJECTED, AUTH_FAILED, BAD_RESPONSE, QUERY_FAILED = (
    "prometheus-unavailable", "query-rejected", "auth-failed", "bad-response", "query-failed")
ERROR_REASONS = (UNAVAILABLE, QUERY_REJECTED, AUTH_FAILED, BAD_RESPONSE, QUERY_FAILED)

log = logging.getLogger("harmony.telemetry")

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s?#@]*(?:@[^/\s?#@]*)*@")


def redact_url(text: str) -> str:
    """`text` with the credentials of every URL in it replaced: `http://user:pass@host/x` -> `http://***@host/x`.

    The one redaction for anything that may carry a Prometheus URL into a status condition, a log line, the
    health probe or an error message; the rest of the URL stays, since it says which server failed."""
    return _USERINFO.sub(r"\1***@", str(text))


class PrometheusError(Exception):
    """A request to Prometheus failed. The message is one line naming the URL (credentials redacted), the
    query and the cause.

    transient: True when another try later may succeed (unreachable, timeout, 5xx, 429) - the operator
    holds and retries next interval; False for errors that repeat until someone fixes the configuration
    (a bad query, a 4xx, a response that is not the Prometheus API).
    reason: one of ERROR_REASONS (default: "prometheus-unavailable" when transient, else "query-failed").
    """

    def __init__(self, message: str, *, transient: bool, reason: str | None = None) -> None:
        super().__init__(redact_url(message))
        self.transient = transient
        self.reason = reason or (UNAVAILABLE if transient else QUERY_FAILED)


@dataclass(frozen=True)
class PrometheusConfig:
    """Where and how to reach Prometheus."""

    url: str
    """Base URL of the server, e.g. `http://prometheus.monitoring:9090` (a path prefix is kept)."""
    timeout_s: float = 5.0
    """Connect and read timeout of one request, in seconds."""
    retries: int = 3
    """Further tries after a transient failure (so at most `1 + retries` requests per call)."""
    backoff_s: float = 0.5
    """Wait before the first retry, in seconds; doubles for each further retry."""
    backoff_max_s: float = 8.0
    """Cap on one wait between retries, in seconds."""
    bearer_token_file: str | None = None
    """File holding a bearer token sent as `Authorization: Bearer ...`; read on every request so that a
    rotated token (a projected service-account token) is picked up without a restart."""
    verify_tls: bool | str = True
    """Verify the server's certificate: True (system CAs), False (don't), or a CA bundle path."""

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise HarmonyInputError(f"prometheus url {redact_url(self.url)!r} must start with http:// or https://")
        if not self.timeout_s > 0:
            raise HarmonyInputError(f"prometheus timeout_s must be > 0, got {self.timeout_s}")
        if self.retries < 0:
            raise HarmonyInputError(f"prometheus retries must be >= 0, got {self.retries}")
        if self.backoff_s < 0 or self.backoff_max_s < 0:
            raise HarmonyInputError("prometheus backoff_s and backoff_max_s must be >= 0")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (0-based): backoff_s * 2**attempt, capped."""
        return min(self.backoff_s * 2.0**attempt, self.backoff_max_s)

    def insecure_token(self) -> bool:
        """True when a bearer token would travel in clear text (a token file and an http:// URL): anyone on
        the path can read it and replay it against Prometheus (or, for a service-account token, the API
        server)."""
        return self.bearer_token_file is not None and self.url.lower().startswith("http://")


class PrometheusClient:
    """The Prometheus HTTP API, as much of it as harmony needs.

    session: a `requests.Session` (connection pooling; tests may pass their own). sleep: waits between
    retries (tests pass a recorder instead of waiting).
    """

    def __init__(
        self,
        config: PrometheusConfig,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.session = session if session is not None else requests.Session()
        self.sleep = sleep
        self._base = config.url.rstrip("/")
        self._shown = redact_url(self._base)  # how messages name the server
        if config.insecure_token():
            # once per client, i.e. once per process start: the token is sent anyway (a Prometheus inside the
            # cluster network is a common, deliberate setup), but nobody should be surprised by it
            log.warning("a bearer token (%s) is sent to %s over plain http: anyone on the network path can read "
                        "it; use an https:// Prometheus URL", config.bearer_token_file, self._shown)

    def query_range(self, query: str, start: datetime, end: datetime, step_s: float) -> pd.Series:
        """Evaluate `query` at start, start + step, ..., end; float values indexed by UTC timestamps.

        Naive datetimes are taken as UTC. Prometheus' "NaN" stays NaN; "+Inf"/"-Inf" become NaN (a rate
        over a zero-length or broken window is no usable number). A result of several series is summed
        per timestamp: a demand query normally aggregates already (`sum(rate(...))`), and an unaggregated
        one is summed rather than silently picking one of its series. As in PromQL's `sum`, a NaN in any
        series makes that timestamp NaN, and a series without a sample at a timestamp adds nothing.
        An empty result is an empty Series.
        """
        if not step_s > 0:
            raise HarmonyInputError(f"step_s must be > 0, got {step_s}")
        t0, t1 = _utc(start), _utc(end)
        params = {"query": query, "start": _unix(t0), "end": _unix(t1), "step": repr(float(step_s))}
        data = self._get_json("/api/v1/query_range", params, what=f"query {query!r}")
        if data.get("resultType") != "matrix":
            raise PrometheusError(
                f"{self._shown}: query {query!r}: expected a matrix result, got {data.get('resultType')!r}",
                transient=False, reason=BAD_RESPONSE,
            )
        return _sum_series(data.get("result") or [], query)

    def healthy(self) -> bool:
        """True when Prometheus answers its readiness endpoint (`/-/ready`) with 200; no retries."""
        try:
            response = self.session.get(
                self._base + "/-/ready", headers=self._headers(), timeout=self.config.timeout_s,
                verify=self.config.verify_tls,
            )
        except (requests.RequestException, PrometheusError):
            return False
        return response.status_code == 200

    # ----------------------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        path = self.config.bearer_token_file
        if path is None:
            return {}
        try:
            with open(path, encoding="utf-8") as fh:
                token = fh.read().strip()
        except OSError as exc:
            raise PrometheusError(f"{self._shown}: bearer token file {path}: {exc.strerror}", transient=False,
                                  reason=AUTH_FAILED) from exc
        return {"Authorization": f"Bearer {token}"}

    def _get_json(self, path: str, params: dict[str, str], *, what: str) -> dict:
        """GET with retries on transient failures; the `data` member of a successful API response."""
        url = self._base + path
        attempt = 0
        while True:
            try:
                return self._get_once(url, params, what=what)
            except PrometheusError as exc:
                if not exc.transient or attempt >= self.config.retries:
                    if exc.transient and attempt:
                        raise PrometheusError(f"{exc} (after {attempt + 1} tries)", transient=True,
                                              reason=exc.reason) from exc
                    raise
            self.sleep(self.config.backoff(attempt))
            attempt += 1

    def _get_once(self, url: str, params: dict[str, str], *, what: str) -> dict:
        where = f"{self._shown}: {what}"
        try:
            response = self.session.get(
                url, params=params, headers=self._headers(), timeout=self.config.timeout_s,
                verify=self.config.verify_tls,
            )
        except requests.Timeout as exc:  # before ConnectionError: ConnectTimeout is both
            raise PrometheusError(f"{where}: timed out after {self.config.timeout_s:g}s", transient=True) from exc
        except requests.ConnectionError as exc:
            raise PrometheusError(f"{where}: connection failed ({_cause(exc)})", transient=True) from exc
        except requests.RequestException as exc:
            raise PrometheusError(f"{where}: request failed ({_cause(exc)})", transient=False) from exc
        except OSError as exc:  # requests' own checks, e.g. a --ca-file path that is gone: not a RequestException
            raise PrometheusError(f"{where}: request failed ({_one_line(str(exc), 200)})", transient=False) from exc
        try:
            body = response.json()
        except (ValueError, json.JSONDecodeError):
            body = None
        if response.status_code != 200:
            detail = _api_error(body) or _one_line(response.text, 200) or response.reason
            status = response.status_code
            reason = (UNAVAILABLE if status in RETRYABLE_STATUS else QUERY_REJECTED if status in REJECTED_STATUS
                      else AUTH_FAILED if status in AUTH_STATUS else QUERY_FAILED)
            raise PrometheusError(f"{where}: HTTP {status}: {detail}", transient=status in RETRYABLE_STATUS,
                                  reason=reason)
        if not isinstance(body, dict):
            raise PrometheusError(
                f"{where}: response is not Prometheus API JSON: {_one_line(response.text, 120)!r}", transient=False,
                reason=BAD_RESPONSE,
            )
        if body.get("status") != "success":
            raise PrometheusError(f"{where}: {_api_error(body) or 'status ' + repr(body.get('status'))}",
                                  transient=False, reason=BAD_RESPONSE)
        data = body.get("data")
        if not isinstance(data, dict):
            raise PrometheusError(f"{where}: response has no 'data' object", transient=False, reason=BAD_RESPONSE)
        return data


@dataclass
class TelemetryWindow:
    """The outcome of one telemetry fetch.

    frame: one series on a regular grid (None when Prometheus could not be asked). stale: True when the
    window must not drive a scaling decision. reason: "ok", or why it is stale, starting with one of
    "prometheus-unavailable", "telemetry-missing", "telemetry-stale" (stable prefixes for conditions and
    metrics). gaps: every gap found, marked `filled` where interpolated.
    """

    frame: TelemetryFrame | None
    stale: bool
    reason: str
    gaps: tuple[Gap, ...] = ()


def stale_after_s(interval_s: float) -> float:
    """Telemetry whose newest demand sample is older than three intervals is stale: a scrape may miss once
    or twice, a third miss means the source is gone. The operator and the backtest's replay apply it alike."""
    return max(3.0 * interval_s, 3.0)


def fetch_telemetry(
    client: PrometheusClient,
    indicators: Sequence[tuple[str, str, int]],
    end: datetime,
    steps: int,
    step_s: float,
    stale_after_s: float,
    *,
    series: str = "0",
    max_gap_steps: int = 3,
    demand: str | None = None,
) -> TelemetryWindow:
    """Fetch `steps` points per indicator ending at `end` (floored to the step) into a TelemetryFrame.

    indicators: (name, PromQL query, hierarchy level), in the order the frame keeps (a trained model's order);
    `demand` names the indicator whose freshness decides staleness (default: the first). Each query runs
    once over the grid floor(end) - (steps - 1) * step .. floor(end),
    grid-aligned so that consecutive fetches see the same timestamps. Interior gaps of up to
    `max_gap_steps` steps are interpolated (`TelemetryFrame.fill_gaps`); longer ones stay NaN.

    The window is stale (never an exception), checked in this order, when:
    - a query fails transiently after the client's retries: "prometheus-unavailable: <cause>", frame None;
    - an indicator has no sample in the window: "telemetry-missing: <name>" (also the demand indicator: an
      empty result usually means a wrong metric name or a workload that is gone);
    - the newest demand sample is more than `stale_after_s` older than `end`: "telemetry-stale: ...".
      Choose stale_after_s above step_s plus the scrape interval (the grid floor alone ages a sample by up
      to one step). A target that disappears is seen at once (Prometheus writes staleness markers); a
      sample that merely stops arriving stays visible for Prometheus' lookback delta (5 min by default).

    Raises PrometheusError (transient=False, `reason` one of ERROR_REASONS) for errors that repeat until the
    configuration is fixed: a query Prometheus rejects (400/422: PromQL syntax, too many points), auth
    failures, a response that is not the Prometheus API. Holding quietly would hide them; the operator
    reports them on the object (ForecastReady=False with that reason).
    Raises HarmonyInputError for bad arguments (no indicators, steps < 1, step_s <= 0).
    """
    if not indicators:
        raise HarmonyInputError("fetch_telemetry needs at least one indicator")
    if steps < 1 or not step_s > 0:
        raise HarmonyInputError(f"steps must be >= 1 and step_s > 0, got steps={steps}, step_s={step_s}")
    end_ts = _utc(end)
    step = pd.Timedelta(seconds=step_s)
    grid_end = pd.Timestamp(end_ts.value // step.value * step.value, unit="ns", tz="UTC")
    index = pd.date_range(end=grid_end, periods=steps, freq=step)
    values = np.full((steps, 1, len(indicators)), np.nan)
    for i, (_name, query, _level) in enumerate(indicators):
        try:
            result = client.query_range(query, index[0].to_pydatetime(), grid_end.to_pydatetime(), step_s)
        except PrometheusError as exc:
            if not exc.transient:
                raise
            return TelemetryWindow(None, True, f"prometheus-unavailable: {exc}")
        values[:, 0, i] = _on_grid(result, index, step)
    frame = TelemetryFrame(
        index, values, [series], [Indicator(name, level, "1") for name, _query, level in indicators],
        interval=step, source=redact_url(client.config.url),
    )
    observed = ~np.isnan(values[:, 0, :])
    for i, (name, _query, _level) in enumerate(indicators):
        if not observed[:, i].any():
            return TelemetryWindow(frame, True, f"telemetry-missing: {name}")
    names = [name for name, _query, _level in indicators]
    if demand is not None and demand not in names:
        raise HarmonyInputError(f"demand indicator {demand!r} is not among the indicators {names}")
    d = names.index(demand) if demand is not None else 0
    last = index[int(np.flatnonzero(observed[:, d])[-1])]
    age_s = (end_ts - last).total_seconds()
    filled, gaps = frame.fill_gaps(max_gap_steps)
    if age_s > stale_after_s:
        # Old demand numbers would scale for a load that may be long gone: hold instead.
        reason = f"telemetry-stale: newest {names[d]} sample is {age_s:.1f}s old (limit {stale_after_s:g}s)"
        return TelemetryWindow(filled, True, reason, tuple(gaps))
    return TelemetryWindow(filled, False, "ok", tuple(gaps))


# --------------------------------------------------------------------------------------------------
def _utc(t: datetime | pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(t)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _unix(ts: pd.Timestamp) -> str:
    """Unix seconds with millisecond precision (what Prometheus resolves)."""
    ms = ts.value // 1_000_000
    return f"{ms // 1000}.{ms % 1000:03d}"


def _float(text) -> float:
    value = float(text)  # Prometheus sends "NaN", "+Inf", "-Inf" as strings; float() reads all three
    return value if math.isfinite(value) else math.nan


def _sum_series(result: list[dict], query: str) -> pd.Series:
    stamps: list[float] = []
    values: list[float] = []
    for item in result:
        for ts, text in item.get("values") or []:
            stamps.append(float(ts))
            values.append(_float(text))
    if not stamps:
        return pd.Series([], index=pd.DatetimeIndex([], tz="UTC"), dtype=np.float64, name=query)
    ms = np.round(np.asarray(stamps) * 1000).astype(np.int64)
    frame = pd.DataFrame({"t": ms, "v": values})
    frame["nan"] = frame["v"].isna()
    grouped = frame.groupby("t", sort=True)
    total = grouped["v"].sum()
    total[grouped["nan"].any()] = np.nan  # NaN + x is NaN, as in PromQL
    total.index = pd.to_datetime(total.index.to_numpy(), unit="ms", utc=True)
    total.index.name = None
    return total.astype(np.float64).rename(query)


def _on_grid(result: pd.Series, index: pd.DatetimeIndex, step: pd.Timedelta) -> np.ndarray:
    """Values of `result` placed on `index` by nearest grid position; off-grid or absent points are NaN."""
    out = np.full(len(index), np.nan)
    if result.empty:
        return out
    offset = (result.index.as_unit("ns").asi8 - index[0].value) / step.value
    pos = np.round(offset).astype(np.int64)
    keep = (pos >= 0) & (pos < len(index)) & (np.abs(offset - pos) < 0.01)
    out[pos[keep]] = result.to_numpy()[keep]
    return out


def _api_error(body) -> str:
    """`errorType: error` from a Prometheus error payload, or "" when the body is not one."""
    if isinstance(body, dict) and body.get("error"):
        kind = body.get("errorType")
        return _one_line(f"{kind}: {body['error']}" if kind else str(body["error"]), 300)
    return ""


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _cause(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error, e.g. 'Connection refused'."""
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        seen = seen.__cause__ or seen.__context__
    text = getattr(seen, "strerror", None) or str(seen)
    if "Connection refused" in str(exc):
        text = "connection refused"
    return _one_line(text, 200)
