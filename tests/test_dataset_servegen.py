"""ServeGen source: bundled models, gaps, aggregate vs clients, client selection, layouts, bad input, capacity."""

import gzip
import math

import numpy as np
import pandas as pd
import pytest

from harmony.decision.demand import demand_definition
from harmony.errors import HarmonyInputError
from harmony.telemetry.datasets import get_source, load_dataset
from harmony.telemetry.datasets.servegen import EPOCH


@pytest.fixture(scope="module")
def bundled():
    return get_source("servegen").resolve(None)


@pytest.fixture(scope="module")
def rows(bundled):
    """m-mid's bundled rows, client ids as strings."""
    return pd.read_csv(bundled / "m-mid.csv.gz", dtype={"client": str})


@pytest.fixture(scope="module")
def mid():
    return load_dataset("servegen", model="m-mid")


@pytest.fixture(scope="module")
def mid_clients():
    return load_dataset("servegen", model="m-mid", series="clients")


def col(frame, name, series=0):
    return frame.values[:, series, frame.indicator_position(name)]


def test_bundled_shape_units_levels():
    frame = load_dataset("servegen")
    assert frame.series == ("m-large",)
    assert frame.indicator_names == ("request_rate", "active_clients", "interarrival_cv")
    assert frame.levels == (1, 1, 2)
    assert [i.unit for i in frame.indicators] == ["requests/s", "clients", "1"]
    assert frame.interval == pd.Timedelta("10min") and len(frame) == 2016  # 14 days of 10-minute windows
    assert frame.start == EPOCH == pd.Timestamp("2024-01-01 00:00")
    assert frame.end == pd.Timestamp("2024-01-14 23:50")
    rate = col(frame, "request_rate")
    assert not np.isnan(frame.values).any()  # m-large has no collection gap
    assert 150 < rate.mean() < 250 and 500 < rate.max() < 650  # ~196 requests/s, peak ~583
    assert 30 <= col(frame, "active_clients").min() and col(frame, "active_clients").max() <= 162

    clients = load_dataset("servegen", series="clients")
    assert len(clients.series) == 162 and clients.indicator_names == ("request_rate", "interarrival_cv")
    assert clients.levels == (1, 2)


def test_m_mid_has_84_collection_gaps_as_nan_not_zero(mid, mid_clients, rows):
    totals = rows.groupby("t_seconds")["rate"].sum()
    assert int((totals == 0).sum()) == 84  # windows where every client reads 0 in the file
    gap = np.isnan(col(mid, "request_rate"))
    assert gap.sum() == 84
    assert np.isnan(mid.values[gap]).all()  # every indicator of a gap window is missing
    assert not np.isnan(mid.values[~gap, 0, :2]).any()  # rate and active clients are observed elsewhere
    np.testing.assert_array_equal(gap, (totals.to_numpy() == 0))
    assert np.isnan(mid_clients.values[gap, :, 0]).all()  # ... and so is every client's rate
    assert (mid_clients.values[~gap, :, 0] >= 0).all()
    assert len(mid_clients.series) == 108  # client 97 never sends a request and is skipped by `all`


def test_aggregate_is_the_sum_of_the_clients(mid, mid_clients):
    gap = np.isnan(col(mid, "request_rate"))
    rates = mid_clients.values[:, :, 0]
    np.testing.assert_allclose(col(mid, "request_rate")[~gap], rates[~gap].sum(axis=1))
    np.testing.assert_array_equal(col(mid, "active_clients")[~gap], (rates[~gap] > 0).sum(axis=1))
    # CV: rate-weighted mean over the active clients; a client's CV is NaN where it sent nothing
    cvs = mid_clients.values[:, :, 1]
    assert np.isnan(cvs[rates == 0]).all() and not np.isnan(cvs[rates > 0]).any()
    weighted = np.nansum(rates * cvs, axis=1)[~gap] / rates[~gap].sum(axis=1)
    np.testing.assert_allclose(col(mid, "interarrival_cv")[~gap], weighted)


def test_top_n_picks_the_largest_clients_largest_first(mid_clients):
    volume = np.nansum(mid_clients.values[:, :, 0], axis=0)
    assert (np.diff(volume) <= 0).all()  # `all` lists the largest first
    top = load_dataset("servegen", model="m-mid", series="clients", clients="top:5")
    order = np.argsort(-volume, kind="stable")[:5]
    assert top.series == tuple(mid_clients.series[i] for i in order)
    assert top.series[0] == "client-60"  # the biggest client of m-mid by far
    agg = load_dataset("servegen", model="m-mid", clients="top:5")
    np.testing.assert_allclose(col(agg, "request_rate"), top.values[:, :, 0].sum(axis=1))


def test_named_clients_in_the_given_order_and_gaps_from_the_whole_model(mid):
    named = load_dataset("servegen", model="m-mid", series="clients", clients="97, client-15")  # id or name
    assert named.series == ("client-97", "client-15")
    assert (named.values[:, 0, 0][~np.isnan(named.values[:, 0, 0])] == 0).all()  # 97 only ever reads 0
    one = load_dataset("servegen", model="m-mid", clients=15)  # `--option clients=15` arrives as an int
    gap = np.isnan(col(mid, "request_rate"))
    np.testing.assert_array_equal(np.isnan(col(one, "request_rate")), gap)  # gaps are the model's, not 15's
    rate = col(one, "request_rate")[~gap]
    assert (rate == 0).any()  # client 15 is idle in windows where the model is not: real zeros
    np.testing.assert_allclose(rate, named.values[~gap, 1, 0])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"series": "both"}, "series='both'"),
        ({"clients": "top:0"}, "top:N needs a positive integer"),
        ({"clients": "top:x"}, "top:N needs a positive integer"),
        ({"clients": "61,9999"}, "no client '9999'"),
        ({"clients": "61,61"}, "repeated"),
        ({"model": "m-huge"}, "no model 'm-huge'"),
        ({"no_such": 1}, r"has no option 'no_such' \(--no-such\)"),
    ],
)
def test_bad_options_are_refused_naming_them(options, message):
    with pytest.raises(HarmonyInputError, match=message):
        load_dataset("servegen", **options)


