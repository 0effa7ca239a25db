"""The Helm chart deploy/helm/harmony, rendered offline with helm-python-sdk (Helm's Go SDK, no cluster).

Every rendered manifest is validated with kubernetes_validate (strict); the RBAC rules must grant exactly the
permission table below, the CRD copy must equal the package's (src/harmony/operator/crd), and the KEDA/HPA
examples must be well formed.
"""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest
import typer
import yaml

from harmony.operator.ports import METRICS_PORT
from harmony.operator.spec import CRD_PATH

helm = pytest.importorskip("helm_python", reason="helm-python-sdk (test extra) renders the chart offline")

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "harmony"
EXAMPLES = ROOT / "deploy" / "examples"
K8S = kubernetes_validate.latest_version()
RELEASE, NAMESPACE = "harmony", "harmony-system"

# Kinds served by CRDs of other projects: kubernetes_validate has no schema, so they are checked structurally.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule"),
             ("keda.sh/v1alpha1", "ScaledObject"), ("kopf.dev/v1", "ClusterKopfPeering"),
             ("kopf.dev/v1", "KopfPeering")}

# The operator's permissions: (apiGroup, resource, verb). Nothing else may be granted.
COMMON = {
    *{("harmony.dev", "harmonyautoscalers", v) for v in ("get", "list", "watch", "patch")},
    *{("harmony.dev", "harmonyautoscalers/status", v) for v in ("get", "patch")},
    *{("apps", f"{r}/scale", v) for r in ("deployments", "statefulsets") for v in ("get", "patch")},
    *{("apps", r, "get") for r in ("deployments", "statefulsets")},  # status.readyReplicas
    ("", "events", "create"),
    # the TargetManagedElsewhere guard lists them each step
    ("autoscaling", "horizontalpodautoscalers", "list"), ("keda.sh", "scaledobjects", "list"),
}
CLUSTER_ONLY = {("", "namespaces", "list"), ("", "namespaces", "watch")}
PEERING_VERBS = ("get", "list", "watch", "patch", "create")
CLUSTER_PEERING = {("kopf.dev", "clusterkopfpeerings", v) for v in PEERING_VERBS}
NAMESPACED_PEERING = {("kopf.dev", "kopfpeerings", v) for v in PEERING_VERBS}

AUTOSCALER = {"apiVersion": "harmony.dev/v1alpha1", "kind": "HarmonyAutoscaler", "metadata": {"name": "llm"},
              "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "llm"}, "maxReplicas": 8,
                       "indicators": [{"name": "rps", "query": "sum(rate(requests_total[1m]))", "demand": True}]}}
CASES = {
    "default": {},
    "namespaced": {"rbac": {"scope": "namespaced"}, "watchNamespaces": ["team-a", "team-b"]},
    "peering": {"peering": {"enabled": True, "name": "gpu"}, "replicaCount": 2, "selector": {"shard": "a"},
                "trainingWorkers": 2},
    "namespaced-peering": {"rbac": {"scope": "namespaced"}, "watchNamespaces": ["team-a", "team-b"],
                           "peering": {"enabled": True}},
    "monitoring": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
                   "prometheusRule": {"enabled": True}},
    "checkpoints": {"checkpoints": {"enabled": True, "storageClassName": "fast"}},
    "existing-claim": {"checkpoints": {"enabled": True, "existingClaim": "trained-models"},
                       "prometheus": {"url": "https://prom:9091", "caFile": "/etc/prom/ca.crt",
                                      "bearerTokenFile": "/var/run/secrets/prom/token"}},
    "training": {"checkpoints": {"enabled": True, "storageClassName": "fast"},
                 "training": {"enabled": True, "autoscaler": AUTOSCALER, "args": ["--option", "start=-14d"],
                              "resources": {"limits": {"nvidia.com/gpu": 1}}},
                 "prometheus": {"bearerTokenFile": "/var/run/secrets/prom/token"},
                 "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
                 "extraVolumes": [{"name": "prom-token", "projected": {"sources": [
                     {"serviceAccountToken": {"path": "token", "audience": "prometheus"}}]}}],
                 "extraVolumeMounts": [{"name": "prom-token", "mountPath": "/var/run/secrets/prom", "readOnly": True}]},
    "secrets": {"rbac": {"prometheusSecrets": {"enabled": True}}},
    "secrets-namespaced": {"rbac": {"scope": "namespaced", "prometheusSecrets": {"enabled": True, "names": ["prom"]}},
                           "watchNamespaces": ["team-a"]},
    "secrets-watched": {"rbac": {"prometheusSecrets": {"enabled": True}}, "watchNamespaces": ["team-a", "team-b"]},
}
SECRETS = {("", "secrets", "get")}
#: Cases of a cluster-scoped operator serving named namespaces that reads Secrets: a Role in each of them.
SECRET_ROLES = {"secrets-watched": ("team-a", "team-b")}
EXPECTED_RULES = {
    "default": COMMON | CLUSTER_ONLY,
    "namespaced": COMMON,
    "peering": COMMON | CLUSTER_ONLY | CLUSTER_PEERING,
    "namespaced-peering": COMMON | NAMESPACED_PEERING,
    "monitoring": COMMON | CLUSTER_ONLY,
    "checkpoints": COMMON | CLUSTER_ONLY,
    "existing-claim": COMMON | CLUSTER_ONLY,
    "training": COMMON | CLUSTER_ONLY,  # the training job has no API access at all
    "secrets": COMMON | CLUSTER_ONLY | SECRETS,  # serving every namespace: get, by name, in any
    "secrets-namespaced": COMMON | SECRETS,
    "secrets-watched": COMMON | CLUSTER_ONLY,  # Secrets only in the watched namespaces' Roles
}


