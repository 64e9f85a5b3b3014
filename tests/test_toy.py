"""The analytic toy: normalised densities, samplers that agree with them, mjj dependence, jit/vmap."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.stats import qmc

from gbijax.data import toy

SR = (3.3, 3.7)

# Each case: log-density, sampler, mjj range and an independent proposal for importance sampling, given as
# Gaussians in y = (log mj_min, log delta_mj | half-normal delta_mj, logit tau21_min, logit tau21_max).
CASES = {
    "background": dict(
        log_prob=lambda x: toy.background_log_prob(x),
        sample=lambda key, n: toy.background_sample(key, n),
        m_range=(toy.M_MIN, toy.M_MAX),
        proposal=dict(mj=(math.log(0.11), 1.2), dm=("log", math.log(0.13), 2.0),
                      t_lo=(0.3, 1.1), t_hi=(-0.1, 1.3)),
    ),
    "background_sr": dict(
        log_prob=lambda x: toy.background_log_prob(x, region=SR),
        sample=lambda key, n: toy.background_sample(key, n, region=SR),
        m_range=SR,
        proposal=dict(mj=(math.log(0.105), 1.2), dm=("log", math.log(0.12), 2.0),
                      t_lo=(0.4, 1.1), t_hi=(-0.05, 1.3)),
    ),
    "signal_500_100": dict(
        log_prob=lambda x: toy.signal_log_prob(x, toy.SignalParams(0.5, 0.1)),
        sample=lambda key, n: toy.signal_sample(key, n, toy.SignalParams(0.5, 0.1)),
        m_range=(toy.M_MIN, toy.M_MAX),
        proposal=dict(mj=(math.log(0.1), 0.2), dm=("log", math.log(0.4), 0.3),
                      t_lo=(-0.7, 1.0), t_hi=(-1.4, 1.0)),
    ),
    "signal_300_300_sr": dict(  # equal daughter masses: the two-to-one map folds onto itself
        log_prob=lambda x: toy.signal_log_prob(x, toy.SignalParams(0.3, 0.3), region=SR),
        sample=lambda key, n: toy.signal_sample(key, n, toy.SignalParams(0.3, 0.3), region=SR),
        m_range=SR,
        proposal=dict(mj=(math.log(0.28), 0.2), dm=("half", 0.08), t_lo=(-1.2, 1.0), t_hi=(-1.2, 1.0)),
    ),
}  # fmt: skip


def _proposal(n, m_range, mj, dm, t_lo, t_hi, seed=0):
    """Scrambled Sobol points through an independent proposal: x (n, 5) and log q(x) in physical units."""
    u = np.clip(qmc.Sobol(5, scramble=True, seed=seed).random(n), 1e-12, 1 - 1e-12)
    lo, hi = m_range
    m = lo + (hi - lo) * u[:, 0]
    log_q = np.full(n, -math.log(hi - lo))
    y = stats.norm.ppf(u[:, 1], *mj)
    log_q += stats.norm.logpdf(y, *mj) - y  # mj = e^y
    mj_min = np.exp(y)
    if dm[0] == "half":
        delta = stats.halfnorm.ppf(u[:, 2], scale=dm[1])
        log_q += stats.halfnorm.logpdf(delta, scale=dm[1])
    else:
        y = stats.norm.ppf(u[:, 2], dm[1], dm[2])
        log_q += stats.norm.logpdf(y, dm[1], dm[2]) - y
        delta = np.exp(y)
    taus = []
    for col, par in ((3, t_lo), (4, t_hi)):
        y = stats.norm.ppf(u[:, col], *par)
        tau = 1.0 / (1.0 + np.exp(-y))
        log_q += stats.norm.logpdf(y, *par) - np.log(tau) - np.log1p(-tau)  # tau = sigmoid(y)
        taus.append(tau)
    return np.stack([m, mj_min, delta, *taus], 1), log_q


N = 2**15
"""One array size for every call, so that each toy function compiles once per region (compiling is the
dominant cost of these tests on a CPU)."""


def _log_prob(case, x):
    """A case's log-density at ``x`` (float64 out), in chunks of N rows to reuse one compilation."""
    f = CASES[case]["log_prob"]
    return np.concatenate([np.asarray(f(jnp.asarray(x[i : i + N], jnp.float32)), np.float64)
                           for i in range(0, len(x), N)])  # fmt: skip


@functools.cache
def _importance(case):
    """Points x, importance weights p(x) / q(x) and log p(x) for one case (2 N = 2^16 QMC points)."""
    c = CASES[case]
    x, log_q = _proposal(2 * N, c["m_range"], **c["proposal"])
    log_p = _log_prob(case, x)
    return x, np.exp(log_p - log_q), log_p


