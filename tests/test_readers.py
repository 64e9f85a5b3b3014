"""Readers: official LHCO features HDF5, CATHODE .npy, re-clustered tables; real and small written files."""

import math

import h5py
import numpy as np
import pytest

from gbijax.data import (
    BACKGROUND,
    SIGNAL,
    UNKNOWN,
    load_source,
    read_cathode,
    read_clustered,
    read_lhco_features,
    read_pandas_fixed,
    signal_region_mask,
)

LHCO_COLUMNS = [
    "pxj1", "pyj1", "pzj1", "mj1", "tau1j1", "tau2j1", "tau3j1",
    "pxj2", "pyj2", "pzj2", "mj2", "tau1j2", "tau2j2", "tau3j2", "label",
]  # fmt: skip

# Hand-chosen jets (GeV): (px, py, pz, m, tau1, tau2, tau3) per jet, then the label.
JETS = np.array([
    # back-to-back along x, jet 1 lighter
    [1000, 0, 0, 100, 0.5, 0.2, 0.1, -1000, 0, 0, 300, 0.4, 0.3, 0.2, 0],
    # jet 1 heavier and with tau1 = 0 (guarded: tau21 -> 0)
    [0, 1500, 500, 400, 0.0, 0.1, 0.05, 0, -1200, -800, 50, 0.2, 0.05, 0.01, 1],
    # a generic event near 3.5 TeV
    [1700, 300, -200, 520, 0.30, 0.06, 0.03, -1650, -280, 900, 95, 0.25, 0.10, 0.07, 1],
], dtype=np.float64)  # fmt: skip


def _mjj(j1, j2):
    """Invariant mass of two jets from (px, py, pz, m), E = sqrt(p^2 + m^2)."""
    e1 = math.sqrt(j1[0] ** 2 + j1[1] ** 2 + j1[2] ** 2 + j1[3] ** 2)
    e2 = math.sqrt(j2[0] ** 2 + j2[1] ** 2 + j2[2] ** 2 + j2[3] ** 2)
    px, py, pz = j1[0] + j2[0], j1[1] + j2[1], j1[2] + j2[2]
    return math.sqrt((e1 + e2) ** 2 - px**2 - py**2 - pz**2)


# Expected five columns in TeV, written out by hand from JETS.
EXPECTED = np.array([
    [(math.sqrt(1000**2 + 100**2) + math.sqrt(1000**2 + 300**2)) / 1000, 0.100, 0.200, 0.2 / 0.5, 0.3 / 0.4],
    [math.sqrt((math.sqrt(1500**2 + 500**2 + 400**2) + math.sqrt(1200**2 + 800**2 + 50**2)) ** 2
               - 300**2 - 300**2) / 1000, 0.050, 0.350, 0.05 / 0.2, 0.0],
    [_mjj(JETS[2, :4], JETS[2, 7:11]) / 1000, 0.095, 0.425, 0.10 / 0.25, 0.06 / 0.30],
])  # fmt: skip


def _write_lhco(writer, path, values=JETS, columns=LHCO_COLUMNS, **kwargs):
    return writer(path, "df", [(list(columns), np.asarray(values, np.float64))], **kwargs)


# ----------------------------------------------------------------------------- official features layout


