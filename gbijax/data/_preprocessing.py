"""Sideband-fitted preprocessing for density estimation: min-max, logit, standardise."""

from __future__ import annotations

import functools
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gbijax.data._events import check_finite


class Preprocessing(NamedTuple):
    """Per-feature affine-logit transform ``z = (logit((x - lo) / (hi - lo)) - mean) / std``.

    ``lo`` and ``hi`` are the fitted minimum and maximum widened by a margin, so every event
    of the fitting sample maps to a finite value. Being a NamedTuple of arrays it is a pytree
    and can be passed through ``jit``/``vmap``.
    """

    lo: jax.Array
    hi: jax.Array
    mean: jax.Array
    std: jax.Array


class Preprocessed(NamedTuple):
    """Output of :func:`preprocess`.

    Attributes:
        z: ``(N, D)`` transformed features (finite everywhere).
        log_det: ``(N,)`` ``log |det dz/dx|``; add it to a density in ``z`` to get the density
            in physical units.
        in_range: ``(N,)`` bool, false for events outside the fitted range.
        n_out_of_range: ``(D,)`` number of out-of-range events per feature.
    """

    z: jax.Array
    log_det: jax.Array
    in_range: jax.Array
    n_out_of_range: np.ndarray


def fit_preprocessing(x, weight=None, margin: float = 0.02) -> Preprocessing:
    """Fit the transform on (sideband) events.

    Args:
        x: ``(N, D)`` features in physical units.
        weight: optional ``(N,)`` non-negative weights; events with weight 0 are ignored
            (they do not enter the range, the mean or the std).
        margin: fraction of the fitted range added on both sides, so the extreme events
            and mildly extrapolated signal-region events stay inside.

    Returns:
        The fitted :class:`Preprocessing`.

    Raises:
        ValueError: bad shapes, negative weights, fewer than 2 weighted events, NaN/inf in a
            weighted event, ``margin <= 0`` or a constant feature.
    """
    x = np.asarray(x, np.float64)
    w = np.ones(len(x)) if weight is None else np.asarray(weight, np.float64)
    if x.ndim != 2 or w.shape != (len(x),):
        raise ValueError(f"need x of shape (N, D) and weight (N,), got {x.shape}, {w.shape}")
    if (w < 0).any() or not np.isfinite(w).all():
        raise ValueError("preprocessing fit: weights must be finite and >= 0")
    used = w > 0
    if used.sum() < 2:
        raise ValueError("preprocessing needs at least 2 events with non-zero weight to fit")
    check_finite(np.where(used[:, None], x, 0.0), name="preprocessing fit")
    x, w = x[used], w[used]
    if margin <= 0:
        raise ValueError(f"margin must be > 0 so that no fitted event maps to +-inf, got {margin}")
    xmin, xmax = x.min(0), x.max(0)
    width = xmax - xmin
    if (width <= 0).any():
        raise ValueError(f"preprocessing fit: constant feature(s) at column(s) {np.flatnonzero(width <= 0)}")
    lo, hi = xmin - margin * width, xmax + margin * width
    u = (x - lo) / (hi - lo)
    y = np.log(u) - np.log1p(-u)
    mean = (w[:, None] * y).sum(0) / w.sum()
    std = np.sqrt((w[:, None] * (y - mean) ** 2).sum(0) / w.sum())
    return Preprocessing(*(jnp.asarray(a, jnp.float32) for a in (lo, hi, mean, std)))


@jax.jit
def forward(pp: Preprocessing, x):
    """Physical ``x`` to ``z`` for events inside the fitted range; also ``log|det dz/dx|``.

    ``log|det| = sum_d [-log(hi - lo) - log u - log(1 - u) - log std]`` with
    ``u = (x - lo) / (hi - lo)``. Pure and jit-able; the caller is responsible for the range
    (see :func:`preprocess` for the checked version).
    """
    return _from_unit(pp, (x - pp.lo) / (pp.hi - pp.lo))


@jax.jit
def _from_unit(pp: Preprocessing, u):
    """The logit and standardisation of min-max scaled ``u``, with the full ``log|det dz/dx|``."""
    z = (jnp.log(u) - jnp.log1p(-u) - pp.mean) / pp.std
    log_det = -jnp.sum(jnp.log(pp.hi - pp.lo) + jnp.log(u) + jnp.log1p(-u) + jnp.log(pp.std), -1)
    return z, log_det


@jax.jit
def inverse(pp: Preprocessing, z):
    """``z`` back to physical units: ``x = lo + sigmoid(z std + mean) (hi - lo)``."""
    return pp.lo + jax.nn.sigmoid(z * pp.std + pp.mean) * (pp.hi - pp.lo)


@jax.jit
def in_range(pp: Preprocessing, x):
    """``(N,)`` bool: every feature strictly inside the fitted ``(lo, hi)``."""
    return jnp.all((x > pp.lo) & (x < pp.hi), axis=-1)


def preprocess(
    pp: Preprocessing,
    x,
    on_out_of_range: Literal["raise", "clip", "mask"] = "raise",
    clip_eps: float = 1e-6,
) -> Preprocessed:
    """Checked forward transform with explicit, counted handling of out-of-range events.

    Args:
        pp: fitted transform.
        x: ``(N, D)`` physical features.
        on_out_of_range: ``"raise"`` refuses events outside the fitted range; ``"clip"``
            moves them onto the range edge (``u`` clipped to ``[eps, 1 - eps]``) and keeps them;
            ``"mask"`` keeps the rows (with a finite placeholder ``z``) and marks them false in
            ``in_range`` so callers weight them out. Either way the counts are returned.

    Raises:
        ValueError: out-of-range events with ``"raise"`` (counts per feature in the message);
            NaN or inf in any mode (the rows are named).
    """
    check_finite(np.asarray(x), name="preprocess")
    x = jnp.asarray(x, pp.lo.dtype)
    outside = _outside(pp, x)
    counts = np.asarray(outside.sum(0))
    ok = ~outside.any(-1)
    if on_out_of_range == "raise" and counts.any():
        raise ValueError(
            f"{int((~ok).sum())} event(s) lie outside the preprocessing range fitted on the "
            f"sidebands (per feature: {counts.tolist()}); pass on_out_of_range='clip' or 'mask'"
        )
    if on_out_of_range not in ("raise", "clip", "mask"):
        raise ValueError(f"on_out_of_range must be 'raise', 'clip' or 'mask', got {on_out_of_range!r}")
    z, log_det = _checked_forward(pp, x, ok, on_out_of_range, clip_eps)
    return Preprocessed(z, log_det, ok, counts)


@jax.jit
def _outside(pp: Preprocessing, x):
    return ~((x > pp.lo) & (x < pp.hi))


@functools.partial(jax.jit, static_argnames="mode")
def _checked_forward(pp: Preprocessing, x, ok, mode, clip_eps):
    u = (x - pp.lo) / (pp.hi - pp.lo)
    if mode == "clip":  # in u, so that the edge stays finite even where lo >> hi - lo
        u = jnp.clip(u, clip_eps, 1.0 - clip_eps)
    elif mode == "mask":
        u = jnp.where(ok[:, None], u, 0.5)
    return _from_unit(pp, u)
