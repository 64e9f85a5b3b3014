"""The grid cubic spline against exact answers: polynomials it must reproduce, its order, its smoothness."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gbijax.inference import GridSpline, grid_spline


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _bicubic(p):
    u, v = p[..., 0], p[..., 1]
    return 1.0 - 2.0 * u + u**2 * v - 0.5 * u**3 + 3.0 * v**3 - u**3 * v**3 + 0.25 * u * v**2


def _nodes(lower, step, shape):
    u = lower[0] + step[0] * np.arange(shape[0])
    v = lower[1] + step[1] * np.arange(shape[1])
    return np.stack(np.meshgrid(u, v, indexing="ij"), -1)


def test_reproduces_a_bicubic_polynomial_inside_and_beyond_the_grid():
    lower, step = np.array([-1.0, 0.5]), np.array([0.25, 0.4])
    spline = grid_spline(_bicubic(_nodes(lower, step, (7, 5))), lower, step)
    assert isinstance(spline, GridSpline) and spline.coefficients.shape == (9, 7)
    points = jax.random.uniform(
        jax.random.key(0), (500, 2), minval=lower - 0.2, maxval=lower + step * [6, 4] + 0.2
    )
    np.testing.assert_allclose(jax.vmap(spline)(points), _bicubic(points), atol=1e-10)
    np.testing.assert_allclose(
        jax.vmap(jax.grad(spline))(points), jax.vmap(jax.grad(_bicubic))(points), atol=1e-9
    )
    np.testing.assert_allclose(
        jax.vmap(jax.hessian(spline))(points), jax.vmap(jax.hessian(_bicubic))(points), atol=1e-8
    )


def test_interpolates_any_values_at_the_nodes():
    values = np.asarray(jax.random.normal(jax.random.key(1), (6, 8)))
    spline = grid_spline(values, 0.0, 0.1)
    nodes = _nodes(np.zeros(2), np.full(2, 0.1), values.shape).reshape(-1, 2)
    np.testing.assert_allclose(jax.jit(jax.vmap(spline))(nodes), values.ravel(), atol=1e-10)


def test_fourth_order_convergence_on_a_smooth_function():
    def f(p):
        return jnp.sin(3.0 * p[..., 0]) * jnp.exp(p[..., 1]) + p[..., 0] * p[..., 1]

    points = jax.random.uniform(jax.random.key(2), (2000, 2))
    errors = []
    for n in (9, 17, 33):
        step = 1.0 / (n - 1)
        spline = grid_spline(f(_nodes(np.zeros(2), np.full(2, step), (n, n))), 0.0, step)
        errors.append(float(jnp.max(jnp.abs(jax.vmap(spline)(points) - f(points)))))
    assert errors[-1] < 1e-5
    assert errors[0] / errors[1] > 10 and errors[1] / errors[2] > 10  # halving the step: about 16x


def test_second_derivatives_are_continuous_across_nodes():
    spline = grid_spline(np.asarray(jax.random.normal(jax.random.key(3), (7, 7))), 0.0, 1.0)
    hessian = jax.hessian(spline)
    for node in ([2.0, 3.5], [4.5, 3.0], [3.0, 2.0]):
        below, above = (hessian(jnp.asarray(node) + d) for d in (-1e-7, 1e-7))
        np.testing.assert_allclose(below, above, atol=1e-5)
    # the third derivative does jump at an interior node (it is a cubic spline, not one cubic)
    third = jax.jacfwd(jax.hessian(spline))
    assert (
        float(jnp.max(jnp.abs(third(jnp.array([3.0 - 1e-7, 3.5])) - third(jnp.array([3.0 + 1e-7, 3.5])))))
        > 1e-3
    )


def test_bad_grids_are_clear_errors():
    with pytest.raises(ValueError, match="at least 4 nodes per axis"):
        grid_spline(np.zeros((3, 5)), 0.0, 1.0)
    with pytest.raises(ValueError, match="at least 4 nodes per axis"):
        grid_spline(np.zeros(16), 0.0, 1.0)
    with pytest.raises(ValueError, match="2 are not"):
        grid_spline(np.array([[np.nan, 0, 0, 0]] + [[0, 0, 0, 0]] * 2 + [[0, 0, np.inf, 0]]), 0.0, 1.0)
    with pytest.raises(ValueError, match="step must be > 0"):
        grid_spline(np.zeros((4, 4)), 0.0, [1.0, 0.0])
