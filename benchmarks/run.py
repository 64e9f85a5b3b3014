"""Run the benchmark suite and rewrite ``benchmarks/RESULTS.md`` from its JSON results.

    python -m benchmarks.run                 # everything at the sizes the issues ask for
    python -m benchmarks.run --small         # reduced sizes (a few minutes on 2 CPU cores)
    python -m benchmarks.run --only paws generators
    python -m benchmarks.run --report        # only rewrite RESULTS.md from benchmarks/results/*.json
    python -m benchmarks.run --accelerator --deadline 420 --results-dir benchmarks/results/gpu

Each benchmark runs in its own process (clean peak-memory figures) and writes
``benchmarks/results/<name>.json`` with the machine description (CPU, cores, JAX version, device).
``--accelerator`` uses the sizes meant for a GPU (the 400-flow R-ANODE scan as one program, and
more); ``--deadline`` bounds the whole run: each benchmark gets what is left, one that runs out
or fails is reported and the rest go on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import fmt_seconds, on_device, results_dir, write_section
from benchmarks.bench_ensemble import _update_results_md as ensemble_section

HERE = Path(__file__).resolve().parent

SUITE = {  # name -> [(module, full arguments, small arguments, accelerator arguments)]
    "ranode": [("bench_ranode", ["--flows", "1", "32", "--spline-variants", "8"],
                ["--events", "20000", "--flows", "1", "--epochs", "1", "--spline-variants", "4"],
                ["--flows", "1", "100", "1600", "--spline-variants", "400", "--repeats", "2",
                 "--early-stopping", "400", "--segment-epochs", "10"])],
    "paws": [("bench_paws", [], ["--events", "20000", "--grid", "50", "--pseudo", "200", "--repeats", "2",
                                 "--lee-toys", "10", "--lee-sample", "40000", "--lee-events", "8000"],
              ["--batch-sizes", "1", "16", "100", "--lee-toys", "999", "--lee-batch-sizes", "1", "100"])],
    "paws_fit": [("bench_paws_fit", [], ["--kappa-events", "5000", "--kappa-signal", "50", "--repeats", "1"],
                  [])],
    "generators": [("bench_generators", [], ["--events", "5000", "--epochs", "3"], ["--events", "100000"])],
    "ensemble": [
        ("bench_ensemble", members, [*members, "--events", "10000"], members)
        for members in (["--members", "20"], ["--members", "1"], ["--members", "10"])
    ],
}  # fmt: skip


def _load(folder: Path, name: str) -> dict | None:
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _machine(m: dict) -> str:
    device = m["device"] + (f" = {m['device_kind']}" if on_device(m) else "")
    return f"{m['cpu']}, {m['cores']} cores, JAX {m['jax']}, device `{device}`, {m['date']}"


def _memory(row: dict) -> str:
    mb = row.get("peak_device_mb")
    return "" if mb is None else f"{mb / 1024:.1f} GiB"


def generators_section(folder: Path) -> str:
    r = _load(folder, "generators")
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
    return f"""## Generator throughput and ODE steps{on_device(r["machine"])}

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


def ranode_section(folder: Path) -> str:
    r = _load(folder, "ranode_scan")
    if r is None:
        return ""
    rows = "\n".join(
        f"| {row['mode']} | {row['flows']} | {fmt_seconds(row['median_s'])} "
        f"| {row['s_per_flow_epoch'] * 1e3:.2f} ms | {_memory(row)} |"
        for row in r["rows"]
    )
    scan = {mode: 400 * 50 * 100_000 / r["events"]  # per-epoch cost scales with the events
            * min(row["s_per_flow_epoch"] for row in r["rows"] if row["mode"] == mode)
            for mode in ("vmapped", "looped")}  # fmt: skip
    scan_s = scan["vmapped"]
    spline = r.get("spline", "autodiff through distrax (recorded before the hand-written gradients)")
    return f"""## R-ANODE scan{on_device(r["machine"])}

`python -m benchmarks.bench_ranode` ({_machine(r['machine'])}; {r['events']:,} events of {r['source']},
reference signal flow, spline: {spline}; batch 2048, {r['epochs_timed']} epoch(s) timed, medians)

| mode | flows | wall time | per flow-epoch | peak device memory |
|---|---|---|---|---|
{rows}
{_spline_variants(r)}
Estimated 400-flow scan at the reference's 100,000 events (50 epochs per flow, the middle of its
early-stopping range, per-epoch cost scaled from the events timed): **{fmt_seconds(scan_s)}**, i.e.
{12 * 3600 / scan_s:.1f}x the speed of the reference's 12 h (target: 20x, under 37 min on 2 CPU cores,
under 5 min on an H100); the same JAX trainings in a Python loop: {fmt_seconds(scan['looped'])}
({12 * 3600 / scan['looped']:.1f}x). Vmapped / looped speed-up {r['vmapped_over_looped_speedup']:.2f}x.
Peak host memory {r['peak_rss_mb']:.0f} MB.
{_early_stopping(r)}"""