@functools.cache
def _samples(case):
    return np.asarray(CASES[case]["sample"](jax.random.key(1), N), np.float64)


@pytest.mark.parametrize("case", list(CASES))
def test_density_is_normalised(case):
    _, w, _ = _importance(case)
    assert np.isfinite(w).all()
    assert w.mean() == pytest.approx(1.0, abs=0.01)


def _y(x):
    """(log mj_min, log delta_mj, logit tau21_min, logit tau21_max)."""
    t1, t2 = x[:, 3], x[:, 4]
    return np.stack([np.log(x[:, 1]), np.log(x[:, 2]), np.log(t1 / (1 - t1)), np.log(t2 / (1 - t2))], 1)


@pytest.mark.parametrize("case", list(CASES))
def test_samples_follow_log_prob(case):
    """Samples and density agree: the means and covariances of (mjj, y) of the samples equal their
    importance-sampling expectations under the density; per-feature deciles hold 10% of the density each; the
    mean log-density of the samples equals E_p[log p]."""
    x_is, w, log_p_is = _importance(case)
    samples = _samples(case)
    assert samples.shape == (N, 5) and np.isfinite(samples).all()
    lo, hi = CASES[case]["m_range"]
    assert ((samples[:, 0] > lo) & (samples[:, 0] < hi)).all()
    # first and second moments (smooth integrands: the QMC error is below 0.4 standard errors of the samples)
    g_is, g = (np.column_stack([x[:, 0], _y(x)]) for x in (x_is, samples))
    mean_is = (w[:, None] * g_is).sum(0) / w.sum()
    z = (g.mean(0) - mean_is) / (g.std(0) / math.sqrt(N))
    assert (abs(z) < 5).all(), z
    d_is, d = g_is - mean_is, g - g.mean(0)
    for i in range(5):
        for j in range(i, 5):
            cov_is = (w * d_is[:, i] * d_is[:, j]).sum() / w.sum()
            prod = d[:, i] * d[:, j]
            assert abs(prod.mean() - cov_is) < 5 * prod.std() / math.sqrt(N), (i, j, prod.mean(), cov_is)
    # deciles (indicator integrands: the importance-sampling variance is bounded by its Monte Carlo value)
    for col in range(5):
        edges = np.quantile(samples[:, col], np.linspace(0, 1, 11)[1:-1])
        observed = np.bincount(np.searchsorted(edges, samples[:, col]), minlength=10)
        in_bin = np.searchsorted(edges, x_is[:, col])[:, None] == np.arange(10)
        frac = (w[:, None] * in_bin).sum(0) / w.sum()
        var_is = np.var(w[:, None] * (in_bin - frac), axis=0) / (len(w) * w.mean() ** 2)
        chi2 = ((observed - N * frac) ** 2 / (N * frac * (1 - frac) + N**2 * var_is)).sum()
        assert chi2 < 40, (col, chi2)  # about 9 degrees of freedom: 40 is p ~ 5e-6
    log_p = _log_prob(case, samples)
    assert np.isfinite(log_p).all()
    expected = (w * log_p_is).sum() / w.sum()
    assert log_p.mean() == pytest.approx(expected, abs=4 * log_p.std() / math.sqrt(N) + 0.01)


def test_background_matches_scipy_in_y_space():
    """log p_B = log p(mjj) + log N(y; a + b log(mjj / 3.5), Sigma) + log |dy/dx|, computed independently."""
    x = _samples("background")
    m, mj, dm, t1, t2 = x.T
    std = np.asarray(toy._BKG_STD)
    cov = np.asarray(toy._BKG_CORR) * np.outer(std, std)
    mean = np.asarray(toy._BKG_MEAN) + np.asarray(toy._BKG_SLOPE) * np.log(m / toy.M_REF)[:, None]
    k = toy.POWER
    log_pm = -k * np.log(m) + math.log((k - 1) / (toy.M_MIN ** (1 - k) - toy.M_MAX ** (1 - k)))
    log_jac = -np.log(mj * dm * t1 * (1 - t1) * t2 * (1 - t2))
    expected = log_pm + stats.multivariate_normal(np.zeros(4), cov).logpdf(_y(x) - mean) + log_jac
    np.testing.assert_allclose(_log_prob("background", x), expected, rtol=1e-5, atol=1e-4)


