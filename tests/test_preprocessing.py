"""Sideband-fitted preprocessing: round trip, exact log-Jacobian, weights, explicit out-of-range handling."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gbijax.data import fit_preprocessing, forward, in_range, inverse, preprocess

N = 2_000  # one array shape throughout, so that each jitted transform compiles once


def _features(n=N, seed=0):
    """Positive, skewed, correlated features in physical-looking ranges."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 5))
    return np.column_stack([
        3.5 + 0.1 * base[:, 0], np.exp(-2.0 + 0.5 * base[:, 1]), np.exp(-2.0 + base[:, 2] + 0.3 * base[:, 1]),
        1 / (1 + np.exp(-0.5 * base[:, 3])), rng.uniform(0.1, 0.9, n),
    ])  # fmt: skip


def test_fit_gives_standardised_output_and_the_margin():
    x = _features()
    pp = fit_preprocessing(x, margin=0.05)
    width = x.max(0) - x.min(0)
    np.testing.assert_allclose(pp.lo, x.min(0) - 0.05 * width, rtol=1e-6)
    np.testing.assert_allclose(pp.hi, x.max(0) + 0.05 * width, rtol=1e-6)
    z, _ = forward(pp, x)
    np.testing.assert_allclose(np.mean(z, 0), 0.0, atol=1e-4)
    np.testing.assert_allclose(np.std(z, 0), 1.0, atol=1e-4)
    # the transform is min-max, logit, standardise, feature by feature
    u = (x[:, 2] - float(pp.lo[2])) / (float(pp.hi[2]) - float(pp.lo[2]))
    logit = np.log(u / (1 - u))
    np.testing.assert_allclose(z[:, 2], (logit - logit.mean()) / logit.std(), atol=1e-4)


def test_inverse_undoes_forward():
    x = _features()
    pp = fit_preprocessing(x)
    z, _ = forward(pp, x)
    np.testing.assert_allclose(inverse(pp, z), x, rtol=1e-5, atol=1e-6)
    z = jax.random.normal(jax.random.key(0), (N, 5))
    np.testing.assert_allclose(forward(pp, inverse(pp, z))[0], z, atol=1e-3)


def test_log_det_matches_autodiff_jacobian():
    x = _features()
    pp = fit_preprocessing(x)
    _, log_det = forward(pp, x)
    jac = jax.vmap(jax.jacfwd(lambda xi: forward(pp, xi[None])[0][0]))(jnp.asarray(x, jnp.float32))
    assert jac.shape == (N, 5, 5)
    sign, expected = jnp.linalg.slogdet(jac)
    assert (sign != 0).all()
    np.testing.assert_allclose(log_det, expected, rtol=1e-5, atol=1e-4)
    # and it is what turns a density in z into one in x: a standard normal in z is normalised in x
    z, log_det = forward(pp, x)
    log_px = -0.5 * jnp.sum(z**2, -1) - 2.5 * math.log(2 * math.pi) + log_det
    assert jnp.isfinite(log_px).all()


