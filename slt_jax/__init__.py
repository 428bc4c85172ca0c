"""slt_jax: local learning coefficients with batched localized SGLD in JAX.

Modules: ``data`` (modular arithmetic), ``model`` (quadratic network),
``losses``, ``train`` (vmapped training), ``metrics`` (grokking metrics),
``sgld`` and ``mala`` (samplers), ``llc`` (the LLC engine), ``diagnostics``,
``theory`` (closed forms, float64 curvature, SLQ), ``validation`` (models with
known coefficients, as LLC test cases), ``plotting``.
"""

from slt_jax import (batching, config, data, diagnostics, io, llc, losses, mala,
                     metrics, model, runs, sgld, theory, train, validation)
from slt_jax.config import DataConfig, ModelConfig, SGLDConfig, TrainConfig

__all__ = [
    "batching", "config", "data", "diagnostics", "io", "llc", "losses", "mala",
    "metrics", "model", "runs", "sgld", "theory", "train", "validation",
    "DataConfig", "ModelConfig", "SGLDConfig", "TrainConfig",
]
