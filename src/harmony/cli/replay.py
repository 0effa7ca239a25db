"""`harmony replay-exporter`: serve a bundled trace as Prometheus gauges, time-compressed (tests, demos).

Thin: it loads the dataset, builds a `harmony.operator.replay_exporter.ReplayExporter` and serves it until
interrupted (or for `--duration` seconds). Registered in `harmony.cli.main`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from harmony.cli.common import NON_NEGATIVE, PORT, POSITIVE, check_flags, console, user_errors
from harmony.errors import HarmonyInputError
from harmony.telemetry.dataset_names import DATASET_NAMES


@user_errors
def replay_exporter(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help=f"one of: {', '.join(DATASET_NAMES)}")] = "gentd26",
    path: Annotated[Path | None, typer.Option(help="a file or folder in the dataset's format")] = None,
    series: Annotated[str | None, typer.Option(help="series to replay (default: the first)")] = None,
    speed: Annotated[float, typer.Option(help="trace-seconds replayed per wall-clock second")] = 60.0,
    port: Annotated[int, typer.Option(help="port to serve /metrics on (0: any free port)")] = 9105,
    addr: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    loop: Annotated[bool, typer.Option("--loop/--hold", help="at the end: start over, or hold the last row")] = True,
    start_row: Annotated[int, typer.Option(help="trace row served first")] = 0,
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds (default: run until ^C)")]
    = None,
) -> None:
    """Replay a dataset's trace as `harmony_replay_<indicator>` gauges for Prometheus to scrape."""
    from harmony.operator.replay_exporter import ReplayExporter
    from harmony.telemetry.datasets import get_source

    check_flags({"--speed": (speed, POSITIVE), "--port": (port, PORT), "--start-row": (start_row, NON_NEGATIVE),
                 "--duration": (duration, NON_NEGATIVE)})

    frame = get_source(dataset).load(path)
    name = series if series is not None else frame.series[0]
    exporter = ReplayExporter(frame, name, speed, loop=loop, start_row=start_row)
    try:
        exporter.start(port, addr=addr)
    except OSError as exc:
        raise HarmonyInputError(f"--port {port}: cannot listen on {addr}:{port} ({exc.strerror})") from exc
    row_s = exporter.interval_s / speed
    console.print(
        f"serving {len(exporter.metric_names)} indicators of {dataset}/{name} ({len(exporter.frame)} rows) on "
        f"http://{addr}:{exporter.port}/metrics, one row every {row_s:g}s",
        markup=False, highlight=False, soft_wrap=True,
    )
    deadline = None if duration is None else time.monotonic() + duration
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic())))
    except KeyboardInterrupt:
        pass
    finally:
        exporter.stop()
