"""Windows, seeded training, early stopping with best weights, and checkpoint errors of the HARMONY trainer."""

import numpy as np
import pandas as pd
import pytest
import torch

from harmony.errors import HarmonyInputError
from harmony.forecasting.metrics import crps_ensemble
from harmony.forecasting.models import HarmonyConfig, HarmonyNetwork
from harmony.forecasting.predictors import Context, build_predictor
from harmony.forecasting.predictors.harmony import HarmonyPredictor
from harmony.forecasting.training import TrainingSettings, frame_windows, train_network, training_windows
from tests.helpers import make_frame


def test_windows_drop_missing_targets_and_fill_contexts():
    values = np.arange(40, dtype=float).reshape(20, 1, 2)
    values[5, 0, 1] = np.nan  # inside some contexts (filled) and one target (dropped)
    index = pd.date_range("2024-01-01", periods=20, freq="10min")
    w = frame_windows(values, index, lookback=4, horizon=2)
    origins = [t for t in range(4, 19) if t not in (4, 5)]  # targets t, t+1; rows 5 missing
    assert len(w) == len(origins)
    np.testing.assert_array_equal(w.y[:, 0, 0], values[origins, 0, 0])
    first = w.x[origins.index(6)]  # context rows 2..5; row 5 filled from row 4
    assert first[-1, 1] == values[4, 0, 1]
    assert w.calendar.shape == (len(w), 4) and np.isfinite(w.calendar).all()


def test_validation_windows_only_target_validation_rows():
    values = np.arange(30, dtype=float).reshape(30, 1, 1)
    index = pd.date_range("2024-01-01", periods=30, freq="1min")
    train, val = training_windows(values[:20], index[:20], values[20:], index[20:], lookback=5, horizon=1)
    assert len(train) == 15 and len(val) == 10
    assert val.y[:, 0, 0].tolist() == list(range(20, 30))
    np.testing.assert_array_equal(val.x[0, :, 0], np.arange(15, 20))
    with pytest.raises(HarmonyInputError, match="too few complete rows"):
        training_windows(values[:4], index[:4], values[4:6], index[4:6], lookback=5, horizon=1)


def small_windows(seed=0):
    frame = make_frame(steps=300, series=2, indicators=3, seed=seed)
    split = frame.split()
    return training_windows(split.train.values / 15, split.train.index, split.validation.values / 15,
                            split.validation.index, lookback=16, horizon=1)


def config():
    return HarmonyConfig(levels=(1, 2, 3), lookback=16, horizon=1, d_model=16, n_heads=2, flow="maf",
                         flow_hidden=16, context_features=8)


def test_same_seed_same_weights_other_seed_other_weights():
    train, val = small_windows()
    settings = TrainingSettings(max_epochs=2, seed=5)
    a, report_a = train_network(config(), train, val, settings)
    b, report_b = train_network(config(), train, val, settings)
    c, _ = train_network(config(), train, val, TrainingSettings(max_epochs=2, seed=6))
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert report_a.best_val_nll == report_b.best_val_nll
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


def test_training_improves_validation_nll_and_returns_the_best_weights():
    train, val = small_windows()
    settings = TrainingSettings(max_epochs=6, patience=2, seed=0)
    torch.manual_seed(0)
    untrained = HarmonyNetwork(config()).eval()
    net, report = train_network(config(), train, val, settings)
    x, cal, y = (torch.from_numpy(a) for a in (val.x, val.calendar, val.y))
    with torch.no_grad():
        before = -untrained.log_prob(x, cal, y).mean().item() / 3
        after = -net.log_prob(x, cal, y).mean().item() / 3
    assert after < before - 0.1
    # the returned weights are those that scored best_val_nll, whatever epoch training ended on. Both are
    # float32 means of the same 60 validation NLLs (|NLL| of a few), batched differently: rounding stays
    # within ~60 x eps32 (1e-5) relative, ten times inside the tolerance.
    assert after == pytest.approx(report.best_val_nll, rel=1e-4, abs=1e-4)
    assert 0 <= report.best_epoch < report.epochs_run <= 6
    assert not net.training


def test_early_stopping_stops_when_validation_stops_improving():
    train, val = small_windows()
    settings = TrainingSettings(max_epochs=50, patience=1, learning_rate=0.05, seed=0)  # overshoots quickly
    _, report = train_network(config(), train, val, settings)
    assert report.epochs_run < 50
    assert report.epochs_run - report.best_epoch <= 2


def test_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(HarmonyInputError, match="does not exist"):
        HarmonyPredictor.load(tmp_path / "missing.ckpt")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(HarmonyInputError, match="junk.ckpt is not a harmony checkpoint"):
        build_predictor(f"harmony:{junk}")
    with pytest.raises(RuntimeError, match="not fitted"):
        HarmonyPredictor().save(tmp_path / "x.ckpt")


def test_registry_specs_set_options_and_ablations():
    model = build_predictor("harmony:lookback=48+horizon=3+epochs=7+d_model=64+flow=maf+seed=9")
    assert (model.lookback, model.horizon, model.settings.max_epochs, model.settings.seed) == (48, 3, 7, 9)
    assert model.options == {"d_model": 64, "flow": "maf"}
    assert build_predictor("harmony:144").lookback == 144
    spec = build_predictor("harmony:quantiles=8+calibrate=false")
    assert spec.options == {"window_quantiles": 8} and spec.settings.calibrate is False
    assert build_predictor("harmony-flat").options == {"hierarchy": False}
    assert build_predictor("harmony-gauss:96").options == {"flow": "none"}
    with pytest.raises(HarmonyInputError, match="unknown option 'depth'"):
        build_predictor("harmony:depth=3")
    with pytest.raises(HarmonyInputError, match="epochs='x' is not a int"):
        build_predictor("harmony:epochs=x")
    with pytest.raises(HarmonyInputError, match="lookback must be >= 2"):
        build_predictor("harmony:1")


