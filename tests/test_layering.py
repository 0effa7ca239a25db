import subprocess
import sys
from pathlib import Path


def test_forecasting_never_imports_controller():
    """The import-linter contract in pyproject.toml, run as `make lint` runs it."""
    root = Path(__file__).resolve().parents[1]
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "forecasting never imports controller KEPT" in result.stdout