@pytest.fixture(scope="module")
def chart():
    return helm.Chart.load(str(CHART))


def render(chart, values: dict) -> list[dict]:
    out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            assert text.strip(), "NOTES.txt renders empty"
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, chart):
    return request.param, render(chart, CASES[request.param])


def granted(docs: list[dict]) -> dict[tuple[str, str], set]:
    """(kind, namespace) of each Role/ClusterRole -> its (apiGroup, resource, verb) set."""
    out = {}
    for role in of_kind(docs, "ClusterRole") + of_kind(docs, "Role"):
        perms = set()
        for rule in role["rules"]:
            # no nonResourceURLs; resourceNames only to narrow the Secrets read (rbac.prometheusSecrets.names)
            assert set(rule) <= {"apiGroups", "resources", "verbs"} | (
                {"resourceNames"} if rule["resources"] == ["secrets"] else set()), rule
            perms |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
        out[(role["kind"], role["metadata"].get("namespace"))] = perms
    return out


# --- rendering, lint, schema validation ---------------------------------------------------------------------

def test_chart_metadata(chart):
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (meta["apiVersion"], meta["name"], meta["version"], str(meta["appVersion"])) == \
        ("v2", "harmony", "0.1.0", "0.1.0")


@pytest.mark.parametrize("name", sorted(CASES))
def test_lint_clean(name):
    report = helm.lint(str(CHART), CASES[name], strict=True, namespace=NAMESPACE)
    assert not report["errors"], report
    assert all(m["severity"] < 2 for m in report["messages"]), report["messages"]


