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
    background_member_log_probs,
    background_sample,
    fit_background,
)
from gbijax.data import toy
from gbijax.data._events import BACKGROUND, SIGNAL
from gbijax.data._regions import DEFAULT_SR, SignalRegion
from gbijax.data._sources import Dataset, load_source
from gbijax.generators import fit_dijet_function, mass_density_from_fit, mass_density_from_samples

__all__ = ["BACKGROUND_VARIANTS", "AnalysisSamples", "FoldedBackground", "Realisations", "analysis_samples",
           "background_density", "fit_background_folds", "fold_member_weights",
           "injected_realisations"]  # fmt: skip

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
        pool_index: ``(R, S)`` the injected events' rows in the signal pool (so that a signal
            template can be trained on pool events that were not injected).
    """

    x: np.ndarray
    label: np.ndarray
    mu: float
    n_signal: int
    s_over_sqrt_b: float
    pool_index: np.ndarray


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
    picks = np.stack([np.asarray(jax.random.permutation(jax.random.fold_in(key, r), len(signal_pool))[:n_s])
                      for r in range(n_realisations)])  # fmt: skip
    x = np.stack([np.concatenate([background, signal_pool[p]]) for p in picks])
    label = np.concatenate([np.zeros(n_b, np.int32), np.ones(n_s, np.int32)])
    return Realisations(x, label, n_s / (n_s + n_b), n_s, n_s / np.sqrt(n_b), picks)


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


class FoldedBackground(NamedTuple):
    """``sr_truth`` background models that never saw the events they evaluate (:func:`fit_background_folds`).

    Attributes:
        generator, background: the ensemble; members ``b E .. (b + 1) E - 1`` belong to fold ``b``.
        n_folds: number of folds ``F``.
        fold: ``(B,)`` the fold of every SR background event of the data (``samples.background_sr``).
    """

    generator: object
    background: object
    n_folds: int
    fold: np.ndarray


def fit_background_folds(key: jax.Array, samples: AnalysisSamples, config: BackgroundConfig, n_folds: int,
                         checkpoint_dir=None) -> tuple[FoldedBackground, object]:  # fmt: skip
    """The idealised ``sr_truth`` background trained on more events: the extra SR background plus the data's.

    The data's SR background events are split into ``n_folds`` folds; the ``config.ensemble``
    members of fold ``b`` train on the independent SR background sample plus the data's background
    outside fold ``b`` (one vmapped program of ``n_folds x ensemble`` members), so every data event
    is evaluated by models that never saw it (:func:`background_density` with ``fold``). Uses
    the truth labels of the data (idealised, like the variant itself).

    Returns:
        ``(FoldedBackground, history)``.

    Raises:
        ValueError: ``n_folds < 2``, or no independent SR background sample.
    """
    if n_folds < 2:
        raise ValueError(f"fit_background_folds needs at least 2 folds, got {n_folds}")
    extra = samples.extra_background_sr
    if extra is None:
        raise ValueError(f"{samples.source} has no independent SR background for the sr_truth variant")
    k_fold, k_fit = jax.random.split(key)
    n_b, per_fold = len(samples.background_sr), config.ensemble
    fold = np.asarray(jax.random.permutation(k_fold, n_b)) % n_folds
    member_weight = fold_member_weights(fold, n_folds, per_fold, len(extra))
    mass, _ = _mass_density(samples, "sr_truth")
    generator, bkg, hist = fit_background(
        k_fit, np.concatenate([extra, samples.background_sr]), config._replace(ensemble=n_folds * per_fold),
        mass, checkpoint_dir=checkpoint_dir, member_weight=member_weight)  # fmt: skip
    return FoldedBackground(generator, bkg, n_folds, fold), hist


def fold_member_weights(fold: np.ndarray, n_folds: int, per_fold: int, n_extra: int) -> np.ndarray:
    """``(n_folds x per_fold, n_extra + B)`` training weights: member ``m`` of fold ``m // per_fold``
    takes all ``n_extra`` independent events and the data's events outside its fold.

    >>> fold_member_weights(np.array([0, 1, 1]), 2, 1, 1).tolist()
    [[1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]]
    """
    member_fold = np.repeat(np.arange(n_folds), per_fold)
    outside = (np.asarray(fold)[None] != member_fold[:, None]).astype(float)
    return np.concatenate([np.ones((len(member_fold), n_extra)), outside], axis=1)


def background_density(x: jax.Array, samples: AnalysisSamples, model=None, fold=None) -> jax.Array:
    """``log p_B(m, x)`` of signal-region events: the exact toy density or a fitted model.

    Args:
        x: ``(N, 5)`` events.
        samples: the analysis samples (for the region, and to check the toy).
        model: ``(generator, background)`` of a learned variant, a :class:`FoldedBackground`, or
            None for ``"exact"``.
        fold: with a :class:`FoldedBackground`: ``(N,)`` the fold of every event; it is evaluated
            by the members of its fold (the mixture of them), which never saw that fold.
    """
    region = (samples.region.lo, samples.region.hi)
    x = jnp.asarray(x, jnp.float32)
    if model is None:
        if not samples.is_toy:
            raise ValueError("the exact background density exists only for the toy")
        return toy.background_log_prob(x, region=region)
    if isinstance(model, FoldedBackground):
        fold = np.asarray(fold)
        if fold.shape != (x.shape[0],) or fold.min(initial=0) < 0 or fold.max(initial=0) >= model.n_folds:
            raise ValueError(f"a folded background needs the fold (0..{model.n_folds - 1}) of each of the "
                             f"{x.shape[0]} events, got shape {fold.shape}")  # fmt: skip
        members = background_member_log_probs(model.generator, model.background, x)
        per_fold = members.reshape(model.n_folds, -1, x.shape[0])
        log_fold = jax.nn.logsumexp(per_fold, axis=1) - jnp.log(per_fold.shape[1])
        return jnp.take_along_axis(log_fold, jnp.asarray(fold)[None], axis=0)[0]
    generator, bkg = model
    return background_log_prob(generator, bkg, x)


def closure_background(key: jax.Array, samples: AnalysisSamples, model) -> np.ndarray:
    """Generator samples replacing the data's SR background (the ``"closure"`` variant)."""
    generator, bkg = model
    n = len(samples.background_sr)
    return np.asarray(background_sample(generator, bkg, key, n), np.float64)
