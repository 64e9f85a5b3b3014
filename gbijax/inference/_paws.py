"""PAWS-GBI: a parametrised classifier as the likelihood ratio, fitted for ``mu`` and the signal masses.

PAWS (METHODS.md, section 5b) trains one classifier ``f(x; theta)``, ``theta = (m_x, m_y)``, on
simulated signal at every point of a mass grid against background; in GBI the background class
is the sideband-trained generator's signal-region samples (any ``(M, D)`` background array works
here, e.g. the toy's own background). Its odds are the likelihood ratio up to the class balance:

    ``Lambda(x; theta) = kappa(theta) f / (1 - f)``,  ``log Lambda = log kappa(theta) + logit f``,

with ``kappa`` the ratio of background to signal training weight at ``theta``
(:func:`kappa_from_counts`) or the self-normalisation ``1 / E_B[f / (1 - f)]`` on a background
sample (:func:`kappa_from_background`; exact because ``E_B[p_S / p_B] = 1``), best estimated on
background pooled with held-out simulated signal (:func:`pooled_kappa_log_weights`,
:class:`KappaSample`). The signal-region data are then fitted with

    ``l(mu, theta, alpha) = sum_i w_i log(1 + mu (Lambda_alpha(x_i; theta) - 1))``,
    ``Lambda_alpha = sum_k alpha_k Lambda_k``

(:func:`paws_log_likelihood`; ``l(0) = 0``), where several decay modes ``k`` (e.g. 3-prong and
2-prong) share the masses and mix with fractions ``alpha`` (one mode: no ``alpha``).

Any ratio model plugs in as a :data:`LogRatioFn` ``log_ratio_fn(data, theta) -> (N,)``, a pure
function of a data pytree and the masses: :func:`classifier_log_ratio` (the trained classifier)
or :func:`toy_log_ratio` (the exact toy ratio, a perfect classifier). The pieces:

- training set and classifier: :func:`toy_signal_grid` (the toy's signal at every grid point,
  one vmapped draw), :func:`parametric_training_set` (signal events carry their own masses,
  background events get grid masses assigned in equal numbers), :func:`train_parametric_classifier`
  (all grid points in one training, an ensemble as one vmap), :func:`parametric_logit`;
- the fit: :func:`fit_paws`: a coarse profile landscape, many random starts fitted as one
  ``vmap`` (:func:`fit_starts`; Adam on the masses and ``alpha`` through sigmoids, ``mu``
  profiled exactly), the best start polished by Levenberg-Marquardt, Fisher errors, profile
  intervals and the local discovery test, mirroring :func:`gbijax.inference.oracle_joint_fit`;
- landscapes: :func:`paws_landscape` (``mu`` profiled exactly at every ``(m_x, m_y)``, one jit
  call), :func:`landscape_region` (2-D Wilks contours), :func:`landscape_intervals`,
  :func:`mu_alpha_landscape`;
- uncertainties and significance: :func:`bootstrap_paws` (Poisson weights), the look-elsewhere
  effect of the mass scan: :func:`scan_q0` (the largest local ``q0`` over mass hypotheses),
  :func:`null_scan_q0` (its distribution on background-only toys), :func:`global_p_value` and
  :func:`global_significance` (all three at once);
- calibration of a learned ratio: :func:`paws_closure`, the closure test at a fit's own point
  (generator background plus signal simulated there, the Asimov fit: its bias, ``mu`` scale and,
  from the sandwich covariance, the sizes its intervals need).

Masses outside the trained grid range raise a ``ValueError`` wherever they are requested (starts,
fixed-mass evaluations, landscape grids); inside fits the masses are bounded to that range.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import logsumexp, ndtri
from jax.typing import ArrayLike

from gbijax.classifiers import (
    PAWS_MLP,
    ClassifierConfig,
    ClassifierParams,
    average_logits,
    ensemble_logits,
    train_ensemble,
)
from gbijax.data import DEFAULT_SR, toy
from gbijax.inference._oracle import MASS_BOUNDS, _interval, _lm_maximize, _profile_grids
from gbijax.inference._spline import GridSpline, grid_spline
from gbijax.inference._stats import (
    CL68,
    CL95,
    Interval,
    bootstrap,
    discovery,
    maximize_mixture,
    mixture_log_likelihood,
    profile_scan,
    wilks_threshold,
)
from gbijax.nn import PIECEWISE_LINEAR
from gbijax.train import History

__all__ = [
    "ClassifierRatio", "GlobalSignificance", "KappaSample", "Landscape", "LogRatioFn", "ParametricSample",
    "PawsBootstrap", "PawsClosure", "PawsConfig", "PawsFit", "StartFits", "ToyRatioData",
    "bootstrap_paws", "classifier_log_ratio", "fit_paws", "fit_starts", "global_p_value",
    "global_significance", "kappa_from_background", "kappa_from_counts", "landscape_intervals",
    "landscape_region", "mass_grid_points", "mass_tangents", "mixing_fractions", "mu_alpha_landscape",
    "null_scan_q0",
    "parametric_inputs", "parametric_logit", "parametric_training_set", "paws_landscape",
    "paws_closure", "paws_log_likelihood", "pooled_kappa_log_weights", "scan_q0", "toy_log_ratio",
    "toy_log_ratio_fn", "toy_ratio_data",
    "toy_signal_grid", "train_parametric_classifier", "train_toy_paws", "PawsClassifier",
    "REFERENCE_PAWS_GRID", "TOY_PAWS_GRID",
]  # fmt: skip

LogRatioFn = Callable[[Any, jax.Array], jax.Array]
"""``log_ratio_fn(data, theta) -> (N,)`` per-event ``log Lambda``; ``theta = (m_x, m_y)`` in TeV."""


# --------------------------------------------------------------------------------------------
# The parametric training set
# --------------------------------------------------------------------------------------------


def mass_grid_points(grid: Sequence[float] = toy.MASS_GRID) -> np.ndarray:
    """All ``(m_x, m_y)`` pairs of a 1-D mass grid, ``(len(grid)**2, 2)``, ``m_x`` varying slowest.

    The default is the reference grid: 50-600 GeV in 50 GeV steps, 144 points (TeV).

    >>> mass_grid_points((0.1, 0.2)).tolist()
    [[0.1, 0.1], [0.1, 0.2], [0.2, 0.1], [0.2, 0.2]]
    """
    g = np.asarray(grid, np.float64)
    return np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)


def toy_signal_grid(key: jax.Array, n_per_point: int, points: ArrayLike, region=DEFAULT_SR) -> jax.Array:
    """``(P, n, 5)`` toy signal events at every mass point, drawn as one ``vmap``.

    Args:
        key: PRNG key; point ``p`` uses ``jax.random.split(key, P)[p]``.
        n_per_point: events per mass point.
        points: ``(P, 2)`` ``(m_x, m_y)`` in TeV (e.g. :func:`mass_grid_points`).
        region: the mjj window the events are drawn in (default: the signal region).
    """
    points = jnp.asarray(points)
    region = None if region is None else (float(region[0]), float(region[1]))

    def draw(k, theta):
        return toy.signal_sample(k, n_per_point, toy.SignalParams(theta[0], theta[1]), region)

    return jax.vmap(draw)(jax.random.split(key, points.shape[0]), points)


class ParametricSample(NamedTuple):
    """Training set of the parametrised classifier (fixed shapes).

    Attributes:
        x: ``(N, D)`` event features.
        theta: ``(N, 2)`` masses ``(m_x, m_y)`` fed to the classifier with each event.
        y: ``(N,)`` class, 1.0 simulated signal, 0.0 background.
        weight: ``(N,)`` per-event weights.
    """

    x: jax.Array
    theta: jax.Array
    y: jax.Array
    weight: jax.Array


def parametric_training_set(
    key: jax.Array, signal: ArrayLike, points: ArrayLike, background: ArrayLike,
    background_weight: ArrayLike | None = None,
) -> ParametricSample:  # fmt: skip
    """The union of the per-mass-point signal samples against one background sample.

    Every signal event carries the masses it was simulated at. Background events are given grid
    masses at random in equal numbers (event ``i`` gets point ``rank_i mod P`` of a random
    permutation), so the background at every mass point is the same distribution and the
    classifier cannot separate the classes by the masses alone; the class balance is then the
    same at every point (:func:`kappa_from_counts`).

    Args:
        key: PRNG key of the mass assignment.
        signal: ``(P, n, D)`` signal events per mass point (:func:`toy_signal_grid`).
        points: ``(P, 2)`` the masses of the signal samples.
        background: ``(M, D)`` background events (in GBI: the generator's signal-region samples).
        background_weight: optional ``(M,)`` weights of the background events.
    """
    signal, points, background = jnp.asarray(signal), jnp.asarray(points), jnp.asarray(background)
    n_points, n, dim = signal.shape
    m = background.shape[0]
    rank = jnp.argsort(jax.random.permutation(key, m))
    theta_b = points[rank % n_points]
    x = jnp.concatenate([signal.reshape(n_points * n, dim), background.astype(signal.dtype)])
    theta = jnp.concatenate([jnp.repeat(points, n, axis=0), theta_b]).astype(x.dtype)
    y = jnp.concatenate([jnp.ones(n_points * n, x.dtype), jnp.zeros(m, x.dtype)])
    w_b = jnp.ones(m, x.dtype) if background_weight is None else jnp.asarray(background_weight, x.dtype)
    return ParametricSample(x, theta, y, jnp.concatenate([jnp.ones(n_points * n, x.dtype), w_b]))


def kappa_from_counts(sample: ParametricSample, points: ArrayLike, balance: bool = True) -> jax.Array:
    """``kappa(theta) = W_B(theta) / W_S(theta)``: the count-ratio class-balance correction per point.

    A classifier trained with class weights ``W_S(theta)``, ``W_B(theta)`` at ``theta`` tends to
    ``f = W_S p_S / (W_S p_S + W_B p_B)``, so ``f / (1 - f) = (W_S / W_B) p_S / p_B`` and
    ``kappa = W_B / W_S``. With ``balance`` (as :class:`gbijax.classifiers.ClassifierConfig`
    ``balance=True`` trains) the class totals are equalised first:
    ``kappa = (W_B(theta) / W_B) / (W_S(theta) / W_S)``.

    Args:
        sample: the training set.
        points: ``(P, 2)`` mass points.
        balance: the classifier was trained with balanced class weights.

    Returns:
        ``(P,)`` ``kappa`` at every point (``inf``/``nan`` where a class is absent).
    """
    points = jnp.asarray(points, sample.theta.dtype)
    at = jnp.all(sample.theta[None, :, :] == points[:, None, :], -1)  # (P, N)
    is_s = sample.y > 0.5
    w_s = jnp.sum(jnp.where(at & is_s, sample.weight, 0.0), -1)
    w_b = jnp.sum(jnp.where(at & ~is_s, sample.weight, 0.0), -1)
    if balance:
        w_s = w_s / jnp.sum(jnp.where(is_s, sample.weight, 0.0))
        w_b = w_b / jnp.sum(jnp.where(is_s, 0.0, sample.weight))
    return w_b / w_s


def kappa_from_background(background_logits: ArrayLike, weight: ArrayLike | None = None) -> jax.Array:
    """``kappa = 1 / E_B[f / (1 - f)]`` estimated on a background sample, from the classifier's logits.

    The true ratio satisfies ``E_B[p_S / p_B] = 1``, so ``Lambda = kappa f / (1 - f)`` is
    normalised exactly when ``kappa = 1 / E_B[exp(logit f)]``: the weighted sample mean, computed
    as ``log kappa = log sum_j w_j - logsumexp_j(logit_j + log w_j)``.

    Args:
        background_logits: ``(M,)`` ``logit f(x_j; theta)`` on background events at one ``theta``.
        weight: optional ``(M,)`` weights.

    Returns:
        The scalar ``kappa``.

    Odds 1/2 and 1/4 average to 3/8, so ``kappa = 8/3``:

    >>> round(float(kappa_from_background(jnp.log(jnp.array([0.5, 0.25])))), 4)
    2.6667
    """
    logits = jnp.asarray(background_logits)
    log_w = None if weight is None else jnp.log(jnp.asarray(weight, logits.dtype))
    return jnp.exp(_log_kappa_background(logits, log_w))


def _log_kappa_background(logits: jax.Array, log_weight) -> jax.Array:
    log_weight = jnp.zeros_like(logits) if log_weight is None else jnp.asarray(log_weight, logits.dtype)
    return logsumexp(log_weight) - logsumexp(logits + log_weight)


def pooled_kappa_log_weights(
    log_odds: ArrayLike, n_events: Sequence[int], max_iter: int = 5000, tol: float = 1e-6
) -> jax.Array:  # fmt: skip
    """Log-weights of background pooled with simulated signal, for a low-variance ``kappa(theta)``.

    ``kappa = 1 / E_B[f / (1 - f)]`` on background events alone is a mean of a heavy-tailed
    ratio: it is decided by the few background events where the signal lives, so its error
    changes with ``theta`` and moves the fitted masses (on the toy, 20,000 background events put
    the true masses outside the 68% contour in most pseudo-experiments, even with the exact ratio).
    Pooling the ``n_0`` background events with ``n_p`` simulated signal events at each grid point
    ``theta_p`` (held out of the classifier's training) covers the signal-like region. With the
    unnormalised ratios ``r_p = f(x; theta_p) / (1 - f)`` and ``c_p = E_B[r_p]``, the pool is a
    sample of ``D(x) p_B(x)``, ``D = n_0 + sum_p n_p r_p / c_p``, so for any ``g``

        ``E_B[g] ~ sum_j g(x_j) / D(x_j)``  (multiple importance sampling, balance heuristic),

    and the ``c_p`` solve the self-consistent equations ``c_p = sum_j r_p(x_j) / D(x_j)`` (the
    multi-sample bridge-sampling estimator of Meng & Wong 1996, Kong et al. 2003; MBAR in
    chemistry), iterated here from ``c_p = 1`` until ``max |Delta log c_p| < tol``. The result
    are weights ``w_j = n_0 / D(x_j)`` (they sum to ``n_0``) for the weighted form of
    :func:`kappa_from_background`: ``kappa(theta) = sum_j w_j / sum_j w_j r(x_j; theta)``, at any
    ``theta``, not only the grid's (:class:`KappaSample`).

    Args:
        log_odds: ``(P, M)`` ``logit f(x_j; theta_p)`` of the classifier on the pooled events at
            the ``P`` grid points (any constant offset per point cancels).
        n_events: ``(n_0, n_1, ..., n_P)``: background events, then simulated signal events per
            point; they sum to ``M``, and the pool lists the background events first.
        max_iter: most fixed-point iterations.
        tol: convergence tolerance on ``log c_p``.

    Returns:
        ``(M,)`` ``log w_j``.

    An exact ratio ``N(3, 1) / N(0, 1)`` has ``kappa = 1``. The mean of 4,000 background ratios
    falls short of ``E_B[r] = 1`` (``kappa`` 26% high; its standard error would be about 1.4);
    pooled with 4,000 signal events it is 5% off:

    >>> n0, n1 = 4000, 4000
    >>> x = jnp.concatenate([jax.random.normal(jax.random.key(0), (n0,)),
    ...                      3.0 + jax.random.normal(jax.random.key(1), (n1,))])
    >>> log_r = 3.0 * x - 4.5
    >>> round(float(kappa_from_background(log_r[:n0])), 2)
    1.26
    >>> log_w = pooled_kappa_log_weights(log_r[None], (n0, n1))
    >>> round(float(kappa_from_background(log_r, jnp.exp(log_w))), 2)
    1.05
    """
    log_odds = jnp.asarray(log_odds)
    n_events = np.asarray(n_events)
    shape_ok = log_odds.ndim == 2 and n_events.shape == (log_odds.shape[0] + 1,)
    if not shape_ok or n_events.sum() != log_odds.shape[-1]:
        raise ValueError(
            f"log_odds must be (P, M) with n_events = (n_background, n per point...) of length P + 1 summing "
            f"to M; got log_odds {log_odds.shape} and n_events {n_events.tolist()}"
        )
    if np.any(n_events <= 0):
        raise ValueError(f"every sample of the pool needs events; got n_events {n_events.tolist()}")
    return _pooled_log_weights(log_odds, jnp.log(jnp.asarray(n_events, log_odds.dtype)), max_iter, tol)


@partial(jax.jit, static_argnames=("max_iter", "tol"))
def _pooled_log_weights(log_r, log_n, max_iter: int, tol: float) -> jax.Array:
    def log_d(log_c):  # log D(x_j) = log(n_0 + sum_p n_p r_p / c_p)
        terms = jnp.concatenate([jnp.broadcast_to(log_n[0], (1, log_r.shape[1])),
                                 log_r + (log_n[1:] - log_c)[:, None]])  # fmt: skip
        return logsumexp(terms, axis=0)

    def step(carry):
        log_c, _, i = carry
        new = logsumexp(log_r - log_d(log_c)[None], axis=1)
        return new, jnp.max(jnp.abs(new - log_c)), i + 1

    init = (jnp.zeros(log_r.shape[0], log_r.dtype), jnp.asarray(jnp.inf, log_r.dtype), 0)
    log_c, _, _ = jax.lax.while_loop(lambda c: (c[1] > tol) & (c[2] < max_iter), step, init)
    return log_n[0] - log_d(log_c)


class KappaSample(NamedTuple):
    """The events (and weights) that fix ``kappa(theta) = 1 / E_B[f / (1 - f)]`` of a classifier.

    Attributes:
        x: ``(M, D)`` background events held out of the classifier's training, possibly pooled
            with held-out simulated signal (:meth:`PawsClassifier.kappa_sample`).
        log_weight: ``(M,)`` log-weights estimating background expectations
            (:func:`pooled_kappa_log_weights`), or None for plain background events.
    """

    x: jax.Array
    log_weight: jax.Array | None = None


# --------------------------------------------------------------------------------------------
# The parametrised classifier
# --------------------------------------------------------------------------------------------


def parametric_inputs(x: ArrayLike, theta: ArrayLike) -> jax.Array:
    """Classifier inputs ``[x, m_x, m_y]``: ``(N, D + 2)``; ``theta`` is ``(N, 2)`` or one ``(2,)`` point."""
    x = jnp.asarray(x)
    theta = jnp.broadcast_to(jnp.asarray(theta, x.dtype), (x.shape[0], 2))
    return jnp.concatenate([x, theta], -1)


@partial(jax.jit, static_argnames="config")
def train_parametric_classifier(
    key: jax.Array, sample: ParametricSample, config: ClassifierConfig = PAWS_MLP
) -> tuple[ClassifierParams, History]:
    """Train ``f(x; m_x, m_y)`` on all mass points in one program (``config.n_runs`` runs as one vmap).

    Binary cross-entropy of signal (``y = 1``, each event at its own masses) against background
    (:func:`parametric_training_set`) with the standardisation, class balancing, validation
    split and early stopping of :func:`gbijax.classifiers.train_classifier` (reference network:
    :data:`gbijax.classifiers.PAWS_MLP`, MLP 256-128-64, batch 1024, up to 200 epochs).

    Returns:
        ``(params, history)`` stacked along a leading ``n_runs`` axis.
    """
    inputs = parametric_inputs(sample.x, sample.theta)
    return train_ensemble(key, inputs, sample.y, sample.weight, config)


class PawsClassifier(NamedTuple):
    """A trained parametrised classifier ready for :func:`fit_paws`.

    Attributes:
        log_ratio_fn: its :data:`LogRatioFn` (:func:`classifier_log_ratio`).
        params: the trained runs (stacked, averaged in :func:`parametric_logit`).
        mass_bounds: the trained mass range ``(lo, hi)`` (TeV): use it as ``PawsConfig.mass_bounds``.
        history: the training history.
        log_kappa: ``log kappa`` from the training set's class balance (:func:`kappa_from_counts`,
            averaged over the grid; the training set gives every point the same balance, so it is
            0 up to rounding of the background count per point).
        points: ``(P, 2)`` the trained grid points (None when not recorded).
        config: the classifier's settings (None when not recorded).
    """

    log_ratio_fn: LogRatioFn
    params: ClassifierParams
    mass_bounds: tuple[float, float]
    history: History
    log_kappa: float = 0.0
    points: np.ndarray | None = None
    config: ClassifierConfig | None = None

    def ratio_data(
        self, x: ArrayLike, kappa_background: ArrayLike | KappaSample | GridSpline | None = None
    ) -> ClassifierRatio:
        """The :class:`ClassifierRatio` of events ``x``.

        Args:
            x: ``(N, D)`` events to fit.
            kappa_background: the events that fix ``kappa(theta) = 1 / E_B[f / (1 - f)]``: a
                :class:`KappaSample` (best: background pooled with held-out simulated signal,
                :meth:`kappa_sample`), or ``(M, D)`` background events held out of the
                classifier's training (tens of thousands at least: see :class:`ClassifierRatio`);
                or such a ``kappa`` tabulated once (:meth:`kappa_table`, the fast path); None
                uses :attr:`log_kappa`, the class balance.
        """
        x = jnp.asarray(x, jnp.float32)
        if kappa_background is None:
            return ClassifierRatio(x, self.params, None, self.log_kappa)
        if isinstance(kappa_background, GridSpline):
            return ClassifierRatio(x, self.params, None, kappa_background)
        if not isinstance(kappa_background, KappaSample):
            kappa_background = KappaSample(kappa_background)
        return ClassifierRatio(x, self.params, jnp.asarray(kappa_background.x, jnp.float32),
                               background_log_weight=kappa_background.log_weight)  # fmt: skip

    def kappa_sample(self, background: ArrayLike, signal: ArrayLike) -> KappaSample:
        """Background pooled with simulated signal at every trained point, weighted for ``kappa``.

        Both must be held out of the classifier's training (its ``f`` is biased on its own
        training events). The classifier is evaluated once at every grid point on the pool and
        :func:`pooled_kappa_log_weights` gives the weights; ``kappa(theta)`` at any ``theta`` is
        then the weighted :func:`kappa_from_background` on the pool.

        Args:
            background: ``(M_B, D)`` background events (in GBI: more generator samples).
            signal: ``(P, n, D)`` simulated signal, ``n`` events at each of :attr:`points`
                (e.g. :func:`toy_signal_grid` with a fresh key).

        Raises:
            ValueError: the classifier has no recorded grid, or ``signal`` does not match it.
        """
        if self.points is None or self.config is None:
            raise ValueError("this PawsClassifier has no recorded grid points and config "
                             "(train_toy_paws records them)")
        background, signal = jnp.asarray(background, jnp.float32), jnp.asarray(signal, jnp.float32)
        p, dim = len(self.points), background.shape[1]
        if signal.ndim != 3 or signal.shape[0] != p or signal.shape[2] != dim:
            raise ValueError(f"signal must be (P, n, D) = ({p}, n, {dim}) at the classifier's grid points; "
                             f"got {signal.shape}")  # fmt: skip
        pool = jnp.concatenate([background, signal.reshape(-1, signal.shape[2])])
        log_odds = _grid_logits(self.params, pool, jnp.asarray(self.points, jnp.float32), self.config)
        n_events = (background.shape[0],) + (signal.shape[1],) * signal.shape[0]
        return KappaSample(pool, pooled_kappa_log_weights(log_odds, n_events))

    def kappa_table(self, kappa_background: ArrayLike | KappaSample, step: float = 0.01) -> GridSpline:
        """``log kappa(theta)`` evaluated once on a fine mass grid, as a cubic spline in ``theta``.

        ``kappa(theta) = 1 / E_B[f / (1 - f)]`` from tens of thousands of events costs ten times
        the data's own classifier evaluations at every step of a fit. With a smooth activation
        (``ClassifierConfig.activation = "silu"``) it is a smooth function of the masses, and
        :func:`grid_spline` through its values at the nodes of a ``step`` grid over the trained
        square reproduces it: on the toy (20,000 background events pooled with 250 simulated
        signal events at each of 78 points, 10 GeV nodes) within 3e-3 of the direct evaluation
        (rms 3e-4), and 8 coverage pseudo-experiments gave the same fitted ``mu`` (to 2e-6),
        masses (to 0.1 GeV) and intervals, 9x faster. A ReLU classifier is only piecewise linear
        in the masses: the spline's curvature then differs from the kinked function's and the
        Fisher errors of a fit can fail, so such a classifier is refused. Pass the table to
        :meth:`ratio_data` in place of the events.

        Args:
            kappa_background: the events of :meth:`ratio_data` (a :class:`KappaSample` or
                ``(M, D)`` background events).
            step: largest node spacing in TeV (the trained range is divided evenly).

        Raises:
            ValueError: no recorded classifier config, a piecewise-linear activation
                (:data:`gbijax.nn.PIECEWISE_LINEAR`), or a step that gives fewer than 4 nodes.
        """
        if self.config is None:
            raise ValueError("this PawsClassifier has no recorded config (train_toy_paws records it)")
        if self.config.activation in PIECEWISE_LINEAR:
            raise ValueError(f"a kappa table needs a classifier that is smooth in the masses: its activation "
                             f"{self.config.activation!r} is piecewise linear, where the spline's curvature "
                             "is not the ratio's and Fisher errors fail (train with e.g. 'silu', or pass the "
                             "kappa events to ratio_data directly)")  # fmt: skip
        lo, hi = self.mass_bounds
        n = int(np.ceil((hi - lo) / step - 1e-9)) + 1 if step > 0 else 0
        if n < 4:
            raise ValueError(f"step must be > 0 and give at least 4 nodes over the mass range "
                             f"{self.mass_bounds}; got {step}")  # fmt: skip
        if not isinstance(kappa_background, KappaSample):
            kappa_background = KappaSample(kappa_background)
        axis = np.linspace(lo, hi, n)
        points = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
        log_kappa = _grid_log_kappa(self.params, jnp.asarray(kappa_background.x, jnp.float32),
                                    kappa_background.log_weight, jnp.asarray(points, jnp.float32),
                                    self.config)  # fmt: skip
        return grid_spline(np.asarray(log_kappa).reshape(n, n), lo, axis[1] - axis[0])


TOY_PAWS_GRID = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
"""Default mass grid of :func:`train_toy_paws` (TeV): 100 GeV steps, plus 50 GeV so that a
100 GeV mass is not on the edge of the trained range."""

REFERENCE_PAWS_GRID = tuple(round(0.05 * i, 2) for i in range(1, 13))
"""The reference's mass grid (TeV): 50, 100, ..., 600 GeV in 50 GeV steps (144 pairs, 78 with
``m_x >= m_y``)."""


def train_toy_paws(
    key: jax.Array, background: ArrayLike, n_per_point: int, config: ClassifierConfig = PAWS_MLP,
    grid: Sequence[float] = TOY_PAWS_GRID, region=DEFAULT_SR, ordered: bool = True,
) -> PawsClassifier:  # fmt: skip
    """PAWS-GBI's classifier on the toy: simulated parametric signal on a mass grid against ``background``.

    The signal is the toy's ``W' -> X Y`` family, ``n_per_point`` events at every ``(m_x, m_y)``
    pair of ``grid`` (:func:`mass_grid_points`) with ``m_x >= m_y`` when ``ordered`` (the jets
    are ordered by mass, so the other half is the same physics; fit with
    ``PawsConfig(ordered=True)``, the default); the background class is ``background`` (in
    GBI: the generator's signal-region samples). One vmapped program trains all points
    (:func:`train_parametric_classifier`).
    """
    points = mass_grid_points(grid)
    if ordered:
        points = points[points[:, 0] >= points[:, 1]]
    k_sig, k_set, k_train = jax.random.split(key, 3)
    signal = toy_signal_grid(k_sig, n_per_point, points, region)
    sample = parametric_training_set(k_set, signal, points, jnp.asarray(background, jnp.float32))
    params, history = train_parametric_classifier(k_train, sample, config)
    bounds = (float(np.min(points)), float(np.max(points)))
    log_kappa = float(np.log(np.mean(np.asarray(kappa_from_counts(sample, points, balance=config.balance)))))
    return PawsClassifier(classifier_log_ratio(config), params, bounds, history, log_kappa, points, config)


@partial(jax.jit, static_argnames="config")
def _grid_logits(params, x, points, config: ClassifierConfig) -> jax.Array:
    """``(P, M)`` ``logit f(x; theta_p)`` at every point, one point at a time (memory ``M``)."""
    return jax.lax.map(lambda theta: parametric_logit(params, x, theta, config), points)


@partial(jax.jit, static_argnames="config")
def _grid_log_kappa(params, x, log_weight, points, config: ClassifierConfig) -> jax.Array:
    """``(P,)`` ``log kappa(theta_p)`` on the weighted events ``x``, one point at a time (memory ``M``)."""
    at = lambda theta: _log_kappa_background(parametric_logit(params, x, theta, config), log_weight)
    return jax.lax.map(at, points)


def parametric_logit(
    params: ClassifierParams, x: ArrayLike, theta: ArrayLike, config: ClassifierConfig
) -> jax.Array:
    """``(N,)`` ``logit f(x; theta)`` of the ensemble (runs combined by ``config.average``)."""
    logits = ensemble_logits(params, parametric_inputs(x, theta), config)
    return average_logits(logits, config.average)


class ClassifierRatio(NamedTuple):
    """The data of :func:`classifier_log_ratio`: events, the classifier and its class-balance correction.

    Attributes:
        x: ``(N, D)`` events to evaluate (the signal-region data).
        params: the trained classifier (stacked runs) from :func:`train_parametric_classifier`.
        background: ``(M, D)`` background sample for ``kappa = 1 / E_B[f / (1 - f)]`` at every
            ``theta`` (:func:`kappa_from_background`), or None to use ``log_kappa``.
        log_kappa: when ``background`` is None: the fixed ``log kappa``, e.g. the log of
            :func:`kappa_from_counts` (the same at every point for a balanced training set), or
            ``log kappa(theta)`` tabulated from background events (:meth:`PawsClassifier.kappa_table`).
        background_log_weight: ``(M,)`` log-weights of the ``background`` events
            (:func:`pooled_kappa_log_weights`), or None for equal weights.

    Which ``kappa`` (measured on the toy, 200 pseudo-experiments at ``S/sqrt(B) = 1``): the
    self-normalisation on background events the classifier was *not* trained on gives calibrated
    ``mu`` intervals (20,000 held-out events: 68% / 95% coverage 0.670 / 0.945). The class-balance
    ``kappa`` trusts the classifier's calibration at every ``theta`` and is not usable as is
    (coverage 0.375 / 0.710, a median false signal of ``Z = 8`` with no signal injected), and the
    classifier's own training events make ``kappa`` biased (their ``f`` is pushed down). A small
    sample biases it too where the ratio is heavy-tailed (the sample mean of a few thousand
    ratios is usually below the true mean, by an amount that depends on ``theta``: 5,000 events
    move the fitted ``m_Y`` by +5-15 GeV, with the exact ratio as well). Its noise adds to the
    data's own: with as many ``kappa`` events as data events the fit found a false signal of
    local ``Z = 5.3`` on 20,000 toy background events (2.8 with 100,000 ``kappa`` events, 2.6 with
    150,000): use several times the number of events fitted. Its error also changes with
    ``theta`` and moves the fitted masses: with the exact toy ratio and ``kappa`` from 20,000
    background events, ``-2 Delta l`` of the true masses on a large sample at ``S/sqrt(B) = 1``
    (scaled to 4,000 events) was 0.0-56 over six background samples (the 68% contour needs
    <= 2.30); pooled with 250 held-out simulated signal events per grid point
    (:meth:`PawsClassifier.kappa_sample`, :func:`pooled_kappa_log_weights`) 0.0-0.14, and with
    a trained classifier 0.5-0.9 where the background events alone gave 23-38. A ten times larger
    pool (200,000 background events, 1,000 signal events per point) left the trained classifier's
    0.5-0.6 as it was: that part is the classifier's own error in its mass dependence (an Asimov
    fit, :func:`gbijax.inference.mixture_asimov_weights`, measures it, and the closure test at a
    fit's own point, :func:`paws_closure`, corrects for it).
    """

    x: jax.Array
    params: ClassifierParams
    background: jax.Array | None = None
    log_kappa: jax.Array | float | GridSpline = 0.0
    background_log_weight: jax.Array | None = None


@functools.cache
def classifier_log_ratio(config: ClassifierConfig) -> LogRatioFn:
    """The :data:`LogRatioFn` of a parametrised classifier: ``log Lambda = log kappa(theta) + logit f``.

    ``log_ratio_fn(data: ClassifierRatio, theta)``; cached per ``config``, so repeated calls give
    the same function and jitted fits compile once.
    """

    def log_ratio(data: ClassifierRatio, theta: jax.Array) -> jax.Array:
        logit = parametric_logit(data.params, data.x, theta, config)
        if data.background is None:
            table = isinstance(data.log_kappa, GridSpline)
            return logit + (data.log_kappa(theta) if table else data.log_kappa)
        background = parametric_logit(data.params, data.background, theta, config)
        return logit + _log_kappa_background(background, data.background_log_weight)

    return log_ratio


class ToyRatioData(NamedTuple):
    """Events with their background log-density precomputed, for :func:`toy_log_ratio`.

    Attributes:
        x: ``(N, 5)`` toy events.
        log_b: ``(N,)`` ``log p_B(x)`` on the signal region; non-finite outside it.
    """

    x: jax.Array
    log_b: jax.Array


def toy_ratio_data(x: ArrayLike, region=DEFAULT_SR) -> ToyRatioData:
    """:class:`ToyRatioData` of ``x``: the background density, which does not depend on ``theta``, once."""
    x = jnp.asarray(x)
    return ToyRatioData(x, toy.background_log_prob(x, region))


def toy_log_ratio(data: ArrayLike | ToyRatioData, theta: ArrayLike, region=DEFAULT_SR) -> jax.Array:
    """The exact toy ratio ``log p_S(x | theta) - log p_B(x)`` as a :data:`LogRatioFn` (a perfect classifier).

    Both densities are normalised on ``region`` (static; use the same one in
    :func:`toy_ratio_data`); events outside it get 0, as in
    :func:`gbijax.inference.oracle_log_ratio`. Pass :class:`ToyRatioData` to compute the
    background density once rather than at every ``theta`` (faster to run and to compile).
    """
    data = data if isinstance(data, ToyRatioData) else toy_ratio_data(data, region)
    theta = jnp.asarray(theta)
    log_s = toy.signal_log_prob(data.x, toy.SignalParams(theta[0], theta[1]), region)
    ok = jnp.isfinite(data.log_b) & jnp.isfinite(log_s)
    return jnp.where(ok, jnp.where(ok, log_s, 0.0) - jnp.where(ok, data.log_b, 0.0), 0.0)


def toy_log_ratio_fn(region=DEFAULT_SR) -> LogRatioFn:
    """:func:`toy_log_ratio` on ``region`` as a :data:`LogRatioFn`, one function object per region.

    The fits take the ratio function as a static argument, so the same object lets repeated calls
    (chunks of pseudo-experiments, closure tests) reuse one compilation.
    """
    lo, hi = region
    return _toy_log_ratio_fn((float(lo), float(hi)))


@functools.cache
def _toy_log_ratio_fn(region: tuple[float, float]) -> LogRatioFn:
    return partial(toy_log_ratio, region=region)


# --------------------------------------------------------------------------------------------
# The likelihood
# --------------------------------------------------------------------------------------------


class PawsConfig(NamedTuple):
    """Static settings of the PAWS fit (hashable).

    Attributes:
        mass_bounds: the trained mass range ``(lo, hi)`` in TeV; masses are fitted inside it and
            requested outside it raise.
        mu_bounds: bounds on ``mu`` (``mu_min < 0`` gives the unbounded MLE for coverage studies).
        n_starts: random starts of :func:`fit_paws` (reference: 10).
        n_steps: Adam steps per start.
        learning_rate: peak Adam learning rate on the sigmoid logits of the masses and ``alpha``
            (cosine decay to 0 over ``n_steps``; the reference uses a constant 0.01).
        mu_floor: the profiled ``mu`` is raised to at least this value when the mass gradient is
            taken, so that starts where the profile is flat (``mu_hat = 0``) still move.
        n_best: the fit also reports the median of the best ``n_best`` starts (reference: 5).
        polish_steps: Levenberg-Marquardt steps from the best start (0: none).
        n_profile: points per 1-D profile scan (0: Gaussian intervals from the Fisher matrix).
        profile_steps: Levenberg-Marquardt re-fit steps per profile point.
        grid_points: points per axis of the coarse landscape in :func:`fit_paws` (0: none); its
            best point is added to the starts.
        cl: confidence level of the intervals.
        ordered: report ``m_x >= m_y`` (the likelihood is symmetric under ``X <-> Y`` when the
            jets are ordered by mass, as in the toy and LHCO).
        batch_size: mass points profiled together (vectorised) in landscapes and scans (memory:
            ``batch_size x N``). 1 (a sequential loop) is fastest on CPU, where every point's
            ``N`` events already vectorise; larger batches fill a GPU.
        n_iter: root-finding steps of each exact ``mu`` profile.
    """

    mass_bounds: tuple[float, float] = MASS_BOUNDS
    mu_bounds: tuple[float, float] = (0.0, 1.0)
    n_starts: int = 10
    n_steps: int = 200
    learning_rate: float = 0.05
    mu_floor: float = 1e-4
    n_best: int = 5
    polish_steps: int = 30
    n_profile: int = 13
    profile_steps: int = 4
    grid_points: int = 12
    cl: float = CL68
    ordered: bool = True
    batch_size: int = 1
    n_iter: int = 50


def _modes(log_ratio_fn, data) -> tuple[tuple[LogRatioFn, ...], tuple[Any, ...]]:
    """One function and its data, or sequences of both (one per decay mode)."""
    if callable(log_ratio_fn):
        return (log_ratio_fn,), (data,)
    fns = tuple(log_ratio_fn)
    if not fns or not isinstance(data, (tuple, list)) or len(data) != len(fns):
        raise ValueError(f"give one data pytree per log-ratio function: {len(fns)} functions, {type(data)}")
    return fns, tuple(data)


def mixing_fractions(alpha: ArrayLike) -> jax.Array:
    """The ``K`` mode fractions from ``K - 1`` stick-breaking fractions ``alpha`` in ``[0, 1]``.

    ``a_1 = alpha_1``, ``a_k = alpha_k prod_{j<k} (1 - alpha_j)``, ``a_K = prod_j (1 - alpha_j)``:
    every box point is a point of the simplex. Two modes: ``(alpha, 1 - alpha)``.

    >>> mixing_fractions(jnp.array([0.25])).tolist()
    [0.25, 0.75]
    """
    alpha = jnp.asarray(alpha)
    rest = jnp.concatenate([jnp.ones(1, alpha.dtype), jnp.cumprod(1.0 - alpha)])
    return rest * jnp.concatenate([alpha, jnp.ones(1, alpha.dtype)])


def _mass_ordered(fns, config: PawsConfig) -> tuple[LogRatioFn, ...]:
    """With ``config.ordered`` the ratios are evaluated at ``(max(m), min(m))``.

    Jets ordered by mass make the likelihood symmetric under ``X <-> Y``; a classifier trained on
    ``m_x >= m_y`` points (or one that learned the two orders slightly differently) is only used
    where it was trained, so the fitted point and its reported mass-ordered version agree.
    """
    if not config.ordered:
        return fns

    def wrap(fn):
        def ordered(data, theta):
            theta = jnp.asarray(theta)
            return fn(data, jnp.stack([jnp.max(theta[:2]), jnp.min(theta[:2])]))

        return ordered

    return tuple(wrap(fn) for fn in fns)


def _log_lambda(fns, datas, theta, alpha) -> jax.Array:
    """``log sum_k a_k Lambda_k(x; theta)`` (one mode: ``log Lambda``)."""
    if len(fns) == 1:
        return fns[0](datas[0], theta)
    logs = jnp.stack([fn(d, theta) for fn, d in zip(fns, datas, strict=True)])
    return logsumexp(logs, axis=0, b=mixing_fractions(alpha).astype(logs.dtype)[:, None])


def _joint(fns, datas, weight) -> Callable[[jax.Array], jax.Array]:
    """``p = (mu, m_x, m_y, alpha...) -> l(p)``."""
    return lambda p: mixture_log_likelihood(p[0], _log_lambda(fns, datas, p[1:3], p[3:]), weight)


def _dtype(fns, datas):
    theta = jnp.zeros(2, jnp.result_type(float))
    return jnp.result_type(*[jax.eval_shape(fn, d, theta).dtype for fn, d in zip(fns, datas, strict=True)])


def _box(n_modes: int, config: PawsConfig, dtype) -> tuple[jax.Array, jax.Array]:
    """Bounds of ``p = (mu, m_x, m_y, alpha_1..alpha_{K-1})``."""
    (m_lo, m_hi), (mu_lo, mu_hi) = config.mass_bounds, config.mu_bounds
    lower = jnp.asarray([mu_lo, m_lo, m_lo] + [0.0] * (n_modes - 1), dtype)
    upper = jnp.asarray([mu_hi, m_hi, m_hi] + [1.0] * (n_modes - 1), dtype)
    return lower, upper


def _check_masses(values, bounds: tuple[float, float], what: str) -> None:
    """ValueError naming the first mass outside the trained range (skipped for traced values)."""
    try:
        arr = np.asarray(values, np.float64)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return
    lo, hi = bounds
    tol = 1e-6 * max(abs(lo), abs(hi), 1.0)  # float32 rounding of the grid ends
    bad = arr[~((arr >= lo - tol) & (arr <= hi + tol))]
    if bad.size:
        raise ValueError(
            f"{what} {float(bad.flat[0]):g} TeV is outside the trained mass grid range [{lo:g}, {hi:g}] TeV: "
            "the parametrised classifier is only defined where it was trained"
        )


def paws_log_likelihood(
    log_ratio_fn: LogRatioFn | Sequence[LogRatioFn], data: Any, mu: ArrayLike, m_x: ArrayLike, m_y: ArrayLike,
    alpha: ArrayLike | None = None, weight: ArrayLike | None = None,
    mass_bounds: tuple[float, float] = MASS_BOUNDS,
) -> jax.Array:  # fmt: skip
    """The PAWS log-likelihood at fixed parameters, relative to background only.

    ``l(mu, m_x, m_y, alpha) = sum_i w_i log(1 + mu (Lambda_alpha(x_i; m_x, m_y) - 1))`` with
    ``Lambda_alpha = sum_k a_k Lambda_k`` (:func:`mixing_fractions` of ``alpha``; one mode:
    ``Lambda`` itself), so ``l(0, ...) = 0``.

    Args:
        log_ratio_fn: a :data:`LogRatioFn`, or one per decay mode.
        data: its data pytree (a tuple of them for several modes).
        mu: signal fraction.
        m_x, m_y: masses in TeV, inside ``mass_bounds``.
        alpha: ``(K - 1,)`` mode fractions (several modes only).
        weight: optional ``(N,)`` event weights.
        mass_bounds: the trained mass range.

    Returns:
        The scalar ``l``.

    Raises:
        ValueError: a mass outside ``mass_bounds``.

    A Gaussian "classifier" ``log Lambda = -(x - m_x)^2 / 2 + 1/2``: three events at 0.3 are all
    signal-like at ``m_x = 0.3``:

    >>> fn = lambda x, theta: 0.5 - 0.5 * (x - theta[0]) ** 2
    >>> x = jnp.full(3, 0.3)
    >>> round(float(paws_log_likelihood(fn, x, 1.0, 0.3, 0.1)), 4)  # 3 log(e^0.5)
    1.5
    """
    fns, datas = _modes(log_ratio_fn, data)
    _check_masses([m_x, m_y], mass_bounds, "mass")
    alpha = jnp.zeros(0) if alpha is None else jnp.atleast_1d(jnp.asarray(alpha, float))
    if alpha.shape[0] != len(fns) - 1:
        raise ValueError(f"{len(fns)} decay modes need {len(fns) - 1} alpha values, got {alpha.shape[0]}")
    p = jnp.concatenate([jnp.stack([jnp.asarray(v, alpha.dtype) for v in (mu, m_x, m_y)]), alpha])
    return _log_likelihood_core(fns, datas, weight, p)


@partial(jax.jit, static_argnames=("fns",))
def _log_likelihood_core(fns, datas, weight, p):
    return _joint(fns, datas, weight)(p.astype(_dtype(fns, datas)))


# --------------------------------------------------------------------------------------------
# Landscapes
# --------------------------------------------------------------------------------------------


class Landscape(NamedTuple):
    """The profile log-likelihood on an ``(m_x, m_y)`` grid (``mu`` profiled exactly at each point).

    Attributes:
        m_x, m_y: ``(G_x,)``, ``(G_y,)`` the grid axes (TeV).
        log_likelihood: ``(G_x, G_y)`` ``max_mu l(mu, m_x, m_y)`` (rows ``m_x``).
        mu_hat: ``(G_x, G_y)`` the profiled ``mu``.
    """

    m_x: jax.Array
    m_y: jax.Array
    log_likelihood: jax.Array
    mu_hat: jax.Array


def _landscape(fns, datas, weight, m_x, m_y, alpha, mu_lo, mu_hi, batch_size: int, n_iter: int) -> Landscape:
    thetas = jnp.stack(jnp.meshgrid(m_x, m_y, indexing="ij"), -1).reshape(-1, 2)

    def at(theta):
        return maximize_mixture(_log_lambda(fns, datas, theta, alpha), weight, mu_lo, mu_hi, n_iter)

    mu, ll = jax.lax.map(at, thetas, batch_size=batch_size)
    shape = (m_x.shape[0], m_y.shape[0])
    return Landscape(m_x, m_y, ll.reshape(shape), mu.reshape(shape))


def paws_landscape(
    log_ratio_fn: LogRatioFn | Sequence[LogRatioFn], data: Any, m_x: ArrayLike, m_y: ArrayLike,
    weight: ArrayLike | None = None, alpha: ArrayLike | None = None, config: PawsConfig = PawsConfig(),
) -> Landscape:  # fmt: skip
    """The profile log-likelihood landscape ``max_mu l(mu, m_x, m_y)`` on a grid, in one jit call.

    At every grid point the ``(N,)`` ratios are evaluated once and ``mu`` is profiled exactly by
    :func:`gbijax.inference.maximize_mixture` (the zero of the concave likelihood's score, within
    ``config.mu_bounds``); the points run vmapped in batches of ``config.batch_size`` inside one
    ``lax.map``, so a 100 x 100 landscape is one compiled program. Several modes: at fixed
    ``alpha`` (e.g. the fitted one). Contours: :func:`landscape_region`.

    Args:
        log_ratio_fn, data: the ratio model(s) and data (see :func:`paws_log_likelihood`).
        m_x, m_y: ``(G_x,)``, ``(G_y,)`` grid axes inside ``config.mass_bounds``.
        weight: optional ``(N,)`` event weights.
        alpha: ``(K - 1,)`` mode fractions (several modes only).
        config: :class:`PawsConfig` (``mass_bounds``, ``mu_bounds``, ``batch_size``, ``n_iter``).

    Raises:
        ValueError: a grid mass outside ``config.mass_bounds``.
    """
    fns, datas = _modes(log_ratio_fn, data)
    _check_masses(m_x, config.mass_bounds, "landscape m_x")
    _check_masses(m_y, config.mass_bounds, "landscape m_y")
    alpha = jnp.full(len(fns) - 1, 0.5) if alpha is None else jnp.atleast_1d(jnp.asarray(alpha, float))
    m_x, m_y = jnp.asarray(m_x, float), jnp.asarray(m_y, float)
    return _landscape_core(fns, datas, weight, m_x, m_y, alpha, config)


@partial(jax.jit, static_argnames=("fns", "config"))
def _landscape_core(fns, datas, weight, m_x, m_y, alpha, config: PawsConfig) -> Landscape:
    fns = _mass_ordered(fns, config)
    dtype = _dtype(fns, datas)
    mu_lo, mu_hi = (jnp.asarray(v, dtype) for v in config.mu_bounds)
    return _landscape(fns, datas, weight, m_x.astype(dtype), m_y.astype(dtype), alpha.astype(dtype),
                      mu_lo, mu_hi, config.batch_size, config.n_iter)  # fmt: skip


def landscape_region(landscape: Landscape, cl: ArrayLike = CL68, log_likelihood_max: ArrayLike | None = None):
    """The 2-D Wilks confidence region ``-2 (l - l_max) <= t`` on the landscape grid: ``(G_x, G_y)`` bool.

    ``t = wilks_threshold(cl, n_params=2)``: 2.30 at 68.27%, 5.99 at 95%. ``l_max`` defaults to
    the landscape's maximum; pass the fit's (continuous) maximum for contours around it.
    """
    ll = landscape.log_likelihood
    l_max = jnp.max(ll) if log_likelihood_max is None else jnp.maximum(log_likelihood_max, jnp.max(ll))
    return -2.0 * (ll - l_max) <= wilks_threshold(cl, n_params=2)


def landscape_intervals(landscape: Landscape, cl: ArrayLike = CL68) -> tuple[Interval, Interval]:
    """1-D profile intervals of ``m_x`` and ``m_y`` from the landscape (the other mass profiled on the grid).

    ``l_p(m_x) = max_{m_y} l`` along each row (columns for ``m_y``), then
    :func:`gbijax.inference.profile_scan` with ``t = wilks_threshold(cl)``.
    """
    t = wilks_threshold(cl)
    ll = landscape.log_likelihood
    return (profile_scan(landscape.m_x, jnp.max(ll, 1), t), profile_scan(landscape.m_y, jnp.max(ll, 0), t))


# --------------------------------------------------------------------------------------------
# The multi-start fit
# --------------------------------------------------------------------------------------------


class StartFits(NamedTuple):
    """Every start of the multi-start fit.

    Attributes:
        params: ``(S, P)`` ``(mu, m_x, m_y, alpha...)``: the best point of each start's path
            (``mu`` the exact profile maximum at its masses).
        log_likelihood: ``(S,)`` ``l`` there.
    """

    params: jax.Array
    log_likelihood: jax.Array


def _to_logits(v, lo, hi):
    u = jnp.clip((v - lo) / (hi - lo), 1e-4, 1.0 - 1e-4)
    return jnp.log(u) - jnp.log1p(-u)


def _fit_one_start(fns, datas, weight, q0, lower, upper, config: PawsConfig):
    """Adam on the sigmoid logits of ``q = (m_x, m_y, alpha...)`` with ``mu`` profiled exactly.

    At every step ``mu_hat(q)`` is the exact profile maximum (:func:`maximize_mixture`); the
    gradient is that of ``l(max(mu_hat, mu_floor), q)`` in ``q`` at fixed ``mu``: at the profile
    maximum ``dl/dmu = 0``, so this is the gradient of the profile likelihood whenever
    ``mu_hat >= mu_floor``. One forward pass and one pullback of the ratios per step; the best
    point of the path (after 0 to ``n_steps`` updates) is returned.
    """
    lo, hi, mu_lo, mu_hi = lower[1:], upper[1:], lower[0], upper[0]
    floor = jnp.clip(jnp.asarray(config.mu_floor, lower.dtype), mu_lo, mu_hi)
    log_lam = lambda q: _log_lambda(fns, datas, q[:2], q[2:])
    to_q = lambda u: lo + (hi - lo) * jax.nn.sigmoid(u)
    opt = optax.adam(optax.cosine_decay_schedule(config.learning_rate, max(config.n_steps, 1)))

    def step(carry, _):
        u, state, best_p, best_l = carry
        ll, pullback = jax.vjp(lambda v: log_lam(to_q(v)), u)
        mu, value = maximize_mixture(ll, weight, mu_lo, mu_hi, config.n_iter)
        better = value > best_l  # NaN never wins
        best_p = jnp.where(better, jnp.concatenate([mu[None], to_q(u)]), best_p)
        floored = jnp.maximum(mu, floor)
        (grad,) = pullback(jax.grad(lambda r: -mixture_log_likelihood(floored, r, weight))(ll))
        updates, state = opt.update(jnp.where(jnp.isfinite(grad), grad, 0.0), state, u)
        return (optax.apply_updates(u, updates), state, best_p, jnp.where(better, value, best_l)), None

    u0 = _to_logits(q0, lo, hi)
    init = (u0, opt.init(u0), jnp.concatenate([lower[:1], to_q(u0)]), jnp.asarray(-jnp.inf, lower.dtype))
    (_, _, p, value), _ = jax.lax.scan(step, init, None, length=config.n_steps + 1)
    return p, value


def _order(p: jax.Array, ordered: bool) -> jax.Array:
    """Permutation putting ``m_x >= m_y`` (identity when not ``ordered``)."""
    idx = jnp.arange(p.shape[-1])
    if not ordered:
        return idx
    return jnp.where(p[2] > p[1], idx.at[1].set(2).at[2].set(1), idx)


def _starts_core(fns, datas, weight, starts, config: PawsConfig) -> StartFits:
    fns = _mass_ordered(fns, config)
    dtype = _dtype(fns, datas)
    lower, upper = _box(len(fns), config, dtype)
    one = lambda q0: _fit_one_start(fns, datas, weight, q0, lower, upper, config)
    params, ll = jax.vmap(one)(starts.astype(dtype))
    return StartFits(params, ll)


def _validate_starts(starts, n_modes: int, config: PawsConfig) -> jax.Array:
    """``(S, 2)`` masses or ``(S, 2 + K - 1)`` masses and alphas; alphas default to 0.5."""
    starts = jnp.atleast_2d(jnp.asarray(starts, float))
    if starts.shape[1] not in (2, 1 + n_modes):
        raise ValueError(f"starts must be (S, 2) masses or (S, {1 + n_modes}) masses, alphas: {starts.shape}")
    _check_masses(starts[:, :2], config.mass_bounds, "start mass")
    if starts.shape[1] == 2 and n_modes > 1:
        starts = jnp.concatenate([starts, jnp.full((starts.shape[0], n_modes - 1), 0.5)], 1)
    return starts


def fit_starts(
    log_ratio_fn: LogRatioFn | Sequence[LogRatioFn], data: Any, starts: ArrayLike,
    weight: ArrayLike | None = None, config: PawsConfig = PawsConfig(),
) -> StartFits:  # fmt: skip
    """Fit from many starts as one ``vmap``: Adam on the bounded masses (and ``alpha``), ``mu`` profiled.

    Each start runs ``config.n_steps`` Adam steps (cosine-decayed ``config.learning_rate``) on
    ``u``, with ``m = lo + (hi - lo) sigmoid(u)`` inside ``config.mass_bounds`` and
    ``alpha = sigmoid(u_alpha)``; at every step ``mu`` is the exact profile maximum
    :func:`gbijax.inference.maximize_mixture` within ``config.mu_bounds`` (floored at
    ``config.mu_floor`` for the gradient, see :class:`PawsConfig`). The result is the best point
    of each path.

    Args:
        log_ratio_fn, data: the ratio model(s) and data (see :func:`paws_log_likelihood`).
        starts: ``(S, 2)`` start masses, or ``(S, 2 + K - 1)`` masses and alphas.
        weight: optional ``(N,)`` event weights.
        config: :class:`PawsConfig`.

    Returns:
        :class:`StartFits`.

    Raises:
        ValueError: a start mass outside ``config.mass_bounds``.
    """
    fns, datas = _modes(log_ratio_fn, data)
    return _fit_starts_jit(fns, datas, weight, _validate_starts(starts, len(fns), config), config)


_fit_starts_jit = jax.jit(_starts_core, static_argnames=("fns", "config"))


class PawsFit(NamedTuple):
    """Result of :func:`fit_paws` (fields as :class:`gbijax.inference.JointFit`, plus ``alpha`` and starts).

    Parameters are ordered ``p = (mu, m_x, m_y, alpha_1, ..., alpha_{K-1})``.

    Attributes:
        mu_hat: fitted signal fraction.
        params: fitted masses (``m_x >= m_y`` when ``config.ordered``).
        alpha: ``(K - 1,)`` fitted mode fractions (empty for one mode; :func:`mixing_fractions`).
        log_likelihood_max: ``l(mu_hat, theta_hat) - l(0)``.
        covariance: ``(P, P)`` inverse observed Fisher information ``I = -d^2 l / dp^2`` at the
            maximum (what :func:`gbijax.inference.fisher_uncertainty` of ``-l`` gives).
        std: ``(P,)`` Fisher standard errors.
        mu_interval, m_x_interval, m_y_interval: profile-likelihood intervals (the other parameters
            re-fitted at every scan point) at ``config.cl``; Gaussian ones when ``n_profile = 0``.
        alpha_interval: the same for ``alpha``, fields with a leading ``K - 1`` axis.
        q0, z, p_value: local discovery test (no look-elsewhere correction: see
            :func:`global_significance`).
        landscape: the coarse :class:`Landscape` (``config.grid_points`` per axis).
        starts: every start's result (:class:`StartFits`).
        median_best: ``(P,)`` median over the best ``config.n_best`` starts (the reference's
            estimate; masses ordered per start when ``config.ordered``).
        mu_interval_95: the 95% interval of ``mu`` from the same profile scan (``-2 Delta l <=
            3.84``; the scan spans ``+- (2 sqrt(t) + 0.5) sigma``, enough for 95% when ``t >= 1``).
    """

    mu_hat: jax.Array
    params: toy.SignalParams
    alpha: jax.Array
    log_likelihood_max: jax.Array
    covariance: jax.Array
    std: jax.Array
    mu_interval: Interval
    m_x_interval: Interval
    m_y_interval: Interval
    alpha_interval: Interval
    q0: jax.Array
    z: jax.Array
    p_value: jax.Array
    landscape: Landscape
    starts: StartFits
    median_best: jax.Array
    mu_interval_95: Interval

    @property
    def vector(self) -> jax.Array:
        """The fitted parameters as one ``(P,)`` array ``(mu, m_x, m_y, alpha...)``."""
        return jnp.concatenate([jnp.stack([self.mu_hat, self.params.m_x, self.params.m_y]), self.alpha])


def _parameter_vector(fit) -> jax.Array:
    return fit.vector if isinstance(fit, PawsFit) else jnp.asarray(fit, float)


def _polish_and_profile(f, p0, lower, upper, threshold, config: PawsConfig):
    """The final fit and every profile re-fit as one ``lax.scan`` over Levenberg-Marquardt jobs.

    Job 0 polishes the best start ``p0`` in all parameters (``config.polish_steps`` steps), orders
    the masses, and gives the covariance ``I^-1`` from the Fisher information ``I = -d^2 l / dp^2``
    at the maximum. Job ``1 + k n + j`` fixes parameter ``k`` at point ``j`` of the scan
    ``hat_k +- (2 sqrt(t) + 0.5) sigma_k`` (clipped to the box) and re-fits the others by
    ``config.profile_steps`` steps from the linear-regression warm start
    ``p_hat + cov[:, k] / cov[k, k] (v - hat_k)``. One traced re-fit for all jobs (fast to compile).

    Returns:
        ``(p_hat, l_max, covariance, (P, n) scan grids, (P, n) profile l)``.
    """
    n_par, n_prof = p0.shape[0], max(config.n_profile, 1)

    def job(carry, j):
        p_hat, _, cov = carry
        main = j == 0
        k, i = jnp.maximum(j - 1, 0) // n_prof, jnp.maximum(j - 1, 0) % n_prof
        v = _profile_grids(p_hat, cov, lower, upper, threshold, n_prof)[k, i]
        slope = cov[:, k] / cov[k, k]
        start = jnp.clip(p_hat + jnp.where(jnp.isfinite(slope), slope, 0.0) * (v - p_hat[k]), lower, upper)
        start = jnp.where(jnp.isfinite(f(start.at[k].set(v))), start.at[k].set(v), p_hat.at[k].set(v))
        start = jnp.where(main, p0, start)
        free = main | (jnp.arange(n_par) != k)
        steps = jnp.where(main, config.polish_steps, config.profile_steps)
        p, value, info = _lm_maximize(f, start, lower, upper, free, steps)
        order = _order(p, config.ordered)
        new = (p[order], value, jnp.linalg.inv(info)[order][:, order])
        return jax.tree.map(lambda a, b: jnp.where(main, a, b), new, carry), value

    init = (p0, jnp.asarray(-jnp.inf, p0.dtype), jnp.eye(n_par, dtype=p0.dtype))
    n_jobs = 1 + (n_par * config.n_profile)
    (p_hat, ll_hat, cov), values = jax.lax.scan(job, init, jnp.arange(n_jobs))
    grids = _profile_grids(p_hat, cov, lower, upper, threshold, n_prof)
    scans = values[1:].reshape(n_par, config.n_profile) if config.n_profile else jnp.zeros_like(grids)
    return p_hat, ll_hat, cov, grids, scans


def _random_starts(key, n_starts: int, n_modes: int, lower, upper):
    u = jax.random.uniform(key, (n_starts, 1 + n_modes), lower.dtype)
    return lower[1:] + (upper[1:] - lower[1:]) * u


@partial(jax.jit, static_argnames=("fns", "config"))
def _fit_core(fns, datas, weight, key, starts, config: PawsConfig) -> PawsFit:
    fns = _mass_ordered(fns, config)
    dtype = _dtype(fns, datas)
    n_modes = len(fns)
    lower, upper = _box(n_modes, config, dtype)
    f = _joint(fns, datas, weight)
    starts = _random_starts(key, config.n_starts, n_modes, lower, upper) if starts is None else starts
    starts = starts.astype(dtype)
    half = jnp.full(n_modes - 1, 0.5, dtype)
    if config.grid_points:
        axis = jnp.linspace(lower[1], upper[1], config.grid_points, dtype=dtype)
        land = _landscape(fns, datas, weight, axis, axis, half, lower[0], upper[0], config.batch_size,
                          config.n_iter)  # fmt: skip
        i, j = jnp.unravel_index(jnp.argmax(land.log_likelihood), land.log_likelihood.shape)
        starts = jnp.concatenate([starts, jnp.concatenate([jnp.stack([axis[i], axis[j]]), half])[None]])
    else:
        empty = jnp.zeros((0,), dtype)
        land = Landscape(empty, empty, jnp.zeros((0, 0), dtype), jnp.zeros((0, 0), dtype))
    runs = _starts_core(fns, datas, weight, starts, config)
    best = jnp.argmax(jnp.where(jnp.isnan(runs.log_likelihood), -jnp.inf, runs.log_likelihood))
    threshold = wilks_threshold(config.cl).astype(dtype)
    p_best = runs.params[best]
    p_hat, ll_hat, cov, grids, scans = _polish_and_profile(f, p_best, lower, upper, threshold, config)
    sd = jnp.sqrt(jnp.diag(cov))
    intervals = [_interval(grids[k], scans[k], p_hat[k], ll_hat, sd[k], threshold, config.n_profile > 0)
                 for k in range(p_hat.shape[0])]  # fmt: skip
    alpha_interval = jax.tree.map(lambda *a: jnp.stack(a), *intervals[3:]) if n_modes > 1 else Interval(
        *([jnp.zeros(0, dtype)] * 4 + [jnp.zeros(0, bool)] * 2))  # fmt: skip
    mu_95 = _interval(grids[0], scans[0], p_hat[0], ll_hat, sd[0], wilks_threshold(CL95).astype(dtype),
                      config.n_profile > 0)  # fmt: skip
    test = discovery(ll_hat, jnp.zeros_like(ll_hat), p_hat[0])
    return PawsFit(
        p_hat[0], toy.SignalParams(p_hat[1], p_hat[2]), p_hat[3:], ll_hat, cov, sd, *intervals[:3],
        alpha_interval, test.q0, test.z, test.p_value, land, runs, _median_best(runs, config), mu_95,
    )  # fmt: skip


def _median_best(runs: StartFits, config: PawsConfig) -> jax.Array:
    ordered = jax.vmap(lambda p: p[_order(p, config.ordered)])(runs.params)
    ll = jnp.where(jnp.isnan(runs.log_likelihood), -jnp.inf, runs.log_likelihood)
    top = jnp.argsort(-ll)[: min(config.n_best, ll.shape[0])]
    return jnp.median(ordered[top], axis=0)


def fit_paws(
    log_ratio_fn: LogRatioFn | Sequence[LogRatioFn], data: Any, weight: ArrayLike | None = None, *,
    key: jax.Array | None = None, starts: ArrayLike | None = None, config: PawsConfig = PawsConfig(),
) -> PawsFit:  # fmt: skip
    """The PAWS fit of ``(mu, m_x, m_y[, alpha])`` on signal-region data: estimate, errors, intervals, ``q0``.

    Maximises ``l(mu, theta, alpha) = sum_i w_i log(1 + mu (Lambda_alpha(x_i; theta) - 1))``
    (:func:`paws_log_likelihood`) with the masses bounded to ``config.mass_bounds``, ``alpha`` to
    ``[0, 1]`` and ``mu`` to ``config.mu_bounds``, in one compiled program:

    1. the coarse landscape (``config.grid_points`` per axis, ``mu`` profiled exactly,
       :func:`paws_landscape`), whose best point becomes an extra start;
    2. ``config.n_starts`` random starts (uniform in the box) or the given ``starts``, fitted as
       one ``vmap`` (:func:`fit_starts`); the best is kept, and the median of the best
       ``config.n_best`` is reported as the reference does;
    3. up to ``config.polish_steps`` Levenberg-Marquardt steps in all parameters from the best;
    4. the covariance ``I^-1`` from the observed Fisher information ``I = -d^2 l / dp^2`` at the
       maximum (as :func:`gbijax.inference.fisher_uncertainty` of ``-l``), and for each parameter a
       profile scan of ``config.n_profile`` points (the others re-fitted) giving the
       ``-2 Delta l <= t`` interval, ``t = wilks_threshold(config.cl)``, as
       :func:`gbijax.inference.oracle_joint_fit` does;
    5. the local discovery test ``q0 = 2 (max l - l(mu = 0))``, ``Z = sqrt(q0)`` (``l(0) = 0``).

    At ``mu_hat = 0`` the masses are undefined (flat likelihood, singular Fisher matrix).

    Args:
        log_ratio_fn, data: the ratio model(s) and data (see :func:`paws_log_likelihood`).
        weight: optional ``(N,)`` event weights.
        key: PRNG key of the random starts (needed unless ``starts`` is given).
        starts: ``(S, 2)`` start masses (or ``(S, 2 + K - 1)`` with alphas) instead of random ones.
        config: :class:`PawsConfig`.

    Returns:
        A :class:`PawsFit`.

    Raises:
        ValueError: a start mass outside ``config.mass_bounds``, or neither ``key`` nor ``starts``.
    """
    fns, datas = _modes(log_ratio_fn, data)
    if starts is None and key is None:
        raise ValueError("fit_paws needs a PRNG key for its random starts, or explicit starts")
    if starts is not None:
        starts = _validate_starts(starts, len(fns), config)
    key = jax.random.key(0) if key is None else key
    return _fit_core(fns, datas, weight, key, starts, config)


class PawsClosure(NamedTuple):
    """The closure test of a PAWS fit: simulated signal injected at the fitted point and fitted again.

    Attributes:
        injected: ``(..., P)`` the injected ``(mu, m_x, m_y, alpha...)``.
        fitted: ``(..., P)`` the Asimov fit of the injected data set (:func:`paws_closure`).
        covariance: ``(..., P, P)`` the model's covariance there, ``I^-1`` (the inverse of the
            Fisher information ``I = -d^2 l / dp^2``): what the fit's own intervals assume.
        sandwich: ``(..., P, P)`` the estimator's actual covariance when the learned ratio is not
            the true one, ``I^-1 J I^-1`` with ``J = sum_i w_i s_i s_i^T`` the spread of the per-event
            scores ``s_i = d l_i / dp`` under the injected distribution (equal to ``I^-1`` for an
            exact ratio).
        jacobian: ``(..., 2, 2)`` ``G = d(fitted m_x, m_y) / d(injected m_x, m_y)``, the slope of the
            closure map ``g`` at the injected point (identity for an exact ratio), or None when it was
            not measured (then taken as the identity: the offset is the same at every mass).
    """

    injected: jax.Array
    fitted: jax.Array
    covariance: jax.Array
    sandwich: jax.Array
    jacobian: jax.Array | None = None

    @property
    def mu_scale(self) -> jax.Array:
        """``mu`` fitted over ``mu`` injected: the ratio's response to signal (1 when calibrated)."""
        return self.fitted[..., 0] / self.injected[..., 0]

    @property
    def mass_offset(self) -> jax.Array:
        """``(..., 2)`` fitted minus injected ``(m_x, m_y)`` (TeV): the ratio's mass bias."""
        return self.fitted[..., 1:3] - self.injected[..., 1:3]

    @property
    def mass_jacobian(self) -> jax.Array:
        """``(..., 2, 2)`` :attr:`jacobian`, the identity where it was not measured."""
        eye = jnp.eye(2, dtype=self.covariance.dtype)
        if self.jacobian is None:
            return jnp.broadcast_to(eye, self.covariance.shape[:-2] + (2, 2))
        return self.jacobian

    @property
    def mass_correction(self) -> jax.Array:
        """``(..., 2)`` what to subtract from the fitted masses: ``G^-1 (g(m_hat) - m_hat)``.

        The first-order solution of ``g(m) = m_hat`` about the injected ``m_hat``; with ``G = 1``
        it is :attr:`mass_offset`.
        """
        return jnp.linalg.solve(self.mass_jacobian, self.mass_offset[..., None])[..., 0]

    def mass_image(self, masses: ArrayLike) -> jax.Array:
        """``(..., 2)`` where a fit lands, to first order, for signal at ``masses``: ``g(masses)``.

            g(m) ~ g(m_inj) + G (m - m_inj)

        The contour of a fit is a region for ``g(truth)``, not for the truth: the truth lies
        inside the calibrated contour when its image does.

        >>> c = PawsClosure(jnp.array([0.1, 0.5, 0.1]), jnp.array([0.1, 0.52, 0.1]), jnp.eye(3), jnp.eye(3),
        ...                 jnp.array([[2.0, 0.0], [0.0, 1.0]]))
        >>> [round(v, 3) for v in c.mass_image(jnp.array([0.6, 0.1])).tolist()]
        [0.72, 0.1]
        """
        step = jnp.asarray(masses) - self.injected[..., 1:3]
        return self.fitted[..., 1:3] + jnp.einsum("...ij,...j->...i", self.mass_jacobian, step)

    @property
    def variance_scale(self) -> jax.Array:
        """``(..., P)`` the corrected estimates' variance over the model's, per parameter (1 when calibrated).

        Its square root is how much wider than the fit's own intervals the estimator scatters:
        ``S_pp / C_pp`` from the sandwich ``S``; for the masses, corrected through
        :attr:`mass_correction`, ``S_m`` is carried back to the truth's coordinates,
        ``G^-1 S_m G^-T``."""
        diag = lambda c: jnp.diagonal(c, axis1=-2, axis2=-1)
        inv = jnp.linalg.inv(self.mass_jacobian)
        masses = jnp.einsum("...ij,...jk,...lk->...il", inv, self.sandwich[..., 1:3, 1:3], inv)
        variance = diag(self.sandwich)
        corrected = jnp.concatenate([variance[..., :1], diag(masses), variance[..., 3:]], -1)
        return corrected / diag(self.covariance)

    @property
    def mass_contour_scale(self) -> jax.Array:
        """``sqrt(det S_m / det C_m)`` of the ``(m_x, m_y)`` blocks of sandwich and model covariance.

        ``-2 Delta l`` of the masses divided by it follows the 2-D Wilks thresholds again (> 1
        where the masses scatter more than the likelihood's curvature says)."""
        det = lambda c: jnp.linalg.det(c[..., 1:3, 1:3])
        return jnp.sqrt(det(self.sandwich) / det(self.covariance))

    def mass_contour_adjustment(self, displacement: jax.Array) -> jax.Array:
        """The factor that calibrates ``-2 Delta l`` of the masses at ``displacement`` from the fit.

        The vertical adjustment of a misspecified likelihood (Chandler and Bate, Biometrika 94, 2007):

            q_adj(m) = q(m) * (d^T S_m^-1 d) / (d^T C_m^-1 d),   d = m - m_hat,

        with ``S_m``, ``C_m`` the ``(m_x, m_y)`` blocks of sandwich and model covariance (``mu``
        profiled). Where ``q`` is quadratic, ``q_adj = d^T S_m^-1 d`` follows the 2-D Wilks
        thresholds in every direction; dividing by :attr:`mass_contour_scale` does so only when
        ``S_m`` is a multiple of ``C_m``, which is the value it takes at ``d = 0``.

        >>> c = PawsClosure(*jnp.zeros((2, 3)), jnp.eye(3), jnp.diag(jnp.array([1.0, 4.0, 1.0])))
        >>> float(c.mass_contour_adjustment(jnp.array([0.1, 0.0])))  # m_x scatters 2x wider
        0.25
        >>> float(c.mass_contour_adjustment(jnp.array([0.0, 0.1])))
        1.0

        Args:
            displacement: ``(..., 2)`` ``(m_x, m_y)`` minus the fitted masses (TeV).
        """
        d = jnp.asarray(displacement, self.covariance.dtype)
        solve = lambda c: jnp.linalg.solve(c[..., 1:3, 1:3], d[..., None])[..., 0]
        form = lambda c: jnp.sum(d * solve(c), axis=-1)
        by_model, by_sandwich = form(self.covariance), form(self.sandwich)
        return jnp.where(by_model > 0, by_sandwich / jnp.where(by_model > 0, by_model, 1.0),
                         1.0 / self.mass_contour_scale)  # fmt: skip


