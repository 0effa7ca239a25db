"""`harmony --help`, every `harmony COMMAND --help` and shell completion import no heavy library.

Shell completion runs the whole CLI module on every TAB, and `--help` is the first thing a user runs: both
must not pay for pandas, pyarrow, requests, torch, Lightning, pyro, matplotlib, scipy, kopf, kubernetes, numpy
or prometheus_client, which only the commands' bodies load (the flags name datasets, models and policies from
light tables, `harmony.telemetry.dataset_names`, `harmony.forecasting.predictor_names` and
`harmony.backtest.policy_names`, and the exporter's port from `harmony.operator.ports`). `--help` loads no
pydantic either (typer's value adapters: `harmony.cli.common.CommandGroup` keeps the groups' unset flags from
building any) and no importlib.metadata (`harmony.__version__` reads it when asked for). Each check runs in a
fresh interpreter, so what it finds loaded is what the CLI imported.
How long it takes is a benchmark (bench/cli_startup.py), not a test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import harmony

HEAVY = ("pandas", "pyarrow", "requests", "torch", "pytorch_lightning", "lightning", "pyro", "matplotlib", "scipy",
         "kopf", "kubernetes", "numpy", "prometheus_client")
#: Not heavy libraries, but tens of milliseconds each that `--help` need not pay: typer builds its pydantic
#: adapters for the values a command parses (completion parses them), and importlib.metadata reads the version.
HELP_ONLY = ("pydantic", "importlib.metadata")
SRC = Path(harmony.__file__).resolve().parents[1]

#: Runs `harmony [COMMAND ...] --help` for the root and every command and group of the app, in one
#: interpreter, and prints per command its exit status, whether it printed a usage, and the heavy modules
#: loaded by then (the first command that loads one names the culprit).
HELP_PROBE = """
import contextlib, io, json, sys
import typer.main
from harmony.cli.main import app

def paths(command, path=()):
    yield list(path)
    for name, sub in getattr(command, "commands", {}).items():
        yield from paths(sub, (*path, name))

heavy = sys.argv[1].split(",")
report = {}
for path in paths(typer.main.get_command(app)):
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown):
        try:
            app([*path, "--help"], prog_name="harmony")
        except SystemExit as exc:
            status = exc.code
    report[" ".join(path)] = {"status": status, "usage": "Usage: harmony" in shown.getvalue(),
                              "heavy": [m for m in heavy if m in sys.modules]}
print(json.dumps(report))
"""

#: The console script's own call (`harmony = "harmony.cli.main:app"`), then the heavy modules it loaded.
APP = """
import sys
from harmony.cli.main import app
try:
    app(prog_name="harmony")
finally:
    print("HEAVY", ",".join(m for m in sys.argv[-1].split(",") if m in sys.modules))
"""


def python(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
               **(env or {})}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=environ,
                          timeout=120)


def harmony_cli(*args: str, env: dict[str, str] | None = None, watched: tuple[str, ...] = HEAVY
                ) -> tuple[str, list[str]]:
    """stdout of `harmony ARGS` (the HEAVY line removed) and the `watched` modules it loaded."""
    done = python(APP, *args, ",".join(watched), env=env)
    lines = done.stdout.splitlines()
    assert lines and lines[-1].startswith("HEAVY"), done.stderr
    return "\n".join(lines[:-1]), [m for m in lines[-1].removeprefix("HEAVY").strip().split(",") if m]


def test_help_of_every_command_imports_no_heavy_library():
    done = python(HELP_PROBE, ",".join(HEAVY + HELP_ONLY))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {"", "evaluate", "backtest", "calibrate", "train", "replay-exporter", "datasets", "datasets list",
            "datasets show", "operator", "operator run"} <= set(report)
    for command, seen in report.items():
        assert seen["status"] == 0 and seen["usage"], (command, seen)
        assert seen["heavy"] == [], f"`{' '.join(['harmony', *command.split(), '--help'])}` imported {seen['heavy']}"


@pytest.mark.parametrize("command", [(), ("backtest",), ("operator", "run")],
                         ids=["harmony", "backtest", "operator-run"])
def test_help_through_the_console_script_loads_no_pandas_pyarrow_torch_kopf_matplotlib_or_numpy(command):
    # the console script's own call, each in a fresh interpreter: nothing the probe above ran before counts
    shown, heavy = harmony_cli(*command, "--help", watched=HEAVY + HELP_ONLY)
    assert "Usage: harmony" in shown
    assert heavy == []  # HEAVY holds pandas, pyarrow, torch, kopf, matplotlib and numpy among others


def test_shell_completion_completes_commands_and_flags_without_heavy_imports():
    # bash calls the program with its words in COMP_WORDS and the index of the word being completed
    words, heavy = harmony_cli(env={"_HARMONY_COMPLETE": "complete_bash", "COMP_WORDS": "harmony back",
                                    "COMP_CWORD": "1"})
    assert words.split() == ["backtest"] and heavy == []
    words, heavy = harmony_cli(env={"_HARMONY_COMPLETE": "complete_bash", "COMP_WORDS": "harmony evaluate --mo",
                                    "COMP_CWORD": "2"})
    assert words.split() == ["--models"] and heavy == []


def test_show_and_install_completion(tmp_path):
    # typer's switch for naming the shell instead of detecting the one that started the test
    named = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1", "HOME": str(tmp_path)}
    script, _ = harmony_cli("--show-completion", "bash", env=named)
    assert "complete -o default -F _harmony_completion harmony" in script
    assert "_HARMONY_COMPLETE=complete_bash" in script
    shown, _ = harmony_cli("--install-completion", "bash", env=named)
    assert "bash completion installed in" in shown
    installed = next((tmp_path / ".bash_completions").glob("harmony*"))
    assert installed.read_text().strip() == script.strip()
    assert str(installed) in (tmp_path / ".bashrc").read_text()
