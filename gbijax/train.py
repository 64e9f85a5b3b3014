"""The generic pure training loop: optax, minibatches, validation, early stopping, all in jit.

One training is ``fit(key, params, loss_fn, train_data, val_data, config)``. Its epochs run in a
``lax.while_loop`` and its minibatch steps in a ``lax.scan``, so the whole training is one
compiled program with no Python control flow, and an ensemble is ``jax.vmap(fit)`` over keys
(or over initial parameters, or over per-event weights for data realisations and folds):

>>> import jax, jax.numpy as jnp
>>> x = jax.random.normal(jax.random.key(0), (256, 1)) + 3.0
>>> loss = lambda p, key, batch: (batch["x"][:, 0] - p) ** 2
>>> cfg = TrainConfig(epochs=30, batch_size=64, learning_rate=0.1)
>>> p, hist = fit(jax.random.key(1), jnp.zeros(()), loss, {"x": x}, {"x": x}, cfg)
>>> bool(abs(p - x.mean()) < 0.1)
True

Events carry an optional ``"weight"`` entry: the loss is the weighted mean
``sum_i w_i l_i / sum_i w_i``, so a sample that differs between realisations (an injection, a
fold, a bootstrap) is expressed as weights over one fixed array and still vmaps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["History", "TrainConfig", "TrainState", "fit", "history", "init_state", "make_optimizer",
           "train", "train_population", "weighted_mean"]  # fmt: skip

Params = Any
Data = dict[str, jax.Array]
LossFn = Callable[[Params, jax.Array, Data], jax.Array]
"""``loss_fn(params, key, batch) -> (B,)`` per-event losses; ``batch`` is a slice of the data dict."""


class TrainConfig(NamedTuple):
    """Static settings of one training (hashable, so it can be a ``jit`` static argument).

    Attributes:
        epochs: maximum number of passes over the training data.
        batch_size: events per optimisation step; the last incomplete batch of an epoch is
            dropped (a new permutation every epoch, so every event is used).
        learning_rate: peak learning rate.
        weight_decay: decoupled weight decay (AdamW) when > 0, else Adam.
        clip_norm: global gradient-norm clipping when > 0.
        patience: stop after this many epochs without a better validation loss (0: never).
        schedule: ``"constant"`` or ``"cosine"`` (cosine decay to 0 over ``epochs``).
        val_chunk: events per chunk when evaluating the validation loss (memory bound).
    """

    epochs: int = 100
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    clip_norm: float = 0.0
    patience: int = 0
    schedule: str = "constant"
    val_chunk: int = 16384


class TrainState(NamedTuple):
    """Everything a training needs to continue: checkpoint this to resume bit-exactly."""

    epoch: jax.Array
    params: Params
    opt_state: Any
    best_params: Params
    best_val: jax.Array
    best_epoch: jax.Array
    train_loss: jax.Array
    val_loss: jax.Array


class History(NamedTuple):
    """Per-epoch losses (NaN after the last epoch run) and the early-stopping outcome."""

    train_loss: jax.Array
    val_loss: jax.Array
    best_epoch: jax.Array
    best_val_loss: jax.Array
    epochs_run: jax.Array


def weighted_mean(values: jax.Array, weight: jax.Array | None) -> jax.Array:
    """``sum(w v) / sum(w)`` (0 when all weights are 0); plain mean without weights."""
    if weight is None:
        return jnp.mean(values)
    return jnp.sum(weight * values) / jnp.maximum(jnp.sum(weight), 1e-12)


def _steps_per_epoch(n: int, batch_size: int) -> tuple[int, int]:
    batch = min(batch_size, n)
    return max(n // batch, 1), batch


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """Adam or AdamW with optional clipping and cosine decay, as set in ``config``."""
    lr: Any = config.learning_rate
    if config.schedule == "cosine":
        lr = optax.cosine_decay_schedule(config.learning_rate, config.epochs * steps_per_epoch)
    elif config.schedule != "constant":
        raise ValueError(f"schedule must be 'constant' or 'cosine', got {config.schedule!r}")
    opt = optax.adamw(lr, weight_decay=config.weight_decay) if config.weight_decay else optax.adam(lr)
    return optax.chain(optax.clip_by_global_norm(config.clip_norm), opt) if config.clip_norm else opt


def _n_events(data: Data) -> int:
    sizes = {leaf.shape[0] for leaf in jax.tree.leaves(data)}
    if len(sizes) != 1:
        raise ValueError(f"all data arrays must share their first (event) axis, got sizes {sizes}")
    return sizes.pop()


def init_state(params: Params, train_data: Data, config: TrainConfig) -> TrainState:
    """The state before the first epoch."""
    steps, _ = _steps_per_epoch(_n_events(train_data), config.batch_size)
    nan = jnp.full((config.epochs,), jnp.nan, jnp.float32)
    return TrainState(
        epoch=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=make_optimizer(config, steps).init(params),
        best_params=params,
        best_val=jnp.full((), jnp.inf, jnp.float32),
        best_epoch=jnp.full((), -1, jnp.int32),
        train_loss=nan,
        val_loss=nan,
    )


def _batch_loss(loss_fn: LossFn, params, key, batch: Data):
    return weighted_mean(loss_fn(params, key, batch), batch.get("weight"))


def _validation_loss(loss_fn: LossFn, params, key, data: Data, chunk: int):
    """Weighted mean loss over all of ``data`` in fixed-size chunks (padding has weight 0)."""
    n = _n_events(data)
    chunk = min(chunk, n)
    n_chunks = -(-n // chunk)
    pad = n_chunks * chunk - n
    weight = data.get("weight", jnp.ones(n))
    padded = {k: jnp.concatenate([v, jnp.zeros((pad, *v.shape[1:]), v.dtype)]) for k, v in data.items()}
    padded["weight"] = jnp.concatenate([weight, jnp.zeros(pad, weight.dtype)])
    chunks = jax.tree.map(lambda v: v.reshape(n_chunks, chunk, *v.shape[1:]), padded)
    keys = jax.random.split(key, n_chunks)

    def one(args):
        k, c = args
        return jnp.sum(c["weight"] * loss_fn(params, k, c)), jnp.sum(c["weight"])

    sums, weights = jax.lax.map(one, (keys, chunks))
    return jnp.sum(sums) / jnp.maximum(jnp.sum(weights), 1e-12)


def train(
    state: TrainState,
    key: jax.Array,
    loss_fn: LossFn,
    train_data: Data,
    val_data: Data | None,
    config: TrainConfig,
    until_epoch: int | jax.Array | None = None,
) -> TrainState:
    """Run epochs from ``state.epoch`` up to ``until_epoch`` (default: ``config.epochs``).

    Epoch ``e`` uses the key ``fold_in(key, e)``, so stopping after any epoch and calling
    ``train`` again from the returned state gives exactly the same result as one call. Early
    stopping ends the loop once ``patience`` epochs pass without a better validation loss
    (without ``val_data``, the loss on the whole training set after each epoch); the best
    parameters are kept in the state.
    """
    n = _n_events(train_data)
    steps, batch = _steps_per_epoch(n, config.batch_size)
    optimizer = make_optimizer(config, steps)
    until = config.epochs if until_epoch is None else until_epoch
    key, val_key = jax.random.split(key)  # the same validation noise every epoch
    monitored = train_data if val_data is None else val_data
    grad_fn = jax.value_and_grad(lambda p, k, b: _batch_loss(loss_fn, p, k, b))

    def step(carry, args):
        params, opt_state = carry
        k, idx = args
        value, grads = grad_fn(params, k, jax.tree.map(lambda v: v[idx], train_data))
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    def epoch_body(s: TrainState) -> TrainState:
        k_perm, k_steps = jax.random.split(jax.random.fold_in(key, s.epoch))
        idx = jax.random.permutation(k_perm, n)[: steps * batch].reshape(steps, batch)
        (params, opt_state), losses = jax.lax.scan(
            step, (s.params, s.opt_state), (jax.random.split(k_steps, steps), idx)
        )
        train_loss = jnp.mean(losses)
        val = _validation_loss(loss_fn, params, val_key, monitored, config.val_chunk)
        better = val < s.best_val
        return TrainState(
            epoch=s.epoch + 1,
            params=params,
            opt_state=opt_state,
            best_params=jax.tree.map(lambda a, b: jnp.where(better, a, b), params, s.best_params),
            best_val=jnp.where(better, val, s.best_val),
            best_epoch=jnp.where(better, s.epoch, s.best_epoch),
            train_loss=s.train_loss.at[s.epoch].set(train_loss),
            val_loss=s.val_loss.at[s.epoch].set(val),
        )

    def running(s: TrainState):
        return (s.epoch < until) & _still_training(s.epoch, s.best_epoch, config)

    return jax.lax.while_loop(running, epoch_body, state)


def _still_training(epoch, best_epoch, config: TrainConfig):
    """:func:`train`'s loop condition without ``until_epoch``: epochs left and not stopped early.

    Plain array arithmetic, so it serves the traced loop and the host (NumPy) alike.
    """
    go = epoch < config.epochs
    if config.patience > 0:
        go = go & ((best_epoch < 0) | (epoch - best_epoch <= config.patience))
    return go


def history(state: TrainState) -> History:
    """The :class:`History` of a (finished or interrupted) training state."""
    return History(state.train_loss, state.val_loss, state.best_epoch, state.best_val, state.epoch)


def fit(
    key: jax.Array,
    params: Params,
    loss_fn: LossFn,
    train_data: Data,
    val_data: Data | None,
    config: TrainConfig,
) -> tuple[Params, History]:
    """Train ``params`` to minimise the weighted mean of ``loss_fn``; return the best params.

    Pure: the result depends only on the arguments. ``jax.vmap`` it over ``key`` and ``params``
    for an ensemble, or over the ``"weight"`` entries of the data for realisations and folds.

    Args:
        key: PRNG key for permutations and for the loss's own noise.
        params: initial parameters.
        loss_fn: ``loss_fn(params, key, batch) -> (B,)`` per-event losses.
        train_data: dict of arrays with a shared leading event axis, optional ``"weight"``.
        val_data: the same for validation (early stopping and model choice), or None.
        config: :class:`TrainConfig` (static).

    Returns:
        ``(best_params, history)``; best by validation loss (end-of-epoch training-set loss
        without validation data).
    """
    state = train(init_state(params, train_data, config), key, loss_fn, train_data, val_data, config)
    return state.best_params, history(state)


Advance = Callable[[TrainState, Any, Any, jax.Array], TrainState]
"""``advance(state, member, shared, until_epoch) -> state``: one member's :func:`train` call."""


