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
        shown = np.isfinite(ratio)  # bins empty in the reference have no ratio
        bottom.errorbar(centres[shown], ratio[shown], yerr=err[shown], fmt=".", color="tab:orange", ms=3)
        bottom.axhline(1.0, color="black", lw=0.8)
        bottom.set_ylim(0.7, 1.3)
        bottom.set_xlabel(FEATURE_LABELS[name])
        top.set_ylabel("density")
        bottom.set_ylabel(f"{labels[1].split()[0]} / {labels[0].split()[0]}")
    axes[0, 0].legend(frameon=False)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def training_curves(train_loss, val_loss, path: str | Path, best_epoch=None, ylabel: str = "loss",
                    title: str = "") -> Path:  # fmt: skip
    """Training (solid) and validation (dashed) loss per epoch of K ensemble members.

    Args:
        train_loss, val_loss: ``(K, epochs)`` or ``(epochs,)`` losses; NaN after the last epoch run.
        path: the PNG to write.
        best_epoch: ``(K,)`` epochs of the kept parameters (marked), or None.
        ylabel: what the loss is (e.g. ``"flow-matching loss"``, ``"NLL per event"``).
        title: figure title.
    """
    train_loss, val_loss = np.atleast_2d(train_loss), np.atleast_2d(val_loss)
    fig, ax = plt.subplots(figsize=(6, 4))
    for k in range(train_loss.shape[0]):
        color = f"C{k % 10}"
        epochs = np.arange(1, train_loss.shape[1] + 1)
        ax.plot(epochs, train_loss[k], color=color, lw=1, label="training" if k == 0 else None)
        ax.plot(epochs, val_loss[k], color=color, lw=1, ls="--", label="validation" if k == 0 else None)
        if best_epoch is not None and 0 <= int(np.atleast_1d(best_epoch)[k]) < val_loss.shape[1]:
            b = int(np.atleast_1d(best_epoch)[k])
            ax.plot(b + 1, val_loss[k, b], "o", color=color, ms=4)
    finite = np.concatenate([train_loss[np.isfinite(train_loss)], val_loss[np.isfinite(val_loss)]])
    if finite.size:
        lo, hi = np.quantile(finite, [0.0, 0.9])
        ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.3 * (hi - lo))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def _band_lines(ax, x, curves: dict, transform=lambda y: y) -> None:
    """Median lines and shaded 16-84% bands of ``{label: (median, lo, hi)}`` on common ``x``."""
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, curve) in enumerate(curves.items()):
        median, lo, hi = (transform(np.asarray(c, np.float64)) for c in curve)
        colour = colours[i % len(colours)]
        ax.plot(x, median, color=colour, label=label)
        if not np.allclose(np.nan_to_num(lo), np.nan_to_num(hi)):
            ax.fill_between(x, lo, hi, color=colour, alpha=0.25, lw=0)


def sic_curves(eps_s: np.ndarray, curves: dict, path: str | Path, title: str = "",
               references: dict | None = None) -> Path:  # fmt: skip
    """SIC = eps_S / sqrt(eps_B) against the signal efficiency, median and 16-84% band each.

    Args:
        eps_s: ``(G,)`` the common signal-efficiency grid.
        curves: ``{label: (median, lo, hi)}`` SIC curves on the grid (e.g. ``gbijax.metrics.band``
            of stacked ``sic_on_grid``); NaN where too few background events pass.
        path: the PNG to write.
        title: figure title.
        references: ``{label: (G,) curve}`` drawn as dashed black-grey lines (e.g. the optimal
            classifier).
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    _band_lines(ax, eps_s, curves)
    for j, (label, curve) in enumerate((references or {}).items()):
        ax.plot(eps_s, curve, ls=("--", ":", "-.")[j % 3], color="0.2", label=label)
    ax.axhline(1.0, color="0.6", lw=0.8, ls=":")
    ax.set_xlabel(r"signal efficiency $\epsilon_S$")
    ax.set_ylabel(r"SIC = $\epsilon_S / \sqrt{\epsilon_B}$")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(bottom=0.0)
    ax.legend(frameon=False, fontsize="small")
    if title:
        ax.set_title(title, fontsize="small")
    return _save(fig, path)


def roc_curves(eps_s: np.ndarray, curves: dict, path: str | Path, title: str = "",
               references: dict | None = None) -> Path:  # fmt: skip
    """ROC curves as background rejection ``1 / eps_B`` (log scale) against ``eps_S``.

    Args:
        eps_s: ``(G,)`` the common signal-efficiency grid.
        curves: ``{label: (median, lo, hi)}`` background efficiencies ``eps_B`` on the grid.
        path: the PNG to write.
        title: figure title.
        references: ``{label: (G,) eps_B curve}`` drawn dashed (e.g. the optimal classifier).
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    with np.errstate(divide="ignore"):
        _band_lines(ax, eps_s, curves, transform=lambda e: 1.0 / e)
        for j, (label, curve) in enumerate((references or {}).items()):
            ax.plot(eps_s, 1.0 / np.asarray(curve), ls=("--", ":", "-.")[j % 3], color="0.2", label=label)
        ax.plot(eps_s, 1.0 / np.clip(eps_s, 1e-12, None), color="0.6", lw=0.8, ls=":", label="random")
    ax.set_yscale("log")
    ax.set_xlabel(r"signal efficiency $\epsilon_S$")
    ax.set_ylabel(r"background rejection $1 / \epsilon_B$")
    ax.set_xlim(0.0, 1.0)
    ax.legend(frameon=False, fontsize="small")
    if title:
        ax.set_title(title, fontsize="small")
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# GBI measurements: mu_hat vs mu_true (the headline figure) and coverage
# --------------------------------------------------------------------------------------------