def test_background_features_depend_on_mjj():
    """E[y | mjj] = a + b log(mjj / 3.5): the regression slopes of the samples are the toy's b (mj_min rises
    with mjj, tau21 falls), and the density prefers features at their own mjj."""
    x = _samples("background")
    log_m = np.log(x[:, 0] / toy.M_REF)
    for col, y in enumerate(_y(x).T):
        slope, intercept = np.polyfit(log_m, y, 1)
        resid = y - slope * log_m - intercept
        se = resid.std() / (math.sqrt(N) * log_m.std())
        assert slope == pytest.approx(toy._BKG_SLOPE[col], abs=4.5 * se), col
        assert intercept == pytest.approx(toy._BKG_MEAN[col], abs=4.5 * resid.std() / math.sqrt(N)), col
    high, low = x[:, 0] > 3.5, x[:, 0] < 2.8
    assert np.median(x[high, 1]) > 1.15 * np.median(x[low, 1])
    feats, m = jnp.asarray(x[:, 1:], jnp.float32), jnp.asarray(x[:, 0], jnp.float32)
    own = float(jnp.mean(toy.background_features_log_prob(feats, m)))
    assert own > float(jnp.mean(toy.background_features_log_prob(feats, 1.5 * m))) + 0.1


@pytest.mark.parametrize("m_x, m_y", [(0.5, 0.1), (0.3, 0.2), (0.1, 0.4)])
def test_signal_jet_masses_follow_parameters(m_x, m_y):
    x = np.asarray(toy.signal_sample(jax.random.key(6), N, toy.SignalParams(m_x, m_y)))
    light, heavy = min(m_x, m_y), max(m_x, m_y)
    assert np.median(x[:, 1]) == pytest.approx(light, rel=0.02)
    assert np.median(x[:, 1] + x[:, 2]) == pytest.approx(heavy, rel=0.02)
    assert np.median(x[:, 0]) == pytest.approx(toy.SIGNAL_MJJ_MEAN, abs=0.01)


def test_signal_score_has_zero_mean_at_truth():
    """E_p[d log p(x | theta) / d theta] = 0 at the true theta, and the likelihood prefers the truth."""
    params = toy.SignalParams(0.4, 0.15)
    x = toy.signal_sample(jax.random.key(7), N, params, region=SR)
    score = jax.vmap(jax.grad(lambda p, xi: toy.signal_log_prob(xi[None], p, region=SR)[0]), (None, 0))(
        toy.SignalParams(jnp.float32(0.4), jnp.float32(0.15)), x
    )
    for s in score:
        s = np.asarray(s, np.float64)
        assert abs(s.mean()) < 4 * s.std() / math.sqrt(len(s))
    at_truth = float(jnp.mean(toy.signal_log_prob(x, params, region=SR)))
    for other in [(0.42, 0.15), (0.4, 0.16), (0.38, 0.14)]:
        assert float(jnp.mean(toy.signal_log_prob(x, toy.SignalParams(*other), region=SR))) < at_truth - 0.01
    # the jets are unordered, so theta = (m_x, m_y) and (m_y, m_x) give the same density
    np.testing.assert_allclose(
        toy.signal_log_prob(x, toy.SignalParams(0.15, 0.4), region=SR),
        toy.signal_log_prob(x, params, region=SR), rtol=1e-6,
    )  # fmt: skip


def test_mixture_log_prob_is_the_mixture():
    params = toy.SignalParams(0.5, 0.1)
    x, label = toy.mixture_sample(jax.random.key(8), N, 0.3, params, region=SR)
    ls = np.asarray(toy.signal_log_prob(x, params, region=SR), np.float64)
    lb = np.asarray(toy.background_log_prob(x, region=SR), np.float64)
    for mu in (0.0, 0.003, 0.3, 1.0):
        with np.errstate(divide="ignore"):  # log(0) = -inf for mu = 0 and 1
            expected = np.logaddexp(np.log(mu) + ls, np.log(1 - mu) + lb)
        got = toy.mixture_log_prob(x, mu, params, region=SR)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    assert int(label.sum()) == pytest.approx(0.3 * N, abs=4 * math.sqrt(N * 0.3 * 0.7))
    # labelled signal events are the signal ones: they sit at the signal's jet masses
    x, label = np.asarray(x), np.asarray(label, bool)
    assert np.median(x[label, 1]) == pytest.approx(0.1, rel=0.02)
    assert np.median(x[label, 1] + x[label, 2]) == pytest.approx(0.5, rel=0.02)
    assert np.median(x[~label, 2]) == pytest.approx(np.median(_samples("background_sr")[:, 2]), rel=0.07)