def test_harmony_help_names_every_spec_option():
    from harmony.forecasting.predictor_names import HARMONY_OPTIONS
    from harmony.forecasting.predictors import PREDICTORS

    options = PREDICTORS["harmony"][1].partition("KEY=VALUE")[2]
    named = {word.split("=")[0] for word in options.replace("(", ",").replace(")", ",").replace(";", ",").split(",")}
    assert set(HARMONY_OPTIONS) - {w.strip() for w in named} == set()


def test_bad_config_is_reported_as_input_error():
    frame = make_frame(steps=200, series=1, indicators=2)
    split = frame.split()
    with pytest.raises(HarmonyInputError, match="must be a multiple of n_heads"):
        build_predictor("harmony:lookback=16+d_model=10+heads=4").fit(split.train, split.validation)


def test_spread_is_calibrated_on_validation_windows_only_when_asked():
    train, val = small_windows()
    net, report = train_network(config(), train, val, TrainingSettings(max_epochs=2, seed=0))
    raw, raw_report = train_network(config(), train, val, TrainingSettings(max_epochs=2, seed=0, calibrate=False))
    assert torch.equal(raw.spread, torch.ones(1, 3)) and raw_report.mean_spread == 1.0
    assert not torch.equal(net.spread, raw.spread)
    assert report.mean_spread == pytest.approx(net.spread.mean().item())
    # the fitted factors lower the validation CRPS of the samples (the criterion they minimise)
    x, cal, y = (torch.from_numpy(a) for a in (val.x, val.calendar, val.y))
    scores = [crps_ensemble(y[:, 0].numpy(), m.sample(x, cal, 100, torch.Generator().manual_seed(0))[:, :, 0]
                            .numpy()).mean() for m in (net, raw)]
    assert scores[0] < scores[1]


def test_checkpoints_from_before_calibration_and_quantiles_still_load(tmp_path):
    frame = make_frame(steps=220, series=2, indicators=3)
    split = frame.split()
    model = HarmonyPredictor(16, 1, TrainingSettings(max_epochs=1, calibrate=False), d_model=16, n_heads=2,
                             window_quantiles=0)
    model.fit(split.train, split.validation)
    path = model.save(tmp_path / "m.ckpt")
    state = torch.load(path, weights_only=True)
    del state["config"]["window_quantiles"], state["state_dict"]["spread"], state["settings"]["calibrate"]
    torch.save(state, path)
    loaded = HarmonyPredictor.load(path)
    ctx = Context(frame.values[-16:])
    np.testing.assert_array_equal(loaded.predict(ctx, 1, 10, seed=1).samples, model.predict(ctx, 1, 10, seed=1).samples)


def test_an_ensemble_trains_members_from_successive_seeds_and_splits_the_samples(tmp_path):
    frame = make_frame(steps=220, series=2, indicators=3)
    split = frame.split()
    settings = TrainingSettings(max_epochs=1, calibrate=False, seed=4)
    small = {"d_model": 16, "n_heads": 2, "window_quantiles": 0}
    ensemble = HarmonyPredictor(16, 1, settings, members=3, **small).fit(split.train, split.validation)
    assert len(ensemble.networks) == 3 and ensemble.network is ensemble.networks[0]
    # member i is the network one predictor trained from seed 4 + i would have
    for i in (0, 2):
        alone = HarmonyPredictor(16, 1, TrainingSettings(max_epochs=1, calibrate=False, seed=4 + i), **small)
        alone.fit(split.train, split.validation)
        for key, value in alone.network.state_dict().items():
            assert torch.equal(value, ensemble.networks[i].state_dict()[key]), key
    ctx = Context(frame.values[-16:])
    forecast = ensemble.predict(ctx, 1, 10, seed=1)
    assert forecast.samples.shape[0] == 10  # 4 + 3 + 3 paths, as many as one network draws
    first = HarmonyPredictor(16, 1, settings, **small)
    first.networks, first.scaler, first.indicators = ensemble.networks[:1], ensemble.scaler, ensemble.indicators
    np.testing.assert_array_equal(forecast.samples[:4], first.predict(ctx, 1, 4, seed=1).samples)
    assert not np.array_equal(forecast.samples[4:8], first.predict(ctx, 1, 8, seed=1).samples[4:])
    assert ensemble.predict(ctx, 1, 2, seed=1).samples.shape[0] == 2  # fewer samples than members
    # a checkpoint keeps every member; one from before ensembles (no "members" key) loads as one network
    loaded = HarmonyPredictor.load(ensemble.save(tmp_path / "e.ckpt"))
    assert loaded.members == 3
    np.testing.assert_array_equal(loaded.predict(ctx, 1, 10, seed=1).samples, forecast.samples)
    state = torch.load(tmp_path / "e.ckpt", weights_only=True)
    del state["members"]
    torch.save(state, tmp_path / "one.ckpt")
    assert len(HarmonyPredictor.load(tmp_path / "one.ckpt").networks) == 1


def test_ensemble_size_comes_from_the_spec_and_must_be_positive():
    assert build_predictor("harmony:lookback=16+members=3").members == 3
    assert build_predictor("harmony").members == 1
    with pytest.raises(HarmonyInputError, match="members must be >= 1, got 0"):
        build_predictor("harmony:members=0")
