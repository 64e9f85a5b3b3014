"""Shared fixtures: the real LHCO data directory and writers for small files in the LHCO layouts."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

LHCO_DIR = Path(__file__).parents[1].parent / "shared/data/lhco"
"""Real LHCO R&D files, outside the repository (``../shared/data/lhco`` from the project root)."""


def _real_path(relative: str) -> Path:
    path = LHCO_DIR / relative
    if not path.exists():
        pytest.skip(
            f"real LHCO data not available: {path} does not exist (the real-data tests read "
            "../shared/data/lhco relative to the project root; see its README.md)"
        )
    return path


@pytest.fixture(autouse=True, scope="module")
def _drop_compiled_programs():
    """Clear JAX's compiled programs after every test module.

    Late in the full suite (after some 250 tests had compiled their programs) XLA's CPU backend
    (jaxlib 0.10.2) crashed with a segmentation fault while compiling a small toy-sampling
    program, twice in the same place, while that module alone, or after the newest tests, passed;
    keeping each module's compiled state to itself avoids it.
    """
    yield
    jax.clear_caches()


@pytest.fixture(scope="session")
def lhco_path():
    """``lhco_path("cathode")``: a path inside the real data directory; skips when it is absent."""
    return _real_path


def write_pandas_fixed(path, key: str, blocks, index=None, pandas_attrs: bool = True) -> Path:
    """Write a table in the pandas ``"fixed"`` HDF5 layout with h5py.

    Args:
        path: file to create (or to add the group to).
        key: group name (``"df"``, ``"bkg"``, ...).
        blocks: list of ``(names, values)``: one block per dtype, ``values`` of shape (N, C).
        index: row labels (``axis1``); ``range(N)`` by default.
        pandas_attrs: also write the attributes pandas writes (optional for the reader).
    """
    import h5py

    path = Path(path)
    n = np.asarray(blocks[0][1]).shape[0]
    with h5py.File(path, "a") as h5:
        group = h5.create_group(key)
        group.attrs["nblocks"] = np.int64(len(blocks))
        if pandas_attrs:
            group.attrs["pandas_type"] = np.bytes_(b"frame")
            group.attrs["pandas_version"] = np.bytes_(b"0.15.2")
            group.attrs["ndim"] = np.int64(2)
            group.attrs["encoding"] = np.bytes_(b"UTF-8")
        names = [name for block_names, _ in blocks for name in block_names]
        group["axis0"] = np.array([name.encode() for name in names])
        group["axis1"] = np.arange(n, dtype=np.int64) if index is None else np.asarray(index, np.int64)
        for b, (block_names, values) in enumerate(blocks):
            group[f"block{b}_items"] = np.array([name.encode() for name in block_names])
            group[f"block{b}_values"] = np.asarray(values)
    return path


@pytest.fixture(scope="session")
def pandas_fixed_writer():
    """The :func:`write_pandas_fixed` helper, as a fixture."""
    return write_pandas_fixed
