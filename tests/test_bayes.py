import numpy as np
import pytest

from harmony.decision.posteriors import BreachPosterior, CapacityPosterior


def test_nig_update_matches_the_batch_closed_form():
    prior = CapacityPosterior(np.array([1.0]), np.array([2.0]), np.array([3.0]), np.array([0.5]))
    x = np.array([[1.5, 0.5, 2.0, 1.0]])
    post = prior.update(x)
    n, xbar = 4, x.mean()
    assert post.kappa[0] == 6.0
    assert post.mu[0] == pytest.approx((2 * 1.0 + n * xbar) / 6)
    assert post.alpha[0] == 5.0
    ss = ((x - xbar) ** 2).sum()
    assert post.beta[0] == pytest.approx(0.5 + ss / 2 + 2 * n * (xbar - 1.0) ** 2 / (2 * 6))
    # sequential updates equal one batch update
    seq = prior
    for v in x[0]:
        seq = seq.update(np.array([[v]]))
    np.testing.assert_allclose([seq.mu, seq.kappa, seq.alpha, seq.beta], [post.mu, post.kappa, post.alpha, post.beta])


def test_capacity_posterior_concentrates_on_the_truth_and_round_trips():
    rng = np.random.default_rng(0)
    post = CapacityPosterior.prior([2.0, 2.0], workloads=2, strength=1.0, relative_sd=0.5)
    obs = np.full((2, 400), np.nan)
    obs[0] = rng.normal(3.0, 0.3, size=400)  # workload 1 observes nothing: stays at its prior
    post = post.update(obs)
    draws = post.sample_mean(20000, rng)
    assert draws[0].mean() == pytest.approx(3.0, abs=0.05)
    assert draws[0].std() < 0.05
    assert draws[1].mean() == pytest.approx(2.0, abs=0.05) and draws[1].std() > 0.3
    assert (draws > 0).all()
    back = CapacityPosterior.from_dict(post.to_dict())
    np.testing.assert_allclose(back.beta, post.beta)
    with pytest.raises(ValueError, match="positive"):
        CapacityPosterior.prior(0.0)


def test_breach_posterior_estimates_the_realised_rate_with_forgetting():
    target = 0.01
    quiet = BreachPosterior.prior(target)
    for _ in range(500):
        quiet = quiet.update(np.array([0.0]))
    assert quiet.mean[0] < 0.1 * target  # the prior is forgotten
    noisy = BreachPosterior.prior(target)
    for _ in range(50):
        noisy = noisy.update(np.array([1.0]))
    assert noisy.mean[0] > 0.4
    steady = BreachPosterior.prior(target)
    assert steady.mean[0] == pytest.approx(target)
    # NaN means no observation: nothing changes
    same = steady.update(np.array([np.nan]))
    np.testing.assert_allclose([same.a, same.b], [steady.a, steady.b])
    back = BreachPosterior.from_dict(noisy.to_dict())
    np.testing.assert_allclose(back.mean, noisy.mean)
    with pytest.raises(ValueError, match="target breach rate"):
        BreachPosterior.prior(1.5)
