"""Inference: the statistics core (Wilks intervals, profile scans, discovery, Fisher, bootstrap),
the signal-fraction mixture fit, and the exact-likelihood oracle on the analytic toy."""

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
    maximize_mixture,
    mixture_asimov_discovery,
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
    "fit_mixture", "maximize_mixture", "mixture_asimov_discovery", "mixture_interval",
    "mixture_log_likelihood", "oracle_fit", "oracle_joint_fit", "oracle_log_ratio", "poisson_weights",
    "profile_scan", "scan_log_likelihood", "wilks_threshold",
    "RanodeConfig", "RanodeResult", "fit_ranode", "ranode_signal_log_prob", "sample_signal_model",
    "signal_coordinates",
]  # fmt: skip