def test_fit_ignores_zero_weight_events():
    x = _features()
    outliers = x[:10] * 50.0  # far outside: would change the range if used
    both = np.concatenate([x, outliers])
    weight = np.concatenate([np.ones(len(x)), np.zeros(10)])
    pp_w, pp = fit_preprocessing(both, weight), fit_preprocessing(x)
    for a, b in zip(pp_w, pp, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # weights enter the mean and std: doubling every weight changes nothing, a weight of 2 acts like a copy
    for a, b in zip(fit_preprocessing(x, 2 * np.ones(len(x))), pp, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    w = np.ones(len(x))
    w[0] = 2.0
    dup = fit_preprocessing(np.concatenate([x, x[:1]]))
    for a, b in zip(fit_preprocessing(x, w), dup, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_out_of_range_raise_clip_mask_with_counts():
    x = _features()
    pp = fit_preprocessing(x, margin=0.02)
    lo, hi = np.asarray(pp.lo, np.float64), np.asarray(pp.hi, np.float64)
    test = x.copy()
    test[0, 1] = hi[1] + 1.0  # above, feature 1
    test[1, 1] = lo[1] - 1.0  # below, feature 1
    test[2, 3] = hi[3] + 0.5  # above, feature 3
    test[2, 4] = lo[4] - 0.5  # and below, feature 4, in the same event
    with pytest.raises(ValueError, match=r"3 event\(s\) lie outside .*\[0, 2, 0, 1, 1\]"):
        preprocess(pp, test)
    for mode in ("clip", "mask"):
        out = preprocess(pp, test, on_out_of_range=mode)
        np.testing.assert_array_equal(out.n_out_of_range, [0, 2, 0, 1, 1])
        np.testing.assert_array_equal(out.in_range, np.arange(N) > 2)
        assert jnp.isfinite(out.z).all() and jnp.isfinite(out.log_det).all()
        # in-range events are untouched
        z, log_det = forward(pp, test[3:])
        np.testing.assert_allclose(out.z[3:], z, rtol=1e-6)
        np.testing.assert_allclose(out.log_det[3:], log_det, rtol=1e-6)
    clipped = inverse(pp, preprocess(pp, test, on_out_of_range="clip").z)
    np.testing.assert_allclose(clipped[0, 1], hi[1], rtol=1e-4)  # moved onto the edge
    np.testing.assert_allclose(clipped[1, 1], lo[1], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(clipped[0, 0], test[0, 0], rtol=1e-5)  # other features of the event kept
    np.testing.assert_array_equal(in_range(pp, test), np.arange(N) > 2)
    # all in range: every mode gives the plain forward transform
    ok = preprocess(pp, x)
    np.testing.assert_array_equal(ok.n_out_of_range, [0, 0, 0, 0, 0])
    assert bool(ok.in_range.all())
    with pytest.raises(ValueError, match="on_out_of_range must be"):
        preprocess(pp, x, on_out_of_range="drop")


def test_clip_stays_finite_far_from_zero():
    """A feature with a large offset and a small spread (like mjj in the SR) clips to a finite edge."""
    x = np.column_stack([3.5 + 1e-3 * np.linspace(-1, 1, 101), np.linspace(0.1, 0.5, 101)])
    pp = fit_preprocessing(x)
    out = preprocess(pp, np.array([[3.6, 0.3], [3.4, 0.3]]), on_out_of_range="clip")
    np.testing.assert_array_equal(out.n_out_of_range, [2, 0])
    assert jnp.isfinite(out.z).all() and jnp.isfinite(out.log_det).all()


def test_non_finite_input_is_never_silently_nan():
    x = _features()
    pp = fit_preprocessing(x)
    bad = x[:4].copy()
    bad[1, 2] = np.nan
    bad[3, 0] = np.inf
    for mode in ("raise", "clip", "mask"):
        with pytest.raises(ValueError, match=r"NaN or inf.*rows 1, 3"):
            preprocess(pp, bad, on_out_of_range=mode)


def test_fit_errors():
    x = _features()
    const = x.copy()
    const[:, 3] = 0.5
    with pytest.raises(ValueError, match=r"constant feature.*\[3\]"):
        fit_preprocessing(const)
    # constant among the events that count (the varying one has weight 0)
    w = np.ones(len(x))
    w[0] = 0
    almost = const.copy()
    almost[0, 3] = 0.7
    with pytest.raises(ValueError, match="constant feature"):
        fit_preprocessing(almost, w)
    with pytest.raises(ValueError, match="at least 2 events"):
        fit_preprocessing(x, np.zeros(len(x)))
    with pytest.raises(ValueError, match="NaN or inf"):
        fit_preprocessing(np.where(np.arange(len(x))[:, None] == 5, np.nan, x))
    with pytest.raises(ValueError, match="margin"):
        fit_preprocessing(x, margin=0.0)
    with pytest.raises(ValueError, match="shape"):
        fit_preprocessing(x, np.ones(3))


def test_jit_and_vmap_over_fits():
    """Preprocessing is a pytree: jit the transform and vmap it over stacked fits (e.g. one per fold)."""
    x = _features()
    fits = [fit_preprocessing(x, margin=margin) for margin in (0.02, 0.1)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *fits)
    z = jax.jit(jax.vmap(lambda pp: forward(pp, x)[0]))(stacked)
    assert z.shape == (2, N, 5) and jnp.isfinite(z).all()
    np.testing.assert_allclose(z[1], forward(fits[1], x)[0], rtol=1e-5, atol=1e-5)
