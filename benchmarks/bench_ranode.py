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

With ``--early-stopping M [M ...]`` the scan also runs end to end as the reference does: M flows
(400 = one injection, 1600 = four in one program) on a toy SR with 1% signal and the exact
background density, at most 100 epochs, patience 10; the program ends when its last flow stops,
so the wall time, not an estimate, is reported with the epochs the flows ran. With
``--segment-epochs S`` the same scan also runs compacted (``RanodeConfig.segment_epochs``: every S
epochs the flows that stopped are dropped, :func:`gbijax.train.train_population`), both in turn in
the same process, with the wall-time ratio, the flow-epochs each computes and a check that every
flow ran the same epochs. ``--es-batch-size`` sets the batch of these runs (smaller for a small
test on a CPU, so that an epoch still has several steps).

With ``--spline-variants M``, M flows are also timed with each implementation of the flows' spline
(the default: Triton kernels on a GPU, else the XLA version with its hand-written gradient; the XLA
version on a GPU; autodiff through distrax's spline), taking turns in one process.

    python benchmarks/bench_ranode.py [--flows 1 8 32] [--epochs 2] [--events 120000] [--early-stopping 400]
        [--segment-epochs 10] [--spline-variants 400]

The JSON goes to ``benchmarks/results/ranode_scan.json`` (``--json-name``), or under
``$GBIJAX_BENCH_RESULTS``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import gbijax  # noqa: F401  (sets the XLA CPU flag before JAX starts)
from benchmarks._common import peak_device_mb, peak_rss_mb, timed, write_json
from gbijax.data import fit_preprocessing, load_source, toy
from gbijax.generators import _spline_flow
from gbijax.generators._rq_spline import spline_xla, uses_triton
from gbijax.inference import RanodeConfig, signal_coordinates
from gbijax.inference._ranode import (
    _member_advance,
    _to_coordinates,
    _train_members,
    _train_population,
    _trained,
)
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
    u, _ = _signal_coordinates(x)
    # a stand-in background density of the right cost class (it is precomputed once per scan)
    log_pb = jnp.sum(jax.scipy.stats.norm.logpdf(u), axis=1)
    return u, log_pb, source


def _signal_coordinates(x):
    """``(u, log|du/dx|)`` of events ``x`` (mass first), with the preprocessing fitted on them."""
    x = np.asarray(x)
    coords = signal_coordinates(fit_preprocessing(x[:, 1:]), x[:, 0])
    return _to_coordinates(coords, jnp.asarray(x, jnp.float32))


def _toy_scan_data(n: int, mu: float = 0.01):
    """A toy SR with signal fraction ``mu`` and its exact background density, in signal coordinates."""
    region = (3.3, 3.7)
    x, _ = toy.mixture_sample(jax.random.key(3), n, mu, region=region)
    u, log_det = _signal_coordinates(x)
    return u, toy.background_log_prob(x, region=region) - log_det


def _early_stopping_rows(flows: list[int], n: int, train_idx, val_idx, segment_epochs: int = 0,
                         batch_size: int = 2048, repeats: int = 1) -> list[dict]:
    """End-to-end scans of ``flows`` flows with early stopping; also compacted if ``segment_epochs``.

    The first call compiles; the wall time is the median of ``repeats`` more calls with the same key
    (so the compacted scan meets only batch sizes it compiled; another key's flows may stop in
    other numbers and compile a few more, at most ``log2 M``), the one-program and the compacted
    scan taking turns.
    """
    u, log_pb = _toy_scan_data(n)
    data = {"u": u, "log_pb": log_pb, "weight": jnp.ones(n)}
    train = TrainConfig(epochs=100, batch_size=batch_size, learning_rate=3e-4, weight_decay=1e-4, patience=10)
    rows = []
    for m in flows:
        cfg = RanodeConfig(train=train, mode="scan", k_folds=1, n_seeds=m // 20,
                           w_grid=tuple(np.logspace(-5, -1, 20).tolist()))  # fmt: skip
        scans = {"": _compiled_scan(cfg, data, train_idx, val_idx)}
        if segment_epochs:
            compacted = cfg._replace(segment_epochs=segment_epochs)
            scans["compacted_"] = _compacted_scan(compacted, data, train_idx, val_idx)
        row = {}
        for name, scan in scans.items():
            start = time.perf_counter()
            jax.block_until_ready(scan(jax.random.key(5)))
            row[f"{name}first_call_s"] = time.perf_counter() - start
        walls, last = _in_turns(scans, jax.random.key(5), repeats)
        epochs = {name: np.asarray(out[0][1]).ravel() for name, out in last.items()}
        e = epochs[""]
        row = {"flows": int(e.size), **row, "wall_s": statistics.median(walls[""]), "runs_s": walls[""],
               "epochs_median": float(np.median(e)), "epochs_min": int(e.min()), "epochs_max": int(e.max()),
               "flow_epochs": int(e.sum()), "flows_x_max_epochs": int(e.size * e.max()),
               "batch_size": batch_size, "peak_device_mb": peak_device_mb()}  # fmt: skip
        if segment_epochs:
            row.update({"segment_epochs": segment_epochs, "compacted_runs_s": walls["compacted_"],
                        "compacted_wall_s": statistics.median(walls["compacted_"]),
                        "compacted_flow_epochs": _compacted_flow_epochs(e, segment_epochs),
                        "compacted_epochs_agree": bool(np.array_equal(epochs["compacted_"], e)),
                        **_epoch_shifts(epochs["compacted_"], e)})  # fmt: skip
            row["one_program_over_compacted"] = row["wall_s"] / row["compacted_wall_s"]
        rows.append(row)
        print("early stopping", rows[-1], flush=True)
    return rows


def _in_turns(calls: dict, key, repeats: int) -> tuple[dict, dict]:
    """Wall times of ``repeats`` rounds in which every (compiled) ``call(key)`` runs once, taking
    turns, and each call's last result."""
    walls, last = {name: [] for name in calls}, {}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            last[name] = jax.block_until_ready(call(key))
            walls[name].append(time.perf_counter() - start)
    return walls, last


def _epoch_shifts(compacted: np.ndarray, one_program: np.ndarray) -> dict:
    """How many flows stop at another epoch when compacted, and the largest shift.

    The smaller batches of flows round differently in float32 (on a GPU they may also run other
    kernels), which can tip a near tie of validation losses and move a flow's stopping epoch.
    """
    shift = np.abs(compacted.astype(int) - one_program.astype(int))
    return {"compacted_epochs_differ": int(np.sum(shift > 0)), "compacted_max_epoch_shift": int(shift.max())}


def _compacted_flow_epochs(epochs: np.ndarray, segment: int) -> int:
    """Flow-epochs a compacted scan computes, padding and the stopped flows' rest of a segment included.

    A flow that ran ``e`` epochs is running at the start ``t`` of a segment when ``t < e``; the running
    flows are padded to a power of two (at most all), and a segment lasts until its longest flow
    stops or the segment ends.
    """
    total, t = 0, 0
    while (epochs > t).any():
        running = epochs[epochs > t]
        size = min(1 << (running.size - 1).bit_length(), epochs.size)
        total += size * int(min(running.max(), t + segment) - t)
        t += segment
    return total


def _compiled_scan(config: RanodeConfig, data, train_idx, val_idx):
    """``key -> _train_members(...)``, jitted: every member of the scan trained as one program."""
    return jax.jit(lambda key: _train_members(key, config, data, train_idx, val_idx))


def _compacted_scan(config: RanodeConfig, data, train_idx, val_idx):
    """``key -> ((params, epochs), replicas)`` trained compacted (``config.segment_epochs > 0``)."""
    shared = jax.tree.map(lambda v: v[None], (data, train_idx, val_idx))  # one realisation
    first = lambda states: jax.tree.map(lambda v: v[0], states)
    return lambda key: _trained(first(_train_population(key[None], config, shared)), config)


_SPLINES = {  # the flows' layer map for each variant timed side by side
    "vmapped": None,  # the default: Triton kernels on a GPU, the hand-written XLA gradient elsewhere
    "vmapped, XLA spline": lambda config, raw, x: spline_xla(
        raw, x, config.n_bins, config.tail_bound, config.min_bin_size, config.min_knot_slope
    ),
    "vmapped, autodiff spline": lambda config, raw, x: (
        _spline_flow._bijector(config, raw).forward_and_log_det(x)
    ),
}


@contextlib.contextmanager
def _spline(mode: str):
    """Flows traced inside use the spline variant ``_SPLINES[mode]`` (distrax by autodiff: the density
    pass before :mod:`gbijax.generators._rq_spline`)."""
    default = _spline_flow._forward_map
    _spline_flow._forward_map = _SPLINES[mode] or default
    _member_advance.cache_clear()  # its cached training steps were traced with another spline
    try:
        yield
    finally:
        _spline_flow._forward_map = default
        _member_advance.cache_clear()


def _spline_rows(m: int, epochs: int, repeats: int, data, train_idx, val_idx, base) -> list[dict]:
    """M flows' seconds per flow-epoch with each spline variant of :data:`_SPLINES` (on a CPU the
    default is the XLA one, which is then skipped), compiled first, then timed taking turns."""
    cfg = base._replace(w_grid=tuple(np.logspace(-5, -1, m).tolist()), n_seeds=1)
    modes = [mode for mode in _SPLINES if uses_triton(jnp.float32) or "XLA" not in mode]
    runs, first = {}, {}
    for mode in modes:
        with _spline(mode):  # traced and compiled here; later calls reuse the compiled program
            runs[mode] = _runner(cfg, data, train_idx, val_idx)
            start = time.perf_counter()
            jax.block_until_ready(runs[mode](jax.random.key(2)))
            first[mode] = time.perf_counter() - start
    walls, _ = _in_turns(runs, jax.random.key(2), repeats)
    median = {mode: statistics.median(t) for mode, t in walls.items()}
    return [{"mode": mode, "flows": m, "first_call_s": first[mode], "median_s": median[mode],
             "runs_s": walls[mode], "s_per_flow_epoch": median[mode] / (m * epochs), "side_by_side": True}
            for mode in runs]  # fmt: skip


def _runner(config: RanodeConfig, data, train_idx, val_idx):
    fn = _compiled_scan(config, data, train_idx, val_idx)
    return lambda key: jax.tree.leaves(fn(key))[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--loop", type=int, default=4, help="flows in the looped comparison")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--events", type=int, default=120_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--early-stopping", type=int, nargs="*", default=[], metavar="M",
                        help="also run M-flow scans end to end with early stopping (M a multiple of 20)")
    parser.add_argument("--segment-epochs", type=int, default=0, metavar="S",
                        help="run the --early-stopping scans compacted every S epochs too, side by side")
    parser.add_argument("--es-repeats", type=int,
                        help="timed calls of the --early-stopping scans (default: --repeats)")
    parser.add_argument("--es-batch-size", type=int, default=2048,
                        help="batch size of the --early-stopping scans")
    parser.add_argument("--spline-variants", type=int, default=0, metavar="M",
                        help="also time M flows with each spline (Triton, XLA, autodiff), side by side")
    parser.add_argument("--json-name", default="ranode_scan",
                        help="results/<name>.json (ranode_compaction: a small scan's own RESULTS.md section)")
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

    def record(row: dict) -> dict:
        rows.append(row)
        print(row, flush=True)
        return _write_summary(rows, args, n, source)  # after every row: a later one may run out of memory

    one = base._replace(w_grid=(1e-3,), n_seeds=1)
    run_one = _runner(one, data, train_idx, val_idx)
    t = timed(lambda: [run_one(jax.random.key(i)) for i in range(args.loop)], args.repeats)
    per_flow_epoch = t["median_s"] / (args.loop * args.epochs)
    record({"mode": "looped", "flows": args.loop, **t, "s_per_flow_epoch": per_flow_epoch})
    summary = None
    for m in args.flows:
        cfg = base._replace(w_grid=tuple(np.logspace(-5, -1, m).tolist()), n_seeds=1)
        try:
            run = _runner(cfg, data, train_idx, val_idx)
            t = timed(lambda run=run: run(jax.random.key(2)), args.repeats)
        except Exception as err:  # noqa: BLE001  (out of memory at large M: report it, keep the rest)
            print(f"{m} flows failed: {type(err).__name__}: {str(err)[:300]}", flush=True)
            break
        per_flow_epoch = t["median_s"] / (m * args.epochs)
        summary = record({"mode": "vmapped", "flows": m, **t, "s_per_flow_epoch": per_flow_epoch,
                          "peak_device_mb": peak_device_mb()})  # fmt: skip
    if args.spline_variants:
        for row in _spline_rows(args.spline_variants, args.epochs, args.repeats, data, train_idx, val_idx,
                                base):  # fmt: skip
            summary = record(row)
    if args.early_stopping and summary is not None:
        summary["early_stopping"] = _early_stopping_rows(
            args.early_stopping, n, train_idx, val_idx, args.segment_epochs, args.es_batch_size,
            args.es_repeats or args.repeats,
        )
        write_json(args.json_name, summary)
    if summary is not None:
        minutes = summary["estimated_400_flow_scan_s"] / 60
        print(f"estimated 400-flow scan (50 epochs each): {minutes:.1f} min; "
              f"reference {REFERENCE_SCAN_HOURS} h -> x{summary['speedup_vs_reference_scan']:.1f}")
    return summary


def _write_summary(rows: list[dict], args, n: int, source: str) -> dict:
    """The 400-flow scan estimate from the best vmapped row so far; written to ``ranode_scan.json``."""
    looped = next(r for r in rows if r["mode"] == "looped")
    vmapped = [r for r in rows if r["mode"] == "vmapped"] or [looped]
    best = min(r["s_per_flow_epoch"] for r in vmapped)
    scan_s = 400 * 50 * best * REFERENCE_EVENTS / n  # an epoch costs in proportion to the events
    summary = {
        "events": int(n), "source": source, "epochs_timed": args.epochs, "rows": rows,
        "spline": "Triton kernels" if uses_triton(jnp.float32) else "XLA, hand-written gradient",
        "estimated_400_flow_scan_s": scan_s,
        "speedup_vs_reference_scan": REFERENCE_SCAN_HOURS * 3600 / scan_s,
        "vmapped_over_looped_speedup": looped["s_per_flow_epoch"] / best,
        "peak_rss_mb": peak_rss_mb(), "peak_device_mb": peak_device_mb(),
    }  # fmt: skip
    write_json(args.json_name, summary)
    return summary


if __name__ == "__main__":
    main()
