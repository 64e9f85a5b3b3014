"""A C2 cubic spline through values on a regular 2-D grid, evaluated (and differentiated) in JAX.

Used to tabulate slowly varying functions of the signal masses that are expensive to evaluate at
every step of a fit, such as the class-balance correction ``log kappa(m_X, m_Y)`` of PAWS.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

__all__ = ["GridSpline", "grid_spline"]


class GridSpline(NamedTuple):
    """A tensor-product cubic B-spline ``s(u, v)`` on a regular grid (a pytree; call it).

    ``s(u, v) = sum_ab c_ab B((u - u_a) / h_u) B((v - v_b) / h_v)`` with the uniform cubic
    B-spline ``B`` and knots at the grid nodes: twice continuously differentiable, so gradients
    and Hessians of a likelihood that uses it are smooth. Outside the grid it extends the edge
    cells' cubics.

    Attributes:
        lower: ``(2,)`` the first node of each axis.
        step: ``(2,)`` the node spacing of each axis.
        coefficients: ``(n_u + 2, n_v + 2)`` B-spline coefficients (:func:`grid_spline`).
    """

    lower: jax.Array
    step: jax.Array
    coefficients: jax.Array

    def __call__(self, point: ArrayLike) -> jax.Array:
        """``s`` at one point ``(u, v)`` (a ``(2,)`` array)."""
        point = jnp.asarray(point, self.coefficients.dtype)
        n_cells = jnp.asarray(self.coefficients.shape, point.dtype) - 3
        t = (point - self.lower) / self.step
        cell = jnp.clip(jnp.floor(t), 0, n_cells - 1)
        wu, wv = _basis(t - cell)
        cell = cell.astype(jnp.int32)
        block = jax.lax.dynamic_slice(self.coefficients, (cell[0], cell[1]), (4, 4))
        return wu @ block @ wv


def _basis(f: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The four uniform cubic B-spline weights of each coordinate's offset ``f`` in its cell."""
    weights = jnp.stack([(1 - f) ** 3, 3 * f**3 - 6 * f**2 + 4, -3 * f**3 + 3 * f**2 + 3 * f + 1, f**3]) / 6
    return weights[:, 0], weights[:, 1]


def _collocation(n: int) -> np.ndarray:
    """``(n + 2, n + 2)`` equations for the coefficients ``c_-1..c_n`` of one axis.

    Row 0 and the last row are the not-a-knot conditions (the third derivative is continuous at
    the second and the second-to-last node, a zero fourth difference of the coefficients), so
    cubic polynomials are reproduced exactly; rows ``1..n`` interpolate the values:
    ``(c_{i-1} + 4 c_i + c_{i+1}) / 6 = y_i``.
    """
    m = np.zeros((n + 2, n + 2))
    for i in range(n):
        m[i + 1, i : i + 3] = (1 / 6, 4 / 6, 1 / 6)
    m[0, :5] = m[-1, -5:] = (1.0, -4.0, 6.0, -4.0, 1.0)
    return m


def grid_spline(values: ArrayLike, lower: ArrayLike, step: ArrayLike) -> GridSpline:
    """The cubic spline through ``values[i, j]`` at the nodes ``(lower_0 + i step_0, lower_1 + j step_1)``.

    The coefficients solve the interpolation equations along each axis in float64 (NumPy, once),
    with not-a-knot ends: a bicubic polynomial is reproduced exactly, a smooth function to
    ``O(step^4)``.

    Args:
        values: ``(n_u, n_v)`` finite values, at least 4 nodes per axis.
        lower: the first node of each axis (a scalar for both).
        step: the node spacing of each axis (a scalar for both), > 0.

    Returns:
        A :class:`GridSpline` in float64 when ``jax_enable_x64`` is on, else float32.

    >>> u = v = np.arange(5.0)
    >>> s = grid_spline(u[:, None] ** 3 - 2 * u[:, None] * v**2, 0.0, 1.0)
    >>> round(float(s(jnp.array([1.5, 2.25]))), 4)  # 1.5**3 - 2 * 1.5 * 2.25**2
    -11.8125
    """
    values = np.asarray(values, np.float64)
    step = np.broadcast_to(np.asarray(step, np.float64), (2,))
    if values.ndim != 2 or min(values.shape) < 4:
        raise ValueError(f"values must be a (n_u, n_v) grid, at least 4 nodes per axis; got {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"values must be finite; {int(np.sum(~np.isfinite(values)))} are not")
    if not np.all(step > 0):
        raise ValueError(f"step must be > 0; got {step.tolist()}")
    coefficients = values
    for axis in (0, 1):
        rhs = np.moveaxis(coefficients, axis, 0)
        rhs = np.concatenate([np.zeros((1,) + rhs.shape[1:]), rhs, np.zeros((1,) + rhs.shape[1:])])
        coefficients = np.moveaxis(np.linalg.solve(_collocation(values.shape[axis]), rhs), 0, axis)
    dtype = jnp.result_type(float)
    return GridSpline(
        jnp.asarray(np.broadcast_to(np.asarray(lower, np.float64), (2,)), dtype),
        jnp.asarray(step, dtype),
        jnp.asarray(coefficients, dtype),
    )
