"""k-fold assignment with static shapes."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def kfold_assignment(key, n: int, k: int):
    """Assign ``n`` events to ``k`` folds of equal size (to within one event), at random.

    >>> folds = kfold_assignment(jax.random.key(0), 10, 5)
    >>> sorted(jnp.bincount(folds, length=5).tolist())
    [2, 2, 2, 2, 2]
    """
    if k < 2 or k > n:
        raise ValueError(f"need 2 <= k <= n for k-fold, got k={k}, n={n}")
    return jax.random.permutation(key, n) % k


def fold_masks(folds, k: int):
    """``(k, n)`` boolean masks: row ``i`` marks the events held out in fold ``i``.

    The training mask of fold ``i`` is ``~fold_masks(...)[i]``; vmapping a training over the
    rows trains one model per fold on the same arrays.
    """
    return folds[None, :] == jnp.arange(k)[:, None]
