"""The `HarmonyAutoscaler` spec, parsed and re-validated into frozen dataclasses.

The CRD's OpenAPI schema (src/harmony/operator/crd/harmonyautoscaler.yaml) already rejects bad objects at admission, but
the operator may run against an API server that did not validate (the kmock emulator in tests, an older
CRD version, a CRD installed without its CEL rules), so `parse_spec` applies the same defaults and checks
every constraint again, plus two the schema cannot: that the baseline model name is known and that a
checkpoint file exists. Errors are `InvalidSpec`, whose message starts with the field path at fault
(`spec.indicators[1].query: ...`), ready for a status condition. The indicators' and `spec.prometheus`'
parsing lives in harmony.telemetry.spec (the `prometheus` dataset source reads the same fields offline) and
is re-exported here.

A checkpoint is re-read when its file changes (a training job's new version is served from the next step);
a new version that fails to load or to fit the spec leaves the one accepted before served, and the spec
says why (`AutoscalerSpec.checkpoint_problem`) instead of failing.

tests/test_crd.py reads the defaults and ranges back from the YAML and compares, so the two cannot drift.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import yaml

from harmony.decision import behavior as bh
from harmony.decision.posteriors import CapacityPosterior
from harmony.decision.step import ControlSettings, cold_start_steps_of
from harmony.errors import HarmonyInputError
from harmony.forecasting.adapter import (  # shared with the backtest
    FineTune,
    default_history_s,
    default_lookback_s,
    default_training_s,
)
from harmony.forecasting.loop_defaults import DEFAULT_FINE_TUNE_S, DEFAULT_FORECASTER, MAX_HISTORY_S, MAX_LOOKBACK_S
from harmony.forecasting.predictors import build_predictor
from harmony.telemetry.prometheus import MAX_POINTS_PER_SERIES
from harmony.telemetry.spec import (  # the indicators' and Prometheus' parsing, shared with the dataset source
    DEFAULT_INTERVAL_S,
    DEFAULT_LEVEL,  # noqa: F401 (re-exported: the CRD's defaults are read from here)
    INDICATOR_NAME,  # noqa: F401
    MAX_INDICATORS,  # noqa: F401
    MAX_LEVEL,  # noqa: F401
    IndicatorSpec,
    InvalidSpec,
    PrometheusSpec,
    parse_indicators,
    parse_prometheus,
)
from harmony.telemetry.spec import field_value as _field
from harmony.telemetry.spec import integer as _int
from harmony.telemetry.spec import known as _known
from harmony.telemetry.spec import mapping as _mapping
from harmony.telemetry.spec import number as _number
from harmony.telemetry.spec import string as _str

CRD_PATH = Path(str(files("harmony.operator") / "crd" / "harmonyautoscaler.yaml"))

MODES = ("Recommend", "Scale")

# Defaults, equal to the CRD's (tests/test_crd.py checks them against the YAML).
DEFAULT_API_VERSION = "apps/v1"
DEFAULT_MIN_REPLICAS = 1
DEFAULT_MODE = "Recommend"
DEFAULT_MAX_BREACH_PROBABILITY = 0.01
DEFAULT_COLD_START_S = 300
DEFAULT_COST_PER_REPLICA_HOUR = 1.0
DEFAULT_BASELINE = DEFAULT_FORECASTER  # the older name: the forecaster when spec.model names none
# The least capacityPerReplica accepted. Replicas are demand / capacity: below this any real demand asks for
# more replicas than a float can count (the count saturates at maxReplicas for ever), which is a unit
# mistake (requests per hour given per second, bytes for gigabytes), not a workload.
MIN_CAPACITY_PER_REPLICA = 1e-9


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
    fine_tune: FineTune  # spec.model.fineTune, in decisions
    capacity_prior: CapacityPosterior | None = None
    prometheus: PrometheusSpec | None = None
    checkpoint_problem: str | None = None
    fallback: Fallback | None = None
    training_s: int | None = None  # spec.model.trainingSeconds (None: history_s)

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


# --- the spec ---------------------------------------------------------------------------------------------
def _target(spec: Mapping) -> ScaleTargetRef:
    path = "spec.scaleTargetRef"
    ref = _mapping(_field(spec, "scaleTargetRef", "spec"), path)
    _known(ref, path, ("apiVersion", "kind", "name"))
    return ScaleTargetRef(_str(ref, "apiVersion", path, DEFAULT_API_VERSION), _str(ref, "kind", path),
                          _str(ref, "name", path, max_length=253))


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


#: Per checkpoint path, the version last accepted for a spec: (modification time ns, predictor). A new file
#: at the path (a training CronJob's output) is served from the step after it appears; one that fails to
#: load or does not fit the spec leaves this one served (`AutoscalerSpec.checkpoint_problem` says why).
_SERVED: dict[str, tuple[int, object]] = {}


def served_checkpoint(path: str):
    """The predictor the operator serves for `path`: the last version `parse_spec` accepted."""
    return _SERVED[path][1]


def _schema_problem(predictor, checkpoint: str, indicators: Sequence[IndicatorSpec], interval_s: int) -> None:
    """A checkpoint serves only the inputs it was trained on: the same indicators in the same order, at the
    same interval, with the scaler of its training data."""
    trained = predictor.schema.indicators
    names = tuple(i.name for i in indicators)
    if names != trained:
        raise InvalidSpec("spec.indicators", f"{checkpoint} was trained on indicators {list(trained)} in this "
                          f"order; spec.indicators names {list(names)}")
    if predictor.schema.interval is not None and predictor.schema.interval.total_seconds() != interval_s:
        raise InvalidSpec("spec.intervalSeconds", f"{checkpoint} was trained at an interval of "
                          f"{predictor.schema.interval.total_seconds():g} s, not {interval_s}")
    if predictor.input_scaler is None:
        raise InvalidSpec("spec.model.checkpoint", f"{checkpoint} holds no scaler for one workload's data (trained "
                          "on several series): train it on the workload's own series")


def _check_checkpoint(checkpoint: str, indicators: Sequence[IndicatorSpec], interval_s: int) -> str | None:
    """Accept the file at `checkpoint` for this spec, or keep serving the version accepted before.

    Returns None when the current file is served, else why it is not (a new file that fails to load or
    does not fit the spec, while the previous version, still fitting, is served). Raises InvalidSpec when
    nothing fitting was ever accepted: a first checkpoint that is wrong is the spec's fault."""
    try:
        mtime_ns = Path(checkpoint).stat().st_mtime_ns
        predictor = load_checkpoint(checkpoint, mtime_ns)
        _schema_problem(predictor, checkpoint, indicators, interval_s)
    except (HarmonyInputError, OSError) as exc:
        problem = exc if isinstance(exc, InvalidSpec) else InvalidSpec(
            "spec.model.checkpoint", str(exc) if isinstance(exc, HarmonyInputError) else f"{checkpoint}: {exc}")
        served = _SERVED.get(checkpoint)
        if served is None:
            raise problem from None
        _schema_problem(served[1], checkpoint, indicators, interval_s)  # the spec may have changed too
        when = dt.datetime.fromtimestamp(served[0] / 1e9, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"{problem}; serving the version of {checkpoint} modified {when}"
    _SERVED[checkpoint] = (mtime_ns, predictor)
    return None


def _model(spec: Mapping, interval_s: int, history_s: int) -> tuple[str | None, str | None, FineTune, int]:
    """(forecaster spec, checkpoint path, fine-tune schedule, training seconds). `forecaster` names any
    predictor spec: a baseline refitted at every decision (ar:30, seasonal:2880, last) or `harmony` (the
    default), trained on `trainingSeconds` of the workload's own history (the AR fallback stands in until
    there is enough of it) and fine-tuned on `fineTune`'s schedule; `baseline` is its older name. A checkpoint
    is fine-tuned on the same schedule."""
    path = "spec.model"
    model = _mapping(_field(spec, "model", "spec", {}), path)
    _known(model, path, ("forecaster", "baseline", "checkpoint", "fineTune", "trainingSeconds"))
    named = [key for key in ("forecaster", "baseline", "checkpoint") if key in model]
    if len(named) > 1:
        raise InvalidSpec(path, f"set at most one of forecaster, baseline and checkpoint (got {', '.join(named)})")
    key = named[0] if named and named[0] != "checkpoint" else "forecaster"
    forecaster = _str(model, key, path, None, max_length=256)
    checkpoint = _str(model, "checkpoint", path, None, max_length=4096)
    tune = _mapping(_field(model, "fineTune", path, {}), f"{path}.fineTune")
    _known(tune, f"{path}.fineTune", ("intervalSeconds", "epochs", "maxSeconds"))
    every_s = _int(tune, "intervalSeconds", f"{path}.fineTune", DEFAULT_FINE_TUNE_S, 0, 30 * 86400)
    epochs = _int(tune, "epochs", f"{path}.fineTune", FineTune.epochs, 1, 100)
    max_s = _number(tune, "maxSeconds", f"{path}.fineTune", FineTune.max_seconds, exclusive_minimum=0.0,
                    maximum=3600.0)
    fine_tune = FineTune.every_seconds(every_s, interval_s, epochs=epochs, max_seconds=max_s)
    # the training query is chunked under Prometheus' points per series (a few range queries per training)
    training_s = _int(model, "trainingSeconds", path, default_training_s(history_s, interval_s), 1,
                      MAX_HISTORY_S)
    if training_s < history_s:
        raise InvalidSpec(f"{path}.trainingSeconds", f"{training_s} is shorter than spec.historySeconds "
                                                     f"({history_s}): a model trains on at least the window")
    if checkpoint is not None:
        if not Path(checkpoint).is_file() and checkpoint not in _SERVED:  # gone after serving: keep serving it
            raise InvalidSpec(f"{path}.checkpoint", f"no file at {checkpoint!r} (is its volume mounted?)")
        return None, checkpoint, fine_tune, training_s
    forecaster = forecaster if forecaster is not None else DEFAULT_BASELINE
    error = _baseline_error(forecaster.strip())
    if error:
        raise InvalidSpec(f"{path}.{key}", error)
    return forecaster.strip(), None, fine_tune, training_s


#: The NIG parameters of a capacity prior, as `harmony calibrate` writes them (`capacity_posterior`).
PRIOR_PARAMETERS = ("mu", "kappa", "alpha", "beta")
#: The fields of `harmony calibrate`'s JSON, all accepted as `spec.capacity.prior`; only
#: `capacity_posterior` is read, the rest (what it was fitted on, and how) travels with it for people.
PRIOR_FIELDS = ("capacity_posterior", "unit", "n_observations", "source", "fit")


def _capacity_prior(spec: Mapping, declared: float | None) -> CapacityPosterior | None:
    """`spec.capacity.prior`: the output of `harmony calibrate --out`, pasted as is, read into the NIG
    capacity posterior a fresh state starts from. Each parameter is a one-element list (one workload);
    alpha > 1 and every parameter positive make a proper prior with a finite variance (status restores
    refuse anything else, so a weaker one would be thrown away at every step)."""
    capacity = _mapping(_field(spec, "capacity", "spec", {}), "spec.capacity")
    _known(capacity, "spec.capacity", ("prior",))
    if capacity.get("prior") is None:
        return None
    path = "spec.capacity.prior"
    prior = _mapping(capacity["prior"], path)
    _known(prior, path, PRIOR_FIELDS)
    where = f"{path}.capacity_posterior"
    nig = _mapping(_field(prior, "capacity_posterior", path), where)
    _known(nig, where, PRIOR_PARAMETERS)
    values = {}
    for name in PRIOR_PARAMETERS:
        raw = _field(nig, name, where)
        if isinstance(raw, str | bytes | Mapping) or not isinstance(raw, Sequence) or len(raw) != 1:
            raise InvalidSpec(f"{where}.{name}", f"must be a list of one number (one workload), got {raw!r}")
        values[name] = _number({f"{name}[0]": raw[0]}, f"{name}[0]", where,
                               exclusive_minimum=1.0 if name == "alpha" else 0.0)
    if declared is not None:
        # a declared capacity is not learned: a prior would silently do nothing
        raise InvalidSpec(path, "a prior is for a learned capacity: remove spec.capacityPerReplica or the prior")
    return CapacityPosterior.from_dict(values)


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
               "historySeconds", "indicators", "capacityPerReplica", "capacity", "sla", "costPerReplicaHour",
               "behavior", "fallback", "model", "prometheus")


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
    indicators = parse_indicators(_field(spec, "indicators", "spec"))
    capacity = _number(spec, "capacityPerReplica", "spec", None, minimum=MIN_CAPACITY_PER_REPLICA)
    prior = _capacity_prior(spec, capacity)
    prometheus = parse_prometheus(spec)

    sla = _mapping(_field(spec, "sla", "spec", {}), "spec.sla")
    _known(sla, "spec.sla", ("maxBreachProbability", "coldStartSeconds"))
    max_breach = _number(sla, "maxBreachProbability", "spec.sla", DEFAULT_MAX_BREACH_PROBABILITY,
                         exclusive_minimum=0.0, exclusive_maximum=1.0)
    cold_start_s = _int(sla, "coldStartSeconds", "spec.sla", DEFAULT_COLD_START_S, 0, 86400)
    cost = _number(spec, "costPerReplicaHour", "spec", DEFAULT_COST_PER_REPLICA_HOUR, minimum=0.0)

    behavior = _behavior(spec, interval_s)
    fallback = _fallback(spec, min_replicas, max_replicas)

    baseline, checkpoint, fine_tune, training_s = _model(spec, interval_s, history_s)
    checkpoint_problem = None if checkpoint is None else _check_checkpoint(checkpoint, indicators, interval_s)
    return AutoscalerSpec(
        target=target, min_replicas=min_replicas, max_replicas=max_replicas, mode=mode, interval_s=interval_s,
        indicators=indicators, capacity_per_replica=capacity, max_breach_probability=max_breach,
        cold_start_s=cold_start_s, cost_per_replica_hour=cost, behavior=behavior, model_baseline=baseline,
        model_checkpoint=checkpoint, lookback_s=lookback_s, history_s=history_s, fine_tune=fine_tune,
        capacity_prior=prior, prometheus=prometheus, checkpoint_problem=checkpoint_problem, fallback=fallback,
        training_s=training_s,
    )


def crd_manifest() -> dict:
    """The HarmonyAutoscaler CustomResourceDefinition (a fresh dict each call: callers may change it)."""
    with CRD_PATH.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)
