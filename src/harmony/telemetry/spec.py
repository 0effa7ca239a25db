"""The telemetry half of a `HarmonyAutoscaler` spec: its indicators and its Prometheus access, and the field
readers every spec field is checked with.

Here, below the operator, because two layers read the same fields: the operator's `parse_spec`
(harmony.operator.spec, which re-exports these names) and the `prometheus` dataset source, which reads the
indicators of an autoscaler YAML (or of an indicators file) so that `harmony backtest|train|evaluate|
calibrate` see exactly the series the operator would query. One parser, one set of messages: errors are
`InvalidSpec`, whose message starts with the field path at fault (`spec.indicators[1].query: ...`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harmony.errors import HarmonyInputError

INDICATOR_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.]*$")
MAX_INDICATORS = 32
MAX_LEVEL = 5
# Defaults, equal to the CRD's (tests/test_crd.py checks them against the YAML).
DEFAULT_LEVEL = 1
DEFAULT_INTERVAL_S = 30

_REQUIRED = object()


class InvalidSpec(HarmonyInputError):
    """A HarmonyAutoscaler spec the operator cannot act on. `path` is the field at fault
    (`spec.indicators[1].query`); the message is `path: problem`, one line."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class IndicatorSpec:
    """One telemetry series: a name (the indicator's key in the TelemetryFrame), a PromQL query returning
    one series, its hierarchy level (1 = service demand, 2 = compute/memory, 3 = I/O/network, ...) and
    whether it is the demand the replicas are provisioned for."""

    name: str
    query: str
    level: int = DEFAULT_LEVEL
    demand: bool = False


