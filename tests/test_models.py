"""One contract test over every HARMONY variant (hierarchy x flow kind), plus the network's exactness checks.

Exactness checks (an identity that holds in exact arithmetic) run the network in float64 and compare with
float64 tolerances, so they cannot fail on float32 rounding that differs between machines (BLAS kernels,
SIMD widths); where float32 itself is the subject, a float64 run is the reference.
"""

import copy

import numpy as np
import pytest
import torch

from harmony.forecasting.models import HarmonyConfig, HarmonyNetwork
from harmony.forecasting.models.attention import level_masks
from harmony.forecasting.models.calibration import apply_spread, fit_spread
from harmony.forecasting.models.splines import rational_quadratic_spline
from harmony.forecasting.predictors import harmony as harmony_module
from harmony.forecasting.predictors.base import Context
from harmony.forecasting.predictors.harmony import HarmonyPredictor
from harmony.forecasting.training import TrainingSettings
from tests.helpers import make_frame

VARIANTS = [(hierarchy, flow) for hierarchy in (True, False) for flow in ("spline", "spline-ar", "maf", "none")]
LEVELS = (1, 2, 3)  # make_frame's indicators: ind0 level 1, ind1 level 2, ind2 level 3
LOOKBACK, HORIZON = 16, 2


def tiny_config(hierarchy: bool, flow: str, levels=LEVELS, horizon=HORIZON, calendar=True) -> HarmonyConfig:
    return HarmonyConfig(levels=levels, lookback=LOOKBACK, horizon=horizon, d_model=16, n_heads=2, dropout=0.0,
                         hierarchy=hierarchy, flow=flow, flow_hidden=16, context_features=8, calendar=calendar)


def batch(n=6, n_ind=3, horizon=HORIZON, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, LOOKBACK, n_ind, generator=g)
    return x, torch.rand(n, 4, generator=g) * 2 - 1, torch.rand(n, horizon, n_ind, generator=g)


@pytest.fixture(scope="module")
def frame():
    return make_frame(steps=220, series=2, indicators=3)


