"""Validate objects against the HarmonyAutoscaler CRD as an API server would, without one.

An API server defaults an object from the schema's `default`s, validates it against the OpenAPI v3 schema,
then evaluates the `x-kubernetes-validations` CEL rules. Here: `apply_defaults` walks the schema the same
way; `jsonschema`'s Draft 4 validator checks the schema (OpenAPI 3.0 schemas are Draft 4 plus `nullable`
and the `x-kubernetes-*` extensions, translated by `to_jsonschema`); cel-python evaluates the rules.

Also the example object and the table of invalid specs shared by tests/test_crd.py (the CRD rejects each)
and tests/test_operator_spec.py (parse_spec rejects each, naming the same field).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml

from harmony.operator.spec import crd_manifest

EXAMPLE_PATH = Path(__file__).parents[1] / "deploy" / "examples" / "harmonyautoscaler.yaml"
DELETE = object()


def load_example() -> dict:
    with EXAMPLE_PATH.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def crd_schema() -> dict:
    return crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def to_jsonschema(node: Any) -> Any:
    """OpenAPI v3.0 (Kubernetes flavour) -> JSON Schema Draft 4: `nullable` becomes a null type, the
    x-kubernetes-* extensions go (CEL is evaluated separately)."""
    if isinstance(node, list):
        return [to_jsonschema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key == "nullable":
            continue
        if key in ("properties", "patternProperties"):
            out[key] = {k: to_jsonschema(v) for k, v in value.items()}
        elif key in ("default", "enum", "example"):
            out[key] = value
        else:
            out[key] = to_jsonschema(value)
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def apply_defaults(schema: dict, value: Any) -> Any:
    """A copy of `value` with the schema's defaults applied, recursively (a defaulted `{}` gets its children's
    defaults too), as the API server does on create and update."""
    value = copy.deepcopy(value)
    _default(schema, value)
    return value


def _default(schema: dict, value: Any) -> None:
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                _default(sub, value[key])
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            _default(schema["items"], item)


def _format(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def cel_rules(schema: dict, path: str = "") -> list[tuple[str, str, str]]:
    """Every (schema path, rule, message) in the schema."""
    found = [(path, r["rule"], r.get("message", "")) for r in schema.get("x-kubernetes-validations", [])]
    for key, sub in schema.get("properties", {}).items():
        found += cel_rules(sub, f"{path}.{key}" if path else key)
    if "items" in schema:
        found += cel_rules(schema["items"], f"{path}[]")
    return found


_CEL = celpy.Environment()


def _cel(schema: dict, value: Any, path: str, errors: list[str]) -> None:
    for rule in schema.get("x-kubernetes-validations", []):
        result = _CEL.program(_CEL.compile(rule["rule"])).evaluate({"self": celpy.json_to_cel(value)})
        if not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):  # false, or an evaluation error
            errors.append(f"{path}: {rule.get('message', rule['rule'])}")
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                _cel(sub, value[key], f"{path}.{key}" if path else key, errors)
    elif isinstance(value, list) and "items" in schema:
        for k, item in enumerate(value):
            _cel(schema["items"], item, f"{path}[{k}]", errors)


def violations(obj: dict) -> list[str]:
    """What an API server would reject `obj` (a whole HarmonyAutoscaler) for: `path: message` strings, with
    paths like `spec.indicators[1].query` (a missing required field is reported at its parent)."""
    schema = crd_schema()
    obj = apply_defaults(schema, obj)
    validator = jsonschema.Draft4Validator(to_jsonschema(schema))
    errors = [f"{_format(e.absolute_path)}: {e.message}" for e in validator.iter_errors(obj)]
    if not errors:  # the API server runs CEL on schema-valid objects (rules may assume the declared types)
        _cel(schema, obj, "", errors)
    return errors


def with_change(obj: dict, where: tuple, value: Any) -> dict:
    """A deep copy of `obj` with obj[where[0]][where[1]]... set to `value` (DELETE removes it)."""
    out = copy.deepcopy(obj)
    node = out
    for key in where[:-1]:
        node = node[key]
    if value is DELETE:
        del node[where[-1]]
    else:
        node[where[-1]] = value
    return out


# (case id, where in .spec, new value, the field path parse_spec names). Each is one change to the example
# that both the CRD (schema or CEL) and parse_spec must reject.
INVALID_SPECS = [
    ("max-replicas-zero", ("maxReplicas",), 0, "spec.maxReplicas"),
    ("max-replicas-missing", ("maxReplicas",), DELETE, "spec.maxReplicas"),
    ("max-replicas-string", ("maxReplicas",), "16", "spec.maxReplicas"),
    ("max-replicas-fraction", ("maxReplicas",), 2.5, "spec.maxReplicas"),
    ("min-replicas-negative", ("minReplicas",), -1, "spec.minReplicas"),
    ("min-above-max", ("minReplicas",), 17, "spec.minReplicas"),
    ("target-missing", ("scaleTargetRef",), DELETE, "spec.scaleTargetRef"),
    ("target-name-missing", ("scaleTargetRef", "name"), DELETE, "spec.scaleTargetRef.name"),
    ("target-kind-missing", ("scaleTargetRef", "kind"), DELETE, "spec.scaleTargetRef.kind"),
    ("target-name-empty", ("scaleTargetRef", "name"), "", "spec.scaleTargetRef.name"),
    ("mode-unknown", ("mode",), "Auto", "spec.mode"),
    ("mode-lowercase", ("mode",), "scale", "spec.mode"),
    ("interval-zero", ("intervalSeconds",), 0, "spec.intervalSeconds"),
    ("interval-above-hour", ("intervalSeconds",), 3601, "spec.intervalSeconds"),
    ("lookback-zero", ("lookbackSeconds",), 0, "spec.lookbackSeconds"),
    ("lookback-above-history", ("lookbackSeconds",), 50000, "spec.lookbackSeconds"),
    ("history-zero", ("historySeconds",), 0, "spec.historySeconds"),
    # 400000 s at the example's 30 s interval: 13333 points per range query, above Prometheus' 11000
    ("history-over-prometheus-points", ("historySeconds",), 400000, "spec.historySeconds"),
    ("history-over-points-at-one-second", ("intervalSeconds",), 1, "spec.historySeconds"),  # 43200 points
    ("indicators-empty", ("indicators",), [], "spec.indicators"),
    ("indicators-missing", ("indicators",), DELETE, "spec.indicators"),
    ("indicator-name-digit", ("indicators", 0, "name"), "1rps", "spec.indicators[0].name"),
    ("indicator-name-dash", ("indicators", 0, "name"), "requests-per-second", "spec.indicators[0].name"),
    ("indicator-name-missing", ("indicators", 1, "name"), DELETE, "spec.indicators[1].name"),
    ("indicator-name-duplicate", ("indicators", 1, "name"), "requests_per_second", "spec.indicators[1].name"),
    ("indicator-query-empty", ("indicators", 1, "query"), "", "spec.indicators[1].query"),
    ("indicator-query-missing", ("indicators", 1, "query"), DELETE, "spec.indicators[1].query"),
    ("indicator-level-zero", ("indicators", 1, "level"), 0, "spec.indicators[1].level"),
    ("indicator-level-six", ("indicators", 1, "level"), 6, "spec.indicators[1].level"),
    ("indicator-demand-string", ("indicators", 1, "demand"), "yes", "spec.indicators[1].demand"),
    ("two-demand-indicators", ("indicators", 1, "demand"), True, "spec.indicators"),
    ("no-demand-indicator", ("indicators", 0, "demand"), False, "spec.indicators"),
    ("capacity-zero", ("capacityPerReplica",), 0, "spec.capacityPerReplica"),
    ("capacity-negative", ("capacityPerReplica",), -3.0, "spec.capacityPerReplica"),
    ("capacity-below-floor", ("capacityPerReplica",), 1e-12, "spec.capacityPerReplica"),
    ("breach-probability-zero", ("sla", "maxBreachProbability"), 0, "spec.sla.maxBreachProbability"),
    ("breach-probability-one", ("sla", "maxBreachProbability"), 1, "spec.sla.maxBreachProbability"),
    ("breach-probability-percent", ("sla", "maxBreachProbability"), 5.0, "spec.sla.maxBreachProbability"),
    ("cold-start-negative", ("sla", "coldStartSeconds"), -1, "spec.sla.coldStartSeconds"),
    ("cost-negative", ("costPerReplicaHour",), -0.5, "spec.costPerReplicaHour"),
    ("stabilisation-negative", ("behavior", "scaleDownStabilizationSeconds"), -1,
     "spec.behavior.scaleDownStabilizationSeconds"),
    ("step-up-zero", ("behavior", "maxScaleUpStep"), 0, "spec.behavior.maxScaleUpStep"),
    ("step-down-zero", ("behavior", "maxScaleDownStep"), 0, "spec.behavior.maxScaleDownStep"),
    ("forecaster-and-checkpoint", ("model", "checkpoint"), "/models/harmony.ckpt", "spec.model"),
    ("forecaster-empty", ("model", "forecaster"), "", "spec.model.forecaster"),
    ("prometheus-url-without-scheme", ("prometheus",), {"url": "prometheus:9090"}, "spec.prometheus.url"),
    ("prometheus-secret-without-name", ("prometheus",), {"secretRef": {}}, "spec.prometheus.secretRef.name"),
    ("prior-alpha-one", ("capacity",), {"prior": {"capacity_posterior": {
        "mu": [5.0], "kappa": [3.0], "alpha": [1.0], "beta": [2.0]}}},
     "spec.capacity.prior.capacity_posterior.alpha[0]"),
    ("prior-two-workloads", ("capacity",), {"prior": {"capacity_posterior": {
        "mu": [5.0, 6.0], "kappa": [3.0], "alpha": [3.0], "beta": [2.0]}}},
     "spec.capacity.prior.capacity_posterior.mu"),
    ("prior-without-posterior", ("capacity",), {"prior": {"unit": "requests/s per replica"}},
     "spec.capacity.prior.capacity_posterior"),
    ("prior-with-declared-capacity", ("capacity",), {"prior": {"capacity_posterior": {
        "mu": [5.0], "kappa": [3.0], "alpha": [3.0], "beta": [2.0]}}}, "spec.capacity.prior"),
]
