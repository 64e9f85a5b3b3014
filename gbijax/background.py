"""The learned background model ``p_B(m, x)`` in physical units, and how to fit it.

A :class:`Background` bundles what the inference needs, as one pytree of arrays: an ensemble of
generator parameters for ``p_B(x | m)`` (trained on sideband events, or on any sample the
caller chooses: the idealised variant trains on true signal-region background), the sideband
preprocessing of the four substructure features, the standardisation of the conditioning mass
and the signal-region mass density ``p_B(m)``. Then

    ``log p_B(m, x) = log p_B(m) + log p_gen(z(x) | c(m)) + log |dz/dx|``,

with ``p_gen`` the ensemble density (mean of the members' densities). Sampling draws ``m`` from
``p_B(m)`` (or takes given masses), ``z`` from the generator and maps back with the inverse
preprocessing.

>>> import jax, jax.numpy as jnp
>>> from gbijax.data import toy
>>> from gbijax.generators import mass_density_from_samples
>>> x = toy.background_sample(jax.random.key(0), 4000)
>>> sr = (x[:, 0] > 3.3) & (x[:, 0] < 3.7)
>>> cfg = BackgroundConfig(model="spline_flow", hidden=(16,), n_layers=1,
...                        train=TrainConfig(epochs=2, batch_size=256))
>>> mass = mass_density_from_samples(x[sr, 0], bins=5)
>>> gen, bkg, hist = fit_background(jax.random.key(1), x[~sr], cfg, mass)
>>> background_log_prob(gen, bkg, x[sr][:3]).shape
(3,)
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gbijax.checkpoint import train_resumable
from gbijax.data._preprocessing import Preprocessing, fit_preprocessing, forward, inverse
from gbijax.generators import (
    FlowMatchingConfig,
    Generator,
    SplineFlowConfig,
    as_loss_fn,
    ensemble_log_prob,
    ensemble_sample,
    flow_matching,
    init_ensemble,
    member_log_probs,
    spline_flow,
)
from gbijax.generators._mass import MassDensity
from gbijax.train import History, TrainConfig, history, init_state, train

__all__ = [
    "MODELS",
    "Background",
    "BackgroundConfig",
    "background_conditional_log_prob",
    "background_log_prob",
    "background_member_log_probs",
    "background_sample",
    "fit_background",
    "make_generator",
]

MODELS = ("flow_matching", "spline_flow")


class BackgroundConfig(NamedTuple):
    """How to build and train the background generator (hashable).

    Attributes:
        model: ``"flow_matching"`` or ``"spline_flow"``.
        ensemble: number of members K, trained together as one vmapped program.
        hidden: hidden widths (velocity network, or each MADE).
        n_layers: autoregressive layers of the spline flow.
        n_bins: spline bins.
        ode_steps: fixed RK4 steps of flow matching (sampling and log-density). The default 6
            (24 velocity evaluations, 4x fewer than Euler with 100 steps) keeps the log-density
            within 1% of the converged one (benchmarks/RESULTS.md, "ODE steps").
        train: the :class:`gbijax.train.TrainConfig`.
        val_fraction: fraction of the training events held out for early stopping.
    """

    model: str = "flow_matching"
    ensemble: int = 1
    hidden: tuple[int, ...] = (128, 128, 128)
    n_layers: int = 4
    n_bins: int = 8
    ode_steps: int = 6
    train: TrainConfig = TrainConfig(
        epochs=100, batch_size=512, learning_rate=1e-3, patience=10, schedule="cosine", clip_norm=5.0
    )
    val_fraction: float = 0.2


class Background(NamedTuple):
    """A fitted background model (a pytree of arrays; the generator functions live apart).

    Attributes:
        params: generator parameters with a leading ensemble axis K.
        preprocessing: the sideband-fitted transform of the four substructure features.
        context_mean, context_std: standardisation of ``log mjj`` for the conditioning.
        mass: the signal-region mass density ``p_B(m)``.
    """

    params: object
    preprocessing: Preprocessing
    context_mean: jax.Array
    context_std: jax.Array
    mass: MassDensity


def make_generator(config: BackgroundConfig) -> Generator:
    """The generator family of ``config`` for 4 features conditioned on 1 mass."""
    if config.model == "flow_matching":
        return flow_matching(
            FlowMatchingConfig(features=4, context=1, hidden=config.hidden, ode_steps=config.ode_steps)
        )
    if config.model == "spline_flow":
        return spline_flow(SplineFlowConfig(
            features=4, context=1, n_layers=config.n_layers, hidden=config.hidden, n_bins=config.n_bins
        ))  # fmt: skip
    raise ValueError(f"unknown background model {config.model!r}: expected one of {', '.join(MODELS)}")


def _context(bkg: Background, m: jax.Array) -> jax.Array:
    return ((jnp.log(m) - bkg.context_mean) / bkg.context_std)[:, None]


def _clipped_forward(pp: Preprocessing, features: jax.Array):
    """Forward transform with events outside the fitted range moved just inside it."""
    width = pp.hi - pp.lo
    return forward(pp, jnp.clip(features, pp.lo + 1e-6 * width, pp.hi - 1e-6 * width))


def background_conditional_log_prob(generator: Generator, bkg: Background, x: jax.Array) -> jax.Array:
    """``log p_B(x | m)`` of ``(N, 5)`` events in physical units (ensemble density).

    Features outside the sideband-fitted range are evaluated at the range edge; count them with
    :func:`gbijax.data.in_range` where it matters.
    """
    z, log_det = _clipped_forward(bkg.preprocessing, x[:, 1:])
    return ensemble_log_prob(generator, bkg.params, z, _context(bkg, x[:, 0])) + log_det


def background_member_log_probs(generator: Generator, bkg: Background, x: jax.Array) -> jax.Array:
    """``(K, N)`` ``log p_B(m, x)`` of ``(N, 5)`` events under every ensemble member separately."""
    z, log_det = _clipped_forward(bkg.preprocessing, x[:, 1:])
    members = member_log_probs(generator, bkg.params, z, _context(bkg, x[:, 0]))
    return members + (log_det + bkg.mass.log_prob(x[:, 0]))[None]


def background_log_prob(generator: Generator, bkg: Background, x: jax.Array) -> jax.Array:
    """``log p_B(m, x) = log p_B(m) + log p_B(x | m)`` of ``(N, 5)`` signal-region events."""
    return bkg.mass.log_prob(x[:, 0]) + background_conditional_log_prob(generator, bkg, x)


def background_sample(
    generator: Generator, bkg: Background, key: jax.Array, n: int, masses: jax.Array | None = None
) -> jax.Array:
    """``(n, 5)`` background events: ``m ~ p_B(m)`` (or the given masses), then ``x ~ p_B(x | m)``."""
    k_m, k_x = jax.random.split(key)
    m = bkg.mass.sample(k_m, n) if masses is None else jnp.asarray(masses)
    z = ensemble_sample(generator, bkg.params, k_x, _context(bkg, m))
    return jnp.concatenate([m[:, None], inverse(bkg.preprocessing, z)], axis=1)


def _split(key: jax.Array, n: int, val_fraction: float) -> np.ndarray:
    """Boolean validation mask of a random ``val_fraction`` of ``n`` events."""
    n_val = int(round(val_fraction * n))
    if n_val < 1 or n - n_val < 1:
        raise ValueError(f"need training and validation events; got {n} events, val_fraction {val_fraction}")
    return np.asarray(jax.random.permutation(key, n) < n_val)


def fit_background(
    key: jax.Array,
    x_train,
    config: BackgroundConfig,
    mass: MassDensity,
    weight=None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 10,
    member_weight=None,
) -> tuple[Generator, Background, History]:
    """Fit the preprocessing and an ensemble of generators to ``(N, 5)`` training events.

    The realistic variant passes sideband events; the idealised one true signal-region
    background. The K members train as one vmapped program (each with its own key and its own
    random validation split); with ``checkpoint_dir`` the training is checkpointed every
    ``checkpoint_every`` epochs and resumed from there when run again. ``member_weight``
    (``(K, N)``, multiplying ``weight``) gives each member its own events, e.g. all but one
    fold (:func:`gbijax.pipeline.fit_background_folds`); the preprocessing is fitted on all.

    Returns:
        ``(generator, background, history)``; history leaves have a leading axis K.

    Raises:
        ValueError: non-finite training events, too few events, an unknown model.
    """
    x = np.asarray(x_train, np.float64)
    if x.ndim != 2 or x.shape[1] != 5:
        raise ValueError(f"background training events must have shape (N, 5), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("background training events contain NaN or inf")
    w = np.ones(len(x)) if weight is None else np.asarray(weight, np.float64)
    generator = make_generator(config)
    pp = fit_preprocessing(x[:, 1:], w)
    log_m = np.log(x[:, 0])
    c_mean, c_std = float(np.average(log_m, weights=w)), float(np.sqrt(np.cov(log_m, aweights=w)))
    bkg = Background(None, pp, jnp.float32(c_mean), jnp.float32(c_std), mass)
    z, _ = _clipped_forward(pp, jnp.asarray(x[:, 1:], jnp.float32))
    data = {"x": z, "context": _context(bkg, jnp.asarray(x[:, 0], jnp.float32))}

    k = config.ensemble
    k_init, k_split, k_train = jax.random.split(key, 3)
    val = np.stack([_split(s, len(x), config.val_fraction) for s in jax.random.split(k_split, k)])
    w_k = np.broadcast_to(w, (k, len(x)))
    if member_weight is not None:
        member_weight = np.asarray(member_weight, np.float64)
        if member_weight.shape != (k, len(x)) or (member_weight < 0).any():
            raise ValueError(f"member_weight must be ({k}, {len(x)}) and >= 0 (one row per ensemble member), "
                             f"got shape {member_weight.shape}")  # fmt: skip
        w_k = w_k * member_weight
    train_w = jnp.asarray(np.where(val, 0.0, w_k), jnp.float32)
    val_w = jnp.asarray(np.where(val, w_k, 0.0), jnp.float32)
    params = init_ensemble(generator, k_init, k)
    loss_fn = as_loss_fn(generator)
    keys = jax.random.split(k_train, k)
    cfg = config.train

    state = jax.vmap(lambda p: init_state(p, data, cfg))(params)
    step = jax.jit(jax.vmap(
        lambda s, kk, tw, vw, until: train(s, kk, loss_fn, {**data, "weight": tw}, {**data, "weight": vw},
                                           cfg, until),
        in_axes=(0, 0, 0, 0, None),
    ))  # fmt: skip
    run_config = {"background": config._asdict(), "n_train": len(x), "key": np.asarray(
        jax.random.key_data(key)).tolist()}  # fmt: skip
    if member_weight is not None:
        run_config["member_weight_sums"] = np.sum(member_weight, axis=1).tolist()
    state = train_resumable(
        lambda s, until: step(s, keys, train_w, val_w, until), state, cfg.epochs, checkpoint_dir,
        run_config, every=checkpoint_every if checkpoint_dir is not None else cfg.epochs,
    )
    return generator, bkg._replace(params=state.best_params), jax.vmap(history)(state)
