"""Readers for the LHCO R&D files: official features HDF5, CATHODE .npy, re-clustered tables.

All readers return :class:`~gbijax.data.Events` in TeV with the five standard columns.
Bad files fail with a ``ValueError`` (or ``FileNotFoundError``) that names the problem.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np

from gbijax.data._events import BACKGROUND, SIGNAL, UNKNOWN, Events, check_finite, make_events

LHCO_FEATURE_COLUMNS = (
    "pxj1", "pyj1", "pzj1", "mj1", "tau1j1", "tau2j1", "tau3j1",
    "pxj2", "pyj2", "pzj2", "mj2", "tau1j2", "tau2j2", "tau3j2",
)  # fmt: skip
GEV_PER_TEV = 1000.0


def _decode(items) -> list[str]:
    return [i.decode() if isinstance(i, bytes) else str(i) for i in np.asarray(items).tolist()]


def _read_dataset(group, name: str, path) -> np.ndarray:
    try:
        return group[name][()]
    except OSError as err:
        raise ValueError(
            f"{path}: cannot read {group.name}/{name} ({err}); the file may be compressed "
            "with a filter that h5py lacks (e.g. blosc: install hdf5plugin and import it)"
        ) from None


def read_pandas_fixed(path, key: str | None = None, columns=None) -> dict[str, np.ndarray]:
    """Read a pandas "fixed"-format HDF5 table with h5py (no pandas needed).

    Args:
        path: the HDF5 file.
        key: the table's group (``"df"``, ``"bkg"``, ...); ``None`` means the only group.
        columns: names to read; ``None`` reads all. Missing names raise.

    Returns:
        ``{column name: (N,) array}`` in the order of ``columns`` (block by block by default).

    Raises:
        ValueError: not HDF5, no such table, not a pandas table, missing columns, or data
            compressed with a filter h5py lacks (the organisers' files use blosc).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        h5 = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path} is not a readable HDF5 file ({err})") from None
    with h5:
        groups = [k for k in h5 if isinstance(h5[k], h5py.Group)]
        if key is None:
            if len(groups) != 1:
                raise ValueError(f"{path}: expected one table, found groups {groups}; name one")
            key = groups[0]
        if key not in h5:
            raise ValueError(f"{path}: no table {key!r} (groups: {groups})")
        group = h5[key]
        nblocks = int(group.attrs.get("nblocks", 0))
        if nblocks == 0 or "block0_items" not in group:
            raise ValueError(f"{path}:{key} is not a pandas fixed-format table")
        axis0 = group.get("axis0")
        if columns is not None and axis0 is not None and axis0.dtype.kind in "iu":
            raise ValueError(
                f"{path}:{key} has {axis0.shape[0]} unnamed (integer-labelled) columns, not "
                f"the named columns {', '.join(columns)}"
            )
        where = {}
        for b in range(nblocks):
            for j, name in enumerate(_decode(_read_dataset(group, f"block{b}_items", path))):
                where[name] = (b, j)
        wanted = list(where) if columns is None else list(columns)
        missing = [c for c in wanted if c not in where]
        if missing:
            found = list(where)
            preview = ", ".join(found[:8]) + (", ..." if len(found) > 8 else "")
            raise ValueError(
                f"{path}:{key} lacks column(s) {', '.join(missing)} "
                f"(it has {len(found)} columns: {preview})"
            )
        out = {}
        for b in sorted({where[c][0] for c in wanted}):
            values = _read_dataset(group, f"block{b}_values", path)
            for c in wanted:
                if where[c][0] == b:
                    out[c] = values[:, where[c][1]]
        return {c: out[c] for c in wanted}


def _check_columns(cols: dict[str, np.ndarray], name: str) -> None:
    """Raise a ValueError naming the raw columns and rows that hold NaN or inf."""
    names = list(cols)
    check_finite(np.stack([np.asarray(cols[c], np.float64) for c in names], 1), name=name, columns=names)


def _labels(values, name: str) -> np.ndarray:
    """Truth labels stored as numbers: they must be exactly 0 or 1."""
    values = np.asarray(values)
    if not np.isin(values, (0, 1)).all():
        bad = np.flatnonzero(~np.isin(values, (0, 1)))
        raise ValueError(
            f"{name}: label column must be 0 (background) or 1 (signal); rows "
            f"{', '.join(map(str, bad[:10]))}{', ...' if bad.size > 10 else ''} hold {values[bad[0]]!r}, ..."
        )
    return values.astype(np.int32)


def tau21(tau1, tau2):
    """``tau2 / tau1``, defined as 0 where ``tau1 == 0`` (degenerate jets); NaN stays NaN.

    >>> tau21(np.array([0.5, 0.0]), np.array([0.2, 0.1])).tolist()
    [0.4, 0.0]
    """
    tau1 = np.asarray(tau1, np.float64)
    zero = tau1 == 0
    return np.where(zero, 0.0, np.asarray(tau2, np.float64) / np.where(zero, 1.0, tau1))


def dijet_features(mjj, m1, m2, tau21_1, tau21_2) -> np.ndarray:
    """The five standard columns from per-jet quantities, jets ordered by mass (TeV in)."""
    light_first = m1 <= m2
    mj_min = np.where(light_first, m1, m2)
    mj_max = np.where(light_first, m2, m1)
    t_min = np.where(light_first, tau21_1, tau21_2)
    t_max = np.where(light_first, tau21_2, tau21_1)
    return np.stack([mjj, mj_min, mj_max - mj_min, t_min, t_max], axis=1)


def read_lhco_features(path) -> Events:
    """Read the official LHCO features HDF5 (``events_anomalydetection_v2.features.h5`` layout).

    ``mjj`` is built from the two jets' four-vectors (``E = sqrt(p^2 + m^2)``); the jets are
    ordered by mass; ``tau21 = tau2 / tau1`` with ``tau1 = 0`` mapped to 0. GeV become TeV.
    A ``label`` column is used when present (black-box files have none: labels are -1).
    """
    try:
        cols = read_pandas_fixed(path, "df", LHCO_FEATURE_COLUMNS)
    except ValueError as err:
        raise ValueError(
            f"not an LHCO high-level features file: {err}. The lhco: source expects the "
            "official features HDF5 (columns pxj1 ... tau3j2 label); particle-level files such as "
            "events_anomalydetection*.h5 must be clustered into jets first"
        ) from None
    try:
        label = read_pandas_fixed(path, "df", ["label"])["label"]
    except ValueError:
        label = None
    _check_columns(cols if label is None else {**cols, "label": label}, str(path))
    label = np.full(len(cols["mj1"]), UNKNOWN, np.int32) if label is None else _labels(label, str(path))
    p = {j: np.stack([cols[f"px{j}"], cols[f"py{j}"], cols[f"pz{j}"]], 1) for j in ("j1", "j2")}
    energy = {j: np.sqrt((p[j] ** 2).sum(1) + cols[f"m{j}"] ** 2) for j in p}
    p_sum = p["j1"] + p["j2"]
    mjj2 = (energy["j1"] + energy["j2"]) ** 2 - (p_sum**2).sum(1)
    mjj = np.sqrt(np.clip(mjj2, 0.0, None))
    features = dijet_features(
        mjj / GEV_PER_TEV,
        cols["mj1"] / GEV_PER_TEV,
        cols["mj2"] / GEV_PER_TEV,
        tau21(cols["tau1j1"], cols["tau2j1"]),
        tau21(cols["tau1j2"], cols["tau2j2"]),
    )
    return make_events(features, label, name=str(path))


CATHODE_FILES = {
    "train": "separated_data/innerdata_train.npy",
    "test": "innerdata_test.npy",
    "extrasig": "innerdata_extrasig.npy",
    "extrabkg": "separated_data/innerdata_test.npy",
}


def _read_cathode_npy(path: Path) -> tuple[np.ndarray, np.ndarray]:
    arr = np.load(path)
    if arr.ndim != 2 or arr.shape[1] != 6:
        raise ValueError(
            f"{path}: expected CATHODE layout (N, 6) = [mjj, mj_min, delta_mj, tau21_min, "
            f"tau21_max, label], got shape {arr.shape}"
        )
    label = arr[:, 5]
    if not np.isin(label, (0.0, 1.0)).all():
        raise ValueError(f"{path}: label column (6th) must be 0 or 1")
    return arr[:, :5], label.astype(np.int32)


def read_cathode(directory) -> dict[str, Events]:
    """Read CATHODE-format signal-region ``.npy`` files from a directory.

    Returns:
        ``{"data": the complete SR data (innerdata_train + innerdata_test, the validation file
        being a copy of the first 60,000 test rows, so it is not read), "extra_signal": all
        other signal events in the SR, "extra_background": the independent extra-QCD SR
        events}``; the two extra samples are present only when their files are.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"cathode: no such directory: {directory}")
    paths = {k: directory / v for k, v in CATHODE_FILES.items()}
    if not paths["train"].is_file():
        paths["train"] = directory / "innerdata_train.npy"
    missing = [str(paths[k]) for k in ("train", "test") if not paths[k].is_file()]
    if missing:
        raise FileNotFoundError(
            f"cathode:{directory} lacks {', '.join(missing)} (expected innerdata_train.npy "
            "(top level or separated_data/) and innerdata_test.npy)"
        )
    train, test = _read_cathode_npy(paths["train"]), _read_cathode_npy(paths["test"])
    samples = {
        "data": make_events(
            np.concatenate([train[0], test[0]]), np.concatenate([train[1], test[1]]),
            name=f"cathode:{directory} data",
        )
    }
    if paths["extrasig"].is_file():
        x, y = _read_cathode_npy(paths["extrasig"])
        samples["extra_signal"] = make_events(x, y, name="cathode extra signal")
    if paths["extrabkg"].is_file():
        x, y = _read_cathode_npy(paths["extrabkg"])
        bkg = y == BACKGROUND
        samples["extra_background"] = make_events(x[bkg], y[bkg], name="cathode extra background")
    return samples


CLUSTERED_COLUMNS = ("mjj", "mass_1", "mass_2", "tau1_1", "tau2_1", "tau1_2", "tau2_2")


def read_clustered(directory) -> Events:
    """Read the re-clustered LHCO tables ``scalars_{bkg,sig}NN.h5`` (GeV) from a directory.

    The files' own ``tau21_*`` columns hold tau3/tau2, so tau21 is recomputed from
    ``tau1_*`` and ``tau2_*``. Events are returned in raw-file order (chunk, event number).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"clustered: no such directory: {directory}")
    pattern = re.compile(r"scalars_(bkg|sig)(\d+)\.h5$")
    files = sorted(
        (int(m[2]), m[1], p) for p in directory.iterdir() if (m := pattern.match(p.name))
    )
    if not files:
        raise FileNotFoundError(f"clustered:{directory} holds no scalars_bkgNN.h5 / scalars_sigNN.h5")
    feats, labels, order = [], [], []
    for chunk, kind, path in files:
        cols = read_pandas_fixed(path, kind, CLUSTERED_COLUMNS)
        _check_columns(cols, f"{path}:{kind}")
        with h5py.File(path, "r") as h5:
            index = h5[kind]["axis1"][()]
        feats.append(dijet_features(
            cols["mjj"] / GEV_PER_TEV,
            cols["mass_1"] / GEV_PER_TEV,
            cols["mass_2"] / GEV_PER_TEV,
            tau21(cols["tau1_1"], cols["tau2_1"]),
            tau21(cols["tau1_2"], cols["tau2_2"]),
        ))
        labels.append(np.full(len(index), SIGNAL if kind == "sig" else BACKGROUND, np.int32))
        order.append(np.stack([np.full(len(index), chunk), index], 1))
    order = np.concatenate(order)
    perm = np.lexsort((order[:, 1], order[:, 0]))
    return make_events(
        np.concatenate(feats)[perm], np.concatenate(labels)[perm], name=f"clustered:{directory}"
    )