def _spline_variants(r: dict) -> str:
    """The ``--spline-variants`` rows (timed taking turns in one process) as speed-ups over autodiff."""
    side = {row["mode"]: row for row in r["rows"] if row.get("side_by_side")}
    if "vmapped, autodiff spline" not in side:
        return ""
    autodiff = side.pop("vmapped, autodiff spline")["s_per_flow_epoch"]
    names = {"vmapped": f"the default ({r.get('spline', 'Triton kernels')})", "vmapped, XLA spline": "XLA"}
    speedups = [f"{names[mode]} {autodiff / row['s_per_flow_epoch']:.2f}x" for mode, row in side.items()]
    flows = next(iter(side.values()))["flows"]
    return (f"\nSpline gradients side by side ({flows} flows, taking turns in one process), speed-up over "
            f"autodiff through distrax's spline: {'; '.join(speedups)}.\n")


def _epochs_differ(e: dict) -> str:
    if "compacted_epochs_differ" not in e:
        return " (epochs differ!)"
    return (f" ({e['compacted_epochs_differ']} of {e['flows']} flows stop at another epoch, "
            f"by at most {e['compacted_max_epoch_shift']})")


def _early_stopping_table(r: dict) -> str:
    """The ``--early-stopping`` rows, with the compacted scan beside the one program where it ran."""
    compacted = any("compacted_wall_s" in e for e in r["early_stopping"])
    head = "| flows | wall time | first call (compiles) | epochs run, median (range) | peak device memory |"
    if compacted:
        head += (" flow-epochs: run / computed compacted / flows x max | compacted (every S epochs) "
                 "| one program / compacted | compacted first call |")
    rows = []
    for e in r["early_stopping"]:
        row = (f"| {e['flows']} | {fmt_seconds(e['wall_s'])} | {fmt_seconds(e['first_call_s'])} "
               f"| {e['epochs_median']:.0f} ({e['epochs_min']}-{e['epochs_max']}) | {_memory(e)} |")
        if "compacted_wall_s" in e:
            agree = "" if e["compacted_epochs_agree"] else _epochs_differ(e)
            row += (f" {e['flow_epochs']} / {e['compacted_flow_epochs']} / {e['flows_x_max_epochs']} "
                    f"| {fmt_seconds(e['compacted_wall_s'])} (S = {e['segment_epochs']}){agree} "
                    f"| **{e['one_program_over_compacted']:.2f}x** "
                    f"| {fmt_seconds(e['compacted_first_call_s'])} |")
        elif compacted:
            row += " | | | |"
        rows.append(row)
    separator = "|---" * head.count(" | ") + "|---|"
    return "\n".join([head, separator, *rows])


def _compacted_floor(r: dict, e: dict) -> str:
    """The compacted scan's computed flow-epochs at the full batch's rate (a floor), if that M was timed."""
    rate = {row["flows"]: row["s_per_flow_epoch"] for row in r["rows"] if row["mode"] == "vmapped"}
    if e["flows"] not in rate:
        return ""
    n, m = e["compacted_flow_epochs"], e["flows"]
    floor = n * rate[m]
    return (f"\nIts {n:,} computed flow-epochs at the {m}-flow rate above take {fmt_seconds(floor)}, so the "
            f"compacted\nscan runs at {floor / e['compacted_wall_s']:.0%} of that rate: what is left is "
            "the cost of a flow-epoch.")


