"""Benchmark: a PAWS 100 x 100 mass landscape in one jit call, and a 1,000-pseudo-experiment coverage study.

Landscape: ``paws_landscape`` (``mu`` profiled exactly at every ``(m_X, m_Y)`` point) on
100,000 toy signal-region events (mu = 1%) with the exact toy likelihood ratio (a perfect
classifier: the cost of a classifier ratio is one MLP pass per point on top), 100 x 100 points
over the trained mass range, at several ``PawsConfig.batch_size`` (mass points vectorised
together).

Look-elsewhere toys: ``null_scan_q0``, the 12 x 12 mass scan (``mu`` profiled exactly at every
point) on ``T`` background-only toys of 20,000 events re-weighted from a 100,000-event background
sample (exact toy ratio), at several ``toy_batch_size`` (toys vectorised together); 999 toys
resolve a global Z of 3.09.

Coverage: 1,000 toy pseudo-experiments of 4,000 events measured by the exact-likelihood oracle
(``measure_oracle``: ``mu_hat``, 68/95% Wilks intervals, ``Z``) as one vmapped program, and the
same through ``sharded_vmap`` with automatic chunking (identical results, bounded memory).

    python -m benchmarks.bench_paws [--events 100000] [--grid 100] [--pseudo 1000] [--repeats 3] \
        [--lee-toys 100] [--lee-batch-sizes 1 100]

Writes ``benchmarks/results/paws.json``.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import gbijax  # noqa: F401  (sets the XLA CPU flag before JAX starts)
from benchmarks._common import peak_device_mb, peak_rss_mb, timed, write_json
from gbijax.data import toy
from gbijax.inference import (
    PawsConfig,
    measure_oracle,
    null_scan_q0,
    paws_landscape,
    toy_log_ratio,
    toy_ratio_data,
)
from gbijax.parallel import auto_chunk_size, sharded_vmap

SR = (3.3, 3.7)


def landscape(events: int, grid: int, batch_sizes: list[int], repeats: int) -> list[dict]:
    x, _ = toy.mixture_sample(jax.random.key(0), events, 0.01, region=SR)
    data = toy_ratio_data(x, SR)
    axis = jnp.linspace(0.05, 0.6, grid)
    rows = []
    for batch in batch_sizes:
        config = PawsConfig(batch_size=batch)
        t = timed(lambda c=config: paws_landscape(toy_log_ratio, data, axis, axis, config=c).log_likelihood,
                  repeats)  # fmt: skip
        best = paws_landscape(toy_log_ratio, data, axis, axis, config=config)
        i, j = np.unravel_index(np.argmax(np.asarray(best.log_likelihood)), best.log_likelihood.shape)
        rows.append({"batch_size": batch, **t, "points_per_s": grid * grid / t["median_s"],
                     "best_point": [float(axis[i]), float(axis[j])]})  # fmt: skip
        print("landscape", {k: v for k, v in rows[-1].items() if k != "runs_s"}, flush=True)
    return rows


def look_elsewhere(toys: int, events: int, sample: int, batch_sizes: list[int], repeats: int) -> list[dict]:
    background = toy.background_sample(jax.random.key(2), sample, region=SR)
    data = toy_ratio_data(background, SR)
    config = PawsConfig(mass_bounds=(0.05, 0.6), grid_points=12)
    rows = []
    for batch in batch_sizes:
        run = lambda b=batch: null_scan_q0(jax.random.key(3), toy_log_ratio, data, events, n_toys=toys,
                                           config=config, toy_batch_size=b)  # fmt: skip
        t = timed(run, repeats)
        q0 = np.asarray(run())
        rows.append({"toy_batch_size": batch, "toys": toys, "events": events, "sample": sample,
                     "hypotheses": config.grid_points**2, **t, "toys_per_s": toys / t["median_s"],
                     "median_toy_q0": float(np.median(q0))})  # fmt: skip
        print("look-elsewhere", {k: v for k, v in rows[-1].items() if k != "runs_s"}, flush=True)
    return rows


def coverage(pseudo: int, n: int, mu: float, repeats: int) -> dict:
    keys = jax.random.split(jax.random.key(1), pseudo)
    x = jax.vmap(lambda k: toy.mixture_sample(k, n, mu, region=SR)[0])(keys)
    whole = jax.jit(lambda xx: measure_oracle(xx, region=SR))
    t_whole = timed(lambda: whole(x), repeats)
    one = lambda xx: jax.tree.map(lambda v: v[0], measure_oracle(xx[None], region=SR))
    chunk = auto_chunk_size(one, (x,))
    chunked = sharded_vmap(one, chunk_size=chunk)
    t_chunked = timed(lambda: chunked(x), repeats)
    a, b = whole(x), chunked(x)
    m = jax.tree.map(np.asarray, a)
    return {
        "pseudo": pseudo, "events_each": n, "mu": mu, "vmapped": t_whole, "chunked": t_chunked,
        "chunk_size": int(chunk),
        "max_abs_difference": float(np.nanmax(np.abs(m.mu_hat - np.asarray(b.mu_hat)))),
        "coverage68": float(np.mean((m.lo68 <= mu) & (mu <= m.hi68))),
        "coverage95": float(np.mean((m.lo95 <= mu) & (mu <= m.hi95))),
        "pseudo_per_s": pseudo / t_whole["median_s"],
    }  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--grid", type=int, default=100)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--pseudo", type=int, default=1000)
    parser.add_argument("--pseudo-events", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lee-toys", type=int, default=100)
    parser.add_argument("--lee-events", type=int, default=20_000)
    parser.add_argument("--lee-sample", type=int, default=100_000)
    parser.add_argument("--lee-batch-sizes", type=int, nargs="+", default=[1, 10])
    args = parser.parse_args(argv)
    rows = landscape(args.events, args.grid, args.batch_sizes, args.repeats)
    lee = look_elsewhere(args.lee_toys, args.lee_events, args.lee_sample, args.lee_batch_sizes, args.repeats)
    cov = coverage(args.pseudo, args.pseudo_events, 0.02, args.repeats)
    times = f"vmapped {cov['vmapped']['median_s']:.1f} s, chunked {cov['chunked']['median_s']:.1f} s"
    print("coverage", {k: v for k, v in cov.items() if k not in ("vmapped", "chunked")}, times, flush=True)
    payload = {"events": args.events, "grid": args.grid, "landscape": rows, "coverage": cov,
               "look_elsewhere": lee, "peak_rss_mb": peak_rss_mb(),
               "peak_device_mb": peak_device_mb()}  # fmt: skip
    write_json("paws", payload)
    return payload


if __name__ == "__main__":
    main()
