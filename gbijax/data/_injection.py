"""Signal injection as masks over fixed arrays, so realisations and injections vmap."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gbijax.data._events import Events, concatenate
from gbijax.data._regions import DEFAULT_SR, SignalRegion


class Injection(NamedTuple):
    """Result of :func:`inject_signal`.

    Attributes:
        events: background rows followed by every row of the signal pool; the pool rows that
            were not chosen have weight 0, so all realisations share one shape.
        n_signal_sr: injected signal events inside the signal region.
        n_signal: injected signal events over the whole mjj range.
        n_background_sr: (weighted) background events inside the signal region.
        mu: realised signal fraction ``S / (S + B)`` in the signal region.
    """

    events: Events
    n_signal_sr: int
    n_signal: int
    n_background_sr: float
    mu: float


def signal_count_for_mu(mu, n_background):
    """Signal events that give ``S / (S + B) = mu``: ``S = round(mu B / (1 - mu))``.

    >>> int(signal_count_for_mu(0.01, 99_000))
    1000
    """
    return jnp.round(mu * n_background / (1.0 - mu)).astype(jnp.int32)


def _rank_within(u, group):
    """Rank of every element's ``u`` among the elements of its own group (0-based)."""
    keyed = jnp.where(group, u, jnp.inf)
    return jnp.argsort(jnp.argsort(keyed))


@jax.jit
def injection_mask(key, pool_in_sr, n_sr, n_sb):
    """Choose ``n_sr`` pool events inside and ``n_sb`` outside the signal region at random.

    Pure and jit-able, with traced counts allowed: ``jax.vmap`` over keys gives data
    realisations, over counts gives an injection scan, all with one static shape.

    Args:
        key: PRNG key.
        pool_in_sr: ``(P,)`` bool, which pool events lie in the signal region.
        n_sr, n_sb: numbers to choose in and outside the signal region.

    Returns:
        ``(P,)`` bool mask with exactly ``n_sr`` true inside and ``n_sb`` true outside (when
        available; the checked entry point :func:`inject_signal` refuses larger requests).
        With one key the masks are nested: a larger count keeps every event of a smaller one.
    """
    u = jax.random.uniform(key, pool_in_sr.shape)
    rank_sr = _rank_within(u, pool_in_sr)
    rank_sb = _rank_within(u, ~pool_in_sr)
    return jnp.where(pool_in_sr, rank_sr < n_sr, rank_sb < n_sb)


def inject_signal(
    key,
    background: Events,
    signal_pool: Events,
    *,
    mu: float | None = None,
    n_signal: int | None = None,
    region: SignalRegion = DEFAULT_SR,
) -> Injection:
    """Inject signal from a pool into background, from an explicit key.

    With ``mu``, the signal fraction ``S / (S + B)`` *in the signal region* equals ``mu`` (up to
    rounding to whole events); signal events outside the region are added in the pool's own
    proportion, so the injected signal keeps its mjj shape. With ``n_signal``, that many pool
    events are chosen over the whole mjj range, split between region and sidebands in the
    pool's proportion. Different keys give different data realisations; the same key gives the
    same events.

    Raises:
        ValueError: mu outside [0, 1), both or neither of mu / n_signal, an empty signal
            region, or more signal requested than the pool holds.
    """
    region.validate()
    if (mu is None) == (n_signal is None):
        raise ValueError("give exactly one of mu or n_signal")
    bkg_sr = np.asarray(region.contains(background.mjj))
    n_bkg_sr = float(np.sum(background.weight[bkg_sr]))
    if n_bkg_sr <= 0:
        raise ValueError(
            f"empty signal region: no background in {region.lo} < mjj < {region.hi} TeV"
        )
    pool_sr = np.asarray(region.contains(signal_pool.mjj))
    p_sr, p_sb = int(pool_sr.sum()), int((~pool_sr).sum())
    if mu is not None:
        if not (np.isfinite(mu) and 0.0 <= mu < 1.0):
            raise ValueError(f"mu = S/(S+B) must be in [0, 1), got {mu}")
        n_sr = int(signal_count_for_mu(mu, n_bkg_sr))
        n_sb = int(round(n_sr * p_sb / p_sr)) if p_sr else 0
    else:
        if int(n_signal) != n_signal or n_signal < 0:
            raise ValueError(f"n_signal must be a non-negative integer, got {n_signal}")
        if n_signal > p_sr + p_sb:
            raise ValueError(
                f"requested {n_signal} signal events but the signal pool holds {p_sr + p_sb}"
            )
        n_sr = int(round(n_signal * p_sr / max(p_sr + p_sb, 1)))
        n_sb = int(n_signal) - n_sr
    if n_sr > p_sr or n_sb > p_sb:
        raise ValueError(
            f"more signal requested than available: need {n_sr} signal-region and {n_sb} "
            f"sideband signal events, the pool holds {p_sr} and {p_sb}"
        )
    mask = np.asarray(injection_mask(key, jnp.asarray(pool_sr), n_sr, n_sb))
    chosen = Events(signal_pool.features, signal_pool.label, mask.astype(signal_pool.weight.dtype))
    events = concatenate(background, chosen)
    return Injection(events, n_sr, n_sr + n_sb, n_bkg_sr, n_sr / (n_sr + n_bkg_sr))
