"""mu_hat against mu_true: the GBI paper's headline measurement, over injections and realisations.

For every injected signal fraction (``mu = 0`` is always added: the no-false-signal check), ``R``
data realisations are built with :func:`gbijax.pipeline.injected_realisations` (the data's
signal-region background plus signal drawn from the pool) and measured with the oracle (exact
toy likelihood), R-ANODE or PAWS-GBI against a background variant (``sideband``, ``sr_truth``,
``closure`` or ``exact``). The realisations of one injection are measured as one vmapped program.
``--method cathode`` runs the anomaly-detection baseline as a search instead: k-fold classifiers
of the data against background samples (``exact``: true SR background, i.e. idealised AD) and a
cut-and-count ``Z`` at ``--cathode-eps-b`` (no ``mu``), for the ``Z`` vs ``S/sqrt(B)`` comparison
of ``experiments/compare.py``.

    python experiments/mu_scan.py --data toy --method oracle --injections 0.001,0.003,0.01 \\
        --realisations 10 --out results/mu_scan_oracle
    python experiments/mu_scan.py --data toy --method ranode --background-variant exact \\
        --injections 0.003,0.01,0.03 --realisations 4 --out results/mu_scan_ranode

Writes ``results.json`` (per injection: ``mu_true``, ``s_over_sqrt_b``, ``n_signal``, ``mu_hat``
median/p16/p84 over realisations, median ``mu_lo68``/``mu_hi68``/``mu_lo95``/``mu_hi95``,
median ``z``, ``coverage68``/``coverage95`` of ``mu_true`` over realisations; at ``mu = 0`` the
no-false-signal fractions), ``mu_scan.png`` (mu_hat vs mu_true, log-log, with 68/95% bands and an
S/sqrt(B) axis) and ``coverage.png``. The trained background and every measured chunk are
resumable steps. Note: the realisations of one injection share the data's background events
(they differ in the injected signal and all training randomness), so the coverage here is
conditional on that background; ``experiments/coverage.py`` measures the frequentist coverage
on independent toy pseudo-experiments.
"""

from __future__ import annotations

import argparse
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import gbijax  # noqa: F401  (sets the XLA flags before JAX starts)
from gbijax import plotting
from gbijax.background import BackgroundConfig, background_sample
from gbijax.classifiers import DEFAULT, QUICK, TOY_PAWS_MLP, ClassifierConfig
from gbijax.data import fit_preprocessing, toy
from gbijax.data._sources import toy_signal_params
from gbijax.experiment import ResultsDir, experiment_parser, progress, run_experiment, to_json
from gbijax.generators import SplineFlowConfig
from gbijax.inference import (
    REFERENCE_PAWS_GRID,
    TOY_PAWS_GRID,
    ClassifierRatio,
    GridSpline,
    KappaSample,
    Measurements,
    PawsClassifier,
    PawsClosure,
    PawsConfig,
    RanodeConfig,
    closure_injection,
    mass_tangents,
    measure,
    measure_paws_closure,
    null_scan_q0,
    realisation_keys,
    signal_coordinates,
    summarize_measurements,
    toy_log_ratio_fn,
    toy_ratio_data,
    toy_signal_grid,
    train_toy_paws,
)
from gbijax.nn import PIECEWISE_LINEAR
from gbijax.pipeline import (
    BACKGROUND_VARIANTS,
    FoldedBackground,
    analysis_samples,
    background_density,
    closure_background,
    fit_background_folds,
    fit_background_variant,
    injected_realisations,
)
from gbijax.train import TrainConfig

DEFAULT_INJECTIONS = "0,0.001,0.002,0.003,0.005,0.01,0.02"
LOG_PB_CHUNK = 16384  # events per background log-density evaluation (memory bound)


# --------------------------------------------------------------------------------------------
# R-ANODE settings shared with experiments/coverage.py
# --------------------------------------------------------------------------------------------


def add_ranode_arguments(parser: argparse.ArgumentParser) -> None:
    """The R-ANODE options (CPU-sized defaults; the reference is k=5, 4 seeds, width 32)."""
    g = parser.add_argument_group("R-ANODE")
    g.add_argument(
        "--mode", choices=("learned", "scan"), default="learned", help="w learned, or fixed and scanned"
    )
    g.add_argument("--k-folds", type=int, default=3, help="folds of the k-fold (each held out once)")
    g.add_argument("--n-seeds", type=int, default=1, help="signal flows per fold (and per w), averaged")
    g.add_argument(
        "--n-bootstrap",
        type=int,
        default=4,
        help="learned mode: bootstrap-replica flows per fold whose spread of mu_hat (the learned shape's "
        "uncertainty) enters the intervals; 0: plain Wilks intervals",
    )
    g.add_argument("--epochs", type=int, default=40, help="maximum epochs per signal flow")
    g.add_argument("--patience", type=int, default=5, help="early-stopping patience")
    g.add_argument("--batch-size", type=int, default=256, help="signal-flow minibatch")
    g.add_argument("--learning-rate", type=float, default=3e-3)
    g.add_argument("--hidden", type=int, default=16, help="MADE width (2 hidden layers)")
    g.add_argument("--n-bins", type=int, default=8, help="spline bins")
    g.add_argument("--tail-bound", type=float, default=8.0,
                   help="the splines act on [-B, B] in signal coordinates and are the identity outside (the "
                        "reference's 8; 2.9%% of the toy's signal lies beyond 8 in the tau coordinates, up "
                        "to |u| of about 21; 1 in 75,000 of the real LHCO signal; a wider bound spreads the "
                        "same bins thinner: on the toy at S/sqrt(B) = 3, 24 gave intervals 1.97x the "
                        "oracle's width where 8 gave 1.20x)")
    g.add_argument("--transform", choices=("spline", "affine"), default="spline")
    g.add_argument("--n-w", type=int, default=8, help="scan mode: w values, log-spaced 1e-4 to 0.1")
    g.add_argument("--w-init", type=float, default=0.01, help="learned mode: w starts here")
    g.add_argument("--w-penalty", type=float, default=0.0,
                   help="learned mode: gamma of a penalty gamma * w on every event's loss, which breaks the "
                        "likelihood's flat direction (w, p_S) -> (w / lambda, lambda p_S + (1 - lambda) p_B) "
                        "towards the smallest w (0: plain maximum likelihood; RanodeConfig.w_penalty)")
    g.add_argument("--segment-epochs", type=int, default=0,
                   help="every this many epochs drop the signal flows that stopped early and train the "
                        "rest (of all realisations of a call) in a smaller batch: the same flows and epochs, "
                        "the cost of the epochs run (0: one program, every flow as long as the slowest)")
    g.add_argument(
        "--vmap-realisations",
        type=int,
        default=0,
        help="realisations per vmapped R-ANODE call (0: all of one injection at once)",
    )


