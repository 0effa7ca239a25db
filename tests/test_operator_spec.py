"""parse_spec: the example parses to the values it states; every spec the CRD rejects, parse_spec rejects too,
naming the same field; checks the schema cannot make (model names, checkpoint files, typos); and the mapping
onto DecisionSettings."""

from __future__ import annotations

import dataclasses
import math
import types

import pytest

from harmony.decision import behavior as bh
from harmony.decision.decide import DecisionSettings
from harmony.decision.posteriors import BreachPosterior
from harmony.errors import HarmonyInputError
from harmony.forecasting.adapter import FineTune
from harmony.operator.spec import (
    AutoscalerSpec,
    Fallback,
    IndicatorSpec,
    InvalidSpec,
    ScaleTargetRef,
    parse_spec,
)
from tests.checkpoints import tiny_checkpoint
from tests.crd_helpers import DELETE, INVALID_SPECS, load_example, with_change


def example_spec() -> dict:
    return load_example()["spec"]


def test_example_parses_to_what_it_states():
    spec = parse_spec(example_spec())
    assert spec == AutoscalerSpec(
        target=ScaleTargetRef("apps/v1", "Deployment", "llm-server"),
        min_replicas=2, max_replicas=16, mode="Scale", interval_s=30,
        indicators=(IndicatorSpec("requests_per_second", "sum(rate(requests_total[1m]))", 1, True),
                    IndicatorSpec("gpu_utilisation", 'avg(DCGM_FI_DEV_GPU_UTIL{pod=~"llm-server-.*"})', 2, False)),
        capacity_per_replica=25.0, max_breach_probability=0.01, cold_start_s=300, cost_per_replica_hour=2.5,
        behavior=bh.Behavior(bh.ScalingRules(0, "Max", (bh.ScalingPolicy("Pods", 4, 30),)),
                             bh.ScalingRules(300, "Max", (bh.ScalingPolicy("Pods", 1, 30),))),
        model_baseline="harmony",
        model_checkpoint=None, lookback_s=3600, history_s=43200, fine_tune=FineTune(every=0, epochs=2),
        training_s=604800,
    )
    assert spec.demand_indicator.name == "requests_per_second"
    assert spec.cold_start_steps == 10
    assert isinstance(spec.capacity_per_replica, float) and isinstance(spec.cost_per_replica_hour, float)


def test_spec_is_frozen_and_hashable():
    spec = parse_spec(example_spec())
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.max_replicas = 3
    assert hash(spec) == hash(parse_spec(example_spec()))


@pytest.mark.parametrize(("where", "value", "field"), [c[1:] for c in INVALID_SPECS],
                         ids=[c[0] for c in INVALID_SPECS])
def test_what_the_crd_rejects_parse_spec_rejects_naming_the_field(where, value, field):
    with pytest.raises(InvalidSpec) as caught:
        parse_spec(with_change(example_spec(), where, value))
    assert caught.value.path == field
    assert str(caught.value).startswith(f"{field}: ")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("where", "value", "field", "words"), [
    # beyond the schema: only the operator can tell
    (("model", "forecaster"), "prophet:7", "spec.model.forecaster", "unknown model 'prophet'"),
    (("model", "forecaster"), "ar:seven", "spec.model.forecaster", "not an integer"),
    (("model",), {"checkpoint": "/nonexistent/harmony.ckpt"}, "spec.model.checkpoint", "no file"),
    # pruned by an API server, a typo here would silently become a default
    (("maxReplica",), 8, "spec.maxReplica", "unknown field"),
    (("sla", "maxBreachProbabilty"), 0.05, "spec.sla.maxBreachProbabilty", "unknown field"),
    (("indicators", 0, "levels"), 2, "spec.indicators[0].levels", "unknown field"),
    # stricter than the schema's minLength
    (("indicators", 1, "query"), "   ", "spec.indicators[1].query", "empty"),
    # types a YAML or JSON client may send
    (("minReplicas",), True, "spec.minReplicas", "integer"),
    (("capacityPerReplica",), float("nan"), "spec.capacityPerReplica", "finite"),
    (("capacityPerReplica",), "25", "spec.capacityPerReplica", "number"),
    (("indicators",), "requests_per_second", "spec.indicators", "list"),
    (("indicators", 0), "requests_per_second", "spec.indicators[0]", "object"),
    (("sla",), [0.01], "spec.sla", "object"),
])
def test_checks_beyond_the_schema(where, value, field, words):
    with pytest.raises(InvalidSpec) as caught:
        parse_spec(with_change(example_spec(), where, value))
    assert caught.value.path == field
    assert words in str(caught.value)