def mass_tangents(make_data: Callable[[jax.Array], Any], masses: ArrayLike) -> Any:
    """The derivative of ``make_data(masses)`` along ``m_x`` and along ``m_y``: a leading axis of 2.

    ``make_data`` simulates a closure data set at ``masses`` (``(..., 2)``, every row moved
    together) with fixed random numbers, so its events move smoothly with the masses; the result
    is what :func:`paws_closure` takes as ``data_tangents`` (forward-mode, one pass per mass).

    >>> mass_tangents(lambda m: {"x": m[0] * jnp.ones(3) + m[1]}, jnp.array([0.5, 0.1]))["x"].tolist()
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    """
    masses = jnp.asarray(masses)
    along = lambda e: jax.jvp(make_data, (masses,), (jnp.broadcast_to(e, masses.shape),))[1]
    return jax.vmap(along)(jnp.eye(2, dtype=masses.dtype))


def _closure_config(config: PawsConfig, polish_steps: int) -> PawsConfig:
    """One start, no landscape, no profiles: Levenberg-Marquardt from the injected point only."""
    return config._replace(n_steps=0, grid_points=0, n_profile=0, n_best=1, polish_steps=polish_steps)


@partial(jax.jit, static_argnames=("fns", "config"))
def _closure_core(fns, datas, weight, injected, config: PawsConfig, tangents=None):
    """``(fitted, I^-1, I^-1 J I^-1, G)`` of the Asimov fit from ``injected`` (see :class:`PawsClosure`)."""
    fit = _fit_core(fns, datas, weight, jax.random.key(0), injected[None, 1:], config)
    p = fit.vector
    ordered = _mass_ordered(fns, config)
    per_event = lambda q, d: jax.vmap(lambda r: mixture_log_likelihood(q[0], r[None]))(
        _log_lambda(ordered, d, q[1:3], q[3:]))
    scores = jax.jacfwd(per_event)(p, datas)  # (N, P): P forward passes
    w = jnp.ones(scores.shape[0], p.dtype) if weight is None else jnp.asarray(weight, p.dtype)
    spread = jnp.einsum("n,ni,nj->ij", w, scores, scores)
    score = lambda d, e: jnp.sum(w * jax.jvp(lambda q: per_event(q, d), (p,), (e,))[1])  # s . e
    jacobian = None if tangents is None else _closure_jacobian(score, datas, tangents, p, fit.covariance,
                                                               config)  # fmt: skip
    return p, fit.covariance, fit.covariance @ spread @ fit.covariance, jacobian


