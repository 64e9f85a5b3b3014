"""The hand-written spline gradients (XLA, Triton) against autodiff through distrax's spline, in float64."""

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

from gbijax.generators._rq_spline import rational_quadratic_spline, spline_triton, spline_xla

K, BOUND = 8, 8.0


def distrax_spline(raw, x):
    """The same map through distrax: boundary slopes inserted as zeros and replaced by ones."""
    zero = jnp.zeros_like(raw[..., :1])
    params = jnp.concatenate([raw[..., : 2 * K], zero, raw[..., 2 * K :], zero], axis=-1)
    spline = distrax.RationalQuadraticSpline(params, -BOUND, BOUND, boundary_slopes="identity")
    return spline.forward_and_log_det(x)


def gradients(spline):
    """``grad`` with respect to ``(raw, x)`` of a loss that uses both outputs of ``spline``."""
    return jax.grad(lambda r, v: jnp.sum(jnp.sin(spline(r, v)[0]) + 0.3 * spline(r, v)[1]), (0, 1))


def curvature(spline, raw, x):
    """A second derivative: ``d/d raw`` of the squared slope of ``log_det`` in ``x``."""
    slope_of_log_det = lambda r: jax.grad(lambda v: jnp.sum(spline(r, v)[1]))(x)
    return jax.grad(lambda r: jnp.sum(slope_of_log_det(r) ** 2))(raw)


@pytest.fixture
def events():
    """Parameters far from the identity and inputs in every bin, on the edges and outside the range."""
    with jax.enable_x64(True):
        raw = 2.0 * jax.random.normal(jax.random.key(0), (3, 700, 3 * K - 1), jnp.float64)
        x = 5.0 * jax.random.normal(jax.random.key(1), (3, 700), jnp.float64)
        x = x.at[0, :6].set(jnp.array([-BOUND, BOUND, 0.0, -9.0, 9.0, np.nextafter(BOUND, 0)]))
        yield raw, x


def test_values_and_gradients_equal_autodiff_through_distrax(events):
    raw, x = events
    for ours, theirs in zip(rational_quadratic_spline(raw, x, K, BOUND), distrax_spline(raw, x), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    ours = gradients(lambda r, v: rational_quadratic_spline(r, v, K, BOUND))(raw, x)
    theirs = gradients(distrax_spline)(raw, x)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
    assert np.all(np.asarray(ours[0])[0, 3:5] == 0)  # outside the range the map is the identity
    np.testing.assert_array_equal(ours[1][0, 3:5], np.cos(x[0, 3:5]))


def test_second_derivatives_go_through_the_hand_written_gradient(events):
    raw, x = events[0][0, :50], events[1][0, :50]
    ours = curvature(lambda r, v: rational_quadratic_spline(r, v, K, BOUND), raw, x)
    np.testing.assert_allclose(ours, curvature(distrax_spline, raw, x), rtol=1e-9, atol=1e-9)


def test_zero_parameters_give_the_identity():
    x = jnp.linspace(-10.0, 10.0, 41)
    y, log_det = rational_quadratic_spline(jnp.zeros((41, 3 * K - 1)), x, K, BOUND)
    np.testing.assert_allclose(y, x, atol=1e-5)
    np.testing.assert_allclose(log_det, 0.0, atol=1e-5)


def triton_interpreted(raw, x):
    return spline_triton(raw, x, K, BOUND, 1e-4, 1e-4, True)


def test_the_triton_kernels_compute_the_same_spline(events):
    """The GPU kernels, run by Pallas' interpreter: values, gradients, under vmap, second derivatives."""
    raw, x = events[0][:2, :150], events[1][:2, :150]  # two realisations of 150 rows: a partial last block
    xla = lambda r, v: spline_xla(r, v, K, BOUND, 1e-4, 1e-4)
    for ours, theirs in zip(triton_interpreted(raw, x), xla(raw, x), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-11, atol=1e-11)
    expected = gradients(xla)(raw, x)
    for got in (gradients(triton_interpreted)(raw, x), jax.vmap(gradients(triton_interpreted))(raw, x)):
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
    raw, x = raw[0, :40], x[0, :40]
    expected = curvature(xla, raw, x)
    np.testing.assert_allclose(curvature(triton_interpreted, raw, x), expected, rtol=1e-9, atol=1e-9)


def test_the_triton_kernels_lower_for_cuda():
    """The training step's kernels compile to Triton IR without a GPU (what a GPU run would need)."""
    spline = lambda r, v: spline_triton(r, v, K, BOUND, 1e-4, 1e-4)
    step = jax.vmap(jax.grad(lambda r, v: jnp.sum(spline(r, v)[0] + spline(r, v)[1]), (0, 1)))
    triton_call = "__gpu$xla.gpu.triton"
    unchecked = [export.DisabledSafetyCheck.custom_call(triton_call)]
    shapes = [jax.ShapeDtypeStruct(s, jnp.float32) for s in ((4, 256, 5, 3 * K - 1), (4, 256, 5))]
    exported = export.export(jax.jit(step), platforms=["cuda"], disabled_checks=unchecked)(*shapes)
    assert exported.mlir_module().count(triton_call) == 2  # the forward and the backward kernel


def test_wrong_parameter_shapes_are_refused():
    with pytest.raises(ValueError, match=r"x.shape \+ \(3 n_bins - 1,\) = \(4, 23\), got \(4, 22\)"):
        rational_quadratic_spline(jnp.zeros((4, 22)), jnp.zeros(4), K, BOUND)


@pytest.mark.parametrize("n_bins", [1, 3])
def test_other_numbers_of_bins_agree_between_the_implementations(n_bins):
    with jax.enable_x64(True):
        raw = jax.random.normal(jax.random.key(0), (50, 3 * n_bins - 1), jnp.float64)
        x = 3.0 * jax.random.normal(jax.random.key(1), (50,), jnp.float64)
        settings = (n_bins, 4.0, 1e-4, 1e-4)
        kernels, xla = spline_triton(raw, x, *settings, True), spline_xla(raw, x, *settings)
        for a, b in zip(kernels, xla, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
