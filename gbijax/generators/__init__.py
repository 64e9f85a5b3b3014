"""Generators: conditional density models with one pure interface, and their ensembles.

Every family is a factory ``family(config) -> Generator`` whose four pure functions
(``init``, ``loss``, ``log_prob``, ``sample``) ``jit`` and ``vmap`` over keys and stacked
parameters; the ensemble functions are the same interface over stacked members.
"""

from gbijax.generators._base import Generator, as_loss_fn, context_or_empty
from gbijax.generators._ensemble import (
    ensemble_log_prob,
    ensemble_sample,
    ensemble_size,
    fit_ensemble,
    init_ensemble,
    member_log_probs,
)
from gbijax.generators._flow_matching import (
    FlowMatchingConfig,
    VelocityField,
    VelocityFn,
    flow_matching,
    flow_matching_loss,
    ode_log_prob,
    ode_sample,
    velocity_network,
)
from gbijax.generators._mass import (
    MASS_DENSITY_KINDS,
    DijetFit,
    MassDensity,
    fit_dijet_function,
    mass_density_from_fit,
    mass_density_from_samples,
)
from gbijax.generators._spline_flow import (
    CATHODE_MAF,
    MADE,
    RANODE_SIGNAL_FLOW,
    FlowTransform,
    SplineFlowConfig,
    spline_flow,
    spline_flow_transform,
)

__all__ = [
    "CATHODE_MAF",
    "MASS_DENSITY_KINDS",
    "DijetFit",
    "MassDensity",
    "fit_dijet_function",
    "mass_density_from_fit",
    "mass_density_from_samples",
    "MADE",
    "RANODE_SIGNAL_FLOW",
    "FlowMatchingConfig",
    "FlowTransform",
    "Generator",
    "SplineFlowConfig",
    "VelocityField",
    "VelocityFn",
    "as_loss_fn",
    "context_or_empty",
    "ensemble_log_prob",
    "ensemble_sample",
    "ensemble_size",
    "fit_ensemble",
    "flow_matching",
    "flow_matching_loss",
    "init_ensemble",
    "member_log_probs",
    "ode_log_prob",
    "ode_sample",
    "spline_flow",
    "spline_flow_transform",
    "velocity_network",
]
