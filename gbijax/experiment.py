"""What every experiment driver shares: arguments, the results directory, progress, resuming.

A driver is a short script::

    parser = experiment_parser("mu_scan", "Measure mu_hat against mu_true.")
    parser.add_argument("--method", ...)
    run_experiment(main, parser)

and ``main(args, out)`` writes into ``out`` (a :class:`ResultsDir`): ``config.json`` (the
arguments and everything needed to rerun), ``results.json``, figures and checkpoints.
``out.step(name, config, compute, like)`` runs a step once: a rerun after an interruption
restores the step's saved result instead of recomputing it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from gbijax.checkpoint import checkpoint_exists, restore_checkpoint, save_checkpoint
from gbijax.data._sources import SOURCE_HELP

__all__ = ["ResultsDir", "experiment_parser", "progress", "run_experiment", "to_json"]


def to_json(obj: Any) -> Any:
    """Arrays, NamedTuples, numpy scalars and paths to plain JSON values (NaN -> None)."""
    if hasattr(obj, "_asdict"):
        return {k: to_json(v) for k, v in obj._asdict().items()}
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_json(v) for v in obj]
    if isinstance(obj, jax.Array | np.ndarray | np.generic):
        return to_json(np.asarray(obj).tolist())
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


class ResultsDir:
    """A results directory: config, results, figures and resumable steps."""

    def __init__(self, path: str | Path, config: dict):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.config = to_json(config)
        (self.path / "config.json").write_text(json.dumps(self.config, indent=2, sort_keys=True))
        self.started = time.time()

    def write_results(self, results: dict) -> Path:
        """Write ``results.json`` (adds the elapsed seconds and the device)."""
        results = {**results, "seconds": round(time.time() - self.started, 1),
                   "device": str(jax.devices()[0])}  # fmt: skip
        path = self.path / "results.json"
        path.write_text(json.dumps(to_json(results), indent=2))
        return path

    def figure_path(self, name: str) -> Path:
        return self.path / f"{name}.png"

    def step(self, name: str, config: Any, compute: Callable[[], Any], like: Callable[[], Any] | None = None):
        """Run ``compute()`` once and checkpoint its pytree result under ``steps/name``.

        When the checkpoint exists for the same ``config`` it is restored instead (``like()``
        gives the template pytree; without it the step is always computed). A checkpoint written
        for another config raises ``ValueError``: use another ``--out`` or delete it.
        """
        directory = self.path / "steps" / name
        if like is not None and checkpoint_exists(directory):
            print(f"  {name}: restored from {directory}", flush=True)
            return restore_checkpoint(directory, like(), to_json(config))
        result = compute()
        save_checkpoint(directory, result, to_json(config))
        return result


def experiment_parser(name: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every driver accepts."""
    parser = argparse.ArgumentParser(prog=name, description=description)
    parser.add_argument("--data", default="toy", help=f"data source: {SOURCE_HELP} (default: toy)")
    parser.add_argument("--out", required=True, help="results directory")
    parser.add_argument("--seed", type=int, default=0, help="master PRNG seed (default 0)")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    return parser


def run_experiment(main: Callable[[argparse.Namespace, ResultsDir], Any], parser: argparse.ArgumentParser,
                   argv: list[str] | None = None) -> int:  # fmt: skip
    """Parse, create the results directory, run; user errors become one line and exit 2."""
    args = parser.parse_args(argv)
    try:
        out = ResultsDir(args.out, {"experiment": parser.prog, "argv": sys.argv[1:] if argv is None
                                    else argv, **vars(args)})  # fmt: skip
        main(args, out)
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    return 0


def progress(items: Iterable, desc: str, total: int | None = None):
    """A progress bar over ``items`` (tqdm on stderr)."""
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, total=total, file=sys.stderr, dynamic_ncols=True)
