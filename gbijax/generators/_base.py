"""The generator interface shared by every density model in gbijax."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

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
