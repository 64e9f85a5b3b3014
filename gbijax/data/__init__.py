"""Data layer: LHCO readers, regions, injection, folds, preprocessing and the analytic toy."""

from gbijax.data import toy
from gbijax.data._events import (
    BACKGROUND,
    FEATURE_NAMES,
    SIGNAL,
    UNKNOWN,
    Events,
    check_finite,
    concatenate,
    make_events,
    select,
)
from gbijax.data._folds import fold_masks, kfold_assignment
from gbijax.data._injection import Injection, inject_signal, injection_mask, signal_count_for_mu
from gbijax.data._preprocessing import (
    Preprocessed,
    Preprocessing,
    fit_preprocessing,
    forward,
    in_range,
    inverse,
    preprocess,
)
from gbijax.data._readers import (
    read_cathode,
    read_clustered,
    read_lhco_features,
    read_lhco_parametric_signal,
    read_pandas_fixed,
)
from gbijax.data._regions import (
    DEFAULT_SR,
    SignalRegion,
    sideband_mask,
    signal_region_mask,
    split_regions,
)
from gbijax.data._sources import (
    Dataset,
    ToyOptions,
    load_source,
    load_toy,
    parse_source,
    summarize,
)

__all__ = [
    "BACKGROUND", "DEFAULT_SR", "FEATURE_NAMES", "SIGNAL", "UNKNOWN",
    "Dataset", "Events", "Injection", "Preprocessed", "Preprocessing", "SignalRegion", "ToyOptions",
    "check_finite", "concatenate", "fit_preprocessing", "fold_masks", "forward", "in_range",
    "inject_signal", "injection_mask", "inverse", "kfold_assignment", "load_source", "load_toy",
    "make_events", "parse_source", "preprocess", "read_cathode", "read_clustered",
    "read_lhco_features", "read_lhco_parametric_signal", "read_pandas_fixed", "select", "sideband_mask",
    "signal_count_for_mu", "signal_region_mask", "split_regions", "summarize", "toy",
]  # fmt: skip
