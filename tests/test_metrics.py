"""ROC, AUC, SIC and bands against hand-computed values, brute force and the Mann-Whitney statistic."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from gbijax import metrics
from gbijax.data import toy

# Eight events, scores with ties, weights: worked by hand below.
SCORES = np.array([0.9, 0.8, 0.8, 0.7, 0.5, 0.5, 0.5, 0.1])
LABELS = np.array([1, 1, 0, 0, 1, 0, -1, 0])  # the -1 event is ignored
WEIGHT = np.array([1.0, 2.0, 1.0, 1.0, 1.0, 2.0, 5.0, 1.0])
# Signal weight 4 (0.9: 1, 0.8: 2, 0.5: 1); background weight 5 (0.8: 1, 0.7: 1, 0.5: 2, 0.1: 1).


def test_roc_curve_by_hand_with_ties_and_weights():
    eps_s, eps_b, thresholds = metrics.roc_curve(SCORES, LABELS, WEIGHT)
    np.testing.assert_allclose(thresholds, [np.inf, 0.9, 0.8, 0.7, 0.5, 0.1])
    np.testing.assert_allclose(eps_s, [0, 1 / 4, 3 / 4, 3 / 4, 1, 1])
    np.testing.assert_allclose(eps_b, [0, 0, 1 / 5, 2 / 5, 4 / 5, 1])


def test_auc_by_hand_with_ties_and_weights():
    # Pairs (w_s w_b): 0.9 beats all 5; 0.8 (w 2) beats 0.7, 0.5, 0.1 (w 4) and ties 0.8 (w 1):
    # 2 * (4 + 1/2); 0.5 (w 1) beats 0.1 (1) and ties 0.5 (w 2): 1 + 1. Total 5 + 9 + 2 = 16 of 20.
    assert float(metrics.auc(SCORES, LABELS, WEIGHT)) == pytest.approx(16 / 20, abs=1e-6)
    assert float(metrics.auc([1.0, 0.0], [1, 0])) == 1.0
    assert float(metrics.auc([0.0, 1.0], [1, 0])) == 0.0
    assert float(metrics.auc([0.3, 0.3, 0.3], [1, 0, 0])) == 0.5


def test_sic_curve_and_max_sic_by_hand():
    eps_s, sic = metrics.sic_curve(SCORES, LABELS, WEIGHT)
    np.testing.assert_allclose(eps_s, [3 / 4, 3 / 4, 1, 1])
    expected = [0.75 / np.sqrt(0.2), 0.75 / np.sqrt(0.4), 1 / np.sqrt(0.8), 1.0]
    np.testing.assert_allclose(sic, expected, rtol=1e-6)
    max_sic = lambda n: float(metrics.max_sic(SCORES, LABELS, WEIGHT, min_background=n))
    assert max_sic(1) == pytest.approx(expected[0])
    # Cuts with at least 2 (weighted) background events: 0.7 (2), 0.5 (4), 0.1 (5).
    assert max_sic(2) == pytest.approx(expected[1])
    assert max_sic(4) == pytest.approx(expected[2])
    assert np.isnan(max_sic(6))
    eps_s, sic = metrics.sic_curve(SCORES, LABELS, WEIGHT, min_background=4)
    np.testing.assert_allclose(eps_s, [1, 1])


N_S, N_B = 200, 1000
LABELS_RANDOM = np.concatenate([np.ones(N_S, int), np.zeros(N_B, int)])


def random_scores(seed, ties=False):
    """Gaussian scores of one shape, so that every test reuses the same compiled programs."""
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(1.5, 1, N_S), rng.normal(0, 1, N_B)])
    return np.round(scores, 1) if ties else scores


def test_max_sic_respects_min_background_on_random_data():
    scores = random_scores(0)
    eps_s, eps_b, _ = metrics.roc_curve(scores, LABELS_RANDOM)
    values = []
    for n_min in (100, 20, 10, 1):
        ok = eps_b * N_B >= n_min - 1e-9
        expected = np.max(eps_s[ok] / np.sqrt(eps_b[ok]))
        values.append(float(metrics.max_sic(scores, LABELS_RANDOM, min_background=n_min)))
        assert values[-1] == pytest.approx(expected, rel=1e-5)
    assert values == sorted(values)  # allowing fewer background events can only raise the maximum


def test_auc_equals_mann_whitney_on_random_data_with_ties():
    scores = random_scores(1, ties=True)  # rounding makes many ties
    u = mannwhitneyu(scores[:N_S], scores[N_S:]).statistic / (N_S * N_B)
    assert float(metrics.auc(scores, LABELS_RANDOM)) == pytest.approx(u, abs=1e-5)
    eps_s, eps_b, _ = metrics.roc_curve(scores, LABELS_RANDOM)
    assert np.trapezoid(eps_s, eps_b) == pytest.approx(u, abs=1e-5)


def test_weights_equal_repeated_events():
    rng = np.random.default_rng(2)
    counts = rng.permutation(np.repeat([0, 1, 2], [300, 600, 300]))  # the total keeps the shape (and program)
    scores = random_scores(2, ties=True)
    rep = lambda a: np.repeat(a, counts)

    def three(s, lab, w):
        return [metrics.auc(s, lab, w), metrics.max_sic(s, lab, w, 3.0),
                metrics.sic_at_eps_b(s, lab, w, eps_b=0.3)]  # fmt: skip

    weighted = three(scores, LABELS_RANDOM, counts)
    np.testing.assert_allclose(weighted, three(rep(scores), rep(LABELS_RANDOM), None), rtol=1e-5)


def test_sic_at_eps_b_interpolates_along_the_roc():
    # Sorted: 3 (s), 2 (b), 1 (s), 0 (b): ROC points (eps_b, eps_s) (0, .5), (.5, .5), (.5, 1), (1, 1).
    scores, labels = jnp.arange(4.0)[::-1], jnp.array([1, 0, 1, 0])
    got = metrics.sic_at_eps_b(scores, labels, eps_b=jnp.array([0.25, 0.5, 0.75, 1.0]))
    np.testing.assert_allclose(got, [0.5 / 0.5, 1 / np.sqrt(0.5), 1 / np.sqrt(0.75), 1.0], rtol=1e-6)
    # Inside a single tie group the ROC is a straight line: eps_S = eps_B.
    got = metrics.sic_at_eps_b(jnp.array([1.0, 1.0, 0.0, 0.0]), labels, eps_b=jnp.array([0.25]))
    np.testing.assert_allclose(got, [0.25 / 0.5], rtol=1e-6)


def _brute_force_sic_on_grid(scores, labels, grid, min_background):
    """Smallest eps_B on the ROC polyline at each eps_S, by walking every segment."""
    eps_s, eps_b, _ = metrics.roc_curve(scores, labels)
    n_b = np.sum(labels == 0)
    out = []
    for g in grid:
        k = np.flatnonzero((eps_s[:-1] < g) & (g <= eps_s[1:]))[0]
        b = eps_b[k] + (eps_b[k + 1] - eps_b[k]) * (g - eps_s[k]) / (eps_s[k + 1] - eps_s[k])
        out.append(g / np.sqrt(b) if b * n_b >= min_background * (1 - 1e-6) else np.nan)
    return np.array(out)


GRID = np.arange(20) * 0.05 + 0.0225  # between the ROC vertices (eps_S steps of 1/200)


def test_sic_on_grid_against_brute_force_and_band():
    curves = np.stack([metrics.sic_on_grid(random_scores(seed), LABELS_RANDOM, GRID, min_background=10)
                       for seed in range(4)])  # fmt: skip
    for seed, on_grid in enumerate(curves):
        scores = random_scores(seed)
        brute = _brute_force_sic_on_grid(scores, LABELS_RANDOM, GRID, 10)
        np.testing.assert_allclose(on_grid, brute, rtol=1e-4)
        assert np.nanmax(on_grid) <= float(metrics.max_sic(scores, LABELS_RANDOM, min_background=10)) + 1e-5
    b = metrics.band(curves)
    finite = np.isfinite(b.median)
    assert finite.sum() >= 15
    assert np.all(b.lo[finite] <= b.median[finite]) and np.all(b.median[finite] <= b.hi[finite])
    np.testing.assert_allclose(b.median[finite], np.nanmedian(curves[:, finite], 0))


def test_band_quantiles_by_hand():
    curves = np.arange(1.0, 102.0)[:, None] * np.ones((1, 3))  # 101 runs: 1..101
    curves[:, 2] = np.nan
    b = metrics.band(curves)
    np.testing.assert_allclose(b.median[:2], [51, 51])
    np.testing.assert_allclose(b.lo[:2], [17, 17])
    np.testing.assert_allclose(b.hi[:2], [85, 85])
    assert np.isnan(b.median[2])


def test_metrics_vmap_over_realisations():
    scores = np.stack([random_scores(seed) for seed in range(3)])
    labels = jnp.asarray(LABELS_RANDOM)

    def all_metrics(s):
        return jnp.stack([metrics.auc(s, labels), metrics.max_sic(s, labels, min_background=10),
                          metrics.sic_at_eps_b(s, labels, eps_b=0.1)])  # fmt: skip

    batched = jax.jit(jax.vmap(all_metrics))(scores)
    for i in range(3):
        np.testing.assert_allclose(batched[i, 0], metrics.auc(scores[i], LABELS_RANDOM), rtol=1e-6)
        one = metrics.max_sic(scores[i], LABELS_RANDOM, min_background=10)
        np.testing.assert_allclose(batched[i, 1], one, rtol=1e-6)


def test_shape_mismatch_rejected():
    with pytest.raises(ValueError, match="same"):
        metrics.auc(np.zeros(3), np.zeros(4))


def test_toy_optimal_scores_are_the_exact_log_likelihood_ratio():
    region = (3.3, 3.7)
    params = toy.SignalParams(0.3, 0.2)
    x = jnp.array([[3.4, 0.2, 0.1, 0.3, 0.2], [3.6, 0.05, 0.3, 0.6, 0.5]])
    expected = toy.signal_log_prob(x, params, region) - toy.background_log_prob(x, region)
    np.testing.assert_allclose(metrics.toy_optimal_scores(x, params, region), expected, rtol=1e-6)
