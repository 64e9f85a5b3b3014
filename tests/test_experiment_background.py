"""The background-generator driver (experiments/background.py) end to end on a tiny toy, and the
classifier two-sample test it uses."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import jax
import numpy as np
import pytest

from gbijax.classifiers import TWO_SAMPLE, mann_whitney_auc, two_sample_auc
from gbijax.train import TrainConfig

DRIVER = Path(__file__).resolve().parents[1] / "experiments" / "background.py"
TINY_TOY = "toy:n_background=30000,n_signal=0,n_extra_signal=1000,n_extra_background=5000"


def _driver():
    spec = importlib.util.spec_from_file_location("experiments_background", DRIVER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mann_whitney_auc_counts_pairs_and_ties():
    auc, err = mann_whitney_auc([3.0, 2.0, 1.0], [2.0, 0.0])  # pairs: 1 + 1 + 0.5 + 1 + 1 + 0 of 6
    assert auc == pytest.approx(4.5 / 6)
    assert 0 < err < 0.5


def test_two_sample_auc_same_vs_shifted_gaussians():
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    a = np.asarray(jax.random.normal(k1, (3000, 2)))
    b = np.asarray(jax.random.normal(k2, (3000, 2)))
    train = TrainConfig(epochs=30, batch_size=128, learning_rate=3e-3)
    config = TWO_SAMPLE._replace(hidden=(16,), train=train)
    same = two_sample_auc(k3, a, b, config)
    shifted = two_sample_auc(k3, a + np.array([0.5, 0.0]), b, config)
    assert same.n_test == (1500, 1500) and same.n_train == (1500, 1500)
    null_error = math.sqrt((3000 + 1) / (12 * 1500 * 1500))
    assert abs(same.auc - 0.5) < 4 * null_error
    # optimal AUC for a 0.5 sigma shift is Phi(0.5 / sqrt 2) = 0.638
    assert 0.6 < shifted.auc < 0.68


def test_background_driver_quick_run(tmp_path):
    out = tmp_path / "bkg"
    driver = _driver()
    argv = ["--data", TINY_TOY, "--quick", "--epochs", "1", "--out", str(out), "--seed", "3"]
    assert driver.run_experiment(driver.main, driver.parser(), argv) == 0

    for name in ("config.json", "results.json", "sr_marginals.png", "sr_marginals_given_m.png",
                 "training_curves.png"):  # fmt: skip
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["generator"]["train"]["epochs"] == 1 and config["model"] == "flow_matching"
    r = json.loads((out / "results.json").read_text())
    assert r["variant"] == "sideband" and r["mass_density"] == "sideband_fit"
    assert r["epochs_run"] == [1] and r["train_seconds"] > 0
    for key in ("two_sample_auc", "two_sample_auc_given_m"):
        assert 0.45 < r[key] < 0.9 and 0 < r[key + "_error"] < 0.05
    assert r["n_eval"] == r["n_two_sample"] == r["n_sr_background"] > 1000
    assert np.isfinite(r["sr_nll_per_event"]) and r["sr_nll_per_event_error"] > 0
    # one epoch on 27k events: a poor but sane model; the truth is better than the model
    assert 0 < r["kl_to_truth"] < 2 and r["kl_to_truth_error"] > 0
    assert r["sr_nll_per_event"] == pytest.approx(r["sr_nll_per_event_truth"] + r["kl_to_truth"], abs=1e-4)
    assert isinstance(r["n_out_of_range"], int) and 0 <= r["n_out_of_range"] < 10
