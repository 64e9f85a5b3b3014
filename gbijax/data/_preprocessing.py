"""Sideband-fitted preprocessing for density estimation: min-max, logit, standardise."""

from __future__ import annotations

from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


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
        weight: optional ``(N,)`` weights; events with weight 0 are ignored.
        margin: fraction of the fitted range added on both sides, so the extreme events
            and mildly extrapolated signal-region events stay inside.

    Returns:
        The fitted :class:`Preprocessing`.
    """
    x = np.asarray(x, np.float64)
    w = np.ones(len(x)) if weight is None else np.asarray(weight, np.float64)
    if x.ndim != 2 or len(w) != len(x):
        raise ValueError(f"need x of shape (N, D) and weight (N,), got {x.shape}, {w.shape}")
    used = x[w > 0]
    if len(used) < 2:
        raise ValueError("preprocessing needs at least 2 events with non-zero weight to fit")
    if not np.isfinite(used).all():
        raise ValueError("preprocessing fit: features contain NaN or inf")
    if margin <= 0:
        raise ValueError(f"margin must be > 0 so that no fitted event maps to +-inf, got {margin}")
    xmin, xmax = used.min(0), used.max(0)
    width = xmax - xmin
    if (width <= 0).any():
        raise ValueError(f"preprocessing fit: constant feature(s) at column(s) {np.flatnonzero(width <= 0)}")
    lo, hi = xmin - margin * width, xmax + margin * width
    u = (x - lo) / (hi - lo)
    y = np.log(u) - np.log1p(-u)
    ww = np.where(w > 0, w, 0.0)[:, None]
    y = np.where(w[:, None] > 0, y, 0.0)
    mean = (ww * y).sum(0) / ww.sum()
    std = np.sqrt((ww * (y - mean) ** 2).sum(0) / ww.sum())
    return Preprocessing(*(jnp.asarray(a, jnp.float32) for a in (lo, hi, mean, std)))


def forward(pp: Preprocessing, x):
    """Physical ``x`` to ``z`` for events inside the fitted range; also ``log|det dz/dx|``.

    ``log|det| = sum_d [-log(hi - lo) - log u - log(1 - u) - log std]`` with
    ``u = (x - lo) / (hi - lo)``. Pure and jit-able; the caller is responsible for the range
    (see :func:`preprocess` for the checked version).
    """
    u = (x - pp.lo) / (pp.hi - pp.lo)
    z = (jnp.log(u) - jnp.log1p(-u) - pp.mean) / pp.std
    log_det = -jnp.sum(jnp.log(pp.hi - pp.lo) + jnp.log(u) + jnp.log1p(-u) + jnp.log(pp.std), -1)
    return z, log_det


def inverse(pp: Preprocessing, z):
    """``z`` back to physical units: ``x = lo + sigmoid(z std + mean) (hi - lo)``."""
    return pp.lo + jax.nn.sigmoid(z * pp.std + pp.mean) * (pp.hi - pp.lo)


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
        ValueError: out-of-range events with ``"raise"`` (counts per feature in the message).
    """
    x = jnp.asarray(x, pp.lo.dtype)
    outside = (x <= pp.lo) | (x >= pp.hi)
    counts = np.asarray(outside.sum(0))
    ok = ~outside.any(-1)
    if on_out_of_range == "raise" and counts.any():
        raise ValueError(
            f"{int((~ok).sum())} event(s) lie outside the preprocessing range fitted on the "
            f"sidebands (per feature: {counts.tolist()}); pass on_out_of_range='clip' or 'mask'"
        )
    if on_out_of_range not in ("raise", "clip", "mask"):
        raise ValueError(f"on_out_of_range must be 'raise', 'clip' or 'mask', got {on_out_of_range!r}")
    width = pp.hi - pp.lo
    if on_out_of_range == "clip":
        x = jnp.clip(x, pp.lo + clip_eps * width, pp.hi - clip_eps * width)
    elif on_out_of_range == "mask":
        x = jnp.where(ok[:, None], x, pp.lo + 0.5 * width)
    z, log_det = forward(pp, x)
    return Preprocessed(z, log_det, ok, counts)
