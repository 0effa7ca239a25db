"""One contract test over every registered dataset source (`harmony.telemetry.datasets.SOURCES`).

Each source loads its bundled data, generates it, or (csv, parquet: no bundled copy) reads a tiny file
written here, with small options; the frame is non-empty, its indicators have a level in 1..3 and a unit,
its timestamps increase by the interval. An unknown option is refused naming it, a missing path is refused
naming the path, and a `path` override is read instead of the default (a slice of the bundled data copied
to tmp_path, so the frame shows which one was read). Source-specific behaviour has its own test_dataset_*.py.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harmony.errors import HarmonyInputError
from harmony.telemetry.dataset_names import DATASET_NAMES
from harmony.telemetry.datasets import DATASETS_ROOT, SOURCES, get_source
from harmony.telemetry.datasets.alibaba_lora import FILE_NAME as LORA_FILE
from harmony.telemetry.datasets.azure_llm import FILE_NAME as AZURE_FILE
from harmony.telemetry.datasets.gentd26 import FILES as GENTD26_FILES
from harmony.telemetry.datasets.gentd26 import TIME as GENTD26_TIME
from harmony.telemetry.frame import TelemetryFrame


# ------------------------------------------------------------------------------------------------ cases
def tabular_table() -> pd.DataFrame:
    """Two series of two indicators, 8 rows each, one minute apart (wide layout)."""
    stamps = pd.date_range("2024-03-01 00:00", periods=8, freq="1min")
    rows = [{"timestamp": t, "series": s, "requests": 10.0 + k + 5 * j, "gpu_busy": 0.5 + 0.1 * k}
            for j, s in enumerate(("a", "b")) for k, t in enumerate(stamps)]
    return pd.DataFrame(rows)


def write_csv(folder: Path) -> Path:
    path = folder / "tiny.csv"
    tabular_table().to_csv(path, index=False)
    return path


def write_parquet(folder: Path) -> Path:
    path = folder / "tiny.parquet"
    tabular_table().to_parquet(path, index=False)
    return path


TABULAR_OPTIONS = {"series_column": "series", "levels": "requests=1,gpu_busy=2"}


def fisher_slice(folder: Path) -> Path:
    """Two of the bundled containers, copied: the override's series are exactly those two."""
    out = folder / "fisher"
    out.mkdir()
    for name in ("container1.csv", "container3.csv"):
        shutil.copy(DATASETS_ROOT / "fisher" / name, out / name)
    return out


def gentd26_slice(folder: Path) -> Path:
    """The bundled trace's last hour, each file written uncompressed (`name.csv`, which the source accepts)."""
    out = folder / "gentd26"
    out.mkdir()
    for name in GENTD26_FILES.values():
        df = pd.read_csv(DATASETS_ROOT / "gentd26" / name)
        df[df[GENTD26_TIME] > df[GENTD26_TIME].max() - 3600].to_csv(out / name.removesuffix(".gz"), index=False)
    return out


def azure_slice(folder: Path) -> Path:
    """The bundled trace's first 2,000 requests under another name: the series is named after the file."""
    out = folder / "slice.csv"
    pd.read_csv(DATASETS_ROOT / "azure-llm" / AZURE_FILE, nrows=2000).to_csv(out, index=False)
    return out


def servegen_slice(folder: Path) -> Path:
    """Four m-large clients' first two days in the upstream layout (`m-large/chunk-<id>-trace.csv`, no header,
    six columns): the override has fewer steps, and the upstream reader is the one exercised."""
    out = folder / "servegen" / "m-large"
    out.mkdir(parents=True)
    rows = pd.read_csv(DATASETS_ROOT / "servegen" / "m-large.csv.gz", dtype={"client": str})
    for client in ("0", "1", "2", "61"):
        part = rows[(rows["client"] == client) & (rows["t_seconds"] < 2 * 86400)]
        part = part.drop(columns="client").assign(pattern="", param1=0, param2=0)
        part.to_csv(out / f"chunk-{client}-trace.csv", index=False, header=False)
    return out.parent