def test_every_manifest_validates(case):
    name, docs = case
    assert docs
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            continue  # checked structurally in test_service_monitor / test_prometheus_rule
        try:
            kubernetes_validate.validate(doc, K8S, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {doc['kind']} {doc['metadata']['name']}: {exc}")


def test_common_labels(case):
    _, docs = case
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "harmony"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/version"] == "0.1.0"


def test_schema_rejects_bad_values(chart):
    chart.validate_schema(CASES["namespaced"])
    for bad in ({"rbac": {"scope": "everything"}},
                {"rbac": {"scope": "namespaced"}},  # namespaced needs watchNamespaces
                {"replicaCount": 2},  # several replicas need peering
                {"metrics": {"port": "9100"}},
                {"liveness": {"port": 80}},  # below 1024: the operator runs as non-root
                {"rbac": {"scaleTargets": [{"apiGroup": "*", "resources": ["deployments"]}]}},
                {"rbac": {"scaleTargets": [{"apiGroup": "apps", "resources": ["*"]}]}},
                {"unknownKey": True}):
        with pytest.raises(helm.HelmError):
            chart.validate_schema(bad)
        with pytest.raises(helm.HelmError):
            chart.render(bad, name=RELEASE, namespace=NAMESPACE)
    with pytest.raises(helm.HelmError, match="liveness.port must differ"):  # two servers cannot share a port
        chart.render({"liveness": {"port": METRICS_PORT}}, name=RELEASE, namespace=NAMESPACE)


# --- RBAC ---------------------------------------------------------------------------------------------------

def test_rbac_has_no_wildcards(case):
    _, docs = case
    for role in of_kind(docs, "ClusterRole") + of_kind(docs, "Role"):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert not any("*" in item for item in rule[key]), (role["metadata"]["name"], rule)


def test_rbac_grants_exactly_the_table(case):
    name, docs = case
    roles = granted(docs)
    values = CASES[name]
    if values.get("rbac", {}).get("scope") == "namespaced":
        assert set(roles) == {("Role", ns) for ns in values["watchNamespaces"]}
        assert not of_kind(docs, "ClusterRole") and not of_kind(docs, "ClusterRoleBinding")
    else:
        assert set(roles) == {("ClusterRole", None)} | {("Role", ns) for ns in SECRET_ROLES.get(name, ())}
        if name not in SECRET_ROLES:
            assert not of_kind(docs, "Role") and not of_kind(docs, "RoleBinding")
    for (kind, _), perms in roles.items():
        assert perms == (SECRETS if kind == "Role" and name in SECRET_ROLES else EXPECTED_RULES[name])


def test_secrets_are_read_by_name_only_and_narrowed_to_the_names_given(chart):
    """get only (never list or watch: the operator cannot enumerate Secrets); with names, only those."""
    for values, names in ((CASES["secrets"], None), (CASES["secrets-namespaced"], ["prom"])):
        rules = [r for role in of_kind(render(chart, values), "ClusterRole") + of_kind(render(chart, values), "Role")
                 for r in role["rules"] if "secrets" in r["resources"]]
        assert rules and all(r["verbs"] == ["get"] and r.get("resourceNames") == names for r in rules)
    assert not [r for role in of_kind(render(chart, {}), "ClusterRole") for r in role["rules"]
                if "secrets" in r["resources"]]


def test_bindings_point_at_the_service_account(case):
    _, docs = case
    (sa,) = of_kind(docs, "ServiceAccount")
    roles = {(r["kind"], r["metadata"]["name"], r["metadata"].get("namespace"))
             for r in of_kind(docs, "ClusterRole") + of_kind(docs, "Role")}
    bindings = of_kind(docs, "ClusterRoleBinding") + of_kind(docs, "RoleBinding")
    assert len(bindings) == len(roles)
    for b in bindings:
        ref = b["roleRef"]
        assert (ref["kind"], ref["name"], b["metadata"].get("namespace")) in roles
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}]
    (dep,) = of_kind(docs, "Deployment")
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]


def test_scale_targets_follow_values(chart):
    docs = render(chart, {"rbac": {"scaleTargets": [
        {"apiGroup": "serving.example.com", "resources": ["inferenceservices"]}]}})
    (perms,) = granted(docs).values()
    scale = {p for p in perms if p[1].endswith("/scale")}
    assert scale == {("serving.example.com", "inferenceservices/scale", v) for v in ("get", "patch")}
    assert not {p for p in perms if p[0] == "apps"}
    assert ("", "pods", "list") in perms  # readiness of a kind without readyReplicas: its pods
    assert not {p for p in perms if p[0] == "serving.example.com" and not p[1].endswith("/scale")}
    mixed = render(chart, {"rbac": {"scaleTargets": [
        {"apiGroup": "apps", "resources": ["replicasets"]},
        {"apiGroup": "serving.example.com", "resources": ["inferenceservices"]}]}})
    (perms,) = granted(mixed).values()
    assert {p for p in perms if p[0] == "apps"} == {("apps", "replicasets/scale", "get"),
                                                  ("apps", "replicasets/scale", "patch"),
                                                  ("apps", "replicasets", "get")}
    assert ("", "pods", "list") in perms


# --- the Deployment -----------------------------------------------------------------------------------------

