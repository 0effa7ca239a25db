import shutil

import numpy as np
import pandas as pd
import pytest

from harmony.errors import HarmonyInputError
from harmony.telemetry.datasets import get_source, load_dataset
from harmony.telemetry.datasets.azure_llm import FILE_NAME


@pytest.fixture(scope="module")
def bundled_file():
    return get_source("azure-llm").resolve(None) / FILE_NAME


@pytest.fixture(scope="module")
def raw(bundled_file):
    return pd.read_csv(bundled_file)


@pytest.fixture(scope="module")
def frame():
    return load_dataset("azure-llm")


def test_bundled_shape_indicators_levels(frame):
    assert frame.series == ("AzureLLMInferenceTrace_conv",)
    assert frame.indicator_names == ("request_rate", "context_token_rate", "generated_token_rate")
    assert frame.levels == (1, 1, 1)
    assert [ind.unit for ind in frame.indicators] == ["requests/s", "tokens/s", "tokens/s"]
    assert frame.interval == pd.Timedelta("10s")
    assert frame.start == pd.Timestamp("2023-11-16 18:15:40")
    assert len(frame) == 351  # 18:15:40 .. 19:14:00 in 10 s bins
    assert not np.isnan(frame.values).any()


def test_rates_sum_back_to_the_requests(frame, raw):
    rates = frame.values[:, 0, :]
    assert len(raw) == 19_366  # every request of the hour (the file has no trailing newline)
    assert rates[:, 0].sum() * 10 == pytest.approx(len(raw))
    assert rates[:, 1].sum() * 10 == pytest.approx(raw["ContextTokens"].sum())
    assert rates[:, 2].sum() * 10 == pytest.approx(raw["GeneratedTokens"].sum())
    assert 4 <= rates[1:-1, 0].mean() <= 7  # ~5.5 requests/s
    # prompts are several times longer than outputs in the conversation service
    assert rates[:, 1].sum() > 3 * rates[:, 2].sum()


def test_interval_option(raw):
    minute = load_dataset("azure-llm", interval="1min")
    assert minute.interval == pd.Timedelta("1min") and len(minute) == 60
    assert minute.values[:, 0, 0].sum() * 60 == pytest.approx(len(raw))


def _write(path, stamps, context, generated):
    pd.DataFrame({"TIMESTAMP": stamps, "ContextTokens": context, "GeneratedTokens": generated}).to_csv(
        path, index=False
    )


def test_empty_bins_are_zero_not_gaps(tmp_path):
    file = tmp_path / "tiny.csv"
    _write(file, ["2023-11-16 18:00:01.5000000", "2023-11-16 18:00:03.0000000", "2023-11-16 18:00:41.2500000"],
           [100, 50, 10], [5, 5, 1])
    frame = load_dataset("azure-llm", file)
    assert frame.series == ("tiny",)
    np.testing.assert_allclose(frame.values[:, 0, 0], [0.2, 0.0, 0.0, 0.0, 0.1])
    np.testing.assert_allclose(frame.values[:, 0, 1], [15.0, 0.0, 0.0, 0.0, 1.0])
    assert frame.gaps() == []


def test_path_folder_copy(tmp_path, bundled_file, frame):
    shutil.copy(bundled_file, tmp_path / FILE_NAME)
    again = load_dataset("azure-llm", tmp_path)
    np.testing.assert_array_equal(again.values, frame.values)
    assert again.source == str(tmp_path / FILE_NAME)
    (tmp_path / FILE_NAME).rename(tmp_path / "other.csv")
    with pytest.raises(HarmonyInputError, match=FILE_NAME):
        load_dataset("azure-llm", tmp_path)


@pytest.mark.parametrize(
    ("mutate", "column", "what"),
    [
        (lambda df: df.drop(columns=["GeneratedTokens"]), "GeneratedTokens", "missing"),
        (lambda df: df.assign(TIMESTAMP=df.TIMESTAMP.where(df.index != 7, "yesterday")), "TIMESTAMP", "timestamp"),
        (lambda df: df.assign(ContextTokens=df.ContextTokens.where(df.index != 7, -3)), "ContextTokens", "negative"),
        (lambda df: df.assign(GeneratedTokens=df.GeneratedTokens.astype(object).where(df.index != 2, "many")),
         "GeneratedTokens", "non-numeric"),
    ],
)
def test_bad_input_names_file_and_column(tmp_path, raw, mutate, column, what):
    file = tmp_path / "broken.csv"
    mutate(raw.head(20).copy()).to_csv(file, index=False)
    with pytest.raises(HarmonyInputError) as err:
        load_dataset("azure-llm", file)
    message = str(err.value)
    assert "broken.csv" in message and repr(column) in message and what in message
    assert "\n" not in message