def lora_slice(folder: Path) -> Path:
    """The bundled log's first 2,000 requests under another name: the series is named after the file."""
    out = folder / "slice.csv"
    pd.read_csv(DATASETS_ROOT / "alibaba-lora" / f"{LORA_FILE}.gz", nrows=2000).to_csv(out, index=False)
    return out


def autoscaler_file(folder: Path) -> Path:
    """A HarmonyAutoscaler whose indicators need no scraped data (`vector(...)`): any Prometheus answers them."""
    path = folder / "autoscaler.yaml"
    path.write_text("apiVersion: harmony.dev/v1alpha1\nkind: HarmonyAutoscaler\nmetadata: {name: web}\nspec:\n"
                    "  scaleTargetRef: {kind: Deployment, name: web}\n  maxReplicas: 4\n  intervalSeconds: 60\n"
                    "  indicators:\n    - {name: qps, query: 'vector(3)', demand: true}\n"
                    "    - {name: gpu, query: 'vector(0.5)', level: 2}\n")
    return path


def synthetic_folder(folder: Path) -> Path:
    return folder  # the generator reads nothing: any existing path gives the same data


@dataclass(frozen=True)
class Case:
    """How the contract runs one source.

    options: small options for a fast load. needs_path: no bundled copy, so `path` is required (the default
    load reads `write(tmp_path)` instead). write: builds the override under a folder and returns its path.
    override_series: the series the override's frame must have (None: the same frame as the default load).
    """

    options: dict = field(default_factory=dict)
    needs_path: bool = False
    write: Callable[[Path], Path] = synthetic_folder
    override_series: tuple[str, ...] | None = None
    server: bool = False  # needs a real (empty) Prometheus: its URL is passed as the `url` option


CASES: dict[str, Case] = {
    "fisher": Case(write=fisher_slice, override_series=("container1", "container3")),
    "gentd26": Case({"interval": "5min"}, write=gentd26_slice, override_series=("gentd26",)),
    "azure-llm": Case({"interval": "1min"}, write=azure_slice, override_series=("slice",)),
    "servegen": Case({"clients": "top:3"}, write=servegen_slice, override_series=("m-large",)),
    "alibaba-lora": Case({"interval": "10min"}, write=lora_slice, override_series=("slice",)),
    "csv": Case(TABULAR_OPTIONS, needs_path=True, write=write_csv, override_series=("a", "b")),
    "parquet": Case(TABULAR_OPTIONS, needs_path=True, write=write_parquet, override_series=("a", "b")),
    "synthetic": Case({"series": 2, "steps": 60, "seed": 1}),
    "prometheus": Case({"start": "2026-01-05T00:00:00Z", "end": "2026-01-05T01:00:00Z"}, needs_path=True,
                       write=autoscaler_file, override_series=("web",), server=True),
}


@pytest.fixture(scope="module")
def empty_prometheus():
    from tests.prometheus_server import PrometheusServer

    with PrometheusServer([]) as server:
        yield server.url


def options_of(name: str, request) -> dict:
    """The case's options, with the URL of a real Prometheus for a source that queries one."""
    case = case_of(name)
    return {**case.options, "url": request.getfixturevalue("empty_prometheus")} if case.server else case.options


def case_of(name: str) -> Case:
    if name not in CASES:
        pytest.fail(f"dataset source {name!r} has no case in tests/test_dataset_sources.py:CASES; add one")
    return CASES[name]


def load_default(name: str, folder: Path, options: dict) -> TelemetryFrame:
    """The source's own data (bundled or generated); a tiny file written under `folder` where it has none."""
    case = case_of(name)
    if case.needs_path:
        folder.mkdir()
        return get_source(name).load(case.write(folder), **options)
    return get_source(name).load(None, **options)