def _closure_jacobian(score, datas, tangents, p, covariance, config: PawsConfig) -> jax.Array:
    """``G = d p_hat / d theta_inj`` (mass block) by implicit differentiation of the fit's stationarity.

    At the fit ``s(p_hat, theta) = 0`` for the total score ``s = dl/dp``, so
    ``dp_hat/dtheta = -H^-1 ds/dtheta = I^-1 ds/dtheta``; ``ds/dtheta`` is the score's derivative
    along the data's ``tangents`` (one per injected mass). ``score(data, e)`` is ``s . e``; its
    forward-over-forward derivatives run one (tangent, parameter) pair at a time, so that only a
    layer's activations are alive at once (the events are many, the pairs few). The identity where
    this does not hold or cannot be inverted: a fitted mass on the box edge, a non-finite result,
    or ``det G < 1/4`` (the fit hardly follows the injected masses; ``G^-1`` would amplify noise).
    """
    directions = jnp.eye(p.shape[0], dtype=p.dtype)
    along = lambda t: jax.lax.map(lambda e: jax.jvp(lambda d: score(d, e), (datas,), (t,))[1], directions)
    ds = jax.lax.map(along, tangents).T  # (P, 2)
    g = (covariance @ ds)[1:3]
    lo, hi = config.mass_bounds
    span = 1e-6 * (hi - lo)
    inside = jnp.all((p[1:3] > lo + span) & (p[1:3] < hi - span))
    usable = inside & jnp.all(jnp.isfinite(g)) & (jnp.linalg.det(g) > 0.25)
    return jnp.where(usable, g, jnp.eye(2, dtype=g.dtype))


