"""Conditional flow matching: a velocity field ``v(x_t, t, c)`` trained by regression, sampled and
evaluated by integrating an ODE with fixed steps inside ``lax.scan``.

Training uses the linear (rectified, optimal-transport) path between noise and data,

    ``x_t = (1 - t) z + t x``,  ``z ~ N(0, I)``,  ``t ~ U(0, 1)``,
    ``loss = || v(x_t, t, c) - (x - z) ||^2``  (per event, summed over features),

whose minimiser is ``v*(x_t, t, c) = E[x - z | x_t, c]``. Samples solve ``dx/dt = v`` from
``t = 0`` (``x = z``) to ``t = 1``. The exact log-density follows from the instantaneous change
of variables ``d log p(x_t) / dt = -tr(dv/dx)``, integrated backwards from the data point:

    ``log p(x | c) = log N(x_0; 0, I) - int_0^1 tr(dv/dx)(x_t, t, c) dt``,

with the trace computed exactly by ``jax.jacfwd`` (D forward-mode products per event; cheap for
the 4-5 features used here, and free of Hutchinson noise). The ODE step count is the accuracy
knob: samples and densities are those of the discretised flow, exact up to the solver error.

The integrators take any single-event velocity ``velocity(x (D,), t (), context (C,)) -> (D,)``,
so an analytic field can be checked against its known flow:

>>> import jax, jax.numpy as jnp
>>> v = lambda x, t, c: 0.5 * x                      # x(1) = x(0) e^0.5, log-det 0.5 D
>>> z = jnp.ones((2, 3)); ctx = jnp.zeros((2, 0))
>>> bool(jnp.allclose(ode_sample(v, z, ctx, steps=8), jnp.exp(0.5), rtol=1e-5))
True
>>> exact = 3 * jax.scipy.stats.norm.logpdf(jnp.exp(-0.5)) - 1.5
>>> bool(jnp.allclose(ode_log_prob(v, jnp.ones((2, 3)), ctx, steps=8), exact, atol=1e-5))
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from gbijax.generators._base import Generator, Params, context_or_empty
from gbijax.nn import MLP, activation, init_like, sinusoidal_embedding

__all__ = [
    "FlowMatchingConfig",
    "VelocityField",
    "VelocityFn",
    "flow_matching",
    "flow_matching_loss",
    "ode_log_prob",
    "ode_sample",
    "velocity_network",
]

VelocityFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
"""``velocity(x, t, context) -> dx/dt`` for one event: ``x`` (D,), ``t`` scalar, ``context`` (C,)."""

SOLVERS = ("euler", "midpoint", "rk4")


class FlowMatchingConfig(NamedTuple):
    """Settings of a conditional flow-matching generator (hashable, so usable as a static argument).

    Attributes:
        features: dimension D of ``x``.
        context: dimension C of the conditioning variables (0: unconditional).
        hidden: widths of the velocity network's hidden layers.
        time_embedding: width of the sinusoidal time embedding (even).
        time_max_frequency: highest angular frequency of the time embedding (the lowest is 1).
            Frequencies much above ``ode_steps`` make the field oscillate in ``t`` faster than a
            fixed-step solver resolves.
        activation: name of a :mod:`jax.nn` activation (``"silu"``, ``"gelu"``, ...).
        ode_steps: fixed steps of the ODE solver for ``sample`` and ``log_prob``. Measured on the
            toy background (4 features given mjj, default network after 40 epochs), RK4
            log-densities differ from a 128-step solution by at most 4e-3 / 1e-4 / 8e-6 per event
            (mean 3e-4 / 6e-6 / 9e-7) at 8 / 16 / 32 steps; the cost is linear in the steps.
        solver: ``"rk4"`` (4 field evaluations per step), ``"midpoint"`` (2) or ``"euler"`` (1).
    """

    features: int
    context: int = 0
    hidden: tuple[int, ...] = (128, 128, 128)
    time_embedding: int = 32
    time_max_frequency: float = 16.0
    activation: str = "silu"
    ode_steps: int = 32
    solver: str = "rk4"


class VelocityField(nn.Module):
    """``v(x, t, c)``: an MLP on ``[x, embedding(t), c]``; works on one event or a batch.

    Attributes:
        features: output dimension D.
        hidden: hidden-layer widths.
        time_embedding: sinusoidal embedding width.
        time_max_frequency: highest embedding frequency.
        activation: activation function.
    """

    features: int
    hidden: Sequence[int]
    time_embedding: int = 32
    time_max_frequency: float = 16.0
    activation: Callable[[jax.Array], jax.Array] = nn.silu

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array, context: jax.Array) -> jax.Array:
        t = jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:-1])
        emb = sinusoidal_embedding(t, self.time_embedding, max_period=self.time_max_frequency)
        h = jnp.concatenate([x, emb.astype(x.dtype), context.astype(x.dtype)], axis=-1)
        return MLP(tuple(self.hidden), self.features, self.activation)(h)


def _step(f, y, t, h, solver: str):
    """One fixed step of ``dy/dt = f(y, t)`` for a pytree ``y``."""
    axpy = lambda a, dy, y0: jax.tree.map(lambda u, du: u + a * du, y0, dy)
    if solver == "euler":
        return axpy(h, f(y, t), y)
    if solver == "midpoint":
        return axpy(h, f(axpy(h / 2, f(y, t), y), t + h / 2), y)
    k1 = f(y, t)
    k2 = f(axpy(h / 2, k1, y), t + h / 2)
    k3 = f(axpy(h / 2, k2, y), t + h / 2)
    k4 = f(axpy(h, k3, y), t + h)
    slope = jax.tree.map(lambda a, b, c, d: (a + 2 * b + 2 * c + d) / 6, k1, k2, k3, k4)
    return axpy(h, slope, y)


def _integrate(f, y0, t0: float, t1: float, steps: int, solver: str):
    """Integrate ``dy/dt = f(y, t)`` from ``t0`` to ``t1`` in ``steps`` equal steps (``lax.scan``)."""
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    h = (t1 - t0) / steps

    def body(y, i):
        return _step(f, y, t0 + i * h, h, solver), None

    y, _ = jax.lax.scan(body, y0, jnp.arange(steps))
    return y


def ode_sample(
    velocity: VelocityFn, z: jax.Array, context: jax.Array, steps: int, solver: str = "rk4"
) -> jax.Array:
    """Push base points ``z`` through the flow: solve ``dx/dt = v(x, t, c)`` from t = 0 to 1.

    Args:
        velocity: single-event velocity ``v(x (D,), t, c (C,)) -> (D,)``.
        z: starting points at t = 0, shape (N, D) (standard normal for sampling).
        context: (N, C), C may be 0.
        steps: fixed solver steps.
        solver: ``"rk4"``, ``"midpoint"`` or ``"euler"``.

    Returns:
        The points at t = 1, shape (N, D).
    """

    def one(z1, c1):
        return _integrate(lambda x, t: velocity(x, t, c1), z1, 0.0, 1.0, steps, solver)

    return jax.vmap(one)(z, context)


def ode_log_prob(
    velocity: VelocityFn, x: jax.Array, context: jax.Array, steps: int, solver: str = "rk4"
) -> jax.Array:
    """Exact log-density of the flow of ``velocity`` with a standard normal base at t = 0.

    ``log p(x | c) = log N(x_0; 0, I) - int_0^1 tr(dv/dx)(x_t, t, c) dt``, integrating
    ``(x_t, -int_t^1 tr dt)`` backwards from ``x_1 = x``; the trace is the exact Jacobian trace.

    Args:
        velocity: single-event velocity ``v(x (D,), t, c (C,)) -> (D,)``.
        x: points at t = 1, shape (N, D).
        context: (N, C), C may be 0.
        steps: fixed solver steps.
        solver: ``"rk4"``, ``"midpoint"`` or ``"euler"``.

    Returns:
        ``log p(x | c)``, shape (N,).

    Cost: ``(1 + D)`` network passes per field evaluation (the Jacobian by forward mode), about
    five times a sampling pass; memory grows with N, so chunk very large N with ``jax.lax.map``.
    """

    def one(x1, c1):
        def field(state, t):
            y, _ = state
            fn = lambda u: velocity(u, t, c1)
            jac, v = jax.jacfwd(lambda u: (fn(u), fn(u)), has_aux=True)(y)
            return v, jnp.trace(jac)

        x0, minus_int_trace = _integrate(field, (x1, jnp.zeros((), x1.dtype)), 1.0, 0.0, steps, solver)
        return jnp.sum(jax.scipy.stats.norm.logpdf(x0)) + minus_int_trace

    return jax.vmap(one)(x, context)


def flow_matching_loss(velocity: VelocityFn, key: jax.Array, x: jax.Array, context: jax.Array) -> jax.Array:
    """Per-event conditional flow-matching loss on the linear path.

    ``x_t = (1 - t) z + t x`` with ``z ~ N(0, I)`` and ``t ~ U(0, 1)`` drawn per event from
    ``key``; ``loss_i = || v(x_t, t, c) - (x - z) ||^2``. Its expectation is minimised by
    ``v* = E[x - z | x_t, c]``, and exceeds the minimum by ``E || v - v* ||^2``.

    Args:
        velocity: single-event velocity ``v(x (D,), t, c (C,)) -> (D,)``.
        key: PRNG key for ``z`` and ``t``.
        x: data (N, D).
        context: (N, C), C may be 0.

    Returns:
        Losses, shape (N,).
    """
    kz, kt = jax.random.split(key)
    z = jax.random.normal(kz, x.shape, x.dtype)
    t = jax.random.uniform(kt, x.shape[:1], x.dtype)
    xt = (1 - t)[:, None] * z + t[:, None] * x
    v = jax.vmap(velocity)(xt, t, context)
    return jnp.sum((v - (x - z)) ** 2, axis=-1)


def velocity_network(config: FlowMatchingConfig) -> VelocityField:
    """The Flax module of the velocity field described by ``config``."""
    return VelocityField(
        features=config.features,
        hidden=tuple(config.hidden),
        time_embedding=config.time_embedding,
        time_max_frequency=config.time_max_frequency,
        activation=activation(config.activation),
    )


def flow_matching(config: FlowMatchingConfig) -> Generator:
    """A conditional flow-matching :class:`Generator` ``p(x | context)``.

    Args:
        config: :class:`FlowMatchingConfig`.

    Returns:
        ``Generator(init, loss, log_prob, sample)``; ``loss`` is :func:`flow_matching_loss`,
        ``log_prob`` :func:`ode_log_prob` and ``sample`` :func:`ode_sample` of the network's
        velocity with ``config.ode_steps`` steps of ``config.solver``; ``init`` draws LeCun-normal
        kernels and zero biases in one draw (:func:`gbijax.nn.init_like`). ``context`` may be None in
        ``loss`` and ``log_prob`` when ``config.context == 0``.

    >>> import jax, jax.numpy as jnp
    >>> gen = flow_matching(FlowMatchingConfig(features=2, context=1, hidden=(16,), ode_steps=4))
    >>> params = gen.init(jax.random.key(0))
    >>> ctx = jnp.ones((5, 1))
    >>> x = gen.sample(params, jax.random.key(1), ctx)
    >>> x.shape, gen.log_prob(params, x, ctx).shape, gen.loss(params, jax.random.key(2), x, ctx).shape
    ((5, 2), (5,), (5,))
    """
    if config.solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {config.solver!r}")
    net = velocity_network(config)

    dummy = (jnp.zeros(config.features), jnp.zeros(()), jnp.zeros(config.context))
    template = jax.eval_shape(lambda: net.init(jax.random.key(0), *dummy))

    def init(key: jax.Array) -> Params:
        return init_like(key, template)

    def velocity(params: Params) -> VelocityFn:
        return lambda x, t, c: net.apply(params, x, t, c)

    def loss(params: Params, key: jax.Array, x: jax.Array, context: jax.Array | None = None) -> jax.Array:
        return flow_matching_loss(velocity(params), key, x, context_or_empty(context, x.shape[0]))

    def log_prob(params: Params, x: jax.Array, context: jax.Array | None = None) -> jax.Array:
        ctx = context_or_empty(context, x.shape[0])
        return ode_log_prob(velocity(params), x, ctx, config.ode_steps, config.solver)

    def sample(params: Params, key: jax.Array, context: jax.Array) -> jax.Array:
        z = jax.random.normal(key, (context.shape[0], config.features))
        return ode_sample(velocity(params), z, context, config.ode_steps, config.solver)

    # jit once here so that eager calls run compiled code (a nested jit inside a user's jit is inlined)
    return Generator(*(jax.jit(f) for f in (init, loss, log_prob, sample)))
