"""Benchmark: an ensemble of K background generators trained as one vmap vs K sequential trainings.

Both modes train the same K members (same initial parameters, keys, data and epochs; early
stopping off, so the work is fixed) with the driver's generator settings
(``experiments/background.py``): vmapped is :func:`gbijax.generators.fit_ensemble` (one compiled
program), sequential is one jitted :func:`gbijax.train.fit` called K times from Python. Each mode
runs in its own subprocess, so its peak resident memory (``ru_maxrss``) is its own; a baseline
subprocess that only builds the data gives the memory floor. The final parameters of the two
modes are compared (they must agree to float32 rounding).

    python -m benchmarks.bench_ensemble [--model flow_matching] [--members 10] [--events 40000]
                                        [--epochs 2] [--repeats 3]

Writes ``benchmarks/results/ensemble_<model>.json`` and the "Ensemble training" section of
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import gbijax  # noqa: E402, F401  (sets the XLA CPU flag before JAX starts)
from benchmarks._common import (  # noqa: E402
    HERE,
    fmt_seconds,
    on_device,
    peak_device_mb,
    peak_rss_mb,
    results_dir,
    timed,
    write_json,
    write_section,
)
from gbijax.background import make_generator  # noqa: E402
from gbijax.data import fit_preprocessing, forward, toy  # noqa: E402
from gbijax.generators import as_loss_fn, fit_ensemble, init_ensemble  # noqa: E402
from gbijax.train import fit  # noqa: E402

ROOT = HERE.parent
SECTION = "## Ensemble training: one vmap vs sequential"


def _driver_config(model: str):
    sys.path.insert(0, str(ROOT / "experiments"))
    from background import FULL  # the driver's defaults

    return FULL[model]


def _data(n: int):
    """``n`` toy sideband events, preprocessed as the background model does; 80/20 split."""
    x = np.asarray(toy.background_sample(jax.random.key(0), int(n * 1.2)))
    x = x[(x[:, 0] < 3.3) | (x[:, 0] > 3.7)][:n]
    z, _ = forward(fit_preprocessing(x[:, 1:]), jnp.asarray(x[:, 1:], jnp.float32))
    log_m = np.log(x[:, 0])
    c = jnp.asarray((log_m - log_m.mean()) / log_m.std(), jnp.float32)[:, None]
    n_val = n // 5
    return {"x": z[n_val:], "context": c[n_val:]}, {"x": z[:n_val], "context": c[:n_val]}


def worker(mode: str, args) -> dict:
    """Run one mode in this process; save the final parameters for the comparison."""
    config = _driver_config(args.model)
    train_cfg = config.train._replace(epochs=args.epochs, batch_size=args.batch_size, patience=0)
    generator = make_generator(config)
    train, val = _data(args.events)
    k_init, k_fit = jax.random.split(jax.random.key(1))
    params = init_ensemble(generator, k_init, args.members)
    result = {"mode": mode, "members": args.members}
    if mode == "vmapped":
        run = lambda: fit_ensemble(generator, k_fit, params, train, val, train_cfg)[0]
    elif mode == "sequential":
        keys = jax.random.split(k_fit, args.members)
        one = jax.jit(lambda key, p: fit(key, p, as_loss_fn(generator), train, val, train_cfg)[0])
        member = lambda i: jax.tree.map(lambda p: p[i], params)
        run = lambda: jax.tree.map(lambda *ps: jnp.stack(ps), *[one(keys[i], member(i))
                                                                 for i in range(args.members)])  # fmt: skip
    else:  # baseline: data and parameters only
        return {**result, "peak_rss_mb": peak_rss_mb(), "peak_device_mb": peak_device_mb()}
    result.update(timed(run, args.repeats))
    final = run()
    np.save(args.params_out, np.concatenate([np.ravel(p) for p in jax.tree.leaves(final)]))
    return {**result, "peak_rss_mb": peak_rss_mb(), "peak_device_mb": peak_device_mb()}


def _spawn(mode: str, args, params_out: str) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_ensemble", "--worker", mode, "--params-out", params_out,
           "--model", args.model, "--members", str(args.members), "--events", str(args.events),
           "--epochs", str(args.epochs), "--repeats", str(args.repeats),
           "--batch-size", str(args.batch_size)]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    print(row, flush=True)
    return row


def _name(args) -> str:
    return f"ensemble_{args.model}_k{args.members}_n{args.events}_b{args.batch_size}"


def _device_memory(r: dict) -> str:
    """``(device: vmapped / sequential MB)`` for an accelerator run; empty on the CPU."""
    v, q = r["vmapped"].get("peak_device_mb"), r["sequential"].get("peak_device_mb")
    return "" if not on_device(r["machine"]) or v is None else f"(device: {v:.0f} / {q:.0f} MB) "


def _machine_line(m: dict) -> str:
    if on_device(m):
        return f"{m['device_kind']} (`{m['device']}`), host {m['cpu']}, {m['cores']} cores, JAX {m['jax']}"
    return (f"{m['cpu']}, {m['cores']} cores shared with other jobs while measured (so single timings "
            f"scatter by 10-20%), JAX {m['jax']}, device `{m['device']}`")  # fmt: skip


def _update_results_md(folder: Path | None = None) -> Path:
    """Rewrite this benchmark's section of RESULTS.md from every ``ensemble_*.json`` in ``folder``.

    ``folder`` defaults to ``results_dir()``; its runs should come from one machine.
    """
    folder = results_dir() if folder is None else folder
    runs = [json.loads(p.read_text()) for p in sorted(folder.glob("ensemble_*.json"))]
    runs = [r for r in runs if "sequential_over_vmapped" in r and "batch_size" in r]
    m = runs[-1]["machine"]
    rows = "\n".join(
        f"| {r['model']} | {r['members']} | {r['events']:,} | {r['batch_size']} | {r['epochs']} "
        f"| {fmt_seconds(r['vmapped']['median_s'])} | {fmt_seconds(r['sequential']['median_s'])} "
        f"| **{r['sequential_over_vmapped']:.2f}x** | {r['vmapped']['first_call_s']:.0f} / "
        f"{r['sequential']['first_call_s']:.0f} s | {r['vmapped']['peak_rss_mb']:.0f} / "
        f"{r['sequential']['peak_rss_mb']:.0f} / {r['baseline']['peak_rss_mb']:.0f} MB "
        f"{_device_memory(r)}| {r['max_abs_param_difference']:.1e} | {r['machine']['date']} |"
        for r in runs
    )
    text = f"""{SECTION}{on_device(m)}

