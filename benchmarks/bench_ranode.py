"""Benchmark: the R-ANODE scan at real size, vmapped vs looped.

Real size means about 120,000 signal-region events (the real LHCO SR from ``cathode:`` when
present, else the toy's), an 80/20 train/validation split, the reference signal flow (2 RQ
layers, width 32, 8 bins), AdamW 3e-4, batch 2048. The reference scan is 20 values of w x 20
seeds = 400 flows. Each measurement trains M flows for a fixed number of epochs (early
stopping off, so the work is known) and reports seconds per flow-epoch:

- vmapped: the M flows as one program (what ``fit_ranode`` does);
- looped: the same single-flow program called M times from Python.

The 400-flow scan time is then ``400 x epochs x (s per flow-epoch)`` at the best vmapped M
measured, with ``epochs`` the reference's typical early-stopping range (24-74, 50 used), scaled
to the reference's 100,000 events when fewer were timed.

    python benchmarks/bench_ranode.py [--flows 1 8 32] [--epochs 2] [--events 120000]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import gbijax  # noqa: F401  (sets the XLA CPU flag before JAX starts)
from benchmarks._common import peak_rss_mb, timed, write_json
from gbijax.data import fit_preprocessing, load_source, toy
from gbijax.generators import spline_flow
from gbijax.inference import RanodeConfig, signal_coordinates
from gbijax.inference._ranode import _to_coordinates, _train_members
from gbijax.train import TrainConfig

REFERENCE_SECONDS_PER_EPOCH = 1.8  # PyTorch + nflows reference on 100k events, 2 CPU cores
REFERENCE_SCAN_HOURS = 12.0
REFERENCE_EVENTS = 100_000  # the reference figures are for 100k SR events (80k train, 20k validation)


def _events(n: int):
    path = Path(__file__).resolve().parents[2] / "shared/data/lhco/cathode"
    if path.is_dir():
        x = load_source(f"cathode:{path}").data.features[:n]
        source = "cathode (real LHCO SR)"
    else:
        x = np.asarray(toy.background_sample(jax.random.key(0), n, region=(3.3, 3.7)))
        source = "toy SR"
    coords = signal_coordinates(fit_preprocessing(x[:, 1:]), x[:, 0])
    u, log_det = _to_coordinates(coords, jnp.asarray(x, jnp.float32))
    # a stand-in background density of the right cost class (it is precomputed once per scan)
    log_pb = jnp.sum(jax.scipy.stats.norm.logpdf(u), axis=1)
    return u, log_pb, source


def _runner(config: RanodeConfig, data, train_idx, val_idx):
    flow = spline_flow(config.flow)
    fn = jax.jit(lambda key: _train_members(key, flow, config, data, train_idx, val_idx))
    return lambda key: jax.tree.leaves(fn(key))[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--loop", type=int, default=4, help="flows in the looped comparison")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--events", type=int, default=120_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    u, log_pb, source = _events(args.events)
    n = u.shape[0]
    n_val = n // 5
    perm = jax.random.permutation(jax.random.key(1), n)
    train_idx, val_idx = perm[None, n_val:], perm[None, :n_val]
    data = {"u": u, "log_pb": log_pb, "weight": jnp.ones(n)}
    train = TrainConfig(epochs=args.epochs, batch_size=2048, learning_rate=3e-4, weight_decay=1e-4)
    base = RanodeConfig(train=train, mode="scan", k_folds=1)

    rows = []
    for m in args.flows:
        cfg = base._replace(w_grid=tuple(np.logspace(-5, -1, m).tolist()), n_seeds=1)
        run = _runner(cfg, data, train_idx, val_idx)
        t = timed(lambda run=run: run(jax.random.key(2)), args.repeats)
        per_flow_epoch = t["median_s"] / (m * args.epochs)
        rows.append({"mode": "vmapped", "flows": m, **t, "s_per_flow_epoch": per_flow_epoch})
        print(rows[-1], flush=True)

    one = base._replace(w_grid=(1e-3,), n_seeds=1)
    run_one = _runner(one, data, train_idx, val_idx)
    t = timed(lambda: [run_one(jax.random.key(i)) for i in range(args.loop)], args.repeats)
    rows.append({"mode": "looped", "flows": args.loop, **t,
                 "s_per_flow_epoch": t["median_s"] / (args.loop * args.epochs)})  # fmt: skip
    print(rows[-1], flush=True)

    best = min(r["s_per_flow_epoch"] for r in rows if r["mode"] == "vmapped")
    scan_s = 400 * 50 * best * REFERENCE_EVENTS / n  # an epoch costs in proportion to the events
    summary = {
        "events": int(n), "source": source, "epochs_timed": args.epochs, "rows": rows,
        "estimated_400_flow_scan_s": scan_s,
        "speedup_vs_reference_scan": REFERENCE_SCAN_HOURS * 3600 / scan_s,
        "vmapped_over_looped_speedup": rows[-1]["s_per_flow_epoch"] / best,
        "peak_rss_mb": peak_rss_mb(),
    }  # fmt: skip
    print(f"estimated 400-flow scan (50 epochs each): {scan_s / 60:.1f} min; "
          f"reference {REFERENCE_SCAN_HOURS} h -> x{summary['speedup_vs_reference_scan']:.1f}")  # fmt: skip
    write_json("ranode_scan", summary)
    return summary


if __name__ == "__main__":
    main()
