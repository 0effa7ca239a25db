#!/usr/bin/env bash
# Does the package work outside a checkout? Build the wheel from a copy of the working tree, check that
# it carries the bundled datasets, the CRD and the LICENSE, install it (not editable, no test extra) into a
# fresh venv with torch pinned first, then run the CLI from a temp directory so nothing imports from src/.
# One line per step; on failure, the failing step's output and a non-zero exit. Usage:
#   bash scripts/check_wheel.sh            (PYTHON=python3.11 by default; `make wheel-check` passes it)
set -euo pipefail

PYTHON="${PYTHON:-python3.11}"
TORCH_PIN="torch==2.13.0" # an unpinned torch pulls a multi-GB CUDA build; the pinned one is a local CPU wheel
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/harmony-wheel-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
LOG="$WORK/step.log"
STEP=0
START=$SECONDS

# step NAME CMD...: run CMD with its output in $LOG; print one line; on failure show the log and exit 1.
step() {
    local name="$1"
    shift
    STEP=$((STEP + 1))
    local t0=$SECONDS rc
    # A subshell outside any `if`, so that `set -e` holds inside the step's functions.
    set +e
    (set -e; "$@") >"$LOG" 2>&1
    rc=$?
    set -e
    if [ "$rc" -eq 0 ]; then
        printf 'wheel-check [%2d] %-58s ok (%ds)\n' "$STEP" "$name" $((SECONDS - t0))
    else
        printf 'wheel-check [%2d] %-58s FAILED (exit %d)\n' "$STEP" "$name" "$rc" >&2
        tail -n 40 "$LOG" | sed 's/^/    /' >&2
        echo "wheel-check: FAILED at step $STEP: $name" >&2
        exit 1
    fi
}

# The working tree as it is (tracked and untracked, not ignored): the build then writes its build/ and
# *.egg-info into the copy, never into the checkout, and stale ignored files cannot leak into the wheel.
copy_tree() {
    mkdir -p "$WORK/tree"
    if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        # --ignore-failed-read: a tracked file deleted in the working tree is skipped, as it would be built.
        (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
            | tar --null -T - --ignore-failed-read -cf -) | tar -xf - -C "$WORK/tree"
    else
        tar -C "$ROOT" --exclude=.venv --exclude=build --exclude=dist --exclude='*.egg-info' \
            --exclude=__pycache__ --exclude=results -cf - . | tar -xf - -C "$WORK/tree"
    fi
}

make_venv() {
    command -v "$PYTHON" || { echo "$PYTHON not found (set PYTHON=...)"; return 2; }
    "$PYTHON" -m venv "$WORK/venv"
}

build_wheel() {
    "$WORK/venv/bin/python" -m pip wheel --quiet --no-deps "$WORK/tree" -w "$WORK/dist"
    ls "$WORK"/dist/harmony_autoscaler-*.whl
}

