"""Benchmark: one PAWS fit with a trained classifier, kappa(theta) evaluated directly vs tabulated.

A parametrised classifier (``TOY_PAWS_MLP``, SiLU, a few epochs: the cost does not depend on how
well it is trained) on the reference's 78 mass points; ``kappa(theta) = 1 / E_B[f / (1 - f)]`` on
``--kappa-events`` background events pooled with ``--kappa-signal`` simulated signal events per
point (``PawsClassifier.kappa_sample``). ``fit_paws`` (coarse landscape, random starts, polish,
profile intervals) on ``--events`` toy signal-region events at ``S/sqrt(B) = 1``, with kappa
evaluated on the whole pool at every theta, then with it tabulated once on 10 GeV nodes
(``PawsClassifier.kappa_table``); the table's build time and the two fits' results are recorded.

    python -m benchmarks.bench_paws_fit [--events 4000] [--kappa-events 20000] [--kappa-signal 250] \
        [--repeats 3]

Writes ``benchmarks/results/paws_fit.json``.
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

import gbijax  # noqa: F401  (sets the XLA CPU flag before JAX starts)
from benchmarks._common import peak_rss_mb, timed, write_json
from gbijax.classifiers import TOY_PAWS_MLP
from gbijax.data import toy
from gbijax.inference import REFERENCE_PAWS_GRID, PawsConfig, fit_paws, toy_signal_grid, train_toy_paws

SR = (3.3, 3.7)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--kappa-events", type=int, default=20_000)
    parser.add_argument("--kappa-signal", type=int, default=250)
    parser.add_argument("--table-step", type=float, default=0.01, help="node spacing in TeV")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    keys = jax.random.split(jax.random.key(0), 5)
    background = toy.background_sample(keys[0], 40_000 + args.kappa_events, region=SR)
    config = TOY_PAWS_MLP._replace(train=TOY_PAWS_MLP.train._replace(epochs=3))
    trained = train_toy_paws(keys[1], background[args.kappa_events :], 300, config, grid=REFERENCE_PAWS_GRID)
    signal = toy_signal_grid(keys[2], args.kappa_signal, trained.points)
    pool = trained.kappa_sample(background[: args.kappa_events], signal)
    n = args.events
    mu = (np.sqrt(1.0 + 4.0 * n) - 1.0) / (2.0 * n)  # S/sqrt(B) = mu n / sqrt((1 - mu) n) = 1
    x = toy.mixture_sample(keys[3], args.events, mu, region=SR)[0]
    fit_config = PawsConfig(mass_bounds=trained.mass_bounds, n_starts=6)
    build = timed(lambda: trained.kappa_table(pool, args.table_step).coefficients, args.repeats)
    table = trained.kappa_table(pool, args.table_step)
    fits = {}
    for name, kappa in (("direct", pool), ("table", table)):
        data = trained.ratio_data(x, kappa)
        run = lambda d=data: fit_paws(trained.log_ratio_fn, d, key=keys[4], config=fit_config)
        t = timed(lambda r=run: r().mu_hat, args.repeats)
        fit = run()
        fits[name] = {**t, "mu_hat": float(fit.mu_hat), "m_x": float(fit.params.m_x),
                      "m_y": float(fit.params.m_y), "m_y_interval": [float(fit.m_y_interval.lo),
                                                                     float(fit.m_y_interval.hi)]}  # fmt: skip
        print(name, {k: v for k, v in fits[name].items() if k != "runs_s"}, flush=True)
    payload = {"events": args.events, "kappa_pool": int(pool.x.shape[0]), "grid_points": len(trained.points),
               "table_step_tev": args.table_step, "table_nodes": int(table.coefficients.shape[0] - 2) ** 2,
               "table_build": build, "fits": fits,
               "speedup": fits["direct"]["median_s"] / fits["table"]["median_s"],
               "peak_rss_mb": peak_rss_mb()}  # fmt: skip
    print("table build", {k: v for k, v in build.items() if k != "runs_s"}, "speedup", payload["speedup"])
    write_json("paws_fit", payload)
    return payload


if __name__ == "__main__":
    main()
