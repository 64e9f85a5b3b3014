"""Paper-style figures (matplotlib, Agg backend): labelled axes with units, saved as PNG.

Every function takes plain arrays (or result dicts), draws one figure, saves it to ``path``
and returns the path, so drivers stay one line per figure.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gbijax.data import FEATURE_NAMES  # noqa: E402

FEATURE_LABELS = {
    "mjj": r"$m_{jj}$ [TeV]",
    "mj_min": r"$m_{j,\min}$ [TeV]",
    "delta_mj": r"$\Delta m_j = m_{j,\max} - m_{j,\min}$ [TeV]",
    "tau21_min": r"$\tau_{21}$ of the lighter jet",
    "tau21_max": r"$\tau_{21}$ of the heavier jet",
}
"""Axis labels with units for :data:`gbijax.data.FEATURE_NAMES`."""


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def marginals_with_ratio(reference: np.ndarray, generated: np.ndarray, path: str | Path,
                         labels: tuple[str, str] = ("true background", "generated"),
                         title: str = "", bins: int = 40) -> Path:  # fmt: skip
    """Histograms of every feature for two ``(N, 5)`` samples, with a ratio panel each.

    Both are normalised to unit area; the ratio's error bars are the Poisson errors of both.
    """
    fig, axes = plt.subplots(2, 5, figsize=(18, 5.5), gridspec_kw={"height_ratios": [3, 1]}, sharex="col")
    for j, name in enumerate(FEATURE_NAMES):
        lo, hi = np.quantile(np.concatenate([reference[:, j], generated[:, j]]), [0.002, 0.998])
        edges = np.linspace(lo, hi, bins + 1)
        h_ref, _ = np.histogram(reference[:, j], edges)
        h_gen, _ = np.histogram(generated[:, j], edges)
        n_ref, n_gen = max(h_ref.sum(), 1), max(h_gen.sum(), 1)
        centres, width = 0.5 * (edges[1:] + edges[:-1]), np.diff(edges)
        top, bottom = axes[0, j], axes[1, j]
        top.stairs(h_ref / n_ref / width, edges, label=labels[0], color="black")
        top.stairs(h_gen / n_gen / width, edges, label=labels[1], color="tab:orange")
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = (h_gen / n_gen) / (h_ref / n_ref)
            err = ratio * np.sqrt(1 / np.maximum(h_gen, 1) + 1 / np.maximum(h_ref, 1))
        bottom.errorbar(centres, ratio, yerr=err, fmt=".", color="tab:orange", ms=3)
        bottom.axhline(1.0, color="black", lw=0.8)
        bottom.set_ylim(0.7, 1.3)
        bottom.set_xlabel(FEATURE_LABELS[name])
        top.set_ylabel("density")
        bottom.set_ylabel(f"{labels[1].split()[0]} / {labels[0].split()[0]}")
    axes[0, 0].legend(frameon=False)
    if title:
        fig.suptitle(title)
    return _save(fig, path)
