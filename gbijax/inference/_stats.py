"""The statistics core: Wilks thresholds, profile scans, discovery, Fisher errors, bootstrap, mixture fit.

Every function is pure JAX with static shapes and no Python branching on traced values, so a
batch of pseudo-experiments is one ``jax.vmap`` over the data. Nothing here changes the global
precision: pass float64 arrays (inside ``with jax.enable_x64(True):``) where precision matters.

The signal-fraction fit at the end of every GBI measurement maximises

    ``L(mu) = sum_i w_i log(1 + mu (r_i - 1))``,   ``r_i = p_S(x_i) / p_B(x_i)``,

which is :func:`mixture_log_likelihood`; :func:`fit_mixture` gives ``mu_hat``, Wilks intervals and
the discovery significance in one call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jax.scipy.special import gammainc, ndtr, ndtri
from jax.typing import ArrayLike

CL68 = math.erf(1.0 / math.sqrt(2.0))
"""The "1 sigma" confidence level, 0.6826894921370859 (``wilks_threshold(CL68) == 1``)."""
CL95 = 0.95
"""The 95% confidence level (``wilks_threshold(CL95) == 3.841...``)."""

_LOG_RATIO_SWITCH = 20.0  # above it, log(1 + mu (r - 1)) is computed as l + log(1/r + mu (1 - 1/r))
_DOMAIN_MARGIN = 1e-3  # how close to the pole 1 + mu (r_max - 1) = 0 a negative mu may go


# --------------------------------------------------------------------------------------------
# Wilks thresholds
# --------------------------------------------------------------------------------------------


@partial(jax.jit, static_argnames=("n_params",))
def wilks_threshold(cl: ArrayLike = CL68, n_params: int = 1) -> jax.Array:
    """The ``-2 Delta log L`` threshold of a Wilks confidence region: the chi2 quantile.

    ``t = F^-1_{chi2(k)}(cl)`` with ``k = n_params``: in closed form ``t = Phi^-1((1 + cl) / 2)^2``
    for one parameter and ``t = -2 log(1 - cl)`` for two, else by bisection on the chi2 CDF
    ``P(k / 2, t / 2)``. The region is ``{theta: -2 (log L(theta) - log L_max) <= t}``.

    One parameter: 1.00 (68.27%), 3.84 (95%). Two parameters: 2.30 (68.27%), 5.99 (95%).
    The reference R-ANODE code's "95%" interval, ``Delta log L = ln 2`` (``-2 Delta log L =
    1.39``), is a 76% interval, not a 95% one.

    Args:
        cl: confidence level in (0, 1); :data:`CL68` gives exactly 1 sigma.
        n_params: number of parameters of interest (static), the chi2 degrees of freedom.

    Returns:
        The threshold on ``-2 Delta log L``.

    >>> round(float(wilks_threshold(CL68)), 4), round(float(wilks_threshold(CL95)), 3)
    (1.0, 3.841)
    >>> round(float(wilks_threshold(CL68, 2)), 3), round(float(wilks_threshold(CL95, 2)), 3)
    (2.296, 5.991)
    """
    cl = jnp.asarray(cl, dtype=jnp.result_type(float))
    if n_params == 1:
        return ndtri(0.5 + 0.5 * cl) ** 2
    if n_params == 2:
        return -2.0 * jnp.log1p(-cl)
    if n_params < 1:
        raise ValueError(f"n_params must be >= 1, got {n_params}")
    half = 0.5 * n_params

    def halve(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        below = gammainc(half, 0.5 * mid) < cl
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    hi = jnp.asarray(n_params + 20.0 * math.sqrt(2.0 * n_params) + 100.0, cl.dtype)
    lo, hi = jax.lax.fori_loop(0, 100, halve, (jnp.zeros_like(cl), hi + jnp.zeros_like(cl)))
    return 0.5 * (lo + hi)


# --------------------------------------------------------------------------------------------
# Profile scans on a grid
# --------------------------------------------------------------------------------------------


class Interval(NamedTuple):
    """A likelihood interval ``{theta: -2 (log L(theta) - log L_max) <= threshold}``.

    Attributes:
        lo, hi: interval ends (clipped at the scan or parameter bounds).
        hat: the maximum-likelihood estimate.
        log_likelihood_max: ``log L`` at ``hat``.
        lo_at_edge, hi_at_edge: the end was clipped at a bound (the likelihood had not fallen by
            the threshold there), so the true interval extends further (or stops at a physical
            boundary such as ``mu = 0``).
    """

    lo: jax.Array
    hi: jax.Array
    hat: jax.Array
    log_likelihood_max: jax.Array
    lo_at_edge: jax.Array
    hi_at_edge: jax.Array


def scan_log_likelihood(log_likelihood_fn: Callable[[jax.Array], jax.Array], grid: ArrayLike) -> jax.Array:
    """``log L`` at every grid point: ``jax.vmap(log_likelihood_fn)(grid)``.

    >>> scan_log_likelihood(lambda t: -t**2, jnp.array([-1.0, 0.0, 2.0]))
    Array([-1., -0., -4.], dtype=float32)
    """
    return jax.vmap(log_likelihood_fn)(jnp.asarray(grid))


def _parabola_peak(x: jax.Array, y: jax.Array, i: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Vertex of the parabola through the grid maximum ``i`` and its neighbours (moved inward at an edge).

    The vertex is kept within the three points; with no curvature (or a non-finite neighbour)
    the grid maximum itself is returned.
    """
    n = x.shape[0]
    c = jnp.clip(i, 1, n - 2)
    x0, x1, x2 = x[c - 1], x[c], x[c + 1]
    y0, y1, y2 = y[c - 1], y[c], y[c + 1]
    d0, d2 = x0 - x1, x2 - x1
    s0, s2 = (y0 - y1) / d0, (y2 - y1) / d2
    curv = (s2 - s0) / (d2 - d0)  # y = y1 + slope t + curv t^2, t = x - x1
    slope = s2 - curv * d2
    ok = (curv < 0) & jnp.isfinite(y0) & jnp.isfinite(y1) & jnp.isfinite(y2)
    t = jnp.clip(-slope / (2.0 * jnp.where(ok, curv, -1.0)), d0, d2)
    y_peak = jnp.maximum(y1 + slope * t + curv * t**2, y[i])
    return jnp.where(ok, x1 + t, x[i]), jnp.where(ok, y_peak, y[i])


