"""Anomaly-detection baselines: supervised, idealised AD, CWoLa hunting and CATHODE, with SIC bands.

::

    python experiments/baselines.py --data toy --methods supervised,idealized,cwola,cathode \\
        --mu 0.006 --realisations 3 --out results/baselines_toy

Every method is one binary classifier (``gbijax.classifiers``, the ``--preset``) on the four
substructure features ``mj_min, delta_mj, tau21_min, tau21_max`` (mjj is never an input); they
differ in the two classes (METHODS section 4):

- ``supervised``: labelled signal vs background (the upper bound). Trained on the supervised
  share of the signal pool against the source's independent SR background sample when it has
  one (as the CATHODE reference trains it), otherwise by k-fold against the data's background.
- ``idealized``: SR data vs the independent SR background sample (needs one: refused otherwise).
- ``cwola``: SR data vs the sideband data in two windows next to the SR (``--sb-width``).
- ``cathode``: SR data vs samples of the sideband-trained background generator
  (``fit_background_variant(..., "sideband", ...)``, a resumable step), drawn in the SR with
  masses from the sideband dijet fit, ``--oversample`` times the SR data.

CWoLa and CATHODE need sidebands and are refused on SR-only sources (``cathode:``).

Data: each of ``--realisations`` realisations is the SR background of the source plus
``S = round(mu B / (1 - mu))`` signal events (or ``--n-signal S``) drawn from the injection share
of the signal pool. The signal pool is split once (seeded) into held-out test signal, supervised
training signal and the injection pool, so no test event is ever injected or trained on.

Evaluation (``results.json["evaluation"]``):

- ``heldout`` (primary; the top-level ``max_sic``, ``sic_at_1e-3`` and ``auc`` of each method):
  the held-out test signal against the SR data's background events. Anomaly-detection methods
  score the data by k-fold, so every background event is scored only by models that never saw
  it; the held-out signal events get a random fold and that fold's models.
- ``data``: the realisation's own SR data (background + the S injected events) with truth
  labels, all out-of-fold; noisy when S is small.

Numbers are medians and 16/84% quantiles over realisations (ensemble scores); ``single_runs``
gives the same over the individual classifier runs. Max SIC counts only cuts that keep at least
``--min-background`` background events. On the toy the exact likelihood ratio gives the optimal
classifier, with (``optimal``, ``gbijax.metrics.toy_optimal_scores``) and without mjj
(``optimal_features``, the bound for the four inputs), and each method's max SIC as a fraction of
both.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import gbijax  # noqa: F401  (sets the XLA CPU flag before JAX starts)
from gbijax import classifiers as clf
from gbijax import metrics, plotting
from gbijax.background import BackgroundConfig, background_sample
from gbijax.data import toy
from gbijax.data._sources import toy_signal_params
from gbijax.experiment import ResultsDir, experiment_parser, run_experiment, to_json
from gbijax.pipeline import AnalysisSamples, analysis_samples, fit_background_variant, injected_realisations
from gbijax.train import TrainConfig

METHODS = ("supervised", "idealized", "cwola", "cathode")
ALIASES = {"idealised": "idealized", "idealised_ad": "idealized", "idealized_ad": "idealized",
           "cwola_hunting": "cwola"}  # fmt: skip
LABELS = {"supervised": "supervised", "idealized": "idealised AD", "cwola": "CWoLa hunting",
          "cathode": "CATHODE"}  # fmt: skip
INPUTS = ("mj_min", "delta_mj", "tau21_min", "tau21_max")
GRID = np.linspace(0.01, 1.0, 100)
"""The common signal-efficiency grid of the SIC and ROC bands."""

GENERATOR = BackgroundConfig(
    model="flow_matching", hidden=(64, 64, 64), ode_steps=16,
    train=TrainConfig(epochs=60, batch_size=512, learning_rate=1e-3, patience=10, schedule="cosine",
                      clip_norm=5.0),
)  # fmt: skip
"""The modest default CATHODE background generator: conditional flow matching, 3 x 64."""

QUICK_GENERATOR = BackgroundConfig(
    hidden=(16, 16), ode_steps=4, train=TrainConfig(epochs=2, batch_size=512, learning_rate=2e-3)
)


# --------------------------------------------------------------------------------------------
# Options and what a source supports


def parse_methods(text: str) -> list[str]:
    """``"supervised,idealised"`` -> ``["supervised", "idealized"]`` (order kept, no repeats)."""
    methods = []
    for item in filter(None, (t.strip().lower() for t in text.split(","))):
        name = ALIASES.get(item, item)
        if name not in METHODS:
            raise ValueError(
                f"unknown method {item!r}: expected a comma-separated list of {', '.join(METHODS)}"
            )
        if name not in methods:
            methods.append(name)
    if not methods:
        raise ValueError(f"no method given: expected a comma-separated list of {', '.join(METHODS)}")
    return methods


def unsupported(methods: list[str], samples: AnalysisSamples) -> dict[str, str]:
    """``{method: reason}`` for the requested methods that this data source cannot support."""
    reasons = {}
    for method in methods:
        if method in ("cwola", "cathode") and samples.sideband is None:
            need = (
                "sideband data (CWoLa: SR vs SB data"
                if method == "cwola"
                else "sideband data (CATHODE: SR data vs samples of a generator trained on the sidebands"
            )
            reasons[method] = (f"{need}), but {samples.source} holds signal-region events only; use a source "
                               "with sidebands (toy, clustered:DIR, lhco:PATH)")  # fmt: skip
        if method == "idealized" and samples.extra_background_sr is None:
            reasons[method] = (
                f"an independent sample of true SR background (SR data vs extra QCD), but "
                f"{samples.source} has none; use cathode:DIR with the extra-QCD file or the toy"
            )
    return reasons


def classifier_config(preset: str, quick: bool) -> clf.ClassifierConfig:
    if quick:
        return clf.QUICK
    return {"default": clf.DEFAULT, "reference": clf.REFERENCE}[preset]


class PoolSplit(NamedTuple):
    """The signal pool, split once: held-out test, supervised training, injection."""

    test: np.ndarray
    supervised: np.ndarray
    injection: np.ndarray


def split_pool(key: jax.Array, pool: np.ndarray, n_test: int, n_supervised: int) -> PoolSplit:
    """Shuffle the pool; the first ``min(n_test, N/3)`` events are the held-out test signal, the
    next ``min(n_supervised, (N - n_test) / 2)`` train the supervised classifier, the rest can be
    injected."""
    perm = np.asarray(jax.random.permutation(key, len(pool)))
    n_test = min(n_test, len(pool) // 3)
    n_sup = min(n_supervised, (len(pool) - n_test) // 2)
    if n_test < 1 or n_sup < 1:
        raise ValueError(f"{len(pool)} signal-region signal events are too few to split into test, "
                         "supervised-training and injection shares")  # fmt: skip
    p = pool[perm]
    return PoolSplit(p[:n_test], p[n_test : n_test + n_sup], p[n_test + n_sup :])


def sideband_windows(sideband: np.ndarray, region, width: float) -> tuple[np.ndarray, list[float]]:
    """The sideband events within ``width`` TeV of the SR edges (all of them if ``width <= 0``)."""
    m = sideband[:, 0]
    if width <= 0:
        return sideband, [float(m.min()), region.lo, region.hi, float(m.max())]
    keep = ((m > region.lo - width) & (m < region.lo)) | ((m > region.hi) & (m < region.hi + width))
    if not keep.any():
        raise ValueError(f"no sideband events within {width} TeV of the signal region")
    return sideband[keep], [round(region.lo - width, 6), region.lo, region.hi, round(region.hi + width, 6)]


# --------------------------------------------------------------------------------------------
# Training one method in one realisation -> out-of-fold scores


_train_ensemble = jax.jit(clf.train_ensemble, static_argnames="config")


def _history_summary(history) -> np.ndarray:
    """``[median best epoch, most epochs run]`` (1-based epochs) of a stack of trainings."""
    return np.array([float(np.median(np.asarray(history.best_epoch))) + 1,
                     float(np.max(np.asarray(history.epochs_run)))], np.float32)  # fmt: skip


def kfold_method(key, task: clf.ClassifierTask, rows: np.ndarray, unseen: np.ndarray, config) -> dict:
    """k-fold training on ``task``; scores of the task rows ``rows`` (out-of-fold) followed by
    the ``unseen`` events (each given a random fold)."""
    k_train, k_folds = jax.random.split(key)
    result = clf.kfold_train(k_train, task.x, task.y, task.weight, config, test=task.test)
    x = jnp.concatenate([task.x[rows], jnp.asarray(unseen, jnp.float32)])
    folds = jnp.concatenate(
        [result.folds[rows], jax.random.randint(k_folds, (len(unseen),), 0, config.k_folds)]
    )
    scores, runs = clf.kfold_run_scores(result.params, x, folds, config)
    return {
        "scores": np.asarray(scores),
        "runs": np.asarray(runs),
        "history": _history_summary(result.history),
    }


def ensemble_method(key, x1: np.ndarray, x0: np.ndarray, evaluate: np.ndarray, config) -> dict:
    """One ensemble (``n_runs`` trainings) of class ``x1`` vs ``x0``; scores of ``evaluate``
    (events none of the models saw)."""
    x = jnp.asarray(np.concatenate([x1, x0]), jnp.float32)
    y = jnp.concatenate([jnp.ones(len(x1)), jnp.zeros(len(x0))])
    params, history = _train_ensemble(key, x, y, jnp.ones(len(y)), config=config)
    params = jax.tree.map(lambda a: a[None], params)
    scores, runs = clf.kfold_run_scores(params, evaluate, np.zeros(len(evaluate), np.int32), config)
    return {"scores": np.asarray(scores), "runs": np.asarray(runs), "history": _history_summary(history)}


def train_method(
    method: str,
    key,
    data: np.ndarray,
    n_background: int,
    heldout: np.ndarray,
    supervised_signal: np.ndarray,
    samples: AnalysisSamples,
    reference,
    config,
) -> dict:
    """Scores of ``data`` (N events, background first) followed by the ``heldout`` events.

    ``reference`` is the class-0 sample of CWoLa (sideband windows) and CATHODE (generator
    samples and their weights); events are ``(N, 5)`` arrays, the classifier sees columns 1-4.
    No model is trained on a ``heldout`` event.
    """
    f = lambda a: np.asarray(a, np.float32)[:, 1:]
    d, test = f(data), f(heldout)
    if method == "supervised":
        if samples.extra_background_sr is not None:
            return ensemble_method(key, f(supervised_signal), f(samples.extra_background_sr),
                                   np.concatenate([d, test]), config)  # fmt: skip
        task = clf.supervised(f(supervised_signal), d[:n_background])
        rows = len(supervised_signal) + np.arange(n_background)
        return kfold_method(key, task, rows, np.concatenate([d[n_background:], test]), config)
    if method == "idealized":
        task = clf.idealised_ad(d, f(samples.extra_background_sr))
    elif method == "cwola":
        task = clf.cwola(d, f(reference))
    elif method == "cathode":
        samples_x, samples_w = reference
        task = clf.cathode(d, f(samples_x), sample_weight=samples_w)
    else:
        raise ValueError(f"unknown method {method!r}")
    return kfold_method(key, task, np.arange(len(d)), test, config)


# --------------------------------------------------------------------------------------------
# Metrics


@jax.jit
def _all_metrics(scores, labels, min_background):
    return (
        metrics.max_sic(scores, labels, min_background=min_background),
        metrics.sic_at_eps_b(scores, labels, eps_b=1e-3),
        metrics.auc(scores, labels),
        metrics.sic_on_grid(scores, labels, jnp.asarray(GRID, jnp.float32), min_background=min_background),
    )


def evaluate(scores, labels, min_background: float) -> dict:
    """max SIC, SIC at eps_B = 1e-3, AUC and the SIC curve on :data:`GRID`, as one compiled program.

    Events labelled -1 are ignored, so every evaluation of a run uses arrays of one length (one
    compilation) and selects its events by label.
    """
    values = _all_metrics(jnp.asarray(scores, jnp.float32), jnp.asarray(labels, jnp.int32),
                          jnp.float32(min_background))  # fmt: skip
    max_sic, sic_1e3, auc, curve = (np.asarray(v) for v in values)
    return {"max_sic": float(max_sic), "sic_at_1e-3": float(sic_1e3), "auc": float(auc), "sic_curve": curve}


def quantiles(values) -> dict:
    """``{"median", "p16", "p84"}`` of a list of numbers (NaN ignored)."""
    b = metrics.band(np.asarray(values, np.float64).reshape(-1, 1))
    return {"median": float(b.median[0]), "p16": float(b.lo[0]), "p84": float(b.hi[0])}


SCALARS = ("max_sic", "sic_at_1e-3", "auc")


def summarise(evaluations: list[dict]) -> dict:
    """Quantiles of the scalar metrics over a list of :func:`evaluate` results."""
    return {k: quantiles([e[k] for e in evaluations]) for k in SCALARS}


def curves(evaluations: list[dict]) -> dict:
    """SIC and eps_B bands on the grid over a list of :func:`evaluate` results."""
    sic = np.stack([e["sic_curve"] for e in evaluations])
    with np.errstate(divide="ignore", invalid="ignore"):
        eps_b = (GRID / sic) ** 2
    return {"sic": metrics.band(sic), "eps_b": metrics.band(eps_b)}


# --------------------------------------------------------------------------------------------
# The experiment


def _generator_summary(history, config: BackgroundConfig, kind: str, n_train: int) -> dict:
    return {"config": to_json(config), "model": config.model, "trained_on": f"{n_train} sideband events",
            "mass_density": kind, "best_epoch": (np.asarray(history.best_epoch) + 1).tolist(),
            "epochs_run": np.asarray(history.epochs_run).tolist(),
            "best_val_loss": np.asarray(history.best_val_loss).tolist()}  # fmt: skip


def main(args, out: ResultsDir) -> dict:
    t0 = time.time()
    methods = parse_methods(args.methods)
    samples = analysis_samples(args.data)
    refused = unsupported(methods, samples)
    if refused:
        raise ValueError("; ".join(f"method {m!r} refused on {samples.source}: it needs {why}"
                                   for m, why in refused.items()))  # fmt: skip
    config = classifier_config(args.preset, args.quick)
    gen_config = QUICK_GENERATOR if args.quick else GENERATOR
    if args.generator_epochs:
        gen_config = gen_config._replace(train=gen_config.train._replace(epochs=args.generator_epochs))
    n_real = args.realisations or (1 if args.quick else 3)
    key = jax.random.key(args.seed)
    k_split, k_inject, k_gen, k_sample, k_train, k_check, k_test = jax.random.split(key, 7)

    split = split_pool(k_split, samples.signal_pool, args.test_signal, args.supervised_signal)
    n_b = len(samples.background_sr)
    mu = args.mu if args.n_signal is None else args.n_signal / (args.n_signal + n_b)
    real = injected_realisations(k_inject, samples.background_sr, split.injection, mu, n_real)
    n_data = real.x.shape[1]
    print(f"baselines on {samples.source}: SR background {n_b}, injected S = {real.n_signal} "
          f"(mu = {real.mu:.4%}, S/sqrt(B) = {real.s_over_sqrt_b:.2f}), {n_real} realisation(s); "
          f"held-out test signal {len(split.test)}; methods {', '.join(methods)}; "
          f"classifier {'quick' if args.quick else args.preset} {config}", flush=True)  # fmt: skip

    reference: dict[str, object] = {}
    info: dict[str, object] = {}
    if "cwola" in methods:
        sb, edges = sideband_windows(samples.sideband, samples.region, args.sb_width)
        reference["cwola"] = sb
        info["cwola_sidebands"] = {"mjj_windows_tev": [edges[:2], edges[2:]], "n_events": len(sb)}

    generator = {}
    generator_dir = Path(args.generator_dir) if args.generator_dir else out.path / "steps" / "generator"

    def cathode_samples(r: int) -> tuple[np.ndarray, np.ndarray]:
        """The generator's SR samples of realisation ``r`` and their weights (0 if non-finite)."""
        if not generator:
            t = time.time()
            gen, bkg, hist, kind = fit_background_variant(
                k_gen, samples, "sideband", gen_config, checkpoint_dir=generator_dir
            )
            generator.update(gen=gen, bkg=bkg)
            generator["summary"] = _generator_summary(hist, gen_config, kind, len(samples.sideband))
            generator["summary"]["seconds"] = round(time.time() - t, 1)
        n = int(round(args.oversample * n_data))
        k_r = jax.random.fold_in(k_sample, r)
        x = np.asarray(background_sample(generator["gen"], generator["bkg"], k_r, n), np.float64)
        finite = np.isfinite(x).all(1)
        summary = generator["summary"]
        if "n_sampled" not in summary:  # first use: diagnostics of the generated SR background
            summary["n_sampled"], summary["n_non_finite"] = n, int((~finite).sum())
            plotting.marginals_with_ratio(
                samples.background_sr,
                x[finite],
                out.figure_path("cathode_samples"),
                labels=("true SR background", "generated SR background"),
                title="CATHODE: sideband-trained generator sampled in the SR",
            )
            if args.generator_check and not args.quick:
                m = min(len(samples.background_sr), int(finite.sum()))
                check = clf.two_sample_auc(k_check, x[finite][:m, 1:], samples.background_sr[:m, 1:])
                summary["two_sample_auc_vs_true_sr_background"] = {
                    "auc": check.auc, "auc_error": check.auc_error, "n_test": check.n_test,
                    "inputs": list(INPUTS), "note": "diagnostic with truth labels: 0.5 = indistinguishable",
                }  # fmt: skip
            two_sample = summary.get("two_sample_auc_vs_true_sr_background", {}).get("auc")
            print(f"  background generator: {summary['epochs_run']} epochs, best {summary['best_epoch']} "
                  f"({summary['seconds']} s); two-sample AUC generated vs true SR background: "
                  f"{two_sample}", flush=True)  # fmt: skip
            (out.path / "generator.json").write_text(json.dumps(to_json(summary), indent=2))
        if not finite.all():
            print(f"  {int((~finite).sum())} non-finite generated events get weight 0", flush=True)
        return np.where(finite[:, None], x, 0.0), finite.astype(np.float32)

    # held-out events: the test signal, and on the toy an independent SR background sample
    test_bkg = np.zeros((0, 5))
    if samples.is_toy and args.test_background > 0:
        region = (samples.region.lo, samples.region.hi)
        test_bkg = np.asarray(toy.background_sample(k_test, args.test_background, region=region), np.float64)
    heldout = np.concatenate([split.test, test_bkg])
    n_eval = n_data + len(heldout)
    results_by_method: dict[str, list[dict]] = {m: [] for m in methods}
    for r in range(n_real):
        data = real.x[r]
        for method in methods:
            step_config = {"method": method, "realisation": r, "source": samples.source, "seed": args.seed,
                           "n_signal": real.n_signal, "classifier": config, "n_test": len(split.test),
                           "n_heldout": len(heldout), "n_supervised": len(split.supervised),
                           "generator": gen_config if method == "cathode" else None,
                           "oversample": args.oversample if method == "cathode" else None,
                           "sb_width": args.sb_width if method == "cwola" else None}  # fmt: skip
            t = time.time()

            def compute(method=method, r=r, data=data):
                ref = cathode_samples(r) if method == "cathode" else reference.get(method)
                k = jax.random.fold_in(jax.random.fold_in(k_train, r), METHODS.index(method))
                return train_method(method, k, data, n_b, heldout, split.supervised, samples, ref, config)

            like = lambda: {"scores": np.zeros(n_eval, np.float32),
                            "runs": np.zeros((config.n_runs, n_eval), np.float32),
                            "history": np.zeros(2, np.float32)}  # fmt: skip
            res = out.step(f"{method}_r{r}", step_config, compute, like)
            res = jax.tree.map(np.asarray, res)
            results_by_method[method].append(res)
            print(f"  realisation {r} {method}: {time.time() - t:.0f} s (best epoch {res['history'][0]:.0f}, "
                  f"epochs run {res['history'][1]:.0f})", flush=True)  # fmt: skip

    # ---- evaluation
    # one layout for every evaluation: the N data events, then the held-out test signal
    n_test, n_tb = len(split.test), len(test_bkg)
    data_labels = np.concatenate([real.label, np.full(n_test + n_tb, -1, np.int32)])
    if n_tb:  # independent test signal and test background
        heldout_labels = np.concatenate([np.full(n_data, -1, np.int32), np.ones(n_test, np.int32),
                                         np.zeros(n_tb, np.int32)])  # fmt: skip
    else:  # test signal and the data's background (out-of-fold)
        heldout_labels = np.concatenate([np.zeros(n_b, np.int32), np.full(real.n_signal, -1, np.int32),
                                         np.ones(n_test, np.int32)])  # fmt: skip
    mb = args.min_background
    per_method, bands, data_bands = {}, {}, {}
    for method in methods:
        held = [evaluate(res["scores"], heldout_labels, mb) for res in results_by_method[method]]
        on_data = [evaluate(res["scores"], data_labels, mb) for res in results_by_method[method]]
        singles = [evaluate(run, heldout_labels, mb)
                   for res in results_by_method[method] for run in res["runs"]]  # fmt: skip
        per_method[method] = {
            **summarise(held),
            "data": summarise(on_data),
            "single_runs": summarise(singles),
            "per_realisation": {k: [e[k] for e in held] for k in SCALARS},
            "best_epoch_median": [float(res["history"][0]) for res in results_by_method[method]],
            "epochs_run_max": [float(res["history"][1]) for res in results_by_method[method]],
        }
        bands[method], data_bands[method] = curves(held), curves(on_data)

    optimal, refs = {}, {}
    if samples.is_toy:
        params, region = toy_signal_params(samples.source), (samples.region.lo, samples.region.hi)
        for name, fn, label in (("optimal", metrics.toy_optimal_scores, "optimal (exact LR, with mjj)"),
                                ("optimal_features", metrics.toy_optimal_feature_scores,
                                 "optimal on the 4 inputs (exact LR)")):  # fmt: skip
            score = lambda x, fn=fn: fn(jnp.asarray(x, jnp.float32), params, region)
            scores = [score(np.concatenate([real.x[r], heldout])) for r in range(n_real)]
            held = evaluate(scores[0], heldout_labels, mb)  # the same events in every realisation
            on_data = [evaluate(s, data_labels, mb) for s in scores]
            optimal[name] = {**{k: held[k] for k in SCALARS}, "data": summarise(on_data), "label": label}
            refs[label] = held["sic_curve"]
            refs[label + " eps_B"] = (GRID / held["sic_curve"]) ** 2
        for method in methods:
            for name in optimal:
                ms = per_method[method]["max_sic"]
                per_method[method][f"fraction_of_{name}"] = {
                    q: (v / optimal[name]["max_sic"] if v is not None else None) for q, v in ms.items()
                }
            per_method[method]["fraction_of_optimal_auc"] = per_method[method]["auc"]["median"] / optimal[
                "optimal_features"]["auc"]  # fmt: skip

    # ---- figures
    kind, _, where = samples.source.partition(":")
    source = samples.source if len(samples.source) <= 50 else f"{kind}:.../{Path(where).name}"
    title = (f"{source}\nS = {real.n_signal} (mu = {real.mu:.2%}, "
             f"S/sqrt(B) = {real.s_over_sqrt_b:.2f}), {n_real} realisation(s)")  # fmt: skip
    sic_refs = {k: v for k, v in refs.items() if not k.endswith("eps_B")}
    roc_refs = {k[: -len(" eps_B")]: v for k, v in refs.items() if k.endswith("eps_B")}
    labelled = lambda b, key: {LABELS[m]: b[m][key] for m in methods}
    plotting.sic_curves(
        GRID,
        labelled(bands, "sic"),
        out.figure_path("sic"),
        title=title + "\nheld-out signal vs out-of-fold SR background",
        references=sic_refs,
    )
    plotting.roc_curves(
        GRID,
        labelled(bands, "eps_b"),
        out.figure_path("roc"),
        title=title + "\nheld-out signal vs out-of-fold SR background",
        references=roc_refs,
    )
    plotting.sic_curves(GRID, labelled(data_bands, "sic"), out.figure_path("sic_data"),
                        title=title + "\nSR data with truth labels (out-of-fold)")  # fmt: skip

    generator_info = None
    if "cathode" in methods and (out.path / "generator.json").exists():
        generator_info = json.loads((out.path / "generator.json").read_text())
    evaluation = {
        "primary": "heldout",
        "heldout": {
            "signal": f"{len(split.test)} held-out SR signal events (never injected, never trained on)",
            "background": (
                f"{n_tb} independent SR background events drawn from the toy (no model saw them)"
                if n_tb
                else f"the {n_b} SR background events of the data, each scored only by "
                "models that never saw it (out-of-fold for k-fold methods; supervised on a source "
                "with an independent background sample never trains on the data)"
            ),  # fmt: skip
        },
        "data": f"the SR data of each realisation ({n_b} background + {real.n_signal} injected signal) "
        "with truth labels, every event scored out-of-fold",
        "min_background": mb,
        "quantiles": "median, p16, p84 over realisations of the ensemble scores; single_runs over the "
        "individual classifier runs",
    }
    extra = samples.extra_background_sr
    supervised_training = f"{len(split.supervised)} signal vs " + (
        f"{len(extra)} independent SR background events (one ensemble)"
        if extra is not None
        else f"the {n_b} SR data background events (k-fold)"
    )
    idealized_training = (
        None if extra is None else f"SR data vs {len(extra)} independent SR background events"
    )
    results = {
        "experiment": "baselines",
        "source": samples.source,
        "methods": per_method,
        "optimal": optimal or None,
        "preset": "quick" if args.quick else args.preset,
        "classifier": config,
        "classifier_inputs": list(INPUTS),
        "injection": {"mu_requested": args.mu if args.n_signal is None else None,
                      "n_signal_requested": args.n_signal, "mu": real.mu, "n_signal": real.n_signal,
                      "n_background_sr": n_b, "s_over_sqrt_b": real.s_over_sqrt_b, "realisations": n_real,
                      "injection_pool": len(split.injection)},  # fmt: skip
        "evaluation": evaluation,
        "supervised_training": supervised_training if "supervised" in methods else None,
        "idealized_training": idealized_training if "idealized" in methods else None,
        "cathode_oversample": args.oversample if "cathode" in methods else None,
        "background_generator": generator_info,
        "curves": {"eps_s": GRID, **{m: {"sic_median": bands[m]["sic"].median, "sic_p16": bands[m]["sic"].lo,
                                         "sic_p84": bands[m]["sic"].hi} for m in methods}},
        **info,
    }  # fmt: skip
    out.write_results(results)
    print(f"done in {time.time() - t0:.0f} s; max SIC (held-out eval, median [p16, p84]):", flush=True)
    for method in methods:
        s = per_method[method]
        line = "  ".join(f"{k} {s[k]['median']:.3f} [{s[k]['p16']:.3f}, {s[k]['p84']:.3f}]" for k in SCALARS)
        frac = (
            (
                f"  ({s['fraction_of_optimal_features']['median']:.0%} of the 4-input optimum, "
                f"{s['fraction_of_optimal']['median']:.0%} of the optimum with mjj)"
            )
            if optimal
            else ""
        )
        print(f"  {method:>10}: {line}{frac}", flush=True)
    for name, o in optimal.items():
        print(f"  {name:>10}: " + "  ".join(f"{k} {o[k]:.3f}" for k in SCALARS), flush=True)
    return results


