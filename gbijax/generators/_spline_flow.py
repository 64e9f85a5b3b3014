"""Masked autoregressive flows with rational-quadratic spline (or affine) transforms.

The flow maps data ``x`` to a standard normal ``z`` through ``n_layers`` autoregressive layers,
each followed by a feature reversal. In a layer, a MADE network (masked dense layers, with the
context fed unmasked into the first hidden layer) gives, for feature ``i``, the parameters of a
monotone scalar map that depend only on ``x_<i`` and the context:

    ``z_i = f(x_i; theta_i(x_<i, c))``,  ``log p(x | c) = log N(z; 0, I) + sum_layers sum_i log f'``.

The density takes one pass; sampling inverts the layers one feature at a time (D passes per
layer inside ``lax.fori_loop``). Layers share their shapes, so their parameters are stacked and
the layers run in a ``lax.scan`` (compile time does not grow with ``n_layers``).

The scalar map is ``distrax.RationalQuadraticSpline`` on ``[-tail_bound, tail_bound]`` with unit
boundary slopes ("linear tails" as in nflows: ``3 n_bins - 1`` parameters per feature); outside
the bound it is the identity. The density pass evaluates it with hand-written gradients (a Triton
kernel on a GPU; :mod:`gbijax.generators._rq_spline`, same values), so reverse-mode derivatives of
the density work and forward mode does not; sampling uses distrax's inverse.
``transform="affine"`` gives the classic MAF, ``z_i = scale_i x_i + shift_i``.

Reference configurations: :data:`RANODE_SIGNAL_FLOW` (the R-ANODE signal model: 2 RQ layers,
MADE with 2 hidden blocks of width 32 after the input layer, 8 bins, tail bound 8; 12,198
parameters for 5 features, as nflows counts the non-residual MADE) and :data:`CATHODE_MAF` (15
affine MADE blocks of width 128 conditioned on mjj; 274,680 parameters, without CATHODE's batch
normalisation layers).

>>> import jax, jax.numpy as jnp
>>> gen = spline_flow(SplineFlowConfig(features=2, context=1, n_layers=2, hidden=(8,)))
>>> params = gen.init(jax.random.key(0))
>>> x = gen.sample(params, jax.random.key(1), jnp.zeros((3, 1)))
>>> gen.log_prob(params, x, jnp.zeros((3, 1))).shape
(3,)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gbijax.generators._base import Generator, Params, context_or_empty
from gbijax.generators._rq_spline import rational_quadratic_spline
from gbijax.nn import activation, init_like

__all__ = [
    "CATHODE_MAF",
    "MADE",
    "RANODE_SIGNAL_FLOW",
    "FlowTransform",
    "SplineFlowConfig",
    "spline_flow",
    "spline_flow_transform",
]

TRANSFORMS = ("spline", "affine")
PERMUTATIONS = ("reverse", "none")


class SplineFlowConfig(NamedTuple):
    """Settings of a masked autoregressive flow (hashable, so usable as a static argument).

    Attributes:
        features: dimension D of ``x``.
        context: dimension C of the conditioning variables (0: unconditional).
        n_layers: number of autoregressive layers.
        hidden: widths of each MADE's hidden layers (nflows' ``num_blocks`` non-residual blocks
            of width H are ``(H,) * (num_blocks + 1)``).
        n_bins: spline bins per feature.
        tail_bound: the spline acts on ``[-tail_bound, tail_bound]``; identity outside.
        transform: ``"spline"`` (rational-quadratic) or ``"affine"``.
        permutation: ``"reverse"`` (reverse the features after every layer) or ``"none"``.
        activation: name of a :mod:`jax.nn` activation.
        min_bin_size: smallest spline bin width and height.
        min_knot_slope: smallest spline derivative at a knot.
    """

    features: int
    context: int = 0
    n_layers: int = 4
    hidden: tuple[int, ...] = (64, 64)
    n_bins: int = 8
    tail_bound: float = 8.0
    transform: str = "spline"
    permutation: str = "reverse"
    activation: str = "relu"
    min_bin_size: float = 1e-4
    min_knot_slope: float = 1e-4


RANODE_SIGNAL_FLOW = SplineFlowConfig(
    features=5, context=0, n_layers=2, hidden=(32, 32, 32), n_bins=8, tail_bound=8.0
)
"""The R-ANODE signal model: unconditional RQ-spline MAF over (mjj - 3.5 TeV, 4 features)."""

CATHODE_MAF = SplineFlowConfig(features=4, context=1, n_layers=15, hidden=(128, 128), transform="affine")
"""CATHODE's background model: affine MAF of 15 MADE blocks of width 128 conditioned on mjj."""


