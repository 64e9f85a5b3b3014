"""Orbax checkpoints: round trip, resume after an interruption, clear errors when damaged."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gbijax.checkpoint import checkpoint_exists, restore_checkpoint, save_checkpoint, train_resumable
from gbijax.train import TrainConfig, init_state, train


def _loss(params, key, batch):
    return (batch["x"] - params["w"]) ** 2 + 0.01 * jax.random.normal(key, batch["x"].shape)


DATA = {"x": jnp.linspace(-1.0, 3.0, 256)}
CFG = TrainConfig(epochs=12, batch_size=32, learning_rate=0.05)
CONFIG = {"model": "quadratic", "train": CFG._asdict()}


def _fresh():
    return init_state({"w": jnp.zeros(())}, DATA, CFG)


def _run_until(state, epoch):
    return train(state, jax.random.key(7), _loss, DATA, None, CFG, until_epoch=epoch)


def _assert_same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip(tmp_path):
    state = _run_until(_fresh(), 3)
    save_checkpoint(tmp_path / "ck", state, CONFIG)
    assert checkpoint_exists(tmp_path / "ck")
    _assert_same(restore_checkpoint(tmp_path / "ck", _fresh(), CONFIG), state)


def test_interrupted_run_resumes_to_the_same_parameters(tmp_path):
    uninterrupted = train_resumable(_run_until, _fresh(), 12, None, CONFIG, every=4)

    calls = []

    def crashing(state, epoch):
        calls.append(epoch)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return _run_until(state, epoch)

    with pytest.raises(KeyboardInterrupt):
        train_resumable(crashing, _fresh(), 12, tmp_path / "ck", CONFIG, every=4)
    assert int(restore_checkpoint(tmp_path / "ck", _fresh()).epoch) == 8

    calls.clear()
    resumed = train_resumable(crashing, _fresh(), 12, tmp_path / "ck", CONFIG, every=4)
    assert calls == [12]  # only the missing chunk was run
    _assert_same(resumed, uninterrupted)


def test_mismatched_config_is_named(tmp_path):
    save_checkpoint(tmp_path / "ck", _fresh(), CONFIG)
    other = {**CONFIG, "model": "cubic"}
    with pytest.raises(ValueError, match="another config: model: stored 'quadratic', expected 'cubic'"):
        restore_checkpoint(tmp_path / "ck", _fresh(), other)


def test_mismatched_shapes_are_refused(tmp_path):
    save_checkpoint(tmp_path / "ck", {"w": jnp.zeros(3)}, CONFIG)
    with pytest.raises(ValueError, match="does not match the expected state"):
        restore_checkpoint(tmp_path / "ck", {"w": jnp.zeros(4)})


def test_corrupt_checkpoint_is_refused(tmp_path):
    save_checkpoint(tmp_path / "ck", _fresh(), CONFIG)
    (tmp_path / "ck" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt checkpoint.*config.json"):
        restore_checkpoint(tmp_path / "ck", _fresh(), CONFIG)
    save_checkpoint(tmp_path / "ck2", _fresh(), CONFIG)
    for path in (tmp_path / "ck2" / "state").rglob("*"):
        if path.is_file() and path.stat().st_size > 0:
            path.write_bytes(b"\0garbage" * 4)
    with pytest.raises(ValueError, match="corrupt checkpoint|does not match"):
        restore_checkpoint(tmp_path / "ck2", _fresh(), CONFIG)
    with pytest.raises(FileNotFoundError):
        restore_checkpoint(tmp_path / "missing", _fresh())