def test_a_history_prometheus_cannot_answer_is_refused_naming_the_limit():
    """Each decision reads the history as one range query per indicator; Prometheus refuses more than 11000
    points per series, so such a spec would fail every step: refused at once, at spec.historySeconds."""
    raw = with_change(with_change(example_spec(), ("intervalSeconds",), 1), ("lookbackSeconds",), 600)
    with pytest.raises(InvalidSpec, match=r"^spec\.historySeconds: 43200 s at spec\.intervalSeconds 1 is 43200 "
                                          r"points per query; .*historySeconds / intervalSeconds must be <= 11000"):
        parse_spec(raw)
    assert parse_spec(with_change(raw, ("historySeconds",), 11000)).history_s == 11000  # the limit itself
    assert parse_spec(with_change(raw, ("historySeconds",), DELETE)).history_s == 1440  # the default is within


def test_capacity_below_the_floor_is_refused():
    for tiny in (1e-12, 5e-10):
        with pytest.raises(InvalidSpec, match=r"^spec\.capacityPerReplica: must be >= 1e-09"):
            parse_spec(with_change(example_spec(), ("capacityPerReplica",), tiny))
    assert parse_spec(with_change(example_spec(), ("capacityPerReplica",), 1e-9)).capacity_per_replica == 1e-9


def test_invalid_spec_is_a_harmony_input_error():
    with pytest.raises(HarmonyInputError):
        parse_spec({})
    with pytest.raises(InvalidSpec, match=r"^spec: must be an object"):
        parse_spec(["not", "a", "mapping"])
    error = InvalidSpec("spec.mode", "bad")
    assert isinstance(error, ValueError) and (error.path, error.problem) == ("spec.mode", "bad")


def test_checkpoint_on_a_mounted_volume_must_match_the_indicators(tmp_path):
    names = tuple(i["name"] for i in example_spec()["indicators"])
    checkpoint = tiny_checkpoint(tmp_path / "harmony.ckpt", names, (1, 2), interval_s=30)
    spec = parse_spec(with_change(example_spec(), ("model",), {"checkpoint": str(checkpoint)}))
    assert (spec.model_checkpoint, spec.model_baseline) == (str(checkpoint), None)
    with pytest.raises(InvalidSpec, match="no file"):
        parse_spec(with_change(example_spec(), ("model",), {"checkpoint": str(tmp_path)}))  # a directory
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"weights")
    with pytest.raises(InvalidSpec, match=r"^spec.model.checkpoint: .* is not a harmony checkpoint"):
        parse_spec(with_change(example_spec(), ("model",), {"checkpoint": str(junk)}))
    swapped = with_change(example_spec(), ("indicators",), list(reversed(example_spec()["indicators"])))
    with pytest.raises(InvalidSpec, match=r"^spec.indicators: .* was trained on indicators"):
        parse_spec(with_change(swapped, ("model",), {"checkpoint": str(checkpoint)}))
    with pytest.raises(InvalidSpec, match=r"^spec.intervalSeconds: .* interval of 30 s"):
        parse_spec(with_change(with_change(example_spec(), ("intervalSeconds",), 60), ("model",),
                               {"checkpoint": str(checkpoint)}))


@pytest.mark.parametrize(("model", "baseline"), [
    (DELETE, "harmony"), ({}, "harmony"), ({"baseline": "last"}, "last"), ({"forecaster": "ar:30"}, "ar:30"),
    ({"baseline": " seasonal:2880 "}, "seasonal:2880"), ({"forecaster": "harmony"}, "harmony"),
])
def test_baseline_defaults_and_known_models(model, baseline):
    assert parse_spec(with_change(example_spec(), ("model",), model)).model_baseline == baseline


def test_optional_fields_and_lenient_types():
    spec = parse_spec(with_change(with_change(example_spec(), ("capacityPerReplica",), DELETE), ("behavior",),
                                  {"maxScaleUpStep": None}))
    assert spec.capacity_per_replica is None  # learned from observations
    assert spec.behavior == bh.Behavior()  # the HPA's defaults
    # integral floats (some JSON encoders) are integers; kopf hands specs over as read-only mappings
    spec = parse_spec(types.MappingProxyType(with_change(example_spec(), ("maxReplicas",), 16.0)))
    assert spec.max_replicas == 16 and isinstance(spec.max_replicas, int)


