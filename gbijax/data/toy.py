"""The analytic LHCO-like toy: background, a parametric signal family and their mixture.

Every density here is exact and normalised, so the toy is the ground truth for tests, for the
default demo, for calibration studies and for the exact-likelihood oracle. Columns and units
are those of :data:`gbijax.data.FEATURE_NAMES` (masses in TeV).

Background (QCD-like):
    ``mjj`` follows a power law ``p(m) ∝ m^-k`` on ``[m_min, m_max]``. Given ``mjj``, the
    transformed features ``y = (log mj_min, log delta_mj, logit tau21_min, logit tau21_max)``
    are Gaussian with a mean that moves linearly in ``log(mjj / 3.5 TeV)`` and a fixed
    correlation, so the features are correlated with ``mjj`` and with each other:
    ``p_B(m, x) = p(m) N(y(x); a + b log(m / 3.5), Σ) |dy/dx|``.

Signal (``W' -> X Y``, both to two prongs), parametrised by ``theta = (m_x, m_y)`` in TeV:
    ``mjj`` is a narrow Gaussian at 3.5 TeV (truncated to the toy's range). The two jets are
    independent: jet masses log-normal around ``m_x`` and ``m_y``, tau21 logit-normal with a
    mean that depends on the jet's nominal mass (lighter jets are more boosted and look less
    two-pronged). Ordering the jets by mass maps ``(jet X, jet Y)`` two-to-one onto
    ``(mj_min, delta_mj, tau21_min, tau21_max)``, with unit Jacobian, so
    ``p(x) = p_X(lo, t_lo) p_Y(hi, t_hi) + p_X(hi, t_hi) p_Y(lo, t_lo)`` with
    ``lo = mj_min``, ``hi = mj_min + delta_mj``.

Every function takes an optional ``region=(lo, hi)``: the mjj density is then truncated to and
renormalised on ``lo < mjj < hi`` (for example the signal region).

>>> import jax
>>> x = background_sample(jax.random.key(0), 4, region=(3.3, 3.7))
>>> x.shape, bool(((x[:, 0] > 3.3) & (x[:, 0] < 3.7)).all())
((4, 5), True)
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp, ndtr, ndtri

__all__ = [
    "DEFAULT_SIGNAL",
    "M_MAX",
    "M_MIN",
    "MASS_GRID",
    "SignalParams",
    "background_features_log_prob",
    "background_log_prob",
    "background_mjj_log_prob",
    "background_region_fraction",
    "background_sample",
    "mixture_log_prob",
    "mixture_sample",
    "signal_log_prob",
    "signal_region_fraction",
    "signal_sample",
]

M_MIN, M_MAX = 2.5, 6.0
"""The toy's mjj range in TeV (sidebands and signal region together)."""
POWER = 6.0
"""Background mjj spectrum ``p(m) ∝ m^-POWER``: about 11% of the background lies in 3.3-3.7."""
M_REF = 3.5

# Background features in y-space: mean a + b log(m / M_REF), covariance from std and correlation.
_BKG_MEAN = (math.log(0.105), math.log(0.12), 0.40, -0.05)
_BKG_SLOPE = (1.0, 1.0, -0.30, -0.40)
_BKG_STD = (0.60, 1.10, 0.55, 0.65)
_BKG_CORR = (
    (1.00, 0.10, -0.30, 0.05),
    (0.10, 1.00, 0.05, -0.35),
    (-0.30, 0.05, 1.00, 0.20),
    (0.05, -0.35, 0.20, 1.00),
)

SIGNAL_MJJ_MEAN = 3.5
SIGNAL_MJJ_WIDTH = 0.175  # about 75% of the signal lands in 3.3-3.7 TeV, as in LHCO
_SIG_LOG_MASS_STD = 0.15  # relative jet-mass resolution
_SIG_TAU_LOGIT_AT_REF = math.log(0.25 / 0.75)  # tau21 of a 250 GeV two-prong jet
_SIG_TAU_SLOPE = -0.45  # d logit(tau21) / d log(m_jet)
_SIG_TAU_STD = 0.70

MASS_GRID = tuple(round(0.05 * i, 2) for i in range(1, 13))
"""The (m_x, m_y) grid of the parametric signal family, 50-600 GeV in 50 GeV steps (TeV)."""


