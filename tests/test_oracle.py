"""The exact-likelihood oracle on the analytic toy: recovery, coverage, no false signal, joint mass fit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gbijax.data import DEFAULT_SR, toy
from gbijax.inference import (
    MASS_BOUNDS,
    fit_mixture,
    mixture_asimov_discovery,
    oracle_fit,
    oracle_joint_fit,
    oracle_log_ratio,
)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


N_EVENTS, N_EXPERIMENTS, MU_SIGNAL = 2000, 200, 0.03


@pytest.fixture(scope="module")
def ensemble():
    """200 pseudo-experiments of 2000 SR events at mu = 3% and 200 with no signal, fitted in one vmap.

    One large draw of iid mixture events is cut into experiments (cheaper to compile than a vmapped
    sampler); the no-signal experiments are made of background events only. The signal ensemble
    is fitted with ``mu_min = -1`` (the unbounded MLE, for coverage and bias), the no-signal one
    with the physical ``mu_min = 0``.
    """
    n_total = 2 * N_EXPERIMENTS * N_EVENTS
    with jax.enable_x64(True):
        x, is_signal = (np.asarray(a) for a in toy.mixture_sample(jax.random.key(2), 2**20, MU_SIGNAL,
                                                                 region=DEFAULT_SR))  # fmt: skip
        half = n_total // 2
        background = x[half:][is_signal[half:] == 0][:half]
        x = np.concatenate([x[:half], background]).reshape(2 * N_EXPERIMENTS, N_EVENTS, 5)
        is_signal = np.concatenate([is_signal[:half], np.zeros(half, is_signal.dtype)])
        mu_mins = jnp.repeat(jnp.array([-1.0, 0.0]), N_EXPERIMENTS)

        @jax.jit
        @jax.vmap
        def run(x, mu_min):
            return oracle_log_ratio(x), oracle_fit(x, mu_min=mu_min)

        log_r, fits = jax.tree.map(np.asarray, run(x, mu_mins))
    is_signal = is_signal.reshape(2 * N_EXPERIMENTS, N_EVENTS)
    half = lambda a, k: a[k * N_EXPERIMENTS:(k + 1) * N_EXPERIMENTS]
    return {name: jax.tree.map(lambda a, k=k: half(a, k), (x, is_signal, log_r, fits))
            for k, name in enumerate(["signal", "null"])}  # fmt: skip


def test_oracle_log_ratio_is_the_exact_density_ratio(x64, ensemble):
    x = np.array(ensemble["signal"][0][0])
    x[:300, 0] = np.linspace(2.6, 5.0, 300)  # move some events out of the signal region
    inside = np.asarray(DEFAULT_SR.contains(x[:, 0]))
    assert 0 < inside.sum() < len(inside)
    for params in (toy.DEFAULT_SIGNAL, toy.SignalParams(0.2, 0.3)):
        log_r = np.asarray(oracle_log_ratio(x, params))
        expected = toy.signal_log_prob(x, params, DEFAULT_SR) - toy.background_log_prob(x, DEFAULT_SR)
        np.testing.assert_allclose(log_r[inside], np.asarray(expected)[inside], rtol=1e-12)
        assert (log_r[~inside] == 0).all()  # outside the region: log(1 + mu (1 - 1)) = 0, no contribution


def _coverage(interval, mu):
    return float(np.mean((interval.lo <= mu) & (mu <= interval.hi)))


def test_oracle_recovers_mu_on_a_large_sample(x64, ensemble):
    """400k SR events at mu = 3% (the signal ensemble pooled): |mu_hat - mu| < 3 sigma."""
    fit = fit_mixture(ensemble["signal"][2].reshape(-1))  # the oracle fit of the pooled events
    sigma = 0.5 * float(fit.interval_68.hi - fit.interval_68.lo)
    assert 0 < sigma < 0.002
    assert abs(float(fit.mu_hat) - MU_SIGNAL) < 3 * sigma
    width_ratio = float(fit.interval_95.hi - fit.interval_95.lo) / (2 * sigma)
    assert width_ratio == pytest.approx(1.96, rel=0.03)  # near-Gaussian likelihood at this size
    assert float(fit.z) > 20 and float(fit.p_value) < 1e-50
    assert float(fit.q0) == pytest.approx(float(fit.z) ** 2, rel=1e-12)


def test_oracle_coverage_and_asimov_significance(x64, ensemble):
    """Vmapped pseudo-experiments at mu = 3%: calibrated, unbiased, median Z ~ the Asimov Z."""
    _, is_signal, log_r, fits = ensemble["signal"]
    assert _coverage(fits.interval_68, MU_SIGNAL) == pytest.approx(0.68, abs=0.08)
    assert _coverage(fits.interval_95, MU_SIGNAL) == pytest.approx(0.95, abs=0.04)
    assert abs(fits.mu_hat.mean() - MU_SIGNAL) < 3 * fits.mu_hat.std() / np.sqrt(N_EXPERIMENTS)
    half_width = np.median(fits.interval_68.hi - fits.interval_68.lo) / 2
    assert fits.mu_hat.std() == pytest.approx(half_width, rel=0.15)  # the spread matches the intervals
    asimov = mixture_asimov_discovery(MU_SIGNAL, N_EVENTS, log_r[is_signal == 1], log_r[is_signal == 0])
    assert np.median(fits.z) == pytest.approx(float(asimov.z), rel=0.1)


def test_oracle_no_false_signal(ensemble):
    """No signal, physical fit (mu >= 0): the 95% interval contains 0 and Z < 2 in at least 95%."""
    fits = ensemble["null"][3]
    assert _coverage(fits.interval_95, 0.0) >= 0.95
    assert np.mean(fits.z < 2) >= 0.95
    assert np.mean(fits.mu_hat == 0) > 0.4  # asymptotically half; more here: r is very skewed under p_B
    assert np.all(fits.interval_95.lo_at_edge == (fits.interval_95.lo == 0))


@pytest.mark.slow
def test_oracle_joint_fit_recovers_masses(x64):
    """(mu, m_x, m_y) from 10k SR events with 8% signal at an off-grid mass point."""
    truth, mu = toy.SignalParams(0.42, 0.13), 0.08
    x, _ = toy.mixture_sample(jax.random.key(5), 10_000, mu, truth, region=DEFAULT_SR)
    fit = oracle_joint_fit(x, n_profile=9)
    assert float(fit.params.m_x) >= float(fit.params.m_y)
    sd_mu, sd_x, sd_y = (float(s) for s in fit.std)
    assert 0 < sd_x < 0.005 and 0 < sd_y < 0.005  # masses to a few GeV
    assert abs(float(fit.params.m_x) - truth.m_x) < 3 * sd_x
    assert abs(float(fit.params.m_y) - truth.m_y) < 3 * sd_y
    assert abs(float(fit.mu_hat) - mu) < 3 * sd_mu
    for interval, hat, sd in [(fit.mu_interval, fit.mu_hat, sd_mu), (fit.m_x_interval, fit.params.m_x, sd_x),
                              (fit.m_y_interval, fit.params.m_y, sd_y)]:  # fmt: skip
        assert float(interval.lo) < float(hat) < float(interval.hi)
        assert not bool(interval.lo_at_edge) and not bool(interval.hi_at_edge)
        assert float(interval.hi - interval.lo) == pytest.approx(2 * sd, rel=0.2)  # profile ~ Hessian
    assert float(fit.z) > 10 and float(fit.q0) == pytest.approx(2 * float(fit.log_likelihood_max), rel=1e-12)
    # the fitted point is the maximum: profiling mu at the fitted masses gives the same mu_hat and L
    at_masses = oracle_fit(x, params=fit.params)
    assert float(at_masses.mu_hat) == pytest.approx(float(fit.mu_hat), abs=1e-3 * sd_mu)
    assert float(at_masses.log_likelihood_max) == pytest.approx(float(fit.log_likelihood_max), abs=1e-6)
    # the coarse mass-grid profile is symmetric and peaks next to the truth
    grid = np.asarray(fit.grid_log_likelihood)
    np.testing.assert_array_equal(grid, grid.T)
    i, j = np.unravel_index(np.argmax(np.tril(grid) + np.triu(np.full_like(grid, -np.inf), 1)), grid.shape)
    assert abs(toy.MASS_GRID[i] - truth.m_x) <= 0.05 and abs(toy.MASS_GRID[j] - truth.m_y) <= 0.05
    assert MASS_BOUNDS == (min(toy.MASS_GRID), max(toy.MASS_GRID))