def test_outside_support_is_minus_infinity():
    x = _samples("background_sr").copy()
    x[:4] = [
        [2.0, 0.1, 0.1, 0.5, 0.5],  # mjj below the toy's range
        [3.5, -0.1, 0.1, 0.5, 0.5],  # negative mass
        [3.5, 0.1, 0.1, 1.2, 0.5],  # tau21 above 1
        [3.9, 0.1, 0.1, 0.5, 0.5],  # outside the region
    ]
    x = jnp.asarray(x, jnp.float32)
    for lp in (toy.background_log_prob(x, region=SR), toy.signal_log_prob(x, region=SR),
               toy.mixture_log_prob(x, 0.1, region=SR)):  # fmt: skip
        np.testing.assert_array_equal(lp[:4], [-np.inf] * 4)
        assert jnp.isfinite(lp[4:]).all()


def test_region_fractions():
    bf, sf = toy.background_region_fraction(SR), toy.signal_region_fraction(SR)
    # closed forms
    k, lo, hi = toy.POWER, toy.M_MIN, toy.M_MAX
    assert bf == pytest.approx((3.3 ** (1 - k) - 3.7 ** (1 - k)) / (lo ** (1 - k) - hi ** (1 - k)), rel=1e-6)
    norm = stats.norm(toy.SIGNAL_MJJ_MEAN, toy.SIGNAL_MJJ_WIDTH)
    assert sf == pytest.approx((norm.cdf(3.7) - norm.cdf(3.3)) / (norm.cdf(hi) - norm.cdf(lo)), rel=1e-6)
    assert 0.70 < sf < 0.80  # about 75% of the signal in the SR, as in LHCO
    assert toy.background_region_fraction(None) == pytest.approx(1.0)
    # sample fractions (binomial)
    for case, f in (("background", bf), ("signal_500_100", sf)):
        m = _samples(case)[:, 0]
        assert np.mean((m > 3.3) & (m < 3.7)) == pytest.approx(f, abs=4 * math.sqrt(f * (1 - f) / N))
    # the region densities are the full ones renormalised by exactly these fractions
    x = jnp.asarray(_samples("background_sr"), jnp.float32)
    np.testing.assert_allclose(
        toy.background_log_prob(x, region=SR) - toy.background_log_prob(x), -math.log(bf), atol=1e-4
    )
    p = toy.SignalParams(0.3, 0.3)
    x = jnp.asarray(_samples("signal_300_300_sr"), jnp.float32)
    np.testing.assert_allclose(
        toy.signal_log_prob(x, p, region=SR) - toy.signal_log_prob(x, p), -math.log(sf), atol=1e-4
    )
    with pytest.raises(ValueError, match="does not overlap"):
        toy.background_region_fraction((7.0, 8.0))
    with pytest.raises(ValueError, match="does not overlap"):
        toy.background_log_prob(x, region=(7.0, 8.0))


def test_jit_vmap_and_seeding():
    key = jax.random.key(12)
    # seeded: the same key gives the same events, another key others
    np.testing.assert_array_equal(_samples("background"), toy.background_sample(jax.random.key(1), N))
    assert not np.allclose(_samples("background"), toy.background_sample(jax.random.key(2), N))
    # the public functions trace under jit with traced key, mu and parameters (sizes and regions static)
    jaxpr = jax.make_jaxpr(lambda k, mu, p: toy.mixture_sample(k, N, mu, p, region=SR))(
        key, 0.2, toy.SignalParams(0.5, 0.1)
    )
    assert [a.shape for a in jaxpr.out_avals] == [(N, 5), (N,)]
    x, _ = toy.mixture_sample(key, N, 0.2, toy.SignalParams(0.5, 0.1), region=SR)
    # vmap over the signal parameters (a PAWS-style scan) and over mu, under jit
    grid = toy.SignalParams(jnp.array([0.5, 0.3]), jnp.array([0.1, 0.3]))
    scan_fn = jax.jit(jax.vmap(lambda p, mu: toy.mixture_log_prob(x, mu, p, region=SR)))
    scan = scan_fn(grid, jnp.array([0.2, 1.0]))
    np.testing.assert_allclose(
        scan[0], toy.mixture_log_prob(x, 0.2, toy.SignalParams(0.5, 0.1), region=SR), rtol=1e-5, atol=1e-4
    )
    np.testing.assert_allclose(
        scan[1], toy.signal_log_prob(x, toy.SignalParams(0.3, 0.3), region=SR), rtol=1e-5, atol=1e-4
    )
    # vmap of a sampler over keys: one data realisation per key
    keys = jax.random.split(key, 2)
    batch = jax.vmap(lambda k: toy.background_sample(k, N, region=SR))(keys)
    assert batch.shape == (2, N, 5)
    np.testing.assert_allclose(batch[1], toy.background_sample(keys[1], N, region=SR), rtol=1e-6)
