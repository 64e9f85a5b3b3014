"""Chunked and sharded vmaps give exactly the results of a plain vmap, on 1 or several devices."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np

from gbijax.parallel import auto_chunk_size, sharded_vmap


def _work(key, scale):
    x = jax.random.normal(key, (64,)) * scale
    return {"mean": jnp.mean(x), "sq": x**2}


def test_chunked_equals_vmap():
    keys = jax.random.split(jax.random.key(0), 13)
    scales = jnp.linspace(0.5, 2.0, 13)
    expected = jax.vmap(_work)(keys, scales)
    for chunk in (1, 4, 13, None):
        got = sharded_vmap(_work, chunk_size=chunk)(keys, scales)
        for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(got), strict=True):
            # the same per-item program; only the vector width of reductions may change the last bit
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_auto_chunk_size_respects_the_memory_budget():
    big = lambda x: jnp.outer(x, x).sum()  # (1000, 1000) temporary per item
    args = (jnp.ones((20, 1000)),)
    assert auto_chunk_size(big, args, memory_fraction=1.0) == 20
    assert auto_chunk_size(big, args, memory_fraction=1e-12) == 1


def test_repeated_calls_compile_once():
    traces = []

    def item(x):
        traces.append(1)  # runs only while JAX traces the function
        return 2.0 * x

    for chunk in (2, None):
        traces.clear()
        f = sharded_vmap(item, chunk_size=chunk)
        assert f(jnp.arange(5.0)).tolist() == [0.0, 2.0, 4.0, 6.0, 8.0]
        first = len(traces)
        assert f(jnp.arange(5.0) + 1).tolist() == [2.0, 4.0, 6.0, 8.0, 10.0]
        assert len(traces) == first  # the second call reuses the compiled program (and chunk size)
        f(jnp.arange(7.0))  # new shapes compile anew
        assert len(traces) > first


MULTI_DEVICE = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from gbijax.parallel import sharded_vmap
    from gbijax.train import TrainConfig, fit
    assert len(jax.devices()) == 4, jax.devices()
    x = jax.random.normal(jax.random.key(0), (256,))
    cfg = TrainConfig(epochs=5, batch_size=32, learning_rate=0.05)
    train = lambda k: fit(k, jnp.zeros(()), lambda p, kk, b: (b["x"] - p) ** 2, {"x": x}, None, cfg)[0]
    keys = jax.random.split(jax.random.key(1), 10)
    single = jax.vmap(train)(keys)
    sharded = sharded_vmap(train, chunk_size=2)(keys)
    np.testing.assert_allclose(np.asarray(single), np.asarray(sharded), rtol=1e-5, atol=1e-6)
    print("OK", len(jax.devices()))
""")


def test_sharding_over_forced_host_devices_matches_single_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", MULTI_DEVICE], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK 4" in result.stdout
