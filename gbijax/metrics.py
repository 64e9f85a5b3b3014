"""Classifier performance: ROC, AUC, significance improvement (SIC) and bands over seeds.

A cut ``score >= t`` keeps the signal efficiency ``eps_S(t)`` and background efficiency
``eps_B(t)`` (weighted fractions of the labelled signal and background events). The
significance improvement characteristic is

    ``SIC = eps_S / sqrt(eps_B)``,

the factor by which the cut multiplies ``S / sqrt(B)``. Labels follow :mod:`gbijax.data`:
1 signal, 0 background, -1 unknown (ignored), so the truth array of a
:class:`gbijax.classifiers.ClassifierTask` can be passed as it is.

Ties are exact: events with equal scores pass or fail a cut together, and the ROC curve joins
the points before and after a tie by a straight line (the tied events counted as half above,
half below for the AUC). :func:`auc`, :func:`max_sic`, :func:`sic_at_eps_b` and
:func:`sic_on_grid` are static-shape JAX code: they ``jit`` and ``vmap`` over realisations.

>>> scores = jnp.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
>>> labels = jnp.array([1, 1, 0, 1, 0, 0])
>>> round(float(auc(scores, labels)), 4)  # 8 of the 9 signal-background pairs ordered correctly
0.8889
"""

from __future__ import annotations

import functools
import inspect
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gbijax.data import toy

__all__ = ["Band", "auc", "band", "max_sic", "roc_curve", "sic_at_eps_b", "sic_curve", "sic_on_grid",
           "toy_optimal_scores"]  # fmt: skip

Array = jax.Array


class _Cumulative(NamedTuple):
    """Cumulative weights above each cut, one point per event plus the empty cut first.

    Point ``k >= 1`` is the cut ``score >= s_(k)`` (k-th highest score); inside a tie group
    every point carries the group's totals, so only complete groups are ever cut.
    """

    threshold: Array  # (N + 1,), +inf first
    signal: Array  # (N + 1,) weighted signal passing
    background: Array  # (N + 1,) weighted background passing
    n_signal: Array  # total signal weight
    n_background: Array  # total background weight


def _arrays(scores, labels, weight):
    """Validated arrays: float scores, labels, and weights (ones by default)."""
    scores = jnp.asarray(scores)
    if not jnp.issubdtype(scores.dtype, jnp.floating):
        scores = scores.astype(jnp.result_type(float))
    labels = jnp.asarray(labels)
    weight = jnp.ones(scores.shape, scores.dtype) if weight is None else jnp.asarray(weight, scores.dtype)
    if not (scores.ndim == 1 and labels.shape == scores.shape == weight.shape):
        raise ValueError(f"scores, labels and weight must have the same (N,) shape, got "
                         f"{scores.shape}, {labels.shape}, {weight.shape}")
    return scores, labels, weight


