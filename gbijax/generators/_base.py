"""The generator interface shared by every density model in gbijax."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Batch", "Generator", "Params", "as_loss_fn", "context_or_empty"]

Params = Any  # a pytree of arrays
Batch = tuple[jax.Array, jax.Array]  # (x, context); context has shape (N, C), C may be 0


class Generator(NamedTuple):
    """A conditional density model as four pure functions (optax style).

    A factory such as ``flow_matching(config)`` binds the configuration and returns a
    ``Generator``; nothing here holds state, so every function can be ``jit``-ed and
    ``vmap``-ed over stacked parameters (ensembles) or over keys.

    Attributes:
        init: ``init(key) -> params``.
        loss: ``loss(params, key, x, context) -> (N,)`` per-event training loss; the
            trainer takes the weighted mean.
        log_prob: ``log_prob(params, x, context) -> (N,)`` log-density of ``x`` given ``context``
            in the model's own (preprocessed) coordinates.
        sample: ``sample(params, key, context) -> (N, D)``, one sample per context row.
    """

    init: Callable[[jax.Array], Params]
    loss: Callable[[Params, jax.Array, jax.Array, jax.Array], jax.Array]
    log_prob: Callable[[Params, jax.Array, jax.Array], jax.Array]
    sample: Callable[[Params, jax.Array, jax.Array], jax.Array]


def as_loss_fn(generator: Generator) -> Callable[[Params, jax.Array, dict[str, jax.Array]], jax.Array]:
    """The generator's loss in the form :func:`gbijax.train.fit` expects.

    The batch is a dict with ``"x"`` (N, D), optional ``"context"`` (N, C) and optional
    ``"weight"`` (N,) (the trainer applies the weights).

    Args:
        generator: any :class:`Generator`.

    Returns:
        ``loss_fn(params, key, batch) -> (N,)`` per-event losses.
    """

    def loss_fn(params: Params, key: jax.Array, batch: dict[str, jax.Array]) -> jax.Array:
        x = batch["x"]
        return generator.loss(params, key, x, context_or_empty(batch.get("context"), x.shape[0]))

    return loss_fn


def context_or_empty(context: jax.Array | None, n: int) -> jax.Array:
    """``context`` itself, or an empty ``(n, 0)`` context for unconditional models when None."""
    if context is None:
        return jnp.zeros((n, 0))
    if context.ndim != 2 or context.shape[0] != n:
        raise ValueError(f"context must have shape ({n}, C), got {context.shape}")
    return context