# ------------------------------------------------------------------------------------------------ layouts
def write_upstream(folder, rows, clients=("0", "3"), windows=6):
    """Upstream chunk files (no header, six columns, CRLF as upstream) for a few clients and windows."""
    folder.mkdir(parents=True, exist_ok=True)
    for client in clients:
        part = rows[rows["client"] == client].head(windows)
        lines = [f"{int(t)},{r!r},{c!r},,0,0\r\n" for t, r, c in zip(part.t_seconds, part.rate, part.cv, strict=True)]
        (folder / f"chunk-{client}-trace.csv").write_text("".join(lines), newline="")
    return folder


def test_path_upstream_layouts_and_a_bundled_file_agree(tmp_path, rows):
    """Two m-mid clients (0 and 3) over the whole trace, written both ways; gaps are then the windows in
    which both read 0, as the model is these two clients."""
    file = tmp_path / "m-small.csv.gz"  # the bundled format: one model, named after the file
    with gzip.open(file, "wt") as out:
        rows[rows["client"].isin(["0", "3"])].to_csv(out, index=False)
    expected = load_dataset("servegen", file, series="clients")
    assert expected.series == ("client-3", "client-0") and expected.source == str(file)  # largest first
    assert load_dataset("servegen", file).series == ("m-small",)
    assert load_dataset("servegen", file, model="m-mid").series == ("m-mid",)  # unless `model` names it
    data = tmp_path / "data"
    write_upstream(data / "language" / "m-mid", rows, windows=2016)
    for path in (data, data / "language", data / "language" / "m-mid"):  # ServeGen's data/, language/, model
        frame = load_dataset("servegen", path, model="m-mid", series="clients")
        np.testing.assert_array_equal(frame.values, expected.values)
        assert frame.index.equals(expected.index)
    both_idle = (rows[rows["client"].isin(["0", "3"])].groupby("t_seconds")["rate"].sum() == 0).to_numpy()
    np.testing.assert_array_equal(np.isnan(expected.values[:, 0, 0]), both_idle)
    # a folder of chunk files is named after the folder; a folder without the model is refused
    assert load_dataset("servegen", data / "language" / "m-mid").series == ("m-mid",)
    with pytest.raises(HarmonyInputError, match="no model 'm-large'"):
        load_dataset("servegen", data / "language")


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("600,abc,1.0,Gamma,1,1\r\n", "column 'rate' has a non-numeric value 'abc' (line 2)"),
        ("600,-1.0,1.0,Gamma,1,1\r\n", "column 'rate' has a negative value"),
        ("601,1.0,1.0,Gamma,1,1\r\n", "column 't_seconds' has 601, not a multiple of 600"),
        ("600,1.0\r\n", "column 'cv' has a missing value (line 2)"),
        ("600,1.0,1.0,Gamma,1,1,7\r\n", "malformed CSV"),
        ("0,1.0,1.0,Gamma,1,1\r\n", "two rows for t_seconds 0"),
    ],
)
def test_malformed_upstream_file_names_file_and_column(tmp_path, line, what):
    folder = tmp_path / "m-x"
    folder.mkdir()
    (folder / "chunk-0-trace.csv").write_text("1200,2.0,1.0,Gamma,1,1\r\n", newline="")
    (folder / "chunk-1-trace.csv").write_text("0,1.0,1.0,Gamma,1,1\r\n" + line, newline="")
    with pytest.raises(HarmonyInputError) as err:
        load_dataset("servegen", folder)
    message = str(err.value)
    assert "chunk-1-trace.csv" in message or "m-x" in message
    assert what in message and "\n" not in message


def test_malformed_bundled_file_names_the_column(tmp_path, rows):
    file = tmp_path / "m-mid.csv"
    rows.head(10).drop(columns="cv").to_csv(file, index=False)
    with pytest.raises(HarmonyInputError, match=r"m-mid.csv: missing column 'cv'"):
        load_dataset("servegen", tmp_path, model="m-mid")


# ------------------------------------------------------------------------------------------------ demand
def test_demand_and_capacity_per_model():
    large = demand_definition("servegen")
    assert large.indicators == ("request_rate",) and large.unit == "requests/s"
    assert large.capacity_per_replica == 16.0
    assert demand_definition("servegen", options={"model": "m-large", "series": "aggregate"}) == large
    mid = demand_definition("servegen", options={"model": "m-mid"})
    assert mid.capacity_per_replica == 38.0 and mid.indicators == large.indicators
    # a held-back model read with --path has no figure of its own: refused unless --capacity says it
    with pytest.raises(HarmonyInputError, match=r"no demand definition for model='m-small'.*--capacity"):
        demand_definition("servegen", options={"model": "m-small"})
    assert demand_definition("servegen", capacity=5.0, options={"model": "m-small"}).capacity_per_replica == 5.0


@pytest.mark.parametrize(("model", "peak"), [("m-large", 37), ("m-mid", 91)])
def test_the_aggregate_needs_tens_of_replicas_at_peak(model, peak):
    frame = load_dataset("servegen", model=model)
    definition = demand_definition("servegen", frame=frame, options={"model": model})
    assert math.ceil(np.nanmax(col(frame, "request_rate")) / definition.capacity_per_replica) == peak
