"""The measurement drivers (experiments/mu_scan.py, coverage.py, ranode_diagnostics.py) and _measure."""

import importlib.util
import json
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from gbijax.data import toy
from gbijax.inference import (
    Measurements,
    PawsConfig,
    compare_to_oracle,
    fit_paws,
    measure,
    realisation_keys,
    summarize_measurements,
    toy_log_ratio,
    toy_ratio_data,
)

EXPERIMENTS = Path(__file__).parents[1] / "experiments"
TINY_TOY = "toy:n_background=12000,n_signal=0,n_extra_signal=1500,n_extra_background=2000"
TINY_RANODE = ["--epochs", "2", "--k-folds", "2", "--hidden", "8", "--n-bins", "4", "--batch-size", "128",
               "--n-bootstrap", "2"]


def _driver(name: str):
    sys.path.insert(0, str(EXPERIMENTS))
    spec = importlib.util.spec_from_file_location(f"_driver_{name}", EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(name: str, argv: list[str]) -> int:
    from gbijax.experiment import run_experiment

    module = _driver(name)
    return run_experiment(module.main, module.build_parser(), argv)


def test_summary_counts_coverage_and_false_signal():
    m = Measurements(*(np.asarray(v, np.float32) for v in (
        [0.0, 0.02, 0.05, 0.01],  # mu_hat
        [0.0, 0.01, 0.04, 0.0], [0.01, 0.03, 0.06, 0.02],  # 68%
        [0.0, 0.0, 0.03, 0.0], [0.02, 0.04, 0.07, 0.03],  # 95%
        [0.0, 4.0, 25.0, 1.0], [0.0, 2.0, 5.0, 1.0], [np.nan] * 4,
    )))  # fmt: skip
    s = summarize_measurements(m, mu_true=0.0199)
    assert s["coverage68"] == 0.5 and s["coverage95"] == 0.75
    assert s["bias"] == pytest.approx(1e-4, abs=1e-6)
    assert s["pull"]["std"] == pytest.approx(np.sqrt(3.5), rel=1e-3)  # pulls -1.99, 0.01, 3.01, -0.99
    assert s["frac_z_below_2"] == 0.5 and s["frac_95_contains_0"] == 0.75 and s["no_false_signal"] == 0.5
    assert s["mu_hat"]["median"] == pytest.approx(0.015) and "w_fit" not in s
    r = compare_to_oracle(m, m._replace(hi68=m.lo68 + 2 * (m.hi68 - m.lo68), z=2 * m.z))
    assert r["width68_ratio"] == pytest.approx(0.5) and r["z_ratio"] == pytest.approx(0.5)


def test_measure_oracle_vmaps_over_realisations_and_rejects_real_data():
    x = jax.vmap(lambda k: toy.mixture_sample(k, 400, 0.1, region=(3.3, 3.7))[0])(
        jax.random.split(jax.random.key(0), 2)
    )  # the shapes of the drivers' runs below: one compilation
    m = measure("oracle", jax.random.key(1), x)
    assert m.mu_hat.shape == (2,)
    assert np.all((np.asarray(m.lo68) <= np.asarray(m.mu_hat)) & (np.asarray(m.mu_hat) <= np.asarray(m.hi68)))
    assert np.all(np.abs(np.asarray(m.mu_hat) - 0.1) < 0.05) and np.all(np.asarray(m.z) > 5)
    with pytest.raises(ValueError, match="toy"):
        measure("oracle", jax.random.key(1), x, is_toy=False)
    with pytest.raises(ValueError, match="method"):
        measure("anode", jax.random.key(1), x)


def test_mu_scan_oracle_and_ranode_quick(tmp_path):
    # 360 background + 40 signal events (mu = 0.1), 2 realisations: every run here has these shapes
    # (all injections are padded to the largest), so each method compiles once
    common = ["--data", TINY_TOY, "--realisations", "2", "--max-sr-background", "360", "--quick"]
    out = tmp_path / "oracle"
    assert (
        _run("mu_scan", [*common, "--method", "oracle", "--injections", "0.02,0.1", "--out", str(out)]) == 0
    )
    res = json.loads((out / "results.json").read_text())
    rows = res["injections"]
    assert [r["mu_injected"] for r in rows] == [0.0, 0.02, 0.1]  # mu = 0 always added
    for key in ("mu_true", "s_over_sqrt_b", "n_signal", "mu_hat", "mu_lo68", "mu_hi68", "mu_lo95", "mu_hi95",
                "z", "coverage68", "coverage95"):  # fmt: skip
        assert key in rows[1], key
    assert set(rows[1]["mu_hat"]) >= {"median", "p16", "p84"}
    big = rows[2]
    assert big["mu_lo95"] < big["mu_true"] < big["mu_hi95"] and big["z"] > 5
    assert rows[0]["n_signal"] == 0 and "pass" in res["summary"]["no_false_signal"]
    assert (out / "mu_scan.png").stat().st_size > 0 and (out / "coverage.png").exists()

    out = tmp_path / "ranode"
    assert (
        _run(
            "mu_scan",
            [
                *common,
                "--method",
                "ranode",
                "--background-variant",
                "exact",
                "--injections",
                "0.1",
                "--out",
                str(out),
                *TINY_RANODE,
            ],
        )
        == 0
    )
    rows = json.loads((out / "results.json").read_text())["injections"]
    assert len(rows) == 2 and all(len(r["per_realisation"]["mu_hat"]) == 2 for r in rows)
    assert all(np.isfinite(r["mu_hat"]["median"]) and r["mu_lo95"] <= r["mu_hi95"] for r in rows)
    assert (out / "mu_scan.png").exists()
    assert (out / "significance.png").exists()
    # the oracle is toy-only, and it has no learned background variant
    assert _run("mu_scan", ["--method", "oracle", "--background-variant", "sideband", "--out",
                            str(tmp_path / "bad")]) == 2  # fmt: skip
    # both runs in one comparison
    cmp = tmp_path / "compare"
    assert _run("compare", ["--runs", str(tmp_path / "oracle"), str(out), "--out", str(cmp)]) == 0
    smallest = json.loads((cmp / "results.json").read_text())["smallest_injection"]
    z5 = smallest["oracle (exact likelihood)"]["z5"]
    assert z5 is not None and 0 < z5["mu"] <= 0.11 and z5["s_over_sqrt_b"] > 0
    assert {"R-ANODE (exact)"} <= set(smallest) and (cmp / "significance.png").exists()
    assert _run("compare", ["--runs", str(tmp_path / "bad"), "--out", str(tmp_path / "cmp_bad")]) == 2


def test_mu_scan_at_mu_zero_only_writes_results_without_figures(tmp_path):
    out = tmp_path / "zero"
    assert _run("mu_scan", ["--data", TINY_TOY, "--method", "oracle", "--quick", "--max-sr-background", "360",
                            "--injections", "0", "--realisations", "2", "--out", str(out)]) == 0  # fmt: skip
    res = json.loads((out / "results.json").read_text())
    assert [r["mu_injected"] for r in res["injections"]] == [0.0]
    assert "pass" in res["summary"]["no_false_signal"]
    assert not list(out.glob("*.png"))  # every figure has a log mu or S/sqrt(B) axis


def test_drivers_take_the_oracle_density_at_the_toys_own_masses(tmp_path):
    """A toy with signal at (300, 200) GeV: the oracle's exact likelihood uses those masses (with the
    default (500, 100) it would look for the signal in the wrong place and find none)."""
    moved = TINY_TOY + ",m_x=0.3,m_y=0.2"
    out = tmp_path / "scan"
    assert _run("mu_scan", ["--data", moved, "--method", "oracle", "--quick", "--max-sr-background",
                            "2000", "--injections", "0.05", "--realisations", "2",
                            "--out", str(out)]) == 0  # fmt: skip
    row = json.loads((out / "results.json").read_text())["injections"][1]
    assert row["coverage95"] == 1.0 and row["z"] > 3
    out = tmp_path / "cov"
    assert _run("coverage", ["--data", "toy:m_x=0.3,m_y=0.2", "--method", "oracle", "--mu", "0.05",
                             "--pseudo", "20", "--n-events", "2000", "--quick",
                             "--out", str(out)]) == 0  # fmt: skip
    res = json.loads((out / "results.json").read_text())
    assert res["z"] > 3 and abs(res["relative_bias"]) < 0.5  # 4 pseudo-experiments of 1,000 events (--quick)


def test_coverage_quick(tmp_path):
    out = tmp_path / "cov"
    assert _run("coverage", ["--method", "ranode", "--mu", "0.1", "--pseudo", "2", "--n-events", "400",
                             "--quick", "--out", str(out), *TINY_RANODE]) == 0  # fmt: skip
    res = json.loads((out / "results.json").read_text())
    for key in ("coverage68", "coverage95", "bias", "median_width68", "z"):
        assert key in res and key in res["oracle"], key
    assert res["pseudo"] == 2 and 0.0 <= res["coverage95"] <= 1.0
    assert res["summary"]["shape_std"]["median"] > 0 and np.isfinite(res["summary"]["pull"]["std"])
    assert {"width68_ratio", "z_ratio"} <= set(res["ratio_to_oracle"])
    assert (out / "coverage.png").exists() and (out / "measurements.npz").exists()
    assert _run("coverage", ["--data", "cathode:/nowhere", "--method", "oracle", "--mu", "0.1",
                             "--out", str(tmp_path / "bad")]) == 2  # fmt: skip


def test_measure_paws_is_the_vmapped_fit_paws_and_finds_the_masses():
    keys = jax.random.split(jax.random.key(3), 2)
    x = jax.vmap(lambda k: toy.mixture_sample(k, 3000, 0.05, region=(3.3, 3.7))[0])(keys)
    config = PawsConfig(n_starts=3, n_steps=60, grid_points=6, n_profile=7)
    m = measure("paws", jax.random.key(4), x, paws_config=config)
    assert m.m_x.shape == (2,)
    np.testing.assert_allclose(np.asarray(m.m_x), 0.5, atol=0.03)
    np.testing.assert_allclose(np.asarray(m.m_y), 0.1, atol=0.03)
    lo68, hi68, lo95, hi95 = (np.asarray(v) for v in (m.lo68, m.hi68, m.lo95, m.hi95))
    assert np.all(lo95 <= lo68) and np.all(hi68 <= hi95)
    assert np.all(np.asarray(m.q_masses_true) >= 0)
    # realisation 1 alone, with its own key, through the public fit: the same numbers
    one = fit_paws(toy_log_ratio, toy_ratio_data(x[1]), key=realisation_keys(jax.random.key(4), 2)[1],
                   config=config)  # fmt: skip
    np.testing.assert_allclose(float(m.mu_hat[1]), float(one.mu_hat), rtol=1e-4)
    np.testing.assert_allclose(float(m.m_x[1]), float(one.params.m_x), rtol=1e-4)
    np.testing.assert_allclose(float(m.hi95[1]), float(one.mu_interval_95.hi), rtol=1e-3)
    s = summarize_measurements(m, 0.05)
    assert {"m_x", "m_y", "mass_contour_coverage68", "mass_contour_coverage95"} <= set(s)
    assert "mass_contour_coverage68" not in summarize_measurements(m, 0.0)  # no signal, no true masses
    with pytest.raises(ValueError, match="toy"):
        measure("paws", jax.random.key(1), x, is_toy=False)


@pytest.mark.slow
def test_paws_drivers_quick(tmp_path):
    out = tmp_path / "scan"
    assert _run("mu_scan", ["--data", TINY_TOY, "--realisations", "2", "--max-sr-background", "360",
                            "--quick", "--method", "paws", "--paws-ratio", "exact", "--background-variant",
                            "exact", "--injections", "0.1", "--paws-global-toys", "19",
                            "--paws-closure", "20000", "--out", str(out)]) == 0  # fmt: skip
    res = json.loads((out / "results.json").read_text())
    rows = res["injections"]
    assert abs(rows[1]["m_x"]["median"] - 0.5) < 0.1 and rows[1]["z"] > 3
    # every realisation corrected by its closure test; the exact ratio has no bias to correct
    closure = rows[1]["paws_closure"]
    assert res["background"]["closure"] == {"background": 20_000, "signal": 5_000}
    assert abs(closure["mu_scale"]["median"] - 1) < 0.05 and abs(closure["m_x_offset_gev"]["median"]) < 4
    scale = np.divide(rows[1]["per_realisation"]["mu_hat"], closure["per_realisation"]["mu_hat"])
    assert np.all(np.abs(scale - 1) < 0.05) and closure["summary"]["n"] == 2
    slope = np.array([[entry["median"] for entry in row] for row in closure["mass_jacobian"]])
    np.testing.assert_allclose(slope, np.eye(2), atol=0.15)  # the exact ratio follows the injected masses
    # look-elsewhere: 19 toys of 360 events from 5 x 360 more; a clear signal beats every toy (p = 1/20)
    assert res["background"]["look_elsewhere"]["toy_sample"] == 1800
    assert rows[1]["z_global"] == pytest.approx(rows[1]["z_global_max"]) == pytest.approx(1.645, abs=1e-3)
    assert rows[0]["z_global"] < rows[0]["z"] or rows[0]["z"] == 0
    assert "smallest_mu_median_z_global_3" in res["summary"]
    out = tmp_path / "cov"
    assert _run("coverage", ["--method", "paws", "--mu", "0.1", "--pseudo", "2", "--n-events", "400",
                             "--quick", "--out", str(out), "--paws-per-point", "100"]) == 0  # fmt: skip
    res = json.loads((out / "results.json").read_text())
    assert res["paws_config"]["ratio"] == "classifier" and "mass_contour_coverage68" in res
    assert res["paws_config"]["options"]["paws_kappa_table"] == 10.0  # kappa(theta) tabulated (default)
    assert res["paws_config"]["kappa_events"] == 20_000  # --quick caps the held-out kappa background
    # the Asimov check: with the exact ratio the pseudo-true masses are the truth (400-event errors ~12 GeV)
    out = tmp_path / "asimov"
    assert _run("coverage", ["--method", "paws", "--paws-ratio", "exact", "--mu", "0.1", "--pseudo", "1",
                             "--n-events", "400", "--quick", "--paws-asimov", "20000",
                             "--out", str(out)]) == 0  # fmt: skip
    asimov = json.loads((out / "results.json").read_text())["paws_asimov"]
    assert asimov["events"] == [20_000, 5_000] and abs(asimov["mu"] - 0.1) < 0.01
    assert abs(asimov["m_x_offset_gev"]) < 4 and abs(asimov["m_y_offset_gev"]) < 2
    assert -0.01 < asimov["q_masses_true"] < 0.2
    # the closure correction reuses the measured steps (the check is not part of their config); with the
    # exact ratio it finds no bias to correct
    assert _run("coverage", ["--method", "paws", "--paws-ratio", "exact", "--mu", "0.1", "--pseudo", "1",
                             "--n-events", "400", "--quick", "--paws-closure", "20000",
                             "--out", str(out)]) == 0  # fmt: skip
    res = json.loads((out / "results.json").read_text())
    closure = res["paws_closure"]
    assert closure["events"] == [20_000, 5_000] and abs(closure["mu_scale"]["median"] - 1) < 0.05
    assert abs(closure["m_x_offset_gev"]["median"]) < 4 and abs(closure["m_y_offset_gev"]["median"]) < 2
    assert closure["summary"]["n"] == 1 and "mass_contour_coverage68" in closure
    assert all(abs(closure["interval_scale"][k]["median"] - 1) < 0.15 for k in ("mu", "m_x", "m_y"))
    scaled = res["summary"]["mu_hat"]["median"] / closure["mu_scale"]["median"]  # one pseudo-experiment
    assert closure["summary"]["mu_hat"]["median"] == pytest.approx(scaled, rel=1e-4)
    relu = ["--method", "paws", "--mu", "0.1", "--pseudo", "1", "--quick", "--paws-activation", "relu"]
    assert _run("coverage", [*relu, "--out", str(tmp_path / "relu")]) == 2  # no spline through kinks
    # an exact ratio needs no background model, and PAWS has only the toy's simulated signal
    bad = ["--method", "paws", "--paws-ratio", "exact", "--out", str(tmp_path / "bad")]
    assert _run("mu_scan", ["--data", TINY_TOY, *bad, "--background-variant", "sideband"]) == 2
    assert _run("mu_scan", ["--data", "cathode:/nowhere", *bad]) == 2


def test_mu_scan_cathode_quick(tmp_path):
    """CATHODE as a cut-and-count search: a Z per injection, no mu; compared with the oracle by Z."""
    common = ["--data", TINY_TOY, "--realisations", "2", "--max-sr-background", "360", "--quick",
              "--injections", "0.2"]  # fmt: skip
    out = tmp_path / "cathode"
    assert _run("mu_scan", [*common, "--method", "cathode", "--background-variant", "exact",
                            "--cathode-eps-b", "0.05", "--out", str(out)]) == 0  # fmt: skip
    res = json.loads((out / "results.json").read_text())
    zero, signal = res["injections"]
    assert res["cathode_config"]["eps_b"] == 0.05 and res["cathode_config"]["n_background"] == 1440
    assert signal["mu_hat"]["median"] is None and "coverage68" not in signal  # no mu is measured
    assert signal["z"] > 3 and signal["z"] > zero["z"]
    assert zero["no_false_signal"] == zero["frac_z_below_2"]
    assert (out / "significance.png").exists() and not (out / "mu_scan.png").exists()
    oracle = tmp_path / "oracle"
    assert _run("mu_scan", [*common, "--method", "oracle", "--out", str(oracle)]) == 0
    cmp = tmp_path / "compare"
    assert _run("compare", ["--runs", str(oracle), str(out), "--out", str(cmp)]) == 0
    smallest = json.loads((cmp / "results.json").read_text())["smallest_injection"]
    assert set(smallest) == {"oracle (exact likelihood)", "CATHODE (cut and count) (exact)"}
    assert (cmp / "significance.png").exists() and (cmp / "mu_scan.png").exists()
    assert _run("mu_scan", [*common, "--method", "cathode", "--cathode-eps-b", "1.5", "--background-variant",
                            "exact", "--out", str(tmp_path / "bad")]) == 2  # fmt: skip


def test_ranode_diagnostics_split_the_held_out_shape_by_the_truth(tmp_path):
    out = tmp_path / "diagnostics"
    argv = ["--data", TINY_TOY, "--realisations", "2", "--max-sr-background", "1000", "--injections", "0.1",
            "--out", str(out), *TINY_RANODE, "--n-bootstrap", "0", "--epochs", "10"]
    assert _run("ranode_diagnostics", argv) == 0
    rows = json.loads((out / "results.json").read_text())["injections"]
    assert [r["mu_injected"] for r in rows] == [0.0, 0.1]
    none, big = (r["median"] for r in rows)
    assert none["signal_median_ratio"] is None  # no signal events
    for m in (none, big):  # the exact background: the learned shape integrates to one under it
        assert abs(m["background_mean_ratio"] - 1.0) < 0.15
    assert big["spurious_mu_hat"] < 0.25 * big["mu_hat"]
    assert big["signal_median_ratio"] > 1.0 > big["background_median_ratio"]
    # the known-shape template (trained on pool events no realisation received) measures mu too;
    # its exactness is tested in test_ranode.py (this tiny flow, 10 epochs, leaves it ~20% low)
    assert none["template_mu_hat"] < 0.01 and none["template_lo95"] == 0.0
    assert 0.6 * rows[1]["mu_true"] < big["template_mu_hat"] < 1.2 * rows[1]["mu_true"]
    assert big["template_z"] > 3.0
    assert _run("ranode_diagnostics", argv) == 0  # resumed from its steps: the same numbers
    assert json.loads((out / "results.json").read_text())["injections"] == rows
    assert _run("ranode_diagnostics", [*argv, "--mode", "scan"]) == 2
    pool = np.zeros((1500, 5))
    with pytest.raises(ValueError, match="not injected: 50 left of 1500"):
        _driver("ranode_diagnostics").template_fit(None, None, None, pool, np.arange(1450), 100, None, None)