# Every bundled dataset file of the source tree, the CRD and a LICENSE in the dist-info.
check_contents() {
    "$WORK/venv/bin/python" - "$WORK"/dist/harmony_autoscaler-*.whl "$WORK/tree/src" <<'PYEOF'
import sys, zipfile
from pathlib import Path

wheel, src = sys.argv[1], Path(sys.argv[2])
names = set(zipfile.ZipFile(wheel).namelist())
data = src / "harmony/telemetry/datasets/data"
want = sorted(p.relative_to(src).as_posix() for p in data.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
want.append("harmony/operator/crd/harmonyautoscaler.yaml")
missing = [w for w in want if w not in names]
if not any(n.split("/")[0].endswith(".dist-info") and n.rsplit("/", 1)[-1].startswith("LICENSE") for n in names):
    missing.append("<name>.dist-info/[licenses/]LICENSE")
if not any(w.startswith("harmony/telemetry/datasets/data/gentd26/") for w in want):
    missing.append("(source tree) harmony/telemetry/datasets/data/gentd26/*")
for m in missing:
    print("missing from the wheel:", m)
if not missing:
    print(f"{len(want) - 1} data files, the CRD and a LICENSE in {wheel}")
sys.exit(1 if missing else 0)
PYEOF
}

install_torch() { "$WORK/venv/bin/python" -m pip install --quiet "$TORCH_PIN"; }
install_wheel() { "$WORK/venv/bin/python" -m pip install --quiet "$WORK"/dist/harmony_autoscaler-*.whl; }

# From a directory outside the checkout, with no PYTHONPATH: harmony must come from the venv.
in_run_dir() { (cd "$WORK/run" && env -u PYTHONPATH "$@"); }

imports_from_venv() {
    in_run_dir "$WORK/venv/bin/python" -c '
import sys, harmony
print(harmony.__file__)
sys.exit(0 if harmony.__file__.startswith(sys.argv[1]) else 1)' "$WORK/venv/"
}

# Every harmony module imports in the fresh venv, and every third-party module they import belongs to a
# distribution the wheel declares (not one that only arrives as a dependency of a dependency).
imports_declared() {
    in_run_dir "$WORK/venv/bin/python" - <<'PYEOF'
import ast, importlib, pkgutil, re, sys
from importlib.metadata import packages_distributions, requires
from pathlib import Path

import harmony

for mod in pkgutil.walk_packages(harmony.__path__, "harmony."):
    importlib.import_module(mod.name)

def canon(name):
    return re.sub(r"[-_.]+", "-", name).lower()

declared = {canon(re.split(r"[\s;\[<>=!~(]", r, maxsplit=1)[0]) for r in requires("harmony-autoscaler") or []
            if "extra ==" not in r}
providers = packages_distributions()
undeclared = {}
for file in Path(harmony.__file__).parent.rglob("*.py"):
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            tops = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops = [node.module.split(".")[0]]
        else:
            continue
        for top in tops:
            if top in sys.stdlib_module_names or top in ("harmony", "__future__"):
                continue
            if not {canon(d) for d in providers.get(top, [])} & declared:
                undeclared.setdefault(top, set()).add(file.name)
for top, where in sorted(undeclared.items()):
    print(f"imported but not a declared dependency: {top} ({', '.join(sorted(where))})")
if not undeclared:
    print(f"{len(declared)} declared dependencies cover every third-party import")
sys.exit(1 if undeclared else 0)
PYEOF
}

version_matches() {
    local wheel version
    wheel="$(basename "$WORK"/dist/harmony_autoscaler-*.whl)"
    version="$(echo "$wheel" | cut -d- -f2)"
    in_run_dir "$WORK/venv/bin/harmony" --version | tee "$WORK/version.txt"
    grep -qF "$version" "$WORK/version.txt" || { echo "--version does not print the wheel's $version"; return 1; }
}

backtest() {
    in_run_dir "$WORK/venv/bin/harmony" backtest --dataset gentd26 --policies harmony,hpa \
        --cold-start 300 --sla 0.01 --out "$WORK/run/backtest"
    test -s "$WORK/run/backtest/summary.csv" || { echo "no summary.csv in $WORK/run/backtest"; return 1; }
    [ "$(wc -l <"$WORK/run/backtest/summary.csv")" -ge 3 ] || { echo "summary.csv lacks a row per policy"; return 1; }
}

mkdir -p "$WORK/run"
step "copy the working tree" copy_tree
step "fresh venv ($PYTHON)" make_venv
step "build the wheel (pip wheel --no-deps)" build_wheel
step "wheel has datasets, CRD and LICENSE" check_contents
step "install $TORCH_PIN" install_torch
step "install the wheel (not editable, no extras)" install_wheel
step "harmony imports from the venv" imports_from_venv
step "all modules import; imports are declared deps" imports_declared
step "harmony --version" version_matches
step "harmony datasets show gentd26" in_run_dir "$WORK/venv/bin/harmony" datasets show gentd26
step "harmony backtest (gentd26, harmony,hpa) writes summary.csv" backtest
echo "wheel-check: all $STEP steps passed in $((SECONDS - START))s"
