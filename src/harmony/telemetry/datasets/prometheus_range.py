"""The user's own Prometheus as a dataset (`--dataset prometheus`): range queries of a HarmonyAutoscaler's
indicators over a time range, one series on a regular grid.

Offline commands (`harmony backtest|train|evaluate|calibrate`) then see exactly the series the operator
would query: the indicators are given as in a `HarmonyAutoscaler` spec (name, PromQL, level, demand),
read from an existing HarmonyAutoscaler YAML file (`--path` or `autoscaler=`: its indicators, intervalSeconds and
spec.prometheus.url) or from a YAML list of indicators (`indicators=`), and parsed by the operator's own
parser (`harmony.telemetry.spec.parse_indicators`). Credentials come from options (a Secret named by
spec.prometheus.secretRef is the cluster's; offline, the same token or password lives in a file).

Each query is asked in chunks under Prometheus' 11,000 points per series and retried with backoff
(`PrometheusClient`); a grid point without a sample is NaN (a gap the commands fill or count, never a
zero). Timestamps are UTC.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from harmony.errors import HarmonyInputError
from harmony.telemetry.datasets.base import DatasetSource
from harmony.telemetry.frame import TelemetryFrame
from harmony.telemetry.prometheus import (
    PrometheusClient,
    PrometheusConfig,
    PrometheusError,
    grid_frame,
    redact_url,
    tls_verify,
)
from harmony.telemetry.spec import (
    DEFAULT_INTERVAL_S,
    IndicatorSpec,
    InvalidSpec,
    field_value,
    integer,
    mapping,
    parse_indicators,
    parse_prometheus,
)

KIND = "HarmonyAutoscaler"
DEFAULT_START = "-7d"
DEFAULT_END = "now"
_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)(s|m|h|d|w)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _read_yaml(path: str, option: str) -> Any:
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            return list(yaml.safe_load_all(fh))
    except FileNotFoundError:
        raise HarmonyInputError(f"{path}: no such file (--option {option}=)") from None
    except OSError as exc:
        raise HarmonyInputError(f"{path}: cannot read ({exc.strerror}) (--option {option}=)") from None
    except yaml.YAMLError as exc:
        raise HarmonyInputError(f"{path}: not YAML ({' '.join(str(exc).split())[:200]})") from None


def autoscaler_spec(path: str) -> tuple[Mapping, str]:
    """The spec of the (first) HarmonyAutoscaler in a YAML file, and the object's name."""
    for doc in _read_yaml(path, "autoscaler"):
        if isinstance(doc, Mapping) and doc.get("kind") == KIND:
            try:
                spec = mapping(doc.get("spec"), "spec")
            except InvalidSpec as exc:
                raise HarmonyInputError(f"{path}: {exc}") from None
            name = (doc.get("metadata") or {}).get("name") if isinstance(doc.get("metadata"), Mapping) else None
            return spec, str(name or Path(path).stem)
    raise HarmonyInputError(f"{path}: no object of kind {KIND} in it (--option autoscaler=)")


def indicators_file(path: str) -> tuple[IndicatorSpec, ...]:
    """Spec-shaped indicators from a YAML file: a list, or a mapping with an `indicators` list."""
    docs = _read_yaml(path, "indicators")
    items = docs[0] if len(docs) == 1 else docs
    if isinstance(items, Mapping) and "indicators" in items:
        items = items["indicators"]
    try:
        return parse_indicators(items, "indicators")
    except InvalidSpec as exc:
        raise HarmonyInputError(f"{path}: {exc}") from None


def parse_time(value: Any, option: str, now: pd.Timestamp) -> pd.Timestamp:
    """RFC 3339 (naive: UTC), Unix seconds, `now`, or relative to now: `-30m`, `-6h`, `-14d`, `-2w`."""
    if isinstance(value, bool):
        raise HarmonyInputError(f"--option {option}={value}: not a time")
    if isinstance(value, int | float):
        return pd.Timestamp(float(value), unit="s", tz="UTC")
    text = str(value).strip()
    if text == "now":
        return now
    relative = _RELATIVE.match(text)
    if relative:
        return now - pd.Timedelta(seconds=float(relative.group(1)) * _UNIT_S[relative.group(2)])
    try:
        ts = pd.Timestamp(text)
    except ValueError:
        ts = None
    if ts is None or ts is pd.NaT:
        raise HarmonyInputError(f"--option {option}={text!r}: not a time (RFC 3339 such as 2026-01-05T00:00:00Z, "
                                "Unix seconds, now, or relative such as -6h, -14d)")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _headers(header: str | Sequence[str] | None) -> tuple[tuple[str, str], ...]:
    items = [header] if isinstance(header, str) else list(header or [])
    out = []
    for item in items:
        name, sep, value = str(item).partition(":")
        if not sep or not name.strip():
            raise HarmonyInputError(f"--option header={item!r} is not 'Name: value'")
        out.append((name.strip(), value.strip()))
    return tuple(out)


