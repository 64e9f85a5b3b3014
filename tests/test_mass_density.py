"""Signal-region mass densities: dijet-function sideband fit, histograms, sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gbijax.data import toy
from gbijax.generators._mass import (
    DijetFit,
    fit_dijet_function,
    mass_density_from_fit,
    mass_density_from_samples,
)

SR = (3.3, 3.7)


@pytest.fixture(scope="module")
def toy_masses():
    return np.asarray(toy.background_sample(jax.random.key(0), 200_000)[:, 0])


def test_sideband_fit_interpolates_the_true_spectrum(toy_masses):
    density = mass_density_from_fit(fit_dijet_function(toy_masses, sr=SR), SR)
    m = jnp.linspace(3.31, 3.69, 20)
    truth = np.exp(toy.background_mjj_log_prob(m, region=SR))
    np.testing.assert_allclose(np.exp(density.log_prob(m)), truth, rtol=0.015)


def test_fit_ignores_signal_region_events(toy_masses):
    bump = np.full(50_000, 3.5)  # a huge fake resonance inside the SR must not move the fit
    a = fit_dijet_function(toy_masses, sr=SR)
    b = fit_dijet_function(np.concatenate([toy_masses, bump]), sr=SR)
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_exact_power_law_is_in_the_family():
    # m^-6 is the dijet function with p1 = p3 = 0, p2 = 6: its SR density is exact.
    density = mass_density_from_fit(DijetFit(0.0, 6.0, 0.0), SR, bins=400)
    m = jnp.linspace(3.305, 3.695, 30)
    truth = np.exp(toy.background_mjj_log_prob(m, region=SR))
    np.testing.assert_allclose(np.exp(density.log_prob(m)), truth, rtol=2e-3)


def test_histogram_density_is_normalised_and_samples_match():
    masses = np.asarray(toy.background_sample(jax.random.key(1), 50_000, region=SR)[:, 0])
    density = mass_density_from_samples(masses, SR, bins=20)
    widths = np.diff(np.asarray(density.edges))
    assert np.sum(np.exp(density.log_density) * widths) == pytest.approx(1.0, rel=1e-5)
    drawn = np.asarray(density.sample(jax.random.key(2), 100_000))
    assert drawn.min() > SR[0] and drawn.max() < SR[1]
    assert drawn.mean() == pytest.approx(masses.mean(), abs=2e-3)
    assert np.isneginf(density.log_prob(jnp.array([3.2, 3.8]))).all()


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="empty signal region"):
        mass_density_from_samples(np.array([2.9, 4.1]), SR)
    with pytest.raises(ValueError, match="at least 100 sideband events"):
        fit_dijet_function(np.linspace(3.31, 3.69, 500), sr=SR)
    with pytest.raises(ValueError, match="NaN or inf"):
        fit_dijet_function(np.array([3.0, np.nan]), sr=SR)
