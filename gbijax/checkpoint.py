"""Checkpoints with orbax: a training state (params, optimiser state, epoch) plus its config.

A checkpoint directory holds the orbax pytree under ``state/`` and the configuration as
``config.json``. Restoring checks both: a configuration that differs from the one asked for, a
pytree of another structure or shape, or a damaged directory each raise a ``ValueError`` that
names the problem, so a run never continues silently from the wrong state.

:func:`train_resumable` runs a training in chunks of epochs and saves after each chunk; run
again after an interruption, it continues from the last saved epoch and ends with exactly the
parameters of an uninterrupted run (the trainer derives every epoch's key from the epoch number).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

__all__ = ["checkpoint_exists", "restore_checkpoint", "save_checkpoint", "train_resumable"]

_STATE, _CONFIG = "state", "config.json"


def _jsonable(config: Any) -> Any:
    """Round-trip through JSON so that tuples and lists compare equal after a save."""
    return json.loads(json.dumps(config, default=_json_default))


def _json_default(obj):
    if hasattr(obj, "_asdict"):
        return obj._asdict()
    if isinstance(obj, np.generic | np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint config")


def checkpoint_exists(directory: str | Path) -> bool:
    """True when ``directory`` holds a complete checkpoint (state and config)."""
    directory = Path(directory)
    return (directory / _CONFIG).is_file() and (directory / _STATE).is_dir()


def save_checkpoint(directory: str | Path, state: Any, config: Any) -> Path:
    """Save a pytree of arrays and its JSON-serialisable config, replacing an older checkpoint.

    The new checkpoint is written beside the old one and moved into place only when complete,
    so an interruption while saving leaves the previous checkpoint intact.
    """
    directory = Path(directory).resolve()
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp / _STATE, state)
    checkpointer.wait_until_finished()
    (tmp / _CONFIG).write_text(json.dumps(_jsonable(config), indent=2, sort_keys=True))
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory


def _config_differences(stored: Any, expected: Any, prefix: str = "") -> list[str]:
    if isinstance(stored, dict) and isinstance(expected, dict):
        out = []
        for key in sorted(set(stored) | set(expected)):
            out += _config_differences(stored.get(key), expected.get(key), f"{prefix}{key}.")
        return out
    if stored == expected:
        return []
    return [f"{prefix[:-1] or 'config'}: stored {stored!r}, expected {expected!r}"]


def restore_checkpoint(directory: str | Path, like: Any, config: Any = None) -> Any:
    """Restore the pytree saved in ``directory`` with the structure of ``like``.

    Args:
        directory: a checkpoint written by :func:`save_checkpoint`.
        like: a pytree with the expected structure, shapes and dtypes (e.g. a fresh state).
        config: when given, the stored config must equal it.

    Raises:
        FileNotFoundError: no checkpoint there.
        ValueError: a corrupt checkpoint, a config mismatch (the differing entries are
            named) or a pytree of another structure or shape.
    """
    directory = Path(directory).resolve()
    if not directory.exists():
        raise FileNotFoundError(f"no checkpoint at {directory}")
    if not checkpoint_exists(directory):
        raise ValueError(f"corrupt checkpoint at {directory}: missing {_STATE}/ or {_CONFIG}")
    try:
        stored = json.loads((directory / _CONFIG).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"corrupt checkpoint at {directory}: unreadable {_CONFIG} ({err})") from None
    if config is not None:
        diffs = _config_differences(stored, _jsonable(config))
        if diffs:
            raise ValueError(f"checkpoint at {directory} was written for another config: " + "; ".join(diffs))
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    try:
        return ocp.StandardCheckpointer().restore(directory / _STATE, target)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"checkpoint at {directory} does not match the expected state: {str(err).splitlines()[0]}"
        ) from None
    except Exception as err:  # orbax/tensorstore raise assorted types for damaged files
        raise ValueError(
            f"corrupt checkpoint at {directory}: {type(err).__name__}: {str(err).splitlines()[0]}"
        ) from None


def train_resumable(
    run_until: Callable[[Any, int], Any],
    state: Any,
    total_epochs: int,
    directory: str | Path | None,
    config: Any,
    every: int = 10,
    epoch_of: Callable[[Any], int] | None = None,
) -> Any:
    """Run a training in chunks of ``every`` epochs, checkpointing after each chunk.

    Args:
        run_until: ``run_until(state, epoch) -> state`` runs the training up to ``epoch``
            (e.g. ``gbijax.train.train`` with ``until_epoch``, possibly vmapped over an ensemble).
        state: the initial state (also the template for restoring).
        total_epochs: the epoch to stop at.
        directory: where to keep the checkpoint; None disables checkpointing.
        config: the run's configuration, stored with the state and checked on resume.
        every: epochs between checkpoints.
        epoch_of: the epoch reached by a state (default: the maximum of ``state.epoch``, which
            also covers a vmapped ensemble of states).

    Returns:
        The final state. A directory that already holds a checkpoint for the same config is
        resumed from; one for another config raises ``ValueError``.
    """
    epoch_of = epoch_of or (lambda s: int(np.max(np.asarray(s.epoch))))
    if directory is not None and checkpoint_exists(directory):
        state = restore_checkpoint(directory, state, config)
    start = epoch_of(state)
    for until in range(start - start % every + every, total_epochs + every, every):
        until = min(until, total_epochs)
        new = run_until(state, until)
        finished = epoch_of(new) < until  # every member stopped early
        state = new
        if directory is not None:
            save_checkpoint(directory, state, config)
        if finished or until >= total_epochs:
            break
    return state
