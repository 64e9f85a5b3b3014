"""Several ``mu_scan`` runs in one picture: mu_hat vs mu_true and Z vs S/sqrt(B) side by side.

    python experiments/compare.py --runs results/mu_scan_paws results/mu_scan_ranode results/mu_scan_oracle \\
        --out results/compare

Reads each run's ``results.json`` (``experiments/mu_scan.py``), labels it by method and background
variant, and writes ``mu_scan.png``, ``significance.png``, ``coverage.png`` and a ``results.json``
with each method's smallest ``mu`` (and ``S/sqrt(B)``) reaching a median Z of 3 and 5 (and, for a
PAWS run with look-elsewhere toys, a median global Z of 3) and its Z at ``mu = 0``. The runs
should share the data and injections (their ``B`` is taken from the first run). A ``cathode`` run
(a cut-and-count search: Z only) appears in the significance figure and the summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import gbijax  # noqa: F401
from gbijax import plotting
from gbijax.experiment import ResultsDir, run_experiment

LABELS = {"oracle": "oracle (exact likelihood)", "ranode": "R-ANODE", "paws": "PAWS-GBI",
          "cathode": "CATHODE (cut and count)"}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="compare", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True, help="mu_scan results directories")
    parser.add_argument("--out", required=True, help="results directory")
    return parser


def _label(res: dict) -> str:
    label = LABELS.get(res["method"], res["method"])
    return label if res["method"] == "oracle" else f"{label} ({res['background_variant']})"


def _first(rows: list[dict], z: float, key: str = "z") -> dict | None:
    ordered = sorted(rows, key=lambda r: r["mu_true"])
    hit = next((r for r in ordered if r["mu_true"] > 0 and r[key] >= z), None)
    return None if hit is None else {"mu": hit["mu_true"], "s_over_sqrt_b": hit["s_over_sqrt_b"]}


def _summary(rows: list[dict]) -> dict:
    """Smallest injection with median Z >= 3 and 5 (and Z_global where toys were run), Z at mu = 0."""
    zero = next((r for r in rows if r["mu_true"] == 0), None)
    out = {"z3": _first(rows, 3.0), "z5": _first(rows, 5.0),
           "z_at_mu_0": None if zero is None else round(zero["z"], 3)}  # fmt: skip
    if all("z_global" in r for r in rows):
        out.update(z_global3=_first(rows, 3.0, "z_global"), z_global_max=rows[0]["z_global_max"],
                   z_global_at_mu_0=None if zero is None else round(zero["z_global"], 3))  # fmt: skip
    return out


def _measures_mu(rows: list[dict]) -> bool:
    return any(r["mu_hat"]["median"] is not None for r in rows)


def main(args: argparse.Namespace, out: ResultsDir) -> None:
    curves, n_background = {}, None
    for run in args.runs:
        path = Path(run) / "results.json"
        if not path.is_file():
            raise ValueError(f"no mu_scan results.json in {run}")
        res = json.loads(path.read_text())
        if "injections" not in res:
            raise ValueError(f"{path} is not a mu_scan result (no 'injections')")
        curves[_label(res)] = res["injections"]
        n_background = n_background or res["n_background"]
    measured = {label: rows for label, rows in curves.items() if _measures_mu(rows)}  # not CATHODE
    if measured:
        plotting.mu_scan_figure(measured, n_background, out.figure_path("mu_scan"))
        plotting.coverage_vs_mu_figure(measured, out.figure_path("coverage"))
    plotting.significance_figure(curves, out.figure_path("significance"))
    summary = {label: _summary(rows) for label, rows in curves.items()}
    out.write_results({"runs": args.runs, "smallest_injection": summary})
    for label, s in summary.items():
        look_elsewhere = "" if "z_global3" not in s else f"; global Z >= 3 from {s['z_global3']}"
        print(f"  {label}: Z at mu = 0 {s['z_at_mu_0']}, Z >= 3 from {s['z3']}, Z >= 5 from {s['z5']}"
              f"{look_elsewhere}", flush=True)  # fmt: skip
    print(f"results in {out.path}", flush=True)


if __name__ == "__main__":
    sys.exit(run_experiment(main, build_parser()))
