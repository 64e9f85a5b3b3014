"""gbijax: Generator Based Inference for resonant anomaly detection, in JAX."""

__version__ = "0.1.0"