def ranode_config(args: argparse.Namespace) -> RanodeConfig:
    """:class:`RanodeConfig` from the options (``--quick`` shrinks the training)."""
    epochs = min(args.epochs, 8) if args.quick else args.epochs
    return RanodeConfig(
        flow=SplineFlowConfig(features=5, n_layers=2, hidden=(args.hidden, args.hidden), n_bins=args.n_bins,
                              tail_bound=args.tail_bound, transform=args.transform),
        train=TrainConfig(epochs=epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                          weight_decay=1e-4, patience=args.patience),
        mode=args.mode,
        w_grid=tuple(float(w) for w in np.logspace(-4, -1, args.n_w)),
        n_seeds=args.n_seeds,
        k_folds=args.k_folds,
        w_init=args.w_init,
        w_penalty=args.w_penalty,
        n_bootstrap=args.n_bootstrap,
        segment_epochs=args.segment_epochs,
    )  # fmt: skip


def ranode_step_config(config: RanodeConfig) -> dict:
    """The settings a measurement's numbers depend on (not how the training is batched)."""
    settings = {k: v for k, v in config._asdict().items() if k != "segment_epochs"}
    if not config.w_penalty:  # results directories from before the option have no such key
        del settings["w_penalty"]
    return settings


def measure_in_chunks(
    out: ResultsDir,
    name: str,
    step_config: dict,
    method: str,
    key,
    x,
    log_pb,
    weight,
    coords,
    config: RanodeConfig,
    is_toy: bool,
    region,
    chunk: int,
    desc: str,
    setup: PawsSetup | CathodeSetup | None = None,
    signal: toy.SignalParams = toy.DEFAULT_SIGNAL,
) -> Measurements:
    """Measure ``(R, N, 5)`` realisations ``chunk`` at a time, each chunk a resumable step.

    Realisation ``r`` uses ``fold_in(key, r)`` whatever the chunking; a short last chunk is
    padded by repeating realisations (so every chunk has one shape and compiles once).
    ``weight`` (``(R, N)`` or None) masks padding events. ``setup`` carries the PAWS ratio model
    or CATHODE's background sample and cut; ``signal`` is the toy's true signal (the oracle's
    density, PAWS's true masses).
    """
    n = x.shape[0]
    chunk = n if chunk <= 0 else min(chunk, n)
    parts = []
    for start in progress(range(0, n, chunk), desc, total=-(-n // chunk)):
        idx = np.arange(start, start + chunk) % n  # pad by wrapping around
        keys = realisation_keys(key, chunk, start)
        template = lambda: Measurements(*(jnp.zeros(chunk, jnp.float32) for _ in Measurements._fields))

        def compute(idx=idx, keys=keys):
            res = measure(method, keys, x[idx], log_pb=None if log_pb is None else log_pb[idx], coords=coords,
                          weight=None if weight is None else weight[idx], config=config, is_toy=is_toy,
                          region=region, signal=signal,
                          **(setup.measure_kwargs(x[idx]) if setup else {}))  # fmt: skip
            return jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), res)

        parts.append(out.step(f"{name}_{start:05d}", {**step_config, "start": start, "chunk": chunk},
                              compute, template))  # fmt: skip
    return jax.tree.map(lambda *v: np.concatenate([np.asarray(a) for a in v])[:n], *parts)


# --------------------------------------------------------------------------------------------
# PAWS settings shared with experiments/coverage.py
# --------------------------------------------------------------------------------------------


def add_paws_arguments(parser: argparse.ArgumentParser) -> None:
    """The PAWS options (CPU-sized defaults)."""
    g = parser.add_argument_group("PAWS")
    g.add_argument("--paws-ratio", choices=("classifier", "exact"), default="classifier",
                   help="the likelihood ratio: a parametrised classifier trained on simulated toy signal "
                        "(PAWS-GBI), or the exact toy ratio (a perfect classifier)")  # fmt: skip
    g.add_argument("--paws-per-point", type=int, default=2000, help="simulated signal events per mass point")
    g.add_argument("--paws-epochs", type=int, default=40, help="maximum classifier epochs")
    g.add_argument("--paws-runs", type=int, default=1,
                   help="classifier trainings (one vmapped ensemble, averaged) smoothing the learned ratio")
    g.add_argument("--paws-activation", default="silu",
                   help="the classifier's hidden activation (a jax.nn name): silu (default) makes the ratio "
                        "smooth in the masses, which the Fisher errors and profile re-fits need; relu is the "
                        "reference's (piecewise linear in the masses)")  # fmt: skip
    g.add_argument("--paws-starts", type=int, default=6, help="random starts of the fit")
    g.add_argument("--paws-grid-step", type=int, choices=(50, 100), default=100,
                   help="mass-grid step in GeV: 100 (50, 100, 200, ..., 600 GeV, 28 ordered points) or 50 "
                        "(the reference grid 50, 100, ..., 600 GeV, 78 ordered points)")  # fmt: skip
    g.add_argument("--paws-kappa", choices=("pooled", "background", "counts"), default="pooled",
                   help="the class-balance correction kappa(theta) = 1 / E_B[f / (1 - f)]: estimated on "
                        "background events held out of the classifier's training pooled with held-out "
                        "simulated signal at every grid point (default; bridge-sampling weights), on the "
                        "background events alone (noisy in theta: biased masses), or from the training "
                        "set's class counts (trusts the classifier's calibration: false signals on the toy)")
    g.add_argument("--paws-kappa-events", type=int, default=20_000,
                   help="held-out background events that fix kappa(theta) (pooled and background); several "
                        "times the SR events, or its noise makes false signals")  # fmt: skip
    g.add_argument("--paws-kappa-signal", type=int, default=250,
                   help="with --paws-kappa pooled: held-out simulated signal events per grid point")
    g.add_argument("--paws-kappa-table", type=float, default=10.0,
                   help="with --paws-kappa pooled or background: tabulate log kappa(theta) once on a grid of "
                        "this step in GeV (--quick: at least 25) and interpolate it (a cubic spline; 9x "
                        "faster fits); 0: evaluate the kappa events at every theta of every fit")  # fmt: skip
    g.add_argument("--paws-closure", type=int, default=0,
                   help="correct every measurement by its closure test: this many background events (the "
                        "background class's source: generator samples, or true background for exact) plus a "
                        "quarter as many signal events simulated at its fitted masses, weighted to its size "
                        "at its mu and fitted again (0: off)")  # fmt: skip
    g.add_argument("--paws-closure-jacobian", action=argparse.BooleanOptionalAction, default=True,
                   help="with --paws-closure: measure the closure map's slope G = d(fitted masses) / "
                        "d(injected masses) by implicit differentiation of the closure fit, and use it for "
                        "the mass correction, the mass intervals and the contour (--no-...: G = 1, one "
                        "offset for every mass)")  # fmt: skip
    g.add_argument("--paws-global-toys", type=int, default=0,
                   help="background-only toys for the look-elsewhere-corrected Z_global of the mass scan "
                        "(0: local Z only; 999 resolve Z_global up to 3.09)")  # fmt: skip
    g.add_argument("--paws-global-events", type=int, default=0,
                   help="background events the toys are drawn from, independent of the classifier's and "
                        "kappa's (0: 5x the SR background events)")  # fmt: skip


