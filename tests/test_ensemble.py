"""Ensembles: mixture density and sampling against exact answers, vmap equals the Python loop."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from jax.scipy.stats import norm

from gbijax.generators import (
    Generator,
    SplineFlowConfig,
    as_loss_fn,
    ensemble_log_prob,
    ensemble_sample,
    fit_ensemble,
    init_ensemble,
    member_log_probs,
    spline_flow,
)
from gbijax.train import TrainConfig, fit


def shifted_gaussian(d: int = 1) -> Generator:
    """A toy family: x | c ~ N(mean + c, I), params = mean (initialised at random)."""
    return Generator(
        init=lambda key: 3.0 * jax.random.normal(key, (d,)),
        loss=lambda mean, key, x, c: 0.5 * jnp.sum((x - mean - c) ** 2, -1),
        log_prob=lambda mean, x, c: jnp.sum(norm.logpdf(x, mean + c), -1),
        sample=lambda mean, key, c: mean + c + jax.random.normal(key, c.shape[:1] + (d,)),
    )


FLOW = spline_flow(SplineFlowConfig(features=2, context=1, n_layers=1, hidden=(8,), n_bins=4))


def test_init_ensemble_is_the_loop_over_split_keys():
    key = jax.random.key(0)
    members = init_ensemble(FLOW, key, 3)
    for i, k in enumerate(jax.random.split(key, 3)):
        single = FLOW.init(k)
        jax.tree.map(lambda a, b, i=i: np.testing.assert_array_equal(a[i], b), members, single)
    kernels = jax.tree.leaves(members)[-1]
    assert not np.allclose(kernels[0], kernels[1])


def test_ensemble_density_is_the_mean_of_member_densities():
    x = jax.random.normal(jax.random.key(3), (7, 2))
    ctx = jax.random.normal(jax.random.key(4), (7, 1))

    @jax.jit
    def densities(members):
        member = lambda i: jax.tree.map(lambda p: p[i], members)
        loop = jnp.stack([FLOW.log_prob(member(i), x, ctx) for i in range(3)])
        return loop, member_log_probs(FLOW, members, x, ctx), ensemble_log_prob(FLOW, members, x, ctx)

    flat, unravel = ravel_pytree(init_ensemble(FLOW, jax.random.key(1), 3))
    members = unravel(flat + 0.2 * jax.random.normal(jax.random.key(2), flat.shape))  # non-trivial flows
    loop, vmapped, ensemble = densities(members)
    np.testing.assert_allclose(vmapped, loop, rtol=1e-5)
    expected = jax.nn.logsumexp(loop, axis=0) - math.log(3)
    np.testing.assert_allclose(ensemble, expected, rtol=1e-5)
    assert float(jnp.max(jnp.abs(expected - loop.mean(0)))) > 1e-4  # not the mean of log-densities


def test_two_gaussians_mixture_density_and_sampling():
    gen = shifted_gaussian()
    means = jnp.array([[-2.0], [3.0]])
    n = 20_000
    ctx = jnp.full((n, 1), 0.5)
    x = jnp.linspace(-5, 6, 12)[:, None]
    exact = jnp.log(0.5 * norm.pdf(x[:, 0], -1.5) + 0.5 * norm.pdf(x[:, 0], 3.5))
    np.testing.assert_allclose(ensemble_log_prob(gen, means, x, ctx[:12]), exact, rtol=1e-5)
    key = jax.random.key(5)
    s = ensemble_sample(gen, means, key, ctx)
    assert s.shape == (n, 1)
    # every event is the draw of one member, made with the documented keys
    _, k_members = jax.random.split(key)
    draws = jnp.stack([gen.sample(means[i], k, ctx) for i, k in enumerate(jax.random.split(k_members, 2))])
    assert bool(jnp.all((s == draws[0]) | (s == draws[1])))
    # members chosen with probability 1/2: mixture mean and variance
    assert float(jnp.mean(s[:, 0] > 1.0)) == pytest.approx(0.5, abs=0.015)
    assert float(s.mean()) == pytest.approx(1.0, abs=0.05)
    assert float(s.var()) == pytest.approx(1 + 2.5**2, rel=0.03)


def test_fit_ensemble_with_member_weights_equals_looped_training():
    """A (K, N) weight gives every member its own events (bootstrap, folds); the rest is shared."""
    gen = shifted_gaussian(2)
    x = jax.random.normal(jax.random.key(6), (64, 2)) + jnp.array([1.0, -1.0])
    weight = jnp.stack([jnp.ones(64), (jnp.arange(64) < 32).astype(jnp.float32)])
    data = {"x": x, "context": jnp.zeros((64, 1)), "weight": weight}
    config = TrainConfig(epochs=3, batch_size=16, learning_rate=0.1)
    key, init = jax.random.key(7), init_ensemble(gen, jax.random.key(8), 2)
    params, hist = fit_ensemble(gen, key, init, data, data, config)
    assert params.shape == (2, 2) and hist.val_loss.shape == (2, 3)
    single_fit = jax.jit(lambda k, p, d: fit(k, p, as_loss_fn(gen), d, d, config))
    for i, k in enumerate(jax.random.split(key, 2)):
        single, single_hist = single_fit(k, init[i], {**data, "weight": weight[i]})
        np.testing.assert_allclose(params[i], single, rtol=1e-5)
        np.testing.assert_allclose(hist.val_loss[i], single_hist.val_loss, rtol=1e-5)
    assert not np.allclose(params[0], params[1])


@pytest.mark.slow
def test_fit_ensemble_of_flows_equals_looped_training():
    x = jax.random.normal(jax.random.key(9), (64, 2))
    data = {"x": x, "context": x[:, :1] ** 2}
    config = TrainConfig(epochs=2, batch_size=32, learning_rate=1e-2)
    key, init = jax.random.key(10), init_ensemble(FLOW, jax.random.key(11), 2)
    params, _ = fit_ensemble(FLOW, key, init, data, None, config)
    single_fit = jax.jit(lambda k, p: fit(k, p, as_loss_fn(FLOW), data, None, config)[0])
    for i, k in enumerate(jax.random.split(key, 2)):
        single = single_fit(k, jax.tree.map(lambda p, i=i: p[i], init))
        close = lambda a, b, i=i: np.testing.assert_allclose(a[i], b, rtol=1e-4, atol=1e-6)
        jax.tree.map(close, params, single)
    lp = ensemble_log_prob(FLOW, params, x, data["context"])
    assert lp.shape == (64,) and bool(jnp.all(jnp.isfinite(lp)))
