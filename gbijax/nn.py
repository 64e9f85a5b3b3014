"""Small network building blocks shared by generators and classifiers.

Networks are Flax Linen modules; the rest of gbijax only ever sees their pure
``init``/``apply`` functions and parameter pytrees, so that every model can be
``jax.vmap``-ed over stacked parameters (ensembles, scans).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["MLP", "PIECEWISE_LINEAR", "activation", "count_params", "init_like", "sinusoidal_embedding"]


class MLP(nn.Module):
    """A fully connected network ``in -> hidden... -> out``.

    Attributes:
        hidden: widths of the hidden layers, e.g. ``(64, 64, 64)``.
        out: width of the output layer.
        activation: activation between hidden layers.
        zero_init_output: start the last layer at zero (useful for flows and velocity fields,
            so that training starts from the identity / zero velocity).
    """

    hidden: Sequence[int]
    out: int
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    zero_init_output: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            x = self.activation(nn.Dense(width)(x))
        init = nn.initializers.zeros if self.zero_init_output else nn.initializers.lecun_normal()
        return nn.Dense(self.out, kernel_init=init)(x)


def sinusoidal_embedding(t: jax.Array, dim: int, max_period: float = 1000.0) -> jax.Array:
    """Sinusoidal features of a scalar time ``t`` in [0, 1].

    Args:
        t: times, shape ``(...,)``.
        dim: embedding width (even).
        max_period: highest angular frequency (radians per unit ``t``); the frequencies run
            geometrically from ``max_period`` down to 1. Keep it small (tens) when the
            features feed an ODE integrated with fixed steps in ``t``.

    Returns:
        Array of shape ``(..., dim)``: ``[sin(t f_k), cos(t f_k)]`` with geometric frequencies.

    >>> sinusoidal_embedding(jnp.zeros(3), 4).shape
    (3, 4)
    """
    if dim % 2:
        raise ValueError(f"embedding dim must be even, got {dim}")
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half) / max(half - 1, 1)) * max_period
    angles = jnp.asarray(t)[..., None] * freqs
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


PIECEWISE_LINEAR = ("relu", "relu6", "leaky_relu", "hard_tanh", "hard_sigmoid", "hard_silu", "hard_swish")
"""Names of the :mod:`jax.nn` activations that are piecewise linear: a network built of them is
piecewise linear in its inputs too, with kinks but no curvature (so, e.g., it cannot be
interpolated by a smooth spline in its conditioning inputs)."""


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """The activation function called ``name`` in :mod:`jax.nn` (hashable configs store names).

    >>> activation("silu") is jax.nn.silu
    True
    """
    fn = getattr(jax.nn, name, None)
    if not callable(fn):
        raise ValueError(f"unknown activation {name!r}; use a jax.nn function name such as 'silu'")
    return fn


def count_params(params) -> int:
    """Number of scalar parameters in a pytree (all leaves).

    >>> count_params({"w": jnp.zeros((3, 4)), "b": jnp.zeros(4)})
    16
    """
    return int(sum(leaf.size for leaf in jax.tree.leaves(params)))


def init_like(
    key: jax.Array,
    template,
    scale: Callable[[str], float] | None = None,
    batch_shape: tuple[int, ...] = (),
):
    """Fresh parameters shaped like ``template``, drawn with a single normal draw.

    Kernels (leaves with ``ndim >= 2``; the input axis is the first) get ``N(0, s^2 / fan_in)``
    (LeCun normal scaled by ``s = scale(path)``), other leaves (biases) start at 0. One draw for
    the whole pytree compiles much faster than Flax's per-parameter truncated-normal
    initialisers, which matters for ``vmap``-ed ensembles and stacked layers.

    Args:
        key: PRNG key.
        template: pytree of arrays or ``jax.ShapeDtypeStruct`` (e.g. ``jax.eval_shape`` of a
            Flax ``init``).
        scale: optional ``scale(path) -> float`` per leaf, ``path`` as ``jax.tree_util.keystr``.
        batch_shape: leading axes prepended to every leaf (stacked layers or members).

    Returns:
        A pytree like ``template`` with leaves of shape ``batch_shape + leaf.shape``.

    >>> template = {"kernel": jnp.zeros((4, 3)), "bias": jnp.zeros(3)}
    >>> p = init_like(jax.random.key(0), template, batch_shape=(2,))
    >>> p["kernel"].shape, float(jnp.abs(p["bias"]).max())
    ((2, 4, 3), 0.0)
    """
    paths, tree = jax.tree_util.tree_flatten_with_path(template)
    sizes = [math.prod(leaf.shape) if len(leaf.shape) >= 2 else 0 for _, leaf in paths]
    noise = jax.random.normal(key, (*batch_shape, max(sum(sizes), 1)))
    out, start = [], 0
    for (path, leaf), size in zip(paths, sizes, strict=True):
        shape = (*batch_shape, *leaf.shape)
        if size == 0:
            out.append(jnp.zeros(shape, leaf.dtype))
            continue
        s = 1.0 if scale is None else scale(jax.tree_util.keystr(path))
        block = noise[..., start : start + size].reshape(shape) * (s / math.sqrt(leaf.shape[0]))
        out.append(block.astype(leaf.dtype))
        start += size
    return jax.tree.unflatten(tree, out)