def paws_kappa_events(args: argparse.Namespace) -> int:
    """Background events held out for ``kappa(theta)`` (0 with class counts; ``--quick``: at most 20,000)."""
    if args.paws_kappa == "counts":
        return 0
    return min(args.paws_kappa_events, 20_000) if args.quick else args.paws_kappa_events


PAWS_CHECKS = ("paws_asimov", "paws_closure", "paws_closure_jacobian")
"""``--paws-*`` options of checks run after the measurement (coverage.py): not part of its steps' config."""


def paws_options(args: argparse.Namespace) -> dict:
    """The ``--paws-*`` options: part of every resumable PAWS step's config (a changed option recomputes)."""
    return {k: v for k, v in sorted(vars(args).items()) if k.startswith("paws_") and k not in PAWS_CHECKS}


class PawsSetup(NamedTuple):
    """What a PAWS measurement needs besides the events: the ratio model and the fit settings."""

    config: PawsConfig
    classifier: PawsClassifier | None = None
    kappa_background: np.ndarray | KappaSample | GridSpline | None = None

    def ratio(self, x: np.ndarray, region) -> tuple:
        """``(log_ratio_fn, data)`` of events ``x``: the classifier's, or the exact toy ratio."""
        if self.classifier is None:
            return toy_log_ratio_fn(region), toy_ratio_data(x, region)
        return self.classifier.log_ratio_fn, self.classifier.ratio_data(x, self.kappa_background)

    def batched_ratio(self, x: np.ndarray, region) -> tuple:
        """``(log_ratio_fn, data, axes)`` of ``(R, N, 5)`` events, ``axes`` the data's ``vmap`` axes."""
        if self.classifier is None:
            data = jax.vmap(lambda xx: toy_ratio_data(xx, region))(jnp.asarray(x))
            return toy_log_ratio_fn(region), data, 0
        return (self.classifier.log_ratio_fn, self.classifier.ratio_data(x, self.kappa_background),
                ClassifierRatio(0, None, None, None))  # fmt: skip

    def null_q0(self, key, sample: np.ndarray, n_events: int, n_toys: int, region) -> jax.Array:
        """The mass scan's ``q0`` on ``n_toys`` background-only toys of ``n_events`` drawn from ``sample``."""
        fn, data = self.ratio(sample, region)
        return null_scan_q0(key, fn, data, n_events, n_toys=n_toys, config=self.config)

    def measure_kwargs(self, x: np.ndarray) -> dict:
        """Keyword arguments of :func:`gbijax.inference.measure` for events ``x`` (``(R, N, 5)``)."""
        kwargs = {"paws_config": self.config}
        if self.classifier is not None:
            fn, data, axes = self.batched_ratio(x, None)
            kwargs.update(log_ratio_fn=fn, ratio_data=data, ratio_axes=axes)
        return kwargs


def paws_setup(args: argparse.Namespace, key, background: np.ndarray | None) -> PawsSetup:
    """PAWS: a classifier trained on simulated toy signal against ``background``, or the exact ratio."""
    config = PawsConfig(n_starts=args.paws_starts, n_steps=100 if args.quick else 200,
                        grid_points=8 if args.quick else 12, n_profile=9 if args.quick else 13)  # fmt: skip
    if args.paws_ratio == "exact":
        return PawsSetup(config)
    epochs = min(args.paws_epochs, 4) if args.quick else args.paws_epochs
    per_point = min(args.paws_per_point, 300) if args.quick else args.paws_per_point
    if args.paws_kappa != "counts" and args.paws_kappa_table > 0 and args.paws_activation in PIECEWISE_LINEAR:
        raise ValueError(f"--paws-kappa-table needs a smooth --paws-activation: {args.paws_activation} is "
                         "piecewise linear in the masses, where a spline's curvature is not the ratio's (use "
                         "silu, or --paws-kappa-table 0)")  # fmt: skip
    if args.paws_runs < 1:
        raise ValueError(f"--paws-runs must be >= 1, got {args.paws_runs}")
    cls = TOY_PAWS_MLP._replace(n_runs=args.paws_runs, activation=args.paws_activation,
                                train=TOY_PAWS_MLP.train._replace(epochs=epochs))  # fmt: skip
    k_train, k_kappa = jax.random.split(key)
    kappa = None
    n_kappa = paws_kappa_events(args)
    if args.paws_kappa != "counts":
        if not 0 < n_kappa < len(background):
            raise ValueError(f"--paws-kappa-events must be between 1 and {len(background) - 1} (background "
                             f"events besides the training ones); got {n_kappa}")  # fmt: skip
        held_out = np.zeros(len(background), bool)
        held_out[np.asarray(jax.random.permutation(k_kappa, len(background))[:n_kappa])] = True
        kappa, background = background[held_out], background[~held_out]
    n_signal = min(args.paws_kappa_signal, 50) if args.quick else args.paws_kappa_signal
    if args.paws_kappa == "pooled" and n_signal < 1:
        raise ValueError(f"--paws-kappa-signal must be >= 1 with --paws-kappa pooled; got {n_signal}")
    balance = {"counts": "class counts", "background": f"{n_kappa} held-out background events",
               "pooled": f"{n_kappa} held-out background events pooled with {n_signal} simulated signal "
                         "events per mass point"}[args.paws_kappa]  # fmt: skip
    print(f"training the PAWS classifier ({per_point} signal events per mass point, {len(background)} "
          f"background events; kappa from {balance}) ...", flush=True)  # fmt: skip
    grid = TOY_PAWS_GRID if args.paws_grid_step == 100 else REFERENCE_PAWS_GRID
    trained = train_toy_paws(k_train, background, per_point, cls, grid=grid)
    if args.paws_kappa == "pooled":
        signal = toy_signal_grid(jax.random.fold_in(k_kappa, 1), n_signal, trained.points)
        kappa = trained.kappa_sample(kappa, signal)
    if kappa is not None and args.paws_kappa_table > 0:
        step = max(args.paws_kappa_table, 25.0) if args.quick else args.paws_kappa_table
        kappa = trained.kappa_table(kappa, step / 1000)
    return PawsSetup(config._replace(mass_bounds=trained.mass_bounds), trained, kappa)


