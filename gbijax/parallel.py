"""Scale-out of vmapped work: chunking for memory and sharding across devices.

The vmapped axis of gbijax programs (ensemble member, scan point, data realisation,
pseudo-experiment) is the axis to spread out. :func:`sharded_vmap` turns ``fn`` on one item
into a function on a stacked batch that

1. splits the batch into chunks that fit in memory and runs them one after another inside one
   compiled ``lax.map`` (the chunk size is chosen from the compiled program's memory use, or
   given), and
2. shards every chunk across all devices with :mod:`jax.sharding` (a 1-D mesh over the batch
   axis; ``jax.shard_map``), so that on several GPUs, or several hosts after
   ``jax.distributed.initialize()``, each device computes its share with JAX's own SPMD runtime.

Results equal those of ``jax.vmap(fn)`` (the same per-item computation, up to the last bit of
float reductions whose vector width changes with the chunk size; padding items are dropped).

>>> import jax.numpy as jnp
>>> f = sharded_vmap(lambda x, y: x * y + 1.0, chunk_size=3)
>>> f(jnp.arange(5.0), jnp.full(5, 2.0)).tolist()
[1.0, 3.0, 5.0, 7.0, 9.0]
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["auto_chunk_size", "sharded_vmap"]


def _device_memory_bytes(device) -> int:
    """Memory of ``device`` (bytes_limit on accelerators, physical RAM on the CPU)."""
    stats = getattr(device, "memory_stats", lambda: None)()
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def _leading_size(args: Sequence[Any]) -> int:
    sizes = {leaf.shape[0] for leaf in jax.tree.leaves(args)}
    if len(sizes) != 1:
        raise ValueError(f"all batched arguments must share the leading axis, got sizes {sorted(sizes)}")
    return sizes.pop()


def auto_chunk_size(fn: Callable, args: Sequence[Any], memory_fraction: float = 0.25, probe: int = 4) -> int:
    """Largest chunk whose compiled ``vmap(fn)`` fits in ``memory_fraction`` of one device.

    The memory per item is measured from XLA's memory analysis of ``vmap(fn)`` compiled on a
    probe chunk of ``probe`` items (temporaries, outputs and the batched inputs).
    """
    n = _leading_size(args)
    probe = min(probe, n)
    sample = jax.tree.map(lambda a: a[:probe], args)
    try:
        analysis = jax.jit(jax.vmap(fn)).lower(*sample).compile().memory_analysis()
        per_item = (analysis.temp_size_in_bytes + analysis.output_size_in_bytes
                    + analysis.argument_size_in_bytes) / probe  # fmt: skip
    except (AttributeError, TypeError, NotImplementedError):  # backends without memory analysis
        return n
    budget = memory_fraction * _device_memory_bytes(jax.devices()[0])
    return int(max(1, min(n, budget // max(per_item, 1.0))))


def sharded_vmap(
    fn: Callable,
    chunk_size: int | None = None,
    devices: Sequence[Any] | None = None,
    memory_fraction: float = 0.25,
) -> Callable:
    """``jax.vmap(fn)`` over the leading axis of every argument, chunked and sharded.

    Args:
        fn: the per-item function (pure; every argument is batched along axis 0; bind static
            or shared arguments with a closure or ``functools.partial``).
        chunk_size: items per device per chunk; None chooses it with :func:`auto_chunk_size`.
        devices: the devices to shard over (default: all of ``jax.devices()``).
        memory_fraction: share of one device's memory a chunk may use (automatic chunking).

    Returns:
        A function of the stacked arguments returning the stacked results. It compiles once
        per device set and argument shapes (the automatic chunk size is also measured once per
        shapes), so calling it again costs only the run.
    """
    programs: dict = {}  # devices -> jitted program (jax.jit caches its compilations per shapes)
    chunk_sizes: dict = {}  # argument shapes and dtypes -> automatic chunk size

    def per_device_chunk(args) -> int:
        if chunk_size:
            return chunk_size
        signature = tuple((a.shape, str(a.dtype)) for a in jax.tree.leaves(args))
        if signature not in chunk_sizes:
            chunk_sizes[signature] = auto_chunk_size(fn, args, memory_fraction)
        return chunk_sizes[signature]

    def run(*args):
        n = _leading_size(args)
        devs = list(devices) if devices is not None else jax.devices()
        per_device = per_device_chunk(args)
        per_device = max(1, min(per_device, math.ceil(n / len(devs))))
        width = per_device * len(devs)
        n_chunks = math.ceil(n / width)
        pad = n_chunks * width - n

        def padded(a):
            fill = jnp.broadcast_to(a[:1], (pad, *a.shape[1:]))
            return jnp.concatenate([a, fill]).reshape(n_chunks, width, *a.shape[1:])

        stacked = jax.tree.map(padded, args)
        mesh = Mesh(np.asarray(devs), ("batch",))
        sharding = NamedSharding(mesh, PartitionSpec(None, "batch"))
        stacked = jax.tree.map(lambda a: jax.device_put(a, sharding), stacked)
        if tuple(devs) not in programs:
            programs[tuple(devs)] = _compiled(fn, mesh, sharding)
        out = programs[tuple(devs)](stacked)
        return jax.tree.map(lambda a: a.reshape(n_chunks * width, *a.shape[2:])[:n], out)

    return run


def _compiled(fn: Callable, mesh: Mesh, sharding: NamedSharding):
    """Every device maps ``vmap(fn)`` over the chunks of its own share (``shard_map``, so that
    custom kernels inside ``fn``, which XLA cannot partition, run on each device's share)."""

    def body(stacked):
        return jax.lax.map(lambda chunk: jax.vmap(fn)(*chunk), stacked)

    per_device = jax.shard_map(body, mesh=mesh, in_specs=sharding.spec, out_specs=sharding.spec)
    return jax.jit(per_device, out_shardings=sharding)
