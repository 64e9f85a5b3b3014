"""Ensembles: K members of one generator family as one set of stacked parameters.

Every leaf of the stacked parameters has a leading member axis of size K, so initialising,
training, evaluating and sampling the ensemble are ``jax.vmap`` over that axis: one compiled
program instead of K jobs. The ensemble density is the equal-weight mixture of the members,

    ``p_ens(x | c) = (1/K) sum_k p_k(x | c)``,  i.e.  ``log p_ens = logsumexp_k log p_k - log K``,

the mean of densities (not of log-densities), and sampling it draws each event from a member
chosen uniformly at random.

>>> import jax, jax.numpy as jnp
>>> from gbijax.generators import SplineFlowConfig, spline_flow
>>> gen = spline_flow(SplineFlowConfig(features=2, n_layers=1, hidden=(8,)))
>>> members = init_ensemble(gen, jax.random.key(0), 3)
>>> ctx = jnp.zeros((4, 0))
>>> x = ensemble_sample(gen, members, jax.random.key(1), ctx)
>>> x.shape, ensemble_log_prob(gen, members, x, ctx).shape
((4, 2), (4,))
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from gbijax.generators._base import Generator, Params, as_loss_fn, context_or_empty
from gbijax.train import Data, History, TrainConfig, fit

__all__ = [
    "ensemble_log_prob",
    "ensemble_sample",
    "ensemble_size",
    "fit_ensemble",
    "init_ensemble",
    "member_log_probs",
]


def ensemble_size(stacked_params: Params) -> int:
    """K, the length of the leading member axis of stacked parameters."""
    sizes = {leaf.shape[0] for leaf in jax.tree.leaves(stacked_params)}
    if len(sizes) != 1:
        raise ValueError(f"stacked params must share one leading member axis, got sizes {sizes}")
    return sizes.pop()


def init_ensemble(generator: Generator, key: jax.Array, k: int) -> Params:
    """Initialise K members from ``jax.random.split(key, k)``; leaves get a leading axis K.

    Member ``i`` equals ``generator.init(jax.random.split(key, k)[i])``.
    """
    return jax.vmap(generator.init)(jax.random.split(key, k))


def member_log_probs(generator: Generator, stacked_params: Params, x: jax.Array, context=None) -> jax.Array:
    """``log p_k(x | c)`` of every member, shape (K, N)."""
    context = context_or_empty(context, x.shape[0])
    return jax.vmap(generator.log_prob, in_axes=(0, None, None))(stacked_params, x, context)


def ensemble_log_prob(
    generator: Generator, stacked_params: Params, x: jax.Array, context: jax.Array | None = None
) -> jax.Array:
    """Log-density of the equal-weight mixture of the members.

    ``log p_ens(x | c) = logsumexp_k log p_k(x | c) - log K``.

    Args:
        generator: the members' family.
        stacked_params: member parameters with a leading axis K.
        x: (N, D) points.
        context: (N, C), or None for unconditional members.

    Returns:
        (N,) log-densities.
    """
    log_probs = member_log_probs(generator, stacked_params, x, context)
    return jax.nn.logsumexp(log_probs, axis=0) - math.log(log_probs.shape[0])


def ensemble_sample(
    generator: Generator, stacked_params: Params, key: jax.Array, context: jax.Array
) -> jax.Array:
    """One draw from the equal-weight mixture per context row.

    Every member samples all N events (member ``k`` with key ``jax.random.split(k_members, K)[k]``
    where ``k_choice, k_members = jax.random.split(key)``), and event ``i`` keeps the draw of a
    member chosen uniformly with ``k_choice``; shapes stay static at the cost of K samplings.

    Args:
        generator: the members' family.
        stacked_params: member parameters with a leading axis K.
        key: PRNG key.
        context: (N, C); C may be 0.

    Returns:
        (N, D) samples.
    """
    k = ensemble_size(stacked_params)
    k_choice, k_members = jax.random.split(key)
    draws = jax.vmap(generator.sample, in_axes=(0, 0, None))(
        stacked_params, jax.random.split(k_members, k), context
    )  # (K, N, D)
    member = jax.random.randint(k_choice, (context.shape[0],), 0, k)
    return jnp.take_along_axis(draws, member[None, :, None], axis=0)[0]


def _data_axes(data: Data | None) -> tuple[tuple[str, int | None], ...] | None:
    """vmap axes of a data dict: a 2-D ``"weight"`` (K, N) is per member, everything else shared."""
    if data is None:
        return None
    return tuple((name, 0 if name == "weight" and value.ndim == 2 else None) for name, value in data.items())


@functools.lru_cache(maxsize=32)
def _vmapped_fit(generator: Generator, config: TrainConfig, train_axes, val_axes):
    """The compiled ensemble training for one (generator, config, data layout); cached across calls."""
    loss_fn = as_loss_fn(generator)
    train_one = lambda key, params, tr, va: fit(key, params, loss_fn, tr, va, config)
    axes = (0, 0, dict(train_axes), None if val_axes is None else dict(val_axes))
    return jax.jit(jax.vmap(train_one, in_axes=axes))


def fit_ensemble(
    generator: Generator,
    key: jax.Array,
    stacked_params: Params,
    train_data: Data,
    val_data: Data | None,
    config: TrainConfig,
) -> tuple[Params, History]:
    """Train K members at once: :func:`gbijax.train.fit` vmapped over keys and initial params.

    Member ``i`` is trained with key ``jax.random.split(key, K)[i]`` exactly as
    ``fit(keys[i], params_i, as_loss_fn(generator), train_data, val_data, config)`` would. The
    compiled program is cached per (generator, config, data layout), so repeated calls (data
    realisations, folds) compile once.

    Args:
        generator: the members' family.
        key: PRNG key (split into one key per member).
        stacked_params: initial parameters with a leading axis K (see :func:`init_ensemble`).
        train_data: ``{"x": (N, D), "context": (N, C) optional, "weight": optional}``; a
            ``"weight"`` of shape (K, N) gives every member its own event weights (bootstrap,
            folds, injections); other entries are shared.
        val_data: the same for validation, or None.
        config: :class:`gbijax.train.TrainConfig`.

    Returns:
        ``(best_params, history)``, both with a leading member axis K.
    """
    k = ensemble_size(stacked_params)
    train = _vmapped_fit(generator, config, _data_axes(train_data), _data_axes(val_data))
    return train(jax.random.split(key, k), stacked_params, train_data, val_data)