def train_population(
    advance: Advance,
    state: TrainState,
    members: Any,
    config: TrainConfig,
    segment_epochs: int | None = None,
    shared: Any = None,
) -> TrainState:
    """Train a stacked population of members, dropping the finished ones every few epochs.

    Why: ``jax.vmap`` of a training with early stopping is one ``while_loop`` that runs until its
    *last* member stops; finished members are still computed (and masked), so every member costs
    as much as the slowest. Here the members train together for ``segment_epochs`` epochs; then
    the host looks which are still running (the condition of :func:`train`'s loop) and only
    those are gathered for the next segment, and so on until none runs. The cost is about the sum
    of the members' epochs (each rounded up to a segment) instead of members x the most epochs.

    The running members are padded up to a power of two (at most the population) with copies of
    one of them, whose results are dropped, so only ``O(log M)`` batch sizes compile. As epoch
    ``e`` of :func:`train` uses ``fold_in(key, e)``, each member's result is the one of a single
    ``jax.vmap`` over the population, parameters equal up to the float rounding of another batch
    size, and so the same epochs except where that rounding decides a near tie of validation
    losses (R-ANODE benchmark scans: 4 of 400 flows stopped at another epoch, by at most 8, on an
    H200; 1 of 20, by 1, on a CPU; 0 of 20 in another CPU scan). The host decides between
    segments, so this cannot run inside ``jit`` or ``vmap``.

    >>> cfg = TrainConfig(epochs=60, batch_size=32, learning_rate=0.2, patience=2)
    >>> x = jax.random.normal(jax.random.key(0), (4, 256)) * jnp.arange(1.0, 5.0)[:, None]
    >>> def advance(state, x, shared, until):  # member: its own data set
    ...     loss = lambda p, key, batch: (batch["x"] - p) ** 2
    ...     return train(state, jax.random.key(1), loss, {"x": x}, None, cfg, until)
    >>> start = jax.vmap(lambda x: init_state(jnp.zeros(()), {"x": x}, cfg))(x)
    >>> done = train_population(advance, start, x, cfg, segment_epochs=4)
    >>> one_program = jax.vmap(lambda s, x: advance(s, x, None, None))(start, x)
    >>> len(set(done.epoch.tolist())) > 1  # the members stop at different epochs ...
    True
    >>> done.epoch.tolist() == one_program.epoch.tolist()  # ... the same as in one program
    True

    Args:
        advance: ``advance(state, member, shared, until_epoch) -> state``, one member's training
            from ``state.epoch`` up to ``until_epoch`` (None: to the end), normally a call of
            :func:`train` with the member's own key, loss and data. A static argument: pass the
            same function object again to reuse the compiled segments.
        state: the members' :class:`TrainState` stacked on a leading member axis (e.g. a
            ``jax.vmap`` of :func:`init_state`).
        members: the members' own arguments, a pytree of arrays with the same leading axis.
        config: the :class:`TrainConfig` of every member (its ``epochs`` and ``patience`` tell
            which members still run).
        segment_epochs: epochs between compactions; 0 or None: one segment, i.e. one vmapped
            program for the whole training.
        shared: arrays every member reads, passed to ``advance`` unbatched (not copied per member).

    Returns:
        The members' final states, in their order.
    """
    n_members = state.epoch.shape[0]
    segment = segment_epochs or config.epochs
    while True:
        epoch, best_epoch = (np.asarray(v) for v in jax.device_get((state.epoch, state.best_epoch)))
        running = np.flatnonzero(_still_training(epoch, best_epoch, config))
        if running.size == 0:
            return state
        size = min(1 << (running.size - 1).bit_length(), n_members)
        pad = size - running.size
        take = np.concatenate([running, np.full(pad, running[0])])  # padding: a running member again
        put = np.concatenate([running, np.full(pad, n_members)])  # ... whose copies are dropped
        state = _advance_subset(advance, segment, state, members, shared, take, put)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _advance_subset(advance: Advance, segment_epochs: int, state: TrainState, members, shared, take, put):
    """Members ``take`` run ``segment_epochs`` more epochs and go back to ``put`` (out of range: dropped)."""
    sub_state, sub_members = jax.tree.map(lambda v: v[take], (state, members))
    new = jax.vmap(lambda s, m: advance(s, m, shared, s.epoch + segment_epochs))(sub_state, sub_members)
    return jax.tree.map(lambda v, n: v.at[put].set(n, mode="drop"), state, new)