def _early_stopping(r: dict) -> str:
    if "early_stopping" not in r:
        return ""
    e = min(r["early_stopping"], key=lambda e: abs(e["flows"] - 400))
    one = e["wall_s"] * 400 / e["flows"]  # one injection's 400 flows (scaled when another M was run)
    line = ("The complete study of one mass point (12 injections x 10 realisations x 400 flows) at this\n"
            f"rate, one scan after another: {120 * one / 60:.0f} min")
    floor = ""
    if "compacted_wall_s" in e:
        line += f"; compacted: {120 * e['compacted_wall_s'] * 400 / e['flows'] / 60:.0f} min"
        floor = _compacted_floor(r, e)
    line += f" (target: under 1 hour on one H100).{floor}"
    return f"""
End to end, as the reference runs it (`--early-stopping`: toy SR of {r['events']:,} events with 1% signal,
exact background density, at most 100 epochs, patience 10; one vmapped program ends when its last flow
stops, so every flow pays for the slowest; with `--segment-epochs S` the same scan also runs compacted,
`RanodeConfig.segment_epochs`: every S epochs the stopped flows are dropped and the rest go on in a smaller
batch, `gbijax.train.train_population`):

{_early_stopping_table(r)}

Wall times are medians of {len(e["runs_s"])} call(s) after the first. Peak device memory is the process's
peak so far (the rows of the first table included).
{line}
"""


def ranode_compaction_section(folder: Path) -> str:
    """A small end-to-end scan, one program vs compacted (``bench_ranode --json-name ranode_compaction``)."""
    r = _load(folder, "ranode_compaction")
    if r is None or "early_stopping" not in r:
        return ""
    e = r["early_stopping"][0]
    flows = " ".join(str(row["flows"]) for row in r["rows"] if row["mode"] == "vmapped")
    loop = next(row["flows"] for row in r["rows"] if row["mode"] == "looped")
    return f"""## R-ANODE early stopping: one program vs compacted{on_device(r["machine"])}

`python -m benchmarks.bench_ranode --flows {flows} --loop {loop} --epochs {r['epochs_timed']}
--events {r['events']} --repeats {len(e['runs_s'])} --early-stopping {e['flows']}
--segment-epochs {e.get('segment_epochs', 0)} --es-batch-size {e['batch_size']} --json-name
ranode_compaction` ({_machine(r['machine'])}): an R-ANODE scan of {e['flows']} flows (20 values of w)
on a toy SR of {r['events']:,} events with 1% signal (80% training, 20% validation), batch
{e['batch_size']}, at most 100 epochs, patience 10, as one vmapped program and compacted, taking turns
in one process; medians of {len(e['runs_s'])} calls after a first call that compiles, all with the
same key (another key's flows stop in other numbers and may compile a few more batch sizes: at most
1 + log2 M). "Computed compacted" counts the running flows padded to a power of two and the stopped
ones idle to the end of their segment.

{_early_stopping_table(r)}
"""


def paws_section(folder: Path) -> str:
    r = _load(folder, "paws")
    if r is None:
        return ""
    rows = "\n".join(
        f"| {row['batch_size']} | {fmt_seconds(row['median_s'])} | {fmt_seconds(row['first_call_s'])} "
        f"| {row['points_per_s']:.0f} |"
        for row in r["landscape"]
    )
    c = r["coverage"]
    lee = "\n".join(
        f"| {row['toy_batch_size']} | {fmt_seconds(row['median_s'])} | {fmt_seconds(row['first_call_s'])} "
        f"| {row['toys_per_s']:.1f} |"
        for row in r.get("look_elsewhere", [])
    )
    if lee:
        row = r["look_elsewhere"][0]
        lee = f"""
Look-elsewhere toys (`null_scan_q0`): {row['toys']:,} background-only toys of {row['events']:,} events
(Poisson re-weightings of {row['sample']:,} background events), each scanned over {row['hypotheses']} mass
points with `mu` profiled exactly (exact toy ratio; medians):

| toys per batch | wall time | first call (compiles) | toys/s |
|---|---|---|---|
{lee}
"""
    return f"""## PAWS landscape and pseudo-experiments{on_device(r["machine"])}

`python -m benchmarks.bench_paws` ({_machine(r['machine'])})

A {r['grid']} x {r['grid']} (m_X, m_Y) profile-likelihood landscape on {r['events']:,} events in one jit call
(exact toy ratio; medians):

| mass points per batch | wall time | first call (compiles) | points/s |
|---|---|---|---|
{rows}

{c['pseudo']:,} oracle pseudo-experiments of {c['events_each']:,} events (mu = {c['mu']}): one vmapped
program {fmt_seconds(c['vmapped']['median_s'])} ({c['pseudo_per_s']:,.0f} pseudo-experiments/s); chunked with
`sharded_vmap` (chunk {c['chunk_size']}) {fmt_seconds(c['chunked']['median_s'])},
max |difference| {c['max_abs_difference']:.1e}; coverage 68% {c['coverage68']:.3f}, 95% {c['coverage95']:.3f}.
{lee}"""