LHCO_PARAMETRIC_MASS_COLUMNS = ("mx", "my")


def read_lhco_parametric_signal(path, key: str | None = None) -> tuple[Events, np.ndarray]:
    """Read the official LHCO parametric-signal HDF5 (``events_anomalydetection_Z_XY_qq_parametric.h5``).

    The file is a pandas "fixed"-format table (its only group unless ``key`` names one) with the
    jet columns of the features file (``pxj1 ... tau3j2``, GeV) plus the signal masses ``mx`` and
    ``my`` (GeV) each event was simulated at. The five standard columns are built as in
    :func:`read_lhco_features` (``mjj`` from the four-vectors, jets ordered by mass,
    ``tau21 = tau2 / tau1`` with ``tau1 = 0`` mapped to 0); every event is labelled signal.

    Returns:
        ``(events, masses)``: :class:`~gbijax.data.Events` in TeV and ``(N, 2)`` ``(m_x, m_y)``
        in TeV, row for row (select a mass point with ``np.all(masses == (0.5, 0.1), axis=1)``).

    Raises:
        ValueError: not a pandas table, or missing jet or mass columns (named), or NaN/inf values.
    """
    try:
        cols = read_pandas_fixed(path, key, LHCO_FEATURE_COLUMNS + LHCO_PARAMETRIC_MASS_COLUMNS)
    except ValueError as err:
        raise ValueError(
            f"not an LHCO parametric signal file: {err}. Expected the layout of "
            "events_anomalydetection_Z_XY_qq_parametric.h5 (columns pxj1 ... tau3j2, mx, my in GeV)"
        ) from None
    _check_columns(cols, str(path))
    features = _features_from_jets(cols)
    masses = np.stack([cols["mx"], cols["my"]], 1).astype(np.float64) / GEV_PER_TEV
    return make_events(features, np.full(len(features), SIGNAL, np.int32), name=str(path)), masses


def _features_from_jets(cols: dict[str, np.ndarray]) -> np.ndarray:
    """The five standard columns (TeV) from the LHCO jet columns (GeV), as :func:`read_lhco_features`."""
    p = {j: np.stack([cols[f"p{c}{j}"] for c in "xyz"], 1).astype(np.float64) for j in ("j1", "j2")}
    energy = {j: np.sqrt((p[j] ** 2).sum(1) + np.asarray(cols[f"m{j}"], np.float64) ** 2) for j in p}
    p_sum = p["j1"] + p["j2"]
    mjj = np.sqrt(np.clip((energy["j1"] + energy["j2"]) ** 2 - (p_sum**2).sum(1), 0.0, None))
    return dijet_features(
        mjj / GEV_PER_TEV,
        np.asarray(cols["mj1"], np.float64) / GEV_PER_TEV,
        np.asarray(cols["mj2"], np.float64) / GEV_PER_TEV,
        tau21(cols["tau1j1"], cols["tau2j1"]),
        tau21(cols["tau1j2"], cols["tau2j2"]),
    )