def test_control_settings_map_the_spec_as_the_backtest_builds_them():
    spec = parse_spec(example_spec())
    control = spec.control_settings()
    settings = control.decision
    cold = spec.cold_start_steps
    assert settings == DecisionSettings(min_replicas=2, max_replicas=16, stabilisation_steps=1,
                                        cost_per_replica_hour=2.5, interval_s=30.0, lead_steps=max(cold - 1, 0))
    assert control.behavior == spec.behavior  # the behaviour, not decide, applies the window and the steps
    assert control.horizon == cold + 1 and control.sla == spec.max_breach_probability
    assert control.learn_capacity == (spec.capacity_per_replica is None)
    assert isinstance(settings.interval_s, float)


@pytest.mark.parametrize(("stabilisation_s", "interval_s", "steps"), [
    (300, 30, 10), (301, 30, 11), (29, 30, 1), (0, 30, 1), (0, 1, 1), (3600, 7, 515),
])
def test_stabilisation_window_rounds_up_to_whole_intervals(stabilisation_s, interval_s, steps):
    raw = with_change(with_change(example_spec(), ("behavior", "scaleDownStabilizationSeconds"), stabilisation_s),
                      ("intervalSeconds",), interval_s)
    raw = with_change(raw, ("historySeconds",), min(43200, 10000 * interval_s))  # within Prometheus' points
    # the window's intervals, the forecast's horizon (cold start + 1 interval) vouching for its part
    control = parse_spec(raw).control_settings()
    assert bh.down_window_decisions(300 if stabilisation_s is None else stabilisation_s, interval_s,
                                    control.horizon) == max(steps - control.horizon, 0)
    assert math.ceil(stabilisation_s / interval_s) == steps or steps == 1


@pytest.mark.parametrize(("cold_start_s", "interval_s", "steps"), [(300, 30, 10), (310, 30, 11), (0, 30, 0),
                                                                   (1, 3600, 1)])
def test_cold_start_steps_round_up(cold_start_s, interval_s, steps):
    raw = with_change(with_change(example_spec(), ("sla", "coldStartSeconds"), cold_start_s),
                      ("intervalSeconds",), interval_s)
    assert parse_spec(raw).cold_start_steps == steps


def test_demand_indicator_is_the_marked_one_wherever_it_sits():
    raw = example_spec()
    raw["indicators"] = list(reversed(raw["indicators"]))
    spec = parse_spec(raw)
    assert spec.indicators[1].demand and spec.demand_indicator is spec.indicators[1]
    assert [i.level for i in spec.indicators] == [2, 1]


@pytest.mark.parametrize(("interval_s", "lookback_s", "history_s"), [
    (30, 3600, 43200), (60, 7200, 86400), (600, 72000, 864000), (3600, 432000, 2592000),
])
def test_history_and_lookback_default_to_a_number_of_intervals(interval_s, lookback_s, history_s):
    """A model needs rows, not seconds: 120 intervals of context and 1440 of history (at most 30 days)."""
    raw = with_change(with_change(with_change(example_spec(), ("intervalSeconds",), interval_s),
                                  ("lookbackSeconds",), DELETE), ("historySeconds",), DELETE)
    raw = with_change(raw, ("sla", "coldStartSeconds"), interval_s)
    spec = parse_spec(raw)
    assert (spec.lookback_s, spec.history_s) == (lookback_s, history_s)
    short = parse_spec(with_change(raw, ("historySeconds",), interval_s * 10))
    assert short.lookback_s == interval_s * 10  # a short history caps the default context
    # a model trains on the window or 7 days (at most 20,160 intervals), the longer, within the 30 days a
    # history may span
    assert spec.training_s == min(max(history_s, min(7 * 86400, 20160 * interval_s)), 30 * 86400)