_METHOD_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")


def mu_scan_figure(curves: dict, n_background: int, path: str | Path, title: str = "") -> Path:
    """The headline figure: fitted ``mu_hat`` against the injected ``mu_true`` (log-log).

    For every method (``curves``: label -> per-injection dicts of ``experiments/mu_scan.py``'s
    ``results.json``) the median ``mu_hat`` over realisations with 68% (16-84%) and 95%
    (2.5-97.5%) bands over realisations, and the median 68% interval as error bars. The
    ``mu = 0`` injection cannot sit on a log axis: its median 95% upper limit is drawn as a
    dotted line (what "no signal" looks like); a fitted ``mu_hat = 0`` sits on the bottom edge.
    The top axis is ``S/sqrt(B) = mu sqrt(B)/(1 - mu)``
    with ``B = n_background`` signal-region background events.
    """
    fig, ax = plt.subplots(figsize=(6.4, 5.4))
    all_mu = [r["mu_true"] for rows in curves.values() for r in rows if r["mu_true"] > 0]
    if not all_mu:
        raise ValueError("mu_scan_figure needs at least one injection with mu > 0")
    lo_x, hi_x = min(all_mu) / 1.5, max(all_mu) * 1.5
    limits = [r["mu_hi95"] for rows in curves.values() for r in rows
              if r["mu_true"] == 0 and r["mu_hi95"] > 0]  # fmt: skip
    floor = min([lo_x / 3] + [v / 1.5 for v in limits])  # mu_hat = 0 is drawn here
    for c, (label, rows) in zip(_METHOD_COLORS, curves.items(), strict=False):
        sig = sorted((r for r in rows if r["mu_true"] > 0), key=lambda r: r["mu_true"])
        mu = np.array([r["mu_true"] for r in sig])
        get = lambda k, rs=sig: np.maximum(np.array([r["mu_hat"][k] for r in rs]), floor)
        ax.fill_between(mu, get("p2.5"), get("p97.5"), color=c, alpha=0.15, lw=0)
        ax.fill_between(mu, get("p16"), get("p84"), color=c, alpha=0.3, lw=0)
        med = get("median")
        err = [med - np.maximum([r["mu_lo68"] for r in sig], floor),
               np.maximum([r["mu_hi68"] for r in sig], floor) - med]  # fmt: skip
        ax.errorbar(mu, med, yerr=np.maximum(err, 0), fmt="o-", color=c, ms=4, capsize=2,
                    label=f"{label}: median, 68/95% of realisations")  # fmt: skip
        zero = [r for r in rows if r["mu_true"] == 0]
        if zero:
            ax.axhline(max(zero[0]["mu_hi95"], floor), color=c, ls=":", lw=1.2,
                       label=f"{label}: 95% upper limit at $\\mu=0$ "
                             f"(no false signal {zero[0]['no_false_signal']:.0%})")  # fmt: skip
    ax.plot([floor, hi_x], [floor, hi_x], color="black", lw=0.8, ls="--", label=r"$\hat\mu = \mu_{true}$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo_x, hi_x)
    ax.set_ylim(floor * 0.9, hi_x * 2)
    ax.set_xlabel(r"injected signal fraction $\mu_{true} = S/(S+B)$ in the SR")
    ax.set_ylabel(r"fitted $\hat\mu$")
    b = float(n_background)
    to_significance = lambda m: np.asarray(m) * np.sqrt(b) / (1 - np.asarray(m))
    to_mu = lambda s: np.asarray(s) / (np.sqrt(b) + np.asarray(s))
    top = ax.secondary_xaxis("top", functions=(to_significance, to_mu))
    for axis in (ax.xaxis, ax.yaxis, top.xaxis):  # labels at 1, 2, 5 x 10^k only (minor labels collide)
        axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    top.set_xlabel(r"$S/\sqrt{B}$" + f"  (B = {int(b):,})")
    ax.legend(frameon=False, fontsize="x-small", loc="upper left")
    if title:
        ax.set_title(title, fontsize="medium", pad=28)
    return _save(fig, path)


def coverage_vs_mu_figure(curves: dict, path: str | Path, title: str = "") -> Path:
    """Coverage of ``mu_true`` by the 68% and 95% intervals against ``mu_true``, with binomial errors."""
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    for c, (label, rows) in zip(_METHOD_COLORS, curves.items(), strict=False):
        sig = sorted((r for r in rows if r["mu_true"] > 0), key=lambda r: r["mu_true"])
        mu = np.array([r["mu_true"] for r in sig])
        for cl, marker in (("68", "o"), ("95", "s")):
            ax.errorbar(mu, [r[f"coverage{cl}"] for r in sig], yerr=[r[f"coverage{cl}_err"] for r in sig],
                        fmt=marker, color=c, ms=4, capsize=2, mfc="none" if cl == "95" else c,
                        label=f"{label}, {cl}%")  # fmt: skip
    for nominal in (0.6827, 0.95):
        ax.axhline(nominal, color="gray", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel(r"$\mu_{true}$")
    ax.set_ylabel(r"fraction of intervals containing $\mu_{true}$")
    ax.legend(frameon=False, fontsize="x-small")
    if title:
        ax.set_title(title, fontsize="medium")
    return _save(fig, path)


def coverage_figure(measurements: dict, mu_true: float, summaries: dict, path: str | Path,
                    title: str = "", n_intervals: int = 60) -> Path:  # fmt: skip
    """Calibration on pseudo-experiments: ``mu_hat`` spread, intervals, coverage against nominal.

    Args:
        measurements: label -> dict of per-pseudo-experiment arrays ``mu_hat, lo68, hi68, lo95, hi95``.
        mu_true: the true signal fraction.
        summaries: label -> :func:`gbijax.inference.summarize_measurements` output.
        path: the PNG to write.
        title: figure title.
        n_intervals: pseudo-experiments whose intervals are drawn (middle panel).
    """
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    labels = list(measurements)
    all_hat = np.concatenate([np.asarray(measurements[k]["mu_hat"]) for k in labels])
    edges = np.linspace(min(all_hat.min(), mu_true * 0.5), max(all_hat.max(), mu_true * 1.5), 40)
    for c, k in zip(_METHOD_COLORS, labels, strict=False):
        m = {n: np.asarray(v) for n, v in measurements[k].items()}
        axes[0].hist(m["mu_hat"], edges, histtype="step", color=c, lw=1.5,
                     label=f"{k}: mean bias {summaries[k]['bias']:+.2g}")  # fmt: skip
    axes[0].axvline(mu_true, color="black", ls="--", lw=1, label=r"$\mu_{true}$")
    axes[0].set_xlabel(r"$\hat\mu$")
    axes[0].set_ylabel("pseudo-experiments")
    axes[0].legend(frameon=False, fontsize="x-small")
    width = 0.8 / len(labels)
    for j, (c, k) in enumerate(zip(_METHOD_COLORS, labels, strict=False)):
        m = {n: np.asarray(v)[:n_intervals] for n, v in measurements[k].items()}
        y = np.arange(len(m["mu_hat"])) + (j - (len(labels) - 1) / 2) * width
        axes[1].hlines(y, m["lo95"], m["hi95"], color=c, lw=0.8, alpha=0.5)
        axes[1].hlines(y, m["lo68"], m["hi68"], color=c, lw=2.2, label=k)
        axes[1].plot(m["mu_hat"], y, "|", color="black", ms=3)
    axes[1].axvline(mu_true, color="black", ls="--", lw=1)
    axes[1].set_xlabel(r"$\mu$: 68% (thick) and 95% (thin) intervals")
    axes[1].set_ylabel("pseudo-experiment")
    axes[1].legend(frameon=False, fontsize="x-small")
    x = np.arange(2)
    for j, (c, k) in enumerate(zip(_METHOD_COLORS, labels, strict=False)):
        s = summaries[k]
        axes[2].bar(x + (j - (len(labels) - 1) / 2) * width, [s["coverage68"], s["coverage95"]], width,
                    yerr=[s["coverage68_err"], s["coverage95_err"]], color=c, alpha=0.7, capsize=3,
                    label=k)  # fmt: skip
    for xi, nominal in zip(x, (0.6827, 0.95), strict=True):
        axes[2].hlines(nominal, xi - 0.45, xi + 0.45, color="black", ls="--", lw=1)
    axes[2].set_xticks(x, ["68% interval", "95% interval"])
    axes[2].set_ylim(0, 1.05)
    axes[2].set_ylabel(r"coverage of $\mu_{true}$ (dashed: nominal)")
    axes[2].legend(frameon=False, fontsize="x-small", loc="lower right")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def measurement_summary(results: dict, mu_true: float, path: str | Path) -> Path:
    """The demo's measurements side by side: ``mu_hat`` with 68% (thick) and 95% (thin) intervals.

    Args:
        results: the demo's results dict (``oracle``, ``ranode``, ``paws`` entries).
        mu_true: the injected signal fraction.
        path: the PNG to write.
    """
    rows = [("oracle", results["oracle"], "lo68", "hi68", "lo95", "hi95"),
            ("R-ANODE", results["ranode"], "lo68", "hi68", "lo95", "hi95"),
            ("PAWS-GBI", results["paws"], "mu_lo68", "mu_hi68", "mu_lo95", "mu_hi95")]  # fmt: skip
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    ax = axes[0]
    for i, (_, r, lo, hi, lo95, hi95) in enumerate(rows):
        y = len(rows) - 1 - i
        if lo95 in r:
            ax.hlines(y, 100 * float(r[lo95]), 100 * float(r[hi95]), color=_METHOD_COLORS[i], lw=1.2)
        ax.hlines(y, 100 * float(r[lo]), 100 * float(r[hi]), color=_METHOD_COLORS[i], lw=4)
        ax.plot(100 * float(r["mu_hat"]), y, "o", color="black", ms=4)
    ax.axvline(100 * mu_true, color="black", ls="--", lw=1, label=r"$\mu_{true}$")
    ax.set_yticks(range(len(rows)), [r[0] for r in rows][::-1])
    ax.set_xlabel(r"signal fraction $\mu$ in the SR [%]  (thick: 68%, thin: 95%)")
    ax.legend(frameon=False, fontsize="small")
    ax = axes[1]
    for label, r, mx, my in [("oracle", results["oracle"], "m_x", "m_y"),
                             ("PAWS-GBI", results["paws"], "m_x", "m_y")]:  # fmt: skip
        c = _METHOD_COLORS[0 if label == "oracle" else 2]
        x0, y0 = 1000 * float(r[mx]), 1000 * float(r[my])
        xerr = [[x0 - 1000 * float(r["m_x_lo68"])], [1000 * float(r["m_x_hi68"]) - x0]]
        yerr = [[y0 - 1000 * float(r["m_y_lo68"])], [1000 * float(r["m_y_hi68"]) - y0]]
        ax.errorbar(x0, y0, xerr=np.maximum(xerr, 0), yerr=np.maximum(yerr, 0), fmt="o", color=c,
                    capsize=3, label=label)
    ax.plot(500, 100, "*", color="black", ms=12, label="truth")
    ax.set_xlabel(r"$m_X$ [GeV]")
    ax.set_ylabel(r"$m_Y$ [GeV]")
    ax.legend(frameon=False, fontsize="small")
    return _save(fig, path)


MASS_AXES = ((r"$m_X$ [GeV]", 1000.0), (r"$m_Y$ [GeV]", 1000.0))
"""Axis labels and scales (TeV -> GeV) of an (m_X, m_Y) landscape for :func:`likelihood_contours`."""
MU_ALPHA_AXES = ((r"signal fraction $\mu$", 1.0), (r"mode fraction $\alpha$", 1.0))
"""Axis labels of a (mu, alpha) landscape (:func:`gbijax.inference.mu_alpha_landscape`)."""


def likelihood_contours(x, y, log_likelihood, path: str | Path, axes=MASS_AXES, truth=None, best=None,
                        log_likelihood_max: float | None = None, title: str = "") -> Path:  # fmt: skip
    """The 68% and 95% two-parameter confidence regions of a profile-likelihood landscape.

    Contours of ``-2 (l - l_max)`` at the two-parameter Wilks thresholds 2.30 and 5.99, e.g. over
    ``(m_X, m_Y)`` with ``mu`` profiled (:func:`gbijax.inference.paws_landscape`) or over
    ``(mu, alpha)`` (:func:`gbijax.inference.mu_alpha_landscape`, ``axes=MU_ALPHA_AXES``).

    Args:
        x, y: ``(G_x,)``, ``(G_y,)`` grid axes.
        log_likelihood: ``(G_x, G_y)`` profile log-likelihood (rows ``x``).
        path: the PNG to write.
        axes: ``((x label, x scale), (y label, y scale))``; the default draws masses in GeV.
        truth, best: optional ``(x, y)`` points (unscaled) to mark.
        log_likelihood_max: the fit's maximum (default: the grid's).
        title: figure title.
    """
    (x_label, x_scale), (y_label, y_scale) = axes
    ll = np.asarray(log_likelihood, np.float64)
    l_max = np.nanmax(ll) if log_likelihood_max is None else max(float(log_likelihood_max), np.nanmax(ll))
    q = -2.0 * (ll - l_max)
    gx, gy = x_scale * np.asarray(x), y_scale * np.asarray(y)
    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    shown = ax.pcolormesh(gx, gy, np.minimum(q, 25.0).T, cmap="viridis_r", shading="auto")
    fig.colorbar(shown, ax=ax, label=r"$-2\,\Delta \ln L$ (capped at 25)")
    ax.contour(gx, gy, q.T, levels=[2.30, 5.99], colors=["white", "white"], linestyles=["-", "--"])
    ax.plot([], [], "w-", label="68% (2.30)")
    ax.plot([], [], "w--", label="95% (5.99)")
    if best is not None:
        ax.plot(x_scale * best[0], y_scale * best[1], "o", color="tab:orange", ms=6, label="fit")
    if truth is not None:
        ax.plot(x_scale * truth[0], y_scale * truth[1], "*", color="red", ms=12, label="truth")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    leg = ax.legend(fontsize="small", facecolor="0.3", labelcolor="white", framealpha=0.8)
    leg.get_frame().set_edgecolor("none")
    if title:
        ax.set_title(title, fontsize="small")
    return _save(fig, path)


def significance_figure(curves: dict, path: str | Path, title: str = "") -> Path:
    """Discovery significance against ``S/sqrt(B)`` for several methods (the paper's sensitivity comparison).

    Args:
        curves: label -> per-injection dicts of ``experiments/mu_scan.py``'s ``results.json``
            (``s_over_sqrt_b``, median ``z`` and ``z_quantiles`` with ``p16``/``p84``; a dashed
            line for the median ``z_global`` where a run has look-elsewhere toys).
        path: the PNG to write.
        title: figure title.
    """
    fig, ax = plt.subplots(figsize=(6.0, 4.4))
    for c, (label, rows) in zip(_METHOD_COLORS, curves.items(), strict=False):
        sig = sorted((r for r in rows if r["s_over_sqrt_b"] > 0), key=lambda r: r["s_over_sqrt_b"])
        s = np.array([r["s_over_sqrt_b"] for r in sig])
        ax.plot(s, [r["z"] for r in sig], "o-", color=c, ms=4, label=label)
        ax.fill_between(s, [r["z_quantiles"]["p16"] for r in sig], [r["z_quantiles"]["p84"] for r in sig],
                        color=c, alpha=0.2, lw=0)  # fmt: skip
        if sig and all("z_global" in r for r in sig):
            reach = sig[0]["z_global_max"]
            ax.plot(s, [r["z_global"] for r in sig], "s--", color=c, ms=3,
                    label=f"{label}, look-elsewhere corrected (toys reach {reach:.2f})")  # fmt: skip
    for z in (3.0, 5.0):
        ax.axhline(z, color="gray", lw=0.8, ls="--")
        ax.text(ax.get_xlim()[0], z, f" {z:g} sigma", va="bottom", fontsize="x-small", color="gray")
    ax.set_xscale("log")
    ax.set_xlabel(r"$S/\sqrt{B}$ in the signal region")
    ax.set_ylabel(r"median discovery significance $Z$ (band: 16-84%)")
    ax.legend(frameon=False, fontsize="x-small", loc="upper left")
    if title:
        ax.set_title(title, fontsize="medium")
    return _save(fig, path)
