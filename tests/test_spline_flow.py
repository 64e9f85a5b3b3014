"""Masked autoregressive spline / affine flows: invertibility, change of variables, normalisation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from jax.scipy.stats import norm

from gbijax.generators import (
    CATHODE_MAF,
    RANODE_SIGNAL_FLOW,
    SplineFlowConfig,
    as_loss_fn,
    spline_flow,
    spline_flow_transform,
)
from gbijax.nn import count_params
from gbijax.train import TrainConfig, fit


@jax.jit
def perturbed(params, key, scale=0.2):
    """Random parameters away from the near-identity initialisation, so the flow is non-trivial
    (but not so far that it compresses by e^-40 and float32 cannot invert it)."""
    flat, unravel = ravel_pytree(params)
    return unravel(flat + scale * jax.random.normal(key, flat.shape))


SPLINE = SplineFlowConfig(features=3, context=2, n_layers=2, hidden=(16, 16), n_bins=6, tail_bound=3.0)
AFFINE = SPLINE._replace(transform="affine")


def test_reference_configurations_have_the_reference_sizes():
    # nflows' R-ANODE flow: per layer (5*32+32) + 2*(32*32+32) + (32*5*23 + 5*23) = 6,099
    assert count_params(spline_flow(RANODE_SIGNAL_FLOW).init(jax.random.key(0))) == 12_198
    # CATHODE MAF per block: 4*128+128 + 128 (context) + 128*128+128 + 128*8+8 = 18,312
    assert count_params(spline_flow(CATHODE_MAF).init(jax.random.key(0))) == 15 * 18_312


@pytest.mark.parametrize("config", [SPLINE, AFFINE], ids=["spline", "affine"])
def test_inverse_and_change_of_variables(config):
    gen, transform = spline_flow(config), spline_flow_transform(config)
    x = 1.5 * jax.random.normal(jax.random.key(3), (16, 3))
    ctx = jax.random.normal(jax.random.key(4), (16, 2))
    key = jax.random.key(5)

    @jax.jit
    def check(params):
        z, log_det = transform.forward(params, x, ctx)
        forward_one = lambda xi, ci: transform.forward(params, xi[None], ci[None])[0][0]
        # reverse mode: the spline's hand-written gradient has no forward-mode rule
        autodiff_log_det = jnp.linalg.slogdet(jax.vmap(jax.jacrev(forward_one))(x, ctx))[1]
        sample_by_inverse = transform.inverse(params, jax.random.normal(key, (16, 3)), ctx)
        return (z, log_det, transform.inverse(params, z, ctx), autodiff_log_det, gen.log_prob(params, x, ctx),
                gen.sample(params, key, ctx), sample_by_inverse, gen.loss(params, key, x, ctx))  # fmt: skip

    params = perturbed(gen.init(jax.random.key(1)), jax.random.key(2))
    z, log_det, x_back, autodiff_log_det, log_prob, sample, sample_by_inverse, loss = check(params)
    np.testing.assert_allclose(x_back, x, atol=1e-4)
    np.testing.assert_allclose(log_det, autodiff_log_det, rtol=1e-4, atol=1e-4)  # layers' sum = Jacobian
    np.testing.assert_allclose(log_prob, norm.logpdf(z).sum(-1) + log_det, rtol=1e-5)
    np.testing.assert_allclose(sample, sample_by_inverse, atol=1e-5)  # sampling inverts base noise
    np.testing.assert_allclose(loss, -log_prob)


def test_one_layer_is_autoregressive():
    config = SPLINE._replace(n_layers=1, permutation="none")
    params = perturbed(spline_flow(config).init(jax.random.key(6)), jax.random.key(7))
    forward = spline_flow_transform(config).forward
    x, c = jnp.array([0.3, -1.2, 2.0]), jnp.array([0.5, -0.5])
    jac = jax.jit(jax.jacrev(lambda xi: forward(params, xi[None], c[None])[0][0]))(x)
    np.testing.assert_allclose(jnp.triu(jac, 1), 0.0)  # z_i depends on x_<=i only
    assert float(jnp.min(jnp.abs(jnp.diag(jac)))) > 0


@pytest.mark.parametrize("transform, scale", [("spline", 0.3), ("affine", 0.1)])
def test_density_is_normalised_and_matches_samples(transform, scale):
    config = SplineFlowConfig(features=2, context=1, n_layers=2, hidden=(8,), tail_bound=2.5)
    gen = spline_flow(config._replace(transform=transform))
    params = perturbed(gen.init(jax.random.key(8)), jax.random.key(9), scale)
    grid = jnp.linspace(-12.0, 12.0, 481)
    xx, yy = jnp.meshgrid(grid, grid, indexing="ij")
    pts = jnp.stack([xx.ravel(), yy.ravel()], -1)
    dens = jnp.exp(gen.log_prob(params, pts, jnp.full((len(pts), 1), 0.7))).reshape(xx.shape)
    cell = (grid[1] - grid[0]) ** 2
    assert float(dens.sum() * cell) == pytest.approx(1.0, abs=5e-3)
    # probability of the quadrant x > 0, y > 0: density vs samples
    quadrant = float(jnp.sum(jnp.where((xx > 0) & (yy > 0), dens, 0.0)) * cell)
    s = gen.sample(params, jax.random.key(10), jnp.full((20_000, 1), 0.7))
    frac = float(jnp.mean((s[:, 0] > 0) & (s[:, 1] > 0)))
    assert frac == pytest.approx(quadrant, abs=4 * np.sqrt(quadrant * (1 - quadrant) / 20_000) + 2e-3)


def test_identity_outside_the_tail_bound():
    config = SplineFlowConfig(features=1, context=1, n_layers=1, hidden=(8,), tail_bound=2.0)
    params = perturbed(spline_flow(config).init(jax.random.key(11)), jax.random.key(12))
    x = jnp.array([[-5.0], [-2.5], [2.5], [7.0], [0.5]])
    z, log_det = spline_flow_transform(config).forward(params, x, jnp.ones((5, 1)))
    np.testing.assert_allclose(z[:4], x[:4])
    np.testing.assert_allclose(log_det[:4], 0.0)
    assert abs(float(z[4, 0] - x[4, 0])) > 1e-3  # inside the bound the spline acts


def test_context_changes_the_density_and_unconditional_flow_works():
    gen = spline_flow(SPLINE)
    params = perturbed(gen.init(jax.random.key(13)), jax.random.key(14))
    x = jax.random.normal(jax.random.key(15), (6, 3))
    a = gen.log_prob(params, x, jnp.zeros((6, 2)))
    b = gen.log_prob(params, x, jnp.ones((6, 2)))
    assert float(jnp.max(jnp.abs(a - b))) > 1e-2
    unconditional = spline_flow(SPLINE._replace(context=0))
    p0 = unconditional.init(jax.random.key(16))
    s = unconditional.sample(p0, jax.random.key(17), jnp.zeros((6, 0)))
    assert s.shape == (6, 3)
    no_context = unconditional.log_prob(p0, s, jnp.zeros((6, 0)))
    np.testing.assert_allclose(unconditional.log_prob(p0, s), no_context)
    with pytest.raises(ValueError, match="transform"):
        spline_flow(SPLINE._replace(transform="cubic"))


@pytest.mark.slow
def test_training_fits_a_correlated_gaussian():
    """Maximum likelihood on N(0, [[1, .8], [.8, 1]]) data reaches the true mean log-density."""
    cov = jnp.array([[1.0, 0.8], [0.8, 1.0]])
    chol = jnp.linalg.cholesky(cov)
    x = jax.random.normal(jax.random.key(18), (4096, 2)) @ chol.T
    test = jax.random.normal(jax.random.key(19), (4096, 2)) @ chol.T
    gen = spline_flow(SplineFlowConfig(features=2, n_layers=2, hidden=(16, 16), tail_bound=5.0))
    config = TrainConfig(epochs=10, batch_size=128, learning_rate=3e-3)
    params, hist = jax.jit(lambda k, p: fit(k, p, as_loss_fn(gen), {"x": x}, None, config))(
        jax.random.key(20), gen.init(jax.random.key(21))
    )
    true_lp = jax.scipy.stats.multivariate_normal.logpdf(test, jnp.zeros(2), cov)
    gap = float(jnp.mean(true_lp - gen.log_prob(params, test)))  # KL(truth || model) estimate
    assert abs(gap) < 0.03
    assert float(hist.train_loss[-1]) < float(hist.train_loss[0])
