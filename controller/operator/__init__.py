"""The Kubernetes operator: one `HarmonyAutoscaler` custom resource per workload (DESIGN.md, "Operator").

- `spec`: the resource's spec, parsed and re-validated into frozen dataclasses (defence in depth behind the
  CRD's OpenAPI schema, deploy/crd/harmonyautoscaler.yaml), and mapped onto `DecisionSettings`.
- `metrics`: the Prometheus exporter (`harmony_*` metrics, `/metrics` and `/healthz` on one HTTP server).
- `state`, `kube`, `reconcile`: what survives restarts (status), the Kubernetes client wrapper, one step.

Layering: this package may import `controller` (decision math, posteriors, forecasters) and `forecasting`,
kubernetes, kopf and prometheus-client; nothing below it imports it. Kubernetes, Prometheus, the clock and
the metrics registry come in as parameters with production defaults, so tests substitute them.
"""
