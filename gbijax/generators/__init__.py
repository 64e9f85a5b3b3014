"""Generators: conditional density models with one pure interface, and their ensembles."""

from gbijax.generators._base import Generator, as_loss_fn
from gbijax.generators._flow_matching import (
    FlowMatchingConfig,
    VelocityField,
    flow_matching,
    flow_matching_loss,
    ode_log_prob,
    ode_sample,
)

__all__ = [
    "FlowMatchingConfig",
    "Generator",
    "VelocityField",
    "as_loss_fn",
    "flow_matching",
    "flow_matching_loss",
    "ode_log_prob",
    "ode_sample",
]
