"""Train the background generator ``p_B(x | m)`` and measure how well it models the SR background.

    python experiments/background.py --data toy --model flow_matching --ensemble 1 --out results/bkg_fm
    python experiments/background.py --data clustered:../shared/data/lhco/clustering_lhco/scalars \\
        --model spline_flow --out results/bkg_clustered

Variants: ``sideband`` (realistic, the default: trained on sideband background, interpolated into
the signal region; ``p_B(m)`` from the dijet-function fit to the sideband masses) and
``sr_truth`` (idealised: trained on an independent sample of true SR background).

Writes into ``--out``: ``config.json``; ``results.json`` with

- ``two_sample_auc`` (+ ``_error``): held-out AUC of a classifier (:func:`gbijax.classifiers.two_sample_auc`,
  on the five physical features) separating generated SR background (``m ~ p_B(m)``, then
  ``x ~ p_B(x | m)``) from the true SR background; 0.5 = indistinguishable.
  ``two_sample_auc_given_m`` generates at the true masses, so it tests ``p_B(x | m)`` alone;
- ``sr_nll_per_event`` (+ ``_error``): mean ``-log p_B(x | m)`` of true SR background events
  (physical units), also per ensemble member;
- ``kl_to_truth`` (+ ``_error``, toy only): mean of ``log p_true(x | m) - log p_model(x | m)``
  over true SR background, nats per event (the KL divergence of the conditional densities);
- ``train_seconds``, ``n_out_of_range`` (true SR background events outside the sideband-fitted
  preprocessing range), epochs run and best epochs;

figures ``sr_marginals.png`` (generated vs true SR background, ratio panels),
``sr_marginals_given_m.png`` and ``training_curves.png``; and checkpoints under ``steps/`` and
``checkpoints/`` (a rerun with the same arguments resumes instead of recomputing).
"""

from __future__ import annotations

import json
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from gbijax import plotting
from gbijax.background import BackgroundConfig, background_conditional_log_prob, background_sample
from gbijax.classifiers import TWO_SAMPLE, two_sample_auc
from gbijax.data import in_range, toy
from gbijax.experiment import experiment_parser, progress, run_experiment, to_json
from gbijax.pipeline import analysis_samples, fit_background_variant
from gbijax.train import TrainConfig

FULL = {
    "flow_matching": BackgroundConfig(
        model="flow_matching", hidden=(128, 128, 128), ode_steps=16,
        train=TrainConfig(epochs=20, batch_size=1024, learning_rate=2e-3, patience=8, schedule="cosine",
                          clip_norm=5.0),
    ),
    "spline_flow": BackgroundConfig(
        model="spline_flow", hidden=(64, 64), n_layers=4, n_bins=8,
        train=TrainConfig(epochs=12, batch_size=1024, learning_rate=1e-3, patience=8, schedule="cosine",
                          clip_norm=5.0),
    ),
}  # fmt: skip
"""Generator settings of a full run. ``train.epochs`` is the minimum: smaller training samples get
more epochs, up to ``MAX_EPOCHS``, so that the training takes at least ``MIN_STEPS[model]`` steps
(a spline-flow step costs about twice a flow-matching step, and its loss is not noisy)."""

MIN_STEPS = {"flow_matching": 15_000, "spline_flow": 8_000}
MAX_EPOCHS, QUICK_EPOCHS = 200, 10
SIZES = {False: {"max_train": None, "n_eval": 20_000, "n_two_sample": 200_000, "chunk": 5_000},
         True: {"max_train": 100_000, "n_eval": 4_000, "n_two_sample": 20_000, "chunk": 4_000}}  # fmt: skip
"""Events: training cap (None: all), density evaluation, two-sample test (per sample), chunking."""


