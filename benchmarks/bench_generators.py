"""Benchmark: generator sampling and log-density throughput, and the cost of fewer ODE steps.

Both families are trained briefly on the toy's sideband background (4 features given mjj), then
timed on signal-region masses: events per second of ``sample`` and ``log_prob`` (median of
several runs after compilation). For flow matching the same trained field is integrated with
RK4 at several step counts and with Euler at 100 steps (the baseline); the accuracy cost is
measured on samples x of the converged model (RK4, 128 steps) as the per-event difference
``log p_128(x) - log p_n(x)``: its mean (a KL estimate, which can come out slightly negative
because a finite-step log-density is not exactly normalised), 99th percentile and maximum of
its absolute value; the cost is network evaluations per event (4 per RK4 step, 1 per Euler
step; each log-density evaluation also carries D Jacobian-vector passes).

    python -m benchmarks.bench_generators [--events 20000] [--epochs 10]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import gbijax  # noqa: F401
from benchmarks._common import peak_device_mb, peak_rss_mb, timed, write_json
from gbijax.background import (
    BackgroundConfig,
    background_conditional_log_prob,
    background_sample,
    fit_background,
)
from gbijax.data import toy
from gbijax.generators import FlowMatchingConfig, flow_matching, mass_density_from_samples
from gbijax.train import TrainConfig

SR = (3.3, 3.7)


def _train(model: str, epochs: int, sideband, mass):
    config = BackgroundConfig(model=model, hidden=(64, 64, 64) if model == "flow_matching" else (64, 64),
                              train=TrainConfig(epochs=epochs, batch_size=512, learning_rate=2e-3,
                                                schedule="cosine"))  # fmt: skip
    return fit_background(jax.random.key(1), sideband, config, mass)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--train-events", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    everything = np.asarray(toy.background_sample(jax.random.key(0), args.train_events))
    in_sr = (everything[:, 0] > SR[0]) & (everything[:, 0] < SR[1])
    mass = mass_density_from_samples(everything[in_sr, 0], SR, bins=20)
    x_eval = toy.background_sample(jax.random.key(2), args.events, region=SR)

    throughput = {}
    for model in ("spline_flow", "flow_matching"):
        generator, bkg, _ = _train(model, args.epochs, everything[~in_sr], mass)
        sample = jax.jit(lambda key, g=generator, b=bkg: background_sample(g, b, key, args.events))
        log_prob = jax.jit(lambda x, g=generator, b=bkg: background_conditional_log_prob(g, b, x))
        t_s = timed(lambda s=sample: s(jax.random.key(3)), args.repeats)
        t_l = timed(lambda f=log_prob: f(x_eval), args.repeats)
        throughput[model] = {"sample_events_per_s": args.events / t_s["median_s"],
                             "log_prob_events_per_s": args.events / t_l["median_s"],
                             "sample": t_s, "log_prob": t_l}  # fmt: skip
        print(model, {k: round(v) for k, v in throughput[model].items() if k.endswith("per_s")}, flush=True)
        if model == "flow_matching":
            fm_params, fm_bkg = bkg.params, bkg

    # ODE step count: the same trained field at several solver settings, on its own (converged) samples
    fm_config = lambda steps, solver="rk4": FlowMatchingConfig(features=4, context=1, hidden=(64, 64, 64),
                                                               ode_steps=steps, solver=solver)  # fmt: skip
    x_model = background_sample(flow_matching(fm_config(128)), fm_bkg, jax.random.key(4), args.events)
    z, _ = gbijax.background._clipped_forward(fm_bkg.preprocessing, x_model[:, 1:])
    context = gbijax.background._context(fm_bkg, x_model[:, 0])
    settings = [("rk4", 128), ("euler", 100), ("rk4", 4), ("rk4", 6), ("rk4", 8), ("rk4", 16), ("rk4", 32)]
    log_probs, steps_rows = {}, []
    for solver, steps in settings:
        gen = flow_matching(fm_config(steps, solver))
        f = jax.jit(lambda zz, cc, g=gen: jax.vmap(g.log_prob, (0, None, None))(fm_params, zz, cc))
        t = timed(lambda f=f: f(z, context), args.repeats)
        log_probs[(solver, steps)] = jax.nn.logsumexp(f(z, context), axis=0) - jnp.log(
            jax.tree.leaves(fm_params)[0].shape[0])
        evaluations = steps * (4 if solver == "rk4" else 2 if solver == "midpoint" else 1)
        steps_rows.append({"solver": solver, "steps": steps, "network_evaluations": evaluations,
                           "log_prob_events_per_s": args.events / t["median_s"]})  # fmt: skip
    converged = log_probs[("rk4", 128)]
    for row in steps_rows:
        diff = converged - log_probs[(row["solver"], row["steps"])]
        row["mean_log_prob_difference"] = float(jnp.mean(diff))
        row["max_abs_log_prob_error"] = float(jnp.max(jnp.abs(diff)))
        row["p99_abs_log_prob_error"] = float(jnp.quantile(jnp.abs(diff), 0.99))
        print(row, flush=True)

    payload = {"events": args.events, "epochs_trained": args.epochs, "throughput": throughput,
               "flow_matching_steps": steps_rows, "peak_rss_mb": peak_rss_mb(),
               "peak_device_mb": peak_device_mb()}  # fmt: skip
    write_json("generators", payload)
    return payload


if __name__ == "__main__":
    main()