@pytest.mark.parametrize(("interval_s", "training_s"), [(1, 20160), (10, 201600), (30, 604800), (600, 864000)])
def test_the_default_training_history_is_7_days_capped_in_rows_and_never_below_the_window(interval_s, training_s):
    """At 1 s intervals 7 days are 604,800 rows (hours of CPU per fit, 55 range queries per indicator): the
    default holds at most 20,160 intervals; at 10 minutes the default window (1,440 intervals, 10 days) is longer
    than 7 days and wins. An explicit trainingSeconds is honoured."""
    raw = with_change(with_change(with_change(example_spec(), ("intervalSeconds",), interval_s),
                                  ("lookbackSeconds",), DELETE), ("historySeconds",), DELETE)
    raw = with_change(raw, ("sla", "coldStartSeconds"), interval_s)
    assert parse_spec(raw).training_s == training_s
    assert parse_spec(with_change(raw, ("model",), {"trainingSeconds": 14 * 86400})).training_s == 14 * 86400


def test_the_training_history_is_at_least_the_window_and_read_in_chunks():
    spec = parse_spec(with_change(example_spec(), ("model",), {"forecaster": "harmony",
                                                               "trainingSeconds": 14 * 86400}))
    assert spec.training_s == 14 * 86400  # 40,320 points at 30 s: over 11,000, read in chunked range queries
    with pytest.raises(InvalidSpec, match=r"^spec.model.trainingSeconds: 3600 is shorter than spec.historySeconds"):
        parse_spec(with_change(example_spec(), ("model",), {"trainingSeconds": 3600}))


def test_fine_tune_schedule_is_in_decisions_and_checked():
    spec = parse_spec(with_change(example_spec(), ("model",), {"forecaster": "harmony", "fineTune": {
        "intervalSeconds": 3600, "epochs": 3, "maxSeconds": 20}}))
    assert spec.fine_tune == FineTune(every=120, epochs=3, max_seconds=20.0)  # 3600 s at a 30 s interval
    never = with_change(example_spec(), ("model",), {"fineTune": {"intervalSeconds": 0}})
    assert parse_spec(never).fine_tune.every == 0
    for change, field in (({"epochs": 0}, "spec.model.fineTune.epochs"),
                          ({"maxSeconds": 0}, "spec.model.fineTune.maxSeconds"),
                          ({"often": 1}, "spec.model.fineTune.often")):
        with pytest.raises(InvalidSpec) as err:
            parse_spec(with_change(example_spec(), ("model",), {"fineTune": change}))
        assert err.value.path == field
    with pytest.raises(InvalidSpec, match="at most one of forecaster, baseline and checkpoint"):
        parse_spec(with_change(example_spec(), ("model",), {"forecaster": "ar:30", "baseline": "ar:30"}))


