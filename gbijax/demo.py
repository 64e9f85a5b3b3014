"""``gbijax demo``: the whole GBI chain on the built-in analytic toy, in a few minutes on a CPU.

1. Toy data: QCD-like background over the full mjj range, a 3.5 TeV resonance injected into
   the signal region (SR) at a known signal fraction.
2. Background generator: conditional flow matching trained on the sidebands, interpolated into
   the SR (``p_B(m)`` from a dijet-function fit to the sideband masses).
3. Baseline: CATHODE (SR data against generated SR background, k-fold), its SIC curve beside the
   optimal classifier's.
4. R-ANODE: the signal density learned from the SR data with the generated background fixed;
   ``mu_hat``, 68/95% intervals and the significance on held-out folds.
5. PAWS-GBI: a parametrised classifier, simulated toy signal over a mass grid against the
   generator's SR samples, fitted for ``(mu, m_x, m_y)``.
6. The oracle: the exact-likelihood fits with the true toy densities, the best possible.

Everything lands in one results directory: ``config.json``, ``results.json``, figures and a
``report.md``. Finished steps are checkpointed under ``steps/`` and not recomputed on a rerun.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gbijax import classifiers, metrics, plotting
from gbijax.background import BackgroundConfig, background_log_prob, background_sample
from gbijax.data import ToyOptions, load_toy, toy
from gbijax.experiment import ResultsDir
from gbijax.inference import (
    PawsConfig,
    RanodeConfig,
    fit_paws,
    fit_ranode,
    oracle_fit,
    oracle_joint_fit,
    paws_landscape,
    sample_signal_model,
    signal_coordinates,
    toy_signal_grid,
    train_toy_paws,
)
from gbijax.inference._ranode import _to_coordinates
from gbijax.pipeline import analysis_samples, fit_background_variant, injected_realisations
from gbijax.train import TrainConfig

__all__ = ["DemoSizes", "run_demo"]


class DemoSizes(NamedTuple):
    """The sizes of one demo run (``quick`` is a smoke test, not a measurement)."""

    n_background: int
    mu: float
    background_epochs: int
    n_generated: int
    classifier_epochs: int
    ranode_epochs: int
    ranode_seeds: int
    ranode_bootstrap: int
    paws_per_point: int
    paws_epochs: int
    paws_kappa_signal: int


FULL = DemoSizes(400_000, 0.01, 40, 120_000, 20, 45, 1, 2, 3_000, 30, 500)
QUICK = DemoSizes(40_000, 0.04, 2, 8_000, 2, 3, 1, 2, 200, 2, 50)


class _Stages:
    """Prints each stage's banner and records its wall time (seconds, by stage name)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._open: tuple[str, float] | None = None

    def start(self, i: int, name: str, text: str) -> None:
        self.stop()
        print(f"[{i}/6] {text}", flush=True)
        self._open = (name, time.perf_counter())

    def split(self, name: str) -> None:
        """Record the time since the current stage started under ``name`` too (a part of it)."""
        self.seconds[name] = round(time.perf_counter() - self._open[1], 1)

    def stop(self) -> None:
        if self._open is not None:
            self.split(self._open[0])
            self._open = None


def _stage_times(r: dict) -> str:
    t = r.get("seconds_by_stage")
    if not t:
        return ""
    fit = t["paws_fit"] - t["paws_classifier"]
    return (f" (generator {t['generator']} s, CATHODE {t['cathode']} s, R-ANODE {t['ranode']} s, PAWS-GBI "
            f"{t['paws']} s: classifier {t['paws_classifier']} s, fit {fit:.1f} s, contour figure "
            f"{t['paws'] - t['paws_fit']:.1f} s; oracle {t['oracle']} s)")  # fmt: skip


def _interval_dict(fit) -> dict:
    return {"mu_hat": fit.mu_hat, "lo68": fit.interval_68.lo, "hi68": fit.interval_68.hi,
            "lo95": fit.interval_95.lo, "hi95": fit.interval_95.hi, "z": fit.z}  # fmt: skip