def _hidden_degrees(width: int, d: int) -> np.ndarray:
    """nflows' sequential degrees ``1..D-1`` (0 when D = 1: then only the context is seen)."""
    return np.arange(width) % max(1, d - 1) + min(1, d - 1)


class MADE(nn.Module):
    """Masked autoencoder: output block ``i`` depends only on inputs ``< i`` (and the context).

    Attributes:
        features: D, the number of autoregressive inputs.
        hidden: hidden-layer widths.
        params_per_feature: outputs per feature.
        activation: activation between layers.
        output_scale: standard deviation scale of the last layer's initialisation (small, so a
            new flow starts close to the identity).
    """

    features: int
    hidden: Sequence[int]
    params_per_feature: int
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    output_scale: float = 1e-2

    def _masked(self, name: str, h: jax.Array, mask: np.ndarray, init) -> jax.Array:
        kernel = self.param(f"{name}_kernel", init, mask.shape)
        bias = self.param(f"{name}_bias", nn.initializers.zeros, mask.shape[1:])
        return h @ (kernel * jnp.asarray(mask, kernel.dtype)) + bias

    @nn.compact
    def __call__(self, x: jax.Array, context: jax.Array) -> jax.Array:
        """``(..., D)``, ``(..., C)`` -> ``(..., D, params_per_feature)``."""
        d = self.features
        degrees = np.arange(1, d + 1)
        h = x
        widths = tuple(self.hidden)
        for layer, width in enumerate(widths):
            new = _hidden_degrees(width, d)
            mask = new[None, :] >= degrees[:, None]
            h = self._masked(f"hidden{layer}", h, mask, nn.initializers.lecun_normal())
            if layer == 0 and context.shape[-1] > 0:
                h = h + nn.Dense(width, use_bias=False, name="context")(context)
            h = self.activation(h)
            degrees = new
        out_degrees = np.repeat(np.arange(1, d + 1), self.params_per_feature)
        init = nn.initializers.variance_scaling(self.output_scale**2, "fan_in", "truncated_normal")
        out = self._masked("output", h, out_degrees[None, :] > degrees[:, None], init)
        if not widths and context.shape[-1] > 0:
            out = out + nn.Dense(out.shape[-1], use_bias=False, name="context")(context)
        return out.reshape(*out.shape[:-1], d, self.params_per_feature)


