"""PAWS-GBI against exact answers: the toy's true ratio as a perfect classifier, Gaussian models, kappa."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import ndtri
from jax.scipy.stats import norm
from scipy.stats import spearmanr

from gbijax.classifiers import ClassifierConfig, TrainConfig
from gbijax.data import DEFAULT_SR, read_lhco_features, read_lhco_parametric_signal, toy
from gbijax.data._readers import LHCO_FEATURE_COLUMNS
from gbijax.inference import (
    ClassifierRatio,
    PawsClassifier,
    PawsClosure,
    PawsConfig,
    bootstrap_paws,
    classifier_log_ratio,
    closure_injection,
    fisher_uncertainty,
    fit_paws,
    fit_starts,
    global_p_value,
    global_significance,
    kappa_from_background,
    kappa_from_counts,
    landscape_intervals,
    landscape_region,
    mass_grid_points,
    mass_tangents,
    measure_paws,
    measure_paws_closure,
    mixture_asimov_weights,
    mu_alpha_landscape,
    null_scan_q0,
    parametric_training_set,
    paws_closure,
    paws_landscape,
    paws_log_likelihood,
    pooled_kappa_log_weights,
    scan_q0,
    toy_log_ratio,
    toy_ratio_data,
    toy_signal_grid,
    train_parametric_classifier,
)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


# A cheap exact model: background uniform on the unit square, signal Gaussian around (m_x, m_y), in two
# decay modes of different widths (the mode fractions alpha, 1 - alpha).
NARROW, WIDE, TRUTH = 0.03, 0.08, (0.4, 0.2)


def _gauss(width):
    def log_ratio(x, theta):  # log N(x0; m_x, s) + log N(x1; m_y, s) - log 1
        return jnp.sum(norm.logpdf(x, theta, width), -1)

    return log_ratio


narrow, wide = _gauss(NARROW), _gauss(WIDE)
MODES = (narrow, wide)
GAUSS = PawsConfig(n_starts=4, n_steps=60, grid_points=4, n_profile=5, polish_steps=10, ordered=False)


def _gauss_data(key, n, n_signal, widths=(NARROW, WIDE)):
    """``n`` events on the unit square, the first ``n_signal`` of them signal split over the widths."""
    k_b, k_s = jax.random.split(key)
    x = jax.random.uniform(k_b, (n, 2), jnp.float64)
    per = n_signal // len(widths)
    sig = [jnp.asarray(TRUTH) + w * jax.random.normal(k, (per, 2), jnp.float64)
           for k, w in zip(jax.random.split(k_s, len(widths)), widths, strict=True)]  # fmt: skip
    return x.at[: per * len(widths)].set(jnp.concatenate(sig))


@pytest.fixture(scope="module")
def toy_grid():
    """The toy's signal at 9 mass points (600 events each) and 12,500 signal-region background events."""
    points = mass_grid_points((0.1, 0.3, 0.5))
    return points, toy_signal_grid(jax.random.key(0), 600, points), toy.background_sample(
        jax.random.key(1), 12_500, DEFAULT_SR)  # fmt: skip


# ----------------------------------------------------------------------------- the exact toy ratio


@pytest.mark.slow  # compilation takes several seconds
def test_toy_fit_recovers_mu_and_masses(x64):
    """10,000 SR events, 3% signal at (500, 100) GeV: the fit with the exact ratio finds it."""
    x, _ = toy.mixture_sample(jax.random.key(3), 10_000, 0.03, toy.DEFAULT_SIGNAL, DEFAULT_SR)
    data = toy_ratio_data(x)
    exact = toy.signal_log_prob(x, toy.SignalParams(0.3, 0.2), DEFAULT_SR) - data.log_b
    np.testing.assert_allclose(toy_log_ratio(data, jnp.array([0.3, 0.2])), exact, rtol=1e-12)  # all in the SR
    config = PawsConfig(n_starts=3, n_steps=60, grid_points=0, n_profile=5, polish_steps=10)
    fit = fit_paws(toy_log_ratio, data, key=jax.random.key(0), config=config)
    truth = (0.03, 0.5, 0.1)
    intervals = (fit.mu_interval, fit.m_x_interval, fit.m_y_interval)
    for k, (hat, iv) in enumerate(zip(fit.vector, intervals, strict=True)):
        sigma = 0.5 * float(iv.hi - iv.lo)
        assert 0 < sigma < 0.2 * truth[k] and float(iv.lo) < float(hat) < float(iv.hi)
        assert abs(float(hat) - truth[k]) < 3 * sigma, (k, float(hat), sigma)
        assert 0.5 < sigma / float(fit.std[k]) < 2.0  # profile and Fisher errors agree
    assert float(fit.params.m_x) >= float(fit.params.m_y) and float(fit.z) > 10
    assert float(jnp.max(fit.starts.log_likelihood)) <= float(fit.log_likelihood_max) + 1e-9  # the maximum
    starts = np.array(fit.starts.params)
    starts[:, 1:] = np.sort(starts[:, 1:], axis=1)[:, ::-1]  # ordered m_x >= m_y
    top = np.argsort(-np.asarray(fit.starts.log_likelihood))[:3]  # the best 5 of 3 random starts
    np.testing.assert_allclose(fit.median_best, np.median(starts[top], axis=0), rtol=1e-12)