def paws_closure(
    log_ratio_fn: LogRatioFn | Sequence[LogRatioFn], data: Any, injected: ArrayLike,
    weight: ArrayLike | None = None, config: PawsConfig = PawsConfig(), polish_steps: int = 12,
    data_tangents: Any = None,
) -> PawsClosure:  # fmt: skip
    """Closure test: the PAWS fit of the Asimov data set of signal injected at ``injected``.

    ``data`` holds background (in GBI: more generator samples) and simulated signal at the
    injected masses, weighted into the Asimov data set at the injected ``mu``
    (:func:`gbijax.inference.mixture_asimov_weights`). An exact ratio fits the injected point
    (the Asimov property); a learned one fits ``g(theta)``, and the difference is the fit's bias
    there. Injected at a data set's own fit ``theta_hat``, it gives the first-order correction

        ``m_corrected = m_hat - G^-1 (g_m(theta_hat) - m_hat)``,  ``mu_corrected = mu_hat / (g_mu / mu_inj)``

    with ``G`` the slope of ``g_m`` there (measured with ``data_tangents``; else 1: the same
    offset at every mass). The same shift and scale move the intervals and contours, and all of
    it needs no truth: only the generator and the signal simulation. The same data set gives the
    interval sizes: a learned ratio is a misspecified model, whose estimator scatters with the
    sandwich covariance ``I^-1 J I^-1`` rather than the ``I^-1`` its likelihood curvature
    assumes, so the intervals widen by ``sqrt(variance_scale)`` and ``-2 Delta l`` of the masses
    is rescaled in each direction (:meth:`PawsClosure.mass_contour_adjustment`;
    :func:`gbijax.inference.closure_corrected`, :func:`gbijax.inference.measure_paws_closure`).
    The fit is Levenberg-Marquardt in all parameters from the injected point (``polish_steps``
    steps, no random starts or landscape):
    cheap, and vmap-able over data sets through its data and ``injected``.

    Args:
        log_ratio_fn, data: the ratio model(s) and the data of the injected sample (see
            :func:`paws_log_likelihood`).
        injected: ``(P,)`` ``(mu, m_x, m_y, alpha...)`` of the injection; masses inside
            ``config.mass_bounds``.
        weight: ``(N,)`` the Asimov weights of the events.
        config: :class:`PawsConfig` (bounds, ``ordered``, ``n_iter``).
        polish_steps: Levenberg-Marquardt steps (it stops earlier once converged).
        data_tangents: the derivative of ``data`` with respect to the injected ``(m_x, m_y)``: the
            same pytree with a leading axis of 2 on every leaf (:func:`mass_tangents` of the function
            that simulates the data at given masses with a fixed key). Gives
            :attr:`PawsClosure.jacobian` (implicit differentiation of the fit); None: not measured.

    Returns:
        :class:`PawsClosure` with ``mu_scale``, ``mass_offset`` and, from the sandwich
        covariance of the misspecified model (the learned ratio is not the true one), the
        ``variance_scale`` that the intervals need and the contours' ``mass_contour_adjustment``.

    Raises:
        ValueError: ``injected`` of the wrong length or with masses outside the trained range.
    """
    fns, datas = _modes(log_ratio_fn, data)
    injected = jnp.asarray(injected, float)
    if injected.shape != (2 + len(fns),):
        raise ValueError(f"injected must be (mu, m_x, m_y{', alpha' * (len(fns) - 1)}): shape "
                         f"({2 + len(fns)},); got {injected.shape}")  # fmt: skip
    _validate_starts(injected[None, 1:], len(fns), config)
    tangents = None if data_tangents is None else _modes(log_ratio_fn, data_tangents)[1]
    fitted = _closure_core(fns, datas, weight, injected, _closure_config(config, polish_steps), tangents)
    return PawsClosure(injected, *fitted)


