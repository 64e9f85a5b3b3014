"""Classifier loss, weights, k-fold bookkeeping, ensembles, set-ups and accuracy against the optimum."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gbijax import classifiers as clf
from gbijax import metrics
from gbijax.train import TrainConfig

# ---------------------------------------------------------------------------------------------
# Loss and weights (no training)


def test_binary_cross_entropy_matches_the_formula_and_is_stable():
    z = jnp.linspace(-8.0, 8.0, 17)
    for y in (0.0, 1.0, 0.3):
        p = jax.nn.sigmoid(z)
        naive = -(y * jnp.log(p) + (1 - y) * jnp.log(1 - p))
        np.testing.assert_allclose(clf.binary_cross_entropy(z, y), naive, rtol=1e-5, atol=1e-6)
    huge = clf.binary_cross_entropy(jnp.array([1e4, -1e4]), jnp.array([0.0, 1.0]))
    np.testing.assert_allclose(huge, [1e4, 1e4])
    grad = jax.grad(lambda z: clf.binary_cross_entropy(z, 1.0))(jnp.array(-1e4))
    assert float(grad) == pytest.approx(-1.0)


def test_balance_weights_equalise_the_classes():
    y = jnp.array([1, 1, 0, 0, 0, 0, 0, 0], jnp.float32)
    w = jnp.array([1, 3, 1, 1, 1, 1, 2, 0], jnp.float32)
    b = clf.balance_weights(y, w)
    assert float(jnp.sum(b * y)) == pytest.approx(float(jnp.sum(b * (1 - y))))
    assert float(jnp.sum(b)) == pytest.approx(float(jnp.sum(w)))
    np.testing.assert_allclose(b[:2] / b[0], [1, 3])  # relative weights within a class kept
    assert float(b[-1]) == 0.0


def test_fold_assignment_and_validation_split():
    test = jnp.arange(103) < 93
    folds = clf.fold_assignment(jax.random.key(0), test, 5)
    assert np.all(np.asarray(folds[93:]) == -1)
    assert sorted(np.bincount(np.asarray(folds[:93]), minlength=5).tolist()) == [18, 18, 19, 19, 19]
    w = jnp.linspace(0.5, 1.5, 1000)
    train_w, val_w = clf.split_validation(jax.random.key(1), w, 0.2)
    np.testing.assert_allclose(train_w + val_w, w)
    assert np.all((np.asarray(train_w) == 0) | (np.asarray(val_w) == 0))
    assert 0.15 < float(jnp.mean(val_w > 0)) < 0.25


def test_average_logits():
    z = jnp.array([[10.0, -3.0], [-10.0, 1.0], [0.0, 40.0]])
    prob = jax.nn.sigmoid(clf.average_logits(z, "probability"))
    np.testing.assert_allclose(prob, jax.nn.sigmoid(z).mean(0), rtol=1e-6)
    np.testing.assert_allclose(clf.average_logits(z, "logit"), z.mean(0))
    big = clf.average_logits(jnp.array([[60.0], [80.0]]))  # probability 1 in float32, logit still finite
    assert np.isfinite(big).all() and float(big[0]) > 50
    with pytest.raises(ValueError, match="average"):
        clf.average_logits(z, "median")


def test_presets():
    assert clf.REFERENCE.hidden == (64, 64, 64) and clf.REFERENCE.n_runs == 10
    train = clf.REFERENCE.train
    assert (train.learning_rate, train.batch_size, train.epochs) == (1e-3, 128, 100)
    assert clf.PAWS_MLP.hidden == (256, 128, 64)
    hash(clf.DEFAULT), hash(clf.PAWS_MLP)  # static jit arguments


# ---------------------------------------------------------------------------------------------
# Set-ups (no training)


def test_setups_build_labels_weights_and_test_events():
    rng = np.random.default_rng(0)
    data, ref = rng.normal(size=(6, 4)), rng.normal(size=(10, 4))
    truth = np.array([1, 0, 0, 1, 0, 0])
    for build in (clf.idealised_ad, clf.cwola):
        task = build(data, ref, truth)
        np.testing.assert_array_equal(task.y, [1] * 6 + [0] * 10)
        np.testing.assert_array_equal(task.test, [True] * 6 + [False] * 10)
        np.testing.assert_array_equal(task.truth, list(truth) + [-1] * 10)
        np.testing.assert_allclose(task.x, np.concatenate([data, ref]), rtol=1e-6)
    task = clf.cathode(data, ref, truth, data_weight=np.array([1, 1, 1, 1, 0, 0.0]))
    assert float(jnp.sum(task.weight[6:])) == pytest.approx(4.0)  # samples weigh as much as the data
    np.testing.assert_allclose(task.weight[6:], 0.4)
    task = clf.supervised(data, ref)
    assert task.test.all()
    np.testing.assert_array_equal(task.truth, task.y)
    # The truth array plugs straight into the metrics: only test events count.
    scores = jnp.concatenate([jnp.asarray(truth, jnp.float32), jnp.full(10, 5.0)])
    task = clf.cwola(data, ref, truth)
    assert float(metrics.auc(scores, task.truth, task.weight)) == 1.0


# ---------------------------------------------------------------------------------------------
# k-fold on pure noise: a big model memorises its training folds, and never scores them


N_NOISE, D_NOISE, N_ALWAYS = 512, 32, 16
NOISE_CONFIG = clf.ClassifierConfig(
    hidden=(128,), train=TrainConfig(epochs=80, batch_size=32, learning_rate=3e-3),
    n_runs=1, k_folds=2, val_fraction=0.0,
)  # fmt: skip


def test_kfold_never_scores_an_event_with_a_model_trained_on_it():
    k_x, k_y, k_fit = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(k_x, (N_NOISE, D_NOISE))
    y = jax.random.permutation(k_y, jnp.arange(N_NOISE) % 2).astype(jnp.float32)
    labels = np.asarray(y, int)
    test = jnp.arange(N_NOISE) >= N_ALWAYS  # the first events train every fold
    result = clf.kfold_train(k_fit, x, y, jnp.ones(N_NOISE), NOISE_CONFIG, test=test)
    folds = np.asarray(result.folds)
    np.testing.assert_array_equal(folds < 0, ~np.asarray(test))
    assert np.all(np.asarray(result.train_weight)[:, :, folds < 0] == 1)
    per_model = clf.ensemble_logits(jax.tree.map(lambda a: a[:, 0], result.params), x, NOISE_CONFIG)
    for f in range(2):
        trained = folds != f
        assert float(metrics.auc(per_model[f][trained], labels[trained])) > 0.97  # noise memorised...
    scores = clf.kfold_predict(result.params, x, result.folds, NOISE_CONFIG)
    out_of_fold = float(metrics.auc(scores[folds >= 0], labels[folds >= 0]))
    assert abs(out_of_fold - 0.5) < 0.1  # ...but never used to score the events it memorised (sd 0.026)
    assert float(metrics.auc(scores[folds < 0], labels[folds < 0])) > 0.97  # in-sample (documented)


# ---------------------------------------------------------------------------------------------
# A supervised classifier on two 2-D Gaussians: bookkeeping, ensembles, and the optimal AUC


MEAN_1, STD_1 = jnp.array([1.0, 0.5]), jnp.array([0.7, 1.2])  # class 1
STD_0 = jnp.array([1.0, 1.0])  # class 0 at the origin
N_GAUSS = 2000
GAUSS_CONFIG = clf.ClassifierConfig(
    hidden=(32, 32), train=TrainConfig(epochs=10, batch_size=128, learning_rate=3e-3), n_runs=2, k_folds=5
)


def _log_density(x, mean, std):
    return jnp.sum(-0.5 * ((x - mean) / std) ** 2 - jnp.log(std), -1)


@pytest.fixture(scope="module")
def gaussians():
    k_1, k_0, k_fit = jax.random.split(jax.random.key(3), 3)
    task = clf.supervised(MEAN_1 + STD_1 * jax.random.normal(k_1, (N_GAUSS, 2)),
                          STD_0 * jax.random.normal(k_0, (N_GAUSS, 2)))  # fmt: skip
    result = clf.kfold_train(k_fit, task.x, task.y, task.weight, GAUSS_CONFIG, test=task.test)
    return task, result


def test_kfold_masks_and_validation_split(gaussians):
    task, result = gaussians
    folds = np.asarray(result.folds)
    assert np.bincount(folds).tolist() == [2 * N_GAUSS // 5] * 5
    train_w, val_w = np.asarray(result.train_weight), np.asarray(result.val_weight)  # (k, R, N)
    assert train_w.shape == val_w.shape == (5, 2, 2 * N_GAUSS)
    for f in range(5):
        assert np.all(train_w[f][:, folds == f] == 0) and np.all(val_w[f][:, folds == f] == 0)
        np.testing.assert_allclose((train_w + val_w)[f][:, folds != f], 1.0)  # the rest: train or validate
        assert 0.15 < (val_w[f][:, folds != f] > 0).mean() < 0.25
    assert not np.array_equal(val_w[0, 0], val_w[0, 1])  # each run draws its own validation set


def test_kfold_predict_uses_the_models_of_the_event_fold(gaussians):
    task, result = gaussians
    scores = clf.kfold_predict(result.params, task.x, result.folds, GAUSS_CONFIG)
    for f in range(5):
        runs = jax.tree.map(lambda a, f=f: a[f], result.params)
        own = clf.average_logits(clf.ensemble_logits(runs, task.x, GAUSS_CONFIG))
        in_f = np.asarray(result.folds) == f
        np.testing.assert_allclose(scores[in_f], own[in_f], rtol=1e-5, atol=1e-5)
        assert not np.allclose(scores[~in_f], own[~in_f], atol=1e-5)


def test_vmapped_runs_differ_between_keys(gaussians):
    task, result = gaussians
    first = jax.tree.leaves(result.params.net)[0]  # (k, R, ...)
    assert not np.allclose(first[0, 0], first[0, 1])
    runs = jax.tree.map(lambda a: a[0], result.params)
    logits = clf.ensemble_logits(runs, task.x, GAUSS_CONFIG)
    assert float(jnp.max(jnp.abs(logits[0] - logits[1]))) > 0.01
    hist = result.history
    assert np.all(np.asarray(hist.best_epoch) >= 0) and np.isfinite(np.asarray(hist.best_val_loss)).all()


def test_supervised_classifier_reaches_the_optimal_auc(gaussians):
    task, _ = gaussians
    scores = clf.kfold_scores(jax.random.key(4), task.x, task.y, task.weight, GAUSS_CONFIG, test=task.test)
    optimal = _log_density(task.x, MEAN_1, STD_1) - _log_density(task.x, 0.0, STD_0)
    auc_opt = float(metrics.auc(optimal, task.truth))
    auc_nn = float(metrics.auc(scores, task.truth))
    assert 0.75 < auc_opt < 0.9  # a non-trivial problem with a quadratic optimal boundary
    assert auc_opt - 0.01 < auc_nn < auc_opt + 0.01  # Neyman-Pearson: nothing beats it beyond noise
