"""The container image's definition, checked statically (CI has no buildah; `make image` builds and smoke-runs it).

One version source: pyproject's version names the image scripts/build_image.sh builds and its archive, and
the chart's default image (values.yaml image.repository, tag empty so Chart.yaml's appVersion) must be that
reference, or `helm install` would pull an image nobody built (checked on the values and on the rendered
Deployment, as is docs/install.md's values file). The image must run as the user the chart's
securityContext names, declare its OCI labels, and install the torch pyproject pins.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "harmony"
SCRIPT = ROOT / "scripts" / "build_image.sh"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
OCI_LABELS = ("title", "version", "source", "licenses", "revision")


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction of a Containerfile, continuation lines joined."""
    out, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, args = (pending + line).strip().partition(" ")
        out.append((keyword.upper(), args.strip()))
        pending = ""
    return out


def stages(path: Path) -> list[list[tuple[str, str]]]:
    """The instructions of each stage (FROM to the next FROM)."""
    out: list[list[tuple[str, str]]] = []
    for keyword, args in instructions(path):
        if keyword == "FROM":
            out.append([])
        if out:
            out[-1].append((keyword, args))
    return out


def arg_defaults(stage: list[tuple[str, str]]) -> dict[str, str]:
    """ARG NAME=default declarations of a stage (shell-style quoting)."""
    return dict(tok.split("=", 1) for keyword, args in stage if keyword == "ARG"
                for tok in shlex.split(args) if "=" in tok)


@pytest.fixture(scope="module")
def printed() -> dict[str, str]:
    """What the build script would build, from `build_image.sh --print` (nothing is built)."""
    run = subprocess.run(["bash", str(SCRIPT), "--print"], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHON": sys.executable}, cwd=ROOT)
    return dict(line.split("=", 1) for line in run.stdout.splitlines())


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def test_one_version_names_the_image_the_archive_and_the_chart(printed, values):
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    version = PROJECT["version"]
    assert printed["version"] == version
    assert str(chart["appVersion"]) == version
    # An empty tag renders as the appVersion (templates/deployment.yaml); a set one must equal it.
    assert values["image"]["tag"] in ("", version)
    assert printed["image"] == f"{values['image']['repository']}:{version}"
    assert printed["archive"] == f"build/harmony-{version}.oci.tar"


def deployment_image(values: dict) -> str:
    """The operator container's image in the chart rendered with these values (helm-python-sdk, offline)."""
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk (test extra) renders the chart offline")
    out = helm.Chart.load(str(CHART)).render(values, name="harmony", namespace="harmony-system", is_install=True)
    docs = [d for path, text in out.items() if path.endswith("deployment.yaml") for d in yaml.safe_load_all(text)]
    (container,) = docs[0]["spec"]["template"]["spec"]["containers"]
    return container["image"]


def test_the_chart_pulls_the_image_the_script_builds(printed):
    assert deployment_image({}) == printed["image"]


def test_the_install_docs_values_lint_and_name_the_pushed_image():
    """docs/install.md's values file is an example, and examples are tests."""
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk (test extra) renders the chart offline")
    doc = (ROOT / "docs" / "install.md").read_text()
    values = yaml.safe_load(re.search(r"```yaml\n# harmony-values.yaml\n(.*?)```", doc, re.S).group(1))
    report = helm.lint(str(CHART), values, strict=True, namespace="harmony-system")
    assert not report["errors"] and all(m["severity"] < 2 for m in report["messages"]), report
    assert deployment_image(values) == f"{values['image']['repository']}:{PROJECT['version']}"


def test_torch_is_pyproject_pin(printed):
    pins = [d.replace(" ", "") for d in PROJECT["dependencies"] if d.replace(" ", "").startswith("torch==")]
    assert pins == [f"torch=={printed['torch']}"]
    build = next(s for s in stages(ROOT / "Containerfile") if "AS build" in s[0][1])
    assert arg_defaults(build)["TORCH_VERSION"] == printed["torch"]  # a bare `buildah bud` installs the same


def test_runs_as_the_charts_user(values):
    ctx = values["podSecurityContext"]
    uid, gid = ctx["runAsUser"], ctx["runAsGroup"]
    assert uid != 0 and gid != 0
    final = stages(ROOT / "Containerfile")[-1]
    users = [args for keyword, args in final if keyword == "USER"]
    assert users[-1] == f"{uid}:{gid}"
    # The passwd/group entries the image creates carry the same ids.
    runs = " ".join(args for stage in stages(ROOT / "Containerfile") for keyword, args in stage if keyword == "RUN")
    assert re.search(rf"groupadd\b[^;&]*--gid {gid}\b", runs)
    assert re.search(rf"useradd\b[^;&]*--uid {uid} --gid {gid}\b", runs)


def test_declares_the_oci_labels():
    final = stages(ROOT / "Containerfile")[-1]
    labels = dict(tok.split("=", 1) for keyword, args in final if keyword == "LABEL" for tok in shlex.split(args))
    for name in OCI_LABELS:
        assert labels.get(f"org.opencontainers.image.{name}"), name
    assert labels["org.opencontainers.image.licenses"] == PROJECT["license"]
    # version and revision come from build arguments that the script passes.
    script = SCRIPT.read_text()
    for arg in ("VERSION", "REVISION"):
        assert labels[f"org.opencontainers.image.{arg.lower()}"] == f"${{{arg}}}"
        assert arg in arg_defaults(final)
        assert f"--build-arg {arg}=" in script
        assert f"--label org.opencontainers.image.{arg.lower()}=" in script  # buildah's cache keeps stale LABELs


def test_build_context_holds_what_the_containerfile_copies():
    patterns = [line for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line and not line.startswith("#")]
    assert patterns[0] == "*"  # an allowlist: nothing else is sent
    kept = {line[1:] for line in patterns if line.startswith("!")}
    copied = [src for keyword, args in instructions(ROOT / "Containerfile") if keyword == "COPY"
              and not args.startswith("--from") for src in args.split()[:-1]]
    assert copied
    assert set(copied) <= kept


def test_make_image_runs_the_script():
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^image:\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe and "scripts/build_image.sh" in recipe.group(1)
    assert re.search(r"^\.PHONY:.*\bimage\b", makefile, re.M)
