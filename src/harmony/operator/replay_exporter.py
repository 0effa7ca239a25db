"""Replay a telemetry trace as Prometheus gauges, time-compressed: a stand-in workload for tests and demos.

The exporter serves one gauge per indicator, `harmony_replay_<indicator>` (name sanitised for Prometheus),
holding the value of the trace row reached after `elapsed_s * speed` trace-seconds; a cumulative indicator (a
counter in its source, `Indicator.cumulative`) is served as a counter, `harmony_replay_<indicator>_total`
(the name as it is where it already ends in `_total`), so that `rate()` reads it and `promtool check metrics`
finds no gauge posing as a counter. Beside them `harmony_replay_row` (that row's position in the trace), so
a test can tell which row a scrape saw.
With speed 60 a one-minute trace advances one row per wall-clock second. At the end of the trace the
replay loops to the first row, or holds the last one (`loop=False`). A missing sample (NaN) is exported
as NaN, which Prometheus stores and returns as "NaN": a gap in the trace stays a gap.

The values are computed when scraped (a one-method prometheus_client Collector), once per scrape, so all
gauges of one scrape come from the same row.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from harmony.errors import HarmonyInputError
from harmony.telemetry.frame import TelemetryFrame

PREFIX = "harmony_replay_"
ROW_METRIC = PREFIX + "row"


def metric_name(indicator: str) -> str:
    """`harmony_replay_<indicator>`, with every character Prometheus forbids replaced by `_`."""
    name = re.sub(r"[^a-zA-Z0-9_]", "_", indicator).lower()
    return PREFIX + name


class ReplayExporter:
    """Serve one series of `frame` as gauges, `speed` trace-seconds per wall-clock second.

    series: which series of the frame to replay. loop: start over after the last row (else hold it).
    start_row: the row served at time zero (skip a trace's ragged start). registry: where the collector
    is registered (default: a fresh CollectorRegistry, so nothing else leaks into the exposition).
    clock: monotonic seconds (tests pass a fake). Time zero is construction, reset by `start()`.
    """

    def __init__(
        self,
        frame: TelemetryFrame,
        series: str,
        speed: float,
        *,
        loop: bool = True,
        start_row: int = 0,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not speed > 0 or not math.isfinite(speed):
            raise HarmonyInputError(f"replay speed must be a positive number, got {speed}")
        one = frame.select(series=[series])
        if len(one) == 0:
            raise HarmonyInputError(f"series {series!r} has no rows to replay")
        if not 0 <= start_row < len(one):
            raise HarmonyInputError(f"start_row {start_row} is outside the trace's {len(one)} rows")
        names = [metric_name(ind.name) for ind in one.indicators]
        if len(set(names)) != len(names) or ROW_METRIC in names:
            raise HarmonyInputError(f"indicator names collide after sanitising: {names}")
        self.frame = one
        self.series = series
        self.speed = float(speed)
        self.loop = loop
        self.start_row = start_row
        self.clock = clock
        self.metric_names = tuple(names)
        self.interval_s = one.interval.total_seconds()
        self.registry = registry if registry is not None else CollectorRegistry()
        self.registry.register(self)
        self._t0 = clock()
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------------------------------------
    def row_at(self, elapsed_s: float) -> int:
        """The trace row served `elapsed_s` wall-clock seconds after time zero."""
        advanced = math.floor(max(elapsed_s, 0.0) * self.speed / self.interval_s)
        row = self.start_row + advanced
        n = len(self.frame)
        return row % n if self.loop else min(row, n - 1)

    def current_row(self) -> int:
        return self.row_at(self.clock() - self._t0)

    def values_at(self, row: int) -> dict[str, float]:
        """Indicator name -> value of trace row `row` (NaN where the trace is missing)."""
        return {ind.name: float(v) for ind, v in zip(self.frame.indicators, self.frame.values[row, 0], strict=True)}

    # prometheus_client Collector protocol
    def describe(self) -> Iterator[Metric]:
        """The metric families, without values (so registering does not run a collection)."""
        yield from self._families(None)

    def collect(self) -> Iterator[Metric]:
        yield from self._families(self.current_row())

    def _families(self, row: int | None) -> Iterator[Metric]:
        source = f" from {self.frame.source}" if self.frame.source else ""
        for pos, (ind, name) in enumerate(zip(self.frame.indicators, self.metric_names, strict=True)):
            kind = CounterMetricFamily if ind.cumulative else GaugeMetricFamily  # a counter's family drops _total
            family = kind(name, f"{ind.name} ({ind.unit}, level {ind.level}) replayed{source}, series {self.series}")
            if row is not None:
                family.add_metric([], float(self.frame.values[row, 0, pos]))
            yield family
        family = GaugeMetricFamily(ROW_METRIC, "position of the trace row being replayed (0-based)")
        if row is not None:
            family.add_metric([], float(row))
        yield family

    # ----------------------------------------------------------------------------------------------
    def start(self, port: int, addr: str = "127.0.0.1") -> tuple[WSGIServer, threading.Thread]:
        """Serve /metrics on addr:port (port 0 picks a free one, see `port`) and restart the replay clock."""
        if self._server is not None:
            raise RuntimeError("replay exporter already started")
        self._t0 = self.clock()
        self._server, self._thread = start_http_server(port, addr=addr, registry=self.registry)
        return self._server, self._thread

    @property
    def port(self) -> int:
        """The port being served (useful after `start(0)`)."""
        if self._server is None:
            raise RuntimeError("replay exporter not started")
        return self._server.server_port

    def stop(self) -> None:
        """Stop serving and close the socket; a no-op when not started."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None
