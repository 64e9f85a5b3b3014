"""The generic pure trainer: exact optimum, early stopping, vmap over keys and weights, resume, compaction."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gbijax.train import TrainConfig, fit, history, init_state, train, train_population


def _quadratic(params, key, batch):
    return (batch["x"] - params) ** 2


def _data(n=512, seed=0):
    x = jax.random.normal(jax.random.key(seed), (n,)) * 2.0 + 1.5
    return {"x": x}


def test_weighted_least_squares_reaches_weighted_mean():
    data = _data()
    weight = jnp.where(jnp.arange(512) < 128, 3.0, 1.0)
    cfg = TrainConfig(epochs=150, batch_size=512, learning_rate=0.1, schedule="cosine")
    params, hist = fit(jax.random.key(1), jnp.zeros(()), _quadratic, {**data, "weight": weight}, None, cfg)
    expected = jnp.sum(weight * data["x"]) / jnp.sum(weight)
    np.testing.assert_allclose(params, expected, atol=1e-3)
    assert int(hist.epochs_run) == 150


def test_early_stopping_keeps_best_parameters():
    train_data, val_data = _data(seed=0), _data(seed=1)
    cfg = TrainConfig(epochs=200, batch_size=64, learning_rate=0.3, patience=3)
    params, hist = fit(jax.random.key(2), jnp.zeros(()), _quadratic, train_data, val_data, cfg)
    run = int(hist.epochs_run)
    assert run < 200  # noisy large steps stop improving
    best = int(hist.best_epoch)
    assert run - 1 - best == 4 - 1  # stopped patience + 1 epochs after the best (0-based)
    val = np.asarray(hist.val_loss)
    assert np.all(np.isnan(val[run:]))
    assert val[best] == np.nanmin(val) == pytest.approx(float(hist.best_val_loss))
    recomputed = float(jnp.mean((val_data["x"] - params) ** 2))
    assert recomputed == pytest.approx(val[best], rel=1e-5)


def test_vmap_over_keys_equals_loop():
    data = _data()
    cfg = TrainConfig(epochs=5, batch_size=32, learning_rate=0.05)
    keys = jax.random.split(jax.random.key(3), 3)
    run = lambda k: fit(k, jnp.zeros(()), _quadratic, data, data, cfg)[0]
    vmapped = jax.vmap(run)(keys)
    looped = jnp.stack([run(k) for k in keys])
    np.testing.assert_allclose(vmapped, looped, rtol=1e-6)
    assert len(set(np.asarray(vmapped).round(6).tolist())) == 3


def test_vmap_over_weights_equals_separate_fits():
    data = _data()
    masks = jnp.stack([jnp.arange(512) % 2 == i for i in range(2)]).astype(jnp.float32)
    cfg = TrainConfig(epochs=150, batch_size=512, learning_rate=0.1, schedule="cosine")
    run = lambda w: fit(jax.random.key(0), jnp.zeros(()), _quadratic, {**data, "weight": w}, None, cfg)[0]
    vmapped = jax.vmap(run)(masks)
    for i in range(2):
        np.testing.assert_allclose(vmapped[i], run(masks[i]), rtol=1e-6)
        np.testing.assert_allclose(vmapped[i], data["x"][i::2].mean(), atol=1e-3)


def test_interrupted_training_resumes_bit_exactly():
    data, val = _data(seed=0), _data(seed=1)
    cfg = TrainConfig(epochs=12, batch_size=64, learning_rate=0.05, patience=20)
    key = jax.random.key(4)
    full = train(init_state(jnp.zeros(()), data, cfg), key, _quadratic, data, val, cfg)
    half = train(init_state(jnp.zeros(()), data, cfg), key, _quadratic, data, val, cfg, until_epoch=5)
    assert int(half.epoch) == 5
    resumed = train(half, key, _quadratic, data, val, cfg)
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(history(resumed).epochs_run) == 12


def test_compacted_population_equals_one_vmapped_program():
    # five members with their own data and keys stop early at different epochs (5 to 14); with a
    # compaction every 3 epochs the segments run 5, 5, 4, 4 (3 running + 1 copy) and 1 members
    cfg = TrainConfig(epochs=40, batch_size=32, learning_rate=0.02, patience=2)
    scale = jnp.array([0.5, 1.0, 2.0, 3.0, 4.0])
    x = jax.random.normal(jax.random.key(5), (5, 256)) * scale[:, None] + 1.0
    val = jax.random.normal(jax.random.key(6), (5, 128)) * scale[:, None] + 1.0
    keys = jax.random.split(jax.random.key(7), 5)

    def advance(state, member, shared, until):
        key, x, val = member
        return train(state, key, _quadratic, {"x": x}, {"x": val}, cfg, until)

    start = jax.vmap(lambda x: init_state(jnp.zeros(()), {"x": x}, cfg))(x)
    compacted = train_population(advance, start, (keys, x, val), cfg, segment_epochs=3)
    params, hist = jax.vmap(lambda k, x, v: fit(k, jnp.zeros(()), _quadratic, {"x": x}, {"x": v}, cfg))(
        keys, x, val)
    epochs = np.asarray(hist.epochs_run)
    assert len(set(epochs.tolist())) >= 4 and epochs.max() < 40  # they do stop at different epochs
    np.testing.assert_array_equal(np.asarray(compacted.epoch), epochs)
    np.testing.assert_array_equal(np.asarray(compacted.best_epoch), np.asarray(hist.best_epoch))
    np.testing.assert_allclose(compacted.best_params, params, rtol=1e-5)
    np.testing.assert_allclose(compacted.val_loss, hist.val_loss, rtol=1e-5)  # NaN after the last epoch
    # no segments: one vmapped program over the whole training
    whole = train_population(advance, start, (keys, x, val), cfg)
    np.testing.assert_array_equal(np.asarray(whole.epoch), epochs)


def test_mismatched_event_axes_rejected():
    with pytest.raises(ValueError, match="first \\(event\\) axis"):
        fit(jax.random.key(0), jnp.zeros(()), _quadratic, {"x": jnp.ones(4), "weight": jnp.ones(3)},
            None, TrainConfig(epochs=1))
