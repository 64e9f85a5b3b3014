"""Run the benchmark suite and rewrite ``benchmarks/RESULTS.md`` from its JSON results.

    python -m benchmarks.run                 # everything at the sizes the issues ask for
    python -m benchmarks.run --small         # reduced sizes (a few minutes on 2 CPU cores)
    python -m benchmarks.run --only paws generators
    python -m benchmarks.run --report        # only rewrite RESULTS.md from benchmarks/results/*.json

Each benchmark runs in its own process (clean peak-memory figures) and writes
``benchmarks/results/<name>.json`` with the machine description (CPU, cores, JAX version, device).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import write_section
from benchmarks.bench_ensemble import _update_results_md as ensemble_section

HERE = Path(__file__).resolve().parent

SUITE = {  # name -> (module, full arguments, small arguments)
    "ensemble": [
        ("bench_ensemble", ["--members", "1"], ["--members", "1", "--events", "10000"]),
        ("bench_ensemble", ["--members", "10"], ["--members", "10", "--events", "10000"]),
        ("bench_ensemble", ["--members", "20"], ["--members", "20", "--events", "10000"]),
    ],
    "generators": [("bench_generators", [], ["--events", "5000", "--epochs", "3"])],
    "ranode": [("bench_ranode", [], ["--events", "20000", "--flows", "1", "4", "--epochs", "1"])],
    "paws": [("bench_paws", [], ["--events", "20000", "--grid", "50", "--pseudo", "200", "--repeats", "2"])],
}


def _load(name: str) -> dict | None:
    path = HERE / "results" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _machine(m: dict) -> str:
    return f"{m['cpu']}, {m['cores']} cores, JAX {m['jax']}, device `{m['device']}`, {m['date']}"


def generators_section() -> str:
    r = _load("generators")
    if r is None:
        return ""
    rows = "\n".join(
        f"| {model} | {t['sample_events_per_s']:,.0f} | {t['log_prob_events_per_s']:,.0f} |"
        for model, t in r["throughput"].items()
    )
    steps = "\n".join(
        f"| {s['solver']} | {s['steps']} | {s['network_evaluations']} | {s['log_prob_events_per_s']:,.0f} "
        f"| {s['mean_log_prob_difference']:+.2e} | {s['p99_abs_log_prob_error']:.4f} "
        f"| {s['max_abs_log_prob_error']:.3f} |"
        for s in r["flow_matching_steps"]
    )
    return f"""## Generator throughput and ODE steps

`python -m benchmarks.bench_generators` ({_machine(r['machine'])}; {r['events']:,} events, medians;
flow matching at the default RK4 steps of `BackgroundConfig`)

| model | sample (events/s) | log_prob (events/s) |
|---|---|---|
{rows}

Flow matching, the same trained field integrated with several solvers, evaluated on samples of
the converged density (RK4, 128 steps): the mean of Delta log p = log p_128 - log p_n per event (a KL
estimate; slightly negative values: finite-step densities are not exactly normalised) and the 99th
percentile and maximum of |Delta log p|. Target: within 1% of converged (|Delta log p| <= 0.01) at >= 4x fewer
network evaluations than Euler with 100 steps; the background generator's default is RK4 with
`BackgroundConfig.ode_steps` steps.

| solver | steps | network evaluations | log_prob (events/s) | mean Δlog p | p99 abs Δlog p | max abs Δlog p |
|---|---|---|---|---|---|---|
{steps}
"""


def ranode_section() -> str:
    r = _load("ranode_scan")
    if r is None:
        return ""
    rows = "\n".join(
        f"| {row['mode']} | {row['flows']} | {row['median_s']:.2f} s | {row['s_per_flow_epoch']:.3f} s |"
        for row in r["rows"]
    )
    scan = {mode: 400 * 50 * 100_000 / r["events"]  # per-epoch cost scales with the events
            * min(row["s_per_flow_epoch"] for row in r["rows"] if row["mode"] == mode)
            for mode in ("vmapped", "looped")}  # fmt: skip
    scan_s = scan["vmapped"]
    return f"""## R-ANODE scan

`python -m benchmarks.bench_ranode` ({_machine(r['machine'])}; {r['events']:,} events of {r['source']},
reference signal flow, batch 2048, {r['epochs_timed']} epoch(s) timed, medians)

| mode | flows | wall time | per flow-epoch |
|---|---|---|---|
{rows}

Estimated 400-flow scan at the reference's 100,000 events (50 epochs per flow, the middle of its
early-stopping range, per-epoch cost scaled from the events timed): **{scan_s / 60:.0f} min**, i.e.
{12 * 3600 / scan_s:.1f}x the speed of the reference's 12 h (target: 20x, under 37 min); the same
JAX trainings in a Python loop: {scan['looped'] / 60:.0f} min ({12 * 3600 / scan['looped']:.1f}x). Vmapped /
looped speed-up {r['vmapped_over_looped_speedup']:.2f}x. Peak memory {r['peak_rss_mb']:.0f} MB.
"""


def paws_section() -> str:
    r = _load("paws")
    if r is None:
        return ""
    rows = "\n".join(
        f"| {row['batch_size']} | {row['median_s']:.1f} s | {row['first_call_s']:.1f} s "
        f"| {row['points_per_s']:.0f} |"
        for row in r["landscape"]
    )
    c = r["coverage"]
    return f"""## PAWS landscape and pseudo-experiments

`python -m benchmarks.bench_paws` ({_machine(r['machine'])})

A {r['grid']} x {r['grid']} (m_X, m_Y) profile-likelihood landscape on {r['events']:,} events in one jit call
(exact toy ratio; medians):

| mass points per batch | wall time | first call (compiles) | points/s |
|---|---|---|---|
{rows}

{c['pseudo']:,} oracle pseudo-experiments of {c['events_each']:,} events (mu = {c['mu']}): one vmapped
program {c['vmapped']['median_s']:.1f} s ({c['pseudo_per_s']:.0f} pseudo-experiments/s); chunked with
`sharded_vmap` (chunk {c['chunk_size']}) {c['chunked']['median_s']:.1f} s,
max |difference| {c['max_abs_difference']:.1e}; coverage 68% {c['coverage68']:.3f}, 95% {c['coverage95']:.3f}.
"""


def write_report() -> Path:
    """Rewrite RESULTS.md: the ensemble section (bench_ensemble) then the other sections."""
    if any((HERE / "results").glob("ensemble_*.json")):
        ensemble_section()
    for section in (generators_section(), ranode_section(), paws_section()):
        if section:
            write_section(section)
    return HERE / "RESULTS.md"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(SUITE), help="run only these benchmarks")
    parser.add_argument("--small", action="store_true", help="reduced sizes")
    parser.add_argument("--report", action="store_true", help="only rewrite RESULTS.md")
    args = parser.parse_args(argv)
    if not args.report:
        for name in args.only or SUITE:
            for module, full, small in SUITE[name]:
                cmd = [sys.executable, "-m", f"benchmarks.{module}", *(small if args.small else full)]
                print("+", " ".join(cmd[1:]), flush=True)
                subprocess.run(cmd, check=True, cwd=HERE.parent)
    print(f"wrote {write_report()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
