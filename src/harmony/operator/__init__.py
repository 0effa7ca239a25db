"""The Kubernetes operator: one `HarmonyAutoscaler` custom resource per workload (DESIGN.md, "Operator").

- `spec`: the resource's spec, parsed and re-validated into frozen dataclasses (defence in depth behind the
  CRD's OpenAPI schema, `crd/harmonyautoscaler.yaml`, package data), mapped onto the step's `ControlSettings`.
- `metrics`: the Prometheus exporter (`harmony_*`, `process_*`, `harmony_build_info` on prometheus_client's server).
- `health`: what kopf's liveness endpoint (`/healthz`) reports: the last reconcile step's age, Prometheus reachability.
- `ports`: the exporter's default port (`--metrics-port`, the chart's), as plain data for the CLI's help.
- `state`, `kube`, `reconcile`: what survives restarts (status), the Kubernetes client wrapper, one step.
- `replay_exporter`: serves a recorded trace as Prometheus metrics, for demos and end-to-end tests.

Layering: this package may import `harmony.decision`, `harmony.forecasting`, `harmony.telemetry`, kubernetes,
kopf and prometheus-client; only the CLI imports it. Kubernetes, Prometheus, the clock and
the metrics registry come in as parameters with production defaults, so tests substitute them.
"""
