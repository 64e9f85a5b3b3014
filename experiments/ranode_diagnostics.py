"""Where an R-ANODE ``mu_hat`` comes from: the learned signal shape held against the truth labels.

For every injection (``mu = 0`` always added) the data realisations of ``experiments/mu_scan.py``
(the same ``--seed``, ``--injections`` and ``--realisations`` give the same injected events) are
measured with R-ANODE in the learned mode, and the held-out ratios ``r = p_S / p_B`` of the
learned shape are split by the truth labels:

- ``spurious_mu_hat``: the held-out fit on the true background events alone, i.e. the signal that
  the background model's misfit fakes under the learned shape (0 where ``p_B`` is right);
- ``background_mean_ratio``: the mean of ``r`` over the background events, 1 when ``p_B`` is right
  (the learned ``p_S`` integrates to one under it);
- ``background_median_ratio``: what the flow keeps of a background-like part in its "signal".
  The mixture likelihood is flat along ``(w, p_S) -> (w / lambda, lambda p_S + (1 - lambda) p_B)``,
  so such a part comes with a larger ``w`` and a larger ``mu_hat`` (``mu_true / lambda``); the
  learned ``w`` and ``--w-init`` / ``--w-penalty`` (:class:`gbijax.inference.RanodeConfig`) show it;
- ``w_learned`` (mean over the flows), ``mu_hat`` and its 68% and 95% intervals;
- ``template_*``: the same held-out fit with the signal shape *known*: flows trained on signal
  pool events that no realisation of the injection received
  (:func:`gbijax.inference.fit_signal_template`, ``--template-events``), with the same background
  density. Where the template recovers ``mu`` and the learned shape does not, the error is the
  learned shape's, not the background model's.

    python experiments/ranode_diagnostics.py --data cathode:../shared/data/lhco/cathode \\
        --background-variant sr_truth --sr-truth-folds 3 --background-ensemble 8 --n-seeds 4 \\
        --n-bootstrap 0 --batch-size 2048 --segment-epochs 5 --injections 0.003 --realisations 2 \\
        --out results/ranode_diagnostics

Writes ``results.json`` (per injection: the medians over realisations and the per-realisation
values). The background model and every injection's fits are resumable steps.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import gbijax  # noqa: F401  (sets the XLA flags before JAX starts)
from gbijax.experiment import experiment_parser, progress, run_experiment
from gbijax.inference import (
    fit_mixture,
    fit_ranode_realisations,
    fit_signal_template,
    ranode_inputs,
    realisation_keys,
    signal_template_log_prob,
)
from gbijax.pipeline import BACKGROUND_VARIANTS, analysis_samples, injected_realisations

sys.path.insert(0, str(Path(__file__).parent))
from mu_scan import (  # noqa: E402
    _subsample,
    add_background_arguments,
    add_ranode_arguments,
    background_setup,
    parse_injections,
    ranode_config,
    ranode_step_config,
    realisations_log_pb,
)

FIELDS = ("mu_hat", "lo68", "hi68", "lo95", "hi95", "w_learned", "spurious_mu_hat", "background_mean_ratio",
          "background_median_ratio", "signal_median_ratio")  # fmt: skip
TEMPLATE_FIELDS = ("template_mu_hat", "template_lo95", "template_hi95", "template_z")


def build_parser() -> argparse.ArgumentParser:
    parser = experiment_parser(
        "ranode_diagnostics", "R-ANODE's held-out signal shape split by the truth labels, per injection."
    )
    parser.add_argument("--background-variant", choices=BACKGROUND_VARIANTS, default=None,
                        help="background model (default: exact for the toy, sideband otherwise)")  # fmt: skip
    parser.add_argument("--injections", default=None, help="comma-separated signal fractions (0 is added)")
    parser.add_argument("--realisations", type=int, default=2, help="data realisations per injection")
    parser.add_argument("--max-sr-background", type=int, default=0,
                        help="use a random subset of this many SR background events (0: all)")  # fmt: skip
    parser.add_argument("--template-events", type=int, default=30_000,
                        help="signal pool events (not injected) that train the known-shape template "
                             "(0: no template fit)")  # fmt: skip
    add_background_arguments(parser)
    add_ranode_arguments(parser)
    return parser


def template_fit(key, config, coords, pool: np.ndarray, injected: np.ndarray, n_events: int, u, log_pb_u):
    """The held-out fit of every realisation with a signal template trained on pool events not injected.

    Args:
        key: PRNG key (choice of the template's events, its training).
        config: the :class:`gbijax.inference.RanodeConfig` whose flow, training and seeds it uses.
        coords: the signal coordinates; pool: ``(P, 5)`` signal pool events.
        injected: pool rows injected into any realisation (left out of the template's training).
        n_events: at most this many events train the template.
        u, log_pb_u: ``(R, N, 5)`` realisations in signal coordinates and their ``(R, N)`` background
            log-densities there (:func:`gbijax.inference.ranode_inputs`).

    Raises:
        ValueError: fewer than 100 pool events left after the injected ones.
    """
    free = np.setdiff1d(np.arange(len(pool)), injected)
    if len(free) < 100:
        raise ValueError(f"the signal template needs pool events that were not injected: {len(free)} left of "
                         f"{len(pool)}; use fewer realisations or a smaller injection")  # fmt: skip
    k_pick, k_train = jax.random.split(key)
    picked = free[np.asarray(jax.random.permutation(k_pick, len(free)))[:n_events]]
    u_signal, _ = ranode_inputs(coords, jnp.asarray(pool[picked]), jnp.zeros(len(picked)))
    params = fit_signal_template(k_train, u_signal, config)
    log_ratio = jax.vmap(lambda uu: signal_template_log_prob(config, params, uu))(u) - log_pb_u
    res = jax.vmap(fit_mixture)(log_ratio)
    return {"template_mu_hat": res.mu_hat, "template_lo95": res.interval_95.lo,
            "template_hi95": res.interval_95.hi, "template_z": res.z}  # fmt: skip


def shape_diagnostics(log_ratio: np.ndarray, n_background: int) -> dict:
    """Per realisation: held-out ratios ``(R, N)``, background ``[:n_b]`` and signal ``[n_b:]``, apart."""
    is_background = (jnp.arange(log_ratio.shape[1]) < n_background).astype(jnp.float32)
    spurious = jax.vmap(lambda lr: fit_mixture(lr, is_background).mu_hat)(jnp.asarray(log_ratio))
    ratio = np.exp(np.minimum(log_ratio, 80.0))
    signal = ratio[:, n_background:]
    return {
        "spurious_mu_hat": np.asarray(spurious),
        "background_mean_ratio": ratio[:, :n_background].mean(axis=1),
        "background_median_ratio": np.median(ratio[:, :n_background], axis=1),
        "signal_median_ratio": np.median(signal, axis=1) if signal.shape[1] else np.full(len(ratio), np.nan),
    }


def main(args: argparse.Namespace, out) -> None:
    config = ranode_config(args)
    if config.mode != "learned":
        raise ValueError("the diagnostics read the learned mode's held-out ratios: --mode learned")
    if args.realisations < 1:
        raise ValueError("--realisations must be >= 1")
    samples = analysis_samples(args.data)
    variant = args.background_variant or ("exact" if samples.is_toy else "sideband")
    k_sub, k_bkg, k_inj, k_fit = jax.random.split(jax.random.key(args.seed), 4)  # as in mu_scan
    samples = samples._replace(background_sr=_subsample(k_sub, samples.background_sr, args.max_sr_background))
    background, log_pb_bkg, model, coords, _ = background_setup(args, out, samples, variant, k_bkg)
    n_b = len(background)
    pool = samples.signal_pool
    fields = FIELDS + (TEMPLATE_FIELDS if args.template_events else ())
    rows = []
    for i, mu in enumerate(progress(parse_injections(args.injections, args.quick), "injections")):
        real = injected_realisations(jax.random.fold_in(k_inj, i), background, pool, mu,
                                     args.realisations)  # fmt: skip
        log_pb = realisations_log_pb(real, log_pb_bkg, samples, model, jax.random.fold_in(k_inj, 10_000 + i))

        def compute(real=real, log_pb=log_pb, i=i):
            u, log_pb_u = ranode_inputs(coords, real.x, log_pb)
            keys = realisation_keys(jax.random.fold_in(k_fit, i), args.realisations)
            res = fit_ranode_realisations(keys, u, log_pb_u, jnp.ones(log_pb.shape, jnp.float32), config)
            measured = {"mu_hat": res.mu_hat, "lo68": res.interval_68.lo, "hi68": res.interval_68.hi,
                        "lo95": res.interval_95.lo, "hi95": res.interval_95.hi,
                        "w_learned": jnp.mean(res.w_learned, axis=(1, 2))}  # fmt: skip
            found = {**measured, **shape_diagnostics(np.asarray(res.log_ratio, np.float64), n_b)}
            if args.template_events:
                k_template = jax.random.fold_in(k_fit, 20_000 + i)
                found |= template_fit(k_template, config, coords, pool, real.pool_index.ravel(),
                                      args.template_events, u, log_pb_u)  # fmt: skip
            return {k: jnp.asarray(found[k], jnp.float32) for k in fields}

        template = lambda: {k: jnp.zeros(args.realisations, jnp.float32) for k in fields}
        step_config = {"variant": variant, "data": args.data, "seed": args.seed, "n_b": n_b, "mu": mu,
                       "realisations": args.realisations, "ranode": ranode_step_config(config),
                       "template_events": args.template_events}  # fmt: skip
        found = {k: np.asarray(v) for k, v in out.step(f"mu_{i:02d}", step_config, compute, template).items()}
        median = {k: float(np.nanmedian(v)) if np.isfinite(v).any() else None for k, v in found.items()}
        row = {"mu_injected": mu, "mu_true": real.mu, "n_signal": real.n_signal, "median": median,
               "per_realisation": {k: v.tolist() for k, v in found.items()}}  # fmt: skip
        rows.append(row)
        print(f"mu_true {real.mu:.5f}: mu_hat {median['mu_hat']:.5f}, w learned {median['w_learned']:.5f}, "
              f"spurious (background events only) {median['spurious_mu_hat']:.5f}, r over background: mean "
              f"{median['background_mean_ratio']:.4f}, median {median['background_median_ratio']:.4f}"
              + (f"; known shape: mu_hat {median['template_mu_hat']:.5f}" if args.template_events else ""),
              flush=True)  # fmt: skip
    out.write_results({"background_variant": variant, "data": args.data, "n_background": n_b,
                       "ranode_config": config._asdict(), "injections": rows})  # fmt: skip
    print(f"results in {out.path}")


if __name__ == "__main__":
    sys.exit(run_experiment(main, build_parser()))
