"""gbijax: Generator Based Inference for resonant anomaly detection, in JAX."""

import os as _os

# XLA's CPU backend (jaxlib 0.10.2) can crash with a segmentation fault inside its YNNPACK
# fusions (a transpose in a program that trains and evaluates spline flows together). Turning
# those fusions off avoids it; it affects only the CPU backend and must happen before JAX starts
# its backends, so it is done at import. A user's own setting of the flag is left alone.
if "xla_cpu_experimental_ynn_fusion_type" not in _os.environ.get("XLA_FLAGS", ""):
    _os.environ["XLA_FLAGS"] = (
        _os.environ.get("XLA_FLAGS", "") + " --xla_cpu_experimental_ynn_fusion_type="
    ).strip()

__version__ = "0.1.0"