class FlowTransform(NamedTuple):
    """The bijection of a flow, for checks and for custom uses of its latent space.

    Attributes:
        forward: ``forward(params, x, context) -> (z, log|det dz/dx|)``, shapes (N, D), (N,).
        inverse: ``inverse(params, z, context) -> x``.
    """

    forward: Callable[[Params, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
    inverse: Callable[[Params, jax.Array, jax.Array], jax.Array]


def _params_per_feature(config: SplineFlowConfig) -> int:
    return 3 * config.n_bins - 1 if config.transform == "spline" else 2


def _bijector(config: SplineFlowConfig, raw: jax.Array) -> distrax.Bijector:
    """The elementwise bijector of one layer from the MADE outputs ``raw`` (..., D, P)."""
    if config.transform == "affine":
        scale = jax.nn.softplus(raw[..., 1] + math.log(math.e - 1.0)) + 1e-3  # 1 at raw = 0
        return distrax.ScalarAffine(shift=raw[..., 0], scale=scale)
    k = config.n_bins
    zero = jnp.zeros_like(raw[..., :1])  # the boundary slopes are fixed to 1 ("identity")
    spline_params = jnp.concatenate([raw[..., : 2 * k], zero, raw[..., 2 * k :], zero], axis=-1)
    return distrax.RationalQuadraticSpline(
        spline_params,
        range_min=-config.tail_bound,
        range_max=config.tail_bound,
        boundary_slopes="identity",
        min_bin_size=config.min_bin_size,
        min_knot_slope=config.min_knot_slope,
    )


def _forward_map(config: SplineFlowConfig, raw: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(y, log|dy/dx|)`` of one layer's elementwise map; the spline's gradient is hand-written."""
    if config.transform == "affine":
        return _bijector(config, raw).forward_and_log_det(x)
    return rational_quadratic_spline(
        raw, x, config.n_bins, config.tail_bound, config.min_bin_size, config.min_knot_slope
    )


def _check(config: SplineFlowConfig) -> None:
    if config.transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {TRANSFORMS}, got {config.transform!r}")
    if config.permutation not in PERMUTATIONS:
        raise ValueError(f"permutation must be one of {PERMUTATIONS}, got {config.permutation!r}")
    if config.n_layers < 1 or config.features < 1:
        raise ValueError(f"need n_layers >= 1 and features >= 1, got {config.n_layers}, {config.features}")


def _made(config: SplineFlowConfig) -> MADE:
    act = activation(config.activation)
    return MADE(config.features, tuple(config.hidden), _params_per_feature(config), act)


def spline_flow_transform(config: SplineFlowConfig) -> FlowTransform:
    """The flow's bijection ``x -> z`` and its inverse, as pure functions of stacked layer params.

    Args:
        config: :class:`SplineFlowConfig`.

    Returns:
        A :class:`FlowTransform`; the params are those of :func:`spline_flow`'s ``init``.
    """
    _check(config)
    made = _made(config)
    flip = (lambda v: v[..., ::-1]) if config.permutation == "reverse" else (lambda v: v)

    def forward(params: Params, x: jax.Array, context: jax.Array) -> tuple[jax.Array, jax.Array]:
        def layer(carry, p):
            y, log_det = carry
            y, ld = _forward_map(config, made.apply(p, y, context), y)
            return (flip(y), log_det + jnp.sum(ld, axis=-1)), None

        (z, log_det), _ = jax.lax.scan(layer, (x, jnp.zeros(x.shape[:-1], x.dtype)), params)
        return z, log_det

    def inverse(params: Params, z: jax.Array, context: jax.Array) -> jax.Array:
        def layer(y, p):
            y = flip(y)  # undo this layer's reversal, then solve feature by feature

            def solve(_, x):
                return _bijector(config, made.apply(p, x, context)).inverse(y)

            return jax.lax.fori_loop(0, config.features, solve, y), None

        x, _ = jax.lax.scan(layer, z, params, reverse=True)
        return x

    return FlowTransform(jax.jit(forward), jax.jit(inverse))


def spline_flow(config: SplineFlowConfig) -> Generator:
    """A masked autoregressive flow :class:`Generator` ``p(x | context)`` (``context`` may be empty).

    Args:
        config: :class:`SplineFlowConfig`.

    Returns:
        ``Generator(init, loss, log_prob, sample)`` with ``loss = -log_prob`` per event; ``loss``
        ignores its key. ``init`` draws LeCun-normal kernels (the last MADE layer scaled by
        ``MADE.output_scale``, so a new flow is close to the identity) and zero biases for all
        layers at once (:func:`gbijax.nn.init_like`). ``context`` may be None in ``loss`` and
        ``log_prob`` when ``config.context == 0``; ``sample`` needs an ``(N, 0)`` context to know N.
    """
    _check(config)
    made = _made(config)
    transform = spline_flow_transform(config)

    dummy = (jnp.zeros(config.features), jnp.zeros(config.context))
    template = jax.eval_shape(lambda: made.init(jax.random.key(0), *dummy))
    scale = lambda path: made.output_scale if "output_kernel" in path else 1.0

    def init(key: jax.Array) -> Params:
        return init_like(key, template, scale, batch_shape=(config.n_layers,))

    def log_prob(params: Params, x: jax.Array, context: jax.Array | None = None) -> jax.Array:
        z, log_det = transform.forward(params, x, context_or_empty(context, x.shape[0]))
        return jnp.sum(jax.scipy.stats.norm.logpdf(z), axis=-1) + log_det

    def loss(params: Params, key: jax.Array, x: jax.Array, context: jax.Array | None = None) -> jax.Array:
        del key
        return -log_prob(params, x, context)

    def sample(params: Params, key: jax.Array, context: jax.Array) -> jax.Array:
        z = jax.random.normal(key, (context.shape[0], config.features))
        return transform.inverse(params, z, context)

    # jit once here so that eager calls run compiled code (a nested jit inside a user's jit is inlined)
    return Generator(*(jax.jit(f) for f in (init, loss, log_prob, sample)))
