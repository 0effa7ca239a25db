"""Benchmark: wall time of `harmony --help` and of each `harmony COMMAND --help`, a fresh interpreter each run.

Target: under 1 s each. `--help` is what a user runs first, and shell completion imports the same modules on
every TAB; the heavy libraries load only in the commands' bodies (tests/test_cli_startup.py checks that).
Each run is the console script's own call (`harmony = "harmony.cli.main:app"`); the table gives the median
and the slowest wall time of `--repeats` runs, and the median CPU time (user + system) of the process, which
a machine busy with other work inflates less than the wall time.

    .venv/bin/python bench/cli_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time

import typer.main
from rich.console import Console
from rich.table import Table

from harmony.cli.main import app

TARGET_S = 1.0
RUN_APP = "from harmony.cli.main import app; app(prog_name='harmony')"


def command_paths(command, path: tuple[str, ...] = ()):
    """The root and every command and group under it, as the words that name them."""
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from command_paths(sub, (*path, name))


def cpu_s() -> float:
    """CPU seconds (user + system) of every finished child process so far."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def help_seconds(path: tuple[str, ...], repeats: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of `harmony PATH --help`, one fresh interpreter per run."""
    wall, cpu = [], []
    for _ in range(repeats):
        started, cpu_before = time.perf_counter(), cpu_s()
        subprocess.run([sys.executable, "-c", RUN_APP, *path, "--help"], check=True, stdout=subprocess.DEVNULL)
        wall.append(time.perf_counter() - started)
        cpu.append(cpu_s() - cpu_before)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    table = Table(title=f"harmony ... --help: wall time over {args.repeats} runs (target < {TARGET_S:g} s)",
                  title_justify="left")
    for col in ("command", "median s", "max s", "median CPU s", "under target"):
        table.add_column(col, justify="left" if col == "command" else "right")
    for path in command_paths(typer.main.get_command(app)):
        wall, cpu = help_seconds(path, args.repeats)
        median = statistics.median(wall)
        table.add_row(" ".join(("harmony", *path, "--help")), f"{median:.2f}", f"{max(wall):.2f}",
                      f"{statistics.median(cpu):.2f}", "yes" if median < TARGET_S else "NO")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