def _jit_on_arrays(fn):
    """Validate ``scores, labels, weight`` with :func:`_arrays`, then run ``fn`` compiled."""
    signature = inspect.signature(fn)
    compiled = jax.jit(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        a["scores"], a["labels"], a["weight"] = _arrays(a["scores"], a["labels"], a["weight"])
        return compiled(**a)

    return wrapper


def _cumulative(scores, labels, weight) -> _Cumulative:
    order = jnp.argsort(-scores)
    s = scores[order]
    w_sig = jnp.where(labels == 1, weight, 0.0)[order]
    w_bkg = jnp.where(labels == 0, weight, 0.0)[order]
    last_of_tie = jnp.searchsorted(-s, -s, side="right") - 1  # index of the end of each tie group
    cum_s, cum_b = jnp.cumsum(jnp.stack([w_sig, w_bkg]), axis=1)[:, last_of_tie]
    zero = jnp.zeros(1, cum_s.dtype)
    return _Cumulative(
        threshold=jnp.concatenate([jnp.full(1, jnp.inf, s.dtype), s]),
        signal=jnp.concatenate([zero, cum_s]),
        background=jnp.concatenate([zero, cum_b]),
        n_signal=jnp.sum(w_sig),
        n_background=jnp.sum(w_bkg),
    )


def _distinct_cuts(scores, labels, weight):
    """Numpy ROC points, one per distinct threshold, and the total background weight."""
    c = jax.tree.map(np.asarray, jax.jit(_cumulative)(*_arrays(scores, labels, weight)))
    keep = np.ones(c.threshold.shape, bool)
    keep[1:] = c.threshold[1:] != c.threshold[:-1]  # one point per tie group
    eps_s = c.signal[keep] / max(float(c.n_signal), 1e-300)
    eps_b = c.background[keep] / max(float(c.n_background), 1e-300)
    return eps_s, eps_b, c.threshold[keep], float(c.n_background)


def roc_curve(scores, labels, weight=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact ROC curve: the efficiencies of every distinct cut ``score >= threshold``.

    Args:
        scores: ``(N,)`` classifier scores (higher = more signal-like, finite).
        labels: ``(N,)`` truth, 1 signal, 0 background, other values ignored.
        weight: optional ``(N,)`` event weights.

    Returns:
        ``(eps_s, eps_b, thresholds)`` numpy arrays, one entry per distinct score plus the
        empty cut (threshold ``+inf``, efficiencies 0) first; both efficiencies nondecreasing.

    >>> eps_s, eps_b, t = roc_curve([3, 2, 2, 1], [1, 1, 0, 0])
    >>> eps_s.tolist(), eps_b.tolist(), t.tolist()
    ([0.0, 0.5, 1.0, 1.0], [0.0, 0.0, 0.5, 1.0], [inf, 3.0, 2.0, 1.0])
    """
    eps_s, eps_b, thresholds, _ = _distinct_cuts(scores, labels, weight)
    return eps_s, eps_b, thresholds


@_jit_on_arrays
def auc(scores, labels, weight=None) -> Array:
    """Area under the ROC curve (trapezoidal, exact with ties), a jit/vmap-able scalar.

    Equals the Mann-Whitney statistic: the weighted probability that a signal event scores
    higher than a background event, ties counting one half,
    ``AUC = sum_{i in S, j in B} w_i w_j ([s_i > s_j] + [s_i = s_j] / 2) / (W_S W_B)``.

    >>> float(auc(jnp.array([1.0, 1.0]), jnp.array([1, 0])))  # a tie: chance level
    0.5
    """
    c = _cumulative(scores, labels, weight)
    area = jnp.sum(jnp.diff(c.background) * 0.5 * (c.signal[1:] + c.signal[:-1]))
    return area / jnp.maximum(c.n_signal * c.n_background, 1e-30)


def sic_curve(scores, labels, weight=None, min_background: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """SIC = eps_S / sqrt(eps_B) at every distinct cut of :func:`roc_curve`.

    Cuts that keep no background (SIC undefined) or less than ``min_background`` weighted
    background events are left out.

    Returns:
        ``(eps_s, sic)`` numpy arrays.

    >>> eps_s, sic = sic_curve([4, 3, 2, 1], [1, 0, 1, 0])
    >>> eps_s.tolist(), [round(v, 4) for v in sic.tolist()]
    ([0.5, 1.0, 1.0], [0.7071, 1.4142, 1.0])
    """
    eps_s, eps_b, _, n_b = _distinct_cuts(scores, labels, weight)
    keep = (eps_b > 0) & (eps_b * n_b >= min_background * (1 - 1e-6))
    return eps_s[keep], eps_s[keep] / np.sqrt(eps_b[keep])


@_jit_on_arrays
def max_sic(scores, labels, weight=None, min_background: float = 10.0) -> Array:
    """Maximum SIC over the cuts that keep at least ``min_background`` background events.

    ``max_t eps_S(t) / sqrt(eps_B(t))`` over thresholds with ``sum_{j in B, s_j >= t} w_j >=
    min_background`` (weighted count), since a SIC from fewer background events is noise.
    NaN if no cut qualifies. jit/vmap-able.

    >>> scores = jnp.arange(8.0)
    >>> labels = jnp.array([0, 0, 0, 0, 1, 0, 1, 1])
    >>> round(float(max_sic(scores, labels, min_background=1)), 4)  # cut at 4: 1 / sqrt(1/5)
    2.2361
    >>> round(float(max_sic(scores, labels, min_background=2)), 4)  # cut at 3: 1 / sqrt(2/5)
    1.5811
    """
    c = _cumulative(scores, labels, weight)
    ok = (c.background > 0) & (c.background >= min_background * (1 - 1e-6))
    eps_s = c.signal / jnp.maximum(c.n_signal, 1e-30)
    eps_b = c.background / jnp.maximum(c.n_background, 1e-30)
    sic = jnp.where(ok, eps_s / jnp.sqrt(jnp.where(ok, eps_b, 1.0)), -jnp.inf)
    best = jnp.max(sic)
    return jnp.where(jnp.isfinite(best), best, jnp.nan)


def _interp_segment(x_grid, xs, ys, side: str):
    """Linear interpolation on a monotone polyline that may repeat x values.

    ``side="left"``: at a repeated x take the first point (``ys`` smallest); ``"right"``: the
    last one. ``x_grid`` beyond the last point takes the last y.
    """
    i = jnp.clip(jnp.searchsorted(xs, x_grid, side=side), 1, xs.shape[0] - 1)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    frac = jnp.clip((x_grid - x0) / jnp.where(x1 > x0, x1 - x0, 1.0), 0.0, 1.0)
    return jnp.where(x1 > x0, y0 + frac * (y1 - y0), y1)


@_jit_on_arrays
def sic_at_eps_b(scores, labels, weight=None, eps_b: float = 1e-3) -> Array:
    """SIC at a fixed background efficiency, ``eps_S(eps_B) / sqrt(eps_B)``.

    ``eps_S`` is interpolated linearly along the ROC curve (the best signal efficiency at
    that ``eps_B``). jit/vmap-able; ``eps_b`` may be an array of targets.

    >>> float(sic_at_eps_b(jnp.arange(4.0), jnp.array([0, 1, 0, 1]), eps_b=0.25))  # eps_S 1/2
    1.0
    """
    c = _cumulative(scores, labels, weight)
    n_s = _interp_segment(eps_b * c.n_background, c.background, c.signal, side="right")
    return n_s / jnp.maximum(c.n_signal, 1e-30) / jnp.sqrt(eps_b)


@_jit_on_arrays
def sic_on_grid(scores, labels, grid, weight=None, min_background: float = 0.0) -> Array:
    """SIC on a fixed grid of signal efficiencies, for averaging curves over runs.

    At each ``eps_S`` in ``grid`` the smallest ``eps_B`` on the ROC curve is interpolated
    linearly (the ROC segments are exact for a randomised cut), then
    ``SIC = eps_S / sqrt(eps_B)``. NaN where fewer than ``min_background`` weighted background
    events pass (or none). jit/vmap-able; use :func:`band` on the stacked results.

    >>> grid = jnp.array([0.5, 0.75, 1.0])  # eps_S = 1/2 is reached with eps_B = 0: NaN
    >>> [round(v, 4) for v in sic_on_grid(jnp.arange(4.0), jnp.array([0, 1, 0, 1]), grid).tolist()]
    [nan, 1.0607, 1.4142]
    """
    c = _cumulative(scores, labels, weight)
    n_b = _interp_segment(grid * c.n_signal, c.signal, c.background, side="left")
    ok = (n_b > 0) & (n_b >= min_background * (1 - 1e-6)) & (grid > 0)
    eps_b = jnp.where(ok, n_b, 1.0) / jnp.maximum(c.n_background, 1e-30)
    return jnp.where(ok, grid / jnp.sqrt(eps_b), jnp.nan)


class Band(NamedTuple):
    """Median and central 68% band (16% and 84% quantiles) of curves over runs."""

    median: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def band(curves_on_grid, quantiles: tuple[float, float, float] = (0.16, 0.5, 0.84)) -> Band:
    """Median and 16/84% quantiles over the leading axis (runs, seeds or realisations).

    NaN entries (e.g. grid points where a run has too few background events) are ignored at
    that grid point; a point that is NaN for every run stays NaN.

    Args:
        curves_on_grid: ``(R, G)`` curves on a common grid, e.g. stacked :func:`sic_on_grid`.
        quantiles: the (low, median, high) quantiles.

    >>> band(np.array([[1.0, 2.0], [3.0, np.nan], [5.0, 4.0]])).median.tolist()
    [3.0, 3.0]
    """
    curves = np.asarray(curves_on_grid, np.float64)
    lo, med, hi = quantiles
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
        q = np.nanquantile(curves, [lo, med, hi], axis=0)
    return Band(median=q[1], lo=q[0], hi=q[2])


@functools.partial(jax.jit, static_argnames="region")
def toy_optimal_scores(x, params: toy.SignalParams = toy.DEFAULT_SIGNAL, region=(3.3, 3.7)) -> Array:
    """The optimal classifier on the analytic toy: the exact log-likelihood ratio.

    ``score(x) = log p_S(x | theta) - log p_B(x)`` with both densities normalised on
    ``region`` (Neyman-Pearson: no classifier has a better ROC curve on these inputs).

    Args:
        x: ``(N, 5)`` toy events (all five columns, mjj first).
        params: the signal point ``theta``.
        region: the mjj window, by default the signal region.

    >>> x = jnp.array([[3.5, 0.10, 0.40, 0.25, 0.30],   # m_y = 100 GeV, m_x = 500 GeV, two-prong
    ...                [3.5, 0.10, 0.05, 0.60, 0.60]])  # QCD-like
    >>> (toy_optimal_scores(x) > 0).tolist()
    [True, False]
    """
    return toy.signal_log_prob(x, params, region) - toy.background_log_prob(x, region)


@functools.partial(jax.jit, static_argnames=("region", "n_quad"))
def toy_optimal_feature_scores(x, params: toy.SignalParams = toy.DEFAULT_SIGNAL, region=(3.3, 3.7),
                               n_quad: int = 32) -> Array:  # fmt: skip
    """The optimal classifier on the toy's four substructure features alone (mjj unused).

    ``score(x) = log p_S(x | theta) - log p_B(x)`` with the background features marginalised
    over the signal-region mass spectrum,

        ``p_B(x) = int_region p_B(m) p_B(x | m) dm``

    (Gauss-Legendre quadrature with ``n_quad`` nodes; ``p_B(m)`` normalised on ``region``).
    The toy's signal features do not depend on mjj, so ``p_S(x)`` is exact. This is the
    Neyman-Pearson bound for classifiers that see only the features ``x[:, 1:]`` (the
    anomaly-detection baselines' inputs); :func:`toy_optimal_scores` also uses mjj, which
    separates the resonance from the falling background a little further.

    Args:
        x: ``(N, 5)`` toy events (mjj first, ignored) or ``(N, 4)`` features.
        params: the signal point ``theta``.
        region: the mjj window, by default the signal region.
        n_quad: quadrature nodes over the window.

    >>> x = jnp.array([[3.5, 0.10, 0.40, 0.25, 0.30],   # two-prong, m_y = 100 and m_x = 500 GeV
    ...                [3.5, 0.10, 0.05, 0.60, 0.60]])  # QCD-like
    >>> (toy_optimal_feature_scores(x) > 0).tolist()
    [True, False]
    """
    features = x[:, 1:] if x.shape[1] == 5 else x
    nodes, weights = np.polynomial.legendre.leggauss(n_quad)
    lo, hi = region
    m = jnp.asarray(0.5 * (hi - lo) * nodes + 0.5 * (hi + lo), features.dtype)
    log_w = jnp.asarray(np.log(0.5 * (hi - lo) * weights), features.dtype)
    log_pm = toy.background_mjj_log_prob(m, region)
    log_px_m = jax.vmap(lambda mj: toy.background_features_log_prob(
        features, jnp.full(features.shape[:1], mj)))(m)  # fmt: skip
    log_pb = jax.scipy.special.logsumexp(log_px_m + (log_w + log_pm)[:, None], axis=0)
    return toy._signal_features_log_prob(features, params) - log_pb
