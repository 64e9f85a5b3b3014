"""Measurements over data realisations: one method, many realisations, one vmapped program.

A *measurement* of the signal fraction is ``mu_hat``, its 68% and 95% Wilks intervals and the
discovery significance ``Z``. :func:`measure` makes it for a stack of ``R`` data realisations
(fixed-shape ``(R, N, 5)`` signal-region events) with one of :data:`METHODS`:

- ``"oracle"``: the exact-likelihood fit on the analytic toy (:func:`oracle_fit`), the
  optimality yardstick (toy only).
- ``"ranode"``: R-ANODE (:func:`fit_ranode`) against a given background log-density, with the
  events mapped to signal coordinates.
- ``"paws"``: the PAWS fit of ``(mu, m_X, m_Y)`` (:func:`fit_paws`) with a likelihood ratio: a
  trained parametrised classifier (PAWS-GBI), or on the toy the exact ratio (a perfect
  classifier), which also gives the fitted masses with their intervals.
- ``"cathode"``: the anomaly-detection baseline as a discovery test (:func:`measure_cathode`):
  a k-fold classifier of the data against background samples and a cut-and-count ``Z``; it
  measures no ``mu`` (NaN), only the significance that the GBI methods are compared with.

All vmap over the realisations (R-ANODE in batches of ``batch_size`` realisations through
``jax.lax.map`` to bound memory). :func:`summarize_measurements` reduces the ``(R,)`` arrays to
what a study reports: the median and 16/84% (2.5/97.5%) quantiles of ``mu_hat``, median interval
ends, median ``Z``, the coverage of the true ``mu`` by the intervals with binomial errors, the
bias, and the no-false-signal fractions (METHODS.md, section 5c). :func:`compare_to_oracle`
gives the width and significance ratios to the oracle on the same pseudo-experiments.
:func:`measure_paws_closure` calibrates PAWS measurements by their closure tests (bias, scale and
interval sizes at each fitted point, from generator background and simulated signal).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gbijax import classifiers as clf
from gbijax.data import DEFAULT_SR, toy
from gbijax.data._preprocessing import Preprocessing
from gbijax.inference._cut import cut_and_count
from gbijax.inference._oracle import oracle_fit
from gbijax.inference._paws import (
    PawsClosure,
    PawsConfig,
    _closure_config,
    _closure_core,
    _fit_core,
    _landscape,
    global_p_value,
    toy_log_ratio_fn,
    toy_ratio_data,
)
from gbijax.inference._ranode import (
    RanodeConfig,
    _check_events,
    _check_mode,
    _fit_realisations,
    _to_coordinates,
    fit_ranode,
)
from gbijax.inference._stats import CL68, CL95, discovery, mixture_asimov_weights, wilks_threshold

__all__ = ["METHODS", "Measurements", "closure_corrected", "closure_injection", "compare_to_oracle",
           "measure", "measure_cathode", "measure_oracle", "measure_paws", "measure_paws_closure",
           "measure_ranode", "ranode_inputs", "realisation_keys",
           "summarize_measurements"]  # fmt: skip

METHODS = ("oracle", "ranode", "paws", "cathode")


class Measurements(NamedTuple):
    """Per-realisation measurements, each an ``(R,)`` array.

    Attributes:
        mu_hat: fitted signal fraction.
        lo68, hi68: 68.27% Wilks interval (``-2 Delta log L <= 1``).
        lo95, hi95: 95% Wilks interval (``-2 Delta log L <= 3.84``).
        q0, z: discovery test statistic and significance ``sqrt(q0)``.
        w_fit: R-ANODE learned mode: the signal fraction learned on the training folds (mean over
            folds and seeds), to compare with the held-out ``mu_hat``; NaN otherwise.
        m_x, m_x_lo68, m_x_hi68, m_y, m_y_lo68, m_y_hi68: PAWS: the fitted masses (TeV) with
            their 68% profile intervals; NaN for methods that do not fit masses (``None`` when
            built by hand without them).
        q_masses_true: PAWS with known true masses: ``-2 Delta l`` of the true ``(m_X, m_Y)``
            (``mu`` profiled), so the true point lies in the 2-D ``CL`` contour when it is at most
            ``wilks_threshold(CL, 2)`` (2.30 for 68.3%, 5.99 for 95%); NaN otherwise.
        shape_std: R-ANODE: the standard deviation of ``mu_hat`` from the learned signal shape,
            included in the intervals (0 when not estimated); NaN for other methods.
        q0_scan: PAWS: the scan statistic of the look-elsewhere correction, the largest local
            ``q0`` on the fit's coarse mass grid (:func:`gbijax.inference.scan_q0`); compare it
            with background-only toys (:func:`gbijax.inference.null_scan_q0`,
            :func:`gbijax.inference.global_p_value`); NaN for other methods.
    """

    mu_hat: jax.Array
    lo68: jax.Array
    hi68: jax.Array
    lo95: jax.Array
    hi95: jax.Array
    q0: jax.Array
    z: jax.Array
    w_fit: jax.Array
    m_x: jax.Array | None = None
    m_x_lo68: jax.Array | None = None
    m_x_hi68: jax.Array | None = None
    m_y: jax.Array | None = None
    m_y_lo68: jax.Array | None = None
    m_y_hi68: jax.Array | None = None
    q_masses_true: jax.Array | None = None
    shape_std: jax.Array | None = None
    q0_scan: jax.Array | None = None


def _from_fit(fit, w_fit, shape_std=None) -> Measurements:
    nan = jnp.full_like(fit.mu_hat, jnp.nan)
    return Measurements(fit.mu_hat, fit.interval_68.lo, fit.interval_68.hi, fit.interval_95.lo,
                        fit.interval_95.hi, fit.q0, fit.z, w_fit, *([nan] * 7),
                        nan if shape_std is None else shape_std, nan)  # fmt: skip


def realisation_keys(key: jax.Array, n: int, start: int = 0) -> jax.Array:
    """``(n,)`` keys ``fold_in(key, start + r)``: realisation ``r``'s key does not depend on chunking."""
    return jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.arange(start, start + n))