def run_demo(out: str | Path = "results/demo", seed: int = 0, quick: bool = False) -> dict:
    """Run the demo and write its results directory; returns the results dict."""
    sizes = QUICK if quick else FULL
    options = ToyOptions(n_background=sizes.n_background, n_signal=0, n_extra_signal=20_000,
                         n_extra_background=2_000, seed=seed)  # fmt: skip
    bkg_config = BackgroundConfig(
        model="flow_matching", hidden=(64, 64, 64),
        train=TrainConfig(epochs=sizes.background_epochs, batch_size=1024, learning_rate=2e-3, patience=8,
                          schedule="cosine", clip_norm=5.0),
    )  # fmt: skip
    results_dir = ResultsDir(out, {"command": "gbijax demo", "seed": seed, "quick": quick,
                                   "sizes": sizes._asdict(), "toy": options.__dict__,
                                   "background": bkg_config._asdict()})  # fmt: skip
    key = jax.random.key(seed)
    k_inj, k_bkg, k_gen, k_cls, k_ranode, k_paws = jax.random.split(key, 6)
    results: dict = {"sizes": sizes._asdict()}
    start = time.time()
    stages = _Stages()

    stages.start(1, "data", f"toy data: {sizes.n_background:,} background events, "
                            f"mu = {sizes.mu:.2%} injected in the SR")  # fmt: skip
    samples = analysis_samples(load_toy(options))
    data = injected_realisations(k_inj, samples.background_sr, samples.signal_pool, sizes.mu, 1)
    x, truth = data.x[0], data.label
    results["data"] = {"n_sr": len(x), "n_signal": data.n_signal, "mu_true": data.mu,
                       "s_over_sqrt_b": data.s_over_sqrt_b, "n_sideband": len(samples.sideband)}  # fmt: skip

    stages.start(2, "generator", f"background generator: flow matching on {len(samples.sideband):,} "
                                 "sideband events")  # fmt: skip
    t0 = time.time()
    generator, bkg, hist, mass_kind = fit_background_variant(
        k_bkg, samples, "sideband", bkg_config, checkpoint_dir=results_dir.path / "steps" / "background"
    )
    log_pb = np.asarray(background_log_prob(generator, bkg, jnp.asarray(x, jnp.float32)))
    generated = np.asarray(background_sample(generator, bkg, k_gen, sizes.n_generated))
    results["background"] = {"model": "flow_matching", "mass_density": mass_kind,
                             "train_seconds": round(time.time() - t0, 1),
                             "best_epoch": int(np.max(hist.best_epoch))}  # fmt: skip
    plotting.marginals_with_ratio(samples.background_sr, generated,
                                  results_dir.figure_path("background_marginals"),
                                  title="SR background: true vs generated from the sidebands")  # fmt: skip

    stages.start(3, "cathode", "CATHODE baseline: SR data vs generated SR background, k-fold")
    cls_config = classifiers.DEFAULT._replace(
        train=classifiers.DEFAULT.train._replace(epochs=sizes.classifier_epochs, batch_size=512),
        n_runs=2, k_folds=3)  # fmt: skip
    task = classifiers.cathode(x[:, 1:], generated[:, 1:], data_truth=truth)
    scores = np.asarray(classifiers.kfold_scores(k_cls, task.x, task.y, task.weight, cls_config, task.test))
    data_scores = scores[: len(x)]
    optimal = np.asarray(metrics.toy_optimal_scores(jnp.asarray(x, jnp.float32)))
    grid = np.linspace(0.02, 1.0, 50)
    sic = {name: np.asarray(metrics.sic_on_grid(s, truth, grid, min_background=10.0))
           for name, s in (("CATHODE", data_scores), ("optimal (exact toy ratio)", optimal))}  # fmt: skip
    results["cathode"] = {name: {"max_sic": metrics.max_sic(s, truth), "auc": metrics.auc(s, truth),
                                 "sic_at_1e-3": metrics.sic_at_eps_b(s, truth)}
                          for name, s in (("cathode", data_scores), ("optimal", optimal))}  # fmt: skip
    plotting.sic_curves(grid, {"CATHODE": (sic["CATHODE"],) * 3}, results_dir.figure_path("sic"),
                        title=f"SIC on the SR data (S/sqrt(B) = {data.s_over_sqrt_b:.1f})",
                        references={"optimal": sic["optimal (exact toy ratio)"]})  # fmt: skip

    stages.start(4, "ranode", "R-ANODE: the signal flow learned from the SR data, generated background fixed")
    coords = signal_coordinates(bkg.preprocessing, x[:, 0])
    u, log_det = _to_coordinates(coords, jnp.asarray(x, jnp.float32))
    r_config = RanodeConfig(n_seeds=sizes.ranode_seeds, n_bootstrap=sizes.ranode_bootstrap, k_folds=3,
                            train=RanodeConfig().train._replace(epochs=sizes.ranode_epochs, batch_size=512,
                                                                learning_rate=1e-3))  # fmt: skip
    ranode = fit_ranode(
        k_ranode, u, jnp.asarray(log_pb) - log_det, jnp.ones(len(x)), r_config, return_params=True
    )
    results["ranode"] = {**_interval_dict(ranode), "w_learned": ranode.w_learned,
                         "shape_std": jnp.sqrt(ranode.shape_variance)}  # fmt: skip
    learned = np.asarray(sample_signal_model(r_config, ranode.params, coords, k_ranode, 20_000))
    true_signal = np.asarray(toy.signal_sample(k_ranode, 20_000, region=(3.3, 3.7)))
    plotting.marginals_with_ratio(
        true_signal,
        learned,
        results_dir.figure_path("ranode_signal_model"),
        labels=("true signal", "learned R-ANODE signal"),
        title="What the anomaly looks like: samples of the learned signal model",
    )

    stages.start(5, "paws", "PAWS-GBI: parametrised classifier on simulated signal vs generated background")
    k_train, k_fit = jax.random.split(k_paws)
    paws_cls = classifiers.TOY_PAWS_MLP
    paws_cls = paws_cls._replace(train=paws_cls.train._replace(epochs=sizes.paws_epochs))
    held_out = len(generated) // 5  # not trained on: kappa(theta) = 1 / E_B[f / (1 - f)] is estimated on them
    trained = train_toy_paws(k_train, generated[held_out:], sizes.paws_per_point, paws_cls)
    jax.block_until_ready(trained.params)
    stages.split("paws_classifier")  # 28 mass points, 50-600 GeV
    # kappa's background pooled with fresh simulated signal at every mass point (low variance in theta),
    # tabulated once on 10 GeV nodes (the fit then evaluates only the data's events at each theta)
    kappa_signal = toy_signal_grid(jax.random.fold_in(k_train, 1), sizes.paws_kappa_signal, trained.points)
    kappa = trained.kappa_table(trained.kappa_sample(generated[:held_out], kappa_signal))
    ratio_data = trained.ratio_data(x, kappa)
    # 4 random starts besides the best point of the 11 x 11 coarse landscape (each start's gradient steps run
    # over all events)
    paws_config = PawsConfig(mass_bounds=trained.mass_bounds, n_starts=4, grid_points=11)
    paws = jax.block_until_ready(fit_paws(trained.log_ratio_fn, ratio_data, key=k_fit, config=paws_config))
    stages.split("paws_fit")
    results["paws"] = {"mu_hat": paws.mu_hat, "mu_lo68": paws.mu_interval.lo, "mu_hi68": paws.mu_interval.hi,
                       "mu_lo95": paws.mu_interval_95.lo, "mu_hi95": paws.mu_interval_95.hi,
                       "m_x": paws.params.m_x, "m_x_lo68": paws.m_x_interval.lo,
                       "m_x_hi68": paws.m_x_interval.hi, "m_y": paws.params.m_y,
                       "m_y_lo68": paws.m_y_interval.lo, "m_y_hi68": paws.m_y_interval.hi,
                       "z_local": paws.z}  # fmt: skip

    fitted, truth = np.array([paws.params.m_x, paws.params.m_y], float), np.array([0.5, 0.1])
    pad = np.maximum(3.0 * np.asarray(paws.std[1:3]), 0.005)  # 3 sigma (at least 5 GeV) beyond fit and truth
    lo, hi = np.minimum(fitted, truth) - pad, np.maximum(fitted, truth) + pad
    axes = [np.clip(np.linspace(lo[i], hi[i], 21), *trained.mass_bounds) for i in range(2)]
    land = paws_landscape(trained.log_ratio_fn, ratio_data, *axes, config=paws_config)
    contours = results_dir.figure_path("paws_mass_contours")
    plotting.likelihood_contours(land.m_x, land.m_y, land.log_likelihood, contours,
                                 truth=truth, best=fitted, log_likelihood_max=float(paws.log_likelihood_max),
                                 title="PAWS-GBI: (m_X, m_Y) confidence regions, mu profiled")  # fmt: skip

    stages.start(6, "oracle", "oracle: exact-likelihood fits with the true toy densities")
    oracle = oracle_fit(jnp.asarray(x, jnp.float32))
    joint = oracle_joint_fit(jnp.asarray(x, jnp.float32))
    results["oracle"] = {**_interval_dict(oracle), "m_x": joint.params.m_x, "m_y": joint.params.m_y,
                         "m_x_lo68": joint.m_x_interval.lo, "m_x_hi68": joint.m_x_interval.hi,
                         "m_y_lo68": joint.m_y_interval.lo, "m_y_hi68": joint.m_y_interval.hi}  # fmt: skip
    plotting.measurement_summary(results, data.mu, results_dir.figure_path("mu_measurements"))
    stages.stop()
    results["seconds_by_stage"] = stages.seconds
    results["seconds_total"] = round(time.time() - start, 1)
    path = results_dir.write_results(results)
    _write_report(results_dir.path, json.loads(path.read_text()))
    print(f"wrote {results_dir.path / 'report.md'} in {results['seconds_total']} s", flush=True)
    return results


