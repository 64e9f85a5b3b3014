"""The exact-likelihood oracle on the analytic toy: the optimality yardstick of every GBI method.

On the toy (:mod:`gbijax.data.toy`) both densities are known exactly, so the fit of the signal
fraction with the true likelihood ratio ``r(x) = p_S(x | theta) / p_B(x)`` in the signal region
gives the narrowest calibrated interval and the largest expected significance any method can
reach; learned methods are reported as ratios to it (METHODS.md, section 5c).

- :func:`oracle_fit`: ``mu`` at known ``theta = (m_x, m_y)`` (:func:`fit_mixture` on the exact
  log-ratio): ``mu_hat``, 68%/95% Wilks intervals, ``q0``, ``Z``.
- :func:`oracle_joint_fit`: ``(mu, m_x, m_y)`` together: a profile scan over the toy's mass grid,
  then Levenberg-Marquardt (Newton) steps with the masses bounded to the grid range, Hessian
  errors and profile-likelihood intervals.

Data are fixed-shape ``(N, 5)`` arrays with optional per-event weights; events outside the
signal region drop out (their log-ratio is set to 0, a factor 1 in the likelihood), so
pseudo-experiments of one size run as one ``jax.vmap``. ``region`` is static (a Python tuple or
:class:`gbijax.data.SignalRegion`).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gbijax.data import DEFAULT_SR, toy
from gbijax.inference._stats import (
    CL68,
    Interval,
    MixtureFit,
    _scan_interval,
    discovery,
    fit_mixture,
    maximize_mixture,
    mixture_log_likelihood,
    wilks_threshold,
)

MASS_BOUNDS = (min(toy.MASS_GRID), max(toy.MASS_GRID))
"""Bounds of the fitted masses (TeV): the range of :data:`gbijax.data.toy.MASS_GRID`."""

_GRID = np.asarray(toy.MASS_GRID)
_PAIR_INDEX = np.array([[max(i, j) * (max(i, j) + 1) // 2 + min(i, j) for j in range(len(_GRID))]
                        for i in range(len(_GRID))])  # fmt: skip
_PAIRS = np.array([(_GRID[i], _GRID[j]) for i in range(len(_GRID)) for j in range(i + 1)])  # m_x >= m_y
_GRID_BATCH = 13  # mass points profiled together (memory: batch x N)


def oracle_log_ratio(
    x: ArrayLike, params: toy.SignalParams = toy.DEFAULT_SIGNAL, region=DEFAULT_SR
) -> jax.Array:
    """Exact per-event ``log r = log p_S(m, x | theta) - log p_B(m, x)``, both normalised on ``region``.

    Events outside ``region`` (or outside the densities' support) get ``log r = 0``, so they
    contribute ``log(1 + mu (r - 1)) = 0`` to any mixture likelihood. Differentiable in ``params``.

    Args:
        x: ``(N, 5)`` toy events (``mjj`` first).
        params: the signal masses ``theta``.
        region: the signal region ``(lo, hi)`` in TeV (static).

    Returns:
        ``(N,)`` log-likelihood ratios.
    """
    return _log_ratio_fn(x, region)(params)


def _log_ratio_fn(x: ArrayLike, region):
    """``params -> oracle_log_ratio(x, params, region)``, with the background density computed once."""
    x = jnp.asarray(x)
    log_b = toy.background_log_prob(x, region)
    inside = (x[:, 0] > float(region[0])) & (x[:, 0] < float(region[1])) & jnp.isfinite(log_b)
    log_b = jnp.where(inside, log_b, 0.0)

    def log_ratio(params: toy.SignalParams) -> jax.Array:
        log_s = toy.signal_log_prob(x, params, region)
        ok = inside & jnp.isfinite(log_s)
        return jnp.where(ok, jnp.where(ok, log_s, 0.0) - log_b, 0.0)

    return log_ratio


@partial(jax.jit, static_argnames=("region", "n_iter"))
def oracle_fit(
    x: ArrayLike,
    weight: ArrayLike | None = None,
    params: toy.SignalParams = toy.DEFAULT_SIGNAL,
    region=DEFAULT_SR,
    mu_min: ArrayLike = 0.0,
    mu_max: ArrayLike = 1.0,
    n_iter: int = 50,
) -> MixtureFit:
    """Exact-likelihood fit of the signal fraction ``mu`` at known signal masses ``theta``.

    Maximises ``L(mu) = sum_i w_i log(1 + mu (r_i - 1))`` with the exact toy ratio ``r_i``
    (:func:`oracle_log_ratio`), i.e. ``log prod_i [mu p_S + (1 - mu) p_B] / p_B`` over the
    signal-region events, by :func:`gbijax.inference.fit_mixture`.

    Args:
        x: ``(N, 5)`` events.
        weight: optional ``(N,)`` per-event weights or masks.
        params: the true (assumed) signal masses.
        region: the signal region (static).
        mu_min, mu_max: bounds on ``mu``; a negative ``mu_min`` gives the unbounded MLE needed
            for coverage studies.
        n_iter: maximum root-finding steps (static).

    Returns:
        A :class:`gbijax.inference.MixtureFit`: ``mu_hat``, ``interval_68``, ``interval_95``,
        ``q0``, ``z``, ``p_value``.

    Three QCD-like events and one event with jet masses near (500, 100) GeV: the toy's signal is
    so distinct that the oracle counts one signal event in four.

    >>> x = jnp.array([[3.5, 0.03, 0.08, 0.60, 0.50], [3.4, 0.05, 0.10, 0.70, 0.60],
    ...                [3.6, 0.20, 0.05, 0.55, 0.45], [3.5, 0.10, 0.40, 0.30, 0.25]])
    >>> fit = oracle_fit(x)
    >>> round(float(fit.mu_hat), 2), bool(fit.interval_68.lo > 0)
    (0.25, True)
    """
    return fit_mixture(oracle_log_ratio(x, params, region), weight, mu_min, mu_max, n_iter)


class JointFit(NamedTuple):
    """Result of :func:`oracle_joint_fit`.

    Attributes:
        mu_hat: fitted signal fraction.
        params: fitted masses, ordered ``m_x >= m_y`` (the toy is symmetric under ``X <-> Y``).
        log_likelihood_max: ``log L(mu_hat, theta_hat) - log L(0)``.
        covariance: ``(3, 3)`` inverse Hessian of the NLL over ``(mu, m_x, m_y)``.
        std: ``(3,)`` Hessian standard errors of ``(mu, m_x, m_y)``.
        mu_interval, m_x_interval, m_y_interval: profile-likelihood intervals at the fit's
            confidence level (the other two parameters re-fitted at every scan point).
        q0, z, p_value: discovery test, local in the masses (no look-elsewhere correction).
        grid_log_likelihood: ``(12, 12)`` ``log L`` profiled over ``mu`` on
            ``MASS_GRID x MASS_GRID`` (rows ``m_x``, columns ``m_y``; symmetric), for 2-D contours
            with ``wilks_threshold(cl, n_params=2)``.
    """

    mu_hat: jax.Array
    params: toy.SignalParams
    log_likelihood_max: jax.Array
    covariance: jax.Array
    std: jax.Array
    mu_interval: Interval
    m_x_interval: Interval
    m_y_interval: Interval
    q0: jax.Array
    z: jax.Array
    p_value: jax.Array
    grid_log_likelihood: jax.Array


def _joint_log_likelihood(log_ratio_fn, weight):
    """``p = (mu, m_x, m_y) -> L(mu, m_x, m_y)`` of the toy mixture."""
    return lambda p: mixture_log_likelihood(p[0], log_ratio_fn(toy.SignalParams(p[1], p[2])), weight)


def _value_grad_hessian(f, p):
    """``f(p)``, its gradient and Hessian from one forward-over-reverse pass."""

    def grad_with_aux(q):
        value, grad = jax.value_and_grad(f)(q)
        return grad, (value, grad)

    hess, (value, grad) = jax.jacfwd(grad_with_aux, has_aux=True)(p)
    return value, grad, hess


def _lm_maximize(f, p0, lower, upper, free, n_steps: int):
    """Levenberg-Marquardt ascent of ``f`` on the box ``[lower, upper]``, moving only ``free`` entries.

    Each step solves ``(-H + lam diag|H|) delta = g``; a step is taken only if ``f`` increases
    (and stays finite), which lowers ``lam`` (towards Newton), else ``lam`` grows (towards short
    gradient steps). Stops when an accepted step gains less than rounding, when ``lam`` exceeds
    1e8, or after ``n_steps`` steps (a ``while_loop``: it jits and vmaps). The first step only
    evaluates ``p0``, so the derivatives are traced once.

    Returns:
        ``(p, f(p), -H(p))`` with the Hessian's fixed rows and columns replaced by the identity.
    """
    n = p0.shape[0]
    eye = jnp.eye(n, dtype=p0.dtype)
    keep = ~(free[:, None] & free[None, :])
    eps = jnp.finfo(p0.dtype).eps

    def step(carry):
        i, p, value, grad, curv, lam = carry
        damp = lam * jnp.diag(jnp.abs(jnp.diag(curv)) + 1e-12 * jnp.max(jnp.abs(jnp.diag(curv))))
        delta = jnp.where(free, jnp.linalg.solve(curv + damp, grad), 0.0)
        cand = jnp.clip(p + delta, lower, upper)
        c_value, c_grad, c_hess = _value_grad_hessian(f, cand)
        c_curv = jnp.where(keep, eye, -c_hess)
        good = jnp.isfinite(c_value) & (c_value > value) & jnp.all(jnp.isfinite(c_curv))
        gain_small = c_value - value <= 16 * eps * (1.0 + jnp.abs(c_value))
        done = (good & gain_small) | (lam > 1e8)
        pick = lambda a, b: jnp.where(good, a, b)
        c_grad = jnp.where(free, c_grad, 0.0)
        new = [pick(cand, p), pick(c_value, value), pick(c_grad, grad), pick(c_curv, curv)]
        return i + jnp.where(done, n_steps + 1, 1), *new, pick(lam / 3, lam * 4)

    init = (0, p0, jnp.asarray(-jnp.inf, p0.dtype), jnp.zeros_like(p0), eye, jnp.asarray(1e-3, p0.dtype))
    _, p, value, _, curv, _ = jax.lax.while_loop(lambda c: c[0] <= n_steps, step, init)
    return p, value, curv


def _mass_grid_scan(log_ratio_fn, weight, mu_min, mu_max, n_iter, dtype):
    """``(mu_hat, log L)`` profiled over ``mu`` at every ``m_x >= m_y`` pair of the mass grid."""

    def at(pair):
        log_ratio = log_ratio_fn(toy.SignalParams(pair[0], pair[1]))
        return maximize_mixture(log_ratio, weight, mu_min, mu_max, n_iter)

    return jax.lax.map(at, jnp.asarray(_PAIRS, dtype), batch_size=_GRID_BATCH)


def _profile_grids(p_hat, cov, lower, upper, threshold, n_profile: int) -> jax.Array:
    """``(P, n_profile)`` scan points ``hat_k +- (2 sqrt(t) + 0.5) sigma_k``, clipped to the bounds."""
    sd = jnp.sqrt(jnp.diag(cov))
    sd = jnp.where(jnp.isfinite(sd) & (sd > 0), sd, 0.125 * (upper - lower))
    span = (2.0 * jnp.sqrt(threshold) + 0.5) * sd
    lo, hi = jnp.maximum(lower, p_hat - span), jnp.minimum(upper, p_hat + span)
    return lo[:, None] + (hi - lo)[:, None] * jnp.linspace(0.0, 1.0, n_profile, dtype=p_hat.dtype)


def _fit_and_profile(f, p0, lower, upper, threshold, n_steps: int, n_profile: int, profile_steps: int):
    """The global fit, then every profile re-fit, as one ``lax.scan`` over fits (one traced fit).

    Job 0 is the global Levenberg-Marquardt fit from ``p0`` (masses then ordered ``m_x >= m_y``,
    covariance from its Hessian). Job ``1 + k n_profile + j`` fixes parameter ``k`` at point ``j``
    of :func:`_profile_grids` and re-fits the others from the linear-regression warm start
    ``p_hat + cov[:, k] / cov[k, k] (v - hat_k)``.

    Returns:
        ``(p_hat, log L max, covariance, (P, n_profile) grids, (P, n_profile) profile log L)``.
    """
    n_par = p0.shape[0]
    swap = jnp.array([0, 2, 1])

    def job(carry, j):
        p_hat, ll_hat, cov = carry
        main = j == 0
        k, i = jnp.maximum(j - 1, 0) // max(n_profile, 1), jnp.maximum(j - 1, 0) % max(n_profile, 1)
        v = _profile_grids(p_hat, cov, lower, upper, threshold, max(n_profile, 1))[k, i]
        slope = jnp.where(jnp.isfinite(cov[:, k] / cov[k, k]), cov[:, k] / cov[k, k], 0.0)
        start = jnp.clip(p_hat + slope * (v - p_hat[k]), lower, upper).at[k].set(v)
        start = jnp.where(jnp.isfinite(f(start)), start, p_hat.at[k].set(v))
        start = jnp.where(main, p0, start)
        free = main | (jnp.arange(n_par) != k)
        p, value, info = _lm_maximize(f, start, lower, upper, free, jnp.where(main, n_steps, profile_steps))
        order = jnp.where(p[2] > p[1], swap, jnp.arange(n_par))
        new = (p[order], value, jnp.linalg.inv(info)[order][:, order])
        return jax.tree.map(lambda a, b: jnp.where(main, a, b), new, carry), value

    init = (p0, jnp.asarray(-jnp.inf, p0.dtype), jnp.eye(n_par, dtype=p0.dtype))
    (p_hat, ll_hat, cov), values = jax.lax.scan(job, init, jnp.arange(1 + n_par * n_profile))
    grids = _profile_grids(p_hat, cov, lower, upper, threshold, max(n_profile, 1))
    return p_hat, ll_hat, cov, grids, values[1:].reshape(n_par, n_profile)


def _interval(grid, scan, hat, ll_hat, sd, threshold, profiled: bool) -> Interval:
    """Profile-scan interval (``profiled``) or the Gaussian one, ``hat +- sqrt(t) sigma``."""
    if not profiled:
        half = jnp.sqrt(threshold) * sd
        no = jnp.zeros((), bool)
        return Interval(hat - half, hat + half, hat, ll_hat, no, no)
    scan = jnp.where(jnp.isnan(scan), -jnp.inf, scan)
    i = jnp.argmax(scan)
    return _scan_interval(grid, scan, i, hat, jnp.maximum(ll_hat, scan[i]), threshold)


@partial(jax.jit, static_argnames=("region", "n_steps", "n_profile", "profile_steps", "n_iter"))
def oracle_joint_fit(
    x: ArrayLike,
    weight: ArrayLike | None = None,
    region=DEFAULT_SR,
    mu_min: ArrayLike = 0.0,
    mu_max: ArrayLike = 1.0,
    cl: ArrayLike = CL68,
    n_steps: int = 30,
    n_profile: int = 13,
    profile_steps: int = 4,
    n_iter: int = 50,
) -> JointFit:
    """Exact-likelihood fit of ``(mu, m_x, m_y)`` with Hessian errors and profile intervals.

    ``L(mu, theta) = sum_i w_i log(1 + mu (r_i(theta) - 1))`` with the exact toy ratio. Steps:
    (1) at each ``m_x >= m_y`` point of ``MASS_GRID`` profile ``mu`` exactly
    (:func:`gbijax.inference.maximize_mixture`); (2) from the best grid point, up to ``n_steps``
    Levenberg-Marquardt (damped Newton) steps in ``(mu, m_x, m_y)`` with ``mu`` in
    ``[mu_min, mu_max]`` and the masses in :data:`MASS_BOUNDS`; (3) covariance = inverse Hessian
    of the NLL; (4) for each parameter a profile scan of ``n_profile`` points over
    ``hat +- (2 sqrt(t) + 0.5) sigma`` (``t = wilks_threshold(cl)``), re-fitting the other two by
    up to ``profile_steps`` steps from a linear warm start, then the ``-2 Delta log L <= t``
    interval by the rules of :func:`gbijax.inference.profile_scan`. ``n_profile = 0`` skips the
    scans and reports the Gaussian intervals ``hat +- sqrt(t) sigma`` (much faster).
    Masses are reported with ``m_x >= m_y``: the toy's likelihood is symmetric under the swap.
    At ``mu_hat = 0`` the masses are undefined (flat likelihood, singular Hessian).

    Args:
        x: ``(N, 5)`` events.
        weight: optional ``(N,)`` per-event weights or masks.
        region: the signal region (static).
        mu_min, mu_max: bounds on ``mu``.
        cl: confidence level of the intervals.
        n_steps: maximum Levenberg-Marquardt steps of the global fit (static).
        n_profile: points per profile scan (static; odd is best, >= 3, or 0 for none).
        profile_steps: maximum re-fit steps per profile point (static).
        n_iter: maximum root-finding steps of the grid-point fits (static).

    Returns:
        A :class:`JointFit`.
    """
    if n_profile and n_profile < 3:
        raise ValueError(f"n_profile must be 0 or >= 3, got {n_profile}")
    x = jnp.asarray(x)
    dtype = x.dtype
    lower = jnp.asarray([mu_min, MASS_BOUNDS[0], MASS_BOUNDS[0]], dtype)
    upper = jnp.asarray([mu_max, MASS_BOUNDS[1], MASS_BOUNDS[1]], dtype)
    log_ratio_fn = _log_ratio_fn(x, region)
    mu_grid, ll_grid = _mass_grid_scan(log_ratio_fn, weight, mu_min, mu_max, n_iter, dtype)
    best = jnp.argmax(ll_grid)
    p0 = jnp.concatenate([mu_grid[best][None], jnp.asarray(_PAIRS, dtype)[best]])
    f = _joint_log_likelihood(log_ratio_fn, weight)
    threshold = wilks_threshold(cl).astype(dtype)
    p_hat, ll_hat, cov, grids, scans = _fit_and_profile(
        f, p0, lower, upper, threshold, n_steps, n_profile, profile_steps)  # fmt: skip
    sd = jnp.sqrt(jnp.diag(cov))
    intervals = [
        _interval(grids[k], scans[k], p_hat[k], ll_hat, sd[k], threshold, n_profile > 0) for k in range(3)
    ]
    test = discovery(ll_hat, jnp.zeros_like(ll_hat), p_hat[0])
    return JointFit(
        p_hat[0], toy.SignalParams(p_hat[1], p_hat[2]), ll_hat, cov, sd,
        *intervals, test.q0, test.z, test.p_value, ll_grid[jnp.asarray(_PAIR_INDEX)],
    )  # fmt: skip
