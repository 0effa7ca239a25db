import subprocess
import sys
from pathlib import Path

CONTRACTS = (
    "layers point down: cli > operator | backtest > decision > forecasting > telemetry",
    "decision is pure: no torch, kubernetes, kopf, prometheus_client, requests",
)


def test_import_contracts_hold():
    """The import-linter contracts in pyproject.toml, run as `make lint` runs them."""
    root = Path(__file__).resolve().parents[1]
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    flat = " ".join(result.stdout.split())
    for name in CONTRACTS:
        assert f"{name} KEPT" in flat