def test_lhco_features_hand_computed(tmp_path, pandas_fixed_writer):
    path = _write_lhco(pandas_fixed_writer, tmp_path / "features.h5")
    events = read_lhco_features(path)
    np.testing.assert_allclose(events.features, EXPECTED, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(events.label, [0, 1, 1])
    np.testing.assert_array_equal(events.weight, [1.0, 1.0, 1.0])
    # the first event is back-to-back, so mjj = E1 + E2
    assert events.mjj[0] == pytest.approx(2.049019, abs=1e-6)


def test_lhco_features_without_pandas_attrs_and_column_order(tmp_path, pandas_fixed_writer):
    """Only nblocks is needed, and columns are found by name, not by position."""
    perm = np.random.default_rng(0).permutation(len(LHCO_COLUMNS))
    path = _write_lhco(
        pandas_fixed_writer, tmp_path / "f.h5", JETS[:, perm], [LHCO_COLUMNS[i] for i in perm],
        pandas_attrs=False,
    )
    np.testing.assert_allclose(read_lhco_features(path).features, EXPECTED, rtol=1e-12)


def test_lhco_black_box_without_label_is_unlabelled(tmp_path, pandas_fixed_writer):
    path = _write_lhco(pandas_fixed_writer, tmp_path / "bb.h5", JETS[:, :-1], LHCO_COLUMNS[:-1])
    events = read_lhco_features(path)
    np.testing.assert_array_equal(events.label, [UNKNOWN] * 3)
    np.testing.assert_allclose(events.features, EXPECTED, rtol=1e-12)


def test_lhco_missing_column_is_named(tmp_path, pandas_fixed_writer):
    keep = [i for i, c in enumerate(LHCO_COLUMNS) if c != "mj2"]
    path = _write_lhco(pandas_fixed_writer, tmp_path / "f.h5", JETS[:, keep], [LHCO_COLUMNS[i] for i in keep])
    with pytest.raises(ValueError, match=r"lacks column\(s\) mj2"):
        read_lhco_features(path)
    with pytest.raises(ValueError, match=r"lacks column\(s\) mj2"):
        read_pandas_fixed(path, "df", ["mj1", "mj2"])


@pytest.mark.parametrize("column", ["pxj1", "tau1j1", "tau2j2", "mj2"])
def test_lhco_nan_row_is_named(tmp_path, pandas_fixed_writer, column):
    values = JETS.copy()
    values[1, LHCO_COLUMNS.index(column)] = np.nan
    path = _write_lhco(pandas_fixed_writer, tmp_path / "f.h5", values)
    with pytest.raises(ValueError, match=r"rows 1\b") as err:
        read_lhco_features(path)
    assert "NaN" in str(err.value)


def test_lhco_label_must_be_0_or_1(tmp_path, pandas_fixed_writer):
    values = JETS.copy()
    values[0, -1] = 0.5
    path = _write_lhco(pandas_fixed_writer, tmp_path / "f.h5", values)
    with pytest.raises(ValueError, match="label"):
        read_lhco_features(path)


def test_non_hdf5_file_is_a_clear_error(tmp_path):
    path = tmp_path / "not.h5"
    path.write_text("mjj,mj1\n3.5,0.1\n")
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        read_pandas_fixed(path)
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        read_lhco_features(path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_lhco_features(tmp_path / "absent.h5")


def test_hdf5_that_is_not_a_pandas_table(tmp_path):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as h5:
        h5.create_group("df")["x"] = np.zeros(3)
    with pytest.raises(ValueError, match="not a pandas fixed-format table"):
        read_pandas_fixed(path)
    with pytest.raises(ValueError, match="no table 'bkg'"):
        read_pandas_fixed(path, "bkg")


def test_read_pandas_fixed_reads_every_block(tmp_path, pandas_fixed_writer):
    floats = np.arange(6.0).reshape(3, 2)
    ints = np.array([[7], [8], [9]], np.int64)
    path = pandas_fixed_writer(tmp_path / "t.h5", "tab", [(["a", "b"], floats), (["n"], ints)])
    table = read_pandas_fixed(path)
    assert list(table) == ["a", "b", "n"]
    np.testing.assert_array_equal(table["b"], [1.0, 3.0, 5.0])
    np.testing.assert_array_equal(table["n"], [7, 8, 9])
    assert table["n"].dtype == np.int64
    assert list(read_pandas_fixed(path, columns=["n", "a"])) == ["n", "a"]


# ----------------------------------------------------------------------------- re-clustered layout

CLUSTERED_FLOATS = ["mjj", "tau1_2", "tau2_2", "tau21_2", "mass_2", "tau1_1", "tau2_1", "tau21_1", "mass_1"]


def _clustered_rows(rows):
    """rows: (mjj, m1, m2, tau1_1, tau2_1, tau1_2, tau2_2) in GeV; tau21 columns hold a wrong 0.99."""
    out = []
    for mjj, m1, m2, a1, b1, a2, b2 in rows:
        out.append([mjj, a2, b2, 0.99, m2, a1, b1, 0.99, m1])
    return np.array(out, np.float64)


def _write_clustered(writer, directory, chunk, kind, index, rows):
    values = _clustered_rows(rows)
    nj = np.full((len(rows), 1), 2, np.int64)
    return writer(directory / f"scalars_{kind}{chunk:02d}.h5", kind,
                  [(CLUSTERED_FLOATS, values), (["nj"], nj)], index=index)  # fmt: skip


def test_clustered_small_files(tmp_path, pandas_fixed_writer):
    w = pandas_fixed_writer
    # chunk 1: events 0, 2, 3 background, 1, 4 signal; chunk 2: event 0 signal, 1 background
    _write_clustered(w, tmp_path, 1, "bkg", [0, 2, 3], [
        (3000, 100, 200, 0.5, 0.25, 0.4, 0.1),
        (3500, 300, 150, 0.2, 0.1, 0.8, 0.6),   # jet 1 heavier
        (2500, 80, 90, 0.0, 0.1, 0.3, 0.15),    # tau1 = 0 on the lighter jet
    ])  # fmt: skip
    _write_clustered(w, tmp_path, 1, "sig", [1, 4], [
        (3600, 500, 100, 0.4, 0.1, 0.5, 0.2),
        (4000, 90, 510, 0.3, 0.3, 0.6, 0.12),
    ])  # fmt: skip
    _write_clustered(w, tmp_path, 2, "sig", [0], [(3450, 120, 480, 0.2, 0.05, 0.4, 0.2)])
    _write_clustered(w, tmp_path, 2, "bkg", [1], [(5000, 60, 40, 0.5, 0.45, 0.5, 0.2)])
    (tmp_path / "README.txt").write_text("ignored")
    events = read_clustered(tmp_path)
    expected = np.array([
        [3.0, 0.1, 0.1, 0.25 / 0.5, 0.1 / 0.4],     # chunk 1 event 0 (bkg)
        [3.6, 0.1, 0.4, 0.2 / 0.5, 0.1 / 0.4],      # chunk 1 event 1 (sig): jet 2 lighter
        [3.5, 0.15, 0.15, 0.6 / 0.8, 0.1 / 0.2],    # chunk 1 event 2 (bkg): jet 2 lighter
        [2.5, 0.08, 0.01, 0.0, 0.15 / 0.3],         # chunk 1 event 3 (bkg): tau1 = 0 -> 0
        [4.0, 0.09, 0.42, 0.3 / 0.3, 0.12 / 0.6],   # chunk 1 event 4 (sig)
        [3.45, 0.12, 0.36, 0.05 / 0.2, 0.2 / 0.4],  # chunk 2 event 0 (sig)
        [5.0, 0.04, 0.02, 0.2 / 0.5, 0.45 / 0.5],   # chunk 2 event 1 (bkg)
    ])  # fmt: skip
    np.testing.assert_allclose(events.features, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(events.label, [BACKGROUND, SIGNAL, BACKGROUND, BACKGROUND, SIGNAL, SIGNAL,
                                                 BACKGROUND])  # fmt: skip
    assert not np.isin(events.features[:, 3:], 0.99).any()  # the file's tau21 (tau3/tau2) is not used


def test_clustered_errors(tmp_path, pandas_fixed_writer):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        read_clustered(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="scalars_bkgNN.h5"):
        read_clustered(tmp_path)
    path = _write_clustered(pandas_fixed_writer, tmp_path, 1, "bkg", [0, 1], [
        (3000, 100, 200, 0.5, 0.25, 0.4, 0.1), (3100, 100, 200, 0.5, 0.25, 0.4, 0.1)])  # fmt: skip
    with h5py.File(path, "a") as h5:
        h5["bkg/block0_values"][1, CLUSTERED_FLOATS.index("tau1_1")] = np.nan
    with pytest.raises(ValueError, match=r"tau1_1.*rows 1\b"):
        read_clustered(tmp_path)


# ----------------------------------------------------------------------------- CATHODE layout


def _cathode_rows(rng, n, label):
    x = np.column_stack([
        rng.uniform(3.3, 3.7, n), rng.uniform(0.05, 0.5, n), rng.uniform(0.0, 0.5, n),
        rng.uniform(0, 1, n), rng.uniform(0, 1, n),
    ])  # fmt: skip
    lab = np.full(n, label, np.float64) if np.isscalar(label) else np.asarray(label, np.float64)
    return np.column_stack([x, lab])


def _write_cathode(directory, rng):
    (directory / "separated_data").mkdir(parents=True)
    files = {
        "separated_data/innerdata_train.npy": _cathode_rows(rng, 7, [0, 1, 0, 0, 0, 0, 1]),
        "innerdata_test.npy": _cathode_rows(rng, 5, [0, 0, 1, 0, 0]),
        "innerdata_extrasig.npy": _cathode_rows(rng, 4, 1),
        "separated_data/innerdata_test.npy": _cathode_rows(rng, 6, [1, 0, 0, 1, 0, 1]),
        "separated_data/innerdata_val.npy": _cathode_rows(rng, 3, 0),  # a copy in the real data: not read
    }
    for name, arr in files.items():
        np.save(directory / name, arr)
    return files


def test_cathode_small_directory(tmp_path):
    files = _write_cathode(tmp_path, np.random.default_rng(1))
    samples = read_cathode(tmp_path)
    assert set(samples) == {"data", "extra_signal", "extra_background"}
    data = np.concatenate([files["separated_data/innerdata_train.npy"], files["innerdata_test.npy"]])
    np.testing.assert_array_equal(samples["data"].features, data[:, :5])
    np.testing.assert_array_equal(samples["data"].label, [0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(samples["extra_signal"].features, files["innerdata_extrasig.npy"][:, :5])
    np.testing.assert_array_equal(samples["extra_signal"].label, [1, 1, 1, 1])
    extra_bkg = files["separated_data/innerdata_test.npy"]
    np.testing.assert_array_equal(samples["extra_background"].features, extra_bkg[[1, 2, 4], :5])
    np.testing.assert_array_equal(samples["extra_background"].label, [0, 0, 0])


def test_cathode_optional_files_and_top_level_train(tmp_path):
    rng = np.random.default_rng(2)
    np.save(tmp_path / "innerdata_train.npy", _cathode_rows(rng, 3, 0))
    np.save(tmp_path / "innerdata_test.npy", _cathode_rows(rng, 2, 1))
    samples = read_cathode(tmp_path)
    assert list(samples) == ["data"]
    np.testing.assert_array_equal(samples["data"].label, [0, 0, 0, 1, 1])


def test_cathode_errors(tmp_path):
    rng = np.random.default_rng(3)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        read_cathode(tmp_path / "absent")
    np.save(tmp_path / "innerdata_train.npy", _cathode_rows(rng, 3, 0))
    with pytest.raises(FileNotFoundError, match="innerdata_test.npy"):
        read_cathode(tmp_path)
    np.save(tmp_path / "innerdata_test.npy", _cathode_rows(rng, 3, 0)[:, :5])
    with pytest.raises(ValueError, match=r"\(N, 6\).*got shape \(3, 5\)"):
        read_cathode(tmp_path)
    np.save(tmp_path / "innerdata_test.npy", _cathode_rows(rng, 3, [0, 2, 1]))
    with pytest.raises(ValueError, match="label column .* must be 0 or 1"):
        read_cathode(tmp_path)
    bad = _cathode_rows(rng, 3, 0)
    bad[2, 1] = np.inf
    np.save(tmp_path / "innerdata_test.npy", bad)
    with pytest.raises(ValueError, match=r"mj_min; rows 5\b"):
        read_cathode(tmp_path)


# ----------------------------------------------------------------------------- the real files


@pytest.fixture(scope="module")
def real_cathode(lhco_path):
    return read_cathode(lhco_path("cathode"))


@pytest.fixture(scope="module")
def real_clustered(lhco_path):
    return read_clustered(lhco_path("clustering_lhco/scalars"))


@pytest.mark.realdata
def test_real_cathode_counts(real_cathode):
    assert set(real_cathode) == {"data", "extra_signal", "extra_background"}
    data = real_cathode["data"]
    assert data.n == 122_124
    assert int((data.label == SIGNAL).sum()) == 772
    assert int((data.label == BACKGROUND).sum()) == 121_352
    assert real_cathode["extra_signal"].n == 74_527
    assert (real_cathode["extra_signal"].label == SIGNAL).all()
    assert real_cathode["extra_background"].n == 40_000
    assert (real_cathode["extra_background"].label == BACKGROUND).all()
    for events in real_cathode.values():
        assert signal_region_mask(events.mjj).all()  # the CATHODE files hold the SR only
        assert events.features.dtype == np.float64
        assert (events.features[:, 1] > -1e-6).all()  # a few official jet masses are -2e-8 (rounding)
        assert (events.features[:, 2] >= 0).all()
        assert ((events.features[:, 3:] >= 0) & (events.features[:, 3:] < 1)).all()


@pytest.mark.realdata
def test_real_cathode_via_load_source(lhco_path):
    dataset = load_source(f"cathode:{lhco_path('cathode')}")
    assert dataset.data.n == 122_124
    assert dataset.sample("extra_signal").n == 74_527
    with pytest.raises(ValueError, match="has no 'nope' sample"):
        dataset.sample("nope")


@pytest.mark.realdata
def test_real_clustered_counts(real_clustered):
    events = real_clustered
    assert events.n == 100_000
    assert int((events.label == SIGNAL).sum()) == 9_059
    in_sr = np.asarray(signal_region_mask(events.mjj))
    assert int(in_sr.sum()) == 19_789
    assert int((in_sr & (events.label == SIGNAL)).sum()) == 6_908
    assert 1.5 < events.mjj.min() < 1.6 and 8.5 < events.mjj.max() < 8.6
    assert (events.features[:, 2] >= 0).all()
    assert (events.features[:, 3:] >= 0).all()


@pytest.mark.realdata
def test_real_clustered_first_chunk_matches_h5py(real_clustered, lhco_path):
    """Events come in raw-file order, masses sorted, tau21 = tau2 / tau1 (not the file's tau21)."""
    directory = lhco_path("clustering_lhco/scalars")
    rows = {}
    for kind in ("bkg", "sig"):
        with h5py.File(directory / f"scalars_{kind}01.h5", "r") as h5:
            names = [n.decode() for n in h5[kind]["block0_items"][()]]
            values = h5[kind]["block0_values"][()]
            for event, row in zip(h5[kind]["axis1"][()], values, strict=True):
                rows[int(event)] = (dict(zip(names, row, strict=True)), kind)
    for event in range(50):
        col, kind = rows[event]
        jets = sorted(tuple(col[f"{q}_{j}"] for q in ("mass", "tau1", "tau2")) for j in (1, 2))
        t21 = [t2 / t1 if t1 > 0 else 0.0 for _, t1, t2 in jets]
        expected = [col["mjj"] / 1e3, jets[0][0] / 1e3, (jets[1][0] - jets[0][0]) / 1e3, *t21]
        np.testing.assert_allclose(real_clustered.features[event], expected, rtol=1e-12)
        assert real_clustered.label[event] == (SIGNAL if kind == "sig" else BACKGROUND)
        assert col["tau21_1"] == pytest.approx(col["tau3_1"] / col["tau2_1"], rel=1e-4, abs=1e-6)


@pytest.mark.realdata
def test_real_particle_level_file(lhco_path):
    """The organisers' particle-level sample: 2101 integer-labelled columns, blosc-compressed."""
    path = lhco_path("lhco2020_parsingscripts/events_anomalydetection_tiny.h5")
    try:
        import hdf5plugin  # noqa: F401  (registers the blosc filter with h5py)
    except ImportError:
        with pytest.raises(ValueError, match="filter that h5py lacks.*hdf5plugin"):
            read_pandas_fixed(path)
    else:
        table = read_pandas_fixed(path)
        assert len(table) == 2101
        assert all(len(column) == 1000 for column in table.values())
        assert int(table["2100"].sum()) == 93  # the label column: 907 QCD + 93 signal
    with pytest.raises(ValueError, match="not an LHCO high-level features file.*clustered into jets"):
        read_lhco_features(path)
    with pytest.raises(ValueError, match="not an LHCO high-level features file"):
        load_source(f"lhco:{path}")
