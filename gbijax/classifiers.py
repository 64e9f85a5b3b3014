"""Binary classifiers for anomaly detection: the loss, ensembles, k-fold scoring and the set-ups.

Every baseline of weakly supervised anomaly detection is the same binary classifier trained with
binary cross-entropy; the set-ups differ only in what class 1 and class 0 are
(METHODS section 4):

==============  ==========================  ===============================
set-up          class 1                      class 0
==============  ==========================  ===============================
supervised      true signal                  true background
idealised AD    signal-region data           true signal-region background
CWoLa           signal-region data           sideband data
CATHODE         signal-region data           generator samples in the SR
==============  ==========================  ===============================

Each set-up function returns a :class:`ClassifierTask` of fixed-shape arrays, and
:func:`kfold_scores` trains ``k_folds x n_runs`` classifiers as one vmapped program, in which
fold membership and the validation split are per-event weights over one fixed array. Every
test event is scored only by the models of the fold that held it out:

>>> import jax, jax.numpy as jnp
>>> k1, k2 = jax.random.split(jax.random.key(0))
>>> task = supervised(jax.random.normal(k1, (64, 2)) + 2.0, jax.random.normal(k2, (64, 2)))
>>> task.x.shape, int(task.test.sum())
((128, 2), 128)
>>> cfg = ClassifierConfig(hidden=(8,), train=TrainConfig(epochs=5, batch_size=32), n_runs=2, k_folds=2)
>>> scores = kfold_scores(jax.random.key(1), task.x, task.y, task.weight, cfg, task.test)  # doctest: +SKIP
>>> scores.shape  # one out-of-fold score per event, from 2 x 2 trainings  # doctest: +SKIP
(128,)

(skipped here only because compiling the training takes seconds; ``tests/test_classifiers.py`` runs it).

Scores are *logits of the ensemble probability* (see :func:`average_logits`): monotone in the
probability, so ROC curves are the same, but they do not saturate at 1 in float32 for the most
signal-like events, where the maximum SIC is decided.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from gbijax.nn import MLP, activation
from gbijax.train import History, TrainConfig, fit

__all__ = [
    "DEFAULT", "PAWS_MLP", "QUICK", "REFERENCE", "TOY_PAWS_MLP", "TWO_SAMPLE",
    "ClassifierConfig", "ClassifierParams", "ClassifierTask", "KFoldResult", "TrainConfig", "TwoSampleAUC",
    "average_logits", "balance_weights", "binary_cross_entropy", "cathode", "cwola", "ensemble_logits",
    "fold_assignment", "idealised_ad", "init_classifier", "kfold_predict", "kfold_scores", "kfold_train",
    "mann_whitney_auc", "predict", "split_validation", "supervised", "train_classifier", "train_ensemble",
    "two_sample_auc",
]  # fmt: skip

Array = jax.Array


class ClassifierConfig(NamedTuple):
    """Static settings of a classifier ensemble (hashable: a ``jit`` static argument).

    Attributes:
        hidden: hidden-layer widths of the MLP (one logit out).
        train: the :class:`gbijax.train.TrainConfig` of one training. The returned model is
            the one with the best validation loss (training loss when ``val_fraction`` is 0);
            with ``patience = 0`` all epochs run and the best epoch is kept.
        n_runs: independent trainings (different keys) averaged into one score.
        k_folds: folds of :func:`kfold_scores`; each test event is scored by the
            ``n_runs`` models trained on the other ``k_folds - 1`` folds.
        balance: reweight so that both classes carry the same total weight in the training and
            in the validation loss (:func:`balance_weights`).
        val_fraction: fraction of the training events (random, per run) moved to the
            validation set for model selection.
        average: ``"probability"`` (mean of the runs' probabilities, as the CATHODE reference)
            or ``"logit"`` (mean of the runs' logits); see :func:`average_logits`.
        activation: the hidden layers' activation, a :mod:`jax.nn` name (:func:`gbijax.nn.activation`).
            ReLU (the references') makes the score piecewise linear in its inputs; a smooth one
            (``"silu"``) gives a parametrised classifier whose ratio is smooth in the masses, so
            that fits can use its curvature (Fisher errors, Newton steps).
    """

    hidden: tuple[int, ...] = (64, 64, 64)
    train: TrainConfig = TrainConfig(epochs=30, batch_size=256, learning_rate=1e-3, patience=8)
    n_runs: int = 5
    k_folds: int = 5
    balance: bool = True
    val_fraction: float = 0.2
    average: str = "probability"
    activation: str = "relu"


DEFAULT = ClassifierConfig()
"""The faster default: MLP 3 x 64 ReLU, Adam 1e-3, batch 256, up to 30 epochs with patience 8,
5 runs, 5 folds."""

QUICK = ClassifierConfig(
    hidden=(16, 16), train=TrainConfig(epochs=3, batch_size=256, learning_rate=2e-3), n_runs=2, k_folds=2
)
"""A smoke-test size (the drivers' ``--quick``): MLP 2 x 16, 3 epochs, 2 runs, 2 folds."""

REFERENCE = ClassifierConfig(
    hidden=(64, 64, 64), train=TrainConfig(epochs=100, batch_size=128, learning_rate=1e-3), n_runs=10
)
"""The CATHODE reference classifier: MLP 3 x 64 ReLU, Adam 1e-3, batch 128, 100 epochs, 10 runs
averaged in probability. The reference averages the 10 epochs of lowest validation loss of each
run; here each run keeps its single best-validation epoch."""

PAWS_MLP = REFERENCE._replace(
    hidden=(256, 128, 64), train=TrainConfig(epochs=200, batch_size=1024, learning_rate=1e-3, patience=20)
)
"""The PAWS classifier: MLP 256-128-64, batch 1024, up to 200 epochs with patience 20."""

TOY_PAWS_MLP = PAWS_MLP._replace(
    hidden=(128, 64, 32), n_runs=1, activation="silu", train=PAWS_MLP.train._replace(epochs=40, patience=6)
)
"""The PAWS classifier of the toy studies and the demo: MLP 128-64-32 with SiLU (a ratio smooth in
the masses, for the fit's Fisher errors and profile re-fits), 1 run, up to 40 epochs, patience 6."""


class ClassifierParams(NamedTuple):
    """One trained classifier: the input standardisation (fixed) and the network parameters.

    ``logit(x) = MLP((x - mean) / std)``. ``mean`` and ``std`` are fitted on the training
    events and are not trained; stacked along a leading axis this is an ensemble.
    """

    mean: Array
    std: Array
    net: Any


class ClassifierTask(NamedTuple):
    """The arrays of one classifier set-up (built by :func:`supervised`, :func:`cwola`, ...).

    Attributes:
        x: ``(N, D)`` classifier inputs.
        y: ``(N,)`` class labels, 1.0 or 0.0.
        weight: ``(N,)`` per-event weights (0 = absent, e.g. pool events not injected).
        test: ``(N,)`` bool, the events to be scored out-of-fold and evaluated; pass it as
            ``test=`` to :func:`kfold_scores`. Other events are used for training in every fold.
        truth: ``(N,)`` int truth labels of the test events (1 signal, 0 background, -1 unknown)
            and -1 elsewhere, so that ``gbijax.metrics.*(scores, task.truth, task.weight)``
            evaluates exactly the test events.
    """

    x: Array
    y: Array
    weight: Array
    test: Array
    truth: Array


class KFoldResult(NamedTuple):
    """Output of :func:`kfold_train`; leading axes ``(k_folds, n_runs)``.

    Attributes:
        params: stacked :class:`ClassifierParams`.
        history: stacked :class:`gbijax.train.History`.
        folds: ``(N,)`` fold of each event, -1 for events used in training by every fold.
        train_weight: ``(k, R, N)`` training weights (before class balancing); zero on the
            held-out fold and on the validation events.
        val_weight: ``(k, R, N)`` validation weights (before class balancing).
    """

    params: ClassifierParams
    history: History
    folds: Array
    train_weight: Array
    val_weight: Array


# --------------------------------------------------------------------------------------------
# Loss and weights


def binary_cross_entropy(logits: Array, y: Array) -> Array:
    """Per-event binary cross-entropy of logits, numerically stable.

    ``l = -y log sigmoid(z) - (1 - y) log(1 - sigmoid(z)) = max(z, 0) - y z + log(1 + exp(-|z|))``.

    >>> binary_cross_entropy(jnp.array([0.0, 100.0, -100.0]), jnp.array([1.0, 1.0, 1.0]))
    Array([  0.6931472,   0.       , 100.       ], dtype=float32)
    """
    return jnp.maximum(logits, 0.0) - y * logits + jnp.log1p(jnp.exp(-jnp.abs(logits)))


def balance_weights(y: Array, weight: Array) -> Array:
    """Rescale weights so that both classes carry half of the total weight.

    ``w'_i = w_i W / (2 W_{y_i})`` with ``W`` the total and ``W_c`` the class-``c`` weight; a
    class without weight is left at 0.

    >>> balance_weights(jnp.array([1.0, 0.0, 0.0, 0.0]), jnp.ones(4))
    Array([2.       , 0.6666667, 0.6666667, 0.6666667], dtype=float32)
    """
    is_one = y > 0.5
    total = jnp.sum(weight)
    w_one = jnp.sum(jnp.where(is_one, weight, 0.0))
    w_class = jnp.where(is_one, w_one, total - w_one)
    return weight * total / jnp.maximum(2.0 * w_class, 1e-30)


def split_validation(key: Array, weight: Array, fraction: float) -> tuple[Array, Array]:
    """Random split of weighted events into ``(train_weight, val_weight)``.

    Each event goes to validation with probability ``fraction``; static shapes, so the split
    vmaps over keys. ``train_weight + val_weight == weight``.
    """
    is_val = jax.random.uniform(key, weight.shape) < fraction
    return jnp.where(is_val, 0.0, weight), jnp.where(is_val, weight, 0.0)


# --------------------------------------------------------------------------------------------
# One classifier


def _network(config: ClassifierConfig) -> MLP:
    return MLP(hidden=tuple(config.hidden), out=1, activation=activation(config.activation))


def _standardisation(x: Array, weight: Array) -> tuple[Array, Array]:
    w = weight[:, None] / jnp.maximum(jnp.sum(weight), 1e-30)
    mean = jnp.sum(w * x, 0)
    std = jnp.sqrt(jnp.sum(w * (x - mean) ** 2, 0))
    return mean, jnp.where(std > 1e-8, std, 1.0)


def init_classifier(key: Array, x: Array, weight: Array, config: ClassifierConfig) -> ClassifierParams:
    """Initial parameters; the standardisation is the weighted mean/std of ``x``.

    Args:
        key: PRNG key for the network initialisation.
        x: ``(N, D)`` training inputs.
        weight: ``(N,)`` weights (events with weight 0 do not enter the mean and std).
        config: the :class:`ClassifierConfig`.
    """
    mean, std = _standardisation(x, weight)
    return ClassifierParams(mean, std, _network(config).init(key, x[:1]))


def predict(params: ClassifierParams, x: Array, config: ClassifierConfig) -> Array:
    """``(N,)`` logits of one classifier; ``jax.vmap`` over stacked params for an ensemble."""
    return _network(config).apply(params.net, (x - params.mean) / params.std)[:, 0]


def _split_keys(key: Array) -> Array:
    """``(init, validation split, fit)`` keys of one run."""
    return jax.random.split(key, 3)


def _run_split(key: Array, weight: Array, config: ClassifierConfig) -> tuple[Array, Array]:
    """The validation split of one run (zero validation weights when ``val_fraction`` is 0)."""
    if config.val_fraction > 0:
        return split_validation(key, weight, config.val_fraction)
    return weight, jnp.zeros_like(weight)


def train_classifier(
    key: Array,
    x: Array,
    y: Array,
    weight: Array,
    config: ClassifierConfig,
    val_weight: Array | None = None,
) -> tuple[ClassifierParams, History]:
    """Train one classifier with weighted BCE via :func:`gbijax.train.fit`.

    The loss is ``sum_i w_i l_i / sum_i w_i`` with :func:`binary_cross_entropy` ``l_i`` and,
    if ``config.balance``, the :func:`balance_weights` of ``w``. Pure and jit-able.

    Args:
        key: PRNG key (initialisation, validation split, minibatches).
        x: ``(N, D)`` inputs; y: ``(N,)`` labels 0/1.
        weight: ``(N,)`` training weights (0 = not in the training set).
        config: the :class:`ClassifierConfig`.
        val_weight: ``(N,)`` validation weights over the same events. None: a random
            ``config.val_fraction`` of ``weight`` is split off (no validation if it is 0).

    Returns:
        ``(params, history)``; the params of the best epoch.
    """
    k_init, k_split, k_fit = _split_keys(key)
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    weight = jnp.asarray(weight, jnp.float32)
    if val_weight is None and config.val_fraction > 0:
        weight, val_weight = _run_split(k_split, weight, config)
    params = init_classifier(k_init, x, weight, config)

    def loss_fn(net, _key, batch):
        return binary_cross_entropy(predict(params._replace(net=net), batch["x"], config), batch["y"])

    def data(w):
        return {"x": x, "y": y, "weight": balance_weights(y, w) if config.balance else w}

    val = None if val_weight is None else data(jnp.asarray(val_weight, jnp.float32))
    net, hist = fit(k_fit, params.net, loss_fn, data(weight), val, config.train)
    return params._replace(net=net), hist


def _run_keys(key: Array, config: ClassifierConfig) -> Array:
    return jax.random.split(key, config.n_runs)


def train_ensemble(
    key: Array, x: Array, y: Array, weight: Array, config: ClassifierConfig
) -> tuple[ClassifierParams, History]:
    """``config.n_runs`` independent trainings as one ``jax.vmap`` over keys (stacked outputs).

    Each run draws its own validation split of ``weight`` (``config.val_fraction``), its own
    initialisation and its own minibatches.
    """
    return jax.vmap(lambda k: train_classifier(k, x, y, weight, config))(_run_keys(key, config))


def _ensemble_split(key: Array, weight: Array, config: ClassifierConfig) -> tuple[Array, Array]:
    """``(n_runs, N)`` training and validation weights that :func:`train_ensemble` uses."""
    return jax.vmap(lambda k: _run_split(_split_keys(k)[1], weight, config))(_run_keys(key, config))


@partial(jax.jit, static_argnames="config")
def ensemble_logits(params: ClassifierParams, x: Array, config: ClassifierConfig) -> Array:
    """``(R, N)`` logits of an ensemble (params stacked along a leading axis of size ``R``)."""
    return jax.vmap(predict, (0, None, None))(params, x, config)


def average_logits(logits: Array, how: str = "probability", axis: int = 0) -> Array:
    """Combine ensemble logits into one score, returned as a logit.

    ``"probability"``: ``logit(mean_r sigmoid(z_r))``, computed stably as
    ``logsumexp(log sigmoid(z)) - logsumexp(log sigmoid(-z))``. ``"logit"``: ``mean_r z_r``
    (the geometric mean of the likelihood ratios ``p / (1 - p)``).

    >>> z = jnp.array([[0.0], [jnp.log(3.0)]])  # probabilities 1/2 and 3/4 -> mean 5/8
    >>> float(jax.nn.sigmoid(average_logits(z)[0]))
    0.625
    """
    if how == "probability":
        return logsumexp(jax.nn.log_sigmoid(logits), axis) - logsumexp(jax.nn.log_sigmoid(-logits), axis)
    if how == "logit":
        return jnp.mean(logits, axis)
    raise ValueError(f"average must be 'probability' or 'logit', got {how!r}")


# --------------------------------------------------------------------------------------------
# k-fold


def fold_assignment(key: Array, test: Array, k: int) -> Array:
    """Spread the ``test`` events at random over ``k`` folds of equal size (to within one).

    Events outside ``test`` get fold -1 (used for training in every fold).

    >>> fold_assignment(jax.random.key(0), jnp.array([True] * 4 + [False]), 2).tolist().count(-1)
    1
    """
    u = jnp.where(test, jax.random.uniform(key, test.shape), jnp.inf)
    rank = jnp.argsort(jnp.argsort(u))
    return jnp.where(test, rank % k, -1)


def kfold_train(
    key: Array,
    x: Array,
    y: Array,
    weight: Array,
    config: ClassifierConfig,
    test: Array | None = None,
    folds: Array | None = None,
) -> KFoldResult:
    """Train ``k_folds x n_runs`` classifiers as one vmapped program over (fold, run).

    Model ``(f, r)`` trains on all events with weight, except the fold-``f`` events (training
    weight 0) and a random ``val_fraction`` of the rest (its validation set). Events with fold
    -1 (outside ``test``) are in every fold's training or validation set. Every model runs over
    all ``N`` rows (static shapes), so minibatches hold zero-weight rows and the effective batch
    size is about ``batch_size (k - 1) / k (1 - val_fraction)``; an epoch still sees each
    training event once.

    Args:
        key: PRNG key.
        x, y, weight: ``(N, D)`` inputs, ``(N,)`` labels 0/1, ``(N,)`` weights.
        config: the :class:`ClassifierConfig` (``k_folds``, ``n_runs`` are static).
        test: ``(N,)`` bool, the events distributed over the folds (default: all).
        folds: ``(N,)`` explicit fold numbers in ``[0, k)`` or -1 (overrides ``test``).

    Returns:
        :class:`KFoldResult`.
    """
    if config.k_folds < 2:
        raise ValueError(f"k-fold training needs k_folds >= 2, got {config.k_folds}")
    k_folds, k_runs = jax.random.split(key)
    if folds is None:
        test = jnp.ones(x.shape[0], bool) if test is None else jnp.asarray(test, bool)
        folds = fold_assignment(k_folds, test, config.k_folds)
    return _kfold_train(k_runs, jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32),
                        jnp.asarray(weight, jnp.float32), jnp.asarray(folds), config)  # fmt: skip


@partial(jax.jit, static_argnames="config")
def _kfold_train(key, x, y, weight, folds, config: ClassifierConfig) -> KFoldResult:
    held = folds[None, :] == jnp.arange(config.k_folds)[:, None]

    def one_fold(k, held_out):
        w = jnp.where(held_out, 0.0, weight)
        return train_ensemble(k, x, y, w, config), _ensemble_split(k, w, config)

    (params, hist), (train_w, val_w) = jax.vmap(one_fold)(jax.random.split(key, config.k_folds), held)
    return KFoldResult(params, hist, folds, train_w, val_w)


@partial(jax.jit, static_argnames="config")
def kfold_predict(params: ClassifierParams, x: Array, folds: Array, config: ClassifierConfig) -> Array:
    """Out-of-fold scores: event ``i`` gets the ensemble score of the runs of fold ``folds[i]``.

    Events with fold -1 get the average over all ``k_folds x n_runs`` models: in-sample for
    the events of :func:`kfold_train` outside ``test`` (not for evaluation), but the right
    choice for an independent sample that no model saw (pass ``folds = -1`` for all of it).

    Args:
        params: the stacked ``(k_folds, n_runs)`` params of a :class:`KFoldResult`.
        x: ``(N, D)`` inputs.
        folds: ``(N,)`` fold of each event, or -1.
        config: the :class:`ClassifierConfig` used in training.

    Returns:
        ``(N,)`` scores, combined as ``config.average`` (logits, see :func:`average_logits`).
    """
    logits = jax.vmap(ensemble_logits, (0, None, None))(params, x, config)  # (k, R, N)
    per_fold = average_logits(logits, config.average, axis=1)  # (k, N)
    everyone = average_logits(logits.reshape(-1, x.shape[0]), config.average, axis=0)
    own = jnp.take_along_axis(per_fold, jnp.maximum(folds, 0)[None, :], axis=0)[0]
    return jnp.where(folds >= 0, own, everyone)


def kfold_scores(
    key: Array,
    x: Array,
    y: Array,
    weight: Array,
    config: ClassifierConfig = DEFAULT,
    test: Array | None = None,
) -> Array:
    """Train by k-fold and score every test event with models that never saw it.

    :func:`kfold_train` then :func:`kfold_predict`. Scores are logits of the ensemble
    probability (``config.average``); ``jax.nn.sigmoid`` gives the probability.

    Args:
        key: PRNG key (fold assignment, validation splits, trainings).
        x, y, weight: ``(N, D)`` inputs, ``(N,)`` labels 0/1, ``(N,)`` weights.
        config: the :class:`ClassifierConfig`.
        test: ``(N,)`` bool, the events to score out-of-fold (default: all); other events
            are always in training and their scores are in-sample.

    Returns:
        ``(N,)`` scores.
    """
    result = kfold_train(key, x, y, weight, config, test=test)
    return kfold_predict(result.params, jnp.asarray(x, jnp.float32), result.folds, config)


# --------------------------------------------------------------------------------------------
# The four set-ups


def _ones(n, weight):
    return jnp.ones(n, jnp.float32) if weight is None else jnp.asarray(weight, jnp.float32)


def _task(x1, x0, w1, w0, test1: bool, test0: bool, truth1, truth0) -> ClassifierTask:
    n1, n0 = x1.shape[0], x0.shape[0]
    truth1 = jnp.full(n1, -1, jnp.int32) if truth1 is None else jnp.asarray(truth1, jnp.int32)
    truth0 = jnp.full(n0, -1, jnp.int32) if truth0 is None else jnp.asarray(truth0, jnp.int32)
    test = jnp.concatenate([jnp.full(n1, test1), jnp.full(n0, test0)])
    return ClassifierTask(
        x=jnp.concatenate([jnp.asarray(x1, jnp.float32), jnp.asarray(x0, jnp.float32)]),
        y=jnp.concatenate([jnp.ones(n1, jnp.float32), jnp.zeros(n0, jnp.float32)]),
        weight=jnp.concatenate([_ones(n1, w1), _ones(n0, w0)]),
        test=test,
        truth=jnp.where(test, jnp.concatenate([truth1, truth0]), -1),
    )


def supervised(
    signal: Array,
    background: Array,
    signal_weight: Array | None = None,
    background_weight: Array | None = None,
) -> ClassifierTask:
    """Fully supervised: true signal (class 1) vs true background (class 0), the upper bound.

    Every event is a test event (scored out-of-fold), with its class as the truth label. For
    an independent labelled test sample instead, score it with
    ``kfold_predict(result.params, x_test, jnp.full(n_test, -1), config)`` (all models).

    Args:
        signal, background: ``(N_s, D)`` and ``(N_b, D)`` classifier inputs.
        signal_weight, background_weight: optional per-event weights.
    """
    n_s, n_b = signal.shape[0], background.shape[0]
    return _task(signal, background, signal_weight, background_weight, True, True,
                 jnp.ones(n_s), jnp.zeros(n_b))  # fmt: skip


def idealised_ad(
    data: Array,
    background: Array,
    data_truth: Array | None = None,
    data_weight: Array | None = None,
    background_weight: Array | None = None,
) -> ClassifierTask:
    """Idealised anomaly detection: signal-region data (1) vs true signal-region background (0).

    The test events are the data (scored out-of-fold); the background sample trains every fold.

    Args:
        data: ``(N_d, D)`` signal-region data (inputs without mjj, usually).
        background: ``(N_b, D)`` an independent sample of true signal-region background.
        data_truth: ``(N_d,)`` truth labels of the data for the metrics (-1 if unknown).
        data_weight, background_weight: optional per-event weights.
    """
    return _task(data, background, data_weight, background_weight, True, False, data_truth, None)


def cwola(
    sr_data: Array,
    sb_data: Array,
    sr_truth: Array | None = None,
    sr_weight: Array | None = None,
    sb_weight: Array | None = None,
) -> ClassifierTask:
    """CWoLa hunting: signal-region data (1) vs sideband data (0).

    Valid when the inputs are independent of mjj in the background; never include mjj itself.
    The test events are the signal-region data.

    Args:
        sr_data, sb_data: ``(N_sr, D)`` and ``(N_sb, D)`` inputs of the two regions.
        sr_truth: ``(N_sr,)`` truth labels of the signal-region data (-1 if unknown).
        sr_weight, sb_weight: optional per-event weights.
    """
    return _task(sr_data, sb_data, sr_weight, sb_weight, True, False, sr_truth, None)


def cathode(
    data: Array,
    samples: Array,
    data_truth: Array | None = None,
    data_weight: Array | None = None,
    sample_weight: Array | None = None,
) -> ClassifierTask:
    """CATHODE: signal-region data (1) vs background-generator samples in the SR (0).

    The (oversampled) generator samples are reweighted so that their total weight equals the
    data's: ``w_j = w^gen_j sum_i w^data_i / sum_j w^gen_j``. The test events are the data.

    Args:
        data: ``(N_d, D)`` signal-region data.
        samples: ``(N_g, D)`` generator samples (any number, e.g. 4x the data).
        data_truth: ``(N_d,)`` truth labels of the data (-1 if unknown).
        data_weight, sample_weight: optional per-event weights.
    """
    w_data = _ones(data.shape[0], data_weight)
    w_gen = _ones(samples.shape[0], sample_weight)
    w_gen = w_gen * jnp.sum(w_data) / jnp.maximum(jnp.sum(w_gen), 1e-30)
    return _task(data, samples, w_data, w_gen, True, False, data_truth, None)


# --------------------------------------------------------------------------------------------
# Two-sample test


TWO_SAMPLE = ClassifierConfig(
    hidden=(64, 64, 64),
    train=TrainConfig(epochs=30, batch_size=512, learning_rate=1e-3, patience=6, schedule="cosine"),
    n_runs=1,
)
"""The default classifier of :func:`two_sample_auc`: MLP 3 x 64, up to 30 epochs, one run."""


_jit_train_ensemble = jax.jit(train_ensemble, static_argnames="config")


class TwoSampleAUC(NamedTuple):
    """Held-out AUC of a classifier separating two samples (0.5: indistinguishable).

    Attributes:
        auc: area under the ROC curve on the held-out events (sample ``a`` as class 1).
        auc_error: its standard error (Hanley & McNeil 1982).
        n_test: held-out events of ``a`` and of ``b``.
        n_train: training (incl. validation) events of ``a`` and of ``b``.
    """

    auc: float
    auc_error: float
    n_test: tuple[int, int]
    n_train: tuple[int, int]


def mann_whitney_auc(scores_1, scores_0) -> tuple[float, float]:
    """AUC ``P(s_1 > s_0) + P(s_1 = s_0) / 2`` by ranks, and its Hanley-McNeil standard error.

    ``AUC = (R_1 - n_1 (n_1 + 1) / 2) / (n_1 n_0)`` with ``R_1`` the sum of the (tie-averaged)
    ranks of class 1; ``se^2 = [A(1-A) + (n_1-1)(Q_1-A^2) + (n_0-1)(Q_2-A^2)] / (n_1 n_0)`` with
    ``Q_1 = A/(2-A)``, ``Q_2 = 2A^2/(1+A)``.

    >>> round(mann_whitney_auc([0.9, 0.8, 0.6], [0.7, 0.5, 0.4])[0], 4)
    0.8889
    """
    from scipy.stats import rankdata

    s1, s0 = np.asarray(scores_1, np.float64), np.asarray(scores_0, np.float64)
    n1, n0 = len(s1), len(s0)
    ranks = rankdata(np.concatenate([s1, s0]))
    a = float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a)) / (n1 * n0)
    return a, float(np.sqrt(max(var, 0.0)))


def two_sample_auc(
    key: Array, a: Array, b: Array, config: ClassifierConfig = TWO_SAMPLE, test_fraction: float = 0.5
) -> TwoSampleAUC:
    """Classifier two-sample test: how well can ``a`` (class 1) be told from ``b`` (class 0)?

    A random ``test_fraction`` of each sample is held out; ``config.n_runs`` classifiers
    (:func:`train_ensemble`, balanced classes, early stopping on a ``val_fraction`` of the rest)
    learn to separate the remaining events, and the AUC of their combined score
    (``config.average``) on the held-out events is returned. ``AUC = 0.5`` when the classifier
    finds no difference (as when ``a`` and ``b`` come from the same density); its standard error
    under that hypothesis is ``sqrt((n_a + n_b + 1) / (12 n_a n_b))`` for the held-out sizes.
    Used to judge generated against true background.

    Args:
        key: PRNG key (split, initialisation, minibatches).
        a, b: ``(N_a, D)`` and ``(N_b, D)`` samples (e.g. generated and true SR background).
        config: the classifier (:data:`TWO_SAMPLE` by default).
        test_fraction: held-out fraction of each sample.

    Returns:
        :class:`TwoSampleAUC`.
    """
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    k_a, k_b, k_fit = jax.random.split(key, 3)
    n_test = [int(round(test_fraction * len(s))) for s in (a, b)]
    if min(n_test) < 1 or min(len(a), len(b)) - max(n_test) < 1:
        raise ValueError(f"two_sample_auc needs training and test events; got {len(a)} and {len(b)} events "
                         f"with test_fraction {test_fraction}")  # fmt: skip
    perm_a = np.asarray(jax.random.permutation(k_a, len(a)))
    perm_b = np.asarray(jax.random.permutation(k_b, len(b)))
    test_a, train_a = a[perm_a[: n_test[0]]], a[perm_a[n_test[0] :]]
    test_b, train_b = b[perm_b[: n_test[1]]], b[perm_b[n_test[1] :]]
    x = jnp.asarray(np.concatenate([train_a, train_b]))
    y = jnp.concatenate([jnp.ones(len(train_a)), jnp.zeros(len(train_b))])
    params, _ = _jit_train_ensemble(k_fit, x, y, jnp.ones(len(y)), config=config)
    score = lambda t: average_logits(ensemble_logits(params, jnp.asarray(t), config), config.average)
    auc, err = mann_whitney_auc(score(test_a), score(test_b))
    return TwoSampleAUC(auc, err, (len(test_a), len(test_b)), (len(train_a), len(train_b)))


# --------------------------------------------------------------------------------------------
# Scores of every run, in chunks


@partial(jax.jit, static_argnames="config")
def _fold_run_logits(params: ClassifierParams, x: Array, folds: Array, config: ClassifierConfig):
    logits = jax.vmap(ensemble_logits, (0, None, None))(params, x, config)  # (k, R, n)
    runs = logits[folds, :, jnp.arange(x.shape[0])].T  # (R, n): event i from its fold's runs
    return average_logits(runs, config.average, axis=0), runs


def kfold_run_scores(
    params: ClassifierParams, x: Array, folds: Array, config: ClassifierConfig, chunk: int = 8192
) -> tuple[Array, Array]:
    """Out-of-fold scores of the ensemble and of each of its runs, computed in chunks of events.

    Event ``i`` is scored by the ``n_runs`` models of fold ``folds[i]``: ``run_logits[r, i]`` is
    the logit of run ``r`` and ``scores[i]`` their :func:`average_logits` combination (the same
    as :func:`kfold_predict` for ``folds >= 0``). The per-run logits give the spread between
    independent trainings; chunking bounds the memory of the hidden activations
    (``k_folds x n_runs x chunk x width``) on large samples, and padding every chunk to the
    same size compiles the evaluation once.

    Args:
        params: stacked ``(k_folds, n_runs)`` params of a :class:`KFoldResult`. For the
            ``(n_runs,)`` params of :func:`train_ensemble`, add a leading axis of size 1
            (``jax.tree.map(lambda a: a[None], params)``) and pass ``folds = 0``.
        x: ``(N, D)`` inputs.
        folds: ``(N,)`` fold of each event, in ``[0, k_folds)``; draw it at random for events
            that no model saw (an independent test sample).
        config: the :class:`ClassifierConfig` of the training.
        chunk: events per evaluation chunk.

    Returns:
        ``(scores (N,), run_logits (n_runs, N))``, scores as logits (``config.average``).
    """
    import numpy as np

    x = np.asarray(x, np.float32)
    folds = np.broadcast_to(np.asarray(folds, np.int32), x.shape[:1])
    n = x.shape[0]
    size = max(1, min(chunk, n))
    pad = -n % size
    xp = np.concatenate([x, np.zeros((pad, x.shape[1]), np.float32)])
    fp = np.concatenate([folds, np.zeros(pad, np.int32)])
    parts = [jax.device_get(_fold_run_logits(params, xp[i : i + size], fp[i : i + size], config))
             for i in range(0, n + pad, size)]  # fmt: skip
    scores = np.concatenate([p[0] for p in parts])[:n]
    runs = np.concatenate([p[1] for p in parts], axis=1)[:, :n]
    return jnp.asarray(scores), jnp.asarray(runs)