def generator_config(args, n_train: int) -> BackgroundConfig:
    """The model's :data:`FULL` settings, with the epochs for ``n_train`` training events."""
    config = FULL[args.model]._replace(ensemble=args.ensemble)
    steps_per_epoch = max(int(n_train * (1 - config.val_fraction)) // config.train.batch_size, 1)
    epochs = min(MAX_EPOCHS, max(config.train.epochs, math.ceil(MIN_STEPS[args.model] / steps_per_epoch)))
    epochs = args.epochs or (QUICK_EPOCHS if args.quick else epochs)
    return config._replace(train=config.train._replace(epochs=epochs))


def _subsample(key, x, n):
    """``n`` events of ``x`` at random (all of them, shuffled, when it has fewer)."""
    return None if x is None else x[np.asarray(jax.random.permutation(key, len(x)))[:n]]


def _chunked(fn, x, chunk, axis=-1):
    """``fn(index, chunk)`` over fixed-size chunks of ``x`` (the last one padded, so it compiles
    once), concatenated along the output's event ``axis``."""
    parts = []
    for start in progress(range(0, len(x), chunk), "      chunks", total=-(-len(x) // chunk)):
        part = x[start : start + chunk]
        pad = np.concatenate([part, np.repeat(part[-1:], chunk - len(part), 0)])
        result = np.asarray(fn(start, jnp.asarray(pad, jnp.float32)))
        parts.append(np.take(result, np.arange(len(part)), axis))
    return np.concatenate(parts, axis=axis)


def _array_step(out, name, config, compute, shape):
    """:meth:`ResultsDir.step` for a single array (orbax stores pytrees, so it is wrapped)."""
    return out.step(name, config, lambda: {"a": np.asarray(compute(), np.float32)},
                    like=lambda: {"a": np.zeros(shape, np.float32)})["a"]  # fmt: skip


def _mean_err(v):
    v = np.asarray(v, np.float64)
    return float(np.mean(v)), float(np.std(v) / np.sqrt(len(v)))


def main(args, out):
    sizes = SIZES[args.quick]
    say = lambda msg: print(f"{time.time() - out.started:5.0f} s  {msg}", flush=True)
    names = ("subsample", "train", "gen", "gen_mass", "eval", "auc", "auc_given_m")
    keys = dict(zip(names, jax.random.split(jax.random.key(args.seed), len(names)), strict=True))

    say(f"[1/5] loading {args.data}")
    samples = analysis_samples(args.data)
    if sizes["max_train"] is not None:
        cap = lambda x: None if x is None else _subsample(keys["subsample"], x, sizes["max_train"])
        samples = samples._replace(sideband=cap(samples.sideband),
                                   extra_background_sr=cap(samples.extra_background_sr))  # fmt: skip
    true_sr = samples.background_sr
    kind = "true SR background" if args.variant == "sr_truth" else "sideband"
    train_events = samples.extra_background_sr if args.variant == "sr_truth" else samples.sideband
    if train_events is None:
        raise ValueError(f"{samples.source} has no {kind} sample to train the {args.variant!r} variant on")
    n_train = len(train_events)
    say(f"      {len(true_sr):,} true SR background events; training on {n_train:,} {kind} events")

    config = generator_config(args, n_train)
    out.config.update(generator=to_json(config), sizes=sizes)
    (out.path / "config.json").write_text(json.dumps(out.config, indent=2, sort_keys=True))
    step_config = {k: out.config[k] for k in ("data", "seed", "variant", "quick", "generator", "sizes")}

    say(f"[2/5] training {config.ensemble} x {config.model}, up to {config.train.epochs} epochs "
        f"(checkpoints every 10 epochs)")  # fmt: skip
    start = time.time()
    generator, bkg, hist, mass_kind = fit_background_variant(
        keys["train"], samples, args.variant, config, checkpoint_dir=out.path / "checkpoints" / "generator")
    hist = jax.tree.map(np.asarray, hist)
    train_seconds = float(_array_step(out, "train_seconds", step_config, lambda: time.time() - start, ()))
    say(f"      trained in {train_seconds:.0f} s; epochs run {hist.epochs_run.tolist()}, "
        f"best {hist.best_epoch.tolist()}")  # fmt: skip

    n_gen = min(len(true_sr), sizes["n_two_sample"])
    ref = _subsample(keys["eval"], true_sr, n_gen)
    say(f"[3/5] sampling 2 x {n_gen:,} SR background events")

    def sample(key, masses):
        fn = lambda i, m: background_sample(generator, bkg, jax.random.fold_in(key, i), len(m), m)
        return _chunked(fn, masses, sizes["chunk"], axis=0)

    gen = out.step("samples", step_config, lambda: {
        "m_from_density": sample(keys["gen"], np.asarray(bkg.mass.sample(keys["gen_mass"], n_gen))),
        "m_true": sample(keys["gen"], ref[:, 0]),
    }, like=lambda: {k: np.zeros((n_gen, 5), np.float32) for k in ("m_from_density", "m_true")})  # fmt: skip

    n_eval = min(len(true_sr), sizes["n_eval"])
    x_eval = ref[:n_eval]
    say(f"[4/5] log p_B(x | m) of {n_eval:,} true SR background events, per member")

    def member_log_prob(k):
        member = bkg._replace(params=jax.tree.map(lambda p: p[k : k + 1], bkg.params))
        fn = lambda i, x: background_conditional_log_prob(generator, member, x)
        return _chunked(fn, x_eval, sizes["chunk"])

    members = range(config.ensemble)
    log_p = _array_step(out, "log_prob", step_config, lambda: np.stack([member_log_prob(k) for k in members]),
                        (config.ensemble, n_eval))  # fmt: skip
    ensemble = np.asarray(jax.nn.logsumexp(log_p, axis=0)) - np.log(config.ensemble)  # mean of densities

    say("[5/5] two-sample classifier tests (generated vs true SR background)")
    classifier = TWO_SAMPLE._replace(train=TWO_SAMPLE.train._replace(epochs=10)) if args.quick else TWO_SAMPLE
    auc = out.step("two_sample", step_config, lambda: {
        name: np.asarray(two_sample_auc(keys[k], gen[name], ref, classifier)[:2])
        for name, k in (("m_from_density", "auc"), ("m_true", "auc_given_m"))
    }, like=lambda: {k: np.zeros(2) for k in ("m_from_density", "m_true")})  # fmt: skip

    nll, nll_err = _mean_err(-ensemble)
    outside = ~np.asarray(in_range(bkg.preprocessing, jnp.asarray(true_sr[:, 1:], jnp.float32)))
    results = {
        "data": samples.source, "model": config.model, "variant": args.variant, "ensemble": config.ensemble,
        "mass_density": mass_kind, "n_train": n_train, "n_sr_background": len(true_sr),
        "train_seconds": train_seconds, "epochs_run": hist.epochs_run, "best_epoch": hist.best_epoch,
        "best_val_loss": hist.best_val_loss, "n_two_sample": n_gen,
        "two_sample_auc": auc["m_from_density"][0], "two_sample_auc_error": auc["m_from_density"][1],
        "two_sample_auc_given_m": auc["m_true"][0], "two_sample_auc_given_m_error": auc["m_true"][1],
        "n_eval": n_eval, "sr_nll_per_event": nll, "sr_nll_per_event_error": nll_err,
        "sr_nll_per_event_members": [_mean_err(-lp)[0] for lp in log_p], "n_out_of_range": int(outside.sum()),
    }  # fmt: skip
    if samples.is_toy:
        x = jnp.asarray(x_eval, jnp.float32)
        truth = np.asarray(toy.background_features_log_prob(x[:, 1:], x[:, 0]))
        results["kl_to_truth"], results["kl_to_truth_error"] = _mean_err(truth - ensemble)
        results["kl_to_truth_members"] = [_mean_err(truth - lp)[0] for lp in log_p]
        results["sr_nll_per_event_truth"] = _mean_err(-truth)[0]
    out.write_results(results)

    label = f"{config.model} x{config.ensemble}, {args.variant}"
    plotting.marginals_with_ratio(true_sr, gen["m_from_density"], out.figure_path("sr_marginals"),
                                  title=f"SR background, {label}: m ~ p_B(m) ({mass_kind}), "
                                        f"AUC {results['two_sample_auc']:.3f}")  # fmt: skip
    plotting.marginals_with_ratio(ref, gen["m_true"], out.figure_path("sr_marginals_given_m"),
                                  title=f"SR background, {label}: at the true masses, "
                                        f"AUC {results['two_sample_auc_given_m']:.3f}")  # fmt: skip
    ylabel = "flow-matching loss" if config.model == "flow_matching" else "NLL per event (preprocessed)"
    plotting.training_curves(hist.train_loss, hist.val_loss, out.figure_path("training_curves"),
                             hist.best_epoch, ylabel=ylabel, title=label)  # fmt: skip
    shown = ("two_sample_auc", "two_sample_auc_given_m", "kl_to_truth", "sr_nll_per_event", "train_seconds")
    print("results: " + ", ".join(f"{k} = {results[k]:.4g}" for k in shown if k in results))
    return results


def parser():
    p = experiment_parser("background", __doc__.splitlines()[0])
    p.add_argument("--model", choices=sorted(FULL), default="flow_matching")
    p.add_argument("--ensemble", type=int, default=1, help="ensemble members K (trained as one vmap)")
    p.add_argument("--variant", choices=("sideband", "sr_truth"), default="sideband")
    p.add_argument("--epochs", type=int, default=None, help="override the number of training epochs")
    return p


if __name__ == "__main__":
    raise SystemExit(run_experiment(main, parser()))