def check_frame(frame: TelemetryFrame) -> None:
    steps, series, indicators = frame.values.shape
    assert steps > 1 and series > 0 and indicators > 0
    assert (len(frame.index), len(frame.series), len(frame.indicators)) == frame.values.shape
    assert len(set(frame.series)) == series and len(set(frame.indicator_names)) == indicators
    for ind in frame.indicators:
        assert ind.level in (1, 2, 3), ind
        assert isinstance(ind.unit, str) and ind.unit.strip(), ind
    stamps = frame.index.to_numpy()
    assert (np.diff(stamps) > np.timedelta64(0)).all()  # strictly increasing ...
    assert (np.diff(stamps) == frame.interval.to_timedelta64()).all()  # ... by the frame's interval
    # every (series, indicator) has at least one value: no column that is NaN throughout
    assert np.isfinite(frame.values).any(axis=0).all()


# ------------------------------------------------------------------------------------------------ tests
def test_every_registered_source_has_a_case():
    assert set(CASES) == set(SOURCES)


def test_the_light_names_table_is_the_registry_s_names():
    # what the CLI's help lists without importing the loaders (the registry refuses to import otherwise)
    assert tuple(SOURCES) == DATASET_NAMES
    assert all(source.name == name for name, source in SOURCES.items())


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_source_contract(name, tmp_path, request):
    source, case = SOURCES[name], case_of(name)
    options = options_of(name, request)
    assert source.name == name and source.description.strip()
    assert set(case.options) <= set(source.options)  # the small options are the source's own
    assert all(text.strip() for text in source.options.values())  # every option has its help line
    if source.default_path:
        assert (DATASETS_ROOT / source.default_path).exists()  # the bundled copy ships with the package

    frame = load_default(name, tmp_path / "default", options)
    check_frame(frame)

    # an unknown option is refused, naming it (and its flag)
    with pytest.raises(HarmonyInputError, match=r"has no option 'no_such_option' \(--no-such-option\)"):
        source.load(None, **options, no_such_option="1")
    # a path that does not exist is refused, naming it
    missing = tmp_path / "missing"
    with pytest.raises(HarmonyInputError, match=re.escape(f"{missing}: no such file")):
        source.load(missing, **options)

    # the path override is what is read
    override_dir = tmp_path / "override"
    override_dir.mkdir()
    override = source.load(case.write(override_dir), **options)
    check_frame(override)
    assert override.indicator_names == frame.indicator_names
    if case.override_series is None:
        np.testing.assert_array_equal(override.values, frame.values)
        assert tuple(override.series) == tuple(frame.series)
    else:
        assert tuple(override.series) == case.override_series
        if not case.needs_path:  # a slice of the bundled data: fewer series or fewer steps than the default
            assert len(override.series) < len(frame.series) or len(override) < len(frame)


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if c.needs_path))
def test_a_source_without_bundled_data_needs_a_path(name):
    assert SOURCES[name].default_path == ""
    with pytest.raises(HarmonyInputError, match="needs --path"):
        SOURCES[name].load(None, **CASES[name].options)


def test_every_source_refuses_an_infinite_value_its_reader_let_through():
    """The registry's net under every reader: an infinity in the frame is one line naming the indicator,
    series, timestamp and source."""
    from harmony.telemetry.datasets.base import DatasetSource
    from harmony.telemetry.frame import Indicator

    values = np.ones((5, 1, 1))
    values[3, 0, 0] = np.inf
    frame = TelemetryFrame(pd.date_range("2024-01-01", periods=5, freq="1min"), values, ["w"],
                           [Indicator("qps")], source="mine.csv")
    source = DatasetSource("fake", "a reader that checks nothing", "", lambda path: frame)
    with pytest.raises(HarmonyInputError, match=r"mine\.csv: indicator 'qps' of series 'w' is inf at 2024-01-01 00:03"):
        source.load()