def _crossing(x: jax.Array, d: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
    """Linear interpolation of the zero of ``d`` between grid points ``a`` (outside) and ``b``."""
    n = x.shape[0]
    a, b = jnp.clip(a, 0, n - 1), jnp.clip(b, 0, n - 1)
    frac = jnp.clip(d[a] / jnp.where(d[a] != d[b], d[a] - d[b], 1.0), 0.0, 1.0)
    return x[a] + (x[b] - x[a]) * frac


@jax.jit
def profile_scan(grid: ArrayLike, log_likelihood: ArrayLike, threshold: ArrayLike = 1.0) -> Interval:
    """Maximum and Wilks interval of a 1-D (profile) likelihood scan on a grid.

    The grid maximum is refined by the parabola through it and its two neighbours (the two
    inner neighbours at an edge). The interval
    is the connected set around the maximum where ``-2 (log L - log L_max) <= threshold``; each
    end is the first grid crossing on its side, located by linear interpolation of the signed
    root ``z = +-sqrt(-2 (log L - log L_max))`` between the two grid points around the crossing
    (``z`` is linear for a Gaussian likelihood, so estimate and interval are then exact on any
    grid), or the grid edge (flagged) when there is no crossing.
    Static shapes, no Python branching: ``jax.vmap`` it over many scans (pseudo-experiments).
    ``NaN`` values count as ``-inf``.

    Args:
        grid: ``(G,)`` increasing parameter values, ``G >= 3``.
        log_likelihood: ``(G,)`` ``log L`` (or the profiled ``log L``) at the grid points.
        threshold: ``-2 Delta log L`` threshold, e.g. :func:`wilks_threshold`.

    Returns:
        An :class:`Interval`.

    Gaussian likelihood with mean 0.3 and unit width: ``0.3 +- 1``.

    >>> grid = jnp.linspace(-3.0, 3.0, 13)
    >>> res = profile_scan(grid, -0.5 * (grid - 0.3) ** 2)
    >>> [round(float(v), 4) for v in (res.lo, res.hat, res.hi)], bool(res.lo_at_edge)
    ([-0.7, 0.3, 1.3], False)
    """
    x, y = jnp.asarray(grid), jnp.asarray(log_likelihood)
    if x.ndim != 1 or x.shape != y.shape or x.shape[0] < 3:
        raise ValueError(f"need matching 1-D grid and scan with >= 3 points, got {x.shape}, {y.shape}")
    y = jnp.where(jnp.isnan(y), -jnp.inf, y)
    i = jnp.argmax(y)
    hat, y_max = _parabola_peak(x, y, i)
    return _scan_interval(x, y, i, hat, y_max, threshold)


def _scan_interval(x, y, i, hat, y_max, threshold) -> Interval:
    """The interval around grid point ``i`` of a scan whose maximum is ``y_max`` at ``hat``."""
    n = x.shape[0]
    big = jnp.sqrt(jnp.finfo(jnp.result_type(y.dtype, float)).max) / 4
    root = jnp.minimum(jnp.sqrt(jnp.maximum(2.0 * (y_max - y), 0.0)), big)  # sqrt(-2 Delta log L)
    z = jnp.where(x < hat, -root, root)  # signed root: linear in x for a Gaussian likelihood
    outside = root**2 > threshold
    idx = jnp.arange(n)
    j_lo = jnp.max(jnp.where(outside & (idx < i), idx, -1))
    j_hi = jnp.min(jnp.where(outside & (idx > i), idx, n))
    lo_edge, hi_edge = j_lo < 0, j_hi >= n
    lo = jnp.where(lo_edge, x[0], _crossing(x, -z - jnp.sqrt(threshold), j_lo, j_lo + 1))
    hi = jnp.where(hi_edge, x[-1], _crossing(x, z - jnp.sqrt(threshold), j_hi, j_hi - 1))
    return Interval(lo, hi, hat, y_max, lo_edge, hi_edge)


# --------------------------------------------------------------------------------------------
# Discovery significance
# --------------------------------------------------------------------------------------------


class Discovery(NamedTuple):
    """Discovery test statistic ``q0``, significance ``z = sqrt(q0)`` and p-value ``1 - Phi(z)``."""

    q0: jax.Array
    z: jax.Array
    p_value: jax.Array


def discovery(
    log_likelihood_hat: ArrayLike, log_likelihood_null: ArrayLike, mu_hat: ArrayLike, mu_null: ArrayLike = 0.0
) -> Discovery:
    """The one-sided discovery test: ``q0 = 2 (log L(mu_hat) - log L(0))`` if ``mu_hat > 0``, else 0.

    ``Z = sqrt(q0)`` and ``p = 1 - Phi(Z)`` (asymptotic, Wilks/Chernoff: ``q0`` is half chi2(0),
    half chi2(1) under the background-only hypothesis). With fitted nuisance parameters that are
    undefined at ``mu = 0`` (the signal masses) this is a local significance.

    Args:
        log_likelihood_hat: ``log L`` at the maximum ``mu_hat``.
        log_likelihood_null: ``log L`` at ``mu = mu_null`` (profiled over nuisances, if any).
        mu_hat: the fitted signal strength or fraction.
        mu_null: the background-only value, 0.

    Returns:
        A :class:`Discovery`.

    Counting experiment, ``n = 15`` observed on ``b = 5`` expected:
    ``q0 = 2 (n ln(n / b) - (n - b)) = 12.958``.

    >>> n, b = 15.0, 5.0
    >>> res = discovery(n * jnp.log(n) - n, n * jnp.log(b) - b, mu_hat=n - b)
    >>> round(float(res.q0), 3), round(float(res.z), 3)
    (12.958, 3.6)
    """
    diff = jnp.asarray(log_likelihood_hat) - jnp.asarray(log_likelihood_null)
    q0 = jnp.where(jnp.asarray(mu_hat) > mu_null, jnp.maximum(2.0 * diff, 0.0), 0.0)
    q0 = jnp.where(jnp.isnan(mu_hat), jnp.nan, q0)  # a failed fit is not "no signal"
    z = jnp.sqrt(q0)
    return Discovery(q0, z, ndtr(-z))


def asimov_significance(s: ArrayLike, b: ArrayLike) -> jax.Array:
    """Median expected discovery significance of a counting experiment (Asimov data ``n = s + b``).

    ``Z_A = sqrt(2 ((s + b) ln(1 + s / b) - s))``, which tends to ``s / sqrt(b)`` for ``s << b``
    (Cowan, Cranmer, Gross, Vitells 2011, eq. 97).

    >>> round(float(asimov_significance(10.0, 100.0)), 3), round(float(asimov_significance(5.0, 1.0)), 3)
    (0.984, 3.391)
    """
    s, b = jnp.asarray(s), jnp.asarray(b)
    return jnp.sqrt(2.0 * jnp.maximum((s + b) * jnp.log1p(s / b) - s, 0.0))


def asimov_discovery(
    asimov_log_likelihood: Callable[[jax.Array], jax.Array], mu: ArrayLike, mu_null: ArrayLike = 0.0
) -> Discovery:
    """Median expected discovery from any likelihood evaluated on its Asimov data set.

    On the Asimov data set of ``mu`` (the expected data, e.g. weighted events) ``mu_hat = mu``,
    so ``q0_A = 2 (log L_A(mu) - log L_A(mu_null))`` and the median expected ``Z = sqrt(q0_A)``.

    Args:
        asimov_log_likelihood: ``mu -> log L_A(mu)``, the log-likelihood of the Asimov data.
        mu: the signal hypothesis that generated the Asimov data.
        mu_null: the background-only value.

    Poisson counting with ``s = 5`` on ``b = 1`` reproduces :func:`asimov_significance`:

    >>> log_l = lambda m: 6.0 * jnp.log(m * 5.0 + 1.0) - (m * 5.0 + 1.0)
    >>> round(float(asimov_discovery(log_l, 1.0).z), 3)
    3.391
    """
    mu = jnp.asarray(mu)
    log_l_null = asimov_log_likelihood(jnp.asarray(mu_null, mu.dtype))
    return discovery(asimov_log_likelihood(mu), log_l_null, mu, mu_null)


# --------------------------------------------------------------------------------------------
# Fisher information
# --------------------------------------------------------------------------------------------


class FisherUncertainty(NamedTuple):
    """Gaussian (Hessian) uncertainties at a maximum-likelihood point.

    Attributes:
        covariance: ``(P, P)`` inverse observed Fisher information over the flattened parameters.
        std: standard errors ``sqrt(diag(covariance))``, in the structure of the parameters.
        information: ``(P, P)`` observed Fisher information, the Hessian of the NLL.
    """

    covariance: jax.Array
    std: Any
    information: jax.Array


@partial(jax.jit, static_argnames=("nll_fn",))
def fisher_uncertainty(nll_fn: Callable[[Any], jax.Array], params: Any) -> FisherUncertainty:
    """Covariance from the observed Fisher information ``I = d^2 NLL / d theta^2`` at the MLE.

    ``cov = I^-1`` and ``sigma_k = sqrt(cov_kk)`` (``jax.hessian`` of ``nll_fn``; any pytree of
    parameters). Only meaningful at an interior maximum; a singular ``I`` gives ``inf``/``NaN``.

    Args:
        nll_fn: ``params -> -log L``.
        params: the maximum-likelihood parameters (a pytree of arrays).

    Returns:
        A :class:`FisherUncertainty`.

    Gaussian mean of ``n = 4`` points of unit width: ``sigma / sqrt(n) = 0.5``.

    >>> x = jnp.array([0.1, -0.3, 0.8, 0.2])
    >>> res = fisher_uncertainty(lambda t: 0.5 * jnp.sum((x - t) ** 2), x.mean())
    >>> float(res.std)
    0.5
    """
    flat, unravel = ravel_pytree(params)
    info = jax.hessian(lambda v: nll_fn(unravel(v)))(flat)
    cov = jnp.linalg.inv(info)
    return FisherUncertainty(cov, unravel(jnp.sqrt(jnp.diag(cov))), info)


# --------------------------------------------------------------------------------------------
# Poisson bootstrap
# --------------------------------------------------------------------------------------------


def poisson_weights(key: jax.Array, n_events: int, n_replicas: int) -> jax.Array:
    """``(n_replicas, n_events)`` bootstrap weights, each ``~ Poisson(1)``, from one explicit key.

    Replica ``k`` uses ``jax.random.split(key, n_replicas)[k]``, like :func:`bootstrap`.
    """
    keys = jax.random.split(key, n_replicas)
    return jax.vmap(lambda k: _poisson_one(k, n_events))(keys)


_POISSON_ONE_CDF = tuple(
    math.fsum(math.exp(-1.0) / math.factorial(j) for j in range(k + 1)) for k in range(24)
)


def _poisson_one(key: jax.Array, n: int) -> jax.Array:
    """``(n,)`` draws of Poisson(1) by inversion of its CDF (exact up to ``P(k > 23) < 1e-24``)."""
    dtype = jnp.result_type(float)
    u = jax.random.uniform(key, (n,), dtype)
    return jnp.sum(u[:, None] >= jnp.asarray(_POISSON_ONE_CDF, dtype), axis=-1).astype(dtype)


@partial(jax.jit, static_argnames=("estimator", "n_events", "n_replicas", "batch_size"))
def bootstrap(
    key: jax.Array,
    estimator: Callable[[jax.Array], Any],
    n_events: int,
    n_replicas: int = 100,
    weight: ArrayLike | None = None,
    batch_size: int | None = None,
) -> Any:
    """The Poisson-weight bootstrap distribution of ``estimator(weights)``.

    Every replica draws per-event weights ``w_i ~ Poisson(1)`` (times the base ``weight``), so
    resampling keeps the array shape fixed and the replicas run as one ``vmap`` (or ``lax.map``
    in batches of ``batch_size`` to bound memory). The spread of the returned values estimates
    the estimator's sampling distribution.

    Args:
        key: PRNG key; replica ``k`` uses ``jax.random.split(key, n_replicas)[k]``.
        estimator: ``weights (n_events,) -> value`` (any pytree), e.g. a weighted fit.
        n_events: number of events (static).
        n_replicas: number of bootstrap replicas (static).
        weight: optional ``(n_events,)`` base weights (masks, injections) multiplied in.
        batch_size: replicas per vectorised batch; ``None``: all at once.

    Returns:
        The estimator's values stacked along a leading ``n_replicas`` axis.

    >>> x = jnp.arange(10.0)
    >>> mean = lambda w: jnp.sum(w * x) / jnp.sum(w)
    >>> bootstrap(jax.random.key(0), mean, 10, n_replicas=500).shape
    (500,)
    """
    keys = jax.random.split(key, n_replicas)

    def replica(k):
        w = _poisson_one(k, n_events)
        return estimator(w if weight is None else w * jnp.asarray(weight))

    if batch_size is None:
        return jax.vmap(replica)(keys)
    return jax.lax.map(replica, keys, batch_size=batch_size)


# --------------------------------------------------------------------------------------------
# The signal-fraction mixture likelihood
# --------------------------------------------------------------------------------------------


class _Ratios(NamedTuple):
    """Per-event constants of the mixture: ``1 + mu (r - 1) = scale (base + mu slope)``.

    For ``log r <= 20``: ``scale = 1, base = 1, slope = r - 1``; above, ``scale = r``,
    ``base = 1 / r``, ``slope = 1 - 1 / r``, so nothing overflows for any ``log r``.
    """

    weight: jax.Array
    small: jax.Array
    slope: jax.Array
    base: jax.Array
    log_scale: jax.Array


def _ratios(log_ratio: ArrayLike, weight: ArrayLike | None) -> _Ratios:
    """Precompute :class:`_Ratios`; zero-weight entries become neutral (``r = 1``) whatever their
    value, a NaN of positive weight stays NaN (it is not dropped: the fit becomes NaN)."""
    log_ratio = jnp.asarray(log_ratio)
    w = jnp.ones_like(log_ratio) if weight is None else jnp.asarray(weight, log_ratio.dtype)
    log_r = jnp.where(w != 0, log_ratio, 0.0)
    small = log_r <= _LOG_RATIO_SWITCH
    l_big = jnp.where(small, 2.0 * _LOG_RATIO_SWITCH, log_r)
    slope = jnp.where(small, jnp.expm1(jnp.where(small, log_r, 0.0)), -jnp.expm1(-l_big))
    return _Ratios(w, small, slope, jnp.where(small, 1.0, jnp.exp(-l_big)), jnp.where(small, 0.0, l_big))


def _weighted_sum(w: jax.Array, terms: jax.Array) -> jax.Array:
    return jnp.sum(jnp.where(w != 0, w * terms, 0.0), axis=-1)


def _terms(mu: jax.Array, e: _Ratios) -> jax.Array:
    """Per-event ``log(1 + mu (r - 1))``, ``-inf`` where ``1 + mu (r - 1) <= 0``, NaN where ``r`` is."""
    arg = mu * e.slope
    inner = e.base + arg
    ok = jnp.where(e.small, arg > -1.0, inner > 0.0)
    small_val = jnp.log1p(jnp.where(ok, arg, 0.0))
    val = jnp.where(e.small, small_val, e.log_scale + jnp.log(jnp.where(ok, inner, 1.0)))
    val = jnp.where(ok, val, jnp.where(mu == 0, 0.0, -jnp.inf))  # mu = 0 with 1/r underflowed: log 1
    return jnp.where(jnp.isnan(e.slope), jnp.nan, val)


def _score(mu: jax.Array, e: _Ratios) -> tuple[jax.Array, jax.Array]:
    """``L'(mu) = sum_i w_i (r_i - 1) / (1 + mu (r_i - 1))`` and ``L''(mu)``."""
    q = e.slope / (e.base + mu * e.slope)
    return _weighted_sum(e.weight, q), -_weighted_sum(e.weight, q * q)


def _mixture_bounds(e: _Ratios, mu_min: ArrayLike, mu_max: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """``[mu_min, mu_max]`` with ``mu_min`` raised to just inside the pole ``mu = -1 / (r_max - 1)``."""
    slope_max = jnp.max(jnp.where(e.weight > 0, e.slope / e.base, 0.0))  # r_max - 1 (scaled for big r)
    pole = -1.0 / jnp.maximum(slope_max, 1e-30)
    dtype = e.slope.dtype
    return jnp.maximum(jnp.asarray(mu_min, dtype), (1.0 - _DOMAIN_MARGIN) * pole), jnp.asarray(mu_max, dtype)


def _midpoint(a: jax.Array, b: jax.Array) -> jax.Array:
    """Bisection point of ``[a, b]``: geometric when the bracket spans decades on one side of 0."""
    lo, hi = jnp.minimum(a, b), jnp.maximum(a, b)
    pos, neg = (lo > 0) & (hi > 8 * lo), (hi < 0) & (lo < 8 * hi)
    geo = jnp.sqrt(jnp.where(pos | neg, lo * hi, 1.0))
    return jnp.where(pos, geo, jnp.where(neg, -geo, 0.5 * (lo + hi)))


def _root(f: Callable[[jax.Array], tuple[jax.Array, jax.Array]], lo, hi, x0, n_iter: int) -> jax.Array:
    """Zero of a monotone ``f`` with ``f(lo) > 0 >= f(hi)`` (either orientation): safeguarded Newton.

    ``f`` returns ``(value, derivative)``; the search starts at ``x0`` (clipped into the bracket).
    A Newton step is taken when it stays in the current bracket and at least halves the step
    before; otherwise the bracket is bisected (at the geometric mean when it spans decades on one
    side of 0, as for a signal fraction of 1e-4 searched in ``[1e-9, 1]``). It stops when the step
    or the bracket falls to rounding level or after ``n_iter`` steps, and returns the iterate with
    the smallest ``|f|``.
    """
    eps = jnp.finfo(jnp.result_type(lo, float)).eps

    def step(carry):
        i, a, b, x, dx_old, best, f_best = carry
        fx, dfx = f(x)
        better = jnp.abs(fx) < f_best
        best, f_best = jnp.where(better, x, best), jnp.where(better, jnp.abs(fx), f_best)
        pos = fx > 0
        a, b = jnp.where(pos, x, a), jnp.where(pos, b, x)
        newton = x - fx / dfx
        inside = (newton - a) * (newton - b) <= 0
        use = jnp.isfinite(newton) & jnp.isfinite(dfx) & inside & (jnp.abs(newton - x) <= 0.5 * dx_old)
        x_new = jnp.where(use, newton, _midpoint(a, b))
        # a step is small only relative to x: a tiny first Newton step from a huge score (one event
        # with r ~ 1e14) is far from the root; the bracket may also end at an absolute resolution
        small_step = jnp.abs(x_new - x) <= 32 * eps * jnp.abs(x)
        small_bracket = jnp.abs(a - b) <= 32 * eps * (jnp.maximum(jnp.abs(a), jnp.abs(b)) + 1e-8 * width)
        done = (fx == 0) | small_step | small_bracket
        return i + jnp.where(done, n_iter, 1), a, b, x_new, jnp.abs(x_new - x), best, f_best

    width = jnp.abs(hi - lo)
    x0 = jnp.where(jnp.isfinite(x0), x0, _midpoint(lo, hi))  # e.g. inf / inf for an overflowing ratio
    x0 = jnp.clip(x0, jnp.minimum(lo, hi), jnp.maximum(lo, hi))
    init = (0, lo, hi, x0, 2 * jnp.abs(hi - lo), x0, jnp.full_like(x0, jnp.inf))
    return jax.lax.while_loop(lambda c: c[0] < n_iter, step, init)[5]


@jax.jit
def mixture_log_likelihood(mu: ArrayLike, log_ratio: ArrayLike, weight: ArrayLike | None = None) -> jax.Array:
    """The signal-fraction log-likelihood relative to background only.

    ``L(mu) = sum_i w_i log(1 + mu (r_i - 1))`` with ``r_i = exp(log_ratio_i) = p_S(x_i) / p_B(x_i)``,
    i.e. ``log prod_i [mu p_S(x_i) + (1 - mu) p_B(x_i)] / p_B(x_i)``, so ``L(0) = 0``. Stable for
    any ``log r`` (no overflow of ``r``); defined for ``mu < 0`` too (the unbounded MLE), where it is
    ``-inf`` once ``1 + mu (r_i - 1) <= 0`` for some event. Events with ``w_i = 0`` are ignored.

    Args:
        mu: signal fraction (scalar).
        log_ratio: ``(N,)`` per-event ``log p_S - log p_B``.
        weight: optional ``(N,)`` per-event weights (masks, bootstrap, injections).

    Returns:
        The scalar ``L(mu)``.

    >>> round(float(mixture_log_likelihood(0.5, jnp.log(jnp.array([3.0, 1.0, 0.5])))), 4)
    0.4055
    >>> float(mixture_log_likelihood(0.01, jnp.array([1000.0])))  # log(1 + 0.01 (e^1000 - 1))
    995.3948364257812
    """
    e = _ratios(log_ratio, weight)
    return _weighted_sum(e.weight, _terms(jnp.asarray(mu, e.slope.dtype), e))


@partial(jax.jit, static_argnames=("n_iter",))
def maximize_mixture(
    log_ratio: ArrayLike,
    weight: ArrayLike | None = None,
    mu_min: ArrayLike = 0.0,
    mu_max: ArrayLike = 1.0,
    n_iter: int = 50,
) -> tuple[jax.Array, jax.Array]:
    """``mu_hat = argmax L(mu)`` of :func:`mixture_log_likelihood` on ``[mu_min, mu_max]``.

    ``L`` is concave (``L'' = -sum_i w_i (r_i - 1)^2 / (1 + mu (r_i - 1))^2 <= 0`` for ``w >= 0``),
    so its score ``L'(mu) = sum_i w_i (r_i - 1) / (1 + mu (r_i - 1))`` decreases monotonically and
    ``mu_hat`` is its zero, found by safeguarded Newton steps inside the bracket
    ``[mu_min, mu_max]`` (exact to rounding, no starting point, fixed step count so it vmaps);
    ``mu_hat`` is the bound where the score has one sign throughout.

    The default ``mu_min = 0`` is the physical region. Bias and coverage studies of a detectable
    signal need the unbounded MLE (otherwise ``mu_hat`` is biased upwards near ``mu = 0``): pass
    a negative ``mu_min`` (e.g. ``-1``); it is raised automatically to just inside the pole
    ``mu = -1 / (max_i r_i - 1)`` where ``L = -inf``. Caveat: when signal and background are
    very separable and there is little or no signal, ``L`` keeps rising for ``mu < 0`` up to that
    pole (most ``r_i << 1``), so negative fits and Wilks intervals there are not regular; use
    ``mu_min = 0`` for statements about ``mu = 0`` (the discovery test and upper limits).

    Args:
        log_ratio: ``(N,)`` per-event ``log p_S - log p_B``.
        weight: optional ``(N,)`` non-negative weights.
        mu_min, mu_max: the search bounds.
        n_iter: maximum root-finding steps (static); Newton converges in about 5-10, and even
            pure bisection would resolve ``[0, 1]`` to ``1e-15`` in 50.

    Returns:
        ``(mu_hat, L(mu_hat))``.

    >>> l = jnp.log(jnp.array([4.0, 4.0, 0.5, 0.5, 0.5, 0.5]))
    >>> mu_hat, l_max = maximize_mixture(l)
    >>> round(float(mu_hat), 4)  # zero of the score 2 * 3 / (1 + 3 mu) - 4 * 0.5 / (1 - 0.5 mu): 4 / 9
    0.4444
    """
    e = _ratios(log_ratio, weight)
    return _maximize(e, *_mixture_bounds(e, mu_min, mu_max), n_iter)


def _maximize(e: _Ratios, lo: jax.Array, hi: jax.Array, n_iter: int) -> tuple[jax.Array, jax.Array]:
    score = lambda m: _score(m, e)
    d0, dd0 = score(jnp.zeros_like(lo))
    root = _root(score, lo, hi, d0 / jnp.maximum(-dd0, jnp.finfo(lo.dtype).tiny), n_iter)  # Newton from 0
    mu_hat = jnp.where(score(lo)[0] <= 0, lo, jnp.where(score(hi)[0] >= 0, hi, root))
    return mu_hat, _weighted_sum(e.weight, _terms(mu_hat, e))


@partial(jax.jit, static_argnames=("n_iter",))
def mixture_interval(
    log_ratio: ArrayLike,
    weight: ArrayLike | None = None,
    threshold: ArrayLike = 1.0,
    mu_min: ArrayLike = 0.0,
    mu_max: ArrayLike = 1.0,
    mu_hat: ArrayLike | None = None,
    n_iter: int = 50,
) -> Interval:
    """The Wilks interval ``{mu: -2 (L(mu) - L(mu_hat)) <= threshold}`` of the mixture likelihood.

    Each end is a root of ``-2 (L(mu) - L(mu_hat)) - threshold`` on its side of the maximum,
    where it is monotone (``L`` is concave), by safeguarded Newton steps from the Gaussian guess
    ``mu_hat -+ sqrt(threshold / -L''(mu_hat))``. The likelihood differences are summed event by
    event, so they stay accurate in float32 for large samples. An end that does not cross within
    ``[mu_min, mu_max]`` (see :func:`maximize_mixture`) is clipped there and flagged.

    Args:
        log_ratio: ``(N,)`` per-event ``log p_S - log p_B``.
        weight: optional ``(N,)`` non-negative weights.
        threshold: ``-2 Delta log L`` threshold, e.g. ``wilks_threshold(CL95)``.
        mu_min, mu_max: parameter bounds.
        mu_hat: the maximum if already known (else :func:`maximize_mixture` is called).
        n_iter: maximum root-finding steps per search (static).

    Returns:
        An :class:`Interval` in ``mu``.

    >>> l = jnp.log(jnp.array([4.0, 4.0, 0.5, 0.5, 0.5, 0.5]))
    >>> res = mixture_interval(l, threshold=wilks_threshold(CL68))
    >>> [round(float(v), 3) for v in (res.lo, res.hat, res.hi)]
    [0.054, 0.444, 0.918]
    >>> bool(res.lo_at_edge), bool(res.hi_at_edge)
    (False, False)
    """
    e = _ratios(log_ratio, weight)
    lo, hi = _mixture_bounds(e, mu_min, mu_max)
    mu_hat = _maximize(e, lo, hi, n_iter)[0] if mu_hat is None else jnp.asarray(mu_hat, e.slope.dtype)
    return _interval(e, lo, hi, mu_hat, threshold, n_iter)


def _interval(e: _Ratios, lo, hi, mu_hat, threshold, n_iter: int) -> Interval:
    terms_hat = _terms(mu_hat, e)

    def excess(m):  # -2 (L(m) - L(mu_hat)) - threshold (> 0 outside) and its derivative
        return 2.0 * _weighted_sum(e.weight, terms_hat - _terms(m, e)) - threshold, -2.0 * _score(m, e)[0]

    lo_edge, hi_edge = excess(lo)[0] <= 0, excess(hi)[0] <= 0
    curvature = jnp.maximum(-_score(mu_hat, e)[1], jnp.finfo(lo.dtype).tiny)
    half_width = jnp.sqrt(threshold / curvature)  # the Gaussian guess
    lo_end = jnp.where(lo_edge, lo, _root(excess, lo, mu_hat, mu_hat - half_width, n_iter))
    hi_end = jnp.where(hi_edge, hi, _root(excess, hi, mu_hat, mu_hat + half_width, n_iter))
    return Interval(lo_end, hi_end, mu_hat, _weighted_sum(e.weight, terms_hat), lo_edge, hi_edge)


class MixtureFit(NamedTuple):
    """Result of :func:`fit_mixture`: the signal fraction, its intervals and the discovery test.

    Attributes:
        mu_hat: maximum-likelihood signal fraction within ``[mu_min, mu_max]``.
        log_likelihood_max: ``L(mu_hat) - L(0)`` (:func:`mixture_log_likelihood`).
        interval_68, interval_95: Wilks intervals at 68.27% (``-2 Delta log L <= 1``) and 95%
            (``<= 3.84``).
        q0, z, p_value: discovery test statistic, significance and p-value (:func:`discovery`).
    """

    mu_hat: jax.Array
    log_likelihood_max: jax.Array
    interval_68: Interval
    interval_95: Interval
    q0: jax.Array
    z: jax.Array
    p_value: jax.Array


@partial(jax.jit, static_argnames=("n_iter",))
def fit_mixture(
    log_ratio: ArrayLike,
    weight: ArrayLike | None = None,
    mu_min: ArrayLike = 0.0,
    mu_max: ArrayLike = 1.0,
    n_iter: int = 50,
    extra_variance: ArrayLike = 0.0,
) -> MixtureFit:
    """Fit the signal fraction of ``mu p_S + (1 - mu) p_B``: estimate, Wilks intervals, discovery.

    ``mu_hat`` from :func:`maximize_mixture`, intervals from :func:`mixture_interval` at the
    thresholds ``wilks_threshold(CL68) = 1`` and ``wilks_threshold(CL95) = 3.84``, and
    ``q0 = 2 L(mu_hat)`` if ``mu_hat > 0`` else 0 (``L(0) = 0``), ``Z = sqrt(q0)``.
    ``jax.vmap`` over ``log_ratio``/``weight`` fits many pseudo-experiments at once.

    ``extra_variance`` adds a variance of ``mu_hat`` that the likelihood does not know about
    (e.g. from a learned signal shape) in quadrature to the statistical one,
    ``sigma_stat^2 = 1 / -L''(mu_hat)``: the intervals are those of the log-likelihood scaled by
    ``s = sigma_stat^2 / (sigma_stat^2 + extra_variance)`` (:func:`likelihood_scale`),
    ``{mu: -2 s Delta L <= t}``; for a Gaussian likelihood the 68% interval becomes
    ``mu_hat +- sqrt(sigma_stat^2 + extra_variance)`` exactly. ``q0`` is unchanged: an
    uncertain signal shape does not change the test of ``mu = 0``, under which no signal
    shape enters the likelihood.

    Args:
        log_ratio: ``(N,)`` per-event ``log p_S - log p_B``.
        weight: optional ``(N,)`` non-negative weights.
        mu_min, mu_max: bounds on ``mu`` (see :func:`maximize_mixture` for the choice of ``mu_min``).
        n_iter: maximum root-finding steps per search (static).
        extra_variance: non-negative variance added to the statistical one in the intervals
            (0: plain Wilks).

    Returns:
        A :class:`MixtureFit`; all NaN (``q0`` and ``z`` too) if a log-ratio of positive weight
        is NaN (zero-weight entries are ignored whatever their value).

    >>> l = jnp.log(jnp.array([4.0, 4.0, 0.5, 0.5, 0.5, 0.5]))
    >>> fit = fit_mixture(l)
    >>> round(float(fit.mu_hat), 4), round(float(fit.z), 3)
    (0.4444, 1.174)
    """
    e = _ratios(log_ratio, weight)
    lo, hi = _mixture_bounds(e, mu_min, mu_max)
    mu_hat, l_max = _maximize(e, lo, hi, n_iter)
    scale = likelihood_scale(-_score(mu_hat, e)[1], extra_variance)
    int68, int95 = (_interval(e, lo, hi, mu_hat, wilks_threshold(cl).astype(lo.dtype) / scale, n_iter)
                    for cl in (CL68, CL95))  # fmt: skip
    test = discovery(l_max, jnp.zeros_like(l_max), mu_hat)
    return MixtureFit(mu_hat, l_max, int68, int95, test.q0, test.z, test.p_value)


def likelihood_scale(information: ArrayLike, extra_variance: ArrayLike) -> jax.Array:
    """``s = sigma^2 / (sigma^2 + extra_variance)`` with ``sigma^2 = 1 / information``, in ``(0, 1]``.

    Multiplying a log-likelihood of curvature ``information`` by ``s`` turns its variance
    ``sigma^2`` into ``sigma^2 + extra_variance`` (a Gaussian nuisance added in quadrature).

    >>> float(likelihood_scale(4.0, 0.75))  # sigma^2 = 0.25 -> 1.0
    0.25
    """
    information = jnp.asarray(information)
    extra = jnp.maximum(jnp.asarray(extra_variance, information.dtype), 0.0)
    return 1.0 / (1.0 + extra * jnp.maximum(information, 0.0))


def mixture_asimov_weights(n_background: int, n_signal: int, mu: ArrayLike, n_events: ArrayLike) -> jax.Array:
    """Event weights that turn background and signal samples into the Asimov data set of a mixture.

    For ``n_background`` background events followed by ``n_signal`` signal events, background
    events weigh ``(1 - mu) n / n_B`` and signal events ``mu n / n_S``, so that any weighted sum
    ``sum_i w_i g(x_i)`` estimates ``n [(1 - mu) E_B g + mu E_S g]``: the expected value on ``n``
    events at signal fraction ``mu``. A weighted fit on them (e.g. :func:`gbijax.inference.fit_paws`
    with ``weight``) is the Asimov fit, whose estimates are the pseudo-true values of the model:
    with an exact likelihood ratio they are the truth, with a learned one their offset from the
    truth is the fit's bias, and ``-2 Delta l`` of the truth says what it costs a contour.

    >>> w = mixture_asimov_weights(3, 2, 0.1, 100.0)
    >>> [round(float(v), 6) for v in w]
    [30.0, 30.0, 30.0, 5.0, 5.0]

    Raises:
        ValueError: a sample without events.
    """
    if n_background < 1 or n_signal < 1:
        raise ValueError(f"need background and signal events; got {n_background} and {n_signal}")
    mu = jnp.asarray(mu, jnp.result_type(float))
    w_b = jnp.full(n_background, (1.0 - mu) * n_events / n_background)
    return jnp.concatenate([w_b, jnp.full(n_signal, mu * n_events / n_signal)])


def mixture_asimov_discovery(
    mu: ArrayLike, n_events: ArrayLike, signal_log_ratio: ArrayLike, background_log_ratio: ArrayLike
) -> Discovery:
    """Median expected discovery of the mixture fit, from Monte Carlo samples of ``p_S`` and ``p_B``.

    The Asimov data set of ``n`` events at signal fraction ``mu`` gives
    ``L_A(m) = n [mu E_S log(1 + m (r - 1)) + (1 - mu) E_B log(1 + m (r - 1))]``, with the
    expectations estimated as sample means of ``log_ratio`` over signal and background samples;
    ``q0_A = 2 L_A(mu)`` (:func:`asimov_discovery`).

    Args:
        mu: the true signal fraction.
        n_events: expected number of events in the fit (signal + background).
        signal_log_ratio: ``(N_S,)`` ``log p_S - log p_B`` of signal samples.
        background_log_ratio: ``(N_B,)`` the same for background samples.
    """
    e_s, e_b = _ratios(signal_log_ratio, None), _ratios(background_log_ratio, None)
    mu = jnp.asarray(mu, e_s.slope.dtype)

    def log_l(m):
        return n_events * (mu * jnp.mean(_terms(m, e_s)) + (1.0 - mu) * jnp.mean(_terms(m, e_b)))

    return asimov_discovery(log_l, mu)