def test_kappa_known_class_balance(x64):
    """``f = p1 / (p1 + c p0)`` for two Gaussians: ``1 / E_0[f / (1 - f)] = c`` within MC error."""
    c = 3.0
    x0 = jax.random.normal(jax.random.key(1), (20_000,), jnp.float64)
    log_r = norm.logpdf(x0, 0.5) - norm.logpdf(x0)  # log p1 / p0, E_0[r] = 1, E_0[r^2] = e^0.25
    kappa = float(kappa_from_background(log_r - jnp.log(c)))  # logit f = log(p1 / (c p0))
    mc_error = c * np.sqrt(np.expm1(0.25) / x0.size)
    assert abs(kappa - c) < 4 * mc_error
    weighted = kappa_from_background(log_r - jnp.log(c), weight=jnp.exp(-log_r))  # E_0[w r] / E_0[w] = 1
    np.testing.assert_allclose(weighted, c * float(jnp.mean(jnp.exp(-log_r))), rtol=1e-12)


@pytest.mark.slow  # compilation takes several seconds
def test_parametric_training_set_and_count_kappa(toy_grid):
    points, signal, background = toy_grid
    assert signal.shape == (9, 600, 5)
    mj_min = np.median(np.asarray(signal[:, :, 1]), axis=1)
    np.testing.assert_allclose(mj_min, points.min(1), rtol=0.1)  # the lighter jet at the lighter mass
    sample = parametric_training_set(jax.random.key(2), signal[:, :500], points, background[:2251])
    assert float(jnp.sum(sample.y)) == 4500 and sample.x.shape == (4500 + 2251, 5)
    at = np.all(np.asarray(sample.theta)[None, 4500:] == points[:, None].astype(np.float32), -1).sum(1)
    assert at.sum() == 2251 and at.max() - at.min() <= 1  # background masses: the grid, equal numbers
    np.testing.assert_allclose(kappa_from_counts(sample, points, balance=False), at / 500, rtol=1e-6)
    np.testing.assert_allclose(kappa_from_counts(sample, points, balance=True), at / 2251 * 9, rtol=1e-6)


def test_mass_outside_the_trained_grid_is_a_clear_error():
    x = jnp.zeros((4, 2))
    match = r"0\.7 TeV is outside the trained mass grid range \[0\.05, 0\.6\] TeV"
    with pytest.raises(ValueError, match=match):
        fit_paws(narrow, x, starts=[[0.3, 0.2], [0.7, 0.2]])
    with pytest.raises(ValueError, match=match):
        fit_starts(narrow, x, [[0.3, 0.7]])
    with pytest.raises(ValueError, match=match):
        paws_log_likelihood(narrow, x, 0.1, 0.7, 0.2)
    with pytest.raises(ValueError, match=r"0\.01 TeV is outside"):
        paws_landscape(narrow, x, jnp.linspace(0.01, 0.5, 5), jnp.linspace(0.1, 0.5, 5))
    with pytest.raises(ValueError, match=r"m_y 0\.7 TeV is outside"):  # axes of different lengths
        paws_landscape(narrow, x, jnp.linspace(0.1, 0.5, 5), jnp.array([0.1, 0.7]))
    assert paws_landscape(narrow, x, jnp.linspace(0.1, 0.5, 5), jnp.array([0.1, 0.2])).mu_hat.shape == (5, 2)
    with pytest.raises(ValueError, match=match):
        global_significance(jax.random.key(0), narrow, x, x, points=[[0.7, 0.1]])
    with pytest.raises(ValueError, match=r"outside the trained mass grid range \[0\.1, 0\.3\]"):
        fit_paws(narrow, x, starts=[[0.4, 0.2]], config=PawsConfig(mass_bounds=(0.1, 0.3)))


# ----------------------------------------------------------------------------- Gaussian models


@pytest.fixture(scope="module")
def gauss_fit():
    """4000 events, 5% narrow signal at (0.4, 0.2), fitted with the one-mode model."""
    with jax.enable_x64(True):
        x = _gauss_data(jax.random.key(5), 4000, 200, widths=(NARROW,))
        return x, fit_paws(narrow, x, key=jax.random.key(1), config=GAUSS)