class SignalParams(NamedTuple):
    """Signal parameters ``theta``: the two daughter masses in TeV (a pytree, vmap-able)."""

    m_x: float | jax.Array = 0.5
    m_y: float | jax.Array = 0.1


DEFAULT_SIGNAL = SignalParams()
"""The LHCO R&D benchmark point: m_x = 500 GeV, m_y = 100 GeV."""


def _static_region(region):
    """``region`` as a hashable ``(lo, hi)`` tuple of floats (or ``None``), for ``jit``."""
    if region is None:
        return None
    lo, hi = region
    return float(lo), float(hi)


def _bucket(n: int) -> int:
    """A sample size rounded up to a power of two, at least 1024."""
    return max(1024, 1 << (n - 1).bit_length())


def _compiled(*static_argnames):
    """``jax.jit`` the function, with ``region`` and ``n`` static and made hashable.

    Eager JAX compiles every primitive again for every new array shape, which made the toy's
    functions take seconds per call; compiled, a new shape costs one compilation. Samplers
    draw a power-of-two number of events (:func:`_bucket`) and return the first ``n``, so they
    compile once per size bucket rather than once per ``n``; JAX's counter-based threefry
    draws are prefix-consistent, so the first ``n`` events are the ones a draw of exactly
    ``n`` gives. Inside a caller's ``jit``/``vmap``/``grad`` the inner ``jit`` is inlined.
    """

    def decorate(fn):
        jitted = jax.jit(fn, static_argnames=static_argnames)
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = bound.arguments
            if "region" in arguments:
                arguments["region"] = _static_region(arguments["region"])
            if "n" not in arguments:
                return jitted(**arguments)
            n = arguments["n"] = int(arguments["n"])
            if n < 0:
                raise ValueError(f"number of events must be >= 0, got {n}")
            arguments["n"] = _bucket(n)
            return jax.tree.map(lambda a: a[:n], jitted(**arguments))

        return wrapper

    return decorate


def _bounds(region):
    lo, hi = (M_MIN, M_MAX) if region is None else (float(region[0]), float(region[1]))
    lo, hi = max(lo, M_MIN), min(hi, M_MAX)
    if not lo < hi:
        raise ValueError(f"region {region} does not overlap the toy's mjj range ({M_MIN}, {M_MAX})")
    return lo, hi


def _power_cdf(m):
    """Unnormalised CDF of m^-POWER (up to a constant)."""
    return -(m ** (1.0 - POWER)) / (POWER - 1.0)


def background_region_fraction(region) -> float:
    """Fraction of the background's mjj spectrum inside ``region``."""
    lo, hi = _bounds(region)
    return float((_power_cdf(hi) - _power_cdf(lo)) / (_power_cdf(M_MAX) - _power_cdf(M_MIN)))


def signal_region_fraction(region) -> float:
    """Fraction of the signal's mjj distribution (on the toy range) inside ``region``."""
    lo, hi = _bounds(region)
    cdf = lambda m: float(ndtr((m - SIGNAL_MJJ_MEAN) / SIGNAL_MJJ_WIDTH))
    return (cdf(hi) - cdf(lo)) / (cdf(M_MAX) - cdf(M_MIN))


def _in_range(m, lo, hi):
    return (m > lo) & (m < hi)


@_compiled("region")
def background_mjj_log_prob(m, region=None):
    """``log p_B(mjj)``: the power law normalised on the toy range or on ``region``."""
    lo, hi = _bounds(region)
    log_norm = math.log(_power_cdf(hi) - _power_cdf(lo))
    safe = jnp.where(_in_range(m, lo, hi), m, 0.5 * (lo + hi))
    return jnp.where(_in_range(m, lo, hi), -POWER * jnp.log(safe) - log_norm, -jnp.inf)


def _to_y(features):
    """``(..., 4)`` physical features -> y-space and ``log|dy/dx|``; support mask."""
    mj, dm, t1, t2 = (features[..., i] for i in range(4))
    ok = (mj > 0) & (dm > 0) & (t1 > 0) & (t1 < 1) & (t2 > 0) & (t2 < 1)
    mj, dm = jnp.where(ok, mj, 0.1), jnp.where(ok, dm, 0.1)
    t1, t2 = jnp.where(ok, t1, 0.5), jnp.where(ok, t2, 0.5)
    y = jnp.stack([jnp.log(mj), jnp.log(dm), jnp.log(t1) - jnp.log1p(-t1),
                   jnp.log(t2) - jnp.log1p(-t2)], -1)  # fmt: skip
    log_jac = -(jnp.log(mj) + jnp.log(dm) + jnp.log(t1) + jnp.log1p(-t1) + jnp.log(t2)
                + jnp.log1p(-t2))  # fmt: skip
    return y, log_jac, ok


