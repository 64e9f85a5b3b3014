"""Conditional flow matching linear fields, the optimal Gaussian field, normalisation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

from gbijax.generators import (
    FlowMatchingConfig,
    as_loss_fn,
    flow_matching,
    flow_matching_loss,
    ode_log_prob,
    ode_sample,
    velocity_network,
)
from gbijax.train import TrainConfig, fit

# x ~ N(m + c, s^2) per feature, c the (scalar) context
M = jnp.array([1.0, -0.5])
S = jnp.array([0.5, 2.0])


def optimal_velocity(x, t, c):
    """v*(x_t, t) = E[x - z | x_t] for x ~ N(mean, s^2): linear in x_t."""
    mean = M + c[0]
    var_t = (1 - t) ** 2 + t**2 * S**2
    return mean + (t * S**2 - (1 - t)) / var_t * (x - t * mean)


def minimal_loss():
    """E || v* - (x - z) ||^2 = int_0^1 sum_d [Var(x - z) - Cov(x - z, x_t)^2 / Var(x_t)] dt."""
    t = np.linspace(0.0, 1.0, 20001)[:, None]
    s2 = np.asarray(S) ** 2
    integrand = (s2 + 1) - (t * s2 - (1 - t)) ** 2 / ((1 - t) ** 2 + t**2 * s2)
    return float(np.trapezoid(integrand.sum(-1), t[:, 0]))


@pytest.mark.parametrize(
    "solver, steps, rtol", [("rk4", 8, 1e-5), ("midpoint", 64, 1e-3), ("euler", 512, 2e-3)]
)
def test_linear_field_is_exact(solver, steps, rtol):
    a, d = 0.7, 3
    v = lambda x, t, c: a * x
    z = jax.random.normal(jax.random.key(0), (5, d))
    ctx = jnp.zeros((5, 0))
    np.testing.assert_allclose(ode_sample(v, z, ctx, steps, solver), z * math.exp(a), rtol=rtol)
    x = z * math.exp(a)
    exact = norm.logpdf(z).sum(-1) - a * d  # log N(x e^-a) - log|det| with det = e^(a d)
    np.testing.assert_allclose(ode_log_prob(v, x, ctx, steps, solver), exact, rtol=rtol, atol=rtol)


def test_time_dependent_field_is_exact():
    """v = 2 t x: x(1) = x(0) e, log p = log N(x / e) - D (int_0^1 2t dt = 1)."""
    v = lambda x, t, c: 2 * t * x
    z = jax.random.normal(jax.random.key(1), (4, 2))
    ctx = jnp.zeros((4, 0))
    np.testing.assert_allclose(ode_sample(v, z, ctx, 16), z * math.e, rtol=1e-5)
    np.testing.assert_allclose(ode_log_prob(v, z * math.e, ctx, 16), norm.logpdf(z).sum(-1) - 2, rtol=1e-5)


def test_optimal_gaussian_field_transports_noise_to_data():
    """The flow of v* maps z to mean + s z, and its density is the data's Gaussian."""
    n = 6
    z = jax.random.normal(jax.random.key(2), (n, 2))
    ctx = jnp.linspace(-1, 1, n)[:, None]
    x = ode_sample(optimal_velocity, z, ctx, 16)
    np.testing.assert_allclose(x, M + ctx + S * z, rtol=1e-4, atol=1e-4)
    exact = norm.logpdf(x, M + ctx, S).sum(-1)
    np.testing.assert_allclose(ode_log_prob(optimal_velocity, x, ctx, 16), exact, rtol=1e-4, atol=1e-4)


def test_optimal_field_minimises_the_loss():
    n = 200_000
    ctx = jax.random.uniform(jax.random.key(3), (n, 1), minval=-1, maxval=1)
    x = M + ctx + S * jax.random.normal(jax.random.key(4), (n, 2))
    key = jax.random.key(5)  # the same z and t for every field: differences are exact up to noise
    loss = lambda v: float(jnp.mean(flow_matching_loss(v, key, x, ctx)))
    best = loss(optimal_velocity)
    assert best == pytest.approx(minimal_loss(), rel=0.01)
    for delta in (0.05, 0.2):  # E[loss(v* + delta)] - E[loss(v*)] = D delta^2 exactly
        shifted = loss(lambda x_, t, c, delta=delta: optimal_velocity(x_, t, c) + delta)
        assert shifted - best == pytest.approx(2 * delta**2, rel=0.1)
    assert loss(lambda x_, t, c: 1.1 * optimal_velocity(x_, t, c)) > best
    assert loss(lambda x_, t, c: optimal_velocity(x_, t + 0.05, c)) > best