@pytest.mark.slow  # compilation takes several seconds
def test_gauss_fit_matches_landscape_and_fisher(x64, gauss_fit):
    x, fit = gauss_fit
    assert fit.alpha.shape == (0,) and fit.covariance.shape == (3, 3) and fit.landscape.mu_hat.shape == (4, 4)
    for hat, iv, sd, truth in zip(fit.vector, (fit.mu_interval, fit.m_x_interval, fit.m_y_interval), fit.std,
                                  (0.05, *TRUTH), strict=True):  # fmt: skip
        assert abs(float(hat) - truth) < 3 * float(sd) and float(iv.lo) < float(hat) < float(iv.hi)
        np.testing.assert_allclose(0.5 * float(iv.hi - iv.lo), float(sd), rtol=0.2)  # near-Gaussian
    ideal = NARROW / np.sqrt(200)  # the mean of 200 signal events; the background blurs it a little
    assert np.all((fit.std[1:] > ideal) & (fit.std[1:] < 1.5 * ideal))
    nll = lambda p: -paws_log_likelihood(narrow, x, p[0], p[1], p[2], mass_bounds=(0.0, 1.0))
    np.testing.assert_allclose(fit.covariance, fisher_uncertainty(nll, fit.vector).covariance, rtol=1e-5)
    # a fine landscape around the fit peaks at the fit and never exceeds it
    steps = 0.5 * jnp.arange(-4, 5)
    m_x, m_y = (float(m) + float(s) * steps for m, s in zip(fit.params, fit.std[1:], strict=True))
    land = paws_landscape(narrow, x, m_x, m_y, config=GAUSS)
    assert float(jnp.max(land.log_likelihood)) <= float(fit.log_likelihood_max) + 1e-9
    assert int(jnp.argmax(land.log_likelihood)) == 4 * 9 + 4
    np.testing.assert_allclose(land.log_likelihood[4, 4], fit.log_likelihood_max, rtol=1e-9)
    np.testing.assert_allclose(land.mu_hat[4, 4], fit.mu_hat, rtol=1e-6)
    iv_x, iv_y = landscape_intervals(land)  # the other mass profiled on the grid: as the fit's profiles
    for iv, fit_iv in ((iv_x, fit.m_x_interval), (iv_y, fit.m_y_interval)):
        np.testing.assert_allclose([iv.lo, iv.hi], [fit_iv.lo, fit_iv.hi], atol=0.1 * float(fit.std[1]))
    region = landscape_region(land, log_likelihood_max=fit.log_likelihood_max)  # 2.30: within ~1.5 sigma
    assert bool(region[4, 4]) and bool(region[2, 4]) and not bool(region[0, 4]) and not bool(region[4, 8])


@pytest.mark.slow  # compilation takes several seconds
def test_asimov_fit_gives_the_truth_and_measures_a_biased_ratio(x64):
    """Weighted samples as the Asimov data: the exact ratio fits the truth; a shifted one its shift."""
    k_b, k_s = jax.random.split(jax.random.key(21))
    background = jax.random.uniform(k_b, (20_000, 2), jnp.float64)
    signal = jnp.asarray(TRUTH) + NARROW * jax.random.normal(k_s, (20_000, 2), jnp.float64)
    x = jnp.concatenate([background, signal])
    weight = mixture_asimov_weights(20_000, 20_000, 0.05, 2_000)
    np.testing.assert_allclose([float(jnp.sum(weight)), float(jnp.sum(weight[20_000:]))], [2_000, 100])
    fit = fit_paws(narrow, x, weight, key=jax.random.key(0), config=GAUSS)
    for k, truth in enumerate((0.05, *TRUTH)):  # pseudo-true values = truth, to a fraction of the errors
        assert abs(float(fit.vector[k]) - truth) < 0.25 * float(fit.std[k]), (k, float(fit.vector[k]))
    shifted = lambda x, theta: narrow(x, theta - jnp.array([0.01, 0.0]))  # a ratio biased by +0.01 in m_x
    biased = fit_paws(shifted, x, weight, key=jax.random.key(0), config=GAUSS)
    np.testing.assert_allclose(float(biased.params.m_x), TRUTH[0] + 0.01, atol=0.25 * float(fit.std[1]))
    assert abs(float(biased.params.m_y) - TRUTH[1]) < 0.25 * float(fit.std[2])
    with pytest.raises(ValueError, match="need background and signal events"):
        mixture_asimov_weights(0, 10, 0.1, 100)


