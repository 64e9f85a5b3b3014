"""The shared steps of the experiments: signal-region samples, injections, background variants.

:func:`analysis_samples` turns any data source into the same labelled pieces (true SR
background, a pool of SR signal to inject, sideband background, an independent SR background
sample where one exists). :func:`injected_realisations` builds ``R`` data realisations of one
injection as fixed-shape arrays (so they vmap), and :func:`background_density` gives the
per-event ``log p_B(m, x)`` of the signal-region events for each background variant of the GBI
paper:

- ``"sideband"`` (realistic): the generator is trained on sideband events and interpolated into
  the signal region; ``p_B(m)`` from a dijet-function fit to the sideband masses.
- ``"sr_truth"`` (idealised upper bound): the generator is trained on an independent sample of
  true signal-region background; ``p_B(m)`` from true SR background masses (labelled idealised).
- ``"closure"``: the SR background *in the data* is replaced by samples of the sideband-trained
  generator, so the background model is exact by construction up to its own sampling.
- ``"exact"`` (toy only): the analytic toy density, the oracle's background.

Notes on the choices: the sideband sample is the data's true sideband *background* (the small
sideband share of the injected signal is not added back); every realisation of a real-data
injection shares the one background sample and differs in the injected signal events and in
all training randomness.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gbijax.background import (
    BackgroundConfig,
    background_log_prob,
    background_sample,
    fit_background,
)
from gbijax.data import toy
from gbijax.data._events import BACKGROUND, SIGNAL
from gbijax.data._regions import DEFAULT_SR, SignalRegion
from gbijax.data._sources import Dataset, load_source
from gbijax.generators import fit_dijet_function, mass_density_from_fit, mass_density_from_samples

__all__ = ["BACKGROUND_VARIANTS", "AnalysisSamples", "Realisations", "analysis_samples",
           "background_density", "injected_realisations"]  # fmt: skip

BACKGROUND_VARIANTS = ("sideband", "sr_truth", "closure", "exact")


class AnalysisSamples(NamedTuple):
    """The labelled pieces of one data source, physical units, ``(N, 5)`` arrays.

    Attributes:
        source: the source string.
        background_sr: true background in the signal region (the data's background).
        signal_pool: signal-region signal events available for injection.
        sideband: true background in the sidebands, or None (SR-only sources).
        extra_background_sr: an independent SR background sample, or None.
        is_toy: the analytic toy (exact densities available).
        region: the signal region.
    """

    source: str
    background_sr: np.ndarray
    signal_pool: np.ndarray
    sideband: np.ndarray | None
    extra_background_sr: np.ndarray | None
    is_toy: bool
    region: SignalRegion


def analysis_samples(source: str | Dataset, region: SignalRegion = DEFAULT_SR) -> AnalysisSamples:
    """Split a data source into the pieces the experiments use.

    For ``cathode:`` the 772 signal events of the data are removed first and the signal pool is
    the extra-signal sample; for sources with sidebands (toy, ``clustered:``, ``lhco:``) the pool
    is the labelled SR signal (toy: the extra SR signal sample).

    Raises:
        ValueError: unlabelled data, an empty signal region, or no signal to inject.
    """
    dataset = load_source(source, region) if isinstance(source, str) else source
    data = dataset.data
    if (data.label == -1).any():
        raise ValueError(f"{dataset.source}: injection studies need labelled events (truth labels)")
    in_sr = np.asarray(region.contains(data.mjj))
    bkg, sig = data.label == BACKGROUND, data.label == SIGNAL
    if not (in_sr & bkg).any():
        raise ValueError(f"{dataset.source}: empty signal region ({region.lo}-{region.hi} TeV)")
    extra = dataset.samples.get("extra_signal")
    if extra is not None:
        pool = extra.features[np.asarray(region.contains(extra.mjj))]
    else:
        pool = data.features[in_sr & sig]
    if len(pool) == 0:
        raise ValueError(f"{dataset.source}: no signal-region signal events to inject")
    sideband = data.features[~in_sr & bkg]
    extra_bkg = dataset.samples.get("extra_background")
    return AnalysisSamples(
        source=dataset.source,
        background_sr=data.features[in_sr & bkg],
        signal_pool=pool,
        sideband=sideband if len(sideband) else None,
        extra_background_sr=None if extra_bkg is None else extra_bkg.features[
            np.asarray(region.contains(extra_bkg.mjj))],
        is_toy=dataset.source.split(":")[0] == "toy",
        region=region,
    )


class Realisations(NamedTuple):
    """``R`` data realisations of one injection, stacked with fixed shapes.

    Attributes:
        x: ``(R, N, 5)`` signal-region events (background first, then injected signal).
        label: ``(N,)`` truth (1 signal), the same layout in every realisation.
        mu: the realised signal fraction ``S / (S + B)``.
        n_signal: injected signal events ``S``.
        s_over_sqrt_b: ``S / sqrt(B)``.
    """

    x: np.ndarray
    label: np.ndarray
    mu: float
    n_signal: int
    s_over_sqrt_b: float


def injected_realisations(key: jax.Array, background: np.ndarray, signal_pool: np.ndarray, mu: float,
                          n_realisations: int) -> Realisations:  # fmt: skip
    """Inject ``S = round(mu B / (1 - mu))`` pool events into ``background``, ``R`` times.

    Realisation ``r`` draws its signal events without replacement with ``fold_in(key, r)``; the
    same key gives the same events.

    Raises:
        ValueError: ``mu`` outside [0, 1), or more signal requested than the pool holds.
    """
    if not (np.isfinite(mu) and 0.0 <= mu < 1.0):
        raise ValueError(f"mu = S/(S+B) must be in [0, 1), got {mu}")
    n_b = len(background)
    n_s = int(round(mu * n_b / (1.0 - mu)))
    if n_s > len(signal_pool):
        raise ValueError(f"mu = {mu} needs {n_s} signal events; the signal pool holds {len(signal_pool)}")
    picks = [np.asarray(jax.random.permutation(jax.random.fold_in(key, r), len(signal_pool))[:n_s])
             for r in range(n_realisations)]  # fmt: skip
    x = np.stack([np.concatenate([background, signal_pool[p]]) for p in picks])
    label = np.concatenate([np.zeros(n_b, np.int32), np.ones(n_s, np.int32)])
    return Realisations(x, label, n_s / (n_s + n_b), n_s, n_s / np.sqrt(n_b))


def _mass_density(samples: AnalysisSamples, variant: str, bins: int = 40):
    sr = (samples.region.lo, samples.region.hi)
    if variant in ("sideband", "closure"):
        if samples.sideband is None:
            raise ValueError(f"{samples.source} has no sidebands: background variant {variant!r} needs them")
        return mass_density_from_fit(fit_dijet_function(samples.sideband[:, 0], sr=sr), sr), "sideband_fit"
    return mass_density_from_samples(samples.background_sr[:, 0], sr, bins=bins), "sr_truth (idealised)"


def fit_background_variant(key: jax.Array, samples: AnalysisSamples, variant: str, config: BackgroundConfig,
                           checkpoint_dir=None):  # fmt: skip
    """Train the generator of a learned background variant.

    Returns:
        ``(generator, background, history, mass_density_kind)``.
    """
    if variant not in BACKGROUND_VARIANTS or variant == "exact":
        raise ValueError(f"learned background variants are sideband, sr_truth, closure; got {variant!r}")
    mass, kind = _mass_density(samples, variant)
    if variant == "sr_truth":
        train = samples.extra_background_sr
        if train is None:
            raise ValueError(f"{samples.source} has no independent SR background for the sr_truth variant")
    else:
        train = samples.sideband
    generator, bkg, hist = fit_background(key, train, config, mass, checkpoint_dir=checkpoint_dir)
    return generator, bkg, hist, kind


def background_density(x: jax.Array, samples: AnalysisSamples, model=None) -> jax.Array:
    """``log p_B(m, x)`` of signal-region events: the exact toy density or a fitted model.

    Args:
        x: ``(N, 5)`` events.
        samples: the analysis samples (for the region, and to check the toy).
        model: ``(generator, background)`` of a learned variant, or None for ``"exact"``.
    """
    region = (samples.region.lo, samples.region.hi)
    if model is None:
        if not samples.is_toy:
            raise ValueError("the exact background density exists only for the toy")
        return toy.background_log_prob(jnp.asarray(x, jnp.float32), region=region)
    generator, bkg = model
    return background_log_prob(generator, bkg, jnp.asarray(x, jnp.float32))


def closure_background(key: jax.Array, samples: AnalysisSamples, model) -> np.ndarray:
    """Generator samples replacing the data's SR background (the ``"closure"`` variant)."""
    generator, bkg = model
    n = len(samples.background_sr)
    return np.asarray(background_sample(generator, bkg, key, n), np.float64)