# --------------------------------------------------------------------------------------------
# (mu, alpha) landscape, bootstrap, global significance
# --------------------------------------------------------------------------------------------


def mu_alpha_landscape(
    log_ratio_fns: Sequence[LogRatioFn], data: Sequence[Any], fit: PawsFit | ArrayLike, mu: ArrayLike,
    alpha: ArrayLike, weight: ArrayLike | None = None, config: PawsConfig = PawsConfig(),
    profile_steps: int = 0,
) -> jax.Array:  # fmt: skip
    """``l`` on a ``(mu, alpha_1)`` grid for several decay modes, for 2-D contours.

    With ``profile_steps = 0`` the masses (and any further alphas) stay at the fit's values (a
    conditional landscape); otherwise they are re-fitted at every grid point by that many
    Levenberg-Marquardt steps (the profile). Contours: ``-2 (l - fit.log_likelihood_max) <=
    wilks_threshold(cl, 2)``.

    Args:
        log_ratio_fns, data: the ratio models and data of the modes (see :func:`paws_log_likelihood`).
        fit: a :class:`PawsFit`, or the parameters ``(mu, m_x, m_y, alpha...)`` to start from.
        mu, alpha: ``(G_mu,)``, ``(G_alpha,)`` grid axes (``alpha`` is the first mode fraction).
        weight: optional ``(N,)`` event weights.
        config: :class:`PawsConfig` (bounds, ``batch_size``).
        profile_steps: re-fit steps of the masses per grid point (0: conditional landscape).

    Returns:
        ``(G_mu, G_alpha)`` log-likelihoods.
    """
    fns, datas = _modes(log_ratio_fns, data)
    if len(fns) < 2:
        raise ValueError("a (mu, alpha) landscape needs at least two decay modes")
    p_hat = _parameter_vector(fit)
    return _mu_alpha_core(fns, datas, weight, p_hat, jnp.asarray(mu, float), jnp.asarray(alpha, float),
                          config, profile_steps)  # fmt: skip