@pytest.mark.slow  # compilation takes several seconds
def test_vmapped_multistart_equals_sequential_fits_two_modes(x64):
    """Half the signal narrow, half wide (alpha = 1/2): starts fitted together equal starts fitted alone."""
    x = _gauss_data(jax.random.key(11), 4000, 400, widths=(NARROW, WIDE))
    starts = jnp.array([[0.3, 0.3, 0.5], [0.45, 0.15, 0.2], [0.1, 0.5, 0.8], [0.55, 0.55, 0.5]])
    config = GAUSS._replace(n_steps=80)
    together = fit_starts(MODES, (x, x), starts, config=config)
    assert together.params.shape == (4, 4)
    for i in range(starts.shape[0]):
        alone = fit_starts(MODES, (x, x), starts[i : i + 1], config=config)
        np.testing.assert_allclose(alone.params[0], together.params[i], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(alone.log_likelihood[0], together.log_likelihood[i], rtol=1e-9)
    best = together.params[jnp.argmax(together.log_likelihood)]
    assert np.all(np.abs(np.asarray(best) - [0.1, *TRUTH, 0.5]) < [0.03, 0.01, 0.01, 0.2]), best
    assert float(paws_log_likelihood(MODES, (x, x), *best[:3], best[3:])) == pytest.approx(
        float(jnp.max(together.log_likelihood)), rel=1e-9)  # fmt: skip
    mu, alpha = jnp.linspace(0.05, 0.15, 3), jnp.linspace(0.1, 0.9, 5)
    grid = mu_alpha_landscape(MODES, (x, x), best.at[0].set(0.1).at[3].set(0.5), mu, alpha, config=config)
    at_center = paws_log_likelihood(MODES, (x, x), 0.1, *best[1:3], 0.5)
    np.testing.assert_allclose(grid[1, 2], at_center, rtol=1e-9)
    assert grid.shape == (3, 5) and int(jnp.argmax(grid)) // 5 == 1  # mu = 0.1 beats 0.05 and 0.15


@pytest.mark.slow  # compilation takes several seconds
def test_bootstrap_spread_matches_fisher(x64, gauss_fit):
    x, fit = gauss_fit
    boot = bootstrap_paws(jax.random.key(2), narrow, x, fit, n_replicas=40, steps=8, config=GAUSS)
    assert boot.params.shape == (40, 3)
    ratio = np.asarray(boot.std) / np.asarray(fit.std)
    assert np.all((ratio > 0.6) & (ratio < 1.6)), ratio


@pytest.mark.slow  # compilation takes several seconds
def test_global_significance_from_toys(x64, gauss_fit):
    x, _ = gauss_fit
    background = jax.random.uniform(jax.random.key(7), (4000, 2), jnp.float64)
    points = mass_grid_points(np.linspace(0.1, 0.6, 6))
    run = lambda data: global_significance(jax.random.key(3), narrow, data, background, points=points,
                                           n_toys=30, config=GAUSS)  # fmt: skip
    obs = run(x)
    assert float(obs.z_local) > 8 and obs.toy_q0.shape == (30,)
    assert float(obs.p_global) == pytest.approx(1 / 31)  # no toy reaches it: the Monte Carlo p-value's floor
    null = run(jax.random.uniform(jax.random.key(8), (4000, 2), jnp.float64))
    np.testing.assert_array_equal(null.toy_q0, obs.toy_q0)  # the toys depend on the key and background only
    assert 0.0 < float(null.p_global) <= 1.0 and float(null.z_local) < 4
    assert float(jnp.median(obs.toy_q0)) > 0.5  # look-elsewhere: the scan's maximum beats one point's


@pytest.mark.slow  # 600 toys x 36 hypotheses on 10,000 events
def test_global_p_value_is_uniform_under_the_background_only_hypothesis(x64):
    """Background-only datasets scanned over 36 mass points: their global p-values are uniform."""
    points = mass_grid_points(np.linspace(0.1, 0.6, 6))
    datasets = jax.random.uniform(jax.random.key(11), (400, 500, 2), jnp.float64)
    q0 = jax.vmap(lambda d: scan_q0(narrow, d, points=points, config=GAUSS))(datasets)
    sample = jax.random.uniform(jax.random.key(12), (10_000, 2), jnp.float64)
    toys = null_scan_q0(jax.random.key(13), narrow, sample, 500, points=points, n_toys=600, config=GAUSS)
    p, z = global_p_value(q0, toys)
    assert float(jnp.median(q0)) > 1.0  # the maximum over 36 points is far from one point's chi2_1 / 2
    for a in (0.1, 0.5):  # P(p <= a) = a within 3 standard deviations (400 datasets, 600 toys' quantile)
        tolerance = 3 * np.sqrt(a * (1 - a) * (1 / 400 + 1 / 600))
        assert abs(float(jnp.mean(p <= a)) - a) < tolerance, (a, float(jnp.mean(p <= a)))
    assert float(jnp.mean(z >= 2)) < 0.05


# ----------------------------------------------------------------------------- a trained classifier


KAPPA_TABLE_ATOL = 5e-3  # interpolation error between 50 GeV nodes of a small classifier's log kappa


@pytest.mark.slow  # compilation takes several seconds
def test_trained_parametric_classifier_finds_the_mass_region(toy_grid):
    """A tiny classifier on 9 mass points: its ratio tracks the exact one; landscape peaks at the truth."""
    points, signal, background = toy_grid
    sample = parametric_training_set(jax.random.key(2), signal[:, :500], points, background[:4500])
    train = TrainConfig(epochs=20, batch_size=256, learning_rate=3e-3)
    config = ClassifierConfig(hidden=(32, 32), train=train, n_runs=1, val_fraction=0.2, activation="silu")
    params, _ = train_parametric_classifier(jax.random.key(3), sample, config)
    # held-out data: 4000 background events and 100 signal events at (500, 100) GeV (mu = 2.4%)
    x = jnp.concatenate([background[4500:8500], signal[6, 500:]])
    assert np.allclose(points[6], [0.5, 0.1])
    data = ClassifierRatio(x, params, background[8500:])  # kappa = 1 / E_B[f / (1 - f)] on 4000 more
    fn = classifier_log_ratio(config)
    learned = np.asarray(fn(data, jnp.array([0.5, 0.1])))
    exact = np.asarray(toy_log_ratio(x, jnp.array([0.5, 0.1])))
    assert spearmanr(learned, exact).statistic > 0.8
    bounds = PawsConfig(mass_bounds=(0.1, 0.5), batch_size=25)
    land = paws_landscape(fn, data, jnp.linspace(0.1, 0.5, 5), jnp.linspace(0.1, 0.5, 5), config=bounds)
    i, j = np.unravel_index(int(jnp.argmax(land.log_likelihood)), (5, 5))
    best = sorted([float(land.m_x[i]), float(land.m_y[j])], reverse=True)
    assert abs(best[0] - 0.5) <= 0.1 and abs(best[1] - 0.1) <= 0.1
    assert 0.01 < float(land.mu_hat[i, j]) < 0.05 and float(jnp.max(land.log_likelihood)) > 20
    # kappa from the class balance of the training set (the default of PawsClassifier.ratio_data)
    log_kappa = float(jnp.log(jnp.mean(kappa_from_counts(sample, points))))
    trained = PawsClassifier(fn, params, (0.1, 0.5), None, log_kappa)
    counts = trained.ratio_data(x)
    assert counts.background is None and counts.log_kappa == log_kappa and abs(log_kappa) < 1e-3
    assert trained.ratio_data(x, background[8500:]).background.shape == (4000, 5)
    land = paws_landscape(fn, counts, jnp.linspace(0.1, 0.5, 5), jnp.linspace(0.1, 0.5, 5), config=bounds)
    assert (i, j) == np.unravel_index(int(jnp.argmax(land.log_likelihood)), (5, 5))
    # kappa on the 4000 background events pooled with 50 more simulated signal events per point
    trained = trained._replace(points=points, config=config)
    more_signal = toy_signal_grid(jax.random.key(9), 50, points)
    pooled = trained.kappa_sample(background[8500:], more_signal)
    assert pooled.x.shape == (4450, 5) and pooled.log_weight.shape == (4450,)
    np.testing.assert_allclose(float(jnp.sum(jnp.exp(pooled.log_weight))), 4000, rtol=1e-3)
    data = trained.ratio_data(x, pooled)
    assert data.background_log_weight is pooled.log_weight
    land = paws_landscape(fn, data, jnp.linspace(0.1, 0.5, 5), jnp.linspace(0.1, 0.5, 5), config=bounds)
    assert (i, j) == np.unravel_index(int(jnp.argmax(land.log_likelihood)), (5, 5))
    assert 0.01 < float(land.mu_hat[i, j]) < 0.05
    # kappa tabulated once on 50 GeV nodes and interpolated (the fits' fast path): the same ratio
    table = trained.kappa_table(pooled, 0.05)
    tabulated = trained.ratio_data(x, table)
    assert tabulated.background is None and tabulated.log_kappa.coefficients.shape == (11, 11)
    for theta in ([0.5, 0.1], [0.45, 0.25], [0.37, 0.12], [0.21, 0.19]):  # nodes, then between nodes
        direct, fast = (fn(d, jnp.array(theta)) for d in (data, tabulated))
        np.testing.assert_allclose(fast, direct, atol=1e-4 if theta[0] in (0.5, 0.45) else KAPPA_TABLE_ATOL)
    fast_land = paws_landscape(fn, tabulated, land.m_x, land.m_y, config=bounds)
    np.testing.assert_allclose(fast_land.log_likelihood, land.log_likelihood, atol=1e-2)
    with pytest.raises(ValueError, match="at least 4 nodes"):
        trained.kappa_table(pooled, 0.2)
    with pytest.raises(ValueError, match="activation 'relu' is piecewise linear"):
        trained._replace(config=config._replace(activation="relu")).kappa_table(pooled, 0.05)
    with pytest.raises(ValueError, match=r"signal must be \(P, n, D\) = \(9, n, 5\)"):
        trained.kappa_sample(background[8500:], more_signal[:4])
    with pytest.raises(ValueError, match="no recorded grid points"):
        trained._replace(points=None).kappa_sample(background[8500:], more_signal)


def test_pooled_kappa_weights_estimate_background_expectations(x64):
    """Exact Gaussian ratios N(s, 1) / N(0, 1): the pooled weights give E_B of anything, at any shift.

    Background N(0, 1) pooled with signal at shifts 1.5, 3 and 4.5: the weighted means of the
    ratio at the grid shifts and between them are 1 (kappa = 1), those of x and x^2 are 0 and 1,
    and constant offsets of the log-odds per point (a classifier's unknown normalisation) change
    nothing. The background sample alone gets kappa badly wrong at the large shifts.
    """
    shifts, n0, n = jnp.array([1.5, 3.0, 4.5]), 20_000, 5_000
    keys = jax.random.split(jax.random.key(0), 4)
    signal = [s + jax.random.normal(k, (n,)) for s, k in zip(shifts, keys[1:], strict=True)]
    x = jnp.concatenate([jax.random.normal(keys[0], (n0,)), *signal])
    log_r = lambda s: s * x - 0.5 * s**2
    log_odds = jax.vmap(log_r)(shifts)
    log_w = pooled_kappa_log_weights(log_odds, (n0, n, n, n))
    shifted = pooled_kappa_log_weights(log_odds + jnp.array([[0.7], [-2.0], [5.0]]), (n0, n, n, n))
    np.testing.assert_allclose(shifted, log_w, atol=1e-6)
    w = jnp.exp(log_w) / n0
    np.testing.assert_allclose(float(jnp.sum(w)), 1.0, rtol=1e-6)
    np.testing.assert_allclose([float(jnp.sum(w * x)), float(jnp.sum(w * x**2))], [0.0, 1.0], atol=0.03)
    for s in (1.5, 2.25, 3.0, 3.75, 4.5):  # kappa within 5% at and between the grid's shifts
        kappa = kappa_from_background(log_r(s), jnp.exp(log_w))
        assert abs(float(kappa) - 1.0) < 0.05, (s, float(kappa))
    assert abs(float(kappa_from_background(log_r(4.5)[:n0])) - 1.0) > 0.3  # background alone: far off
    with pytest.raises(ValueError, match="summing to M"):
        pooled_kappa_log_weights(log_odds, (n0, n, n))
    with pytest.raises(ValueError, match="needs events"):
        pooled_kappa_log_weights(log_odds[:, : n0 + 2 * n], (n0, n, n, 0))


# ----------------------------------------------------------------------------- the parametric-signal file


def test_read_lhco_parametric_signal(tmp_path, pandas_fixed_writer):
    jets = np.array([
        [1000, 0, 0, 100, 0.5, 0.2, 0.1, -1000, 0, 0, 300, 0.4, 0.3, 0.2],
        [1700, 300, -200, 520, 0.30, 0.06, 0.03, -1650, -280, 900, 95, 0.25, 0.10, 0.07],
    ], dtype=np.float64)  # fmt: skip
    masses = np.array([[300.0, 100.0], [500.0, 100.0]])
    columns = [*LHCO_FEATURE_COLUMNS, "mx", "my"]
    path = pandas_fixed_writer(tmp_path / "param.h5", "output", [(columns, np.hstack([jets, masses]))])
    events, m = read_lhco_parametric_signal(path)
    np.testing.assert_allclose(m, masses / 1000)
    assert (events.label == 1).all() and events.features.shape == (2, 5)
    reference = pandas_fixed_writer(tmp_path / "features.h5", "df", [(list(LHCO_FEATURE_COLUMNS), jets)])
    np.testing.assert_allclose(events.features, read_lhco_features(reference).features, rtol=1e-12)
    np.testing.assert_allclose(events.features[0, 1:], [0.1, 0.2, 0.4, 0.75], rtol=1e-12)
    values = np.hstack([jets, masses[:, :1]])
    missing = pandas_fixed_writer(tmp_path / "no_my.h5", "output", [(columns[:-1], values)])
    with pytest.raises(ValueError, match="not an LHCO parametric signal file.*lacks column.*my"):
        read_lhco_parametric_signal(missing)


def _quadrature_asimov(masses, n_b=200, n_s=100, width=NARROW):
    """Background and narrow signal at ``masses`` as midpoint-rule nodes: an Asimov sample without noise.

    The signal's nodes are normal quantiles rescaled to unit variance (the midpoints alone miss the tails).
    """
    u_b, u_s = (jnp.arange(n_b) + 0.5) / n_b, ndtri((jnp.arange(n_s) + 0.5) / n_s)
    u_s = u_s / jnp.sqrt(jnp.mean(u_s**2))
    grid = lambda a: jnp.stack(jnp.meshgrid(a, a, indexing="ij"), -1).reshape(-1, 2)
    return jnp.concatenate([grid(u_b), masses + width * grid(u_s)]), n_b * n_b


@pytest.mark.slow  # compilation takes several seconds
def test_closure_corrects_a_biased_ratio_to_the_exact_fit(x64):
    """A ratio biased by +0.01 in m_x and a factor 1.25 in mu, corrected by its closure test.

    ``log(0.2 + 0.8 Lambda(theta - (0.01, 0)))`` is the exact ratio reparametrised: its fit is the
    exact fit moved by exactly that, so on a noise-free Asimov sample the closure test finds the
    shift and the scale, and the corrected measurements are the exact ratio's.
    """
    biased = lambda x, theta: jnp.log(0.2 + 0.8 * jnp.exp(narrow(x, theta - jnp.array([0.01, 0.0]))))
    keys = jax.random.split(jax.random.key(4), 3)
    x = jax.vmap(lambda k: _gauss_data(k, 4000, 400, widths=(NARROW,)))(keys)
    weight = jnp.ones(x.shape[:2])
    config = GAUSS._replace(ordered=True)
    exact = measure_paws(keys, x, weight, narrow, config, true_masses=TRUTH)
    measured = measure_paws(keys, x, weight, biased, config, true_masses=TRUTH)
    np.testing.assert_allclose(measured.m_x, exact.m_x + 0.01, atol=1e-4)
    np.testing.assert_allclose(measured.mu_hat, 1.25 * exact.mu_hat, rtol=1e-3)
    injected = closure_injection(measured)
    asimov, n_b = jax.vmap(lambda m: _quadrature_asimov(m)[0])(injected[:, 1:]), 200 * 200
    corrected, closure = measure_paws_closure(measured, x, weight, asimov, n_b, biased, config,
                                              true_masses=TRUTH)  # fmt: skip
    np.testing.assert_allclose(closure.mu_scale, 1.25, rtol=2e-3)
    np.testing.assert_allclose(closure.mass_offset, np.broadcast_to([0.01, 0.0], (3, 2)), atol=2e-4)
    tol = 0.02 * float(np.min(exact.m_x_hi68 - exact.m_x_lo68)) / 2
    for field in ("m_x", "m_x_lo68", "m_x_hi68", "m_y", "m_y_lo68", "m_y_hi68"):
        np.testing.assert_allclose(getattr(corrected, field), getattr(exact, field), atol=tol)
    for field in ("mu_hat", "lo68", "hi68", "lo95", "hi95"):
        np.testing.assert_allclose(getattr(corrected, field), getattr(exact, field), rtol=5e-3, atol=1e-4)
    np.testing.assert_allclose(corrected.q_masses_true, exact.q_masses_true, atol=0.05)
    np.testing.assert_array_equal(corrected.z, measured.z)
    np.testing.assert_allclose(closure.variance_scale, 1.0, atol=0.02)  # a reparametrised exact ratio
    unknown, again = measure_paws_closure(measured, x, weight, asimov, n_b, biased, config)  # no truth
    np.testing.assert_array_equal(again.fitted, closure.fitted)
    assert np.all(np.isnan(unknown.q_masses_true)) and np.allclose(unknown.m_x, corrected.m_x)
    alone = paws_closure(biased, asimov[1], injected[1], mixture_asimov_weights(n_b, asimov.shape[1] - n_b,
                         injected[1, 0], 4000), config=config)  # fmt: skip
    np.testing.assert_allclose(alone.fitted, closure.fitted[1], rtol=1e-6)  # vmapped: other summation order
    with pytest.raises(ValueError, match="injected must be"):
        paws_closure(biased, asimov[1], injected[1, 1:], config=config)
    with pytest.raises(ValueError, match="outside"):
        paws_closure(biased, asimov[1], jnp.array([0.1, 0.9, 0.2]), config=config)


@pytest.mark.slow  # compilation takes several seconds
def test_closure_sandwich_predicts_the_mass_scatter_of_a_misspecified_ratio(x64):
    """The ratio assumes a signal width of 0.03 where the data's is 0.05: the fit's own curvature
    understates how much the fitted masses scatter over 300 pseudo-experiments; the closure's
    sandwich covariance, from one noise-free Asimov sample, predicts it."""
    width, keys = 0.05, jax.random.split(jax.random.key(5), 300)
    x = jax.vmap(lambda k: _gauss_data(k, 4000, 400, widths=(width,)))(keys)
    config = GAUSS._replace(ordered=True, n_profile=0)
    fits = measure_paws(keys, x, jnp.ones(x.shape[:2]), narrow, config, batch_size=50)
    asimov, n_b = _quadrature_asimov(jnp.asarray(TRUTH), width=width)
    weight = mixture_asimov_weights(n_b, asimov.shape[0] - n_b, 0.1, 4000)
    closure = paws_closure(narrow, asimov, jnp.array([0.1, *TRUTH]), weight, config=config)
    np.testing.assert_allclose(closure.mass_offset, 0.0, atol=1e-6)  # symmetric: the location is right
    for k, field in ((1, "m_x"), (2, "m_y")):
        scatter = float(np.std(np.asarray(getattr(fits, field))))  # +- 4% from 300 pseudo-experiments
        assert abs(float(jnp.sqrt(closure.sandwich[k, k])) / scatter - 1) < 0.12, (field, scatter)
        assert float(jnp.sqrt(closure.covariance[k, k])) / scatter < 0.8  # the curvature alone: too narrow
    np.testing.assert_allclose(closure.mass_contour_scale, jnp.sqrt(jnp.prod(closure.variance_scale[1:])),
                               rtol=1e-6)  # uncorrelated masses  # fmt: skip


def test_mass_contour_adjustment_turns_a_quadratic_q_into_the_sandwich_form():
    """Where -2 Delta l is the model's quadratic form d^T C_m^-1 d, the adjusted one is d^T S_m^-1 d
    (correlated, unequal blocks), for one closure and for a stack; at d = 0, 1 / mass_contour_scale."""
    a, b = jax.random.normal(jax.random.key(0), (2, 4, 3, 3))
    cov, sand = a @ a.mT + 0.5 * jnp.eye(3), b @ b.mT + 0.5 * jnp.eye(3)  # 4 random positive-definite pairs
    closures = PawsClosure(jnp.zeros((4, 3)), jnp.zeros((4, 3)), cov, sand)
    d = jax.random.normal(jax.random.key(1), (4, 2))
    form = lambda c, v: v @ jnp.linalg.solve(c[1:3, 1:3], v)
    q = jax.vmap(form)(cov, d)
    adjusted = q * closures.mass_contour_adjustment(d)
    np.testing.assert_allclose(adjusted, jax.vmap(form)(sand, d), rtol=1e-5)
    one = PawsClosure(closures.injected[2], closures.fitted[2], cov[2], sand[2])
    np.testing.assert_allclose(one.mass_contour_adjustment(d[2]), adjusted[2] / q[2], rtol=1e-6)
    np.testing.assert_allclose(closures.mass_contour_adjustment(jnp.zeros((4, 2))),
                               1 / closures.mass_contour_scale, rtol=1e-6)  # fmt: skip


@pytest.mark.slow  # compilation takes several seconds
def test_closure_jacobian_recovers_a_linear_mass_map_and_corrects_through_it(x64):
    """A ratio that reads the masses through ``A theta + b``: its fit of signal at ``theta`` is
    ``A^-1 (theta - b)``, so the closure map's slope is ``G = A^-1`` exactly. Implicit
    differentiation along the Asimov sample's tangents finds it, agrees with a finite difference of
    the closure fit itself, and the corrected masses and the contour test become the exact ratio's."""
    a, b = jnp.array([[1.1, 0.15], [0.05, 0.9]]), jnp.array([-0.02, 0.015])
    warped = lambda x, theta: narrow(x, a @ theta + b)
    config = GAUSS._replace(n_profile=0)
    asimov_at = lambda m: _quadrature_asimov(m)[0]
    n_b = 200 * 200
    inj = jnp.array([0.1, *TRUTH])
    weight = mixture_asimov_weights(n_b, asimov_at(inj[1:]).shape[0] - n_b, inj[0], 4000)
    tangents = mass_tangents(asimov_at, inj[1:])
    closure = paws_closure(warped, asimov_at(inj[1:]), inj, weight, config, 30, tangents)
    np.testing.assert_allclose(closure.jacobian, jnp.linalg.inv(a), atol=2e-3)
    h = 1e-3
    moved = [paws_closure(warped, asimov_at(inj[1:] + h * e), inj.at[1:].add(h * e), weight, config,
                          30).fitted[1:]
             for e in jnp.eye(2)]  # fmt: skip
    finite = jnp.stack([(f - closure.fitted[1:]) / h for f in moved], 1)
    np.testing.assert_allclose(closure.jacobian, finite, atol=5e-3)
    assert paws_closure(warped, asimov_at(inj[1:]), inj, weight, config, 30).jacobian is None
    np.testing.assert_allclose(closure.mass_image(jnp.asarray(TRUTH)), closure.fitted[1:], atol=1e-12)
    # measurements: the warped fit is A^-1 (exact - b); the slope carries it back to the exact one
    keys = jax.random.split(jax.random.key(4), 3)
    x = jax.vmap(lambda k: _gauss_data(k, 4000, 400, widths=(NARROW,)))(keys)
    ones = jnp.ones(x.shape[:2])
    exact = measure_paws(keys, x, ones, narrow, config, true_masses=TRUTH)
    measured = measure_paws(keys, x, ones, warped, config, true_masses=TRUTH)
    injected = closure_injection(measured)
    asimov = jax.vmap(asimov_at)(injected[:, 1:])
    slopes = mass_tangents(jax.vmap(asimov_at), injected[:, 1:])
    corrected, closures = measure_paws_closure(measured, x, ones, asimov, n_b, warped, config,
                                               true_masses=TRUTH, polish_steps=30,
                                               asimov_tangents=slopes)  # fmt: skip
    np.testing.assert_allclose(closures.jacobian, jnp.broadcast_to(jnp.linalg.inv(a), (3, 2, 2)), atol=2e-3)
    np.testing.assert_allclose(corrected.m_x, exact.m_x, atol=2e-3)  # first order in a linear map: exact
    np.testing.assert_allclose(corrected.m_y, exact.m_y, atol=2e-3)
    np.testing.assert_allclose(corrected.q_masses_true, exact.q_masses_true, rtol=0.05, atol=0.05)
    plain, _ = measure_paws_closure(measured, x, ones, asimov, n_b, warped, config, true_masses=TRUTH,
                                    polish_steps=30)
    assert np.max(np.abs(plain.m_x - exact.m_x)) > 5 * np.max(np.abs(corrected.m_x - exact.m_x))