CFG2 = FlowMatchingConfig(features=2, context=1, hidden=(16, 16), ode_steps=8)
GEN2, GEN2_NET = flow_matching(CFG2), velocity_network(CFG2)


def test_network_density_is_normalised_and_matches_samples():
    params = GEN2.init(jax.random.key(6))
    grid = jnp.linspace(-7.0, 7.0, 101)
    xx, yy = jnp.meshgrid(grid, grid, indexing="ij")
    pts = jnp.stack([xx.ravel(), yy.ravel()], -1)
    ctx = jnp.full((len(pts), 1), 0.5)
    dens = jnp.exp(GEN2.log_prob(params, pts, ctx)).reshape(xx.shape)
    cell = (grid[1] - grid[0]) ** 2
    assert float(dens.sum() * cell) == pytest.approx(1.0, abs=0.01)
    mean_grid = (dens[..., None] * jnp.stack([xx, yy], -1)).sum((0, 1)) * cell
    samples = GEN2.sample(params, jax.random.key(7), jnp.full((4000, 1), 0.5))
    four_sigma = 4 * float(samples.std(0).max()) / math.sqrt(4000)
    np.testing.assert_allclose(samples.mean(0), mean_grid, atol=four_sigma)


def test_context_changes_the_density_and_log_prob_is_jittable():
    params = GEN2.init(jax.random.key(8))
    x = jax.random.normal(jax.random.key(9), (5, 2))
    lp = jax.jit(GEN2.log_prob)
    a, b = lp(params, x, jnp.zeros((5, 1))), lp(params, x, jnp.ones((5, 1)))
    assert a.shape == (5,) and bool(jnp.all(jnp.isfinite(a)))
    assert float(jnp.max(jnp.abs(a - b))) > 1e-3


def test_step_count_is_a_tolerance_knob():
    x = jax.random.normal(jax.random.key(11), (5, 2))
    ctx = jnp.zeros((5, 1))

    @jax.jit
    def log_probs(params):
        v = lambda x_, t, c: GEN2_NET.apply(params, x_, t, c)
        return [ode_log_prob(v, x, ctx, n) for n in (2, 8, 32)]

    params = GEN2.init(jax.random.key(10))
    coarse, default, fine = log_probs(params)
    errors = [float(jnp.max(jnp.abs(lp - fine))) for lp in (coarse, default)]
    assert errors[1] < errors[0] / 8 and errors[1] < 0.01  # RK4: error ~ steps^-4
    np.testing.assert_allclose(GEN2.log_prob(params, x, ctx), default, rtol=1e-6)  # the generator's 8 steps


def test_unconditional_and_invalid_settings():
    gen = flow_matching(FlowMatchingConfig(features=1, hidden=(8,), ode_steps=2))
    params = gen.init(jax.random.key(12))
    x = gen.sample(params, jax.random.key(13), jnp.zeros((3, 0)))
    assert x.shape == (3, 1)
    np.testing.assert_allclose(gen.log_prob(params, x), gen.log_prob(params, x, jnp.zeros((3, 0))))
    with pytest.raises(ValueError, match="solver"):
        flow_matching(FlowMatchingConfig(features=1, solver="dopri5"))


@pytest.mark.slow
def test_training_learns_a_conditional_gaussian():
    """x | c ~ N(c, 0.5^2): the trained model's samples and density match the truth."""
    n = 8192
    ctx = jax.random.uniform(jax.random.key(14), (n, 1), minval=-1, maxval=1)
    x = ctx + 0.5 * jax.random.normal(jax.random.key(15), (n, 1))
    gen = flow_matching(FlowMatchingConfig(features=1, context=1, hidden=(64, 64), ode_steps=8))
    config = TrainConfig(epochs=60, batch_size=256, learning_rate=3e-3, schedule="cosine")
    params, _ = jax.jit(lambda k, p: fit(k, p, as_loss_fn(gen), {"x": x, "context": ctx}, None, config))(
        jax.random.key(16), gen.init(jax.random.key(17))
    )
    c = jnp.repeat(jnp.array([-0.8, 0.8]), 2000)[:, None]
    s = gen.sample(params, jax.random.key(18), c).reshape(2, 2000)
    np.testing.assert_allclose(s.mean(1), [-0.8, 0.8], atol=0.05)
    np.testing.assert_allclose(s.std(1), [0.5, 0.5], atol=0.05)
    truth = c + 0.5 * jax.random.normal(jax.random.key(19), c.shape)  # KL(truth || model) from the gap
    kl = jnp.mean(norm.logpdf(truth[:, 0], c[:, 0], 0.5) - gen.log_prob(params, truth, c))
    assert abs(float(kl)) < 0.01
