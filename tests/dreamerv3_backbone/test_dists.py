"""Distributions, returns, normaliser and optimizer of the DreamerV3 backbone."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dreamerv3_backbone import dists, returns
from dreamerv3_backbone.optim import clip_by_agc, make_optimizer


def test_symlog_symexp_round_trip_and_shape():
    x = jnp.array([-1e6, -10.0, -1.0, 0.0, 0.5, 3.0, 1e6])
    np.testing.assert_allclose(dists.symexp(dists.symlog(x)), x, rtol=1e-5)
    assert float(dists.symlog(jnp.array(np.e - 1))) == pytest.approx(1.0)
    assert float(dists.symlog(jnp.array(-(np.e - 1)))) == pytest.approx(-1.0)


def test_twohot_round_trip_and_weights():
    bins = dists.symlog_bins(255)
    targets = jnp.array([-1234.5, -3.0, -0.01, 0.0, 0.7, 42.0, 9999.0])
    weights = dists.twohot_encode(targets, bins)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)
    assert int((weights > 0).sum(-1).max()) <= 2
    # The expected bin under the two-hot weights is the symlog target, so the mean round-trips.
    logits = jnp.log(jnp.maximum(weights, 1e-30))
    np.testing.assert_allclose(dists.twohot_mean(logits, bins), targets, rtol=1e-3, atol=1e-4)
    # Loss is minimised at the two-hot target: it equals the target's own entropy there.
    loss = dists.twohot_loss(logits, targets, bins)
    entropy = -(weights * jnp.log(jnp.maximum(weights, 1e-30))).sum(-1)
    np.testing.assert_allclose(loss, entropy, atol=1e-4)


def test_raw_space_twohot_reads_an_even_mix_of_0_and_1_as_one_half():
    """The reference's symexp-spaced bins, interpolated in raw space, read a 50/50 mix of rewards 0
    and 1 as 0.5; the symlog-space form reads symexp(0.5 * symlog(1)) = sqrt(2) - 1."""
    for squash, expected in ((False, 0.5), (True, 2 ** 0.5 - 1)):
        bins = dists.symlog_bins(255)
        bins = bins if squash else dists.symexp(bins)
        probs = 0.5 * (dists.twohot_encode(jnp.array(0.0), bins, squash)
                       + dists.twohot_encode(jnp.array(1.0), bins, squash))
        mean = dists.twohot_mean(jnp.log(jnp.maximum(probs, 1e-30)), bins, squash)
        assert float(mean) == pytest.approx(expected, abs=1e-4)
        targets = jnp.array([-1234.5, -3.0, 0.0, 0.7, 42.0])
        weights = dists.twohot_encode(targets, bins, squash)
        np.testing.assert_allclose(dists.twohot_mean(jnp.log(jnp.maximum(weights, 1e-30)), bins, squash), targets,
                                   rtol=1e-3, atol=1e-4)
        assert float(dists.twohot_mean(jnp.zeros((3, 255)), bins, squash).max()) == 0.0


def test_twohot_zero_logits_predict_exactly_zero():
    bins = dists.symlog_bins(255)
    assert float(dists.twohot_mean(jnp.zeros((3, 255)), bins).max()) == 0.0


def test_twohot_out_of_range_targets_clip_to_edge_bins():
    bins = dists.symlog_bins(255)
    weights = dists.twohot_encode(jnp.array([1e30, -1e30]), bins)
    assert float(weights[0, -1]) == 1.0 and float(weights[1, 0]) == 1.0


def test_unimix_floors_probabilities():
    logits = jnp.array([[100.0, 0.0, -100.0, -100.0]])
    probs = jnp.exp(dists.unimix_logits(logits, 0.01))
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
    assert float(probs.min()) == pytest.approx(0.01 / 4, rel=1e-4)
    assert float(probs.max()) == pytest.approx(0.99 + 0.01 / 4, rel=1e-4)


def test_onehot_sample_is_one_hot_with_straight_through_gradient():
    logits = jnp.array([0.3, -0.2, 1.0])
    sample = dists.onehot_sample(jax.random.key(0), logits)
    assert sorted(np.asarray(sample).round(6).tolist()) == [0.0, 0.0, 1.0]
    weights = jnp.array([1.0, 2.0, 3.0])
    grad = jax.grad(lambda l: (dists.onehot_sample(jax.random.key(0), l) * weights).sum())(logits)
    probs = jax.nn.softmax(logits)
    expected = jax.grad(lambda l: (jax.nn.softmax(l) * weights).sum())(logits)
    np.testing.assert_allclose(grad, expected, rtol=1e-5)
    assert float(jnp.abs(grad).sum()) > 0 and probs.shape == (3,)


def test_onehot_samples_follow_probabilities():
    logits = jnp.log(jnp.array([0.2, 0.5, 0.3]))
    samples = jax.vmap(lambda k: dists.onehot_sample(k, logits))(jax.random.split(jax.random.key(1), 20000))
    np.testing.assert_allclose(samples.mean(0), [0.2, 0.5, 0.3], atol=0.015)


def test_kl_balancing_and_free_bits():
    from types import SimpleNamespace

    from dreamerv3_backbone.rssm import RSSM

    rssm = SimpleNamespace(free_nats=1.0)
    post = jnp.log(jnp.array([[[0.7, 0.3], [0.5, 0.5]]]))
    prior = jnp.log(jnp.array([[[0.4, 0.6], [0.9, 0.1]]]))
    kl = float(dists.categorical_kl(post, prior).sum(-1)[0])
    dyn, rep = RSSM.kl_losses(rssm, post, prior)
    assert float(dyn[0]) == pytest.approx(max(kl, 1.0)) and float(rep[0]) == pytest.approx(max(kl, 1.0))
    close = jnp.log(jnp.array([[[0.69, 0.31], [0.5, 0.5]]]))
    dyn, rep = RSSM.kl_losses(rssm, post, close)
    assert float(dyn[0]) == 1.0  # clipped below at one nat
    # dyn trains only the prior, rep only the posterior
    g_post = jax.grad(lambda p: RSSM.kl_losses(SimpleNamespace(free_nats=0.0), p, prior)[0].sum())(post)
    g_prior = jax.grad(lambda q: RSSM.kl_losses(SimpleNamespace(free_nats=0.0), post, q)[1].sum())(prior)
    assert float(jnp.abs(g_post).sum()) == 0 and float(jnp.abs(g_prior).sum()) == 0


def test_lambda_return_matches_naive_recursion():
    rng = np.random.default_rng(0)
    b, t, disc, lam = 3, 7, 0.99, 0.95
    rew, boot = rng.normal(size=(b, t)), rng.normal(size=(b, t))
    term = (rng.random((b, t)) < 0.2).astype(np.float32)
    last = np.maximum(term, (rng.random((b, t)) < 0.1)).astype(np.float32)
    expected = np.zeros((b, t - 1))
    for i in range(b):
        ret = boot[i, -1]
        for k in reversed(range(t - 1)):
            live, cont = (1 - term[i, k + 1]) * disc, (1 - last[i, k + 1]) * lam
            ret = rew[i, k + 1] + live * ((1 - cont) * boot[i, k + 1] + cont * ret)
            expected[i, k] = ret
    got = returns.lambda_return(jnp.array(last), jnp.array(term), jnp.array(rew), jnp.array(boot), disc, lam)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_percentile_normaliser_tracks_p5_p95_range():
    state = returns.init_percentiles()
    x = jnp.linspace(0.0, 100.0, 1001)
    for _ in range(5):
        state = returns.update_percentiles(state, x, rate=0.01)
    assert float(returns.return_scale(state, debias=True)) == pytest.approx(90.0, rel=1e-4)
    # The reference keeps the EMA's zero start: after 5 updates at rate 0.01 it reads 1 - 0.99^5 of it.
    assert float(returns.return_scale(state)) == pytest.approx(90.0 * (1 - 0.99 ** 5), rel=1e-4)
    small = returns.update_percentiles(returns.init_percentiles(), x * 0.001, rate=0.01)
    assert float(returns.return_scale(small)) == 1.0  # max(1, .)


def test_agc_clips_relative_to_parameter_norm():
    params = {"w": jnp.ones((4,)) * 0.5}  # norm 1
    grads = {"w": jnp.ones((4,)) * 10.0}  # norm 20
    clipped, _ = clip_by_agc(0.3).update(grads, optax.EmptyState(), params)
    assert float(jnp.linalg.norm(clipped["w"])) == pytest.approx(0.3, rel=1e-5)
    small = {"w": jnp.ones((4,)) * 0.01}
    same, _ = clip_by_agc(0.3).update(small, optax.EmptyState(), params)
    np.testing.assert_allclose(same["w"], small["w"])


def test_optimizer_chain_first_step_is_rms_normalised_and_warmed_up():
    params = {"w": jnp.array([1.0, -2.0, 3.0])}
    grads = {"w": jnp.array([1e-3, -5e-3, 2e-3])}
    opt = make_optimizer(lr=1e-2, warmup=10, agc=0.3, eps=1e-20, beta1=0.9, beta2=0.999)
    state = opt.init(params)
    updates, state = opt.update(grads, state, params)
    np.testing.assert_allclose(updates["w"], 0.0)  # warm-up starts at lr 0
    updates, state = opt.update(grads, state, params)
    # LaProp with bias correction: the update is -lr * sign(g) while gradients are constant.
    np.testing.assert_allclose(updates["w"], -1e-3 * np.sign(grads["w"]), rtol=1e-4)
