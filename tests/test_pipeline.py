"""The shared experiment steps: folded sr_truth background models and per-member training weights."""

import jax
import numpy as np
import pytest

from gbijax.background import BackgroundConfig, background_member_log_probs, fit_background
from gbijax.generators import mass_density_from_samples
from gbijax.pipeline import (
    FoldedBackground,
    analysis_samples,
    background_density,
    fit_background_folds,
    injected_realisations,
)
from gbijax.train import TrainConfig

TINY = BackgroundConfig(model="spline_flow", ensemble=2, hidden=(8, 8), n_layers=2,
                        train=TrainConfig(epochs=3, batch_size=256, learning_rate=3e-3))  # fmt: skip


@pytest.fixture(scope="module")
def samples():
    return analysis_samples("toy:n_background=3000,n_signal=0,n_extra_signal=500,n_extra_background=1500")


@pytest.fixture(scope="module")
def halves(samples):
    """Two members: member 0 trained only on events with a low first feature, member 1 on the others."""
    x = samples.extra_background_sr
    low = x[:, 1] < np.median(x[:, 1])
    mass = mass_density_from_samples(x[:, 0], (samples.region.lo, samples.region.hi))
    weight = np.stack([low, ~low]).astype(float)
    generator, bkg, _ = fit_background(jax.random.key(0), x, TINY, mass, member_weight=weight)
    return x, low, generator, bkg


def test_member_weight_gives_each_member_its_own_events(halves):
    x, low, generator, bkg = halves
    lp = np.asarray(background_member_log_probs(generator, bkg, x))  # (2, N)
    assert np.mean(lp[0, low]) > np.mean(lp[1, low]) + 0.5
    assert np.mean(lp[1, ~low]) > np.mean(lp[0, ~low]) + 0.5
    with pytest.raises(ValueError, match="member_weight"):
        fit_background(jax.random.key(0), x, TINY, bkg.mass, member_weight=np.ones((1, len(x))))


def test_folded_background_evaluates_each_event_with_its_folds_members(samples, halves):
    x, low, generator, bkg = halves
    fold = low.astype(int)  # fold 1 = the low half: evaluated by member 1, which never saw it
    model = FoldedBackground(generator, bkg, 2, fold)
    members = np.asarray(background_member_log_probs(generator, bkg, x))
    got = np.asarray(background_density(x, samples, model, fold=fold))
    np.testing.assert_allclose(got, members[fold, np.arange(len(x))], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="fold"):
        background_density(x, samples, model)
    with pytest.raises(ValueError, match="at least 2 folds"):
        fit_background_folds(jax.random.key(1), samples, TINY, n_folds=1)


def test_injected_realisations_record_the_pool_rows_they_drew(samples):
    background, pool = samples.background_sr[:270], samples.signal_pool
    real = injected_realisations(jax.random.key(3), background, pool, 0.1, 3)
    assert real.n_signal == 30 and real.x.shape == (3, 300, 5) and real.pool_index.shape == (3, 30)
    for r in range(3):
        assert len(set(real.pool_index[r].tolist())) == 30  # without replacement
        np.testing.assert_array_equal(real.x[r, 270:], pool[real.pool_index[r]])
        np.testing.assert_array_equal(real.x[r, :270], background)
    again = injected_realisations(jax.random.key(3), background, pool, 0.1, 3)
    np.testing.assert_array_equal(again.pool_index, real.pool_index)
    assert injected_realisations(jax.random.key(3), background, pool, 0.0, 2).pool_index.shape == (2, 0)
    with pytest.raises(ValueError, match=f"needs {len(pool) + 1} signal events"):
        injected_realisations(jax.random.key(3), background, pool, (len(pool) + 1) / (len(pool) + 271), 1)