@partial(jax.jit, static_argnames=("fns", "config", "profile_steps"))
def _mu_alpha_core(fns, datas, weight, p_hat, mu, alpha, config: PawsConfig, profile_steps: int):
    fns = _mass_ordered(fns, config)
    dtype = _dtype(fns, datas)
    lower, upper = _box(len(fns), config, dtype)
    f = _joint(fns, datas, weight)
    p_hat = p_hat.astype(dtype)
    points = jnp.stack(jnp.meshgrid(mu.astype(dtype), alpha.astype(dtype), indexing="ij"), -1).reshape(-1, 2)
    free = jnp.zeros(p_hat.shape, bool).at[1:3].set(True)

    def at(v):
        p = p_hat.at[0].set(v[0]).at[3].set(v[1])
        return _lm_maximize(f, p, lower, upper, free, profile_steps)[1] if profile_steps else f(p)

    return jax.lax.map(at, points, batch_size=config.batch_size).reshape(mu.shape[0], alpha.shape[0])


class PawsBootstrap(NamedTuple):
    """Poisson-weight bootstrap of the fit: ``params`` ``(R, P)`` replicas, ``std`` ``(P,)`` their spread."""

    params: jax.Array
    std: jax.Array


def bootstrap_paws(
    key: jax.Array, log_ratio_fn: LogRatioFn | Sequence[LogRatioFn], data: Any, fit: PawsFit | ArrayLike,
    weight: ArrayLike | None = None, n_replicas: int = 100, steps: int = 10,
    config: PawsConfig = PawsConfig(), batch_size: int | None = None,
) -> PawsBootstrap:  # fmt: skip
    """The Poisson-weight bootstrap of the PAWS fit (:func:`gbijax.inference.bootstrap`).

    Every replica re-weights the events by ``Poisson(1)`` draws and re-fits all parameters by
    up to ``steps`` Levenberg-Marquardt steps from the nominal fit (a warm start: the replicas
    scatter around it by much less than the distance between likelihood modes). Replicas run as
    one ``vmap`` (or ``lax.map`` in batches of ``batch_size``).

    Args:
        key: PRNG key of the Poisson weights.
        log_ratio_fn, data: the ratio model(s) and data (see :func:`paws_log_likelihood`).
        fit: the nominal :class:`PawsFit`, or its parameters ``(mu, m_x, m_y, alpha...)``.
        weight: optional ``(N,)`` base event weights.
        n_replicas: number of replicas.
        steps: Levenberg-Marquardt steps per replica.
        config: :class:`PawsConfig` (bounds, mass ordering).
        batch_size: replicas per vectorised batch (``None``: all at once).
    """
    fns, datas = _modes(log_ratio_fn, data)
    n = int(jax.eval_shape(lambda: _log_lambda(fns, datas, jnp.zeros(2), jnp.zeros(len(fns) - 1))).shape[0])
    p_hat = _parameter_vector(fit)
    return _bootstrap_core(fns, datas, weight, p_hat, key, config, n_replicas, steps, batch_size, n)


