"""harmony.telemetry: TelemetryFrame, dataset sources (one module each, one registry) and the Prometheus
range-query source.

The bottom layer: it imports no other harmony layer (only `harmony.errors`), and nothing of torch,
kubernetes or kopf.
"""