def closure_events(n_background: int) -> tuple[int, int]:
    """``(background, signal)`` events of a closure or Asimov data set: a quarter as many signal events."""
    return n_background, max(n_background // 4, 1)


def closure_in_chunks(out: ResultsDir, name: str, paws: PawsSetup, step_config: dict, key, x, weight,
                      measured: Measurements, background: np.ndarray, region, chunk: int,
                      truth, jacobian: bool = True) -> tuple[Measurements, PawsClosure]:  # fmt: skip
    """Every measurement corrected by its closure test, ``chunk`` at a time, each a resumable step.

    The ``background`` pool (in GBI: generator samples) serves every closure data set; each adds
    ``len(background) // 4`` signal events simulated at its own fitted masses with the key
    ``realisation_keys(key, ...)`` of its realisation (:func:`gbijax.inference.measure_paws_closure`).
    ``x`` are the ``(R, N, 5)`` measured events, ``weight`` their ``(R, N)`` weights (None: all 1).
    With ``jacobian`` the closure data's derivative with respect to the injected masses (the same
    signal draws moved with the masses) gives each closure map's slope.
    Returns the corrected measurements and the ``(R,)`` closure tests.
    """
    (n_background, n_signal), n = closure_events(len(background)), x.shape[0]
    zeros = lambda *shape: jnp.zeros((chunk, *shape), jnp.float32)
    slope = lambda: zeros(2, 2) if jacobian else None
    template = lambda: (Measurements(*(zeros() for _ in Measurements._fields)),
                        PawsClosure(zeros(3), zeros(3), zeros(3, 3), zeros(3, 3), slope()))
    parts = []
    for start in progress(range(0, n, chunk), "closure", total=-(-n // chunk)):
        idx = np.arange(start, start + chunk) % n
        rows = Measurements(*(None if field is None else jnp.asarray(field)[idx] for field in measured))

        def compute(idx=idx, rows=rows, start=start):
            masses = closure_injection(rows)[:, 1:]
            keys = realisation_keys(key, chunk, start)
            draw = lambda k, m: toy.signal_sample(k, n_signal, toy.SignalParams(m[0], m[1]), region)

            def closure_data(m):
                pool = jnp.concatenate([jnp.broadcast_to(background, (chunk, *background.shape)),
                                        jax.vmap(draw)(keys, m)], 1)  # fmt: skip
                return paws.batched_ratio(pool, region)[1]

            tangents = mass_tangents(closure_data, masses) if jacobian else None
            fn, data, axes = paws.batched_ratio(x[idx], region)
            w = jnp.ones(x[idx].shape[:2]) if weight is None else jnp.asarray(weight[idx])
            corrected, closure = measure_paws_closure(rows, data, w, closure_data(masses), n_background, fn,
                                                      paws.config, axes, axes, truth,
                                                      asimov_tangents=tangents)  # fmt: skip
            return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), (corrected, closure))

        config = {**step_config, "closure_events": [n_background, n_signal], "start": start, "chunk": chunk,
                  **({"closure_jacobian": True} if jacobian else {})}  # old steps (no slope) stay valid
        parts.append(out.step(f"{name}_{start:05d}", config, compute, template))
    join = lambda *a: np.concatenate([np.asarray(b) for b in a])[:n]
    return jax.tree.map(join, *parts)


def closure_report(corrected: Measurements, closure: PawsClosure, mu: float, n_background: int) -> dict:
    """The corrected measurements' summary and the spread of their closure tests (JSON-ready)."""
    offset_gev = 1e3 * np.asarray(closure.mass_offset)
    summary = summarize_measurements(corrected, mu)
    spread = lambda v: {"median": float(np.nanmedian(v)), "p16": float(np.nanquantile(v, 0.16)),
                        "p84": float(np.nanquantile(v, 0.84))}  # fmt: skip
    widen = np.sqrt(np.asarray(closure.variance_scale))
    return {"events": list(closure_events(n_background)), "mu_scale": spread(np.asarray(closure.mu_scale)),
            "m_x_offset_gev": spread(offset_gev[:, 0]), "m_y_offset_gev": spread(offset_gev[:, 1]),
            "summary": summary,
            "interval_scale": {k: spread(widen[:, i]) for i, k in enumerate(("mu", "m_x", "m_y"))},
            "mass_contour_scale": spread(np.asarray(closure.mass_contour_scale)),
            "mass_jacobian": None if closure.jacobian is None else [
                [spread(np.asarray(closure.jacobian)[:, i, j]) for j in range(2)] for i in range(2)],
            **{k: summary.get(k) for k in ("coverage68", "coverage95", "relative_bias",
                                           "mass_contour_coverage68", "mass_contour_coverage95")}}


def describe_closure(c: dict) -> str:
    """One line of :func:`closure_report`'s numbers (``-`` for those undefined at mu = 0)."""
    mu, scale = c["summary"]["mu_hat"], {k: v["median"] for k, v in c["interval_scale"].items()}
    offset = {k: c[f"{k}_offset_gev"]["median"] for k in ("m_x", "m_y")}
    f = lambda key, spec=".3f": "-" if c.get(key) is None else format(c[key], spec)
    return ", ".join([
        f"mu_hat {mu['median']:.5f} [{mu['p16']:.5f}, {mu['p84']:.5f}]",
        f"coverage68 {f('coverage68')}", f"coverage95 {f('coverage95')}",
        f"relative bias {f('relative_bias', '+.3f')}",
        f"(m_X, m_Y) contour coverage 68% {f('mass_contour_coverage68')}",
        f"95% {f('mass_contour_coverage95')}; median closure mu scale {c['mu_scale']['median']:.3f}",
        f"offsets m_X {offset['m_x']:+.1f} GeV", f"m_Y {offset['m_y']:+.1f} GeV",
        f"interval scales mu {scale['mu']:.3f}", f"m_X {scale['m_x']:.3f}", f"m_Y {scale['m_y']:.3f}",
    ] + ([] if c.get("mass_jacobian") is None else [
        "median slope G " + str([[round(e["median"], 3) for e in row] for row in c["mass_jacobian"]])
    ]))  # fmt: skip


# --------------------------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------------------------


def add_background_arguments(parser: argparse.ArgumentParser) -> None:
    """The learned background model's options (:func:`background_setup`)."""
    g = parser.add_argument_group("background model (learned variants)")
    g.add_argument("--background-model", choices=("flow_matching", "spline_flow"), default="spline_flow")
    g.add_argument("--background-epochs", type=int, default=60)
    g.add_argument("--background-ensemble", type=int, default=1)
    g.add_argument(
        "--max-train", type=int, default=0, help="at most this many training events (0: all; --quick: 5000)"
    )
    g.add_argument("--sr-truth-folds", type=int, default=0,
                   help="R-ANODE, sr_truth: train on the independent SR background plus the data's SR "
                        "background outside each of this many folds, every event evaluated by the models "
                        "that did not see it (0: the independent sample only)")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = experiment_parser("mu_scan", "Measure mu_hat against mu_true over injections and realisations.")
    parser.add_argument("--method", choices=("oracle", "ranode", "paws", "cathode"), required=True)
    parser.add_argument(
        "--background-variant",
        choices=BACKGROUND_VARIANTS,
        default=None,
        help="background model (default: exact for the oracle, sideband for the others; for PAWS and "
        "CATHODE it is the classifiers' background class: the generator's SR samples, or an independent "
        "true SR background sample for exact and sr_truth)",
    )
    parser.add_argument("--injections", default=None,
                        help=f"comma-separated signal fractions mu = S/(S+B) (default {DEFAULT_INJECTIONS}; "
                             "0 is always added)")  # fmt: skip
    parser.add_argument("--realisations", type=int, default=5, help="data realisations per injection")
    parser.add_argument(
        "--max-sr-background",
        type=int,
        default=0,
        help="use a random subset of this many SR background events (0: all; CPU economy)",
    )
    add_background_arguments(parser)
    add_ranode_arguments(parser)
    add_paws_arguments(parser)
    g = parser.add_argument_group("CATHODE (cut-and-count significance)")
    g.add_argument("--cathode-eps-b", type=float, default=1e-3,
                   help="background efficiency of the cut on the classifier score")  # fmt: skip
    g.add_argument("--cathode-oversample", type=float, default=4.0,
                   help="background samples per SR data event (default 4)")  # fmt: skip
    return parser


def parse_injections(text: str | None, quick: bool) -> list[float]:
    text = text or ("0,0.01,0.03" if quick else DEFAULT_INJECTIONS)
    try:
        mus = sorted({float(v) for v in text.split(",") if v.strip()} | {0.0})
    except ValueError:
        raise ValueError(f"--injections must be comma-separated numbers, got {text!r}") from None
    bad = [m for m in mus if not 0.0 <= m < 1.0]
    if bad:
        raise ValueError(f"injections are signal fractions in [0, 1), got {bad}")
    return mus


def _subsample(key, x: np.ndarray, n: int) -> np.ndarray:
    if n <= 0 or len(x) <= n:
        return x
    return x[np.sort(np.asarray(jax.random.permutation(key, len(x))[:n]))]


def _pad(a: np.ndarray, n: int) -> np.ndarray:
    """Pad the event axis (1) to ``n`` by repeating the first event (given zero weight by the caller)."""
    extra = np.broadcast_to(a[:, :1], (a.shape[0], n - a.shape[1], *a.shape[2:]))
    return np.concatenate([a, extra], axis=1)


def _log_density(x: np.ndarray, samples, model, fold=None) -> np.ndarray:
    """``log p_B`` of many events in chunks (``fold``: each event's fold for a :class:`FoldedBackground`)."""
    at = lambda i: None if fold is None else fold[i:i + LOG_PB_CHUNK]
    parts = [np.asarray(background_density(jnp.asarray(x[i:i + LOG_PB_CHUNK]), samples, model, at(i)))
             for i in range(0, len(x), LOG_PB_CHUNK)]  # fmt: skip
    return np.concatenate(parts) if parts else np.zeros(0)


def classifier_background(args, out: ResultsDir, samples, variant: str, key, n: int, n_closure: int = 0):
    """The background class of the PAWS and CATHODE classifiers: ``n`` events in the SR.

    ``exact``: an independent sample of true SR background (idealised: the toy's extra sample, or
    fresh toy events); otherwise samples of the variant's trained generator. ``n_closure`` more
    events from the same source, drawn with their own key, are PAWS's closure pool (the toy only for
    ``exact``: fresh events).

    Returns:
        ``(the data's background events, the background class, the closure pool or None, info dict)``.
    """
    k_bkg, k_draw = jax.random.split(key)
    k_closure = jax.random.fold_in(k_draw, 2)
    if variant == "exact":
        truth = samples.extra_background_sr
        n_extra = 0 if truth is None else len(truth)
        region = (samples.region.lo, samples.region.hi)
        if n_extra < n and samples.is_toy:  # top up with fresh toy events
            k_top = jax.random.fold_in(k_draw, 1)
            fresh = np.asarray(toy.background_sample(k_top, n - n_extra, region=region))
            truth = fresh if truth is None else np.concatenate([truth, fresh.astype(truth.dtype)])
        pool = None
        if n_closure:
            if not samples.is_toy:
                raise ValueError("--paws-closure with --background-variant exact needs fresh toy background")
            pool = np.asarray(toy.background_sample(k_closure, n_closure, region=region), np.float64)
        info = {"variant": variant, "classifier_background": "true SR background (an independent sample)"}
        return samples.background_sr, _subsample(k_draw, truth, n), pool, info
    background, _, model, _, info = background_setup(args, out, samples, variant, k_bkg)
    generated = np.asarray(background_sample(*model, k_draw, n), np.float64)
    pool = np.asarray(background_sample(*model, k_closure, n_closure), np.float64) if n_closure else None
    info["classifier_background"] = f"{n} generator samples in the SR ({variant} background model)"
    return background, generated, pool, info


class CathodeSetup(NamedTuple):
    """CATHODE's background class and cut (see :func:`gbijax.inference.measure_cathode`)."""

    background: np.ndarray
    classifier: ClassifierConfig
    eps_b: float

    def measure_kwargs(self, x: np.ndarray) -> dict:
        """Keyword arguments of :func:`gbijax.inference.measure` (the same for every chunk ``x``)."""
        return {"background": self.background, "classifier": self.classifier, "eps_b": self.eps_b}

    def describe(self) -> dict:
        return {"n_background": len(self.background), "eps_b": self.eps_b,
                "classifier": to_json(self.classifier)}  # fmt: skip


def cathode_setup(args: argparse.Namespace, background: np.ndarray) -> CathodeSetup:
    """CATHODE: the default classifier ensemble (a small one with ``--quick``) and the cut."""
    if not 0.0 < args.cathode_eps_b < 1.0:
        raise ValueError(f"--cathode-eps-b must be in (0, 1), got {args.cathode_eps_b}")
    classifier = QUICK if args.quick else DEFAULT
    return CathodeSetup(np.asarray(background, np.float32), classifier, args.cathode_eps_b)


def realisations_log_pb(real, log_pb_background: np.ndarray, samples, model, key) -> np.ndarray:
    """``(R, N)`` ``log p_B`` of injected realisations: the background's, then the injected signal's.

    With a :class:`FoldedBackground` each injected signal event is scored by a random fold's models
    (``key``): no background model saw it.
    """
    n_r, n_b = real.x.shape[0], log_pb_background.shape[0]
    sig = real.x[:, n_b:].reshape(-1, 5)
    fold = None
    if isinstance(model, FoldedBackground):
        fold = np.asarray(jax.random.randint(key, (len(sig),), 0, model.n_folds))
    log_pb_sig = _log_density(sig, samples, model, fold).reshape(n_r, -1)
    return np.concatenate([np.broadcast_to(log_pb_background, (n_r, n_b)), log_pb_sig], axis=1)


def background_setup(args, out: ResultsDir, samples, variant: str, key):
    """The background of the data, its ``log p_B`` and the signal coordinates.

    Returns:
        ``(background events, log p_B of them, model or None, coords, info dict)``.
    """
    k_fit, k_closure = jax.random.split(key)
    region = samples.region
    info = {"variant": variant}
    if variant == "exact":
        if not samples.is_toy:
            raise ValueError("the exact background variant exists only for the toy (--data toy)")
        pp = fit_preprocessing(samples.background_sr[:, 1:])
        info["coordinates"] = "preprocessing fitted on the SR background sample"
        coords = signal_coordinates(pp, samples.background_sr[:, 0], region)
        return samples.background_sr, _log_density(samples.background_sr, samples, None), None, coords, info
    epochs = min(args.background_epochs, 3) if args.quick else args.background_epochs
    bcfg = BackgroundConfig(
        model=args.background_model, ensemble=args.background_ensemble,
        hidden=(32, 32) if args.quick else (64, 64), n_layers=4,
        train=TrainConfig(epochs=epochs, batch_size=512, learning_rate=1e-3, patience=10, schedule="cosine",
                          clip_norm=5.0),
    )  # fmt: skip
    k_sub, k_fit = jax.random.split(k_fit)
    max_train = min(args.max_train or 5000, 5000) if args.quick else args.max_train
    trimmed = samples._replace(
        sideband=None if samples.sideband is None else _subsample(k_sub, samples.sideband, max_train),
        extra_background_sr=None if samples.extra_background_sr is None
        else _subsample(k_sub, samples.extra_background_sr, max_train),
    )  # fmt: skip
    print(f"training the {variant} background model ({bcfg.model}, {epochs} epochs) ...", flush=True)
    checkpoint_dir = out.path / "steps" / "background"
    if variant == "sr_truth" and args.sr_truth_folds:
        model, hist = fit_background_folds(k_fit, trimmed, bcfg, args.sr_truth_folds, checkpoint_dir)
        bkg, mass_kind = model.background, "sr_truth (idealised)"
        info["training"] = (f"independent SR background + the data's SR background outside each of "
                            f"{args.sr_truth_folds} folds (every event evaluated out of fold)")  # fmt: skip
    else:
        generator, bkg, hist, mass_kind = fit_background_variant(k_fit, trimmed, variant, bcfg,
                                                                 checkpoint_dir)  # fmt: skip
        model = (generator, bkg)
    info.update(model=bcfg.model, epochs_run=np.asarray(hist.epochs_run).tolist(),
                best_val_loss=np.asarray(hist.best_val_loss).tolist(), mass_density=mass_kind,
                coordinates="the background model's preprocessing")  # fmt: skip
    background = samples.background_sr
    if variant == "closure":
        background = closure_background(k_closure, samples, model)
        info["closure"] = "the data's SR background replaced by generator samples"
    coords = signal_coordinates(bkg.preprocessing, background[:, 0], region)
    fold = model.fold if isinstance(model, FoldedBackground) else None
    return background, _log_density(background, samples, model, fold), model, coords, info


def lee_toys(args, out: ResultsDir, setup: PawsSetup, sample: np.ndarray, n_events: int, region, key):
    """The look-elsewhere null: the mass scan's ``q0`` on background-only toys (a resumable step).

    The toys are Poisson re-weightings of ``sample`` (true SR background for ``exact``, generator
    samples otherwise, independent of the classifier's training and ``kappa`` events) with
    ``n_events`` expected events, the data's background count; one null serves every injection.
    """
    if len(sample) < 2 * n_events:
        raise ValueError(f"--paws-global-events: {len(sample)} toy-sample events for {n_events} data events; "
                         "use several times the data")  # fmt: skip
    print(f"look-elsewhere toys: {args.paws_global_toys} background-only scans of {n_events} events drawn "
          f"from {len(sample)} ...", flush=True)  # fmt: skip
    config = {"toys": args.paws_global_toys, "sample": len(sample), "n_events": n_events, "seed": args.seed,
              "paws": setup.config._asdict(), "data": args.data, "options": paws_options(args)}  # fmt: skip
    compute = lambda: {"toy_q0": setup.null_q0(key, sample, n_events, args.paws_global_toys, region)}
    like = lambda: {"toy_q0": jnp.zeros(args.paws_global_toys, jnp.float32)}
    return np.asarray(out.step("lee_toys", config, compute, like)["toy_q0"])


def main(args: argparse.Namespace, out: ResultsDir) -> None:
    mus = parse_injections(args.injections, args.quick)
    variant = args.background_variant or ("exact" if args.method == "oracle" else "sideband")
    if args.method == "oracle" and variant != "exact":
        raise ValueError("the oracle uses the exact toy densities: --background-variant must be exact")
    if args.method == "paws" and args.paws_ratio == "exact" and variant != "exact":
        raise ValueError("--paws-ratio exact uses no background model: --background-variant must be exact")
    if args.realisations < 1:
        raise ValueError("--realisations must be >= 1")
    samples = analysis_samples(args.data)
    signal = toy_signal_params(args.data) or toy.DEFAULT_SIGNAL  # the oracle's density and PAWS's truth
    if args.method == "oracle" and not samples.is_toy:
        raise ValueError("the oracle (exact likelihood) exists only for the analytic toy (--data toy)")
    if args.method == "paws" and not samples.is_toy:
        raise ValueError("PAWS needs simulated parametric signal: only the toy's signal family is available "
                         "here (--data toy)")  # fmt: skip
    key = jax.random.key(args.seed)
    k_sub, k_bkg, k_inj, k_fit = jax.random.split(key, 4)
    k_closure = jax.random.fold_in(key, 7)  # a key of its own: runs without closure keep their numbers
    samples = samples._replace(background_sr=_subsample(k_sub, samples.background_sr, args.max_sr_background))
    config = ranode_config(args)
    region = (samples.region.lo, samples.region.hi)
    if args.paws_global_toys < 0 or args.paws_global_events < 0:
        raise ValueError("--paws-global-toys and --paws-global-events must be >= 0")
    if args.sr_truth_folds and (args.method != "ranode" or variant != "sr_truth" or args.sr_truth_folds < 2):
        raise ValueError("--sr-truth-folds (>= 2) is for --method ranode with --background-variant sr_truth")

    model = coords = log_pb_bkg = setup = null_q0 = closure_pool = None
    background, info = samples.background_sr, {"variant": variant}
    if args.method == "ranode":
        background, log_pb_bkg, model, coords, info = background_setup(args, out, samples, variant, k_bkg)
    if args.method == "paws":
        k_bkg, k_paws = jax.random.split(k_bkg)
        held_out = paws_kappa_events(args)
        n_null = args.paws_global_events or 5 * len(samples.background_sr)
        n_null = n_null if args.paws_global_toys > 0 else 0
        n_class = (180_000 if variant == "exact" else len(samples.background_sr)) + held_out + n_null
        n_closure = min(args.paws_closure, 20_000) if args.quick else args.paws_closure
        background, paws_background, closure_pool, info = classifier_background(args, out, samples, variant,
                                                                                k_bkg, n_class, n_closure)
        if closure_pool is not None:
            n_pool, n_signal = closure_events(len(closure_pool))
            info["closure"] = {"background": n_pool, "signal": n_signal}
        null_sample = paws_background[len(paws_background) - n_null:]
        paws_background = paws_background[:len(paws_background) - n_null]
        setup = paws_setup(args, k_paws, None if args.paws_ratio == "exact" else paws_background)
        if n_null:
            k_null = jax.random.fold_in(k_paws, 1)
            null_q0 = lee_toys(args, out, setup, null_sample, len(background), region, k_null)
            info["look_elsewhere"] = {"toys": args.paws_global_toys, "toy_sample": len(null_sample),
                                      "toy_events": len(background),
                                      "median_toy_q0": float(np.median(null_q0))}  # fmt: skip
    if args.method == "cathode":
        n_class = int(round(args.cathode_oversample * len(samples.background_sr)))
        background, negatives, _, info = classifier_background(args, out, samples, variant, k_bkg, n_class)
        setup = cathode_setup(args, negatives)
    n_b = len(background)
    print(f"{samples.source}: {n_b} SR background events, signal pool {len(samples.signal_pool)}, "
          f"method {args.method}, background {variant}", flush=True)  # fmt: skip

    # every injection is padded to one event count with zero-weight events: one compiled program
    n_max = n_b + max(int(round(mu * n_b / (1.0 - mu))) for mu in mus)
    rows = []
    step_config = {"method": args.method, "variant": variant, "data": args.data, "seed": args.seed,
                   "ranode": ranode_step_config(config) if args.method == "ranode" else None, "n_b": n_b,
                   "paws": paws_options(args) if args.method == "paws" else None}  # fmt: skip
    for i, mu in enumerate(mus):
        real = injected_realisations(jax.random.fold_in(k_inj, i), background, samples.signal_pool, mu,
                                     args.realisations)  # fmt: skip
        log_pb = None
        if args.method == "ranode":
            k_fold = jax.random.fold_in(k_inj, 10_000 + i)
            log_pb = _pad(realisations_log_pb(real, log_pb_bkg, samples, model, k_fold), n_max)
        n = real.x.shape[1]
        weight = np.concatenate([np.ones((args.realisations, n), np.float32),
                                 np.zeros((args.realisations, n_max - n), np.float32)], axis=1)  # fmt: skip
        m = measure_in_chunks(
            out,
            f"mu_{i:02d}",
            {**step_config, "mu": mu},
            args.method,
            jax.random.fold_in(k_fit, i),
            _pad(real.x, n_max),
            log_pb,
            weight,
            coords,
            config,
            samples.is_toy,
            region,
            args.vmap_realisations,
            f"mu={mu:g}",
            setup,
            signal,
        )
        s = summarize_measurements(m, real.mu, null_q0)
        row = {"mu_injected": mu, "mu_true": real.mu, "s_over_sqrt_b": real.s_over_sqrt_b,
               "n_signal": real.n_signal, "n_background": n_b, **s,
               "per_realisation": {k: np.asarray(v).tolist() for k, v in m._asdict().items()}}  # fmt: skip
        if closure_pool is not None:
            chunk = args.vmap_realisations or args.realisations
            truth = (float(signal.m_x), float(signal.m_y))
            corrected, tests = closure_in_chunks(
                out, f"mu_{i:02d}_closure", setup, {**step_config, "mu": mu},
                jax.random.fold_in(k_closure, i), _pad(real.x, n_max), weight, m, closure_pool, region, chunk,
                truth, args.paws_closure_jacobian)  # fmt: skip
            per_realisation = {k: np.asarray(v).tolist() for k, v in corrected._asdict().items()}
            row["paws_closure"] = {**closure_report(corrected, tests, real.mu, len(closure_pool)),
                                   "per_realisation": per_realisation}  # fmt: skip
        rows.append(row)
        fitted = "" if "coverage68" not in s else (
            f"mu_hat {s['mu_hat']['median']:.5f} [{s['mu_hat']['p16']:.5f}, {s['mu_hat']['p84']:.5f}], "
            f"68% [{s['mu_lo68']:.5f}, {s['mu_hi68']:.5f}], cov68 {s['coverage68']:.2f}, "
            f"cov95 {s['coverage95']:.2f}, ")  # fmt: skip
        print(
            f"  mu={real.mu:.5f} S/sqrt(B)={real.s_over_sqrt_b:.2f}: {fitted}Z {s['z']:.2f}"
            + ("" if "z_global" not in s else f" (global {s['z_global']:.2f})")
            + ("" if "m_x" not in s else f", m_X {s['m_x']['median']:.3f}, m_Y {s['m_y']['median']:.3f} TeV"),
            flush=True,
        )
        if "paws_closure" in row:
            print(f"    closure-corrected: {describe_closure(row['paws_closure'])}", flush=True)

    results = {"method": args.method, "background_variant": variant, "data": samples.source,
               "background": info, "n_background": n_b, "realisations": args.realisations,
               "ranode_config": config._asdict() if args.method == "ranode" else None,
               "paws_config": None if args.method != "paws" else {**setup.config._asdict(),
                                                                   "ratio": args.paws_ratio,
                                                                   "kappa_events": paws_kappa_events(args),
                                                                   "options": paws_options(args)},
               "cathode_config": setup.describe() if args.method == "cathode" else None,
               "injections": rows, "summary": scan_summary(rows)}  # fmt: skip
    label = {"oracle": "oracle", "ranode": f"R-ANODE ({variant})", "paws": f"PAWS ({variant})",
             "cathode": f"CATHODE ({variant})"}[args.method]  # fmt: skip
    out.write_results(results)
    if any(mu > 0 for mu in mus):  # the figures are against mu_true (or S/sqrt(B)) on log axes
        if args.method != "cathode":  # a cut-and-count search measures no mu
            plotting.mu_scan_figure(
                {label: rows},
                n_b,
                out.figure_path("mu_scan"),
                title=f"{samples.source}: {label}, {args.realisations} realisations",
            )
            plotting.coverage_vs_mu_figure({label: rows}, out.figure_path("coverage"))
        plotting.significance_figure({label: rows}, out.figure_path("significance"))
    print(f"results in {out.path}", flush=True)


def scan_summary(rows: list[dict]) -> dict:
    """The scan in a few numbers: no false signal at mu = 0, the smallest mu with Z >= 3 and 5, and
    whether the 95% interval contains mu_true (median over realisations) at every injection >= 0.3%;
    with look-elsewhere toys the same for the global Z (which only reaches 3 with >= 741 toys)."""
    zero = next(r for r in rows if r["mu_injected"] == 0.0)
    signal = [r for r in rows if r["mu_injected"] > 0]
    first = lambda cond: next((r["mu_true"] for r in signal if cond(r)), None)
    look_elsewhere = {} if "z_global" not in zero else {
        "no_false_signal_global": {"frac_z_global_below_2": zero["frac_z_global_below_2"],
                                   "frac_both": zero["no_false_signal_global"],
                                   "pass": zero["no_false_signal_global"] >= 0.95,
                                   "z_global_max": zero["z_global_max"]},
        "smallest_mu_median_z_global_3": first(lambda r: r["z_global"] >= 3),
    }  # fmt: skip
    return {
        **look_elsewhere,
        "no_false_signal": {
            "frac_z_below_2": zero["frac_z_below_2"],
            "frac_95_contains_0": zero["frac_95_contains_0"],
            "frac_both": zero["no_false_signal"],
            "pass": zero["no_false_signal"] >= 0.95,
            "mu_hat_median": zero["mu_hat"]["median"],
            "mu_hi95_median": zero["mu_hi95"],
        },
        "smallest_mu_median_z_3": first(lambda r: r["z"] >= 3),
        "smallest_mu_median_z_5": first(lambda r: r["z"] >= 5),
        "coverage95_at_mu_ge_0.003": {
            f"{r['mu_true']:.5f}": r.get("coverage95") for r in signal if r["mu_injected"] >= 0.003
        },
        "median_95_interval_contains_mu_true": {
            f"{r['mu_true']:.5f}": r["mu_lo95"] <= r["mu_true"] <= r["mu_hi95"] for r in signal
        },
    }


if __name__ == "__main__":
    sys.exit(run_experiment(main, build_parser()))
