"""The statistics core against exact answers: chi2 quantiles, Gaussian and Poisson closed forms."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gbijax.inference import (
    CL68,
    CL95,
    asimov_discovery,
    asimov_significance,
    bootstrap,
    discovery,
    fisher_uncertainty,
    fit_mixture,
    likelihood_scale,
    maximize_mixture,
    mixture_interval,
    mixture_log_likelihood,
    poisson_weights,
    profile_scan,
    scan_log_likelihood,
    wilks_threshold,
)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("cl", [CL68, CL95, 0.99])
@pytest.mark.parametrize("n_params", [1, 2, 3])
def test_wilks_threshold_is_the_chi2_quantile(x64, cl, n_params):
    assert float(wilks_threshold(cl, n_params)) == pytest.approx(stats.chi2.ppf(cl, n_params), rel=1e-10)


def test_wilks_threshold_named_values():
    assert float(wilks_threshold(CL68)) == pytest.approx(1.0, abs=1e-5)
    assert float(wilks_threshold(CL95)) == pytest.approx(3.8415, abs=1e-4)
    assert float(wilks_threshold(CL68, 2)) == pytest.approx(2.2957, abs=1e-4)
    assert float(wilks_threshold(CL95, 2)) == pytest.approx(5.9915, abs=1e-4)
    # the reference code's "95%" (Delta log L = ln 2) is a 76% interval
    assert float(wilks_threshold(0.7610)) == pytest.approx(2 * math.log(2), abs=2e-3)


def _gaussian_data(seed=0, n=50, mean=1.3):
    return mean + np.random.default_rng(seed).normal(size=n)


@pytest.mark.parametrize("cl, z", [(CL68, 1.0), (CL95, 1.959963984540054)])
def test_profile_scan_gaussian_is_exact(x64, cl, z):
    x = jnp.asarray(_gaussian_data())
    n, mean = x.shape[0], float(x.mean())
    grid = jnp.linspace(mean - 4.3 / math.sqrt(n), mean + 3.1 / math.sqrt(n), 23)  # off-centre, coarse
    log_l = scan_log_likelihood(lambda t: -0.5 * jnp.sum((x - t) ** 2), grid)
    res = profile_scan(grid, log_l, wilks_threshold(cl))
    assert float(res.hat) == pytest.approx(mean, abs=1e-10)
    assert float(res.lo) == pytest.approx(mean - z / math.sqrt(n), abs=1e-10)
    assert float(res.hi) == pytest.approx(mean + z / math.sqrt(n), abs=1e-10)
    assert not bool(res.lo_at_edge) and not bool(res.hi_at_edge)
    assert float(res.log_likelihood_max) == pytest.approx(-0.5 * float(jnp.sum((x - mean) ** 2)), abs=1e-9)


def test_scan_log_likelihood_is_vmap():
    grid = jnp.array([0.0, 0.5, 2.0])
    np.testing.assert_allclose(scan_log_likelihood(lambda t: jnp.sin(t) * 3, grid), jnp.sin(grid) * 3)


def test_profile_scan_flags_edges():
    grid = jnp.linspace(0.0, 1.0, 11)
    res = profile_scan(grid, -0.5 * ((grid - 0.05) / 0.2) ** 2)  # lower crossing below the grid
    assert bool(res.lo_at_edge) and float(res.lo) == 0.0
    assert float(res.hat) == pytest.approx(0.05, abs=1e-6)  # refined from the edge point
    assert not bool(res.hi_at_edge) and float(res.hi) == pytest.approx(0.25, abs=1e-5)
    res = profile_scan(grid, -grid)  # maximum on the edge: no refinement, interval [0, 0.5]
    assert float(res.hat) == 0.0 and bool(res.lo_at_edge)
    assert float(res.hi) == pytest.approx(0.5, abs=1e-5)
    res = profile_scan(grid, jnp.zeros(11))  # flat: both ends at the edges
    assert bool(res.lo_at_edge) and bool(res.hi_at_edge)


def test_profile_scan_treats_nan_as_minus_infinity():
    grid = jnp.linspace(-2.0, 2.0, 41)
    log_l = jnp.where(grid < -1.5, jnp.nan, -0.5 * grid**2)
    res = profile_scan(grid, log_l, 1.0)
    assert float(res.lo) == pytest.approx(-1.0, abs=1e-5) and float(res.hi) == pytest.approx(1.0, abs=1e-5)


def test_vmapped_scans_equal_looped_scans(x64):
    grid = jnp.linspace(-1.0, 3.0, 61)
    data = jnp.asarray(np.stack([_gaussian_data(seed, n=20) for seed in range(16)]))
    log_l = -0.5 * jnp.sum((data[:, None, :] - grid[None, :, None]) ** 2, -1)
    batched = jax.vmap(profile_scan, in_axes=(None, 0, None))(grid, log_l, 3.84)
    for i in (0, 5, 15):
        single = profile_scan(grid, log_l[i], 3.84)
        for b, s in zip(batched, single, strict=True):
            assert float(b[i]) == pytest.approx(float(s), abs=1e-12)


@pytest.mark.parametrize("n, b", [(15, 5.0), (120, 100.0), (3, 0.5), (4, 10.0)])
def test_poisson_counting_q0(x64, n, b):
    """``q0 = 2 (n ln(n / b) - (n - b))`` for ``n > b``, else 0, from the fitted likelihood."""
    log_l = lambda s: n * jnp.log(s + b) - (s + b)
    grid = jnp.linspace(-b + 0.05, 3.0 * n, 4001)
    scan = profile_scan(grid, scan_log_likelihood(log_l, grid))
    assert float(scan.hat) == pytest.approx(n - b, abs=1e-3)
    res = discovery(log_l(jnp.asarray(n - b)), log_l(jnp.asarray(0.0)), n - b)
    expected = 2 * (n * math.log(n / b) - (n - b)) if n > b else 0.0
    assert float(res.q0) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert float(res.z) == pytest.approx(math.sqrt(expected), rel=1e-12)
    assert float(res.p_value) == pytest.approx(stats.norm.sf(math.sqrt(expected)), rel=1e-9)


def test_asimov_counting_significance(x64):
    for s, b in [(5.0, 1.0), (10.0, 100.0), (50.0, 20.0)]:
        log_l = lambda m, s=s, b=b: (s + b) * jnp.log(m * s + b) - (m * s + b)
        z_a = asimov_discovery(log_l, 1.0).z
        assert float(asimov_significance(s, b)) == pytest.approx(float(z_a), rel=1e-12)
    assert float(asimov_significance(1.0, 1e6)) == pytest.approx(1e-3, rel=1e-5)  # s / sqrt(b)


def test_fisher_uncertainty_gaussian(x64):
    sigma, n = 2.0, 400
    x = jnp.asarray(5.0 + sigma * np.random.default_rng(1).normal(size=n))
    nll = lambda t: 0.5 * jnp.sum((x - t) ** 2) / sigma**2
    res = fisher_uncertainty(nll, x.mean())
    assert float(res.std) == pytest.approx(sigma / math.sqrt(n), rel=1e-12)
    # two parameters as a pytree: at the MLE, var(mean) = s^2 / n, var(s) = s^2 / (2 n), no correlation
    mean, s_hat = x.mean(), jnp.sqrt(jnp.mean((x - x.mean()) ** 2))
    nll2 = lambda p: n * jnp.log(p["sigma"]) + 0.5 * jnp.sum((x - p["mean"]) ** 2) / p["sigma"] ** 2
    res2 = fisher_uncertainty(nll2, {"mean": mean, "sigma": s_hat})
    assert float(res2.std["mean"]) == pytest.approx(float(s_hat) / math.sqrt(n), rel=1e-10)
    assert float(res2.std["sigma"]) == pytest.approx(float(s_hat) / math.sqrt(2 * n), rel=1e-10)
    assert float(res2.covariance[0, 1]) == pytest.approx(0.0, abs=1e-14)
    np.testing.assert_allclose(res2.information @ res2.covariance, np.eye(2), atol=1e-12)


def test_poisson_weights_and_bootstrap(x64):
    x = jnp.asarray(np.random.default_rng(2).normal(size=400))
    mean = lambda w: jnp.sum(w * x) / jnp.sum(w)
    values = bootstrap(jax.random.key(3), mean, 400, n_replicas=400)
    assert values.shape == (400,)
    assert float(values.std()) == pytest.approx(float(x.std()) / math.sqrt(400), rel=0.15)
    # replica k uses the k-th split key: poisson_weights and the batched path give the same replicas
    w = poisson_weights(jax.random.key(3), 400, 400)
    assert w.shape == (400, 400) and bool((w == jnp.round(w)).all()) and bool((w >= 0).all())
    assert float(w.mean()) == pytest.approx(1.0, abs=0.02) and float(w.var()) == pytest.approx(1.0, abs=0.03)
    np.testing.assert_allclose(jax.vmap(mean)(w), values, rtol=1e-12)
    batched = bootstrap(jax.random.key(3), mean, 400, 400, weight=jnp.full(400, 2.0), batch_size=100)
    np.testing.assert_allclose(batched, values, rtol=1e-12)  # a constant base weight cancels in the mean


def test_mixture_log_likelihood_matches_direct_formula(x64):
    log_r = jnp.asarray(np.random.default_rng(3).normal(scale=3.0, size=400))
    for mu in [0.0, 1e-4, 0.3, 1.0, -1e-5]:
        direct = jnp.sum(jnp.log1p(mu * jnp.expm1(log_r)))
        assert float(mixture_log_likelihood(mu, log_r)) == pytest.approx(float(direct), rel=1e-12, abs=1e-14)
    assert float(mixture_log_likelihood(-0.01, log_r)) == -math.inf  # 1 + mu (r_max - 1) < 0
    w = jnp.asarray(np.random.default_rng(4).poisson(1.0, size=400), jnp.float64)
    direct = jnp.sum(w * jnp.log1p(0.2 * jnp.expm1(log_r)))
    assert float(mixture_log_likelihood(0.2, log_r, w)) == pytest.approx(float(direct), rel=1e-12)


def test_mixture_log_likelihood_extremes():
    big = jnp.array([1000.0, -1000.0, 0.0])
    expected = 1000 + math.log(0.01) + math.log(0.99)
    assert float(mixture_log_likelihood(0.01, big)) == pytest.approx(expected, rel=1e-6)
    assert float(mixture_log_likelihood(0.0, big)) == 0.0
    assert float(mixture_log_likelihood(-0.01, big)) == -math.inf  # outside the domain 1 + mu (r - 1) > 0
    # zero-weight entries are ignored even when they are not finite
    bad = jnp.array([jnp.nan, jnp.inf, 1.0])
    assert float(mixture_log_likelihood(0.5, bad, jnp.array([0.0, 0.0, 1.0]))) == pytest.approx(
        math.log(1 + 0.5 * (math.e - 1)), rel=1e-6
    )
    g = jax.grad(mixture_log_likelihood)(0.3, big)
    assert bool(jnp.isfinite(g))


def test_a_nan_log_ratio_spoils_the_fit_instead_of_being_dropped():
    log_r = jnp.log(jnp.array([4.0, 4.0, 0.5, 0.5, 0.5, 0.5, 1.0]))
    fit = fit_mixture(log_r.at[6].set(jnp.nan))
    spoiled = (fit.mu_hat, fit.interval_95.lo, fit.interval_95.hi, fit.q0, fit.z)
    assert all(bool(jnp.isnan(v)) for v in spoiled)
    assert bool(jnp.isnan(mixture_log_likelihood(0.2, log_r.at[6].set(jnp.nan))))
    # with zero weight the entry is ignored: the fit of the six other events (mu_hat = 4/9)
    ignored = fit_mixture(log_r.at[6].set(jnp.nan), jnp.array([1.0] * 6 + [0.0]))
    assert float(ignored.mu_hat) == pytest.approx(4 / 9, rel=1e-5)


def _log_ratios(seed, n=400, mu=0.1):
    """Log-ratios of a 1-D Gaussian shift model, events drawn from the mixture."""
    rng = np.random.default_rng(seed)
    x = np.where(rng.uniform(size=n) < mu, rng.normal(2.0, 1.0, n), rng.normal(0.0, 1.0, n))
    return jnp.asarray(2.0 * x - 2.0)  # log N(x; 2, 1) - log N(x; 0, 1)


ONES = np.ones(400)
_dense_scan = jax.jit(jax.vmap(mixture_log_likelihood, in_axes=(0, None)))


@pytest.mark.parametrize("seed, mu_min", [(0, 0.0), (0, -0.5), (1, -0.5), (2, 0.0), (3, -0.5)])
def test_mixture_maximiser_equals_dense_grid_argmax(x64, seed, mu_min):
    log_r = _log_ratios(seed, mu=[0.0, 0.05, 0.2, 0.6][seed])
    mu_hat, l_max = maximize_mixture(log_r, mu_min=mu_min)
    grid = jnp.linspace(mu_min, 1.0, 30_001)
    log_l = _dense_scan(grid, log_r)
    best = int(jnp.argmax(log_l))
    assert abs(float(mu_hat) - float(grid[best])) <= float(grid[1] - grid[0])
    assert float(l_max) >= float(log_l[best]) - 1e-12
    assert float(l_max) == pytest.approx(float(mixture_log_likelihood(mu_hat, log_r)), rel=1e-14)


def _padded(values, n=400):
    """Log-ratios padded with zeros: events with r = 1 do not change the mixture likelihood."""
    return jnp.zeros(n).at[: len(values)].set(jnp.asarray(values))


def test_mixture_maximiser_bounds(x64):
    log_r = _padded([-1.0, -2.0, 0.5, -0.3])  # score at 0 is negative: mu_hat on the lower bound
    assert float(maximize_mixture(log_r)[0]) == 0.0
    assert float(maximize_mixture(log_r, mu_min=-0.2)[0]) == -0.2
    # unbounded below: the search stops just inside the pole mu = -1 / (r_max - 1)
    pole = -1.0 / math.expm1(0.5)
    mu_hat = float(maximize_mixture(log_r, mu_min=-100.0)[0])
    assert pole < mu_hat < 0
    assert float(maximize_mixture(_padded([3.0, 5.0]))[0]) == 1.0  # all signal-like: mu_hat = 1
    assert float(maximize_mixture(_padded([3.0, 5.0]), mu_max=0.5)[0]) == 0.5


def test_mixture_intervals_are_the_wilks_crossings(x64):
    log_r = _log_ratios(7, mu=0.15)
    fit = fit_mixture(log_r, ONES, mu_min=-1.0)  # same signature as in the other tests: one compilation
    grid = jnp.linspace(-0.2, 0.8, 30_001)
    log_l = _dense_scan(grid, log_r)
    for res, cl in [(fit.interval_68, CL68), (fit.interval_95, CL95)]:
        threshold = float(wilks_threshold(cl))
        l_hat = mixture_log_likelihood(res.hat, log_r)
        for end in (res.lo, res.hi):
            excess = -2 * (mixture_log_likelihood(end, log_r) - l_hat)
            assert float(excess) == pytest.approx(threshold, abs=1e-9)
        assert not bool(res.lo_at_edge) and not bool(res.hi_at_edge)
        scan = profile_scan(grid, log_l, threshold)
        for a, b in [(res.lo, scan.lo), (res.hat, scan.hat), (res.hi, scan.hi)]:
            assert float(a) == pytest.approx(float(b), abs=1e-6)
    single = mixture_interval(log_r, threshold=3.5, mu_min=-1.0)
    assert fit.interval_68.hi < single.hi < fit.interval_95.hi and float(single.hat) == float(fit.mu_hat)


def test_extra_variance_adds_in_quadrature(x64):
    log_r = _log_ratios(7, mu=0.15)
    raw = fit_mixture(log_r, ONES, mu_min=-1.0)
    q = np.expm1(np.asarray(log_r)) / (1 + float(raw.mu_hat) * np.expm1(np.asarray(log_r)))
    information = float(np.sum(q * q))  # -L''(mu_hat)
    extra = 3.0 / information  # three times the statistical variance: the errors double
    fit = fit_mixture(log_r, ONES, mu_min=-1.0, extra_variance=extra)
    scale = float(likelihood_scale(information, extra))
    assert scale == pytest.approx(0.25, rel=1e-12)
    assert float(fit.mu_hat) == float(raw.mu_hat) and float(fit.q0) == float(raw.q0)  # the test of mu = 0
    for res, cl in [(fit.interval_68, CL68), (fit.interval_95, CL95)]:
        wilks = mixture_interval(log_r, threshold=float(wilks_threshold(cl)) / scale, mu_min=-1.0)
        assert float(res.lo) == pytest.approx(float(wilks.lo), abs=1e-9)
        assert float(res.hi) == pytest.approx(float(wilks.hi), abs=1e-9)
    # close to Gaussian: the 68% half-width is sqrt(sigma_stat^2 + extra) = 2 sigma_stat
    ratio = (fit.interval_68.hi - fit.interval_68.lo) / (raw.interval_68.hi - raw.interval_68.lo)
    assert float(ratio) == pytest.approx(2.0, rel=0.05)
    assert float(fit_mixture(log_r, ONES, mu_min=-1.0, extra_variance=0.0).interval_68.hi) == float(
        raw.interval_68.hi)


def test_mixture_interval_flags_the_physical_boundary(x64):
    log_r = _log_ratios(0, mu=0.0)
    fit = fit_mixture(log_r, ONES, mu_min=0.0)
    assert float(fit.interval_95.lo) == 0.0 and bool(fit.interval_95.lo_at_edge)
    if float(fit.mu_hat) == 0.0:
        assert bool(fit.interval_68.lo_at_edge) and float(fit.q0) == 0.0 and float(fit.p_value) == 0.5


def test_fit_mixture_discovery_and_vmap(x64):
    data = jnp.stack([_log_ratios(seed) for seed in range(8)])
    weight = jnp.asarray(np.random.default_rng(0).poisson(1.0, size=data.shape), jnp.float64)
    batched = jax.vmap(lambda log_r, w: fit_mixture(log_r, w, mu_min=-1.0))(data, weight)
    for i in (0, 3, 7):
        single = fit_mixture(data[i], weight[i], mu_min=-1.0)
        for b, s in zip(jax.tree.leaves(batched), jax.tree.leaves(single), strict=True):
            assert float(b[i]) == pytest.approx(float(s), rel=1e-12, abs=1e-14)
        l_hat = mixture_log_likelihood(single.mu_hat, data[i], weight[i])
        q0 = 2 * float(l_hat) if float(single.mu_hat) > 0 else 0.0
        assert float(single.q0) == pytest.approx(q0, rel=1e-12, abs=1e-14)
        assert float(single.z) == pytest.approx(math.sqrt(q0), rel=1e-12, abs=1e-14)
        assert single.interval_95.lo <= single.interval_68.lo < single.mu_hat < single.interval_68.hi
        assert single.interval_68.hi <= single.interval_95.hi


def test_fit_mixture_survives_overflowing_ratios_in_float32():
    # two events with r = e^250 and e^120 overflow float32; the fit must still be finite and exact
    rng = np.random.default_rng(0)
    log_r = jnp.asarray(np.concatenate([[250.0, 120.0], rng.normal(-1.0, 1.0, 4000)]), jnp.float32)
    fit = fit_mixture(log_r)
    assert np.isfinite(float(fit.mu_hat)) and float(fit.mu_hat) > 0
    grid = jnp.linspace(1e-5, 0.01, 20001)
    brute = grid[jnp.argmax(jax.vmap(lambda m: mixture_log_likelihood(m, log_r))(grid))]
    assert float(fit.mu_hat) == pytest.approx(float(brute), abs=2e-5)  # float32 sums are flat at the top
    assert float(fit.interval_68.lo) < float(fit.mu_hat) < float(fit.interval_68.hi)


def test_a_tiny_first_newton_step_is_not_taken_for_convergence():
    """One event with r = e^33 makes the score at 0 huge and the first Newton step ~1e-14 long;
    that step is far from the root and must not end the search (it once returned mu_hat = 1e-14)."""
    log_r = jnp.asarray([33.0] + [6.0] * 900 + [-16.0] * 5100 + [-164.0] * 5, jnp.float32)
    fit = fit_mixture(log_r)
    # the score's zero in float64: sum_i (r_i - 1) / (1 + mu (r_i - 1)) = 0
    r = np.exp(np.asarray(log_r, np.float64))
    score = lambda m: np.sum((r - 1) / (1 + m * (r - 1)))
    lo, hi = 1e-6, 0.5
    for _ in range(200):
        lo, hi = ((lo + hi) / 2, hi) if score((lo + hi) / 2) > 0 else (lo, (lo + hi) / 2)
    assert float(fit.mu_hat) == pytest.approx(lo, rel=1e-4)
    assert float(fit.interval_95.lo) < lo < float(fit.interval_95.hi) and float(fit.z) > 20
