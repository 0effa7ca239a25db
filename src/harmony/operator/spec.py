"""The `HarmonyAutoscaler` spec, parsed and re-validated into frozen dataclasses.

The CRD's OpenAPI schema (src/harmony/operator/crd/harmonyautoscaler.yaml) already rejects bad objects at admission, but
the operator may run against an API server that did not validate (the kmock emulator in tests, an older
CRD version, a CRD installed without its CEL rules), so `parse_spec` applies the same defaults and checks
every constraint again, plus two the schema cannot: that the baseline model name is known and that a
checkpoint file exists. Errors are `InvalidSpec`, whose message starts with the field path at fault
(`spec.indicators[1].query: ...`), ready for a status condition.

tests/test_crd.py reads the defaults and ranges back from the YAML and compares, so the two cannot drift.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from harmony.decision import behavior as bh
from harmony.decision.step import ControlSettings, cold_start_steps_of
from harmony.errors import HarmonyInputError
from harmony.forecasting.adapter import (  # shared with the backtest
    MAX_HISTORY_S,
    MAX_LOOKBACK_S,
    default_history_s,
    default_lookback_s,
)
from harmony.forecasting.predictors import build_predictor
from harmony.telemetry.prometheus import MAX_POINTS_PER_SERIES

CRD_PATH = Path(str(files("harmony.operator") / "crd" / "harmonyautoscaler.yaml"))

MODES = ("Recommend", "Scale")
INDICATOR_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.]*$")
MAX_INDICATORS = 32
MAX_LEVEL = 5

# Defaults, equal to the CRD's (tests/test_crd.py checks them against the YAML).
DEFAULT_API_VERSION = "apps/v1"
DEFAULT_MIN_REPLICAS = 1
DEFAULT_MODE = "Recommend"
DEFAULT_INTERVAL_S = 30
DEFAULT_LEVEL = 1
DEFAULT_MAX_BREACH_PROBABILITY = 0.01
DEFAULT_COLD_START_S = 300
DEFAULT_COST_PER_REPLICA_HOUR = 1.0
DEFAULT_BASELINE = "ar:30"
# The least capacityPerReplica accepted. Replicas are demand / capacity: below this any real demand asks for
# more replicas than a float can count (the count saturates at maxReplicas for ever), which is a unit
# mistake (requests per hour given per second, bytes for gigabytes), not a workload.
MIN_CAPACITY_PER_REPLICA = 1e-9

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


@dataclass(frozen=True)
class ScaleTargetRef:
    """The workload to scale; it must expose a scale subresource."""

    api_version: str
    kind: str
    name: str


@dataclass(frozen=True)
class Fallback:
    """`spec.fallback`: after `failure_threshold` consecutive steps without a forecast (telemetry missing,
    stale or failing, or the forecaster failing), set `replicas` (within min/max) instead of holding."""

    failure_threshold: int
    replicas: int


@dataclass(frozen=True)
class AutoscalerSpec:
    """A validated HarmonyAutoscaler spec, in domain units (seconds, replicas, demand units).

    capacity_per_replica: demand units one ready replica serves at the SLA limit, or None when it is learned
    from observations (starting from a prior). model_baseline / model_checkpoint: exactly one is set.
    behavior: the HPA-shaped scaling behaviour (`harmony.decision.behavior`); fallback: None for none.
    """

    target: ScaleTargetRef
    min_replicas: int
    max_replicas: int
    mode: str
    interval_s: int
    indicators: tuple[IndicatorSpec, ...]
    capacity_per_replica: float | None
    max_breach_probability: float
    cold_start_s: int
    cost_per_replica_hour: float
    behavior: bh.Behavior
    model_baseline: str | None
    model_checkpoint: str | None
    lookback_s: int
    history_s: int
    fallback: Fallback | None = None

    @property
    def demand_indicator(self) -> IndicatorSpec:
        """The indicator marked `demand: true` (parse_spec guarantees exactly one)."""
        return next(i for i in self.indicators if i.demand)

    @property
    def cold_start_steps(self) -> int:
        """Control intervals a new replica takes to become ready (rounded up): the forecast must cover them."""
        return cold_start_steps_of(self.cold_start_s, self.interval_s)

    def control_settings(self) -> ControlSettings:
        """The control step's settings (`harmony.decision.step.ControlSettings.build`, as the backtest builds
        them): bounds, cost, the behaviour, the SLA and whether capacity is learned."""
        return ControlSettings.build(
            sla=self.max_breach_probability, interval_s=float(self.interval_s), cold_start_s=float(self.cold_start_s),
            min_replicas=self.min_replicas, max_replicas=self.max_replicas, behavior=self.behavior,
            cost_per_replica_hour=self.cost_per_replica_hour, learn_capacity=self.capacity_per_replica is None)


# --- field readers: each names the field path in its error -----------------------------------------------
def _mapping(value: Any, path: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise InvalidSpec(path, f"must be an object, got {type(value).__name__}")
    return value


def _known(obj: Mapping, path: str, fields: Sequence[str]) -> None:
    # Typos (`maxReplica`) would otherwise fall back to defaults silently; the API server prunes them instead.
    for key in obj:
        if key not in fields:
            raise InvalidSpec(f"{path}.{key}", f"unknown field; known: {', '.join(fields)}")


def _field(obj: Mapping, key: str, path: str, default: Any = _REQUIRED) -> Any:
    value = obj.get(key)
    if value is None:
        if default is _REQUIRED:
            raise InvalidSpec(f"{path}.{key}", "required")
        return default
    return value


def _int(obj: Mapping, key: str, path: str, default: Any = _REQUIRED, minimum: int | None = None,
         maximum: int | None = None) -> int | None:
    value = _field(obj, key, path, default)
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


def _number(obj: Mapping, key: str, path: str, default: Any = _REQUIRED, minimum: float | None = None,
            exclusive_minimum: float | None = None, exclusive_maximum: float | None = None) -> float | None:
    value = _field(obj, key, path, default)
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
    return value


def _str(obj: Mapping, key: str, path: str, default: Any = _REQUIRED, max_length: int | None = None) -> str | None:
    value = _field(obj, key, path, default)
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


def _bool(obj: Mapping, key: str, path: str, default: bool) -> bool:
    value = _field(obj, key, path, default)
    if not isinstance(value, bool):
        raise InvalidSpec(f"{path}.{key}", f"must be true or false, got {value!r}")
    return value


# --- the spec ---------------------------------------------------------------------------------------------
def _target(spec: Mapping) -> ScaleTargetRef:
    path = "spec.scaleTargetRef"
    ref = _mapping(_field(spec, "scaleTargetRef", "spec"), path)
    _known(ref, path, ("apiVersion", "kind", "name"))
    return ScaleTargetRef(_str(ref, "apiVersion", path, DEFAULT_API_VERSION), _str(ref, "kind", path),
                          _str(ref, "name", path, max_length=253))


def _indicators(spec: Mapping) -> tuple[IndicatorSpec, ...]:
    items = _field(spec, "indicators", "spec")
    if isinstance(items, str | bytes | Mapping) or not isinstance(items, Sequence):
        raise InvalidSpec("spec.indicators", f"must be a list, got {type(items).__name__}")
    if not 1 <= len(items) <= MAX_INDICATORS:
        raise InvalidSpec("spec.indicators", f"needs 1 to {MAX_INDICATORS} indicators, got {len(items)}")
    out: list[IndicatorSpec] = []
    for k, raw in enumerate(items):
        path = f"spec.indicators[{k}]"
        item = _mapping(raw, path)
        _known(item, path, ("name", "query", "level", "demand"))
        name = _str(item, "name", path, max_length=63)
        if not INDICATOR_NAME.match(name):
            raise InvalidSpec(f"{path}.name", f"{name!r} must match {INDICATOR_NAME.pattern}")
        if any(i.name == name for i in out):
            raise InvalidSpec(f"{path}.name", f"duplicate indicator name {name!r}")
        out.append(IndicatorSpec(name, _str(item, "query", path, max_length=4096),
                                 _int(item, "level", path, DEFAULT_LEVEL, 1, MAX_LEVEL),
                                 _bool(item, "demand", path, False)))
    demand = [i.name for i in out if i.demand]
    if len(demand) != 1:
        raise InvalidSpec("spec.indicators",
                          f"exactly one indicator must have demand: true, got {len(demand)} ({', '.join(demand)})")
    return tuple(out)


@lru_cache(maxsize=64)
def _baseline_error(model: str) -> str | None:
    """Why `model` is not a usable predictor spec, or None (cached: parse_spec runs on every reconcile)."""
    try:
        build_predictor(model, "spec.model.baseline")
    except (HarmonyInputError, ValueError, TypeError) as exc:
        return str(exc)
    return None


@lru_cache(maxsize=16)
def load_checkpoint(path: str, mtime_ns: int):
    """The fitted predictor in a checkpoint file (cached per path and modification time: parse_spec runs on
    every reconcile, and a new file at the same path is picked up)."""
    from harmony.forecasting.predictors.harmony import HarmonyPredictor  # torch loads only for checkpoints

    return HarmonyPredictor.load(path)


def checkpoint_predictor(path: str):
    return load_checkpoint(path, Path(path).stat().st_mtime_ns)


def _check_checkpoint(checkpoint: str, indicators: Sequence[IndicatorSpec], interval_s: int) -> None:
    """A checkpoint serves only the inputs it was trained on: the same indicators in the same order, at the
    same interval, with the scaler of its training data."""
    field = "spec.model.checkpoint"
    try:
        predictor = checkpoint_predictor(checkpoint)
    except HarmonyInputError as exc:
        raise InvalidSpec(field, str(exc)) from None
    trained = predictor.schema.indicators
    names = tuple(i.name for i in indicators)
    if names != trained:
        raise InvalidSpec("spec.indicators", f"{checkpoint} was trained on indicators {list(trained)} in this "
                          f"order; spec.indicators names {list(names)}")
    if predictor.schema.interval is not None and predictor.schema.interval.total_seconds() != interval_s:
        raise InvalidSpec("spec.intervalSeconds", f"{checkpoint} was trained at an interval of "
                          f"{predictor.schema.interval.total_seconds():g} s, not {interval_s}")
    if predictor.input_scaler is None:
        raise InvalidSpec(field, f"{checkpoint} holds no scaler for one workload's data (trained on several "
                          "series): train it on the workload's own series")


def _model(spec: Mapping) -> tuple[str | None, str | None]:
    path = "spec.model"
    model = _mapping(_field(spec, "model", "spec", {}), path)
    _known(model, path, ("baseline", "checkpoint"))
    baseline = _str(model, "baseline", path, None, max_length=256)
    checkpoint = _str(model, "checkpoint", path, None, max_length=4096)
    if baseline is not None and checkpoint is not None:
        raise InvalidSpec(path, "set at most one of baseline and checkpoint")
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise InvalidSpec(f"{path}.checkpoint", f"no file at {checkpoint!r} (is its volume mounted?)")
        return None, checkpoint
    baseline = baseline if baseline is not None else DEFAULT_BASELINE
    error = _baseline_error(baseline.strip())
    if error:
        raise InvalidSpec(f"{path}.baseline", error)
    return baseline.strip(), None


def _policies(rules: Mapping, path: str, default: tuple[bh.ScalingPolicy, ...]) -> tuple[bh.ScalingPolicy, ...]:
    items = _field(rules, "policies", path, None)
    if items is None:
        return default  # the HPA's defaulting: absent policies are the direction's defaults
    where = f"{path}.policies"
    if isinstance(items, str | bytes | Mapping) or not isinstance(items, Sequence):
        raise InvalidSpec(where, f"must be a list, got {type(items).__name__}")
    if not items:
        raise InvalidSpec(where, "needs at least one policy (leave it out for the HPA's defaults)")
    out = []
    for k, raw in enumerate(items):
        at = f"{where}[{k}]"
        policy = _mapping(raw, at)
        _known(policy, at, ("type", "value", "periodSeconds"))
        kind = _str(policy, "type", at)
        if kind not in bh.POLICY_TYPES:
            raise InvalidSpec(f"{at}.type", f"must be one of {', '.join(bh.POLICY_TYPES)}, got {kind!r}")
        out.append(bh.ScalingPolicy(kind, _int(policy, "value", at, minimum=1),
                                    float(_int(policy, "periodSeconds", at, minimum=1, maximum=bh.MAX_PERIOD_S))))
    return tuple(out)


def _rules(behavior: Mapping, key: str, default: bh.ScalingRules) -> bh.ScalingRules:
    path = f"spec.behavior.{key}"
    rules = _mapping(_field(behavior, key, "spec.behavior", {}), path)
    _known(rules, path, ("stabilizationWindowSeconds", "selectPolicy", "policies"))
    window = _int(rules, "stabilizationWindowSeconds", path, int(default.stabilization_window_s), 0,
                  bh.MAX_WINDOW_S)
    select = _str(rules, "selectPolicy", path, bh.MAX_CHANGE)
    if select not in bh.SELECT_POLICIES:
        raise InvalidSpec(f"{path}.selectPolicy", f"must be one of {', '.join(bh.SELECT_POLICIES)}, got {select!r}")
    return bh.ScalingRules(float(window), select, _policies(rules, path, default.policies))


def _behavior(spec: Mapping, interval_s: int) -> bh.Behavior:
    """`spec.behavior`: the HPA's autoscaling/v2 shape (scaleUp, scaleDown), defaulted as the HPA defaults
    it, with the short forms of earlier versions (scaleDownStabilizationSeconds, maxScaleUpStep,
    maxScaleDownStep) folded in; a short form and the field it stands for are not both accepted."""
    path = "spec.behavior"
    behavior = _mapping(_field(spec, "behavior", "spec", {}), path)
    _known(behavior, path, ("scaleUp", "scaleDown", "scaleDownStabilizationSeconds", "maxScaleUpStep",
                            "maxScaleDownStep"))
    up = _rules(behavior, "scaleUp", bh.DEFAULT_SCALE_UP)
    down = _rules(behavior, "scaleDown", bh.DEFAULT_SCALE_DOWN)
    window_s = _int(behavior, "scaleDownStabilizationSeconds", path, None, 0, bh.MAX_WINDOW_S)
    step_up = _int(behavior, "maxScaleUpStep", path, None, minimum=1)
    step_down = _int(behavior, "maxScaleDownStep", path, None, minimum=1)
    for short, value, direction, long in (("scaleDownStabilizationSeconds", window_s, "scaleDown",
                                           "stabilizationWindowSeconds"),
                                          ("maxScaleUpStep", step_up, "scaleUp", "policies"),
                                          ("maxScaleDownStep", step_down, "scaleDown", "policies")):
        if value is not None and (behavior.get(direction) or {}).get(long) is not None:
            raise InvalidSpec(f"{path}.{short}", f"set at most one of this and {path}.{direction}.{long}")
    return bh.with_step_limits(bh.Behavior(up, down), float(interval_s), window_s, step_up, step_down)


def _fallback(spec: Mapping, min_replicas: int, max_replicas: int) -> Fallback | None:
    path = "spec.fallback"
    fallback = _field(spec, "fallback", "spec", None)
    if fallback is None:
        return None
    fallback = _mapping(fallback, path)
    _known(fallback, path, ("failureThreshold", "replicas"))
    threshold = _int(fallback, "failureThreshold", path, minimum=1)
    replicas = _int(fallback, "replicas", path, minimum=0)
    if not min_replicas <= replicas <= max_replicas:
        raise InvalidSpec(f"{path}.replicas", f"{replicas} lies outside [spec.minReplicas, spec.maxReplicas] "
                          f"([{min_replicas}, {max_replicas}])")
    return Fallback(threshold, replicas)


SPEC_FIELDS = ("scaleTargetRef", "minReplicas", "maxReplicas", "mode", "intervalSeconds", "lookbackSeconds",
               "historySeconds", "indicators", "capacityPerReplica", "sla", "costPerReplicaHour", "behavior",
               "fallback", "model")


def parse_spec(spec: Mapping) -> AutoscalerSpec:
    """Validate a HarmonyAutoscaler `.spec` (a plain mapping, as kopf passes it) with the CRD's defaults.

    Raises InvalidSpec naming the first field at fault.
    """
    spec = _mapping(spec, "spec")
    _known(spec, "spec", SPEC_FIELDS)
    target = _target(spec)
    min_replicas = _int(spec, "minReplicas", "spec", DEFAULT_MIN_REPLICAS, minimum=0)
    max_replicas = _int(spec, "maxReplicas", "spec", minimum=1)
    if min_replicas > max_replicas:
        raise InvalidSpec("spec.minReplicas", f"{min_replicas} exceeds spec.maxReplicas ({max_replicas})")
    mode = _str(spec, "mode", "spec", DEFAULT_MODE)
    if mode not in MODES:
        raise InvalidSpec("spec.mode", f"must be one of {', '.join(MODES)}, got {mode!r}")
    interval_s = _int(spec, "intervalSeconds", "spec", DEFAULT_INTERVAL_S, 1, 3600)
    # defaults in control intervals (a model needs rows, whatever the interval), as the backtest's
    history_s = _int(spec, "historySeconds", "spec", default_history_s(interval_s), 1, MAX_HISTORY_S)
    lookback_s = _int(spec, "lookbackSeconds", "spec", min(default_lookback_s(interval_s), history_s), 1,
                      MAX_LOOKBACK_S)
    if lookback_s > history_s:
        raise InvalidSpec("spec.lookbackSeconds", f"{lookback_s} exceeds spec.historySeconds ({history_s})")
    if history_s // interval_s > MAX_POINTS_PER_SERIES:
        # each decision reads the history as one range query per indicator, and Prometheus refuses a query
        # of more points per series than this: every step would fail on the same 400
        raise InvalidSpec("spec.historySeconds", f"{history_s} s at spec.intervalSeconds {interval_s} is "
                          f"{history_s // interval_s} points per query; Prometheus answers at most "
                          f"{MAX_POINTS_PER_SERIES} (historySeconds / intervalSeconds must be <= "
                          f"{MAX_POINTS_PER_SERIES})")
    indicators = _indicators(spec)
    capacity = _number(spec, "capacityPerReplica", "spec", None, minimum=MIN_CAPACITY_PER_REPLICA)

    sla = _mapping(_field(spec, "sla", "spec", {}), "spec.sla")
    _known(sla, "spec.sla", ("maxBreachProbability", "coldStartSeconds"))
    max_breach = _number(sla, "maxBreachProbability", "spec.sla", DEFAULT_MAX_BREACH_PROBABILITY,
                         exclusive_minimum=0.0, exclusive_maximum=1.0)
    cold_start_s = _int(sla, "coldStartSeconds", "spec.sla", DEFAULT_COLD_START_S, 0, 86400)
    cost = _number(spec, "costPerReplicaHour", "spec", DEFAULT_COST_PER_REPLICA_HOUR, minimum=0.0)

    behavior = _behavior(spec, interval_s)
    fallback = _fallback(spec, min_replicas, max_replicas)

    baseline, checkpoint = _model(spec)
    if checkpoint is not None:
        _check_checkpoint(checkpoint, indicators, interval_s)
    return AutoscalerSpec(
        target=target, min_replicas=min_replicas, max_replicas=max_replicas, mode=mode, interval_s=interval_s,
        indicators=indicators, capacity_per_replica=capacity, max_breach_probability=max_breach,
        cold_start_s=cold_start_s, cost_per_replica_hour=cost, behavior=behavior, model_baseline=baseline,
        model_checkpoint=checkpoint, lookback_s=lookback_s, history_s=history_s, fallback=fallback,
    )


def crd_manifest() -> dict:
    """The HarmonyAutoscaler CustomResourceDefinition (a fresh dict each call: callers may change it)."""
    with CRD_PATH.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)
