"""Cut-and-count significance (gbijax.inference._cut) against exact answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm, poisson

from gbijax.inference import cut_and_count, on_off_significance


def _profiled_q0(n_on: float, n_off: float, alpha: float) -> float:
    """q0 of the on/off model by brute force: log-likelihoods maximised numerically over b."""
    b = np.linspace(1e-3, 3.0 * (n_on + n_off) + 10.0, 400_001)
    null = np.max(poisson.logpmf(n_on, alpha * b) + poisson.logpmf(n_off, b))
    free = poisson.logpmf(n_on, n_on) + poisson.logpmf(n_off, n_off)  # s_hat = n_on - alpha n_off >= 0
    return 2.0 * (free - null)


@pytest.mark.parametrize("n_on, n_off, alpha", [(15, 50, 0.1), (40, 120, 0.2), (7, 3, 1.0), (120, 400, 0.25)])
def test_on_off_is_the_profile_likelihood_ratio(n_on, n_off, alpha):
    z = float(on_off_significance(float(n_on), float(n_off), alpha))
    assert z == pytest.approx(np.sqrt(_profiled_q0(n_on, n_off, alpha)), rel=1e-4)


def test_on_off_limits():
    # a background measured with no error: the Poisson counting formula
    n, b = 30.0, 12.0
    known = np.sqrt(2 * (n * np.log(n / b) - (n - b)))
    assert float(on_off_significance(n, b * 1e5, 1e-5)) == pytest.approx(known, rel=1e-3)
    # one-sided: no excess, no significance; empty "off" count is finite
    assert float(on_off_significance(5.0, 60.0, 0.1)) == 0.0
    assert float(on_off_significance(3.0, 0.0, 0.1)) == pytest.approx(np.sqrt(6 * np.log(11.0)), rel=1e-5)
    # a larger background sample at the same expectation is worth more
    assert on_off_significance(20.0, 100.0, 0.1) < on_off_significance(20.0, 1000.0, 0.01)


def test_cut_keeps_eps_b_of_the_background_and_ignores_zero_weights():
    key_d, key_b = jax.random.split(jax.random.key(0))
    data, bkg = jax.random.normal(key_d, (3000,)), jax.random.normal(key_b, (12000,))
    res = cut_and_count(data, bkg, 0.01)
    assert float(res.n_off) == 120.0 and float(res.alpha) == 0.25 and float(res.expected) == 30.0
    assert float(res.threshold) == pytest.approx(norm.ppf(0.99), abs=0.08)
    # padding with zero-weight events changes nothing
    pad_d = jnp.concatenate([data, jnp.full(500, 9.0)])
    pad_b = jnp.concatenate([bkg, jnp.full(700, 9.0)])
    padded = cut_and_count(pad_d, pad_b, 0.01, jnp.arange(3500) < 3000, jnp.arange(12700) < 12000)
    for a, b in zip(res, padded, strict=True):
        assert float(a) == pytest.approx(float(b))


def test_cut_and_count_has_its_nominal_false_positive_rate():
    # background only: data and background sample from one distribution, b = 50 expected above the cut
    def one(key):
        k_d, k_b = jax.random.split(key)
        return cut_and_count(jax.random.normal(k_d, (5000,)), jax.random.normal(k_b, (20000,)), 0.01).z

    z = np.asarray(jax.vmap(one)(jax.random.split(jax.random.key(1), 4000)))
    assert np.mean(z >= 2.0) == pytest.approx(norm.sf(2.0), abs=0.008)  # 0.0228, binomial error 0.0024
    assert np.mean(z == 0.0) == pytest.approx(0.5, abs=0.05)  # half the time no excess


def test_cut_and_count_finds_a_signal():
    k_d, k_s, k_b = jax.random.split(jax.random.key(2), 3)
    data = jnp.concatenate([jax.random.normal(k_d, (5000,)), 4.0 + 0.3 * jax.random.normal(k_s, (40,))])
    res = cut_and_count(data, jax.random.normal(k_b, (20000,)), 1e-3)
    assert float(res.n_on) >= 40 and float(res.expected) == pytest.approx(5.04, rel=1e-6) and float(res.z) > 8
