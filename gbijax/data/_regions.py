"""Signal region and sidebands in the dijet mass."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from gbijax.data._events import Events, select


class SignalRegion(NamedTuple):
    """The signal-region window ``lo < mjj < hi`` in TeV; everything else is sideband.

    >>> import jax.numpy as jnp
    >>> SignalRegion().contains(jnp.array([3.0, 3.5, 3.7]))
    Array([False,  True, False], dtype=bool)
    """

    lo: float = 3.3
    hi: float = 3.7

    def contains(self, mjj):
        """Boolean mask of events inside the signal region (jit-able)."""
        return (mjj > self.lo) & (mjj < self.hi)

    def validate(self) -> SignalRegion:
        if not (np.isfinite(self.lo) and np.isfinite(self.hi) and 0 < self.lo < self.hi):
            raise ValueError(f"signal region must satisfy 0 < lo < hi, got ({self.lo}, {self.hi})")
        return self


DEFAULT_SR = SignalRegion()


def signal_region_mask(mjj, region: SignalRegion = DEFAULT_SR):
    """``region.lo < mjj < region.hi``; works on numpy and JAX arrays."""
    return region.contains(mjj)


def sideband_mask(mjj, region: SignalRegion = DEFAULT_SR):
    """The complement of :func:`signal_region_mask`."""
    return ~region.contains(mjj)


def split_regions(events: Events, region: SignalRegion = DEFAULT_SR) -> tuple[Events, Events]:
    """Split events into (signal region, sidebands) at the data-preparation boundary.

    Raises:
        ValueError: the signal region holds no events.
    """
    region.validate()
    in_sr = np.asarray(region.contains(events.mjj))
    if not in_sr.any():
        raise ValueError(
            f"empty signal region: no event has {region.lo} < mjj < {region.hi} TeV "
            f"(mjj range of the sample: {events.mjj.min():.3f}-{events.mjj.max():.3f} TeV)"
            if events.n else "empty signal region: the sample has no events"
        )
    return select(events, in_sr), select(events, ~in_sr)