def _from_y(y):
    return jnp.stack([jnp.exp(y[..., 0]), jnp.exp(y[..., 1]),
                      jax.nn.sigmoid(y[..., 2]), jax.nn.sigmoid(y[..., 3])], -1)  # fmt: skip


def _bkg_cholesky():
    std = jnp.asarray(_BKG_STD)
    return jnp.linalg.cholesky(jnp.asarray(_BKG_CORR) * std[:, None] * std[None, :])


def _bkg_mean(m):
    return jnp.asarray(_BKG_MEAN) + jnp.asarray(_BKG_SLOPE) * jnp.log(m / M_REF)[..., None]


@_compiled()
def background_features_log_prob(features, m):
    """``log p_B(x | mjj)`` of the four substructure features given the dijet mass.

    Args:
        features: ``(N, 4)`` columns ``mj_min, delta_mj, tau21_min, tau21_max``.
        m: ``(N,)`` dijet masses in TeV.
    """
    y, log_jac, ok = _to_y(features)
    chol = _bkg_cholesky()
    resid = y - _bkg_mean(jnp.where(m > 0, m, M_REF))
    white = jax.scipy.linalg.solve_triangular(chol, resid.T, lower=True).T
    log_norm = jnp.sum(jnp.log(jnp.diag(chol))) + 2.0 * math.log(2.0 * math.pi)
    return jnp.where(ok, -0.5 * jnp.sum(white**2, -1) - log_norm + log_jac, -jnp.inf)


@_compiled("region")
def background_log_prob(x, region=None):
    """``log p_B(mjj, x)`` of ``(N, 5)`` events, mjj density normalised on ``region``.

    ``p_B(m, x) = p_B(m) p_B(x | m)`` with the power-law ``p_B(m)``.
    """
    return background_mjj_log_prob(x[:, 0], region) + background_features_log_prob(x[:, 1:], x[:, 0])


@_compiled("n", "region")
def background_sample(key, n: int, region=None):
    """``(n, 5)`` background events with mjj drawn on ``region`` (default: the full range)."""
    lo, hi = _bounds(region)
    k_m, k_y = jax.random.split(key)
    u = jax.random.uniform(k_m, (n,))
    cdf = _power_cdf(lo) + u * (_power_cdf(hi) - _power_cdf(lo))
    m = (-(POWER - 1.0) * cdf) ** (1.0 / (1.0 - POWER))
    y = _bkg_mean(m) + jax.random.normal(k_y, (n, 4)) @ _bkg_cholesky().T
    return jnp.concatenate([m[:, None], _from_y(y)], -1)


def _signal_mjj_log_prob(m, region):
    lo, hi = _bounds(region)
    z = (m - SIGNAL_MJJ_MEAN) / SIGNAL_MJJ_WIDTH
    norm = ndtr((hi - SIGNAL_MJJ_MEAN) / SIGNAL_MJJ_WIDTH) - ndtr((lo - SIGNAL_MJJ_MEAN) / SIGNAL_MJJ_WIDTH)
    log_p = -0.5 * z**2 - 0.5 * math.log(2 * math.pi) - math.log(SIGNAL_MJJ_WIDTH) - jnp.log(norm)
    return jnp.where(_in_range(m, lo, hi), log_p, -jnp.inf)


def _tau_logit_mean(m_jet):
    return _SIG_TAU_LOGIT_AT_REF + _SIG_TAU_SLOPE * jnp.log(m_jet / 0.25)


def _jet_log_prob(mass, tau, m_nominal):
    """Log-density of one signal jet's (mass, tau21), without the Jacobian of the logs."""
    z_m = (jnp.log(mass) - jnp.log(m_nominal)) / _SIG_LOG_MASS_STD
    logit_tau = jnp.log(tau) - jnp.log1p(-tau)
    z_t = (logit_tau - _tau_logit_mean(m_nominal)) / _SIG_TAU_STD
    log_norm = math.log(2 * math.pi) + math.log(_SIG_LOG_MASS_STD * _SIG_TAU_STD)
    return -0.5 * (z_m**2 + z_t**2) - log_norm - jnp.log(mass) - jnp.log(tau) - jnp.log1p(-tau)