def load(
    path: Path | None,
    url: str | None = None,
    autoscaler: str | None = None,
    indicators: str | None = None,
    start: Any = DEFAULT_START,
    end: Any = DEFAULT_END,
    step: Any = None,
    series: str | None = None,
    token_file: str | None = None,
    username: str | None = None,
    password_file: str | None = None,
    header: str | Sequence[str] | None = None,
    ca_file: str | None = None,
    insecure_skip_verify: bool = False,
    now: pd.Timestamp | None = None,
) -> TelemetryFrame:
    """The indicators' range queries over [start, end] at `step` seconds, grid-aligned to the step.

    path (`--path`): a HarmonyAutoscaler YAML file, as `autoscaler` (give one of the two)."""
    if path is not None:
        if autoscaler is not None:
            raise HarmonyInputError("dataset 'prometheus': --path and --option autoscaler= both name the "
                                    "autoscaler file; give one")
        autoscaler = str(path)
    if (autoscaler is None) == (indicators is None):
        raise HarmonyInputError("dataset 'prometheus' needs --path FILE or --option autoscaler=FILE (a "
                                "HarmonyAutoscaler YAML), or else --option indicators=FILE (a YAML list of "
                                "indicators), not both")
    interval_s = DEFAULT_INTERVAL_S
    if autoscaler is not None:
        spec, name = autoscaler_spec(str(autoscaler))
        try:
            found = parse_indicators(field_value(spec, "indicators", "spec"))
            interval_s = integer(spec, "intervalSeconds", "spec", DEFAULT_INTERVAL_S, 1, 3600)
            access = parse_prometheus(spec)
        except InvalidSpec as exc:
            raise HarmonyInputError(f"{autoscaler}: {exc}") from None
        url = url or (access.url if access else None)
    else:
        found, name = indicators_file(str(indicators)), "prometheus"
    if url is None:
        raise HarmonyInputError("dataset 'prometheus' needs --option url=http://HOST:9090 (or spec.prometheus.url "
                                "in the autoscaler file)")
    step_s = interval_s if step is None else step
    if isinstance(step_s, bool) or not isinstance(step_s, int | float) or not step_s > 0:
        raise HarmonyInputError(f"--option step={step!r}: must be a positive number of seconds")
    now = now if now is not None else pd.Timestamp.now(tz="UTC")
    t0, t1 = parse_time(start, "start", now), parse_time(end, "end", now)
    step_td = pd.Timedelta(seconds=step_s)
    first = t0.ceil(step_td)
    last = t1.floor(step_td)
    if last < first:
        raise HarmonyInputError(f"--option start={start} .. end={end}: no {step_s:g} s step in the range")
    config = PrometheusConfig(
        url=str(url), bearer_token_file=token_file, username=username, password_file=password_file,
        headers=_headers(header), verify_tls=tls_verify(ca_file, bool(insecure_skip_verify),
                                                        ca_flag="--option ca-file",
                                                        insecure_flag="--option insecure-skip-verify"),
    )
    index = pd.date_range(first, last, freq=step_td)
    try:
        frame = grid_frame(PrometheusClient(config), [(i.name, i.query, i.level) for i in found], index, step_td,
                           series or name)
    except PrometheusError as exc:  # one line naming the server and the query; the commands exit 2 on it
        raise HarmonyInputError(f"dataset 'prometheus': {exc}") from None
    return TelemetryFrame(frame.index.tz_localize(None), frame.values, frame.series, frame.indicators,
                          interval=step_td, source=redact_url(str(url)))


SOURCE = DatasetSource(
    name="prometheus",
    description="your own Prometheus: a HarmonyAutoscaler's indicators as range queries over a time range",
    default_path="",
    loader=load,
    options={
        "url": "Prometheus base URL (default: the autoscaler file's spec.prometheus.url)",
        "autoscaler": "a HarmonyAutoscaler YAML file (or --path): its indicators, intervalSeconds, prometheus.url",
        "indicators": "a YAML list of spec-shaped indicators (name, query, level, demand), without autoscaler",
        "start": f"range start: RFC 3339, Unix seconds, or relative such as -14d (default {DEFAULT_START})",
        "end": f"range end: RFC 3339, Unix seconds, now, or relative (default {DEFAULT_END})",
        "step": "seconds between points (default: the spec's intervalSeconds, else 30)",
        "series": "the series' name (default: the autoscaler's name)",
        "token_file": "file holding a bearer token",
        "username": "basic-auth user (with password-file)",
        "password_file": "file holding the basic-auth password",
        "header": "a request header 'Name: value' (repeatable, e.g. header=X-Scope-OrgID: t1)",
        "ca_file": "CA bundle to verify TLS",
        "insecure_skip_verify": "true: do not verify TLS",
    },
    repeatable=frozenset({"header"}),
)
