"""The HarmonyAutoscaler CRD: a valid apiextensions/v1 object, a structural schema that accepts the example
and rejects what the operator cannot act on, CEL rules that compile and bite, and defaults equal to
parse_spec's (read from the YAML, so the two cannot drift)."""

from __future__ import annotations

import copy
import re

import celpy
import jsonschema
import kubernetes_validate
import pytest

from harmony.operator.spec import CRD_PATH, crd_manifest, parse_spec
from harmony.operator.state import CONDITION_REASON
from tests.crd_helpers import (
    DELETE,
    INVALID_SPECS,
    apply_defaults,
    cel_rules,
    crd_schema,
    load_example,
    to_jsonschema,
    violations,
    with_change,
)
from tests.test_operator_spec import BEHAVIOR_INVALID, HPA_BEHAVIOR


def test_crd_is_valid_apiextensions_v1_in_strict_mode():
    crd = crd_manifest()
    kubernetes_validate.validate(crd, kubernetes_validate.latest_version(), strict=True)
    # the check has teeth: a misspelt field and a wrongly typed bound are both caught
    misspelt = copy.deepcopy(crd)
    misspelt["spec"]["version"] = misspelt["spec"].pop("versions")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, kubernetes_validate.latest_version(), strict=True)
    mistyped = copy.deepcopy(crd)
    mistyped["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "maxReplicas"]["minimum"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(mistyped, kubernetes_validate.latest_version(), strict=True)


def test_crd_names_version_and_subresources():
    crd = crd_manifest()
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1" and crd["kind"] == "CustomResourceDefinition"
    spec = crd["spec"]
    assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{spec['group']}" == "harmonyautoscalers.harmony.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "HarmonyAutoscaler"
    assert spec["names"]["shortNames"] == ["has", "harmonyscaler"]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_crd_manifest_is_the_yaml_and_a_fresh_copy():
    first = crd_manifest()
    first["spec"]["group"] = "changed"
    assert crd_manifest()["spec"]["group"] == "harmony.dev"
    assert CRD_PATH.is_file() and CRD_PATH.name == "harmonyautoscaler.yaml"


def column_value(obj: dict, json_path: str):
    """A printer column's value: a dotted path, where a `conditions[?(@.type=="X")]` step picks condition X."""
    value = obj
    for key in re.findall(r'[^.\[]+(?:\[\?\(@\.type=="\w+"\)\])?', json_path):
        field, _, wanted = key.partition('[?(@.type=="')
        value = value[field]
        if wanted:
            value = next(c for c in value if c["type"] == wanted.removesuffix('")]'))
    return value


def test_printer_columns_resolve_on_an_object_with_status():
    columns = {c["name"]: c for c in crd_manifest()["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert list(columns) == ["Target", "Mode", "Ready", "Min", "Max", "Current", "Desired", "Breach", "Age"]
    obj = load_example()
    obj["metadata"]["creationTimestamp"] = "2025-01-01T00:00:00Z"
    obj["status"] = {"currentReplicas": 3, "desiredReplicas": 4,
                     "conditions": [{"type": "ForecastReady", "status": "True"}, {"type": "Ready", "status": "False"}],
                     "lastDecision": {"time": "2025-01-01T00:05:00Z", "replicas": 4, "breachProbability": 0.004,
                                      "reason": "scale-up"}}
    expected = {"Target": "llm-server", "Mode": "Scale", "Ready": "False", "Min": obj["spec"]["minReplicas"],
                "Max": obj["spec"]["maxReplicas"], "Current": 3, "Desired": 4, "Breach": 0.004,
                "Age": "2025-01-01T00:00:00Z"}
    for name, column in columns.items():
        assert column_value(obj, column["jsonPath"]) == expected[name], name
    assert columns["Age"]["type"] == "date" and columns["Breach"]["type"] == "number"
    assert [columns[c]["type"] for c in ("Ready", "Min", "Max")] == ["string", "integer", "integer"]
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'


def test_conditions_are_shaped_like_metav1_condition():
    """The schema controller-gen writes for []metav1.Condition: every field but observedGeneration required."""
    item = crd_schema()["properties"]["status"]["properties"]["conditions"]["items"]
    assert set(item["required"]) == {"type", "status", "reason", "message", "lastTransitionTime"}
    fields = item["properties"]
    assert set(fields) == set(item["required"]) | {"observedGeneration"}
    assert (fields["observedGeneration"]["type"], fields["observedGeneration"]["minimum"]) == ("integer", 0)
    assert fields["lastTransitionTime"]["format"] == "date-time"
    assert fields["reason"]["pattern"] == "^" + CONDITION_REASON.pattern + "$"
    ready = {"type": "Ready", "status": "True", "reason": "Reconciled", "message": "",
             "lastTransitionTime": "2025-01-01T00:00:00Z", "observedGeneration": 2}
    obj = load_example()
    assert violations({**obj, "status": {"conditions": [ready]}}) == []
    for field in item["required"]:  # each one missing is refused
        assert violations({**obj, "status": {"conditions": [{k: v for k, v in ready.items() if k != field}]}}), field
    for field, bad in (("reason", "limited-by-max-replicas"), ("reason", ""), ("observedGeneration", -1),
                       ("type", "not a type")):
        assert violations({**obj, "status": {"conditions": [{**ready, field: bad}]}}), (field, bad)


def _walk(schema: dict, path: str = ""):
    yield path, schema
    for key, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{key}")
    if "items" in schema:
        yield from _walk(schema["items"], f"{path}[]")


def test_schema_is_structural():
    """What the API server demands of a v1 CRD schema: a type on every node (unless unknown fields are
    preserved), required fields declared, defaults valid against their own schema, list-map keys required."""
    schema = crd_schema()
    nodes = list(_walk(schema))
    assert len(nodes) > 40
    for path, node in nodes:
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        assert not ("additionalProperties" in node and "properties" in node), path
        for name in node.get("required", []):
            assert name in node.get("properties", {}), f"{path}: required {name} is not declared"
        if "default" in node:
            jsonschema.Draft4Validator(to_jsonschema(node)).validate(node["default"])
        if node.get("x-kubernetes-list-type") == "map":
            assert set(node["x-kubernetes-list-map-keys"]) <= set(node["items"]["required"]), path
    assert schema["properties"]["metadata"] == {"type": "object"}


def test_example_is_accepted():
    assert violations(load_example()) == []


@pytest.mark.parametrize(("where", "value"), [
    (("capacityPerReplica",), DELETE),  # learned from observations
    (("minReplicas",), 0),
    (("minReplicas",), 16),  # == maxReplicas
    (("mode",), "Recommend"),
    (("intervalSeconds",), 3600),
    (("sla", "coldStartSeconds"), 0),
    (("behavior",), DELETE),
    (("sla",), DELETE),
    (("model",), {"checkpoint": "/models/harmony.ckpt"}),
    (("model",), DELETE),
    (("indicators", 1, "name"), "gpu.util_2"),
    (("historySeconds",), 330000),  # 11000 points at 30 s: Prometheus' limit, exactly
    (("historySeconds",), DELETE),  # defaults to 1440 intervals, within it
    (("capacityPerReplica",), 1e-9),  # the floor itself
    (("prometheus",), {"url": "https://mimir.monitoring:8080/prometheus", "secretRef": {"name": "team-a-prom"}}),
    (("prometheus",), {"secretRef": {"name": "team-a-prom"}}),
])
def test_valid_variants_are_accepted(where, value):
    assert violations(with_change(load_example(), ("spec", *where), value)) == []


@pytest.mark.parametrize(("where", "value", "field"), [c[1:] for c in INVALID_SPECS],
                         ids=[c[0] for c in INVALID_SPECS])
def test_invalid_specs_are_rejected(where, value, field):
    found = violations(with_change(load_example(), ("spec", *where), value))
    assert found, "accepted"
    # reported at the field, or at an ancestor (a missing required field; a CEL rule on the object or list)
    assert any(field.startswith(v.split(": ", 1)[0]) for v in found), found


@pytest.mark.parametrize(("where", "value", "field"), [c[1:] for c in BEHAVIOR_INVALID],
                         ids=[c[0] for c in BEHAVIOR_INVALID])
def test_invalid_behavior_and_fallback_are_rejected(where, value, field):
    found = violations(with_change(load_example(), ("spec", *where), value))
    assert found, "accepted"
    assert any(field.startswith(v.split(": ", 1)[0]) for v in found), found


@pytest.mark.parametrize("behavior", [HPA_BEHAVIOR, {"scaleUp": {"selectPolicy": "Disabled"}}, {}])
def test_the_hpas_behavior_shape_and_a_fallback_are_accepted(behavior):
    obj = with_change(load_example(), ("spec", "behavior"), behavior)
    obj = with_change(obj, ("spec", "fallback"), {"failureThreshold": 3, "replicas": 4})
    assert violations(obj) == []
    assert parse_spec(obj["spec"]).fallback.replicas == 4


def test_status_as_the_operator_writes_it_is_accepted():
    obj = load_example()
    obj["status"] = {
        "observedGeneration": 3, "currentReplicas": 4, "desiredReplicas": 5, "recommendedReplicas": 6,
        "decisions": 12,
        "conditions": [{"type": "Ready", "status": "True", "reason": "Reconciled", "message": "scale-up: 5",
                        "lastTransitionTime": "2025-01-01T00:00:00Z", "observedGeneration": 3}],
        "lastDecision": {"time": "2025-01-01T00:00:00Z", "replicas": 5, "breachProbability": None,
                         "reason": "hold-telemetry-stale"},
        "posterior": {"capacity": {"mu": [25.0], "kappa": [10.0], "alpha": [3.0], "beta": [12.5]},
                      "breaches": {"a": [0.5], "b": [49.5], "forgetting": 0.995}, "recentTargets": [4, 5]},
        "lastScale": {"replicas": 4, "time": "2025-01-01T00:00:00Z"},
        "conflictingWriter": {"replicas": 3, "detected": "2025-01-01T00:00:00Z",
                              "backoffUntil": "2025-01-01T00:05:00Z"},
    }
    assert violations(obj) == []
    # null (how a merge patch clears them) is accepted too
    assert violations({**obj, "status": {**obj["status"], "lastScale": None, "conflictingWriter": None}}) == []
    bad = copy.deepcopy(obj)
    bad["status"]["conditions"][0]["status"] = "Yes"
    assert any(v.startswith("status.conditions[0].status") for v in violations(bad))
    status = crd_schema()["properties"]["status"]
    assert status["properties"]["posterior"]["x-kubernetes-preserve-unknown-fields"] is True
    assert {"observedGeneration", "currentReplicas", "desiredReplicas", "recommendedReplicas", "conditions",
            "lastDecision", "posterior", "lastScale", "conflictingWriter"} <= set(status["properties"])


def test_the_points_rule_is_prometheus_limit_and_names_its_field():
    """The CRD's points-per-query bound is the limit Prometheus enforces (and parse_spec's), reported at
    spec.historySeconds."""
    from harmony.telemetry.prometheus import MAX_POINTS_PER_SERIES

    (rule,) = [r for r in crd_schema()["properties"]["spec"]["x-kubernetes-validations"]
               if "intervalSeconds" in r["rule"]]
    assert rule["rule"].endswith(f"<= {MAX_POINTS_PER_SERIES}") and rule["fieldPath"] == ".historySeconds"
    assert "11000" in rule["message"]
    capacity = crd_schema()["properties"]["spec"]["properties"]["capacityPerReplica"]
    from harmony.operator.spec import MIN_CAPACITY_PER_REPLICA

    assert capacity["minimum"] == MIN_CAPACITY_PER_REPLICA and "exclusiveMinimum" not in capacity


def test_cel_rules_are_present_and_compile():
    rules = {(path, rule) for path, rule, _ in cel_rules(crd_schema())}
    assert ("spec", "self.minReplicas <= self.maxReplicas") in rules
    assert ("spec.indicators", "self.all(i, self.exists_one(j, j.name == i.name))") in rules
    assert ("spec.indicators", "self.filter(i, i.demand).size() == 1") in rules
    model_rule = ("(has(self.forecaster) ? 1 : 0) + (has(self.baseline) ? 1 : 0) + (has(self.checkpoint) ? 1 : 0)"
                  " <= 1")
    assert ("spec.model", model_rule) in rules
    assert ("spec", "!has(self.capacityPerReplica) || !has(self.capacity) || !has(self.capacity.prior)") in rules
    assert ("spec", "!has(self.historySeconds) || self.historySeconds / self.intervalSeconds <= 11000") in rules
    env = celpy.Environment()
    for _, rule in rules:
        env.compile(rule)  # raises on a syntax error
    assert all(message for _, _, message in cel_rules(crd_schema()))
    program = env.program(env.compile(model_rule))
    for model, ok in (({"forecaster": "harmony"}, True), ({"checkpoint": "/m.ckpt"}, True),
                      ({"forecaster": "harmony", "checkpoint": "/m.ckpt"}, False),
                      ({"baseline": "ar:30", "forecaster": "ar:30"}, False)):
        assert bool(program.evaluate({"self": celpy.json_to_cel(model)})) is ok, model


def _defaults(schema: dict, path: str = "spec") -> dict[str, object]:
    found = {}
    for key, sub in schema.get("properties", {}).items():
        if "default" in sub:
            found[f"{path}.{key}"] = sub["default"]
        found.update(_defaults(sub, f"{path}.{key}"))
    if "items" in schema:
        found.update(_defaults(schema["items"], f"{path}[]"))
    return found


MINIMAL = {
    "scaleTargetRef": {"kind": "Deployment", "name": "web"},
    "maxReplicas": 4,
    "indicators": [{"name": "rps", "query": "sum(rate(x[1m]))", "demand": True}, {"name": "gpu", "query": "g"}],
}

# CRD default path -> how to read the value parse_spec chose when the field is absent (containers map to
# the values of their defaulted children, so their defaults must be empty or carry the child's default).
# lookbackSeconds and historySeconds have no CRD default: parse_spec derives them from intervalSeconds.
DEFAULT_READERS = {
    "spec.scaleTargetRef.apiVersion": lambda s: s.target.api_version,
    "spec.minReplicas": lambda s: s.min_replicas,
    "spec.mode": lambda s: s.mode,
    "spec.intervalSeconds": lambda s: s.interval_s,
    "spec.indicators[].level": lambda s: s.indicators[1].level,
    "spec.indicators[].demand": lambda s: s.indicators[1].demand,
    "spec.sla": lambda s: {},
    "spec.sla.maxBreachProbability": lambda s: s.max_breach_probability,
    "spec.sla.coldStartSeconds": lambda s: s.cold_start_s,
    "spec.costPerReplicaHour": lambda s: s.cost_per_replica_hour,
    "spec.behavior": lambda s: {},
    "spec.model": lambda s: {"forecaster": s.model_baseline},
    "spec.model.fineTune.intervalSeconds": lambda s: s.fine_tune.every * s.interval_s,
    "spec.model.fineTune.epochs": lambda s: s.fine_tune.epochs,
    "spec.model.fineTune.maxSeconds": lambda s: s.fine_tune.max_seconds,
}


def test_parse_spec_defaults_equal_the_crd_defaults():
    spec_schema = crd_schema()["properties"]["spec"]
    defaults = _defaults(spec_schema)
    assert set(defaults) == set(DEFAULT_READERS), "a default was added or removed: update DEFAULT_READERS"
    parsed = parse_spec(MINIMAL)
    for path, default in defaults.items():
        assert DEFAULT_READERS[path](parsed) == default, path
    # and the API server's defaulting changes nothing parse_spec would not have chosen itself
    defaulted = apply_defaults(spec_schema, MINIMAL)
    assert defaulted != MINIMAL
    assert parse_spec(defaulted) == parsed
    assert violations({"apiVersion": "harmony.dev/v1alpha1", "kind": "HarmonyAutoscaler",
                       "metadata": {"name": "web"}, "spec": MINIMAL}) == []