def container(docs: list[dict]) -> tuple[dict, dict]:
    (dep,) = of_kind(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    return pod, c


def test_security_context(case):
    _, docs = case
    pod, c = container(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["resources"]["requests"] and c["resources"]["limits"]


def operator_defaults() -> dict[str, object]:
    """`harmony operator run`'s option defaults, by flag."""
    from harmony.cli.operator import operator_app

    cmd = typer.main.get_command(operator_app)
    cmd = getattr(cmd, "commands", {}).get("run", cmd)
    return {opt: p.default for p in cmd.params for opt in p.opts}


def test_probes_tmp_and_metrics_port(case):
    from harmony.operator.health import LIVENESS_PATH, LIVENESS_PORT

    _, docs = case
    pod, c = container(docs)
    ports = {p["name"]: p for p in c["ports"]}
    assert ports == {"metrics": {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
                     "liveness": {"name": "liveness", "containerPort": LIVENESS_PORT, "protocol": "TCP"}}
    # the probes ask kopf's liveness endpoint, on the operator's default port and path, not the exporter
    defaults = operator_defaults()
    assert (defaults["--liveness-port"], defaults["--metrics-port"]) == (LIVENESS_PORT, METRICS_PORT)
    args = dict(a.split("=", 1) for a in c["args"][2:] if "=" in a)
    assert (args["--liveness-port"], args["--liveness-addr"]) == (str(LIVENESS_PORT), "0.0.0.0")
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": LIVENESS_PATH, "port": "liveness"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    (svc,) = of_kind(docs, "Service")
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics"
    assert svc["spec"]["selector"].items() <= pod_labels(docs).items()


def pod_labels(docs: list[dict]) -> dict:
    (dep,) = of_kind(docs, "Deployment")
    return dep["spec"]["template"]["metadata"]["labels"]


def operator_options() -> set[str]:
    from harmony.cli.operator import operator_app

    cmd = typer.main.get_command(operator_app)
    cmd = getattr(cmd, "commands", {}).get("run", cmd)
    return {opt for p in cmd.params for opt in p.opts}


def test_args_are_built_from_values(case):
    name, docs = case
    values = CASES[name]
    _, c = container(docs)
    assert c["command"] == ["harmony"]
    args = c["args"]
    assert args[:2] == ["operator", "run"]
    flags = [a.split("=", 1) for a in args[2:]]
    known = operator_options()
    assert all(f[0] in known for f in flags), (flags, known)
    given = {}
    for f in flags:
        given.setdefault(f[0], []).append(f[1] if len(f) == 2 else None)
    prom = values.get("prometheus", {})
    assert given["--prometheus-url"] == [prom.get("url", "http://prometheus-operated.monitoring.svc:9090")]
    assert given["--metrics-port"] == [str(METRICS_PORT)]
    workers = values.get("trainingWorkers", operator_defaults()["--training-workers"])  # the chart's default: the CLI's
    assert given["--training-workers"] == [str(workers)]
    assert given.get("--namespace", []) == values.get("watchNamespaces", [])
    assert given.get("--selector", []) == [f"{k}={v}" for k, v in values.get("selector", {}).items()]
    peering = values.get("peering", {})
    assert given.get("--peering", []) == ([peering_name(docs)] if peering.get("enabled") else [])
    if peering.get("name"):
        assert given["--peering"] == [peering["name"]]
    assert given.get("--ca-file", []) == ([prom["caFile"]] if prom.get("caFile") else [])
    assert given.get("--bearer-token-file", []) == ([prom["bearerTokenFile"]] if prom.get("bearerTokenFile") else [])
    assert "--insecure-skip-verify" not in given


def peering_name(docs: list[dict]) -> str:
    """The name of the kopf peering object(s) the chart creates (one name, whatever the kind and namespace)."""
    (name,) = {d["metadata"]["name"] for d in docs if d["kind"] in ("ClusterKopfPeering", "KopfPeering")}
    return name


def test_peering_name_is_derived_per_shard_and_its_object_created(chart):
    """Two releases serving different shards must not share a peering name: kopf would pause one shard's
    operator in favour of the other's and that shard would never be served. The default is derived from the
    release and the shard; the chart creates the object kopf waits for."""
    def args_of(docs):
        return [a for a in container(docs)[1]["args"] if a.startswith("--peering=")]

    shard_a = render(chart, {"peering": {"enabled": True}, "selector": {"shard": "a"}})
    shard_b = render(chart, {"peering": {"enabled": True}, "selector": {"shard": "b"}})
    names = {peering_name(shard_a), peering_name(shard_b)}
    assert len(names) == 2 and all(n.startswith(f"{RELEASE}-") and len(n) <= 63 for n in names)
    assert args_of(shard_a) == [f"--peering={peering_name(shard_a)}"]
    again = render(chart, {"peering": {"enabled": True}, "selector": {"shard": "a"}})
    assert peering_name(again) == peering_name(shard_a)  # stable across upgrades: replicas keep meeting
    (cluster_peering,) = of_kind(shard_a, "ClusterKopfPeering")
    assert not of_kind(shard_a, "KopfPeering")
    # namespaced operators meet in a KopfPeering in each served namespace
    namespaced = render(chart, {"peering": {"enabled": True}, "watchNamespaces": ["team-a", "team-b"]})
    assert {d["metadata"]["namespace"] for d in of_kind(namespaced, "KopfPeering")} == {"team-a", "team-b"}
    assert not of_kind(namespaced, "ClusterKopfPeering")
    other_namespaces = render(chart, {"peering": {"enabled": True}, "watchNamespaces": ["team-c"]})
    assert peering_name(other_namespaces) != peering_name(namespaced)
    # an explicit name wins; createObject false leaves the object to the user
    named = render(chart, {"peering": {"enabled": True, "name": "gpu", "createObject": False}})
    assert args_of(named) == ["--peering=gpu"] and not of_kind(named, "ClusterKopfPeering")
    assert not args_of(render(chart, {})) and not of_kind(render(chart, {}), "ClusterKopfPeering")
    with pytest.raises(helm.HelmError):
        chart.validate_schema({"peering": {"enabled": True, "name": "Not A Name"}})


def test_pod_token_mount_follows_the_service_account_value(chart):
    for mount in (True, False):
        docs = render(chart, {"serviceAccount": {"automountServiceAccountToken": mount}})
        pod, _ = container(docs)
        (sa,) = of_kind(docs, "ServiceAccount")
        assert pod["automountServiceAccountToken"] is mount and sa["automountServiceAccountToken"] is mount


def test_checkpoint_volume(case):
    name, docs = case
    pod, c = container(docs)
    checkpoints = CASES[name].get("checkpoints", {})
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    pvcs = of_kind(docs, "PersistentVolumeClaim")
    if not checkpoints.get("enabled"):
        assert "/models" not in mounts and not pvcs
        return
    assert mounts["/models"]["readOnly"] is True
    (vol,) = [v for v in pod["volumes"] if v["name"] == mounts["/models"]["name"]]
    assert vol["persistentVolumeClaim"]["readOnly"] is True
    claim = vol["persistentVolumeClaim"]["claimName"]
    if checkpoints.get("existingClaim"):
        assert claim == checkpoints["existingClaim"] and not pvcs
    else:
        (pvc,) = pvcs
        assert pvc["metadata"]["name"] == claim
        assert pvc["spec"]["storageClassName"] == checkpoints["storageClassName"]


# --- monitoring ---------------------------------------------------------------------------------------------

def test_monitoring_is_optional(chart):
    docs = render(chart, {})
    assert not [d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com/")]


def test_service_monitor(chart):
    docs = render(chart, CASES["monitoring"])
    (sm,) = of_kind(docs, "ServiceMonitor")
    (svc,) = of_kind(docs, "Service")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] in {p["name"] for p in svc["spec"]["ports"]}
    # the target's labels win (honorLabels false, or unset): harmony's object labels collide with none of them
    assert ep["path"] == "/metrics" and ep.get("honorLabels", False) is False
    assert set(ep) <= {"port", "path", "interval", "scrapeTimeout", "honorLabels"}


def test_prometheus_rule(chart):
    docs = render(chart, CASES["monitoring"])
    (rule,) = of_kind(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    (group,) = rule["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    for r in alerts.values():
        assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}
        assert r["labels"]["severity"] in {"warning", "critical"}
        assert r["annotations"]["summary"] and r["annotations"]["description"]
        assert r["expr"].count("(") == r["expr"].count(")")
    breach = alerts["HarmonyBreachProbabilityAboveSLA"]
    assert breach["expr"] == "harmony_breach_probability_ratio > harmony_effective_risk_ratio"
    assert breach["for"] == "10m"
    for r in alerts.values():  # the object's labels as the metrics name them (a scrape's `namespace` is not it)
        assert "$labels.namespace" not in r["annotations"]["summary"], r["alert"]
    assert alerts["HarmonyTelemetryStale"]["expr"] == "increase(harmony_telemetry_errors_total[10m]) > 0"
    assert alerts["HarmonyDecisionsFailing"]["expr"] == "increase(harmony_reconcile_failures_total[10m]) > 0"
    assert "HarmonyOperatorDown" in alerts  # the chart's ServiceMonitor scrapes it: job is known
    (alone,) = of_kind(render(chart, {"prometheusRule": {"enabled": True}}), "PrometheusRule")
    assert "HarmonyOperatorDown" not in {r["alert"] for r in alone["spec"]["groups"][0]["rules"]}
    # Every harmony_* series an alert uses is one the operator exports.
    from harmony.operator.metrics import OperatorMetrics

    exported = {m.name for m in OperatorMetrics().registry.collect()}
    exported |= {f"{n}_total" for n in exported}
    for r in alerts.values():
        for token in r["expr"].replace("(", " ").replace("[", " ").split():
            if token.startswith("harmony_"):
                assert token in exported, token


def test_dashboards_from_files(chart):
    files = sorted(CHART.glob("dashboards/*.json"))
    docs = render(chart, {})
    maps = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert len(maps) == len(files)
    data = {k: v for m in maps for k, v in m["data"].items()}
    assert set(data) == {f.name for f in files}
    for f in files:
        assert json.loads(data[f.name]) == json.loads(f.read_text())
    assert not of_kind(render(chart, {"dashboards": {"enabled": False}}), "ConfigMap")


# --- the CRD ------------------------------------------------------------------------------------------------

def test_crd_copy_is_identical():
    copy = CHART / "crds" / "harmonyautoscaler.yaml"
    assert copy.read_bytes() == CRD_PATH.read_bytes(), \
        "copy the package's CRD: cp src/harmony/operator/crd/harmonyautoscaler.yaml deploy/helm/harmony/crds/"


def test_chart_ships_the_crd(chart):
    names = [c["name"] if isinstance(c, dict) else c for c in chart.crds]
    assert names == ["crds/harmonyautoscaler.yaml"]
    readme = (CHART / "README.md").read_text()
    assert "kubectl apply" in readme and "helm upgrade" in readme


# --- examples -----------------------------------------------------------------------------------------------

def load_example(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


def test_examples_parse():
    for path in sorted(EXAMPLES.glob("*.yaml")):
        assert load_example(path.name), path


def test_hpa_example():
    (hpa,) = load_example("hpa-external-metric.yaml")
    kubernetes_validate.validate(hpa, K8S, strict=True)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"]["name"] == "harmony_recommended_replicas"
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "1"}


def test_keda_example():
    (so,) = load_example("keda-scaledobject.yaml")
    assert (so["apiVersion"], so["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    assert so["spec"]["scaleTargetRef"]["name"] and so["spec"]["maxReplicaCount"] >= so["spec"]["minReplicaCount"]
    (trigger,) = so["spec"]["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] in {"Value", "AverageValue"}
    query = trigger["metadata"]["query"]
    assert 'harmony_recommended_replicas{autoscaler_namespace="default",autoscaler="llm-server"}' in query
    assert float(trigger["metadata"]["threshold"]) > 0
    assert all(isinstance(v, str) for v in trigger["metadata"].values())


def test_prometheus_adapter_example():
    (cfg,) = load_example("prometheus-adapter-rules.yaml")
    (rule,) = cfg["rules"]["external"]
    assert "harmony_recommended_replicas" in rule["seriesQuery"]
    assert rule["name"]["as"] == "harmony_recommended_replicas"
    assert "<<.Series>>" in rule["metricsQuery"] and "<<.LabelMatchers>>" in rule["metricsQuery"]
    assert rule["resources"]["overrides"] == {"autoscaler_namespace": {"resource": "namespace"}}
    assert "by (autoscaler_namespace, autoscaler)" in rule["metricsQuery"]


# --- training in the cluster, extra volumes and env, the PodDisruptionBudget --------------------------------

def test_training_cronjob_writes_the_volume_the_operator_reads(chart):
    docs = render(chart, CASES["training"])
    (job,) = of_kind(docs, "CronJob")
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    (train,) = pod["containers"]
    assert train["args"][:3] == ["train", "--dataset=prometheus", "--path=/etc/harmony/training/autoscaler.yaml"]
    assert "--option=url=http://prometheus-operated.monitoring.svc:9090" in train["args"]
    assert "--option=token-file=/var/run/secrets/prom/token" in train["args"]
    assert "--out=/models/harmony.ckpt" in train["args"] and train["args"][-2:] == ["--option", "start=-14d"]
    assert train["resources"] == {"limits": {"nvidia.com/gpu": 1}}
    mounts = {m["mountPath"]: m for m in train["volumeMounts"]}
    assert not mounts["/models"].get("readOnly") and "/var/run/secrets/prom" in mounts
    (pvc,) = of_kind(docs, "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/models"]["name"]]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    # ReadWriteOnce: writable on one node, so the job is placed beside the operator
    (term,) = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= pod_labels(docs).items()
    # the operator mounts the same claim read-only
    operator_pod, operator = container(docs)
    assert {m["mountPath"]: m for m in operator["volumeMounts"]}["/models"]["readOnly"] is True
    (config,) = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-training")]
    assert yaml.safe_load(config["data"]["autoscaler.yaml"]) == AUTOSCALER
    assert config["metadata"]["name"] == volumes[mounts["/etc/harmony/training"]["name"]]["configMap"]["name"]


def test_training_needs_the_checkpoints_volume_and_an_autoscaler(chart):
    with pytest.raises(helm.HelmError):
        chart.validate_schema({"training": {"enabled": True, "autoscaler": AUTOSCALER}})
    with pytest.raises(helm.HelmError, match="training.autoscaler"):
        chart.render({"checkpoints": {"enabled": True}, "training": {"enabled": True}}, name=RELEASE,
                     namespace=NAMESPACE)
    with pytest.raises(helm.HelmError):
        chart.validate_schema({"training": {"checkpoint": "/elsewhere/x.ckpt"}})
    assert not of_kind(render(chart, {}), "CronJob")


def test_extra_volumes_mounts_and_env_reach_the_operator(chart):
    docs = render(chart, CASES["training"])
    pod, c = container(docs)
    assert {"name": "HTTPS_PROXY", "value": "http://proxy:3128"} in c["env"]
    assert {"name": "prom-token", "mountPath": "/var/run/secrets/prom", "readOnly": True} in c["volumeMounts"]
    assert "prom-token" in {v["name"] for v in pod["volumes"]}
    with pytest.raises(helm.HelmError):
        chart.validate_schema({"extraVolumeMounts": [{"name": "x"}]})  # a mount needs its mountPath


def test_a_disruption_budget_only_with_several_replicas(chart):
    assert not of_kind(render(chart, {}), "PodDisruptionBudget")
    docs = render(chart, CASES["peering"])
    (pdb,) = of_kind(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels(docs).items()


def test_the_installation_name_is_the_same_whatever_shard_the_release_serves(chart):
    """The finalizer is harmony.dev/<installation>: one name per release, so changing the release's selector or
    watched namespaces leaves no finalizer that no running operator would remove."""
    def installation(docs):
        return [a for a in container(docs)[1]["args"] if a.startswith("--installation=")]

    shard_a = render(chart, {"selector": {"shard": "a"}})
    shard_b = render(chart, {"selector": {"shard": "b"}, "watchNamespaces": ["ml"]})
    assert installation(shard_a) == installation(shard_b) and len(installation(shard_a)) == 1
    from harmony.cli.operator import operator_settings

    name = installation(shard_a)[0].split("=", 1)[1]
    settings = operator_settings(None, None, None, "127.0.0.1", 0, 4, priority=1, installation=name)
    assert settings.installation == name