def _num(v, scale: float = 1.0, fmt: str = ".3g") -> str:
    return "n/a" if v is None else format(v * scale, fmt)


def _fmt_interval(r: dict, hat: str = "mu_hat", lo: str = "lo68", hi: str = "hi68", scale: float = 100.0,
                  unit: str = "%") -> str:  # fmt: skip
    return f"{_num(r[hat], scale)}{unit} [{_num(r[lo], scale)}, {_num(r[hi], scale)}]"


def _write_report(path: Path, r: dict) -> None:
    d = r["data"]
    rows = [
        ("oracle (exact densities)", r["oracle"]),
        ("R-ANODE (learned signal, generated background)", r["ranode"]),
    ]
    lines = [
        "# gbijax demo: Generator Based Inference on the analytic toy",
        "",
        f"Signal region 3.3-3.7 TeV: {d['n_sr']:,} events, of which {d['n_signal']} signal "
        f"(mu = {d['mu_true']:.3%}, S/sqrt(B) = {d['s_over_sqrt_b']:.2f}). The background generator "
        f"(conditional flow matching) was trained on {d['n_sideband']:,} sideband events in "
        f"{r['background']['train_seconds']} s; p_B(m) in the SR is the {r['background']['mass_density']}.",
        "",
        "## The measurement of the signal fraction",
        "",
        "| method | mu_hat [68% interval] | 95% interval | Z |",
        "|---|---|---|---|",
    ]
    for name, m in rows:
        lines.append(f"| {name} | {_fmt_interval(m)} | [{_num(m['lo95'], 100)}%, {_num(m['hi95'], 100)}%] "
                     f"| {_num(m['z'], fmt='.1f')} |")  # fmt: skip
    p = r["paws"]
    lines.append(
        f"| PAWS-GBI (simulated signal, generated background) | "
        f"{_fmt_interval(p, 'mu_hat', 'mu_lo68', 'mu_hi68')} | [{_num(p['mu_lo95'], 100)}%, "
        f"{_num(p['mu_hi95'], 100)}%] | {p['z_local']:.1f} (local) |"
    )
    lines += [
        "",
        f"True value: mu = {d['mu_true']:.3%}. Intervals are Wilks intervals "
        "(-2 Delta log L <= 1 and <= 3.84). R-ANODE's include the uncertainty of its learned signal shape "
        f"(std {_num(r['ranode']['shape_std'], 100)}% in mu from bootstrap replicas, added in quadrature). "
        "PAWS-GBI's are statistical only: its classifier learned simulated signal "
        "against *generated* background, so generator mismodelling shifts its estimates beyond them.",
        "",
        "## The signal masses",
        "",
        "| method | m_X [GeV] (68%) | m_Y [GeV] (68%) |",
        "|---|---|---|",
        f"| oracle | {_fmt_interval(r['oracle'], 'm_x', 'm_x_lo68', 'm_x_hi68', 1000, '')} | "
        f"{_fmt_interval(r['oracle'], 'm_y', 'm_y_lo68', 'm_y_hi68', 1000, '')} |",
        f"| PAWS-GBI | {_fmt_interval(p, 'm_x', 'm_x_lo68', 'm_x_hi68', 1000, '')} | "
        f"{_fmt_interval(p, 'm_y', 'm_y_lo68', 'm_y_hi68', 1000, '')} |",
        "",
        "True masses: m_X = 500 GeV, m_Y = 100 GeV.",
        "",
        "![measurements](mu_measurements.png)",
        "",
        "![PAWS contours](paws_mass_contours.png)",
        "",
        "## Anomaly detection baseline",
        "",
        f"CATHODE max SIC {_num(r['cathode']['cathode']['max_sic'], fmt='.1f')} "
        f"(AUC {_num(r['cathode']['cathode']['auc'], fmt='.3f')}); the optimal classifier (exact "
        f"likelihood ratio) reaches {_num(r['cathode']['optimal']['max_sic'], fmt='.1f')}.",
        "",
        "![SIC](sic.png)",
        "",
        "## The background model and the learned anomaly",
        "",
        "![background](background_marginals.png)",
        "",
        "![signal model](ranode_signal_model.png)",
        "",
        f"Total time {r['seconds_total']} s on {r.get('device', 'this machine')}{_stage_times(r)}.",
        "",
    ]
    (path / "report.md").write_text("\n".join(lines))