def build_parser():
    parser = experiment_parser(
        "baselines",
        "Anomaly-detection baselines (supervised, idealised AD, CWoLa, "
        "CATHODE): max SIC, SIC at eps_B = 1e-3, AUC with bands.",
    )
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated subset of {', '.join(METHODS)} (default: all)",
    )
    parser.add_argument("--mu", type=float, default=0.006, help="injected S/(S+B) in the SR (default 0.006)")
    parser.add_argument(
        "--n-signal",
        type=int,
        default=None,
        help="inject exactly this many SR signal events (overrides --mu)",
    )
    parser.add_argument(
        "--realisations",
        type=int,
        default=None,
        help="data realisations (different injected events and trainings); default 3, quick 1",
    )
    parser.add_argument(
        "--preset",
        choices=("default", "reference"),
        default="default",
        help="classifier: default (3x64, <=30 epochs, 5 runs x 5 folds) or reference (CATHODE: "
        "3x64, 100 epochs, batch 128, 10 runs x 5 folds)",
    )
    parser.add_argument(
        "--min-background",
        type=float,
        default=20.0,
        help="max SIC only over cuts keeping at least this many background events (default 20)",
    )
    parser.add_argument(
        "--test-signal",
        type=int,
        default=20000,
        help="held-out test signal events (at most a third of the pool; default 20000)",
    )
    parser.add_argument(
        "--supervised-signal",
        type=int,
        default=20000,
        help="signal events training the supervised classifier (default 20000)",
    )
    parser.add_argument(
        "--oversample",
        type=float,
        default=4.0,
        help="CATHODE generator samples per SR data event (default 4)",
    )
    parser.add_argument(
        "--sb-width",
        type=float,
        default=0.2,
        help="CWoLa sideband windows: this many TeV on each side of the SR; <= 0 uses all "
        "sideband events (default 0.2)",
    )
    parser.add_argument("--no-generator-check", dest="generator_check", action="store_false",
                        help="skip the two-sample classifier test of the CATHODE generator against the true "
                             "SR background (a diagnostic; skipped in --quick)")  # fmt: skip
    parser.add_argument("--test-background", type=int, default=200000,
                        help="toy only: independent SR background events for the held-out evaluation "
                             "(default 200000; 0 uses the data's background, out-of-fold)")  # fmt: skip
    parser.add_argument("--generator-dir", default=None,
                        help="checkpoint directory of the CATHODE generator (default OUT/steps/generator); "
                             "runs on the same source, seed and generator config can share one")  # fmt: skip
    parser.add_argument(
        "--generator-epochs",
        type=int,
        default=None,
        help="override the CATHODE generator's epochs (default 60)",
    )
    return parser


def cli(argv: list[str] | None = None) -> int:
    return run_experiment(main, build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(cli())