# --- field readers: each names the field path in its error -----------------------------------------------
def mapping(value: Any, path: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise InvalidSpec(path, f"must be an object, got {type(value).__name__}")
    return value


def known(obj: Mapping, path: str, fields: Sequence[str]) -> None:
    # Typos (`maxReplica`) would otherwise fall back to defaults silently; the API server prunes them instead.
    for key in obj:
        if key not in fields:
            raise InvalidSpec(f"{path}.{key}", f"unknown field; known: {', '.join(fields)}")


def field_value(obj: Mapping, key: str, path: str, default: Any = _REQUIRED) -> Any:
    value = obj.get(key)
    if value is None:
        if default is _REQUIRED:
            raise InvalidSpec(f"{path}.{key}", "required")
        return default
    return value


def integer(obj: Mapping, key: str, path: str, default: Any = _REQUIRED, minimum: int | None = None,
         maximum: int | None = None) -> int | None:
    value = field_value(obj, key, path, default)
    if value is None:
        return None
    where = f"{path}.{key}"
    # bool is an int in Python, not in the schema; an integral float (30.0) is what some JSON encoders send
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            isinstance(value, float) and not value.is_integer()):
        raise InvalidSpec(where, f"must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise InvalidSpec(where, f"must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise InvalidSpec(where, f"must be <= {maximum}, got {value}")
    return value


def number(obj: Mapping, key: str, path: str, default: Any = _REQUIRED, minimum: float | None = None,
           exclusive_minimum: float | None = None, exclusive_maximum: float | None = None,
           maximum: float | None = None) -> float | None:
    value = field_value(obj, key, path, default)
    if value is None:
        return None
    where = f"{path}.{key}"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidSpec(where, f"must be a finite number, got {value!r}")
    value = float(value)
    if minimum is not None and value < minimum:
        raise InvalidSpec(where, f"must be >= {minimum:g}, got {value:g}")
    if exclusive_minimum is not None and value <= exclusive_minimum:
        raise InvalidSpec(where, f"must be > {exclusive_minimum:g}, got {value:g}")
    if exclusive_maximum is not None and value >= exclusive_maximum:
        raise InvalidSpec(where, f"must be < {exclusive_maximum:g}, got {value:g}")
    if maximum is not None and value > maximum:
        raise InvalidSpec(where, f"must be <= {maximum:g}, got {value:g}")
    return value


def string(obj: Mapping, key: str, path: str, default: Any = _REQUIRED, max_length: int | None = None) -> str | None:
    value = field_value(obj, key, path, default)
    if value is None:
        return None
    where = f"{path}.{key}"
    if not isinstance(value, str):
        raise InvalidSpec(where, f"must be a string, got {value!r}")
    if not value.strip():
        raise InvalidSpec(where, "must not be empty")
    if max_length is not None and len(value) > max_length:
        raise InvalidSpec(where, f"must be at most {max_length} characters, got {len(value)}")
    return value


def boolean(obj: Mapping, key: str, path: str, default: bool) -> bool:
    value = field_value(obj, key, path, default)
    if not isinstance(value, bool):
        raise InvalidSpec(f"{path}.{key}", f"must be true or false, got {value!r}")
    return value


def parse_indicators(items: Any, path: str = "spec.indicators") -> tuple[IndicatorSpec, ...]:
    """Validate a list of spec-shaped indicators (`path` names it in errors): 1 to MAX_INDICATORS, unique
    names, exactly one `demand: true`. The operator parses `spec.indicators` with it, and the `prometheus`
    dataset source an autoscaler file's or an indicators file's, so offline and in-cluster reads agree."""
    if items is None:
        raise InvalidSpec(path, "required")
    if isinstance(items, str | bytes | Mapping) or not isinstance(items, Sequence):
        raise InvalidSpec(path, f"must be a list, got {type(items).__name__}")
    if not 1 <= len(items) <= MAX_INDICATORS:
        raise InvalidSpec(path, f"needs 1 to {MAX_INDICATORS} indicators, got {len(items)}")
    out: list[IndicatorSpec] = []
    for k, raw in enumerate(items):
        where = f"{path}[{k}]"
        item = mapping(raw, where)
        known(item, where, ("name", "query", "level", "demand"))
        name = string(item, "name", where, max_length=63)
        if not INDICATOR_NAME.match(name):
            raise InvalidSpec(f"{where}.name", f"{name!r} must match {INDICATOR_NAME.pattern}")
        if any(i.name == name for i in out):
            raise InvalidSpec(f"{where}.name", f"duplicate indicator name {name!r}")
        out.append(IndicatorSpec(name, string(item, "query", where, max_length=4096),
                                 integer(item, "level", where, DEFAULT_LEVEL, 1, MAX_LEVEL),
                                 boolean(item, "demand", where, False)))
    demand = [i.name for i in out if i.demand]
    if len(demand) != 1:
        raise InvalidSpec(path,
                          f"exactly one indicator must have demand: true, got {len(demand)} ({', '.join(demand)})")
    return tuple(out)


@dataclass(frozen=True)
class PrometheusSpec:
    """`spec.prometheus`: the Prometheus this autoscaler's queries go to. url: its base URL (None: the
    operator's --prometheus-url). secret_name: a Secret in the autoscaler's own namespace holding its
    credentials (keys token, username, password, ca.crt, headers), or None for the operator's own."""

    url: str | None = None
    secret_name: str | None = None


def parse_prometheus(spec: Mapping) -> PrometheusSpec | None:
    """`spec.prometheus` of a spec mapping, or None when absent (the operator's own Prometheus and
    credentials)."""
    path = "spec.prometheus"
    raw = spec.get("prometheus")
    if raw is None:
        return None
    block = mapping(raw, path)
    known(block, path, ("url", "secretRef"))
    url = string(block, "url", path, None, max_length=2048)
    if url is not None and not url.startswith(("http://", "https://")):
        raise InvalidSpec(f"{path}.url", "must start with http:// or https://")
    secret = None
    if block.get("secretRef") is not None:
        ref = mapping(block["secretRef"], f"{path}.secretRef")
        known(ref, f"{path}.secretRef", ("name",))
        secret = string(ref, "name", f"{path}.secretRef", max_length=253)
    return PrometheusSpec(url, secret)
