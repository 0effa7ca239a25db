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

import base64
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
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

_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")  # an HTTP token (RFC 9110)
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
    bearer_token: str | None = field(default=None, repr=False)
    """A bearer token itself (from a Secret), when there is no token file; never shown."""
    username: str | None = None
    """Basic-auth user; its password is `password` or the first line of `password_file`."""
    password: str | None = field(default=None, repr=False)
    password_file: str | None = None
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    """Further request headers, (name, value) pairs, e.g. `X-Scope-OrgID` for a multi-tenant Mimir or
    Thanos; never shown (they may carry credentials)."""
    max_points: int = MAX_POINTS_PER_SERIES - 1
    """Points per series one range query asks for at most: a longer span is split into consecutive
    queries (Prometheus refuses more than MAX_POINTS_PER_SERIES)."""

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise HarmonyInputError(f"prometheus url {redact_url(self.url)!r} must start with http:// or https://")
        if not self.timeout_s > 0:
            raise HarmonyInputError(f"prometheus timeout_s must be > 0, got {self.timeout_s}")
        if self.retries < 0:
            raise HarmonyInputError(f"prometheus retries must be >= 0, got {self.retries}")
        if self.backoff_s < 0 or self.backoff_max_s < 0:
            raise HarmonyInputError("prometheus backoff_s and backoff_max_s must be >= 0")
        if not 1 <= self.max_points <= MAX_POINTS_PER_SERIES:
            raise HarmonyInputError(f"prometheus max_points must lie in [1, {MAX_POINTS_PER_SERIES}], got "
                                    f"{self.max_points}")
        if self.bearer_token_file is not None and self.bearer_token is not None:
            raise HarmonyInputError("prometheus: give a bearer token or a token file, not both")
        if (self.password is not None or self.password_file is not None) != (self.username is not None) or (
                self.password is not None and self.password_file is not None):
            raise HarmonyInputError("prometheus basic auth needs a username and one password (or password file)")
        for name, value in self.headers:
            if not _HEADER_NAME.match(name) or "\n" in value or "\r" in value:
                raise HarmonyInputError(f"prometheus header {name!r}: not a valid header name and one-line value")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (0-based): backoff_s * 2**attempt, capped."""
        return min(self.backoff_s * 2.0**attempt, self.backoff_max_s)

    def insecure_token(self) -> bool:
        """True when a bearer token or a password would travel in clear text (an http:// URL): anyone on
        the path can read it and replay it against Prometheus (or, for a service-account token, the API
        server)."""
        secret = (self.bearer_token_file, self.bearer_token, self.password, self.password_file)
        return any(v is not None for v in secret) and self.url.lower().startswith("http://")


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
            log.warning("credentials (%s) are sent to %s over plain http: anyone on the network path can read "
                        "them; use an https:// Prometheus URL",
                        config.bearer_token_file or config.password_file or "from a Secret", self._shown)

    def query_range(self, query: str, start: datetime, end: datetime, step_s: float) -> pd.Series:
        """Evaluate `query` at start, start + step, ..., end; float values indexed by UTC timestamps.

        Naive datetimes are taken as UTC. Prometheus' "NaN" stays NaN; "+Inf"/"-Inf" become NaN (a rate
        over a zero-length or broken window is no usable number). A result of several series is summed
        per timestamp: a demand query normally aggregates already (`sum(rate(...))`), and an unaggregated
        one is summed rather than silently picking one of its series. As in PromQL's `sum`, a NaN in any
        series makes that timestamp NaN, and a series without a sample at a timestamp adds nothing.
        An empty result is an empty Series. A span of more than `config.max_points` steps is asked in
        consecutive chunks (`chunk_span`) that share no timestamp and skip none.
        """
        if not step_s > 0:
            raise HarmonyInputError(f"step_s must be > 0, got {step_s}")
        results: list[dict] = []
        for t0, t1 in chunk_span(_utc(start), _utc(end), step_s, self.config.max_points):
            params = {"query": query, "start": _unix(t0), "end": _unix(t1), "step": repr(float(step_s))}
            data = self._get_json("/api/v1/query_range", params, what=f"query {query!r}")
            if data.get("resultType") != "matrix":
                raise PrometheusError(
                    f"{self._shown}: query {query!r}: expected a matrix result, got {data.get('resultType')!r}",
                    transient=False, reason=BAD_RESPONSE,
                )
            results += data.get("result") or []
        return _sum_series(results, query)

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
        """The configured headers, then the credentials (token files are read on every request: rotated
        files are picked up)."""
        config = self.config
        headers = dict(config.headers)
        token = config.bearer_token
        if config.bearer_token_file is not None:
            token = self._read_secret_file(config.bearer_token_file, "bearer token file")
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if config.username is not None:
            password = config.password
            if config.password_file is not None:
                password = self._read_secret_file(config.password_file, "password file")
            pair = base64.b64encode(f"{config.username}:{password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {pair}"
        return headers

    def _read_secret_file(self, path: str, what: str) -> str:
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read().strip()
        except OSError as exc:
            raise PrometheusError(f"{self._shown}: {what} {path}: {exc.strerror}", transient=False,
                                  reason=AUTH_FAILED) from exc

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


def chunk_span(start: pd.Timestamp, end: pd.Timestamp, step_s: float,
               max_points: int) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """[start, end] as consecutive (start, end) range-query spans of at most `max_points` evaluation points
    each: chunk k starts one step after chunk k-1's last point, so joined they hold every point of the span
    once. A span that fits is one chunk."""
    step = pd.Timedelta(seconds=step_s)
    chunks = []
    first = start
    while first <= end:
        last = min(first + (max_points - 1) * step, end)
        chunks.append((first, last))
        first = first + max_points * step
    return chunks or [(start, end)]


def tls_verify(ca_file: str | os.PathLike | None, insecure_skip_verify: bool, *, ca_flag: str = "--ca-file",
               insecure_flag: str = "--insecure-skip-verify") -> bool | str:
    """`PrometheusConfig.verify_tls` from a CA file and a skip-verify switch, refusing what would fail every
    request later (a CA bundle that is not there) or silently mean something else (both: no verification).
    The flags' names (`ca_flag`, `insecure_flag`) are those the caller's user typed."""
    if ca_file is not None and insecure_skip_verify:
        raise HarmonyInputError(f"{ca_flag} and {insecure_flag} contradict each other (skipping "
                                "verification would ignore the CA bundle): give one of them")
    if insecure_skip_verify:
        return False
    if ca_file is None:
        return True
    if not os.path.isfile(ca_file) or not os.access(ca_file, os.R_OK):
        raise HarmonyInputError(f"{ca_flag} {ca_file}: no readable file there (is its volume mounted?)")
    return str(ca_file)


#: The keys of a Secret named by `spec.prometheus.secretRef` (each optional).
SECRET_KEYS = ("token", "username", "password", "ca.crt", "headers")


@dataclass(frozen=True)
class PrometheusAccess:
    """One autoscaler's Prometheus credentials, read from a Secret in its namespace: a bearer token, basic
    auth, further headers, a CA bundle (PEM). Hashable, so clients can be cached per access; never shown."""

    token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_pem: str | None = field(default=None, repr=False)
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @classmethod
    def from_secret_data(cls, data: Mapping[str, str] | None, where: str) -> PrometheusAccess:
        """From a Secret's `data` (base64 values, as the API returns them). `where` names the Secret in
        errors, which name keys and never values. `headers` is a YAML or JSON map of header to value."""
        data = dict(data or {})
        unknown = sorted(set(data) - set(SECRET_KEYS))
        if unknown:
            raise HarmonyInputError(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(SECRET_KEYS)}")
        text = {}
        for key, value in data.items():
            try:
                text[key] = base64.b64decode(value, validate=True).decode("utf-8")
            except (ValueError, TypeError):
                raise HarmonyInputError(f"{where}: key {key!r} is not base64 of UTF-8 text") from None
        headers = ()
        if text.get("headers", "").strip():
            import yaml  # a JSON map is YAML too

            try:
                parsed = yaml.safe_load(text["headers"])
            except yaml.YAMLError:
                parsed = None
            if not isinstance(parsed, Mapping) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()):
                raise HarmonyInputError(f"{where}: key 'headers' must be a YAML or JSON map of header names to "
                                        "string values")
            headers = tuple(sorted(parsed.items()))
        if ("password" in text) != ("username" in text):
            raise HarmonyInputError(f"{where}: basic auth needs both keys 'username' and 'password'")
        token = text.get("token", "").strip() or None
        return cls(token, text.get("username"), text.get("password"), text.get("ca.crt"), headers)

    def config(self, base: PrometheusConfig, url: str | None = None) -> PrometheusConfig:
        """`base` (the operator's own settings) with this access, at `url` when given: the Secret's token
        replaces the operator's, its headers are added to the operator's, its CA replaces the TLS setting."""
        changes: dict = {"url": url or base.url, "headers": tuple(dict((*base.headers, *self.headers)).items())}
        if self.token is not None:
            changes.update(bearer_token=self.token, bearer_token_file=None)
        if self.username is not None:
            changes.update(username=self.username, password=self.password, password_file=None)
        if self.ca_pem is not None:
            changes["verify_tls"] = ca_bundle_file(self.ca_pem)
        return dataclasses.replace(base, **changes)


class ClientPool:
    """Clients for autoscalers with a Prometheus access of their own (spec.prometheus), over the operator's
    client: one per (URL, access), kept while used (least recently used beyond `size` are dropped), so
    connections are pooled per server and a rotated Secret gets a fresh client."""

    def __init__(self, base: PrometheusClient, size: int = 256) -> None:
        self.base = base
        self.client = functools.lru_cache(maxsize=size)(self._build)

    def _build(self, url: str | None, access: PrometheusAccess) -> PrometheusClient:
        return PrometheusClient(access.config(self.base.config, url), sleep=self.base.sleep)


def ca_bundle_file(pem: str) -> str:
    """A file holding `pem` (requests verifies against a path, a Secret gives the text): one per content,
    in a folder only this user can read, written once and reused."""
    folder = os.path.join(tempfile.gettempdir(), f"harmony-ca-{os.getuid()}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    path = os.path.join(folder, hashlib.sha256(pem.encode()).hexdigest()[:32] + ".crt")
    if not os.path.isfile(path):
        partial = f"{path}.{os.getpid()}.tmp"
        with open(partial, "w", encoding="utf-8") as fh:
            fh.write(pem)
        os.replace(partial, path)  # atomic: a concurrent step never reads half a bundle
    return path


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
    try:
        frame = grid_frame(client, indicators, index, step, series)
    except PrometheusError as exc:
        if not exc.transient:
            raise
        return TelemetryWindow(None, True, f"prometheus-unavailable: {exc}")
    observed = ~np.isnan(frame.values[:, 0, :])
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


def grid_frame(client: PrometheusClient, indicators: Sequence[tuple[str, str, int]], index: pd.DatetimeIndex,
               step: pd.Timedelta, series: str = "0") -> TelemetryFrame:
    """One range query per (name, PromQL, level) over the regular grid `index` (UTC, `step` apart), as a
    one-series TelemetryFrame (unit "1": PromQL carries none). A grid point without a sample is NaN; nothing
    is filled. Raises PrometheusError as `query_range` does."""
    values = np.full((len(index), 1, len(indicators)), np.nan)
    for i, (_name, query, _level) in enumerate(indicators):
        result = client.query_range(query, index[0].to_pydatetime(), index[-1].to_pydatetime(),
                                    step.total_seconds())
        values[:, 0, i] = _on_grid(result, index, step)
    return TelemetryFrame(index, values, [series], [Indicator(name, level, "1") for name, _query, level in indicators],
                          interval=step, source=redact_url(client.config.url))


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
