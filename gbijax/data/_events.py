"""The event container and the standard LHCO feature set."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

FEATURE_NAMES: tuple[str, ...] = ("mjj", "mj_min", "delta_mj", "tau21_min", "tau21_max")
"""The five LHCO columns, masses in TeV: dijet mass, lighter jet mass, jet mass difference,
tau21 of the lighter jet, tau21 of the heavier jet."""

MJJ = 0  # column index of the dijet mass

SIGNAL, BACKGROUND, UNKNOWN = 1, 0, -1


class Events(NamedTuple):
    """A set of events with fixed shape.

    Being a NamedTuple it is a JAX pytree: slices of several realisations can be stacked and
    ``vmap``-ed. Selections are expressed through ``weight`` (0 = absent) rather than by
    changing the number of rows.

    Attributes:
        features: ``(N, 5)`` array, columns ``FEATURE_NAMES`` (TeV for masses).
        label: ``(N,)`` integer truth label: 1 signal, 0 background, -1 unknown.
        weight: ``(N,)`` per-event weight; 1 for a plain sample.
    """

    features: np.ndarray
    label: np.ndarray
    weight: np.ndarray

    @property
    def n(self) -> int:
        return int(self.features.shape[0])

    @property
    def mjj(self) -> np.ndarray:
        return self.features[:, MJJ]


def make_events(features, label=None, weight=None, *, name: str = "events") -> Events:
    """Validate arrays and wrap them as :class:`Events`.

    Raises:
        ValueError: wrong shapes, or rows with NaN/inf (their indices are named; nothing is
            dropped silently).
    """
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[1] != len(FEATURE_NAMES):
        raise ValueError(
            f"{name}: features must have shape (N, {len(FEATURE_NAMES)}) with columns "
            f"{', '.join(FEATURE_NAMES)}; got shape {features.shape}"
        )
    n = features.shape[0]
    label = np.full(n, UNKNOWN, np.int32) if label is None else np.asarray(label, np.int32)
    weight = np.ones(n, features.dtype) if weight is None else np.asarray(weight, features.dtype)
    for what, arr in (("label", label), ("weight", weight)):
        if arr.shape != (n,):
            raise ValueError(f"{name}: {what} must have shape ({n},), got {arr.shape}")
    check_finite(features, name=name)
    if not np.isin(label, (SIGNAL, BACKGROUND, UNKNOWN)).all():
        raise ValueError(f"{name}: labels must be 1 (signal), 0 (background) or -1 (unknown)")
    return Events(features, label, weight)


def check_finite(features: np.ndarray, *, name: str = "events", columns=None) -> None:
    """Raise a ValueError naming the rows and columns that hold NaN or inf.

    ``columns`` names the columns of ``features``; by default :data:`FEATURE_NAMES` for five
    columns and the column numbers otherwise.
    """
    bad = ~np.isfinite(features)
    if bad.any():
        if columns is None and features.shape[1] == len(FEATURE_NAMES):
            columns = FEATURE_NAMES
        rows = np.flatnonzero(bad.any(axis=1))
        cols = [str(c) if columns is None else columns[c] for c in np.flatnonzero(bad.any(axis=0))]
        raise ValueError(
            f"{name}: {rows.size} row(s) contain NaN or inf (columns {', '.join(cols)}; "
            f"rows {shown_rows(rows)}); clean or remove them explicitly before use"
        )


def shown_rows(rows: np.ndarray, limit: int = 10) -> str:
    """The first ``limit`` row numbers for an error message, ``...`` if there are more."""
    return ", ".join(map(str, rows[:limit])) + (", ..." if rows.size > limit else "")


def concatenate(*samples: Events) -> Events:
    """Stack several event sets row-wise."""
    return Events(*(np.concatenate(parts) for parts in zip(*samples, strict=True)))


def select(events: Events, mask) -> Events:
    """Rows of ``events`` where ``mask`` is true (a Python-level boundary operation)."""
    mask = np.asarray(mask, bool)
    return Events(events.features[mask], events.label[mask], events.weight[mask])
