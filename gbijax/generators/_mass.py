"""The background dijet-mass density in the signal region, ``p_B(mjj)``.

The joint background density is ``p_B(m, x) = p_B(x | m) p_B(m)``; the generator provides the
first factor, this module the second. Three choices, named as in the outputs:

- ``"sideband_fit"`` (realistic): the standard dijet function fitted to the sideband masses
  (unbinned maximum likelihood), interpolated into the signal region.
- ``"sr_data"`` (realistic, signal-contaminated): the masses of all signal-region data events.
- ``"sr_truth"`` (idealised): the masses of the true signal-region background events, as in
  the reference code; only possible with labelled data, and labelled as idealised.

All three become a :class:`MassDensity`, a fine histogram over the signal region with exact
``log_prob`` and inverse-CDF ``sample``, pure and jit-able.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.optimize
import numpy as np

__all__ = ["DijetFit", "MASS_DENSITY_KINDS", "MassDensity", "fit_dijet_function", "mass_density_from_fit",
           "mass_density_from_samples"]  # fmt: skip

MASS_DENSITY_KINDS = ("sideband_fit", "sr_data", "sr_truth")
SQRT_S = 13.0  # TeV


class MassDensity(NamedTuple):
    """A piecewise-constant density on ``edges[0] < m < edges[-1]`` (a pytree).

    Attributes:
        edges: ``(K + 1,)`` bin edges in TeV.
        log_density: ``(K,)`` log of the density in each bin (integrates to 1).
    """

    edges: jax.Array
    log_density: jax.Array

    def log_prob(self, m: jax.Array) -> jax.Array:
        """``log p(m)``; ``-inf`` outside the edges."""
        idx = jnp.clip(jnp.searchsorted(self.edges, m, side="right") - 1, 0, self.log_density.shape[0] - 1)
        inside = (m > self.edges[0]) & (m < self.edges[-1])
        return jnp.where(inside, self.log_density[idx], -jnp.inf)

    def sample(self, key: jax.Array, n: int) -> jax.Array:
        """``n`` masses by inverse CDF (uniform within the chosen bin)."""
        widths = jnp.diff(self.edges)
        probs = jnp.exp(self.log_density) * widths
        k_bin, k_pos = jax.random.split(key)
        idx = jax.random.choice(k_bin, probs.shape[0], (n,), p=probs / probs.sum())
        return self.edges[idx] + widths[idx] * jax.random.uniform(k_pos, (n,))


class DijetFit(NamedTuple):
    """Shape parameters of the dijet function ``f(x) = (1 - x)^p1 / x^(p2 + p3 ln x)``, ``x = m / 13 TeV``."""

    p1: float
    p2: float
    p3: float

    def log_f(self, m):
        """Unnormalised ``log f(m)``."""
        x = m / SQRT_S
        return self.p1 * jnp.log1p(-x) - (self.p2 + self.p3 * jnp.log(x)) * jnp.log(x)


def _quadrature(lo: float, hi: float, n: int = 2049):
    """Simpson nodes and weights on ``[lo, hi]`` (n odd)."""
    t = np.linspace(lo, hi, n)
    w = np.ones(n)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return t, w * (hi - lo) / (3 * (n - 1))


def fit_dijet_function(
    masses, weight=None, sr: tuple[float, float] = (3.3, 3.7), fit_range: tuple[float, float] | None = None
) -> DijetFit:
    """Unbinned maximum-likelihood fit of the dijet function to sideband masses.

    The likelihood is ``sum_i w_i [log f(m_i) - log ∫_SB f]`` over the sideband part of
    ``fit_range`` (default: the range of the given masses); events inside ``sr`` are ignored.
    Runs in float64 with BFGS.

    Raises:
        ValueError: fewer than 100 sideband events, or non-finite masses.
    """
    m = np.asarray(masses, np.float64)
    w = np.ones_like(m) if weight is None else np.asarray(weight, np.float64)
    if not np.isfinite(m).all():
        raise ValueError("dijet fit: masses contain NaN or inf")
    lo, hi = fit_range if fit_range is not None else (float(m.min()), float(m.max()))
    used = (w > 0) & (m >= lo) & (m <= hi) & ~((m > sr[0]) & (m < sr[1]))
    if used.sum() < 100:
        raise ValueError(f"dijet fit needs at least 100 sideband events, got {int(used.sum())}")
    t_lo, w_lo = _quadrature(lo, sr[0])
    t_hi, w_hi = _quadrature(sr[1], hi)
    nodes, qweights = np.concatenate([t_lo, t_hi]), np.concatenate([w_lo, w_hi])
    m_used, w_used = m[used], w[used]

    with jax.enable_x64(True):
        nodes_j, qw_j = jnp.asarray(nodes), jnp.asarray(qweights)
        m_j, w_j = jnp.asarray(m_used), jnp.asarray(w_used)
        total = w_j.sum()

        def nll(p):
            fit = DijetFit(*p)
            log_norm = jax.scipy.special.logsumexp(fit.log_f(nodes_j), b=qw_j)
            return -(jnp.sum(w_j * fit.log_f(m_j)) / total - log_norm)

        result = jax.scipy.optimize.minimize(nll, jnp.array([5.0, 5.0, 0.0]), method="BFGS")
        params = np.asarray(result.x)
    if not np.isfinite(params).all():
        raise ValueError("dijet fit did not converge")
    return DijetFit(*map(float, params))


def mass_density_from_fit(
    fit: DijetFit, sr: tuple[float, float] = (3.3, 3.7), bins: int = 200
) -> MassDensity:
    """The fitted dijet function normalised on the signal region, as a fine histogram."""
    edges = np.linspace(sr[0], sr[1], bins + 1)
    with jax.enable_x64(True):
        t = np.linspace(sr[0], sr[1], 20 * bins + 1)
        f = np.exp(np.asarray(fit.log_f(jnp.asarray(t))))
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(t))])
    bin_cdf = np.interp(edges, t, cdf)
    mass = np.diff(bin_cdf) / bin_cdf[-1]
    log_density = np.log(mass / np.diff(edges))
    return MassDensity(jnp.asarray(edges, jnp.float32), jnp.asarray(log_density, jnp.float32))


def mass_density_from_samples(
    masses, sr: tuple[float, float] = (3.3, 3.7), bins: int = 40, weight=None
) -> MassDensity:
    """A histogram density of signal-region masses (``"sr_data"`` or ``"sr_truth"``).

    Raises:
        ValueError: no events inside the signal region, or an empty bin (choose fewer bins).
    """
    m = np.asarray(masses, np.float64)
    w = np.ones_like(m) if weight is None else np.asarray(weight, np.float64)
    edges = np.linspace(sr[0], sr[1], bins + 1)
    counts, _ = np.histogram(m, edges, weights=w)
    if counts.sum() <= 0:
        raise ValueError(f"empty signal region: no masses in {sr[0]} < mjj < {sr[1]} TeV")
    if (counts <= 0).any():
        raise ValueError(f"{int((counts <= 0).sum())} empty mass bin(s) with {bins} bins; use fewer bins")
    density = counts / counts.sum() / np.diff(edges)
    return MassDensity(jnp.asarray(edges, jnp.float32), jnp.asarray(np.log(density), jnp.float32))
