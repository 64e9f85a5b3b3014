"""R-ANODE: learn the signal density from signal-region data with the background density fixed.

Signal-region events are mapped to *signal coordinates* ``u`` (mjj logit-mapped onto exactly
the signal region, the four features through the sideband preprocessing), in which a small
unconditional spline flow ``p_S(u)`` is trained with the mixture loss

    ``-sum_i w_i log( w p_S(u_i) + (1 - w) p_B(u_i) )``

against the fixed background density ``p_B`` (any generator, or the exact toy density). Both
densities carry the same Jacobian ``|du/dx|``, so their ratio ``r = p_S / p_B`` is the same in
physical units. The measurement is made on held-out events with a true k-fold: the events are
split into ``k`` folds; the signal models that score fold ``f`` never saw it.

Two modes:

- ``"learned"`` (default): ``w`` is learned with the flow (through a sigmoid). On held-out
  events the fitted signal *shape* enters the mixture likelihood
  ``L(mu) = sum_i w_i log(1 + mu (r_i - 1))``, maximised for ``mu_hat``, with Wilks
  intervals and ``q0 = 2 (L(mu_hat) - L(0))``. The shape is fixed before it sees the held-out
  events, so ``L(mu)`` is an exact likelihood in ``mu`` (no smoothing, and no fitted signal
  where there is none: under ``mu = 0`` the held-out data carry no signal to fit).
  That likelihood treats the learned shape as known. The shape's own variance is added to the
  intervals: ``n_bootstrap`` more flows per fold train on Poisson(1) bootstrap replicas of the
  training folds, the held-out fit is repeated with each replica's shape, and the variance of
  those values of ``mu_hat`` is added in quadrature to the statistical one
  (:func:`gbijax.inference.fit_mixture`'s ``extra_variance``). ``q0`` and ``Z`` are those of
  the held-out likelihood: under ``mu = 0`` every fold's ratio integrates to one over the true
  background whatever shape was learned, so the discovery test needs no correction (the
  replicas are not averaged into the estimate: bootstrapped flows measure ``mu`` less well).
- ``"scan"`` (the reference procedure): one seed-averaged model ``p_S,w`` per fixed ``w`` on a
  grid; the held-out profile ``L(w) = sum_i log(w p_S,w + (1 - w) p_B)`` gives ``mu_hat`` as its
  maximum and Wilks intervals on the grid (``L(0) = sum_i log p_B`` is the grid's first point).
  The reference smooths this curve with a Gaussian process; here it is used as it is.

The scan over ``(fold, w, seed)`` trains as one vmapped program, and :func:`fit_ranode` vmaps
again over data realisations (fixed-shape arrays, per-event weights). With
``RanodeConfig.segment_epochs > 0`` the flows of all realisations instead train as one population
(:func:`fit_ranode_realisations`, :func:`gbijax.train.train_population`) that drops the flows that
stopped early every few epochs, so the cost follows the epochs run rather than the slowest flow
(outside ``jit``: the host decides between segments).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gbijax.data._events import check_finite, shown_rows
from gbijax.data._preprocessing import Preprocessing, forward, inverse
from gbijax.data._regions import DEFAULT_SR, SignalRegion
from gbijax.generators import (
    RANODE_SIGNAL_FLOW,
    Generator,
    SplineFlowConfig,
    fit_ensemble,
    init_ensemble,
    spline_flow,
)
from gbijax.inference._stats import (
    CL68,
    CL95,
    Interval,
    fit_mixture,
    maximize_mixture,
    poisson_weights,
    profile_scan,
    wilks_threshold,
)
from gbijax.train import TrainConfig, TrainState, init_state, train, train_population

__all__ = ["MODES", "RanodeConfig", "RanodeResult", "fit_ranode", "fit_ranode_realisations",
           "fit_signal_template", "ranode_signal_log_prob", "sample_signal_model", "signal_coordinates",
           "signal_template_log_prob"]  # fmt: skip

MODES = ("learned", "scan")
W_SCALE = 20.0  # w = sigmoid(W_SCALE a): Adam moves the logit of w W_SCALE times faster


class RanodeConfig(NamedTuple):
    """Settings of an R-ANODE measurement (hashable: a static argument).

    Attributes:
        flow: the signal flow (default: the reference, 2 RQ layers, width 32, 8 bins).
        train: the training (reference: AdamW 3e-4, batch 2048, patience 10).
        mode: ``"learned"`` or ``"scan"``.
        w_grid: the fixed signal fractions of the scan mode (reference: 20 values, 1e-5 to 0.1).
        n_seeds: signal flows per (fold, w), averaged in probability (reference: 20).
        k_folds: folds of the k-fold (each held out once).
        val_fraction: fraction of the training folds used for early stopping.
        w_init: initial ``w`` of the learned mode.
        w_penalty: learned mode: ``gamma``, a penalty ``gamma * w`` added to every event's loss
            (0: plain maximum likelihood). The mixture likelihood does not identify ``w``: with
            ``p_S' = lambda p_S + (1 - lambda) p_B``, the pair ``(w / lambda, p_S')`` describes the
            data exactly as ``(w, p_S)`` does, so a flow can keep a background-like part in its
            "signal" and a larger ``w``. Training ends somewhere along that flat direction: on
            the real LHCO signal region above the truth, and higher the higher ``w_init`` (from
            below the truth too). The held-out ``mu_hat`` follows it: ``mu_true / lambda``. A
            penalty on ``w`` breaks the tie towards the smallest signal fraction (the irreducible
            decomposition); too large a one biases ``w`` low.
        n_bootstrap: learned mode: bootstrap replicas per fold whose spread of ``mu_hat`` is the
            shape uncertainty in the intervals (0: plain Wilks intervals; needs >= 2 to act).
        segment_epochs: 0 (default): all signal flows train as one vmapped program, which runs
            until the last flow stops early, so every flow costs as much as the slowest. > 0:
            every that many epochs the flows that stopped are dropped and the others go on in a
            smaller batch (:func:`gbijax.train.train_population`), so the cost follows the sum
            of the flows' epochs; the same flows, parameters up to float rounding (which can move
            a flow's stopping epoch: :func:`gbijax.train.train_population`). The
            host decides between segments, so :func:`fit_ranode` then cannot run inside an outer
            ``jit`` or ``vmap`` (e.g. :func:`gbijax.inference.measure_ranode`).
    """

    flow: SplineFlowConfig = RANODE_SIGNAL_FLOW
    train: TrainConfig = TrainConfig(
        epochs=100, batch_size=2048, learning_rate=3e-4, weight_decay=1e-4, patience=10
    )
    mode: str = "learned"
    w_grid: tuple[float, ...] = tuple(float(w) for w in np.logspace(-5, -1, 20))
    n_seeds: int = 4
    k_folds: int = 5
    val_fraction: float = 0.2
    w_init: float = 0.01
    w_penalty: float = 0.0
    n_bootstrap: int = 4
    segment_epochs: int = 0


class RanodeResult(NamedTuple):
    """The R-ANODE measurement (arrays only, so it vmaps over realisations).

    Attributes:
        mu_hat: the measured signal fraction.
        interval_68, interval_95: Wilks intervals (``-2 Delta log L <= 1`` and ``<= 3.84``),
            including the shape variance (learned mode with ``n_bootstrap >= 2``).
        q0, z: discovery test statistic and significance ``sqrt(q0)``.
        mu_hat_replicas: ``(B,)`` learned mode: ``mu_hat`` with each bootstrap replica's shape.
        shape_variance: the variance of ``mu_hat_replicas`` added to the statistical one (0 in
            scan mode or with fewer than 2 replicas).
        w_learned: ``(k, S)`` the fractions learned in training (learned mode; NaN in scan mode).
        log_ratio: ``(N,)`` held-out ``log p_S - log p_B`` per event (learned mode; 0 in scan mode).
        profile_grid, profile_log_likelihood: ``L`` relative to ``L(0)`` on ``[0, *w_grid]``.
        epochs_run: ``(k, [W,] S)`` epochs each signal flow trained.
        params: the signal flows, leading axes ``(k, [W,] S)``; None unless asked for.
    """

    mu_hat: jax.Array
    interval_68: Interval
    interval_95: Interval
    q0: jax.Array
    z: jax.Array
    w_learned: jax.Array
    log_ratio: jax.Array
    profile_grid: jax.Array
    profile_log_likelihood: jax.Array
    epochs_run: jax.Array
    mu_hat_replicas: jax.Array
    shape_variance: jax.Array
    params: object = None


def signal_coordinates(
    feature_preprocessing: Preprocessing, mjj, region: SignalRegion = DEFAULT_SR
) -> Preprocessing:
    """The 5-column transform to signal coordinates ``u``.

    Column 0 maps mjj from exactly ``(region.lo, region.hi)`` through a logit and standardises
    it with the given signal-region masses, so the signal flow puts all its probability inside
    the signal region; columns 1-4 are ``feature_preprocessing`` (fitted on the sidebands).
    """
    m = np.asarray(mjj, np.float64)
    u = (m - region.lo) / (region.hi - region.lo)
    if not ((u > 0) & (u < 1)).all():
        raise ValueError(f"signal coordinates need masses inside {region.lo} < mjj < {region.hi} TeV")
    y = np.log(u) - np.log1p(-u)
    fp = feature_preprocessing
    cat = lambda first, rest: jnp.concatenate([jnp.asarray([first], jnp.float32), rest])
    return Preprocessing(cat(region.lo, fp.lo), cat(region.hi, fp.hi), cat(y.mean(), fp.mean),
                         cat(y.std(), fp.std))  # fmt: skip


def _to_coordinates(coords: Preprocessing, x: jax.Array):
    """``u(x)`` and ``log|du/dx|``; features outside the fitted range are clipped onto its edge."""
    width = coords.hi - coords.lo
    return forward(coords, jnp.clip(x, coords.lo + 1e-6 * width, coords.hi - 1e-6 * width))


def _w(a):
    return jax.nn.sigmoid(W_SCALE * a)


def _mixture_nll(log_ps, log_pb, w):
    return -jnp.logaddexp(jnp.log(w) + log_ps, jnp.log1p(-w) + log_pb)


def _fold_indices(key, n_pad: int, k: int, val_fraction: float):
    """Static-shape index tables: test ``(k, m)``, train ``(k, n_tr)``, val ``(k, n_val)``."""
    m = n_pad // k
    folds = jax.random.permutation(key, n_pad).reshape(k, m)
    others = np.array([[g for g in range(k) if g != f] for f in range(k)])
    pool = folds[others].reshape(k, (k - 1) * m)
    n_val = max(1, int(round(val_fraction * (k - 1) * m)))
    return folds, pool[:, n_val:], pool[:, :n_val]


def _gather(data: dict, idx):
    return {name: v[idx] for name, v in data.items()}


class _Member(NamedTuple):
    """One signal flow of a measurement (arrays; stacked, the flat member axis)."""

    key: jax.Array
    fold: jax.Array  # the fold it is trained for (it never sees that fold)
    w: jax.Array  # the fixed signal fraction (scan mode)
    bagged: jax.Array  # a bootstrap replica (learned mode)
    realisation: jax.Array  # the data realisation it trains on


def _members(key, config: RanodeConfig, realisation=0) -> _Member:
    """Every signal flow of the measurement, flattened into one member axis.

    Members are ``(fold, seed)`` (learned mode) or ``(fold, w, seed)`` (scan mode), flattened
    (nested vmaps of the early-stopping loop are avoided). Seeds are shared across ``w`` so that
    the scan compares like with like. In learned mode ``n_bootstrap`` more members per fold train
    on bootstrap replicas: their training and validation weights are multiplied by their own
    Poisson(1) draws.
    """
    k, s = config.k_folds, config.n_seeds
    learned = config.mode == "learned"
    n_w = 1 if learned else len(config.w_grid)
    b = config.n_bootstrap if learned else 0
    fold = jnp.broadcast_to(jnp.arange(k)[:, None, None], (k, n_w, s)).reshape(-1)
    w = jnp.broadcast_to(jnp.asarray((0.5,) if learned else config.w_grid)[None, :, None],
                         (k, n_w, s)).reshape(-1)  # fmt: skip
    seed_keys = jax.random.split(key, k * s).reshape(k, 1, s)
    keys = jnp.broadcast_to(seed_keys, (k, n_w, s)).reshape(-1)
    # bootstrap replicas (learned mode): appended members with their own keys, so the seeds above
    # do not depend on n_bootstrap
    fold = jnp.concatenate([fold, jnp.repeat(jnp.arange(k), b)])
    w = jnp.concatenate([w, jnp.full(k * b, 0.5, w.dtype)])
    keys = jnp.concatenate([keys, jax.random.split(jax.random.fold_in(key, 1), k * b)])
    n = fold.shape[0]
    return _Member(keys, fold, w, jnp.arange(n) >= k * n_w * s, jnp.full(n, realisation, jnp.int32))


def _member_problem(config: RanodeConfig, member: _Member, shared):
    """One member's training key, loss and training and validation data.

    ``shared = (data, train_idx, val_idx)``, each with a leading realisation axis: the member's
    data are index arrays into the shared event arrays of its realisation, so the events are never
    copied per member.
    """
    data, train_idx, val_idx = shared
    flow = spline_flow(config.flow)
    learned = config.mode == "learned"
    r = member.realisation
    weight = data["weight"][r]
    if learned and config.n_bootstrap:  # static: no draws at all (scan mode, or no replicas)
        boot = poisson_weights(jax.random.fold_in(member.key, 1), weight.shape[0], 1)[0]
        weight = weight * jnp.where(member.bagged, boot, 1.0)

    def loss(params, _, batch):
        u = data["u"][r, batch["i"]]
        log_ps = flow.log_prob(params["flow"], u, jnp.zeros((u.shape[0], 0)))
        w = _w(params["a"]) if learned else member.w
        return _mixture_nll(log_ps, data["log_pb"][r, batch["i"]], w) + config.w_penalty * w

    tr, va = train_idx[r, member.fold], val_idx[r, member.fold]
    k_fit = jax.random.split(member.key)[1]
    return k_fit, loss, {"i": tr, "weight": weight[tr]}, {"i": va, "weight": weight[va]}


def _init_members(key, config: RanodeConfig, shared, realisation=0) -> tuple[_Member, TrainState]:
    """The members of one realisation and their stacked initial training states."""
    members = _members(key, config, realisation)
    a0 = jnp.log(config.w_init / (1 - config.w_init)) / W_SCALE

    def one(member: _Member) -> TrainState:
        params = {"flow": spline_flow(config.flow).init(jax.random.split(member.key)[0]), "a": a0}
        return init_state(params, _member_problem(config, member, shared)[2], config.train)

    return members, jax.vmap(one)(members)


@functools.partial(jax.jit, static_argnames="config")
def _init_population(keys, config: RanodeConfig, shared) -> tuple[_Member, TrainState]:
    """The members of ``R`` realisations (``(R,)`` keys) and their initial states, one flat axis."""
    init = lambda key, r: _init_members(key, config, shared, r)
    population = jax.vmap(init)(keys, jnp.arange(keys.shape[0]))
    return jax.tree.map(lambda v: v.reshape(-1, *v.shape[2:]), population)


@functools.cache
def _member_advance(config: RanodeConfig):
    """The ``advance`` of :func:`gbijax.train.train_population`, one function per config.

    Cached, so that every measurement with the same config reuses the compiled segments.
    """

    def advance(state: TrainState, member: _Member, shared, until_epoch) -> TrainState:
        key, loss, train_data, val_data = _member_problem(config, member, shared)
        return train(state, key, loss, train_data, val_data, config.train, until_epoch)

    return advance


def _trained(states: TrainState, config: RanodeConfig):
    """One realisation's trained members as ``((params, epochs run), replica params)``.

    Leading axes ``(k, S)`` (learned mode) or ``(k, W, S)`` (scan mode), and ``(k, B)`` for the
    bootstrap replicas.
    """
    k, s, learned = config.k_folds, config.n_seeds, config.mode == "learned"
    main_shape = (k, s) if learned else (k, len(config.w_grid), s)
    n_main = int(np.prod(main_shape))
    split = lambda v, lo, hi, shp: v[lo:hi].reshape(*shp, *v.shape[1:])
    main = jax.tree.map(lambda v: split(v, 0, n_main, main_shape), (states.best_params, states.epoch))
    b = config.n_bootstrap if learned else 0
    replicas = jax.tree.map(lambda v: split(v, n_main, None, (k, b)), states.best_params)
    return main, replicas


def _train_members(key, config: RanodeConfig, data: dict, train_idx, val_idx):
    """Train every signal flow of one measurement (:func:`_members`) as one vmapped program.

    Returns:
        :func:`_trained`'s ``((params, epochs run), replica params)``.
    """
    shared = jax.tree.map(lambda v: v[None], (data, train_idx, val_idx))  # one realisation
    members, states = _init_members(key, config, shared)
    advance = _member_advance(config)
    return _trained(jax.vmap(lambda st, m: advance(st, m, shared, None))(states, members), config)


def _member_log_prob(flow: Generator, params, u):
    """``(S, N)`` ``log p_s(u)`` of each member, for params with a leading seed axis."""
    return jax.vmap(lambda p: flow.log_prob(p, u, jnp.zeros((u.shape[0], 0))))(params)


def _seed_averaged_log_prob(flow: Generator, params, u):
    """``log (1/S) sum_s p_s(u)`` for params with a leading seed axis."""
    logs = _member_log_prob(flow, params, u)
    return jax.nn.logsumexp(logs, axis=0) - jnp.log(logs.shape[0])


def _replica_spread(flow: Generator, replicas, test: dict, unfold, weight, n_bootstrap: int):
    """``mu_hat`` with each bootstrap replica's signal shape, and their variance (0 with < 2 replicas).

    Replica ``b`` scores every held-out fold with its fold's model ``b``; the held-out events keep
    their own weights, so the spread is that of the shape alone.
    """
    if n_bootstrap == 0:
        return jnp.zeros(0), jnp.zeros(())
    log_ps = jax.vmap(lambda p, uu: _member_log_prob(flow, p["flow"], uu))(replicas, test["u"])  # (k, B, m)
    ratios = jax.vmap(unfold, in_axes=1)(log_ps - test["log_pb"][:, None])  # (B, N)
    mu = jax.vmap(lambda lr: maximize_mixture(lr, weight)[0])(ratios)
    return mu, (jnp.var(mu, ddof=1) if n_bootstrap > 1 else jnp.zeros(()))


def _profile(log_ratio_w, weight, grid):
    """``L(w) - L(0)`` on ``grid`` from per-w held-out log-ratios ``(W, N)``."""
    terms = jnp.log1p(grid[1:, None] * jnp.expm1(jnp.minimum(log_ratio_w, 80.0)))
    return jnp.concatenate([jnp.zeros(1, terms.dtype), jnp.sum(weight * terms, axis=1)])


def _check_events(u, log_pb, weight, config: RanodeConfig, realisations: bool) -> None:
    """ValueError for events R-ANODE cannot measure: wrong shapes (always, they are static), and,
    for concrete arrays, NaN or inf in ``u`` or ``log_pb``, weights that are negative or not
    finite, or no event of positive weight (an empty signal region).
    """
    lead = "R, N" if realisations else "N"
    u_shape, d = np.shape(u), config.flow.features
    if len(u_shape) != 2 + realisations or u_shape[-1] != d:
        raise ValueError(f"u must be ({lead}, {d}) events in signal coordinates, got shape {u_shape}")
    for name, v in (("log_pb", log_pb), ("weight", weight)):
        if np.shape(v) != u_shape[:-1]:
            raise ValueError(f"{name} must be ({lead}) = {u_shape[:-1]}, one per event of u, got shape "
                             f"{np.shape(v)}")
    if any(isinstance(v, jax.core.Tracer) for v in (u, log_pb, weight)):
        return
    rows = lambda v, tail: np.asarray(v).reshape(-1, *tail)  # no copy: the events stay in their dtype
    per_realisation = (rows(u, u_shape[-2:]), rows(log_pb, u_shape[-2:-1]), rows(weight, u_shape[-2:-1]))
    for r, (ur, lr, wr) in enumerate(zip(*per_realisation, strict=True)):
        where = f" (realisation {r})" if realisations else ""
        check_finite(ur, name=f"R-ANODE events u{where}")
        check_finite(lr[:, None], name=f"R-ANODE log_pb{where}", columns=["log_pb"])
        bad = np.flatnonzero(~(wr >= 0) | ~np.isfinite(wr))
        if bad.size:
            raise ValueError(f"R-ANODE weight{where}: {bad.size} weight(s) negative, NaN or inf "
                             f"(rows {shown_rows(bad)})")  # fmt: skip
        if not np.any(wr > 0):
            raise ValueError(f"R-ANODE weight{where}: no event has a positive weight (empty signal region)")


def _check_mode(config: RanodeConfig) -> None:
    if config.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {config.mode!r}")
    if config.w_penalty < 0 or (config.w_penalty and config.mode != "learned"):
        raise ValueError(f"w_penalty must be >= 0 and is for the learned mode only, got {config.w_penalty} "
                         f"with mode {config.mode!r}")


def fit_ranode(
    key: jax.Array,
    u: jax.Array,
    log_pb: jax.Array,
    weight: jax.Array,
    config: RanodeConfig = RanodeConfig(),
    return_params: bool = False,
) -> RanodeResult:
    """Measure the signal fraction with R-ANODE (k-fold, all trainings in one vmapped program).

    Args:
        key: PRNG key (fold assignment, flow initialisation, minibatches).
        u: ``(N, 5)`` events in signal coordinates (:func:`signal_coordinates`).
        log_pb: ``(N,)`` background log-density in the same coordinates
            (``log p_B(x) - log|du/dx|``).
        weight: ``(N,)`` per-event weights (0 removes an event, e.g. signal not injected).
        config: :class:`RanodeConfig` (static).
        return_params: also return the trained signal flows.

    Returns:
        A :class:`RanodeResult`. ``jax.vmap`` over ``key, u, log_pb, weight`` measures many
        data realisations in one program (not with ``config.segment_epochs > 0``).

    Raises:
        ValueError: as :func:`fit_ranode_realisations`, for ``(N, 5)``, ``(N,)`` and ``(N,)``
            arrays.
    """
    _check_mode(config)
    _check_events(u, log_pb, weight, config, realisations=False)
    if not config.segment_epochs:
        return _fit_ranode_one_program(key, u, log_pb, weight, config, return_params)
    stack = lambda v: jnp.asarray(v)[None]
    many = _fit_realisations(stack(key), stack(u), stack(log_pb), stack(weight), config, return_params)
    return jax.tree.map(lambda v: v[0], many)


def fit_ranode_realisations(
    keys: jax.Array,
    u: jax.Array,
    log_pb: jax.Array,
    weight: jax.Array,
    config: RanodeConfig = RanodeConfig(),
    return_params: bool = False,
) -> RanodeResult:
    """:func:`fit_ranode` on ``R`` data realisations at once: a :class:`RanodeResult` of ``(R, ...)`` arrays.

    With ``config.segment_epochs == 0`` this is ``jax.vmap(fit_ranode)``, one program. With
    ``segment_epochs > 0`` the signal flows of all realisations train as one population
    (:func:`gbijax.train.train_population`): every ``segment_epochs`` epochs the flows that
    stopped early are dropped, whichever realisation they belong to, so the batch stays full as
    long as any flows run and the cost follows the sum of their epochs. Each flow's training is
    the same as in :func:`fit_ranode` up to float rounding (see
    :func:`gbijax.train.train_population` for its effect on the epochs).

    Args:
        keys: ``(R,)`` PRNG keys; u: ``(R, N, 5)``; log_pb, weight: ``(R, N)`` (see
            :func:`fit_ranode`).
        config, return_params: as in :func:`fit_ranode`.

    Raises:
        ValueError: an unknown ``config.mode``; ``config.segment_epochs > 0`` inside ``jit``
            or ``vmap`` (the compaction between segments runs on the host); arrays of other
            shapes; outside ``jit``, NaN or inf in ``u`` or ``log_pb``, a negative or non-finite
            weight, or a realisation without an event of positive weight (each error names the
            realisation and the rows).
    """
    _check_mode(config)
    _check_events(u, log_pb, weight, config, realisations=True)
    return _fit_realisations(keys, u, log_pb, weight, config, return_params)


def _fit_realisations(keys, u, log_pb, weight, config: RanodeConfig, return_params: bool = False):
    """:func:`fit_ranode_realisations` on inputs already checked."""
    if not config.segment_epochs:
        return _fit_realisations_one_program(keys, u, log_pb, weight, config, return_params)
    if any(isinstance(v, jax.core.Tracer) for v in (keys, u, log_pb, weight)):
        raise ValueError(
            "R-ANODE with config.segment_epochs > 0 cannot run inside jit or vmap: it drops the "
            "stopped flows between segments on the host; use segment_epochs=0 there"
        )
    data, (test_idx, train_idx, val_idx), k_train = _prepare_realisations(keys, u, log_pb, weight, config)
    states = _train_population(k_train, config, (data, train_idx, val_idx))
    return _evaluate_realisations(states, data, test_idx, jnp.asarray(weight), config, return_params)


def _train_population(keys, config: RanodeConfig, shared) -> TrainState:
    """The signal flows of ``R`` realisations trained as one compacted population: ``(R, M, ...)`` states.

    ``keys``: ``(R,)`` training keys; ``shared``: ``(data, train_idx, val_idx)`` of the realisations.
    """
    members, states = _init_population(keys, config, shared)
    advance = _member_advance(config)
    states = train_population(advance, states, members, config.train, config.segment_epochs, shared)
    return jax.tree.map(lambda v: v.reshape(keys.shape[0], -1, *v.shape[1:]), states)


@functools.partial(jax.jit, static_argnames=("config", "return_params"))
def _fit_ranode_one_program(key, u, log_pb, weight, config: RanodeConfig, return_params: bool):
    """:func:`fit_ranode` as one program (``segment_epochs == 0``)."""
    data, (test_idx, train_idx, val_idx), k_train = _prepare(key, u, log_pb, weight, config)
    trained = _train_members(k_train, config, data, train_idx, val_idx)
    return _evaluate(trained, data, test_idx, weight, config, return_params)


@functools.partial(jax.jit, static_argnames=("config", "return_params"))
def _fit_realisations_one_program(keys, u, log_pb, weight, config: RanodeConfig, return_params: bool):
    one = lambda *args: _fit_ranode_one_program(*args, config, return_params)
    return jax.vmap(one)(keys, u, log_pb, weight)


def _prepare(key, u, log_pb, weight, config: RanodeConfig):
    """The events padded to a multiple of ``k``, the fold index tables and the training key."""
    n, k = u.shape[0], config.k_folds
    n_pad = -(-n // k) * k
    pad = lambda v: jnp.concatenate([v, jnp.zeros((n_pad - n, *v.shape[1:]), v.dtype)])
    data = {"u": pad(u), "log_pb": pad(log_pb), "weight": pad(weight)}
    k_folds, k_train = jax.random.split(key)
    return data, _fold_indices(k_folds, n_pad, k, config.val_fraction), k_train


def _evaluate(trained, data: dict, test_idx, weight, config: RanodeConfig, return_params: bool):
    """The held-out measurement with the trained signal flows (:func:`_train_members`'s output)."""
    (params, epochs), replicas = trained
    flow = spline_flow(config.flow)
    n, n_pad, k = weight.shape[0], data["weight"].shape[0], config.k_folds
    test = _gather(data, test_idx)  # (k, m)
    grid = jnp.concatenate([jnp.zeros(1), jnp.asarray(config.w_grid)])

    if config.mode == "learned":
        unfold = lambda lr: jnp.zeros(n_pad).at[test_idx.reshape(-1)].set(lr.reshape(-1))[:n]
        log_ps = jax.vmap(lambda p, uu: _seed_averaged_log_prob(flow, p["flow"], uu))(params, test["u"])
        log_ratio = unfold(log_ps - test["log_pb"])
        mu_replicas, shape_var = _replica_spread(flow, replicas, test, unfold, weight, config.n_bootstrap)
        res = fit_mixture(log_ratio, weight, extra_variance=shape_var)
        profile = _profile(jnp.broadcast_to(log_ratio, (grid.shape[0] - 1, n)), weight, grid)
        return RanodeResult(res.mu_hat, res.interval_68, res.interval_95, res.q0, res.z,
                            _w(params["a"]), log_ratio, grid, profile, epochs, mu_replicas, shape_var,
                            params if return_params else None)  # fmt: skip

    def fold_profile(p, uu, lpb, w):  # p: (W, S, ...)
        log_ps = jax.vmap(lambda pw: _seed_averaged_log_prob(flow, pw, uu))(p["flow"])
        return _profile(log_ps - lpb, w, grid)

    profile = jnp.sum(jax.vmap(fold_profile)(params, test["u"], test["log_pb"], test["weight"]), axis=0)
    int68 = profile_scan(grid, profile, wilks_threshold(CL68))
    int95 = profile_scan(grid, profile, wilks_threshold(CL95))
    q0 = jnp.where(int68.hat > 0, 2.0 * jnp.maximum(int68.log_likelihood_max, 0.0), 0.0)
    return RanodeResult(int68.hat, int68, int95, q0, jnp.sqrt(q0), jnp.full((k, config.n_seeds), jnp.nan),
                        jnp.zeros(n), grid, profile, epochs, jnp.zeros(0), jnp.zeros(()),
                        params if return_params else None)  # fmt: skip


@functools.partial(jax.jit, static_argnames="config")
def _prepare_realisations(keys, u, log_pb, weight, config: RanodeConfig):
    return jax.vmap(lambda *args: _prepare(*args, config))(keys, u, log_pb, weight)


@functools.partial(jax.jit, static_argnames=("config", "return_params"))
def _evaluate_realisations(states: TrainState, data, test_idx, weight, config: RanodeConfig,
                           return_params: bool):  # fmt: skip
    """:func:`_evaluate` of every realisation from its trained members (``states``: ``(R, M, ...)``)."""
    evaluate = lambda st, d, t, w: _evaluate(_trained(st, config), d, t, w, config, return_params)
    return jax.vmap(evaluate)(states, data, test_idx, weight)


def fit_signal_template(key: jax.Array, u_signal: jax.Array, config: RanodeConfig = RanodeConfig(),
                        weight: jax.Array | None = None):  # fmt: skip
    """Signal flows trained on labelled signal events: a known signal shape, R-ANODE's yardstick.

    ``config.n_seeds`` flows of ``config.flow`` are fitted by maximum likelihood to
    ``u_signal`` (simulated signal, or signal events held out of the injections) with
    ``config.train``; a random ``config.val_fraction`` of the events (per-event weights, so the
    shapes stay static) decides early stopping. With the same background density, the held-out
    fit ``fit_mixture(signal_template_log_prob(...) - log_pb)`` then measures ``mu`` with the
    signal shape known rather than learned from the mixture, which separates the learned
    shape's error from the background model's.

    Args:
        key: PRNG key (validation split, initialisation, minibatches).
        u_signal: ``(M, 5)`` signal events in signal coordinates (:func:`signal_coordinates`).
        config: :class:`RanodeConfig` (static): ``flow``, ``train``, ``n_seeds``, ``val_fraction``.
        weight: optional ``(M,)`` event weights (0 leaves an event out).

    Returns:
        The flows' parameters with a leading seed axis ``(S, ...)``.

    Raises:
        ValueError: ``u_signal`` not ``(M, 5)`` with ``M >= 2``, NaN or inf in it (outside
            ``jit``), or a ``weight`` of another length.
    """
    u_signal = jnp.asarray(u_signal, jnp.float32)
    if u_signal.ndim != 2 or u_signal.shape[1] != config.flow.features or u_signal.shape[0] < 2:
        raise ValueError(f"signal events must be (M >= 2, {config.flow.features}), got {u_signal.shape}")
    if not isinstance(u_signal, jax.core.Tracer):
        check_finite(np.asarray(u_signal), name="signal template events")
    weight = jnp.ones(u_signal.shape[0]) if weight is None else jnp.asarray(weight, jnp.float32)
    if weight.shape != u_signal.shape[:1]:
        raise ValueError(f"weight must be ({u_signal.shape[0]},), got {weight.shape}")
    return _fit_signal_template(key, u_signal, weight, config)


@functools.partial(jax.jit, static_argnames="config")
def _fit_signal_template(key, u_signal, weight, config: RanodeConfig):
    flow = spline_flow(config.flow)
    k_val, k_init, k_fit = jax.random.split(key, 3)
    val = (jax.random.uniform(k_val, weight.shape) < config.val_fraction).astype(weight.dtype)
    params = init_ensemble(flow, k_init, config.n_seeds)
    train_data = {"x": u_signal, "weight": weight * (1 - val)}
    val_data = {"x": u_signal, "weight": weight * val}
    return fit_ensemble(flow, k_fit, params, train_data, val_data, config.train)[0]


def signal_template_log_prob(config: RanodeConfig, params, u: jax.Array) -> jax.Array:
    """``(N,)`` ``log p_S(u)`` of :func:`fit_signal_template`'s flows, averaged in probability.

    In signal coordinates: subtract the background's ``log p_B(u)`` for the per-event
    ``log r`` of :func:`gbijax.inference.fit_mixture`.
    """
    return _seed_averaged_log_prob(spline_flow(config.flow), params, u)


def ranode_signal_log_prob(config: RanodeConfig, params, coords: Preprocessing, x: jax.Array) -> jax.Array:
    """``log p_S(x)`` in physical units of a learned-mode model, averaged over folds and seeds."""
    flow = spline_flow(config.flow)
    flat = jax.tree.map(lambda v: v.reshape(-1, *v.shape[2:]), params["flow"])
    u, log_det = _to_coordinates(coords, x)
    return _seed_averaged_log_prob(flow, flat, u) + log_det


def sample_signal_model(config: RanodeConfig, params, coords: Preprocessing, key: jax.Array, n: int):
    """``(n, 5)`` physical events from a learned-mode signal model (a random fold/seed member each).

    This is what the anomaly looks like: e.g. its jet-mass distribution.
    """
    flow = spline_flow(config.flow)
    flat = jax.tree.map(lambda v: v.reshape(-1, *v.shape[2:]), params["flow"])
    members = jax.tree.leaves(flat)[0].shape[0]
    k_member, k_sample = jax.random.split(key)
    which = jax.random.randint(k_member, (n,), 0, members)
    samples = jax.vmap(lambda p, kk: flow.sample(p, kk, jnp.zeros((n, 0))))(
        flat, jax.random.split(k_sample, members))
    u = jnp.take_along_axis(samples, jnp.broadcast_to(which[None, :, None], (1, n, 5)), axis=0)[0]
    return inverse(coords, u)
