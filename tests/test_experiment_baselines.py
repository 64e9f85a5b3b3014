"""The anomaly-detection baselines driver (experiments/baselines.py) and the core helpers it added.

The driver runs in ``--quick`` mode on a tiny toy (two trained methods, a few seconds of training
each; most of the time is compilation); the refusals run on a tiny CATHODE-format directory.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gbijax import classifiers as clf
from gbijax import metrics
from gbijax.data import toy

ROOT = Path(__file__).resolve().parents[1]
# sizes share the toy samplers' power-of-two buckets (1024 signal, 4096 extra/test background)
TINY_TOY = "toy:n_background=30000,n_signal=0,n_extra_signal=1000,n_extra_background=4000"


@pytest.fixture(scope="module")
def driver():
    spec = importlib.util.spec_from_file_location("baselines_driver", ROOT / "experiments" / "baselines.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_cathode_dir(directory: Path, extra_background: bool) -> Path:
    """A tiny CATHODE-format SR-only directory: data files, extra signal, optional extra QCD."""
    rng = np.random.default_rng(0)

    def events(n, label):
        x = np.column_stack(
            [rng.uniform(3.31, 3.69, n), rng.uniform(0.05, 0.5, (n, 2)), rng.uniform(0.1, 0.9, (n, 2))]
        )
        return np.column_stack([x, np.full(n, float(label))])

    (directory / "separated_data").mkdir(parents=True)
    np.save(
        directory / "separated_data" / "innerdata_train.npy", np.concatenate([events(300, 0), events(5, 1)])
    )
    np.save(directory / "innerdata_test.npy", events(300, 0))
    np.save(directory / "innerdata_extrasig.npy", events(300, 1))
    if extra_background:
        np.save(directory / "separated_data" / "innerdata_test.npy", events(300, 0))
    return directory


def test_quick_run_writes_every_metric_with_bands_and_resumes(driver, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--data", TINY_TOY, "--methods", "supervised,idealised", "--quick", "--mu", "0.05",
            "--test-background", "4000", "--out", str(out)]  # fmt: skip
    assert driver.cli(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["methods"]) == {"supervised", "idealized"}
    for method, r in results["methods"].items():
        for key in ("max_sic", "sic_at_1e-3", "auc"):
            q = r[key]
            assert set(q) == {"median", "p16", "p84"}, (method, key)
            assert q["p16"] <= q["median"] <= q["p84"]
            assert set(r["data"][key]) == set(r["single_runs"][key]) == {"median", "p16", "p84"}
        assert 0.6 < r["auc"]["median"] <= 1.0, method
        assert 0.0 < r["fraction_of_optimal_features"]["median"] < 1.5
    # the toy's optimal classifiers, with and without mjj, on the same held-out events
    for name in ("optimal", "optimal_features"):
        assert results["optimal"][name]["auc"] > max(r["auc"]["median"] for r in results["methods"].values())
    ev = results["evaluation"]
    assert ev["primary"] == "heldout" and "4000 independent SR background" in ev["heldout"]["background"]
    assert results["injection"]["n_signal"] > 0 and results["injection"]["realisations"] == 1
    assert len(results["curves"]["eps_s"]) == len(results["curves"]["supervised"]["sic_median"])
    for figure in ("sic.png", "roc.png", "sic_data.png"):
        assert (out / figure).stat().st_size > 1000
    assert json.loads((out / "config.json").read_text())["methods"] == "supervised,idealised"

    # a second run restores every trained step and gives the same numbers
    capsys.readouterr()
    assert driver.cli(argv) == 0
    assert capsys.readouterr().out.count("restored from") == 2
    again = json.loads((out / "results.json").read_text())
    assert again["methods"] == results["methods"]


def test_sideband_methods_are_refused_on_signal_region_only_data(driver, tmp_path, capsys):
    data = _write_cathode_dir(tmp_path / "sr_only", extra_background=False)
    out = tmp_path / "refused"
    assert driver.cli(["--data", f"cathode:{data}", "--methods", "supervised,cwola,cathode", "--quick",
                       "--out", str(out)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "method 'cwola' refused" in err and "method 'cathode' refused" in err
    assert "sideband data" in err and "signal-region events only" in err
    assert "'supervised' refused" not in err
    assert not (out / "results.json").exists()

    # idealised AD needs the independent SR background sample (the extra-QCD file)
    assert (
        driver.cli(["--data", f"cathode:{data}", "--methods", "idealized", "--quick", "--out", str(out)]) == 2
    )
    assert "independent sample of true SR background" in capsys.readouterr().err


def test_method_names(driver):
    assert driver.parse_methods("Supervised, idealised,cwola,supervised") == [
        "supervised",
        "idealized",
        "cwola",
    ]
    with pytest.raises(ValueError, match="unknown method 'anode'"):
        driver.parse_methods("supervised,anode")
    with pytest.raises(ValueError, match="no method"):
        driver.parse_methods(" , ")


def test_kfold_run_scores_match_kfold_predict():
    cfg = clf.ClassifierConfig(hidden=(8,), n_runs=3, k_folds=2)
    x = jax.random.normal(jax.random.key(0), (50, 4))
    # untrained, distinct networks of (2 folds, 3 runs): enough to check the bookkeeping
    one = jax.jit(lambda k: clf.init_classifier(k, x, jnp.ones(50), cfg))(jax.random.key(1))
    shifts = np.arange(6, dtype=np.float32).reshape(2, 3, 1)
    params = jax.tree.map(
        lambda a: np.asarray(a)[None, None] + 0.1 * shifts.reshape(2, 3, *[1] * a.ndim), one
    )
    folds = jax.random.randint(jax.random.key(2), (50,), 0, 2)
    scores, runs = clf.kfold_run_scores(params, x, folds, cfg, chunk=16)  # 4 padded chunks
    np.testing.assert_allclose(scores, clf.kfold_predict(params, x, folds, cfg), rtol=1e-5, atol=1e-5)
    in_fold_1 = np.asarray(folds) == 1  # event i, run r: the logit of model (folds[i], r)
    fold_1 = clf.ensemble_logits(jax.tree.map(lambda a: a[1], params), x, cfg)
    np.testing.assert_allclose(runs[:, in_fold_1], fold_1[:, in_fold_1], rtol=1e-5, atol=1e-6)


def test_toy_optimal_feature_scores_marginalise_the_mass():
    """score = log p_S(x) - log int p_B(m) p_B(x | m) dm: Gauss-Legendre against a fine midpoint rule."""
    x = toy.background_sample(jax.random.key(0), 3, region=(3.3, 3.7))
    m = jnp.linspace(3.3, 3.7, 2001)
    m = 0.5 * (m[1:] + m[:-1])

    @jax.jit
    def log_pb(xi):
        integrand = toy.background_mjj_log_prob(m, (3.3, 3.7)) + toy.background_features_log_prob(
            jnp.broadcast_to(xi, (len(m), 4)), m
        )
        return jax.scipy.special.logsumexp(integrand) + jnp.log(0.4 / len(m))

    expected = toy._signal_features_log_prob(x[:, 1:], toy.DEFAULT_SIGNAL) - jax.vmap(log_pb)(x[:, 1:])
    np.testing.assert_allclose(metrics.toy_optimal_feature_scores(x), expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(
        metrics.toy_optimal_feature_scores(x[:, 1:]), metrics.toy_optimal_feature_scores(x)
    )