@partial(jax.jit, static_argnames=("fns", "config", "n_replicas", "steps", "batch_size", "n_events"))
def _bootstrap_core(fns, datas, weight, p_hat, key, config, n_replicas, steps, batch_size, n_events):
    fns = _mass_ordered(fns, config)
    dtype = _dtype(fns, datas)
    lower, upper = _box(len(fns), config, dtype)
    p_hat = p_hat.astype(dtype)

    def estimator(w):
        p = _lm_maximize(_joint(fns, datas, w), p_hat, lower, upper, jnp.ones(p_hat.shape, bool), steps)[0]
        return p[_order(p, config.ordered)]

    params = bootstrap(key, estimator, n_events, n_replicas, weight, batch_size)
    return PawsBootstrap(params, jnp.std(params, axis=0, ddof=1))


class GlobalSignificance(NamedTuple):
    """The look-elsewhere-corrected significance of a mass scan.

    Attributes:
        q0: the observed maximum local ``q0`` over the scanned hypotheses.
        z_local: ``sqrt(q0)``.
        p_global: the Monte Carlo p-value ``(1 + #{t: q0_t >= q0}) / (1 + T)`` over ``T``
            background-only toys (:func:`global_p_value`).
        z_global: ``max(Phi^-1(1 - p_global), 0)``, at most ``Phi^-1(1 - 1 / (1 + T))`` (the toys' reach).
        toy_q0: ``(T,)`` maximum local ``q0`` of every toy.
    """

    q0: jax.Array
    z_local: jax.Array
    p_global: jax.Array
    z_global: jax.Array
    toy_q0: jax.Array


