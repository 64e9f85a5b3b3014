"""Signal region / sidebands and k-fold assignment with static shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gbijax.data import (
    DEFAULT_SR,
    SignalRegion,
    fold_masks,
    kfold_assignment,
    make_events,
    sideband_mask,
    signal_region_mask,
    split_regions,
)

MJJ = np.array([2.0, 3.3, 3.30001, 3.5, 3.69999, 3.7, 4.5, 3.4])
IN_SR = np.array([False, False, True, True, True, False, False, True])


def _events(mjj):
    n = len(mjj)
    feats = np.column_stack([mjj, np.full(n, 0.1), np.full(n, 0.2), np.full(n, 0.5), np.arange(n) / (n + 1)])
    return make_events(feats, np.arange(n) % 2)


def test_masks_are_open_intervals_and_complementary():
    assert DEFAULT_SR == SignalRegion(3.3, 3.7)
    np.testing.assert_array_equal(signal_region_mask(MJJ), IN_SR)
    np.testing.assert_array_equal(sideband_mask(MJJ), ~IN_SR)
    np.testing.assert_array_equal(signal_region_mask(jnp.asarray(MJJ)), IN_SR)
    np.testing.assert_array_equal(jax.jit(signal_region_mask)(jnp.asarray(MJJ)), IN_SR)
    wide = SignalRegion(3.0, 4.0)
    np.testing.assert_array_equal(wide.contains(MJJ), (MJJ > 3.0) & (MJJ < 4.0))
    np.testing.assert_array_equal(sideband_mask(MJJ, wide), ~((MJJ > 3.0) & (MJJ < 4.0)))


def test_split_regions():
    events = _events(MJJ)
    sr, sb = split_regions(events)
    np.testing.assert_array_equal(sr.mjj, MJJ[IN_SR])
    np.testing.assert_array_equal(sb.mjj, MJJ[~IN_SR])
    np.testing.assert_array_equal(sr.label, (np.arange(8) % 2)[IN_SR])
    np.testing.assert_array_equal(sb.features[:, 4], events.features[~IN_SR, 4])
    assert sr.n + sb.n == events.n


def test_split_regions_errors():
    with pytest.raises(ValueError, match=r"empty signal region: no event has 3.3 < mjj < 3.7 TeV.*2.000-4.5"):
        split_regions(_events(np.array([2.0, 4.5, 3.7])))
    with pytest.raises(ValueError, match="the sample has no events"):
        split_regions(_events(np.zeros(0)))
    with pytest.raises(ValueError, match="0 < lo < hi"):
        split_regions(_events(MJJ), SignalRegion(3.7, 3.3))
    with pytest.raises(ValueError, match="0 < lo < hi"):
        split_regions(_events(MJJ), SignalRegion(float("nan"), 3.7))


@pytest.mark.parametrize("n, k", [(10, 5), (103, 5), (7, 7), (1_000, 3)])
def test_kfold_sizes_and_partition(n, k):
    folds = kfold_assignment(jax.random.key(0), n, k)
    assert folds.shape == (n,)
    sizes = np.bincount(np.asarray(folds), minlength=k)
    assert len(sizes) == k
    np.testing.assert_array_equal(np.sort(sizes)[::-1], [n // k + (i < n % k) for i in range(k)])
    masks = np.asarray(fold_masks(folds, k))
    assert masks.shape == (k, n) and masks.dtype == bool
    np.testing.assert_array_equal(masks.sum(0), 1)  # every event held out exactly once
    np.testing.assert_array_equal(masks.sum(1), sizes)
    for i in range(k):
        np.testing.assert_array_equal(masks[i], np.asarray(folds) == i)


def test_kfold_is_random_and_seeded():
    a = kfold_assignment(jax.random.key(1), 100, 5)
    np.testing.assert_array_equal(a, kfold_assignment(jax.random.key(1), 100, 5))
    assert not np.array_equal(a, kfold_assignment(jax.random.key(2), 100, 5))
    assert not np.array_equal(a, np.arange(100) % 5)  # not just the event order


def test_kfold_errors():
    with pytest.raises(ValueError, match="2 <= k <= n"):
        kfold_assignment(jax.random.key(0), 10, 1)
    with pytest.raises(ValueError, match="2 <= k <= n"):
        kfold_assignment(jax.random.key(0), 3, 4)


def test_fold_masks_vmap_over_folds():
    """One training per fold on the same arrays: vmap over the rows of fold_masks."""
    x = jnp.arange(20.0)
    masks = fold_masks(kfold_assignment(jax.random.key(3), 20, 4), 4)
    train_means = jax.vmap(lambda held_out: jnp.sum(jnp.where(held_out, 0.0, x)) / jnp.sum(~held_out))(masks)
    expected = [x[~np.asarray(m)].mean() for m in masks]
    np.testing.assert_allclose(train_means, expected, rtol=1e-6)
