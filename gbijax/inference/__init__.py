"""Inference: the statistics core (Wilks intervals, profile scans, discovery, Fisher, bootstrap,
cut-and-count), the signal-fraction mixture fit, and the exact-likelihood oracle on the analytic toy."""

from gbijax.inference._oracle import (
    MASS_BOUNDS,
    JointFit,
    oracle_fit,
    oracle_joint_fit,
    oracle_log_ratio,
)
from gbijax.inference._ranode import (
    RanodeConfig,
    RanodeResult,
    fit_ranode,
    ranode_signal_log_prob,
    sample_signal_model,
    signal_coordinates,
)
from gbijax.inference._stats import (
    CL68,
    CL95,
    Discovery,
    FisherUncertainty,
    Interval,
    MixtureFit,
    asimov_discovery,
    asimov_significance,
    bootstrap,
    discovery,
    fisher_uncertainty,
    fit_mixture,
    likelihood_scale,
    maximize_mixture,
    mixture_asimov_discovery,
    mixture_asimov_weights,
    mixture_interval,
    mixture_log_likelihood,
    poisson_weights,
    profile_scan,
    scan_log_likelihood,
    wilks_threshold,
)

__all__ = [
    "CL68", "CL95", "MASS_BOUNDS",
    "Discovery", "FisherUncertainty", "Interval", "JointFit", "MixtureFit",
    "asimov_discovery", "asimov_significance", "bootstrap", "discovery", "fisher_uncertainty",
    "fit_mixture", "likelihood_scale", "maximize_mixture", "mixture_asimov_discovery",
    "mixture_asimov_weights", "mixture_interval", "mixture_log_likelihood", "oracle_fit", "oracle_joint_fit",
    "oracle_log_ratio", "poisson_weights",
    "profile_scan", "scan_log_likelihood", "wilks_threshold",
    "RanodeConfig", "RanodeResult", "fit_ranode", "ranode_signal_log_prob", "sample_signal_model",
    "signal_coordinates",
]  # fmt: skip

from gbijax.inference._cut import CutAndCount, cut_and_count, on_off_significance  # noqa: E402
from gbijax.inference._measure import (  # noqa: E402
    METHODS,
    Measurements,
    closure_corrected,
    closure_injection,
    compare_to_oracle,
    measure,
    measure_cathode,
    measure_oracle,
    measure_paws,
    measure_paws_closure,
    measure_ranode,
    ranode_inputs,
    realisation_keys,
    summarize_measurements,
)

__all__ += [
    "CutAndCount", "cut_and_count", "on_off_significance",
    "METHODS", "Measurements", "compare_to_oracle", "measure", "measure_cathode", "measure_oracle",
    "measure_paws", "measure_paws_closure", "measure_ranode", "closure_corrected", "closure_injection",
    "ranode_inputs", "realisation_keys", "summarize_measurements",
]  # fmt: skip

from gbijax.inference._spline import GridSpline, grid_spline  # noqa: E402

__all__ += ["GridSpline", "grid_spline"]

from gbijax.inference._paws import (  # noqa: E402
    REFERENCE_PAWS_GRID,
    TOY_PAWS_GRID,
    ClassifierRatio,
    GlobalSignificance,
    KappaSample,
    Landscape,
    LogRatioFn,
    ParametricSample,
    PawsBootstrap,
    PawsClassifier,
    PawsClosure,
    PawsConfig,
    PawsFit,
    StartFits,
    ToyRatioData,
    bootstrap_paws,
    classifier_log_ratio,
    fit_paws,
    fit_starts,
    global_p_value,
    global_significance,
    kappa_from_background,
    kappa_from_counts,
    landscape_intervals,
    landscape_region,
    mass_grid_points,
    mass_tangents,
    mixing_fractions,
    mu_alpha_landscape,
    null_scan_q0,
    parametric_inputs,
    parametric_logit,
    parametric_training_set,
    paws_closure,
    paws_landscape,
    paws_log_likelihood,
    pooled_kappa_log_weights,
    scan_q0,
    toy_log_ratio,
    toy_log_ratio_fn,
    toy_ratio_data,
    toy_signal_grid,
    train_parametric_classifier,
    train_toy_paws,
)

__all__ += [
    "ClassifierRatio", "GlobalSignificance", "KappaSample", "Landscape", "LogRatioFn", "ParametricSample",
    "PawsBootstrap", "PawsClosure", "paws_closure",
    "PawsConfig", "PawsFit", "StartFits", "ToyRatioData", "bootstrap_paws", "classifier_log_ratio",
    "fit_paws", "fit_starts", "global_p_value", "global_significance", "kappa_from_background",
    "kappa_from_counts", "landscape_intervals", "landscape_region", "mass_grid_points", "mass_tangents",
    "mixing_fractions",
    "mu_alpha_landscape", "null_scan_q0", "parametric_inputs", "parametric_logit", "parametric_training_set",
    "paws_landscape", "paws_log_likelihood", "pooled_kappa_log_weights", "scan_q0", "toy_log_ratio",
    "toy_log_ratio_fn", "toy_ratio_data", "toy_signal_grid",
    "train_parametric_classifier", "train_toy_paws", "PawsClassifier", "REFERENCE_PAWS_GRID", "TOY_PAWS_GRID",
]  # fmt: skip
