"""Calibration on the analytic toy: coverage, bias, width and significance over pseudo-experiments.

``N`` independent toy pseudo-experiments of ``n`` signal-region events each (signal fraction
``mu``; :func:`gbijax.data.toy.mixture_sample`, one key each, vmapped) are measured with the
chosen method and, on the same pseudo-experiments, with the exact-likelihood oracle. R-ANODE
uses the exact toy background density, so the study isolates the learned signal model:

    python experiments/coverage.py --method ranode --s-over-sqrt-b 3 --pseudo 200 --out results/cov_ranode_3
    python experiments/coverage.py --method oracle --mu 0.02 --pseudo 1000 --out results/cov_oracle

Writes ``results.json`` with, for the method and for the oracle, ``coverage68``,
``coverage95`` (fraction of intervals containing ``mu``, binomial errors), ``bias``,
``median_width68``, the median ``z`` and more (:func:`gbijax.inference.summarize_measurements`),
plus the ratios to the oracle (``width68_ratio``, ``z_ratio``; goal at ``S/sqrt(B) = 3``: width
<= 1.3 and Z >= 0.8 times the oracle's), ``measurements.npz`` (every pseudo-experiment) and
``coverage.png``. R-ANODE pseudo-experiments are measured in resumable chunks. With PAWS,
``--paws-asimov N`` also fits the Asimov data set (``paws_asimov`` in ``results.json``): the
masses the learned ratio finds on average and ``-2 Delta l`` of the truth, i.e. how far a trained
classifier moves the contours (:func:`asimov_check`); ``--paws-closure N`` corrects every
pseudo-experiment by its own closure test, which needs no truth (N background events plus N/4 signal
events simulated at its fitted masses, fitted again: :func:`closure_in_chunks`), and reports the
corrected coverage as ``paws_closure`` in ``results.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import gbijax  # noqa: F401  (sets the XLA flags before JAX starts)
from gbijax import plotting
from gbijax.data import DEFAULT_SR, fit_preprocessing, toy
from gbijax.data._sources import toy_signal_params
from gbijax.experiment import ResultsDir, experiment_parser, run_experiment
from gbijax.inference import (
    Measurements,
    PawsClosure,
    compare_to_oracle,
    fit_paws,
    mixture_asimov_weights,
    paws_landscape,
    signal_coordinates,
    summarize_measurements,
)

sys.path.insert(0, str(Path(__file__).parent))
from mu_scan import (  # noqa: E402
    add_paws_arguments,
    add_ranode_arguments,
    closure_events,
    closure_in_chunks,
    closure_report,
    describe_closure,
    measure_in_chunks,
    paws_kappa_events,
    paws_options,
    paws_setup,
    ranode_config,
    ranode_step_config,
)

N_REFERENCE = 100_000  # background events that fix the signal coordinates
PAWS_TRAIN_EVENTS = 80_000  # the PAWS classifier's background class; its kappa events are drawn on top


def mu_for_significance(s_over_sqrt_b: float, n: int) -> float:
    """The ``mu`` with ``S/sqrt(B) = mu n / sqrt((1 - mu) n)`` for ``n`` events.

    >>> round(mu_for_significance(3.0, 4000), 5)
    0.04633
    """
    s2 = s_over_sqrt_b**2
    return float((-s2 + np.sqrt(s2 * s2 + 4.0 * n * s2)) / (2.0 * n))


def build_parser() -> argparse.ArgumentParser:
    parser = experiment_parser(
        "coverage", "Coverage, bias, width and Z of a mu measurement on toy pseudo-experiments."
    )
    parser.add_argument("--method", choices=("oracle", "ranode", "paws"), required=True)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--mu", type=float, help="true signal fraction S/(S+B)")
    which.add_argument("--s-over-sqrt-b", type=float, help="set mu from the expected S/sqrt(B) instead")
    parser.add_argument("--pseudo", type=int, default=200, help="pseudo-experiments (default 200)")
    parser.add_argument(
        "--n-events", type=int, default=4000, help="signal-region events per pseudo-experiment"
    )
    add_ranode_arguments(parser)
    add_paws_arguments(parser)
    parser.add_argument("--paws-asimov", type=int, default=0,
                        help="PAWS: also fit the Asimov data set (this many background events plus a quarter "
                             "as many signal events, weighted to --n-events at mu): the ratio's pseudo-true "
                             "masses and -2 Delta l of the truth: the classifier's mass bias (0: off)")
    return parser


def asimov_check(paws, key, n_background: int, mu: float, n: int, signal, region) -> dict:
    """The PAWS fit of the Asimov data set: where the ratio puts the masses, and what the truth costs.

    ``n_background`` toy background and ``n_background // 4`` signal events weighted to ``n``
    events at signal fraction ``mu`` (:func:`gbijax.inference.mixture_asimov_weights`), fitted from
    the true masses; ``q_masses_true = 2 (max l - max_mu l(mu, truth))``, which a 68% contour
    includes when it is <= 2.30.
    """
    n_background, n_signal = closure_events(n_background)
    k_b, k_s = jax.random.split(key)
    x = np.concatenate([np.asarray(toy.background_sample(k_b, n_background, region=region)),
                        np.asarray(toy.signal_sample(k_s, n_signal, signal, region))])  # fmt: skip
    weight = mixture_asimov_weights(n_background, n_signal, mu, n)
    fn, data = paws.ratio(x, region)
    truth = jnp.array([signal.m_x, signal.m_y])
    fit = fit_paws(fn, data, weight, starts=truth[None], config=paws.config)
    at_truth = paws_landscape(fn, data, truth[:1], truth[1:], weight, config=paws.config).log_likelihood
    result = {"events": [n_background, n_signal], "mu": float(fit.mu_hat), "m_x": float(fit.params.m_x),
              "m_y": float(fit.params.m_y), "m_x_offset_gev": 1e3 * (float(fit.params.m_x) - signal.m_x),
              "m_y_offset_gev": 1e3 * (float(fit.params.m_y) - signal.m_y),
              "q_masses_true": float(2 * (fit.log_likelihood_max - at_truth[0, 0]))}  # fmt: skip
    print(f"  Asimov ({n_background} + {n_signal} events): mu {result['mu']:.5f}, m_X "
          f"{result['m_x_offset_gev']:+.1f} GeV, m_Y {result['m_y_offset_gev']:+.1f} GeV from the truth; "
          f"-2 Delta l of the truth {result['q_masses_true']:.2f}", flush=True)  # fmt: skip
    return result


def closure_summary(corrected: Measurements, closure: PawsClosure, mu: float, oracle: Measurements,
                    n_background: int) -> dict:  # fmt: skip
    """``paws_closure`` of results.json: the corrected measurements' summary and the closure tests' spread."""
    summary = closure_report(corrected, closure, mu, n_background)
    return {**summary, "ratio_to_oracle": compare_to_oracle(corrected, oracle)}


def main(args: argparse.Namespace, out: ResultsDir) -> None:
    signal = toy_signal_params(args.data)
    if signal is None:
        raise ValueError("coverage needs known truth: it runs on the analytic toy only (--data toy)")
    n_pseudo = min(args.pseudo, 4) if args.quick else args.pseudo
    n = min(args.n_events, 1000) if args.quick else args.n_events
    if n_pseudo < 1 or n < 10:
        raise ValueError("need --pseudo >= 1 and --n-events >= 10")
    mu = args.mu if args.mu is not None else mu_for_significance(args.s_over_sqrt_b, n)
    if not 0.0 <= mu < 1.0:
        raise ValueError(f"--mu must be in [0, 1), got {mu}")
    region = (DEFAULT_SR.lo, DEFAULT_SR.hi)
    s_over_sqrt_b = mu * n / np.sqrt((1.0 - mu) * n)
    print(f"{n_pseudo} pseudo-experiments of {n} events, mu = {mu:.5f} (expected S = {mu * n:.1f}, "
          f"S/sqrt(B) = {s_over_sqrt_b:.2f}), method {args.method}", flush=True)  # fmt: skip

    key = jax.random.key(args.seed)
    k_data, k_fit, k_ref = jax.random.split(key, 3)
    keys = jax.vmap(lambda i: jax.random.fold_in(k_data, i))(jnp.arange(n_pseudo))
    x, label = jax.vmap(lambda k: toy.mixture_sample(k, n, mu, signal, region=region))(keys)
    x = np.asarray(x)
    step_config = {"seed": args.seed, "mu": mu, "n": n, "signal": list(signal)}
    oracle = measure_in_chunks(out, "oracle", step_config, "oracle", k_fit, x, None, None, None, None, True,
                               region, 0, "oracle", signal=signal)  # fmt: skip
    measured = {"oracle": oracle}
    config = ranode_config(args)
    if args.method == "ranode":
        ref = np.asarray(toy.background_sample(k_ref, N_REFERENCE, region=region))
        coords = signal_coordinates(fit_preprocessing(ref[:, 1:]), ref[:, 0])
        log_pb = np.asarray(jax.vmap(lambda xx: toy.background_log_prob(xx, region=region))(jnp.asarray(x)))
        chunk = args.vmap_realisations or min(n_pseudo, 8)
        measured["ranode"] = measure_in_chunks(
            out,
            "ranode",
            {**step_config, "ranode": ranode_step_config(config)},
            "ranode",
            k_fit,
            x,
            log_pb,
            None,
            coords,
            config,
            True,
            region,
            chunk,
            "R-ANODE",
        )

    paws = None
    if args.method == "paws":
        k_bkg, k_paws = jax.random.split(k_ref)
        n_background = PAWS_TRAIN_EVENTS + paws_kappa_events(args)
        background = np.asarray(toy.background_sample(k_bkg, n_background, region=region))
        paws = paws_setup(args, k_paws, None if args.paws_ratio == "exact" else background)
        paws_step = {**step_config, "paws": paws.config._asdict(), "options": paws_options(args)}
        measured["paws"] = measure_in_chunks(
            out, "paws", paws_step, "paws",
            k_fit, x, None, None, None, config, True, region, args.vmap_realisations or min(n_pseudo, 8),
            "PAWS", paws, signal,
        )  # fmt: skip

    closure = None
    if paws is not None and args.paws_closure > 0:
        n_closure = min(args.paws_closure, 20_000) if args.quick else args.paws_closure
        chunk = args.vmap_realisations or min(n_pseudo, 8)
        k_pool, k_signal = jax.random.split(jax.random.fold_in(k_ref, 3))
        pool = np.asarray(toy.background_sample(k_pool, n_closure, region=region))
        corrected, tests = closure_in_chunks(out, "paws_closure", paws, paws_step, k_signal, x, None,
                                              measured["paws"], pool, region, chunk, tuple(signal),
                                              args.paws_closure_jacobian)
        measured["paws_closure"] = corrected
        closure = closure_summary(corrected, tests, mu, oracle, n_closure)
        print(f"  closure-corrected PAWS: {describe_closure(closure)}", flush=True)

    asimov = None
    if paws is not None and args.paws_asimov > 0:
        asimov = asimov_check(paws, jax.random.fold_in(k_ref, 2), args.paws_asimov, mu, n, signal, region)
    summaries = {name: summarize_measurements(m, mu) for name, m in measured.items()}
    results = {
        "method": args.method,
        "mu_true": mu,
        "n_events": n,
        "pseudo": n_pseudo,
        "s_over_sqrt_b": float(s_over_sqrt_b),
        "n_signal_mean": float(np.mean(np.asarray(label).sum(1))),
        "background": "exact toy density",
        "signal": signal._asdict(),
        "ranode_config": config._asdict() if args.method == "ranode" else None,
        "paws_config": None if paws is None else {**paws.config._asdict(), "ratio": args.paws_ratio,
                                                  "classifier_background": "true toy SR background",
                                                  "kappa_events": paws_kappa_events(args),
                                                  "options": paws_options(args)},
        "paws_asimov": asimov,
        "paws_closure": closure,
    }  # fmt: skip
    main_summary = summaries[args.method]
    results.update(
        {
            k: main_summary.get(k)
            for k in (
                "coverage68",
                "coverage68_err",
                "coverage95",
                "coverage95_err",
                "bias",
                "bias_err",
                "relative_bias",
                "median_width68",
                "z",
                "mass_contour_coverage68",
                "mass_contour_coverage68_err",
                "mass_contour_coverage95",
                "mass_contour_coverage95_err",
            )
        }
    )
    results["summary"] = main_summary
    results["oracle"] = summaries["oracle"]
    if args.method != "oracle":
        results["ratio_to_oracle"] = compare_to_oracle(measured[args.method], oracle)
    np.savez(
        out.path / "measurements.npz",
        **{f"{name}_{f}": np.asarray(v) for name, m in measured.items() for f, v in m._asdict().items()},
    )
    for name, s in summaries.items():
        shape = f", shape std (median) {s['shape_std']['median']:.5f}" if "shape_std" in s else ""
        print(f"  {name:7s}: coverage68 {s['coverage68']:.3f} +- {s['coverage68_err']:.3f}, coverage95 "
              f"{s['coverage95']:.3f} +- {s['coverage95_err']:.3f}, bias {s['bias']:+.5f}, "
              f"median width68 {s['median_width68']:.5f}, median Z {s['z']:.2f}, pull std "
              f"{s['pull']['std']:.2f} (16-84%: {s['pull']['robust_std']:.2f}){shape}",
              flush=True)  # fmt: skip
    if "mass_contour_coverage68" in main_summary:
        s = main_summary
        print(f"  (m_X, m_Y) contour coverage: 68% {s['mass_contour_coverage68']:.3f} +- "
              f"{s['mass_contour_coverage68_err']:.3f}, 95% {s['mass_contour_coverage95']:.3f} +- "
              f"{s['mass_contour_coverage95_err']:.3f}", flush=True)  # fmt: skip
    if "ratio_to_oracle" in results:
        r = results["ratio_to_oracle"]
        print(f"  ratio to oracle: width68 {r['width68_ratio']:.3f}, Z {r['z_ratio']:.3f}", flush=True)
    names = {"oracle": "oracle", "ranode": "R-ANODE", "paws": "PAWS",
             "paws_closure": "PAWS, closure-corrected"}  # fmt: skip
    plotting.coverage_figure(
        {names[k]: m._asdict() for k, m in measured.items()}, mu, {names[k]: s for k, s in summaries.items()},
        out.figure_path("coverage"),
        title=f"toy, {n_pseudo} pseudo-experiments of {n} events, $\\mu$ = {mu:.4f} (S/$\\sqrt{{B}}$ = "
              f"{s_over_sqrt_b:.2f})",
    )  # fmt: skip
    out.write_results(results)
    print(f"results in {out.path}", flush=True)


if __name__ == "__main__":
    sys.exit(run_experiment(main, build_parser()))