def _signal_features_log_prob(features, params: SignalParams):
    mj, dm, t1, t2 = (features[..., i] for i in range(4))
    ok = (mj > 0) & (dm > 0) & (t1 > 0) & (t1 < 1) & (t2 > 0) & (t2 < 1)
    mj, dm = jnp.where(ok, mj, 0.1), jnp.where(ok, dm, 0.1)
    t1, t2 = jnp.where(ok, t1, 0.5), jnp.where(ok, t2, 0.5)
    heavy = mj + dm
    m_x, m_y = jnp.asarray(params.m_x), jnp.asarray(params.m_y)
    x_light = _jet_log_prob(mj, t1, m_x) + _jet_log_prob(heavy, t2, m_y)
    x_heavy = _jet_log_prob(heavy, t2, m_x) + _jet_log_prob(mj, t1, m_y)
    return jnp.where(ok, jnp.logaddexp(x_light, x_heavy), -jnp.inf)


@_compiled("region")
def signal_log_prob(x, params: SignalParams = DEFAULT_SIGNAL, region=None):
    """``log p_S(mjj, x | theta)`` of ``(N, 5)`` events, mjj density normalised on ``region``.

    Differentiable in ``params`` (used by the exact-likelihood oracle fit of the masses).
    """
    return _signal_mjj_log_prob(x[:, 0], region) + _signal_features_log_prob(x[:, 1:], params)


@_compiled("n", "region")
def signal_sample(key, n: int, params: SignalParams = DEFAULT_SIGNAL, region=None):
    """``(n, 5)`` signal events for ``theta = params``, mjj drawn on ``region``."""
    lo, hi = _bounds(region)
    k_m, k_mass, k_tau = jax.random.split(key, 3)
    a = ndtr((lo - SIGNAL_MJJ_MEAN) / SIGNAL_MJJ_WIDTH)
    b = ndtr((hi - SIGNAL_MJJ_MEAN) / SIGNAL_MJJ_WIDTH)
    u = a + (b - a) * jax.random.uniform(k_m, (n,), minval=1e-6, maxval=1 - 1e-6)
    m = jnp.clip(SIGNAL_MJJ_MEAN + SIGNAL_MJJ_WIDTH * ndtri(u), lo + 1e-6, hi - 1e-6)
    nominal = jnp.stack([jnp.full(n, params.m_x), jnp.full(n, params.m_y)], -1)
    mass = nominal * jnp.exp(_SIG_LOG_MASS_STD * jax.random.normal(k_mass, (n, 2)))
    tau = jax.nn.sigmoid(_tau_logit_mean(nominal) + _SIG_TAU_STD * jax.random.normal(k_tau, (n, 2)))
    light = jnp.argmin(mass, -1)
    heavy = 1 - light
    pick = lambda a, i: jnp.take_along_axis(a, i[:, None], -1)[:, 0]
    mj_min, mj_max = pick(mass, light), pick(mass, heavy)
    return jnp.stack([m, mj_min, mj_max - mj_min, pick(tau, light), pick(tau, heavy)], -1)


@_compiled("region")
def mixture_log_prob(x, mu, params: SignalParams = DEFAULT_SIGNAL, region=None):
    """``log(mu p_S(x | theta) + (1 - mu) p_B(x))`` with both densities normalised on ``region``.

    ``mu = S / (S + B)`` is the signal fraction within ``region``.
    """
    log_s, log_b = signal_log_prob(x, params, region), background_log_prob(x, region)
    return logsumexp(jnp.stack([log_s, log_b]), axis=0,
                     b=jnp.stack([jnp.full_like(log_s, mu), jnp.full_like(log_b, 1.0 - mu)]))  # fmt: skip


@_compiled("n", "region")
def mixture_sample(key, n: int, mu, params: SignalParams = DEFAULT_SIGNAL, region=None):
    """``n`` events from the mixture; also returns the truth labels (1 = signal).

    Each event is signal with probability ``mu`` (a binomial number of signal events).
    """
    k_lab, k_s, k_b = jax.random.split(key, 3)
    is_signal = jax.random.uniform(k_lab, (n,)) < mu
    x = jnp.where(is_signal[:, None], signal_sample(k_s, n, params, region),
                  background_sample(k_b, n, region))  # fmt: skip
    return x, is_signal.astype(jnp.int32)