def global_p_value(q0: ArrayLike, toy_q0: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """The global p-value and significance of observed scan maxima ``q0`` from the toys' maxima.

    ``p = (1 + #{t: q0_t >= q0}) / (1 + T)``, ``Z = max(Phi^-1(1 - p), 0)``: the Monte Carlo p-value
    that counts the observation as one more draw, so it is valid (``P(p <= a) <= a`` under the
    background-only hypothesis) and finite; ``Z`` is at most ``Phi^-1(1 - 1 / (1 + T))``
    (3.09 for 999 toys), i.e. "at least" when no toy reaches ``q0``.

    Args:
        q0: observed statistic(s), any shape.
        toy_q0: ``(T,)`` the statistic on background-only toys (:func:`null_scan_q0`).

    Returns:
        ``(p_global, z_global)`` with the shape of ``q0``.

    >>> p, z = global_p_value(jnp.array([0.0, 4.0, 100.0]), jnp.arange(9.0))
    >>> [round(v, 3) for v in p.tolist()]
    [1.0, 0.6, 0.1]
    >>> round(float(z[2]), 3)
    1.282
    """
    q0, toy_q0 = jnp.asarray(q0), jnp.asarray(toy_q0)
    exceed = jnp.sum(toy_q0 >= q0[..., None], axis=-1)
    p = (1.0 + exceed) / (1.0 + toy_q0.shape[0])
    return p, jnp.maximum(ndtri(1.0 - p), 0.0)


def _hypotheses(n_modes: int, points, alphas, config: PawsConfig) -> tuple[jax.Array, jax.Array]:
    """``(H, 2)`` masses and ``(H, K - 1)`` mode fractions of a scan (every point with every alpha)."""
    if points is None:
        points = mass_grid_points(np.linspace(*config.mass_bounds, max(config.grid_points, 2)))
    _check_masses(points, config.mass_bounds, "scanned mass")
    n_alpha = n_modes - 1
    if not n_alpha:
        alphas = np.zeros((1, 0))
    elif alphas is None:
        alphas = np.array(list(itertools.product((0.0, 0.5, 1.0), repeat=n_alpha)))
    alphas = np.asarray(alphas, float).reshape(-1, n_alpha) if n_alpha else alphas
    points = np.asarray(points, float)
    return jnp.asarray(np.repeat(points, len(alphas), axis=0)), jnp.asarray(np.tile(alphas, (len(points), 1)))


def scan_q0(
    log_ratio_fn: LogRatioFn | Sequence[LogRatioFn], data: Any, weight: ArrayLike | None = None,
    points: ArrayLike | None = None, alphas: ArrayLike | None = None, config: PawsConfig = PawsConfig(),
) -> jax.Array:  # fmt: skip
    """The scan statistic ``q0 = max_h q0_h``: the largest local discovery ``q0`` over mass hypotheses.

    At every hypothesis ``h`` (mass point x alpha value) ``q0_h = 2 max_mu l(mu; h)`` with ``mu``
    profiled exactly in ``config.mu_bounds`` (0 when ``mu_hat <= 0``). With the default points (the
    ``config.grid_points`` x ``config.grid_points`` grid over ``config.mass_bounds``) and one
    mode this is ``2 max`` of :func:`fit_paws`'s coarse landscape, which
    :func:`gbijax.inference.measure_paws` reports as ``q0_scan``.

    Args:
        log_ratio_fn, data: the ratio model(s) and data (see :func:`paws_log_likelihood`).
        weight: optional ``(N,)`` event weights.
        points: ``(H, 2)`` scanned masses (default: :func:`mass_grid_points` of
            ``config.grid_points`` values per axis over ``config.mass_bounds``).
        alphas: ``(A, K - 1)`` scanned mode fractions (several modes; default ``{0, 1/2, 1}^(K-1)``).
        config: :class:`PawsConfig`.

    Raises:
        ValueError: a scanned mass outside ``config.mass_bounds``.
    """
    fns, datas = _modes(log_ratio_fn, data)
    thetas, hyp_alpha = _hypotheses(len(fns), points, alphas, config)
    return _scan_core(fns, datas, weight, thetas, hyp_alpha, config)


def null_scan_q0(
    key: jax.Array, log_ratio_fn: LogRatioFn | Sequence[LogRatioFn], background_data: Any, n_events: float,
    points: ArrayLike | None = None, alphas: ArrayLike | None = None, n_toys: int = 100,
    config: PawsConfig = PawsConfig(), toy_batch_size: int | None = None,
) -> jax.Array:  # fmt: skip
    """The scan statistic of :func:`scan_q0` on ``n_toys`` background-only toys: ``(T,)``.

    Toy ``t`` is the ``M`` events of ``background_data`` with Poisson weights of mean
    ``n_events / M``: pseudo-data of ``n_events`` expected background events. The ratios on the
    background sample are computed once per hypothesis; the toys only re-weight them, all in one
    compiled program. The sample should be independent of everything the ratio was built from
    (the classifier's training events and its ``kappa`` events: a sample that fixed ``kappa``
    has ``E[Lambda] = 1`` exactly and gives too quiet toys), and several times larger than
    ``n_events`` (the toys share its events). One null distribution serves every dataset of
    that size: compare each with :func:`global_p_value`.

    Args:
        key: PRNG key of the toys.
        log_ratio_fn: the ratio model(s).
        background_data: the ratio data pytree(s) holding the background sample (e.g. a
            :class:`ClassifierRatio` whose ``x`` is the generator's samples).
        n_events: the expected size of the pseudo-data (the data's total weight).
        points, alphas, config: the scanned hypotheses, as in :func:`scan_q0`.
        n_toys: number of toys ``T``.
        toy_batch_size: toys vectorised together (memory: a few ``toy_batch_size x M`` arrays);
            default 1 (a loop) on CPU, where one toy's ``M`` events already vectorise, 100 on
            accelerators.
    """
    fns, bdatas = _modes(log_ratio_fn, background_data)
    thetas, hyp_alpha = _hypotheses(len(fns), points, alphas, config)
    if toy_batch_size is None:
        toy_batch_size = 1 if jax.default_backend() == "cpu" else 100
    return _null_core(fns, bdatas, key, jnp.asarray(n_events, float), thetas, hyp_alpha, n_toys, config,
                      max(1, min(toy_batch_size, n_toys)))  # fmt: skip


def global_significance(
    key: jax.Array, log_ratio_fn: LogRatioFn | Sequence[LogRatioFn], data: Any, background_data: Any,
    weight: ArrayLike | None = None, points: ArrayLike | None = None, alphas: ArrayLike | None = None,
    n_toys: int = 100, config: PawsConfig = PawsConfig(),
) -> GlobalSignificance:  # fmt: skip
    """Global significance of the maximum local ``q0`` over a mass grid, from background-only toys.

    The observed scan statistic ``q0 = max_h q0_h`` (:func:`scan_q0`), its null distribution
    from toys of the data's size drawn from ``background_data`` (:func:`null_scan_q0`) and the
    p-value ``p_global = (1 + #{t: q0_t >= q0}) / (1 + T)`` (:func:`global_p_value`). Use a
    background sample independent of the classifier's training and ``kappa`` events.

    Args:
        key: PRNG key of the toys.
        log_ratio_fn, data: the ratio model(s) and the observed data.
        background_data: the same kind of data pytree(s) holding the background sample.
        weight: optional ``(N,)`` weights of the observed events.
        points, alphas: the scanned hypotheses (see :func:`scan_q0`).
        n_toys: number of toys.
        config: :class:`PawsConfig`.

    Raises:
        ValueError: a scanned mass outside ``config.mass_bounds``.
    """
    fns, datas = _modes(log_ratio_fn, data)
    q0 = scan_q0(log_ratio_fn, data, weight, points, alphas, config)
    n = jax.tree.leaves(datas[0])[0].shape[0] if weight is None else jnp.sum(jnp.asarray(weight))
    toys = null_scan_q0(key, log_ratio_fn, background_data, n, points, alphas, n_toys, config)
    p, z = global_p_value(q0, toys)
    return GlobalSignificance(q0, jnp.sqrt(q0), p, z, toys)


def _scan_q0(log_lams, weight, mu_lo, mu_hi, config: PawsConfig) -> jax.Array:
    """``max_h q0_h`` over precomputed ``(H, N)`` log-ratios."""

    def at(log_lam):
        mu, ll = maximize_mixture(log_lam, weight, mu_lo, mu_hi, config.n_iter)
        return discovery(ll, 0.0, mu).q0  # l(mu = 0) = 0

    return jnp.max(jax.lax.map(at, log_lams, batch_size=config.batch_size))


def _hypothesis_ratios(fns, datas, thetas, alphas, config: PawsConfig):
    """``(H, N)`` log-ratios of every hypothesis, and the ``mu`` bounds, in the ratios' dtype."""
    fns = _mass_ordered(fns, config)
    dtype = _dtype(fns, datas)
    mu_lo, mu_hi = (jnp.asarray(v, dtype) for v in config.mu_bounds)
    lam = lambda args: _log_lambda(fns, datas, args[0], args[1])
    log_lams = jax.lax.map(lam, (thetas.astype(dtype), alphas.astype(dtype)), batch_size=config.batch_size)
    return log_lams, mu_lo, mu_hi


@partial(jax.jit, static_argnames=("fns", "config"))
def _scan_core(fns, datas, weight, thetas, alphas, config: PawsConfig):
    log_lams, mu_lo, mu_hi = _hypothesis_ratios(fns, datas, thetas, alphas, config)
    return _scan_q0(log_lams, weight, mu_lo, mu_hi, config)


@partial(jax.jit, static_argnames=("fns", "n_toys", "config", "toy_batch_size"))
def _null_core(fns, bdatas, key, n_events, thetas, alphas, n_toys: int, config: PawsConfig,
               toy_batch_size: int):
    log_b, mu_lo, mu_hi = _hypothesis_ratios(fns, bdatas, thetas, alphas, config)
    m = log_b.shape[1]
    rate = n_events.astype(log_b.dtype) / m

    def toy_q0(k):
        w = jax.random.poisson(k, rate, (m,)).astype(log_b.dtype)
        return _scan_q0(log_b, w, mu_lo, mu_hi, config)

    return jax.lax.map(toy_q0, jax.random.split(key, n_toys), batch_size=toy_batch_size)
