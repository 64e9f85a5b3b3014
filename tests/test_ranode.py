"""R-ANODE with the exact toy background: recovery of mu, k-fold, both modes, sampling, compaction."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gbijax.data import fit_preprocessing, toy
from gbijax.generators import SplineFlowConfig
from gbijax.inference import (
    RanodeConfig,
    fit_mixture,
    fit_ranode,
    fit_ranode_realisations,
    fit_signal_template,
    measure_ranode,
    sample_signal_model,
    signal_coordinates,
    signal_template_log_prob,
)
from gbijax.inference._ranode import _fold_indices, _to_coordinates
from gbijax.train import TrainConfig

SR = (3.3, 3.7)
TINY = RanodeConfig(
    flow=SplineFlowConfig(features=5, n_layers=2, hidden=(24, 24), n_bins=6),
    train=TrainConfig(epochs=25, batch_size=512, learning_rate=5e-3, patience=5),
    n_seeds=1, k_folds=2, n_bootstrap=0,
)


def toy_problem(n: int, mu: float):
    """``n`` toy SR events at signal fraction ``mu``: events, labels, coordinates, ``u``, ``log p_B(u)``."""
    x, label = toy.mixture_sample(jax.random.key(0), n, mu, region=SR)
    sb = toy.background_sample(jax.random.key(1), 20_000)
    sb = np.asarray(sb[(sb[:, 0] < SR[0]) | (sb[:, 0] > SR[1])])
    coords = signal_coordinates(fit_preprocessing(sb[:, 1:]), x[:, 0])
    u, log_det = _to_coordinates(coords, x)
    log_pb = toy.background_log_prob(x, region=SR) - log_det
    return x, label, coords, u, log_pb


@pytest.fixture(scope="module")
def toy_sr():
    return toy_problem(6000, 0.15)


def test_fold_indices_partition_the_events():
    test, train, val = _fold_indices(jax.random.key(0), 20, 4, 0.2)
    assert sorted(np.asarray(test).ravel().tolist()) == list(range(20))
    for f in range(4):
        seen = set(np.asarray(train[f]).tolist()) | set(np.asarray(val[f]).tolist())
        assert seen.isdisjoint(np.asarray(test[f]).tolist())  # a fold never trains its own scorer
        assert len(seen) == 15 and not set(np.asarray(train[f]).tolist()) & set(np.asarray(val[f]).tolist())


def test_learned_mode_recovers_mu_within_its_interval(toy_sr):
    x, label, coords, u, log_pb = toy_sr
    cfg = TINY._replace(n_bootstrap=3)  # 3 replica flows per fold: the shape's variance enters the intervals
    res = fit_ranode(jax.random.key(2), u, log_pb, jnp.ones(len(u)), cfg, return_params=True)
    plain = fit_ranode(jax.random.key(2), u, log_pb, jnp.ones(len(u)), TINY)
    assert float(plain.mu_hat) == float(res.mu_hat)  # the replicas do not change the estimate
    mu_true = float(label.mean())
    replicas = np.asarray(res.mu_hat_replicas)
    assert replicas.shape == (3,) and np.ptp(replicas) > 0
    assert np.all(np.abs(replicas - mu_true) < 0.3 * mu_true)
    assert float(res.shape_variance) == pytest.approx(float(np.var(replicas, ddof=1)), rel=1e-4)
    with_shape = fit_mixture(res.log_ratio, extra_variance=res.shape_variance)
    stat_only = fit_mixture(res.log_ratio)
    assert float(res.interval_68.hi) == pytest.approx(float(with_shape.interval_68.hi), rel=1e-5)
    assert float(res.z) == pytest.approx(float(stat_only.z), rel=1e-5) == float(plain.z)
    for wide, narrow in ((res.interval_68, stat_only.interval_68), (res.interval_95, stat_only.interval_95)):
        assert float(wide.lo) < float(narrow.lo) and float(wide.hi) > float(narrow.hi)
    # mu_hat is ~10% low here: in these coordinates about 8% of the toy's signal lies beyond the
    # flows' tail bound of 8 in a tau coordinate, where a flow is the identity (a template trained on
    # signal events alone is 8% low the same way: test_signal_template_learns_the_signal_and_measures_mu).
    assert abs(float(res.mu_hat) - mu_true) < 0.15 * mu_true
    assert float(res.interval_95.lo) < float(res.mu_hat) < float(res.interval_95.hi)
    assert float(res.interval_95.hi) > 0.9 * mu_true
    assert float(res.z) > 5
    assert np.all(np.abs(np.asarray(res.w_learned) - mu_true) < 0.2 * mu_true)
    # the learned signal model looks like the signal: jet masses near (m_y, m_x - m_y)
    samples = np.asarray(sample_signal_model(cfg, res.params, coords, jax.random.key(3), 2000))
    assert samples.shape == (2000, 5)
    assert np.all((samples[:, 0] > SR[0]) & (samples[:, 0] < SR[1]))
    assert abs(np.median(samples[:, 2]) - 0.4) < 0.1


def test_learned_w_is_not_identified_from_above_and_the_penalty_breaks_the_tie():
    """(w, p_S) and (w / lambda, lambda p_S + (1 - lambda) p_B) fit the data equally well.

    Started at five times the truth, the learned w stays above it and so does the held-out
    mu_hat; a penalty on w moves both down.
    """
    _, label, _, u, log_pb = toy_problem(6000, 0.03)
    mu_true = float(label.mean())
    fit = lambda penalty: fit_ranode(jax.random.key(2), u, log_pb, jnp.ones(len(u)),
                                     TINY._replace(w_init=0.15, w_penalty=penalty))  # fmt: skip
    plain, penalised = fit(0.0), fit(0.2)
    w_plain, w_penalised = np.asarray(plain.w_learned).ravel(), np.asarray(penalised.w_learned).ravel()
    assert np.all(w_plain > 1.2 * mu_true)  # training ends on the flat direction, well above the truth
    assert float(plain.mu_hat) > mu_true
    assert np.all(w_penalised < w_plain - 0.25 * mu_true)
    assert float(penalised.mu_hat) < float(plain.mu_hat)
    with pytest.raises(ValueError, match="w_penalty"):
        fit_ranode(jax.random.key(2), u, log_pb, jnp.ones(len(u)), TINY._replace(mode="scan", w_penalty=0.1))


def test_no_signal_gives_no_significant_signal():
    x = toy.background_sample(jax.random.key(5), 6000, region=SR)
    coords = signal_coordinates(fit_preprocessing(np.asarray(x[:, 1:])), x[:, 0])
    u, log_det = _to_coordinates(coords, x)
    res = fit_ranode(jax.random.key(6), u, toy.background_log_prob(x, region=SR) - log_det,
                     jnp.ones(len(u)), TINY)
    assert float(res.interval_95.lo) == 0.0
    assert float(res.z) < 2.0


def test_scan_mode_equals_point_by_point_scan(toy_sr):
    _, label, _, u, log_pb = toy_sr
    grid = (0.05, 0.15, 0.3)
    cfg = TINY._replace(mode="scan", w_grid=grid, train=TINY.train._replace(epochs=6))
    weight = jnp.ones(len(u))
    joint = fit_ranode(jax.random.key(4), u, log_pb, weight, cfg)
    for i, w in enumerate(grid[:2]):  # the same seeds train every w: point by point agrees
        single = fit_ranode(jax.random.key(4), u, log_pb, weight, cfg._replace(w_grid=(w, 0.5)))
        np.testing.assert_allclose(joint.profile_log_likelihood[i + 1], single.profile_log_likelihood[1],
                                   rtol=1e-4)
    assert float(joint.profile_log_likelihood[0]) == 0.0  # L(0) - L(0)
    assert float(joint.mu_hat) > 0.03 and float(joint.z) > 3


def test_weights_remove_events_exactly(toy_sr):
    _, _, _, u, log_pb = toy_sr
    cfg = TINY._replace(train=TINY.train._replace(epochs=3))
    weight = jnp.ones(len(u)).at[::3].set(0.0)
    res = fit_ranode(jax.random.key(7), u, log_pb, weight, cfg)
    assert np.all(np.asarray(res.log_ratio)[::3] != 0.0)  # still scored ...
    doubled = fit_ranode(jax.random.key(7), u, log_pb, 2.0 * weight, cfg)
    assert float(doubled.q0) == pytest.approx(2.0 * float(res.q0), rel=0.05)  # ... but weighted


def test_compacted_training_equals_one_program(toy_sr):
    # 2 realisations x 4 scan flows (2 folds x 2 w) stopping at different epochs (patience 5, at most
    # 25 epochs), trained as one population whose stopped flows are dropped every 4 epochs
    _, _, _, u, log_pb = toy_sr
    cfg = TINY._replace(mode="scan", w_grid=(0.05, 0.15))
    keys = jnp.stack([jax.random.key(8), jax.random.key(9)])
    us, log_pbs = jnp.stack([u, u[::-1]]), jnp.stack([log_pb, log_pb[::-1]])
    one = fit_ranode_realisations(keys, us, log_pbs, jnp.ones(us.shape[:2]), cfg)
    epochs = np.asarray(one.epochs_run)
    assert epochs.shape == (2, 2, 2, 1) and len(set(epochs.ravel().tolist())) > 2
    compacted = measure_ranode(keys, us, log_pbs, None, cfg._replace(segment_epochs=4))
    for field, of_one in (("mu_hat", one.mu_hat), ("lo68", one.interval_68.lo), ("hi68", one.interval_68.hi),
                          ("q0", one.q0)):  # fmt: skip
        np.testing.assert_allclose(getattr(compacted, field), of_one, rtol=1e-4, atol=1e-6)
    single = fit_ranode(keys[1], us[1], log_pbs[1], jnp.ones(len(u)), cfg._replace(segment_epochs=4))
    np.testing.assert_array_equal(single.epochs_run, epochs[1])
    assert float(single.mu_hat) == pytest.approx(float(one.mu_hat[1]), rel=1e-4)


def test_compacted_training_refuses_jit_and_vmap(toy_sr):
    _, _, _, u, log_pb = toy_sr
    cfg = TINY._replace(segment_epochs=4)
    run = lambda uu: fit_ranode(jax.random.key(0), uu, log_pb, jnp.ones(len(u)), cfg).mu_hat
    with pytest.raises(ValueError, match="cannot run inside jit or vmap"):
        jax.jit(run)(u)
    with pytest.raises(ValueError, match="cannot run inside jit or vmap"):
        jax.vmap(run)(u[None])


def _spoiled(u, log_pb, weight, what):
    """One of the bad inputs R-ANODE must refuse, and (a regex of) the error that names it."""
    cases = {
        "u columns": ((u[:, :4], log_pb, weight), r"u must be \((R, )?N, 5\).*got shape \((1, )?40, 4\)"),
        "log_pb length": ((u, log_pb[:30], weight), r"log_pb must be \((R, )?N\).*got shape \((1, )?30,?\)"),
        "weight length": ((u, log_pb, weight[:30]), r"weight must be \((R, )?N\).*got shape \((1, )?30,?\)"),
        "NaN u": ((u.at[3, 2].set(jnp.nan), log_pb, weight), r"u.*: 1 row\(s\) contain NaN .*rows 3\)"),
        "inf log_pb": ((u, log_pb.at[7].set(-jnp.inf), weight), r"log_pb.*: 1 row\(s\) contain .*rows 7\)"),
        "negative weight": ((u, log_pb, weight.at[5].set(-1.0)), r"weight.*: 1 weight\(s\) neg.*rows 5\)"),
        "NaN weight": ((u, log_pb, weight.at[9].set(jnp.nan)), r"weight.*: 1 weight\(s\) .*rows 9\)"),
        "empty": ((u, log_pb, jnp.zeros_like(weight)), "no event has a positive weight"),
    }
    return cases[what]


@pytest.mark.parametrize("what", ["u columns", "log_pb length", "weight length", "NaN u", "inf log_pb",
                                  "negative weight", "NaN weight", "empty"])  # fmt: skip
def test_bad_inputs_are_refused_with_the_problem_named(toy_sr, what):
    _, _, _, u, log_pb = toy_sr
    args, message = _spoiled(u[:40], log_pb[:40], jnp.ones(40), what)
    with pytest.raises(ValueError, match=message):
        fit_ranode(jax.random.key(0), *args, TINY)
    stacked = [v[None] for v in args]
    with pytest.raises(ValueError, match=message):
        fit_ranode_realisations(jax.random.key(0)[None], *stacked, TINY)
    if what not in ("u columns", "log_pb length", "weight length"):  # the batched errors name the realisation
        with pytest.raises(ValueError, match=r"\(realisation 0\)"):
            measure_ranode(jax.random.key(0)[None], *stacked, config=TINY._replace(segment_epochs=4))


def test_signal_template_learns_the_signal_and_measures_mu(toy_sr):
    """A template trained on labelled signal events: close to the exact density, mu within its interval."""
    x, label, coords, u, log_pb = toy_sr
    sig = toy.signal_sample(jax.random.key(7), 4000, region=SR)
    u_sig, _ = _to_coordinates(coords, sig)
    # about 4% of toy signal events lie beyond |u| = 8 in each tau coordinate (logits far below the
    # background's), where a tail bound of 8 leaves the flow the identity: mu_hat would be 8% low
    cfg = TINY._replace(n_seeds=2, train=TINY.train._replace(epochs=40),
                        flow=TINY.flow._replace(tail_bound=24.0))  # fmt: skip
    params = fit_signal_template(jax.random.key(8), u_sig, cfg)
    assert jax.tree.leaves(params)[0].shape[0] == 2
    # on fresh signal events the template's density is close to the exact one
    fresh = toy.signal_sample(jax.random.key(9), 4000, region=SR)
    u_fresh, log_det_fresh = _to_coordinates(coords, fresh)
    exact = toy.signal_log_prob(fresh, region=SR) - log_det_fresh
    gap = np.asarray(exact - signal_template_log_prob(cfg, params, u_fresh))
    assert abs(np.median(gap)) < 0.15 and np.quantile(np.abs(gap), 0.8) < 1.0
    res = fit_mixture(signal_template_log_prob(cfg, params, u) - log_pb)
    mu_true = float(label.mean())
    assert float(res.interval_95.lo) < mu_true < float(res.interval_95.hi)
    assert abs(float(res.mu_hat) - mu_true) < 0.05 * mu_true
    # events with zero weight are left out: 500 extra events at one point are learned only with weight 1
    point = jnp.full((500, 5), 3.0)
    padded = jnp.concatenate([u_sig, point])
    density_at_point = lambda weight: float(signal_template_log_prob(
        cfg, fit_signal_template(jax.random.key(8), padded, cfg, weight=weight), point[:1])[0])  # fmt: skip
    left_out = density_at_point(jnp.arange(len(padded)) < len(u_sig))
    assert left_out + 3.0 < density_at_point(jnp.ones(len(padded)))
    with pytest.raises(ValueError, match="NaN or inf"):
        fit_signal_template(jax.random.key(8), u_sig.at[3, 1].set(jnp.nan), cfg)
    with pytest.raises(ValueError, match=r"\(M >= 2, 5\)"):
        fit_signal_template(jax.random.key(8), u_sig[:, :4], cfg)