def test_calibrates_output_pasted_into_a_spec_is_the_prior_a_fresh_state_starts_from(tmp_path):
    """`harmony calibrate --out` writes JSON; pasted whole as spec.capacity.prior (YAML is a superset of
    JSON), the CRD accepts it and parse_spec reads the same NIG prior, which a new object's state starts from."""
    import json

    import yaml
    from typer.testing import CliRunner

    from harmony.cli.main import app
    from harmony.operator.kube import Scale
    from harmony.operator.reconcile import Observed, Reconciler
    from tests.crd_helpers import violations

    out = tmp_path / "prior.json"
    result = CliRunner().invoke(app, ["calibrate", "--dataset", "gentd26", "--warmup", "50", "--samples", "50",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    manifest = load_example()
    del manifest["spec"]["capacityPerReplica"]  # a prior is for a learned capacity
    manifest["spec"]["capacity"] = {"prior": yaml.safe_load(out.read_text())}
    assert violations(manifest) == []
    spec = parse_spec(manifest["spec"])
    assert spec.capacity_prior.to_dict() == record["capacity_posterior"]
    state = Reconciler._fresh_state(spec, Observed(Scale(2, 2, "1", 2)))
    assert state.capacity.to_dict() == record["capacity_posterior"]
    assert state.breaches.to_dict() == BreachPosterior.prior(spec.max_breach_probability).to_dict()


def test_spec_prometheus_names_a_url_and_a_secret_in_the_objects_namespace():
    spec = parse_spec(with_change(example_spec(), ("prometheus",), {"url": "https://mimir:8080/prometheus",
                                                                    "secretRef": {"name": "team-a"}}))
    assert (spec.prometheus.url, spec.prometheus.secret_name) == ("https://mimir:8080/prometheus", "team-a")
    assert parse_spec(example_spec()).prometheus is None
    with pytest.raises(InvalidSpec, match=r"spec.prometheus.secretRef.namespace: unknown field"):
        parse_spec(with_change(example_spec(), ("prometheus",), {"secretRef": {"name": "a", "namespace": "b"}}))


HPA_BEHAVIOR = {
    "scaleUp": {"stabilizationWindowSeconds": 60, "selectPolicy": "Min",
                "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15},
                             {"type": "Pods", "value": 4, "periodSeconds": 15}]},
    "scaleDown": {"selectPolicy": "Disabled"},
}


def test_behavior_takes_the_hpas_shape_and_defaults():
    spec = parse_spec(with_change(example_spec(), ("behavior",), HPA_BEHAVIOR))
    assert spec.behavior.scale_up == bh.ScalingRules(60, "Min", (bh.ScalingPolicy("Percent", 100, 15),
                                                                 bh.ScalingPolicy("Pods", 4, 15)))
    # a direction given without policies or window gets the HPA's defaults for them
    assert spec.behavior.scale_down == bh.ScalingRules(300, "Disabled", bh.DEFAULT_SCALE_DOWN.policies)
    assert spec.control_settings().behavior == spec.behavior
    short = parse_spec(with_change(example_spec(), ("behavior",), {"scaleDownStabilizationSeconds": 120}))
    assert short.behavior == bh.Behavior(bh.DEFAULT_SCALE_UP,
                                         bh.ScalingRules(120, "Max", bh.DEFAULT_SCALE_DOWN.policies))


def test_fallback_parses_within_the_bounds():
    spec = parse_spec(with_change(example_spec(), ("fallback",), {"failureThreshold": 3, "replicas": 6}))
    assert spec.fallback == Fallback(3, 6)
    assert parse_spec(example_spec()).fallback is None


BEHAVIOR_INVALID = [
    ("window-above-hpa-max", ("behavior", "scaleUp"), {"stabilizationWindowSeconds": 3601},
     "spec.behavior.scaleUp.stabilizationWindowSeconds"),
    ("select-unknown", ("behavior", "scaleDown"), {"selectPolicy": "Largest"}, "spec.behavior.scaleDown.selectPolicy"),
    ("policies-empty", ("behavior", "scaleUp"), {"policies": []}, "spec.behavior.scaleUp.policies"),
    ("policy-type-unknown", ("behavior", "scaleUp"), {"policies": [{"type": "Replicas", "value": 1,
                                                                    "periodSeconds": 15}]},
     "spec.behavior.scaleUp.policies[0].type"),
    ("policy-value-zero", ("behavior", "scaleUp"), {"policies": [{"type": "Pods", "value": 0, "periodSeconds": 15}]},
     "spec.behavior.scaleUp.policies[0].value"),
    ("policy-period-above-hpa-max", ("behavior", "scaleDown"),
     {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 1801}]},
     "spec.behavior.scaleDown.policies[0].periodSeconds"),
    ("policy-period-missing", ("behavior", "scaleDown"), {"policies": [{"type": "Pods", "value": 1}]},
     "spec.behavior.scaleDown.policies[0].periodSeconds"),
    ("short-and-long-window", ("behavior", "scaleDown"), {"stabilizationWindowSeconds": 60},
     "spec.behavior.scaleDownStabilizationSeconds"),
    ("short-and-long-step-up", ("behavior", "scaleUp"), {"policies": [{"type": "Pods", "value": 1,
                                                                       "periodSeconds": 15}]},
     "spec.behavior.maxScaleUpStep"),
    ("fallback-threshold-missing", ("fallback",), {"replicas": 3}, "spec.fallback.failureThreshold"),
    ("fallback-threshold-zero", ("fallback",), {"failureThreshold": 0, "replicas": 3},
     "spec.fallback.failureThreshold"),
    ("fallback-replicas-negative", ("fallback",), {"failureThreshold": 2, "replicas": -1}, "spec.fallback.replicas"),
]


@pytest.mark.parametrize(("where", "value", "field"), [c[1:] for c in BEHAVIOR_INVALID],
                         ids=[c[0] for c in BEHAVIOR_INVALID])
def test_bad_behavior_and_fallback_name_the_field(where, value, field):
    with pytest.raises(InvalidSpec) as caught:
        parse_spec(with_change(example_spec(), where, value))
    assert caught.value.path == field and "\n" not in str(caught.value)


def test_fallback_replicas_must_lie_within_the_bounds():
    with pytest.raises(InvalidSpec, match=r"^spec.fallback.replicas: 17 lies outside"):
        parse_spec(with_change(example_spec(), ("fallback",), {"failureThreshold": 2, "replicas": 17}))