`python -m benchmarks.bench_ensemble [--model M] [--members K] [--events N] [--batch-size B] [--epochs E]`

K members of the driver's background generator (`experiments/background.py`, same initial
parameters, keys, data and epochs; early stopping off) trained as one vmapped program
(`fit_ensemble`) and as K calls of one jitted single-member `fit`. Wall times are medians of 3
runs after a first call that compiles; each mode runs in its own subprocess, so its peak resident
memory is its own (baseline: the same process with the data built but nothing trained). "max
param diff" compares the final parameters of the two modes (float32 rounding).

Machine: {_machine_line(m)}.

| model | K | events | batch | epochs | vmapped | sequential | sequential / vmapped \
| first call vmap / seq | peak RSS vmap / seq / baseline | max param diff | date |
|---|---|---|---|---|---|---|---|---|---|---|---|
{rows}
"""
    return write_section(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("flow_matching", "spline_flow"), default="flow_matching")
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the driver's")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", choices=("vmapped", "sequential", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--params-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.batch_size = args.batch_size or _driver_config(args.model).train.batch_size
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return None

    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        modes = ("baseline", "vmapped", "sequential")
        rows = {mode: _spawn(mode, args, f"{tmp}/{mode}.npy") for mode in modes}
        a, b = np.load(f"{tmp}/vmapped.npy"), np.load(f"{tmp}/sequential.npy")
    summary = {
        "model": args.model, "members": args.members, "events": args.events, "epochs": args.epochs,
        "repeats": args.repeats, "batch_size": args.batch_size, **rows,
        "sequential_over_vmapped": rows["sequential"]["median_s"] / rows["vmapped"]["median_s"],
        "max_abs_param_difference": float(np.max(np.abs(a - b))), "max_abs_param": float(np.max(np.abs(a))),
        "seconds": time.time() - start,
    }  # fmt: skip
    path = write_json(_name(args), summary)
    _update_results_md()
    print(f"sequential / vmapped = {summary['sequential_over_vmapped']:.2f}x; max |param diff| "
          f"{summary['max_abs_param_difference']:.2e}; wrote {path} and {HERE / 'RESULTS.md'}")  # fmt: skip
    return summary


if __name__ == "__main__":
    main()