@pytest.mark.parametrize(("hierarchy", "flow"), VARIANTS)
def test_network_contract(hierarchy, flow):
    torch.manual_seed(0)
    net = HarmonyNetwork(tiny_config(hierarchy, flow))
    x, cal, y = batch()
    params = net.encode(x, cal)
    assert params["mean"].shape == params["scale"].shape == (6, HORIZON, 3)
    assert (params["scale"] > 0).all()
    log_prob = net.log_prob(x, cal, y)
    assert log_prob.shape == (6,) and torch.isfinite(log_prob).all()
    # gradients reach every parameter, through the NLL and (via flow inverse) the sample-CRPS term
    out = net.loss(x, cal, y, crps_weight=1.0, crps_samples=4)
    out["loss"].backward()
    silent = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not silent, silent
    samples = net.sample(x, cal, 7, torch.Generator().manual_seed(1))
    assert samples.shape == (7, 6, HORIZON, 3) and torch.isfinite(samples).all()
    again = net.sample(x, cal, 7, torch.Generator().manual_seed(1))
    assert torch.equal(samples, again)
    if net.flow is not None:  # the flow inverts exactly: z -> u -> z (in float64: exact up to 1e-10)
        flow = copy.deepcopy(net.flow).double()
        context = params["context"].detach().double()
        z = torch.randn(6, HORIZON * 3, dtype=torch.float64)
        with torch.no_grad():
            u, _ = flow.transform(z, context=context)
            assert not torch.allclose(u, z, atol=1e-3)  # a real transform, not the identity
            torch.testing.assert_close(flow.inverse(u, context), z, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize(("hierarchy", "flow"), VARIANTS)
def test_predictor_contract_train_save_load_predict(hierarchy, flow, frame, tmp_path):
    split = frame.split()
    settings = TrainingSettings(max_epochs=2, batch_size=64, seed=1)  # tiny: 2 epochs of ~270 windows
    model = HarmonyPredictor(LOOKBACK, HORIZON, settings, d_model=16, n_heads=2, flow=flow, hierarchy=hierarchy,
                             flow_hidden=16, flow_layers=2, context_features=8, window_quantiles=8)
    model.fit(split.train, split.validation)
    assert model.report.epochs_run == 2 and model.report.best_epoch in (0, 1)
    end = len(frame) - len(split.test)
    ctx = Context(frame.values[end - LOOKBACK:end], np.repeat(frame.index.to_numpy()[end - 1], 2), frame.interval)
    fc = model.predict(ctx, horizon=5, n_samples=20, seed=3)  # beyond the trained horizon: recursive
    assert fc.samples.shape == (20, 5, 2, 3) and np.isfinite(fc.samples).all()
    assert tuple(fc.indicators) == frame.indicator_names
    # samples are in the data's units (values ~ 10 +- 5), not the network's normalised space
    assert 5 < np.median(fc.samples) < 15
    path = model.save(tmp_path / "m.ckpt")
    loaded = HarmonyPredictor.load(path)
    assert loaded.config == model.config and loaded.indicators == model.indicators
    assert loaded.config.levels == frame.levels
    np.testing.assert_array_equal(loaded.predict(ctx, 5, 20, seed=3).samples, fc.samples)
    assert loaded.fit(split.train) is loaded  # a loaded model is not retrained


def float64_batch(n: int, **kwargs):
    return tuple(t.double() for t in batch(n=n, **kwargs))


def test_gaussian_log_prob_is_the_normal_density_in_input_space():
    torch.manual_seed(0)
    net = HarmonyNetwork(tiny_config(True, "none")).double().eval()
    x, cal, y = float64_batch(4)
    p = net.encode(x, cal)
    dist = torch.distributions.Normal(p["centre"] + p["window_scale"] * p["mean"], p["window_scale"] * p["scale"])
    expected = dist.log_prob(y).sum(dim=(1, 2))
    torch.testing.assert_close(net.log_prob(x, cal, y), expected, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("flow", ["spline", "maf"])
def test_flow_density_integrates_to_one_in_input_space(flow):
    """One target, one step: exp(log_prob) over a fine grid of y integrates to 1, so every Jacobian (flow,
    Gaussian affine map, window normalisation) is accounted for."""
    torch.manual_seed(0)
    net = HarmonyNetwork(tiny_config(True, flow, levels=(1,), horizon=1)).eval()
    x, cal, _ = batch(n=1, n_ind=1, horizon=1)
    samples = net.sample(x, cal, 2000, torch.Generator().manual_seed(0)).flatten()
    lo, hi = samples.min().item(), samples.max().item()
    width = hi - lo
    grid = torch.linspace(lo - 2 * width, hi + 2 * width, 40001)
    with torch.no_grad():
        dens = net.log_prob(x.expand(len(grid), -1, -1), cal.expand(len(grid), -1), grid[:, None, None]).exp()
    assert torch.trapezoid(dens, grid).item() == pytest.approx(1.0, abs=0.02)


def test_hierarchy_masks_exclude_lower_levels_with_minus_infinity():
    stages, masks, updates = level_masks((2, 1, 3), n_extra=1)
    assert stages == [1, 2, 3]
    # stage of level 2: the level-2 token (row 0) sees itself, level 1 (col 1) and the calendar token (col 3)
    assert masks[1, 0].tolist() == [0.0, 0.0, float("-inf"), 0.0]
    assert (masks == 0).any(dim=-1).all()  # no row is all -inf (that would give NaN)
    assert updates[1].tolist() == [True, False, False, False]


@pytest.mark.parametrize("hierarchy", [True, False])
def test_higher_levels_do_not_see_lower_ones(hierarchy):
    torch.manual_seed(0)
    net = HarmonyNetwork(tiny_config(hierarchy, "none")).double().eval()  # float64: "unchanged" is exact
    x, cal, _ = float64_batch(2)
    moved = x.clone()
    moved[:, :, 2] += torch.linspace(0, 3, LOOKBACK)  # change the level-3 indicator only
    lifted = x.clone()
    lifted[:, :, 0] += torch.linspace(0, 3, LOOKBACK)  # change the level-1 indicator only
    with torch.no_grad():
        base, after_low, after_high = (net.encode(v, cal)["mean"] for v in (x, moved, lifted))
    level1_unchanged = torch.allclose(base[:, :, 0], after_low[:, :, 0], rtol=1e-12, atol=1e-12)
    assert level1_unchanged == hierarchy  # flat attention lets level 3 leak into level 1
    assert not torch.allclose(base[:, :, 2], after_high[:, :, 2])  # level 1 conditions level 3


@pytest.mark.parametrize("true_sd", [0.5, 2.0])
def test_spread_calibration_recovers_the_missing_scale(true_sd):
    """Samples of N(0, 1) scored against N(0, true_sd^2) outcomes: the CRPS-optimal factor is true_sd."""
    g = torch.Generator().manual_seed(0)
    samples = torch.randn(200, 3000, 2, generator=g)
    observed = true_sd * torch.randn(3000, 2, generator=g)
    observed[:, 1] = float("nan")  # a feature never observed keeps factor 1
    spread = fit_spread(samples, torch.zeros(3000, 2), observed)
    assert spread[0].item() == pytest.approx(true_sd, rel=0.1)
    assert spread[1].item() == 1.0
    widened = apply_spread(samples, torch.zeros(1, 3000, 2), spread)
    torch.testing.assert_close(widened[:, :, 0], spread[0] * samples[:, :, 0])


def test_network_calibration_scales_samples_about_the_centre_and_is_saved():
    torch.manual_seed(0)
    net = HarmonyNetwork(tiny_config(True, "spline")).double().eval()  # float64: the identity below is exact
    x, cal, _ = float64_batch(64)
    raw = net.sample(x, cal, 50, torch.Generator().manual_seed(2))
    with torch.no_grad():
        centre = net.centre_from(net.encode(x, cal))
    # outcomes 3x further from the centre than the network expects: the fitted spread must widen
    y = torch.zeros(64, HORIZON, 3, dtype=torch.float64)
    y[:] = (centre + 3.0 * (raw[0] - centre))[0]
    spread = net.calibrate(x, cal, y, n_samples=50, seed=7, window_mix=False)
    assert spread.shape == (HORIZON, 3) and (spread > 1.5).all() and not net.window_mix.any()
    calibrated = net.sample(x, cal, 50, torch.Generator().manual_seed(2))
    torch.testing.assert_close(calibrated, centre + net.spread * (raw - centre), atol=1e-10, rtol=1e-10)
    assert torch.equal(net.sample(x, cal, 50, torch.Generator().manual_seed(2), calibrated=False), raw)
    fresh = HarmonyNetwork(tiny_config(True, "spline")).double()
    fresh.load_state_dict(net.state_dict())
    assert torch.equal(fresh.spread, net.spread)


def test_window_mixture_is_fitted_where_the_window_forecasts_better_and_kept_off_elsewhere():
    from harmony.forecasting.metrics import crps_ensemble
    from harmony.forecasting.models.calibration import fit_window_mix, mix_with_window

    def ensemble_crps(samples, observed):  # mean over windows, per feature
        return crps_ensemble(observed.numpy(), samples.numpy()).mean(axis=0)

    g = torch.Generator().manual_seed(0)
    n, windows, lookback = 100, 400, 72
    # two-valued i.i.d. outcomes (Fisher's block-I/O counters) whose recent windows hold the same marginal
    window = (torch.rand(windows, lookback, 2, generator=g) < 0.3).float()
    observed = (torch.rand(windows, 2, generator=g) < 0.3).float()
    model = 0.3 + 0.2 * torch.randn(n, windows, 2, generator=g)  # a smooth, wrong-shaped forecast
    model[:, :, 1] = observed[None, :, 1] + 0.001 * torch.randn(n, windows, generator=g)  # a near-perfect one
    weight, recent = fit_window_mix(model, window, observed, seed=1)
    assert weight[0] >= 0.8 and weight[1] == 0 and recent[1] == lookback  # off: the whole window, unused
    mixed = mix_with_window(model.unsqueeze(2), window, weight.view(1, 2), recent.view(1, 2),
                            torch.Generator().manual_seed(3))[:, :, 0]
    assert ensemble_crps(mixed, observed)[0] < 0.8 * ensemble_crps(model, observed)[0]
    assert torch.equal(mixed[:, :, 1], model[:, :, 1])  # weight 0: untouched
    every = mix_with_window(model.unsqueeze(2), window, torch.ones(1, 2), None, torch.Generator().manual_seed(3))
    assert set(every.unique().tolist()) <= {0.0, 1.0}  # weight 1: every value comes from its window
    assert torch.equal(mix_with_window(model, window, torch.zeros(2)), model)


def test_window_mixture_fits_how_many_recent_steps_to_draw_from():
    """An indicator that moves in regimes: the outcome repeats one of the window's last 3 values, while the
    older part of the window sits at another level. The fit picks a short span and draws only from it."""
    from harmony.forecasting.models.calibration import fit_window_mix, mix_with_window

    g = torch.Generator().manual_seed(0)
    n, windows, lookback = 100, 400, 72
    window = torch.zeros(windows, lookback, 1)
    window[:, -3:, 0] = 0.5 + torch.rand(windows, 3, generator=g)  # the current regime: the last 3 steps
    observed = window[torch.arange(windows), -1 - torch.randint(0, 3, (windows,), generator=g), :]
    model = 0.5 + 0.5 * torch.randn(n, windows, 1, generator=g)  # right level, far too wide
    weight, recent = fit_window_mix(model, window, observed, seed=1)
    assert weight[0] >= 0.9 and 2 <= recent[0] <= 4
    _, kept = fit_window_mix(model, window, observed, seed=1, span_margin=1.0)  # no span can gain 100%
    assert kept[0] == lookback
    drawn = mix_with_window(model, window, torch.ones(1), torch.full((1,), 3.0), torch.Generator().manual_seed(2))
    allowed = window[:, -3:, 0]  # [windows, 3]
    assert (drawn[..., 0].unsqueeze(-1) == allowed.unsqueeze(0)).any(-1).all()  # only the last 3 steps


def test_network_window_mixture_is_saved_and_sampling_stays_seeded():
    torch.manual_seed(0)
    net = HarmonyNetwork(tiny_config(True, "spline")).eval()
    x, cal, _ = batch(n=64)
    # outcomes are the windows' own values at random lags: the window's marginal is the right forecast
    lags = torch.randint(0, x.shape[1], (64, HORIZON), generator=torch.Generator().manual_seed(5))
    y = x[torch.arange(64)[:, None], lags]  # [64, H, I]
    net.calibrate(x, cal, y, n_samples=50, seed=7)
    assert net.window_mix.shape == net.window_recent.shape == (HORIZON, 3) and (net.window_mix > 0).any()
    assert ((net.window_recent >= 1) & (net.window_recent <= x.shape[1])).all()
    first = net.sample(x, cal, 50, torch.Generator().manual_seed(2))
    assert torch.equal(first, net.sample(x, cal, 50, torch.Generator().manual_seed(2)))
    fresh = HarmonyNetwork(tiny_config(True, "spline")).eval()
    fresh.load_state_dict(net.state_dict())
    assert torch.equal(fresh.window_recent, net.window_recent)
    assert torch.equal(fresh.sample(x, cal, 50, torch.Generator().manual_seed(2)), first)


def test_shared_context_sampling_matches_repeated_context():
    """The coupling networks' per-window context path gives the rows a repeated context would."""
    torch.manual_seed(0)
    net = HarmonyNetwork(tiny_config(True, "spline")).double().eval()  # float64: the two paths agree to 1e-10
    for p in net.flow.parameters():  # move the zero-initialised blocks off their start
        p.data += 0.1 * torch.randn_like(p)
    assert net.flow.shares_context
    context = torch.randn(5, 8, dtype=torch.float64)
    u = torch.randn(3 * 5, HORIZON * 3, dtype=torch.float64)
    with torch.no_grad():
        shared = net.flow.inverse(u, context, repeats=3)
        repeated, _ = net.flow.transform.inverse(u, context=context.repeat(3, 1))
    assert not torch.allclose(shared, u, atol=1e-3)  # the perturbed flow really transforms
    torch.testing.assert_close(shared, repeated, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("inverse", [False, True])
def test_fast_spline_matches_nflows(inverse):
    """The same function as nflows' spline: equal to float64 precision, and no less accurate in float32.

    A fixed float32 tolerance between the two is machine-dependent: rounding of the knot positions (about
    eps32 x tail_bound) is amplified by 1 / bin width, and bins are as narrow as min_bin_width x 2 tail_bound,
    so a log-det can be off by ~1e-4 in float32 in *either* implementation (1.66e-5 apart was seen on one
    machine). So both run in float64 (same function: agree to 1e-10), and in float32 each is scored
    against the float64 result: ours may not be more than twice as far from it as nflows' own float32 run
    (the same conditioning), plus a floor of 64 eps32 for elements both get nearly exact."""
    from nflows.transforms.splines import unconstrained_rational_quadratic_spline

    def both(dtype):
        g = torch.Generator().manual_seed(0)
        inputs = torch.randn(500, 3, generator=g) * 3  # some beyond the tail bound
        widths, heights = torch.randn(500, 3, 8, generator=g), torch.randn(500, 3, 8, generator=g)
        derivatives = torch.randn(500, 3, 7, generator=g)
        inputs, widths, heights, derivatives = (t.to(dtype) for t in (inputs, widths, heights, derivatives))
        mine = rational_quadratic_spline(inputs, widths, heights, derivatives, inverse=inverse, tail_bound=2.0)
        theirs = unconstrained_rational_quadratic_spline(inputs, widths, heights, derivatives.clone(),
                                                         inverse=inverse, tails="linear", tail_bound=2.0)
        return mine, theirs

    mine64, theirs64 = both(torch.float64)
    assert mine64[0].dtype == torch.float64 and (mine64[1] != 0).any()  # real log-dets, not just the tails
    for a, b in zip(mine64, theirs64, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    mine32, theirs32 = both(torch.float32)
    floor = 64 * torch.finfo(torch.float32).eps
    for a, b, reference in zip(mine32, theirs32, theirs64, strict=True):
        assert a.dtype == torch.float32
        ours, nflows = ((t.double() - reference).abs().max().item() for t in (a, b))
        assert ours <= 2 * nflows + floor, (ours, nflows)


def test_window_quantile_features_are_the_sorted_window():
    from harmony.forecasting.models.tokens import IndicatorTokens

    tokens = IndicatorTokens(LOOKBACK, LEVELS, d_model=8, quantiles=LOOKBACK)
    x = torch.randn(2, LOOKBACK, 3)
    captured = {}
    tokens.project.register_forward_hook(lambda mod, inp, out: captured.update(feats=inp[0]))
    tokens(x, torch.zeros(2, 1, 3), torch.ones(2, 1, 3))
    assert tokens.project.in_features == 2 * LOOKBACK + 2
    quantiles = captured["feats"][:, :, LOOKBACK:2 * LOOKBACK]  # [B, I, Q]
    torch.testing.assert_close(quantiles, x.sort(dim=1).values.transpose(1, 2))
    with pytest.raises(ValueError, match="window_quantiles"):
        HarmonyConfig(levels=LEVELS, lookback=LOOKBACK, window_quantiles=LOOKBACK + 1)
    # checkpoints written before the option existed had no quantile features
    old = {k: v for k, v in tiny_config(True, "spline").to_dict().items() if k != "window_quantiles"}
    assert HarmonyConfig.from_dict(old).window_quantiles == 0


def test_a_save_that_fails_midway_leaves_the_previous_checkpoint_whole(frame, tmp_path, monkeypatch):
    """The operator reloads a checkpoint that a training job rewrites on a shared volume: a reader sees the old
    file or the new one, never a part of it, and a failed write leaves neither a torn file nor litter."""
    split = frame.split()
    model = HarmonyPredictor(LOOKBACK, HORIZON, TrainingSettings(max_epochs=1, batch_size=64, seed=1), d_model=16,
                             n_heads=2, flow_hidden=16, flow_layers=2, context_features=8, window_quantiles=8)
    model.fit(split.train, split.validation)
    path = model.save(tmp_path / "m.ckpt")
    assert path.stat().st_mode & 0o777 == 0o644  # readable by the operator, whoever wrote it
    path.chmod(0o640)
    model.save(path)
    assert path.stat().st_mode & 0o777 == 0o640  # a rewrite keeps the file's mode
    before = path.read_bytes()

    def torn(obj, out):  # the disk fills up after a first part of the checkpoint
        out.write(before[:100])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(harmony_module.torch, "save", torn)
    with pytest.raises(OSError, match="No space left"):
        model.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.ckpt"]
    monkeypatch.undo()
    assert HarmonyPredictor.load(path).config == model.config