@functools.partial(jax.jit, static_argnames=("region",))
def measure_oracle(
    x: jax.Array,
    weight: jax.Array | None = None,
    signal: toy.SignalParams = toy.DEFAULT_SIGNAL,
    region=(DEFAULT_SR.lo, DEFAULT_SR.hi),
) -> Measurements:
    """The exact-likelihood oracle (:func:`oracle_fit`, ``mu >= 0``) on ``(R, N, 5)`` toy events.

    Args:
        x: ``(R, N, 5)`` signal-region events of ``R`` realisations.
        weight: optional ``(R, N)`` per-event weights.
        signal: the true signal masses.
        region: the signal region ``(lo, hi)`` (static).
    """
    w = jnp.ones(x.shape[:2], x.dtype) if weight is None else jnp.asarray(weight, x.dtype)
    fit = jax.vmap(lambda xx, ww: oracle_fit(xx, ww, signal, region))(x, w)
    return _from_fit(fit, jnp.full(x.shape[:1], jnp.nan, x.dtype))


def ranode_inputs(coords: Preprocessing, x: jax.Array, log_pb: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Events in signal coordinates and the background log-density there.

    Args:
        coords: the 5-column transform of :func:`signal_coordinates`.
        x: ``(..., N, 5)`` physical events.
        log_pb: ``(..., N)`` ``log p_B(m, x)`` in physical units.

    Returns:
        ``(u, log p_B(u) = log p_B(x) - log|du/dx|)`` with the shapes of ``x`` and ``log_pb``.
    """
    x = jnp.asarray(x, jnp.float32)
    flat = x.reshape(-1, x.shape[-2], 5)
    u, log_det = jax.vmap(lambda xx: _to_coordinates(coords, xx))(flat)
    return u.reshape(x.shape), jnp.asarray(log_pb, jnp.float32) - log_det.reshape(x.shape[:-1])


def measure_ranode(
    keys: jax.Array,
    u: jax.Array,
    log_pb: jax.Array,
    weight: jax.Array | None = None,
    config: RanodeConfig = RanodeConfig(),
    batch_size: int | None = None,
) -> Measurements:
    """R-ANODE (:func:`fit_ranode`) on ``R`` realisations as one program.

    With ``config.segment_epochs > 0`` the realisations' signal flows train instead as one
    population that drops the flows that stopped early every that many epochs
    (:func:`gbijax.inference.fit_ranode_realisations`), ``batch_size`` realisations at a time.

    Args:
        keys: ``(R,)`` PRNG keys, one per realisation (:func:`realisation_keys`).
        u: ``(R, N, 5)`` events in signal coordinates (:func:`ranode_inputs`).
        log_pb: ``(R, N)`` background log-density in signal coordinates.
        weight: optional ``(R, N)`` per-event weights.
        config: :class:`RanodeConfig` (static).
        batch_size: realisations per vectorised batch (``jax.lax.map``), ``None``: all at once.

    Raises:
        ValueError: as :func:`gbijax.inference.fit_ranode_realisations` (shapes, NaN or inf,
            negative weights, an empty realisation, the mode).
    """
    w = jnp.ones(np.shape(u)[:2], jnp.float32) if weight is None else jnp.asarray(weight, jnp.float32)
    _check_mode(config)
    _check_events(u, log_pb, w, config, realisations=True)
    if not config.segment_epochs:
        return _measure_ranode_program(keys, u, log_pb, w, config, batch_size)
    size = batch_size or keys.shape[0]
    chunk = lambda i: (v[i : i + size] for v in (keys, u, log_pb, w))
    parts = [jax.vmap(_ranode_measurement)(_fit_realisations(*chunk(i), config))
             for i in range(0, len(keys), size)]  # fmt: skip
    return jax.tree.map(lambda *v: jnp.concatenate(v), *parts)


def _ranode_measurement(res) -> Measurements:
    """One realisation's :class:`Measurements` from its :class:`RanodeResult`."""
    return _from_fit(res, jnp.mean(res.w_learned), jnp.sqrt(res.shape_variance))


@functools.partial(jax.jit, static_argnames=("config", "batch_size"))
def _measure_ranode_program(keys, u, log_pb, w, config: RanodeConfig, batch_size: int | None) -> Measurements:
    def one(args):
        return _ranode_measurement(fit_ranode(*args, config))

    if batch_size is None:
        return jax.vmap(one)((keys, u, log_pb, w))
    return jax.lax.map(one, (keys, u, log_pb, w), batch_size=batch_size)


@functools.partial(
    jax.jit, static_argnames=("log_ratio_fn", "config", "data_axes", "batch_size", "true_masses")
)
def measure_paws(
    keys: jax.Array,
    data,
    weight: jax.Array,
    log_ratio_fn,
    config: PawsConfig = PawsConfig(),
    data_axes=0,
    batch_size: int | None = None,
    true_masses: tuple[float, float] | None = None,
) -> Measurements:
    """PAWS (:func:`fit_paws`: multi-start fit, profile intervals, ``q0``) on ``R`` realisations at once.

    Args:
        keys: ``(R,)`` PRNG keys of the random starts.
        data: the ratio data of ``log_ratio_fn`` with a leading realisation axis where
            ``data_axes`` (a ``vmap`` ``in_axes`` prefix, static) says so, e.g.
            ``ClassifierRatio(0, None, None, None)`` for events per realisation and one classifier.
        weight: ``(R, N)`` per-event weights.
        log_ratio_fn: the :data:`LogRatioFn` (static: :func:`classifier_log_ratio` or
            :func:`toy_log_ratio`).
        config: :class:`PawsConfig` (static).
        data_axes: see ``data``.
        batch_size: realisations per vectorised batch (``jax.lax.map``), ``None``: all at once.
        true_masses: ``(m_X, m_Y)`` (static) to evaluate ``q_masses_true`` (2-D contour coverage).
    """

    def one(k, d, w):
        fit = _fit_core((log_ratio_fn,), (d,), w, k, None, config)
        q_true = jnp.nan
        if true_masses is not None:
            mx, my = (jnp.asarray([v], fit.mu_hat.dtype) for v in true_masses)
            (mu_lo, mu_hi), no_alpha = config.mu_bounds, jnp.zeros(0, mx.dtype)
            at_truth = _landscape((log_ratio_fn,), (d,), w, mx, my, no_alpha, mu_lo, mu_hi, 1, config.n_iter)
            q_true = jnp.maximum(2.0 * (fit.log_likelihood_max - at_truth.log_likelihood[0, 0]), 0.0)
        land = fit.landscape  # l(mu = 0) = 0 at every mass point
        q0_scan = jnp.max(discovery(land.log_likelihood, 0.0, land.mu_hat).q0,
                          initial=0.0) if config.grid_points else jnp.nan  # fmt: skip
        f32 = lambda v: jnp.asarray(v, jnp.float32)
        return Measurements(*map(f32, (
            fit.mu_hat, fit.mu_interval.lo, fit.mu_interval.hi, fit.mu_interval_95.lo, fit.mu_interval_95.hi,
            fit.q0, fit.z, jnp.nan, fit.params.m_x, fit.m_x_interval.lo, fit.m_x_interval.hi, fit.params.m_y,
            fit.m_y_interval.lo, fit.m_y_interval.hi, q_true, jnp.nan, q0_scan)))  # fmt: skip

    if batch_size is None:
        return jax.vmap(one, in_axes=(0, data_axes, 0))(keys, data, weight)
    n = keys.shape[0]
    return jax.lax.map(
        lambda i: one(keys[i], jax.tree.map(lambda v, a: v if a is None else v[i], data, data_axes,
                                            is_leaf=lambda v: v is None), weight[i]),
        jnp.arange(n), batch_size=batch_size,
    )  # fmt: skip


def closure_corrected(m: Measurements, closure: PawsClosure) -> Measurements:
    """PAWS measurements calibrated by their closure test: ``mu`` scaled, masses shifted, intervals resized.

    With ``s = closure.mu_scale``, ``d = closure.mass_correction`` (the offset ``g(m_hat) - m_hat``
    carried back through the closure map's slope ``G``: ``G^-1`` times it) and
    ``c = closure.variance_scale``: ``mu_hat -> mu_hat / s`` and each mass ``m_hat -> m_hat - d``;
    every interval keeps its (asymmetric) shape about the moved estimate, each side scaled by
    ``sqrt(c)`` (and by ``1 / s`` for ``mu``): ``lo -> hat' - sqrt(c) (hat - lo) / s``. A
    non-positive ``s`` gives NaN. ``q0`` and ``z`` (a test of ``mu = 0``, which a rescaling of
    ``mu`` leaves alone) and ``q_masses_true`` are kept: the moved contour's ``q`` of the truth
    needs the data (:func:`measure_paws_closure` evaluates it).
    """
    scale = jnp.where(closure.mu_scale > 0, closure.mu_scale, jnp.nan)
    widen = jnp.sqrt(closure.variance_scale)
    f32 = lambda v: jnp.asarray(v, jnp.float32)

    def move(hat, ends, shift, stretch):
        new = (hat - shift[0]) / shift[1]
        return [f32(new)] + [f32(new + stretch * (end - hat) / shift[1]) for end in ends]

    mu = move(m.mu_hat, (m.lo68, m.hi68, m.lo95, m.hi95), (0.0, scale), widen[..., 0])
    shift = closure.mass_correction
    m_x = move(m.m_x, (m.m_x_lo68, m.m_x_hi68), (shift[..., 0], 1.0), widen[..., 1])
    m_y = move(m.m_y, (m.m_y_lo68, m.m_y_hi68), (shift[..., 1], 1.0), widen[..., 2])
    fields = ("mu_hat", "lo68", "hi68", "lo95", "hi95", "m_x", "m_x_lo68", "m_x_hi68", "m_y", "m_y_lo68",
              "m_y_hi68")  # fmt: skip
    return m._replace(**dict(zip(fields, mu + m_x + m_y, strict=True)))


def closure_injection(m: Measurements) -> jax.Array:
    """``(R, 3)`` where :func:`measure_paws_closure` injects: ``(mu_inj, m_x, m_y)`` of each fit.

    ``mu_inj = max(mu_hat, (hi68 - lo68) / 2)``: the fitted signal, or one standard error of it
    where the fit found less (the masses of a fit without signal are arbitrary; the test still
    needs signal to fit).
    """
    mu = jnp.maximum(m.mu_hat, 0.5 * (m.hi68 - m.lo68))
    return jnp.stack([mu, m.m_x, m.m_y], -1)


def measure_paws_closure(
    measured: Measurements,
    data,
    weight: jax.Array,
    asimov_data,
    n_background: int,
    log_ratio_fn,
    config: PawsConfig = PawsConfig(),
    data_axes=0,
    asimov_axes=0,
    true_masses: tuple[float, float] | None = None,
    polish_steps: int = 12,
    asimov_tangents=None,
) -> tuple[Measurements, PawsClosure]:
    """PAWS measurements of ``R`` realisations corrected by their closure tests, all at once.

    Realisation ``r``'s closure data set is ``asimov_data[r]``: ``n_background`` background
    events (in GBI: generator samples) followed by signal simulated at its fitted masses
    (:func:`closure_injection`), weighted into the Asimov data set of ``sum(weight[r])`` events
    at ``mu_inj`` (:func:`gbijax.inference.mixture_asimov_weights`) and fitted from the injected
    point (:func:`gbijax.inference.paws_closure`). The measurements are then calibrated by the
    result (:func:`closure_corrected`), and with ``true_masses`` the truth's ``-2 Delta l`` is
    taken against the moved and resized contour: ``q`` at the truth's image under the closure map
    (:meth:`PawsClosure.mass_image`, clipped to the mass box; ``truth + offset`` without
    ``asimov_tangents``) times :meth:`PawsClosure.mass_contour_adjustment` of its displacement
    from the fitted masses.

    Args:
        measured: :func:`measure_paws`'s ``(R,)`` measurements of ``data``.
        data, weight, data_axes, log_ratio_fn, config: as in :func:`measure_paws`.
        asimov_data: the ratio data of the ``(R, N_A, D)`` closure samples, realisation axis where
            ``asimov_axes`` says.
        n_background: background events at the start of every closure sample (static).
        true_masses: ``(m_X, m_Y)`` (static) for ``q_masses_true`` (NaN without them).
        polish_steps: Levenberg-Marquardt steps of each closure fit.
        asimov_tangents: the derivative of ``asimov_data`` with respect to the injected
            ``(m_x, m_y)`` (a leading axis of 2 on every leaf, then the realisation axis where
            ``asimov_axes`` says): measures the closure map's slope ``G``
            (:attr:`PawsClosure.jacobian`) for the mass correction, the intervals and the contour
            test. None: ``G`` taken as the identity.

    Returns:
        ``(corrected measurements, PawsClosure)``, both with a leading ``R`` axis.
    """
    injected = closure_injection(measured)
    closure_config = _closure_config(config, polish_steps)
    (mu_lo, mu_hi), (m_lo, m_hi) = config.mu_bounds, config.mass_bounds

    def one(d, w, a, inj, q_true, tangent):
        n_signal = jax.tree.leaves(a)[0].shape[0] - n_background
        a_weight = mixture_asimov_weights(n_background, n_signal, inj[0], jnp.sum(w))
        tangents = None if tangent is None else (tangent,)
        closure = PawsClosure(inj, *_closure_core((log_ratio_fn,), (a,), a_weight.astype(inj.dtype), inj,
                                                  closure_config, tangents))  # fmt: skip
        if true_masses is None:  # the measured q belongs to the uncorrected contour
            return closure, jnp.full_like(q_true, jnp.nan)
        truth = jnp.asarray(true_masses, inj.dtype)
        moved = jnp.clip(closure.mass_image(truth), m_lo, m_hi)
        at = lambda t: _landscape((log_ratio_fn,), (d,), w, t[:1], t[1:], jnp.zeros(0, t.dtype), mu_lo, mu_hi,
                                  1, config.n_iter).log_likelihood[0, 0]  # fmt: skip
        q_moved = jnp.maximum(q_true + 2.0 * (at(truth) - at(moved)), 0.0)
        return closure, q_moved * closure.mass_contour_adjustment(moved - inj[1:3])

    q_true = measured.q_masses_true
    q_true = jnp.full(injected.shape[:1], jnp.nan) if q_true is None else jnp.asarray(q_true, injected.dtype)
    tangent_axes = None if asimov_tangents is None else jax.tree.map(lambda axis: axis + 1, asimov_axes)
    closure, q_moved = jax.vmap(one, in_axes=(data_axes, 0, asimov_axes, 0, 0, tangent_axes))(
        data, weight, asimov_data, injected, q_true, asimov_tangents)
    corrected = closure_corrected(measured, closure)
    return corrected._replace(q_masses_true=jnp.asarray(q_moved, jnp.float32)), closure


def measure(method: str, key: jax.Array, x, *, log_pb=None, coords: Preprocessing | None = None,
            weight=None, config: RanodeConfig = RanodeConfig(), batch_size: int | None = None,
            signal: toy.SignalParams = toy.DEFAULT_SIGNAL, region=DEFAULT_SR, is_toy: bool = True,
            log_ratio_fn=None, ratio_data=None, ratio_axes=0, paws_config: PawsConfig = PawsConfig(),
            background=None, classifier: clf.ClassifierConfig = clf.DEFAULT, eps_b: float = 1e-3,
            ) -> Measurements:  # fmt: skip
    """Measure ``mu`` in ``R`` realisations with ``method`` (one of :data:`METHODS`).

    Args:
        method: one of :data:`METHODS`.
        key: PRNG key (R-ANODE): a single key (realisation ``r`` uses ``fold_in(key, r)``) or
            ``(R,)`` keys.
        x: ``(R, N, 5)`` physical signal-region events.
        log_pb: ``(R, N)`` background ``log p_B(m, x)`` in physical units (R-ANODE).
        coords: signal coordinates (:func:`signal_coordinates`) (R-ANODE).
        weight: optional ``(R, N)`` per-event weights.
        config: R-ANODE settings.
        batch_size: R-ANODE realisations per vectorised batch.
        signal: the toy signal masses (oracle).
        region: the signal region.
        is_toy: the events are from the analytic toy (the oracle exists only there).
        log_ratio_fn, ratio_data, ratio_axes: PAWS: the ratio model, its data with the
            realisation axis where ``ratio_axes`` says (see :func:`measure_paws`); without them,
            on the toy, the exact ratio :func:`toy_log_ratio` of ``x`` (a perfect classifier).
        paws_config: PAWS settings (the fitted ``mu`` bounds, masses, starts, profile points).
        background, classifier, eps_b: CATHODE (:func:`measure_cathode`): the ``(M, 5)``
            background sample, the classifier ensemble and the cut's background efficiency.

    Returns:
        :class:`Measurements` with ``(R,)`` arrays.

    Raises:
        ValueError: an unknown method, the oracle (or the exact PAWS ratio) off the toy,
            R-ANODE without ``log_pb`` and ``coords``, or CATHODE without ``background``.
    """
    x = jnp.asarray(x, jnp.float32)
    if x.ndim != 3 or x.shape[-1] != 5:
        raise ValueError(f"need (R, N, 5) events, got shape {x.shape}")
    weight = jnp.ones(x.shape[:2], jnp.float32) if weight is None else jnp.asarray(weight, jnp.float32)
    if method == "oracle":
        if not is_toy:
            raise ValueError("the oracle (exact likelihood) exists only for the analytic toy (--data toy)")
        return measure_oracle(x, weight, signal, (float(region[0]), float(region[1])))
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    keys = realisation_keys(key, x.shape[0]) if jnp.ndim(key) == 0 else key
    if method == "cathode":
        if background is None or jnp.ndim(background) != 2 or jnp.shape(background)[1] != 5:
            shape = None if background is None else jnp.shape(background)
            raise ValueError(f"CATHODE needs an (M, 5) background sample, got {shape}")
        return measure_cathode(keys, x, weight, background, classifier, eps_b)
    if method == "paws":
        if log_ratio_fn is None:
            if not is_toy:
                raise ValueError("the exact PAWS ratio exists only on the analytic toy: pass a classifier")
            lo, hi = float(region[0]), float(region[1])
            log_ratio_fn = toy_log_ratio_fn((lo, hi))
            ratio_data, ratio_axes = jax.vmap(lambda xx: toy_ratio_data(xx, (lo, hi)))(x), 0
        truth = (float(signal.m_x), float(signal.m_y)) if is_toy else None
        return measure_paws(keys, ratio_data, weight, log_ratio_fn, paws_config, ratio_axes, batch_size,
                            truth)  # fmt: skip
    if log_pb is None or coords is None:
        raise ValueError("R-ANODE needs the background log-density log_pb and the signal coordinates coords")
    u, log_pb_u = ranode_inputs(coords, x, log_pb)
    return measure_ranode(keys, u, log_pb_u, weight, config, batch_size)


@functools.partial(jax.jit, static_argnames="classifier")
def measure_cathode(
    keys: jax.Array,
    x: jax.Array,
    weight: jax.Array,
    background: jax.Array,
    classifier: clf.ClassifierConfig = clf.DEFAULT,
    eps_b: float = 1e-3,
) -> Measurements:
    """CATHODE's discovery test on ``R`` realisations: k-fold data-vs-background classifiers, then a cut.

    In each realisation the data (class 1) and ``background`` (class 0; in CATHODE the
    sideband generator's signal-region samples, with the true background: idealised AD) are
    split over ``classifier.k_folds`` folds together, every event is scored by the models that did
    not train on its fold (:func:`gbijax.classifiers.kfold_scores`, the background reweighted to
    the data's total as :func:`gbijax.classifiers.cathode` does), and :func:`cut_and_count`
    counts the data above the score that keeps ``eps_b`` of the background sample. The
    substructure features are the inputs (``x[..., 1:]``: ``m_jj`` is not).

    Args:
        keys: ``(R,)`` PRNG keys (folds, trainings).
        x: ``(R, N, 5)`` signal-region data.
        weight: ``(R, N)`` per-event weights (0: padding).
        background: ``(M, 5)`` background sample, shared by the realisations.
        classifier: the classifier ensemble (static).
        eps_b: background efficiency of the cut.

    Returns:
        :class:`Measurements` with ``q0 = Z**2`` and ``z``; the ``mu`` fields are NaN.
    """
    background = jnp.asarray(background, jnp.float32)

    def one(key, xx, ww):
        task = clf.cathode(xx[:, 1:], background[:, 1:], data_weight=ww)
        score = clf.kfold_scores(key, task.x, task.y, task.weight, classifier)  # every event out of fold
        n = xx.shape[0]
        return cut_and_count(score[:n], score[n:], eps_b, ww).z

    z = jax.vmap(one)(keys, jnp.asarray(x, jnp.float32), jnp.asarray(weight, jnp.float32))
    nan = jnp.full_like(z, jnp.nan)
    return Measurements(nan, nan, nan, nan, nan, z**2, z, nan, *([nan] * 9))


def _quantiles(v: np.ndarray) -> dict:
    q = np.quantile(v, [0.025, 0.16, 0.5, 0.84, 0.975]) if len(v) else [np.nan] * 5
    return {"median": float(q[2]), "p16": float(q[1]), "p84": float(q[3]), "p2.5": float(q[0]),
            "p97.5": float(q[4]), "mean": float(np.mean(v)), "std": float(np.std(v))}  # fmt: skip


def _fraction(flags: np.ndarray) -> tuple[float, float]:
    """Fraction and its binomial standard error."""
    n = len(flags)
    p = float(np.mean(flags))
    return p, float(np.sqrt(max(p * (1 - p), 1.0 / n) / n))


def summarize_measurements(m: Measurements, mu_true: float | None = None, null_q0=None) -> dict:
    """What a study reports about ``R`` measurements (plain floats, JSON-ready).

    Keys: ``n``; ``mu_hat`` (median, p16, p84, p2.5, p97.5, mean, std over realisations);
    ``mu_lo68, mu_hi68, mu_lo95, mu_hi95`` (medians); ``z`` (median) and ``z_quantiles``;
    ``median_width68``, ``median_width95``; ``frac_z_above_3``, ``frac_z_above_5``;
    ``frac_z_below_2``, ``frac_95_contains_0`` and ``no_false_signal`` (both at once: the
    requirement at ``mu = 0`` is at least 95%; for a method without intervals, ``"cathode"``,
    the ``mu`` entries are NaN and ``no_false_signal`` is ``frac_z_below_2``); with
    ``mu_true``: ``coverage68``, ``coverage95``
    (fraction of intervals containing ``mu_true``) and their binomial errors, ``bias``
    (``mean(mu_hat) - mu_true``), ``median_bias``, ``relative_bias`` (``bias / mu_true``),
    ``pull`` (std and 16-84% half-range of ``(mu_hat - mu_true) / sigma``, ``sigma`` the 68%
    interval's half-width on the side of the truth: 1 for calibrated intervals),
    ``w_fit`` (R-ANODE learned mode, the training-fold fraction) and ``shape_std`` (R-ANODE:
    the learned shape's standard deviation of ``mu_hat``, in the intervals) where present;
    PAWS's fitted ``m_x``, ``m_y`` (quantiles) and, where the true masses' ``-2 Delta l`` is known
    and ``mu_true`` is not 0, ``mass_contour_coverage68`` / ``95`` (the fraction of 2-D Wilks
    contours holding the true masses) with their errors. With ``null_q0`` (``(T,)`` scan
    statistics of background-only toys, :func:`null_scan_q0`) and
    PAWS's ``q0_scan``: the look-elsewhere-corrected ``z_global`` (median) and
    ``z_global_quantiles``, ``z_global_max`` (the most ``T`` toys can show),
    ``frac_z_global_above_3``, ``frac_z_global_below_2`` and ``no_false_signal_global`` (``Z_global
    < 2`` and the 95% interval containing 0).
    """
    a = {k: np.asarray(v, np.float64).reshape(-1) for k, v in m._asdict().items() if v is not None}
    z = np.nan_to_num(a["z"], nan=0.0)
    has_mu = bool(np.isfinite(a["mu_hat"]).any())
    out = {
        "n": int(len(a["mu_hat"])),
        "mu_hat": _quantiles(a["mu_hat"]),
        "mu_lo68": float(np.median(a["lo68"])), "mu_hi68": float(np.median(a["hi68"])),
        "mu_lo95": float(np.median(a["lo95"])), "mu_hi95": float(np.median(a["hi95"])),
        "z": float(np.median(z)), "z_quantiles": _quantiles(z),
        "median_width68": float(np.median(a["hi68"] - a["lo68"])),
        "median_width95": float(np.median(a["hi95"] - a["lo95"])),
        "frac_z_above_3": float(np.mean(z >= 3)), "frac_z_above_5": float(np.mean(z >= 5)),
        "frac_z_below_2": float(np.mean(z < 2)),
        "frac_95_contains_0": float(np.mean(a["lo95"] <= 0)) if has_mu else np.nan,
        "no_false_signal": float(np.mean((z < 2) & ((a["lo95"] <= 0) | ~has_mu))),
    }  # fmt: skip
    if np.isfinite(a["w_fit"]).any():
        out["w_fit"] = _quantiles(a["w_fit"])
    if "shape_std" in a and np.isfinite(a["shape_std"]).any():
        out["shape_std"] = _quantiles(a["shape_std"])
    for mass in ("m_x", "m_y"):
        if mass in a and np.isfinite(a[mass]).any():
            out[mass] = _quantiles(a[mass])
            for end in ("lo68", "hi68"):
                out[f"{mass}_{end}"] = float(np.median(a[f"{mass}_{end}"]))
    no_signal = mu_true is not None and float(mu_true) == 0.0  # no signal: no true masses to cover
    if "q_masses_true" in a and np.isfinite(a["q_masses_true"]).any() and not no_signal:
        for cl, level in (("68", CL68), ("95", CL95)):
            inside = a["q_masses_true"] <= float(wilks_threshold(level, 2))
            out[f"mass_contour_coverage{cl}"], out[f"mass_contour_coverage{cl}_err"] = _fraction(inside)
    if null_q0 is not None and "q0_scan" in a and np.isfinite(a["q0_scan"]).any():
        _, zg = global_p_value(a["q0_scan"], null_q0)
        zg = np.asarray(zg, np.float64)
        out.update(z_global=float(np.median(zg)), z_global_quantiles=_quantiles(zg),
                   z_global_max=float(global_p_value(np.inf, null_q0)[1]),
                   frac_z_global_above_3=float(np.mean(zg >= 3)),
                   frac_z_global_below_2=float(np.mean(zg < 2)),
                   no_false_signal_global=float(np.mean((zg < 2) & (a["lo95"] <= 0))))  # fmt: skip
    if mu_true is not None and has_mu:
        mu_true = float(mu_true)
        for cl, lo, hi in (("68", a["lo68"], a["hi68"]), ("95", a["lo95"], a["hi95"])):
            out[f"coverage{cl}"], out[f"coverage{cl}_err"] = _fraction((lo <= mu_true) & (mu_true <= hi))
        side = np.where(a["mu_hat"] > mu_true, a["mu_hat"] - a["lo68"], a["hi68"] - a["mu_hat"])
        pull = (a["mu_hat"] - mu_true) / np.where(side > 0, side, np.nan)
        out["pull"] = {"std": float(np.nanstd(pull)),
                       "robust_std": float(np.diff(np.nanquantile(pull, [0.16, 0.84]))[0] / 2)}  # fmt: skip
        bias = float(np.mean(a["mu_hat"]) - mu_true)
        out.update(bias=bias, median_bias=float(np.median(a["mu_hat"]) - mu_true),
                   bias_err=float(np.std(a["mu_hat"]) / np.sqrt(len(a["mu_hat"]))),
                   relative_bias=bias / mu_true if mu_true > 0 else None)  # fmt: skip
    return out


def compare_to_oracle(m: Measurements, oracle: Measurements) -> dict:
    """Width and significance of a method relative to the oracle on the same pseudo-experiments.

    ``width68_ratio = median(width68) / median(width68_oracle)`` (likewise ``width95_ratio``),
    ``z_ratio = median(Z) / median(Z_oracle)``, and the medians of the per-pseudo-experiment
    ratios (``*_ratio_paired``). The goal at ``S/sqrt(B) = 3``: width <= 1.3, Z >= 0.8.
    """
    a = {k: np.asarray(v, np.float64).reshape(-1) for k, v in m._asdict().items() if v is not None}
    o = {k: np.asarray(v, np.float64).reshape(-1) for k, v in oracle._asdict().items() if v is not None}
    out = {}
    for cl in ("68", "95"):
        w, wo = a[f"hi{cl}"] - a[f"lo{cl}"], o[f"hi{cl}"] - o[f"lo{cl}"]
        out[f"width{cl}_ratio"] = float(np.median(w) / np.median(wo))
        with np.errstate(divide="ignore", invalid="ignore"):
            out[f"width{cl}_ratio_paired"] = float(np.nanmedian(w / wo))
    z, zo = np.nan_to_num(a["z"]), np.nan_to_num(o["z"])
    out["z_ratio"] = float(np.median(z) / np.median(zo)) if np.median(zo) > 0 else None
    with np.errstate(divide="ignore", invalid="ignore"):
        out["z_ratio_paired"] = float(np.nanmedian(np.where(zo > 0, z / zo, np.nan)))
    return out