def paws_fit_section(folder: Path) -> str:
    r = _load(folder, "paws_fit")
    if r is None:
        return ""
    build = r["table_build"]

    def row(name: str, f: dict) -> str:
        lo, hi = (v * 1e3 for v in f["m_y_interval"])
        times = f"{fmt_seconds(f['median_s'])} | {fmt_seconds(f['first_call_s'])}"
        return (f"| {name} | {times} | {f['mu_hat']:.5f} | {f['m_x'] * 1e3:.1f} | {f['m_y'] * 1e3:.1f} | "
                f"[{lo:.1f}, {hi:.1f}] |")  # fmt: skip

    title = "## PAWS fit with a trained classifier: kappa(theta) direct or tabulated"
    return f"""{title}{on_device(r["machine"])}

`python -m benchmarks.bench_paws_fit` ({_machine(r['machine'])}): `fit_paws` on {r['events']:,} toy
events at S/sqrt(B) = 1 with a parametrised classifier over {r['grid_points']} mass points;
kappa(theta) = 1 / E_B[f/(1-f)] on a pool of {r['kappa_pool']:,} events (background plus simulated
signal), evaluated at every theta of the fit, or tabulated once on {r['table_nodes']:,} nodes
({r['table_step_tev'] * 1e3:g} GeV) and interpolated by a cubic spline (`PawsClassifier.kappa_table`,
built in {fmt_seconds(build['median_s'])}); the classifier is trained for 3 epochs only (the fits time
the method; they are not a measurement). Medians of {len(build['runs_s'])} runs.

| kappa(theta) | fit | first call (compiles) | mu_hat | m_X (GeV) | m_Y (GeV) | m_Y 68% (GeV) |
|---|---|---|---|---|---|---|
{row("direct", r["fits"]["direct"])}
{row("tabulated", r["fits"]["table"])}

The tabulated fit is {r['speedup']:.1f}x faster.
"""


def write_report() -> Path:
    """Rewrite RESULTS.md from ``results_dir()`` and every accelerator run kept in a subfolder of it.

    Each folder gives the ensemble section (bench_ensemble) then the other sections; an
    accelerator's sections carry its name in their titles, so they sit beside the CPU ones.
    """
    top = results_dir()
    for folder in (top, *sorted(d for d in top.glob("*") if d.is_dir())):
        if any(folder.glob("ensemble_*.json")):
            ensemble_section(folder)
        sections = (generators_section(folder), ranode_section(folder), ranode_compaction_section(folder),
                    paws_section(folder), paws_fit_section(folder))  # fmt: skip
        for section in sections:
            if section:
                write_section(section)
    return HERE / "RESULTS.md"


def _run_suite(names: list[str], size: int, deadline: float | None) -> list[str]:
    """Run the benchmarks in order, each in its own process; returns the ones that failed or ran out."""
    start, failed = time.monotonic(), []
    for name in names:
        for module, *sizes in SUITE[name]:
            cmd = [sys.executable, "-m", f"benchmarks.{module}", *sizes[size]]
            left = None if deadline is None else deadline - (time.monotonic() - start)
            if left is not None and left < 30:
                print(f"skipped (deadline): {' '.join(cmd[1:])}", flush=True)
                failed.append(name)
                continue
            print("+", " ".join(cmd[1:]), flush=True)
            try:
                done = subprocess.run(cmd, cwd=HERE.parent, timeout=left).returncode
            except subprocess.TimeoutExpired:
                done = "timed out"
            if done != 0:
                print(f"FAILED ({done}): {' '.join(cmd[1:])}", flush=True)
                failed.append(name)
    return failed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(SUITE), help="run only these benchmarks")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--small", action="store_true", help="reduced sizes")
    size.add_argument("--accelerator", action="store_true", help="the sizes meant for a GPU")
    parser.add_argument("--deadline", type=float, help="seconds for the whole run (default: none)")
    parser.add_argument("--results-dir", help="where the JSON goes (default benchmarks/results)")
    parser.add_argument("--report", action="store_true", help="only rewrite RESULTS.md")
    args = parser.parse_args(argv)
    if args.results_dir:
        os.environ["GBIJAX_BENCH_RESULTS"] = str(Path(args.results_dir).resolve())
    failed = []
    if not args.report:
        size_index = 1 if args.small else 2 if args.accelerator else 0
        failed = _run_suite(args.only or list(SUITE), size_index, args.deadline)
    print(f"wrote {write_report()}")
    if failed:
        print(f"not complete: {sorted(set(failed))}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
