"""The operator's default exporter port, as plain data: no prometheus_client.

`harmony operator run --help` shows it as `--metrics-port`'s default, and the chart uses the same number;
reading it from `harmony.operator.metrics` would import prometheus_client (and its HTTP server) for the help.
kopf's liveness endpoint has its defaults in `harmony.operator.health`, which is as light.
"""

from __future__ import annotations

#: The exporter's default port (the CLI's and the chart's): not node_exporter's 9100, which scrape configs and
#: network policies written for node_exporter match by number; outside the 9100-9999 range where Prometheus'
#: default port allocations list places exporters; not kopf's liveness endpoint (8080).
METRICS_PORT = 8095
